//! The host, as this tool sees it: sysctls under /proc/sys and links, addresses and routes through
//! `ip` (iproute2, JSON output). Both act on the network namespace of the calling process.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// Inode of this process's network namespace, which names it for as long as it exists.
pub(crate) fn netns_id() -> std::io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

/// `net/ipv4/conf/eth0.100/arp_ignore` as sysctl(8) prints it: `net.ipv4.conf.eth0/100.arp_ignore`.
pub(crate) fn sysctl_name(key: &str) -> String {
    key.split('/')
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Reads `/proc/sys/<key>`, trimmed.
pub(crate) fn sysctl_read(key: &str) -> anyhow::Result<String> {
    let p = format!("/proc/sys/{key}");
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {p}"))?
        .trim()
        .to_owned())
}

/// Reads `/proc/sys/<key>` as a number.
pub(crate) fn sysctl_int(key: &str) -> anyhow::Result<i64> {
    let v = sysctl_read(key)?;
    v.parse()
        .with_context(|| format!("{} is {v:?}, not a number", sysctl_name(key)))
}

/// Writes `/proc/sys/<key>`.
pub(crate) fn sysctl_write(key: &str, value: &str) -> anyhow::Result<()> {
    let p = format!("/proc/sys/{key}");
    std::fs::write(&p, format!("{value}\n")).with_context(|| format!("cannot write {value} to {p}"))
}

/// Runs `ip ARGS` and returns its stdout; a failure carries ip's stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ip_json(args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let text = ip(&a)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).with_context(|| format!("cannot parse the output of `ip {}`", a.join(" ")))
}

fn family_flag(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "-4" } else { "-6" }
}

/// Host prefix of `addr`: `/32` or `/128`.
pub(crate) fn host_prefix(addr: IpAddr) -> String {
    format!("{addr}/{}", if addr.is_ipv4() { 32 } else { 128 })
}

/// The interface that holds `addr`, if any.
pub(crate) fn addr_dev(addr: IpAddr) -> anyhow::Result<Option<String>> {
    for link in ip_json(&[family_flag(addr), "addr", "show"])? {
        let holds = link["addr_info"].as_array().is_some_and(|infos| {
            infos
                .iter()
                .any(|i| i["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) == Some(addr))
        });
        if holds {
            return Ok(link["ifname"].as_str().map(str::to_owned));
        }
    }
    Ok(None)
}

/// Adds `prefix` (`addr/len`) to `dev`.
pub(crate) fn addr_add(prefix: &str, dev: &str) -> anyhow::Result<()> {
    ip(&["addr", "add", prefix, "dev", dev]).map(drop)
}

/// Removes `prefix` from `dev`.
pub(crate) fn addr_del(prefix: &str, dev: &str) -> anyhow::Result<()> {
    ip(&["addr", "del", prefix, "dev", dev]).map(drop)
}

/// Whether `dev` holds `prefix`.
pub(crate) fn has_addr(prefix: &str, dev: &str) -> anyhow::Result<bool> {
    let Some((addr, len)) = prefix.split_once('/') else {
        bail!("{prefix} is not addr/len");
    };
    let addr: IpAddr = addr.parse().with_context(|| format!("{prefix}: bad address"))?;
    let len: u64 = len.parse().with_context(|| format!("{prefix}: bad length"))?;
    let links = ip_json(&[family_flag(addr), "addr", "show", "dev", dev])?;
    Ok(links.iter().any(|l| {
        l["addr_info"].as_array().is_some_and(|infos| {
            infos.iter().any(|i| {
                i["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) == Some(addr)
                    && i["prefixlen"].as_u64() == Some(len)
            })
        })
    }))
}

/// Whether link `dev` is administratively up.
pub(crate) fn link_is_up(dev: &str) -> anyhow::Result<bool> {
    let links = ip_json(&["link", "show", "dev", dev])?;
    Ok(links.iter().any(|l| {
        l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")))
    }))
}

/// Sets link `dev` up or down.
pub(crate) fn link_set(dev: &str, up: bool) -> anyhow::Result<()> {
    ip(&["link", "set", "dev", dev, if up { "up" } else { "down" }]).map(drop)
}

/// Whether link `dev` exists.
pub(crate) fn link_exists(dev: &str) -> bool {
    ip(&["link", "show", "dev", dev]).is_ok()
}

/// The interface through which the main routing table reaches `vip` (longest matching prefix, the
/// default route last). Asked of the main table rather than with `ip route get`, because once the VIP
/// is on lo the local table answers `lo` for it.
pub(crate) fn route_dev(vip: IpAddr) -> anyhow::Result<String> {
    let routes = ip_json(&[family_flag(vip), "route", "show", "table", "main"])?;
    let mut best: Option<(u8, String)> = None;
    for r in &routes {
        // Only unicast routes carry traffic out of an interface (`type` is absent for them).
        if r.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "unicast")
        {
            continue;
        }
        let (Some(dst), Some(dev)) = (r["dst"].as_str(), r["dev"].as_str()) else {
            continue;
        };
        if dev == "lo" {
            continue;
        }
        let Some(len) = prefix_match(dst, vip) else {
            continue;
        };
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, dev.to_owned()));
        }
    }
    match best {
        Some((_, dev)) => Ok(dev),
        None => bail!("no route toward {vip} in the main table; name the interface with --dev"),
    }
}

