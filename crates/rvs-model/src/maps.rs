//! The maps of bpf/include/rvs_maps.h, one field per map with the map's name, with the kernel's
//! semantics that the program can observe: `max_entries`, `BPF_NOEXIST`/`BPF_EXIST`, arrays that always
//! hold (zeroed) values, a full hash refusing new keys, per-CPU slots selected by the CPU.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use rvs_abi::{
    Cfg, ConnKey, ConnVal, DROP_MAX, DestCnt, DestVal, LBLC_MAX, LblcKey, LblcVal, MAX_DEST,
    MAX_MARK_PREFIXES, MAX_SVC, MAX_TX_PORTS, MapOp, MarkAddr, MarkKey, MarkVal, SCHED_SLOTS, Stats, SvcKey,
    SvcState, SvcVal, Timeouts, VIP_PRESENT, VipKey, addr_bytes,
};

/// `BPF_ANY`: create or replace.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: replace only.
pub const BPF_EXIST: u64 = 2;

/// Why a map operation failed, with the errno the kernel's helper returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// `-EEXIST`: `BPF_NOEXIST` on a present key (always, for arrays).
    Exists,
    /// `-ENOENT`: `BPF_EXIST` or delete on an absent key.
    NotFound,
    /// `-E2BIG`: hash map full, or array index out of range.
    Full,
    /// `-EINVAL`: bad flags, or delete on an array.
    Invalid,
}

impl MapError {
    /// The negative errno the kernel returns for this error.
    pub fn errno(self) -> i64 {
        match self {
            MapError::Exists => -17,
            MapError::NotFound => -2,
            MapError::Full => -7,
            MapError::Invalid => -22,
        }
    }
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MapError::Exists => "key exists (EEXIST)",
            MapError::NotFound => "no such key (ENOENT)",
            MapError::Full => "map full or index out of range (E2BIG)",
            MapError::Invalid => "invalid argument (EINVAL)",
        })
    }
}

impl std::error::Error for MapError {}

/// A `MapOp` that failed, with its position in the list given to [`Maps::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyError {
    /// Index of the failed op; the ops before it were applied.
    pub index: usize,
    /// The op.
    pub op: MapOp,
    /// The map's error.
    pub error: MapError,
}

impl core::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "map op {} ({:?}) failed: {}", self.index, self.op, self.error)
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn check_flags(flags: u64) -> Result<(), MapError> {
    if flags > BPF_EXIST {
        Err(MapError::Invalid)
    } else {
        Ok(())
    }
}

/// `BPF_MAP_TYPE_HASH` with preallocated entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashMapBpf<K: Eq + Hash, V> {
    max_entries: u32,
    entries: HashMap<K, V>,
}

impl<K: Eq + Hash + Copy, V: Copy> HashMapBpf<K, V> {
    /// An empty map of `max_entries` entries.
    pub fn new(max_entries: u32) -> Self {
        HashMapBpf {
            max_entries,
            entries: HashMap::new(),
        }
    }
    /// `bpf_map_lookup_elem`.
    pub fn lookup(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }
    /// `bpf_map_lookup_elem` for writing through the returned pointer.
    pub fn lookup_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key)
    }
    /// `bpf_map_update_elem`.
    ///
    /// # Errors
    /// As the kernel: `Exists`/`NotFound` for `BPF_NOEXIST`/`BPF_EXIST`, `Full` at `max_entries`.
    pub fn update(&mut self, key: K, val: V, flags: u64) -> Result<(), MapError> {
        check_flags(flags)?;
        let present = self.entries.contains_key(&key);
        match (flags, present) {
            (BPF_NOEXIST, true) => return Err(MapError::Exists),
            (BPF_EXIST, false) => return Err(MapError::NotFound),
            (_, false) if self.entries.len() >= self.max_entries as usize => return Err(MapError::Full),
            _ => {}
        }
        self.entries.insert(key, val);
        Ok(())
    }
    /// `bpf_map_delete_elem`.
    ///
    /// # Errors
    /// `NotFound` when absent.
    pub fn delete(&mut self, key: &K) -> Result<(), MapError> {
        self.entries.remove(key).map(|_| ()).ok_or(MapError::NotFound)
    }
    /// Every entry, in no particular order (as a kernel map dump).
    pub fn entries(&self) -> Vec<(K, V)> {
        self.entries.iter().map(|(k, v)| (*k, *v)).collect()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// `max_entries`.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
}

