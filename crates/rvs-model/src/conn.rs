//! The connection table (`rvs_conn`), NAT's reply entries, IPVS's TCP state machine and the exact
//! per-real-server counters (`rvs_dest_cnt`). Mirrors bpf/lib/conn.h, which explains the reply entries
//! and why the counters change only through a compare-and-swap of the entry's word. The model runs on
//! one thread, so every compare-and-swap here succeeds on its first try.

use rvs_abi::{
    Addr, Be16, Be32, CONN_C_ACTIVE, CONN_C_DEAD, CONN_F_CONTROLLED, CONN_F_INPUT_ONLY, CONN_F_REPLY,
    CONN_F_TEMPLATE, ConnKey, ConnRep, ConnVal, DEST_C_OVERLOAD, DEST_F_OGEN_MASK, DEST_F_VALID, DestCnt,
    DestVal, DropReason, Fwd, SvcKey, SvcVal, TIMEOUT_SLOTS, TcpState,
};

use crate::maps::{BPF_ANY, Maps};
use crate::parse::Pkt;
use crate::wire::{ipv4::IPPROTO_TCP, tcp};

/// Row of the state table for a SYN (`RVS_TCP_EV_SYN`).
pub const RVS_TCP_EV_SYN: i32 = 0;
/// Row for a FIN.
pub const RVS_TCP_EV_FIN: i32 = 1;
/// Row for an ACK.
pub const RVS_TCP_EV_ACK: i32 = 2;
/// Row for a RST.
pub const RVS_TCP_EV_RST: i32 = 3;
/// No flag IPVS looks at: the state stays.
pub const RVS_TCP_EV_NONE: i32 = -1;

const S_NO: u8 = TcpState::None as u8;
const S_ES: u8 = TcpState::Established as u8;
const S_SS: u8 = TcpState::SynSent as u8;
const S_SR: u8 = TcpState::SynRecv as u8;
const S_FW: u8 = TcpState::FinWait as u8;
const S_TW: u8 = TcpState::TimeWait as u8;
const S_CL: u8 = TcpState::Close as u8;
const S_CW: u8 = TcpState::CloseWait as u8;
const S_LA: u8 = TcpState::LastAck as u8;
const S_LI: u8 = TcpState::Listen as u8;
const S_LAST: usize = TcpState::Last as usize;

const S_SA: u8 = TcpState::SynAck as u8;

/// `RVS_TCP_DIR_INPUT`: a client's packet when replies are seen (NAT).
pub const RVS_TCP_DIR_INPUT: u32 = 0;
/// `RVS_TCP_DIR_OUTPUT`: a real server's reply (NAT).
pub const RVS_TCP_DIR_OUTPUT: u32 = 4;
/// `RVS_TCP_DIR_INPUT_ONLY`: a client's packet when replies are unseen (DR, TUN).
pub const RVS_TCP_DIR_INPUT_ONLY: u32 = 8;

/// IPVS `tcp_states[]` (ip_vs_proto_tcp.c), `[direction + event][state]`. Mirrors `rvs_tcp_states`
/// (bpf/lib/conn.h).
pub const RVS_TCP_STATES: [[u8; S_LAST]; 12] = [
    // INPUT sNO   sES   sSS   sSR   sFW   sTW   sCL   sCW   sLA   sLI   sSA
    [S_SR, S_ES, S_ES, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR], // syn
    [S_CL, S_CW, S_SS, S_TW, S_TW, S_TW, S_CL, S_CW, S_LA, S_LI, S_TW], // fin
    [S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_CL, S_LI, S_ES], // ack
    [S_CL, S_CL, S_CL, S_SR, S_CL, S_CL, S_CL, S_CL, S_LA, S_LI, S_SR], // rst
    // OUTPUT
    [S_SS, S_ES, S_SS, S_SR, S_SS, S_SS, S_SS, S_SS, S_SS, S_LI, S_SR], // syn
    [S_TW, S_FW, S_SS, S_TW, S_FW, S_TW, S_CL, S_TW, S_LA, S_LI, S_TW], // fin
    [S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_LA, S_ES, S_ES], // ack
    [S_CL, S_CL, S_SS, S_CL, S_CL, S_TW, S_CL, S_CL, S_CL, S_CL, S_CL], // rst
    // INPUT_ONLY
    [S_SR, S_ES, S_ES, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR], // syn
    [S_CL, S_FW, S_SS, S_TW, S_FW, S_TW, S_CL, S_CW, S_LA, S_LI, S_TW], // fin
    [S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_CL, S_LI, S_ES], // ack
    [S_CL, S_CL, S_CL, S_SR, S_CL, S_CL, S_CL, S_CL, S_LA, S_LI, S_CL], // rst
];
const _: () = assert!(S_NO == 0 && S_SA == 10);

/// `RVS_CONN_W_STATE`: the state byte of a word.
pub fn rvs_conn_w_state(w: u32) -> u8 {
    (w & 0xff) as u8
}

