//! The lab every test starts from, and the XDP_PASS program its switch port needs.

use rvs_testkit::lab::{Binaries, DrLab, Keeper};
use rvs_testkit::netns::Topology;

/// Panics unless running as root: the tests create namespaces, attach XDP programs and pin under
/// /sys/fs/bpf. A skipped test would pass without proving anything.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the e2e tests need root (network namespaces, XDP, /sys/fs/bpf): run `sudo -E cargo test --test e2e`"
    );
}

/// The binaries under test, as cargo built them for this test binary.
pub(crate) fn binaries() -> Binaries {
    Binaries {
        rvsd: env!("CARGO_BIN_EXE_rvsd").into(),
        rvsadm: env!("CARGO_BIN_EXE_rvsadm").into(),
        realserver: env!("CARGO_BIN_EXE_rvs-realserver").into(),
    }
}

/// Attaches `rvs_pass` (XDP_PASS) in native mode to `ifname` in namespace `ns`. The returned keeper owns
/// the program: dropping it detaches it.
pub(crate) fn attach_pass(topo: &Topology, ns: &str, ifname: &str) -> Result<Keeper, String> {
    // The interface name is resolved in this thread's namespace, which is `ns`.
    topo.run_in(ns, || {
        rvs_dataplane::attach_pass(ifname).map(|p| Box::new(p) as Keeper)
    })
    .map_err(|e| e.to_string())?
}

/// A running lab with `reals` real servers and rvsd started, no service yet.
pub(crate) fn lab(reals: usize) -> DrLab {
    require_root();
    DrLab::start(binaries(), reals, &attach_pass).unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
}

/// Unwraps a lab result, printing rvsd's log on failure (the daemon's view usually explains it).
pub(crate) trait OrLog<T> {
    /// The value, or a panic with `what`, the error and rvsd's log.
    fn or_log(self, lab: &DrLab, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrLog<T> for Result<T, E> {
    fn or_log(self, lab: &DrLab, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}\n--- rvsd log\n{}", lab.rvsd_log()))
    }
}
