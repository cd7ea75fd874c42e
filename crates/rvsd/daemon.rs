//! The daemon: startup (restore, adopt or load, attach), the single loop that serialises every change,
//! and the operations behind the API.
//!
//! Invariant between requests: `table` is what the rules file says, and the maps hold
//! `encoder.sync(table, neigh)`. A change is committed only when it is in the maps and on disk; otherwise
//! both are put back.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rvs_abi::{ConnKey, ConnVal, DestVal, MapOp, Stats, SvcKey, SvcVal};
use rvs_api::{DestSnap, Request, Response, ServiceSnap, Snapshot, StatsSnap};
use rvs_core::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::api::{self, Call};
use crate::backend::{Dataplane, DataplaneConfig, Encoder, Table, now_ns, parse_rules_with_lines, save_restorable};
use crate::config::Config;
use crate::conns;
use crate::neigh::{self, NeighMap, Resolver};
use crate::state::RulesFile;

/// How often expired connections are deleted.
const SWEEP: Duration = Duration::from_secs(2);

/// What the daemon needs from the data plane; implemented by `rvs_dataplane::Dataplane`, and by a fake
/// in tests.
pub(crate) trait Plane {
    fn apply(&mut self, ops: &[MapOp]) -> anyhow::Result<()>;
    fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>>;
    fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>>;
    fn svc_stats(&self, id: u32) -> anyhow::Result<Stats>;
    fn dest_stats(&self, id: u32) -> anyhow::Result<Stats>;
    fn conns(&self) -> anyhow::Result<Vec<(ConnKey, ConnVal)>>;
    fn delete_conn(&mut self, key: &ConnKey) -> anyhow::Result<()>;
}

impl Plane for Dataplane {
    fn apply(&mut self, ops: &[MapOp]) -> anyhow::Result<()> {
        Ok(Dataplane::apply(self, ops)?)
    }
    fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>> {
        Ok(Dataplane::services(self)?)
    }
    fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>> {
        Ok(Dataplane::dests(self)?)
    }
    fn svc_stats(&self, id: u32) -> anyhow::Result<Stats> {
        Ok(Dataplane::svc_stats(self, id)?)
    }
    fn dest_stats(&self, id: u32) -> anyhow::Result<Stats> {
        Ok(Dataplane::dest_stats(self, id)?)
    }
    fn conns(&self) -> anyhow::Result<Vec<(ConnKey, ConnVal)>> {
        Ok(Dataplane::conns(self)?)
    }
    fn delete_conn(&mut self, key: &ConnKey) -> anyhow::Result<()> {
        Ok(Dataplane::delete_conn(self, key)?)
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
}

impl<P: Plane> Daemon<P> {
    /// Brings the maps to `table`'s image. With an adopted data plane and an identical table (a restart),
    /// this writes nothing, so established connections are not disturbed.
    pub(crate) fn start(
        plane: P,
        encoder: Encoder,
        table: Table,
        neigh: NeighMap,
        rules: RulesFile,
        conn_tab_size: u32,
    ) -> anyhow::Result<Self> {
        let mut d = Self {
            plane,
            table,
            encoder,
            neigh,
            rules,
            conn_tab_size,
        };
        let ops = d.sync_ops().context("cannot encode the restored rules")?;
        d.plane
            .apply(&ops)
            .context("cannot write the restored rules to the data plane")?;
        info!(
            services = d.table.services().len(),
            map_ops = ops.len(),
            "rules in force"
        );
        Ok(d)
    }

    fn sync_ops(&mut self) -> Result<Vec<MapOp>, rvs_core::ApplyError> {
        let neigh = &self.neigh;
        self.encoder.sync(&self.table, &|ip| neigh.get(&ip).copied())
    }

    /// Every real server address.
    pub(crate) fn targets(&self) -> BTreeSet<IpAddr> {
        targets(&self.table)
    }

    /// Serves one API request.
    pub(crate) fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Apply(cmds) => self.apply(&cmds),
            Request::List => match self.snapshot(now_ns()) {
                Ok(s) => Response::Snapshot(s),
                Err(e) => Response::Failed(format!("{e:#}")),
            },
        }
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

