//! What `setup` changes and how `teardown` undoes it. Each change is saved to the state file as soon as
//! it is made, so an interrupted setup can still be torn down.
//!
//! By mode: DR and TUN put the VIP on lo, hidden from ARP; TUN also needs the outer header stripped
//! (rvs_decap in XDP, or the kernel's tunnel device); NAT only routes the replies back through the
//! director.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::state::{self, Change, Mode, State};
use crate::sys;

/// Who strips the outer header of VS/TUN packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Decap {
    /// bpf/rvs_decap.c in XDP: works without the ipip module.
    #[default]
    Xdp,
    /// The kernel's fallback tunnel device (tunl0 from the ipip module; ip6tnl0 for IPv6).
    Kernel,
}

/// What `setup` needs besides the record.
pub(crate) struct Opts {
    pub(crate) keep_rp_filter: bool,
    pub(crate) decap: Decap,
    pub(crate) pin_dir: PathBuf,
    pub(crate) director: Option<IpAddr>,
}

/// A sysctl setup raises to at least a value; what it buys, printed beside the change.
struct Floor {
    name: &'static str,
    min: i64,
    why: &'static str,
}

/// arp_ignore=1: answer ARP only for addresses of the interface the request came in on, so the VIP on
/// lo is never announced. arp_announce=2: use the outgoing interface's own address as the sender of
/// this host's ARP requests, never the VIP (a request sent while answering a client would otherwise
/// carry the VIP and poison its neighbours' caches). The kernel applies the larger of `all` and the
/// interface's value, so higher values an operator set on purpose are left alone.
const ARP_FLOORS: [Floor; 2] = [
    Floor {
        name: "arp_ignore",
        min: 1,
        why: "answer ARP only for addresses of the receiving interface",
    },
    Floor {
        name: "arp_announce",
        min: 2,
        why: "never use the VIP as the source of ARP requests",
    },
];

/// Makes the changes still missing for `st.vip` on `st.dev` in `st.mode`. Returns how many it made.
pub(crate) fn setup(st: &mut State, dir: &Path, opts: &Opts) -> anyhow::Result<usize> {
    let dev = st.dev.clone();
    if dev == "lo" {
        bail!("the director's packets arrive on a network interface, not on lo; name it with --dev");
    }
    if !sys::link_exists(&dev) {
        bail!("no interface {dev}");
    }
    match st.mode {
        Mode::Dr => setup_vip(st, dir, opts.keep_rp_filter),
        Mode::Tun => {
            // Decapsulation first: it is what may be impossible here (no ipip module, another XDP
            // program on the interface), and then nothing else should have changed.
            let n = match opts.decap {
                Decap::Xdp => setup_decap_xdp(st, dir, &opts.pin_dir)?,
                Decap::Kernel => setup_decap_kernel(st, dir, opts.keep_rp_filter)?,
            };
            Ok(n + setup_vip(st, dir, opts.keep_rp_filter)?)
        }
        Mode::Nat => {
            let Some(director) = opts.director else {
                bail!("--mode nat needs --director ADDR: the director routes the replies back");
            };
            setup_nat(st, dir, director)
        }
    }
}

/// DR and TUN: the VIP on lo, invisible to ARP, and loose reverse-path filtering on `st.dev`.
fn setup_vip(st: &mut State, dir: &Path, keep_rp_filter: bool) -> anyhow::Result<usize> {
    let vip = st.vip;
    let dev = st.dev.clone();
    let mut n = 0;

    // A fresh network namespace has lo down, and an address on a down link has no local route.
    if !sys::link_is_up("lo")? {
        sys::link_set("lo", true)?;
        record(st, dir, Change::LinkUp { dev: "lo".into() })?;
        println!("lo: set up");
        n += 1;
    }

    let prefix = sys::host_prefix(vip);
    match sys::addr_dev(vip)? {
        None => {
            sys::addr_add(&prefix, "lo")?;
            record(
                st,
                dir,
                Change::Addr {
                    dev: "lo".into(),
                    prefix: prefix.clone(),
                },
            )?;
            println!("lo: added {prefix}");
            n += 1;
        }
        Some(d) if d == "lo" => {}
        Some(d) => bail!(
            "{vip} is configured on {d}: a real server must hold the VIP only on lo, where it never \
             answers ARP for it; remove it from {d} first"
        ),
    }

    // IPv6 has no ARP problem: the kernel answers neighbour solicitations only for addresses of the
    // interface they arrive on, so an address on lo is never advertised.
    if vip.is_ipv4() {
        for f in &ARP_FLOORS {
            for scope in ["all", dev.as_str()] {
                let key = format!("net/ipv4/conf/{scope}/{}", f.name);
                if raise(st, dir, &key, f.min, f.why)? {
                    n += 1;
                }
            }
        }
        if !keep_rp_filter && relax_rp_filter(st, dir, &dev)? {
            n += 1;
        }
    }
    Ok(n)
}

