//! IPVS's rate estimator (K:net/netfilter/ipvs/ip_vs_est.c), sample for sample.
//!
//! Every 2 seconds the kernel reads each service's and real server's cumulative counters and feeds the
//! difference since the previous tick into an exponentially weighted moving average:
//!
//! ```c
//! rate = (kstats.conns - e->last_conns) << 9;     /* per 2 s, scaled by 2^10: x 2^10 / 2 */
//! e->last_conns = kstats.conns;
//! e->cps += ((s64)rate - (s64)e->cps) >> 2;       /* W = 1/4 */
//! ...                                             /* inpkts, outpkts alike */
//! rate = (kstats.inbytes - e->last_inbytes) << 4; /* bytes scaled by 2^5: x 2^5 / 2 */
//! ```
//!
//! and `ip_vs_read_estimator` rounds the averages back: `(avg + 0x1FF) >> 10` for cps/pps and
//! `(avg + 0xF) >> 5` for bps. `ip_vs_zero_estimator` (`-Z`) takes the current counters as the new
//! `last_*` and zeroes the averages. The averages are u64 and the shift is the arithmetic one of a
//! signed 64-bit difference, so a falling rate decays to exactly 0.
//!
//! The estimator samples the raw (never zeroed) counters, as the kernel's does: `-Z`'s baseline only
//! changes what is shown, not the differences.

use rvs_abi::Stats;
use rvs_api::RateSnap;

/// Period of [`Estimator::tick`] (the kernel's `2 * HZ`).
pub(crate) const PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// One service's or real server's estimator (`struct ip_vs_estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Estimator {
    last: Stats,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// `e->avg += ((s64)rate - (s64)e->avg) >> 2` with `rate = (cur - last) << shift`.
fn ewma(avg: &mut u64, last: &mut u64, cur: u64, shift: u32) {
    let rate = cur.wrapping_sub(*last) << shift;
    *last = cur;
    let step = (rate as i64).wrapping_sub(*avg as i64) >> 2;
    *avg = avg.wrapping_add(step as u64);
}

impl Estimator {
    /// An estimator that starts from `current` counters with all rates 0. The kernel starts from a
    /// fresh service's zero counters; starting from the current ones keeps a restarted daemon (whose
    /// pinned counters kept running) from seeing the whole history as one 2-second burst.
    pub(crate) fn new(current: Stats) -> Self {
        Self {
            last: current,
            ..Self::default()
        }
    }

    /// One 2-second tick (`estimation_timer` / `ip_vs_chain_estimation`). Counters that went
    /// backwards (maps reloaded behind the daemon's back; never in the kernel) restart the estimator.
    pub(crate) fn tick(&mut self, c: Stats) {
        let l = self.last;
        if c.conns < l.conns
            || c.inpkts < l.inpkts
            || c.outpkts < l.outpkts
            || c.inbytes < l.inbytes
            || c.outbytes < l.outbytes
        {
            *self = Self::new(c);
            return;
        }
        ewma(&mut self.cps, &mut self.last.conns, c.conns, 9);
        ewma(&mut self.inpps, &mut self.last.inpkts, c.inpkts, 9);
        ewma(&mut self.outpps, &mut self.last.outpkts, c.outpkts, 9);
        ewma(&mut self.inbps, &mut self.last.inbytes, c.inbytes, 4);
        ewma(&mut self.outbps, &mut self.last.outbytes, c.outbytes, 4);
    }

    /// `ip_vs_zero_estimator`: the current counters become `last`, the rates 0.
    pub(crate) fn zero(&mut self, current: Stats) {
        *self = Self::new(current);
    }

