//! Generated differential runs: random configurations (IPv4 and IPv6 services, DR, NAT and TUN reals,
//! port mapping, tunnel MTUs), then random sequences of client packets, real servers' replies and ICMP
//! about either (errors, echo requests) (valid, truncated,
//! mutated, random bytes) with random clock advances, routing tables, real-server removals and NAT
//! switched off and on; every scheduler, connection thresholds, timeouts (none, IPVS's, a few
//! seconds), runs of the expiry program over the entries, dest ids given to new real servers, and
//! persistent services (templates per client network).
//! Model and kernel must agree after every step, connection counters included. The tables are small
//! enough that they never fill up.

use std::net::IpAddr;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rvs_abi::{
    CFG_F_NAT, CFG_F_PORT0, Cfg, DestVal, Family, Fwd, MapOp, SVC_F_PERSISTENT, Sched, TIMEOUT_SLOTS,
    Timeouts, addr_v4, addr_v6, fib_ret,
};
use rvs_model::Env;
use rvs_model::env::Fib;
use rvs_testkit::packet::{Packet, pkt};

use crate::fixtures::{
    CLIENT_MAC, DIRECTOR_MAC, INGRESS, ROUTER_MAC, Real, Svc, VIP, VIP6, real_ip, real_mac, route,
};
use crate::harness::{CPU, NOT_ATTACHED, Pair, T0, TX_PORT, hex};

/// Services the generator may configure: (TCP?, port, IPv6?). Port 0: every port of the VIP that no
/// other service holds.
const SERVICES: [(bool, u16, bool); 8] = [
    (true, 80, false),
    (true, 443, false),
    (false, 53, false),
    (false, 80, false),
    (true, 80, true),
    (false, 53, true),
    (true, 0, false),
    (false, 0, true),
];
/// The port of the packets generated for a port-0 service, and so the one its reals answer from without
/// port mapping: one of `DPORTS` that no service of its own holds.
const PORT0_RPORT: u16 = 22;
const CLIENTS: [&str; 3] = ["198.18.2.5", "198.18.2.6", "198.18.3.7"];
const CLIENTS6: [&str; 3] = ["2001:db8:2::5", "2001:db8:2::6", "2001:db8:3::7"];
const DSTS: [&str; 2] = [VIP, "198.18.0.11"];
const DSTS6: [&str; 2] = [VIP6, "2001:db8::11"];
const DPORTS: [u16; 4] = [80, 443, 53, 22];
/// Dest ids are 1..=MAX_REALS (at most 3 services of 4 reals).
const MAX_REALS: u32 = 12;

#[derive(Clone, Debug)]
struct RealSpec {
    weight: u32,
    neigh: bool,
    other_if: bool,
    fwd: Fwd,
    /// TUN: the tunnel's MTU (0: unknown).
    mtu: u32,
    /// `-x` and `-y` (0: none).
    u_thresh: u32,
    l_thresh: u32,
}

#[derive(Clone, Debug)]
struct SvcSpec {
    which: usize,
    sched: Sched,
    /// sh-port/mh-port.
    sched_port: bool,
    /// mh-fallback.
    sched_fallback: bool,
    /// The reals' port (NAT maps it; DR ignores it).
    rport: Option<u16>,
    reals: Vec<RealSpec>,
    /// `-p` seconds and `-M` prefix length: persistent (templates, bpf/lib/persist.h).
    persist: Option<(u32, u32)>,
}

fn arb_real() -> impl Strategy<Value = RealSpec> {
    (
        prop_oneof![1 => Just(0u32), 4 => 1u32..4],
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
        prop_oneof![4 => Just(Fwd::Dr), 4 => Just(Fwd::Nat), 2 => Just(Fwd::Tun)],
        prop_oneof![Just(0u32), Just(1500), Just(1280), Just(576)],
        prop_oneof![3 => Just(0u32), 1 => 1u32..5],
        prop_oneof![3 => Just(0u32), 1 => 1u32..4],
    )
        .prop_map(
            |(weight, neigh, other_if, fwd, mtu, u_thresh, l_thresh)| RealSpec {
                weight,
                neigh,
                other_if,
                fwd,
                mtu,
                u_thresh,
                l_thresh,
            },
        )
}

