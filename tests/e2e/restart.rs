//! The data plane outlives the daemon: pinned program, link and maps keep forwarding while rvsd is down,
//! and a new rvsd adopts them without disturbing established connections.

use rvs_testkit::lab::{DIRECTOR, IFNAME};

use crate::topo::{OrLog, lab};

#[test]
fn long_lived_connection_survives_rvsd_kill_and_restart_on_the_same_real_server() {
    let mut lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    let mut conn = lab.connect().or_log(&lab, "open a kept-alive connection");
    let first = conn.get().or_log(&lab, "first request");
    assert!(first.starts_with("rs"), "answered by {first:?}");

    lab.kill_rvsd().or_log(&lab, "SIGKILL rvsd");
    let while_down = conn.get().or_log(&lab, "request while rvsd is dead");
    assert_eq!(while_down, first, "the connection moved while rvsd was down");

    lab.start_rvsd().or_log(&lab, "start rvsd again");
    let after = conn.get().or_log(&lab, "request after the restart");
    assert_eq!(after, first, "the connection moved across the restart");

    // The restarted daemon still has the service, and new connections are scheduled as before.
    let listing = lab
        .rvsadm_ok(&["-Ln"])
        .or_log(&lab, "rvsadm -Ln after the restart");
    assert!(
        listing.contains("TCP  198.18.0.100:80 rr"),
        "service lost across the restart:\n{listing}"
    );
    let got = lab.spread(9).or_log(&lab, "new connections after the restart");
    assert_eq!(got.values().sum::<usize>(), 9);
    assert_eq!(
        got.len(),
        3,
        "new connections are not spread over all real servers: {got:?}"
    );
    let last = conn.get().or_log(&lab, "request after new connections");
    assert_eq!(last, first);
}

#[test]
fn sigterm_leaves_forwarding_running_and_unload_removes_everything() {
    let mut lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    lab.get().or_log(&lab, "a request before SIGTERM");

    let status = lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    assert!(
        status.success(),
        "rvsd exited with {status} on SIGTERM:\n{}",
        lab.rvsd_log()
    );
    let got = lab.spread(6).or_log(&lab, "requests with rvsd stopped");
    assert_eq!(got.values().sum::<usize>(), 6);

    let mut args = lab.rvsd_args();
    args.push("--unload".into());
    let out = lab
        .topo()
        .output_in(
            DIRECTOR,
            std::process::Command::new(crate::topo::binaries().rvsd).args(&args),
        )
        .or_log(&lab, "run rvsd --unload");
    assert!(
        out.status.success(),
        "rvsd --unload failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let pins: Vec<_> = std::fs::read_dir(lab.pin_dir())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        pins.is_empty(),
        "pins left in {}: {pins:?}",
        lab.pin_dir().display()
    );
    let link = lab
        .topo()
        .ip(DIRECTOR, &["-d", "link", "show", IFNAME])
        .or_log(&lab, "ip link show");
    assert!(!link.contains("xdp"), "an XDP program is still attached:\n{link}");
    // Without the program the VIP is just a local address of the director, where nothing listens.
    assert!(lab.get().is_err(), "the VIP still answers after --unload");
}
