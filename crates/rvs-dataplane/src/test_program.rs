//! The director's object loaded for BPF_PROG_TEST_RUN: the same bytes as production, nothing pinned
//! or attached. Differential tests compare it with rvs-model; the benchmark times it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use rvs_abi::{
    Cfg, ConnKey, ConnVal, DestCnt, DestVal, DropReason, MapOp, Stats, SvcKey, SvcState, SvcVal, TestEnv,
    TestFib, TestFibKey, Timeouts, map,
};
use rvs_bpf::{EXPIRE_PROG, RVS_XDP_OBJ, XDP_PROG};

use crate::error::DataplaneError;
use crate::maps::{MAP_NAMES, Maps};

/// Room for output beyond the input frame (the kernel's XDP headroom; encapsulation grows frames).
const OUT_SLACK: usize = 256;

/// The director loaded unpinned and unattached, run with BPF_PROG_TEST_RUN.
///
/// Without a context the kernel runs the program as if received on the loopback device of the
/// calling thread's network namespace, so `ctx->ingress_ifindex` is [`TestProgram::INGRESS_IFINDEX`]:
/// a dest with that ifindex gives XDP_TX, another gives XDP_REDIRECT (not executed by a test run).
pub struct TestProgram {
    ebpf: Ebpf,
    maps: Maps,
}