fn arb_svcs() -> impl Strategy<Value = Vec<SvcSpec>> {
    prop::collection::vec(
        (
            0..SERVICES.len(),
            (
                prop_oneof![
                    Just(Sched::Rr),
                    Just(Sched::Wrr),
                    Just(Sched::Sh),
                    Just(Sched::Dh),
                    Just(Sched::Mh),
                    Just(Sched::Lc),
                    Just(Sched::Wlc),
                    Just(Sched::Sed),
                    Just(Sched::Nq),
                    Just(Sched::Fo),
                    Just(Sched::Ovf),
                    Just(Sched::Twos),
                    Just(Sched::Lblc),
                    Just(Sched::Lblcr)
                ],
                any::<bool>(),
                any::<bool>(),
            ),
            prop_oneof![Just(None), Just(Some(8080u16))],
            prop::collection::vec(arb_real(), 0..5),
            prop_oneof![
                2 => Just(None),
                1 => (
                    prop_oneof![Just(1u32), Just(300)],
                    prop_oneof![Just(0u32), Just(24), Just(32), Just(64), Just(128)]
                )
                    .prop_map(Some)
            ],
        ),
        1..4,
    )
    .prop_map(|v| {
        let mut seen = std::collections::BTreeSet::new();
        v.into_iter()
            .filter(|(w, _, _, _, _)| seen.insert(*w))
            .map(
                |(which, (sched, sched_port, sched_fallback), rport, reals, persist)| SvcSpec {
                    which,
                    sched,
                    sched_port,
                    sched_fallback,
                    rport,
                    reals,
                    persist,
                },
            )
            .collect()
    })
}

/// A configured real, as replies need it.
#[derive(Clone, Debug)]
struct RealOf {
    id: u32,
    tcp: bool,
    v6: bool,
    addr: String,
    port: u16,
}

/// The ops of `specs` (NAT and the port-0 lookup switched on first when a NAT real or a port-0 service
/// exists, as the encoder does), and the reals.
fn build_config(specs: &[SvcSpec]) -> (Vec<MapOp>, Vec<RealOf>) {
    let mut ops = Vec::new();
    let mut reals = Vec::new();
    let mut next_dest = 1;
    let nat = specs.iter().any(|s| s.reals.iter().any(|r| r.fwd == Fwd::Nat));
    let port0 = specs.iter().any(|s| SERVICES[s.which].1 == 0);
    if nat || port0 {
        ops.push(MapOp::CfgSet {
            val: Cfg {
                flags: if nat { CFG_F_NAT } else { 0 } | if port0 { CFG_F_PORT0 } else { 0 },
                lblcr_exp_s: 0,
            },
        });
    }
    for (i, s) in specs.iter().enumerate() {
        let (tcp, port, v6) = SERVICES[s.which];
        let id = i as u32 + 1;
        let mut svc = if tcp {
            Svc::tcp(id, port)
        } else {
            Svc::udp(id, port)
        };
        if v6 {
            svc = svc.on(VIP6);
        }
        svc = svc.sched(s.sched, s.sched_port, s.sched_fallback);
        if let Some(p) = s.rport {
            svc = svc.rport(p);
        }
        let mut tun = Vec::new();
        let mut thresh = Vec::new();
        for r in &s.reals {
            thresh.push((next_dest, r.u_thresh, r.l_thresh));
            svc = svc.real_with(Real {
                id: next_dest,
                weight: r.weight,
                neigh: r.neigh,
                ifindex: if r.other_if { 9 } else { INGRESS },
                fwd: r.fwd,
            });
            if r.fwd == Fwd::Tun {
                tun.push((next_dest, r.mtu));
            }
            reals.push(RealOf {
                id: next_dest,
                tcp,
                v6,
                addr: real_ip(svc.vip, next_dest),
                port: s.rport.unwrap_or(if port == 0 { PORT0_RPORT } else { port }),
            });
            next_dest += 1;
        }
        // TUN reals get the director's outer address (the daemon's job, as their MACs) and an MTU;
        // every real its thresholds.
        ops.extend(svc.ops().into_iter().map(|op| match op {
            MapOp::DestSet { id, mut val } => {
                if let Some(&(_, u, l)) = thresh.iter().find(|(t, _, _)| *t == id) {
                    val.u_thresh = u;
                    val.l_thresh = l;
                }
                if let Some((_, mtu)) = tun.iter().find(|(t, _)| *t == id) {
                    val.laddr = if val.family == Family::Inet6 as u8 {
                        addr_v6("2001:db8:1::fe".parse::<std::net::Ipv6Addr>().unwrap().octets())
                    } else {
                        addr_v4([198, 18, 1, 254])
                    };
                    val.mtu = *mtu;
                }
                MapOp::DestSet { id, val }
            }
            MapOp::SvcSet { key, mut val } => {
                if let Some((persist_s, plen)) = s.persist {
                    val.flags |= SVC_F_PERSISTENT;
                    val.persist_s = persist_s;
                    val.plen = plen;
                }
                MapOp::SvcSet { key, val }
            }
            op => op,
        }));
    }
    // The virtual addresses, as the encoder writes them (echo requests to them are answered).
    let mut vips: Vec<rvs_abi::VipKey> = specs
        .iter()
        .map(|s| {
            let v6 = SERVICES[s.which].2;
            rvs_abi::VipKey {
                addr: crate::fixtures::map_addr(if v6 { VIP6 } else { VIP }).0,
                family: if v6 { Family::Inet6 } else { Family::Inet } as u8,
                _pad: [0; 3],
            }
        })
        .collect();
    vips.sort_unstable();
    vips.dedup();
    ops.extend(vips.into_iter().map(|key| MapOp::VipSet { key }));
    (ops, reals)
}