/// `RVS_CONN_W_CFLAGS`: the cflags byte of a word.
pub fn rvs_conn_w_cflags(w: u32) -> u8 {
    ((w >> 16) & 0xff) as u8
}

/// `RVS_CONN_W`: the word of state, flags, cflags and tag.
pub fn rvs_conn_w(state: u8, flags: u8, cflags: u8, tag: u8) -> u32 {
    u32::from(state) | (u32::from(flags) << 8) | (u32::from(cflags) << 16) | (u32::from(tag) << 24)
}

/// Mirrors `rvs_conn_word` (bpf/lib/conn.h): the C returns a pointer to the word (bytes 24..28 of the
/// value: state, flags, cflags, tag on a little-endian machine); here, the word's value.
pub fn rvs_conn_word(conn: &ConnVal) -> u32 {
    rvs_conn_w(conn.state, conn.flags, conn.cflags, conn.tag)
}

/// Mirrors `rvs_conn_word_read` (bpf/lib/conn.h).
pub fn rvs_conn_word_read(conn: &ConnVal) -> u32 {
    rvs_conn_word(conn)
}

/// `__sync_val_compare_and_swap` on the word of `conn`: writes `nw` if the word is `w`. Single-threaded,
/// it fails only if the caller passed a stale word.
pub fn rvs_conn_word_cas(conn: &mut ConnVal, w: u32, nw: u32) -> bool {
    if rvs_conn_word(conn) != w {
        return false;
    }
    conn.state = rvs_conn_w_state(nw);
    conn.flags = ((nw >> 8) & 0xff) as u8;
    conn.cflags = rvs_conn_w_cflags(nw);
    conn.tag = (nw >> 24) as u8;
    true
}

/// Mirrors `rvs_conn_is_active` (bpf/lib/conn.h).
pub fn rvs_conn_is_active(proto: u8, state: u8) -> bool {
    if proto != IPPROTO_TCP {
        return false;
    }
    state == TcpState::Established as u8
        || state == TcpState::SynSent as u8
        || state == TcpState::SynRecv as u8
        || state == TcpState::SynAck as u8
}

/// Mirrors `rvs_conn_expired` (bpf/lib/conn.h).
pub fn rvs_conn_expired(maps: &Maps, state: u8, last_ns: u64, now_ns: u64) -> bool {
    let idx = usize::from(state);
    let Some(t) = maps.rvs_timeouts.lookup(0) else {
        return false;
    };
    if idx >= TIMEOUT_SLOTS {
        return false;
    }
    let to = u64::from(t.s[idx]) * 1_000_000_000;
    if to == 0 || now_ns < last_ns {
        return false;
    }
    now_ns - last_ns >= to
}

/// Mirrors `rvs_conn_overloaded` (bpf/lib/conn.h).
pub fn rvs_conn_overloaded(dest: &DestVal, cnt: &DestCnt) -> bool {
    dest.u_thresh != 0
        && cnt.flags & DEST_C_OVERLOAD != 0
        && cnt.flags & DEST_F_OGEN_MASK == dest.flags & DEST_F_OGEN_MASK
}

/// Mirrors `rvs_conn_bind` (bpf/lib/conn.h).
pub fn rvs_conn_bind(maps: &mut Maps, dest_id: u32, dest: &DestVal, active: bool) {
    let Some(cnt) = maps.rvs_dest_cnt.lookup_mut(dest_id) else {
        return;
    };
    if active {
        cnt.active = cnt.active.wrapping_add(1);
    } else {
        cnt.inactive = cnt.inactive.wrapping_add(1);
    }
    if dest.u_thresh != 0 && cnt.active.wrapping_add(cnt.inactive) >= dest.u_thresh {
        // __sync_lock_test_and_set: the stamp of an older generation is replaced.
        cnt.flags = (dest.flags & DEST_F_OGEN_MASK) | DEST_C_OVERLOAD;
    }
}

/// Mirrors `rvs_conn_bind_template` (bpf/lib/conn.h).
pub fn rvs_conn_bind_template(maps: &mut Maps, dest_id: u32) {
    if let Some(cnt) = maps.rvs_dest_cnt.lookup_mut(dest_id) {
        cnt.persist = cnt.persist.wrapping_add(1);
    }
}

/// Mirrors `rvs_persist_mask_word` (bpf/lib/conn.h): word `i` (0..3) of the network-order mask of a
/// prefix of `plen` bits.
pub fn rvs_persist_mask_word(plen: u32, i: u32) -> Be32 {
    // u32 arithmetic, as the C (i is at most 3).
    if plen <= i * 32 {
        return Be32::new(0);
    }
    let bits = plen - i * 32;
    if bits >= 32 {
        return Be32::new(u32::MAX);
    }
    Be32::new(!0u32 << (32 - bits))
}