/// `BPF_MAP_TYPE_ARRAY`: every index below `max_entries` holds a value, zero until written. Stored
/// sparsely (only written slots), which keeps million-slot maps cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayMap<T> {
    max_entries: u32,
    slots: BTreeMap<u32, T>,
}

impl<T: Copy + Default + PartialEq> ArrayMap<T> {
    /// A zeroed array of `max_entries` slots.
    pub fn new(max_entries: u32) -> Self {
        ArrayMap {
            max_entries,
            slots: BTreeMap::new(),
        }
    }
    /// `bpf_map_lookup_elem`: `None` only for an index out of range.
    pub fn lookup(&self, idx: u32) -> Option<T> {
        (idx < self.max_entries).then(|| self.slots.get(&idx).copied().unwrap_or_default())
    }
    /// `bpf_map_lookup_elem` for writing through the returned pointer.
    pub fn lookup_mut(&mut self, idx: u32) -> Option<&mut T> {
        (idx < self.max_entries).then(|| self.slots.entry(idx).or_default())
    }
    /// `bpf_map_update_elem`.
    ///
    /// # Errors
    /// `Full` out of range, `Exists` for `BPF_NOEXIST` (array slots always exist).
    pub fn update(&mut self, idx: u32, val: T, flags: u64) -> Result<(), MapError> {
        check_flags(flags)?;
        if idx >= self.max_entries {
            return Err(MapError::Full);
        }
        if flags == BPF_NOEXIST {
            return Err(MapError::Exists);
        }
        self.slots.insert(idx, val);
        Ok(())
    }
    /// Indexes whose slot is not zero, ascending.
    pub fn nonzero(&self) -> Vec<(u32, T)> {
        self.slots
            .iter()
            .filter(|(_, v)| **v != T::default())
            .map(|(k, v)| (*k, *v))
            .collect()
    }
    /// `max_entries`.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
}

/// `BPF_MAP_TYPE_PERCPU_ARRAY`: one `ArrayMap` per CPU; the program sees its own CPU's slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerCpuArrayMap<T> {
    max_entries: u32,
    slots: BTreeMap<(u32, u32), T>,
}

impl<T: Copy + Default + PartialEq> PerCpuArrayMap<T> {
    /// A zeroed array of `max_entries` slots on every CPU.
    pub fn new(max_entries: u32) -> Self {
        PerCpuArrayMap {
            max_entries,
            slots: BTreeMap::new(),
        }
    }
    /// `bpf_map_lookup_elem` on CPU `cpu`.
    pub fn lookup(&self, cpu: u32, idx: u32) -> Option<T> {
        (idx < self.max_entries).then(|| self.slots.get(&(cpu, idx)).copied().unwrap_or_default())
    }
    /// `bpf_map_lookup_elem` on CPU `cpu`, for writing through the returned pointer.
    pub fn lookup_mut(&mut self, cpu: u32, idx: u32) -> Option<&mut T> {
        (idx < self.max_entries).then(|| self.slots.entry((cpu, idx)).or_default())
    }
    /// Zeroes slot `idx` on every CPU (a user-space update with zero values for all CPUs).
    ///
    /// # Errors
    /// `Full` out of range.
    pub fn clear(&mut self, idx: u32) -> Result<(), MapError> {
        if idx >= self.max_entries {
            return Err(MapError::Full);
        }
        self.slots.retain(|(_, i), _| *i != idx);
        Ok(())
    }
    /// CPU `cpu`'s non-zero slots, ascending.
    pub fn nonzero(&self, cpu: u32) -> Vec<(u32, T)> {
        self.slots
            .iter()
            .filter(|((c, _), v)| *c == cpu && **v != T::default())
            .map(|((_, i), v)| (*i, *v))
            .collect()
    }
    /// `max_entries`.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
}

/// The bytes of an `rvs_mark` key's data, in the order the kernel's trie compares them.
fn mark_bytes(d: &MarkAddr) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0] = d.family;
    out[1] = d.proto;
    out[2..4].copy_from_slice(&d._pad);
    out[4..].copy_from_slice(&addr_bytes(&d.addr));
    out
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8; 20], b: &[u8; 20], bits: u32) -> bool {
    (0..bits as usize).all(|i| {
        let m = 0x80u8 >> (i % 8);
        a[i / 8] & m == b[i / 8] & m
    })
}

