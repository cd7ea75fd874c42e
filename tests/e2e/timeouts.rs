//! `--set tcp tcpfin udp` and `-L --timeout`: short timeouts make idle entries expire, and the
//! counters follow; the timeouts survive a restart of rvsd.

use std::time::Duration;

use rvs_testkit::lab::{PORT, Proto, UDP_PORT, vip_addr, vip_udp_addr};

use crate::rvsadm_out::{ConnRow, await_conns, conn_rows, dest_lines, index, rs, svc};
use crate::topo::{OrLog, lab};

#[test]
fn short_timeouts_expire_idle_tcp_and_udp_entries_and_survive_a_restart() {
    let mut lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    lab.add_service_on(Proto::Udp, UDP_PORT, "rr", &[1, 1, 1])
        .or_log(&lab, "configure the UDP service");
    lab.start_udp_servers().or_log(&lab, "start the UDP servers");

    for args in [&["-L", "--timeout"][..], &["-Ln", "--timeout"]] {
        let t = lab.rvsadm_ok(args).or_log(&lab, "rvsadm -L --timeout");
        assert_eq!(t, "Timeout (tcp tcpfin udp): 900 120 300\n", "{args:?}");
    }
    let set = lab.rvsadm(&["--set", "5", "3", "4"]).or_log(&lab, "rvsadm --set");
    assert!(
        set.status.success() && set.stdout.is_empty() && set.stderr.is_empty(),
        "--set 5 3 4: {set:?}"
    );
    let want = "Timeout (tcp tcpfin udp): 5 3 4\n";
    assert_eq!(
        lab.rvsadm_ok(&["-L", "--timeout"]).or_log(&lab, "-L --timeout"),
        want
    );

    // The timeouts are saved with --set: a daemon killed without a chance to write anything and
    // started again has them, and it is this daemon that expires the entries below.
    lab.kill_rvsd().or_log(&lab, "SIGKILL rvsd");
    lab.start_rvsd().or_log(&lab, "start rvsd again");
    assert_eq!(
        lab.rvsadm_ok(&["-L", "--timeout"])
            .or_log(&lab, "-L --timeout after a restart"),
        want,
        "the timeouts did not survive the restart"
    );

    // An idle kept-alive connection (ESTABLISHED, 5 s) and one the server closed (FIN_WAIT, 3 s).
    let mut held = lab.connect().or_log(&lab, "open a kept-alive connection");
    let held_rs = index(&held.get().or_log(&lab, "request on the kept-alive connection"));
    let held_src = held.local_addr().or_log(&lab, "local address");
    let closed_rs = index(&lab.get().or_log(&lab, "one request on its own connection"));
    await_conns(
        &lab,
        "the idle connection (ESTABLISHED) and the closed one (FIN_WAIT)",
        Duration::from_secs(10),
        |rows| {
            let tcp: Vec<&ConnRow> = rows.iter().filter(|r| r.proto == "TCP").collect();
            let states: Vec<(&str, std::net::SocketAddr)> =
                tcp.iter().map(|r| (r.state.as_str(), r.dest)).collect();
            let ok = tcp.len() == 2
                && tcp.iter().all(|r| r.virt == vip_addr())
                && tcp
                    .iter()
                    .any(|r| r.source == held_src && r.state == "ESTABLISHED" && r.dest == rs(held_rs, PORT))
                && states.contains(&("FIN_WAIT", rs(closed_rs, PORT)))
                && tcp
                    .iter()
                    .all(|r| r.expire <= if r.state == "FIN_WAIT" { 3 } else { 5 });
            if ok { Ok(()) } else { Err("not yet".to_owned()) }
        },
    );

    // Three datagrams from three source ports: rr sends one to each real server.
    let mut asked = Vec::new();
    for _ in 0..3 {
        let (src, name) = lab.udp_ask().or_log(&lab, "a datagram through the VIP");
        asked.push((src, index(&name)));
    }
    let mut by_rs: Vec<usize> = asked.iter().map(|(_, i)| *i).collect();
    by_rs.sort_unstable();
    assert_eq!(by_rs, [1, 2, 3], "rr over three real servers: {asked:?}");
    let rows = conn_rows(&lab);
    let udp: Vec<&ConnRow> = rows.iter().filter(|r| r.proto == "UDP").collect();
    assert_eq!(udp.len(), 3, "{rows:#?}");
    for (src, i) in &asked {
        let r = udp
            .iter()
            .find(|r| r.source == *src)
            .unwrap_or_else(|| panic!("{src} not listed: {rows:#?}"));
        assert_eq!(
            (r.state.as_str(), r.virt, r.dest),
            ("UDP", vip_udp_addr(), rs(*i, UDP_PORT)),
            "{r:?}"
        );
        assert!(
            r.expire <= 4,
            "a UDP entry expires in {} s with udp=4: {r:?}",
            r.expire
        );
    }
    // UDP entries are never active (§2.6).
    let lines = dest_lines(&lab);
    let (tcp, udp_svc) = (svc(Proto::Tcp, PORT), svc(Proto::Udp, UDP_PORT));
    for i in 1..=3 {
        let d = lines[&(udp_svc.clone(), rs(i, UDP_PORT))];
        assert_eq!(d.active, 0, "rs{i}: {lines:#?}");
        assert_eq!(d.inactive, 1, "rs{i}: {lines:#?}");
    }

    // Everything expires: the idle connection after 5 s, the closed one after 3, the datagrams after 4.
    await_conns(&lab, "every entry to expire", Duration::from_secs(40), |rows| {
        if rows.is_empty() {
            Ok(())
        } else {
            Err(format!("{} entries left", rows.len()))
        }
    });
    let lines = dest_lines(&lab);
    for i in 1..=3 {
        for key in [(tcp.clone(), rs(i, PORT)), (udp_svc.clone(), rs(i, UDP_PORT))] {
            let d = lines[&key];
            assert_eq!((d.active, d.inactive), (0, 0), "{key:?}: {lines:#?}");
        }
    }
    drop(held);
}