/// Mirrors `rvs_persist_key` (bpf/lib/conn.h).
pub fn rvs_persist_key(saddr: &Addr, vs: &SvcKey, plen: u32) -> ConnKey {
    let mut net = Addr::default();
    for (i, w) in net.iter_mut().enumerate() {
        *w = Be32::new(saddr[i].get() & rvs_persist_mask_word(plen, i as u32).get());
    }
    ConnKey {
        saddr: net,
        daddr: vs.addr,
        sport: Default::default(),
        dport: vs.port,
        proto: vs.proto,
        family: vs.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_persist_release` (bpf/lib/conn.h).
pub fn rvs_persist_release(maps: &mut Maps, tkey: &ConnKey, ctag: u32) {
    if let Some(t) = maps.rvs_conn.lookup_mut(tkey)
        && t.flags & CONN_F_TEMPLATE != 0
        && t.created_ns as u32 == ctag
        && t.nctl > 0
    {
        t.nctl -= 1;
    }
}

/// Mirrors `rvs_persist_conn_end` (bpf/lib/conn.h).
pub fn rvs_persist_conn_end(maps: &mut Maps, key: &ConnKey, conn: &ConnVal) {
    let svc_id = conn.svc_id;
    let Some(vs) = maps.rvs_svc_addr.lookup(svc_id) else {
        return;
    };
    let svc = match maps.rvs_svc.lookup(&vs) {
        Some(svc) if svc.id == svc_id => *svc,
        _ => return,
    };
    let tkey = rvs_persist_key(&key.saddr, &vs, svc.plen);
    rvs_persist_release(maps, &tkey, conn.ctag);
}

/// Mirrors `rvs_conn_unbind` (bpf/lib/conn.h).
pub fn rvs_conn_unbind(maps: &mut Maps, key: &ConnKey, conn: &ConnVal, cflags: u8) {
    if conn.flags & CONN_F_REPLY != 0 {
        return;
    }
    if conn.flags & CONN_F_CONTROLLED != 0 {
        rvs_persist_conn_end(maps, key, conn);
    }
    let id = conn.dest_id;
    let Some(dest) = maps.rvs_dest.lookup(id) else {
        return;
    };
    if dest.flags & DEST_F_VALID == 0 || dest.dgen != conn.dest_gen {
        return;
    }
    let Some(cnt) = maps.rvs_dest_cnt.lookup_mut(id) else {
        return;
    };
    if conn.flags & CONN_F_TEMPLATE != 0 {
        cnt.persist = cnt.persist.wrapping_sub(1);
        return;
    }
    if cflags & CONN_C_ACTIVE != 0 {
        cnt.active = cnt.active.wrapping_sub(1);
    } else {
        cnt.inactive = cnt.inactive.wrapping_sub(1);
    }
    let total = cnt.active.wrapping_add(cnt.inactive);
    if dest.l_thresh != 0 {
        if total < dest.l_thresh {
            cnt.flags &= !DEST_C_OVERLOAD;
        }
    } else if dest.u_thresh != 0 {
        // u32 arithmetic, as the C.
        if total.wrapping_mul(4) < dest.u_thresh.wrapping_mul(3) {
            cnt.flags &= !DEST_C_OVERLOAD;
        }
    } else if cnt.flags & DEST_C_OVERLOAD != 0 {
        cnt.flags &= !DEST_C_OVERLOAD;
    }
}

/// Mirrors `rvs_conn_claim` (bpf/lib/conn.h).
pub fn rvs_conn_claim(maps: &mut Maps, key: &ConnKey, conn: &mut ConnVal, w: u32, now_ns: u64) -> bool {
    let dead = w | (u32::from(CONN_C_DEAD) << 16);
    if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0 {
        return false;
    }
    if !rvs_conn_word_cas(conn, w, dead) {
        return false;
    }
    rvs_conn_unbind(maps, key, conn, rvs_conn_w_cflags(w));
    conn.last_ns = now_ns;
    true
}

/// Mirrors `rvs_conn_key_of` (bpf/lib/conn.h).
pub fn rvs_conn_key_of(pkt: &Pkt) -> ConnKey {
    ConnKey {
        saddr: pkt.saddr,
        daddr: pkt.daddr,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_tcp_event` (bpf/lib/conn.h).
pub fn rvs_tcp_event(tcp_flags: u8) -> i32 {
    if tcp_flags & tcp::RST != 0 {
        return RVS_TCP_EV_RST;
    }
    if tcp_flags & tcp::SYN != 0 {
        return RVS_TCP_EV_SYN;
    }
    if tcp_flags & tcp::FIN != 0 {
        return RVS_TCP_EV_FIN;
    }
    if tcp_flags & tcp::ACK != 0 {
        return RVS_TCP_EV_ACK;
    }
    RVS_TCP_EV_NONE
}

/// Mirrors `rvs_tcp_next_state` (bpf/lib/conn.h).
pub fn rvs_tcp_next_state(dir: u32, state: u8, tcp_flags: u8) -> u8 {
    let ev = rvs_tcp_event(tcp_flags);
    if !(0..=RVS_TCP_EV_RST).contains(&ev) || usize::from(state) >= S_LAST {
        return state;
    }
    let row = dir as usize + ev as usize;
    RVS_TCP_STATES
        .get(row)
        .and_then(|r| r.get(usize::from(state)))
        .copied()
        .unwrap_or(state)
}

/// Mirrors `rvs_tcp_dir_in` (bpf/lib/conn.h).
pub fn rvs_tcp_dir_in(conn_flags: u8) -> u32 {
    if conn_flags & CONN_F_INPUT_ONLY != 0 {
        RVS_TCP_DIR_INPUT_ONLY
    } else {
        RVS_TCP_DIR_INPUT
    }
}

/// Mirrors `rvs_conn_is_new` (bpf/lib/conn.h).
pub fn rvs_conn_is_new(pkt: &Pkt) -> bool {
    if pkt.proto != IPPROTO_TCP {
        return true;
    }
    pkt.tcp_flags & (tcp::SYN | tcp::RST) == tcp::SYN
}

/// Mirrors `rvs_conn_lookup` (bpf/lib/conn.h).
pub fn rvs_conn_lookup<'m>(maps: &'m mut Maps, key: &ConnKey) -> Option<&'m mut ConnVal> {
    maps.rvs_conn.lookup_mut(key)
}

