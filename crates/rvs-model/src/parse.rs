//! Ethernet (+ one 802.1Q tag), IPv4, IPv6, TCP and UDP parsing into [`Pkt`] (ICMP and ICMPv6 stop after
//! the IP header: [`crate::fwd::icmp`] reads them). Mirrors bpf/lib/parse.h: the
//! checks run in the C's order, so both sides report the same drop reason for a frame that is wrong in
//! more than one way.

use rvs_abi::{Addr, Be16, Be32, DropReason, Family, addr_v6};

use crate::frame::XdpAction;
use crate::wire::{eth, ipv4, ipv6, tcp, udp};
use crate::xdp::Verdict;

/// `RVS_VLAN_HLEN`.
pub const RVS_VLAN_HLEN: usize = eth::VLAN_LEN;
/// `RVS_IPV6_HLEN`.
pub const RVS_IPV6_HLEN: usize = ipv6::HEADER_LEN;

/// What the later stages need to know about a packet. Mirrors `struct rvs_pkt` (bpf/lib/parse.h);
/// addresses and ports stay in network order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pkt {
    /// Source address (IPv4 in word 0).
    pub saddr: Addr,
    /// Destination address.
    pub daddr: Addr,
    /// Source port.
    pub sport: Be16,
    /// Destination port.
    pub dport: Be16,
    /// Offset of the IP header in the frame.
    pub l3_off: u16,
    /// Offset of the TCP/UDP (or ICMP) header in the frame.
    pub l4_off: u16,
    /// IP total length, host order: the unit of the byte counters.
    pub ip_len: u16,
    /// IPPROTO_TCP, IPPROTO_UDP, or IPPROTO_ICMP(V6) until bpf/lib/icmp.h.
    pub proto: u8,
    /// `Family` as u8.
    pub family: u8,
    /// Byte 13 of the TCP header; 0 for UDP.
    pub tcp_flags: u8,
}

/// Mirrors `rvs_parse_eth` (bpf/lib/parse.h).
pub fn rvs_parse_eth(data: &[u8], pkt: &mut Pkt) -> Verdict {
    let Some(eth) = eth::Header::new_checked(data) else {
        return Verdict::Drop(DropReason::EthShort);
    };
    let mut off = eth::HEADER_LEN;
    let mut proto = eth.ethertype();
    if proto == eth::ETH_P_8021Q {
        let Some(tag) = data.get(eth::HEADER_LEN..).and_then(eth::VlanTag::new_checked) else {
            return Verdict::Drop(DropReason::EthShort);
        };
        proto = tag.ethertype();
        off += RVS_VLAN_HLEN;
    }
    pkt.family = match proto {
        eth::ETH_P_IP => Family::Inet as u8,
        eth::ETH_P_IPV6 => Family::Inet6 as u8,
        _ => return Verdict::Action(XdpAction::Pass),
    };
    pkt.l3_off = off as u16;
    Verdict::Ok
}

/// Mirrors `rvs_parse_ipv4` (bpf/lib/parse.h).
pub fn rvs_parse_ipv4(data: &[u8], pkt: &mut Pkt) -> Verdict {
    let l3 = usize::from(pkt.l3_off);
    let rest = data.get(l3..).unwrap_or_default();
    let Some(ip) = ipv4::Header::new_checked(rest) else {
        return Verdict::Drop(DropReason::Ipv4Short);
    };
    if ip.version() != 4 || ip.ihl() < 5 {
        return Verdict::Drop(DropReason::Ipv4Bad);
    }
    let hlen = usize::from(ip.ihl()) * 4;
    if hlen > rest.len() {
        return Verdict::Drop(DropReason::Ipv4Short);
    }
    let tot_len = usize::from(ip.tot_len());
    if tot_len < hlen || tot_len > rest.len() {
        return Verdict::Drop(DropReason::Ipv4Bad);
    }
    if ip.is_fragment() {
        return Verdict::Action(XdpAction::Pass);
    }
    if ip.protocol() != ipv4::IPPROTO_TCP
        && ip.protocol() != ipv4::IPPROTO_UDP
        && ip.protocol() != ipv4::IPPROTO_ICMP
    {
        return Verdict::Action(XdpAction::Pass);
    }
    pkt.saddr[0] = Be32::from_wire(ip.saddr());
    pkt.daddr[0] = Be32::from_wire(ip.daddr());
    pkt.proto = ip.protocol();
    pkt.ip_len = tot_len as u16;
    pkt.l4_off = pkt.l3_off + hlen as u16;
    Verdict::Ok
}

