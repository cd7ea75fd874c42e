//! Frame builder for tests, on etherparse. It shares no code with rvs-model or the C, so a parsing or
//! checksum bug in either cannot hide in the fixtures.
//!
//! ```
//! use rvs_testkit::packet::pkt;
//! let syn = pkt().eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
//!     .ipv4("198.18.2.5", "198.18.0.10").tcp(40000, 80).syn();
//! assert_eq!(syn.build().len(), 14 + 20 + 20);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, SingleVlanHeader, TcpHeader, UdpHeader, VlanId, VlanPcp,
};

/// A new frame description: Ethernet between two default MACs, nothing above it yet.
pub fn pkt() -> Packet {
    Packet {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vlan: None,
        l3: L3::None,
        l4: L4::None,
        payload: Vec::new(),
        pad_to: None,
        truncate: None,
        patches: Vec::new(),
    }
}

#[derive(Clone, Debug)]
enum L3 {
    None,
    Ipv4(Box<Ipv4Header>),
    Ipv6(Box<Ipv6Header>),
    Arp(ArpEthIpv4Packet),
    Raw(u16),
}

#[derive(Clone, Debug)]
enum L4 {
    None,
    Tcp(Box<TcpHeader>),
    Udp(u16, u16),
    Raw(u8),
}

/// A frame being described; [`Packet::build`] writes its bytes. Every setter returns the packet, so an
/// expected output is often `input.clone().eth(new_src, new_dst)`.
#[derive(Clone, Debug)]
pub struct Packet {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    l3: L3,
    l4: L4,
    payload: Vec<u8>,
    pad_to: Option<usize>,
    truncate: Option<usize>,
    patches: Vec<(usize, Vec<u8>)>,
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>()
        .unwrap_or_else(|e| panic!("bad IPv4 address {s:?}: {e}"))
        .octets()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>()
        .unwrap_or_else(|e| panic!("bad IPv6 address {s:?}: {e}"))
        .octets()
}

impl Packet {
    /// Ethernet source and destination MACs.
    pub fn eth(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// One 802.1Q tag with this VLAN id (priority 0).
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// IPv4 from `src` to `dst` (dotted quads), TTL 64, DF set, id 0; protocol set by the L4 layer.
    pub fn ipv4(mut self, src: &str, dst: &str) -> Self {
        let h = Ipv4Header::new(0, 64, IpNumber(0), v4(src), v4(dst)).expect("empty payload fits");
        self.l3 = L3::Ipv4(Box::new(h));
        self
    }

    /// IPv6 from `src` to `dst`, hop limit 64.
    pub fn ipv6(mut self, src: &str, dst: &str) -> Self {
        self.l3 = L3::Ipv6(Box::new(Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: 0,
            next_header: IpNumber(59),
            hop_limit: 64,
            source: v6(src),
            destination: v6(dst),
        }));
        self
    }

