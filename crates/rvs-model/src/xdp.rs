//! The director's packet path. Mirrors bpf/rvs_xdp.c.

use rvs_abi::{
    CONN_C_DEAD, CONN_F_CONTROLLED, CONN_F_REPLY, CONN_F_TEMPLATE, ConnKey, DestVal, DropReason,
    EXPIRE_BATCH, ExpireHdr, Fwd, SVC_F_ONEPACKET, SVC_F_PERSISTENT, SvcVal,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::conn::{
    RVS_TCP_DIR_OUTPUT, rvs_conn_claim, rvs_conn_create, rvs_conn_dest, rvs_conn_expired, rvs_conn_is_new,
    rvs_conn_key_of, rvs_conn_lookup, rvs_conn_reused, rvs_conn_touch, rvs_conn_w_cflags, rvs_conn_w_state,
    rvs_conn_word_read, rvs_persist_release, rvs_tcp_dir_in,
};
use crate::env::{Env, rvs_cpu, rvs_now_ns};
use crate::expire::rvs_expire_one;
use crate::frame::{Frame, XdpAction};
use crate::fwd::dr::rvs_dr_xmit;
use crate::fwd::icmp::rvs_icmp_process;
use crate::fwd::nat::{NatReply, rvs_nat_reply_conn, rvs_nat_reply_xmit, rvs_nat_xmit};
use crate::maps::Maps;
use crate::parse::{Pkt, parse_all};
use crate::persist::{PersistFind, rvs_persist_create, rvs_persist_find};
use crate::sched::{rvs_sched_addr_fold, rvs_sched_choose};
use crate::stats::{rvs_stats_conn, rvs_stats_drop, rvs_stats_in, rvs_stats_out};
use crate::svc::rvs_svc_lookup;
use crate::wire::ipv4::IPPROTO_ICMP;
use crate::wire::ipv4::IPPROTO_TCP;
use crate::wire::ipv4::IPPROTO_UDP;
use crate::wire::ipv6::IPPROTO_ICMPV6;

/// What every stage of the packet path returns. Mirrors the int convention of bpf/lib/verdict.h:
/// `RVS_OK` (0), an XDP action (> 0), or `-RVS_DROP_*` (< 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `RVS_OK`: go on to the next stage.
    Ok,
    /// Stop and return this action (never `Drop` or `Aborted`).
    Action(XdpAction),
    /// Stop: count the reason and return `XDP_DROP`.
    Drop(DropReason),
}

