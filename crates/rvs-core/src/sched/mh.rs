//! IPVS `mh` (Maglev hashing, net/netfilter/ipvs/ip_vs_mh.c, Linux 4.18+): a prime-sized lookup table
//! populated from per-dest permutations, indexed by a hash of the client's address (and source port with
//! `mh-port`).
//!
//! Dests are given in IPVS list order (most recently added first) and named by their index in it. The
//! kernel rebuilds the table on every add, delete and edit of a dest from the list alone, with fixed hash
//! keys, so every director with the same list builds the same table: it is a pure function of the
//! dests' addresses, ports and `last_weight`s.

use std::net::IpAddr;

use super::hash::{Af, HsiphashKey, addr_fold_in, hsiphash_1u32};
use super::sh::HashFlags;

/// The table sizes `mh` can be built with (`primes[]`), for `CONFIG_IP_VS_MH_TAB_INDEX` 8 to 17.
pub const MH_PRIMES: [u32; 10] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];
/// `CONFIG_IP_VS_MH_TAB_INDEX` of a default kernel.
pub const MH_TAB_INDEX_DEFAULT: u32 = 12;
/// `IP_VS_MH_TAB_SIZE` of a default kernel: `MH_PRIMES[12 - 8]`.
pub const MH_TAB_SIZE: usize = 4093;
/// `hash1` of `generate_hash_secret`: fixed, so that directors agree. Offsets and lookups use it.
pub const MH_HASH1: HsiphashKey = HsiphashKey([2_654_435_761, 2_654_435_761]);
/// `hash2` of `generate_hash_secret`: the skips use it.
pub const MH_HASH2: HsiphashKey = HsiphashKey([2_654_446_892, 2_654_446_892]);

/// What `mh` needs of one dest to build the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MhDest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// The dest's `last_weight`: see [`last_weight_after`]. Its current weight only decides usability.
    pub last_weight: u32,
}

/// Why an `mh` table cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MhError {
    /// `ip_vs_mh_reassign` refuses more dests than table slots (EINVAL).
    #[error("{dests} dests do not fit an mh table of {size} slots")]
    TooManyDests {
        /// Dests in the service, weight 0 included.
        dests: usize,
        /// Table size.
        size: usize,
    },
    /// `CONFIG_IP_VS_MH_TAB_INDEX` outside 8..=17.
    #[error("mh table index {0} is outside 8..=17")]
    BadTabIndex(u32),
}

/// A dest's `last_weight` after `ipvsadm -a` (`add`) or `-e` sets its weight to `weight`
/// (`__ip_vs_update_dest`): an add always sets it, an edit only to a non-zero weight, so quiescing a
/// dest (weight 0) leaves the `mh` table as it was.
pub fn last_weight_after(add: bool, old_last_weight: u32, weight: u32) -> u32 {
    if add || weight != 0 {
        weight
    } else {
        old_last_weight
    }
}

/// The table size for `CONFIG_IP_VS_MH_TAB_INDEX = tab_index`.
pub fn mh_tab_size(tab_index: u32) -> Result<usize, MhError> {
    tab_index
        .checked_sub(8)
        .and_then(|i| MH_PRIMES.get(i as usize))
        .map(|&p| p as usize)
        .ok_or(MhError::BadTabIndex(tab_index))
}

/// `ip_vs_mh_hashkey(af, addr, port, key, offset)` before the modulo: `hsiphash` of the 32-bit sum
/// `offset + port + fold(addr)` (wrapping, host order), `addr` folded by the service's family.
pub fn mh_hashkey(af: Af, addr: IpAddr, port: u16, key: &HsiphashKey, offset: u32) -> u32 {
    let v = offset
        .wrapping_add(u32::from(port))
        .wrapping_add(addr_fold_in(af, addr));
    hsiphash_1u32(v, key)
}

/// A dest's permutation (`ip_vs_mh_permutate`): `(offset, skip)` with `offset < size` and
/// `1 <= skip < size`; the dest prefers slots `offset, offset + skip, offset + 2 skip, ...` (mod size).
///
/// # Panics
/// If `size < 2` (table sizes come from [`mh_tab_size`]).
pub fn mh_offset_skip(af: Af, addr: IpAddr, port: u16, size: usize) -> (usize, usize) {
    let offset = mh_hashkey(af, addr, port, &MH_HASH1, 0) as usize % size;
    let skip = mh_hashkey(af, addr, port, &MH_HASH2, 0) as usize % (size - 1) + 1;
    (offset, skip)
}

/// `ip_vs_mh_gcd_weight`: gcd of the `last_weight`s > 0, 0 when there are none.
pub fn mh_gcd_weight(last_weights: &[u32]) -> u32 {
    last_weights.iter().filter(|&&w| w > 0).fold(0, |g, &w| gcd(g, w))
}

