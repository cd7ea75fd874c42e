//! Forwarding by the kernel's routing table, as a router (NAT's next hop). Mirrors bpf/lib/fib.h; the
//! outcome of each answer of `bpf_fib_lookup` is explained there.

use rvs_abi::{DropReason, Family, fib_ret};

use crate::env::{Env, FibParams, RVS_SYS_AF_INET, RVS_SYS_AF_INET6, rvs_fib_lookup};
use crate::frame::{Frame, XdpAction};
use crate::maps::Maps;
use crate::parse::Pkt;
use crate::wire::{eth, ipv4, ipv6};
use crate::xdp::Verdict;

/// `RVS_IPV6_FLOWINFO_MASK`: traffic class and flow label in the first word of an IPv6 header.
pub const RVS_IPV6_FLOWINFO_MASK: u32 = 0x0fff_ffff;

/// Mirrors `rvs_fib_params` (bpf/lib/fib.h). `Ok(ttl)`, or the drop reason (the C's negative return).
pub fn rvs_fib_params(frame: &Frame, pkt: &Pkt, fib: &mut FibParams) -> Result<u8, DropReason> {
    *fib = FibParams {
        l4_protocol: pkt.proto,
        sport: pkt.sport,
        dport: pkt.dport,
        tot_len: pkt.ip_len,
        ifindex: frame.ingress_ifindex,
        ..FibParams::default()
    };
    let l3 = frame.data().get(usize::from(pkt.l3_off)..).unwrap_or_default();
    if pkt.family == Family::Inet as u8 {
        let ip = ipv4::Header::new_checked(l3).ok_or(DropReason::Ipv4Short)?;
        fib.family = RVS_SYS_AF_INET;
        fib.tos = ip.tos();
        fib.src[0] = pkt.saddr[0];
        fib.dst[0] = pkt.daddr[0];
        Ok(ip.ttl())
    } else {
        let ip6 = ipv6::Header::new_checked(l3).ok_or(DropReason::Ipv6Short)?;
        fib.family = RVS_SYS_AF_INET6;
        let w = u32::from_be_bytes(ip6.ver_tc_flow()) & RVS_IPV6_FLOWINFO_MASK;
        fib.flowinfo = w.to_be_bytes();
        fib.src = pkt.saddr;
        fib.dst = pkt.daddr;
        Ok(ip6.hop_limit())
    }
}

/// Mirrors `rvs_fib_dec_ttl` (bpf/lib/fib.h).
pub fn rvs_fib_dec_ttl(frame: &mut Frame, pkt: &Pkt) -> Verdict {
    let l3 = frame
        .data_mut()
        .get_mut(usize::from(pkt.l3_off)..)
        .unwrap_or_default();
    if pkt.family == Family::Inet as u8 {
        let Some(mut ip) = ipv4::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv4Short);
        };
        // TTL and protocol share one 16-bit word of the header.
        let old = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_ttl(ip.ttl().wrapping_sub(1));
        let new = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_check(crate::csum::rvs_csum_replace2(ip.check(), old, new));
    } else {
        let Some(mut ip6) = ipv6::Header::new_checked(l3) else {
            return Verdict::Drop(DropReason::Ipv6Short);
        };
        ip6.set_hop_limit(ip6.hop_limit().wrapping_sub(1));
    }
    Verdict::Ok
}

