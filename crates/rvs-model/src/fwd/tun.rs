//! VS/TUN: IP-in-IP toward the real server, and the ICMP errors of path MTU discovery through the
//! tunnel. Mirrors bpf/lib/tun.h, whose comments say why each field gets its value.
//!
//! The C sums checksums over 16-bit words loaded in host order; here words are read big-endian. A one's-
//! complement sum is byte-order independent (RFC 1071 2.B), so both store the same bytes.

use rvs_abi::{DEST_F_NEIGH, DestVal, DropReason, Family};

use crate::env::{Env, rvs_prandom};
use crate::frame::{ETH_HLEN, Frame, XdpAction};
use crate::parse::{Pkt, RVS_VLAN_HLEN};
use crate::xdp::Verdict;

/// `RVS_TUN_IPV4_HLEN`: outer IPv4 header, never with options.
pub const RVS_TUN_IPV4_HLEN: usize = 20;
/// `RVS_TUN_IPV6_HLEN`: outer IPv6 header, never with extension headers.
pub const RVS_TUN_IPV6_HLEN: usize = 40;
/// `RVS_TUN_ICMP_HLEN`: ICMP and ICMPv6 error header.
pub const RVS_TUN_ICMP_HLEN: usize = 8;
/// `RVS_TUN_L2_MAX`: Ethernet header and one 802.1Q tag.
pub const RVS_TUN_L2_MAX: usize = ETH_HLEN + RVS_VLAN_HLEN;
/// `RVS_TUN_ICMP4_QUOTE`: bytes of the offending packet an ICMP error quotes (576-byte message).
pub const RVS_TUN_ICMP4_QUOTE: usize = 576 - RVS_TUN_IPV4_HLEN - RVS_TUN_ICMP_HLEN;
/// `RVS_TUN_ICMP6_QUOTE`: bytes of the offending packet an ICMPv6 error quotes (1280-byte message).
pub const RVS_TUN_ICMP6_QUOTE: usize = 1280 - RVS_TUN_IPV6_HLEN - RVS_TUN_ICMP_HLEN;
/// `RVS_TUN_IPV4_MIN_MTU` (RFC 791).
pub const RVS_TUN_IPV4_MIN_MTU: u32 = 68;
/// `RVS_TUN_IPV6_MIN_MTU` (RFC 8200).
pub const RVS_TUN_IPV6_MIN_MTU: u32 = 1280;
/// `RVS_TUN_ICMP_TTL`.
pub const RVS_TUN_ICMP_TTL: u8 = 64;
/// `RVS_TUN_IP_DF`, host order.
pub const RVS_TUN_IP_DF: u16 = 0x4000;
/// `RVS_TUN_ECN_MASK`.
pub const RVS_TUN_ECN_MASK: u8 = 0x03;
/// `RVS_TUN_ECN_ECT0`.
pub const RVS_TUN_ECN_ECT0: u8 = 0x02;
/// `RVS_TUN_ECN_CE`.
pub const RVS_TUN_ECN_CE: u8 = 0x03;
/// `RVS_TUN_ICMP_TOS`: precedence 6 (CS6), no ECN.
pub const RVS_TUN_ICMP_TOS: u8 = 0xc0;
/// `RVS_TUN_FLOWLABEL_MASK`.
pub const RVS_TUN_FLOWLABEL_MASK: u32 = 0xfffff;
/// `RVS_TUN_HASH_MUL`.
pub const RVS_TUN_HASH_MUL: u32 = 0x9e37_79b1;
/// `RVS_TUN_CSUM_WORDS`: bound of the frame-walking checksum loop.
pub const RVS_TUN_CSUM_WORDS: usize = (RVS_TUN_ICMP_HLEN + RVS_TUN_ICMP6_QUOTE) / 2;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

/// Typed views of the headers this file reads and writes (the model's `<linux/ip.h>` and
/// `<linux/ipv6.h>` for them). Lengths are checked once in `new_checked`.
mod view {
    use core::ops::Range;

    /// The fixed 20 bytes of an IPv4 header.
    pub(super) struct Ipv4<T: AsRef<[u8]>>(T);

    impl<T: AsRef<[u8]>> Ipv4<T> {
        const TOS: usize = 1;
        const FRAG_OFF: Range<usize> = 6..8;
        const TTL: usize = 8;
        const SADDR: Range<usize> = 12..16;
        const DADDR: Range<usize> = 16..20;

        pub(super) fn new_checked(b: T) -> Option<Self> {
            (b.as_ref().len() >= 20).then_some(Ipv4(b))
        }
        pub(super) fn tos(&self) -> u8 {
            self.0.as_ref()[Self::TOS]
        }
        pub(super) fn frag_off(&self) -> u16 {
            u16::from_be_bytes(self.0.as_ref()[Self::FRAG_OFF].try_into().unwrap())
        }
        pub(super) fn ttl(&self) -> u8 {
            self.0.as_ref()[Self::TTL]
        }
        pub(super) fn saddr(&self) -> [u8; 4] {
            self.0.as_ref()[Self::SADDR].try_into().unwrap()
        }
        pub(super) fn daddr(&self) -> [u8; 4] {
            self.0.as_ref()[Self::DADDR].try_into().unwrap()
        }
    }

    /// The first bytes of an IPv6 header (all 40 for addresses; the first 8 for the rest).
    pub(super) struct Ipv6<T: AsRef<[u8]>>(T);