/// Timeouts written at configuration: none, IPVS's defaults, or `n` seconds for every state.
#[derive(Clone, Copy, Debug)]
enum TimeoutKind {
    None,
    Ipvs,
    All(u32),
}

fn arb_timeouts() -> impl Strategy<Value = TimeoutKind> {
    prop_oneof![
        1 => Just(TimeoutKind::None),
        1 => Just(TimeoutKind::Ipvs),
        2 => (1u32..5).prop_map(TimeoutKind::All),
    ]
}

fn timeouts_op(kind: TimeoutKind) -> Option<MapOp> {
    let val = match kind {
        TimeoutKind::None => return None,
        TimeoutKind::Ipvs => crate::fixtures::counters::ipvs_timeouts(),
        TimeoutKind::All(n) => Timeouts {
            s: [n; TIMEOUT_SLOTS],
        },
    };
    Some(MapOp::TimeoutsSet { val })
}

#[derive(Clone, Copy, Debug)]
enum RouteKind {
    Tx,
    Redirect,
    NotAttached,
    NoNeigh,
    FwdDisabled,
    Unreachable,
    NoRoute,
}

fn arb_route() -> impl Strategy<Value = RouteKind> {
    prop_oneof![
        8 => Just(RouteKind::Tx),
        2 => Just(RouteKind::Redirect),
        1 => Just(RouteKind::NotAttached),
        2 => Just(RouteKind::NoNeigh),
        1 => Just(RouteKind::FwdDisabled),
        1 => Just(RouteKind::Unreachable),
        1 => Just(RouteKind::NoRoute),
    ]
}

/// Every address a NAT packet may be forwarded to: the reals of both families, then the clients.
fn route_dests() -> Vec<(String, [u8; 6])> {
    let mut v = Vec::new();
    for id in 1..=MAX_REALS {
        v.push((real_ip(VIP, id), real_mac(id)));
        v.push((real_ip(VIP6, id), real_mac(id)));
    }
    for c in CLIENTS.iter().chain(&CLIENTS6) {
        v.push(((*c).to_owned(), ROUTER_MAC));
    }
    v
}