/// A `BPF_MAP_TYPE_LPM_TRIE` keyed by [`MarkKey`]: an entry is its prefix length and the first that
/// many bits of its data (the kernel ignores the bits after them); a lookup with a full-length key finds
/// the entry with the longest prefix that matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LpmTrieMap<V> {
    entries: BTreeMap<(u32, [u8; 20]), (MarkKey, V)>,
    max_entries: u32,
}

impl<V: Copy> LpmTrieMap<V> {
    /// An empty trie of `max_entries`.
    pub fn new(max_entries: u32) -> Self {
        Self {
            entries: BTreeMap::new(),
            max_entries,
        }
    }

    fn norm(key: &MarkKey) -> Result<(u32, [u8; 20]), MapError> {
        if key.prefixlen > 160 {
            return Err(MapError::Invalid);
        }
        let mut b = mark_bytes(&key.data);
        for (i, byte) in b.iter_mut().enumerate() {
            let keep = key.prefixlen.saturating_sub(8 * i as u32).min(8);
            *byte &= !(0xffu16 >> keep) as u8;
        }
        Ok((key.prefixlen, b))
    }

    /// `bpf_map_update_elem` with `BPF_ANY`.
    ///
    /// # Errors
    /// A prefix length beyond the data, or a full trie.
    pub fn update(&mut self, key: MarkKey, val: V) -> Result<(), MapError> {
        let k = Self::norm(&key)?;
        if !self.entries.contains_key(&k) && self.entries.len() >= self.max_entries as usize {
            return Err(MapError::Full);
        }
        self.entries.insert(k, (key, val));
        Ok(())
    }

    /// `bpf_map_delete_elem`.
    ///
    /// # Errors
    /// No such entry.
    pub fn delete(&mut self, key: &MarkKey) -> Result<(), MapError> {
        let k = Self::norm(key)?;
        self.entries.remove(&k).map(drop).ok_or(MapError::NotFound)
    }

    /// `bpf_map_lookup_elem`: the value of the longest prefix that matches `key.data` within
    /// `key.prefixlen` bits.
    pub fn lookup(&self, key: &MarkKey) -> Option<&V> {
        let want = mark_bytes(&key.data);
        self.entries
            .iter()
            .filter(|((len, data), _)| *len <= key.prefixlen && prefix_eq(data, &want, *len))
            .max_by_key(|((len, _), _)| *len)
            .map(|(_, (_, v))| v)
    }

    /// Every entry, as written.
    pub fn entries(&self) -> Vec<(MarkKey, V)> {
        self.entries.values().copied().collect()
    }
}

/// Every map of the director, named as in bpf/include/rvs_maps.h.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maps {
    /// Virtual services.
    pub rvs_svc: HashMapBpf<SvcKey, SvcVal>,
    /// Service id -> the service's key (written with every `SvcSet`).
    pub rvs_svc_addr: ArrayMap<SvcKey>,
    /// Virtual addresses (echo requests to them are answered).
    pub rvs_vip: HashMapBpf<VipKey, u32>,
    /// Real servers by dest id.
    pub rvs_dest: ArrayMap<DestVal>,
    /// Scheduler tables: dest ids.
    pub rvs_sched: ArrayMap<u32>,
    /// Per-service scheduler cursor.
    pub rvs_svc_st: ArrayMap<SvcState>,
    /// lblc/lblcr: (service, destination address) -> real server(s).
    pub rvs_lblc: HashMapBpf<LblcKey, LblcVal>,
    /// Connections and NAT reply entries (a plain hash: a full table refuses new connections).
    pub rvs_conn: HashMapBpf<ConnKey, ConnVal>,
    /// Active, inactive and persistent connections and overload, per dest id.
    pub rvs_dest_cnt: ArrayMap<DestCnt>,
    /// Timeouts by state (`rvs_timeouts[0]`).
    pub rvs_timeouts: ArrayMap<Timeouts>,
    /// Per-CPU counters per service id.
    pub rvs_svc_stats: PerCpuArrayMap<Stats>,
    /// Per-CPU counters per dest id.
    pub rvs_dest_stats: PerCpuArrayMap<Stats>,
    /// Per-CPU drop counters per `DropReason`.
    pub rvs_drops: PerCpuArrayMap<u64>,
    /// Global switches (`rvs_cfg[0]`).
    pub rvs_cfg: ArrayMap<Cfg>,
    /// Devmap (hash) of the interfaces a redirect may use: ifindex -> ifindex. The kernel refuses an
    /// ifindex that names no device; the model cannot know, so its users insert only real ones.
    pub rvs_tx_ports: HashMapBpf<u32, u32>,
    /// Firewall marks: (family, protocol, address prefix) -> port ranges and marks.
    pub rvs_mark: LpmTrieMap<MarkVal>,
}

