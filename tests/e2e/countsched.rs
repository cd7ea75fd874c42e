//! The count-driven schedulers (lc, wlc, sed, nq, fo, ovf, twos) and the `-x`/`-y` thresholds through
//! the real data plane, with kept-alive connections held open so that the per-real-server counters
//! the schedulers read are known at every step.
//!
//! IPVS's rules (ipvs-features.md §2.2, §2.3, §2.6): a TCP connection is active from its first SYN
//! (SYN_RECV, then ESTABLISHED) and inactive once the client's FIN makes it FIN_WAIT; overhead is
//! active × 256 + inactive (sed and nq: active + 1); ties go to the earlier real server in IPVS's list
//! order, the most recently added first. `DrLab::add_service` adds rs1 first, so the list is rsN, …,
//! rs1. Every expected sequence below is derived by hand from those rules; each one differs from what a
//! neighbouring scheduler (or a counter that misses a connection) would give.

use std::collections::BTreeMap;
use std::time::Duration;

use rvs_testkit::http::HttpConn;
use rvs_testkit::lab::{CLIENT, DrLab, PORT, Proto, real_ip, vip_addr};
use rvs_testkit::wait;

use crate::rvsadm_out::{dest_lines, index, rs, svc};
use crate::topo::{OrLog, lab};

/// How long the director may take to see a close (the client's FIN crossing the segment), or the
/// sweep to expire a FIN_WAIT entry of a 2-second `tcpfin`.
const SETTLE: Duration = Duration::from_secs(20);

/// `rvsadm ARGS`, which must succeed.
fn adm(lab: &DrLab, args: &[&str]) {
    lab.rvsadm_ok(args)
        .or_log(lab, &format!("rvsadm {}", args.join(" ")));
}

/// `-A -t VIP:80` with `-s sched` (none: rvsadm's default), then one DR real server per entry of
/// `dests`, rs1 first: its weight and any further options (`-x`, `-y`).
fn service(lab: &DrLab, sched: Option<&str>, dests: &[(u32, &[&str])]) {
    let vip = vip_addr().to_string();
    let mut add = vec!["-A", "-t", &vip];
    if let Some(s) = sched {
        add.extend(["-s", s]);
    }
    adm(lab, &add);
    for (i, (w, extra)) in dests.iter().enumerate() {
        let rs = format!("{}:{PORT}", real_ip(i + 1));
        let w = w.to_string();
        let mut args = vec!["-a", "-t", &vip, "-r", &rs, "-g", "-w", &w];
        args.extend_from_slice(extra);
        adm(lab, &args);
    }
}

/// `rvsadm -e -t VIP:80 -r rsI:80 -g -w W`.
fn set_weight(lab: &DrLab, i: usize, w: u32) {
    let (vip, rs, w) = (
        vip_addr().to_string(),
        format!("{}:{PORT}", real_ip(i)),
        w.to_string(),
    );
    adm(lab, &["-e", "-t", &vip, "-r", &rs, "-g", "-w", &w]);
}

/// Opens `n` kept-alive connections one after another, one request on each: the director counted
/// each one from its SYN before the next SYN leaves, so every choice sees the previous ones. Returns
/// the connections with the index of the real server that answered.
fn hold(lab: &DrLab, n: usize) -> Vec<(HttpConn, usize)> {
    (0..n)
        .map(|k| {
            let mut c = lab.connect().or_log(lab, &format!("open held connection {k}"));
            let name = c.get().or_log(lab, &format!("request on held connection {k}"));
            (c, index(&name))
        })
        .collect()
}

/// The real servers the connections went to, in order.
fn order(held: &[(HttpConn, usize)]) -> Vec<usize> {
    held.iter().map(|(_, i)| *i).collect()
}

/// `period` repeated `times` times.
fn repeat(period: &[usize], times: usize) -> Vec<usize> {
    period
        .iter()
        .copied()
        .cycle()
        .take(period.len() * times)
        .collect()
}

/// Weight, ActiveConn and InActConn of rs1..=reals on the TCP service, from `-Ln`.
fn load(lab: &DrLab) -> Vec<(u32, u32, u32)> {
    let lines = dest_lines(lab);
    let tcp = svc(Proto::Tcp, PORT);
    (1..=lab.reals())
        .map(|i| {
            let d = lines
                .get(&(tcp.clone(), rs(i, PORT)))
                .unwrap_or_else(|| panic!("rs{i} not listed: {lines:#?}"));
            (d.weight, d.active, d.inactive)
        })
        .collect()
}

