//! Scheduler execution: walks the cyclic table (rr, wrr) or indexes the lookup table (sh, dh, mh) that
//! rvs-core::sched computes. Mirrors bpf/lib/sched.h.

use rvs_abi::{
    Addr, DEST_F_VALID, DestVal, DropReason, Family, SVC_F_SCHED_FALLBACK, SVC_F_SCHED_PORT, Sched, SvcVal,
};

use crate::maps::Maps;
use crate::parse::Pkt;

/// Mirrors `rvs_sched_hash_32` (bpf/lib/sched.h).
pub fn rvs_sched_hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Mirrors `rvs_sched_addr_fold` (bpf/lib/sched.h).
pub fn rvs_sched_addr_fold(addr: &Addr, family: u8) -> u32 {
    if family == Family::Inet6 as u8 {
        addr[0].get() ^ addr[1].get() ^ addr[2].get() ^ addr[3].get()
    } else {
        addr[0].get()
    }
}

/// One SipRound (`RVS_SIPROUND`).
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Mirrors `rvs_sched_mh_hash` (bpf/lib/sched.h).
pub fn rvs_sched_mh_hash(v: u32) -> u32 {
    const K: u64 = 2_654_435_761;
    let mut s = [
        0x736f_6d65_7073_6575 ^ K,
        0x646f_7261_6e64_6f6d ^ K,
        0x6c79_6765_6e65_7261 ^ K,
        0x7465_6462_7974_6573 ^ K,
    ];
    let b = u64::from(v) | (4u64 << 56);
    s[3] ^= b;
    sipround(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    for _ in 0..3 {
        sipround(&mut s);
    }
    // Truncation is the kernel's: hsiphash returns the u64 as u32.
    ((s[0] ^ s[1]) ^ (s[2] ^ s[3])) as u32
}

/// Mirrors `rvs_sched_mh_key` (bpf/lib/sched.h).
pub fn rvs_sched_mh_key(svc: &SvcVal, pkt: &Pkt) -> u32 {
    let port = if svc.flags & SVC_F_SCHED_PORT != 0 {
        u32::from(pkt.sport.get())
    } else {
        0
    };
    port.wrapping_add(rvs_sched_addr_fold(&pkt.saddr, pkt.family))
}

/// Mirrors `rvs_sched_index` (bpf/lib/sched.h). `len` is not 0.
pub fn rvs_sched_index(maps: &mut Maps, svc: &SvcVal, pkt: &Pkt, len: u32) -> Result<u32, DropReason> {
    let port = if svc.flags & SVC_F_SCHED_PORT != 0 {
        u32::from(pkt.sport.get())
    } else {
        0
    };
    let fold = |a: &Addr| rvs_sched_addr_fold(a, pkt.family);
    if svc.sched == Sched::Sh as u32 {
        return Ok(rvs_sched_hash_32(port.wrapping_add(fold(&pkt.saddr)), 8) % len);
    }
    if svc.sched == Sched::Dh as u32 {
        return Ok(rvs_sched_hash_32(fold(&pkt.daddr), 8) % len);
    }
    if svc.sched == Sched::Mh as u32 {
        return Ok(rvs_sched_mh_hash(rvs_sched_mh_key(svc, pkt)) % len);
    }
    let Some(st) = maps.rvs_svc_st.lookup_mut(svc.id) else {
        return Err(DropReason::NoDest);
    };
    // __sync_fetch_and_add: the cursor advances even when the slot turns out unusable.
    let pos = st.pos;
    st.pos = st.pos.wrapping_add(1);
    Ok((pos % u64::from(len)) as u32)
}

/// Mirrors `rvs_sched_dest` (bpf/lib/sched.h).
pub fn rvs_sched_dest(maps: &Maps, svc: &SvcVal, id: u32) -> Option<DestVal> {
    let d = maps.rvs_dest.lookup(id)?;
    if d.flags & DEST_F_VALID == 0 || d.svc_id != svc.id {
        return None;
    }
    if svc.flags & SVC_F_SCHED_FALLBACK != 0 && d.weight == 0 {
        return None;
    }
    Some(d)
}

/// State of one `ip_vs_mh_get_fallback` probe sequence. Mirrors `struct rvs_mh_probe`.
struct MhProbe<'a> {
    svc: &'a SvcVal,
    v: u32,
    ihash: u32,
    len: u32,
    found: Option<(u32, DestVal)>,
}