/// `ip_vs_mh_shift_weight`: how far turns are shifted right so that the heaviest dest's
/// `last_weight / gcd` keeps at most `tab_index / 2` significant bits.
pub fn mh_shift_weight(last_weights: &[u32], gcd: u32, tab_index: u32) -> u32 {
    if gcd < 1 {
        return 0;
    }
    let max = last_weights.iter().copied().max().unwrap_or(0);
    let fls = u32::BITS - (max / gcd).leading_zeros();
    fls.saturating_sub(tab_index / 2)
}

/// Slots a dest claims per round of the population: `(last_weight / gcd) >> rshift`, at least 1 for a
/// dest whose `last_weight` is not 0 (the kernel's `?: (lw != 0)`).
pub fn mh_turns(last_weight: u32, gcd: u32, rshift: u32) -> u32 {
    if gcd < 1 {
        return 0;
    }
    let t = (last_weight / gcd).checked_shr(rshift).unwrap_or(0);
    if t != 0 { t } else { u32::from(last_weight != 0) }
}

/// The lookup table of a default kernel ([`MH_TAB_SIZE`] slots). See [`mh_table_with_index`].
pub fn mh_table(af: Af, dests: &[MhDest]) -> Result<Vec<Option<usize>>, MhError> {
    mh_table_with_index(af, dests, MH_TAB_INDEX_DEFAULT)
}

/// `ip_vs_mh_reassign` for a kernel built with `CONFIG_IP_VS_MH_TAB_INDEX = tab_index`: each slot's dest
/// as a list index. `af` is the service's family (dest addresses are folded by it).
///
/// Population goes round after round over the list; in each round every dest with turns claims that
/// many slots in a row, each the first unclaimed slot on its permutation, until all slots are claimed.
/// Every slot is therefore `Some` unless no dest has a `last_weight` (then all are `None`). A dest with
/// `last_weight` 0 claims nothing; one quiesced by an edit keeps its slots.
///
/// # Errors
/// [`MhError::TooManyDests`] when the list is longer than the table, as the kernel refuses it; the
/// kernel then keeps its previous table (after an add) or fails the scheduler change (`-E`, `-A`).
/// [`MhError::BadTabIndex`] for a `tab_index` outside 8..=17.
pub fn mh_table_with_index(af: Af, dests: &[MhDest], tab_index: u32) -> Result<Vec<Option<usize>>, MhError> {
    let size = mh_tab_size(tab_index)?;
    if dests.len() > size {
        return Err(MhError::TooManyDests {
            dests: dests.len(),
            size,
        });
    }
    let mut table = vec![None; size];
    let last: Vec<u32> = dests.iter().map(|d| d.last_weight).collect();
    let gcd = mh_gcd_weight(&last);
    if gcd < 1 {
        return Ok(table);
    }
    let rshift = mh_shift_weight(&last, gcd, tab_index);

    struct Setup {
        perm: usize,
        skip: usize,
        turns: u32,
    }
    let mut setup: Vec<Setup> = dests
        .iter()
        .map(|d| {
            let (offset, skip) = mh_offset_skip(af, d.addr, d.port, size);
            Setup {
                perm: offset,
                skip,
                turns: mh_turns(d.last_weight, gcd, rshift),
            }
        })
        .collect();

    let mut claimed = vec![false; size];
    let mut n = 0;
    // gcd >= 1 means some dest has turns >= 1, so each round claims at least one slot; and a prime size
    // makes every permutation visit every slot, so the inner search always ends.
    while n < size {
        for (d, s) in setup.iter_mut().enumerate() {
            for _ in 0..s.turns {
                while claimed.get(s.perm).copied().unwrap_or(false) {
                    s.perm += s.skip;
                    if s.perm >= size {
                        s.perm -= size;
                    }
                }
                if let (Some(c), Some(slot)) = (claimed.get_mut(s.perm), table.get_mut(s.perm)) {
                    *c = true;
                    *slot = Some(d);
                }
                n += 1;
                if n == size {
                    return Ok(table);
                }
            }
        }
    }
    Ok(table)
}

/// The slot a new connection from `saddr:sport` hashes to in a table of `size` slots (the source port
/// counts only `with_port`, i.e. `mh-port`).
///
/// # Panics
/// If `size` is 0.
pub fn mh_index(saddr: IpAddr, sport: u16, with_port: bool, size: usize) -> usize {
    let port = if with_port { sport } else { 0 };
    mh_hashkey(Af::of(saddr), saddr, port, &MH_HASH1, 0) as usize % size
}

/// `ip_vs_mh_get`: the dest of the slot `saddr` (and `port`, 0 without `mh-port`) hashes to, if
/// `usable` (weight > 0, not overloaded).
pub fn mh_get(
    table: &[Option<usize>],
    saddr: IpAddr,
    port: u16,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    let hash = mh_hashkey(Af::of(saddr), saddr, port, &MH_HASH1, 0) as usize % table.len();
    table.get(hash).copied().flatten().filter(|&d| usable(d))
}

