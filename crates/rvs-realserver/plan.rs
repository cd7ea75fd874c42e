//! What `setup` changes and how `teardown` undoes it. Each change is saved to the state file as soon as
//! it is made, so an interrupted setup can still be torn down.

use std::path::Path;

use anyhow::{Context, bail};

use crate::state::{self, Change, State};
use crate::sys;

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

/// Makes the changes still missing for `st.vip` on `st.dev`. Returns how many it made.
pub(crate) fn setup(st: &mut State, dir: &Path, keep_rp_filter: bool) -> anyhow::Result<usize> {
    let vip = st.vip;
    let dev = st.dev.clone();
    if dev == "lo" {
        bail!("the director's packets arrive on a network interface, not on lo; name it with --dev");
    }
    if !sys::link_exists(&dev) {
        bail!("no interface {dev}");
    }
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

/// Strict reverse-path filtering (rp_filter=1) drops a packet when the best route back to its source
/// leaves through another interface than the one it came in on. A DR packet carries the client's
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
        "strict reverse-path filtering drops DR packets when the route back to the client uses another interface",
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
pub(crate) fn teardown(mut st: State, dir: &Path) -> anyhow::Result<()> {
    let vip = st.vip;
    while let Some(change) = st.changes.pop() {
        undo(&change).with_context(|| format!("cannot undo {change:?}"))?;
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

fn undo(change: &Change) -> anyhow::Result<()> {
    match change {
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