/// TUN with rvs_decap: attached to `st.dev` (once for all VIPs there) with the VIP in its map. The
/// decapsulated packet reaches the stack as if it had arrived on `st.dev` with the VIP as destination,
/// so the VIP on lo, ARP hiding and reverse-path filtering apply exactly as in DR.
fn setup_decap_xdp(st: &mut State, dir: &Path, pin_dir: &Path) -> anyhow::Result<usize> {
    let dev = st.dev.clone();
    let pins = crate::decap::dir(pin_dir, &dev);
    let attached = crate::decap::attach(&pins, &dev)?;
    if attached {
        println!("{dev}: attached rvs_decap (XDP), pinned in {}", pins.display());
    }
    let added = crate::decap::add_vip(&pins, st.vip)?;
    if added {
        println!("{dev}: rvs_decap decapsulates tunnel packets to {}", st.vip);
    }
    // Recorded even when another VIP's setup attached the program: the last VIP out detaches it.
    record(
        st,
        dir,
        Change::DecapVip {
            dev,
            pin_dir: pins,
            vip: st.vip,
        },
    )?;
    Ok(usize::from(attached) + usize::from(added))
}

/// TUN with the kernel's tunnel device: the fallback device of the ipip module (tunl0) or of
/// ip6_tunnel (ip6tnl0), which takes every tunnel packet addressed to this host, brought up. A packet
/// comes out of it with the client's address as source, and the route back to the client never leaves
/// through the tunnel device, so strict reverse-path filtering would drop every one: tunl0 gets loose
/// mode (IPv6 has no rp_filter).
fn setup_decap_kernel(st: &mut State, dir: &Path, keep_rp_filter: bool) -> anyhow::Result<usize> {
    let (module, tdev) = if st.vip.is_ipv4() {
        ("ipip", "tunl0")
    } else {
        ("ip6_tunnel", "ip6tnl0")
    };
    if !sys::link_exists(tdev) {
        sys::modprobe(module).with_context(|| {
            format!("no {tdev}: this kernel has no {module} module; use --decap xdp (the default) instead")
        })?;
        if !sys::link_exists(tdev) {
            bail!("{module} is loaded but {tdev} does not exist in this network namespace");
        }
    }
    let mut n = 0;
    if !sys::link_is_up(tdev)? {
        sys::link_set(tdev, true)?;
        record(st, dir, Change::LinkUp { dev: tdev.into() })?;
        println!("{tdev}: set up");
        n += 1;
    }
    if st.vip.is_ipv4() && !keep_rp_filter && relax_rp_filter(st, dir, tdev)? {
        n += 1;
    }
    Ok(n)
}

/// NAT: the director rewrites the VIP to this host's address and must rewrite the replies back, so
/// they must reach it: the default route (of the VIP's family) goes via the director. The route it
/// replaces is recorded for teardown. Nothing else: the VIP never reaches this host.
fn setup_nat(st: &mut State, dir: &Path, director: IpAddr) -> anyhow::Result<usize> {
    if director.is_ipv4() != st.vip.is_ipv4() {
        bail!(
            "the director {director} and the VIP {} are of different families",
            st.vip
        );
    }
    let family = if director.is_ipv4() { 4 } else { 6 };
    let dev = st.dev.clone();
    if sys::default_gateway(family)? == Some((director, dev.clone())) {
        return Ok(0);
    }
    let old = sys::default_route(family)?;
    let new: Vec<String> = ["default", "via", &director.to_string(), "dev", &dev]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sys::route_replace(family, &new)?;
    // An earlier setup's record keeps the route from before rvs touched it.
    let old = match st.changes.iter().find_map(|c| match c {
        Change::Route { family: f, old, .. } if *f == family => Some(old.clone()),
        _ => None,
    }) {
        Some(first) => first,
        None => old,
    };
    st.changes
        .retain(|c| !matches!(c, Change::Route { family: f, .. } if *f == family));
    st.changes.push(Change::Route {
        family,
        gateway: director,
        dev: dev.clone(),
        old: old.clone(),
    });
    state::save(dir, st)?;
    match old {
        Some(o) => println!("default route: {} -> via {director} dev {dev}", o.join(" ")),
        None => println!("default route: none -> via {director} dev {dev}"),
    }
    Ok(1)
}