    /// An ARP request (Ethernet/IPv4) from `sender` asking for `target`.
    pub fn arp_request(mut self, sender: &str, target: &str) -> Self {
        self.l3 = L3::Arp(ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: self.src_mac,
            sender_ipv4: v4(sender),
            target_mac: [0; 6],
            target_ipv4: v4(target),
        });
        self
    }

    /// Any EtherType, followed by the payload only.
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.l3 = L3::Raw(ethertype);
        self
    }

    fn ip4(&mut self) -> &mut Ipv4Header {
        match &mut self.l3 {
            L3::Ipv4(h) => h,
            _ => panic!("call ipv4() first"),
        }
    }

    /// IPv4 options (a multiple of 4 bytes, at most 40); IHL grows accordingly.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ip4().options = options
            .try_into()
            .expect("IPv4 options: multiple of 4, at most 40 bytes");
        self
    }

    /// Makes the IPv4 packet a fragment: MF flag and offset in 8-byte units (DF cleared).
    pub fn fragment(mut self, more_fragments: bool, offset_units: u16) -> Self {
        let h = self.ip4();
        h.dont_fragment = false;
        h.more_fragments = more_fragments;
        h.fragment_offset = IpFragOffset::try_new(offset_units).expect("offset fits 13 bits");
        self
    }

    /// IPv4 TTL (or IPv6 hop limit).
    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.l3 {
            L3::Ipv4(h) => h.time_to_live = ttl,
            L3::Ipv6(h) => h.hop_limit = ttl,
            _ => panic!("call ipv4() or ipv6() first"),
        }
        self
    }

    /// IPv4 identification.
    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip4().identification = id;
        self
    }

    /// TCP from `sport` to `dport`, no flags, seq 1, window 64240.
    pub fn tcp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Tcp(Box::new(TcpHeader::new(sport, dport, 1, 64240)));
        self
    }

    fn tcph(&mut self) -> &mut TcpHeader {
        match &mut self.l4 {
            L4::Tcp(h) => h,
            _ => panic!("call tcp() first"),
        }
    }

    /// Sets SYN.
    pub fn syn(mut self) -> Self {
        self.tcph().syn = true;
        self
    }

    /// Sets ACK (acknowledgment number 1).
    pub fn ack(mut self) -> Self {
        let h = self.tcph();
        h.ack = true;
        h.acknowledgment_number = 1;
        self
    }

    /// Sets FIN.
    pub fn fin(mut self) -> Self {
        self.tcph().fin = true;
        self
    }

    /// Sets RST.
    pub fn rst(mut self) -> Self {
        self.tcph().rst = true;
        self
    }

    /// Sets PSH.
    pub fn psh(mut self) -> Self {
        self.tcph().psh = true;
        self
    }

    /// Sets all eight flag bits from the flags byte (FIN 0x01 ... CWR 0x80).
    pub fn tcp_flags(mut self, flags: u8) -> Self {
        let h = self.tcph();
        h.fin = flags & 0x01 != 0;
        h.syn = flags & 0x02 != 0;
        h.rst = flags & 0x04 != 0;
        h.psh = flags & 0x08 != 0;
        h.ack = flags & 0x10 != 0;
        h.urg = flags & 0x20 != 0;
        h.ece = flags & 0x40 != 0;
        h.cwr = flags & 0x80 != 0;
        self
    }

    /// TCP sequence number.
    pub fn seq(mut self, seq: u32) -> Self {
        self.tcph().sequence_number = seq;
        self
    }

    /// UDP from `sport` to `dport`.
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp(sport, dport);
        self
    }

    /// An IP payload of protocol `proto` with no header of its own (the payload is all of it).
    pub fn ip_proto(mut self, proto: u8) -> Self {
        self.l4 = L4::Raw(proto);
        self
    }

    /// Bytes after the L4 header.
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// Pads the frame with zero bytes after the IP packet up to `len` bytes (Ethernet padding, which
    /// IP's total length does not count).
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = Some(len);
        self
    }

    /// Cuts the built frame to its first `len` bytes (after padding and patches).
    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    /// Overwrites bytes at `offset` of the built frame (checksums are not recomputed), for malformed
    /// headers.
    pub fn patch(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.patches.push((offset, bytes.to_vec()));
        self
    }

    /// Offset of the L3 header in the built frame.
    pub fn l3_offset(&self) -> usize {
        14 + if self.vlan.is_some() { 4 } else { 0 }
    }

    /// The frame's bytes, with correct lengths and checksums unless patched.
    ///
    /// # Panics
    /// On a description that cannot be written (sizes beyond the header fields).
    pub fn build(&self) -> Vec<u8> {
        let (ethertype, l3) = self.l3_bytes();
        let mut out = Vec::with_capacity(64 + l3.len());
        let outer = if self.vlan.is_some() {
            EtherType::VLAN_TAGGED_FRAME
        } else {
            EtherType(ethertype)
        };
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: outer,
        }
        .write(&mut out)
        .expect("write to Vec");
        if let Some(id) = self.vlan {
            SingleVlanHeader {
                pcp: VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(id).expect("VLAN id fits 12 bits"),
                ether_type: EtherType(ethertype),
            }
            .write(&mut out)
            .expect("write to Vec");
        }
        out.extend_from_slice(&l3);
        if let Some(len) = self.pad_to
            && out.len() < len
        {
            out.resize(len, 0);
        }
        for (off, bytes) in &self.patches {
            let end = off + bytes.len();
            assert!(
                end <= out.len(),
                "patch at {off}..{end} beyond the frame ({} bytes)",
                out.len()
            );
            out[*off..end].copy_from_slice(bytes);
        }
        if let Some(len) = self.truncate {
            out.truncate(len);
        }
        out
    }

    /// The L4 header + payload, with the IP protocol number. `src`/`dst` are the IP addresses (4 or 16
    /// bytes) of the pseudo-header.
    fn l4_bytes(&self, src: &[u8], dst: &[u8]) -> (u8, Vec<u8>) {
        let v4 = |a: &[u8]| <[u8; 4]>::try_from(a).ok();
        let v6 = |a: &[u8]| <[u8; 16]>::try_from(a).expect("IPv4 or IPv6 address");
        let mut out = Vec::new();
        let proto = match &self.l4 {
            L4::None => 59, // IPv6 "no next header"; IPv4 treats it as an unknown protocol
            L4::Raw(proto) => *proto,
            L4::Tcp(h) => {
                let mut h = (**h).clone();
                h.checksum = match (v4(src), v4(dst)) {
                    (Some(s), Some(d)) => h.calc_checksum_ipv4_raw(s, d, &self.payload),
                    _ => h.calc_checksum_ipv6_raw(v6(src), v6(dst), &self.payload),
                }
                .expect("TCP payload fits");
                h.write(&mut out).expect("write to Vec");
                6
            }
            L4::Udp(sport, dport) => {
                let mut h = UdpHeader::without_ipv4_checksum(*sport, *dport, self.payload.len())
                    .expect("UDP payload fits");
                h.checksum = match (v4(src), v4(dst)) {
                    (Some(s), Some(d)) => h.calc_checksum_ipv4_raw(s, d, &self.payload),
                    _ => h.calc_checksum_ipv6_raw(v6(src), v6(dst), &self.payload),
                }
                .expect("UDP payload fits");
                h.write(&mut out).expect("write to Vec");
                17
            }
        };
        out.extend_from_slice(&self.payload);
        (proto, out)
    }

    fn l3_bytes(&self) -> (u16, Vec<u8>) {
        let mut out = Vec::new();
        match &self.l3 {
            L3::None => (0x88b5, self.payload.clone()), // IEEE local experimental EtherType
            L3::Raw(t) => (*t, self.payload.clone()),
            L3::Arp(a) => (EtherType::ARP.0, a.to_bytes().to_vec()),
            L3::Ipv4(h) => {
                let (proto, l4) = self.l4_bytes(&h.source, &h.destination);
                let mut h = (**h).clone();
                h.protocol = IpNumber(proto);
                h.set_payload_len(l4.len()).expect("IPv4 payload fits");
                h.write(&mut out).expect("write to Vec"); // computes the header checksum
                out.extend_from_slice(&l4);
                (EtherType::IPV4.0, out)
            }
            L3::Ipv6(h) => {
                let (proto, l4) = self.l4_bytes(&h.source, &h.destination);
                let mut h = (**h).clone();
                h.next_header = IpNumber(proto);
                h.payload_length = u16::try_from(l4.len()).expect("IPv6 payload fits");
                h.write(&mut out).expect("write to Vec");
                out.extend_from_slice(&l4);
                (EtherType::IPV6.0, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn tcp_syn_parses_back_with_valid_checksums() {
        let f = pkt()
            .eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4("198.18.2.5", "198.18.0.10")
            .tcp(40000, 80)
            .syn()
            .payload(b"hello")
            .build();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().total_len(), 45);
        assert_eq!(
            ip.header().to_header().calc_header_checksum(),
            ip.header().header_checksum()
        );
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        assert!(t.syn() && !t.ack());
        let h = ip.header();
        assert_eq!(
            t.calc_checksum_ipv4(h.source(), h.destination()).unwrap(),
            t.checksum()
        );
    }

    #[test]
    fn vlan_options_fragment_padding_truncate_patch() {
        let f = pkt()
            .vlan(100)
            .ipv4("198.18.2.5", "198.18.0.10")
            .ipv4_options(&[1, 1, 1, 0])
            .fragment(true, 0)
            .udp(1, 2)
            .pad_to(80)
            .build();
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        assert_eq!(&f[16..18], &[0x08, 0x00]);
        assert_eq!(f[18], 0x46);
        assert_eq!(&f[18 + 6..18 + 8], &[0x20, 0x00]);
        assert_eq!(f.len(), 80);
        let t = pkt()
            .ipv4("1.2.3.4", "5.6.7.8")
            .udp(1, 2)
            .patch(14, &[0x55])
            .truncate(20)
            .build();
        assert_eq!((t.len(), t[14]), (20, 0x55));
    }

    #[test]
    fn arp_and_ipv6() {
        let a = pkt().arp_request("198.18.2.5", "198.18.2.1").build();
        assert_eq!((&a[12..14], a.len()), (&[0x08, 0x06][..], 42));
        let v = pkt().ipv6("2001:db8::1", "2001:db8::2").tcp(1, 80).syn().build();
        assert_eq!((&v[12..14], v.len()), (&[0x86, 0xdd][..], 14 + 40 + 20));
    }
}
