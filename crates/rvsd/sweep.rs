//! The incremental sweep of the connection table: each period expires what is due in one slice of the
//! table and leaves a cursor where the next slice starts, so that the daemon's single loop is never
//! held by the whole table (several seconds at 10,000,000 entries, docs/performance.md) and keeps
//! nothing of it in memory beyond one slice's due keys and reply entries.
//!
//! The cursor is the hash bucket the kernel's batch walk resumes at ([`ConnCursor`]), not a key: a key
//! cursor (BPF_MAP_GET_NEXT_KEY) restarts from the first bucket once its key is deleted, which the
//! sweep itself does to the keys it just read. Deletions and inserts between slices do not move a
//! bucket cursor, and a key never changes bucket (the kernel's hash maps do not rehash), so every
//! entry present for a whole pass is looked at once in that pass; one inserted behind the cursor waits
//! for the next pass. An entry past its timeout is therefore expired within one pass and one period:
//! ceil(entries / [`SLICE`]) periods of [`PERIOD`].
//!
//! Meanwhile the data plane itself treats an entry past its timeout as a miss; what waits for the
//! sweep is the entry's room in the table and its place in its real server's counters.

use std::time::{Duration, Instant};

use rvs_abi::{ConnKey, ConnVal, DestVal, SvcKey, SvcVal};
use rvs_api::Timeouts;
use rvs_dataplane::ConnCursor;

use super::conns::{Due, Known};

/// How often a slice is swept.
pub(crate) const PERIOD: Duration = Duration::from_millis(100);

/// Entries a periodic slice reads (whole batches of `rvs_dataplane::CONN_CHUNK`): 15 to 50 ms of the
/// loop's CPU for DR connections, 40 to 95 ms when half are NAT reply entries (a lookup each), at
/// 1,000,000 to 10,000,000 entries (docs/performance.md); a pass over 1,000,000 entries in about 3 s.
pub(crate) const SLICE: usize = 8 * rvs_dataplane::CONN_CHUNK;

/// Entries a listing sweeps before it reads the counters (the daemon's `sweep`, a [`Sweeper::round`]):
/// the whole table up to this size, so that ActiveConn/InActConn are those of the moment; a larger
/// table gets this much of it (0.1 to 0.4 s), the periodic slices the rest.
pub(crate) const LIST_SWEEP: usize = 256 * 1024;

/// The real servers and services are read again at a pass's start once this old, besides after every
/// change the daemon writes ([`Sweeper::forget_config`]).
const KNOWN_MAX_AGE: Duration = Duration::from_secs(1);

/// Takes the connection table one batch at a time.
pub(crate) type ConnSink<'a> = dyn FnMut(&[(ConnKey, ConnVal)]) + 'a;

/// What the sweep needs from the data plane; implemented by `rvs_dataplane::Dataplane`, and by a fake
/// in the daemon's tests.
pub(crate) trait ConnTable {
    /// Every valid real server, by id.
    fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>>;
    /// Every service.
    fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>>;
    /// Entries (NAT reply entries included) from `from` on, batch by batch, until at least `max` were
    /// read or the table ends; how many, and where the next slice starts (`None`: at the end).
    fn conn_entry_slice(
        &self,
        from: ConnCursor,
        max: usize,
        f: &mut ConnSink<'_>,
    ) -> anyhow::Result<(usize, Option<ConnCursor>)>;
    /// The entry of `key`, if any.
    fn conn_get(&self, key: &ConnKey) -> anyhow::Result<Option<ConnVal>>;
    /// The data plane's expiry of `keys` (those still due); how many it deleted.
    fn expire_conns(&mut self, keys: &[ConnKey]) -> anyhow::Result<usize>;
}

impl ConnTable for rvs_dataplane::Dataplane {
    fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>> {
        Ok(rvs_dataplane::Dataplane::dests(self)?)
    }
    fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>> {
        Ok(rvs_dataplane::Dataplane::services(self)?)
    }
    fn conn_entry_slice(
        &self,
        from: ConnCursor,
        max: usize,
        f: &mut ConnSink<'_>,
    ) -> anyhow::Result<(usize, Option<ConnCursor>)> {
        Ok(rvs_dataplane::Dataplane::conn_entry_slice(self, from, max, f)?)
    }
    fn conn_get(&self, key: &ConnKey) -> anyhow::Result<Option<ConnVal>> {
        Ok(rvs_dataplane::Dataplane::conn_get(self, key)?)
    }
    fn expire_conns(&mut self, keys: &[ConnKey]) -> anyhow::Result<usize> {
        Ok(rvs_dataplane::Dataplane::expire_conns(self, keys)?)
    }
}

