//! IPVS `sh` (source hashing, net/netfilter/ipvs/ip_vs_sh.c): a 256-bucket table of dests indexed by a
//! hash of the client's address (and source port with `sh-port`).
//!
//! Dests are given in IPVS list order (most recently added first) and named by their index in it. The
//! kernel rebuilds the table on every add, delete and edit of a dest, from the list alone, so the table
//! is a pure function of the weights in list order.

use std::net::IpAddr;

use super::hash::{addr_fold, hash_32};

/// `IP_VS_SH_TAB_BITS` (`CONFIG_IP_VS_SH_TAB_BITS`, default 8).
pub const SH_TAB_BITS: u32 = 8;
/// `IP_VS_SH_TAB_SIZE`: number of buckets.
pub const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;

/// An `sh` (or `dh`) bucket table: the list index of each bucket's dest, `None` only when the service
/// has no dests.
pub type BucketTable = [Option<usize>; SH_TAB_SIZE];

/// `-b` flags of a hashing scheduler: `sh-port`/`mh-port` and `sh-fallback`/`mh-fallback`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HashFlags {
    /// Hash the client's source port too (`IP_VS_SVC_F_SCHED2`).
    pub port: bool,
    /// Probe further buckets when the hashed one's dest is unusable (`IP_VS_SVC_F_SCHED1`).
    pub fallback: bool,
}

impl HashFlags {
    /// From a service's `-b` flag names. The kernel sees only the bits (`sh-fallback`, `mh-fallback`
    /// and `flag-1` are `IP_VS_SVC_F_SCHED1`; `sh-port`, `mh-port` and `flag-2` are `SCHED2`), so any
    /// name of a bit sets it whatever the scheduler.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let mut f = HashFlags::default();
        for n in names {
            match n.as_ref() {
                "sh-fallback" | "mh-fallback" | "flag-1" => f.fallback = true,
                "sh-port" | "mh-port" | "flag-2" => f.port = true,
                _ => {}
            }
        }
        f
    }
}

/// `ip_vs_sh_reassign`: bucket `i` gets the next dest of a round-robin walk over the list in which
/// each dest takes `weight` consecutive buckets before the walk moves on (weight 0 still takes one,
/// because the kernel tests `++count >= weight` after assigning). The walk restarts at the head until
/// all 256 buckets are assigned, so a heavy dest can be cut short in the last round.
pub fn sh_table(weights: &[u32]) -> BucketTable {
    let mut table = [None; SH_TAB_SIZE];
    if weights.is_empty() {
        return table;
    }
    let (mut d, mut count) = (0usize, 0u64);
    for bucket in table.iter_mut() {
        *bucket = Some(d);
        count += 1;
        if count >= u64::from(weights.get(d).copied().unwrap_or(0)) {
            d = (d + 1) % weights.len();
            count = 0;
        }
    }
    table
}

/// `ip_vs_sh_hashkey(af, addr, port, offset)`: `(offset + hash_32(port + fold(addr), 8)) & 255`, the
/// port in host order (0 unless `sh-port`), the addition wrapping at 32 bits as the kernel's.
pub fn sh_hashkey(addr: IpAddr, port: u16, offset: u32) -> usize {
    let h = hash_32(u32::from(port).wrapping_add(addr_fold(addr)), SH_TAB_BITS);
    (offset.wrapping_add(h) as usize) & (SH_TAB_SIZE - 1)
}

/// The bucket a new connection from `saddr:sport` hashes to (the source port counts only
/// `with_port`, i.e. `sh-port`).
pub fn sh_index(saddr: IpAddr, sport: u16, with_port: bool) -> u8 {
    let port = if with_port { sport } else { 0 };
    // sh_hashkey masks to 8 bits.
    sh_hashkey(saddr, port, 0) as u8
}

/// `ip_vs_sh_get`: the dest of bucket `index` if `usable` (weight > 0 and not overloaded), else none.
pub fn sh_get(table: &BucketTable, index: u8, usable: impl Fn(usize) -> bool) -> Option<usize> {
    table
        .get(usize::from(index))
        .copied()
        .flatten()
        .filter(|&d| usable(d))
}

/// `ip_vs_sh_get_fallback`: like [`sh_get`], but when the bucket's dest is unusable, probe bucket
/// `hashkey(addr, port, (k + ihash) % 256)` for k = 0..256 and take the first usable dest; stop at an
/// empty bucket.
///
/// That probe is `(k + 2 * ihash) & 255`: it depends on the client only through `ihash`, which is why
/// this takes the bucket index and not the address, and why [`sh_lookup_table`] can precompute it.
pub fn sh_get_fallback(table: &BucketTable, ihash: u8, usable: impl Fn(usize) -> bool) -> Option<usize> {
    let ihash = usize::from(ihash);
    let first = table.get(ihash).copied().flatten()?;
    if usable(first) {
        return Some(first);
    }
    for k in 0..SH_TAB_SIZE {
        let roffset = (k + ihash) % SH_TAB_SIZE;
        let probe = (roffset + ihash) & (SH_TAB_SIZE - 1);
        let d = table.get(probe).copied().flatten()?;
        if usable(d) {
            return Some(d);
        }
    }
    None
}

/// `ip_vs_sh_schedule` for a new connection from `saddr:sport`: the chosen dest's list index, or
/// `None` ("no destination available").
pub fn sh_schedule(
    table: &BucketTable,
    saddr: IpAddr,
    sport: u16,
    flags: HashFlags,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let index = sh_index(saddr, sport, flags.port);
    if flags.fallback {
        sh_get_fallback(table, index, usable)
    } else {
        sh_get(table, index, usable)
    }
}

