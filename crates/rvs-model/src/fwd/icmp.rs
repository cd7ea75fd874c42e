//! ICMP tied to connections (errors go to the other side of the connection they quote) and echo requests
//! to virtual addresses. Mirrors bpf/lib/icmp.h, whose header comment explains the two directions.

use rvs_abi::{Addr, Be16, Be32, CONN_F_REPLY, DestVal, DropReason, Family, Fwd, SvcVal, VipKey, addr_v6};

use crate::conn::{rvs_conn_dest, rvs_conn_key_of, rvs_conn_lookup, rvs_conn_rport};
use crate::csum::{rvs_csum_replace_addr, rvs_csum_replace2};
use crate::env::{Env, rvs_cpu};
use crate::frame::{Frame, XdpAction};
use crate::fwd::dr::rvs_dr_xmit;
use crate::fwd::fib::rvs_fib_xmit;
use crate::fwd::nat::{NatReply, rvs_nat_reply_conn};
use crate::fwd::tun::{RVS_TUN_IPV4_HLEN, RVS_TUN_IPV6_HLEN, rvs_tun_xmit};
use crate::maps::Maps;
use crate::parse::{Pkt, RVS_IPV6_HLEN, RVS_VLAN_HLEN};
use crate::stats::{rvs_stats_in, rvs_stats_out};
use crate::svc::rvs_svc_lookup;
use crate::wire::{eth, icmp, ipv4, ipv6, udp};
use crate::xdp::Verdict;

/// `RVS_ICMP_HLEN`: type, code, checksum, 4 bytes of rest.
pub const RVS_ICMP_HLEN: usize = icmp::HEADER_LEN;
/// `RVS_ICMP_QUOTE_L4`: quoted transport bytes needed (the ports; RFC 792's 64 bits).
pub const RVS_ICMP_QUOTE_L4: usize = 8;
/// `RVS_ICMP_L4_MAX`: the largest offset of the ICMP header the parser can give.
pub const RVS_ICMP_L4_MAX: usize = eth::HEADER_LEN + RVS_VLAN_HLEN + 60;
/// `RVS_ICMP_ECHO_TTL`: TTL and hop limit of an echo reply.
pub const RVS_ICMP_ECHO_TTL: u8 = 64;
/// `RVS_ICMP_ECHOREPLY`.
pub const RVS_ICMP_ECHOREPLY: u8 = 0;
/// `RVS_ICMP_DEST_UNREACH`.
pub const RVS_ICMP_DEST_UNREACH: u8 = 3;
/// `RVS_ICMP_SOURCE_QUENCH`.
pub const RVS_ICMP_SOURCE_QUENCH: u8 = 4;
/// `RVS_ICMP_ECHO`.
pub const RVS_ICMP_ECHO: u8 = 8;
/// `RVS_ICMP_TIME_EXCEEDED`.
pub const RVS_ICMP_TIME_EXCEEDED: u8 = 11;
/// `RVS_ICMPV6_DEST_UNREACH`.
pub const RVS_ICMPV6_DEST_UNREACH: u8 = 1;
/// `RVS_ICMPV6_PKT_TOOBIG`.
pub const RVS_ICMPV6_PKT_TOOBIG: u8 = 2;
/// `RVS_ICMPV6_TIME_EXCEED`.
pub const RVS_ICMPV6_TIME_EXCEED: u8 = 3;
/// `RVS_ICMPV6_ECHO_REQUEST`.
pub const RVS_ICMPV6_ECHO_REQUEST: u8 = 128;
/// `RVS_ICMPV6_ECHO_REPLY`.
pub const RVS_ICMPV6_ECHO_REPLY: u8 = 129;

const PASS: Verdict = Verdict::Action(XdpAction::Pass);

fn is_inet(family: u8) -> bool {
    family == Family::Inet as u8
}

