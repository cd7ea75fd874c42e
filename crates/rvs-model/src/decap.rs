//! The real server's VS/TUN decapsulation, `bpf/rvs_decap.c`, whose comments say why: IPv4-in-IPv4,
//! IPv6-in-IPv6 and the mixed pairs lose their outer header when the inner destination is a configured
//! VIP; everything else passes untouched.
//!
//! Its maps are its own ([`DecapMaps`]), not the director's. A VIP is keyed by the 16 bytes of an IPv6
//! address, an IPv4 one mapped into `::ffff:0:0/96` ([`rvs_decap_key_v4`]).

use crate::frame::{ETH_HLEN, Frame, XdpAction};
use crate::maps::{HashMapBpf, PerCpuArrayMap};

/// Key of `rvs_decap_vip` (`struct rvs_decap_key`): an address's 16 wire bytes.
pub type DecapKey = [u8; 16];

/// `RVS_DECAP_MAX_VIP`: `max_entries` of `rvs_decap_vip`.
pub const RVS_DECAP_MAX_VIP: u32 = 1024;
/// `RVS_DECAP_VLAN_HLEN`.
pub const RVS_DECAP_VLAN_HLEN: usize = 4;
/// `RVS_DECAP_L2_MAX`: Ethernet header and one 802.1Q tag.
pub const RVS_DECAP_L2_MAX: usize = ETH_HLEN + RVS_DECAP_VLAN_HLEN;
/// `RVS_DECAP_IPV4_HLEN`.
pub const RVS_DECAP_IPV4_HLEN: usize = 20;
/// `RVS_DECAP_IPV6_HLEN`.
pub const RVS_DECAP_IPV6_HLEN: usize = 40;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IP_MF: u16 = 0x2000;
const IP_OFFMASK: u16 = 0x1fff;
const ECN_MASK: u8 = 0x03;
const ECN_NOT_ECT: u8 = 0x00;
const ECN_ECT1: u8 = 0x01;
const ECN_ECT0: u8 = 0x02;
const ECN_CE: u8 = 0x03;

/// Slots of `rvs_decap_stats`. Values equal `enum rvs_decap_stat`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecapStat {
    /// Decapsulated and passed to the stack.
    Packets = 0,
    /// Their inner IP bytes.
    Bytes = 1,
    /// Tunnel packets whose inner destination is no VIP: passed untouched.
    NotVip = 2,
    /// `bpf_xdp_adjust_head` refused: passed untouched.
    Adjust = 3,
    /// Dropped: outer CE over a not-ECN-capable inner packet (RFC 6040).
    DropEcn = 4,
    /// Dropped: frame shorter than its L2 header once stripped (cannot happen).
    DropShort = 5,
}

impl DecapStat {
    /// Every slot, in value order.
    pub const ALL: [DecapStat; 6] = [
        DecapStat::Packets,
        DecapStat::Bytes,
        DecapStat::NotVip,
        DecapStat::Adjust,
        DecapStat::DropEcn,
        DecapStat::DropShort,
    ];
}

/// `RVS_DECAP_ST__MAX`: `max_entries` of `rvs_decap_stats`.
pub const RVS_DECAP_ST_MAX: u32 = 6;

/// The maps of bpf/rvs_decap.c, one field per map with the map's name.
#[derive(Clone, Debug)]
pub struct DecapMaps {
    /// VIPs this host serves (value unused, 1).
    pub rvs_decap_vip: HashMapBpf<DecapKey, u32>,
    /// Per-CPU counters by [`DecapStat`].
    pub rvs_decap_stats: PerCpuArrayMap<u64>,
}

impl Default for DecapMaps {
    fn default() -> Self {
        DecapMaps {
            rvs_decap_vip: HashMapBpf::new(RVS_DECAP_MAX_VIP),
            rvs_decap_stats: PerCpuArrayMap::new(RVS_DECAP_ST_MAX),
        }
    }
}

impl DecapMaps {
    /// The counter `stat` of `cpu`.
    pub fn stat(&self, cpu: u32, stat: DecapStat) -> u64 {
        self.rvs_decap_stats.lookup(cpu, stat as u32).unwrap_or(0)
    }
}

/// The key of IPv4 address `a`: `::ffff:a.b.c.d`.
pub fn rvs_decap_key_v4(a: [u8; 4]) -> DecapKey {
    let mut k = [0u8; 16];
    k[10..12].copy_from_slice(&[0xff, 0xff]);
    k[12..16].copy_from_slice(&a);
    k
}

