//! The connection table (`rvs_conn`), NAT's reply entries and IPVS's TCP state machine. Mirrors
//! bpf/lib/conn.h, which explains the reply entries.

use rvs_abi::{
    CONN_F_INPUT_ONLY, CONN_F_REPLY, ConnKey, ConnVal, DEST_F_VALID, DestVal, DropReason, Fwd, SvcKey,
    SvcVal, TcpState,
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

/// Mirrors `rvs_conn_lookup` (bpf/lib/conn.h). Marks the entry used, as the kernel's LRU does.
pub fn rvs_conn_lookup<'m>(maps: &'m mut Maps, key: &ConnKey) -> Option<&'m mut ConnVal> {
    maps.rvs_conn.lookup(key)
}

/// Mirrors `rvs_conn_dest` (bpf/lib/conn.h).
pub fn rvs_conn_dest(maps: &Maps, conn: &ConnVal, svc: &SvcVal) -> Option<DestVal> {
    if conn.svc_id != svc.id {
        return None;
    }
    let dest = maps.rvs_dest.lookup(conn.dest_id)?;
    if dest.flags & DEST_F_VALID == 0 || dest.svc_id != conn.svc_id {
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

/// Mirrors `rvs_conn_touch` (bpf/lib/conn.h).
pub fn rvs_conn_touch(conn: &mut ConnVal, pkt: &Pkt, dir: u32, now_ns: u64) {
    if pkt.proto == IPPROTO_TCP {
        conn.state = rvs_tcp_next_state(dir, conn.state, pkt.tcp_flags);
    }
    conn.last_ns = now_ns;
}

/// Mirrors `rvs_conn_reply_key` (bpf/lib/conn.h).
pub fn rvs_conn_reply_key(key: &ConnKey, dest: &DestVal) -> ConnKey {
    ConnKey {
        saddr: dest.addr,
        daddr: key.saddr,
        sport: dest.port,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_conn_client_key` (bpf/lib/conn.h).
pub fn rvs_conn_client_key(pkt: &Pkt, vs: &SvcKey) -> ConnKey {
    ConnKey {
        saddr: pkt.daddr,
        daddr: vs.addr,
        sport: pkt.dport,
        dport: vs.port,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// Mirrors `rvs_conn_create` (bpf/lib/conn.h).
pub fn rvs_conn_create(
    maps: &mut Maps,
    key: &ConnKey,
    pkt: &Pkt,
    svc: &SvcVal,
    dest_id: u32,
    dest: &DestVal,
    now_ns: u64,
) -> Result<(), DropReason> {
    let mut val = ConnVal {
        dest_id,
        svc_id: svc.id,
        created_ns: now_ns,
        last_ns: now_ns,
        ..ConnVal::default()
    };
    if dest.fwd == Fwd::Nat as u8 {
        let rkey = rvs_conn_reply_key(key, dest);
        let reply = ConnVal {
            flags: CONN_F_REPLY,
            ..val
        };
        maps.rvs_conn
            .update(rkey, reply, BPF_ANY)
            .map_err(|_| DropReason::ConnFull)?;
    }
    // Replies of DR and TUN bypass the director (IPVS sets NOOUTPUT for every method but NAT).
    val.flags = if dest.fwd == Fwd::Nat as u8 {
        0
    } else {
        CONN_F_INPUT_ONLY
    };
    val.state = if pkt.proto == IPPROTO_TCP {
        rvs_tcp_next_state(rvs_tcp_dir_in(val.flags), TcpState::None as u8, pkt.tcp_flags)
    } else {
        TcpState::UdpNormal as u8
    };
    maps.rvs_conn
        .update(*key, val, BPF_ANY)
        .map_err(|_| DropReason::ConnFull)
}

#[cfg(test)]
mod tests {
    use super::*;
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