/// ActiveConn and InActConn of rs1..=reals.
fn counts(lab: &DrLab) -> Vec<(u32, u32)> {
    load(lab).into_iter().map(|(_, a, i)| (a, i)).collect()
}

/// Polls `-Ln` until rs1..=reals show `want` (ActiveConn, InActConn) each, for at most [`SETTLE`].
fn await_counts(lab: &DrLab, what: &str, want: &[(u32, u32)]) {
    wait::until(what, SETTLE, Duration::from_millis(200), || {
        let got = counts(lab);
        if got == want {
            Ok(())
        } else {
            Err(format!("(ActiveConn, InActConn) of rs1.. {got:?}, want {want:?}"))
        }
    })
    .or_log(lab, what);
}

/// `-Ln` lists the service with scheduler `sched`.
fn assert_scheduler(lab: &DrLab, sched: &str) {
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(lab, "rvsadm -Ln");
    let want = format!("TCP  {} {sched}", vip_addr());
    assert!(
        listing.lines().any(|l| l.trim_end() == want),
        "no line {want:?} in:\n{listing}"
    );
}

/// Closes the held connections that went to real server `i` with a FIN (dropping the socket), and
/// returns the others.
fn close_to(held: Vec<(HttpConn, usize)>, i: usize) -> Vec<(HttpConn, usize)> {
    held.into_iter().filter(|(_, r)| *r != i).collect()
}

#[test]
fn wlc_is_the_default_and_splits_60_held_connections_30_20_10() {
    let lab = lab(3);
    service(&lab, None, &[(3, &[]), (2, &[]), (1, &[])]);
    assert_scheduler(&lab, "wlc");

    // Only active connections: least active/weight, ties to the earlier of rs3, rs2, rs1. From 0,0,0:
    // rs3 (tie), rs2 (0 < 1/1), rs1 (0), rs1 (1/3 < 1/2 < 1/1), rs2 (1/2 < 2/3), rs1 (2/3 < 1): the
    // period leaves 3,2,1 active, all three at ratio 1 again, so it repeats.
    let held = hold(&lab, 60);
    assert_eq!(order(&held), repeat(&[3, 2, 1, 1, 2, 1], 10));
    assert_eq!(
        load(&lab),
        [(3, 30, 0), (2, 20, 0), (1, 10, 0)],
        "(weight, ActiveConn, InActConn) of rs1, rs2, rs3"
    );

    // The client's FIN makes every entry FIN_WAIT (120 s by default): inactive, still counted.
    drop(held);
    await_counts(
        &lab,
        "60 closed connections to count as inactive",
        &[(0, 30), (0, 20), (0, 10)],
    );
}

#[test]
fn lc_splits_evenly_then_fills_the_server_whose_connections_closed() {
    let lab = lab(3);
    service(&lab, Some("lc"), &[(1, &[]), (1, &[]), (1, &[])]);
    assert_scheduler(&lab, "lc");

    // Least overhead, ties to the earlier of rs3, rs2, rs1: a round of the three, five times.
    let held = hold(&lab, 15);
    assert_eq!(order(&held), repeat(&[3, 2, 1], 5));
    assert_eq!(counts(&lab), [(5, 0), (5, 0), (5, 0)]);

    // rs2's five close (FIN_WAIT: inactive, overhead 5 against 5 × 256 for the others).
    let mut held = close_to(held, 2);
    await_counts(
        &lab,
        "rs2's connections to turn inactive",
        &[(5, 0), (0, 5), (5, 0)],
    );
    // rs2's overhead becomes 261, 517, 773: below 1280 each time, so it takes all three.
    let more = hold(&lab, 3);
    assert_eq!(order(&more), [2, 2, 2]);
    assert_eq!(counts(&lab), [(5, 0), (3, 5), (5, 0)]);
    held.extend(more);
}

