//! Runs the same packets through the model and the kernel and compares verdicts, output bytes and map
//! contents after every step.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use rvs_abi::{ConnKey, ConnVal, DestCnt, DropReason, LblcKey, LblcVal, MapOp, Stats, SvcState, Timeouts};
use rvs_model::env::Fib;
use rvs_model::expire::{rvs_expire_deleted, rvs_expire_frame};
use rvs_model::{Env, Frame, Maps, XdpAction, rvs_xdp_expire, rvs_xdp_ingress};
use rvs_testkit::packet::Packet;

use crate::kernel::Kernel;

/// The only CPU the tests run on: per-CPU slots compare only when both sides count on the same CPU.
pub(crate) const CPU: u32 = 0;
/// `rvs_conn` size in the tests: large enough that the table never fills up (a full table refuses new
/// connections, which the fixtures that want it reach with a smaller table of their own).
pub(crate) const CONN_MAX: u32 = 4096;
/// Default clock of a step: 1 s, plus 1 µs per step so that every step has its own time.
pub(crate) const T0: u64 = 1_000_000_000;

/// Panics unless root: BPF_PROG_TEST_RUN and bpffs need it, and a skipped difftest proves nothing.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "difftest needs root (BPF_PROG_TEST_RUN, bpffs)"
    );
}

/// An interface that exists in the test's network namespace and is in rvs_tx_ports on both sides: a
/// route through it gives XDP_REDIRECT. Ifindexes count per namespace: lo is 1, then the veth pair
/// [`isolate_netns`] creates takes 2 (the peer, created first) and 3.
pub(crate) const TX_PORT: u32 = 2;
/// An interface that exists but is not in rvs_tx_ports (rvs is not attached to it): a route through it
/// falls back to XDP_PASS.
pub(crate) const NOT_ATTACHED: u32 = 3;

/// Moves the calling thread into a new network namespace holding a veth pair (ifindexes `TX_PORT` and
/// `NOT_ATTACHED`), so that rvs_tx_ports can hold real interfaces whatever the machine has: the kernel
/// refuses a devmap entry for an ifindex that names no device. setns/unshare change this thread only;
/// the namespace goes away with the thread (or the next call), nothing to clean up.
fn isolate_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    // `ip` runs as a child of this thread, in its namespace.
    let out = std::process::Command::new("ip")
        .args(["link", "add", "rvsdt0", "type", "veth", "peer", "name", "rvsdt1"])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip link add veth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, index) in [("rvsdt1", TX_PORT), ("rvsdt0", NOT_ATTACHED)] {
        let got = nix::net::if_::if_nametoindex(name).expect("if_nametoindex");
        assert_eq!(got, index, "ifindex of {name} in a fresh namespace");
    }
}

/// Pins the calling thread to `CPU`, so the program's per-CPU map slots are that CPU's.
pub(crate) fn pin_to_cpu() {
    let mut set = nix::sched::CpuSet::new();
    set.set(CPU as usize).expect("cpu in set");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity(0)");
}

/// Everything the program can change, as seen on `CPU`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    conns: Vec<(ConnKey, ConnVal)>,
    lblc: Vec<(LblcKey, LblcVal)>,
    svc_st: Vec<(u32, SvcState)>,
    svc_stats: Vec<(u32, Stats)>,
    dest_stats: Vec<(u32, Stats)>,
    dest_cnt: Vec<(u32, DestCnt)>,
    timeouts: Timeouts,
    drops: Vec<(DropReason, u64)>,
}

pub(crate) fn conn_order(a: &(ConnKey, ConnVal), b: &(ConnKey, ConnVal)) -> std::cmp::Ordering {
    let k = |c: &ConnKey| (c.saddr, c.daddr, c.sport, c.dport, c.proto, c.family);
    k(&a.0).cmp(&k(&b.0))
}

/// Model and kernel in lockstep (quinn's `Pair`).
pub(crate) struct Pair {
    /// The reference model's maps.
    pub(crate) model: Maps,
    kernel: Kernel,
    svc_ids: BTreeSet<u32>,
    dest_ids: BTreeSet<u32>,
}

/// Result of one step, equal on both sides.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) action: XdpAction,
    pub(crate) bytes: Vec<u8>,
}

