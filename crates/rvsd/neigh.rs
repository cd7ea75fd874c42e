//! Next-hop resolution for the real servers, from the kernel's routing and neighbour tables (rtnetlink).
//!
//! For each real server address: `ip route get ADDR` gives the output interface and gateway (next hop =
//! gateway, or the address itself on a directly connected network); the director's MAC on that interface
//! is the frame's source; the next hop's entry in the neighbour table is its destination. VS/TUN also
//! needs the tunnel's outer source, the route's preferred source (`src`, else the first address of the
//! output interface of the real server's family), and the MTU toward the real server (the route's `mtu`
//! metric, else the output interface's).
//!
//! Triggering: when the next hop has no entry (or a FAILED one), the resolver adds it with `NTF_USE`
//! (`ip neigh replace ADDR dev DEV use`). The kernel then runs its normal ARP/ND state machine exactly as
//! if it had a packet for that neighbour, without the director sending anything to the real server
//! itself (a probe datagram to the discard port would reach the real server once resolved, and cost a
//! socket bound to each interface). STALE entries get the same nudge, which makes the kernel re-confirm
//! them with a unicast probe, as it would for a neighbour it forwards to: XDP forwarding bypasses the
//! kernel, so without it the entry would never be re-validated and a changed MAC would go unnoticed.
//!
//! Following changes: the resolver listens to the kernel's neighbour, link and route notifications
//! (RTNLGRP_NEIGH/LINK/IPV4_ROUTE/IPV6_ROUTE) and re-resolves on each burst, which picks up an ARP reply
//! within milliseconds; a pass every second on top of that retries what is still pending and covers
//! notifications lost to a full socket buffer. Results are sent to the daemon only when they change.
//!
//! A resolved next hop stays in the cache while the kernel's entry is pending or failed, so a neighbour
//! table flush or a garbage-collected entry never interrupts forwarding; only a new answer replaces it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMetric, RouteType, RouteVia};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use rvs_abi::{DEST_F_NEIGH, DestVal, Family, Fwd, addr_bytes};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::backend::Neighbor;

/// Resolved next hops, by real server address.
pub(crate) type NeighMap = BTreeMap<IpAddr, Neighbor>;

/// How often everything is re-resolved even without a notification.
const PERIOD: Duration = Duration::from_secs(1);
/// A next hop is nudged at most this often (the kernel's own retransmit time is 1 s).
const KICK_INTERVAL: Duration = Duration::from_secs(1);

/// The real-server address a dest slot holds.
pub(crate) fn dest_ip(d: &DestVal) -> IpAddr {
    ip_of(&d.addr, d.family)
}

/// An address of the maps in family `family`.
fn ip_of(addr: &rvs_abi::Addr, family: u8) -> IpAddr {
    let b = addr_bytes(addr);
    if family == Family::Inet6 as u8 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// The next hops the maps of an adopted data plane already use: the starting point after a restart, so
/// that the first sync reproduces the maps exactly even before the kernel has answered.
pub(crate) fn seed(dests: &[(u32, DestVal)]) -> NeighMap {
    let mut resolved: Vec<&DestVal> = dests
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d.flags & DEST_F_NEIGH != 0)
        .collect();
    // A real server that is a tunnel one in some service must keep its outer source and MTU: its tunnel
    // slots go last, so that they win over its other slots.
    resolved.sort_by_key(|d| d.fwd == Fwd::Tun as u8);
    resolved
        .into_iter()
        .map(|d| {
            (
                dest_ip(d),
                Neighbor {
                    dmac: d.dmac,
                    smac: d.smac,
                    ifindex: d.ifindex,
                    // Only a tunnel slot holds them; the outer header has the real server's family.
                    laddr: (d.fwd == Fwd::Tun as u8).then(|| ip_of(&d.laddr, d.family)),
                    mtu: if d.fwd == Fwd::Tun as u8 { d.mtu } else { 0 },
                },
            )
        })
        .collect()
}

