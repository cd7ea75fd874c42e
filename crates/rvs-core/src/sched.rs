//! Scheduler tables: one period of the picks IPVS makes, which the data plane then cycles through.
//!
//! Inputs are the dests' weights in IPVS list order (most recently added first); outputs are indices
//! into that list. The starting point is the state of a service that was created empty and then got its
//! dests one by one (the only way ipvsadm builds a service): for `rr` the cursor at the list head, for
//! `wrr` the cursor at the head with `cw = 1` (see [`wrr_table`]).

use std::collections::BTreeSet;

/// One period of IPVS `rr` (net/netfilter/ipvs/ip_vs_rr.c): every dest of weight > 0, once, in list
/// order. Weight-0 (quiesced) dests are skipped; all of them quiesced gives an empty table.
pub fn rr_table(weights: &[u32]) -> Vec<usize> {
    (0..weights.len())
        .filter(|&i| weights.get(i).is_some_and(|&w| w > 0))
        .collect()
}

/// Length of [`rr_table`] without building it.
pub fn rr_len(weights: &[u32]) -> u64 {
    weights.iter().filter(|&&w| w > 0).count() as u64
}

/// One period of IPVS `wrr` (net/netfilter/ipvs/ip_vs_wrr.c), starting where a freshly built service
/// starts.
///
/// The kernel keeps `di = gcd(weights > 0)`, `mw = max - (di - 1)` and a current weight `cw`, and scans
/// the list for the next dest with `weight >= cw`, lowering `cw` by `di` at the end of the list and
/// wrapping to `mw` below 1. A service starts empty (`cw = mw = 0`); `ip_vs_wrr_dest_changed` then sets
/// `cw = mw = 1` when the first dest of weight > 0 arrives (a lone dest has `di = w`), and every later
/// add keeps `cw = 1`. So the first pass picks every dest of weight > 0 in list order, then passes at
/// `cw = mw, mw - di, ..., 1 + di` follow, and the next pass at `cw = 1` starts the next period. With
/// weights 1,2,3 in list order that is `0 1 2 2 1 2` (the golden nat-wrr.txt: rs3 rs2 rs1 rs1 rs2 rs1).
///
/// Each dest of weight `w` appears `w / gcd` times; the length is [`wrr_len`], which callers should check
/// first: weights like 65535 and 1 give a table of 65536 entries.
pub fn wrr_table(weights: &[u32]) -> Vec<usize> {
    let Some((di, max)) = gcd_max(weights) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(usize::try_from(wrr_len(weights)).unwrap_or(0));
    // The pass at cw = 1.
    out.extend(rr_table(weights));
    // Passes at cw = mw, mw - di, ..., 1 + di: the dests with weight >= cw, in list order. Walking the
    // levels downwards only ever adds dests, so an ordered set of list indices grows as cw falls.
    let mut by_weight: Vec<usize> = rr_table(weights);
    by_weight.sort_by_key(|&i| std::cmp::Reverse(weights.get(i).copied().unwrap_or(0)));
    let mut next = by_weight.iter().peekable();
    let mut eligible = BTreeSet::new();
    let mw = max - (di - 1);
    let mut cw = mw;
    while cw > 1 {
        while let Some(&&i) = next.peek() {
            if weights.get(i).copied().unwrap_or(0) < cw {
                break;
            }
            eligible.insert(i);
            next.next();
        }
        out.extend(eligible.iter().copied());
        cw -= di;
    }
    out
}

/// Length of [`wrr_table`] without building it: `sum(w / gcd)`.
pub fn wrr_len(weights: &[u32]) -> u64 {
    match gcd_max(weights) {
        None => 0,
        Some((g, _)) => weights.iter().map(|&w| u64::from(w / g)).sum(),
    }
}