impl Pair {
    /// Fresh maps on both sides, in a fresh network namespace whose `TX_PORT` is in rvs_tx_ports; needs
    /// root, and pins the thread to `CPU`.
    pub(crate) fn new() -> Self {
        require_root();
        pin_to_cpu();
        isolate_netns();
        let mut pair = Pair {
            model: Maps::new(CONN_MAX),
            kernel: Kernel::load(CONN_MAX),
            svc_ids: BTreeSet::new(),
            dest_ids: BTreeSet::new(),
        };
        pair.kernel.set_tx_port(TX_PORT);
        pair.model
            .rvs_tx_ports
            .update(TX_PORT, TX_PORT, 0)
            .expect("model rvs_tx_ports");
        pair
    }

    /// Applies `ops` to both sides.
    pub(crate) fn apply(&mut self, ops: &[MapOp]) {
        for op in ops {
            match *op {
                MapOp::SvcSet { val, .. } => {
                    self.svc_ids.insert(val.id);
                }
                MapOp::SvcStateSet { id, .. } | MapOp::SvcStatsClear { id } => {
                    self.svc_ids.insert(id);
                }
                MapOp::DestSet { id, .. } | MapOp::DestStatsClear { id } | MapOp::DestCntClear { id } => {
                    self.dest_ids.insert(id);
                }
                MapOp::SvcDel { .. }
                | MapOp::SchedSet { .. }
                | MapOp::CfgSet { .. }
                | MapOp::TimeoutsSet { .. }
                | MapOp::VipSet { .. }
                | MapOp::VipDel { .. }
                | MapOp::MarkSet { .. }
                | MapOp::MarkDel { .. }
                | MapOp::LblcFlush { .. } => {}
            }
        }
        self.model
            .apply(ops)
            .unwrap_or_else(|e| panic!("model refused config: {e}"));
        self.kernel.apply(ops);
    }

    fn ids(&self) -> (BTreeSet<u32>, BTreeSet<u32>) {
        // Ids the config named, plus any slot the model touched (a kernel-only change elsewhere would
        // show up as a difference in conns or drops, which are compared whole).
        let mut svc = self.svc_ids.clone();
        let mut dest = self.dest_ids.clone();
        svc.extend(self.model.rvs_svc_st.nonzero().into_iter().map(|(i, _)| i));
        svc.extend(self.model.rvs_svc_stats.nonzero(CPU).into_iter().map(|(i, _)| i));
        dest.extend(self.model.rvs_dest_stats.nonzero(CPU).into_iter().map(|(i, _)| i));
        dest.extend(self.model.rvs_dest_cnt.nonzero().into_iter().map(|(i, _)| i));
        (svc, dest)
    }

    fn model_state(&self) -> State {
        let (svc, dest) = self.ids();
        let mut conns = self.model.rvs_conn.entries();
        conns.sort_by(conn_order);
        let mut lblc = self.model.rvs_lblc.entries();
        lblc.sort_by_key(|(k, _)| *k);
        State {
            conns,
            lblc,
            svc_st: svc
                .iter()
                .map(|&i| (i, self.model.rvs_svc_st.lookup(i).unwrap_or_default()))
                .collect(),
            svc_stats: svc
                .iter()
                .map(|&i| (i, self.model.rvs_svc_stats.lookup(CPU, i).unwrap_or_default()))
                .collect(),
            dest_stats: dest
                .iter()
                .map(|&i| (i, self.model.rvs_dest_stats.lookup(CPU, i).unwrap_or_default()))
                .collect(),
            dest_cnt: dest
                .iter()
                .map(|&i| (i, self.model.rvs_dest_cnt.lookup(i).unwrap_or_default()))
                .collect(),
            timeouts: self.model.rvs_timeouts.lookup(0).unwrap_or_default(),
            drops: DropReason::ALL
                .iter()
                .map(|&r| (r, self.model.rvs_drops.lookup(CPU, r as u32).unwrap_or(0)))
                .collect(),
        }
    }

    fn kernel_state(&self) -> State {
        let (svc, dest) = self.ids();
        let mut conns = self.kernel.conns();
        conns.sort_by(conn_order);
        let mut lblc = self.kernel.lblc();
        lblc.sort_by_key(|(k, _)| *k);
        State {
            conns,
            lblc,
            svc_st: svc.iter().map(|&i| (i, self.kernel.svc_st(i))).collect(),
            svc_stats: svc.iter().map(|&i| (i, self.kernel.svc_stats(CPU, i))).collect(),
            dest_stats: dest
                .iter()
                .map(|&i| (i, self.kernel.dest_stats(CPU, i)))
                .collect(),
            dest_cnt: dest.iter().map(|&i| (i, self.kernel.dest_cnt(i))).collect(),
            timeouts: self.kernel.timeouts(),
            drops: {
                let mut d = self.kernel.drops(CPU);
                d.sort_by_key(|(r, _)| *r as u32);
                d
            },
        }
    }