/// Mirrors `rvs_xdp_conn` (bpf/rvs_xdp.c). `Ok((dest_id, dest))` or the drop reason.
pub fn rvs_xdp_conn(
    maps: &mut Maps,
    env: &Env,
    pkt: &Pkt,
    svc: &SvcVal,
    now_ns: u64,
) -> Result<(u32, DestVal), DropReason> {
    // One-packet scheduling (-o, UDP only): every datagram is a connection of its own, scheduled and
    // counted in conns but never entered in the table.
    let ops = svc.flags & SVC_F_ONEPACKET != 0 && pkt.proto == IPPROTO_UDP;
    let key = rvs_conn_key_of(pkt);
    let mut claimed = false;
    // A copy of the entry; the C writes through the map's pointer, here the copy is written back.
    let conn = if ops {
        None
    } else {
        rvs_conn_lookup(maps, &key).copied()
    };
    // A client's source port 0 makes its key its network's template key (bpf/lib/persist.h).
    if conn.is_some_and(|c| c.flags & CONN_F_TEMPLATE != 0) {
        return Err(DropReason::PortZero);
    }
    // A reply entry under a client's tuple (a client using a real server's address and port toward a
    // virtual address that is another connection's client) is no connection of this packet.
    if let Some(mut conn) = conn
        && conn.flags & CONN_F_REPLY == 0
    {
        let w = rvs_conn_word_read(&conn);
        if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0 {
            return Err(DropReason::ConnBusy);
        }
        let mut dest = None;
        if !rvs_conn_expired(maps, rvs_conn_w_state(w), conn.last_ns, now_ns) && !rvs_conn_reused(&conn, pkt)
        {
            dest = rvs_conn_dest(maps, &conn, svc);
        }
        // IPVS with expire_nodest_conn (on in rvs): a new SYN to a quiesced real server is scheduled
        // afresh.
        if dest.is_some_and(|d| d.weight == 0) && pkt.proto == IPPROTO_TCP && rvs_conn_is_new(pkt) {
            dest = None;
        }
        if let Some(dest) = dest {
            let dir = rvs_tcp_dir_in(conn.flags);
            rvs_conn_touch(maps, &mut conn, pkt, dir, now_ns);
            if let Some(slot) = maps.rvs_conn.lookup_mut(&key) {
                *slot = conn;
            }
            return Ok((conn.dest_id, dest));
        }
        let won = rvs_conn_claim(maps, &key, &mut conn, w, now_ns);
        if let Some(slot) = maps.rvs_conn.lookup_mut(&key) {
            *slot = conn;
        }
        if !won {
            return Err(DropReason::ConnBusy);
        }
        claimed = true;
    }
    let mut ret = Err(DropReason::NotSyn);
    // The C's ctl and ctag, and its tkey once rvs_persist_find has written it.
    let (mut ctl, mut ctag, mut tkey) = (0u8, 0u32, None);
    if rvs_conn_is_new(pkt) {
        let mut schedule = true;
        if svc.flags & SVC_F_PERSISTENT != 0 {
            ctl = CONN_F_CONTROLLED;
            match rvs_persist_find(maps, svc, pkt, now_ns) {
                Err(reason) => {
                    ret = Err(reason);
                    schedule = false;
                }
                Ok((tk, found)) => {
                    tkey = Some(tk);
                    if let PersistFind::Found {
                        ctag: c,
                        dest_id,
                        dest,
                    } = found
                    {
                        ctag = c;
                        ret = Ok((dest_id, dest));
                        schedule = false;
                    }
                }
            }
        }
        if schedule {
            ret = rvs_sched_choose(
                maps,
                env,
                svc,
                rvs_sched_addr_fold(&pkt.saddr, pkt.family),
                pkt.sport,
                pkt.family,
                &pkt.daddr,
            )
            .and_then(|id| {
                maps.rvs_dest
                    .lookup(id)
                    .map(|d| (id, d))
                    .ok_or(DropReason::NoDest)
            });
            if let (Ok((dest_id, dest)), Some(tk)) = (ret, tkey.as_ref())
                && ctl != 0
            {
                ret = rvs_persist_create(maps, svc, tk, now_ns, dest_id, &dest).map(|c| {
                    ctag = c;
                    (dest_id, dest)
                });
            }
        }
    }
    if let Ok((dest_id, dest)) = ret {
        if !ops {
            ret = rvs_conn_create(maps, &key, pkt, svc, dest_id, &dest, now_ns, ctl, ctag)
                .map(|()| (dest_id, dest));
        }
        if (ret.is_err() || ops)
            && ctl != 0
            && let Some(tk) = tkey
        {
            rvs_persist_release(maps, &tk, ctag);
        }
    }
    let (dest_id, dest) = match ret {
        Ok(d) => d,
        Err(reason) => {
            if claimed {
                let _ = maps.rvs_conn.delete(&key);
            }
            return Err(reason);
        }
    };
    rvs_stats_conn(maps, rvs_cpu(env), svc.id, dest_id);
    Ok((dest_id, dest))
}

/// Mirrors `rvs_xdp_forward` (bpf/rvs_xdp.c).
pub fn rvs_xdp_forward(maps: &Maps, env: &Env, frame: &mut Frame, pkt: &mut Pkt, dest: &DestVal) -> Verdict {
    if dest.fwd == Fwd::Dr as u8 {
        return rvs_dr_xmit(frame, dest);
    }
    if dest.fwd == Fwd::Nat as u8 {
        return rvs_nat_xmit(maps, env, frame, pkt, dest);
    }
    if dest.fwd == Fwd::Tun as u8 {
        return crate::fwd::tun::rvs_tun_xmit(frame, env, pkt, dest);
    }
    Verdict::Drop(DropReason::FwdUnsupp)
}

