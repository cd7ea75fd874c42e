//! `rvsadm` linked as `ipvsadm` answers as ipvsadm: its version line, its usage hints, and the same
//! listings from the daemon that `$RVS_SOCKET` names.

use std::process::{Command, Output};

use crate::topo::{OrLog, binaries, lab};

/// shared/ipvs-golden/version.txt.
const VERSION: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n";

fn text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_symlink_named_ipvsadm_answers_as_ipvsadm() {
    let lab = lab(3);
    lab.add_service("wrr", &[3, 2, 1]).or_log(&lab, "configure wrr");
    lab.spread(6).or_log(&lab, "connections through the VIP");
    // In the lab's scratch directory, which the lab removes.
    let ipvsadm = lab.run_dir().join("ipvsadm");
    std::os::unix::fs::symlink(binaries().rvsadm, &ipvsadm).or_log(&lab, "symlink ipvsadm -> rvsadm");
    let run = |args: &[&str], socket: bool| {
        let mut cmd = Command::new(&ipvsadm);
        cmd.args(args).env_remove(rvs_api::SOCKET_ENV);
        if socket {
            cmd.env(rvs_api::SOCKET_ENV, lab.socket());
        }
        text(&cmd.output().or_log(&lab, &format!("ipvsadm {args:?}")))
    };

    // The version needs no daemon.
    for flag in ["-v", "--version"] {
        assert_eq!(run(&[flag], false), (Some(0), VERSION.to_owned(), String::new()));
    }
    // errors.txt: an unknown option names the program as invoked.
    assert_eq!(
        run(&["--bogus"], true),
        (
            Some(255),
            String::new(),
            "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n".to_owned()
        )
    );
    let help = run(&["-h"], false);
    assert_eq!(help.0, Some(0), "{help:?}");
    assert!(
        help.1
            .starts_with(&format!("{VERSION}Usage:\n  ipvsadm -A|E virtual-service ")),
        "{}",
        help.1
    );

    // The listings are rvsadm's, from the daemon RVS_SOCKET names.
    // (Not -Lnc: its expiry column may tick between two runs.)
    for args in [&["-Ln"][..], &["-Sn"], &["-Ln", "--stats"], &["-L", "--timeout"]] {
        let want = lab.rvsadm_ok(args).or_log(&lab, &format!("rvsadm {args:?}"));
        assert_eq!(run(args, true), (Some(0), want, String::new()), "{args:?}");
    }
    let listing = run(&["-Ln"], true).1;
    assert!(listing.contains("TCP  198.18.0.100:80 wrr\n"), "{listing}");
}