/// `ip_vs_mh_get_fallback`: like [`mh_get`], but when that dest is unusable, rehash the address with
/// offsets `(k + ihash) % size` for k = 0..size and take the first usable dest; stop at an empty slot.
///
/// Unlike `sh`'s, the probes depend on the whole address, not just on the first slot, so no per-slot
/// table can stand in for this.
pub fn mh_get_fallback(
    table: &[Option<usize>],
    saddr: IpAddr,
    port: u16,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let size = table.len();
    if size == 0 {
        return None;
    }
    let af = Af::of(saddr);
    let ihash = mh_hashkey(af, saddr, port, &MH_HASH1, 0) as usize % size;
    let first = table.get(ihash).copied().flatten()?;
    if usable(first) {
        return Some(first);
    }
    for k in 0..size {
        // roffset < size <= 131071, so it fits the kernel's unsigned int.
        let roffset = ((k + ihash) % size) as u32;
        let hash = mh_hashkey(af, saddr, port, &MH_HASH1, roffset) as usize % size;
        let d = table.get(hash).copied().flatten()?;
        if usable(d) {
            return Some(d);
        }
    }
    None
}

/// `ip_vs_mh_schedule` for a new connection from `saddr:sport`: the chosen dest's list index, or `None`
/// ("no destination available").
pub fn mh_schedule(
    table: &[Option<usize>],
    saddr: IpAddr,
    sport: u16,
    flags: HashFlags,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let port = if flags.port { sport } else { 0 };
    if flags.fallback {
        mh_get_fallback(table, saddr, port, usable)
    } else {
        mh_get(table, saddr, port, usable)
    }
}