/// The routing table where destination `i` of `route_dests()` answers `kinds[i]` (cycled).
fn fib_of(kinds: &[RouteKind]) -> Fib {
    let mut fib = Fib::new();
    for (i, (dst, mac)) in route_dests().iter().enumerate() {
        let (ret, ifindex) = match kinds[i % kinds.len()] {
            RouteKind::Tx => (fib_ret::SUCCESS, INGRESS),
            RouteKind::Redirect => (fib_ret::SUCCESS, TX_PORT),
            RouteKind::NotAttached => (fib_ret::SUCCESS, NOT_ATTACHED),
            RouteKind::NoNeigh => (fib_ret::NO_NEIGH, INGRESS),
            RouteKind::FwdDisabled => (fib_ret::FWD_DISABLED, 0),
            RouteKind::Unreachable => (fib_ret::UNREACHABLE, 0),
            RouteKind::NoRoute => continue,
        };
        route(&mut fib, dst, ret, ifindex, *mac);
    }
    fib
}

fn arb_routes() -> impl Strategy<Value = Vec<RouteKind>> {
    prop::collection::vec(arb_route(), 1..8)
}

#[derive(Clone, Debug)]
struct PktSpec {
    /// Protocol, port and family of the configured service `svc` (modulo their number), or `udp`,
    /// `DPORTS[dport]` and `v6` when `svc` is `SERVICES.len()`.
    svc: usize,
    udp: bool,
    v6: bool,
    client: usize,
    sport: u16,
    dst: usize,
    dport: usize,
    flags: u8,
    vlan: bool,
    options: usize,
    payload: usize,
    pad: bool,
    ttl: u8,
}

impl PktSpec {
    fn packet(&self, svcs: &[SvcSpec]) -> Packet {
        let mut p = pkt().eth(CLIENT_MAC, DIRECTOR_MAC);
        if self.vlan {
            p = p.vlan(42);
        }
        let (udp, dport, v6) = match svcs.get(self.svc % svcs.len().max(1)) {
            Some(s) if self.svc < SERVICES.len() => {
                let (tcp, port, v6) = SERVICES[s.which];
                (!tcp, if port == 0 { PORT0_RPORT } else { port }, v6)
            }
            _ => (self.udp, DPORTS[self.dport], self.v6),
        };
        if v6 {
            p = p.ipv6(CLIENTS6[self.client], DSTS6[self.dst]);
        } else {
            p = p.ipv4(CLIENTS[self.client], DSTS[self.dst]);
            if self.options > 0 {
                p = p.ipv4_options(&vec![1u8; self.options * 4]); // NOPs
            }
        }
        p = p.ttl(self.ttl);
        p = if udp {
            p.udp(self.sport, dport)
        } else {
            p.tcp(self.sport, dport).tcp_flags(self.flags)
        };
        p = p.payload(&vec![0xab; self.payload]);
        if self.pad { p.pad_to(60) } else { p }
    }
}

/// A real server's packet to a client: its reply, if a connection exists.
#[derive(Clone, Debug)]
struct ReplySpec {
    /// Index into the configured reals (modulo their number).
    real: usize,
    client: usize,
    cport: u16,
    /// Another source port than the real's (a packet that is no reply).
    other_sport: bool,
    flags: u8,
    payload: usize,
    ttl: u8,
}

impl ReplySpec {
    fn packet(&self, reals: &[RealOf]) -> Option<Packet> {
        let r = reals.get(self.real % reals.len().max(1))?;
        let client = if r.v6 {
            CLIENTS6[self.client]
        } else {
            CLIENTS[self.client]
        };
        let p = pkt().eth(real_mac(r.id), DIRECTOR_MAC);
        let p = if r.v6 {
            p.ipv6(&r.addr, client)
        } else {
            p.ipv4(&r.addr, client)
        };
        let sport = if self.other_sport { r.port + 1 } else { r.port };
        let p = p.ttl(self.ttl);
        let p = if r.tcp {
            p.tcp(sport, self.cport).tcp_flags(self.flags)
        } else {
            p.udp(sport, self.cport)
        };
        Some(p.payload(&vec![0xcd; self.payload]))
    }
}

/// ICMP errors of each family that the generator sends: (type, code). The last of each is none the
/// director ties to connections.
const ICMP_KINDS: [(u8, u8); 5] = [(3, 4), (3, 3), (11, 0), (4, 0), (12, 0)];
const ICMPV6_KINDS: [(u8, u8); 5] = [(2, 0), (1, 4), (3, 0), (1, 0), (4, 0)];