/// Mirrors `rvs_parse_ipv6` (bpf/lib/parse.h).
pub fn rvs_parse_ipv6(data: &[u8], pkt: &mut Pkt) -> Verdict {
    let rest = data.get(usize::from(pkt.l3_off)..).unwrap_or_default();
    let Some(ip6) = ipv6::Header::new_checked(rest) else {
        return Verdict::Drop(DropReason::Ipv6Short);
    };
    if ip6.version() != 6 {
        return Verdict::Drop(DropReason::Ipv6Bad);
    }
    let plen = usize::from(ip6.payload_len());
    if RVS_IPV6_HLEN + plen > rest.len() {
        return Verdict::Drop(DropReason::Ipv6Bad);
    }
    if ip6.next_header() != ipv4::IPPROTO_TCP
        && ip6.next_header() != ipv4::IPPROTO_UDP
        && ip6.next_header() != ipv6::IPPROTO_ICMPV6
    {
        return Verdict::Action(XdpAction::Pass);
    }
    pkt.saddr = addr_v6(ip6.saddr());
    pkt.daddr = addr_v6(ip6.daddr());
    pkt.proto = ip6.next_header();
    // Fits: the frame holds it (and XDP frames are far below 64 KiB).
    pkt.ip_len = (RVS_IPV6_HLEN + plen) as u16;
    pkt.l4_off = pkt.l3_off + RVS_IPV6_HLEN as u16;
    Verdict::Ok
}

/// The parse stages of `rvs_xdp_process` (bpf/rvs_xdp.c) in order: Ethernet, the IP version it names,
/// TCP/UDP. `Verdict::Ok` when the packet is IPv4 or IPv6 TCP or UDP, or ICMP (ICMPv6), which stops
/// after the IP header (`pkt.proto` tells; bpf/lib/icmp.h reads the rest).
pub fn parse_all(data: &[u8], pkt: &mut Pkt) -> Verdict {
    let ret = rvs_parse_eth(data, pkt);
    if ret != Verdict::Ok {
        return ret;
    }
    let ret = if pkt.family == Family::Inet as u8 {
        rvs_parse_ipv4(data, pkt)
    } else {
        rvs_parse_ipv6(data, pkt)
    };
    if ret != Verdict::Ok {
        return ret;
    }
    if pkt.proto == ipv4::IPPROTO_ICMP || pkt.proto == ipv6::IPPROTO_ICMPV6 {
        return Verdict::Ok;
    }
    rvs_parse_l4(data, pkt)
}