/// Mirrors `rvs_xdp_reply` (bpf/rvs_xdp.c).
pub fn rvs_xdp_reply(maps: &mut Maps, env: &Env, frame: &mut Frame, pkt: &mut Pkt) -> Verdict {
    let pass = Verdict::Action(XdpAction::Pass);
    let Some(NatReply {
        rep,
        svc,
        key,
        mut conn,
        ..
    }) = rvs_nat_reply_conn(maps, pkt)
    else {
        return pass;
    };
    let svc_id = svc.id;
    let now_ns = rvs_now_ns(env);
    let w = rvs_conn_word_read(&conn);
    if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0
        || rvs_conn_expired(maps, rvs_conn_w_state(w), conn.last_ns, now_ns)
    {
        return pass;
    }
    rvs_conn_touch(maps, &mut conn, pkt, RVS_TCP_DIR_OUTPUT, now_ns);
    // The C writes the entry through the map's pointer; here it is written back.
    if let Some(slot) = maps.rvs_conn.lookup_mut(&key) {
        *slot = conn;
    }
    let ret = rvs_nat_reply_xmit(maps, env, frame, pkt, &rep);
    if let Verdict::Drop(_) = ret {
        return ret;
    }
    rvs_stats_out(maps, rvs_cpu(env), svc_id, conn.dest_id, u32::from(pkt.ip_len));
    ret
}

/// Mirrors `rvs_xdp_process` (bpf/rvs_xdp.c).
pub fn rvs_xdp_process(maps: &mut Maps, env: &Env, frame: &mut Frame) -> Verdict {
    let mut pkt = Pkt::default();
    let ret = parse_all(frame.data(), &mut pkt);
    if ret != Verdict::Ok {
        return ret;
    }
    if pkt.proto == IPPROTO_ICMP || pkt.proto == IPPROTO_ICMPV6 {
        return rvs_icmp_process(maps, env, frame, &mut pkt);
    }
    let Some(svc) = rvs_svc_lookup(maps, &pkt) else {
        return rvs_xdp_reply(maps, env, frame, &mut pkt);
    };
    let cpu = rvs_cpu(env);
    let (dest_id, dest) = match rvs_xdp_conn(maps, env, &pkt, &svc, rvs_now_ns(env)) {
        Ok(d) => d,
        Err(reason) => return Verdict::Drop(reason),
    };
    let ret = rvs_xdp_forward(maps, env, frame, &mut pkt, &dest);
    if let Verdict::Drop(_) = ret {
        return ret;
    }
    rvs_stats_in(maps, cpu, svc.id, dest_id, u32::from(pkt.ip_len));
    ret
}

/// Mirrors `rvs_xdp_ingress` (bpf/rvs_xdp.c).
pub fn rvs_xdp_ingress(maps: &mut Maps, env: &Env, frame: &mut Frame) -> XdpAction {
    match rvs_xdp_process(maps, env, frame) {
        Verdict::Drop(reason) => rvs_stats_drop(maps, rvs_cpu(env), reason),
        Verdict::Action(a) => a,
        // Never returned by the path: every stage that ends it returns an action. The C would return
        // 0, which is XDP_ABORTED.
        Verdict::Ok => XdpAction::Aborted,
    }
}

