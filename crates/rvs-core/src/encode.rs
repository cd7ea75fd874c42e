//! The single place where configuration becomes map operations.
//!
//! [`Encoder`] remembers what it last wrote to the maps (its "image") and [`Encoder::sync`] turns the maps
//! into a [`Table`]'s image with the fewest [`MapOp`]s, in an order that never lets a packet see a
//! half-made change:
//!
//! - A service keeps its id and a real server its dest id for as long as they exist (connections in
//!   `rvs_conn` refer to both); new ids are taken next-fit so that a freed id is reused as late as possible.
//! - A scheduler table is never rewritten in place: the new one goes to a fresh region of `rvs_sched`
//!   (`SchedSet`s), then one `SvcSet` switches `sched_base`/`sched_len`, then the old region is freed.
//! - A new service gets `SvcStateSet{pos: 0}`, `SvcStatsClear` and `LblcFlush` before its `SvcSet`;
//!   a new dest gets `DestStatsClear` and `DestCntClear` before its `DestSet`, and all come before any
//!   table that names it. A new dest also gets a new generation (`DestVal::dgen`): connections left
//!   over from the real server that had its id before no longer count for it, nor reach it.
//! - An rr or wrr service whose real servers or scheduler change gets a `SvcStateSet` after the `SvcSet`
//!   that switches its table (or alone, when the table stays): the cursor where IPVS's would be after that
//!   change ([`Encoder::sync_with_cursors`], which reads the cursor first).
//! - Count-driven schedulers (lc, wlc, sed, nq, fo, ovf, twos, lblc, lblcr) get a table that lists the
//!   service's real servers in IPVS's list order; the data plane scans it and reads their counters.
//! - A removed service goes with `SvcDel` first; its dests (and removed dests of a live service, after
//!   the `SvcSet` that drops them from the table) are then freed with a zero `DestSet`. A removed
//!   service, and one whose scheduler changes (after its `SvcSet`), gets `LblcFlush`.
//! - `rvs_cfg`'s `CFG_F_NAT` (look up replies of NAT connections) is set by the first op of a sync that
//!   adds the first NAT real server, before any table can name it, and cleared by the last op of the
//!   sync that removes the last one, after every table stopped naming it.
//!
//! - `rvs_vip` holds the address of every service (any port and protocol): a `VipSet` for a new address
//!   comes at the start of the sync that adds its first service, a `VipDel` at the end of the sync that
//!   removes its last one. Only echo requests read it (bpf/lib/icmp.h).
//!
//! NAT real servers get no neighbour: the data plane asks the kernel's FIB for the next hop of every
//! NAT packet (bpf/lib/fib.h), so their `DestVal` has no MACs, no ifindex and no `DEST_F_NEIGH`, and a
//! neighbour change never rewrites it. `DEST_F_NEIGH` keeps one meaning: `dmac`, `smac` and `ifindex`
//! hold a resolved next hop, which only the methods that read them (DR) need.

mod alloc;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_abi::{
    Be16, CFG_F_NAT, CFG_F_PORT0, CFG_F_QUIESCENT, Cfg, DEST_F_NEIGH, DEST_F_OGEN_MASK, DEST_F_OGEN_SHIFT,
    DEST_F_VALID, DestVal, Family, Fwd, MARK_RANGES, MAX_DEST, MAX_MARK_PREFIXES, MAX_SVC, MapOp, MarkAddr,
    MarkKey, MarkRange, MarkVal, SCHED_NO_DEST, SCHED_SLOTS, SVC_F_ONEPACKET, SVC_F_PERSISTENT,
    SVC_F_SCHED_FALLBACK, SVC_F_SCHED_PORT, Sched, SvcKey, SvcState, SvcVal, VipKey, addr_bytes, addr_v4,
    addr_v6,
};

use crate::domain::{ApplyError, Dest, DestKey, FwdMethod, MarkMatch, Protocol, Service, ServiceKey};
use crate::sched;
use crate::sched::hash::Af;
use crate::sched::mh::{MhDest, last_weight_after};
use crate::sched::sh::{HashFlags, SH_TAB_SIZE};
use crate::table::{ServiceEntry, Table};
use alloc::{IdAlloc, Regions};

/// How to reach a real server at layer 2: what direct routing writes into the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The real server's MAC (the frame's new destination).
    pub dmac: [u8; 6],
    /// The director's MAC on `ifindex` (the frame's new source).
    pub smac: [u8; 6],
    /// Interface toward the real server.
    pub ifindex: u32,
    /// The director's source address on the route toward the real server: a tunnel's outer source.
    /// `None` until known; only VS/TUN reads it.
    pub laddr: Option<IpAddr>,
    /// MTU of the route toward the real server (its `mtu` metric, else the interface's); 0 = unknown.
    /// Only VS/TUN reads it.
    pub mtu: u32,
}

/// Turns a [`Table`] into map operations, remembering what the maps hold (see the module docs).
#[derive(Clone, Debug)]
pub struct Encoder {
    /// Services in the maps, by their map key.
    svcs: HashMap<SvcKey, SvcImage>,
    /// Valid `rvs_dest` slots as last written.
    dests: HashMap<u32, DestVal>,
    /// `rvs_cfg[0]` as last written.
    cfg: Cfg,
    /// `rvs_vip` as last written.
    vips: HashSet<VipKey>,
    /// `rvs_mark` as last written.
    marks: HashMap<MarkKey, MarkVal>,
    /// Services found by `adopt` that this encoder cannot own (duplicate or out-of-range id): the next
    /// sync deletes them before anything else.
    foreign: Vec<SvcKey>,
    svc_ids: IdAlloc,
    dest_ids: IdAlloc,
    slots: Regions,
    /// The generation the next new dest gets (never 0, so that a zeroed slot matches no connection).
    next_dgen: u32,
    /// IPVS's expire_quiescent_template, a daemon setting written with `rvs_cfg`.
    quiescent: bool,
    /// IPVS's lblcr_expiration in seconds, a daemon setting written with `rvs_cfg`.
    lblcr_exp_s: u32,
}

