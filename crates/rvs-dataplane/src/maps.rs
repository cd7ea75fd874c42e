//! Typed handles on the director's maps (bpf/include/rvs_maps.h), shared by [`crate::Dataplane`] and
//! [`crate::TestProgram`]: applying `MapOp`s and reading maps back.

use std::collections::HashMap as StdHashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use aya::Ebpf;
use aya::maps::xdp::XdpMapError;
use aya::maps::{
    Array, DevMapHash, HashMap, IterableMap, Map, MapData, MapError, MapInfo, MapType, PerCpuArray,
    PerCpuValues,
    lpm_trie::{Key as LpmKey, LpmTrie},
};
use rvs_abi::{
    CONN_F_REPLY, Cfg, ConnKey, ConnVal, DEST_F_VALID, DestCnt, DestVal, DropReason, Fwd, LblcKey, LblcVal,
    MapOp, MarkAddr, MarkKey, MarkVal, Stats, SvcKey, SvcState, SvcVal, TestEnv, TestFib, TestFibKey,
    Timeouts, VIP_PRESENT, VipKey, map,
};

use crate::ConnCursor;
use crate::batch::{self, CHUNK};
use crate::error::{DataplaneError, MapSpec};

/// Every map of the object, in the order of rvs_maps.h.
pub(crate) const MAP_NAMES: [&str; 18] = [
    map::SVC,
    map::SVC_ADDR,
    map::VIP,
    map::DEST,
    map::SCHED,
    map::SVC_ST,
    map::LBLC,
    map::CONN,
    map::DEST_CNT,
    map::TIMEOUTS,
    map::SVC_STATS,
    map::DEST_STATS,
    map::DROPS,
    map::CFG,
    map::TX_PORTS,
    map::TEST_FIB,
    map::TEST_ENV,
    map::MARK,
];

/// What a map of this build looks like; `conn_max` is rvs_conn's size.
pub(crate) fn expected_spec(name: &str, conn_max: u32) -> MapSpec {
    use rvs_abi::{MAX_DEST, MAX_SVC, MAX_TX_PORTS, SCHED_SLOTS, TEST_FIB_MAX};
    let spec = |map_type, key_size: usize, value_size: usize, max_entries| MapSpec {
        map_type,
        key_size: key_size as u32,
        value_size: value_size as u32,
        max_entries,
    };
    match name {
        map::SVC => spec(MapType::Hash, size_of::<SvcKey>(), size_of::<SvcVal>(), MAX_SVC),
        map::SVC_ADDR => spec(MapType::Array, 4, size_of::<SvcKey>(), MAX_SVC),
        map::VIP => spec(MapType::Hash, size_of::<VipKey>(), 4, MAX_SVC),
        map::DEST => spec(MapType::Array, 4, size_of::<DestVal>(), MAX_DEST),
        map::SCHED => spec(MapType::Array, 4, 4, SCHED_SLOTS),
        map::SVC_ST => spec(MapType::Array, 4, size_of::<SvcState>(), MAX_SVC),
        map::LBLC => spec(
            MapType::Hash,
            size_of::<LblcKey>(),
            size_of::<LblcVal>(),
            rvs_abi::LBLC_MAX,
        ),
        map::CONN => spec(
            MapType::Hash,
            size_of::<ConnKey>(),
            size_of::<ConnVal>(),
            conn_max,
        ),
        map::DEST_CNT => spec(MapType::Array, 4, size_of::<DestCnt>(), MAX_DEST),
        map::TIMEOUTS => spec(MapType::Array, 4, size_of::<Timeouts>(), 1),
        map::SVC_STATS => spec(MapType::PerCpuArray, 4, size_of::<Stats>(), MAX_SVC),
        map::DEST_STATS => spec(MapType::PerCpuArray, 4, size_of::<Stats>(), MAX_DEST),
        map::DROPS => spec(MapType::PerCpuArray, 4, 8, DropReason::ALL.len() as u32 + 1),
        map::CFG => spec(MapType::Array, 4, size_of::<Cfg>(), 1),
        // struct bpf_devmap_val: ifindex, then a program fd/id (none here).
        map::TX_PORTS => spec(MapType::DevMapHash, 4, 8, MAX_TX_PORTS),
        map::TEST_FIB => spec(
            MapType::Hash,
            size_of::<TestFibKey>(),
            size_of::<TestFib>(),
            TEST_FIB_MAX,
        ),
        map::TEST_ENV => spec(MapType::Array, 4, size_of::<TestEnv>(), 1),
        map::MARK => spec(
            MapType::LpmTrie,
            size_of::<MarkKey>(),
            size_of::<MarkVal>(),
            rvs_abi::MAX_MARK_PREFIXES,
        ),
        other => unreachable!("unknown map {other}"),
    }
}