#[test]
fn nq_sends_to_an_idle_server_first_and_sed_does_not() {
    let lab = lab(2);
    // rs1 weight 1, then rs2 weight 10: IPVS's list is rs2, rs1.
    service(&lab, Some("nq"), &[(1, &[]), (10, &[])]);
    assert_scheduler(&lab, "nq");
    // Inactive entries must leave quickly for the sed phase below; held connections stay (900 s).
    adm(&lab, &["--set", "900", "2", "300"]);

    // nq: rs2 (idle, first in the list), rs1 (idle, although sed's (0+1)/1 is above rs2's (1+1)/10),
    // then sed's rule, least (active+1)/weight with ties to rs2: rs2 until (a+1)/10 > 2/1, i.e. up to
    // 20 active. wlc would have sent the 13th to rs1 (11×256/10 > 256/1), sed the 2nd to rs2 and the
    // 11th to rs1, rr every other one to rs1.
    let held = hold(&lab, 15);
    let mut want = vec![2, 1];
    want.extend([2; 13]);
    assert_eq!(order(&held), want, "nq");
    assert_eq!(counts(&lab), [(1, 0), (14, 0)]);

    drop(held);
    await_counts(&lab, "every nq connection to expire", &[(0, 0), (0, 0)]);
    adm(&lab, &["-E", "-t", &vip_addr().to_string(), "-s", "sed"]);
    assert_scheduler(&lab, "sed");

    // sed from idle: rs2 while (a+1)/10 <= 1/1 (ties to rs2), so ten, then rs1 (11/10 > 1/1), then
    // rs2 again (11/10 < 2/1). nq would have sent the 2nd to the idle rs1.
    let held = hold(&lab, 12);
    let mut want = vec![2; 10];
    want.extend([1, 2]);
    assert_eq!(order(&held), want, "sed");
    assert_eq!(counts(&lab), [(1, 0), (11, 0)]);
}

#[test]
fn fo_fills_the_heaviest_and_weight_0_fails_over_while_its_connections_go_on() {
    let lab = lab(3);
    service(&lab, Some("fo"), &[(1, &[]), (3, &[]), (2, &[])]);
    assert_scheduler(&lab, "fo");

    let mut held = hold(&lab, 6);
    assert_eq!(order(&held), [2; 6], "fo with weights 1,3,2");
    assert_eq!(load(&lab), [(1, 0, 0), (3, 6, 0), (2, 0, 0)]);

    // Weight 0: rs2 is no longer available; rs3 is now the heaviest. rs2's connections go on.
    set_weight(&lab, 2, 0);
    let next = hold(&lab, 4);
    assert_eq!(order(&next), [3; 4], "fo with weights 1,0,2");
    assert_eq!(load(&lab), [(1, 0, 0), (0, 6, 0), (2, 4, 0)]);
    for (k, (c, i)) in held.iter_mut().enumerate() {
        let name = c
            .get()
            .or_log(&lab, &format!("request {k} on a connection to rs2"));
        assert_eq!((index(&name), *i), (2, 2), "connection {k} moved");
    }

    // And with rs3 at weight 0 too, rs1 is all that is left.
    set_weight(&lab, 3, 0);
    let last = hold(&lab, 2);
    assert_eq!(order(&last), [1, 1], "fo with weights 1,0,0");
    assert_eq!(load(&lab), [(1, 2, 0), (0, 6, 0), (0, 4, 0)]);
    held.extend(next);
    held.extend(last);
}

#[test]
fn ovf_fills_the_heaviest_until_its_active_connections_exceed_its_weight() {
    let lab = lab(2);
    service(&lab, Some("ovf"), &[(2, &[]), (1, &[])]);
    assert_scheduler(&lab, "ovf");

    // The heaviest server qualifies while active <= weight: rs1 takes 3 (at 0, 1, 2 active), then
    // rs2 takes 2 (at 0, 1), and then neither qualifies.
    let mut held = hold(&lab, 5);
    assert_eq!(order(&held), [1, 1, 1, 2, 2]);
    assert_eq!(counts(&lab), [(3, 0), (2, 0)]);

    // No destination: the SYN is dropped (IPVS would answer with an ICMP port unreachable), so the
    // connect fails within its 3 s; it must not reach a server, and nothing is counted.
    let refused = lab
        .topo()
        .run_in(CLIENT, || {
            std::net::TcpStream::connect_timeout(&vip_addr(), Duration::from_secs(3))
        })
        .or_log(&lab, "enter the client's namespace");
    assert!(
        refused.is_err(),
        "a 6th connection was accepted with every server above its weight: {refused:?}"
    );
    assert_eq!(counts(&lab), [(3, 0), (2, 0)]);

    // ovf counts only active connections: one of rs1's closing (FIN_WAIT, inactive) makes it
    // qualify again at 2 active, and it takes the next connection.
    let k = held.iter().position(|(_, i)| *i == 1).expect("rs1 holds three");
    drop(held.remove(k));
    await_counts(
        &lab,
        "rs1's closed connection to turn inactive",
        &[(2, 1), (2, 0)],
    );
    let more = hold(&lab, 1);
    assert_eq!(order(&more), [1]);
    assert_eq!(counts(&lab), [(3, 1), (2, 0)]);
    held.extend(more);
}