    impl<T: AsRef<[u8]>> Ipv6<T> {
        const HOP_LIMIT: usize = 7;
        const SADDR: Range<usize> = 8..24;
        const DADDR: Range<usize> = 24..40;

        /// `None` below `len` bytes: 40 to read addresses, 8 for traffic class and hop limit.
        pub(super) fn new_checked(b: T, len: usize) -> Option<Self> {
            (b.as_ref().len() >= len.max(8)).then_some(Ipv6(b))
        }
        /// Traffic class: the 8 bits after the version.
        pub(super) fn traffic_class(&self) -> u8 {
            let b = self.0.as_ref();
            (b[0] << 4) | (b[1] >> 4)
        }
        pub(super) fn hop_limit(&self) -> u8 {
            self.0.as_ref()[Self::HOP_LIMIT]
        }
        /// Panics below 40 bytes: construct with `new_checked(b, 40)` first.
        pub(super) fn saddr(&self) -> [u8; 16] {
            self.0.as_ref()[Self::SADDR].try_into().unwrap()
        }
        /// Panics below 40 bytes: construct with `new_checked(b, 40)` first.
        pub(super) fn daddr(&self) -> [u8; 16] {
            self.0.as_ref()[Self::DADDR].try_into().unwrap()
        }
    }

    /// An IPv4 header without options, to be written (`struct iphdr` filled on the stack).
    #[derive(Default)]
    pub(super) struct Ipv4Repr {
        pub(super) tos: u8,
        pub(super) tot_len: u16,
        pub(super) id: u16,
        pub(super) frag_off: u16,
        pub(super) ttl: u8,
        pub(super) protocol: u8,
        pub(super) check: u16,
        pub(super) saddr: [u8; 4],
        pub(super) daddr: [u8; 4],
    }

    impl Ipv4Repr {
        pub(super) fn emit(&self) -> [u8; 20] {
            let mut b = [0u8; 20];
            b[0] = 0x45;
            b[1] = self.tos;
            b[2..4].copy_from_slice(&self.tot_len.to_be_bytes());
            b[4..6].copy_from_slice(&self.id.to_be_bytes());
            b[6..8].copy_from_slice(&self.frag_off.to_be_bytes());
            b[8] = self.ttl;
            b[9] = self.protocol;
            b[10..12].copy_from_slice(&self.check.to_be_bytes());
            b[12..16].copy_from_slice(&self.saddr);
            b[16..20].copy_from_slice(&self.daddr);
            b
        }
    }

    /// An IPv6 header without extension headers, to be written.
    pub(super) struct Ipv6Repr {
        pub(super) traffic_class: u8,
        pub(super) flow_label: u32,
        pub(super) payload_len: u16,
        pub(super) nexthdr: u8,
        pub(super) hop_limit: u8,
        pub(super) saddr: [u8; 16],
        pub(super) daddr: [u8; 16],
    }

    impl Ipv6Repr {
        pub(super) fn emit(&self) -> [u8; 40] {
            let mut b = [0u8; 40];
            let w0 = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xfffff);
            b[0..4].copy_from_slice(&w0.to_be_bytes());
            b[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
            b[6] = self.nexthdr;
            b[7] = self.hop_limit;
            b[8..24].copy_from_slice(&self.saddr);
            b[24..40].copy_from_slice(&self.daddr);
            b
        }
    }

    /// An ICMP or ICMPv6 error header: type, code, checksum, then 32 bits (the MTU for ours).
    pub(super) fn icmp_emit(ty: u8, code: u8, rest: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = ty;
        b[1] = code;
        b[4..8].copy_from_slice(&rest.to_be_bytes());
        b
    }
}

use view::{Ipv4, Ipv4Repr, Ipv6, Ipv6Repr};

/// Mirrors `rvs_tun_dsfield` (bpf/lib/tun.h).
pub fn rvs_tun_dsfield(inner: u8) -> u8 {
    let mut ecn = inner & RVS_TUN_ECN_MASK;
    if ecn == RVS_TUN_ECN_CE {
        ecn = RVS_TUN_ECN_ECT0;
    }
    (inner & !RVS_TUN_ECN_MASK) | ecn
}

/// Mirrors `rvs_tun_hash_step` (bpf/lib/tun.h).
pub fn rvs_tun_hash_step(h: u32, w: u32) -> u32 {
    let h = (h ^ w).wrapping_mul(RVS_TUN_HASH_MUL);
    h ^ (h >> 16)
}

/// Mirrors `rvs_tun_flowlabel` (bpf/lib/tun.h).
pub fn rvs_tun_flowlabel(pkt: &Pkt) -> u32 {
    let mut h = 0;
    for w in pkt.saddr.iter().chain(pkt.daddr.iter()) {
        h = rvs_tun_hash_step(h, w.get());
    }
    h = rvs_tun_hash_step(h, (u32::from(pkt.sport.get()) << 16) | u32::from(pkt.dport.get()));
    h = rvs_tun_hash_step(h, u32::from(pkt.proto));
    h = (h ^ (h >> 12)) & RVS_TUN_FLOWLABEL_MASK;
    if h == 0 { 1 } else { h }
}