/// What one or more slices did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Entries read.
    pub(crate) read: usize,
    /// Keys handed to the data plane's expiry.
    pub(crate) due: usize,
    /// Entries it deleted.
    pub(crate) expired: usize,
    /// Passes completed (the walk reached the table's end).
    pub(crate) passes: usize,
}

impl Swept {
    fn add(&mut self, o: Swept) {
        self.read += o.read;
        self.due += o.due;
        self.expired += o.expired;
        self.passes += o.passes;
    }
}

/// The sweep's state between periods: where the walk is, and the real servers and services it judges
/// entries against.
pub(crate) struct Sweeper {
    at: ConnCursor,
    known: Option<(Known, Instant)>,
}

impl Sweeper {
    /// A sweep starting at the table's first bucket.
    pub(crate) fn new() -> Self {
        Sweeper {
            at: ConnCursor::START,
            known: None,
        }
    }

    /// Where the next slice starts.
    #[cfg(test)]
    pub(crate) fn cursor(&self) -> ConnCursor {
        self.at
    }

    /// The real servers or services changed: read them again before the next slice.
    pub(crate) fn forget_config(&mut self) {
        self.known = None;
    }

    /// The real servers and services, read again if forgotten or, at a pass's start, old.
    fn known<P: ConnTable + ?Sized>(&mut self, plane: &P) -> anyhow::Result<&Known> {
        let stale = match &self.known {
            None => true,
            Some((_, at)) => self.at == ConnCursor::START && at.elapsed() >= KNOWN_MAX_AGE,
        };
        if stale {
            let dests = plane.dests()?;
            let svcs = plane.services()?;
            self.known = Some((Known::new(&dests, &svcs), Instant::now()));
        }
        Ok(&self.known.as_ref().expect("just read").0)
    }

    /// Sweeps one slice of at least `max` entries (or to the table's end) from the cursor at `now_ns`,
    /// and moves the cursor past it, back to the start at the end. On error the cursor stays.
    pub(crate) fn slice<P: ConnTable + ?Sized>(
        &mut self,
        plane: &mut P,
        now_ns: u64,
        t: &Timeouts,
        max: usize,
    ) -> anyhow::Result<Swept> {
        use anyhow::Context;
        let at = self.at;
        let known = self
            .known(&*plane)
            .context("cannot read the real servers and services")?;
        let mut due = Due::new(known, now_ns, t);
        let (read, next) = plane
            .conn_entry_slice(at, max, &mut |chunk| due.feed(chunk))
            .context("cannot read the connection table")?;
        let keys = due
            .finish(|k| plane.conn_get(k))
            .context("cannot look a NAT connection up")?;
        let expired = if keys.is_empty() {
            0
        } else {
            plane.expire_conns(&keys).context("connection expiry")?
        };
        self.at = next.unwrap_or(ConnCursor::START);
        Ok(Swept {
            read,
            due: keys.len(),
            expired,
            passes: usize::from(next.is_none()),
        })
    }

    /// Sweeps slices from the cursor until the walk comes back round to where it started (a whole
    /// pass) or `budget` entries were read, whichever is first: the whole table when it holds no more
    /// than `budget`, otherwise a bounded part of it. Past the table's end the slices are `step`
    /// entries (one batch), so that the round overshoots its start by at most that many.
    pub(crate) fn round<P: ConnTable + ?Sized>(
        &mut self,
        plane: &mut P,
        now_ns: u64,
        t: &Timeouts,
        budget: usize,
        step: usize,
    ) -> anyhow::Result<Swept> {
        let start = self.at;
        let mut total = Swept::default();
        loop {
            let size = if total.passes == 0 { SLICE } else { step };
            let left = budget.saturating_sub(total.read);
            let s = self.slice(plane, now_ns, t, size.min(left).max(1))?;
            total.add(s);
            // Past the end once and back at (or beyond) the start: the whole table was seen. Past it
            // twice: a table that ends before `start` (emptied meanwhile).
            let round_done = total.passes >= 2 || (total.passes == 1 && self.at >= start);
            if round_done || total.read >= budget {
                return Ok(total);
            }
        }
    }
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper::new()
    }
}