/// What the decision needs to know about a tunnel packet. Mirrors `struct rvs_decap_pkt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapPkt {
    /// Inner destination.
    pub vip: DecapKey,
    /// Inner packet bytes, per the outer header.
    pub inner_len: u32,
    /// Offset of the outer IP header.
    pub l3_off: u16,
    /// Length of the outer IP header.
    pub outer_hlen: u16,
    /// EtherType of the inner packet, host order.
    pub inner_proto: u16,
    /// ECN field of the outer header.
    pub outer_ecn: u8,
    /// ECN field of the inner header.
    pub inner_ecn: u8,
    /// The inner packet is IPv6.
    pub inner_v6: bool,
}

/// What a parse stage returns: go on, or stop with `XDP_PASS`.
type Stage = Result<(), XdpAction>;

/// Views of the headers read here (lengths checked in `new_checked`).
mod view {
    use core::ops::Range;

    /// The fixed 20 bytes of an IPv4 header.
    pub(super) struct Ipv4<'a>(&'a [u8]);

    impl<'a> Ipv4<'a> {
        const TOT_LEN: Range<usize> = 2..4;
        const FRAG_OFF: Range<usize> = 6..8;
        const DADDR: Range<usize> = 16..20;

        pub(super) fn new_checked(b: &'a [u8]) -> Option<Self> {
            b.get(..20).map(Ipv4)
        }
        pub(super) fn version(&self) -> u8 {
            self.0[0] >> 4
        }
        pub(super) fn ihl(&self) -> u8 {
            self.0[0] & 0x0f
        }
        pub(super) fn tos(&self) -> u8 {
            self.0[1]
        }
        pub(super) fn tot_len(&self) -> u16 {
            u16::from_be_bytes(self.0[Self::TOT_LEN].try_into().unwrap())
        }
        pub(super) fn frag_off(&self) -> u16 {
            u16::from_be_bytes(self.0[Self::FRAG_OFF].try_into().unwrap())
        }
        pub(super) fn protocol(&self) -> u8 {
            self.0[9]
        }
        pub(super) fn daddr(&self) -> [u8; 4] {
            self.0[Self::DADDR].try_into().unwrap()
        }
        /// The 20 bytes.
        pub(super) fn bytes(&self) -> &'a [u8] {
            self.0
        }
    }

    /// The fixed 40 bytes of an IPv6 header.
    pub(super) struct Ipv6<'a>(&'a [u8]);

    impl<'a> Ipv6<'a> {
        const PAYLOAD_LEN: Range<usize> = 4..6;
        const DADDR: Range<usize> = 24..40;

        pub(super) fn new_checked(b: &'a [u8]) -> Option<Self> {
            b.get(..40).map(Ipv6)
        }
        pub(super) fn version(&self) -> u8 {
            self.0[0] >> 4
        }
        /// The 8 bits after the version.
        pub(super) fn traffic_class(&self) -> u8 {
            (self.0[0] << 4) | (self.0[1] >> 4)
        }
        pub(super) fn payload_len(&self) -> u16 {
            u16::from_be_bytes(self.0[Self::PAYLOAD_LEN].try_into().unwrap())
        }
        pub(super) fn nexthdr(&self) -> u8 {
            self.0[6]
        }
        pub(super) fn daddr(&self) -> [u8; 16] {
            self.0[Self::DADDR].try_into().unwrap()
        }
    }
}

use view::{Ipv4, Ipv6};

/// Mirrors `rvs_decap_count` (bpf/rvs_decap.c).
pub fn rvs_decap_count(maps: &mut DecapMaps, cpu: u32, stat: DecapStat, n: u64) {
    if let Some(c) = maps.rvs_decap_stats.lookup_mut(cpu, stat as u32) {
        *c = c.wrapping_add(n);
    }
}

/// Mirrors `rvs_decap_parse_l2` (bpf/rvs_decap.c). On `Ok`, the network header's EtherType.
pub fn rvs_decap_parse_l2(data: &[u8], pkt: &mut DecapPkt) -> Result<u16, XdpAction> {
    let be16 = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    if data.len() < ETH_HLEN || data[0] & 1 != 0 {
        return Err(XdpAction::Pass);
    }
    let mut proto = be16(12);
    let mut off = ETH_HLEN;
    if proto == ETH_P_8021Q {
        if data.len() < RVS_DECAP_L2_MAX {
            return Err(XdpAction::Pass);
        }
        proto = be16(ETH_HLEN + 2);
        off += RVS_DECAP_VLAN_HLEN;
    }
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return Err(XdpAction::Pass);
    }
    pkt.l3_off = off as u16;
    Ok(proto)
}