/// Strict reverse-path filtering (rp_filter=1) drops a packet when the best route back to its source
/// leaves through another interface than the one it came in on. A DR or TUN packet carries the client's
/// address, so a real server whose route to that client uses another interface (a second NIC holding
/// the default route, asymmetric routing) silently drops every connection. Loose mode (2) accepts a
/// source that is reachable at all and still drops unroutable ones. The kernel applies the larger of
/// `all` and the interface's value, so setting the interface to 2 is enough; 0 and 2 are left alone.
fn relax_rp_filter(st: &mut State, dir: &Path, dev: &str) -> anyhow::Result<bool> {
    let all = sys::sysctl_int("net/ipv4/conf/all/rp_filter")?;
    let key = format!("net/ipv4/conf/{dev}/rp_filter");
    let own = sys::sysctl_int(&key)?;
    if all.max(own) != 1 {
        return Ok(false);
    }
    set(
        st,
        dir,
        &key,
        "2",
        "strict reverse-path filtering drops the client's packets when the route back to it uses another interface",
    )?;
    Ok(true)
}

/// Raises sysctl `key` to `min` when it is lower. Returns whether it wrote.
fn raise(st: &mut State, dir: &Path, key: &str, min: i64, why: &str) -> anyhow::Result<bool> {
    if sys::sysctl_int(key)? >= min {
        return Ok(false);
    }
    set(st, dir, key, &min.to_string(), why)?;
    Ok(true)
}

/// Writes sysctl `key` and records the change. A key changed by an earlier setup keeps its first `old`:
/// that is the value from before rvs touched it.
fn set(st: &mut State, dir: &Path, key: &str, value: &str, why: &str) -> anyhow::Result<()> {
    let old = sys::sysctl_read(key)?;
    sys::sysctl_write(key, value)?;
    println!("{}: {old} -> {value} ({why})", sys::sysctl_name(key));
    match st.sysctl_mut(key) {
        Some(Change::Sysctl { new, .. }) => *new = value.to_owned(),
        _ => st.changes.push(Change::Sysctl {
            key: key.to_owned(),
            old,
            new: value.to_owned(),
        }),
    }
    state::save(dir, st)
}

fn record(st: &mut State, dir: &Path, change: Change) -> anyhow::Result<()> {
    if !st.changes.contains(&change) {
        st.changes.push(change);
    }
    state::save(dir, st)
}

/// Undoes the recorded changes, newest first. A sysctl that no longer holds the value setup wrote was
/// changed by someone else since, and is left as it is.
///
/// Some changes serve every VIP of the host (lo up, the ARP and rp_filter sysctls, the default route of
/// NAT), yet only the first VIP's setup made, and recorded, them. When another VIP set up in this
/// network namespace still needs such a change, it is handed over to that VIP's record, with the value
/// from before rvs: the last VIP torn down restores it.
pub(crate) fn teardown(mut st: State, dir: &Path) -> anyhow::Result<()> {
    let vip = st.vip;
    let mut others = state::load_others(dir, &st)?;
    while let Some(change) = st.changes.pop() {
        if let Some(heir) = others.iter_mut().find(|o| needs(o, &change)) {
            println!("{vip}: kept for {} ({})", heir.vip, describe(&change));
            heir.changes.insert(0, change);
            state::save(dir, heir)?;
        } else {
            undo(&change).with_context(|| format!("cannot undo {change:?}"))?;
        }
        if st.changes.is_empty() {
            state::remove(dir, vip)?;
        } else {
            state::save(dir, &st)?;
        }
    }
    state::remove(dir, vip)?;
    println!("{vip}: torn down");
    Ok(())
}

/// Whether the setup of `other` relies on `change` (made by another VIP's setup).
fn needs(other: &State, change: &Change) -> bool {
    let hides_vip = matches!(other.mode, Mode::Dr | Mode::Tun);
    match change {
        Change::LinkUp { dev } if dev == "lo" => hides_vip,
        Change::LinkUp { .. } => other.mode == Mode::Tun,
        Change::Sysctl { key, .. } => {
            let scope = key.split('/').nth(3).unwrap_or_default();
            match scope {
                "all" => hides_vip,
                s if s == other.dev => hides_vip,
                "tunl0" => other.mode == Mode::Tun,
                _ => false,
            }
        }
        Change::Route { family, .. } => other.mode == Mode::Nat && other.vip.is_ipv4() == (*family == 4),
        // Per VIP: its own address, its own key in the decap map (the map counts the VIPs).
        Change::Addr { .. } | Change::DecapVip { .. } => false,
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::LinkUp { dev } => format!("{dev} up"),
        Change::Sysctl { key, .. } => sys::sysctl_name(key),
        Change::Route { gateway, .. } => format!("default route via {gateway}"),
        Change::Addr { dev, prefix } => format!("{prefix} on {dev}"),
        Change::DecapVip { dev, vip, .. } => format!("{vip} in rvs_decap on {dev}"),
    }
}