fn prog_err(op: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DataplaneError {
    named_prog_err(XDP_PROG, op)
}

fn named_prog_err(
    prog: &'static str,
    op: &'static str,
) -> impl FnOnce(aya::programs::ProgramError) -> DataplaneError {
    move |e| DataplaneError::Program {
        prog,
        op,
        source: Box::new(e),
    }
}

/// Removes a temporary pin directory and what aya pinned in it, on every path out of `load`.
struct TempPins(PathBuf);

impl Drop for TempPins {
    fn drop(&mut self) {
        for name in MAP_NAMES {
            let _ = fs::remove_file(self.0.join(name));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

impl TestProgram {
    /// `ctx->ingress_ifindex` in a test run: loopback's index.
    pub const INGRESS_IFINDEX: u32 = 1;

    /// Loads the object with `rvs_test_hooks = 1`: time, randomness and CPU come from [`TestEnv`].
    ///
    /// # Errors
    /// Loading or verifying the program.
    pub fn load(conn_max: u32) -> Result<Self, DataplaneError> {
        Self::load_inner(conn_max, true)
    }

    /// Loads the object with `rvs_test_hooks = 0`: the production code path, real clock included.
    /// For benchmarks; `env` passed to [`TestProgram::run`] is then ignored by the program.
    ///
    /// # Errors
    /// Loading or verifying the program.
    pub fn load_unhooked(conn_max: u32) -> Result<Self, DataplaneError> {
        Self::load_inner(conn_max, false)
    }

    fn load_inner(conn_max: u32, hooks: bool) -> Result<Self, DataplaneError> {
        // The maps are declared LIBBPF_PIN_BY_NAME and aya then pins them, by default in /sys/fs/bpf
        // itself. A private directory, emptied right after loading, keeps test runs from sharing
        // maps with each other or with a daemon; the maps live on through their file descriptors.
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new("/sys/fs/bpf").join(format!(
            "rvs-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        crate::sys::create_pin_dir(&dir)?;
        let pins = TempPins(dir);
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pins.0)
            .map_max_entries(map::CONN, conn_max)
            .override_global("rvs_test_hooks", &u8::from(hooks), true)
            .load(RVS_XDP_OBJ)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        let maps = Maps::from_ebpf(&mut ebpf)?;
        let prog: &mut Xdp = ebpf
            .program_mut(XDP_PROG)
            .ok_or(DataplaneError::Missing {
                kind: "program",
                name: XDP_PROG,
            })?
            .try_into()
            .map_err(prog_err("open"))?;
        prog.load().map_err(prog_err("load (verifier)"))?;
        // The expiry program shares the object's maps (their fds were relocated into both programs
        // when the object was loaded), so runs of either see the other's changes.
        let expire: &mut Xdp = ebpf
            .program_mut(EXPIRE_PROG)
            .ok_or(DataplaneError::Missing {
                kind: "program",
                name: EXPIRE_PROG,
            })?
            .try_into()
            .map_err(named_prog_err(EXPIRE_PROG, "open"))?;
        expire
            .load()
            .map_err(named_prog_err(EXPIRE_PROG, "load (verifier)"))?;
        drop(pins);
        Ok(TestProgram { ebpf, maps })
    }

    /// The loaded program, for benchmarks that put it in a tail-call map or time it themselves.
    ///
    /// # Errors
    /// Never in practice: the program was found at load time.
    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        self.named_program(XDP_PROG)
    }

    /// The object's program `name` (`XDP_PROG` or `EXPIRE_PROG`), loaded.
    fn named_program(&self, name: &'static str) -> Result<&Xdp, DataplaneError> {
        self.ebpf
            .program(name)
            .ok_or(DataplaneError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(named_prog_err(name, "open"))
    }

    /// Applies configuration changes in order.
    ///
    /// # Errors
    /// The first map write that fails.
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        self.maps.apply(ops)
    }

    /// Writes `env` into rvs_test_env and runs the program once on `frame`. Returns the XDP action
    /// and the frame as the program left it.
    ///
    /// # Errors
    /// Writing the env, or the kernel refusing the run (a frame shorter than 14 bytes, for one).
    pub fn run(&mut self, env: &TestEnv, frame: &[u8]) -> Result<(u32, Vec<u8>), DataplaneError> {
        self.run_program(XDP_PROG, env, frame)
    }

    /// As [`TestProgram::run`], for any program of the object: `XDP_PROG`, or `EXPIRE_PROG` on a frame
    /// of an `ExpireHdr` and its keys (at least 14 bytes: the kernel refuses a shorter XDP test frame).
    ///
    /// # Errors
    /// As [`TestProgram::run`]; `Missing` for a name the object does not hold.
    pub fn run_program(
        &mut self,
        name: &'static str,
        env: &TestEnv,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), DataplaneError> {
        self.maps.set_test_env(env)?;
        let mut out = vec![0u8; frame.len() + OUT_SLACK];
        let res = self
            .named_program(name)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .map_err(|e| DataplaneError::TestRun {
                len: frame.len(),
                source: Box::new(e),
            })?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out))
    }

    /// Every service.
    ///
    /// # Errors
    /// A map read failed.
    pub fn services(&self) -> Result<Vec<(SvcKey, SvcVal)>, DataplaneError> {
        self.maps.services()
    }

    /// Every dest slot holding `DEST_F_VALID`.
    ///
    /// # Errors
    /// A map read failed.
    pub fn dests(&self) -> Result<Vec<(u32, DestVal)>, DataplaneError> {
        self.maps.dests()
    }

    /// Dest slot `id`, valid or not.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn dest(&self, id: u32) -> Result<DestVal, DataplaneError> {
        self.maps.dest(id)
    }

    /// rvs_sched slots in `range`.
    ///
    /// # Errors
    /// A map read failed (or the range is out of bounds).
    pub fn sched(&self, range: std::ops::Range<u32>) -> Result<Vec<u32>, DataplaneError> {
        self.maps.sched(range)
    }

    /// Scheduler state of service `id`.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn svc_st(&self, id: u32) -> Result<SvcState, DataplaneError> {
        self.maps.svc_st(id)
    }

    /// Every connection, without the NAT reply entries (as [`crate::Dataplane::conns`]).
    ///
    /// # Errors
    /// A map read failed.
    pub fn conns(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        self.maps.conns()
    }

    /// Every entry of rvs_conn, NAT reply entries included.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_entries(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        self.maps.conn_entries()
    }

    /// The connections chunk by chunk (as [`crate::Dataplane::conn_chunks`]).
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_chunks(&self, f: impl FnMut(&[(ConnKey, ConnVal)])) -> Result<usize, DataplaneError> {
        self.maps.conn_chunks(f)
    }

    /// Entries of rvs_conn (NAT reply entries included) from `from` on, chunk by chunk, until at least
    /// `max` were read or the table ends: one slice of a walk that later slices resume. Returns how
    /// many and where the next slice starts, `None` once the walk reached the end. An entry present for
    /// the whole walk is read exactly once, whatever is deleted between slices.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_entry_slice(
        &self,
        from: crate::ConnCursor,
        max: usize,
        f: impl FnMut(&[(ConnKey, ConnVal)]),
    ) -> Result<(usize, Option<crate::ConnCursor>), DataplaneError> {
        self.maps.conn_entry_slice(from, max, f)
    }

    /// The entry of `key` in rvs_conn (a connection or a NAT reply entry), if any.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_get(&self, key: &ConnKey) -> Result<Option<ConnVal>, DataplaneError> {
        self.maps.conn_get(key)
    }

    /// Deletes the connections `keys` with their NAT reply entries (as
    /// the daemon's old user-space expiry); returns how many of `keys` were deleted.
    ///
    /// # Errors
    /// A map read or write failed.
    pub fn delete_conns(&mut self, keys: &[ConnKey]) -> Result<usize, DataplaneError> {
        self.maps.delete_conns(keys)
    }

    /// Inserts or replaces `keys[i] -> vals[i]` in batches (as [`crate::Dataplane::set_conns`]).
    ///
    /// # Errors
    /// A map write failed.
    ///
    /// # Panics
    /// If `keys` and `vals` differ in length.
    pub fn set_conns(&mut self, keys: &[ConnKey], vals: &[ConnVal]) -> Result<usize, DataplaneError> {
        self.maps.set_conns(keys, vals)
    }

    /// Lets the program redirect to `ifindex` (rvs_tx_ports), as [`crate::Dataplane::attach`] does.
    ///
    /// # Errors
    /// The kernel refuses an ifindex that names no device in the calling thread's network namespace.
    pub fn set_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.maps.set_tx_port(ifindex)
    }

    /// The interfaces in rvs_tx_ports, ascending.
    ///
    /// # Errors
    /// A map read failed.
    pub fn tx_ports(&self) -> Result<Vec<u32>, DataplaneError> {
        self.maps.tx_ports()
    }

    /// Replaces the routes that `rvs_fib_lookup` answers from while the test hooks are on
    /// (rvs_test_fib; a destination without a route gets `NOT_FWDED`, as the kernel's "no route").
    ///
    /// # Errors
    /// A map write failed (more than `TEST_FIB_MAX` routes, for one).
    pub fn set_test_fib<'a>(
        &mut self,
        routes: impl IntoIterator<Item = (&'a TestFibKey, &'a TestFib)>,
    ) -> Result<(), DataplaneError> {
        self.maps.set_test_fib(routes)
    }

    /// Connection counters of dest `id` (rvs_dest_cnt).
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn dest_cnt(&self, id: u32) -> Result<DestCnt, DataplaneError> {
        self.maps.dest_cnt(id)
    }

    /// The timeouts (rvs_timeouts[0]).
    ///
    /// # Errors
    /// A map read failed.
    pub fn timeouts(&self) -> Result<Timeouts, DataplaneError> {
        self.maps.timeouts()
    }

    /// Every entry of rvs_lblc (lblc/lblcr).
    ///
    /// # Errors
    /// A map read failed.
    pub fn lblc_entries(&self) -> Result<Vec<(rvs_abi::LblcKey, rvs_abi::LblcVal)>, DataplaneError> {
        self.maps.lblc_entries()
    }

    /// Overwrites the connection counters of dest `id` (to set up a fixture: the daemon only zeroes
    /// them, with `MapOp::DestCntClear`).
    ///
    /// # Errors
    /// Finding or writing the map failed (or `id` is out of range).
    pub fn set_dest_cnt(&mut self, id: u32, val: &DestCnt) -> Result<(), DataplaneError> {
        let data = self.program_map(map::DEST_CNT)?;
        let mut arr: aya::maps::Array<aya::maps::MapData, DestCnt> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data))
                .map_err(|e| DataplaneError::map(map::DEST_CNT, "open typed handle", e))?;
        arr.set(id, val, 0)
            .map_err(|e| DataplaneError::map(map::DEST_CNT, format_args!("set [{id}]"), e))
    }

    /// A second handle on map `name` of the director's program, found among the maps the kernel
    /// lists for it (the typed handles belong to `Maps`, which has no writer for every map).
    fn program_map(&self, name: &'static str) -> Result<aya::maps::MapData, DataplaneError> {
        let ids = self
            .program()?
            .info()
            .map_err(prog_err("info"))?
            .map_ids()
            .map_err(prog_err("map ids"))?
            .unwrap_or_default();
        for id in ids {
            let data =
                aya::maps::MapData::from_id(id).map_err(|e| DataplaneError::map(name, "open by id", e))?;
            let info = data
                .info()
                .map_err(|e| DataplaneError::map(name, "read info", e))?;
            if info.name_as_str() == Some(name) {
                return Ok(data);
            }
        }
        Err(DataplaneError::Missing { kind: "map", name })
    }

    /// The global switches (rvs_cfg).
    ///
    /// # Errors
    /// A map read failed.
    pub fn cfg(&self) -> Result<Cfg, DataplaneError> {
        self.maps.cfg()
    }

    /// Inserts or replaces a connection entry (to set up a fixture).
    ///
    /// # Errors
    /// The map write failed.
    pub fn set_conn(&mut self, key: &ConnKey, val: &ConnVal) -> Result<(), DataplaneError> {
        self.maps.set_conn(key, val)
    }

    /// Deletes a connection entry (absent is fine).
    ///
    /// # Errors
    /// The map write failed.
    pub fn delete_conn(&mut self, key: &ConnKey) -> Result<(), DataplaneError> {
        self.maps.delete_conn(key)
    }

    /// Counters of service `id`, summed over CPUs.
    ///
    /// # Errors
    /// A map read failed.
    pub fn svc_stats(&self, id: u32) -> Result<Stats, DataplaneError> {
        Ok(crate::dataplane::sum(&self.maps.svc_stats_percpu(id)?))
    }

    /// Counters of dest `id`, summed over CPUs.
    ///
    /// # Errors
    /// A map read failed.
    pub fn dest_stats(&self, id: u32) -> Result<Stats, DataplaneError> {
        Ok(crate::dataplane::sum(&self.maps.dest_stats_percpu(id)?))
    }

    /// Counters of service `id` on CPU `cpu` only.
    ///
    /// # Errors
    /// A map read failed.
    ///
    /// # Panics
    /// If `cpu` is not a possible CPU.
    pub fn svc_stats_cpu(&self, id: u32, cpu: u32) -> Result<Stats, DataplaneError> {
        Ok(self.maps.svc_stats_percpu(id)?[cpu as usize])
    }

    /// Counters of dest `id` on CPU `cpu` only.
    ///
    /// # Errors
    /// A map read failed.
    ///
    /// # Panics
    /// If `cpu` is not a possible CPU.
    pub fn dest_stats_cpu(&self, id: u32, cpu: u32) -> Result<Stats, DataplaneError> {
        Ok(self.maps.dest_stats_percpu(id)?[cpu as usize])
    }

    /// Drop counters of CPU `cpu`, every reason listed.
    ///
    /// # Errors
    /// A map read failed.
    ///
    /// # Panics
    /// If `cpu` is not a possible CPU.
    pub fn drops_cpu(&self, cpu: u32) -> Result<Vec<(DropReason, u64)>, DataplaneError> {
        Ok(self
            .maps
            .drops_percpu()?
            .into_iter()
            .map(|(r, v)| (r, v[cpu as usize]))
            .collect())
    }
}
