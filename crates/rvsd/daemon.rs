//! The daemon: startup (restore, adopt or load, attach), the single loop that serialises every change,
//! and the operations behind the API.
//!
//! Invariant between requests: `table` is what the rules file says, and the maps hold
//! `encoder.sync(table, neigh)`. A change is committed only when it is in the maps and on disk; otherwise
//! both are put back. The same holds for the timeouts and the `-Z` baselines and `runtime.json`.
//!
//! `-Z` keeps IPVS's own design: the counters in the maps are never written; the daemon remembers
//! each service's and real server's counters at the time of `-Z` (a baseline, persisted so that a
//! restart keeps it) and shows the difference. Clearing the per-CPU slots instead would race with the
//! data plane's unlocked `+= 1` (an increment that read the old value before the clear writes it back
//! after it), and would hand the rate estimator counters that go backwards.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, anyhow};
use rvs_abi::{
    Addr, CONN_C_DEAD, CONN_F_INVALID, CONN_F_REPLY, CONN_F_TEMPLATE, ConnKey, ConnVal, DestCnt, Family,
    LblcKey, LblcVal, MapOp, Stats, SvcVal,
};
use rvs_api::{ConnSnap, DestSnap, Request, Response, ServiceSnap, Snapshot, StatsSnap, Timeouts};
use rvs_core::ipvsadm::MAX_TIMEOUT;
use rvs_core::{ApplyError, Command, DestKey, Protocol, ServiceKey};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::api::{self, Call};
use crate::backend::{
    Dataplane, DataplaneConfig, Encoder, Table, now_ns, parse_rules_with_lines, save_restorable,
};
use crate::config::Config;
use crate::conns;
use crate::estimator::{self, Estimator};
use crate::lblc;
use crate::neigh::{self, NeighMap, Resolver};
use crate::state::{Baseline, RulesFile, Runtime, RuntimeFile};
use crate::sweep::{self, ConnSink, ConnTable, Sweeper};

/// What the daemon needs from the data plane beyond the sweep's needs; implemented by
/// `rvs_dataplane::Dataplane`, and by a fake in tests.
pub(crate) trait Plane: ConnTable {
    fn apply(&mut self, ops: &[MapOp]) -> anyhow::Result<()>;
    fn svc_stats(&self, id: u32) -> anyhow::Result<Stats>;
    fn dest_stats(&self, id: u32) -> anyhow::Result<Stats>;
    /// Every entry of the connection table (NAT reply entries included), read and handed over one
    /// batch at a time; returns how many.
    fn conn_entry_chunks(&self, f: &mut ConnSink<'_>) -> anyhow::Result<usize>;
    /// The connection counters of a real server, exact as the data plane keeps them.
    fn dest_cnt(&self, id: u32) -> anyhow::Result<DestCnt>;
    /// The timeouts the data plane applies.
    fn set_timeouts(&mut self, t: &rvs_abi::Timeouts) -> anyhow::Result<()>;
    /// Every entry of the lblc/lblcr tables (rvs_lblc).
    fn lblc_entries(&self) -> anyhow::Result<Vec<(LblcKey, LblcVal)>>;
    /// Deletes entries of rvs_lblc (absent ones are skipped).
    fn lblc_delete(&mut self, keys: &[LblcKey]) -> anyhow::Result<()>;
    /// The rr/wrr cursor of service `id`, `None` when it cannot be read.
    fn svc_pos(&self, id: u32) -> Option<u64>;
}

impl Plane for Dataplane {
    fn apply(&mut self, ops: &[MapOp]) -> anyhow::Result<()> {
        Ok(Dataplane::apply(self, ops)?)
    }
    fn svc_stats(&self, id: u32) -> anyhow::Result<Stats> {
        Ok(Dataplane::svc_stats(self, id)?)
    }
    fn dest_stats(&self, id: u32) -> anyhow::Result<Stats> {
        Ok(Dataplane::dest_stats(self, id)?)
    }
    fn conn_entry_chunks(&self, f: &mut ConnSink<'_>) -> anyhow::Result<usize> {
        Ok(Dataplane::conn_entry_chunks(self, f)?)
    }
    fn dest_cnt(&self, id: u32) -> anyhow::Result<DestCnt> {
        Ok(Dataplane::dest_cnt(self, id)?)
    }
    fn set_timeouts(&mut self, t: &rvs_abi::Timeouts) -> anyhow::Result<()> {
        Ok(Dataplane::set_timeouts(self, t)?)
    }
    fn lblc_entries(&self) -> anyhow::Result<Vec<(LblcKey, LblcVal)>> {
        Ok(Dataplane::lblc_entries(self)?)
    }
    fn lblc_delete(&mut self, keys: &[LblcKey]) -> anyhow::Result<()> {
        Ok(Dataplane::lblc_delete(self, keys)?)
    }
    fn svc_pos(&self, id: u32) -> Option<u64> {
        Dataplane::svc_pos(self, id).ok()
    }
}

/// Parses the rules file and applies it to an empty table, all or nothing; an error (of syntax, or a
/// command the table refuses) names the file's line.
pub(crate) fn restore(text: &str, path: &Path) -> anyhow::Result<Table> {
    let (lines, cmds): (Vec<usize>, Vec<Command>) = parse_rules_with_lines(text)
        .map_err(|(line, e)| anyhow!("{}:{line}: {}", path.display(), e.message))?
        .into_iter()
        .unzip();
    let mut table = Table::new();
    table.apply_all(&cmds).map_err(|(index, e)| {
        let line = lines.get(index).copied().unwrap_or(0);
        anyhow!("{}:{line}: {e}", path.display())
    })?;
    Ok(table)
}

/// Every real server address (the resolver's work list).
fn targets(table: &Table) -> BTreeSet<IpAddr> {
    table
        .services()
        .iter()
        .flat_map(|s| s.dests.iter().map(|d| d.key.addr))
        .collect()
}

fn stats_snap(s: Stats) -> StatsSnap {
    StatsSnap {
        conns: s.conns,
        inpkts: s.inpkts,
        outpkts: s.outpkts,
        inbytes: s.inbytes,
        outbytes: s.outbytes,
    }
}

/// Whose counters: a service (`None`) or one of its real servers.
type StatsKey = (ServiceKey, Option<DestKey>);

/// The counters `-L --stats` shows: `raw` minus the `-Z` baseline. A baseline above the counters
/// (which only a reload of the maps behind the daemon's back can cause) is ignored.
fn since_zero(raw: Stats, base: Option<&StatsSnap>) -> StatsSnap {
    let raw = stats_snap(raw);
    let Some(b) = base else { return raw };
    let fields = |s: &StatsSnap| [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes];
    if fields(&raw).iter().zip(fields(b)).any(|(r, b)| *r < b) {
        return raw;
    }
    StatsSnap {
        conns: raw.conns - b.conns,
        inpkts: raw.inpkts - b.inpkts,
        outpkts: raw.outpkts - b.outpkts,
        inbytes: raw.inbytes - b.inbytes,
        outbytes: raw.outbytes - b.outbytes,
    }
}

/// An address of the maps as an `IpAddr`; `None` for an unknown family byte.
fn ip_of(addr: &Addr, family: u8) -> Option<IpAddr> {
    if family == Family::Inet as u8 {
        Some(Ipv4Addr::from(addr[0].get()).into())
    } else if family == Family::Inet6 as u8 {
        let mut b = [0u8; 16];
        for (chunk, w) in b.chunks_exact_mut(4).zip(addr) {
            chunk.copy_from_slice(&w.get().to_be_bytes());
        }
        Some(Ipv6Addr::from(b).into())
    } else {
        None
    }
}

fn proto_of(number: u8) -> Option<Protocol> {
    [Protocol::Tcp, Protocol::Udp]
        .into_iter()
        .find(|p| p.number() == number)
}

/// Why a change did not happen.
enum Refusal {
    /// The encoder refused the table (e.g. a data plane table is full): nothing was changed.
    Encoder(rvs_core::ApplyError),
    /// The change failed half way and was undone.
    Failed(String),
}

/// The state the loop owns.
pub(crate) struct Daemon<P> {
    plane: P,
    table: Table,
    encoder: Encoder,
    neigh: NeighMap,
    rules: RulesFile,
    conn_tab_size: u32,
    /// Timeouts in force (`--set`) and the `-Z` baselines, as `runtime_file` holds them.
    runtime: Runtime,
    runtime_file: RuntimeFile,
    /// `runtime.baselines` by whose counters they are, for lookups.
    baselines: HashMap<StatsKey, Baseline>,
    /// Rate estimators with the stats id they sample.
    est: HashMap<StatsKey, (u32, Estimator)>,
    /// The lblc/lblcr tables' expiry, and IPVS's lblc_expiration and lblcr_expiration (s).
    lblc_gc: lblc::Gc,
    lblc_expiration: u32,
    lblcr_expiration: u32,
    /// Where the periodic sweep of the connection table is.
    sweeper: Sweeper,
}

impl<P: Plane> Daemon<P> {
    /// Brings the maps to `table`'s image. With an adopted data plane and an identical table (a restart),
    /// this writes nothing, so established connections are not disturbed.
    ///
    /// `runtime` is what `runtime.json` held; its baselines must be empty when the data plane was
    /// loaded afresh (its counters started from zero).
    pub(crate) fn start(
        plane: P,
        encoder: Encoder,
        table: Table,
        neigh: NeighMap,
        rules: RulesFile,
        conn_tab_size: u32,
        runtime: Runtime,
    ) -> anyhow::Result<Self> {
        let runtime_file = rules.runtime();
        let baselines = runtime
            .baselines
            .iter()
            .map(|b| ((b.service, b.dest), *b))
            .collect();
        let mut d = Self {
            plane,
            table,
            encoder,
            neigh,
            rules,
            conn_tab_size,
            runtime,
            runtime_file,
            baselines,
            est: HashMap::new(),
            lblc_gc: lblc::Gc::default(),
            lblc_expiration: rvs_core::encode::LBLC_EXPIRATION_DEFAULT_S,
            lblcr_expiration: rvs_core::encode::LBLC_EXPIRATION_DEFAULT_S,
            sweeper: Sweeper::new(),
        };
        d.plane
            .set_timeouts(&conns::plane_timeouts(&d.runtime.timeouts))
            .context("cannot write the timeouts to the data plane")?;
        let ops = d.sync_ops().context("cannot encode the restored rules")?;
        d.apply_ops(&ops)
            .context("cannot write the restored rules to the data plane")?;
        d.prune_baselines();
        d.tick_estimators();
        info!(
            services = d.table.services().len(),
            map_ops = ops.len(),
            timeouts = ?d.runtime.timeouts,
            "rules in force"
        );
        Ok(d)
    }

