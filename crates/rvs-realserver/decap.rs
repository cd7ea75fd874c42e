//! The XDP decapsulation program (bpf/rvs_decap.c) on one interface, for VS/TUN without the ipip
//! module. It is loaded once per interface and attached in native mode through a pinned bpf_link, so
//! it stays attached after this process exits; its maps are pinned beside the link. Every VIP set up in
//! tun mode on the interface shares it: each adds its key to `rvs_decap_vip`, and the last one torn
//! down detaches it.
//!
//! Layout of `<pin-dir>/<dev>/`: `rvs_decap_vip`, `rvs_decap_stats` (pinned by name by the loader) and
//! `link`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aya::EbpfLoader;
use aya::maps::{HashMap, Map, MapData};
use aya::programs::links::FdLink;
use aya::programs::{Xdp, XdpMode};
use rvs_bpf::{DECAP_PROG, RVS_DECAP_OBJ};

use crate::sys;

/// Map of the virtual addresses (`struct rvs_decap_key` -> u32).
const VIP_MAP: &str = "rvs_decap_vip";
/// Per-CPU counters.
const STATS_MAP: &str = "rvs_decap_stats";
/// The pinned bpf_link that keeps the program attached.
const LINK: &str = "link";

/// Key of `rvs_decap_vip`: the 16 bytes of an IPv6 address, an IPv4 one mapped into `::ffff:0:0/96`
/// (`struct rvs_decap_key` in bpf/rvs_decap.c).
fn key(vip: IpAddr) -> [u8; 16] {
    match vip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The directory of `dev`'s pins under `pin_dir`.
pub(crate) fn dir(pin_dir: &Path, dev: &str) -> PathBuf {
    pin_dir.join(dev)
}

/// Attaches rvs_decap to `dev` unless it already runs there with its pins in `dir`. Returns whether it
/// attached now. Native mode, falling back to generic mode for a driver without XDP support.
pub(crate) fn attach(dir: &Path, dev: &str) -> anyhow::Result<bool> {
    let link = dir.join(LINK);
    let running = xdp_attached(dev)?;
    if running && link.exists() && dir.join(VIP_MAP).exists() {
        return Ok(false);
    }
    if running {
        bail!(
            "{dev} already runs an XDP program that is not rvs_decap (no pinned link in {}); detach it \
             first, or use --decap kernel",
            dir.display()
        );
    }
    // A link pinned while the interface existed under another index (deleted and recreated) is dead.
    if link.exists() {
        fs::remove_file(&link).with_context(|| format!("cannot remove the stale {}", link.display()))?;
    }
    ensure_bpffs(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Maps already pinned in `dir` (from an earlier setup) are reused, with the VIPs they hold.
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .load(RVS_DECAP_OBJ)
        .context("cannot load rvs_decap.o")?;
    let prog: &mut Xdp = ebpf
        .program_mut(DECAP_PROG)
        .with_context(|| format!("rvs_decap.o has no program {DECAP_PROG}"))?
        .try_into()
        .context("rvs_decap_ingress is not an XDP program")?;
    prog.load().context("the kernel refused rvs_decap_ingress")?;
    let id = match prog.attach(dev, XdpMode::Driver) {
        Ok(id) => id,
        Err(native) => {
            let id = prog.attach(dev, XdpMode::Skb).with_context(|| {
                format!("cannot attach rvs_decap to {dev} (native mode failed too: {native})")
            })?;
            println!("{dev}: no native XDP in this driver ({native}); rvs_decap runs in generic mode");
            id
        }
    };
    // Taken out of the program so that dropping `ebpf` does not detach it; the pin keeps it.
    let fd_link: FdLink = prog
        .take_link(id)
        .context("cannot take the XDP link")?
        .try_into()
        .context("the kernel attached through netlink, not a bpf_link; cannot pin it")?;
    fd_link
        .pin(&link)
        .with_context(|| format!("cannot pin the XDP link at {}", link.display()))?;
    Ok(true)
}

fn vip_map(dir: &Path) -> anyhow::Result<HashMap<MapData, [u8; 16], u32>> {
    let path = dir.join(VIP_MAP);
    let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("cannot use {}", path.display()))?;
    HashMap::try_from(map).with_context(|| format!("{} is not a map of 16-byte keys", path.display()))
}

/// Adds `vip` to the VIP map in `dir`. Returns whether it was missing.
pub(crate) fn add_vip(dir: &Path, vip: IpAddr) -> anyhow::Result<bool> {
    let mut map = vip_map(dir)?;
    if map.get(&key(vip), 0).is_ok() {
        return Ok(false);
    }
    map.insert(key(vip), 1, 0)
        .with_context(|| format!("cannot add {vip} to {}", dir.join(VIP_MAP).display()))?;
    Ok(true)
}

/// Removes `vip` from the VIP map in `dir`, if both are there. Returns how many VIPs remain, or `None`
/// when the map is gone.
pub(crate) fn remove_vip(dir: &Path, vip: IpAddr) -> anyhow::Result<Option<usize>> {
    if !dir.join(VIP_MAP).exists() {
        return Ok(None);
    }
    let mut map = vip_map(dir)?;
    if map.get(&key(vip), 0).is_ok() {
        map.remove(&key(vip))
            .with_context(|| format!("cannot remove {vip} from {}", dir.join(VIP_MAP).display()))?;
    }
    Ok(Some(map.keys().count()))
}

/// Detaches rvs_decap from `dev` by removing its pinned link, the link's last reference, and removes
/// the map pins and `dir`. The kernel releases a link from a work queue, so this waits (up to 5 s) until
/// `dev` shows no XDP program: a setup right after must find the interface free.
pub(crate) fn detach(dir: &Path, dev: &str) -> anyhow::Result<()> {
    for name in [LINK, VIP_MAP, STATS_MAP] {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
    if !sys::link_exists(dev) {
        return Ok(());
    }
    for _ in 0..500 {
        if !xdp_attached(dev)? {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("{dev} still runs an XDP program 5 s after its link was unpinned")
}

/// Whether an XDP program is attached to `dev` (any mode).
fn xdp_attached(dev: &str) -> anyhow::Result<bool> {
    let links = sys::ip_json(&["-d", "link", "show", "dev", dev])?;
    Ok(links.iter().any(|l| l.get("xdp").is_some()))
}

/// Checks that `/sys/fs/bpf` holds a BPF file system, mounting one when nothing is mounted there (as
/// rvsd does: minimal images and containers often lack it).
fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
    use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
    let existing = pin_dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let on_bpffs = |p: &Path| -> anyhow::Result<bool> {
        Ok(statfs(p)
            .with_context(|| format!("cannot statfs {}", p.display()))?
            .filesystem_type()
            == BPF_FS_MAGIC)
    };
    if on_bpffs(existing)? {
        return Ok(());
    }
    let root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(root) && existing == root {
        let out = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .output()
            .context("cannot run `mount`")?;
        if out.status.success() && on_bpffs(root)? {
            println!("/sys/fs/bpf: mounted a BPF file system");
            return Ok(());
        }
    }
    bail!(
        "{} is not on a BPF file system: mount one with `mount -t bpf bpf /sys/fs/bpf`",
        pin_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_ipv4_into_ipv6() {
        let k = key("198.18.0.10".parse().unwrap());
        assert_eq!(&k[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k[12..], &[198, 18, 0, 10]);
        let k = key("2001:db8::10".parse().unwrap());
        assert_eq!((k[0], k[1], k[15]), (0x20, 0x01, 0x10));
    }
}