/// Mirrors `rvs_parse_l4` (bpf/lib/parse.h).
pub fn rvs_parse_l4(data: &[u8], pkt: &mut Pkt) -> Verdict {
    let l4_off = usize::from(pkt.l4_off);
    let hlen = if pkt.proto == ipv4::IPPROTO_TCP {
        tcp::HEADER_LEN
    } else {
        udp::HEADER_LEN
    };
    if l4_off + hlen > usize::from(pkt.l3_off) + usize::from(pkt.ip_len) {
        return Verdict::Drop(DropReason::L4Short);
    }
    // The ip_len check implies the frame checks below (rvs_parse_ipv4 kept tot_len inside the frame);
    // the C repeats them for the verifier, the views for their own length check.
    let l4 = data.get(l4_off..).unwrap_or_default();
    if pkt.proto == ipv4::IPPROTO_TCP {
        let Some(tcp) = tcp::Header::new_checked(l4) else {
            return Verdict::Drop(DropReason::L4Short);
        };
        pkt.sport = Be16::from_wire(tcp.src_port());
        pkt.dport = Be16::from_wire(tcp.dst_port());
        pkt.tcp_flags = tcp.flags();
    } else {
        let Some(udp) = udp::Header::new_checked(l4) else {
            return Verdict::Drop(DropReason::L4Short);
        };
        pkt.sport = Be16::from_wire(udp.src_port());
        pkt.dport = Be16::from_wire(udp.dst_port());
        pkt.tcp_flags = 0;
    }
    Verdict::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_syn(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 2, 5], [198, 18, 0, 10], 64)
            .tcp(40000, 80, 1, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn parse_all(data: &[u8]) -> (Verdict, Pkt) {
        let mut pkt = Pkt::default();
        let v = super::parse_all(data, &mut pkt);
        (v, pkt)
    }

    fn tcp6_syn(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                64,
            )
            .tcp(40000, 80, 1, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ipv6_tcp_syn_fills_pkt() {
        let (v, pkt) = parse_all(&tcp6_syn(b"hi"));
        assert_eq!(v, Verdict::Ok);
        assert_eq!(rvs_abi::addr_bytes(&pkt.saddr)[15], 5);
        assert_eq!(rvs_abi::addr_bytes(&pkt.daddr)[15], 0x10);
        assert_eq!((pkt.l3_off, pkt.l4_off, pkt.ip_len), (14, 54, 62));
        assert_eq!((pkt.proto, pkt.family), (6, Family::Inet6 as u8));
    }

    #[test]
    fn ipv6_truncations_versions_and_other_next_headers() {
        let f = tcp6_syn(b"");
        assert_eq!(parse_all(&f[..14 + 39]).0, Verdict::Drop(DropReason::Ipv6Short));
        assert_eq!(parse_all(&f[..70]).0, Verdict::Drop(DropReason::Ipv6Bad));
        let mut v4 = f.clone();
        v4[14] = 0x40;
        assert_eq!(parse_all(&v4).0, Verdict::Drop(DropReason::Ipv6Bad));
        for nh in [0u8, 43, 44, 60] {
            let mut x = f.clone();
            x[14 + 6] = nh;
            assert_eq!(
                parse_all(&x).0,
                Verdict::Action(XdpAction::Pass),
                "next header {nh}"
            );
        }
    }

    #[test]
    fn icmp_and_icmpv6_stop_after_the_ip_header() {
        let mut f = tcp6_syn(b"");
        f[14 + 6] = ipv6::IPPROTO_ICMPV6;
        let (v, pkt) = parse_all(&f);
        assert_eq!(
            (v, pkt.proto, pkt.l4_off, pkt.sport.get()),
            (Verdict::Ok, 58, 54, 0)
        );
        let mut f = tcp_syn(b"");
        f[14 + 9] = ipv4::IPPROTO_ICMP;
        let (v, pkt) = parse_all(&f);
        assert_eq!(
            (v, pkt.proto, pkt.l4_off, pkt.sport.get()),
            (Verdict::Ok, 1, 34, 0)
        );
    }

    #[test]
    fn tcp_syn_fills_pkt() {
        let (v, pkt) = parse_all(&tcp_syn(b"hi"));
        assert_eq!(v, Verdict::Ok);
        assert_eq!(pkt.saddr[0].to_wire(), [198, 18, 2, 5]);
        assert_eq!(pkt.daddr[0].to_wire(), [198, 18, 0, 10]);
        assert_eq!((pkt.sport.get(), pkt.dport.get()), (40000, 80));
        assert_eq!((pkt.l3_off, pkt.l4_off, pkt.ip_len), (14, 34, 42));
        assert_eq!((pkt.proto, pkt.family, pkt.tcp_flags), (6, 1, tcp::SYN));
    }

    #[test]
    fn truncations_give_named_drops() {
        let f = tcp_syn(b"");
        assert_eq!(parse_all(&f[..13]).0, Verdict::Drop(DropReason::EthShort));
        assert_eq!(parse_all(&f[..33]).0, Verdict::Drop(DropReason::Ipv4Short));
        // tot_len (40) now beyond the frame
        assert_eq!(parse_all(&f[..50]).0, Verdict::Drop(DropReason::Ipv4Bad));
    }

    #[test]
    fn l4_must_fit_in_ip_packet_not_just_frame() {
        let mut f = tcp_syn(b"");
        f[16..18].copy_from_slice(&30u16.to_be_bytes()); // tot_len 30: TCP header cut short
        assert_eq!(parse_all(&f).0, Verdict::Drop(DropReason::L4Short));
    }

    #[test]
    fn non_ip_and_fragments_pass() {
        let mut f = tcp_syn(b"");
        f[12..14].copy_from_slice(&eth::ETH_P_ARP.to_be_bytes());
        assert_eq!(parse_all(&f).0, Verdict::Action(XdpAction::Pass));
        let mut f = tcp_syn(b"");
        f[20] = 0x20; // MF
        assert_eq!(parse_all(&f).0, Verdict::Action(XdpAction::Pass));
        let mut f = tcp_syn(b"");
        f[14] = 0x44; // IHL 4
        assert_eq!(parse_all(&f).0, Verdict::Drop(DropReason::Ipv4Bad));
    }

    #[test]
    fn vlan_tag_is_skipped_and_short_tag_dropped() {
        let f = tcp_syn(b"");
        let mut v = f[..12].to_vec();
        v.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        v.extend_from_slice(&f[12..]);
        let (verdict, pkt) = parse_all(&v);
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!((pkt.l3_off, pkt.l4_off), (18, 38));
        assert_eq!(parse_all(&v[..17]).0, Verdict::Drop(DropReason::EthShort));
    }
}