/// What an ICMP step is about.
#[derive(Clone, Debug)]
enum IcmpAbout {
    /// An error from the client side about the answer to this client packet (its tuple turned around).
    Client(PktSpec),
    /// An error from a real server's side about the client's packet that this reply answers.
    Reply(ReplySpec),
    /// An echo request from the client to the destination of this packet.
    Echo(PktSpec),
}

#[derive(Clone, Debug)]
struct IcmpSpec {
    about: IcmpAbout,
    /// Index into the family's kinds.
    kind: usize,
    /// Bytes of the quoted packet kept: its IP header plus this many (all when beyond its length).
    quote_l4: usize,
}

/// An ICMP(v6) frame between `macs` from `src` to `dst`: type, code, 4 bytes of rest, `body`; the
/// checksum by etherparse.
fn icmp_frame(macs: ([u8; 6], [u8; 6]), src: &str, dst: &str, tc: (u8, u8), body: &[u8]) -> Packet {
    let v6 = src.contains(':');
    let header = if v6 {
        let a = |x: &str| x.parse::<std::net::Ipv6Addr>().expect("IPv6").octets();
        let ty = etherparse::Icmpv6Type::Unknown {
            type_u8: tc.0,
            code_u8: tc.1,
            bytes5to8: [0, 0, 0x05, 0x00],
        };
        etherparse::Icmpv6Header::with_checksum(ty, a(src), a(dst), body)
            .expect("fits")
            .to_bytes()
            .to_vec()
    } else {
        let ty = etherparse::Icmpv4Type::Unknown {
            type_u8: tc.0,
            code_u8: tc.1,
            bytes5to8: [0, 0, 0x05, 0x14],
        };
        etherparse::Icmpv4Header::with_checksum(ty, body)
            .to_bytes()
            .to_vec()
    };
    let msg = [header.as_slice(), body].concat();
    let p = pkt().eth(macs.0, macs.1);
    if v6 {
        p.ipv6(src, dst).ip_proto(58).payload(&msg)
    } else {
        p.ipv4(src, dst).ip_proto(1).payload(&msg)
    }
}

impl IcmpSpec {
    fn packet(&self, svcs: &[SvcSpec], reals: &[RealOf]) -> Option<Packet> {
        let cut = |p: &Packet, v6: bool| {
            let f = p.build();
            let ip = &f[p.l3_offset()..];
            let hl = if v6 { 40 } else { usize::from(ip[0] & 0xf) * 4 };
            ip[..ip.len().min(hl + self.quote_l4)].to_vec()
        };
        let kind = |v6: bool| {
            if v6 {
                ICMPV6_KINDS[self.kind % ICMPV6_KINDS.len()]
            } else {
                ICMP_KINDS[self.kind % ICMP_KINDS.len()]
            }
        };
        match &self.about {
            IcmpAbout::Client(p) => {
                let built = p.packet(svcs).build();
                let l3 = if p.vlan { 18 } else { 14 };
                let v6 = built.get(12..14) == Some(&[0x86, 0xdd]) || built.get(16..18) == Some(&[0x86, 0xdd]);
                // The answer to the client's packet, as a real server or the director sent it.
                let (src, dst) = if v6 {
                    (DSTS6[p.dst], CLIENTS6[p.client])
                } else {
                    (DSTS[p.dst], CLIENTS[p.client])
                };
                let l4 = built.get(l3 + if v6 { 40 } else { 20 + p.options * 4 }..)?;
                let (sport, dport) = (
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                );
                let q = pkt();
                let q = if v6 { q.ipv6(src, dst) } else { q.ipv4(src, dst) };
                let udp = built.get(l3 + if v6 { 6 } else { 9 }) == Some(&17);
                let q = if udp {
                    q.udp(dport, sport)
                } else {
                    q.tcp(dport, sport).ack()
                };
                let q = q.payload(&[0x5a; 40]);
                let router = if v6 { "2001:db8:3::1" } else { "198.18.3.1" };
                let f = icmp_frame((ROUTER_MAC, DIRECTOR_MAC), router, src, kind(v6), &cut(&q, v6));
                Some(if p.vlan { f.vlan(42) } else { f })
            }
            IcmpAbout::Reply(r) => {
                let real = reals.get(r.real % reals.len().max(1))?;
                let client = if real.v6 {
                    CLIENTS6[r.client]
                } else {
                    CLIENTS[r.client]
                };
                // The client's packet as NAT delivered it to the real server.
                let q = pkt();
                let q = if real.v6 {
                    q.ipv6(client, &real.addr)
                } else {
                    q.ipv4(client, &real.addr)
                };
                let rport = if r.other_sport { real.port + 1 } else { real.port };
                let q = if real.tcp {
                    q.tcp(r.cport, rport).ack()
                } else {
                    q.udp(r.cport, rport)
                };
                let q = q.payload(&[0x5b; 40]);
                Some(icmp_frame(
                    (real_mac(real.id), DIRECTOR_MAC),
                    &real.addr,
                    client,
                    kind(real.v6),
                    &cut(&q, real.v6),
                ))
            }
            IcmpAbout::Echo(p) => {
                let (src, dst) = if p.v6 {
                    (CLIENTS6[p.client], DSTS6[p.dst])
                } else {
                    (CLIENTS[p.client], DSTS[p.dst])
                };
                let t = if p.v6 { (128, 0) } else { (8, 0) };
                let f = icmp_frame((CLIENT_MAC, DIRECTOR_MAC), src, dst, t, &[0x77; 24]).ttl(p.ttl);
                Some(if p.vlan { f.vlan(42) } else { f })
            }
        }
    }
}