    fn commit(&mut self, next: Table) -> Result<(), Refusal> {
        let neigh = &self.neigh;
        // A refusing sync leaves the encoder as it was, and nothing has been written yet.
        let ops = self
            .encoder
            .sync(&next, &|ip| neigh.get(&ip).copied())
            .map_err(Refusal::Encoder)?;
        if let Err(e) = self.plane.apply(&ops) {
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
            self.plane.apply(&ops)
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
            self.plane.apply(&ops)
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

    /// The table with counters; ActiveConn/InActConn counted from the connection table at `now_ns`.
    pub(crate) fn snapshot(&self, now_ns: u64) -> anyhow::Result<Snapshot> {
        let conns = self.plane.conns().context("cannot read the connection table")?;
        let counts = conns::count(&conns, now_ns);
        let mut services = Vec::with_capacity(self.table.services().len());
        for e in self.table.services() {
            let key = &e.service.key;
            let sid = self.encoder.svc_id(key);
            let stats = sid
                .map(|id| self.plane.svc_stats(id))
                .transpose()?
                .unwrap_or_default();
            let mut dests = Vec::with_capacity(e.dests.len());
            for d in &e.dests {
                let did = self.encoder.dest_id(key, &d.key);
                let stats = did
                    .map(|id| self.plane.dest_stats(id))
                    .transpose()?
                    .unwrap_or_default();
                let c = sid
                    .zip(did)
                    .and_then(|ids| counts.get(&ids).copied())
                    .unwrap_or_default();
                dests.push(DestSnap {
                    dest: d.clone(),
                    active: c.active,
                    inactive: c.inactive,
                    persist: 0,
                    stats: stats_snap(stats),
                });
            }
            services.push(ServiceSnap {
                service: e.service.clone(),
                stats: stats_snap(stats),
                dests,
            });
        }
        Ok(Snapshot {
            conn_tab_size: self.conn_tab_size,
            services,
        })
    }

    /// Deletes the connections IPVS would have timed out by `now_ns`; returns how many.
    pub(crate) fn sweep(&mut self, now_ns: u64) -> anyhow::Result<usize> {
        let conns = self.plane.conns().context("cannot read the connection table")?;
        let mut n = 0;
        for k in conns::expired(&conns, now_ns) {
            // The LRU may have evicted it meanwhile; that is not an error worth more than a debug line.
            match self.plane.delete_conn(&k) {
                Ok(()) => n += 1,
                Err(e) => debug!("cannot delete an expired connection: {e:#}"),
            }
        }
        Ok(n)
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(cfg: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg.interfaces.is_empty(),
        "no interface to attach to: give -i IFACE or `interfaces` in the configuration file"
    );
    let rules = RulesFile::open(&cfg.state_dir)?;
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
    let (encoder, seed) = if adopted {
        let svcs = Plane::services(&dp)?;
        let dests = Plane::dests(&dp)?;
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
    info!(interfaces = ?cfg.interfaces, "attached");

    let mut resolver = Resolver::new(seed)?;
    let initial_targets = targets(&table);
    if let Err(e) = resolver.pass(&initial_targets).await {
        warn!("initial neighbour resolution failed: {e:#}");
    }
    let conn_tab_size = dp.conn_max();
    let mut daemon = Daemon::start(dp, encoder, table, resolver.cache().clone(), rules, conn_tab_size)?;

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
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
            _ = sweep.tick() => match daemon.sweep(now_ns()) {
                Ok(0) => {}
                Ok(n) => debug!(expired = n, "swept the connection table"),
                Err(e) => warn!("connection sweep: {e:#}"),
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
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;

    use rvs_abi::{DEST_F_NEIGH, TcpState};
    use rvs_core::ApplyError;
    use rvs_core::ipvsadm::parse_rules;

    use super::*;
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
    }

    impl FakePlane {
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
        fn services(&self) -> anyhow::Result<Vec<(SvcKey, SvcVal)>> {
            Ok(self.svcs.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn dests(&self) -> anyhow::Result<Vec<(u32, DestVal)>> {
            Ok(self.dests.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn svc_stats(&self, id: u32) -> anyhow::Result<Stats> {
            Ok(Stats {
                conns: 100 + u64::from(id),
                inpkts: 1,
                ..Default::default()
            })
        }
        fn dest_stats(&self, id: u32) -> anyhow::Result<Stats> {
            Ok(Stats {
                conns: 1000 + u64::from(id),
                inbytes: 2,
                ..Default::default()
            })
        }
        fn conns(&self) -> anyhow::Result<Vec<(ConnKey, ConnVal)>> {
            Ok(self.conns.clone())
        }
        fn delete_conn(&mut self, key: &ConnKey) -> anyhow::Result<()> {
            let before = self.conns.len();
            self.conns.retain(|(k, _)| k != key);
            anyhow::ensure!(self.conns.len() < before, "no such entry");
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
        let d = Daemon::start(plane, encoder, table, seed, rules, 4096).unwrap();
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
        let s = d.snapshot(now * 1_000_000_000).unwrap();
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
        assert_eq!(d.sweep(now * 1_000_000_000).unwrap(), 1);
        let left: Vec<u16> = d.plane.conns.iter().map(|(k, _)| k.sport.get()).collect();
        assert_eq!(left, [1, 2, 3, 5]);
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
        let e = restore("-A -t 198.18.0.100:80 -s wlc\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/var/lib/rvs/rules:1: Scheduler or persistence engine not found"
        );
        assert_eq!(restore("", p).unwrap(), Table::new());
    }
}
