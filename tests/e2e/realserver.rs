//! `rvs-realserver`: the VIP on lo stays invisible to ARP, setup is idempotent, teardown restores every
//! value it changed.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use rvs_testkit::netns::{Topology, mac_string};

use crate::topo::{binaries, require_root};

const VIP: &str = "198.18.0.100";
const RS_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0, 11];
const KEYS: [&str; 6] = [
    "net/ipv4/conf/all/arp_ignore",
    "net/ipv4/conf/eth0/arp_ignore",
    "net/ipv4/conf/all/arp_announce",
    "net/ipv4/conf/eth0/arp_announce",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/eth0/rp_filter",
];

fn sysctls(t: &Topology) -> Vec<String> {
    KEYS.iter().map(|k| t.sysctl_read("rs", k).unwrap()).collect()
}

fn realserver(t: &Topology, args: &[&str]) -> Output {
    let out = t
        .output_in("rs", Command::new(binaries().realserver).args(args))
        .unwrap();
    assert!(
        out.status.success(),
        "rvs-realserver {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Connects from the client to VIP:80 (nothing listens there) and returns the client's neighbour entry
/// for the VIP afterwards. An answered ARP makes the connection fail fast with a reset and leaves the
/// real server's MAC; an unanswered one fails after the kernel's ARP retries, with no MAC.
fn probe_vip(t: &Topology) -> String {
    t.ip("client", &["neigh", "flush", "dev", "eth0"]).unwrap();
    let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let r = t
        .run_in("client", || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        })
        .unwrap();
    assert!(r.is_err(), "something accepted a connection to {addr}");
    t.ip("client", &["neigh", "show", VIP]).unwrap()
}

#[test]
fn realserver_hides_the_vip_from_arp_and_teardown_restores_everything() {
    require_root();
    let mut t = Topology::new();
    t.add_ns("client").unwrap();
    t.add_ns("rs").unwrap();
    t.veth("client", "eth0", "rs", "eth0").unwrap();
    t.set_mac("rs", "eth0", RS_MAC).unwrap();
    t.addr("client", "eth0", "198.18.0.2/24").unwrap();
    t.addr("rs", "eth0", "198.18.0.11/24").unwrap();
    // Strict reverse-path filtering, as many distributions ship it: setup must relax it.
    t.sysctl("rs", "net/ipv4/conf/all/rp_filter", "1").unwrap();
    let state = RemoveOnDrop(std::env::temp_dir().join(format!("{}-rs-state", t.prefix())));
    let state_arg = state.0.display().to_string();
    let rs_mac = mac_string(RS_MAC);

    // Control: a VIP on lo with the kernel's defaults is answered for, which is the ARP problem.
    t.ip("rs", &["addr", "add", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();
    let neigh = probe_vip(&t);
    assert!(
        neigh.contains(&rs_mac),
        "control: the real server did not answer ARP: {neigh:?}"
    );
    t.ip("rs", &["addr", "del", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();

    let before = sysctls(&t);
    let out = realserver(&t, &["setup", "--vip", VIP, "--state-dir", &state_arg]);
    let printed = String::from_utf8_lossy(&out.stdout);
    for what in [
        "lo: added 198.18.0.100/32",
        "arp_ignore: 0 -> 1",
        "arp_announce: 0 -> 2",
        "rp_filter",
    ] {
        assert!(
            printed.contains(what),
            "setup did not report {what:?}:\n{printed}"
        );
    }
    let set_up = sysctls(&t);
    assert_eq!(&set_up[..4], ["1", "1", "2", "2"], "arp sysctls after setup");
    assert_eq!(set_up[5], "2", "rp_filter of eth0 after setup (all is strict)");
    assert!(
        t.ip("rs", &["addr", "show", "dev", "lo"])
            .unwrap()
            .contains(&format!("{VIP}/32"))
    );

    let again = realserver(&t, &["setup", "--vip", VIP, "--state-dir", &state_arg]);
    let printed = String::from_utf8_lossy(&again.stdout);
    assert!(printed.contains("nothing to change"), "second setup:\n{printed}");
    assert_eq!(sysctls(&t), set_up);

    let neigh = probe_vip(&t);
    assert!(
        !neigh.contains(&rs_mac),
        "the real server still answers ARP for the VIP: {neigh:?}"
    );

    realserver(&t, &["teardown", "--vip", VIP, "--state-dir", &state_arg]);
    assert_eq!(sysctls(&t), before, "teardown did not restore the sysctls");
    assert!(!t.ip("rs", &["addr", "show", "dev", "lo"]).unwrap().contains(VIP));
    assert!(
        !state.0.join(format!("{VIP}.json")).exists(),
        "state file left behind"
    );
}

/// A scratch directory removed when the test ends, even by a panic.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