/// Boxed: the nested strategies' value trees are large enough to overflow a debug test thread's stack.
fn arb_icmp() -> BoxedStrategy<IcmpSpec> {
    (
        prop_oneof![
            3 => arb_pkt().prop_map(IcmpAbout::Client).boxed(),
            3 => arb_reply().prop_map(IcmpAbout::Reply).boxed(),
            1 => arb_pkt().prop_map(IcmpAbout::Echo).boxed(),
        ]
        .boxed(),
        prop_oneof![6 => Just(0usize), 4 => 1usize..5],
        prop_oneof![3 => Just(8usize), 1 => Just(4usize), 2 => Just(1000usize)],
    )
        .prop_map(|(about, kind, quote_l4)| IcmpSpec {
            about,
            kind,
            quote_l4,
        })
        .boxed()
}

fn arb_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(0x02u8),          // SYN
        4 => Just(0x10),            // ACK
        2 => Just(0x18),            // PSH|ACK
        2 => Just(0x11),            // FIN|ACK
        1 => Just(0x01),            // FIN
        1 => Just(0x04),            // RST
        1 => Just(0x14),            // RST|ACK
        1 => Just(0x12),            // SYN|ACK
        1 => Just(0x06),            // SYN|RST
        1 => any::<u8>(),
    ]
}

fn arb_ttl() -> impl Strategy<Value = u8> {
    prop_oneof![12 => Just(64u8), 1 => Just(1), 1 => Just(2), 1 => Just(0)]
}

fn arb_sport() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(40000u16), 1 => 40001u16..40003]
}

fn arb_pkt() -> impl Strategy<Value = PktSpec> {
    (
        (
            0..SERVICES.len() + 1,
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.3),
            prop_oneof![6 => Just(0usize), 1 => 1..CLIENTS.len()],
            arb_sport(),
            prop_oneof![9 => Just(0usize), 1 => Just(1usize)],
            0..DPORTS.len(),
        ),
        (
            arb_flags(),
            prop::bool::weighted(0.15),
            prop_oneof![8 => Just(0usize), 1 => 1usize..=10],
            prop_oneof![6 => 0usize..64, 1 => 64usize..3400],
            prop::bool::weighted(0.2),
            arb_ttl(),
        ),
    )
        .prop_map(
            |((svc, udp, v6, client, sport, dst, dport), (flags, vlan, options, payload, pad, ttl))| {
                PktSpec {
                    svc,
                    udp,
                    v6,
                    client,
                    sport,
                    dst,
                    dport,
                    flags,
                    vlan,
                    options,
                    payload,
                    pad,
                    ttl,
                }
            },
        )
}