    /// `ip_vs_read_estimator`: the averages, rounded, per second.
    pub(crate) fn read(&self) -> RateSnap {
        RateSnap {
            cps: (self.cps + 0x1FF) >> 10,
            inpps: (self.inpps + 0x1FF) >> 10,
            outpps: (self.outpps + 0x1FF) >> 10,
            inbps: (self.inbps + 0xF) >> 5,
            outbps: (self.outbps + 0xF) >> 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(conns: u64, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) -> Stats {
        Stats {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
        }
    }

    /// Feeds `per_tick` more of every counter on each of `n` ticks; returns the raw averages.
    fn steady(e: &mut Estimator, start: Stats, per_tick: u64, n: usize) -> Stats {
        let mut c = start;
        for _ in 0..n {
            c = st(
                c.conns + per_tick,
                c.inpkts + per_tick,
                c.outpkts + per_tick,
                c.inbytes + per_tick,
                c.outbytes + per_tick,
            );
            e.tick(c);
        }
        c
    }

    #[test]
    fn first_ticks_by_hand() {
        // 10 connections and 1000 bytes in the first 2 s, then nothing.
        let mut e = Estimator::new(Stats::default());
        e.tick(st(10, 10, 0, 1000, 0));
        // rate = 10 << 9 = 5120; avg = 0 + (5120 - 0) >> 2 = 1280; read (1280 + 511) >> 10 = 1.
        // bytes: rate = 1000 << 4 = 16000; avg = 4000; read (4000 + 15) >> 5 = 125.
        assert_eq!(
            (e.cps, e.inpps, e.outpps, e.inbps, e.outbps),
            (1280, 1280, 0, 4000, 0)
        );
        assert_eq!(
            e.read(),
            RateSnap {
                cps: 1,
                inpps: 1,
                outpps: 0,
                inbps: 125,
                outbps: 0
            }
        );
        e.tick(st(10, 10, 0, 1000, 0));
        // avg += (0 - 1280) >> 2 = -320 -> 960; (960 + 511) >> 10 = 1. 4000 - 1000 = 3000 -> 94.
        assert_eq!((e.cps, e.inbps), (960, 3000));
        assert_eq!((e.read().cps, e.read().inbps), (1, 94));
        e.tick(st(10, 10, 0, 1000, 0));
        // 960 - 240 = 720 -> (720 + 511) >> 10 = 1; 3000 - 750 = 2250 -> 70.
        assert_eq!((e.cps, e.inbps), (720, 2250));
        e.tick(st(10, 10, 0, 1000, 0));
        // 720 - 180 = 540 -> 1; the next one, 405, reads as 0 (405 + 511 < 1024).
        assert_eq!(e.read().cps, 1);
        e.tick(st(10, 10, 0, 1000, 0));
        assert_eq!(e.cps, 405);
        assert_eq!(e.read().cps, 0);
    }

    #[test]
    fn a_steady_rate_converges_to_the_per_second_value() {
        // 100 connections and packets and 100 bytes per 2 s: 50/s.
        let mut e = Estimator::new(Stats::default());
        steady(&mut e, Stats::default(), 100, 60);
        let r = e.read();
        assert_eq!(
            (r.cps, r.inpps, r.outpps, r.inbps, r.outbps),
            (50, 50, 50, 50, 50)
        );
        // `diff >> 2` is 0 once the average is within 3 of the scaled rate: it settles just below.
        assert_eq!(e.cps, (100 << 9) - 3);
        assert!((100 << 4) - e.inbps < 4, "{}", e.inbps);
    }

    #[test]
    fn a_stopped_flow_decays_to_exactly_zero() {
        let mut e = Estimator::new(Stats::default());
        let c = steady(&mut e, Stats::default(), 1_000_000, 40);
        for _ in 0..200 {
            e.tick(c);
        }
        // The arithmetic shift of -1 is -1: the average does reach 0 (an unsigned shift would stick).
        assert_eq!(e, Estimator::new(c));
        assert_eq!(e.read(), RateSnap::default());
    }

    #[test]
    fn rounding_thresholds_of_read() {
        let mut e = Estimator::default();
        for (avg, want) in [(0, 0), (512, 0), (513, 1), (1024, 1), (1536, 1), (1537, 2)] {
            e.cps = avg;
            assert_eq!(e.read().cps, want, "cps avg {avg}");
        }
        for (avg, want) in [(0, 0), (16, 0), (17, 1), (32, 1), (48, 1), (49, 2)] {
            e.outbps = avg;
            assert_eq!(e.read().outbps, want, "bps avg {avg}");
        }
    }

    #[test]
    fn zero_takes_the_counters_as_the_new_start_and_clears_rates() {
        let mut e = Estimator::new(st(5, 5, 5, 5, 5));
        let c = steady(&mut e, st(5, 5, 5, 5, 5), 1000, 10);
        assert_ne!(e.read(), RateSnap::default());
        e.zero(c);
        assert_eq!(e.read(), RateSnap::default());
        // The next tick sees only what came after the zeroing.
        e.tick(st(c.conns + 4, c.inpkts, c.outpkts, c.inbytes, c.outbytes));
        assert_eq!(e.cps, (4 << 9) >> 2);
        assert_eq!(e.inpps, 0);
    }

    #[test]
    fn starting_from_running_counters_is_not_a_burst() {
        let mut e = Estimator::new(st(1 << 40, 1 << 41, 0, 1 << 50, 0));
        e.tick(st(1 << 40, 1 << 41, 0, 1 << 50, 0));
        assert_eq!(e.read(), RateSnap::default());
    }

    #[test]
    fn counters_that_go_backwards_restart_the_estimator() {
        let mut e = Estimator::new(Stats::default());
        steady(&mut e, Stats::default(), 1000, 10);
        e.tick(st(3, 3, 3, 3, 3));
        assert_eq!(e, Estimator::new(st(3, 3, 3, 3, 3)));
    }
}