/// Mirrors `rvs_conn_dest` (bpf/lib/conn.h).
pub fn rvs_conn_dest(maps: &Maps, conn: &ConnVal, svc: &SvcVal) -> Option<DestVal> {
    if conn.svc_id != svc.id {
        return None;
    }
    let dest = maps.rvs_dest.lookup(conn.dest_id)?;
    if dest.flags & DEST_F_VALID == 0 || dest.svc_id != conn.svc_id || dest.dgen != conn.dest_gen {
        return None;
    }
    Some(dest)
}

/// Mirrors `rvs_conn_reused` (bpf/lib/conn.h).
pub fn rvs_conn_reused(conn: &ConnVal, pkt: &Pkt) -> bool {
    if pkt.proto != IPPROTO_TCP || !rvs_conn_is_new(pkt) {
        return false;
    }
    conn.state == TcpState::TimeWait as u8 || conn.state == TcpState::Close as u8
}

/// Mirrors `rvs_conn_recount` (bpf/lib/conn.h).
pub fn rvs_conn_recount(maps: &mut Maps, conn: &ConnVal, from: u8, to: u8) {
    if (from & CONN_C_ACTIVE) == (to & CONN_C_ACTIVE) || conn.flags & CONN_F_REPLY != 0 {
        return;
    }
    let id = conn.dest_id;
    let Some(dest) = maps.rvs_dest.lookup(id) else {
        return;
    };
    if dest.flags & DEST_F_VALID == 0 || dest.dgen != conn.dest_gen {
        return;
    }
    let Some(cnt) = maps.rvs_dest_cnt.lookup_mut(id) else {
        return;
    };
    // __sync_fetch_and_add/sub: wrapping, as the kernel's atomics.
    if to & CONN_C_ACTIVE != 0 {
        cnt.active = cnt.active.wrapping_add(1);
        cnt.inactive = cnt.inactive.wrapping_sub(1);
    } else {
        cnt.active = cnt.active.wrapping_sub(1);
        cnt.inactive = cnt.inactive.wrapping_add(1);
    }
}

/// Mirrors `rvs_conn_touch` (bpf/lib/conn.h). The C retries a failed swap; here the swap cannot fail.
pub fn rvs_conn_touch(maps: &mut Maps, conn: &mut ConnVal, pkt: &Pkt, dir: u32, now_ns: u64) {
    conn.last_ns = now_ns;
    if pkt.proto != IPPROTO_TCP {
        return;
    }
    let w = rvs_conn_word_read(conn);
    let mut cf = rvs_conn_w_cflags(w);
    if cf & CONN_C_DEAD != 0 {
        return;
    }
    let st = rvs_tcp_next_state(dir, rvs_conn_w_state(w), pkt.tcp_flags);
    if st == rvs_conn_w_state(w) {
        return;
    }
    cf &= !CONN_C_ACTIVE;
    if rvs_conn_is_active(IPPROTO_TCP, st) {
        cf |= CONN_C_ACTIVE;
    }
    let nw = (w & 0xff00_ff00) | u32::from(st) | (u32::from(cf) << 16);
    if rvs_conn_word_cas(conn, w, nw) {
        rvs_conn_recount(maps, conn, rvs_conn_w_cflags(w), cf);
    }
}

/// Mirrors `rvs_conn_rport` (bpf/lib/conn.h).
pub fn rvs_conn_rport(dest: &DestVal, vport: Be16) -> Be16 {
    if dest.port != Be16::new(0) {
        dest.port
    } else {
        vport
    }
}