impl Maps {
    /// Empty maps with the sizes of rvs_maps.h; `conn_max` is `rvs_conn`'s `max_entries` (set by the
    /// loader).
    pub fn new(conn_max: u32) -> Self {
        Maps {
            rvs_svc: HashMapBpf::new(MAX_SVC),
            rvs_svc_addr: ArrayMap::new(MAX_SVC),
            rvs_vip: HashMapBpf::new(MAX_SVC),
            rvs_dest: ArrayMap::new(MAX_DEST),
            rvs_sched: ArrayMap::new(SCHED_SLOTS),
            rvs_svc_st: ArrayMap::new(MAX_SVC),
            rvs_lblc: HashMapBpf::new(LBLC_MAX),
            rvs_conn: HashMapBpf::new(conn_max),
            rvs_dest_cnt: ArrayMap::new(MAX_DEST),
            rvs_timeouts: ArrayMap::new(1),
            rvs_svc_stats: PerCpuArrayMap::new(MAX_SVC),
            rvs_dest_stats: PerCpuArrayMap::new(MAX_DEST),
            rvs_drops: PerCpuArrayMap::new(DROP_MAX),
            rvs_cfg: ArrayMap::new(1),
            rvs_tx_ports: HashMapBpf::new(MAX_TX_PORTS),
            rvs_mark: LpmTrieMap::new(MAX_MARK_PREFIXES),
        }
    }

