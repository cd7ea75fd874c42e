//! Virtual service lookup. Mirrors bpf/lib/svc.h.

use rvs_abi::{SvcKey, SvcVal};

use crate::maps::Maps;
use crate::parse::Pkt;

/// Mirrors `rvs_svc_lookup` (bpf/lib/svc.h).
pub fn rvs_svc_lookup(maps: &Maps, pkt: &Pkt) -> Option<SvcVal> {
    // Every byte of the key is set: the kernel's hash compares all 20.
    let key = SvcKey {
        addr: pkt.daddr,
        port: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
    };
    maps.rvs_svc.lookup(&key).copied()
}