/// `-Ln --thresholds`'s line of real server `i` (ipvsadm's `"  -> %-28s %-10u %-10u %-10u %-10u"`).
fn threshold_line(lab: &DrLab, i: usize) -> String {
    let text = lab
        .rvsadm_ok(&["-Ln", "--thresholds"])
        .or_log(lab, "rvsadm -Ln --thresholds");
    let title = format!(
        "{:<33} {:<10} {:<10} {:<10} {:<10}",
        "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
    );
    assert_eq!(text.lines().nth(1), Some(title.as_str()), "{text}");
    let head = format!("  -> {} ", rs(i, PORT));
    text.lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("rs{i} not listed:\n{text}"))
        .to_owned()
}

#[test]
fn upper_threshold_stops_new_connections_until_the_total_falls_below_the_lower() {
    let lab = lab(2);
    // rs1 with -x 5 -y 2, rs2 without thresholds, equal weights; IPVS's list is rs2, rs1.
    service(&lab, Some("wlc"), &[(1, &["-x", "5", "-y", "2"]), (1, &[])]);
    // Closed connections must leave the counters (and so the total) quickly: FIN_WAIT lasts 2 s here,
    // while the held ones stay ESTABLISHED (900 s). A FIN beats a RST, whose CLOSE state lasts a fixed
    // 10 s.
    adm(&lab, &["--set", "900", "2", "300"]);

    // wlc alternates rs2, rs1 (ties to rs2). rs1's 5th connection makes active + inactive reach 5:
    // OVERLOAD. Without the threshold the next three would be rs2, rs1, rs2; with it, all go to rs2.
    let held = hold(&lab, 13);
    let mut want = repeat(&[2, 1], 5);
    want.extend([2, 2, 2]);
    assert_eq!(order(&held), want);
    assert_eq!(counts(&lab), [(5, 0), (8, 0)]);
    let line = |a: u32, i: u32, u: u32, l: u32| {
        format!(
            "  -> {:<28} {u:<10} {l:<10} {a:<10} {i:<10}",
            rs(1, PORT).to_string()
        )
    };
    assert_eq!(threshold_line(&lab, 1), line(5, 0, 5, 2));
    assert_eq!(
        threshold_line(&lab, 2),
        format!(
            "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
            rs(2, PORT).to_string(),
            0,
            0,
            8,
            0
        )
    );

    // Three of rs1's connections end: the total falls to 2, not below -y 2, so rs1 stays overloaded
    // and the next connection goes to rs2 although rs1 has far fewer (2 against 8).
    let mut rs1: Vec<HttpConn> = Vec::new();
    let mut held: Vec<(HttpConn, usize)> = held
        .into_iter()
        .filter_map(|(c, i)| {
            if i == 1 {
                rs1.push(c);
                None
            } else {
                Some((c, i))
            }
        })
        .collect();
    rs1.drain(..3).for_each(drop);
    await_counts(&lab, "three of rs1's connections to expire", &[(2, 0), (8, 0)]);
    let more = hold(&lab, 1);
    assert_eq!(order(&more), [2], "rs1 took a connection at total 2 with -y 2");
    held.extend(more);
    assert_eq!(threshold_line(&lab, 1), line(2, 0, 5, 2));

    // A fourth ends: total 1 < 2 clears OVERLOAD, and rs1 (1 against 9) takes the next three.
    drop(rs1.remove(0));
    await_counts(&lab, "a fourth of rs1's connections to expire", &[(1, 0), (9, 0)]);
    let more = hold(&lab, 3);
    assert_eq!(order(&more), [1, 1, 1], "rs1 after its total fell below -y");
    assert_eq!(counts(&lab), [(4, 0), (9, 0)]);
    held.extend(more);
    drop(rs1);
}

#[test]
fn twos_skips_weight_0_and_spreads_over_both_weighted_servers() {
    let lab = lab(2);
    service(&lab, Some("twos"), &[(0, &[]), (1, &[])]);
    assert_scheduler(&lab, "twos");

    // Both random draws land on the only server of weight > 0.
    let got = lab.spread(30).or_log(&lab, "30 connections with rs1 at weight 0");
    assert_eq!(got, BTreeMap::from([("rs2".to_owned(), 30)]));
    assert_eq!(load(&lab), [(0, 0, 0), (1, 0, 30)]);

    // Both weighted: the choice is random, so only what is certain is asserted. Once rs2 carries
    // more overhead (its 30 closed connections), a draw that names rs1 sends the connection there,
    // so rs1 missing all of 100 is out of the question.
    set_weight(&lab, 1, 1);
    let got = lab
        .spread(100)
        .or_log(&lab, "100 connections with both at weight 1");
    let n = |name: &str| got.get(name).copied().unwrap_or(0);
    assert_eq!(n("rs1") + n("rs2"), 100, "{got:?}");
    assert!(n("rs1") > 0 && n("rs2") > 0, "one server got all 100: {got:?}");
    let inactive = |k: usize| u32::try_from(k).expect("a few hundred");
    await_counts(
        &lab,
        "130 closed connections to count as inactive",
        &[(0, inactive(n("rs1"))), (0, inactive(n("rs2") + 30))],
    );
}

