//! Firewall marks: the classification of a packet that matches no service by address. Mirrors
//! bpf/lib/mark.h.

use rvs_abi::{Family, MARK_RANGES, MarkAddr, MarkKey};

use crate::maps::Maps;
use crate::parse::Pkt;

/// Mirrors `rvs_mark_of` (bpf/lib/mark.h).
pub fn rvs_mark_of(maps: &Maps, pkt: &Pkt) -> u32 {
    let port = pkt.dport.get();
    let key = MarkKey {
        prefixlen: if pkt.family == Family::Inet as u8 {
            32 + 32
        } else {
            32 + 128
        },
        data: MarkAddr {
            family: pkt.family,
            proto: pkt.proto,
            _pad: [0; 2],
            addr: pkt.daddr,
        },
    };
    let Some(val) = maps.rvs_mark.lookup(&key) else {
        return 0;
    };
    val.ranges
        .iter()
        .take((val.n as usize).min(MARK_RANGES))
        .find(|r| (r.lo..=r.hi).contains(&port))
        .map_or(0, |r| r.mark)
}
