//! VS/NAT ("Masq"): destination rewrite toward a real server, source rewrite of its replies, with
//! incremental checksums, then forwarding by the routing table. Mirrors bpf/lib/nat.h.

use rvs_abi::{
    Addr, Be16, CFG_F_NAT, CONN_F_REPLY, ConnKey, ConnRep, ConnVal, DestVal, DropReason, Family, Fwd, SvcVal,
};

use crate::conn::{rvs_conn_client_key, rvs_conn_dest, rvs_conn_key_of, rvs_conn_lookup, rvs_conn_rport};
use crate::csum::{rvs_csum_replace_addr, rvs_csum_replace2};
use crate::env::Env;
use crate::frame::Frame;
use crate::fwd::fib::rvs_fib_xmit;
use crate::maps::Maps;
use crate::parse::Pkt;
use crate::wire::{ipv4, ipv6, tcp, udp};
use crate::xdp::Verdict;

/// `RVS_CSUM_MANGLED_0`: written for a UDP checksum that computes to 0.
pub const RVS_CSUM_MANGLED_0: u16 = 0xffff;

/// Mirrors `rvs_nat_enabled` (bpf/lib/nat.h).
pub fn rvs_nat_enabled(maps: &Maps) -> bool {
    maps.rvs_cfg.lookup(0).is_some_and(|c| c.flags & CFG_F_NAT != 0)
}

/// Mirrors `rvs_nat_l4_csum` (bpf/lib/nat.h). The checksum after the change, as a number.
pub fn rvs_nat_l4_csum(check: u16, pkt: &Pkt, old: &Addr, new: &Addr, old_port: Be16, new_port: Be16) -> u16 {
    let udp = pkt.proto == ipv4::IPPROTO_UDP;
    if udp && pkt.family == Family::Inet as u8 && check == 0 {
        return check;
    }
    let check = rvs_csum_replace_addr(check, old, new, pkt.family);
    let check = rvs_csum_replace2(check, old_port.get(), new_port.get());
    if udp && check == 0 {
        return RVS_CSUM_MANGLED_0;
    }
    check
}

/// Mirrors `rvs_nat_rewrite` (bpf/lib/nat.h).
pub fn rvs_nat_rewrite(frame: &mut Frame, pkt: &mut Pkt, dnat: bool, addr: &Addr, port: Be16) -> Verdict {
    let (l3_off, l4_off) = (usize::from(pkt.l3_off), usize::from(pkt.l4_off));
    let data = frame.data_mut();
    // The L4 header first, as the C checks it first (the same drop reason for a short frame).
    let (check, l4_port) = {
        let l4 = data.get(l4_off..).unwrap_or_default();
        if pkt.proto == ipv4::IPPROTO_TCP {
            let Some(t) = tcp::Header::new_checked(l4) else {
                return Verdict::Drop(DropReason::L4Short);
            };
            (t.check(), if dnat { t.dst_port() } else { t.src_port() })
        } else {
            let Some(u) = udp::Header::new_checked(l4) else {
                return Verdict::Drop(DropReason::L4Short);
            };
            (u.check(), if dnat { u.dst_port() } else { u.src_port() })
        }
    };
    let l3 = data.get_mut(l3_off..).unwrap_or_default();
    let old: Addr = if pkt.family == Family::Inet as u8 {
        let Some(mut ip) = ipv4::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv4Short);
        };
        let old = rvs_abi::addr_v4(if dnat { ip.daddr() } else { ip.saddr() });
        let new = addr[0].to_wire();
        if dnat {
            ip.set_daddr(new);
        } else {
            ip.set_saddr(new);
        }
        ip.set_check(rvs_csum_replace_addr(ip.check(), &old, addr, Family::Inet as u8));
        old
    } else {
        let Some(mut ip6) = ipv6::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv6Short);
        };
        let old = rvs_abi::addr_v6(if dnat { ip6.daddr() } else { ip6.saddr() });
        let new = rvs_abi::addr_bytes(addr);
        if dnat {
            ip6.set_daddr(new);
        } else {
            ip6.set_saddr(new);
        }
        old
    };
    let check = rvs_nat_l4_csum(check, pkt, &old, addr, Be16::from_wire(l4_port), port);
    // Both views were length-checked above; the frame has not changed length since.
    let l4 = data.get_mut(l4_off..).unwrap_or_default();
    if pkt.proto == ipv4::IPPROTO_TCP {
        if let Some(mut t) = tcp::Header::new_checked(l4) {
            t.set_check(check);
            if dnat {
                t.set_dst_port(port.to_wire());
            } else {
                t.set_src_port(port.to_wire());
            }
        }
    } else if let Some(mut u) = udp::Header::new_checked(l4) {
        u.set_check(check);
        if dnat {
            u.set_dst_port(port.to_wire());
        } else {
            u.set_src_port(port.to_wire());
        }
    }
    // `addr` is in the maps' form: an IPv4 address has words 1..3 zero, as pkt's.
    if dnat {
        pkt.daddr = *addr;
        pkt.dport = port;
    } else {
        pkt.saddr = *addr;
        pkt.sport = port;
    }
    Verdict::Ok
}

