//! Expiry of connection entries, decided in the kernel by `rvs_xdp_expire` (whose mirror lives with the
//! other programs in [`crate::xdp`]). Mirrors bpf/lib/expire.h, which explains why the daemon does not
//! delete entries itself.

use rvs_abi::{
    CONN_C_DEAD, CONN_F_REPLY, CONN_F_TEMPLATE, ConnKey, ConnRep, ConnVal, DEST_F_VALID, ExpireHdr,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::conn::{
    rvs_conn_claim, rvs_conn_expired, rvs_conn_w_cflags, rvs_conn_w_state, rvs_conn_word_read,
};
use crate::maps::Maps;
use crate::persist::rvs_persist_live;

/// `RVS_EXPIRE_CLAIM_GRACE_NS`: a claimed entry younger than this belongs to the packet that claimed it.
pub const RVS_EXPIRE_CLAIM_GRACE_NS: u64 = 1_000_000_000;

/// Mirrors `rvs_expire_reply_live` (bpf/lib/expire.h).
pub fn rvs_expire_reply_live(maps: &Maps, rkey: &ConnKey, rep: &ConnRep) -> bool {
    let svc_id = rep.svc_id;
    let Some(vs) = maps.rvs_svc_addr.lookup(svc_id) else {
        return false;
    };
    match maps.rvs_svc.lookup(&vs) {
        Some(svc) if svc.id == svc_id => {}
        _ => return false,
    }
    let key = ConnKey {
        saddr: rkey.daddr,
        daddr: rep.vaddr,
        sport: rkey.dport,
        dport: rep.vport,
        proto: rkey.proto,
        family: rkey.family,
        _pad: [0; 2],
    };
    maps.rvs_conn
        .lookup(&key)
        .is_some_and(|conn| conn.flags & CONN_F_REPLY == 0 && conn.dest_id == rep.dest_id)
}

/// Mirrors `rvs_expire_dest_live` (bpf/lib/expire.h).
pub fn rvs_expire_dest_live(maps: &Maps, conn: &ConnVal) -> bool {
    maps.rvs_dest.lookup(conn.dest_id).is_some_and(|dest| {
        dest.flags & DEST_F_VALID != 0 && dest.svc_id == conn.svc_id && dest.dgen == conn.dest_gen
    })
}

/// Mirrors `rvs_expire_template_live` (bpf/lib/expire.h).
pub fn rvs_expire_template_live(maps: &Maps, t: &ConnVal, w: u32, now_ns: u64) -> bool {
    let svc_id = t.svc_id;
    let Some(vs) = maps.rvs_svc_addr.lookup(svc_id) else {
        return false;
    };
    let svc = match maps.rvs_svc.lookup(&vs) {
        Some(svc) if svc.id == svc_id => *svc,
        _ => return false,
    };
    rvs_persist_live(t, w, &svc, now_ns) && rvs_expire_dest_live(maps, t)
}

/// Mirrors `rvs_expire_one` (bpf/lib/expire.h). True if it deleted the entry.
pub fn rvs_expire_one(maps: &mut Maps, key: &ConnKey, now_ns: u64) -> bool {
    let Some(mut conn) = maps.rvs_conn.lookup(key).copied() else {
        return false;
    };
    if conn.flags & CONN_F_REPLY != 0 {
        if rvs_expire_reply_live(maps, key, &conn.as_rep()) {
            return false;
        }
    } else {
        let w = rvs_conn_word_read(&conn);
        if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0 {
            // u64 addition as the C's (a last_ns near the top of the clock never comes).
            if now_ns < conn.last_ns.wrapping_add(RVS_EXPIRE_CLAIM_GRACE_NS) {
                return false;
            }
        } else {
            let live = if conn.flags & CONN_F_TEMPLATE != 0 {
                rvs_expire_template_live(maps, &conn, w, now_ns)
            } else {
                !rvs_conn_expired(maps, rvs_conn_w_state(w), conn.last_ns, now_ns)
                    && rvs_expire_dest_live(maps, &conn)
            };
            if live {
                return false;
            }
            let won = rvs_conn_claim(maps, key, &mut conn, w, now_ns);
            // The C's claim writes through the map's pointer.
            if let Some(slot) = maps.rvs_conn.lookup_mut(key) {
                *slot = conn;
            }
            if !won {
                return false;
            }
        }
    }
    maps.rvs_conn.delete(key).is_ok()
}

/// The input frame of `rvs_xdp_expire` for `keys` (at most `EXPIRE_BATCH` are examined), padded to an
/// Ethernet header's length: BPF_PROG_TEST_RUN refuses a shorter XDP frame.
pub fn rvs_expire_frame(keys: &[ConnKey]) -> Vec<u8> {
    let hdr = ExpireHdr {
        nkeys: keys.len() as u32,
        deleted: 0,
    };
    let mut out = hdr.as_bytes().to_vec();
    for k in keys {
        out.extend_from_slice(k.as_bytes());
    }
    out.resize(out.len().max(crate::frame::ETH_HLEN), 0);
    out
}

/// `hdr.deleted` of a frame `rvs_xdp_expire` returned; `None` if shorter than its header.
pub fn rvs_expire_deleted(frame: &[u8]) -> Option<u32> {
    ExpireHdr::read_from_prefix(frame).ok().map(|(h, _)| h.deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::xdp::rvs_xdp_expire;
    use crate::{Env, XdpAction};

    #[test]
    fn frame_round_trip_and_short_frames() {
        let keys = [ConnKey::default(); 2];
        let f = rvs_expire_frame(&keys);
        assert_eq!(f.len(), 8 + 2 * 40);
        assert_eq!(rvs_expire_frame(&[]).len(), 14, "padded to an Ethernet header");
        let mut m = Maps::new(16);
        let mut fr = Frame::new(&f);
        assert_eq!(rvs_xdp_expire(&mut m, &Env::default(), &mut fr), XdpAction::Pass);
        assert_eq!(rvs_expire_deleted(fr.data()), Some(0));
        assert_eq!(
            rvs_xdp_expire(&mut m, &Env::default(), &mut Frame::new(&[0; 7])),
            XdpAction::Aborted
        );
        assert_eq!(rvs_expire_deleted(&[0; 7]), None);
    }

    #[test]
    fn a_key_cut_short_ends_the_batch() {
        let mut m = Maps::new(16);
        let reply = ConnVal {
            flags: CONN_F_REPLY,
            ..Default::default()
        };
        let k = ConnKey::default();
        m.rvs_conn.update(k, reply, 0).unwrap();
        // Says 2 keys, holds one and a half: only the whole one is examined (and deleted: its
        // connection does not exist).
        let mut f = rvs_expire_frame(&[k, k]);
        f.truncate(8 + 60);
        let mut fr = Frame::new(&f);
        assert_eq!(rvs_xdp_expire(&mut m, &Env::default(), &mut fr), XdpAction::Pass);
        assert_eq!(rvs_expire_deleted(fr.data()), Some(1));
        assert!(m.rvs_conn.is_empty());
    }
}