    /// The stats ids of every service and real server of the table, with whose they are.
    fn stats_ids(&self) -> Vec<(StatsKey, u32, bool)> {
        let mut out = Vec::new();
        for e in self.table.services() {
            let key = e.service.key;
            if let Some(id) = self.encoder.svc_id(&key) {
                out.push(((key, None), id, false));
            }
            for d in &e.dests {
                if let Some(id) = self.encoder.dest_id(&key, &d.key) {
                    out.push(((key, Some(d.key)), id, true));
                }
            }
        }
        out
    }

    fn raw_stats(&self, id: u32, is_dest: bool) -> anyhow::Result<Stats> {
        if is_dest {
            self.plane.dest_stats(id)
        } else {
            self.plane.svc_stats(id)
        }
    }

    /// Drops the baselines of services and real servers that are gone or were re-created with another
    /// stats slot (whose counters the encoder cleared), and saves the result if anything changed.
    fn prune_baselines(&mut self) {
        let live: HashMap<StatsKey, u32> = self.stats_ids().into_iter().map(|(k, id, _)| (k, id)).collect();
        let before = self.baselines.len();
        self.baselines.retain(|k, b| live.get(k) == Some(&b.id));
        if self.baselines.len() != before {
            let mut next = self.runtime.clone();
            next.baselines = self.baselines_vec();
            // In memory the stale baselines are gone either way; a failed save only means a restart
            // would bring them back, and then the id check drops them again unless the slot is reused.
            match self.runtime_file.write(&next) {
                Ok(()) => self.runtime = next,
                Err(e) => warn!("cannot save the pruned counter baselines: {e:#}"),
            }
        }
    }

    /// The baselines in a stable order, for the file.
    fn baselines_vec(&self) -> Vec<Baseline> {
        let mut v: Vec<Baseline> = self.baselines.values().copied().collect();
        v.sort_by_key(|b| (b.service, b.dest));
        v
    }

    /// One tick of every rate estimator (every [`estimator::PERIOD`]). Services and real servers
    /// that appeared since the last tick get a new estimator; those that left lose theirs.
    pub(crate) fn tick_estimators(&mut self) {
        let mut next = HashMap::with_capacity(self.est.len());
        for (key, id, is_dest) in self.stats_ids() {
            let raw = match self.raw_stats(id, is_dest) {
                Ok(raw) => raw,
                Err(e) => {
                    warn!("rate estimator: cannot read the counters of stats slot {id}: {e:#}");
                    continue;
                }
            };
            let e = match self.est.remove(&key) {
                Some((old_id, mut e)) if old_id == id => {
                    e.tick(raw);
                    e
                }
                _ => Estimator::new(raw),
            };
            next.insert(key, (id, e));
        }
        self.est = next;
    }

    fn sync_ops(&mut self) -> Result<Vec<MapOp>, rvs_core::ApplyError> {
        let (neigh, plane) = (&self.neigh, &self.plane);
        self.encoder
            .sync_with_cursors(&self.table, &|ip| neigh.get(&ip).copied(), &|id| {
                plane.svc_pos(id)
            })
    }

    /// Every real server address.
    pub(crate) fn targets(&self) -> BTreeSet<IpAddr> {
        targets(&self.table)
    }