/// Mirrors `rvs_sched_mh_probe` (bpf/lib/sched.h). Returns 1 to stop, as a `bpf_loop` callback.
fn rvs_sched_mh_probe(maps: &Maps, k: u64, p: &mut MhProbe<'_>) -> i64 {
    let roffset = ((k + u64::from(p.ihash)) % u64::from(p.len)) as u32;
    let slot = p
        .svc
        .sched_base
        .wrapping_add(rvs_sched_mh_hash(roffset.wrapping_add(p.v)) % p.len);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return 1;
    };
    match rvs_sched_dest(maps, p.svc, id) {
        Some(d) => {
            p.found = Some((id, d));
            1
        }
        None => 0,
    }
}

/// Mirrors `rvs_sched_pick` (bpf/lib/sched.h). `Ok((dest_id, dest))` or the drop reason.
pub fn rvs_sched_pick(maps: &mut Maps, svc: &SvcVal, pkt: &Pkt) -> Result<(u32, DestVal), DropReason> {
    let len = svc.sched_len;
    if len == 0 {
        return Err(DropReason::NoDest);
    }
    let index = rvs_sched_index(maps, svc, pkt, len)?;
    let slot = svc.sched_base.wrapping_add(index);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return Err(DropReason::NoDest);
    };
    if let Some(d) = rvs_sched_dest(maps, svc, id) {
        return Ok((id, d));
    }
    if svc.sched == Sched::Mh as u32 && svc.flags & SVC_F_SCHED_FALLBACK != 0 {
        let mut p = MhProbe {
            svc,
            v: rvs_sched_mh_key(svc, pkt),
            ihash: index,
            len,
            found: None,
        };
        // bpf_loop(len, ...): at most len probes, stopping when the callback returns 1.
        for k in 0..u64::from(len) {
            if rvs_sched_mh_probe(maps, k, &mut p) == 1 {
                break;
            }
        }
        return p.found.ok_or(DropReason::NoDest);
    }
    Err(DropReason::NoDest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::{MapOp, SvcState};

    fn dest(svc_id: u32) -> DestVal {
        DestVal {
            svc_id,
            flags: DEST_F_VALID,
            ..Default::default()
        }
    }

    #[test]
    fn walks_the_table_cyclically_from_the_cursor() {
        let mut m = Maps::new(16);
        let mut ops = vec![MapOp::SvcStateSet {
            id: 3,
            val: SvcState { pos: 1 },
        }];
        for (i, d) in [7u32, 8, 9].into_iter().enumerate() {
            ops.push(MapOp::DestSet { id: d, val: dest(3) });
            ops.push(MapOp::SchedSet {
                slot: 100 + i as u32,
                dest_id: d,
            });
        }
        m.apply(&ops).unwrap();
        let svc = SvcVal {
            id: 3,
            sched_base: 100,
            sched_len: 3,
            ..Default::default()
        };
        let picks: Vec<u32> = (0..5)
            .map(|_| rvs_sched_pick(&mut m, &svc, &Pkt::default()).unwrap().0)
            .collect();
        assert_eq!(picks, [8, 9, 7, 8, 9]);
    }

    #[test]
    fn hashes_are_the_kernels() {
        // include/linux/hash.h: the top bits of val * GOLDEN_RATIO_32.
        assert_eq!(rvs_sched_hash_32(1, 8), 0x61);
        assert_eq!(rvs_sched_hash_32(2, 8), 0xc3);
        let a6 = rvs_abi::addr_v6("2001:db8::1:2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(
            rvs_sched_addr_fold(&a6, Family::Inet6 as u8),
            0x2001_0db8 ^ 0x0001_0002
        );
        let a4 = rvs_abi::addr_v4([198, 18, 0, 2]);
        assert_eq!(rvs_sched_addr_fold(&a4, Family::Inet as u8), 0xC612_0002);
    }

    #[test]
    fn empty_table_or_foreign_dest_is_no_dest() {
        let mut m = Maps::new(16);
        let svc = SvcVal {
            id: 1,
            sched_base: 0,
            sched_len: 0,
            ..Default::default()
        };
        assert_eq!(
            rvs_sched_pick(&mut m, &svc, &Pkt::default()),
            Err(DropReason::NoDest)
        );
        m.apply(&[MapOp::DestSet { id: 0, val: dest(2) }]).unwrap();
        let svc = SvcVal { sched_len: 1, ..svc };
        assert_eq!(
            rvs_sched_pick(&mut m, &svc, &Pkt::default()),
            Err(DropReason::NoDest)
        );
        assert_eq!(m.rvs_svc_st.lookup(1).unwrap().pos, 1, "the cursor moved anyway");
    }
}