/// Mirrors `rvs_nat_xmit` (bpf/lib/nat.h).
pub fn rvs_nat_xmit(maps: &Maps, env: &Env, frame: &mut Frame, pkt: &mut Pkt, dest: &DestVal) -> Verdict {
    if dest.family != pkt.family {
        return Verdict::Drop(DropReason::FwdUnsupp);
    }
    let port = rvs_conn_rport(dest, pkt.dport);
    let ret = rvs_nat_rewrite(frame, pkt, true, &dest.addr, port);
    if ret != Verdict::Ok {
        return ret;
    }
    rvs_fib_xmit(maps, env, frame, pkt)
}

/// Mirrors `rvs_nat_from_dest` (bpf/lib/nat.h).
pub fn rvs_nat_from_dest(pkt: &Pkt, dest: &DestVal, vport: Be16) -> bool {
    dest.fwd == Fwd::Nat as u8
        && dest.family == pkt.family
        && dest.addr == pkt.saddr
        && rvs_conn_rport(dest, vport) == pkt.sport
}

/// Mirrors `rvs_nat_reply_xmit` (bpf/lib/nat.h).
pub fn rvs_nat_reply_xmit(
    maps: &Maps,
    env: &Env,
    frame: &mut Frame,
    pkt: &mut Pkt,
    rep: &ConnRep,
) -> Verdict {
    let ret = rvs_nat_rewrite(frame, pkt, false, &rep.vaddr, rep.vport);
    if ret != Verdict::Ok {
        return ret;
    }
    rvs_fib_xmit(maps, env, frame, pkt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_all;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use rvs_abi::addr_v4;

    fn parsed(f: &Frame) -> Pkt {
        let mut pkt = Pkt::default();
        assert_eq!(parse_all(f.data(), &mut pkt), Verdict::Ok);
        pkt
    }

    /// Every checksum of the frame is right, by etherparse (which shares no code with the model).
    fn checksums_ok(f: &[u8]) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let (src, dst, v4) = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                (h.source().to_vec(), h.destination().to_vec(), true)
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                (h.source().to_vec(), h.destination().to_vec(), false)
            }
            other => panic!("not IP: {other:?}"),
        };
        let (s4, d4) = (src.clone().try_into(), dst.clone().try_into());
        let (s6, d6) = (src.try_into(), dst.try_into());
        match p.transport {
            Some(TransportSlice::Tcp(t)) => {
                let want = if v4 {
                    t.calc_checksum_ipv4(s4.unwrap(), d4.unwrap()).unwrap()
                } else {
                    t.calc_checksum_ipv6(s6.unwrap(), d6.unwrap()).unwrap()
                };
                assert_eq!(want, t.checksum());
            }
            Some(TransportSlice::Udp(u)) => {
                if u.checksum() != 0 || !v4 {
                    let h = u.to_header();
                    let want = if v4 {
                        h.calc_checksum_ipv4_raw(s4.unwrap(), d4.unwrap(), u.payload())
                            .unwrap()
                    } else {
                        h.calc_checksum_ipv6_raw(s6.unwrap(), d6.unwrap(), u.payload())
                            .unwrap()
                    };
                    assert_eq!(want, u.checksum());
                }
            }
            other => panic!("not TCP/UDP: {other:?}"),
        }
    }

    fn tcp4() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 2, 5], [198, 18, 0, 10], 64)
            .tcp(40000, 80, 7, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    #[test]
    fn dnat_then_snat_gives_back_the_original_bytes_and_valid_checksums() {
        let input = tcp4();
        let mut f = Frame::new(&input);
        let mut pkt = parsed(&f);
        let rip = addr_v4([198, 18, 1, 2]);
        assert_eq!(
            rvs_nat_rewrite(&mut f, &mut pkt, true, &rip, Be16::new(8080)),
            Verdict::Ok
        );
        checksums_ok(f.data());
        assert_eq!((pkt.daddr, pkt.dport.get()), (rip, 8080));
        assert_eq!(&f.data()[30..34], &[198, 18, 1, 2]);
        // The reverse rewrite of the destination restores every byte.
        let vip = addr_v4([198, 18, 0, 10]);
        assert_eq!(
            rvs_nat_rewrite(&mut f, &mut pkt, true, &vip, Be16::new(80)),
            Verdict::Ok
        );
        assert_eq!(f.data(), &input[..]);
        assert_eq!(
            rvs_nat_rewrite(&mut f, &mut pkt, false, &rip, Be16::new(8080)),
            Verdict::Ok
        );
        checksums_ok(f.data());
        assert_eq!(&f.data()[26..30], &[198, 18, 1, 2]);
    }

    #[test]
    fn ipv4_udp_without_checksum_stays_without_one() {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 2, 5], [198, 18, 0, 10], 64)
            .udp(5353, 53);
        let mut input = Vec::new();
        b.write(&mut input, b"q").unwrap();
        input[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        let mut f = Frame::new(&input);
        let mut pkt = parsed(&f);
        let rip = addr_v4([198, 18, 1, 2]);
        assert_eq!(
            rvs_nat_rewrite(&mut f, &mut pkt, true, &rip, Be16::new(5300)),
            Verdict::Ok
        );
        assert_eq!(&f.data()[40..42], &[0, 0]);
        checksums_ok(f.data());
    }

    #[test]
    fn a_udp_checksum_that_computes_to_zero_is_written_ffff() {
        let pkt = Pkt {
            proto: ipv4::IPPROTO_UDP,
            family: Family::Inet6 as u8,
            ..Pkt::default()
        };
        // Check 0xffff with nothing changing: ~(~0xffff + ~0 + 0) folds to ~0xffff = 0.
        let z = rvs_abi::addr_v6([0; 16]);
        assert_eq!(
            rvs_nat_l4_csum(0xffff, &pkt, &z, &z, Be16::new(0), Be16::new(0)),
            RVS_CSUM_MANGLED_0
        );
    }
}

