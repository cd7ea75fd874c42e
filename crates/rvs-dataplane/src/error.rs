//! The crate's error type. Messages name the map, program, link or path involved; the aya or io error
//! underneath is the `source`, so a printer of the cause chain shows both once.

use std::fmt;
use std::io;
use std::path::PathBuf;

use aya::maps::MapType;

/// An error of the data plane, with what was being done and on which object.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A file-system or syscall operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pin directory would not be on a BPF file system.
    #[error("{} is not on a BPF file system: mount one with `mount -t bpf bpf /sys/fs/bpf`", path.display())]
    NotBpffs {
        /// The pin directory.
        path: PathBuf,
    },
    /// aya could not parse or load the object (maps, BTF, relocations).
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The object lacks a map or program this crate expects (a build mismatch).
    #[error("the XDP object has no {kind} `{name}`")]
    Missing {
        /// "map" or "program".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program operation failed (the verifier log is inside the source for a load).
    #[error("program {prog}: {op}")]
    Program {
        /// Program name.
        prog: &'static str,
        /// What was being done.
        op: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map read or write failed.
    #[error("map {map}: {op}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What was being done, with the key or index.
        op: String,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map command aya does not offer (the batch commands, see `batch.rs`) failed.
    #[error("map {map}: {op}")]
    MapSyscall {
        /// Map name.
        map: &'static str,
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connection table size is 0 or more than the kernel makes.
    #[error("connection table size {conn_max}: must be 1 to {limit}", limit = crate::CONN_MAX_LIMIT)]
    ConnMax {
        /// The size asked for.
        conn_max: u32,
    },
    /// A pinned map exists but is not the map this build expects.
    #[error(
        "pinned map {} is {found}, this build expects {expected}: run `rvsd --unload` (drops every \
         connection) or start with another pin directory",
        path.display()
    )]
    MapMismatch {
        /// Pin path.
        path: PathBuf,
        /// What this build expects.
        expected: MapSpec,
        /// What the pinned map is.
        found: MapSpec,
    },
    /// Pinning a map, program or link failed.
    #[error("pin {}", path.display())]
    Pin {
        /// Pin path.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: aya::pin::PinError,
    },
    /// Opening or updating a pinned link failed.
    #[error("link {}: {op}", path.display())]
    Link {
        /// Pin path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// aya's error.
        #[source]
        source: aya::programs::links::LinkError,
    },
    /// The interface does not exist.
    #[error("no interface named {ifname}")]
    NoInterface {
        /// Interface name.
        ifname: String,
    },
    /// Attaching in native (driver) mode failed.
    #[error("attach XDP in native mode to {ifname}")]
    Attach {
        /// Interface name.
        ifname: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// The kernel attached through netlink instead of a bpf_link, which cannot be pinned and would
    /// detach when the daemon stops.
    #[error("attaching to {ifname} gave a netlink attachment, not a bpf_link (kernel too old?)")]
    NotFdLink {
        /// Interface name.
        ifname: String,
    },
    /// A link stayed attached after BPF_LINK_DETACH.
    #[error("link {} (id {link_id}) still attached to ifindex {ifindex} after detach", path.display())]
    StillAttached {
        /// Pin path.
        path: PathBuf,
        /// Link id.
        link_id: u32,
        /// Interface index it still reports.
        ifindex: u32,
    },
    /// BPF_PROG_TEST_RUN failed.
    #[error("test run of {len}-byte frame")]
    TestRun {
        /// Input frame length.
        len: usize,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// The properties of a map that must match for a pinned map to be reused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapSpec {
    /// Map type.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
}

impl fmt::Display for MapSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} key {} B value {} B max_entries {}",
            self.map_type, self.key_size, self.value_size, self.max_entries
        )
    }
}

impl DataplaneError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataplaneError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn syscall(map: &'static str, op: impl fmt::Display, source: io::Error) -> Self {
        DataplaneError::MapSyscall {
            map,
            op: op.to_string(),
            source,
        }
    }

    pub(crate) fn map(map: &'static str, op: impl fmt::Display, source: aya::maps::MapError) -> Self {
        DataplaneError::Map {
            map,
            op: op.to_string(),
            source,
        }
    }
}
