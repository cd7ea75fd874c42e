//! The lab every test starts from, and the XDP_PASS program its switch port needs.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rvs_testkit::lab::{Binaries, DIRECTOR, DrLab, Keeper, real_ip, real_name};
use rvs_testkit::netns::Topology;
use rvs_testkit::{http, wait};

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

/// Server processes, killed on drop (also when a test panics).
pub(crate) struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts an HTTP server on `port` (besides the lab's own) in every real server and waits until each
/// answers with its name.
pub(crate) fn start_http_servers(lab: &DrLab, port: u16) -> Servers {
    let mut servers = Servers(Vec::new());
    for i in 1..=lab.reals() {
        let name = real_name(i);
        let child = lab
            .topo()
            .spawn_in(
                &name,
                Command::new("python3")
                    .args(["-c", http::HTTPD_PY, &name, &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .or_log(lab, "start a server");
        servers.0.push(child);
    }
    for i in 1..=lab.reals() {
        let addr = SocketAddr::new(IpAddr::V4(real_ip(i)), port);
        let got = wait::until(
            &format!("{}'s server at {addr}", real_name(i)),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                lab.topo()
                    .run_in(DIRECTOR, || http::get_once(addr, None))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            },
        )
        .or_log(lab, "server up");
        assert_eq!(got, real_name(i));
    }
    servers
}