/// The table with unusable dests' slots emptied: what the data plane indexes with [`mh_index`] for a
/// service without `mh-fallback`.
pub fn mh_lookup_table(table: &[Option<usize>], usable: impl Fn(usize) -> bool) -> Vec<Option<usize>> {
    table.iter().map(|b| b.filter(|&d| usable(d))).collect()
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn check_golden(text: &str) {
        let g = golden::parse(text);
        assert_eq!(g.scheduler, "mh");
        let list = g.list_order();
        let dests: Vec<MhDest> = list
            .iter()
            .map(|d| MhDest {
                addr: d.addr,
                port: d.port,
                last_weight: last_weight_after(true, 0, d.weight),
            })
            .collect();
        let table = mh_table(Af::Inet, &dests).unwrap();
        golden::replay(&g, &list, |addr, port, flags| {
            mh_schedule(&table, addr, port, flags, |i| list[i].weight > 0)
        });
    }

    #[test]
    fn golden_dr_mh() {
        check_golden(include_str!("testdata/dr-mh.txt"));
    }

    #[test]
    fn golden_nat_mh() {
        check_golden(include_str!("testdata/nat-mh.txt"));
    }

    #[test]
    fn golden_tun_mh() {
        check_golden(include_str!("testdata/tun-mh.txt"));
    }

    #[test]
    fn sizes_are_the_kernels_primes() {
        assert_eq!(mh_tab_size(MH_TAB_INDEX_DEFAULT), Ok(MH_TAB_SIZE));
        assert_eq!(mh_tab_size(8), Ok(251));
        assert_eq!(mh_tab_size(17), Ok(131071));
        assert_eq!(mh_tab_size(7), Err(MhError::BadTabIndex(7)));
        assert_eq!(mh_tab_size(18), Err(MhError::BadTabIndex(18)));
        for p in MH_PRIMES {
            assert!(
                (2..p).take_while(|d| d * d <= p).all(|d| p % d != 0),
                "{p} is prime"
            );
        }
    }

    #[test]
    fn turns_and_shift() {
        // Weights up to 63 (6 bits at index 12) are used as they are.
        assert_eq!(mh_shift_weight(&[63, 1], 1, 12), 0);
        assert_eq!(mh_shift_weight(&[64, 1], 1, 12), 1);
        assert_eq!(mh_turns(64, 1, 1), 32);
        assert_eq!(mh_turns(1, 1, 1), 1, "a small weight still gets one turn");
        assert_eq!(mh_turns(0, 1, 0), 0);
        assert_eq!(mh_gcd_weight(&[0, 4, 6]), 2);
        assert_eq!(mh_gcd_weight(&[0, 0]), 0);
        assert_eq!(last_weight_after(false, 5, 0), 5);
        assert_eq!(last_weight_after(false, 5, 7), 7);
        assert_eq!(last_weight_after(true, 5, 0), 0);
    }

    #[test]
    fn no_weight_gives_an_empty_table_and_too_many_dests_fail() {
        let d = |i: u8, w| MhDest {
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)),
            port: 80,
            last_weight: w,
        };
        let t = mh_table(Af::Inet, &[d(1, 0), d(2, 0)]).unwrap();
        assert_eq!(t.len(), MH_TAB_SIZE);
        assert!(t.iter().all(Option::is_none));
        assert!(mh_table(Af::Inet, &[]).unwrap().iter().all(Option::is_none));
        let many: Vec<MhDest> = (0..252u32)
            .map(|i| MhDest {
                addr: IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
                port: 80,
                last_weight: 1,
            })
            .collect();
        assert_eq!(
            mh_table_with_index(Af::Inet, &many, 8),
            Err(MhError::TooManyDests {
                dests: 252,
                size: 251
            })
        );
        assert!(
            mh_table_with_index(Af::Inet, &many[..251], 8)
                .unwrap()
                .iter()
                .all(Option::is_some)
        );
    }

    #[test]
    fn quiesced_dest_keeps_its_slots_and_fallback_moves_its_clients() {
        let list = [(11u8, 1u32), (12, 1), (13, 1)];
        let dests: Vec<MhDest> = list
            .iter()
            .map(|&(i, w)| MhDest {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)),
                port: 80,
                last_weight: w,
            })
            .collect();
        let before = mh_table(Af::Inet, &dests).unwrap();
        // `-e ... -w 0` on the middle dest: last_weight stays 1, so the table is unchanged.
        let mut after_dests = dests.clone();
        after_dests[1].last_weight = last_weight_after(false, 1, 0);
        assert_eq!(mh_table(Af::Inet, &after_dests).unwrap(), before);
        let usable = |d: usize| d != 1;
        let mut moved = 0;
        for c in 0..=255u8 {
            let a = IpAddr::V4(Ipv4Addr::new(198, 18, 2, c));
            let plain = mh_get(&before, a, 0, |_| true).unwrap();
            let fb = mh_get_fallback(&before, a, 0, usable).unwrap();
            if plain == 1 {
                assert_eq!(mh_get(&before, a, 0, usable), None);
                assert_ne!(fb, 1);
                moved += 1;
            } else {
                assert_eq!(fb, plain, "clients of live dests stay put");
            }
        }
        assert!(moved > 0);
    }

    fn arb_dests() -> impl Strategy<Value = Vec<MhDest>> {
        prop::collection::btree_set((any::<u32>(), any::<u16>()), 1..12).prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), prop::collection::vec(0u32..200, n)).prop_map(|(keys, ws)| {
                keys.into_iter()
                    .zip(ws)
                    .map(|((a, p), w)| MhDest {
                        addr: IpAddr::V4(Ipv4Addr::from(a)),
                        port: p,
                        last_weight: w,
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn table_is_full_deterministic_and_holds_every_weighted_dest(dests in arb_dests()) {
            let t = mh_table_with_index(Af::Inet, &dests, 8).unwrap();
            prop_assert_eq!(&t, &mh_table_with_index(Af::Inet, &dests, 8).unwrap());
            prop_assert_eq!(t.len(), 251);
            let any_weight = dests.iter().any(|d| d.last_weight > 0);
            prop_assert!(t.iter().all(|s| s.is_some() == any_weight));
            for (i, d) in dests.iter().enumerate() {
                prop_assert_eq!(t.contains(&Some(i)), d.last_weight > 0, "dest {}", i);
            }
        }

        #[test]
        fn equal_weights_share_the_table_fairly(dests in arb_dests()) {
            let dests: Vec<MhDest> = dests.into_iter().map(|d| MhDest { last_weight: 1, ..d }).collect();
            let t = mh_table(Af::Inet, &dests).unwrap();
            // Round-robin population with one turn each: counts differ by at most one.
            let counts: Vec<usize> = (0..dests.len()).map(|i| t.iter().filter(|s| **s == Some(i)).count()).collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", counts);
        }

        #[test]
        fn lookups_never_yield_an_unusable_dest(
            dests in arb_dests(),
            down in prop::collection::vec(any::<bool>(), 12),
            addr in any::<u32>(),
            port in any::<u16>(),
        ) {
            let t = mh_table_with_index(Af::Inet, &dests, 8).unwrap();
            let usable = |d: usize| !down[d] && dests[d].last_weight > 0;
            let a = IpAddr::V4(Ipv4Addr::from(addr));
            for fallback in [false, true] {
                let flags = HashFlags { port: true, fallback };
                if let Some(d) = mh_schedule(&t, a, port, flags, usable) {
                    prop_assert!(usable(d));
                }
            }
            let lookup = mh_lookup_table(&t, usable);
            prop_assert_eq!(lookup[mh_index(a, port, true, t.len())], mh_get(&t, a, port, usable));
        }
    }
}
