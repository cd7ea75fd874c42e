//! The record of what `setup` changed, one JSON file per VIP, so that `teardown` can restore exactly
//! the values `setup` replaced.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// How the director sends this real server its packets (ipvsadm's -g, -i, -m).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Direct routing: the client's packet, unchanged, to this host's MAC. Needs the VIP on lo.
    #[default]
    Dr,
    /// IP-in-IP tunnel: the client's packet inside an outer header to this host. Needs the VIP on lo
    /// and decapsulation.
    Tun,
    /// NAT: the director rewrites the VIP to this host's address and back, so the replies must go
    /// through it. Needs the default route via the director.
    Nat,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::Nat => "nat",
        })
    }
}

/// One change made by `setup`, with what is needed to undo it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// `setup` brought this link up (a fresh network namespace has `lo` down).
    LinkUp { dev: String },
    /// `setup` added this address (`addr/prefix`) to `dev`.
    Addr { dev: String, prefix: String },
    /// `setup` wrote `new` into `/proc/sys/<key>`, which held `old`.
    Sysctl { key: String, old: String, new: String },
    /// `setup` put the VIP into the VIP map of the XDP decapsulation program on `dev`, pinned in
    /// `pin_dir`, and attached that program if it was not yet. The program is shared by every VIP set
    /// up on `dev`: undoing removes the VIP, and detaches the program once no VIP is left.
    DecapVip {
        dev: String,
        pin_dir: PathBuf,
        vip: IpAddr,
    },
    /// `setup` made `gateway` (on `dev`) the default route of `family` (4 or 6) with metric 0;
    /// `old` is the metric-0 default route it replaced, as `ip route` arguments.
    Route {
        family: u8,
        gateway: IpAddr,
        dev: String,
        old: Option<Vec<String>>,
    },
}

/// Everything recorded for one VIP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) vip: IpAddr,
    /// Forwarding method; records written before modes existed are DR.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// Inode of the network namespace the changes were made in: sysctls and addresses are per
    /// namespace, but the state directory is shared by every namespace of the mount namespace.
    pub(crate) netns: u64,
    /// Interface that receives the director's packets.
    pub(crate) dev: String,
    /// In the order they were made; undone in reverse.
    pub(crate) changes: Vec<Change>,
}

impl State {
    pub(crate) fn new(vip: IpAddr, mode: Mode, netns: u64, dev: &str) -> Self {
        Self {
            vip,
            mode,
            netns,
            dev: dev.to_owned(),
            changes: Vec::new(),
        }
    }

    /// The recorded change of sysctl `key`, if any.
    pub(crate) fn sysctl_mut(&mut self, key: &str) -> Option<&mut Change> {
        self.changes
            .iter_mut()
            .find(|c| matches!(c, Change::Sysctl { key: k, .. } if k == key))
    }
}

fn path(dir: &Path, vip: IpAddr) -> PathBuf {
    dir.join(format!("{vip}.json"))
}

/// Reads the record of `vip`, if there is one, and checks it was made in this network namespace.
pub(crate) fn load(dir: &Path, vip: IpAddr, netns: u64) -> anyhow::Result<Option<State>> {
    let p = path(dir, vip);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    let st: State = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", p.display()))?;
    if st.netns != netns {
        bail!(
            "{} records changes made in another network namespace (net:[{}], this is net:[{netns}]); \
             give each namespace its own --state-dir",
            p.display(),
            st.netns
        );
    }
    Ok(Some(st))
}

/// The records of the other VIPs set up in this network namespace (files of another namespace are
/// skipped).
pub(crate) fn load_others(dir: &Path, st: &State) -> anyhow::Result<Vec<State>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let p = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let other: State =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", p.display()))?;
        if other.netns == st.netns && other.vip != st.vip {
            out.push(other);
        }
    }
    out.sort_by_key(|o| o.vip);
    Ok(out)
}

/// Writes the record atomically (temporary file, fsync, rename): a crash leaves the old or the new
/// record, never half of one.
pub(crate) fn save(dir: &Path, st: &State) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = path(dir, st.vip);
    let tmp = p.with_extension("json.tmp");
    let mut text = serde_json::to_string_pretty(st)?;
    text.push('\n');
    let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &p).with_context(|| format!("cannot rename {} to {}", tmp.display(), p.display()))?;
    Ok(())
}

/// Deletes the record of `vip`.
pub(crate) fn remove(dir: &Path, vip: IpAddr) -> anyhow::Result<()> {
    let p = path(dir, vip);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}