fn undo(change: &Change) -> anyhow::Result<()> {
    match change {
        Change::DecapVip { dev, pin_dir, vip } => match crate::decap::remove_vip(pin_dir, *vip)? {
            None => println!("{dev}: rvs_decap already gone"),
            Some(0) => {
                crate::decap::detach(pin_dir, dev)?;
                println!("{dev}: removed {vip}; detached rvs_decap (no VIP left)");
            }
            Some(left) => println!("{dev}: removed {vip}; rvs_decap stays for {left} other VIP(s)"),
        },
        Change::Route {
            family,
            gateway,
            dev,
            old,
        } => {
            if sys::default_gateway(*family)? != Some((*gateway, dev.clone())) {
                println!("default route: left as it is (no longer via {gateway}; changed since)");
                return Ok(());
            }
            match old {
                Some(o) => {
                    sys::route_replace(*family, o)?;
                    println!("default route: via {gateway} -> {} (restored)", o.join(" "));
                }
                None => {
                    sys::route_del_default(*gateway, dev)?;
                    println!("default route: via {gateway} removed (there was none)");
                }
            }
        }
        Change::LinkUp { dev } => {
            if sys::link_exists(dev) && sys::link_is_up(dev)? {
                sys::link_set(dev, false)?;
                println!("{dev}: set down");
            }
        }
        Change::Addr { dev, prefix } => {
            if sys::link_exists(dev) && sys::has_addr(prefix, dev)? {
                sys::addr_del(prefix, dev)?;
                println!("{dev}: removed {prefix}");
            } else {
                println!("{dev}: {prefix} already gone");
            }
        }
        Change::Sysctl { key, old, new } => {
            let name = sys::sysctl_name(key);
            if !Path::new("/proc/sys").join(key).exists() {
                println!("{name}: gone (interface removed)");
                return Ok(());
            }
            let now = sys::sysctl_read(key)?;
            if now == *new {
                sys::sysctl_write(key, old)?;
                println!("{name}: {now} -> {old} (restored)");
            } else {
                println!("{name}: left at {now} (setup wrote {new}; it was changed since)");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(vip: &str, mode: Mode, dev: &str) -> State {
        State::new(vip.parse().unwrap(), mode, 1, dev)
    }

    fn sysctl(key: &str) -> Change {
        Change::Sysctl {
            key: key.into(),
            old: "0".into(),
            new: "1".into(),
        }
    }

    #[test]
    fn host_wide_changes_go_to_a_vip_that_needs_them() {
        let dr = record("198.18.0.11", Mode::Dr, "eth0");
        let tun_eth1 = record("198.18.0.12", Mode::Tun, "eth1");
        let nat = record("198.18.0.13", Mode::Nat, "eth0");
        let lo_up = Change::LinkUp { dev: "lo".into() };
        assert!(needs(&dr, &lo_up) && needs(&tun_eth1, &lo_up) && !needs(&nat, &lo_up));
        let all = sysctl("net/ipv4/conf/all/arp_ignore");
        assert!(needs(&dr, &all) && needs(&tun_eth1, &all) && !needs(&nat, &all));
        let eth0 = sysctl("net/ipv4/conf/eth0/rp_filter");
        assert!(needs(&dr, &eth0) && !needs(&tun_eth1, &eth0));
        let tunl0 = sysctl("net/ipv4/conf/tunl0/rp_filter");
        assert!(needs(&tun_eth1, &tunl0) && !needs(&dr, &tunl0));
        let route = Change::Route {
            family: 4,
            gateway: "198.18.1.1".parse().unwrap(),
            dev: "eth0".into(),
            old: None,
        };
        assert!(needs(&nat, &route) && !needs(&dr, &route));
        let v6 = record("2001:db8::13", Mode::Nat, "eth0");
        assert!(!needs(&v6, &route), "an IPv6 VIP's default route is another one");
    }

    #[test]
    fn per_vip_changes_are_never_handed_over() {
        let dr = record("198.18.0.11", Mode::Dr, "eth0");
        let addr = Change::Addr {
            dev: "lo".into(),
            prefix: "198.18.0.10/32".into(),
        };
        let decap = Change::DecapVip {
            dev: "eth0".into(),
            pin_dir: "/sys/fs/bpf/x/eth0".into(),
            vip: "198.18.0.10".parse().unwrap(),
        };
        assert!(!needs(&dr, &addr) && !needs(&dr, &decap));
    }
}