/// Mirrors `rvs_tun_csum_fold` (bpf/lib/tun.h). The checksum as a number; it goes on the wire big-endian.
pub fn rvs_tun_csum_fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    for _ in 0..3 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Mirrors `rvs_tun_csum_buf` (bpf/lib/tun.h): big-endian words of `buf` (even length) added to `sum`.
pub fn rvs_tun_csum_buf(buf: &[u8], sum: u64) -> u64 {
    buf.chunks_exact(2)
        .fold(sum, |s, w| s + u64::from(u16::from_be_bytes([w[0], w[1]])))
}

/// Mirrors `rvs_tun_csum_frame` (bpf/lib/tun.h).
pub fn rvs_tun_csum_frame(frame: &Frame, off: usize, mut sum: u64) -> u64 {
    if off > RVS_TUN_L2_MAX + RVS_TUN_IPV6_HLEN {
        return sum;
    }
    let rest = frame.data().get(off..).unwrap_or_default();
    let words = (rest.len() / 2).min(RVS_TUN_CSUM_WORDS);
    sum = rvs_tun_csum_buf(&rest[..2 * words], sum);
    if let Some(&last) = rest.get(2 * words) {
        sum += u64::from(u16::from_be_bytes([last, 0]));
    }
    sum
}

/// Mirrors `rvs_tun_push` (bpf/lib/tun.h).
pub fn rvs_tun_push(frame: &mut Frame, l3_off: usize, room: usize) -> Result<(), DropReason> {
    let delta = -i32::try_from(room).map_err(|_| DropReason::EncapFail)?;
    frame.adjust_head(delta).map_err(|_| DropReason::EncapFail)?;
    let data = frame.data_mut();
    if data.len() < RVS_TUN_L2_MAX || data.len() < room + RVS_TUN_L2_MAX {
        return Err(DropReason::EncapFail);
    }
    data.copy_within(room..room + ETH_HLEN, 0);
    if l3_off > ETH_HLEN {
        data.copy_within(room + ETH_HLEN..room + RVS_TUN_L2_MAX, ETH_HLEN);
    }
    Ok(())
}

/// Mirrors `rvs_tun_l2` (bpf/lib/tun.h). `proto` in host order.
pub fn rvs_tun_l2(frame: &mut Frame, l3_off: usize, proto: u16, dest: &DestVal) -> Result<(), DropReason> {
    let data = frame.data_mut();
    if data.len() < RVS_TUN_L2_MAX {
        return Err(DropReason::EncapFail);
    }
    data[0..6].copy_from_slice(&dest.dmac);
    data[6..12].copy_from_slice(&dest.smac);
    let at = if l3_off > ETH_HLEN { ETH_HLEN + 2 } else { 12 };
    data[at..at + 2].copy_from_slice(&proto.to_be_bytes());
    Ok(())
}

/// The 4 or 16 wire bytes of a map address of `family`.
fn addr4(a: &rvs_abi::Addr) -> [u8; 4] {
    a[0].to_wire()
}

fn addr16(a: &rvs_abi::Addr) -> [u8; 16] {
    rvs_abi::addr_bytes(a)
}

/// Mirrors `rvs_tun_encap4` (bpf/lib/tun.h).
pub fn rvs_tun_encap4(frame: &mut Frame, env: &Env, pkt: &Pkt, dest: &DestVal) -> Result<(), DropReason> {
    let l3_off = usize::from(pkt.l3_off);
    rvs_tun_push(frame, l3_off, RVS_TUN_IPV4_HLEN)?;
    if l3_off > RVS_TUN_L2_MAX {
        return Err(DropReason::EncapFail);
    }
    let inner_at = l3_off + RVS_TUN_IPV4_HLEN;
    let inner = frame.data().get(inner_at..).unwrap_or_default();
    let mut outer = Ipv4Repr {
        tot_len: pkt.ip_len.wrapping_add(RVS_TUN_IPV4_HLEN as u16),
        saddr: addr4(&dest.laddr),
        daddr: addr4(&dest.addr),
        ..Ipv4Repr::default()
    };
    if pkt.family == Family::Inet6 as u8 {
        let ip = Ipv6::new_checked(inner, RVS_TUN_IPV4_HLEN).ok_or(DropReason::EncapFail)?;
        outer.tos = rvs_tun_dsfield(ip.traffic_class());
        outer.ttl = ip.hop_limit();
        outer.protocol = IPPROTO_IPV6;
    } else {
        let ip = Ipv4::new_checked(inner).ok_or(DropReason::EncapFail)?;
        outer.tos = rvs_tun_dsfield(ip.tos());
        outer.ttl = ip.ttl();
        outer.protocol = IPPROTO_IPIP;
        outer.frag_off = ip.frag_off() & RVS_TUN_IP_DF;
    }
    if outer.frag_off == 0 {
        outer.id = rvs_prandom(env) as u16;
    }
    outer.check = rvs_tun_csum_fold(rvs_tun_csum_buf(&outer.emit(), 0));
    let data = frame.data_mut();
    if data.len() < l3_off + RVS_TUN_IPV4_HLEN {
        return Err(DropReason::EncapFail);
    }
    data[l3_off..l3_off + RVS_TUN_IPV4_HLEN].copy_from_slice(&outer.emit());
    rvs_tun_l2(frame, l3_off, ETH_P_IP, dest)
}

