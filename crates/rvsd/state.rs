//! The daemon's persistent state, in its state directory:
//!
//! - `rules`: the table in `ipvsadm -S -n` format;
//! - `runtime.json`: what IPVS keeps outside the rules and `ipvsadm -S` does not save, but a restarted
//!   daemon must not forget: the `--set` timeouts and the `-Z` baselines of the counters.
//!
//! Both are replaced atomically (temp file in the same directory, fsync, rename, fsync of the
//! directory), so after a crash or power loss each holds its old or its new content, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rvs_api::{StatsSnap, Timeouts};
use rvs_core::{DestKey, ServiceKey};
use serde::{Deserialize, Serialize};

/// Name of the rules file inside the state directory.
pub(crate) const RULES: &str = "rules";
/// Name of the runtime file inside the state directory.
pub(crate) const RUNTIME: &str = "runtime.json";

/// The rules file of one daemon.
#[derive(Debug, Clone)]
pub(crate) struct RulesFile {
    dir: PathBuf,
}

impl RulesFile {
    /// The rules file in `dir`; creates the directory if it is missing.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Path of the file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(RULES)
    }

    /// The saved rules, or `None` when none were ever saved.
    pub(crate) fn read(&self) -> anyhow::Result<Option<String>> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Replaces the file's content with `text`, atomically and durably.
    pub(crate) fn write(&self, text: &str) -> anyhow::Result<()> {
        replace(&self.dir, RULES, text)
    }

    /// The runtime file beside the rules.
    pub(crate) fn runtime(&self) -> RuntimeFile {
        RuntimeFile {
            dir: self.dir.clone(),
        }
    }
}

/// Replaces `dir/name` with `text`, atomically and durably.
fn replace(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    // One writer per state dir (the daemon serialises changes); the pid keeps a second daemon that
    // was wrongly pointed at the same directory from interleaving bytes into our temp file.
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = write_durably(&tmp, text).and_then(|()| {
        fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        // The rename is only durable once the directory entry is on disk.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The `-Z` zero point of one service's (`dest: None`) or real server's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    /// The service.
    pub(crate) service: ServiceKey,
    /// The real server, or `None` for the service's own counters.
    pub(crate) dest: Option<DestKey>,
    /// The data plane's stats slot the counters were read from: a baseline is only valid while the
    /// service (or real server) still has this id; a new one starts from cleared counters.
    pub(crate) id: u32,
    /// The raw counters at the time of `-Z`.
    pub(crate) stats: StatsSnap,
}

/// What `runtime.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Runtime {
    /// The `--set` timeouts in force.
    #[serde(default)]
    pub(crate) timeouts: Timeouts,
    /// Counters' zero points.
    #[serde(default)]
    pub(crate) baselines: Vec<Baseline>,
}

/// `<state_dir>/runtime.json`.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeFile {
    dir: PathBuf,
}

impl RuntimeFile {
    /// Path of the file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(RUNTIME)
    }

    /// The saved state, or the defaults (IPVS's timeouts, no baselines) when none was ever saved.
    pub(crate) fn read(&self) -> anyhow::Result<Runtime> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Runtime::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Replaces the file with `rt`, atomically and durably.
    pub(crate) fn write(&self, rt: &Runtime) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(rt)?;
        text.push('\n');
        replace(&self.dir, RUNTIME, &text)
    }
}

fn write_durably(tmp: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvsd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    const RULES_A: &str = "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 1\n";
    const RULES_B: &str = "-A -t 198.18.0.100:80 -s wrr\n";

    #[test]
    fn missing_file_reads_as_none_and_the_directory_is_created() {
        let d = tempdir("none").join("nested");
        let f = RulesFile::open(&d).unwrap();
        assert!(d.is_dir());
        assert_eq!(f.read().unwrap(), None);
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn write_then_read_restores_exactly_and_replaces_the_old_content() {
        let d = tempdir("roundtrip");
        let f = RulesFile::open(&d).unwrap();
        f.write(RULES_A).unwrap();
        assert_eq!(f.read().unwrap().as_deref(), Some(RULES_A));
        f.write(RULES_B).unwrap();
        assert_eq!(f.read().unwrap().as_deref(), Some(RULES_B));
        f.write("").unwrap();
        assert_eq!(f.read().unwrap().as_deref(), Some(""));
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RULES]);
        // A second handle (a restarted daemon) sees the same content.
        assert_eq!(RulesFile::open(&d).unwrap().read().unwrap().as_deref(), Some(""));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temp_file() {
        let d = tempdir("fail");
        let f = RulesFile::open(&d).unwrap();
        f.write(RULES_A).unwrap();
        // A directory in place of the rules file makes the rename fail after the temp file was written.
        let blocked = tempdir("fail-blocked");
        let g = RulesFile::open(&blocked).unwrap();
        fs::create_dir_all(blocked.join(RULES).join("x")).unwrap();
        assert!(g.write(RULES_B).is_err());
        let names: Vec<_> = fs::read_dir(&blocked)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RULES], "temp file must be removed");
        assert_eq!(f.read().unwrap().as_deref(), Some(RULES_A));
        fs::remove_dir_all(&d).unwrap();
        fs::remove_dir_all(&blocked).unwrap();
    }

    #[test]
    fn runtime_defaults_round_trip_and_a_corrupt_file_is_an_error() {
        let d = tempdir("runtime");
        let f = RulesFile::open(&d).unwrap().runtime();
        assert_eq!(f.read().unwrap(), Runtime::default());
        assert_eq!(f.read().unwrap().timeouts, Timeouts::default());
        let rt = Runtime {
            timeouts: Timeouts {
                tcp: 30,
                tcpfin: 20,
                udp: 10,
            },
            baselines: vec![Baseline {
                service: ServiceKey {
                    proto: rvs_core::Protocol::Tcp,
                    addr: "198.18.0.100".parse().unwrap(),
                    port: 80,
                },
                dest: Some(DestKey {
                    addr: "198.18.1.11".parse().unwrap(),
                    port: 80,
                }),
                id: 3,
                stats: StatsSnap {
                    conns: 1,
                    inpkts: 2,
                    outpkts: 3,
                    inbytes: 4,
                    outbytes: 5,
                },
            }],
        };
        f.write(&rt).unwrap();
        assert_eq!(f.read().unwrap(), rt);
        // Only the timeouts: the baselines default to none.
        fs::write(f.path(), r#"{"timeouts":{"tcp":1,"tcpfin":2,"udp":3}}"#).unwrap();
        assert_eq!(f.read().unwrap().timeouts.udp, 3);
        assert!(f.read().unwrap().baselines.is_empty());
        fs::write(f.path(), "{").unwrap();
        let e = f.read().unwrap_err();
        assert!(format!("{e:#}").contains(RUNTIME), "{e:#}");
        fs::remove_dir_all(&d).unwrap();
    }
}