/// Mirrors `rvs_icmp_is_error` (bpf/lib/icmp.h).
pub fn rvs_icmp_is_error(family: u8, msg_type: u8) -> bool {
    if is_inet(family) {
        return msg_type == RVS_ICMP_DEST_UNREACH
            || msg_type == RVS_ICMP_SOURCE_QUENCH
            || msg_type == RVS_ICMP_TIME_EXCEEDED;
    }
    msg_type == RVS_ICMPV6_DEST_UNREACH
        || msg_type == RVS_ICMPV6_PKT_TOOBIG
        || msg_type == RVS_ICMPV6_TIME_EXCEED
}

/// Mirrors `rvs_icmp_echo` (bpf/lib/icmp.h).
pub fn rvs_icmp_echo(maps: &Maps, frame: &mut Frame, pkt: &Pkt) -> Verdict {
    let key = VipKey {
        addr: pkt.daddr,
        family: pkt.family,
        _pad: [0; 3],
    };
    if maps.rvs_vip.lookup(&key).is_none() {
        return PASS;
    }
    let (l3_off, l4_off) = (usize::from(pkt.l3_off), usize::from(pkt.l4_off));
    if l4_off > RVS_ICMP_L4_MAX {
        return Verdict::Drop(DropReason::L4Short);
    }
    let data = frame.data_mut();
    if data.len() < l4_off + RVS_ICMP_HLEN || data.len() < eth::HEADER_LEN {
        return Verdict::Drop(DropReason::L4Short);
    }
    if let Some(mut h) = icmp::Header::new_checked(data.get_mut(l4_off..).unwrap_or_default()) {
        let old = h.type_code();
        h.set_msg_type(if is_inet(pkt.family) {
            RVS_ICMP_ECHOREPLY
        } else {
            RVS_ICMPV6_ECHO_REPLY
        });
        let check = rvs_csum_replace2(h.check(), old, h.type_code());
        h.set_check(check);
    }
    let l3 = data.get_mut(l3_off..).unwrap_or_default();
    if is_inet(pkt.family) {
        let Some(mut ip) = ipv4::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv4Short);
        };
        let (s, d) = (ip.saddr(), ip.daddr());
        ip.set_saddr(d);
        ip.set_daddr(s);
        // TTL and protocol share one 16-bit word of the header.
        let old = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_ttl(RVS_ICMP_ECHO_TTL);
        let new = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_check(rvs_csum_replace2(ip.check(), old, new));
    } else {
        let Some(mut ip6) = ipv6::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv6Short);
        };
        let (s, d) = (ip6.saddr(), ip6.daddr());
        ip6.set_saddr(d);
        ip6.set_daddr(s);
        ip6.set_hop_limit(RVS_ICMP_ECHO_TTL);
    }
    if let Some(mut e) = eth::Header::new_checked(data) {
        let (s, d) = (e.src(), e.dst());
        e.set_src(d);
        e.set_dst(s);
    }
    Verdict::Action(XdpAction::Tx)
}

/// Mirrors `rvs_icmp_inner` (bpf/lib/icmp.h): the quote, turned around, or the verdict (XDP_PASS).
pub fn rvs_icmp_inner(frame: &Frame, pkt: &Pkt) -> Result<Pkt, Verdict> {
    let data = frame.data();
    let end = usize::from(pkt.l3_off) + usize::from(pkt.ip_len);
    let off = usize::from(pkt.l4_off) + RVS_ICMP_HLEN;
    let mut inv = Pkt::default();
    if usize::from(pkt.l4_off) > RVS_ICMP_L4_MAX {
        return Err(PASS);
    }
    let rest = data.get(off..).unwrap_or_default();
    let hlen = if is_inet(pkt.family) {
        if off + ipv4::HEADER_LEN > end {
            return Err(PASS);
        }
        let Some(ip) = ipv4::Header::new_checked(rest) else {
            return Err(PASS);
        };
        if ip.version() != 4 || ip.ihl() < 5 {
            return Err(PASS);
        }
        if ip.frag_off() & ipv4::IP_OFFSET != 0 {
            return Err(PASS);
        }
        if ip.protocol() != ipv4::IPPROTO_TCP && ip.protocol() != ipv4::IPPROTO_UDP {
            return Err(PASS);
        }
        inv.saddr[0] = Be32::from_wire(ip.daddr());
        inv.daddr[0] = Be32::from_wire(ip.saddr());
        inv.proto = ip.protocol();
        usize::from(ip.ihl()) * 4
    } else {
        if off + ipv6::HEADER_LEN > end {
            return Err(PASS);
        }
        let Some(ip6) = ipv6::Header::new_checked(rest) else {
            return Err(PASS);
        };
        if ip6.version() != 6 {
            return Err(PASS);
        }
        if ip6.next_header() != ipv4::IPPROTO_TCP && ip6.next_header() != ipv4::IPPROTO_UDP {
            return Err(PASS);
        }
        inv.saddr = addr_v6(ip6.daddr());
        inv.daddr = addr_v6(ip6.saddr());
        inv.proto = ip6.next_header();
        RVS_IPV6_HLEN
    };
    if off + hlen + RVS_ICMP_QUOTE_L4 > end {
        return Err(PASS);
    }
    // TCP's ports sit where UDP's do; the UDP view reads the first 8 bytes of either.
    let Some(ports) = udp::Header::new_checked(data.get(off + hlen..).unwrap_or_default()) else {
        return Err(PASS);
    };
    inv.sport = Be16::from_wire(ports.dst_port());
    inv.dport = Be16::from_wire(ports.src_port());
    inv.family = pkt.family;
    // Both fit: off is at most RVS_ICMP_L4_MAX + 8, hlen at most 60.
    inv.l3_off = off as u16;
    inv.l4_off = (off + hlen) as u16;
    Ok(inv)
}