/// Reads what a pinned map is, for comparison with [`expected_spec`].
pub(crate) fn pinned_spec(path: &Path) -> Result<MapSpec, DataplaneError> {
    let info = MapInfo::from_pin(path).map_err(|e| DataplaneError::map(map_name_of(path), "open pin", e))?;
    let map_type = info
        .map_type()
        .map_err(|e| DataplaneError::map(map_name_of(path), "read type", e))?;
    Ok(MapSpec {
        map_type,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
    })
}

/// Refuses a pinned map that differs from this build's; aya would reuse it without a look.
pub(crate) fn check_pinned(path: &Path, name: &str, conn_max: u32) -> Result<(), DataplaneError> {
    let found = pinned_spec(path)?;
    let expected = expected_spec(name, conn_max);
    if found != expected {
        return Err(DataplaneError::MapMismatch {
            path: path.to_owned(),
            expected,
            found,
        });
    }
    Ok(())
}

fn map_name_of(path: &Path) -> &'static str {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    MAP_NAMES
        .iter()
        .copied()
        .find(|n| *n == file)
        .unwrap_or("(pinned map)")
}

/// Typed handles on the maps.
pub(crate) struct Maps {
    svc: HashMap<MapData, SvcKey, SvcVal>,
    svc_addr: Array<MapData, SvcKey>,
    vip: HashMap<MapData, VipKey, u32>,
    dest: Array<MapData, DestVal>,
    sched: Array<MapData, u32>,
    svc_st: Array<MapData, SvcState>,
    lblc: HashMap<MapData, LblcKey, LblcVal>,
    conn: HashMap<MapData, ConnKey, ConnVal>,
    dest_cnt: Array<MapData, DestCnt>,
    timeouts: Array<MapData, Timeouts>,
    svc_stats: PerCpuArray<MapData, Stats>,
    dest_stats: PerCpuArray<MapData, Stats>,
    drops: PerCpuArray<MapData, u64>,
    cfg: Array<MapData, Cfg>,
    tx_ports: DevMapHash<MapData>,
    test_fib: HashMap<MapData, TestFibKey, TestFib>,
    test_env: Array<MapData, TestEnv>,
    mark: LpmTrie<MapData, MarkAddr, MarkVal>,
    conn_max: u32,
}

fn typed<T>(name: &'static str, m: Map) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(m).map_err(|e| DataplaneError::map(name, "open typed handle", e))
}