    /// Runs `input` through both with `env`; `Err` describes every difference.
    pub(crate) fn step(&mut self, env: &Env, input: &[u8]) -> Result<Outcome, String> {
        assert_eq!(env.cpu, CPU, "the thread is pinned to CPU {CPU}");
        let mut frame = Frame::new(input);
        let m_action = rvs_xdp_ingress(&mut self.model, env, &mut frame);
        let m_bytes = frame.data().to_vec();
        let (k_ret, k_bytes) = self.kernel.run(env, input);
        self.compare(input, m_action, m_bytes, k_ret, k_bytes)
    }

    /// Runs rvs_xdp_expire on both with `env` over `keys`; the number of entries deleted (equal on
    /// both sides), or `Err` with every difference.
    pub(crate) fn expire(&mut self, env: &Env, keys: &[ConnKey]) -> Result<u32, String> {
        assert_eq!(env.cpu, CPU, "the thread is pinned to CPU {CPU}");
        let input = rvs_expire_frame(keys);
        let mut frame = Frame::new(&input);
        let m_action = rvs_xdp_expire(&mut self.model, env, &mut frame);
        let m_bytes = frame.data().to_vec();
        let (k_ret, k_bytes) = self.kernel.expire(env, &input);
        let out = self.compare(&input, m_action, m_bytes, k_ret, k_bytes)?;
        if out.action != XdpAction::Pass {
            return Err(format!("rvs_xdp_expire returned {:?} (both sides)", out.action));
        }
        rvs_expire_deleted(&out.bytes).ok_or_else(|| "output shorter than its header".to_owned())
    }

    /// Writes an entry of rvs_conn on both sides.
    pub(crate) fn set_conn(&mut self, key: &ConnKey, val: &ConnVal) {
        self.model
            .rvs_conn
            .update(*key, *val, 0)
            .expect("model rvs_conn has room");
        self.kernel.set_conn(key, val);
    }

    /// Overwrites `rvs_dest_cnt[id]` on both sides.
    pub(crate) fn set_dest_cnt(&mut self, id: u32, val: &DestCnt) {
        self.dest_ids.insert(id);
        self.model
            .rvs_dest_cnt
            .update(id, *val, 0)
            .expect("model rvs_dest_cnt index");
        self.kernel.set_dest_cnt(id, val);
    }

    /// Compares one run's results and the maps after it.
    fn compare(
        &self,
        input: &[u8],
        m_action: XdpAction,
        m_bytes: Vec<u8>,
        k_ret: u32,
        k_bytes: Vec<u8>,
    ) -> Result<Outcome, String> {
        let mut report = String::new();
        if XdpAction::from_u32(k_ret) != Some(m_action) {
            let _ = writeln!(
                report,
                "verdict: model {m_action:?}, kernel {k_ret} ({:?})",
                XdpAction::from_u32(k_ret)
            );
        }
        if m_bytes != k_bytes {
            let _ = writeln!(
                report,
                "output bytes differ:\n{}",
                hexdiff("model", &m_bytes, "kernel", &k_bytes)
            );
        }
        let (ms, ks) = (self.model_state(), self.kernel_state());
        if ms != ks {
            let _ = writeln!(report, "{}", state_diff(&ms, &ks));
        }
        if report.is_empty() {
            Ok(Outcome {
                action: m_action,
                bytes: m_bytes,
            })
        } else {
            let _ = writeln!(report, "input ({} bytes):\n{}", input.len(), hex(input));
            Err(report)
        }
    }

    /// The model's drop counter of `reason` on `CPU`.
    pub(crate) fn drops(&self, reason: DropReason) -> u64 {
        self.model.rvs_drops.lookup(CPU, reason as u32).unwrap_or(0)
    }
}

fn state_diff(m: &State, k: &State) -> String {
    let mut s = String::from("map state differs (model vs kernel):\n");
    macro_rules! field {
        ($f:ident) => {
            if m.$f != k.$f {
                let _ = writeln!(
                    s,
                    "  {}:\n    model:  {:?}\n    kernel: {:?}",
                    stringify!($f),
                    m.$f,
                    k.$f
                );
            }
        };
    }
    field!(conns);
    field!(lblc);
    field!(svc_st);
    field!(svc_stats);
    field!(dest_stats);
    field!(dest_cnt);
    field!(timeouts);
    field!(drops);
    s
}

/// `bytes` as hex, 16 per line with offsets.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(s, "  {:04x}:", i * 16);
        for b in line {
            let _ = write!(s, " {b:02x}");
        }
        s.push('\n');
    }
    s
}