/// Mirrors `rvs_icmp_nat` (bpf/lib/icmp.h).
pub fn rvs_icmp_nat(
    frame: &mut Frame,
    pkt: &mut Pkt,
    inv: &Pkt,
    out: bool,
    addr: &Addr,
    port: Be16,
) -> Verdict {
    let (l3_off, l4_off) = (usize::from(pkt.l3_off), usize::from(pkt.l4_off));
    let (in_l3, in_l4) = (usize::from(inv.l3_off), usize::from(inv.l4_off));
    if l4_off > RVS_ICMP_L4_MAX || in_l4 > RVS_ICMP_L4_MAX + RVS_ICMP_HLEN + 60 {
        return Verdict::Drop(DropReason::L4Short);
    }
    let data = frame.data_mut();
    if data.len() < l4_off + RVS_ICMP_HLEN || data.len() < in_l4 + 4 {
        return Verdict::Drop(DropReason::L4Short);
    }
    let mut check =
        icmp::Header::new_checked(data.get(l4_off..).unwrap_or_default()).map_or(0, |h| h.check());
    if is_inet(pkt.family) {
        let ip_len = ipv4::HEADER_LEN;
        if data.len() < l3_off + ip_len || data.len() < in_l3 + ip_len {
            return Verdict::Drop(DropReason::Ipv4Short);
        }
        if let Some(mut ip) = ipv4::Header::new_checked(data.get_mut(l3_off..).unwrap_or_default()) {
            let old = rvs_abi::addr_v4(if out { ip.saddr() } else { ip.daddr() });
            if out {
                ip.set_saddr(addr[0].to_wire());
            } else {
                ip.set_daddr(addr[0].to_wire());
            }
            ip.set_check(rvs_csum_replace_addr(ip.check(), &old, addr, Family::Inet as u8));
        }
        if let Some(mut ip) = ipv4::Header::new_checked(data.get_mut(in_l3..).unwrap_or_default()) {
            let old = rvs_abi::addr_v4(if out { ip.daddr() } else { ip.saddr() });
            if out {
                ip.set_daddr(addr[0].to_wire());
            } else {
                ip.set_saddr(addr[0].to_wire());
            }
            let old_check = ip.check();
            let new_check = rvs_csum_replace_addr(old_check, &old, addr, Family::Inet as u8);
            ip.set_check(new_check);
            check = rvs_csum_replace_addr(check, &old, addr, Family::Inet as u8);
            check = rvs_csum_replace2(check, old_check, new_check);
        }
    } else {
        let ip_len = ipv6::HEADER_LEN;
        if data.len() < l3_off + ip_len || data.len() < in_l3 + ip_len {
            return Verdict::Drop(DropReason::Ipv6Short);
        }
        let new = rvs_abi::addr_bytes(addr);
        // The outer address is in ICMPv6's pseudo-header.
        if let Some(mut ip6) = ipv6::Header::new_checked(data.get_mut(l3_off..).unwrap_or_default()) {
            let old = addr_v6(if out { ip6.saddr() } else { ip6.daddr() });
            if out {
                ip6.set_saddr(new);
            } else {
                ip6.set_daddr(new);
            }
            check = rvs_csum_replace_addr(check, &old, addr, Family::Inet6 as u8);
        }
        if let Some(mut ip6) = ipv6::Header::new_checked(data.get_mut(in_l3..).unwrap_or_default()) {
            let old = addr_v6(if out { ip6.daddr() } else { ip6.saddr() });
            if out {
                ip6.set_daddr(new);
            } else {
                ip6.set_saddr(new);
            }
            check = rvs_csum_replace_addr(check, &old, addr, Family::Inet6 as u8);
        }
    }
    // The quote's ports: source first, then destination.
    let at = if out { in_l4 + 2 } else { in_l4 };
    if let Some(p) = data.get_mut(at..at + 2) {
        let old = u16::from_be_bytes([p[0], p[1]]);
        check = rvs_csum_replace2(check, old, port.get());
        p.copy_from_slice(&port.to_wire());
    }
    if let Some(mut h) = icmp::Header::new_checked(data.get_mut(l4_off..).unwrap_or_default()) {
        h.set_check(check);
    }
    if out {
        pkt.saddr = *addr;
    } else {
        pkt.daddr = *addr;
    }
    Verdict::Ok
}

