//! Expiry of the lblc/lblcr tables (rvs_lblc), as IPVS's per-service timer does it
//! (ip_vs_lblc_check_expire, ip_vs_lblcr_check_expire): every [`PERIOD`], per service, every 30th run
//! forgets the entries idle for the service's expiration (`lblc_expiration`/`lblcr_expiration`);
//! the other runs do nothing unless the service has more than [`MAX_SIZE`] entries, and then forget
//! entries idle for [`ENTRY_TIMEOUT`] until the goal is met. The data plane only creates and updates
//! entries; the daemon reads them (lastuse) and deletes what is due.

use std::collections::HashMap;
use std::time::Duration;

use rvs_abi::{LblcKey, LblcVal, Sched, SvcVal};

/// IPVS's CHECK_EXPIRE_INTERVAL.
pub(crate) const PERIOD: Duration = Duration::from_secs(60);
/// IPVS's COUNT_FOR_FULL_EXPIRATION: every this many runs is a full expiration check.
const FULL_EVERY: u32 = 30;
/// IPVS's table max_size: IP_VS_LBLC_TAB_SIZE (1 << 10) * 16.
const MAX_SIZE: usize = 16 * 1024;
/// IPVS's ENTRY_TIMEOUT: idle time after which an entry of an oversized table may go.
const ENTRY_TIMEOUT_NS: u64 = 6 * 60 * 1_000_000_000;

/// The per-service run counters (IPVS's `tbl->counter`, which starts at 1 with the table).
#[derive(Debug, Default)]
pub(crate) struct Gc {
    counter: HashMap<u32, u32>,
}

impl Gc {
    /// One run at `now_ns` over `entries` (all of rvs_lblc) for `svcs` (all services in the maps):
    /// the keys to delete. Entries of a service that is gone or no longer lblc/lblcr go at once (the
    /// encoder flushes them; these are what a flush raced with). `lblc_s`/`lblcr_s` are the two
    /// expirations in seconds.
    pub(crate) fn run(
        &mut self,
        entries: &[(LblcKey, LblcVal)],
        svcs: &[SvcVal],
        now_ns: u64,
        lblc_s: u32,
        lblcr_s: u32,
    ) -> Vec<LblcKey> {
        let exp_of: HashMap<u32, u64> = svcs
            .iter()
            .filter_map(|s| {
                let secs = match s.sched {
                    x if x == Sched::Lblc as u32 => lblc_s,
                    x if x == Sched::Lblcr as u32 => lblcr_s,
                    _ => return None,
                };
                Some((s.id, u64::from(secs) * 1_000_000_000))
            })
            .collect();
        self.counter.retain(|id, _| exp_of.contains_key(id));
        let mut by_svc: HashMap<u32, Vec<&(LblcKey, LblcVal)>> = HashMap::new();
        let mut due = Vec::new();
        for e in entries {
            if exp_of.contains_key(&e.0.svc_id) {
                by_svc.entry(e.0.svc_id).or_default().push(e);
            } else {
                due.push(e.0);
            }
        }
        for (&id, &exp_ns) in &exp_of {
            let counter = self.counter.entry(id).or_insert(1);
            let mine = by_svc.remove(&id).unwrap_or_default();
            if counter.is_multiple_of(FULL_EVERY) {
                // time_before(now, lastuse + expiration) keeps an entry.
                due.extend(
                    mine.iter()
                        .filter(|(_, v)| now_ns >= v.lastuse_ns.saturating_add(exp_ns))
                        .map(|(k, _)| *k),
                );
                *counter = 1;
                continue;
            }
            if mine.len() <= MAX_SIZE {
                *counter += 1;
                continue;
            }
            // An oversized table sheds idle entries up to the goal (IPVS walks its buckets from a
            // rover; which of the idle ones go first is not specified).
            let goal = ((mine.len() - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
            due.extend(
                mine.iter()
                    .filter(|(_, v)| now_ns >= v.lastuse_ns.saturating_add(ENTRY_TIMEOUT_NS))
                    .take(goal)
                    .map(|(k, _)| *k),
            );
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn svc(id: u32, sched: Sched) -> SvcVal {
        SvcVal {
            id,
            sched: sched as u32,
            ..SvcVal::default()
        }
    }

    fn entry(svc_id: u32, n: u32, lastuse_ns: u64) -> (LblcKey, LblcVal) {
        let mut key = LblcKey {
            svc_id,
            ..LblcKey::default()
        };
        key.addr[0] = rvs_abi::Be32::new(n);
        (
            key,
            LblcVal {
                lastuse_ns,
                ..LblcVal::default()
            },
        )
    }

    #[test]
    fn every_thirtieth_run_forgets_what_was_idle_for_the_expiration() {
        let mut gc = Gc::default();
        let svcs = [svc(1, Sched::Lblc), svc(2, Sched::Lblcr)];
        let now = 100_000 * S;
        // Idle 100 s and 1000 s; lblc expires after 500 s, lblcr after 50 s.
        let entries = [
            entry(1, 1, now - 100 * S),
            entry(1, 2, now - 1000 * S),
            entry(2, 1, now - 100 * S),
        ];
        for run in 1..FULL_EVERY {
            assert_eq!(
                gc.run(&entries, &svcs, now, 500, 50),
                [],
                "run {run} is not a full check"
            );
        }
        let mut due = gc.run(&entries, &svcs, now, 500, 50);
        due.sort();
        let mut want = [entries[1].0, entries[2].0];
        want.sort();
        assert_eq!(due, want);
        // The counter starts over.
        assert_eq!(gc.run(&entries, &svcs, now, 500, 50), []);
    }

    #[test]
    fn an_oversized_table_sheds_entries_idle_six_minutes_up_to_its_goal() {
        let mut gc = Gc::default();
        let svcs = [svc(1, Sched::Lblc)];
        let now = 100_000 * S;
        let over = 300;
        let mut entries: Vec<_> = (0..MAX_SIZE as u32 + over)
            .map(|n| entry(1, n, now - 10 * S))
            .collect();
        // Not idle long enough: nothing goes.
        assert_eq!(gc.run(&entries, &svcs, now, 86400, 86400), []);
        for e in entries.iter_mut().take(1000) {
            e.1.lastuse_ns = now - 7 * 60 * S;
        }
        let due = gc.run(&entries, &svcs, now, 86400, 86400);
        assert_eq!(due.len(), over as usize * 4 / 3);
        assert!(due.iter().all(|k| k.addr[0].get() < 1000), "only idle entries go");
    }

    #[test]
    fn entries_of_services_that_are_gone_or_changed_scheduler_go_at_once() {
        let mut gc = Gc::default();
        let now = 100_000 * S;
        let entries = [entry(1, 1, now), entry(2, 1, now), entry(3, 1, now)];
        let mut due = gc.run(&entries, &[svc(1, Sched::Lblc), svc(2, Sched::Wlc)], now, 60, 60);
        due.sort();
        let mut want = [entries[1].0, entries[2].0];
        want.sort();
        assert_eq!(due, want);
    }
}