/// Mirrors `rvs_tun_encap6` (bpf/lib/tun.h).
pub fn rvs_tun_encap6(frame: &mut Frame, pkt: &Pkt, dest: &DestVal) -> Result<(), DropReason> {
    let l3_off = usize::from(pkt.l3_off);
    rvs_tun_push(frame, l3_off, RVS_TUN_IPV6_HLEN)?;
    if l3_off > RVS_TUN_L2_MAX {
        return Err(DropReason::EncapFail);
    }
    let inner_at = l3_off + RVS_TUN_IPV6_HLEN;
    let inner = frame.data().get(inner_at..).unwrap_or_default();
    if inner.len() < RVS_TUN_IPV4_HLEN {
        return Err(DropReason::EncapFail);
    }
    let (ds, ttl) = if pkt.family == Family::Inet6 as u8 {
        let ip = Ipv6::new_checked(inner, RVS_TUN_IPV4_HLEN).ok_or(DropReason::EncapFail)?;
        (ip.traffic_class(), ip.hop_limit())
    } else {
        let ip = Ipv4::new_checked(inner).ok_or(DropReason::EncapFail)?;
        (ip.tos(), ip.ttl())
    };
    let outer = Ipv6Repr {
        traffic_class: rvs_tun_dsfield(ds),
        flow_label: rvs_tun_flowlabel(pkt),
        payload_len: pkt.ip_len,
        nexthdr: if pkt.family == Family::Inet6 as u8 {
            IPPROTO_IPV6
        } else {
            IPPROTO_IPIP
        },
        hop_limit: ttl,
        saddr: addr16(&dest.laddr),
        daddr: addr16(&dest.addr),
    };
    let data = frame.data_mut();
    if data.len() < l3_off + RVS_TUN_IPV6_HLEN {
        return Err(DropReason::EncapFail);
    }
    data[l3_off..l3_off + RVS_TUN_IPV6_HLEN].copy_from_slice(&outer.emit());
    rvs_tun_l2(frame, l3_off, ETH_P_IPV6, dest)
}

/// Mirrors `rvs_tun_reply` (bpf/lib/tun.h).
pub fn rvs_tun_reply(frame: &mut Frame, l3_off: usize, quote: usize, room: usize) -> Result<(), DropReason> {
    let delta = (l3_off + quote) as i64 - frame.len() as i64;
    let delta = i32::try_from(delta).map_err(|_| DropReason::EncapFail)?;
    frame.adjust_tail(delta).map_err(|_| DropReason::EncapFail)?;
    rvs_tun_push(frame, l3_off, room)?;
    let data = frame.data_mut();
    if data.len() < ETH_HLEN {
        return Err(DropReason::EncapFail);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&data[0..6]);
    data.copy_within(6..12, 0);
    data[6..12].copy_from_slice(&mac);
    Ok(())
}