/// Mirrors `rvs_fib_xmit` (bpf/lib/fib.h).
pub fn rvs_fib_xmit(maps: &Maps, env: &Env, frame: &mut Frame, pkt: &Pkt) -> Verdict {
    if usize::from(pkt.l3_off) != eth::HEADER_LEN {
        return Verdict::Action(XdpAction::Pass);
    }
    let mut fib = FibParams::default();
    let ttl = match rvs_fib_params(frame, pkt, &mut fib) {
        Ok(ttl) => ttl,
        Err(reason) => return Verdict::Drop(reason),
    };
    if ttl <= 1 {
        return Verdict::Action(XdpAction::Pass);
    }
    let lookup = rvs_fib_lookup(env, &mut fib);
    if lookup == i64::from(fib_ret::FWD_DISABLED) {
        return Verdict::Drop(DropReason::FwdDisabled);
    }
    if lookup != i64::from(fib_ret::SUCCESS) {
        return Verdict::Action(XdpAction::Pass);
    }
    let action = if fib.ifindex == frame.ingress_ifindex {
        XdpAction::Tx
    } else {
        let entry = maps.rvs_tx_ports.lookup(&fib.ifindex).copied();
        frame.redirect_map(entry, XdpAction::Pass as u64)
    };
    if action != XdpAction::Tx && action != XdpAction::Redirect {
        return Verdict::Action(XdpAction::Pass);
    }
    let ret = rvs_fib_dec_ttl(frame, pkt);
    if ret != Verdict::Ok {
        return ret;
    }
    let Some(mut h) = eth::Header::new_checked(frame.data_mut()) else {
        return Verdict::Drop(DropReason::EthShort);
    };
    h.set_dst(fib.dmac);
    h.set_src(fib.smac);
    Verdict::Action(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_all;
    use rvs_abi::{TestFib, TestFibKey};

    fn frame(ttl: u8) -> Frame {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 2, 5], [198, 18, 1, 2], ttl)
            .udp(1000, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"q").unwrap();
        Frame::new(&out)
    }

    fn route(ret: u32, ifindex: u32) -> Env {
        let mut env = Env::default();
        env.fib.insert(
            TestFibKey::v4([198, 18, 1, 2]),
            TestFib {
                ret,
                ifindex,
                smac: [0x5; 6],
                dmac: [0xd; 6],
            },
        );
        env
    }

    fn run(maps: &Maps, env: &Env, f: &mut Frame) -> Verdict {
        let mut pkt = Pkt::default();
        assert_eq!(parse_all(f.data(), &mut pkt), Verdict::Ok);
        rvs_fib_xmit(maps, env, f, &pkt)
    }

    #[test]
    fn success_on_the_ingress_interface_is_tx_with_ttl_and_checksum_updated() {
        let maps = Maps::new(4);
        let mut f = frame(64);
        let v = run(&maps, &route(fib_ret::SUCCESS, f.ingress_ifindex), &mut f);
        assert_eq!(v, Verdict::Action(XdpAction::Tx));
        assert_eq!(&f.data()[..12], &[[0xd; 6], [0x5; 6]].concat()[..]);
        assert_eq!(f.data()[14 + 8], 63);
        let ip = &f.data()[14..34];
        assert_eq!(
            crate::csum::ipv4_header_csum(ip),
            u16::from_be_bytes([ip[10], ip[11]])
        );
    }

    #[test]
    fn another_interface_redirects_only_through_the_devmap() {
        let mut maps = Maps::new(4);
        let mut f = frame(64);
        let orig = f.data().to_vec();
        assert_eq!(
            run(&maps, &route(fib_ret::SUCCESS, 7), &mut f),
            Verdict::Action(XdpAction::Pass)
        );
        assert_eq!(
            f.data(),
            &orig[..],
            "passed untouched: the kernel decrements the TTL"
        );
        maps.rvs_tx_ports.update(7, 7, 0).unwrap();
        assert_eq!(
            run(&maps, &route(fib_ret::SUCCESS, 7), &mut f),
            Verdict::Action(XdpAction::Redirect)
        );
        assert_eq!(f.redirect_target(), Some(7));
    }

    #[test]
    fn other_answers_pass_and_fwd_disabled_drops() {
        let maps = Maps::new(4);
        for ret in [
            fib_ret::NO_NEIGH,
            fib_ret::NOT_FWDED,
            fib_ret::UNREACHABLE,
            fib_ret::FRAG_NEEDED,
        ] {
            let mut f = frame(64);
            assert_eq!(
                run(&maps, &route(ret, 1), &mut f),
                Verdict::Action(XdpAction::Pass)
            );
        }
        let mut f = frame(64);
        assert_eq!(
            run(&maps, &route(fib_ret::FWD_DISABLED, 1), &mut f),
            Verdict::Drop(DropReason::FwdDisabled)
        );
        let mut f = frame(1);
        assert_eq!(
            run(&maps, &route(fib_ret::SUCCESS, 1), &mut f),
            Verdict::Action(XdpAction::Pass),
            "TTL 1: the kernel sends time exceeded"
        );
    }
}