    /// Applies `ops` in order, as the daemon's data plane does (a `SvcSet` also writes `rvs_svc_addr`).
    ///
    /// # Errors
    /// The first op a map refuses; the ops before it stay applied.
    #[allow(
        clippy::result_large_err,
        reason = "the error carries the refused op, whose MarkSet holds a whole rvs_mark value; errors are rare"
    )]
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), ApplyError> {
        for (index, op) in ops.iter().enumerate() {
            self.apply_one(op).map_err(|error| ApplyError {
                index,
                op: *op,
                error,
            })?;
        }
        Ok(())
    }

    fn apply_one(&mut self, op: &MapOp) -> Result<(), MapError> {
        match *op {
            MapOp::SvcSet { key, val } => {
                self.rvs_svc_addr.update(val.id, key, BPF_ANY)?;
                self.rvs_svc.update(key, val, BPF_ANY)
            }
            MapOp::SvcDel { key } => self.rvs_svc.delete(&key),
            MapOp::DestSet { id, val } => self.rvs_dest.update(id, val, BPF_ANY),
            MapOp::SchedSet { slot, dest_id } => self.rvs_sched.update(slot, dest_id, BPF_ANY),
            MapOp::SvcStateSet { id, val } => self.rvs_svc_st.update(id, val, BPF_ANY),
            MapOp::SvcStatsClear { id } => self.rvs_svc_stats.clear(id),
            MapOp::DestStatsClear { id } => self.rvs_dest_stats.clear(id),
            MapOp::CfgSet { val } => self.rvs_cfg.update(0, val, BPF_ANY),
            MapOp::DestCntClear { id } => self.rvs_dest_cnt.update(id, DestCnt::default(), BPF_ANY),
            MapOp::TimeoutsSet { val } => self.rvs_timeouts.update(0, val, BPF_ANY),
            MapOp::VipSet { key } => self.rvs_vip.update(key, VIP_PRESENT, BPF_ANY),
            // As the daemon's data plane: deleting an absent address leaves the same map.
            MapOp::VipDel { key } => match self.rvs_vip.delete(&key) {
                Err(MapError::NotFound) => Ok(()),
                r => r,
            },
            MapOp::MarkSet { key, val } => self.rvs_mark.update(key, val),
            // As the daemon's data plane: deleting an absent entry leaves the same map.
            MapOp::MarkDel { key } => match self.rvs_mark.delete(&key) {
                Err(MapError::NotFound) => Ok(()),
                r => r,
            },
            MapOp::LblcFlush { svc_id } => {
                for (key, _) in self.rvs_lblc.entries() {
                    if key.svc_id == svc_id {
                        self.rvs_lblc.delete(&key)?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_enforces_flags_and_max_entries() {
        let mut m = HashMapBpf::<u32, u32>::new(2);
        assert_eq!(m.update(1, 10, BPF_EXIST), Err(MapError::NotFound));
        m.update(1, 10, BPF_NOEXIST).unwrap();
        assert_eq!(m.update(1, 11, BPF_NOEXIST), Err(MapError::Exists));
        m.update(1, 11, BPF_EXIST).unwrap();
        m.update(2, 20, BPF_ANY).unwrap();
        assert_eq!(m.update(3, 30, BPF_ANY), Err(MapError::Full));
        m.update(2, 21, BPF_ANY).unwrap(); // replacing needs no room
        let mut e = m.entries();
        e.sort();
        assert_eq!(e, vec![(1, 11), (2, 21)]);
        assert_eq!(m.delete(&3), Err(MapError::NotFound));
        assert_eq!(m.update(3, 30, 4), Err(MapError::Invalid));
    }

    #[test]
    fn array_slots_exist_and_are_bounded() {
        let mut a = ArrayMap::<u32>::new(4);
        assert_eq!(a.lookup(3), Some(0));
        assert_eq!(a.lookup(4), None);
        assert_eq!(a.update(4, 1, BPF_ANY), Err(MapError::Full));
        assert_eq!(a.update(0, 1, BPF_NOEXIST), Err(MapError::Exists));
        a.update(2, 7, BPF_EXIST).unwrap();
        *a.lookup_mut(1).unwrap() += 5;
        assert_eq!(a.nonzero(), vec![(1, 5), (2, 7)]);
    }

    #[test]
    fn percpu_slots_are_per_cpu() {
        let mut a = PerCpuArrayMap::<u64>::new(3);
        *a.lookup_mut(0, 1).unwrap() += 1;
        *a.lookup_mut(1, 1).unwrap() += 2;
        assert_eq!(a.lookup(0, 1), Some(1));
        assert_eq!(a.nonzero(1), vec![(1, 2)]);
        a.clear(1).unwrap();
        assert_eq!(a.lookup(1, 1), Some(0));
        assert!(a.lookup_mut(0, 3).is_none());
    }

    #[test]
    fn lpm_trie_finds_the_longest_matching_prefix() {
        let key = |prefixlen: u32, a: [u8; 4]| MarkKey {
            prefixlen,
            data: MarkAddr {
                family: 1,
                proto: 6,
                _pad: [0; 2],
                addr: rvs_abi::addr_v4(a),
            },
        };
        let mut t = LpmTrieMap::<u32>::new(2);
        t.update(key(32 + 24, [198, 18, 0, 0]), 24).unwrap();
        // Bits after the prefix do not count: this is the same /24 entry.
        t.update(key(32 + 24, [198, 18, 0, 9]), 25).unwrap();
        t.update(key(32 + 32, [198, 18, 0, 100]), 32).unwrap();
        assert_eq!(t.update(key(32 + 16, [198, 18, 0, 0]), 16), Err(MapError::Full));
        assert_eq!(t.lookup(&key(64, [198, 18, 0, 100])), Some(&32));
        assert_eq!(t.lookup(&key(64, [198, 18, 0, 7])), Some(&25));
        assert_eq!(t.lookup(&key(64, [198, 18, 1, 7])), None);
        t.delete(&key(32 + 32, [198, 18, 0, 100])).unwrap();
        assert_eq!(t.lookup(&key(64, [198, 18, 0, 100])), Some(&25));
        assert_eq!(
            t.delete(&key(32 + 32, [198, 18, 0, 100])),
            Err(MapError::NotFound)
        );
    }

    #[test]
    fn apply_stops_at_first_refused_op() {
        let mut m = Maps::new(16);
        let ops = [
            MapOp::SchedSet { slot: 0, dest_id: 3 },
            MapOp::SvcDel {
                key: SvcKey::default(),
            },
            MapOp::SchedSet { slot: 1, dest_id: 4 },
        ];
        let err = m.apply(&ops).unwrap_err();
        assert_eq!((err.index, err.error), (1, MapError::NotFound));
        assert_eq!(m.rvs_sched.nonzero(), vec![(0, 3)]);
    }
}