/// Two frames as aligned hex, 16 bytes per line, with `^^` under every byte that differs (or exists on
/// one side only).
pub(crate) fn hexdiff(a_name: &str, a: &[u8], b_name: &str, b: &[u8]) -> String {
    let mut s = format!("  lengths: {a_name} {}, {b_name} {}\n", a.len(), b.len());
    let w = a_name.len().max(b_name.len());
    for off in (0..a.len().max(b.len())).step_by(16) {
        let row = |v: &[u8]| {
            (off..off + 16)
                .map(|i| v.get(i).map_or("  ".to_owned(), |x| format!("{x:02x}")))
                .collect::<Vec<_>>()
        };
        let (ra, rb) = (row(a), row(b));
        let marks: Vec<&str> = (off..off + 16)
            .map(|i| {
                if i < a.len().max(b.len()) && a.get(i) != b.get(i) {
                    "^^"
                } else {
                    "  "
                }
            })
            .collect();
        let _ = writeln!(s, "  {a_name:>w$} {off:04x}: {}", ra.join(" "));
        let _ = writeln!(s, "  {b_name:>w$} {off:04x}: {}", rb.join(" "));
        if marks.contains(&"^^") {
            let _ = writeln!(s, "  {:>w$}       {}", "", marks.join(" "));
        }
    }
    s
}

/// What a step must produce, besides model == kernel.
#[derive(Clone, Debug)]
pub(crate) enum Expect {
    /// XDP_PASS, frame untouched.
    Pass,
    /// XDP_PASS of exactly this frame (a packet rewritten for the kernel to forward).
    PassAs(Packet),
    /// XDP_TX with exactly this frame.
    Tx(Packet),
    /// XDP_REDIRECT with exactly this frame.
    Redirect(Packet),
    /// XDP_DROP, frame untouched, the reason's counter up by one.
    Drop(DropReason),
    /// XDP_DROP of a frame already rewritten when the reason showed (the bytes are what the program
    /// left; a dropped frame goes nowhere), the reason's counter up by one.
    DropAs(DropReason, Packet),
    /// A run of rvs_xdp_expire (the step's `expire` keys) that deleted this many entries.
    Expired(u32),
}

/// A map write before a step's packet, on both sides: state no `MapOp` can write.
#[derive(Clone, Debug)]
pub(crate) enum Poke {
    /// Insert or replace an entry of rvs_conn.
    Conn(ConnKey, ConnVal),
    /// Overwrite a real server's counters.
    DestCnt(u32, DestCnt),
}

/// A check of the maps after a step (run on the model's maps, which equal the kernel's by then).
pub(crate) type Check = fn(&Maps) -> Result<(), String>;

/// One packet of a case.
#[derive(Clone)]
pub(crate) struct Step {
    /// Configuration changes applied to both sides before the packet.
    pub(crate) reconfig: Vec<MapOp>,
    pub(crate) input: Packet,
    /// `None`: `T0` + 1 µs per step. The CPU is always `CPU`.
    pub(crate) now_ns: Option<u64>,
    /// What `rvs_prandom` returns.
    pub(crate) prandom: u32,
    /// What `rvs_fib_lookup` answers (empty: no route anywhere).
    pub(crate) routes: Fib,
    pub(crate) expect: Expect,
    pub(crate) check: Option<Check>,
    /// Map writes before the packet, after `reconfig`.
    pub(crate) pokes: Vec<Poke>,
    /// `Some`: the step runs rvs_xdp_expire over these keys instead of sending `input`.
    pub(crate) expire: Option<Vec<ConnKey>>,
}

impl Step {
    pub(crate) fn new(input: Packet, expect: Expect) -> Self {
        Step {
            reconfig: Vec::new(),
            input,
            now_ns: None,
            prandom: 0,
            routes: Fib::new(),
            expect,
            check: None,
            pokes: Vec::new(),
            expire: None,
        }
    }
    /// A run of rvs_xdp_expire over `keys` that must delete `deleted` entries.
    pub(crate) fn expire(keys: Vec<ConnKey>, deleted: u32) -> Self {
        Step {
            expire: Some(keys),
            ..Step::new(rvs_testkit::packet::pkt(), Expect::Expired(deleted))
        }
    }
    pub(crate) fn poke(mut self, p: Poke) -> Self {
        self.pokes.push(p);
        self
    }
    pub(crate) fn at(mut self, now_ns: u64) -> Self {
        self.now_ns = Some(now_ns);
        self
    }
    #[allow(
        dead_code,
        reason = "for fixtures whose packets depend on rvs_prandom (TUN's)"
    )]
    pub(crate) fn prandom(mut self, prandom: u32) -> Self {
        self.prandom = prandom;
        self
    }
    pub(crate) fn routes(mut self, routes: Fib) -> Self {
        self.routes = routes;
        self
    }
    pub(crate) fn after(mut self, ops: Vec<MapOp>) -> Self {
        self.reconfig = ops;
        self
    }
    pub(crate) fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }
}