/// `(gcd, max)` of the weights > 0, or `None` when there are none.
fn gcd_max(weights: &[u32]) -> Option<(u32, u32)> {
    let mut g = 0u32;
    let mut max = 0u32;
    for &w in weights.iter().filter(|&&w| w > 0) {
        g = gcd(g, w);
        max = max.max(w);
    }
    (g > 0).then_some((g, max))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The kernel's wrr, statement by statement (ip_vs_wrr.c, Linux 6.x), over a list of weights.
    /// `cl == None` is the list head. Used as the oracle for `wrr_table`.
    struct WrrSim {
        weights: Vec<i64>,
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl WrrSim {
        fn gcd_weight(&self) -> i64 {
            let g = self
                .weights
                .iter()
                .filter(|&&w| w > 0)
                .fold(0, |g, &w| gcd(g as u32, w as u32) as i64);
            if g > 0 { g } else { 1 }
        }

        fn max_weight(&self) -> i64 {
            self.weights.iter().copied().fold(0, i64::max)
        }

        /// ip_vs_wrr_init_svc on an empty service.
        fn init_svc() -> Self {
            let mut s = WrrSim {
                weights: Vec::new(),
                cl: None,
                cw: 0,
                mw: 0,
                di: 0,
            };
            s.di = s.gcd_weight();
            s.mw = s.max_weight() - (s.di - 1);
            s.cw = s.mw;
            s
        }

        /// ip_vs_add_dest (list_add at the head) followed by ip_vs_wrr_dest_changed.
        fn add_dest(&mut self, weight: u32) {
            self.weights.insert(0, i64::from(weight));
            self.cl = None;
            self.di = self.gcd_weight();
            self.mw = self.max_weight() - (self.di - 1);
            if self.cw > self.mw || self.cw == 0 {
                self.cw = self.mw;
            } else if self.di > 1 {
                self.cw = (self.cw / self.di) * self.di + 1;
            }
        }

        /// ip_vs_wrr_schedule (no dest is ever OVERLOADed here).
        fn schedule(&mut self) -> Option<usize> {
            let mut dest = self.cl;
            if self.mw == 0 {
                return None;
            }
            let last = dest;
            let mut stop: Option<Option<usize>> = None;
            let (mut last_pass, mut restarted) = (false, false);
            for _ in 0..10_000 {
                let start = dest.map_or(0, |i| i + 1);
                for i in start..self.weights.len() {
                    dest = Some(i);
                    if self.weights[i] >= self.cw {
                        self.cl = dest;
                        return dest;
                    }
                    if stop == Some(dest) {
                        self.cl = dest;
                        return None;
                    }
                }
                dest = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = dest;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = Some(last);
                }
            }
            panic!("wrr simulation did not terminate");
        }

        /// A service created empty, then given `weights` (list order) oldest first.
        fn fresh(weights: &[u32]) -> Self {
            let mut s = Self::init_svc();
            for &w in weights.iter().rev() {
                s.add_dest(w);
            }
            s
        }
    }

    fn simulate(weights: &[u32], picks: usize) -> Vec<usize> {
        let mut s = WrrSim::fresh(weights);
        (0..picks).map_while(|_| s.schedule()).collect()
    }

    #[test]
    fn wrr_matches_the_golden_nat_wrr_sequence() {
        // rs1=3, rs2=2, rs3=1 added in that order: list order rs3, rs2, rs1.
        let names = ["rs3", "rs2", "rs1"];
        let period: Vec<&str> = wrr_table(&[1, 2, 3]).iter().map(|&i| names[i]).collect();
        assert_eq!(period.join(" "), "rs3 rs2 rs1 rs1 rs2 rs1");
        let golden =
            "rs3 rs2 rs1 rs1 rs2 rs1 rs3 rs2 rs1 rs1 rs2 rs1 rs3 rs2 rs1 rs1 rs2 rs1 rs3 rs2 rs1 rs1 rs2 rs1";
        let cycled: Vec<&str> = period.iter().cycle().take(24).copied().collect();
        assert_eq!(cycled.join(" "), golden);
        let simulated: Vec<&str> = simulate(&[1, 2, 3], 24).iter().map(|&i| names[i]).collect();
        assert_eq!(simulated.join(" "), golden);
    }

    #[test]
    fn wrr_cycle_is_the_one_of_ipvs_features_2_2() {
        // A4, B3, C2 in list order. The research note quotes the cycle from cw = mw (what init_svc gives
        // a service that already has dests, e.g. after -E switches the scheduler to wrr); a service built
        // by ipvsadm starts at cw = 1, one pass earlier in the same cycle.
        let names = ["A", "B", "C"];
        let period: String = wrr_table(&[4, 3, 2]).iter().map(|&i| names[i]).collect();
        assert_eq!(period, "ABCAABABC");
        let doubled = period.repeat(2);
        assert!(
            doubled.contains("AABABCABC"),
            "{period} is not a rotation of AABABCABC"
        );
    }

    #[test]
    fn rr_matches_the_golden_nat_rr_sequence() {
        let names = ["rs3", "rs2", "rs1"];
        let period: Vec<&str> = rr_table(&[1, 1, 1]).iter().map(|&i| names[i]).collect();
        assert_eq!(period.join(" "), "rs3 rs2 rs1");
        assert_eq!(rr_table(&[1, 0, 5, 0]), [0, 2]);
    }

    #[test]
    fn weight_zero_never_appears_and_all_zero_is_empty() {
        assert_eq!(wrr_table(&[0, 2, 0, 4]), [1, 3, 3]);
        assert!(wrr_table(&[0, 0]).is_empty());
        assert!(wrr_table(&[]).is_empty());
        assert!(rr_table(&[0, 0]).is_empty());
        assert_eq!(wrr_len(&[0, 0]), 0);
    }

    #[test]
    fn wrr_equal_weights_is_rr() {
        assert_eq!(wrr_table(&[5, 5, 5]), [0, 1, 2]);
        assert_eq!(wrr_table(&[65535, 1]).len(), 65536);
        assert_eq!(wrr_len(&[65535, 1]), 65536);
    }

    proptest! {
        #[test]
        fn wrr_table_is_one_period_of_the_kernels_wrr(weights in prop::collection::vec(0u32..=12, 0..7)) {
            let table = wrr_table(&weights);
            prop_assert_eq!(table.len() as u64, wrr_len(&weights));
            // Three periods of the faithful simulation are the table three times over.
            let sim = simulate(&weights, table.len() * 3);
            let want: Vec<usize> = table.iter().cycle().take(table.len() * 3).copied().collect();
            prop_assert_eq!(sim, want);
        }

        #[test]
        fn wrr_counts_are_weight_over_gcd(weights in prop::collection::vec(0u32..=1000, 0..10)) {
            let table = wrr_table(&weights);
            let g = weights.iter().filter(|&&w| w > 0).fold(0, |g, &w| gcd(g, w));
            let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            prop_assert_eq!(table.len() as u64, if g == 0 { 0 } else { sum / u64::from(g) });
            for (i, &w) in weights.iter().enumerate() {
                let n = table.iter().filter(|&&j| j == i).count() as u32;
                prop_assert_eq!(n, if w == 0 { 0 } else { w / g });
            }
        }

        #[test]
        fn rr_is_every_live_dest_once(weights in prop::collection::vec(0u32..=3, 0..10)) {
            let table = rr_table(&weights);
            prop_assert_eq!(table.len() as u64, rr_len(&weights));
            prop_assert!(table.windows(2).all(|p| p[0] < p[1]));
            prop_assert!(table.iter().all(|&i| weights[i] > 0));
        }
    }
}

pub mod dh;
#[cfg(test)]
mod golden;
pub mod hash;
pub mod mh;
pub mod sh;