#[test]
fn without_a_lower_threshold_overload_clears_below_three_quarters_of_the_upper() {
    let lab = lab(2);
    // rs1 with -x 4 and no -y, rs2 without thresholds, equal weights; IPVS's list is rs2, rs1.
    service(&lab, Some("wlc"), &[(1, &["-x", "4"]), (1, &[])]);
    // As above: closed connections leave within seconds, held ones stay.
    adm(&lab, &["--set", "900", "2", "300"]);

    // rs1's 4th connection sets OVERLOAD; the next two go to rs2 (without it: rs2, rs1).
    let held = hold(&lab, 10);
    let mut want = repeat(&[2, 1], 4);
    want.extend([2, 2]);
    assert_eq!(order(&held), want);
    assert_eq!(counts(&lab), [(4, 0), (6, 0)]);
    assert_eq!(
        threshold_line(&lab, 1),
        format!(
            "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
            rs(1, PORT).to_string(),
            4,
            0,
            4,
            0
        )
    );

    let (mut rs1, mut held): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, i)| *i == 1);
    // Total 3: 3 × 4 < 4 × 3 is false, so rs1 stays overloaded (a rule of "below -x" would clear it).
    drop(rs1.remove(0));
    await_counts(&lab, "one of rs1's connections to expire", &[(3, 0), (6, 0)]);
    let more = hold(&lab, 1);
    assert_eq!(order(&more), [2], "rs1 took a connection at total 3 with -x 4");
    held.extend(more);

    // Total 2: 2 × 4 < 12 clears it, and rs1 (2 against 7) takes the next one.
    drop(rs1.remove(0));
    await_counts(&lab, "a second of rs1's connections to expire", &[(2, 0), (7, 0)]);
    let more = hold(&lab, 1);
    assert_eq!(order(&more), [1], "rs1 after its total fell below 3/4 of -x");
    assert_eq!(counts(&lab), [(3, 0), (7, 0)]);
    held.extend(more);
    drop(rs1);
}

#[test]
fn lblc_keeps_the_destination_on_one_server_until_it_holds_more_than_its_weight() {
    let lab = lab(3);
    service(&lab, Some("lblc"), &[(1, &[]), (1, &[]), (1, &[])]);
    assert_scheduler(&lab, "lblc");

    // Every connection is to the VIP, so one lblc entry decides. From idle, wlc picks rs3 and the
    // entry names it; rs3 takes the 2nd too (1 active, not above its weight 1). At 2 active it is
    // overloaded while rs2 has fewer than half its weight: wlc picks rs2, which the entry then
    // names; likewise rs1 after rs2. Once no server has fewer active connections than half its
    // weight, the entry's rs1 keeps every connection. wlc alone would go 3, 2, 1, 3, 2, 1, ...
    let held = hold(&lab, 8);
    assert_eq!(order(&held), [3, 3, 2, 2, 1, 1, 1, 1]);
    assert_eq!(counts(&lab), [(4, 0), (2, 0), (2, 0)]);
}

#[test]
fn lblcr_grows_a_set_of_servers_for_the_destination_and_spreads_over_it() {
    let lab = lab(3);
    service(&lab, Some("lblcr"), &[(1, &[]), (1, &[]), (1, &[])]);
    assert_scheduler(&lab, "lblcr");

    // As lblc until the set is {rs1, rs2, rs3} (each overloaded member brings in wlc's choice) and
    // all three hold 2. Then the set's least loaded takes each connection, ties to the newest
    // member: rs1 (2, 2, 2), rs2 (3, 2, 2), rs3 (3, 3, 2), rs1 (3, 3, 3). lblc would have stayed on
    // rs1.
    let held = hold(&lab, 10);
    assert_eq!(order(&held), [3, 3, 2, 2, 1, 1, 1, 2, 3, 1]);
    assert_eq!(counts(&lab), [(4, 0), (3, 0), (3, 0)]);
    let saved = lab.rvsadm_ok(&["-S", "-n"]).or_log(&lab, "rvsadm -S -n");
    assert!(
        saved
            .lines()
            .any(|l| l == format!("-A -t {} -s lblcr", vip_addr())),
        "-S keeps the scheduler:\n{saved}"
    );
}