/// A named case: a configuration, then packets in order.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) config: Vec<MapOp>,
    pub(crate) steps: Vec<Step>,
}

impl Case {
    /// A case of one packet.
    pub(crate) fn one(name: &'static str, config: Vec<MapOp>, input: Packet, expect: Expect) -> Self {
        Case {
            name,
            config,
            steps: vec![Step::new(input, expect)],
        }
    }
}

fn expect_ok(pair: &Pair, step: &Step, input: &[u8], out: &Outcome, drops_before: u64) -> Result<(), String> {
    let (want_action, want_bytes) = match &step.expect {
        Expect::Pass => (XdpAction::Pass, input.to_vec()),
        Expect::PassAs(p) => (XdpAction::Pass, p.build()),
        Expect::Tx(p) => (XdpAction::Tx, p.build()),
        Expect::Redirect(p) => (XdpAction::Redirect, p.build()),
        Expect::Expired(_) => return Err("Expect::Expired on a packet step".to_owned()),
        Expect::Drop(reason) | Expect::DropAs(reason, _) => {
            let after = pair.drops(*reason);
            if after != drops_before + 1 {
                return Err(format!(
                    "drop counter {reason:?}: {drops_before} -> {after}, expected +1"
                ));
            }
            match &step.expect {
                Expect::DropAs(_, p) => (XdpAction::Drop, p.build()),
                _ => (XdpAction::Drop, input.to_vec()),
            }
        }
    };
    if out.action != want_action {
        return Err(format!(
            "verdict {:?} (both sides), expected {want_action:?}",
            out.action
        ));
    }
    if out.bytes != want_bytes {
        return Err(format!(
            "output (both sides) differs from the expected frame:\n{}",
            hexdiff("got", &out.bytes, "expected", &want_bytes)
        ));
    }
    if let Some(check) = step.check {
        check(&pair.model)?;
    }
    Ok(())
}

/// Runs one case on a fresh pair.
pub(crate) fn run_case(case: &Case) -> Result<(), String> {
    let mut pair = Pair::new();
    pair.apply(&case.config);
    for (i, step) in case.steps.iter().enumerate() {
        let env = Env {
            now_ns: step.now_ns.unwrap_or(T0 + 1000 * i as u64),
            cpu: CPU,
            prandom: step.prandom,
            fib: step.routes.clone(),
        };
        if !step.reconfig.is_empty() {
            pair.apply(&step.reconfig);
        }
        for p in &step.pokes {
            match p {
                Poke::Conn(k, v) => pair.set_conn(k, v),
                Poke::DestCnt(id, v) => pair.set_dest_cnt(*id, v),
            }
        }
        if let Some(keys) = &step.expire {
            let deleted = pair
                .expire(&env, keys)
                .map_err(|e| format!("step {i} (expire): model and kernel disagree:\n{e}"))?;
            let Expect::Expired(want) = step.expect else {
                return Err(format!("step {i}: an expiry step expects Expect::Expired"));
            };
            if deleted != want {
                return Err(format!(
                    "step {i} (expire): deleted {deleted} (both sides), expected {want}"
                ));
            }
            if let Some(check) = step.check {
                check(&pair.model).map_err(|e| format!("step {i}: {e}"))?;
            }
            continue;
        }
        let input = step.input.build();
        let drops_before = match step.expect {
            Expect::Drop(r) | Expect::DropAs(r, _) => pair.drops(r),
            _ => 0,
        };
        let out = pair
            .step(&env, &input)
            .map_err(|e| format!("step {i}: model and kernel disagree:\n{e}"))?;
        expect_ok(&pair, step, &input, &out, drops_before).map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(())
}

/// Runs every case and fails with the list of the failed ones.
pub(crate) fn run_cases(cases: Vec<Case>) {
    require_root();
    let mut failed = Vec::new();
    let n = cases.len();
    for case in &cases {
        match run_case(case) {
            Ok(()) => eprintln!("ok    {}", case.name),
            Err(e) => {
                eprintln!("FAIL  {}\n{e}", case.name);
                failed.push(case.name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} cases failed: {failed:#?}",
        failed.len()
    );
}