/// Mirrors `rvs_tun_icmp4_too_big` (bpf/lib/tun.h).
pub fn rvs_tun_icmp4_too_big(frame: &mut Frame, pkt: &Pkt, mtu: u32) -> Verdict {
    let quote = usize::from(pkt.ip_len).min(RVS_TUN_ICMP4_QUOTE);
    let off = usize::from(pkt.l3_off);
    let hdr_len = RVS_TUN_IPV4_HLEN + RVS_TUN_ICMP_HLEN;
    if off > RVS_TUN_L2_MAX {
        return Verdict::Drop(DropReason::EncapFail);
    }
    if let Err(reason) = rvs_tun_reply(frame, off, quote, hdr_len) {
        return Verdict::Drop(reason);
    }
    let Some(orig) = frame.data().get(off + hdr_len..).and_then(Ipv4::new_checked) else {
        return Verdict::Drop(DropReason::EncapFail);
    };
    let mut ip = Ipv4Repr {
        tos: RVS_TUN_ICMP_TOS,
        tot_len: (hdr_len + quote) as u16,
        frag_off: RVS_TUN_IP_DF,
        ttl: RVS_TUN_ICMP_TTL,
        protocol: IPPROTO_ICMP,
        saddr: orig.daddr(),
        daddr: orig.saddr(),
        ..Ipv4Repr::default()
    };
    ip.check = rvs_tun_csum_fold(rvs_tun_csum_buf(&ip.emit(), 0));
    // `un.frag`: 16 unused bits, then the next-hop MTU (RFC 1191); the C stores the low 16 bits.
    let icmp = view::icmp_emit(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu & 0xffff);
    let data = frame.data_mut();
    data[off..off + RVS_TUN_IPV4_HLEN].copy_from_slice(&ip.emit());
    data[off + RVS_TUN_IPV4_HLEN..off + hdr_len].copy_from_slice(&icmp);
    let check = rvs_tun_csum_fold(rvs_tun_csum_frame(frame, off + RVS_TUN_IPV4_HLEN, 0));
    let data = frame.data_mut();
    if data.len() < off + hdr_len {
        return Verdict::Drop(DropReason::EncapFail);
    }
    let at = off + RVS_TUN_IPV4_HLEN + 2;
    data[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Verdict::Action(XdpAction::Tx)
}

/// Mirrors `rvs_tun_icmp6_too_big` (bpf/lib/tun.h).
pub fn rvs_tun_icmp6_too_big(frame: &mut Frame, pkt: &Pkt, mtu: u32) -> Verdict {
    let quote = usize::from(pkt.ip_len).min(RVS_TUN_ICMP6_QUOTE);
    let off = usize::from(pkt.l3_off);
    let hdr_len = RVS_TUN_IPV6_HLEN + RVS_TUN_ICMP_HLEN;
    if off > RVS_TUN_L2_MAX {
        return Verdict::Drop(DropReason::EncapFail);
    }
    if let Err(reason) = rvs_tun_reply(frame, off, quote, hdr_len) {
        return Verdict::Drop(reason);
    }
    let Some(orig) = frame
        .data()
        .get(off + hdr_len..)
        .and_then(|b| Ipv6::new_checked(b, RVS_TUN_IPV6_HLEN))
    else {
        return Verdict::Drop(DropReason::EncapFail);
    };
    let len = (RVS_TUN_ICMP_HLEN + quote) as u16;
    let ip = Ipv6Repr {
        traffic_class: 0,
        flow_label: 0,
        payload_len: len,
        nexthdr: IPPROTO_ICMPV6,
        hop_limit: RVS_TUN_ICMP_TTL,
        saddr: orig.daddr(),
        daddr: orig.saddr(),
    };
    let icmp = view::icmp_emit(ICMPV6_PKT_TOOBIG, 0, mtu);
    let data = frame.data_mut();
    data[off..off + RVS_TUN_IPV6_HLEN].copy_from_slice(&ip.emit());
    data[off + RVS_TUN_IPV6_HLEN..off + hdr_len].copy_from_slice(&icmp);
    // Pseudo-header: source and destination, upper-layer length, next header.
    let mut sum = rvs_tun_csum_buf(&ip.saddr, 0);
    sum = rvs_tun_csum_buf(&ip.daddr, sum);
    sum += u64::from(len) + u64::from(IPPROTO_ICMPV6);
    let check = rvs_tun_csum_fold(rvs_tun_csum_frame(frame, off + RVS_TUN_IPV6_HLEN, sum));
    let data = frame.data_mut();
    if data.len() < off + hdr_len {
        return Verdict::Drop(DropReason::EncapFail);
    }
    let at = off + RVS_TUN_IPV6_HLEN + 2;
    data[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Verdict::Action(XdpAction::Tx)
}

/// Mirrors `rvs_tun_too_big` (bpf/lib/tun.h).
pub fn rvs_tun_too_big(frame: &mut Frame, pkt: &Pkt, mtu: u32) -> Verdict {
    if pkt.family == Family::Inet6 as u8 {
        if mtu < RVS_TUN_IPV6_MIN_MTU {
            return Verdict::Drop(DropReason::TooBig);
        }
        return rvs_tun_icmp6_too_big(frame, pkt, mtu);
    }
    let l3_off = usize::from(pkt.l3_off);
    if l3_off > RVS_TUN_L2_MAX {
        return Verdict::Drop(DropReason::EncapFail);
    }
    let Some(ip) = frame.data().get(l3_off..).and_then(Ipv4::new_checked) else {
        return Verdict::Drop(DropReason::EncapFail);
    };
    if mtu < RVS_TUN_IPV4_MIN_MTU || ip.frag_off() & RVS_TUN_IP_DF == 0 {
        return Verdict::Drop(DropReason::TooBig);
    }
    rvs_tun_icmp4_too_big(frame, pkt, mtu)
}

/// Mirrors `rvs_tun_xmit` (bpf/lib/tun.h).
pub fn rvs_tun_xmit(frame: &mut Frame, env: &Env, pkt: &Pkt, dest: &DestVal) -> Verdict {
    let room = if dest.family == Family::Inet6 as u8 {
        RVS_TUN_IPV6_HLEN
    } else {
        RVS_TUN_IPV4_HLEN
    } as u32;
    if dest.flags & DEST_F_NEIGH == 0 {
        return Verdict::Drop(DropReason::NoNeigh);
    }
    if dest.mtu != 0 && u32::from(pkt.ip_len) + room > dest.mtu {
        return rvs_tun_too_big(frame, pkt, dest.mtu.saturating_sub(room));
    }
    let ret = if dest.family == Family::Inet6 as u8 {
        rvs_tun_encap6(frame, pkt, dest)
    } else {
        rvs_tun_encap4(frame, env, pkt, dest)
    };
    if let Err(reason) = ret {
        return Verdict::Drop(reason);
    }
    if dest.ifindex == frame.ingress_ifindex {
        return Verdict::Action(XdpAction::Tx);
    }
    Verdict::Action(frame.redirect(dest.ifindex, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::TEST_RUN_INGRESS_IFINDEX;
    use crate::parse::{rvs_parse_eth, rvs_parse_ipv4, rvs_parse_l4};
    use etherparse::{
        EtherType, Ethernet2Header, Ethernet2HeaderSlice, Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type,
        IpNumber, Ipv4Header, Ipv4HeaderSlice, Ipv6FlowLabel, Ipv6Header, Ipv6HeaderSlice, SingleVlanHeader,
        UdpHeader, icmpv4::DestUnreachableHeader,
    };
    use rvs_abi::{Be16, addr_v4, addr_v6};

    const CLIENT: [u8; 4] = [198, 18, 2, 5];
    const VIP: [u8; 4] = [198, 18, 0, 10];
    const RIP: [u8; 4] = [198, 18, 1, 2];
    const DIR: [u8; 4] = [198, 18, 1, 1];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const RIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DIR6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const CLIENT_MAC: [u8; 6] = [2, 0xc1, 0, 0, 0, 1];
    const DIR_MAC: [u8; 6] = [2, 0xd1, 0, 0, 0, 1];
    const NEXT_HOP_MAC: [u8; 6] = [2, 0x5e, 0, 0, 0, 2];

    /// A client's UDP datagram to the VIP (IPv4), built by etherparse: `payload` bytes, TOS `tos`, DF
    /// as given, TTL 61, optionally behind an 802.1Q tag.
    fn udp4(payload: usize, tos: u8, df: bool, vlan: bool) -> Vec<u8> {
        let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        let udp = UdpHeader::with_ipv4_checksum(
            40000,
            53,
            &Ipv4Header::new(8 + payload as u16, 61, IpNumber::UDP, CLIENT, VIP).unwrap(),
            &body,
        )
        .unwrap();
        let mut ip = Ipv4Header::new((8 + payload) as u16, 61, IpNumber::UDP, CLIENT, VIP).unwrap();
        ip.dont_fragment = df;
        ip.identification = 0x1234;
        ip.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
        ip.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = Vec::new();
        eth(&mut out, EtherType::IPV4, vlan);
        ip.write(&mut out).unwrap();
        udp.write(&mut out).unwrap();
        out.extend_from_slice(&body);
        out
    }

    /// A client's UDP datagram to the VIP (IPv6), traffic class `tc`, hop limit 61.
    fn udp6(payload: usize, tc: u8) -> Vec<u8> {
        let body: Vec<u8> = (0..payload).map(|i| (i * 7) as u8).collect();
        let ip = Ipv6Header {
            traffic_class: tc,
            flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
            payload_length: (8 + payload) as u16,
            next_header: IpNumber::UDP,
            hop_limit: 61,
            source: CLIENT6,
            destination: VIP6,
        };
        let udp = UdpHeader::with_ipv6_checksum(40000, 53, &ip, &body).unwrap();
        let mut out = Vec::new();
        eth(&mut out, EtherType::IPV6, false);
        ip.write(&mut out).unwrap();
        udp.write(&mut out).unwrap();
        out.extend_from_slice(&body);
        out
    }

    fn eth(out: &mut Vec<u8>, ty: EtherType, vlan: bool) {
        let outer = if vlan { EtherType::VLAN_TAGGED_FRAME } else { ty };
        Ethernet2Header {
            source: CLIENT_MAC,
            destination: DIR_MAC,
            ether_type: outer,
        }
        .write(out)
        .unwrap();
        if vlan {
            SingleVlanHeader {
                pcp: etherparse::VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id: etherparse::VlanId::try_new(100).unwrap(),
                ether_type: ty,
            }
            .write(out)
            .unwrap();
        }
    }

    /// The model's own parse of an IPv4 frame (the parser is tested elsewhere).
    fn pkt4(frame: &[u8]) -> Pkt {
        let mut p = Pkt::default();
        for stage in [rvs_parse_eth, rvs_parse_ipv4, rvs_parse_l4] {
            assert_eq!(stage(frame, &mut p), Verdict::Ok);
        }
        p
    }

    /// What the IPv6 parser will put in `Pkt` for `udp6` (IPv6 parsing is not in the model yet).
    fn pkt6(frame: &[u8]) -> Pkt {
        let w = |a: [u8; 16]| rvs_abi::addr_v6(a);
        Pkt {
            saddr: w(CLIENT6),
            daddr: w(VIP6),
            sport: Be16::new(40000),
            dport: Be16::new(53),
            l3_off: 14,
            l4_off: 54,
            ip_len: (frame.len() - 14) as u16,
            proto: 17,
            family: Family::Inet6 as u8,
            tcp_flags: 0,
        }
    }

    fn dest4(mtu: u32) -> DestVal {
        DestVal {
            addr: addr_v4(RIP),
            laddr: addr_v4(DIR),
            family: Family::Inet as u8,
            fwd: rvs_abi::Fwd::Tun as u8,
            dmac: NEXT_HOP_MAC,
            smac: DIR_MAC,
            ifindex: TEST_RUN_INGRESS_IFINDEX,
            flags: rvs_abi::DEST_F_VALID | DEST_F_NEIGH,
            mtu,
            ..Default::default()
        }
    }

    fn dest6(mtu: u32) -> DestVal {
        DestVal {
            addr: addr_v6(RIP6),
            laddr: addr_v6(DIR6),
            family: Family::Inet6 as u8,
            ..dest4(mtu)
        }
    }

    const PRANDOM: u32 = 0xabcd_5678;

    fn env() -> Env {
        Env {
            now_ns: 1,
            prandom: PRANDOM,
            ..Env::default()
        }
    }

    fn run(input: &[u8], pkt: &Pkt, dest: &DestVal) -> (Verdict, Vec<u8>) {
        let mut f = Frame::new(input);
        let v = rvs_tun_xmit(&mut f, &env(), pkt, dest);
        (v, f.data().to_vec())
    }

    /// Checks the outer IPv4 header with etherparse and returns it with the payload.
    fn outer4(out: &[u8], l3: usize) -> (Ipv4Header, Vec<u8>) {
        let h = Ipv4HeaderSlice::from_slice(&out[l3..]).expect("outer IPv4 header");
        let hdr = h.to_header();
        assert_eq!(
            hdr.calc_header_checksum(),
            h.header_checksum(),
            "outer IPv4 checksum"
        );
        (hdr, out[l3 + 20..].to_vec())
    }

    #[test]
    fn ipip_wraps_the_packet_unchanged_from_director_to_real() {
        let input = udp4(100, 0x28 | 0x02, true, false); // AF11, ECT(0)
        let (v, out) = run(&input, &pkt4(&input), &dest4(1500));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let eth = Ethernet2HeaderSlice::from_slice(&out).unwrap();
        assert_eq!((eth.destination(), eth.source()), (NEXT_HOP_MAC, DIR_MAC));
        assert_eq!(eth.ether_type(), EtherType::IPV4);
        let (o, payload) = outer4(&out, 14);
        assert_eq!(
            o.protocol,
            IpNumber::IPV4,
            "IPIP is protocol 4 (etherparse's IpNumber::IPIP is 94)"
        );
        assert_eq!((o.source, o.destination), (DIR, RIP));
        assert_eq!(o.time_to_live, 61);
        assert_eq!((o.dscp.value(), o.ecn.value()), (0x0a, 2));
        assert!(o.dont_fragment && !o.more_fragments);
        assert_eq!(o.identification, 0);
        assert_eq!(usize::from(o.total_len), input.len() - 14 + 20);
        assert_eq!(payload, input[14..]);
    }

    #[test]
    fn ce_becomes_ect0_outside_and_no_df_takes_a_random_id() {
        let input = udp4(30, 0x03, false, false);
        let (v, out) = run(&input, &pkt4(&input), &dest4(0));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let (o, payload) = outer4(&out, 14);
        assert_eq!(o.ecn.value(), 2);
        assert!(!o.dont_fragment);
        assert_eq!(o.identification, PRANDOM as u16);
        assert_eq!(payload[1] & 3, 3, "the inner CE mark stays");
    }

    #[test]
    fn vlan_tag_stays_and_another_interface_is_a_redirect() {
        let input = udp4(10, 0, true, true);
        let dest = DestVal {
            ifindex: 9,
            ..dest4(1500)
        };
        let (v, out) = run(&input, &pkt4(&input), &dest);
        assert_eq!(v, Verdict::Action(XdpAction::Redirect));
        assert_eq!(&out[12..18], &input[12..18], "TPID, TCI and EtherType");
        let (_, payload) = outer4(&out, 18);
        assert_eq!(payload, input[18..]);
    }

    #[test]
    fn ip6ip6_copies_traffic_class_and_labels_the_flow() {
        let input = udp6(64, 0xb9); // EF + ECT(1)
        let pkt = pkt6(&input);
        let (v, out) = run(&input, &pkt, &dest6(1500));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        assert_eq!(
            Ethernet2HeaderSlice::from_slice(&out).unwrap().ether_type(),
            EtherType::IPV6
        );
        let o = Ipv6HeaderSlice::from_slice(&out[14..]).unwrap();
        assert_eq!(o.next_header(), IpNumber::IPV6);
        assert_eq!((o.source(), o.destination()), (DIR6, RIP6));
        assert_eq!((o.traffic_class(), o.hop_limit()), (0xb9, 61));
        assert_eq!(usize::from(o.payload_length()), input.len() - 14);
        assert_eq!(o.flow_label().value(), rvs_tun_flowlabel(&pkt));
        assert_ne!(o.flow_label().value(), 0);
        assert_eq!(&out[54..], &input[14..]);
        let other = Pkt {
            sport: Be16::new(40001),
            ..pkt
        };
        assert_ne!(rvs_tun_flowlabel(&other), rvs_tun_flowlabel(&pkt), "flows spread");
    }

    #[test]
    fn mixed_families_use_protocol_4_and_41() {
        let input = udp4(20, 0, true, false);
        let (v, out) = run(&input, &pkt4(&input), &dest6(0));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let o = Ipv6HeaderSlice::from_slice(&out[14..]).unwrap();
        assert_eq!((o.next_header(), o.hop_limit()), (IpNumber::IPV4, 61));
        assert_eq!(&out[54..], &input[14..]);

        let input = udp6(20, 0);
        let (v, out) = run(&input, &pkt6(&input), &dest4(0));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let (o, payload) = outer4(&out, 14);
        assert_eq!(o.protocol, IpNumber::IPV6);
        assert!(!o.dont_fragment, "IPVS sets no DF over IPv6");
        assert_eq!(payload, input[14..]);
    }

    #[test]
    fn too_big_with_df_gets_fragmentation_needed_quoting_576_bytes() {
        let input = udp4(1472, 0x10, true, false); // a 1500-byte IP packet
        let (v, out) = run(&input, &pkt4(&input), &dest4(1500));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let eth = Ethernet2HeaderSlice::from_slice(&out).unwrap();
        assert_eq!((eth.destination(), eth.source()), (CLIENT_MAC, DIR_MAC));
        let ip = Ipv4HeaderSlice::from_slice(&out[14..]).unwrap();
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        assert_eq!(
            (ip.source(), ip.destination(), ip.protocol()),
            (VIP, CLIENT, IpNumber::ICMP)
        );
        assert_eq!(usize::from(ip.total_len()), 576);
        assert_eq!(out.len(), 14 + 576);
        let icmp = Icmpv4Slice::from_slice(&out[34..]).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1480
            })
        );
        assert_eq!(icmp.icmp_type().calc_checksum(icmp.payload()), icmp.checksum());
        assert_eq!(icmp.payload(), &input[14..14 + 548]);
    }

    #[test]
    fn too_big_quotes_a_short_odd_packet_whole() {
        let input = udp4(171, 0, true, true); // 199 bytes of IP: odd, below 548
        let (v, out) = run(&input, &pkt4(&input), &dest4(150));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let icmp = Icmpv4Slice::from_slice(&out[18 + 20..]).unwrap();
        assert_eq!(icmp.payload(), &input[18..]);
        assert_eq!(icmp.icmp_type().calc_checksum(icmp.payload()), icmp.checksum());
        assert_eq!(&out[12..18], &input[12..18]);
    }

    #[test]
    fn too_big_without_df_or_below_the_minimum_mtu_is_dropped_untouched() {
        let input = udp4(1472, 0, false, false);
        let (v, out) = run(&input, &pkt4(&input), &dest4(1500));
        assert_eq!((v, out), (Verdict::Drop(DropReason::TooBig), input));
        let input = udp4(100, 0, true, false);
        let (v, _) = run(&input, &pkt4(&input), &dest4(80));
        assert_eq!(v, Verdict::Drop(DropReason::TooBig));
        let input = udp6(1300, 0);
        let (v, _) = run(&input, &pkt6(&input), &dest6(1300));
        assert_eq!(v, Verdict::Drop(DropReason::TooBig));
    }

    #[test]
    fn too_big_ipv6_gets_packet_too_big_quoting_1232_bytes() {
        let input = udp6(1452, 0); // a 1500-byte IP packet
        let (v, out) = run(&input, &pkt6(&input), &dest6(1500));
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        let ip = Ipv6HeaderSlice::from_slice(&out[14..]).unwrap();
        assert_eq!((ip.source(), ip.destination()), (VIP6, CLIENT6));
        assert_eq!(
            (ip.next_header(), ip.payload_length()),
            (IpNumber::IPV6_ICMP, 1240)
        );
        assert_eq!(out.len(), 14 + 1280);
        let icmp = Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1460 });
        assert!(icmp.is_checksum_valid(VIP6, CLIENT6));
        assert_eq!(icmp.payload(), &input[14..14 + 1232]);
        // 4in6: the IPv4 client learns the MTU minus the 40-byte outer header.
        let input = udp4(1472, 0, true, false);
        let (_, out) = run(&input, &pkt4(&input), &dest6(1500));
        let icmp = Icmpv4Slice::from_slice(&out[34..]).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1460
            })
        );
    }

    #[test]
    fn unresolved_next_hop_and_no_headroom_are_named_drops() {
        let input = udp4(10, 0, true, false);
        let dest = DestVal {
            flags: rvs_abi::DEST_F_VALID,
            ..dest4(1500)
        };
        assert_eq!(
            run(&input, &pkt4(&input), &dest),
            (Verdict::Drop(DropReason::NoNeigh), input.clone())
        );
        // Leave 10 bytes of usable headroom: the 20-byte outer header does not fit, nothing changes.
        let mut f = Frame::new(&input);
        let usable = crate::frame::XDP_PACKET_HEADROOM - crate::frame::XDP_FRAME_SIZE;
        f.adjust_head(10 - usable as i32).unwrap();
        let before = f.data().to_vec();
        let v = rvs_tun_xmit(&mut f, &env(), &pkt4(&input), &dest4(1500));
        assert_eq!((v, f.data()), (Verdict::Drop(DropReason::EncapFail), &before[..]));
    }

    #[test]
    fn never_panics_on_a_frame_shorter_or_other_than_its_pkt_says() {
        let input = udp4(1472, 0, true, true);
        let pkt = pkt4(&input);
        for dest in [dest4(0), dest4(1500), dest4(100), dest6(0), dest6(1300)] {
            for len in (0..=input.len()).step_by(7) {
                let _ = rvs_tun_xmit(&mut Frame::new(&input[..len]), &env(), &pkt, &dest);
            }
            for l3_off in [0, 14, 18, 19, 4000] {
                for ip_len in [0, 20, 1500, u16::MAX] {
                    let p = Pkt {
                        l3_off,
                        ip_len,
                        ..pkt
                    };
                    let _ = rvs_tun_xmit(&mut Frame::new(&input[..100]), &env(), &p, &dest);
                    let _ = rvs_tun_xmit(&mut Frame::new(&input), &env(), &p, &dest);
                }
            }
        }
    }

    #[test]
    fn dsfield_keeps_dscp_and_maps_ce_only() {
        assert_eq!(rvs_tun_dsfield(0xb8), 0xb8);
        assert_eq!(rvs_tun_dsfield(0xb9), 0xb9);
        assert_eq!(rvs_tun_dsfield(0xba), 0xba);
        assert_eq!(rvs_tun_dsfield(0xbb), 0xba);
    }

    #[test]
    fn csum_helpers_agree_with_known_values() {
        // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(rvs_tun_csum_fold(rvs_tun_csum_buf(&b, 0)), !0xddf2);
        let f = Frame::new(
            &[0u8; 14]
                .iter()
                .chain(&b)
                .chain(&[0xab])
                .copied()
                .collect::<Vec<_>>(),
        );
        assert_eq!(rvs_tun_csum_frame(&f, 14, 0), rvs_tun_csum_buf(&b, 0) + 0xab00);
    }
}