impl Maps {
    /// Takes the maps out of a freshly loaded object.
    pub(crate) fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Self::build(|name| {
            ebpf.take_map(name)
                .ok_or(DataplaneError::Missing { kind: "map", name })
        })
    }

    /// Opens the maps pinned in `dir` (already checked by the caller).
    pub(crate) fn from_pins(dir: &Path) -> Result<Self, DataplaneError> {
        Self::build(|name| {
            let data =
                MapData::from_pin(dir.join(name)).map_err(|e| DataplaneError::map(name, "open pin", e))?;
            Map::from_map_data(data).map_err(|e| DataplaneError::map(name, "open pin", e))
        })
    }

    fn build(
        mut get: impl FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        let conn = get(map::CONN)?;
        let conn_max = match &conn {
            Map::HashMap(data) => data
                .info()
                .map_err(|e| DataplaneError::map(map::CONN, "read info", e))?
                .max_entries(),
            _ => {
                return Err(DataplaneError::Missing {
                    kind: "hash map",
                    name: map::CONN,
                });
            }
        };
        let conn: HashMap<MapData, ConnKey, ConnVal> = typed(map::CONN, conn)?;
        Ok(Maps {
            svc: typed(map::SVC, get(map::SVC)?)?,
            svc_addr: typed(map::SVC_ADDR, get(map::SVC_ADDR)?)?,
            vip: typed(map::VIP, get(map::VIP)?)?,
            dest: typed(map::DEST, get(map::DEST)?)?,
            sched: typed(map::SCHED, get(map::SCHED)?)?,
            svc_st: typed(map::SVC_ST, get(map::SVC_ST)?)?,
            lblc: typed(map::LBLC, get(map::LBLC)?)?,
            conn,
            dest_cnt: typed(map::DEST_CNT, get(map::DEST_CNT)?)?,
            timeouts: typed(map::TIMEOUTS, get(map::TIMEOUTS)?)?,
            svc_stats: typed(map::SVC_STATS, get(map::SVC_STATS)?)?,
            dest_stats: typed(map::DEST_STATS, get(map::DEST_STATS)?)?,
            drops: typed(map::DROPS, get(map::DROPS)?)?,
            cfg: typed(map::CFG, get(map::CFG)?)?,
            tx_ports: typed(map::TX_PORTS, get(map::TX_PORTS)?)?,
            test_fib: typed(map::TEST_FIB, get(map::TEST_FIB)?)?,
            test_env: typed(map::TEST_ENV, get(map::TEST_ENV)?)?,
            mark: typed(map::MARK, get(map::MARK)?)?,
            conn_max,
        })
    }

    /// rvs_conn's max_entries, as the kernel reports it.
    pub(crate) fn conn_max(&self) -> u32 {
        self.conn_max
    }

    /// Applies `ops` in order; stops at the first failure (earlier ops stay applied).
    pub(crate) fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        for op in ops {
            self.apply_one(op)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, op: &MapOp) -> Result<(), DataplaneError> {
        match *op {
            // The id's key first: a reply that finds the service by id must find this key.
            MapOp::SvcSet { key, val } => {
                self.svc_addr
                    .set(val.id, key, 0)
                    .map_err(|e| DataplaneError::map(map::SVC_ADDR, format_args!("set [{}]", val.id), e))?;
                self.svc
                    .insert(key, val, 0)
                    .map_err(|e| DataplaneError::map(map::SVC, format_args!("insert {key:?}"), e))
            }
            // Deleting an absent service is not an error: the result is the same map.
            MapOp::SvcDel { key } => match self.svc.remove(&key) {
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r.map_err(|e| DataplaneError::map(map::SVC, format_args!("delete {key:?}"), e)),
            },
            MapOp::DestSet { id, val } => self
                .dest
                .set(id, val, 0)
                .map_err(|e| DataplaneError::map(map::DEST, format_args!("set [{id}]"), e)),
            MapOp::SchedSet { slot, dest_id } => self
                .sched
                .set(slot, dest_id, 0)
                .map_err(|e| DataplaneError::map(map::SCHED, format_args!("set [{slot}]"), e)),
            MapOp::SvcStateSet { id, val } => self
                .svc_st
                .set(id, val, 0)
                .map_err(|e| DataplaneError::map(map::SVC_ST, format_args!("set [{id}]"), e)),
            MapOp::SvcStatsClear { id } => clear_percpu(&mut self.svc_stats, map::SVC_STATS, id),
            MapOp::DestStatsClear { id } => clear_percpu(&mut self.dest_stats, map::DEST_STATS, id),
            MapOp::CfgSet { val } => self
                .cfg
                .set(0, val, 0)
                .map_err(|e| DataplaneError::map(map::CFG, "set [0]", e)),
            MapOp::DestCntClear { id } => self
                .dest_cnt
                .set(id, DestCnt::default(), 0)
                .map_err(|e| DataplaneError::map(map::DEST_CNT, format_args!("set [{id}]"), e)),
            MapOp::TimeoutsSet { val } => self
                .timeouts
                .set(0, val, 0)
                .map_err(|e| DataplaneError::map(map::TIMEOUTS, "set [0]", e)),
            MapOp::VipSet { key } => self
                .vip
                .insert(key, VIP_PRESENT, 0)
                .map_err(|e| DataplaneError::map(map::VIP, format_args!("insert {key:?}"), e)),
            // Deleting an absent address is not an error: the result is the same map.
            MapOp::VipDel { key } => match self.vip.remove(&key) {
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r.map_err(|e| DataplaneError::map(map::VIP, format_args!("delete {key:?}"), e)),
            },
            MapOp::MarkSet { key, val } => self
                .mark
                .insert(&LpmKey::new(key.prefixlen, key.data), val, 0)
                .map_err(|e| DataplaneError::map(map::MARK, format_args!("insert {key:?}"), e)),
            // Deleting an absent entry is not an error: the result is the same map.
            MapOp::MarkDel { key } => match self.mark.remove(&LpmKey::new(key.prefixlen, key.data)) {
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r.map_err(|e| DataplaneError::map(map::MARK, format_args!("delete {key:?}"), e)),
            },
            MapOp::LblcFlush { svc_id } => {
                let keys: Vec<LblcKey> = self
                    .lblc_entries()?
                    .into_iter()
                    .filter(|(k, _)| k.svc_id == svc_id)
                    .map(|(k, _)| k)
                    .collect();
                self.lblc_delete(&keys)
            }
        }
    }

    /// Every entry of rvs_lblc.
    pub(crate) fn lblc_entries(&self) -> Result<Vec<(LblcKey, LblcVal)>, DataplaneError> {
        self.lblc
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DataplaneError::map(map::LBLC, "iterate", e))
    }

    /// Deletes `keys` from rvs_lblc; a key already gone (the data plane or a flush got there first)
    /// is not an error.
    pub(crate) fn lblc_delete(&mut self, keys: &[LblcKey]) -> Result<(), DataplaneError> {
        for key in keys {
            match self.lblc.remove(key) {
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                r => r.map_err(|e| DataplaneError::map(map::LBLC, format_args!("delete {key:?}"), e))?,
            }
        }
        Ok(())
    }

    /// The connection counters of dest `id`.
    pub(crate) fn dest_cnt(&self, id: u32) -> Result<DestCnt, DataplaneError> {
        self.dest_cnt
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::DEST_CNT, format_args!("get [{id}]"), e))
    }

    /// The scheduler state of service `id` (`rvs_svc_st[id]`).
    pub(crate) fn svc_state(&self, id: u32) -> Result<SvcState, DataplaneError> {
        self.svc_st
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::SVC_ST, format_args!("get [{id}]"), e))
    }

    /// The timeouts (`rvs_timeouts[0]`).
    pub(crate) fn timeouts(&self) -> Result<Timeouts, DataplaneError> {
        self.timeouts
            .get(&0, 0)
            .map_err(|e| DataplaneError::map(map::TIMEOUTS, "get [0]", e))
    }

    /// The global switches.
    pub(crate) fn cfg(&self) -> Result<Cfg, DataplaneError> {
        self.cfg
            .get(&0, 0)
            .map_err(|e| DataplaneError::map(map::CFG, "get [0]", e))
    }

    /// Lets the data plane redirect to `ifindex` (idempotent). The kernel refuses an ifindex that
    /// names no device of the caller's network namespace.
    pub(crate) fn set_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| match e {
                XdpMapError::MapError(e) => {
                    DataplaneError::map(map::TX_PORTS, format_args!("insert [{ifindex}]"), e)
                }
                // Only possible with a chained program, which is never passed.
                other => DataplaneError::io(
                    "insert into rvs_tx_ports",
                    map::TX_PORTS,
                    std::io::Error::new(std::io::ErrorKind::Unsupported, other.to_string()),
                ),
            })
    }

    /// The interfaces in rvs_tx_ports, ascending.
    pub(crate) fn tx_ports(&self) -> Result<Vec<u32>, DataplaneError> {
        let mut v = self
            .tx_ports
            .keys()
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|e| DataplaneError::map(map::TX_PORTS, "iterate", e))?;
        v.sort_unstable();
        Ok(v)
    }

    /// Replaces the test routes (rvs_test_fib) with `routes`.
    pub(crate) fn set_test_fib<'a>(
        &mut self,
        routes: impl IntoIterator<Item = (&'a TestFibKey, &'a TestFib)>,
    ) -> Result<(), DataplaneError> {
        let old = self
            .test_fib
            .keys()
            .collect::<Result<Vec<TestFibKey>, _>>()
            .map_err(|e| DataplaneError::map(map::TEST_FIB, "iterate", e))?;
        for k in old {
            self.test_fib
                .remove(&k)
                .map_err(|e| DataplaneError::map(map::TEST_FIB, format_args!("delete {k:?}"), e))?;
        }
        for (k, v) in routes {
            self.test_fib
                .insert(k, v, 0)
                .map_err(|e| DataplaneError::map(map::TEST_FIB, format_args!("insert {k:?}"), e))?;
        }
        Ok(())
    }

    /// Every service.
    pub(crate) fn services(&self) -> Result<Vec<(SvcKey, SvcVal)>, DataplaneError> {
        self.svc
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|e| DataplaneError::map(map::SVC, "iterate", e))
    }

    /// Dest slot `id`, valid or not.
    pub(crate) fn dest(&self, id: u32) -> Result<DestVal, DataplaneError> {
        self.dest
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::DEST, format_args!("get [{id}]"), e))
    }

    /// Every slot holding `DEST_F_VALID`, by id; read in batches of [`CHUNK`] slots (rvs_dest has
    /// `MAX_DEST` of them).
    pub(crate) fn dests(&self) -> Result<Vec<(u32, DestVal)>, DataplaneError> {
        let mut out = Vec::new();
        batch::lookup_batch::<u32, DestVal>(self.dest.map().fd().as_fd(), CHUNK, |ids, vals| {
            out.extend(
                ids.iter()
                    .copied()
                    .zip(vals.iter().copied())
                    .filter(|(_, v)| v.flags & DEST_F_VALID != 0),
            );
        })
        .map_err(|e| DataplaneError::syscall(map::DEST, "batch lookup", e))?;
        Ok(out)
    }

    /// Scheduler slots `range`.
    pub(crate) fn sched(&self, range: std::ops::Range<u32>) -> Result<Vec<u32>, DataplaneError> {
        range
            .map(|s| {
                self.sched
                    .get(&s, 0)
                    .map_err(|e| DataplaneError::map(map::SCHED, format_args!("get [{s}]"), e))
            })
            .collect()
    }

    /// Scheduler state of service `id`.
    pub(crate) fn svc_st(&self, id: u32) -> Result<SvcState, DataplaneError> {
        self.svc_st
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::SVC_ST, format_args!("get [{id}]"), e))
    }

    /// Per-CPU counters of service `id`.
    pub(crate) fn svc_stats_percpu(&self, id: u32) -> Result<PerCpuValues<Stats>, DataplaneError> {
        self.svc_stats
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::SVC_STATS, format_args!("get [{id}]"), e))
    }

    /// Per-CPU counters of dest `id`.
    pub(crate) fn dest_stats_percpu(&self, id: u32) -> Result<PerCpuValues<Stats>, DataplaneError> {
        self.dest_stats
            .get(&id, 0)
            .map_err(|e| DataplaneError::map(map::DEST_STATS, format_args!("get [{id}]"), e))
    }

    /// Per-CPU drop counters of every reason.
    pub(crate) fn drops_percpu(&self) -> Result<Vec<(DropReason, PerCpuValues<u64>)>, DataplaneError> {
        DropReason::ALL
            .iter()
            .map(|&r| {
                let idx = r as u32;
                let v = self
                    .drops
                    .get(&idx, 0)
                    .map_err(|e| DataplaneError::map(map::DROPS, format_args!("get [{}]", r.name()), e))?;
                Ok((r, v))
            })
            .collect()
    }

    /// Every entry of rvs_conn, NAT reply entries included, read [`CHUNK`] entries per syscall and handed
    /// to `f` one chunk at a time; returns how many. The table changes while it is read (the data
    /// plane inserts, the LRU evicts): an entry added or removed meanwhile may or may not be seen, and
    /// none is seen twice (see [`crate::batch`]).
    pub(crate) fn conn_entry_chunks(
        &self,
        mut f: impl FnMut(&[(ConnKey, ConnVal)]),
    ) -> Result<usize, DataplaneError> {
        let mut pairs = Vec::with_capacity(CHUNK);
        batch::lookup_batch::<ConnKey, ConnVal>(self.conn_fd(), CHUNK, |keys, vals| {
            pairs.clear();
            pairs.extend(keys.iter().copied().zip(vals.iter().copied()));
            f(&pairs);
        })
        .map_err(|e| DataplaneError::syscall(map::CONN, "batch lookup", e))
    }

    /// Entries of rvs_conn from `from` on, chunk by chunk as [`Maps::conn_entry_chunks`], until at least
    /// `max` were read or the table ends; returns how many and where the next slice starts (`None`:
    /// the walk reached the end). See [`batch::lookup_batch_from`] for why the cursor survives deletes.
    pub(crate) fn conn_entry_slice(
        &self,
        from: ConnCursor,
        max: usize,
        mut f: impl FnMut(&[(ConnKey, ConnVal)]),
    ) -> Result<(usize, Option<ConnCursor>), DataplaneError> {
        let mut pairs = Vec::with_capacity(CHUNK.min(max.max(1)));
        let (n, next) = batch::lookup_batch_from::<ConnKey, ConnVal>(
            self.conn_fd(),
            CHUNK,
            from.bucket(),
            max,
            |keys, vals| {
                pairs.clear();
                pairs.extend(keys.iter().copied().zip(vals.iter().copied()));
                f(&pairs);
            },
        )
        .map_err(|e| DataplaneError::syscall(map::CONN, "batch lookup", e))?;
        Ok((n, next.map(ConnCursor::at_bucket)))
    }

    /// The entry of `key` in rvs_conn, if any.
    pub(crate) fn conn_get(&self, key: &ConnKey) -> Result<Option<ConnVal>, DataplaneError> {
        match self.conn.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(DataplaneError::map(map::CONN, format_args!("get {key:?}"), e)),
        }
    }

    /// The connections, chunk by chunk as [`Maps::conn_entry_chunks`] reads them, without the NAT
    /// reply entries, which only index a connection by its real server's side (bpf/lib/conn.h).
    pub(crate) fn conn_chunks(
        &self,
        mut f: impl FnMut(&[(ConnKey, ConnVal)]),
    ) -> Result<usize, DataplaneError> {
        let mut conns = Vec::with_capacity(CHUNK);
        let mut n = 0;
        self.conn_entry_chunks(|chunk| {
            conns.clear();
            conns.extend(chunk.iter().filter(|(_, v)| v.flags & CONN_F_REPLY == 0));
            n += conns.len();
            f(&conns);
        })?;
        Ok(n)
    }

    /// Every entry of rvs_conn, NAT reply entries included (see [`Maps::conn_entry_chunks`]).
    pub(crate) fn conn_entries(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        let mut out = Vec::new();
        self.conn_entry_chunks(|c| out.extend_from_slice(c))?;
        Ok(out)
    }

    /// The connections: every entry but the NAT reply entries (see [`Maps::conn_chunks`]).
    pub(crate) fn conns(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        let mut out = Vec::new();
        self.conn_chunks(|c| out.extend_from_slice(c))?;
        Ok(out)
    }

    /// The kernel memory rvs_conn costs, in bytes: the `memlock` line of its fdinfo, which since Linux
    /// 6.4 is the map's own account of what it allocated (`htab_map_mem_usage`: buckets, the
    /// preallocated elements, the LRU lists), whether or not the entries are in use.
    pub(crate) fn conn_memlock(&self) -> Result<u64, DataplaneError> {
        let path = format!("/proc/self/fdinfo/{}", self.conn_fd().as_raw_fd());
        let text = std::fs::read_to_string(&path).map_err(|e| DataplaneError::io("read", &path, e))?;
        text.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                DataplaneError::io(
                    "find memlock in",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "no memlock line"),
                )
            })
    }

    fn conn_fd(&self) -> BorrowedFd<'_> {
        self.conn.map().fd().as_fd()
    }

    /// Inserts or replaces `keys[i] -> vals[i]`, [`CHUNK`] entries per syscall (tests and benchmarks;
    /// the data plane creates its own). Returns how many were written.
    pub(crate) fn set_conns(&mut self, keys: &[ConnKey], vals: &[ConnVal]) -> Result<usize, DataplaneError> {
        // BPF_ANY: insert or replace.
        batch::update_batch(self.conn_fd(), keys, vals, 0)
            .map_err(|e| DataplaneError::syscall(map::CONN, "batch update", e))
    }

    /// Deletes the connections `keys`, each with its NAT reply entry as [`Maps::delete_conn`] does; a
    /// key that is no longer there (evicted, or deleted meanwhile) is skipped. Returns how many entries
    /// of `keys` were deleted.
    ///
    /// Only a connection to a NAT real server has a reply entry, and finding it takes the connection's
    /// value. Without a NAT real server in rvs_dest (read in one batch), the keys go straight to
    /// BPF_MAP_DELETE_BATCH, [`CHUNK`] per syscall. With one, each key is looked up and deleted in one
    /// syscall (BPF_MAP_LOOKUP_AND_DELETE_ELEM), its reply entry checked with one lookup, and the reply
    /// entries deleted in batches.
    pub(crate) fn delete_conns(&mut self, keys: &[ConnKey]) -> Result<usize, DataplaneError> {
        let mut nat: StdHashMap<u32, DestVal> = StdHashMap::new();
        batch::lookup_batch::<u32, DestVal>(self.dest.map().fd().as_fd(), CHUNK, |ids, vals| {
            for (id, d) in ids.iter().zip(vals) {
                if d.flags & DEST_F_VALID != 0 && d.fwd == Fwd::Nat as u8 {
                    nat.insert(*id, *d);
                }
            }
        })
        .map_err(|e| DataplaneError::syscall(map::DEST, "batch lookup", e))?;
        let fd = self.conn_fd();
        if nat.is_empty() {
            return batch::delete_batch(fd, keys)
                .map_err(|e| DataplaneError::syscall(map::CONN, "batch delete", e));
        }
        let mut deleted = 0;
        let mut replies = Vec::new();
        for key in keys {
            let val: ConnVal = match batch::lookup_and_delete(fd, key) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    return Err(DataplaneError::syscall(
                        map::CONN,
                        format_args!("lookup and delete {key:?}"),
                        e,
                    ));
                }
            };
            deleted += 1;
            if val.flags & CONN_F_REPLY != 0 {
                continue;
            }
            if let Some(dest) = nat.get(&val.dest_id)
                && dest.svc_id == val.svc_id
            {
                let rkey = reply_key(key, dest);
                if let Ok(r) = self.conn.get(&rkey, 0)
                    && r.flags & CONN_F_REPLY != 0
                    && (r.dest_id, r.svc_id) == (val.dest_id, val.svc_id)
                {
                    replies.push(rkey);
                }
            }
        }
        batch::delete_batch(fd, &replies)
            .map_err(|e| DataplaneError::syscall(map::CONN, "batch delete", e))?;
        Ok(deleted)
    }

    /// Inserts or replaces a connection (tests and tools; the data plane creates its own).
    pub(crate) fn set_conn(&mut self, key: &ConnKey, val: &ConnVal) -> Result<(), DataplaneError> {
        self.conn
            .insert(key, val, 0)
            .map_err(|e| DataplaneError::map(map::CONN, format_args!("insert {key:?}"), e))
    }

    /// Deletes a connection, and the reply entry of a NAT connection with it; an absent entry is not an
    /// error (it may have just been evicted). The reply entry is found from the connection's real server
    /// as rvs_dest holds it now; one left behind by a real server that changed meanwhile names a dest the
    /// data plane no longer matches, and the LRU evicts it (it is the least recently used).
    pub(crate) fn delete_conn(&mut self, key: &ConnKey) -> Result<(), DataplaneError> {
        let val = match self.conn.get(key, 0) {
            Ok(v) => Some(v),
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(DataplaneError::map(map::CONN, format_args!("get {key:?}"), e)),
        };
        if let Some(val) = val
            && val.flags & CONN_F_REPLY == 0
        {
            let dest = self.dest(val.dest_id)?;
            if dest.flags & DEST_F_VALID != 0 && dest.fwd == Fwd::Nat as u8 && dest.svc_id == val.svc_id {
                let rkey = reply_key(key, &dest);
                if let Ok(r) = self.conn.get(&rkey, 0)
                    && r.flags & CONN_F_REPLY != 0
                    && (r.dest_id, r.svc_id) == (val.dest_id, val.svc_id)
                {
                    self.remove_conn(&rkey)?;
                }
            }
        }
        self.remove_conn(key)
    }

    fn remove_conn(&mut self, key: &ConnKey) -> Result<(), DataplaneError> {
        match self.conn.remove(key) {
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map_err(|e| DataplaneError::map(map::CONN, format_args!("delete {key:?}"), e)),
        }
    }

    /// Writes the test inputs (rvs_test_env[0]).
    pub(crate) fn set_test_env(&mut self, env: &TestEnv) -> Result<(), DataplaneError> {
        self.test_env
            .set(0, env, 0)
            .map_err(|e| DataplaneError::map(map::TEST_ENV, "set [0]", e))
    }
}

/// The key of the reply entry of the NAT connection `key` to `dest` (`rvs_conn_reply_key`,
/// bpf/lib/conn.h): the real server's address and port (the virtual port for a real server of port 0,
/// as `rvs_conn_rport`) to the client's.
pub(crate) fn reply_key(key: &ConnKey, dest: &DestVal) -> ConnKey {
    ConnKey {
        saddr: dest.addr,
        daddr: key.saddr,
        sport: if dest.port.get() != 0 {
            dest.port
        } else {
            key.dport
        },
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// Writes zero for `id` on every possible CPU (a per-CPU update writes all CPUs at once).
fn clear_percpu(
    m: &mut PerCpuArray<MapData, Stats>,
    name: &'static str,
    id: u32,
) -> Result<(), DataplaneError> {
    let ncpu = aya::util::nr_cpus().map_err(|(path, e)| DataplaneError::io("read", path, e))?;
    let zero = PerCpuValues::try_from(vec![Stats::default(); ncpu])
        .map_err(|e| DataplaneError::io("size per-CPU value", "/sys/devices/system/cpu/possible", e))?;
    m.set(id, zero, 0)
        .map_err(|e| DataplaneError::map(name, format_args!("clear [{id}]"), e))
}