/// Mirrors `rvs_icmp_xmit` (bpf/lib/icmp.h).
pub fn rvs_icmp_xmit(
    maps: &Maps,
    env: &Env,
    frame: &mut Frame,
    pkt: &mut Pkt,
    inv: &Pkt,
    dest: &DestVal,
) -> Verdict {
    let room = if dest.family == Family::Inet6 as u8 {
        RVS_TUN_IPV6_HLEN
    } else {
        RVS_TUN_IPV4_HLEN
    };
    if dest.fwd == Fwd::Dr as u8 {
        return rvs_dr_xmit(frame, dest);
    }
    if dest.fwd == Fwd::Tun as u8 {
        if dest.mtu != 0 && usize::from(pkt.ip_len) + room > dest.mtu as usize {
            return Verdict::Drop(DropReason::TooBig);
        }
        return rvs_tun_xmit(frame, env, pkt, dest);
    }
    if dest.fwd == Fwd::Nat as u8 {
        if dest.family != pkt.family {
            return Verdict::Drop(DropReason::FwdUnsupp);
        }
        let port = rvs_conn_rport(dest, inv.dport);
        let ret = rvs_icmp_nat(frame, pkt, inv, false, &dest.addr, port);
        if ret != Verdict::Ok {
            return ret;
        }
        return rvs_fib_xmit(maps, env, frame, pkt);
    }
    Verdict::Drop(DropReason::FwdUnsupp)
}

/// Mirrors `rvs_icmp_in` (bpf/lib/icmp.h).
pub fn rvs_icmp_in(
    maps: &mut Maps,
    env: &Env,
    frame: &mut Frame,
    pkt: &mut Pkt,
    inv: &Pkt,
    svc: &SvcVal,
) -> Verdict {
    let key = rvs_conn_key_of(inv);
    let Some(conn) = rvs_conn_lookup(maps, &key).copied() else {
        return PASS;
    };
    if conn.flags & CONN_F_REPLY != 0 {
        return PASS;
    }
    let Some(dest) = rvs_conn_dest(maps, &conn, svc) else {
        return PASS;
    };
    let ret = rvs_icmp_xmit(maps, env, frame, pkt, inv, &dest);
    if let Verdict::Drop(_) = ret {
        return ret;
    }
    rvs_stats_in(maps, rvs_cpu(env), svc.id, conn.dest_id, u32::from(pkt.ip_len));
    ret
}