/// One neighbour table entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: NeighbourState,
    mac: Option<[u8; 6]>,
}

impl Entry {
    /// Whether the kernel holds a link-layer address it would send to (NUD_VALID).
    fn usable(&self) -> Option<[u8; 6]> {
        use NeighbourState::*;
        match self.state {
            Reachable | Stale | Delay | Probe | Permanent | Noarp => self.mac,
            _ => Option::None,
        }
    }
}

/// What one pass found for one real server (kept to log transitions only).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Resolved(Neighbor),
    Pending { nexthop: IpAddr, ifindex: u32 },
    Unroutable(String),
}

/// Route lookup result.
struct Route {
    oif: u32,
    gateway: Option<IpAddr>,
    kind: RouteType,
    /// `src`: the director's address the kernel would send from.
    prefsrc: Option<IpAddr>,
    /// The route's `mtu` metric; 0 when it has none.
    mtu: u32,
}

/// What the resolver needs of an output interface.
#[derive(Debug, Clone, Copy)]
struct Link {
    mac: Option<[u8; 6]>,
    mtu: u32,
}

/// Resolves real servers' next hops; owns a netlink connection in the daemon's network namespace.
pub(crate) struct Resolver {
    handle: Handle,
    cache: NeighMap,
    outcomes: HashMap<IpAddr, Outcome>,
    kicked: HashMap<(u32, IpAddr), Instant>,
}

