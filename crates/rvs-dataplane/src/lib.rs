//! The XDP data plane, driven from user space with aya.
//!
//! [`Dataplane`] is the production side: it loads `rvs_bpf::RVS_XDP_OBJ` with every map pinned by name
//! in a directory (default `/sys/fs/bpf/rvs`), or adopts what an earlier process pinned there, attaches
//! in native mode through pinned bpf_links, and applies `rvs_abi::MapOp`s. Nothing is detached when it
//! is dropped, so the daemon can restart without losing a packet or a connection; [`unload`] takes
//! everything down.
//!
//! [`TestProgram`] is the same object loaded unpinned with `rvs_test_hooks = 1`, run through
//! BPF_PROG_TEST_RUN by the differential tests and the benchmark.
//!
//! [`attach_pass`] attaches the `rvs_pass` (XDP_PASS) program, for the test labs and the demo.

mod batch;
mod dataplane;
mod error;
mod maps;
mod pass;
mod sys;
mod test_program;

use std::path::PathBuf;

pub use batch::CHUNK as CONN_CHUNK;
pub use dataplane::{Dataplane, unload};
pub use error::{DataplaneError, MapSpec};
pub use pass::{PassProgram, attach_pass};
pub use sys::now_ns;
pub use test_program::TestProgram;

/// A position in a walk of the connection table: the hash bucket the next slice starts at
/// ([`Dataplane::conn_entry_slice`]). Deleting entries does not move it, unlike a key cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnCursor(u32);

impl ConnCursor {
    /// The table's first bucket.
    pub const START: ConnCursor = ConnCursor(0);

    /// The cursor at bucket `bucket` (buckets past the table's last read as its end).
    pub const fn at_bucket(bucket: u32) -> Self {
        ConnCursor(bucket)
    }

    /// The bucket the cursor is at; cursors compare in walk order.
    pub const fn bucket(self) -> u32 {
        self.0
    }
}

/// Default pin directory of the daemon's data plane.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/rvs";

/// The largest connection table the kernel makes: a hash map's buckets (a power of two at least
/// max_entries, 16 bytes each) must fit the u32 size that `htab_map_alloc` checks (kernel/bpf/hashtab.c),
/// so 2^27 entries; one more gets E2BIG. Whether that much memory (about 145 bytes an entry, see
/// docs/performance.md) can be had is another matter, answered by the allocation.
pub const CONN_MAX_LIMIT: u32 = 1 << 27;

/// Where and how big: the settings [`Dataplane::open`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Directory on bpffs holding the pinned maps, program and links.
    pub pin_dir: PathBuf,
    /// max_entries of the connection table (rvs_conn): 1 to [`CONN_MAX_LIMIT`].
    pub conn_max: u32,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            conn_max: rvs_abi::CONN_DEFAULT,
        }
    }
}