#[derive(Clone, Debug)]
struct SvcImage {
    /// The `SvcVal` in the map.
    val: SvcVal,
    /// Dest ids of the service's real servers.
    dests: HashMap<DestKey, u32>,
    /// The region of `rvs_sched` this service owns (`None` for an empty table).
    region: Option<(u32, u32)>,
    /// What the region holds, or `Adopted` when it was found in the maps and not read.
    table: TableImage,
    /// Each real server's IPVS `last_weight` (the last non-zero weight an edit gave it), which `mh`
    /// builds its table from so that quiescing a real does not reshuffle the others.
    last_weights: HashMap<DestKey, u32>,
    /// The real servers (list order) the rr/wrr table in the maps was built from; `None` when not
    /// known (adopted), and then a change leaves the cursor where it is.
    list: Option<Vec<Dest>>,
    /// The cursor this encoder last wrote for wrr and the `cw` it stands for: the list head with that
    /// `cw`, which the cursor alone cannot tell from the pick before it (see [`sched::wrr_cw_at`]).
    cursor_set: Option<(u64, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TableImage {
    Known(Vec<u32>),
    /// Must be rewritten whatever it holds.
    Stale,
    /// Found by `adopt`: assumed to be the table of these (sched, sorted (dest id, weight)) — what the
    /// encoder that wrote it computed — until any of them changes.
    Adopted(u32, Vec<(u32, u32)>),
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder for empty maps.
    pub fn new() -> Self {
        Self {
            svcs: HashMap::new(),
            dests: HashMap::new(),
            cfg: Cfg::default(),
            vips: HashSet::new(),
            marks: HashMap::new(),
            foreign: Vec::new(),
            svc_ids: IdAlloc::new(MAX_SVC),
            dest_ids: IdAlloc::new(MAX_DEST),
            slots: Regions::new(SCHED_SLOTS),
            next_dgen: 1,
            quiescent: false,
            lblcr_exp_s: LBLC_EXPIRATION_DEFAULT_S,
        }
    }

    /// Sets IPVS's `lblcr_expiration` (24 hours by default, as in IPVS): an lblcr set of more than
    /// one real server left unchanged that long loses its most loaded one. The next
    /// [`sync`](Self::sync) writes it.
    pub fn set_lblcr_expiration(&mut self, secs: u32) {
        self.lblcr_exp_s = secs;
    }

    /// Sets IPVS's `expire_quiescent_template` (off by default, as in IPVS): with it, a persistence
    /// template whose real server has weight 0 is not used; the next [`sync`](Self::sync) writes it.
    pub fn set_expire_quiescent_template(&mut self, on: bool) {
        self.quiescent = on;
    }

    /// An encoder for maps that already hold `svcs` and the valid `dests` (a daemon restarted over a
    /// pinned data plane), so that syncing the table that produced them emits nothing.
    ///
    /// Ids and regions are taken over as they are. The content of `rvs_sched` is not read: a region is
    /// assumed to hold the table of its service's dests and weights until one of them changes, even if
    /// the restored table lists the dests in another order (`-S` sorts them; the running order is kept).
    /// Entries this encoder cannot own (unknown protocol, duplicate ids, overlapping regions, dests of no
    /// service) are removed or rewritten by the next [`sync`](Self::sync).
    ///
    /// `rvs_cfg` is assumed to hold what an encoder derives from these dests (`CFG_F_NAT` when one is NAT),
    /// and `rvs_vip` the addresses of these services: the same encoder wrote them all, and a data plane
    /// whose pins lack `rvs_cfg` or `rvs_vip` is not adopted (it is reloaded, and the daemon then syncs
    /// into fresh maps).
    pub fn adopt(svcs: &[(SvcKey, SvcVal)], dests: &[(u32, DestVal)]) -> Self {
        let mut enc = Self::new();
        let mut sorted: Vec<&(SvcKey, SvcVal)> = svcs.iter().collect();
        sorted.sort_by_key(|(_, v)| v.id);
        let mut by_id: HashMap<u32, SvcKey> = HashMap::new();
        for &(key, val) in sorted {
            if enc.svcs.contains_key(&key) {
                continue;
            }
            if !enc.svc_ids.claim(val.id) {
                enc.foreign.push(key);
                continue;
            }
            let region = (val.sched_len > 0).then_some((val.sched_base, val.sched_len));
            let owned = region.is_none_or(|(b, l)| enc.slots.claim(b, l));
            // A region overlapping another service's is rewritten elsewhere at the next sync, never freed.
            let table = if owned {
                TableImage::Adopted(val.sched, Vec::new())
            } else {
                TableImage::Stale
            };
            let region = if owned { region } else { None };
            by_id.insert(val.id, key);
            enc.svcs.insert(
                key,
                SvcImage {
                    val,
                    dests: HashMap::new(),
                    region,
                    table,
                    last_weights: HashMap::new(),
                    list: None,
                    cursor_set: None,
                },
            );
        }
        let mut sorted: Vec<&(u32, DestVal)> = dests.iter().collect();
        sorted.sort_by_key(|(id, _)| *id);
        for &(id, val) in sorted {
            if val.flags & DEST_F_VALID == 0 || !enc.dest_ids.claim(id) {
                continue;
            }
            // Even a dest of no service takes its slot: the next sync frees it.
            enc.dests.insert(id, val);
            let (Some(svc), Some(dkey)) = (by_id.get(&val.svc_id), dest_key(&val)) else {
                continue;
            };
            if let Some(img) = enc.svcs.get_mut(svc)
                && let std::collections::hash_map::Entry::Vacant(e) = img.dests.entry(dkey)
            {
                e.insert(id);
                if let TableImage::Adopted(_, sig) = &mut img.table {
                    sig.push((id, val.weight));
                }
            }
        }
        for img in enc.svcs.values_mut() {
            if let TableImage::Adopted(_, sig) = &mut img.table {
                sig.sort_unstable();
            }
        }
        enc.cfg = cfg_of(
            enc.dests.values().any(|d| d.fwd == Fwd::Nat as u8),
            false,
            if enc.svcs.values().any(|img| img.val.sched == Sched::Lblcr as u32) {
                LBLC_EXPIRATION_DEFAULT_S
            } else {
                0
            },
            enc.svcs
                .keys()
                .any(|k| k.port.get() == 0 && k.proto != rvs_abi::SVC_PROTO_FWMARK),
        );
        enc.next_dgen = dests
            .iter()
            .map(|(_, d)| d.dgen)
            .max()
            .unwrap_or(0)
            .wrapping_add(1)
            .max(1);
        // Foreign services' addresses too: the next sync removes those no service keeps.
        enc.vips = svcs.iter().map(|(k, _)| VipKey::of(k)).collect();
        enc
    }

    /// The ops that turn the maps into `table`'s image; none when nothing changed. `neigh` resolves a
    /// real server's address; an unresolved one gives a `DestVal` without `DEST_F_NEIGH`. Call it again
    /// whenever a neighbour changes: only the dests whose value changes are rewritten.
    ///
    /// # Errors
    /// [`ApplyError::NoMemory`] when a map would overflow (`MAX_SVC` services, `MAX_DEST` dests,
    /// `SCHED_SLOTS` slots, counting a changed table's old and new regions together);
    /// [`ApplyError::SchedulerNotFound`] for a scheduler the data plane does not execute. On error the
    /// encoder is unchanged and the maps need no op.
    pub fn sync(
        &mut self,
        table: &Table,
        neigh: &dyn Fn(IpAddr) -> Option<Neighbor>,
    ) -> Result<Vec<MapOp>, ApplyError> {
        self.sync_with_cursors(table, neigh, &|_| None)
    }

    /// [`sync`](Self::sync), reading rr/wrr cursors (`rvs_svc_st[id].pos`) with `cursor`: a change of
    /// the real servers of an rr or wrr service then also moves its cursor where IPVS's would go
    /// (ip_vs_rr_del_dest, ip_vs_wrr_dest_changed), so that the picks go on as IPVS's. Without a
    /// cursor (`None`), an existing service's cursor is left where it is.
    ///
    /// The cursor is read now and written by the ops: a connection scheduled in between is not
    /// counted in the new cursor, as if it had come just before the change.
    ///
    /// # Errors
    /// As [`sync`](Self::sync).
    pub fn sync_with_cursors(
        &mut self,
        table: &Table,
        neigh: &dyn Fn(IpAddr) -> Option<Neighbor>,
        cursor: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<Vec<MapOp>, ApplyError> {
        let mut next = self.clone();
        let ops = next.sync_in_place(table, neigh, cursor)?;
        *self = next;
        Ok(ops)
    }

    /// The service's id in the maps (index of `rvs_svc_st` and `rvs_svc_stats`).
    pub fn svc_id(&self, key: &ServiceKey) -> Option<u32> {
        self.svcs.get(&svc_key(key)).map(|img| img.val.id)
    }

    /// The real server's dest id in the maps (index of `rvs_dest` and `rvs_dest_stats`).
    pub fn dest_id(&self, svc: &ServiceKey, dest: &DestKey) -> Option<u32> {
        self.svcs.get(&svc_key(svc))?.dests.get(dest).copied()
    }

    fn sync_in_place(
        &mut self,
        table: &Table,
        neigh: &dyn Fn(IpAddr) -> Option<Neighbor>,
        cursor: &dyn Fn(u32) -> Option<u64>,
    ) -> Result<Vec<MapOp>, ApplyError> {
        let mut ops = Vec::new();
        // Replies are looked up before the first NAT real server can be scheduled, and until the last
        // one is gone from every table.
        let want = cfg_of(
            table
                .services()
                .iter()
                .any(|e| e.dests.iter().any(|d| d.fwd == FwdMethod::Masq)),
            self.quiescent,
            // Written only while an lblcr service needs it, so that other configurations keep the
            // zero rvs_cfg they always had.
            if table.services().iter().any(|e| e.service.scheduler == "lblcr") {
                self.lblcr_exp_s
            } else {
                0
            },
            table
                .services()
                .iter()
                .any(|e| e.service.key.port == 0 && e.service.key.proto != Protocol::Fwmark),
        );
        // A switch that turns on (NAT reply lookups, port-0 lookups) does so before any table or
        // service can need it; one that turns off, after (the end of this sync).
        let early = Cfg {
            flags: self.cfg.flags | want.flags,
            ..want
        };
        if early != self.cfg {
            ops.push(MapOp::CfgSet { val: early });
            self.cfg = early;
        }
        for key in std::mem::take(&mut self.foreign) {
            ops.push(MapOp::SvcDel { key });
        }
        let wanted: HashSet<SvcKey> = table.services().iter().map(|e| svc_key(&e.service.key)).collect();
        let want_vips: HashSet<VipKey> = wanted.iter().map(VipKey::of).collect();
        let mut new_vips: Vec<VipKey> = want_vips.difference(&self.vips).copied().collect();
        new_vips.sort_unstable();
        for key in new_vips {
            ops.push(MapOp::VipSet { key });
            self.vips.insert(key);
        }
        let mut gone: Vec<(u32, SvcKey)> = self
            .svcs
            .iter()
            .filter(|(k, _)| !wanted.contains(*k))
            .map(|(k, img)| (img.val.id, *k))
            .collect();
        gone.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in gone {
            let Some(img) = self.svcs.remove(&key) else {
                continue;
            };
            ops.push(MapOp::SvcDel { key });
            ops.push(MapOp::LblcFlush { svc_id: img.val.id });
            let mut ids: Vec<u32> = img.dests.into_values().collect();
            ids.sort_unstable();
            for id in ids {
                self.free_dest(id, &mut ops);
            }
            if let Some((base, _)) = img.region {
                self.slots.free(base);
            }
            self.svc_ids.free(img.val.id);
        }
        for entry in table.services() {
            self.sync_service(entry, neigh, cursor, &mut ops)?;
        }
        // Dests adopted without an owner.
        let owned: HashSet<u32> = self
            .svcs
            .values()
            .flat_map(|img| img.dests.values().copied())
            .collect();
        let mut orphans: Vec<u32> = self
            .dests
            .keys()
            .filter(|id| !owned.contains(id))
            .copied()
            .collect();
        orphans.sort_unstable();
        for id in orphans {
            self.free_dest(id, &mut ops);
        }
        let mut old_vips: Vec<VipKey> = self.vips.difference(&want_vips).copied().collect();
        old_vips.sort_unstable();
        for key in old_vips {
            ops.push(MapOp::VipDel { key });
            self.vips.remove(&key);
        }
        if self.cfg != want {
            ops.push(MapOp::CfgSet { val: want });
            self.cfg = want;
        }
        self.sync_marks(table, &mut ops)?;
        Ok(ops)
    }

    /// `rvs_mark` to the table's marks: changed and new entries, then removed ones. An entry is one
    /// lookup's whole answer, so each packet sees either the old or the new ranges of its prefix.
    fn sync_marks(&mut self, table: &Table, ops: &mut Vec<MapOp>) -> Result<(), ApplyError> {
        let marks: BTreeMap<u32, Vec<MarkMatch>> =
            table.marks().into_iter().map(|m| (m.mark, m.matches)).collect();
        let want: HashMap<MarkKey, MarkVal> = mark_entries(&marks)?.into_iter().collect();
        let mut set: Vec<(MarkKey, MarkVal)> = want
            .iter()
            .filter(|(k, v)| self.marks.get(*k) != Some(*v))
            .map(|(k, v)| (*k, *v))
            .collect();
        set.sort_by_key(|(k, _)| mark_order(k));
        let mut del: Vec<MarkKey> = self
            .marks
            .keys()
            .filter(|k| !want.contains_key(*k))
            .copied()
            .collect();
        del.sort_by_key(mark_order);
        ops.extend(set.into_iter().map(|(key, val)| MapOp::MarkSet { key, val }));
        ops.extend(del.into_iter().map(|key| MapOp::MarkDel { key }));
        self.marks = want;
        Ok(())
    }

    fn sync_service(
        &mut self,
        entry: &ServiceEntry,
        neigh: &dyn Fn(IpAddr) -> Option<Neighbor>,
        cursor: &dyn Fn(u32) -> Option<u64>,
        ops: &mut Vec<MapOp>,
    ) -> Result<(), ApplyError> {
        let svc = &entry.service;
        let key = svc_key(&svc.key);
        let weights: Vec<u32> = entry.dests.iter().map(|d| d.weight).collect();
        let flags = HashFlags::from_names(&svc.sched_flags);
        let (kind, len) = match svc.scheduler.as_str() {
            "rr" => (Sched::Rr, sched::rr_len(&weights)),
            "wrr" => (Sched::Wrr, sched::wrr_len(&weights)),
            "sh" => (Sched::Sh, SH_TAB_SIZE as u64),
            "dh" => (Sched::Dh, SH_TAB_SIZE as u64),
            "mh" => (Sched::Mh, sched::mh::MH_TAB_SIZE as u64),
            "lc" => (Sched::Lc, weights.len() as u64),
            "wlc" => (Sched::Wlc, weights.len() as u64),
            "sed" => (Sched::Sed, weights.len() as u64),
            "nq" => (Sched::Nq, weights.len() as u64),
            "fo" => (Sched::Fo, weights.len() as u64),
            "ovf" => (Sched::Ovf, weights.len() as u64),
            "twos" => (Sched::Twos, weights.len() as u64),
            "lblc" => (Sched::Lblc, weights.len() as u64),
            "lblcr" => (Sched::Lblcr, weights.len() as u64),
            _ => return Err(ApplyError::SchedulerNotFound),
        };
        if len > u64::from(SCHED_SLOTS) {
            return Err(ApplyError::NoMemory);
        }
        let (mut img, old_val) = match self.svcs.remove(&key) {
            Some(img) => {
                let val = img.val;
                (img, Some(val))
            }
            None => {
                let id = self.svc_ids.alloc().ok_or(ApplyError::NoMemory)?;
                ops.push(MapOp::SvcStateSet {
                    id,
                    val: SvcState { pos: 0 },
                });
                ops.push(MapOp::SvcStatsClear { id });
                ops.push(MapOp::LblcFlush { svc_id: id });
                let val = SvcVal {
                    id,
                    ..SvcVal::default()
                };
                let img = SvcImage {
                    val,
                    dests: HashMap::new(),
                    region: None,
                    table: TableImage::Known(Vec::new()),
                    last_weights: HashMap::new(),
                    list: None,
                    cursor_set: None,
                };
                (img, None)
            }
        };
        let id = img.val.id;

        // Dests: new ones and changed ones now, removed ones once the table no longer names them.
        let mut removed = std::mem::take(&mut img.dests);
        let mut ids = vec![0; entry.dests.len()];
        // Oldest first, so that new ids follow the order the dests were added in.
        for (d, slot) in entry.dests.iter().zip(ids.iter_mut()).rev() {
            let (dest_id, dgen) = match removed.remove(&d.key) {
                Some(dest_id) => (dest_id, self.dests.get(&dest_id).map_or(0, |v| v.dgen)),
                None => {
                    let dest_id = self.dest_ids.alloc().ok_or(ApplyError::NoMemory)?;
                    ops.push(MapOp::DestStatsClear { id: dest_id });
                    ops.push(MapOp::DestCntClear { id: dest_id });
                    let dgen = self.next_dgen;
                    self.next_dgen = self.next_dgen.wrapping_add(1).max(1);
                    (dest_id, dgen)
                }
            };
            // NAT takes its next hop from the kernel's FIB per packet: no neighbour to ask for.
            let n = if d.fwd == FwdMethod::Masq {
                None
            } else {
                neigh(d.key.addr)
            };
            let mut val = dest_val(d, &entry.service, id, dgen, n);
            val.flags |= self
                .dests
                .get(&dest_id)
                .map_or(0, |old| ogen_after(old, d.u_threshold));
            if self.dests.get(&dest_id) != Some(&val) {
                ops.push(MapOp::DestSet { id: dest_id, val });
                self.dests.insert(dest_id, val);
            }
            img.dests.insert(d.key, dest_id);
            *slot = dest_id;
        }

        // mh's last_weight: an add sets it, an edit only to a non-zero weight.
        let old_last = std::mem::take(&mut img.last_weights);
        for d in &entry.dests {
            let last = match old_last.get(&d.key) {
                Some(&old) => last_weight_after(false, old, d.weight),
                None => d.weight,
            };
            img.last_weights.insert(d.key, last);
        }

        // The scheduler table, in a new region when its content changes.
        let new_table: Vec<u32> = match kind {
            // Every real server, weight 0 included, in list order: weights and counters change without
            // a table rewrite, and the data plane skips what is unavailable at the moment it schedules.
            Sched::Lc
            | Sched::Wlc
            | Sched::Sed
            | Sched::Nq
            | Sched::Fo
            | Sched::Ovf
            | Sched::Twos
            | Sched::Lblc
            | Sched::Lblcr => ids.clone(),
            Sched::Rr | Sched::Wrr => {
                let picks = if kind == Sched::Rr {
                    sched::rr_table(&weights)
                } else {
                    sched::wrr_table(&weights)
                };
                picks.iter().filter_map(|&i| ids.get(i).copied()).collect()
            }
            Sched::Sh | Sched::Dh | Sched::Mh => {
                let usable = |i: usize| weights.get(i).is_some_and(|&w| w > 0);
                let lookup: Vec<Option<usize>> = match kind {
                    Sched::Sh => {
                        sched::sh::sh_lookup_table(&sched::sh::sh_table(&weights), flags.fallback, usable)
                            .to_vec()
                    }
                    Sched::Dh => {
                        sched::dh::dh_lookup_table(&sched::dh::dh_table(weights.len()), usable).to_vec()
                    }
                    _ => {
                        let dests: Vec<MhDest> = entry
                            .dests
                            .iter()
                            .map(|d| MhDest {
                                addr: d.key.addr,
                                port: d.key.port,
                                last_weight: img.last_weights.get(&d.key).copied().unwrap_or(d.weight),
                            })
                            .collect();
                        let table = sched::mh::mh_table(Af::of(svc.key.addr), &dests)
                            .map_err(|_| ApplyError::NoMemory)?;
                        // mh-fallback probes by rehashing the address, which no per-slot table can
                        // hold: the data plane gets every slot's dest and checks weights itself.
                        if flags.fallback {
                            table
                        } else {
                            sched::mh::mh_lookup_table(&table, usable)
                        }
                    }
                };
                // No usable bucket at all is an empty table: the data plane drops NO_DEST either way.
                if lookup.iter().all(Option::is_none) {
                    Vec::new()
                } else {
                    lookup
                        .iter()
                        .map(|b| b.and_then(|i| ids.get(i).copied()).unwrap_or(SCHED_NO_DEST))
                        .collect()
                }
            }
        };
        // IPVS never schedules through a port-0 service that is not persistent ("port zero only
        // supported in persistent services"): no real server at all.
        let new_table = if svc.persistent.is_none() && svc.key.port == 0 && svc.key.proto != Protocol::Fwmark
        {
            Vec::new()
        } else {
            new_table
        };
        let unchanged = match &img.table {
            TableImage::Known(t) => *t == new_table,
            TableImage::Stale => false,
            TableImage::Adopted(sched, sig) => {
                let mut now: Vec<(u32, u32)> = ids
                    .iter()
                    .zip(entry.dests.iter())
                    .map(|(&i, d)| (i, d.weight))
                    .collect();
                now.sort_unstable();
                // A hashed table also depends on the flags and (mh) on last weights, which the maps do
                // not hold: it is rewritten once after a restart.
                // A count-driven table lists the same dests whatever their weights (its order only
                // breaks ties, and the running order is kept).
                let same = if kind.counts() {
                    sig.iter().map(|(i, _)| *i).eq(now.iter().map(|(i, _)| *i))
                } else {
                    *sig == now
                };
                (matches!(kind, Sched::Rr | Sched::Wrr) || kind.counts())
                    && *sched == kind as u32
                    && same
                    && img.val.sched_len as usize == new_table.len()
            }
        };
        let mut val = SvcVal {
            id,
            flags: if svc.persistent.is_some() {
                SVC_F_PERSISTENT
            } else {
                0
            } | if flags.port && matches!(kind, Sched::Sh | Sched::Mh) {
                SVC_F_SCHED_PORT
            } else {
                0
            } | if flags.fallback && kind == Sched::Mh {
                SVC_F_SCHED_FALLBACK
            } else {
                0
            } | if svc.ops && svc.key.proto != Protocol::Tcp {
                // IPVS clears -o for TCP (and SCTP); a firewall-mark service keeps it for its UDP.
                SVC_F_ONEPACKET
            } else {
                0
            },
            sched: kind as u32,
            sched_base: img.val.sched_base,
            sched_len: img.val.sched_len,
            persist_s: svc.persistent.unwrap_or(0),
            plen: u32::from(svc.netmask),
            _pad: 0,
        };
        let mut old_region = None;
        if !unchanged {
            old_region = img.region.take();
            (val.sched_base, val.sched_len) = (0, 0);
            if !new_table.is_empty() {
                let len = u32::try_from(new_table.len()).map_err(|_| ApplyError::NoMemory)?;
                let base = self.slots.alloc(len).ok_or(ApplyError::NoMemory)?;
                for (slot, &dest_id) in (base..).zip(&new_table) {
                    ops.push(MapOp::SchedSet { slot, dest_id });
                }
                (val.sched_base, val.sched_len) = (base, len);
                img.region = Some((base, len));
            }
            img.table = TableImage::Known(new_table);
        } else if let TableImage::Adopted(..) = img.table {
            img.table = TableImage::Known(new_table);
        }
        if old_val != Some(val) {
            ops.push(MapOp::SvcSet { key, val });
        }
        // A new scheduler starts without the old one's lblc/lblcr entries (IPVS's done_service frees
        // the table), once the data plane runs the new one and can create no more of them.
        if old_val.is_some_and(|o| o.sched != val.sched) {
            ops.push(MapOp::LblcFlush { svc_id: val.id });
        }
        // The cursor for the table now in force (a packet in between reads the new table with the old
        // cursor, as it would have a moment before the change).
        if let Some(pos) = rr_cursor(&mut img, old_val.as_ref(), kind, &entry.dests, cursor) {
            ops.push(MapOp::SvcStateSet {
                id,
                val: SvcState { pos },
            });
        }
        img.val = val;
        if let Some((base, _)) = old_region {
            self.slots.free(base);
        }
        let mut removed: Vec<u32> = removed.into_values().collect();
        removed.sort_unstable();
        for dest_id in removed {
            self.free_dest(dest_id, ops);
        }
        self.svcs.insert(key, img);
        Ok(())
    }

    fn free_dest(&mut self, id: u32, ops: &mut Vec<MapOp>) {
        ops.push(MapOp::DestSet {
            id,
            val: DestVal::default(),
        });
        self.dests.remove(&id);
        self.dest_ids.free(id);
    }
}

/// The ops that load `rules` (`ipvsadm -R` text) into empty maps: parse, apply to a fresh [`Table`], sync
/// a fresh [`Encoder`]. For tests and fixtures, which need maps exactly as the daemon would write them.
///
/// # Errors
/// The parse error with its line, the first refused command with its position, or a sync error.
pub fn from_rules(rules: &str, neigh: &dyn Fn(IpAddr) -> Option<Neighbor>) -> Result<Vec<MapOp>, String> {
    let cmds =
        crate::ipvsadm::parse_rules(rules).map_err(|(line, e)| format!("line {line}: {}", e.message))?;
    let mut table = Table::new();
    table
        .apply_all(&cmds)
        .map_err(|(i, e)| format!("command {} ({:?}): {e}", i + 1, cmds.get(i)))?;
    Encoder::new().sync(&table, neigh).map_err(|e| e.to_string())
}

/// A stable order of `rvs_mark` keys for the ops (the maps do not care).
fn mark_order(k: &MarkKey) -> (u8, u8, u32, [u8; 16]) {
    (k.data.family, k.data.proto, k.prefixlen, addr_bytes(&k.data.addr))
}

/// `addr` with the bits after `prefix` cleared.
pub fn mask_addr(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Whether `inner/inner_len` lies inside `outer/outer_len` (same family, `outer_len <= inner_len`).
fn covers(outer: IpAddr, outer_len: u8, inner: IpAddr, inner_len: u8) -> bool {
    outer.is_ipv4() == inner.is_ipv4() && outer_len <= inner_len && mask_addr(inner, outer_len) == outer
}

/// The `rvs_mark` entries of the declared marks (bpf/lib/mark.h): one per (family, protocol, prefix),
/// holding that prefix's port ranges (by first port) and then those of every shorter prefix that covers
/// it, longest first, so that the longest-prefix match alone answers and the most specific match wins.
///
/// # Errors
/// [`ApplyError::MarkTooManyRanges`] when an entry would hold more than `MARK_RANGES` ranges,
/// [`ApplyError::NoMemory`] beyond `MAX_MARK_PREFIXES` entries.
pub fn mark_entries(marks: &BTreeMap<u32, Vec<MarkMatch>>) -> Result<Vec<(MarkKey, MarkVal)>, ApplyError> {
    // (proto, addr, prefix) -> ranges
    let mut groups: BTreeMap<(u8, IpAddr, u8), Vec<MarkRange>> = BTreeMap::new();
    for (&mark, matches) in marks {
        for m in matches {
            let addr = mask_addr(m.addr, m.prefix);
            groups
                .entry((m.proto.number(), addr, m.prefix))
                .or_default()
                .push(MarkRange {
                    lo: m.port_lo,
                    hi: m.port_hi,
                    mark,
                });
        }
    }
    for ranges in groups.values_mut() {
        ranges.sort_by_key(|r| (r.lo, r.hi, r.mark));
        ranges.dedup();
    }
    if groups.len() > MAX_MARK_PREFIXES as usize {
        return Err(ApplyError::NoMemory);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (&(proto, addr, prefix), own) in &groups {
        let mut covering: Vec<(u8, &Vec<MarkRange>)> = groups
            .iter()
            .filter(|((p, a, l), _)| *p == proto && *l < prefix && covers(*a, *l, addr, prefix))
            .map(|((_, _, l), r)| (*l, r))
            .collect();
        covering.sort_by_key(|c| std::cmp::Reverse(c.0));
        let all: Vec<MarkRange> = own
            .iter()
            .chain(covering.into_iter().flat_map(|(_, r)| r.iter()))
            .copied()
            .collect();
        if all.len() > MARK_RANGES {
            return Err(ApplyError::MarkTooManyRanges);
        }
        let (a, family) = map_addr(addr);
        let mut val = MarkVal {
            n: all.len() as u32,
            ..MarkVal::default()
        };
        val.ranges[..all.len()].copy_from_slice(&all);
        out.push((
            MarkKey {
                prefixlen: 32 + u32::from(prefix),
                data: MarkAddr {
                    family: family as u8,
                    proto,
                    _pad: [0; 2],
                    addr: a,
                },
            },
            val,
        ));
    }
    Ok(out)
}

/// The `rvs_svc` key of a service.
pub fn svc_key(key: &ServiceKey) -> SvcKey {
    if let Some(mark) = key.mark() {
        let family = if key.addr.is_ipv6() {
            Family::Inet6
        } else {
            Family::Inet
        };
        return SvcKey::fwmark(mark, family);
    }
    let (addr, family) = map_addr(key.addr);
    SvcKey {
        addr,
        port: Be16::new(key.port),
        proto: key.proto.number(),
        family: family as u8,
    }
}

/// The service a `rvs_svc` key stands for, if rvs knows its protocol and family.
pub fn service_key(key: &SvcKey) -> Option<ServiceKey> {
    if let Some(mark) = key.mark() {
        return match key.family {
            f if f == Family::Inet as u8 => Some(ServiceKey::fwmark(mark, false)),
            f if f == Family::Inet6 as u8 => Some(ServiceKey::fwmark(mark, true)),
            _ => None,
        };
    }
    let proto = match key.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    Some(ServiceKey {
        proto,
        addr: ip_addr(&key.addr, key.family)?,
        port: key.port.get(),
    })
}

/// The real server a `rvs_dest` value stands for, if its family is known.
pub fn dest_key(val: &DestVal) -> Option<DestKey> {
    Some(DestKey {
        addr: ip_addr(&val.addr, val.family)?,
        port: val.port.get(),
    })
}

fn map_addr(addr: IpAddr) -> (rvs_abi::Addr, Family) {
    match addr {
        IpAddr::V4(a) => (addr_v4(a.octets()), Family::Inet),
        IpAddr::V6(a) => (addr_v6(a.octets()), Family::Inet6),
    }
}

fn ip_addr(addr: &rvs_abi::Addr, family: u8) -> Option<IpAddr> {
    let bytes = addr_bytes(addr);
    if family == Family::Inet as u8 {
        let [a, b, c, d, ..] = bytes;
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    } else if family == Family::Inet6 as u8 {
        Some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        None
    }
}

/// IPVS's default `lblc_expiration` and `lblcr_expiration`: 24 hours.
pub const LBLC_EXPIRATION_DEFAULT_S: u32 = 24 * 60 * 60;

/// `rvs_cfg[0]`: the switches and lblcr's expiration.
fn cfg_of(nat: bool, quiescent: bool, lblcr_exp_s: u32, port0: bool) -> Cfg {
    Cfg {
        flags: if nat { CFG_F_NAT } else { 0 }
            | if quiescent { CFG_F_QUIESCENT } else { 0 }
            | if port0 { CFG_F_PORT0 } else { 0 },
        lblcr_exp_s,
    }
}

/// Where the rr/wrr cursor of the service of `img` goes when its real servers become `dests`
/// (`None`: leave it), and what `img` remembers of it. IPVS's rules (ip_vs_rr.c, ip_vs_wrr.c):
///
/// - a new service, or one whose scheduler changes, starts at the list head: rr's `init_service`,
///   and wrr's with `cw = mw`, which is `ip_vs_wrr_dest_changed` from `cw = 0`; a new service's
///   cursor 0 is written with it and, built dest by dest, its `cw` is 1 (0 with no weight), both of
///   which the head of the table is;
/// - rr: a weight change moves nothing (the table lists weight-0 dests too), an add or a delete
///   keeps the cursor on the dest picked last or the nearest before it ([`sched::rr_pos_after`]);
/// - wrr: any add, edit or delete puts the cursor at the list head with the `cw` of
///   `ip_vs_wrr_dest_changed`, from the `cw` the cursor stands for.
///
/// An edit that changes nothing (ipvsadm -e with the same values) is not seen here, although IPVS's
/// wrr then also returns to the head.
fn rr_cursor(
    img: &mut SvcImage,
    old_val: Option<&SvcVal>,
    kind: Sched,
    dests: &[Dest],
    cursor: &dyn Fn(u32) -> Option<u64>,
) -> Option<u64> {
    let old_list = img.list.replace(dests.to_vec());
    if !matches!(kind, Sched::Rr | Sched::Wrr) {
        img.cursor_set = None;
        return None;
    }
    let weights: Vec<u32> = dests.iter().map(|d| d.weight).collect();
    let Some(old_val) = old_val else {
        // Its cursor 0 is already written (with the service's state).
        img.cursor_set = Some((0, wrr_cw_after(0, &[], dests)));
        return None;
    };
    if old_val.sched != kind as u32 {
        let cw = sched::wrr_cw_changed(0, &weights);
        let pos = if kind == Sched::Wrr {
            sched::wrr_pos_of(&weights, cw)
        } else {
            0
        };
        img.cursor_set = Some((pos, cw));
        return Some(pos);
    }
    // Without the old list or the cursor the state IPVS would be in is unknown: the cursor stays,
    // and what the encoder wrote last no longer says what it stands for.
    let Some(old) = old_list else {
        img.cursor_set = None;
        return None;
    };
    let keys = |l: &[Dest]| l.iter().map(|d| d.key).collect::<Vec<_>>();
    let (old_keys, new_keys) = (keys(&old), keys(dests));
    // rr moves only on an add or a delete; wrr on any change.
    let changed = if kind == Sched::Rr {
        old_keys != new_keys
    } else {
        old != dests
    };
    if !changed {
        return None;
    }
    let Some(pos) = cursor(img.val.id) else {
        img.cursor_set = None;
        return None;
    };
    if kind == Sched::Rr {
        return Some(sched::rr_pos_after(&old_keys, pos, &new_keys));
    }
    let cw = match img.cursor_set {
        Some((set, cw)) if set == pos => cw,
        _ => sched::wrr_cw_at(&old.iter().map(|d| d.weight).collect::<Vec<_>>(), pos),
    };
    let cw = wrr_cw_after(cw, &old, dests);
    let pos = sched::wrr_pos_of(&weights, cw);
    img.cursor_set = Some((pos, cw));
    Some(pos)
}

/// wrr's `cw` after the real servers change from `old` to `new` (list order), from `cw`: one
/// `ip_vs_wrr_dest_changed` per command, each on the list as that command left it (the result
/// depends on the weights in between), taking the commands of a batch as its deletes, then its edits,
/// then its adds, oldest first.
fn wrr_cw_after(mut cw: u32, old: &[Dest], new: &[Dest]) -> u32 {
    let mut list: Vec<&Dest> = old.iter().collect();
    let weights = |l: &[&Dest]| l.iter().map(|d| d.weight).collect::<Vec<_>>();
    for gone in old.iter().filter(|d| !new.iter().any(|n| n.key == d.key)) {
        list.retain(|d| d.key != gone.key);
        cw = sched::wrr_cw_changed(cw, &weights(&list));
    }
    for d in new {
        if let Some(slot) = list.iter_mut().find(|o| o.key == d.key)
            && *slot != d
        {
            *slot = d;
            cw = sched::wrr_cw_changed(cw, &weights(&list));
        }
    }
    for d in new.iter().rev().filter(|d| !old.iter().any(|o| o.key == d.key)) {
        list.insert(0, d);
        cw = sched::wrr_cw_changed(cw, &weights(&list));
    }
    cw
}

/// The overload generation bits (`DEST_F_OGEN_MASK`) of a real server whose slot holds `old` and
/// whose `-x` becomes `u_threshold`: one more when IPVS's `__ip_vs_update_dest` would clear OVERLOAD
/// (the new `-x` is 0 or higher than the old), which ends an OVERLOAD the data plane set under the
/// old generation. Setting 0 again when it is 0 needs no bump: OVERLOAD counts only while `-x` is set.
fn ogen_after(old: &DestVal, u_threshold: u32) -> u32 {
    let ogen = old.flags & DEST_F_OGEN_MASK;
    if u_threshold != old.u_thresh && (u_threshold == 0 || u_threshold > old.u_thresh) {
        ogen.wrapping_add(1 << DEST_F_OGEN_SHIFT) & DEST_F_OGEN_MASK
    } else {
        ogen
    }
}

/// The `rvs_dest` value of a real server of service `svc_id`. A TUN real server is marked resolved only
/// with its outer source (`laddr`, of the real server's family) and route MTU as well as the MACs: a
/// tunnel from the unspecified address would be dropped by the real server's stack. Other methods never
/// carry `laddr`/`mtu`, so a route MTU change does not rewrite their slots. The port is 0 (the data
/// plane then keeps the packet's destination port, bpf/lib/conn.h rvs_conn_rport) for the real servers
/// of a persistent service of port 0 or of a firewall mark: IPVS uses their port only for a packet to
/// the service's own port, 0 (ip_vs_sched_persist), so the ports the client used go through.
fn dest_val(d: &Dest, svc: &Service, svc_id: u32, dgen: u32, neigh: Option<Neighbor>) -> DestVal {
    let (addr, family) = map_addr(d.key.addr);
    let fwd = match d.fwd {
        FwdMethod::Route => Fwd::Dr,
        FwdMethod::Masq => Fwd::Nat,
        FwdMethod::Tunnel => Fwd::Tun,
    };
    let mut val = DestVal {
        addr,
        port: Be16::new(if svc.persistent.is_some() && svc.key.port == 0 {
            0
        } else {
            d.key.port
        }),
        family: family as u8,
        fwd: fwd as u8,
        weight: d.weight,
        svc_id,
        flags: DEST_F_VALID,
        dgen,
        u_thresh: d.u_threshold,
        l_thresh: d.l_threshold,
        ..DestVal::default()
    };
    let Some(n) = neigh else {
        return val;
    };
    if d.fwd == FwdMethod::Tunnel {
        let laddr = n.laddr.filter(|a| a.is_ipv4() == d.key.addr.is_ipv4());
        let (Some(laddr), mtu @ 1..) = (laddr, n.mtu) else {
            return val;
        };
        val.laddr = map_addr(laddr).0;
        val.mtu = mtu;
    }
    val.dmac = n.dmac;
    val.smac = n.smac;
    val.ifindex = n.ifindex;
    val.flags |= DEST_F_NEIGH;
    val
}