impl Resolver {
    /// Opens the netlink connection (must run inside the tokio runtime) and starts from `seed`.
    pub(crate) fn new(seed: NeighMap) -> anyhow::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            cache: seed,
            outcomes: HashMap::new(),
            kicked: HashMap::new(),
        })
    }

    /// The current next hops.
    pub(crate) fn cache(&self) -> &NeighMap {
        &self.cache
    }

    /// Resolves every address in `targets` once, nudging the kernel where an entry is missing. Addresses
    /// no longer in `targets` leave the cache.
    pub(crate) async fn pass(&mut self, targets: &BTreeSet<IpAddr>) -> anyhow::Result<()> {
        let table = self.neighbours().await?;
        let mut links: HashMap<u32, Link> = HashMap::new();
        self.cache.retain(|ip, _| targets.contains(ip));
        self.outcomes.retain(|ip, _| targets.contains(ip));
        self.kicked.retain(|_, t| t.elapsed() < KICK_INTERVAL * 10);
        for &ip in targets {
            let outcome = self.resolve(ip, &table, &mut links).await;
            if let Outcome::Resolved(n) = outcome {
                self.cache.insert(ip, n);
            }
            if self.outcomes.get(&ip) != Some(&outcome) {
                log_outcome(ip, &outcome, self.cache.get(&ip));
                self.outcomes.insert(ip, outcome);
            }
        }
        Ok(())
    }

    /// Re-resolves on every kernel notification and every [`PERIOD`], sending the cache to `out` whenever
    /// it changes. Returns when the daemon drops its end of `targets` or `out`.
    pub(crate) async fn run(
        mut self,
        mut targets: watch::Receiver<BTreeSet<IpAddr>>,
        out: mpsc::Sender<NeighMap>,
    ) -> anyhow::Result<()> {
        let groups = [
            MulticastGroup::Neigh,
            MulticastGroup::Link,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ];
        let (conn, _handle, events) = rtnetlink::new_multicast_connection(&groups)
            .context("cannot subscribe to neighbour notifications")?;
        tokio::spawn(conn);
        let mut events = Some(events);
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = self.cache.clone();
        loop {
            let set = targets.borrow_and_update().clone();
            match self.pass(&set).await {
                Ok(()) if self.cache != sent => {
                    sent = self.cache.clone();
                    if out.send(sent.clone()).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(()) => {}
                Err(e) => warn!("neighbour resolution failed: {e:#}"),
            }
            tokio::select! {
                _ = tick.tick() => {}
                r = targets.changed() => if r.is_err() { return Ok(()) },
                ev = async { events.as_mut()?.next().await }, if events.is_some() => {
                    if ev.is_none() {
                        warn!("netlink notifications stopped; re-resolving every {PERIOD:?} only");
                        events = None;
                    }
                }
            }
            // One ARP exchange or route change produces a burst of notifications: one pass covers them.
            if let Some(ev) = events.as_mut() {
                while ev.try_recv().is_ok() {}
            }
        }
    }

    async fn resolve(
        &mut self,
        ip: IpAddr,
        table: &HashMap<(u32, IpAddr), Entry>,
        links: &mut HashMap<u32, Link>,
    ) -> Outcome {
        let route = match self.route(ip).await {
            Ok(r) => r,
            Err(e) => return Outcome::Unroutable(format!("{e:#}")),
        };
        if route.kind != RouteType::Unicast {
            // Local (the director's own address), unreachable, blackhole...: nothing to send frames to.
            return Outcome::Unroutable(format!("route is of type {:?}", route.kind));
        }
        let nexthop = route.gateway.unwrap_or(ip);
        let link = match links.get(&route.oif) {
            Some(l) => *l,
            None => {
                let l = self.link(route.oif).await.unwrap_or_else(|e| {
                    debug!("interface {}: {e:#}", route.oif);
                    Link { mac: None, mtu: 0 }
                });
                links.insert(route.oif, l);
                l
            }
        };
        let Some(smac) = link.mac else {
            return Outcome::Unroutable(format!("interface {} has no Ethernet address", route.oif));
        };
        let entry = table.get(&(route.oif, nexthop));
        if let Some(dmac) = entry.and_then(Entry::usable) {
            if entry.is_some_and(|e| e.state == NeighbourState::Stale) {
                self.kick(route.oif, nexthop).await;
            }
            let laddr = match route.prefsrc {
                Some(a) => Some(a),
                None => self
                    .first_addr(route.oif, ip.is_ipv4())
                    .await
                    .unwrap_or_else(|e| {
                        debug!("interface {}: {e:#}", route.oif);
                        None
                    }),
            };
            return Outcome::Resolved(Neighbor {
                dmac,
                smac,
                ifindex: route.oif,
                laddr,
                mtu: if route.mtu != 0 { route.mtu } else { link.mtu },
            });
        }
        // INCOMPLETE: the kernel is already asking; anything else (absent, FAILED, NONE): ask it to.
        if !entry.is_some_and(|e| e.state == NeighbourState::Incomplete) {
            self.kick(route.oif, nexthop).await;
        }
        Outcome::Pending {
            nexthop,
            ifindex: route.oif,
        }
    }

    /// `ip neigh replace NEXTHOP dev IFINDEX use`: the kernel starts (or re-confirms) resolution.
    async fn kick(&mut self, ifindex: u32, nexthop: IpAddr) {
        let now = Instant::now();
        if self
            .kicked
            .get(&(ifindex, nexthop))
            .is_some_and(|t| now.duration_since(*t) < KICK_INTERVAL)
        {
            return;
        }
        self.kicked.insert((ifindex, nexthop), now);
        // With NTF_USE the kernel keeps the entry's state and ignores ndm_state, but still reads it at
        // creation: NUD_PERMANENT there would exempt the entry from garbage collection.
        let r = self
            .handle
            .neighbours()
            .add(ifindex, nexthop)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute()
            .await;
        match r {
            Ok(()) => debug!("asked the kernel to resolve {nexthop} on interface {ifindex}"),
            Err(e) => warn!("cannot trigger resolution of {nexthop} on interface {ifindex}: {e}"),
        }
    }

    /// `ip route get ADDR`.
    async fn route(&self, ip: IpAddr) -> anyhow::Result<Route> {
        let msg = match ip {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let m = self
            .handle
            .route()
            .get(msg)
            .execute()
            .try_next()
            .await?
            .context("no route")?;
        let mut r = Route {
            oif: 0,
            gateway: None,
            kind: m.header.kind,
            prefsrc: None,
            mtu: 0,
        };
        for a in m.attributes {
            match a {
                RouteAttribute::Oif(i) => r.oif = i,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => r.gateway = Some(g.into()),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => r.gateway = Some(g.into()),
                RouteAttribute::Via(RouteVia::Inet(g)) => r.gateway = Some(g.into()),
                RouteAttribute::Via(RouteVia::Inet6(g)) => r.gateway = Some(g.into()),
                RouteAttribute::PrefSource(RouteAddress::Inet(a)) => r.prefsrc = Some(a.into()),
                RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => r.prefsrc = Some(a.into()),
                RouteAttribute::Metrics(ms) => {
                    for m in ms {
                        if let RouteMetric::Mtu(v) = m {
                            r.mtu = v;
                        }
                    }
                }
                _ => {}
            }
        }
        anyhow::ensure!(
            r.oif != 0 || r.kind != RouteType::Unicast,
            "route has no output interface"
        );
        Ok(r)
    }

    /// The Ethernet address of interface `ifindex`, if it has one, and its MTU.
    async fn link(&self, ifindex: u32) -> anyhow::Result<Link> {
        let m = self
            .handle
            .link()
            .get()
            .match_index(ifindex)
            .execute()
            .try_next()
            .await?
            .context("no such interface")?;
        let mut link = Link { mac: None, mtu: 0 };
        for a in m.attributes {
            match a {
                LinkAttribute::Address(b) => {
                    link.mac = <[u8; 6]>::try_from(b.as_slice()).ok().filter(|m| *m != [0; 6]);
                }
                LinkAttribute::Mtu(v) => link.mtu = v,
                _ => {}
            }
        }
        Ok(link)
    }

    /// The first address of interface `ifindex` of the family (IPv4 when `v4`) that can source a packet
    /// to another host: IPv6 link-local addresses are skipped, a tunnel's outer header crosses routers.
    async fn first_addr(&self, ifindex: u32, v4: bool) -> anyhow::Result<Option<IpAddr>> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let want = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        while let Some(m) = dump
            .try_next()
            .await
            .context("cannot read the interface's addresses")?
        {
            if m.header.family != want {
                continue;
            }
            // IPv4 names its own address IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links);
            // IPv6 has only IFA_ADDRESS.
            let mut local = None;
            let mut address = None;
            for a in m.attributes {
                match a {
                    AddressAttribute::Local(a) => local = Some(a),
                    AddressAttribute::Address(a) => address = Some(a),
                    _ => {}
                }
            }
            match local.or(address) {
                Some(IpAddr::V6(a)) if a.is_unicast_link_local() => {}
                Some(a) => return Ok(Some(a)),
                None => {}
            }
        }
        Ok(None)
    }

    /// The kernel's neighbour tables (IPv4 and IPv6), by (ifindex, address).
    async fn neighbours(&self) -> anyhow::Result<HashMap<(u32, IpAddr), Entry>> {
        let mut out = HashMap::new();
        let mut dump = self.handle.neighbours().get().execute();
        while let Some(m) = dump.try_next().await.context("cannot read the neighbour table")? {
            let mut ip = None;
            let mut mac = None;
            for a in m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(a)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(a)),
                    NeighbourAttribute::LinkLayerAddress(b) => mac = <[u8; 6]>::try_from(b.as_slice()).ok(),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.insert(
                    (m.header.ifindex, ip),
                    Entry {
                        state: m.header.state,
                        mac,
                    },
                );
            }
        }
        Ok(out)
    }
}