fn arb_reply() -> impl Strategy<Value = ReplySpec> {
    (
        any::<usize>(),
        prop_oneof![6 => Just(0usize), 1 => 1..CLIENTS.len()],
        arb_sport(),
        prop::bool::weighted(0.1),
        arb_flags(),
        prop_oneof![6 => 0usize..64, 1 => 64usize..1400],
        arb_ttl(),
    )
        .prop_map(
            |(real, client, cport, other_sport, flags, payload, ttl)| ReplySpec {
                real,
                client,
                cport,
                other_sport,
                flags,
                payload,
                ttl,
            },
        )
}

#[derive(Clone, Debug)]
enum Mutation {
    None,
    /// Keep this fraction (per mille) of the frame, at least 14 bytes.
    Truncate(u16),
    /// XOR one byte (offset taken modulo the length).
    Flip(usize, u8),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        12 => Just(Mutation::None),
        2 => (0u16..1000).prop_map(Mutation::Truncate),
        2 => (0usize..128, 1u8..=255).prop_map(|(o, x)| Mutation::Flip(o, x)),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Packet(PktSpec, Mutation),
    Reply(ReplySpec, Mutation),
    /// An ICMP error about a packet of either side, or an echo request.
    Icmp(IcmpSpec, Mutation),
    /// Random bytes after a valid Ethernet header of some EtherType.
    Junk(u16, Vec<u8>),
    Advance(u64),
    /// Frees dest slot `n % count` (the daemon deleting a real without rewriting the table yet).
    FreeDest(usize),
    /// A new routing table.
    Reroute(Vec<RouteKind>),
    /// NAT replies looked up or not (`rvs_cfg`), whatever the reals are.
    Nat(bool),
    /// A run of the expiry over the entries (sorted) whose index has its bit set in the mask, and an
    /// absent key when the flag is set.
    Expire(u64, bool),
    /// Dest id `n % count` given to a new real server: generation up, counters cleared.
    Regen(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (arb_pkt(), arb_mutation()).prop_map(|(p, m)| Step::Packet(p, m)),
        6 => (arb_reply(), arb_mutation()).prop_map(|(r, m)| Step::Reply(r, m)),
        4 => (arb_icmp(), arb_mutation()).prop_map(|(c, m)| Step::Icmp(c, m)).boxed(),
        1 => (prop_oneof![Just(0x0800u16), Just(0x8100), Just(0x86dd), Just(0x0806)], prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(t, b)| Step::Junk(t, b)),
        2 => prop_oneof![1u64..1_000_000, 1_000_000_000u64..1_000_000_000_000].prop_map(Step::Advance),
        1 => any::<usize>().prop_map(Step::FreeDest),
        1 => arb_routes().prop_map(Step::Reroute),
        1 => any::<bool>().prop_map(Step::Nat),
        2 => (prop_oneof![Just(u64::MAX), any::<u64>()], any::<bool>()).prop_map(|(m, a)| Step::Expire(m, a)),
        1 => any::<usize>().prop_map(Step::Regen),
    ]
}

fn mutate(mut f: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match *m {
        Mutation::None => {}
        Mutation::Truncate(pm) => {
            let keep = 14 + (f.len() - 14) * usize::from(pm) / 1000;
            f.truncate(keep);
        }
        Mutation::Flip(off, x) => {
            let i = off % f.len();
            f[i] ^= x;
        }
    }
    f
}

fn frame_of(step: &Step, svcs: &[SvcSpec], reals: &[RealOf]) -> Option<Vec<u8>> {
    match step {
        Step::Packet(p, m) => Some(mutate(p.packet(svcs).build(), m)),
        Step::Reply(r, m) => r.packet(reals).map(|p| mutate(p.build(), m)),
        Step::Icmp(c, m) => c.packet(svcs, reals).map(|p| mutate(p.build(), m)),
        Step::Junk(t, bytes) => {
            let mut f = pkt().eth(CLIENT_MAC, DIRECTOR_MAC).ethertype(*t).build();
            f.extend_from_slice(bytes);
            Some(f)
        }
        Step::Advance(_)
        | Step::FreeDest(_)
        | Step::Reroute(_)
        | Step::Nat(_)
        | Step::Expire(..)
        | Step::Regen(_) => None,
    }
}