/// Mirrors `rvs_decap_ipv4_csum_ok` (bpf/rvs_decap.c).
pub fn rvs_decap_ipv4_csum_ok(hdr: &[u8]) -> bool {
    let mut sum: u32 = hdr
        .chunks_exact(2)
        .take(RVS_DECAP_IPV4_HLEN / 2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

/// Mirrors `rvs_decap_parse_outer4` (bpf/rvs_decap.c).
pub fn rvs_decap_parse_outer4(data: &[u8], pkt: &mut DecapPkt) -> Stage {
    let l3_off = usize::from(pkt.l3_off);
    if l3_off > RVS_DECAP_L2_MAX {
        return Err(XdpAction::Pass);
    }
    let rest = data.get(l3_off..).unwrap_or_default();
    let ip = Ipv4::new_checked(rest).ok_or(XdpAction::Pass)?;
    if ip.version() != 4 || usize::from(ip.ihl()) != RVS_DECAP_IPV4_HLEN / 4 {
        return Err(XdpAction::Pass);
    }
    if ip.protocol() != IPPROTO_IPIP && ip.protocol() != IPPROTO_IPV6 {
        return Err(XdpAction::Pass);
    }
    if ip.frag_off() & (IP_MF | IP_OFFMASK) != 0 {
        return Err(XdpAction::Pass);
    }
    let daddr = ip.daddr();
    if daddr[0] >> 4 == 0xe || daddr == [0xff; 4] {
        return Err(XdpAction::Pass);
    }
    let tot_len = usize::from(ip.tot_len());
    if tot_len < RVS_DECAP_IPV4_HLEN * 2 || tot_len > rest.len() {
        return Err(XdpAction::Pass);
    }
    if !rvs_decap_ipv4_csum_ok(ip.bytes()) {
        return Err(XdpAction::Pass);
    }
    pkt.outer_hlen = RVS_DECAP_IPV4_HLEN as u16;
    pkt.inner_len = (tot_len - RVS_DECAP_IPV4_HLEN) as u32;
    pkt.outer_ecn = ip.tos() & ECN_MASK;
    pkt.inner_v6 = ip.protocol() == IPPROTO_IPV6;
    Ok(())
}

/// Mirrors `rvs_decap_parse_outer6` (bpf/rvs_decap.c).
pub fn rvs_decap_parse_outer6(data: &[u8], pkt: &mut DecapPkt) -> Stage {
    let l3_off = usize::from(pkt.l3_off);
    if l3_off > RVS_DECAP_L2_MAX {
        return Err(XdpAction::Pass);
    }
    let rest = data.get(l3_off..).unwrap_or_default();
    let ip = Ipv6::new_checked(rest).ok_or(XdpAction::Pass)?;
    if ip.version() != 6 {
        return Err(XdpAction::Pass);
    }
    if ip.nexthdr() != IPPROTO_IPV6 && ip.nexthdr() != IPPROTO_IPIP {
        return Err(XdpAction::Pass);
    }
    if ip.daddr()[0] == 0xff {
        return Err(XdpAction::Pass);
    }
    let plen = usize::from(ip.payload_len());
    if plen < RVS_DECAP_IPV4_HLEN || RVS_DECAP_IPV6_HLEN + plen > rest.len() {
        return Err(XdpAction::Pass);
    }
    pkt.outer_hlen = RVS_DECAP_IPV6_HLEN as u16;
    pkt.inner_len = plen as u32;
    pkt.outer_ecn = ip.traffic_class() & ECN_MASK;
    pkt.inner_v6 = ip.nexthdr() == IPPROTO_IPV6;
    Ok(())
}

/// Mirrors `rvs_decap_parse_inner` (bpf/rvs_decap.c).
pub fn rvs_decap_parse_inner(data: &[u8], pkt: &mut DecapPkt) -> Stage {
    let off = usize::from(pkt.l3_off) + usize::from(pkt.outer_hlen);
    if off > RVS_DECAP_L2_MAX + RVS_DECAP_IPV6_HLEN {
        return Err(XdpAction::Pass);
    }
    let inner = data.get(off..).unwrap_or_default();
    if pkt.inner_v6 {
        if pkt.inner_len < RVS_DECAP_IPV6_HLEN as u32 {
            return Err(XdpAction::Pass);
        }
        let ip = Ipv6::new_checked(inner).ok_or(XdpAction::Pass)?;
        if ip.version() != 6 {
            return Err(XdpAction::Pass);
        }
        pkt.vip = ip.daddr();
        pkt.inner_ecn = ip.traffic_class() & ECN_MASK;
        pkt.inner_proto = ETH_P_IPV6;
    } else {
        let ip = Ipv4::new_checked(inner).ok_or(XdpAction::Pass)?;
        if ip.version() != 4 {
            return Err(XdpAction::Pass);
        }
        pkt.vip = rvs_decap_key_v4(ip.daddr());
        pkt.inner_ecn = ip.tos() & ECN_MASK;
        pkt.inner_proto = ETH_P_IP;
    }
    Ok(())
}

/// Mirrors `rvs_decap_ecn` (bpf/rvs_decap.c): the inner header's new ECN field, or `None` to drop.
pub fn rvs_decap_ecn(outer: u8, inner: u8) -> Option<u8> {
    if inner == ECN_NOT_ECT {
        return (outer != ECN_CE).then_some(inner);
    }
    if outer == ECN_CE {
        return Some(ECN_CE);
    }
    if outer == ECN_ECT1 && inner == ECN_ECT0 {
        return Some(ECN_ECT1);
    }
    Some(inner)
}

/// Mirrors `rvs_decap_set_ecn` (bpf/rvs_decap.c).
pub fn rvs_decap_set_ecn(data: &mut [u8], l3_off: usize, inner_v6: bool, ecn: u8) {
    if l3_off > RVS_DECAP_L2_MAX || data.len() < l3_off + RVS_DECAP_IPV4_HLEN {
        return;
    }
    let ip = &mut data[l3_off..l3_off + RVS_DECAP_IPV4_HLEN];
    if inner_v6 {
        ip[1] = (ip[1] & !(ECN_MASK << 4)) | (ecn << 4);
        return;
    }
    let word = |ip: &[u8]| u32::from(u16::from_be_bytes([ip[0], ip[1]]));
    let old = word(ip);
    ip[1] = (ip[1] & !ECN_MASK) | ecn;
    let new = word(ip);
    let check = u32::from(u16::from_be_bytes([ip[10], ip[11]]));
    // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
    let mut sum = (!check & 0xffff) + (!old & 0xffff) + new;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Mirrors `rvs_decap_strip` (bpf/rvs_decap.c).
pub fn rvs_decap_strip(maps: &mut DecapMaps, cpu: u32, frame: &mut Frame, pkt: &DecapPkt) -> Stage {
    let Some(l2) = frame.data().get(..RVS_DECAP_L2_MAX) else {
        return Err(XdpAction::Pass);
    };
    let l2: [u8; RVS_DECAP_L2_MAX] = l2.try_into().unwrap();
    if frame.adjust_head(i32::from(pkt.outer_hlen)).is_err() {
        rvs_decap_count(maps, cpu, DecapStat::Adjust, 1);
        return Err(XdpAction::Pass);
    }
    let data = frame.data_mut();
    if data.len() < RVS_DECAP_L2_MAX {
        rvs_decap_count(maps, cpu, DecapStat::DropShort, 1);
        return Err(XdpAction::Drop);
    }
    data[..ETH_HLEN].copy_from_slice(&l2[..ETH_HLEN]);
    let proto = pkt.inner_proto.to_be_bytes();
    if usize::from(pkt.l3_off) > ETH_HLEN {
        data[ETH_HLEN..RVS_DECAP_L2_MAX].copy_from_slice(&l2[ETH_HLEN..]);
        data[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&proto);
    } else {
        data[ETH_HLEN - 2..ETH_HLEN].copy_from_slice(&proto);
    }
    Ok(())
}

/// Mirrors `rvs_decap_ingress` (bpf/rvs_decap.c). `cpu` selects the per-CPU counters.
pub fn rvs_decap_ingress(maps: &mut DecapMaps, cpu: u32, frame: &mut Frame) -> XdpAction {
    match decap(maps, cpu, frame) {
        Ok(()) => XdpAction::Pass,
        Err(action) => action,
    }
}

fn decap(maps: &mut DecapMaps, cpu: u32, frame: &mut Frame) -> Stage {
    let mut pkt = DecapPkt::default();
    let proto = rvs_decap_parse_l2(frame.data(), &mut pkt)?;
    if proto == ETH_P_IP {
        rvs_decap_parse_outer4(frame.data(), &mut pkt)?;
    } else {
        rvs_decap_parse_outer6(frame.data(), &mut pkt)?;
    }
    rvs_decap_parse_inner(frame.data(), &mut pkt)?;
    if maps.rvs_decap_vip.lookup(&pkt.vip).is_none() {
        rvs_decap_count(maps, cpu, DecapStat::NotVip, 1);
        return Err(XdpAction::Pass);
    }
    let Some(ecn) = rvs_decap_ecn(pkt.outer_ecn, pkt.inner_ecn) else {
        rvs_decap_count(maps, cpu, DecapStat::DropEcn, 1);
        return Err(XdpAction::Drop);
    };
    rvs_decap_strip(maps, cpu, frame, &pkt)?;
    if ecn != pkt.inner_ecn {
        rvs_decap_set_ecn(frame.data_mut(), usize::from(pkt.l3_off), pkt.inner_v6, ecn);
    }
    rvs_decap_count(maps, cpu, DecapStat::Packets, 1);
    rvs_decap_count(maps, cpu, DecapStat::Bytes, u64::from(pkt.inner_len));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, PacketBuilder};

    const VIP: [u8; 4] = [198, 18, 0, 10];

    fn maps() -> DecapMaps {
        let mut m = DecapMaps::default();
        m.rvs_decap_vip.update(rvs_decap_key_v4(VIP), 1, 0).unwrap();
        m
    }

    /// An IPIP frame (protocol 4) around a UDP datagram to the VIP, both built by etherparse, and the
    /// inner frame the stack must get.
    fn ipip() -> (Vec<u8>, Vec<u8>) {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0xd1, 0, 0, 0, 1], [2, 0x5e, 0, 0, 0, 2])
            .ipv4([198, 18, 2, 5], VIP, 64)
            .udp(5353, 53)
            .write(&mut inner, b"dns?")
            .unwrap();
        let outer = Ipv4Header::new(
            (inner.len() - 14) as u16,
            64,
            IpNumber::IPV4,
            [198, 18, 1, 254],
            [198, 18, 1, 2],
        )
        .unwrap();
        let mut frame = inner[..14].to_vec();
        outer.write(&mut frame).unwrap();
        frame.extend_from_slice(&inner[14..]);
        (frame, inner)
    }

    #[test]
    fn ipip_to_a_vip_is_stripped_and_counted() {
        let (frame, inner) = ipip();
        let mut m = maps();
        let mut f = Frame::new(&frame);
        assert_eq!(rvs_decap_ingress(&mut m, 1, &mut f), XdpAction::Pass);
        assert_eq!(f.data(), &inner[..]);
        assert_eq!(m.stat(1, DecapStat::Packets), 1);
        assert_eq!(m.stat(1, DecapStat::Bytes), (inner.len() - 14) as u64);
        assert_eq!(m.stat(0, DecapStat::Packets), 0, "another CPU's slot");
    }

    #[test]
    fn mapped_ipv4_keys_never_collide_with_ipv6_addresses_in_use() {
        assert_eq!(
            rvs_decap_key_v4([1, 2, 3, 4]),
            std::net::Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn ecn_combination_follows_rfc6040() {
        // (outer, inner) -> new inner, or None to drop.
        let table = [
            ((ECN_NOT_ECT, ECN_NOT_ECT), Some(ECN_NOT_ECT)),
            ((ECN_ECT0, ECN_NOT_ECT), Some(ECN_NOT_ECT)),
            ((ECN_ECT1, ECN_NOT_ECT), Some(ECN_NOT_ECT)),
            ((ECN_CE, ECN_NOT_ECT), None),
            ((ECN_NOT_ECT, ECN_ECT0), Some(ECN_ECT0)),
            ((ECN_ECT1, ECN_ECT0), Some(ECN_ECT1)),
            ((ECN_CE, ECN_ECT0), Some(ECN_CE)),
            ((ECN_ECT0, ECN_ECT1), Some(ECN_ECT1)),
            ((ECN_CE, ECN_ECT1), Some(ECN_CE)),
            ((ECN_NOT_ECT, ECN_CE), Some(ECN_CE)),
        ];
        for ((outer, inner), want) in table {
            assert_eq!(rvs_decap_ecn(outer, inner), want, "outer {outer} inner {inner}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let (frame, _) = ipip();
        for len in 0..=frame.len() {
            let _ = rvs_decap_ingress(&mut maps(), 0, &mut Frame::new(&frame[..len]));
        }
        for i in 0..frame.len() {
            for x in [0x01u8, 0x0f, 0x80, 0xff] {
                let mut f = frame.clone();
                f[i] ^= x;
                let _ = rvs_decap_ingress(&mut maps(), 0, &mut Frame::new(&f));
            }
        }
    }
}
