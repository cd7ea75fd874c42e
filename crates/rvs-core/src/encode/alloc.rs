//! Allocators behind the encoder: ids of services and dests, and regions of `rvs_sched`.

use std::collections::BTreeMap;

/// Ids `0..cap`, handed out next-fit: the lowest free id at or after the one after the last allocation,
/// wrapping. A freed id therefore comes back only after every other free id was used once, so a stale
/// connection in the data plane that still names a freed dest id does not land on a new real server
/// unless the id space is exhausted.
#[derive(Clone, Debug)]
pub(super) struct IdAlloc {
    used: Vec<u64>,
    cap: u32,
    next: u32,
}

impl IdAlloc {
    pub(super) fn new(cap: u32) -> Self {
        Self {
            used: vec![0; cap.div_ceil(64) as usize],
            cap,
            next: 0,
        }
    }

    pub(super) fn is_used(&self, id: u32) -> bool {
        id < self.cap
            && self
                .used
                .get((id / 64) as usize)
                .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn set(&mut self, id: u32, on: bool) {
        if let Some(w) = self.used.get_mut((id / 64) as usize) {
            if on {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
            }
        }
    }

    /// Takes the next free id, or `None` when all `cap` are in use.
    pub(super) fn alloc(&mut self) -> Option<u32> {
        let start = self.next;
        let id = self
            .find_free(start, self.cap)
            .or_else(|| self.find_free(0, start))?;
        self.set(id, true);
        self.next = (id + 1) % self.cap;
        Some(id)
    }

    fn find_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut id = from;
        while id < to {
            let word = self.used.get((id / 64) as usize).copied().unwrap_or(u64::MAX);
            if word == u64::MAX {
                // The rest of this word is taken: the scan stays cheap when the space is nearly full.
                id = (id / 64 + 1) * 64;
            } else if word & (1 << (id % 64)) == 0 {
                return Some(id);
            } else {
                id += 1;
            }
        }
        None
    }

    /// Marks an id taken (adoption). Returns false if it is out of range or already taken.
    pub(super) fn claim(&mut self, id: u32) -> bool {
        if id >= self.cap || self.is_used(id) {
            return false;
        }
        self.set(id, true);
        // Continue after the highest id in use, as if the ids had been handed out in order.
        if id >= self.next {
            self.next = (id + 1) % self.cap;
        }
        true
    }

    pub(super) fn free(&mut self, id: u32) {
        self.set(id, false);
    }
}

/// First-fit allocator of contiguous slot ranges `[base, base + len)` within `0..cap`.
#[derive(Clone, Debug)]
pub(super) struct Regions {
    /// base -> len of every allocated region (non-empty, disjoint).
    taken: BTreeMap<u32, u32>,
    cap: u32,
}

impl Regions {
    pub(super) fn new(cap: u32) -> Self {
        Self {
            taken: BTreeMap::new(),
            cap,
        }
    }

    /// The lowest base where `len` (> 0) free slots start, or `None` if no gap is large enough.
    pub(super) fn alloc(&mut self, len: u32) -> Option<u32> {
        debug_assert!(len > 0);
        let mut base = 0u32;
        for (&b, &l) in &self.taken {
            if b - base >= len {
                break;
            }
            base = b + l;
        }
        if self.cap - base < len {
            return None;
        }
        self.taken.insert(base, len);
        Some(base)
    }

    /// Records a region found in the maps (adoption). Returns false, taking nothing, if it does not fit
    /// in `0..cap` or overlaps a region already taken.
    pub(super) fn claim(&mut self, base: u32, len: u32) -> bool {
        let Some(end) = base.checked_add(len) else {
            return false;
        };
        if len == 0 || end > self.cap {
            return false;
        }
        let before_overlaps = self
            .taken
            .range(..=base)
            .next_back()
            .is_some_and(|(&b, &l)| b + l > base);
        let after_overlaps = self.taken.range(base..).next().is_some_and(|(&b, _)| b < end);
        if before_overlaps || after_overlaps {
            return false;
        }
        self.taken.insert(base, len);
        true
    }

    pub(super) fn free(&mut self, base: u32) {
        self.taken.remove(&base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_next_fit_and_wrap() {
        let mut a = IdAlloc::new(4);
        assert_eq!([a.alloc(), a.alloc()], [Some(0), Some(1)]);
        a.free(0);
        // 0 was just freed: 2 and 3 come first.
        assert_eq!(
            [a.alloc(), a.alloc(), a.alloc(), a.alloc()],
            [Some(2), Some(3), Some(0), None]
        );
        a.free(2);
        assert_eq!(a.alloc(), Some(2));
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn ids_fill_a_large_space_exactly() {
        let mut a = IdAlloc::new(130);
        for want in 0..130 {
            assert_eq!(a.alloc(), Some(want));
        }
        assert_eq!(a.alloc(), None);
        a.free(77);
        assert_eq!(a.alloc(), Some(77));
        let mut empty = IdAlloc::new(0);
        assert_eq!(empty.alloc(), None);
    }

    #[test]
    fn claimed_ids_are_skipped_and_allocation_continues_after_them() {
        let mut a = IdAlloc::new(8);
        assert!(a.claim(3));
        assert!(!a.claim(3));
        assert!(!a.claim(8));
        assert_eq!(a.alloc(), Some(4));
    }

    #[test]
    fn regions_are_first_fit() {
        let mut r = Regions::new(10);
        assert_eq!(r.alloc(3), Some(0));
        assert_eq!(r.alloc(3), Some(3));
        assert_eq!(r.alloc(5), None);
        r.free(0);
        assert_eq!(r.alloc(2), Some(0));
        assert_eq!(r.alloc(4), Some(6));
        assert_eq!(r.alloc(1), Some(2));
        assert_eq!(r.alloc(1), None);
    }

    #[test]
    fn claims_refuse_overlap_and_overflow() {
        let mut r = Regions::new(10);
        assert!(r.claim(2, 3));
        assert!(!r.claim(4, 2));
        assert!(!r.claim(0, 3));
        assert!(r.claim(0, 2));
        assert!(r.claim(5, 5));
        assert!(!r.claim(9, 2));
        assert!(!r.claim(u32::MAX, 2));
        assert_eq!(r.alloc(1), None);
    }
}