fn run_sequence(
    svcs: &[SvcSpec],
    timeouts: TimeoutKind,
    routes: &[RouteKind],
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let mut pair = Pair::new();
    let (mut ops, reals) = build_config(svcs);
    ops.extend(timeouts_op(timeouts));
    pair.apply(&ops);
    let mut fib = fib_of(routes);
    let mut now = T0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Advance(ns) => now += ns,
            Step::FreeDest(n) if !reals.is_empty() => {
                let id = reals[n % reals.len()].id;
                pair.apply(&[MapOp::DestSet {
                    id,
                    val: DestVal::default(),
                }]);
            }
            Step::FreeDest(_) => {}
            Step::Regen(n) if !reals.is_empty() => {
                let id = reals[n % reals.len()].id;
                let val = pair.model.rvs_dest.lookup(id).unwrap_or_default();
                pair.apply(&[
                    MapOp::DestSet {
                        id,
                        val: DestVal {
                            dgen: val.dgen + 1,
                            ..val
                        },
                    },
                    MapOp::DestCntClear { id },
                ]);
            }
            Step::Regen(_) => {}
            Step::Expire(mask, absent) => {
                let mut entries = pair.model.rvs_conn.entries();
                entries.sort_by(crate::harness::conn_order);
                let mut keys: Vec<_> = entries
                    .into_iter()
                    .enumerate()
                    .filter(|(j, _)| mask & (1 << (j % 64)) != 0)
                    .map(|(_, (k, _))| k)
                    .collect();
                if *absent {
                    keys.push(crate::fixtures::counters::key(6, 1, 1));
                }
                let env = Env {
                    now_ns: now,
                    cpu: CPU,
                    prandom: i as u32,
                    fib: fib.clone(),
                };
                if let Err(report) = pair.expire(&env, &keys) {
                    return Err(TestCaseError::fail(format!(
                        "step {i} ({step:?}): model and kernel disagree:\n{report}"
                    )));
                }
            }
            Step::Reroute(kinds) => fib = fib_of(kinds),
            Step::Nat(on) => pair.apply(&[MapOp::CfgSet {
                val: Cfg {
                    // The port-0 lookup stays as the configuration has it.
                    flags: if *on { CFG_F_NAT } else { 0 }
                        | if svcs.iter().any(|s| SERVICES[s.which].1 == 0) {
                            CFG_F_PORT0
                        } else {
                            0
                        },
                    lblcr_exp_s: 0,
                },
            }]),
            _ => {
                let Some(frame) = frame_of(step, svcs, &reals) else {
                    continue;
                };
                now += 1000;
                let env = Env {
                    now_ns: now,
                    cpu: CPU,
                    prandom: i as u32,
                    fib: fib.clone(),
                };
                if let Err(report) = pair.step(&env, &frame) {
                    return Err(TestCaseError::fail(format!(
                        "step {i} ({step:?}): model and kernel disagree:\n{report}\nframe:\n{}",
                        hex(&frame)
                    )));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/difftest/corpus/props.txt"))),
        ..ProptestConfig::default()
    })]

    /// Any configuration, any routing, any sequence of client packets and replies: identical verdicts,
    /// bytes and maps after every step.
    #[test]
    fn model_and_kernel_agree_on_any_packet_sequence(
        svcs in arb_svcs(),
        timeouts in arb_timeouts(),
        routes in arb_routes(),
        steps in prop::collection::vec(arb_step(), 1..64),
    ) {
        run_sequence(&svcs, timeouts, &routes, &steps)?;
    }
}

#[test]
fn route_dests_fit_the_test_fib_and_parse() {
    let d = route_dests();
    assert!(d.len() <= rvs_abi::TEST_FIB_MAX as usize);
    for (a, _) in &d {
        a.parse::<IpAddr>().expect("address");
    }
}