    /// Serves one API request.
    pub(crate) fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Apply(cmds) => self.apply(&cmds),
            Request::List | Request::ListConns => {
                let now = now_ns();
                // IPVS takes a connection out of its counters the moment its timer fires; the data
                // plane's counters follow only when the sweep deletes it. Sweeping first makes the
                // listing's ActiveConn/InActConn those of this moment (-Lc sweeps what it reads).
                if req == Request::List
                    && let Err(e) = self.sweep(now)
                {
                    warn!("connection sweep before a listing: {e:#}");
                }
                match self.snapshot(now, req == Request::ListConns) {
                    Ok(s) => Response::Snapshot(s),
                    Err(e) => Response::Failed(format!("{e:#}")),
                }
            }
            Request::Zero(sel) => self.zero(sel.as_ref()),
            Request::SetTimeouts { tcp, tcpfin, udp } => self.set_timeouts(tcp, tcpfin, udp),
            Request::Marks => Response::Marks(self.table.marks()),
        }
    }

    /// `-Z`: the current counters of the service and its real servers (of everything without a
    /// selector) become their zero points, and their rates restart from 0 (K:ip_vs_ctl.c
    /// `ip_vs_zero_stats`).
    pub(crate) fn zero(&mut self, sel: Option<&ServiceKey>) -> Response {
        if let Some(k) = sel
            && self.table.get(k).is_none()
        {
            return Response::Refused {
                index: 0,
                error: ApplyError::NoSuchService,
            };
        }
        let mut taken = Vec::new();
        for (key, id, is_dest) in self.stats_ids() {
            if sel.is_some_and(|s| *s != key.0) {
                continue;
            }
            match self.raw_stats(id, is_dest) {
                Ok(raw) => taken.push((key, id, raw)),
                Err(e) => return Response::Failed(format!("cannot read the counters: {e:#}")),
            }
        }
        let mut baselines = self.baselines.clone();
        for (key, id, raw) in &taken {
            let b = Baseline {
                service: key.0,
                dest: key.1,
                id: *id,
                stats: stats_snap(*raw),
            };
            baselines.insert(*key, b);
        }
        let old = std::mem::replace(&mut self.baselines, baselines);
        let mut next = self.runtime.clone();
        next.baselines = self.baselines_vec();
        if let Err(e) = self.runtime_file.write(&next) {
            self.baselines = old;
            let msg = format!("cannot save the counter baselines, nothing zeroed: {e:#}");
            error!("{msg}");
            return Response::Failed(msg);
        }
        self.runtime = next;
        for (key, id, raw) in taken {
            match self.est.get_mut(&key) {
                Some((eid, e)) if *eid == id => e.zero(raw),
                _ => {
                    self.est.insert(key, (id, Estimator::new(raw)));
                }
            }
        }
        debug!(zeroed = ?sel, "counters zeroed");
        Response::Ok
    }

    /// `--set tcp tcpfin udp`: 0 leaves a timeout as it is (K:ip_vs_ctl.c `ip_vs_set_timeout`). The
    /// new values apply at once, to existing connections too (see [`conns`]).
    pub(crate) fn set_timeouts(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> Response {
        // ipvsadm never sends more (it refuses the line); the kernel's answer to more is EINVAL.
        if [tcp, tcpfin, udp].iter().any(|t| *t > MAX_TIMEOUT) {
            return Response::Refused {
                index: 0,
                error: ApplyError::Invalid,
            };
        }
        let mut next = self.runtime.clone();
        let t = &mut next.timeouts;
        for (slot, v) in [(&mut t.tcp, tcp), (&mut t.tcpfin, tcpfin), (&mut t.udp, udp)] {
            if v != 0 {
                *slot = v;
            }
        }
        if let Err(e) = self.runtime_file.write(&next) {
            let msg = format!("cannot save the timeouts, nothing changed: {e:#}");
            error!("{msg}");
            return Response::Failed(msg);
        }
        if let Err(e) = self.plane.set_timeouts(&conns::plane_timeouts(&next.timeouts)) {
            // Saved but not in force: put the file back so that both still agree.
            let _ = self.runtime_file.write(&self.runtime);
            let msg = format!("cannot write the timeouts to the data plane, nothing changed: {e:#}");
            error!("{msg}");
            return Response::Failed(msg);
        }
        info!(timeouts = ?next.timeouts, "timeouts set");
        self.runtime = next;
        Response::Ok
    }

    /// Applies a batch, all or nothing: to a copy of the table first (a refusal names the command), then
    /// to the maps, then to the rules file.
    pub(crate) fn apply(&mut self, cmds: &[Command]) -> Response {
        let mut next = self.table.clone();
        if let Err((index, error)) = next.apply_all(cmds) {
            return Response::Refused { index, error };
        }
        match self.commit(next) {
            Ok(()) => {
                debug!(commands = cmds.len(), "applied");
                self.prune_baselines();
                Response::Ok
            }
            // The batch as a whole does not fit: blame its last command, as the kernel would refuse the
            // command that overflows.
            Err(Refusal::Encoder(error)) => Response::Refused {
                index: cmds.len().saturating_sub(1),
                error,
            },
            Err(Refusal::Failed(msg)) => {
                error!("{msg}");
                Response::Failed(msg)
            }
        }
    }

    /// Writes `ops` to the maps; the sweep reads the real servers and services again after any.
    fn apply_ops(&mut self, ops: &[MapOp]) -> anyhow::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.sweeper.forget_config();
        self.plane.apply(ops)
    }

    fn commit(&mut self, next: Table) -> Result<(), Refusal> {
        let (neigh, plane) = (&self.neigh, &self.plane);
        // A refusing sync leaves the encoder as it was, and nothing has been written yet. rr/wrr
        // cursors are read now so that the change moves them as IPVS's would.
        let ops = self
            .encoder
            .sync_with_cursors(&next, &|ip| neigh.get(&ip).copied(), &|id| plane.svc_pos(id))
            .map_err(Refusal::Encoder)?;
        if let Err(e) = self.apply_ops(&ops) {
            self.recover();
            return Err(Refusal::Failed(format!(
                "data plane refused the change (undone): {e:#}"
            )));
        }
        let old = std::mem::replace(&mut self.table, next);
        if let Err(e) = self.rules.write(&save_restorable(&self.table)) {
            self.table = old;
            self.resync();
            return Err(Refusal::Failed(format!(
                "cannot save the rules, change undone: {e:#}"
            )));
        }
        Ok(())
    }

    /// Rebuilds the encoder from what the maps hold now (after a partial write), then brings the maps
    /// back to `table`.
    fn recover(&mut self) {
        let r = (|| -> anyhow::Result<()> {
            self.encoder = Encoder::adopt(&self.plane.services()?, &self.plane.dests()?);
            let ops = self.sync_ops()?;
            self.apply_ops(&ops)
        })();
        if let Err(e) = r {
            error!("cannot restore the data plane to the saved rules: {e:#}");
        }
    }

    /// Brings the maps to `table` (after a table or neighbour change); falls back to [`Self::recover`].
    fn resync(&mut self) {
        let r = self.sync_ops().map_err(anyhow::Error::from).and_then(|ops| {
            if !ops.is_empty() {
                debug!(map_ops = ops.len(), "resync");
            }
            self.apply_ops(&ops)
        });
        if let Err(e) = r {
            warn!("data plane update failed, rebuilding from the maps: {e:#}");
            self.recover();
        }
    }

    /// Takes a new set of resolved next hops.
    pub(crate) fn set_neighbors(&mut self, neigh: NeighMap) {
        if neigh != self.neigh {
            self.neigh = neigh;
            self.resync();
        }
    }

    /// The table with counters since `-Z`, rates and timeouts; ActiveConn/InActConn/PersistConn as the
    /// data plane counts them, and the connection entries themselves (as of `now_ns`) if `with_conns`,
    /// whose reading expires those due first ([`Daemon::sweep_listed`]).
    pub(crate) fn snapshot(&mut self, now_ns: u64, with_conns: bool) -> anyhow::Result<Snapshot> {
        let t = self.runtime.timeouts;
        // Entries only for -Lc: the counts come from the data plane's counters, read after.
        let conns = if with_conns {
            self.sweep_listed(now_ns)?
        } else {
            Vec::new()
        };
        let rate = |k: &StatsKey, id: Option<u32>| {
            self.est
                .get(k)
                .filter(|(eid, _)| Some(*eid) == id)
                .map(|(_, e)| e.read())
                .unwrap_or_default()
        };
        let base = |k: &StatsKey, id: Option<u32>| {
            self.baselines
                .get(k)
                .filter(|b| Some(b.id) == id)
                .map(|b| &b.stats)
        };
        // For the connection list: (svc id, dest id) -> real server; svc id -> persistence timeout.
        let mut dest_of: HashMap<(u32, u32), DestKey> = HashMap::new();
        let mut persist_of: HashMap<u32, u32> = HashMap::new();
        let mut services = Vec::with_capacity(self.table.services().len());
        for e in self.table.services() {
            let key = &e.service.key;
            let sid = self.encoder.svc_id(key);
            if let (Some(id), Some(p)) = (sid, e.service.persistent) {
                persist_of.insert(id, p);
            }
            let skey = (*key, None);
            let stats = sid
                .map(|id| self.plane.svc_stats(id))
                .transpose()?
                .unwrap_or_default();
            let mut dests = Vec::with_capacity(e.dests.len());
            for d in &e.dests {
                let did = self.encoder.dest_id(key, &d.key);
                let dkey = (*key, Some(d.key));
                let stats = did
                    .map(|id| self.plane.dest_stats(id))
                    .transpose()?
                    .unwrap_or_default();
                if let Some(ids) = sid.zip(did) {
                    // A persistent service of port 0 (or of a mark) ignores its real servers' ports, as
                    // IPVS does: its connections (and templates) show the port the packets kept.
                    let port = if e.service.persistent.is_some() && key.port == 0 {
                        0
                    } else {
                        d.key.port
                    };
                    dest_of.insert(ids, DestKey { port, ..d.key });
                }
                let c = did
                    .map(|id| self.plane.dest_cnt(id))
                    .transpose()?
                    .unwrap_or_default();
                dests.push(DestSnap {
                    dest: d.clone(),
                    active: c.active,
                    inactive: c.inactive,
                    persist: c.persist,
                    stats: since_zero(stats, base(&dkey, did)),
                    rate: rate(&dkey, did),
                });
            }
            services.push(ServiceSnap {
                service: e.service.clone(),
                stats: since_zero(stats, base(&skey, sid)),
                rate: rate(&skey, sid),
                dests,
            });
        }
        let conns = if with_conns {
            conn_entries(&conns, &dest_of, &persist_of, now_ns, &t)
        } else {
            Vec::new()
        };
        Ok(Snapshot {
            conn_tab_size: self.conn_tab_size,
            services,
            timeouts: t,
            conns,
        })
    }

    /// The periodic sweep: expires what IPVS would have removed by `now_ns` (connections past their
    /// timeout or whose real server is gone, NAT reply entries left without their connection) in the
    /// next slice of [`sweep::SLICE`] entries of the table; the data plane decides again for each
    /// (bpf/lib/expire.h). Returns what it did.
    pub(crate) fn sweep_slice(&mut self, now_ns: u64) -> anyhow::Result<sweep::Swept> {
        self.sweeper
            .slice(&mut self.plane, now_ns, &self.runtime.timeouts, sweep::SLICE)
    }

    /// The sweep before a listing: on from the periodic sweep's cursor round the whole table, or
    /// [`sweep::LIST_SWEEP`] entries of a larger one. Returns how many entries it deleted.
    pub(crate) fn sweep(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let s = self.sweeper.round(
            &mut self.plane,
            now_ns,
            &self.runtime.timeouts,
            sweep::LIST_SWEEP,
            rvs_dataplane::CONN_CHUNK,
        )?;
        Ok(s.expired)
    }

    /// The connections (no reply entries) for `-Lc`, swept as they are listed: what is due at `now_ns`
    /// is expired rather than listed, and leaves the counters the listing reads next. The due keys are
    /// judged and handed over one batch of the listing at a time, never kept for the whole table.
    /// Orphan reply entries, in no listing or counter, are left to the periodic sweep (judging them
    /// takes a lookup each).
    fn sweep_listed(&mut self, now_ns: u64) -> anyhow::Result<Vec<(ConnKey, ConnVal)>> {
        let dests = self.plane.dests().context("cannot read the real servers")?;
        let svcs = self.plane.services().context("cannot read the services")?;
        let known = conns::Known::new(&dests, &svcs);
        let t = self.runtime.timeouts;
        let mut conns = Vec::new();
        self.plane
            .conn_entry_chunks(&mut |chunk| {
                conns.extend(chunk.iter().filter(|(_, v)| v.flags & CONN_F_REPLY == 0).copied());
            })
            .context("cannot read the connection table")?;
        let mut keep = Vec::with_capacity(conns.len());
        let mut expired = 0;
        for batch in conns.chunks(rvs_dataplane::CONN_CHUNK) {
            let mut due = conns::Due::new(&known, now_ns, &t);
            due.feed(batch);
            // Fed no reply entry, it looks nothing up.
            let keys = due
                .finish(|_| Ok::<_, std::convert::Infallible>(None))
                .unwrap_or_else(|e| match e {});
            if !keys.is_empty() {
                expired += self.plane.expire_conns(&keys).context("connection expiry")?;
            }
            let gone: HashSet<&ConnKey> = keys.iter().collect();
            keep.extend(batch.iter().map(|(k, _)| !gone.contains(k)));
        }
        if expired > 0 {
            debug!(expired, "swept the connections listed");
        }
        let mut keep = keep.into_iter();
        conns.retain(|_| keep.next().unwrap_or(false));
        Ok(conns)
    }

    /// Sets IPVS's lblc_expiration and lblcr_expiration (s) for [`Self::lblc_expire`].
    pub(crate) fn set_lblc_expirations(&mut self, lblc: u32, lblcr: u32) {
        self.lblc_expiration = lblc;
        self.lblcr_expiration = lblcr;
    }

    /// One run of the lblc/lblcr tables' expiry (every [`lblc::PERIOD`]); how many entries it
    /// deleted.
    pub(crate) fn lblc_expire(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let entries = self.plane.lblc_entries().context("cannot read the lblc tables")?;
        let svcs: Vec<SvcVal> = self
            .plane
            .services()
            .context("cannot read the services")?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let due = self.lblc_gc.run(
            &entries,
            &svcs,
            now_ns,
            self.lblc_expiration,
            self.lblcr_expiration,
        );
        if !due.is_empty() {
            self.plane
                .lblc_delete(&due)
                .context("cannot delete lblc entries")?;
        }
        Ok(due.len())
    }
}