/// Mirrors `rvs_conn_reply_key` (bpf/lib/conn.h).
pub fn rvs_conn_reply_key(key: &ConnKey, dest: &DestVal) -> ConnKey {
    ConnKey {
        saddr: dest.addr,
        daddr: key.saddr,
        sport: rvs_conn_rport(dest, key.dport),
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_conn_client_key` (bpf/lib/conn.h).
pub fn rvs_conn_client_key(pkt: &Pkt, rep: &ConnRep) -> ConnKey {
    ConnKey {
        saddr: pkt.daddr,
        daddr: rep.vaddr,
        sport: pkt.dport,
        dport: rep.vport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_conn_create` (bpf/lib/conn.h). `ctl` is `CONN_F_CONTROLLED` for a connection a
/// persistence template chose (`ctag`: the template's), else 0.
#[allow(clippy::too_many_arguments, reason = "the C's arguments, one for one")]
pub fn rvs_conn_create(
    maps: &mut Maps,
    key: &ConnKey,
    pkt: &Pkt,
    svc: &SvcVal,
    dest_id: u32,
    dest: &DestVal,
    now_ns: u64,
    ctl: u8,
    ctag: u32,
) -> Result<(), DropReason> {
    if dest.fwd == Fwd::Nat as u8 {
        let rep = ConnRep {
            dest_id,
            svc_id: svc.id,
            vaddr: key.daddr,
            flags: CONN_F_REPLY,
            tag: (now_ns >> 20) as u8,
            dest_gen: dest.dgen,
            vport: key.dport,
            ..ConnRep::default()
        };
        let rkey = rvs_conn_reply_key(key, dest);
        maps.rvs_conn
            .update(rkey, rep.into(), BPF_ANY)
            .map_err(|_| DropReason::ConnFull)?;
    }
    let mut val = ConnVal {
        dest_id,
        svc_id: svc.id,
        created_ns: now_ns,
        last_ns: now_ns,
        tag: (now_ns >> 20) as u8,
        dest_gen: dest.dgen,
        ..ConnVal::default()
    };
    // Replies of DR and TUN bypass the director (IPVS sets NOOUTPUT for every method but NAT).
    val.flags = if dest.fwd == Fwd::Nat as u8 {
        0
    } else {
        CONN_F_INPUT_ONLY
    } | ctl;
    val.ctag = ctag;
    val.state = if pkt.proto == IPPROTO_TCP {
        rvs_tcp_next_state(rvs_tcp_dir_in(val.flags), TcpState::None as u8, pkt.tcp_flags)
    } else {
        TcpState::UdpNormal as u8
    };
    if rvs_conn_is_active(pkt.proto, val.state) {
        val.cflags = CONN_C_ACTIVE;
    }
    maps.rvs_conn
        .update(*key, val, BPF_ANY)
        .map_err(|_| DropReason::ConnFull)?;
    rvs_conn_bind(maps, dest_id, dest, val.cflags & CONN_C_ACTIVE != 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::DEST_F_OGEN_SHIFT;
    use tcp::{ACK, FIN, PSH, RST, SYN};

    fn st(s: TcpState) -> u8 {
        s as u8
    }

    #[test]
    fn event_priority_is_rst_syn_fin_ack() {
        assert_eq!(rvs_tcp_event(RST | SYN | FIN | ACK), RVS_TCP_EV_RST);
        assert_eq!(rvs_tcp_event(SYN | FIN | ACK), RVS_TCP_EV_SYN);
        assert_eq!(rvs_tcp_event(FIN | ACK), RVS_TCP_EV_FIN);
        assert_eq!(rvs_tcp_event(ACK | PSH), RVS_TCP_EV_ACK);
        assert_eq!(rvs_tcp_event(PSH), RVS_TCP_EV_NONE);
    }

    #[test]
    fn input_only_handshake_and_close() {
        use TcpState::*;
        let d = RVS_TCP_DIR_INPUT_ONLY;
        let mut s = rvs_tcp_next_state(d, st(None), SYN);
        assert_eq!(s, st(SynRecv));
        s = rvs_tcp_next_state(d, s, ACK);
        assert_eq!(s, st(Established));
        s = rvs_tcp_next_state(d, s, FIN | ACK);
        assert_eq!(s, st(FinWait));
        s = rvs_tcp_next_state(d, s, ACK);
        assert_eq!(s, st(FinWait));
        assert_eq!(rvs_tcp_next_state(d, st(Established), RST), st(Close));
        assert_eq!(rvs_tcp_next_state(d, st(SynRecv), RST), st(SynRecv));
        assert_eq!(rvs_tcp_next_state(d, st(TimeWait), SYN), st(SynRecv));
    }

    #[test]
    fn nat_handshake_and_close_through_input_and_output() {
        use TcpState::*;
        let (i, o) = (RVS_TCP_DIR_INPUT, RVS_TCP_DIR_OUTPUT);
        let mut s = rvs_tcp_next_state(i, st(None), SYN);
        assert_eq!(s, st(SynRecv));
        s = rvs_tcp_next_state(o, s, SYN | ACK);
        assert_eq!(s, st(SynRecv));
        s = rvs_tcp_next_state(i, s, ACK);
        assert_eq!(s, st(Established));
        // The client closes first: FIN -> CLOSE_WAIT (INPUT), the server's FIN -> TIME_WAIT (OUTPUT).
        s = rvs_tcp_next_state(i, s, FIN | ACK);
        assert_eq!(s, st(CloseWait));
        s = rvs_tcp_next_state(o, s, FIN | ACK);
        assert_eq!(s, st(TimeWait));
        // The server closes first: FIN -> FIN_WAIT (OUTPUT), the client's FIN -> TIME_WAIT (INPUT).
        s = rvs_tcp_next_state(o, st(Established), FIN | ACK);
        assert_eq!(s, st(FinWait));
        assert_eq!(rvs_tcp_next_state(i, s, FIN | ACK), st(TimeWait));
        assert_eq!(rvs_tcp_next_state(o, st(Established), RST), st(Close));
        assert_eq!(rvs_tcp_next_state(o, st(None), SYN), st(SynSent));
        assert_eq!(rvs_tcp_dir_in(CONN_F_INPUT_ONLY), RVS_TCP_DIR_INPUT_ONLY);
        assert_eq!(rvs_tcp_dir_in(0), RVS_TCP_DIR_INPUT);
    }

    #[test]
    fn states_outside_the_table_and_flagless_packets_stay() {
        let d = RVS_TCP_DIR_INPUT_ONLY;
        assert_eq!(
            rvs_tcp_next_state(d, st(TcpState::UdpNormal), SYN),
            st(TcpState::UdpNormal)
        );
        assert_eq!(rvs_tcp_next_state(d, st(TcpState::Last), ACK), st(TcpState::Last));
        assert_eq!(rvs_tcp_next_state(d, 200, ACK), 200);
        assert_eq!(
            rvs_tcp_next_state(d, st(TcpState::Established), PSH),
            st(TcpState::Established)
        );
        assert_eq!(
            rvs_tcp_next_state(12, st(TcpState::Established), ACK),
            st(TcpState::Established)
        );
    }

    #[test]
    fn who_may_open_a_connection() {
        let tcp = |f| Pkt {
            proto: IPPROTO_TCP,
            tcp_flags: f,
            ..Default::default()
        };
        assert!(rvs_conn_is_new(&tcp(SYN)));
        assert!(rvs_conn_is_new(&tcp(SYN | ACK)));
        assert!(!rvs_conn_is_new(&tcp(SYN | RST)));
        assert!(!rvs_conn_is_new(&tcp(ACK)));
        assert!(rvs_conn_is_new(&Pkt {
            proto: 17,
            ..Default::default()
        }));
    }

    fn dest_maps(u: u32, l: u32) -> (Maps, DestVal) {
        let mut m = Maps::new(16);
        let d = DestVal {
            flags: DEST_F_VALID,
            svc_id: 1,
            u_thresh: u,
            l_thresh: l,
            ..Default::default()
        };
        m.rvs_dest.update(3, d, BPF_ANY).unwrap();
        (m, d)
    }

    fn conn3() -> ConnVal {
        ConnVal {
            dest_id: 3,
            svc_id: 1,
            ..Default::default()
        }
    }

    #[test]
    fn word_is_state_flags_cflags_tag_little_endian() {
        let c = ConnVal {
            state: 1,
            flags: 2,
            cflags: 3,
            tag: 4,
            ..Default::default()
        };
        use zerocopy::IntoBytes;
        let w = rvs_conn_word(&c);
        assert_eq!(w.to_le_bytes(), c.as_bytes()[24..28]);
        let mut d = c;
        assert!(!rvs_conn_word_cas(&mut d, w ^ 1, 0));
        assert!(rvs_conn_word_cas(&mut d, w, rvs_conn_w(5, 6, 7, 8)));
        assert_eq!((d.state, d.flags, d.cflags, d.tag), (5, 6, 7, 8));
    }

    #[test]
    fn overload_set_at_upper_cleared_by_lower_or_three_quarters() {
        // -x 4: set at 4; 3 left keeps it (12 < 12 is false), 2 left clears it.
        let (mut m, d) = dest_maps(4, 0);
        for _ in 0..4 {
            rvs_conn_bind(&mut m, 3, &d, true);
        }
        assert_ne!(m.rvs_dest_cnt.lookup(3).unwrap().flags & DEST_C_OVERLOAD, 0);
        let active = ConnVal {
            cflags: CONN_C_ACTIVE,
            ..conn3()
        };
        rvs_conn_unbind(&mut m, &ConnKey::default(), &active, CONN_C_ACTIVE);
        assert_ne!(m.rvs_dest_cnt.lookup(3).unwrap().flags & DEST_C_OVERLOAD, 0);
        rvs_conn_unbind(&mut m, &ConnKey::default(), &active, CONN_C_ACTIVE);
        assert_eq!(m.rvs_dest_cnt.lookup(3).unwrap().flags, 0);
        // -x 3 -y 2: cleared only below 2.
        let (mut m, d) = dest_maps(3, 2);
        for _ in 0..3 {
            rvs_conn_bind(&mut m, 3, &d, false);
        }
        rvs_conn_unbind(&mut m, &ConnKey::default(), &conn3(), 0);
        assert_ne!(m.rvs_dest_cnt.lookup(3).unwrap().flags & DEST_C_OVERLOAD, 0);
        rvs_conn_unbind(&mut m, &ConnKey::default(), &conn3(), 0);
        assert_eq!(
            m.rvs_dest_cnt.lookup(3).unwrap(),
            DestCnt {
                inactive: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn overload_counts_only_under_the_generation_it_was_set_in() {
        // -x 2 reached: overloaded. An edit that raises -x bumps the generation: no longer overloaded,
        // the counts untouched. The next connection that reaches the new -x sets it again, stamped with
        // the new generation.
        let (mut m, d) = dest_maps(2, 0);
        rvs_conn_bind(&mut m, 3, &d, true);
        rvs_conn_bind(&mut m, 3, &d, false);
        let cnt = m.rvs_dest_cnt.lookup(3).unwrap();
        assert!(rvs_conn_overloaded(&d, &cnt));
        let raised = DestVal {
            u_thresh: 3,
            flags: d.flags | (1 << DEST_F_OGEN_SHIFT),
            ..d
        };
        assert!(!rvs_conn_overloaded(&raised, &cnt));
        assert_eq!((cnt.active, cnt.inactive), (1, 1));
        rvs_conn_bind(&mut m, 3, &raised, true);
        let cnt = m.rvs_dest_cnt.lookup(3).unwrap();
        assert!(rvs_conn_overloaded(&raised, &cnt));
        assert_eq!(cnt.flags, (1 << DEST_F_OGEN_SHIFT) | DEST_C_OVERLOAD);
        assert_eq!((cnt.active, cnt.inactive), (2, 1));
    }

    #[test]
    fn claim_counts_out_once_and_only_for_the_same_generation() {
        let (mut m, d) = dest_maps(0, 0);
        rvs_conn_bind(&mut m, 3, &d, true);
        rvs_conn_bind(&mut m, 3, &d, true);
        let mut c = ConnVal {
            cflags: CONN_C_ACTIVE,
            ..conn3()
        };
        let w = rvs_conn_word_read(&c);
        assert!(rvs_conn_claim(&mut m, &ConnKey::default(), &mut c, w, 9));
        assert_eq!((c.cflags, c.last_ns), (CONN_C_ACTIVE | CONN_C_DEAD, 9));
        let w = rvs_conn_word_read(&c);
        assert!(!rvs_conn_claim(&mut m, &ConnKey::default(), &mut c, w, 10));
        assert_eq!(m.rvs_dest_cnt.lookup(3).unwrap().active, 1);
        // Another generation of dest 3: its counters are not this connection's.
        let mut old = ConnVal {
            cflags: CONN_C_ACTIVE,
            dest_gen: 1,
            ..conn3()
        };
        let w = rvs_conn_word_read(&old);
        assert!(rvs_conn_claim(&mut m, &ConnKey::default(), &mut old, w, 11));
        assert_eq!(m.rvs_dest_cnt.lookup(3).unwrap().active, 1);
    }

    #[test]
    fn touch_moves_the_count_with_the_class_and_leaves_dead_entries() {
        let (mut m, d) = dest_maps(0, 0);
        rvs_conn_bind(&mut m, 3, &d, true);
        let fin = Pkt {
            proto: IPPROTO_TCP,
            tcp_flags: FIN | ACK,
            ..Default::default()
        };
        let mut c = ConnVal {
            state: TcpState::Established as u8,
            cflags: CONN_C_ACTIVE,
            ..conn3()
        };
        rvs_conn_touch(&mut m, &mut c, &fin, RVS_TCP_DIR_INPUT_ONLY, 5);
        assert_eq!((c.state, c.cflags), (TcpState::FinWait as u8, 0));
        let cnt = m.rvs_dest_cnt.lookup(3).unwrap();
        assert_eq!((cnt.active, cnt.inactive), (0, 1));
        let mut dead = ConnVal {
            state: TcpState::Established as u8,
            cflags: CONN_C_ACTIVE | CONN_C_DEAD,
            ..conn3()
        };
        rvs_conn_touch(&mut m, &mut dead, &fin, RVS_TCP_DIR_INPUT_ONLY, 6);
        assert_eq!((dead.state, dead.last_ns), (TcpState::Established as u8, 6));
        assert_eq!(m.rvs_dest_cnt.lookup(3).unwrap(), cnt);
    }

    #[test]
    fn expired_by_the_state_slot_never_without_timeouts_or_behind() {
        let mut m = Maps::new(16);
        let st = TcpState::SynRecv as u8;
        assert!(!rvs_conn_expired(&m, st, 0, u64::MAX));
        let mut t = rvs_abi::Timeouts::default();
        t.s[st as usize] = 60;
        m.rvs_timeouts.update(0, t, BPF_ANY).unwrap();
        assert!(!rvs_conn_expired(&m, st, 10, 10 + 60_000_000_000 - 1));
        assert!(rvs_conn_expired(&m, st, 10, 10 + 60_000_000_000));
        assert!(!rvs_conn_expired(&m, st, 100, 50), "last_ns ahead of now");
        assert!(!rvs_conn_expired(&m, TcpState::Established as u8, 0, u64::MAX));
        assert!(!rvs_conn_expired(&m, 200, 0, u64::MAX));
    }

    #[test]
    fn persist_mask_words_by_prefix_length() {
        let m = |plen, i| rvs_persist_mask_word(plen, i).get();
        assert_eq!(
            (m(0, 0), m(24, 0), m(32, 0), m(32, 1)),
            (0, 0xffff_ff00, u32::MAX, 0)
        );
        assert_eq!(
            (m(64, 1), m(64, 2), m(100, 3), m(128, 3)),
            (u32::MAX, 0, 0xf000_0000, u32::MAX)
        );
    }

    #[test]
    fn persist_key_is_the_client_network_port_0_and_the_service() {
        let vs = SvcKey {
            addr: rvs_abi::addr_v4([198, 18, 0, 10]),
            port: rvs_abi::Be16::new(80),
            proto: IPPROTO_TCP,
            family: rvs_abi::Family::Inet as u8,
        };
        let k = rvs_persist_key(&rvs_abi::addr_v4([198, 18, 2, 77]), &vs, 24);
        assert_eq!(k.saddr, rvs_abi::addr_v4([198, 18, 2, 0]));
        assert_eq!(
            (k.daddr, k.sport.get(), k.dport, k.proto, k.family),
            (vs.addr, 0, vs.port, vs.proto, vs.family)
        );
    }

    #[test]
    fn a_controlled_connection_gives_its_template_control_back_once_and_only_to_its_own() {
        let (mut m, _) = dest_maps(0, 0);
        let vs = SvcKey {
            addr: rvs_abi::addr_v4([198, 18, 0, 10]),
            port: rvs_abi::Be16::new(80),
            proto: IPPROTO_TCP,
            family: rvs_abi::Family::Inet as u8,
        };
        let svc = SvcVal {
            id: 1,
            plen: 24,
            ..Default::default()
        };
        m.rvs_svc_addr.update(1, vs, BPF_ANY).unwrap();
        m.rvs_svc.update(vs, svc, BPF_ANY).unwrap();
        let key = ConnKey {
            saddr: rvs_abi::addr_v4([198, 18, 2, 5]),
            ..Default::default()
        };
        let tkey = rvs_persist_key(&key.saddr, &vs, 24);
        let t = ConnVal {
            flags: CONN_F_TEMPLATE,
            created_ns: 7,
            nctl: 1,
            ..conn3()
        };
        m.rvs_conn.update(tkey, t, BPF_ANY).unwrap();
        let other = ConnVal {
            flags: CONN_F_CONTROLLED,
            ctag: 8,
            ..conn3()
        };
        rvs_conn_unbind(&mut m, &key, &other, 0);
        assert_eq!(
            m.rvs_conn.lookup(&tkey).unwrap().nctl,
            1,
            "another template's tag"
        );
        let mine = ConnVal { ctag: 7, ..other };
        rvs_conn_unbind(&mut m, &key, &mine, 0);
        rvs_conn_unbind(&mut m, &key, &mine, 0);
        assert_eq!(m.rvs_conn.lookup(&tkey).unwrap().nctl, 0, "never below 0");
    }

    #[test]
    fn reuse_only_for_syn_on_time_wait_or_close() {
        let syn = Pkt {
            proto: IPPROTO_TCP,
            tcp_flags: SYN,
            ..Default::default()
        };
        let ack = Pkt {
            tcp_flags: ACK,
            ..syn
        };
        let c = |s: TcpState| ConnVal {
            state: s as u8,
            ..Default::default()
        };
        assert!(rvs_conn_reused(&c(TcpState::TimeWait), &syn));
        assert!(rvs_conn_reused(&c(TcpState::Close), &syn));
        assert!(!rvs_conn_reused(&c(TcpState::FinWait), &syn));
        assert!(!rvs_conn_reused(&c(TcpState::TimeWait), &ack));
    }
}
