//! Virtual service lookup. Mirrors bpf/lib/svc.h.

use rvs_abi::{Be16, CFG_F_PORT0, SVC_PROTO_FWMARK, SvcKey, SvcVal};

use crate::maps::Maps;
use crate::mark::rvs_mark_of;
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
    if let Some(svc) = maps.rvs_svc.lookup(&key) {
        return Some(*svc);
    }
    // IPVS's catch-all: the port-0 service of the address (useful only persistent; the encoder gives
    // a non-persistent one no real server, as IPVS refuses to schedule it).
    let key = SvcKey {
        port: Be16::default(),
        ..key
    };
    if maps.rvs_cfg.lookup(0).is_some_and(|c| c.flags & CFG_F_PORT0 != 0)
        && let Some(svc) = maps.rvs_svc.lookup(&key)
    {
        return Some(*svc);
    }
    let mark = rvs_mark_of(maps, pkt);
    if mark == 0 {
        return None;
    }
    let mut addr = rvs_abi::Addr::default();
    addr[0] = rvs_abi::Be32::from_wire(mark.to_ne_bytes());
    let key = SvcKey {
        addr,
        port: Be16::default(),
        proto: SVC_PROTO_FWMARK,
        family: pkt.family,
    };
    maps.rvs_svc.lookup(&key).copied()
}
