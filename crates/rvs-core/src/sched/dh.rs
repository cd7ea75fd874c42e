//! IPVS `dh` (destination hashing, net/netfilter/ipvs/ip_vs_dh.c): a 256-bucket table of dests indexed
//! by a hash of the packet's destination address.
//!
//! Dests are named by their index in IPVS list order (most recently added first). The kernel rebuilds
//! the table when a dest is added or deleted; weights play no part in it (and `dh` has no `upd_dest`
//! hook), they only decide whether a bucket's dest may take a new connection.

use std::net::IpAddr;

use super::hash::{addr_fold, hash_32};
use super::sh::{BucketTable, SH_TAB_SIZE};

/// `IP_VS_DH_TAB_BITS` (`CONFIG_IP_VS_DH_TAB_BITS`, default 8).
pub const DH_TAB_BITS: u32 = 8;
/// `IP_VS_DH_TAB_SIZE`: number of buckets (the same as `sh`'s, so both share [`BucketTable`]).
pub const DH_TAB_SIZE: usize = SH_TAB_SIZE;

/// `ip_vs_dh_reassign`: bucket `i` gets dest `i % dests`, one bucket per dest per round whatever its
/// weight; all `None` for a service without dests.
pub fn dh_table(dests: usize) -> BucketTable {
    let mut table = [None; DH_TAB_SIZE];
    if dests > 0 {
        for (i, bucket) in table.iter_mut().enumerate() {
            *bucket = Some(i % dests);
        }
    }
    table
}

/// `ip_vs_dh_hashkey(af, daddr)`: `hash_32(fold(daddr), 8)`.
pub fn dh_index(daddr: IpAddr) -> u8 {
    // hash_32(_, 8) < 256.
    hash_32(addr_fold(daddr), DH_TAB_BITS) as u8
}

/// `ip_vs_dh_schedule`: the dest of the bucket `daddr` hashes to if `usable` (available, weight > 0,
/// not overloaded), else `None` ("no destination available"). There is no fallback.
pub fn dh_schedule(table: &BucketTable, daddr: IpAddr, usable: impl Fn(usize) -> bool) -> Option<usize> {
    table
        .get(usize::from(dh_index(daddr)))
        .copied()
        .flatten()
        .filter(|&d| usable(d))
}

/// The table with unusable dests' buckets emptied: what the data plane indexes with [`dh_index`].
pub fn dh_lookup_table(table: &BucketTable, usable: impl Fn(usize) -> bool) -> BucketTable {
    table.map(|b| b.filter(|&d| usable(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn buckets_are_round_robin_whatever_the_weights() {
        let t = dh_table(3);
        let head: Vec<usize> = t.iter().take(7).map(|b| b.unwrap()).collect();
        assert_eq!(head, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(t[255], Some(0));
        assert!(dh_table(0).iter().all(Option::is_none));
    }

    #[test]
    fn index_is_hash_32_of_the_folded_destination() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(
            u32::from(dh_index(a)),
            0xC612_0064u32.wrapping_mul(0x61C8_8647) >> 24
        );
        let b: Ipv6Addr = "2001:db8::64".parse().unwrap();
        let fold = 0x2001_0db8u32 ^ 0x64;
        assert_eq!(
            u32::from(dh_index(IpAddr::V6(b))),
            fold.wrapping_mul(0x61C8_8647) >> 24
        );
    }

    #[test]
    fn unusable_bucket_gives_no_dest() {
        let t = dh_table(2);
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
        let d = dh_schedule(&t, a, |_| true).unwrap();
        assert_eq!(dh_schedule(&t, a, |x| x != d), None);
        assert_eq!(dh_lookup_table(&t, |x| x != d)[usize::from(dh_index(a))], None);
    }

    proptest! {
        #[test]
        fn every_dest_appears_and_tables_are_deterministic(n in 1usize..=256) {
            let t = dh_table(n);
            prop_assert_eq!(t, dh_table(n));
            for d in 0..n {
                prop_assert!(t.contains(&Some(d)));
            }
            prop_assert!(t.iter().all(|b| b.is_some_and(|d| d < n)));
        }
    }
}