/// Mirrors `rvs_icmp_out` (bpf/lib/icmp.h).
pub fn rvs_icmp_out(maps: &mut Maps, env: &Env, frame: &mut Frame, pkt: &mut Pkt, inv: &Pkt) -> Verdict {
    let Some(NatReply { rep, svc, conn, .. }) = rvs_nat_reply_conn(maps, inv) else {
        return PASS;
    };
    let svc_id = svc.id;
    let ret = rvs_icmp_nat(frame, pkt, inv, true, &rep.vaddr, rep.vport);
    if ret != Verdict::Ok {
        return ret;
    }
    let ret = rvs_fib_xmit(maps, env, frame, pkt);
    if let Verdict::Drop(_) = ret {
        return ret;
    }
    rvs_stats_out(maps, rvs_cpu(env), svc_id, conn.dest_id, u32::from(pkt.ip_len));
    ret
}

/// Mirrors `rvs_icmp_process` (bpf/lib/icmp.h).
pub fn rvs_icmp_process(maps: &mut Maps, env: &Env, frame: &mut Frame, pkt: &mut Pkt) -> Verdict {
    let l4_off = usize::from(pkt.l4_off);
    if l4_off > RVS_ICMP_L4_MAX || l4_off + RVS_ICMP_HLEN > usize::from(pkt.l3_off) + usize::from(pkt.ip_len)
    {
        return PASS;
    }
    let Some(h) = icmp::Header::new_checked(frame.data().get(l4_off..).unwrap_or_default()) else {
        return PASS;
    };
    let msg_type = h.msg_type();
    let echo = if is_inet(pkt.family) {
        RVS_ICMP_ECHO
    } else {
        RVS_ICMPV6_ECHO_REQUEST
    };
    if msg_type == echo {
        return rvs_icmp_echo(maps, frame, pkt);
    }
    if !rvs_icmp_is_error(pkt.family, msg_type) {
        return PASS;
    }
    let inv = match rvs_icmp_inner(frame, pkt) {
        Ok(inv) => inv,
        Err(v) => return v,
    };
    if let Some(svc) = rvs_svc_lookup(maps, &inv) {
        return rvs_icmp_in(maps, env, frame, pkt, &inv, &svc);
    }
    rvs_icmp_out(maps, env, frame, pkt, &inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdp::rvs_xdp_ingress;
    use etherparse::{Icmpv4Header, Icmpv4Type, PacketBuilder};
    use rvs_abi::{Be16, DEST_F_NEIGH, DEST_F_VALID, MapOp, SvcKey, SvcState, SvcVal, addr_v4};

    const VIP: [u8; 4] = [198, 18, 0, 10];
    const CLIENT: [u8; 4] = [198, 18, 2, 5];

    /// One DR service VIP:80 -> dest 4, with VIP in rvs_vip.
    fn maps() -> Maps {
        let mut m = Maps::new(64);
        let dest = DestVal {
            dmac: [0xd; 6],
            smac: [0x5; 6],
            ifindex: crate::frame::TEST_RUN_INGRESS_IFINDEX,
            svc_id: 1,
            weight: 1,
            flags: DEST_F_VALID | DEST_F_NEIGH,
            ..Default::default()
        };
        let key = SvcKey {
            addr: addr_v4(VIP),
            port: Be16::new(80),
            proto: 6,
            family: Family::Inet as u8,
        };
        let val = SvcVal {
            id: 1,
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
            MapOp::VipSet {
                key: VipKey::of(&key),
            },
        ])
        .unwrap();
        m
    }

    fn build(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn syn() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(CLIENT, VIP, 64)
            .tcp(40000, 80, 1, 1024)
            .syn();
        build(b, &[])
    }

    /// A router's "fragmentation needed" to the VIP quoting VIP:80 -> client:40000 (IP header + 8).
    fn frag_needed() -> Vec<u8> {
        let quote = PacketBuilder::ipv4(VIP, CLIENT, 63)
            .tcp(80, 40000, 7, 1024)
            .ack(1);
        let mut q = Vec::new();
        quote.write(&mut q, &[]).unwrap();
        q.truncate(28);
        let ty = Icmpv4Type::Unknown {
            type_u8: RVS_ICMP_DEST_UNREACH,
            code_u8: 4,
            bytes5to8: [0, 0, 5, 20],
        };
        let b = PacketBuilder::ethernet2([3; 6], [4; 6])
            .ipv4([198, 18, 3, 1], VIP, 64)
            .icmpv4(ty);
        let mut out = Vec::new();
        b.write(&mut out, &q).unwrap();
        out
    }

    fn echo() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(CLIENT, VIP, 60)
            .icmpv4_echo_request(0x1234, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"abcdefgh").unwrap();
        out
    }

    #[test]
    fn error_types_of_each_family() {
        let v4 = Family::Inet as u8;
        let v6 = Family::Inet6 as u8;
        assert!([3, 4, 11].iter().all(|&t| rvs_icmp_is_error(v4, t)));
        assert!(![0, 5, 8, 12].iter().any(|&t| rvs_icmp_is_error(v4, t)));
        assert!([1, 2, 3].iter().all(|&t| rvs_icmp_is_error(v6, t)));
        assert!(![4, 128, 135].iter().any(|&t| rvs_icmp_is_error(v6, t)));
    }

    #[test]
    fn frag_needed_goes_to_the_connections_real_and_leaves_the_connection_alone() {
        let mut m = maps();
        let env = Env {
            now_ns: 5,
            ..Env::default()
        };
        assert_eq!(
            rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&syn())),
            XdpAction::Tx
        );
        let before = m.rvs_conn.entries();
        let input = frag_needed();
        let mut f = Frame::new(&input);
        let later = Env {
            now_ns: 9,
            ..Env::default()
        };
        assert_eq!(rvs_xdp_ingress(&mut m, &later, &mut f), XdpAction::Tx);
        assert_eq!(&f.data()[..12], &[[0xd; 6], [0x5; 6]].concat()[..]);
        assert_eq!(&f.data()[12..], &input[12..]);
        assert_eq!(m.rvs_conn.entries(), before, "the error changed the connection");
        assert_eq!(m.rvs_svc_stats.lookup(0, 1).unwrap().inpkts, 2);
        // Without the connection: to the stack, untouched.
        let mut m = maps();
        let mut f = Frame::new(&input);
        assert_eq!(rvs_xdp_ingress(&mut m, &later, &mut f), XdpAction::Pass);
        assert_eq!(f.data(), &input[..]);
    }

    #[test]
    fn echo_to_a_vip_is_answered_with_valid_checksums() {
        let mut m = maps();
        let mut f = Frame::new(&echo());
        assert_eq!(rvs_xdp_ingress(&mut m, &Env::default(), &mut f), XdpAction::Tx);
        let p = etherparse::SlicedPacket::from_ethernet(f.data()).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!((h.source(), h.destination(), h.ttl()), (VIP, CLIENT, 64));
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(icmp.type_u8(), RVS_ICMP_ECHOREPLY);
        let want = Icmpv4Header::with_checksum(icmp.icmp_type(), icmp.payload()).checksum;
        assert_eq!(icmp.checksum(), want);
        // The request went from [2; 6] to [4; 6] (destination first on the wire); the answer back.
        assert_eq!(&f.data()[..12], &[[2; 6], [4; 6]].concat()[..]);
        // Without the VIP in rvs_vip: passed untouched.
        let mut m = Maps::new(64);
        let input = echo();
        let mut f = Frame::new(&input);
        assert_eq!(rvs_xdp_ingress(&mut m, &Env::default(), &mut f), XdpAction::Pass);
        assert_eq!(f.data(), &input[..]);
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let env = Env::default();
        for input in [frag_needed(), echo()] {
            for len in 0..=input.len() {
                let mut m = maps();
                let _ = rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&syn()));
                let _ = rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&input[..len]));
            }
            for i in 0..input.len() {
                for x in [0x01u8, 0x0f, 0x80, 0xff] {
                    let mut f = input.clone();
                    f[i] ^= x;
                    let mut m = maps();
                    let _ = rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&syn()));
                    let _ = rvs_xdp_ingress(&mut m, &env, &mut Frame::new(&f));
                }
            }
        }
    }
}