/// Mirrors `rvs_xdp_expire` (bpf/rvs_xdp.c): `frame` holds an `ExpireHdr` and up to `EXPIRE_BATCH`
/// `ConnKey`s; `hdr.deleted` is written back into it.
pub fn rvs_xdp_expire(maps: &mut Maps, env: &Env, frame: &mut Frame) -> XdpAction {
    const HDR: usize = size_of::<ExpireHdr>();
    const KEY: usize = size_of::<ConnKey>();
    let now_ns = rvs_now_ns(env);
    let Ok((hdr, _)) = ExpireHdr::read_from_prefix(frame.data()) else {
        return XdpAction::Aborted;
    };
    let n = hdr.nkeys as usize;
    let mut deleted = 0u32;
    let mut i = 0;
    while i < EXPIRE_BATCH && i < n {
        let off = HDR + i * KEY;
        let Some(Ok(key)) = frame.data().get(off..off + KEY).map(ConnKey::read_from_bytes) else {
            break;
        };
        deleted += u32::from(rvs_expire_one(maps, &key, now_ns));
        i += 1;
    }
    let out = ExpireHdr { deleted, ..hdr };
    frame.data_mut()[..HDR].copy_from_slice(out.as_bytes());
    XdpAction::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::{
        Be16, DEST_F_NEIGH, DEST_F_VALID, DestVal, Family, MapOp, SvcKey, SvcState, SvcVal, TcpState, addr_v4,
    };

    use crate::frame::TEST_RUN_INGRESS_IFINDEX;

    fn maps() -> Maps {
        let mut m = Maps::new(64);
        let dest = DestVal {
            dmac: [0xd; 6],
            smac: [0x5; 6],
            ifindex: TEST_RUN_INGRESS_IFINDEX,
            svc_id: 1,
            weight: 1,
            flags: DEST_F_VALID | DEST_F_NEIGH,
            ..Default::default()
        };
        let key = SvcKey {
            addr: addr_v4([198, 18, 0, 10]),
            port: Be16::new(80),
            proto: 6,
            family: Family::Inet as u8,
        };
        let val = SvcVal {
            id: 1,
            sched_base: 0,
            sched_len: 1,
            ..Default::default()
        };
        m.apply(&[
            MapOp::DestSet { id: 4, val: dest },
            MapOp::SchedSet { slot: 0, dest_id: 4 },
            MapOp::SvcStateSet {
                id: 1,
                val: SvcState::default(),
            },
            MapOp::SvcSet { key, val },
        ])
        .unwrap();
        m
    }

    fn syn() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 2, 5], [198, 18, 0, 10], 64)
            .tcp(40000, 80, 1, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn syn_to_service_is_sent_back_with_new_macs() {
        let mut m = maps();
        let input = syn();
        let mut f = Frame::new(&input);
        let env = Env {
            now_ns: 7,
            cpu: 1,
            ..Env::default()
        };
        assert_eq!(rvs_xdp_ingress(&mut m, &env, &mut f), XdpAction::Tx);
        assert_eq!(&f.data()[..12], &[[0xd; 6], [0x5; 6]].concat()[..]);
        assert_eq!(&f.data()[12..], &input[12..]);
        let (_, c) = m.rvs_conn.entries()[0];
        assert_eq!(
            (c.dest_id, c.state, c.created_ns),
            (4, TcpState::SynRecv as u8, 7)
        );
        assert_eq!(m.rvs_dest_stats.lookup(1, 4).unwrap().inbytes, 40);
    }

    #[test]
    fn ack_without_conn_is_counted_as_not_syn() {
        let mut m = maps();
        let mut input = syn();
        input[14 + 20 + 13] = crate::wire::tcp::ACK;
        let env = Env::default();
        assert_eq!(
            rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&input)),
            XdpAction::Drop
        );
        assert_eq!(m.rvs_drops.lookup(0, DropReason::NotSyn as u32), Some(1));
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let input = syn();
        let env = Env::default();
        for len in 0..=input.len() {
            let _ = rvs_xdp_ingress(&mut maps(), &env, &mut Frame::new(&input[..len]));
        }
        for i in 0..input.len() {
            for x in [0x01u8, 0x0f, 0x80, 0xff] {
                let mut f = input.clone();
                f[i] ^= x;
                let _ = rvs_xdp_ingress(&mut maps(), &env, &mut Frame::new(&f));
            }
        }
    }
}