/// What each bucket index finally yields, availability (and fallback) applied: a table the data plane
/// can index with [`sh_index`] alone. Must be recomputed when a dest's usability changes.
pub fn sh_lookup_table(table: &BucketTable, fallback: bool, usable: impl Fn(usize) -> bool) -> BucketTable {
    let mut out = [None; SH_TAB_SIZE];
    for (i, slot) in (0..=u8::MAX).zip(out.iter_mut()) {
        *slot = if fallback {
            sh_get_fallback(table, i, &usable)
        } else {
            sh_get(table, i, &usable)
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Replays every run of a golden `sh` file: the setup's dests in IPVS list order, each recorded
    /// connection scheduled with the service's `-b` flags of the time.
    fn check_golden(text: &str) {
        let g = golden::parse(text);
        assert_eq!(g.scheduler, "sh");
        let list = g.list_order();
        let weights: Vec<u32> = list.iter().map(|d| d.weight).collect();
        let table = sh_table(&weights);
        golden::replay(&g, &list, |addr, port, flags| {
            sh_schedule(&table, addr, port, flags, |i| list[i].weight > 0)
        });
    }

    #[test]
    fn golden_dr_sh() {
        check_golden(include_str!("testdata/dr-sh.txt"));
    }

    #[test]
    fn golden_nat_sh() {
        check_golden(include_str!("testdata/nat-sh.txt"));
    }

    #[test]
    fn golden_tun_sh() {
        check_golden(include_str!("testdata/tun-sh.txt"));
    }

    #[test]
    fn buckets_follow_weights_in_list_order() {
        let t = sh_table(&[2, 0, 1]);
        let head: Vec<usize> = t.iter().take(8).map(|b| b.unwrap()).collect();
        assert_eq!(head, [0, 0, 1, 2, 0, 0, 1, 2]);
        // 256 = 64 rounds of 4 buckets.
        assert_eq!(t.iter().filter(|b| **b == Some(0)).count(), 128);
        // A weight larger than the table gives every bucket to the head dest.
        assert!(sh_table(&[300, 1]).iter().all(|b| *b == Some(0)));
        assert!(sh_table(&[]).iter().all(Option::is_none));
    }

    #[test]
    fn quiesced_dest_keeps_its_buckets_and_fallback_skips_it() {
        let table = sh_table(&[1, 1, 1]);
        let usable = |d: usize| d != 1;
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 4));
        let i = sh_index(a, 0, false);
        assert_eq!(
            table[usize::from(i)],
            Some(1),
            "198.18.0.4 hashes to rs2 in the golden file"
        );
        assert_eq!(sh_get(&table, i, usable), None);
        let f = sh_get_fallback(&table, i, usable).expect("fallback finds a dest");
        assert_ne!(f, 1);
        assert_eq!(sh_get_fallback(&table, i, |_| false), None);
    }

    /// The literal kernel loop: each probe rehashes the address with offset `roffset`.
    fn kernel_fallback(
        table: &BucketTable,
        addr: IpAddr,
        port: u16,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let ihash = sh_hashkey(addr, port, 0);
        let d = table[ihash]?;
        if usable(d) {
            return Some(d);
        }
        for offset in 0..SH_TAB_SIZE as u32 {
            let roffset = (offset + ihash as u32) % SH_TAB_SIZE as u32;
            let d = table[sh_hashkey(addr, port, roffset)]?;
            if usable(d) {
                return Some(d);
            }
        }
        None
    }

    proptest! {
        #[test]
        fn fallback_by_bucket_is_the_kernels_probe(
            weights in prop::collection::vec(0u32..5, 1..8),
            down in prop::collection::vec(any::<bool>(), 8),
            addr in any::<u32>(),
            port in any::<u16>(),
        ) {
            let table = sh_table(&weights);
            let usable = |d: usize| !down[d];
            let a = IpAddr::V4(Ipv4Addr::from(addr));
            let flags = HashFlags { port: true, fallback: true };
            prop_assert_eq!(
                sh_schedule(&table, a, port, flags, usable),
                kernel_fallback(&table, a, port, usable)
            );
            let lookup = sh_lookup_table(&table, true, usable);
            prop_assert_eq!(lookup[usize::from(sh_index(a, port, true))], kernel_fallback(&table, a, port, usable));
        }

        #[test]
        fn every_dest_gets_a_bucket_and_tables_are_deterministic(
            weights in prop::collection::vec(0u32..=4, 1..40),
        ) {
            // Sum of max(w, 1) <= 256 here, so one full round fits and every dest appears.
            let t = sh_table(&weights);
            prop_assert_eq!(t, sh_table(&weights));
            prop_assert!(t.iter().all(Option::is_some));
            for (d, &w) in weights.iter().enumerate() {
                let n = t.iter().filter(|b| **b == Some(d)).count();
                prop_assert!(n >= w.max(1) as usize);
            }
        }

        #[test]
        fn lookup_table_never_yields_an_unusable_dest(
            weights in prop::collection::vec(0u32..5, 0..8),
            fallback in any::<bool>(),
        ) {
            let table = sh_table(&weights);
            let usable = |d: usize| weights[d] > 0;
            let lookup = sh_lookup_table(&table, fallback, usable);
            prop_assert!(lookup.iter().flatten().all(|&d| weights[d] > 0));
            if fallback && weights.iter().any(|&w| w > 0) {
                // Probes from any bucket cover all 256 buckets, so fallback always finds a live dest.
                prop_assert!(lookup.iter().all(Option::is_some));
            }
        }
    }
}
