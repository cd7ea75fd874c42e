//! The real program: `rvs_dataplane::TestProgram` (rvs_xdp.o with `rvs_test_hooks = 1`, run through
//! BPF_PROG_TEST_RUN), with every error turned into a panic that names the operation.

use rvs_abi::{ConnKey, ConnVal, DestCnt, DropReason, MapOp, Stats, SvcState, Timeouts};
use rvs_dataplane::TestProgram;
use rvs_model::Env;
use rvs_model::env::Fib;

/// The loaded program and its maps (no pins left, nothing attached), with the routes last written to
/// rvs_test_fib.
pub(crate) struct Kernel(TestProgram, Fib);

fn ok<T>(what: &str, r: Result<T, rvs_dataplane::DataplaneError>) -> T {
    r.unwrap_or_else(|e| {
        let mut msg = format!("kernel side: {what}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        panic!("{msg}")
    })
}

impl Kernel {
    /// Loads rvs_xdp.o with the test hooks on and `rvs_conn` of `conn_max` entries.
    pub(crate) fn load(conn_max: u32) -> Self {
        Kernel(ok("load rvs_xdp.o", TestProgram::load(conn_max)), Fib::new())
    }

    /// Applies `ops` in order, as the daemon does.
    pub(crate) fn apply(&mut self, ops: &[MapOp]) {
        ok("apply map ops", self.0.apply(ops));
    }

    /// Lets the program redirect to `ifindex` (rvs_tx_ports).
    pub(crate) fn set_tx_port(&mut self, ifindex: u32) {
        ok("insert into rvs_tx_ports", self.0.set_tx_port(ifindex));
    }

    /// Runs the program once on `frame` with `env` pinned (clock, CPU, random number, routes); the
    /// verdict and the output frame.
    pub(crate) fn run(&mut self, env: &Env, frame: &[u8]) -> (u32, Vec<u8>) {
        if env.fib != self.1 {
            ok("write rvs_test_fib", self.0.set_test_fib(&env.fib));
            self.1 = env.fib.clone();
        }
        ok("BPF_PROG_TEST_RUN", self.0.run(&env.to_test_env(), frame))
    }

    /// Runs rvs_xdp_expire once on `frame` (an `ExpireHdr` and its keys) with `env` pinned.
    pub(crate) fn expire(&mut self, env: &Env, frame: &[u8]) -> (u32, Vec<u8>) {
        ok(
            "BPF_PROG_TEST_RUN of rvs_xdp_expire",
            self.0
                .run_program(rvs_bpf::EXPIRE_PROG, &env.to_test_env(), frame),
        )
    }

    /// Inserts or replaces an entry of rvs_conn.
    pub(crate) fn set_conn(&mut self, key: &ConnKey, val: &ConnVal) {
        ok("write rvs_conn", self.0.set_conn(key, val));
    }

    /// Overwrites `rvs_dest_cnt[id]`.
    pub(crate) fn set_dest_cnt(&mut self, id: u32, val: &DestCnt) {
        ok("write rvs_dest_cnt", self.0.set_dest_cnt(id, val));
    }

    /// `rvs_dest_cnt[id]`.
    pub(crate) fn dest_cnt(&self, id: u32) -> DestCnt {
        ok("read rvs_dest_cnt", self.0.dest_cnt(id))
    }

    /// `rvs_timeouts[0]`.
    pub(crate) fn timeouts(&self) -> Timeouts {
        ok("read rvs_timeouts", self.0.timeouts())
    }

    /// Every entry of rvs_conn, NAT reply entries included.
    pub(crate) fn conns(&self) -> Vec<(ConnKey, ConnVal)> {
        ok("read rvs_conn", self.0.conn_entries())
    }

    /// Every entry of rvs_lblc.
    pub(crate) fn lblc(&self) -> Vec<(rvs_abi::LblcKey, rvs_abi::LblcVal)> {
        ok("read rvs_lblc", self.0.lblc_entries())
    }

    /// `rvs_svc_st[id]`.
    pub(crate) fn svc_st(&self, id: u32) -> SvcState {
        ok("read rvs_svc_st", self.0.svc_st(id))
    }

    /// `rvs_svc_stats[id]` on `cpu`.
    pub(crate) fn svc_stats(&self, cpu: u32, id: u32) -> Stats {
        ok("read rvs_svc_stats", self.0.svc_stats_cpu(id, cpu))
    }

    /// `rvs_dest_stats[id]` on `cpu`.
    pub(crate) fn dest_stats(&self, cpu: u32, id: u32) -> Stats {
        ok("read rvs_dest_stats", self.0.dest_stats_cpu(id, cpu))
    }

    /// `rvs_drops` on `cpu`, by reason.
    pub(crate) fn drops(&self, cpu: u32) -> Vec<(DropReason, u64)> {
        ok("read rvs_drops", self.0.drops_cpu(cpu))
    }
}
