//! The record of what `setup` changed, one JSON file per VIP, so that `teardown` can restore exactly
//! the values `setup` replaced.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One change made by `setup`, with what is needed to undo it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// `setup` brought this link up (a fresh network namespace has `lo` down).
    LinkUp { dev: String },
    /// `setup` added this address (`addr/prefix`) to `dev`.
    Addr { dev: String, prefix: String },
    /// `setup` wrote `new` into `/proc/sys/<key>`, which held `old`.
    Sysctl { key: String, old: String, new: String },
}

/// Everything recorded for one VIP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) vip: IpAddr,
    /// Inode of the network namespace the changes were made in: sysctls and addresses are per
    /// namespace, but the state directory is shared by every namespace of the mount namespace.
    pub(crate) netns: u64,
    /// Interface that receives the director's packets.
    pub(crate) dev: String,
    /// In the order they were made; undone in reverse.
    pub(crate) changes: Vec<Change>,
}

impl State {
    pub(crate) fn new(vip: IpAddr, netns: u64, dev: &str) -> Self {
        Self {
            vip,
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