/// The live connection entries as `-Lc` lists them, in table order. Entries whose real server is no
/// longer in the table (the data plane reschedules them at their next packet) are left out, as they are
/// from ActiveConn/InActConn.
fn conn_entries(
    conns: &[(ConnKey, ConnVal)],
    dest_of: &HashMap<(u32, u32), DestKey>,
    persist_of: &HashMap<u32, u32>,
    now_ns: u64,
    t: &Timeouts,
) -> Vec<ConnSnap> {
    conns
        .iter()
        .filter(|(_, v)| v.cflags & CONN_C_DEAD == 0)
        .filter_map(|(k, v)| {
            let dest = dest_of.get(&(v.svc_id, v.dest_id))?;
            let expire = if v.flags & CONN_F_TEMPLATE != 0 {
                conns::template_remaining_s(v, now_ns, *persist_of.get(&v.svc_id)?)?
            } else {
                conns::remaining_s(k, v, now_ns, t)?
            };
            Some(ConnSnap {
                proto: proto_of(k.proto)?,
                caddr: SocketAddr::new(ip_of(&k.saddr, k.family)?, k.sport.get()),
                vaddr: SocketAddr::new(ip_of(&k.daddr, k.family)?, k.dport.get()),
                // A real server without a port (of a port-0 or firewall-mark service) gets the
                // packet's own port, which -Lc shows (IPVS keeps the packet's dport there).
                // An invalidated template shows port 65535 there too, as IPVS rehashed it.
                daddr: SocketAddr::new(
                    dest.addr,
                    if v.flags & CONN_F_INVALID != 0 {
                        0xffff
                    } else if dest.port == 0 && v.flags & CONN_F_TEMPLATE == 0 {
                        k.dport.get()
                    } else {
                        dest.port
                    },
                ),
                state: conns::state_name(k, v).to_owned(),
                expire,
            })
        })
        .collect()
}

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(cfg: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg.interfaces.is_empty(),
        "no interface to attach to: give -i IFACE or `interfaces` in the configuration file"
    );
    let rules = RulesFile::open(&cfg.state_dir)?;
    let mut runtime = rules.runtime().read()?;
    // Before touching the data plane: a bad rules file stops the start with nothing changed.
    let table = match rules.read()? {
        Some(text) => restore(&text, &rules.path())?,
        None => {
            info!("no {}: starting with an empty table", rules.path().display());
            Table::new()
        }
    };

    // Also before the data plane: a second daemon pointed at the same socket must not touch the maps of
    // the first. Clients that connect before the loop runs wait in the listen backlog.
    let socket = api::Socket::bind(&cfg.socket)?;

    let dp_cfg = DataplaneConfig {
        pin_dir: cfg.pin_dir.clone(),
        conn_max: cfg.conn_max,
    };
    let mut dp = Dataplane::open(&dp_cfg)
        .with_context(|| format!("cannot open the data plane in {}", cfg.pin_dir.display()))?;
    let adopted = dp.adopted();
    for ifname in &cfg.interfaces {
        dp.attach(ifname)
            .with_context(|| format!("cannot attach to {ifname}"))?;
    }
    if !adopted && !runtime.baselines.is_empty() {
        // Fresh maps count from zero: the old zero points mean nothing any more.
        info!("new data plane: dropping the saved -Z baselines");
        runtime.baselines.clear();
    }
    let (mut encoder, seed) = if adopted {
        let svcs = ConnTable::services(&dp)?;
        let dests = ConnTable::dests(&dp)?;
        info!(
            pin_dir = %cfg.pin_dir.display(),
            services = svcs.len(),
            dests = dests.len(),
            "adopted the pinned data plane"
        );
        (Encoder::adopt(&svcs, &dests), neigh::seed(&dests))
    } else {
        info!(pin_dir = %cfg.pin_dir.display(), conn_max = dp.conn_max(), "loaded the data plane");
        (Encoder::new(), NeighMap::new())
    };
    encoder.set_expire_quiescent_template(cfg.expire_quiescent_template);
    encoder.set_lblcr_expiration(cfg.lblcr_expiration);
    info!(interfaces = ?cfg.interfaces, "attached");

    let mut resolver = Resolver::new(seed)?;
    let initial_targets = targets(&table);
    if let Err(e) = resolver.pass(&initial_targets).await {
        warn!("initial neighbour resolution failed: {e:#}");
    }
    let conn_tab_size = dp.conn_max();
    let mut daemon = Daemon::start(
        dp,
        encoder,
        table,
        resolver.cache().clone(),
        rules,
        conn_tab_size,
        runtime,
    )?;
    daemon.set_lblc_expirations(cfg.lblc_expiration, cfg.lblcr_expiration);

    let (calls_tx, mut calls_rx) = mpsc::channel::<Call>(64);
    let (targets_tx, targets_rx) = watch::channel(initial_targets);
    let (neigh_tx, mut neigh_rx) = mpsc::channel::<NeighMap>(4);
    tokio::spawn(async move {
        if let Err(e) = resolver.run(targets_rx, neigh_tx).await {
            error!("neighbour resolver stopped: {e:#}");
        }
    });
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sweep = tokio::time::interval(sweep::PERIOD);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The kernel re-arms its estimator timer 2 s after each run: a late tick delays the next one.
    let mut est =
        tokio::time::interval_at(tokio::time::Instant::now() + estimator::PERIOD, estimator::PERIOD);
    est.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lblc_tick = tokio::time::interval_at(tokio::time::Instant::now() + lblc::PERIOD, lblc::PERIOD);
    lblc_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(socket = %cfg.socket.display(), "serving");

    loop {
        tokio::select! {
            r = socket.accept() => match r {
                Ok(stream) => { tokio::spawn(api::serve(stream, calls_tx.clone())); }
                Err(e) => warn!("accept: {e}"),
            },
            Some(call) = calls_rx.recv() => {
                let resp = daemon.handle(call.request);
                let _ = call.reply.send(resp);
                let now = daemon.targets();
                targets_tx.send_if_modified(|t| if *t != now { *t = now; true } else { false });
            }
            Some(map) = neigh_rx.recv() => daemon.set_neighbors(map),
            _ = est.tick() => daemon.tick_estimators(),
            _ = sweep.tick() => match daemon.sweep_slice(now_ns()) {
                Ok(s) if s.expired == 0 => {}
                Ok(s) => debug!(read = s.read, expired = s.expired, "swept a slice of the connection table"),
                Err(e) => warn!("connection sweep: {e:#}"),
            },
            _ = lblc_tick.tick() => match daemon.lblc_expire(now_ns()) {
                Ok(0) => {}
                Ok(n) => debug!(expired = n, "expired lblc/lblcr entries"),
                Err(e) => warn!("lblc expiry: {e:#}"),
            },
            _ = sigterm.recv() => { info!("SIGTERM"); break; }
            _ = sigint.recv() => { info!("SIGINT"); break; }
        }
    }
    drop(socket);
    info!("stopped; the director stays attached and keeps forwarding");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::PathBuf;

    use rvs_abi::{DEST_F_NEIGH, DestVal, SvcKey, SvcVal, TcpState};
    use rvs_core::ApplyError;
    use rvs_core::ipvsadm::parse_rules;

    use super::*;
    use rvs_dataplane::ConnCursor;

    use crate::backend::Neighbor;
    use crate::conns::tests::conn;

    /// Maps as plain collections; counts the ops it applied and can fail the n-th op of the next apply.
    #[derive(Default)]
    struct FakePlane {
        svcs: HashMap<SvcKey, SvcVal>,
        dests: BTreeMap<u32, DestVal>,
        sched: HashMap<u32, u32>,
        conns: Vec<(ConnKey, ConnVal)>,
        ops: usize,
        fail_at: Option<usize>,
        /// Counters by stats id; ids not in here read as a formula of the id.
        svc_st: HashMap<u32, Stats>,
        dest_st: HashMap<u32, Stats>,
        /// Connection counters by dest id (zero when absent).
        cnt: HashMap<u32, DestCnt>,
        timeouts: rvs_abi::Timeouts,
        lblc: Vec<(LblcKey, LblcVal)>,
    }

    impl FakePlane {
        /// Gives every connection its real server's current generation, as the data plane does when
        /// it schedules.
        fn fix_gens(&mut self) {
            for (_, v) in &mut self.conns {
                if let Some(d) = self.dests.get(&v.dest_id) {
                    v.dest_gen = d.dgen;
                }
            }
        }

        /// Each service's scheduler table as the data plane would cycle it: (key, id, dest ids).
        fn image(&self) -> BTreeMap<u32, (SvcKey, Vec<u32>)> {
            self.svcs
                .iter()
                .map(|(k, v)| {
                    let table = (v.sched_base..v.sched_base + v.sched_len)
                        .map(|s| self.sched[&s])
                        .collect();
                    (v.id, (*k, table))
                })
                .collect()
        }
    }

    /// The fake's hash bucket of `k`, of 64: the cursor of its sliced walk.
    fn fake_bucket(k: &ConnKey) -> u32 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        k.hash(&mut h);
        (h.finish() % 64) as u32
    }

    impl ConnTable for FakePlane {
        fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>> {
            Ok(self.svcs.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>> {
            Ok(self.dests.iter().map(|(k, v)| (*k, *v)).collect())
        }
        /// As the kernel's batch walk: whole buckets in bucket order, two entries a batch at least.
        fn conn_entry_slice(
            &self,
            from: ConnCursor,
            max: usize,
            f: &mut ConnSink<'_>,
        ) -> anyhow::Result<(usize, Option<ConnCursor>)> {
            let mut read = 0;
            for b in from.bucket()..64 {
                if read >= max {
                    return Ok((read, Some(ConnCursor::at_bucket(b))));
                }
                let bucket: Vec<_> = self
                    .conns
                    .iter()
                    .filter(|(k, _)| fake_bucket(k) == b)
                    .copied()
                    .collect();
                read += bucket.len();
                bucket.chunks(2).for_each(&mut *f);
            }
            Ok((read, None))
        }
        fn conn_get(&self, key: &ConnKey) -> anyhow::Result<Option<ConnVal>> {
            Ok(self.conns.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
        }
        /// Deletes what it is given: the data plane's second look is the difftests' business.
        fn expire_conns(&mut self, keys: &[ConnKey]) -> anyhow::Result<usize> {
            let before = self.conns.len();
            self.conns.retain(|(k, _)| !keys.contains(k));
            Ok(before - self.conns.len())
        }
    }

    impl Plane for FakePlane {
        fn apply(&mut self, ops: &[MapOp]) -> anyhow::Result<()> {
            for (i, op) in ops.iter().enumerate() {
                if self.fail_at.take_if(|n| *n == i).is_some() {
                    anyhow::bail!("injected failure at op {i}");
                }
                match *op {
                    MapOp::SvcSet { key, val } => {
                        self.svcs.insert(key, val);
                    }
                    MapOp::SvcDel { key } => {
                        self.svcs.remove(&key);
                    }
                    MapOp::DestSet { id, val } if val.flags & rvs_abi::DEST_F_VALID != 0 => {
                        self.dests.insert(id, val);
                    }
                    MapOp::DestSet { id, .. } => {
                        self.dests.remove(&id);
                    }
                    MapOp::SchedSet { slot, dest_id } => {
                        self.sched.insert(slot, dest_id);
                    }
                    _ => {}
                }
                self.ops += 1;
            }
            Ok(())
        }
        fn svc_stats(&self, id: u32) -> anyhow::Result<Stats> {
            Ok(self.svc_st.get(&id).copied().unwrap_or(Stats {
                conns: 100 + u64::from(id),
                inpkts: 1,
                ..Default::default()
            }))
        }
        fn dest_stats(&self, id: u32) -> anyhow::Result<Stats> {
            Ok(self.dest_st.get(&id).copied().unwrap_or(Stats {
                conns: 1000 + u64::from(id),
                inbytes: 2,
                ..Default::default()
            }))
        }
        /// In chunks of two, so that the tests cross chunk boundaries.
        fn conn_entry_chunks(&self, f: &mut ConnSink<'_>) -> anyhow::Result<usize> {
            self.conns.chunks(2).for_each(&mut *f);
            Ok(self.conns.len())
        }
        fn dest_cnt(&self, id: u32) -> anyhow::Result<DestCnt> {
            Ok(self.cnt.get(&id).copied().unwrap_or_default())
        }
        fn svc_pos(&self, _id: u32) -> Option<u64> {
            None
        }
        fn set_timeouts(&mut self, t: &rvs_abi::Timeouts) -> anyhow::Result<()> {
            self.timeouts = *t;
            Ok(())
        }
        fn lblc_entries(&self) -> anyhow::Result<Vec<(LblcKey, LblcVal)>> {
            Ok(self.lblc.clone())
        }
        fn lblc_delete(&mut self, keys: &[LblcKey]) -> anyhow::Result<()> {
            self.lblc.retain(|(k, _)| !keys.contains(k));
            Ok(())
        }
    }

    const VIP: &str = "198.18.0.100:80";
    const RULES: &str = "\
-A -t 198.18.0.100:80 -s wrr
-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 3
-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 2
";

    fn state_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvsd-daemon-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn neigh_of(last: u8) -> Neighbor {
        Neighbor {
            dmac: [2, 0, 0, 0, 0, last],
            smac: [2, 0, 0, 0, 0, 1],
            ifindex: 5,
            // DR real servers: what a seed from their slots gives back.
            laddr: None,
            mtu: 0,
        }
    }

    fn all_resolved() -> NeighMap {
        [11u8, 12, 13]
            .into_iter()
            .map(|l| (IpAddr::from([198, 18, 0, l]), neigh_of(l)))
            .collect()
    }

    fn fresh(dir: &Path) -> Daemon<FakePlane> {
        let rules = RulesFile::open(dir).unwrap();
        Daemon::start(
            FakePlane::default(),
            Encoder::new(),
            Table::new(),
            all_resolved(),
            rules,
            4096,
            Runtime::default(),
        )
        .unwrap()
    }

    fn cmds(text: &str) -> Vec<Command> {
        parse_rules(text).unwrap()
    }

    #[test]
    fn apply_writes_maps_and_rules_file() {
        let dir = state_dir("apply");
        let mut d = fresh(&dir);
        assert_eq!(d.plane.ops, 0, "an empty table on empty maps writes nothing");
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        assert_eq!(d.plane.svcs.len(), 1);
        assert_eq!(d.plane.dests.len(), 2);
        assert!(d.plane.dests.values().all(|v| v.flags & DEST_F_NEIGH != 0));
        let saved = d.rules.read().unwrap().unwrap();
        assert_eq!(saved, save_restorable(&d.table));
        assert_eq!(restore(&saved, Path::new("rules")).unwrap(), d.table);
        assert_eq!(
            d.targets(),
            BTreeSet::from([IpAddr::from([198, 18, 0, 11]), IpAddr::from([198, 18, 0, 12])])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lblc_entries_expire_with_the_daemons_settings() {
        let dir = state_dir("lblc");
        let mut d = fresh(&dir);
        assert_eq!(
            d.apply(&cmds(
                "-A -t 198.18.0.100:80 -s lblc\n-a -t 198.18.0.100:80 -r 198.18.0.11:80\n"
            )),
            Response::Ok
        );
        d.set_lblc_expirations(600, 86400);
        let id = d.plane.svcs.values().next().unwrap().id;
        let now = 1_000_000 * 1_000_000_000u64;
        let entry = |svc_id: u32, idle_s: u64| {
            (
                LblcKey {
                    svc_id,
                    ..LblcKey::default()
                },
                LblcVal {
                    lastuse_ns: now - idle_s * 1_000_000_000,
                    ..LblcVal::default()
                },
            )
        };
        // Idle 700 s (past lblc_expiration), and one of a service that no longer exists.
        d.plane.lblc = vec![entry(id, 700), entry(id + 1, 0)];
        assert_eq!(d.lblc_expire(now).unwrap(), 1, "the orphan goes at the first run");
        for _ in 1..29 {
            assert_eq!(d.lblc_expire(now).unwrap(), 0);
        }
        assert_eq!(
            d.lblc_expire(now).unwrap(),
            1,
            "the 30th run is IPVS's full check"
        );
        assert!(d.plane.lblc.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_batch_changes_nothing_and_names_the_command() {
        let dir = state_dir("refused");
        let mut d = fresh(&dir);
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let (table, ops, saved) = (d.table.clone(), d.plane.ops, d.rules.read().unwrap());
        let batch = cmds(&format!(
            "-a -t {VIP} -r 198.18.0.13:80 -g -w 1\n-a -t {VIP} -r 198.18.0.11:80 -g -w 1\n"
        ));
        assert_eq!(
            d.apply(&batch),
            Response::Refused {
                index: 1,
                error: ApplyError::DestExists
            }
        );
        assert_eq!(d.table, table);
        assert_eq!(d.plane.ops, ops);
        assert_eq!(d.rules.read().unwrap(), saved);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_data_plane_failure_is_rolled_back() {
        let dir = state_dir("rollback");
        let mut d = fresh(&dir);
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let (table, image, dests, saved) = (
            d.table.clone(),
            d.plane.image(),
            d.plane.dests.clone(),
            d.rules.read().unwrap(),
        );
        d.plane.fail_at = Some(2);
        let batch = cmds(&format!(
            "-a -t {VIP} -r 198.18.0.13:80 -g -w 1\n-e -t {VIP} -r 198.18.0.11:80 -g -w 7\n"
        ));
        let r = d.apply(&batch);
        assert!(
            matches!(&r, Response::Failed(m) if m.contains("injected")),
            "{r:?}"
        );
        assert_eq!(d.table, table);
        // The scheduler table may have moved to another region; what it holds is what counts.
        assert_eq!(d.plane.image(), image, "maps back to the old image");
        assert_eq!(d.plane.dests, dests);
        assert_eq!(d.rules.read().unwrap(), saved);
        // And the daemon keeps working afterwards.
        assert_eq!(d.apply(&batch), Response::Ok);
        assert_eq!(d.plane.dests.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_over_adopted_maps_writes_nothing() {
        let dir = state_dir("adopt");
        let mut d = fresh(&dir);
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        assert_eq!(
            d.apply(&cmds(&format!("-a -t {VIP} -r 198.18.0.13:80 -g -w 1\n"))),
            Response::Ok
        );
        let plane = std::mem::take(&mut d.plane);
        drop(d);

        // What `run` does at start: restore the file, adopt the maps, seed the neighbours from them.
        let rules = RulesFile::open(&dir).unwrap();
        let table = restore(&rules.read().unwrap().unwrap(), &rules.path()).unwrap();
        let dests = plane.dests().unwrap();
        let encoder = Encoder::adopt(&plane.services().unwrap(), &dests);
        let seed = crate::neigh::seed(&dests);
        assert_eq!(seed, all_resolved());
        let ops_before = plane.ops;
        let d = Daemon::start(plane, encoder, table, seed, rules, 4096, Runtime::default()).unwrap();
        assert_eq!(
            d.plane.ops, ops_before,
            "adoption with an identical table must emit no op"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn neighbour_changes_rewrite_only_dests() {
        let dir = state_dir("neigh");
        let rules = RulesFile::open(&dir).unwrap();
        let mut d = Daemon::start(
            FakePlane::default(),
            Encoder::new(),
            Table::new(),
            NeighMap::new(),
            rules,
            64,
            Runtime::default(),
        )
        .unwrap();
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        assert!(
            d.plane.dests.values().all(|v| v.flags & DEST_F_NEIGH == 0),
            "unresolved"
        );
        let mut n = NeighMap::new();
        n.insert(IpAddr::from([198, 18, 0, 12]), neigh_of(12));
        d.set_neighbors(n.clone());
        let resolved: Vec<_> = d
            .plane
            .dests
            .values()
            .filter(|v| v.flags & DEST_F_NEIGH != 0)
            .collect();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].dmac, [2, 0, 0, 0, 0, 12]);
        let ops = d.plane.ops;
        d.set_neighbors(n);
        assert_eq!(d.plane.ops, ops, "same neighbours, no op");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_counts_and_sweep_deletes_expired() {
        let dir = state_dir("snapshot");
        let mut d = fresh(&dir);
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let key: rvs_core::ServiceKey = d.table.services()[0].service.key;
        let sid = d.encoder.svc_id(&key).unwrap();
        let dk = |l: u8| rvs_core::DestKey {
            addr: IpAddr::from([198, 18, 0, l]),
            port: 80,
        };
        let (d11, d12) = (
            d.encoder.dest_id(&key, &dk(11)).unwrap(),
            d.encoder.dest_id(&key, &dk(12)).unwrap(),
        );
        let now = 10_000;
        d.plane.conns = vec![
            conn(1, 6, TcpState::Established, sid, d11, now - 1),
            conn(2, 6, TcpState::TimeWait, sid, d11, now - 1),
            conn(3, 6, TcpState::SynRecv, sid, d12, now - 1),
            conn(4, 6, TcpState::Close, sid, d12, now - 11), // expired
            conn(5, 6, TcpState::Established, sid + 1, d12, now - 1), // another service's id
        ];
        d.plane.fix_gens();
        // The data plane's exact counters, which the listing shows as they are.
        d.plane.cnt.insert(
            d11,
            DestCnt {
                active: 1,
                inactive: 1,
                ..DestCnt::default()
            },
        );
        d.plane.cnt.insert(
            d12,
            DestCnt {
                active: 1,
                ..DestCnt::default()
            },
        );
        let s = d.snapshot(now * 1_000_000_000, false).unwrap();
        assert_eq!(s.conn_tab_size, 4096);
        assert_eq!(s.services.len(), 1);
        let svc = &s.services[0];
        assert_eq!(svc.stats.conns, 100 + u64::from(sid));
        // IPVS list order: the most recently added first.
        let got: Vec<_> = svc
            .dests
            .iter()
            .map(|x| (x.dest.key, x.active, x.inactive, x.stats.conns))
            .collect();
        assert_eq!(
            got,
            [
                (dk(12), 1, 0, 1000 + u64::from(d12)),
                (dk(11), 1, 1, 1000 + u64::from(d11))
            ]
        );
        // The timed-out entry, and the one whose real server is not its service's.
        assert_eq!(d.sweep(now * 1_000_000_000).unwrap(), 2);
        let left: Vec<u16> = d.plane.conns.iter().map(|(k, _)| k.sport.get()).collect();
        assert_eq!(left, [1, 2, 3]);
        assert!(matches!(d.handle(Request::List), Response::Snapshot(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restore_names_the_bad_line() {
        let p = Path::new("/var/lib/rvs/rules");
        let e = restore("-A -t 198.18.0.100:80 -s rr\n\n-a -t 198.18.0.100:80 -r\n", p).unwrap_err();
        assert!(e.to_string().starts_with("/var/lib/rvs/rules:3: "), "{e:#}");
        // A line the table refuses (second -A of the same service) is named too.
        let e = restore(
            "-A -t 198.18.0.100:80 -s rr\n# comment\n-A -t 198.18.0.100:80 -s rr\n",
            p,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/var/lib/rvs/rules:3: Service already exists");
        let e = restore("-A -t 198.18.0.100:80 -s lblcx\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/var/lib/rvs/rules:1: Scheduler or persistence engine not found"
        );
        assert_eq!(restore("", p).unwrap(), Table::new());
    }

    const VIP2: &str = "198.18.0.100:443";
    const SEC: u64 = 1_000_000_000;

    fn svc_key(vip: &str) -> rvs_core::ServiceKey {
        let sa: SocketAddr = vip.parse().unwrap();
        rvs_core::ServiceKey {
            proto: Protocol::Tcp,
            addr: sa.ip(),
            port: sa.port(),
        }
    }

    fn dkey(last: u8, port: u16) -> DestKey {
        DestKey {
            addr: IpAddr::from([198, 18, 0, last]),
            port,
        }
    }

    fn st(v: u64) -> Stats {
        Stats {
            conns: v,
            inpkts: 10 * v,
            outpkts: 0,
            inbytes: 1000 * v,
            outbytes: 0,
        }
    }

    /// Two services: VIP (real servers .11 and .12) and VIP2 (.13); every counter set to `v`-based
    /// values. Returns the stats ids (svc VIP, dest .11, dest .12, svc VIP2, dest .13).
    fn two_services(d: &mut Daemon<FakePlane>, v: u64) -> [u32; 5] {
        if d.table.get(&svc_key(VIP2)).is_none() {
            let more = format!("{RULES}-A -t {VIP2} -s rr\n-a -t {VIP2} -r 198.18.0.13:443 -g -w 1\n");
            assert_eq!(d.apply(&cmds(&more)), Response::Ok);
        }
        let (k1, k2) = (svc_key(VIP), svc_key(VIP2));
        let e = &d.encoder;
        let ids = [
            e.svc_id(&k1).unwrap(),
            e.dest_id(&k1, &dkey(11, 80)).unwrap(),
            e.dest_id(&k1, &dkey(12, 80)).unwrap(),
            e.svc_id(&k2).unwrap(),
            e.dest_id(&k2, &dkey(13, 443)).unwrap(),
        ];
        set_counters(d, ids, v);
        ids
    }

    fn set_counters(d: &mut Daemon<FakePlane>, ids: [u32; 5], v: u64) {
        for (i, id) in ids.into_iter().enumerate() {
            let m = if i == 0 || i == 3 {
                &mut d.plane.svc_st
            } else {
                &mut d.plane.dest_st
            };
            m.insert(id, st(v));
        }
    }

    /// (service conns, [dest conns in snapshot order]) of the service at `vip`.
    fn conns_of(s: &Snapshot, vip: &str) -> (u64, Vec<u64>) {
        let svc = s.services.iter().find(|x| x.service.key == svc_key(vip)).unwrap();
        (svc.stats.conns, svc.dests.iter().map(|d| d.stats.conns).collect())
    }

    #[test]
    fn zero_one_service_then_all_survives_a_restart_and_is_pruned_with_the_service() {
        let dir = state_dir("zero");
        let mut d = fresh(&dir);
        let ids = two_services(&mut d, 5);
        assert_eq!(
            d.zero(Some(&svc_key("198.18.0.100:99"))),
            Response::Refused {
                index: 0,
                error: ApplyError::NoSuchService
            }
        );
        assert_eq!(d.handle(Request::Zero(Some(svc_key(VIP)))), Response::Ok);
        let s = d.snapshot(0, false).unwrap();
        assert_eq!(conns_of(&s, VIP), (0, vec![0, 0]));
        assert_eq!(conns_of(&s, VIP2), (5, vec![5]), "another service is not zeroed");
        set_counters(&mut d, ids, 8);
        let s = d.snapshot(0, false).unwrap();
        assert_eq!(conns_of(&s, VIP), (3, vec![3, 3]));
        assert_eq!(s.services[0].stats.inbytes, 3000);
        assert_eq!(d.handle(Request::Zero(None)), Response::Ok);
        let s = d.snapshot(0, false).unwrap();
        assert_eq!(conns_of(&s, VIP), (0, vec![0, 0]));
        assert_eq!(conns_of(&s, VIP2), (0, vec![0]));
        assert_eq!(d.rules.runtime().read().unwrap().baselines.len(), 5);

        // A restart over the adopted maps keeps the zero points.
        let plane = std::mem::take(&mut d.plane);
        let (table, encoder) = (d.table.clone(), d.encoder.clone());
        drop(d);
        let rules = RulesFile::open(&dir).unwrap();
        let rt = rules.runtime().read().unwrap();
        let mut d = Daemon::start(plane, encoder, table, all_resolved(), rules, 4096, rt).unwrap();
        set_counters(&mut d, ids, 9);
        assert_eq!(conns_of(&d.snapshot(0, false).unwrap(), VIP2), (1, vec![1]));

        // Deleting a real server, then its service, drops their baselines (a new one starts from the
        // encoder's cleared counters).
        assert_eq!(
            d.apply(&cmds(&format!("-d -t {VIP2} -r 198.18.0.13:443\n"))),
            Response::Ok
        );
        assert_eq!(d.rules.runtime().read().unwrap().baselines.len(), 4);
        assert_eq!(d.apply(&cmds(&format!("-D -t {VIP2}\n"))), Response::Ok);
        let saved = d.rules.runtime().read().unwrap().baselines;
        assert_eq!(saved.len(), 3);
        assert!(saved.iter().all(|b| b.service == svc_key(VIP)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counters_below_the_baseline_show_raw() {
        let b = StatsSnap {
            conns: 5,
            ..Default::default()
        };
        assert_eq!(since_zero(st(7), Some(&b)).conns, 2);
        assert_eq!(since_zero(st(3), Some(&b)), stats_snap(st(3)));
        assert_eq!(since_zero(st(3), None), stats_snap(st(3)));
    }

    #[test]
    fn set_timeouts_keeps_zeros_persists_and_drives_expiry() {
        let dir = state_dir("timeouts");
        let mut d = fresh(&dir);
        assert_eq!(d.snapshot(0, false).unwrap().timeouts, Timeouts::default());
        let set = |tcp, tcpfin, udp| Request::SetTimeouts { tcp, tcpfin, udp };
        assert_eq!(d.handle(set(3600, 60, 120)), Response::Ok);
        assert_eq!(d.handle(set(0, 0, 0)), Response::Ok);
        let t = |tcp, tcpfin, udp| Timeouts { tcp, tcpfin, udp };
        assert_eq!(d.snapshot(0, false).unwrap().timeouts, t(3600, 60, 120));
        assert_eq!(d.handle(set(0, 0, 45)), Response::Ok);
        assert_eq!(d.snapshot(0, false).unwrap().timeouts, t(3600, 60, 45));
        assert_eq!(
            d.handle(set(MAX_TIMEOUT + 1, 0, 0)),
            Response::Refused {
                index: 0,
                error: ApplyError::Invalid
            }
        );
        assert_eq!(d.handle(set(30, 20, 10)), Response::Ok);
        assert_eq!(d.rules.runtime().read().unwrap().timeouts, t(30, 20, 10));

        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let key = svc_key(VIP);
        let sid = d.encoder.svc_id(&key).unwrap();
        let d11 = d.encoder.dest_id(&key, &dkey(11, 80)).unwrap();
        let now = 1000;
        d.plane.conns = vec![
            conn(1, 6, TcpState::Established, sid, d11, now - 29), // live with tcp=30
            conn(2, 6, TcpState::Established, sid, d11, now - 30), // expired with tcp=30
            conn(3, 6, TcpState::FinWait, sid, d11, now - 20),     // expired with tcpfin=20
        ];
        d.plane.fix_gens();
        // The data plane times entries out by the same table.
        assert_eq!(
            (
                d.plane.timeouts.s[1],
                d.plane.timeouts.s[4],
                d.plane.timeouts.s[12]
            ),
            (30, 20, 10)
        );
        assert_eq!(d.sweep(now * SEC).unwrap(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rates_tick_every_period_and_zero_clears_them() {
        let dir = state_dir("rates");
        let mut d = fresh(&dir);
        let ids = two_services(&mut d, 0);
        d.tick_estimators(); // the new services get their estimators
        let mut want = Estimator::new(st(0));
        for v in 1..=60 {
            set_counters(&mut d, ids, 100 * v);
            d.tick_estimators();
            want.tick(st(100 * v));
        }
        let s = d.snapshot(0, false).unwrap();
        assert_eq!(s.services[0].rate, want.read());
        assert_eq!(s.services[0].rate.cps, 50, "100 connections per 2 s");
        assert_eq!(s.services[0].rate.inbps, 50_000);
        assert!(
            s.services
                .iter()
                .flat_map(|x| &x.dests)
                .all(|x| x.rate == want.read())
        );
        assert_eq!(d.zero(Some(&svc_key(VIP))), Response::Ok);
        let s = d.snapshot(0, false).unwrap();
        let vip = s.services.iter().find(|x| x.service.key == svc_key(VIP)).unwrap();
        assert_eq!(vip.rate, rvs_api::RateSnap::default());
        assert!(vip.dests.iter().all(|x| x.rate == rvs_api::RateSnap::default()));
        let vip2 = s
            .services
            .iter()
            .find(|x| x.service.key == svc_key(VIP2))
            .unwrap();
        assert_eq!(vip2.rate, want.read());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn list_conns_names_states_and_expiry_and_list_leaves_them_out() {
        let dir = state_dir("conns");
        let mut d = fresh(&dir);
        assert_eq!(
            d.handle(Request::SetTimeouts {
                tcp: 30,
                tcpfin: 20,
                udp: 10
            }),
            Response::Ok
        );
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let key = svc_key(VIP);
        let sid = d.encoder.svc_id(&key).unwrap();
        let d12 = d.encoder.dest_id(&key, &dkey(12, 80)).unwrap();
        let now = 1000;
        d.plane.conns = vec![
            conn(40100, 6, TcpState::TimeWait, sid, d12, now - 9),
            conn(40101, 6, TcpState::Established, sid, d12, now - 3),
            conn(40102, 6, TcpState::Established, sid, d12, now - 30), // expired
            conn(40103, 6, TcpState::Established, sid, d12 + 7, now),  // its real server is gone
            conn(40104, 6, TcpState::Established, sid, d12, now),      // of the slot's last server
        ];
        d.plane.fix_gens();
        d.plane.conns[4].1.dest_gen += 1;
        assert!(d.snapshot(now * SEC, false).unwrap().conns.is_empty());
        let s = d.snapshot(now * SEC + SEC / 2, true).unwrap();
        let rows: Vec<(String, u16, &str, u32)> = s
            .conns
            .iter()
            .map(|c| (c.daddr.to_string(), c.caddr.port(), c.state.as_str(), c.expire))
            .collect();
        assert_eq!(
            rows,
            [
                ("198.18.0.12:80".to_owned(), 40100, "TIME_WAIT", 110),
                ("198.18.0.12:80".to_owned(), 40101, "ESTABLISHED", 26),
            ]
        );
        // Listing them swept the entries due, which leave the counters read after.
        let left: Vec<u16> = d.plane.conns.iter().map(|(k, _)| k.sport.get()).collect();
        assert_eq!(left, [40100, 40101]);
        let c = &s.conns[0];
        assert_eq!(c.proto, Protocol::Tcp);
        assert_eq!(c.caddr, "198.18.0.1:40100".parse().unwrap());
        assert_eq!(c.vaddr, "198.18.0.100:80".parse().unwrap());
        // handle() reads the real clock, by which entries last seen at boot are long expired: it sweeps
        // them as it reads them.
        for (_, v) in &mut d.plane.conns {
            v.last_ns = 0;
        }
        assert!(matches!(d.handle(Request::ListConns), Response::Snapshot(_)));
        assert!(d.plane.conns.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A daemon with RULES and `n` ESTABLISHED connections on .11 from ports 1.., every third one
    /// last seen 100 s before `now` (expired with `--set 30 20 10`), the others at `now`.
    fn swept_daemon(tag: &str, n: u16, now: u64) -> (Daemon<FakePlane>, PathBuf) {
        let dir = state_dir(tag);
        let mut d = fresh(&dir);
        let set = Request::SetTimeouts {
            tcp: 30,
            tcpfin: 20,
            udp: 10,
        };
        assert_eq!(d.handle(set), Response::Ok);
        assert_eq!(d.apply(&cmds(RULES)), Response::Ok);
        let key = svc_key(VIP);
        let sid = d.encoder.svc_id(&key).unwrap();
        let d11 = d.encoder.dest_id(&key, &dkey(11, 80)).unwrap();
        d.plane.conns = (1..=n)
            .map(|p| {
                let last = if p % 3 == 0 { now - 100 } else { now };
                conn(p, 6, TcpState::Established, sid, d11, last)
            })
            .collect();
        d.plane.fix_gens();
        (d, dir)
    }

    fn ports(d: &Daemon<FakePlane>) -> BTreeSet<u16> {
        d.plane.conns.iter().map(|(k, _)| k.sport.get()).collect()
    }

    #[test]
    fn slices_resume_where_the_last_stopped_and_a_pass_expires_everything_due_once() {
        let now = 10_000;
        let (mut d, dir) = swept_daemon("slices", 300, now);
        let live: BTreeSet<u16> = (1..=300).filter(|p| p % 3 != 0).collect();
        let t = d.runtime.timeouts;
        let mut slices = 0;
        let mut seen = 0;
        loop {
            let before = d.sweeper.cursor();
            let s = d.sweeper.slice(&mut d.plane, now * SEC, &t, 20).unwrap();
            slices += 1;
            seen += s.read;
            // Another deletion between slices (a packet's claim, a user's -d): the walk goes on.
            if slices == 3 {
                d.plane.conns.retain(|(k, _)| k.sport.get() != 1);
            }
            if s.passes == 1 {
                assert_eq!(d.sweeper.cursor(), ConnCursor::START);
                break;
            }
            assert!(d.sweeper.cursor() > before, "the cursor moves on");
            assert!(s.read >= 20, "a slice short of its size ends the pass: {s:?}");
        }
        assert!(slices >= 10, "300 entries in slices of 20: {slices} slices");
        assert!(
            (299..=300).contains(&seen),
            "each entry read once in the pass: {seen}"
        );
        let mut want = live.clone();
        want.remove(&1);
        assert_eq!(ports(&d), want, "every due entry expired, every live one kept");
        // The next pass starts over and finds nothing.
        let s = d
            .sweeper
            .round(&mut d.plane, now * SEC, &t, usize::MAX, 10)
            .unwrap();
        assert_eq!((s.read, s.expired, s.passes), (want.len(), 0, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_round_from_mid_table_goes_round_once_and_a_budget_bounds_it() {
        let now = 10_000;
        let (mut d, dir) = swept_daemon("round", 200, now);
        let t = d.runtime.timeouts;
        // Half way through a pass: the listing's round goes on from there, past the end and back.
        d.sweeper.slice(&mut d.plane, 0, &t, 100).unwrap();
        let start = d.sweeper.cursor();
        assert!(start > ConnCursor::START);
        let s = d
            .sweeper
            .round(&mut d.plane, now * SEC, &t, usize::MAX, 10)
            .unwrap();
        assert!(s.read >= 200 && s.read < 220, "once round, not twice: {s:?}");
        assert_eq!((s.expired, s.passes), (66, 1));
        assert!(d.sweeper.cursor() >= start, "stops where it started");
        assert!(ports(&d).iter().all(|p| p % 3 != 0));

        // A budget smaller than the table: that much, and the periodic slices go on from there.
        let (mut d, dir2) = swept_daemon("round-budget", 200, now);
        let s = d.sweeper.round(&mut d.plane, now * SEC, &t, 50, 10).unwrap();
        assert!(s.read >= 50 && s.read < 200, "{s:?}");
        assert_eq!(s.passes, 0);
        assert_eq!(200 - ports(&d).len(), s.expired);
        // The daemon's own sweep before a listing covers this small table whole.
        assert_eq!(d.sweep(now * SEC).unwrap(), 66 - s.expired);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&dir2).unwrap();
    }

    #[test]
    fn the_periodic_sweep_expires_an_orphan_reply_entry_by_looking_its_connection_up() {
        use rvs_abi::{Be16, CONN_F_INPUT_ONLY, DEST_F_VALID, addr_v4};
        let now = 10_000;
        let vs = SvcKey {
            addr: addr_v4([198, 18, 0, 100]),
            port: Be16::new(80),
            proto: 6,
            family: 1,
        };
        let rip = DestVal {
            addr: addr_v4([198, 18, 1, 11]),
            port: Be16::new(8080),
            family: 1,
            fwd: rvs_abi::Fwd::Nat as u8,
            svc_id: 0,
            flags: DEST_F_VALID,
            dgen: 1,
            ..DestVal::default()
        };
        let mut plane = FakePlane::default();
        plane.svcs.insert(vs, SvcVal::default());
        plane.dests.insert(7, rip);
        // Reply entry of client port `p`, from RIP:8080 to 198.18.0.1:p.
        let reply = |p: u16| {
            let (k, v) = conn(p, 6, TcpState::Established, 0, 7, now);
            let rk = ConnKey {
                saddr: rip.addr,
                daddr: k.saddr,
                sport: rip.port,
                dport: k.sport,
                ..k
            };
            (
                rk,
                // A reply entry carries the virtual address and port its client used.
                ConnVal::from(rvs_abi::ConnRep {
                    dest_id: v.dest_id,
                    svc_id: v.svc_id,
                    vaddr: vs.addr,
                    flags: CONN_F_REPLY,
                    dest_gen: v.dest_gen,
                    vport: vs.port,
                    ..rvs_abi::ConnRep::default()
                }),
            )
        };
        // 40 NAT connections with their reply entries; connection 5's is gone (an orphan reply
        // entry), connection 6 has timed out (both its entries go), 7 is a DR connection.
        for p in 1..=40u16 {
            let last = if p == 6 { now - 1000 } else { now };
            let (k, mut v) = conn(p, 6, TcpState::Established, 0, 7, last);
            if p == 7 {
                v.flags = CONN_F_INPUT_ONLY;
            } else {
                plane.conns.push(reply(p));
            }
            if p != 5 {
                plane.conns.push((k, v));
            }
        }
        let t = Timeouts::default();
        let mut sweeper = Sweeper::new();
        let mut total = sweep::Swept::default();
        while total.passes == 0 {
            let s = sweeper.slice(&mut plane, now * SEC, &t, 8).unwrap();
            assert!(s.read < 8 + 8, "a slice is bounded: {s:?}");
            total.read += s.read;
            total.expired += s.expired;
            total.passes += s.passes;
        }
        assert_eq!(
            total.expired, 3,
            "the orphan, and connection 6 with its reply entry"
        );
        let left: BTreeSet<(u16, bool)> = plane
            .conns
            .iter()
            .map(|(k, v)| {
                let reply = v.flags & CONN_F_REPLY != 0;
                (if reply { k.dport.get() } else { k.sport.get() }, reply)
            })
            .collect();
        let want: BTreeSet<(u16, bool)> = (1..=40u16)
            .filter(|p| *p != 6)
            .flat_map(|p| [(p, false), (p, true)])
            .filter(|(p, r)| *p != 5 && !(*p == 7 && *r))
            .collect();
        assert_eq!(left, want);
    }

    #[test]
    fn ipv6_connection_addresses() {
        let mut k = conn(1, 6, TcpState::Established, 0, 0, 0).0;
        k.family = Family::Inet6 as u8;
        k.saddr = rvs_abi::addr_v6("2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(ip_of(&k.saddr, k.family), Some("2001:db8::2".parse().unwrap()));
        assert_eq!(ip_of(&k.saddr, 9), None);
        assert_eq!(proto_of(17), Some(Protocol::Udp));
        assert_eq!(proto_of(1), None);
    }
}