/// The main table's default route of `family` (4 or 6) that `ip route replace default via ...` would
/// replace (IPv4: metric 0; IPv6: metric 1024, the kernel's default for routes added without one), as
/// the `ip route` arguments that recreate it.
pub(crate) fn default_route(family: u8) -> anyhow::Result<Option<Vec<String>>> {
    let flag = if family == 6 { "-6" } else { "-4" };
    let default_metric = if family == 6 { 1024 } else { 0 };
    for r in ip_json(&[flag, "route", "show", "default", "table", "main"])? {
        if r.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "unicast")
        {
            continue;
        }
        let metric = r["metric"].as_u64().unwrap_or(default_metric);
        if metric != default_metric {
            continue;
        }
        let mut args = vec!["default".to_owned()];
        if let Some(gw) = r["gateway"].as_str() {
            args.extend(["via".to_owned(), gw.to_owned()]);
        }
        if let Some(dev) = r["dev"].as_str() {
            args.extend(["dev".to_owned(), dev.to_owned()]);
        }
        if let Some(p) = r["protocol"].as_str().filter(|p| *p != "boot") {
            args.extend(["proto".to_owned(), p.to_owned()]);
        }
        if let Some(src) = r["prefsrc"].as_str() {
            args.extend(["src".to_owned(), src.to_owned()]);
        }
        if r["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("onlink")))
        {
            args.push("onlink".to_owned());
        }
        return Ok(Some(args));
    }
    Ok(None)
}

/// The gateway and interface of the default route `default_route` finds, if it has a gateway.
pub(crate) fn default_gateway(family: u8) -> anyhow::Result<Option<(IpAddr, String)>> {
    let Some(args) = default_route(family)? else {
        return Ok(None);
    };
    let after = |key: &str| args.iter().position(|a| a == key).and_then(|i| args.get(i + 1));
    Ok(match (after("via").and_then(|g| g.parse().ok()), after("dev")) {
        (Some(gw), Some(dev)) => Some((gw, dev.clone())),
        _ => None,
    })
}

/// `ip route replace ARGS`, in the table `ARGS` name (main by default).
pub(crate) fn route_replace(family: u8, args: &[String]) -> anyhow::Result<()> {
    let mut a = vec![if family == 6 { "-6" } else { "-4" }, "route", "replace"];
    a.extend(args.iter().map(String::as_str));
    ip(&a).map(drop)
}

/// `ip route del default via GATEWAY dev DEV` (the metric-0 or, for IPv6, metric-1024 one).
pub(crate) fn route_del_default(gateway: IpAddr, dev: &str) -> anyhow::Result<()> {
    let gw = gateway.to_string();
    ip(&[
        family_flag(gateway),
        "route",
        "del",
        "default",
        "via",
        &gw,
        "dev",
        dev,
    ])
    .map(drop)
}

/// Loads kernel module `name` (`modprobe`); the error carries modprobe's message.
pub(crate) fn modprobe(name: &str) -> anyhow::Result<()> {
    let out = Command::new("modprobe")
        .arg(name)
        .output()
        .with_context(|| format!("cannot run `modprobe {name}`"))?;
    if !out.status.success() {
        bail!(
            "`modprobe {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Length of route destination `dst` (`default`, `a.b.c.d`, `a.b.c.d/len`) if it contains `addr`.
fn prefix_match(dst: &str, addr: IpAddr) -> Option<u8> {
    if dst == "default" {
        return Some(0);
    }
    let (net, len) = match dst.split_once('/') {
        Some((n, l)) => (n.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let n = dst.parse::<IpAddr>().ok()?;
            (n, if n.is_ipv4() { 32 } else { 128 })
        }
    };
    let covers = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            len <= 32 && u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            len <= 128 && u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    };
    covers.then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_match_picks_containing_routes_only() {
        let a: IpAddr = "198.18.0.100".parse().unwrap();
        assert_eq!(prefix_match("default", a), Some(0));
        assert_eq!(prefix_match("198.18.0.0/24", a), Some(24));
        assert_eq!(prefix_match("198.18.1.0/24", a), None);
        assert_eq!(prefix_match("198.18.0.100", a), Some(32));
        assert_eq!(prefix_match("0.0.0.0/0", a), Some(0));
        assert_eq!(prefix_match("2001:db8::/32", a), None);
        let b: IpAddr = "2001:db8::100".parse().unwrap();
        assert_eq!(prefix_match("2001:db8::/32", b), Some(32));
    }

    #[test]
    fn sysctl_names_swap_dots_in_interface_names() {
        assert_eq!(
            sysctl_name("net/ipv4/conf/all/arp_ignore"),
            "net.ipv4.conf.all.arp_ignore"
        );
        assert_eq!(
            sysctl_name("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }
}