fn log_outcome(ip: IpAddr, outcome: &Outcome, cached: Option<&Neighbor>) {
    match outcome {
        Outcome::Resolved(n) => {
            let src = n.laddr.map_or_else(|| "none".to_owned(), |a| a.to_string());
            info!(
                "real server {ip}: next hop {} via ifindex {} (from {}), source {src}, mtu {}",
                Mac(n.dmac),
                n.ifindex,
                Mac(n.smac),
                n.mtu
            )
        }
        Outcome::Pending { nexthop, ifindex } => match cached {
            Some(n) => debug!(
                "real server {ip}: re-resolving {nexthop}; keeping {}",
                Mac(n.dmac)
            ),
            None => info!("real server {ip}: resolving next hop {nexthop} on ifindex {ifindex}"),
        },
        Outcome::Unroutable(why) => match cached {
            Some(n) => warn!(
                "real server {ip}: {why}; keeping the last next hop {}",
                Mac(n.dmac)
            ),
            None => warn!("real server {ip} cannot be reached: {why}"),
        },
    }
}

/// Formats a MAC address as `02:00:00:00:00:01`.
struct Mac([u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::{DEST_F_VALID, addr_v4, addr_v6};

    #[test]
    fn seed_takes_only_resolved_dests() {
        let a = DestVal {
            addr: addr_v4([198, 18, 0, 11]),
            family: Family::Inet as u8,
            dmac: [2, 0, 0, 0, 0, 11],
            smac: [2, 0, 0, 0, 0, 1],
            ifindex: 7,
            flags: DEST_F_VALID | DEST_F_NEIGH,
            ..Default::default()
        };
        let b = DestVal {
            addr: addr_v4([198, 18, 0, 12]),
            flags: DEST_F_VALID,
            ..a
        };
        let mut v6 = 0u128.to_be_bytes();
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 1;
        let c = DestVal {
            addr: addr_v6(v6),
            family: Family::Inet6 as u8,
            ..a
        };
        let s = seed(&[(0, a), (1, b), (2, c)]);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.get(&"198.18.0.11".parse().unwrap()),
            Some(&Neighbor {
                dmac: [2, 0, 0, 0, 0, 11],
                smac: [2, 0, 0, 0, 0, 1],
                ifindex: 7,
                laddr: None,
                mtu: 0,
            })
        );
        assert!(s.contains_key(&"2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn seed_keeps_a_tunnel_dests_source_and_mtu() {
        let d = DestVal {
            addr: addr_v4([198, 18, 0, 11]),
            family: Family::Inet as u8,
            fwd: Fwd::Tun as u8,
            dmac: [2, 0, 0, 0, 0, 11],
            smac: [2, 0, 0, 0, 0, 1],
            ifindex: 7,
            flags: DEST_F_VALID | DEST_F_NEIGH,
            laddr: addr_v4([198, 18, 0, 1]),
            mtu: 1400,
            ..Default::default()
        };
        let dr = DestVal {
            fwd: Fwd::Dr as u8,
            laddr: Default::default(),
            mtu: 0,
            ..d
        };
        let s = seed(&[(0, d), (1, dr)]);
        let n = s.get(&"198.18.0.11".parse().unwrap()).expect("seeded");
        assert_eq!((n.laddr, n.mtu), (Some("198.18.0.1".parse().unwrap()), 1400));
    }

    #[test]
    fn only_valid_states_with_an_address_are_usable() {
        let mac = Some([2, 0, 0, 0, 0, 9]);
        use NeighbourState::*;
        for s in [Reachable, Stale, Delay, Probe, Permanent, Noarp] {
            assert_eq!(Entry { state: s, mac }.usable(), mac, "{s:?}");
        }
        for s in [Incomplete, Failed, None] {
            assert_eq!(Entry { state: s, mac }.usable(), Option::None, "{s:?}");
        }
        assert_eq!(
            Entry {
                state: Reachable,
                mac: Option::None
            }
            .usable(),
            Option::None
        );
    }

    #[test]
    fn mac_formats_as_ip_link_does() {
        assert_eq!(Mac([2, 0xab, 0, 0, 0x10, 0xff]).to_string(), "02:ab:00:00:10:ff");
    }
}