/// What [`rvs_nat_reply_conn`] found: copies of the entries, with the keys to write them back under.
#[derive(Clone, Copy, Debug)]
pub struct NatReply {
    /// The reply entry's key (the packet's tuple).
    pub rkey: ConnKey,
    /// The reply entry.
    pub rep: ConnRep,
    /// The service.
    pub svc: SvcVal,
    /// The client-side entry's key.
    pub key: ConnKey,
    /// The connection.
    pub conn: ConnVal,
    /// Its real server.
    pub dest: DestVal,
}

/// Mirrors `rvs_nat_reply_conn` (bpf/lib/nat.h).
pub fn rvs_nat_reply_conn(maps: &mut Maps, pkt: &Pkt) -> Option<NatReply> {
    if !rvs_nat_enabled(maps) {
        return None;
    }
    let rkey = rvs_conn_key_of(pkt);
    let rep = rvs_conn_lookup(maps, &rkey)?.as_rep();
    if rep.flags & CONN_F_REPLY == 0 {
        return None;
    }
    let vs = maps.rvs_svc_addr.lookup(rep.svc_id)?;
    let svc = *maps.rvs_svc.lookup(&vs).filter(|s| s.id == rep.svc_id)?;
    let key = rvs_conn_client_key(pkt, &rep);
    let conn = *rvs_conn_lookup(maps, &key)?;
    if conn.flags & CONN_F_REPLY != 0 || conn.dest_id != rep.dest_id {
        return None;
    }
    let dest = rvs_conn_dest(maps, &conn, &svc)?;
    if !rvs_nat_from_dest(pkt, &dest, rep.vport) {
        return None;
    }
    Some(NatReply {
        rkey,
        rep,
        svc,
        key,
        conn,
        dest,
    })
}
