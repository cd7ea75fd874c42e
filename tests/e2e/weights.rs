//! `-e` changes a real server's weight under traffic: weight 0 quiesces it (no new connections, the
//! established ones go on; ipvs-features.md §2.3) and a new set of weights takes over the schedule at
//! once. rr and wrr go on after a delete or an add exactly as IPVS's do (rvsd moves the data plane's
//! cursor).

use std::collections::BTreeMap;

use rvs_testkit::http::HttpConn;
use rvs_testkit::lab::{DrLab, PORT, Proto, real_ip, vip_addr};

use crate::rvsadm_out::{conn_rows, dest_lines, rs, svc};
use crate::topo::{OrLog, lab};

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

/// `rvsadm -e -t VIP:80 -r rsI:80 -g -w W`.
fn set_weight(lab: &DrLab, i: usize, w: u32) {
    let rs = format!("{}:{PORT}", real_ip(i));
    lab.rvsadm_ok(&[
        "-e",
        "-t",
        &vip_addr().to_string(),
        "-r",
        &rs,
        "-g",
        "-w",
        &w.to_string(),
    ])
    .or_log(lab, &format!("rvsadm -e -r {rs} -w {w}"));
}

#[test]
fn weight_0_quiesces_a_real_server_and_its_established_connection_goes_on() {
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");

    // rr picks rs3, rs2, rs1: the third kept-alive connection is rs1's. Keep all three open.
    let mut held: Vec<(HttpConn, String)> = Vec::new();
    for _ in 0..3 {
        let mut c = lab.connect().or_log(&lab, "open a kept-alive connection");
        let name = c.get().or_log(&lab, "first request");
        held.push((c, name));
    }
    let k1 = held
        .iter()
        .position(|(_, n)| n == "rs1")
        .unwrap_or_else(|| panic!("no connection went to rs1 out of 3 with rr"));
    let src = held[k1].0.local_addr().or_log(&lab, "local address");

    set_weight(&lab, 1, 0);
    let tcp = svc(Proto::Tcp, PORT);
    let d = dest_lines(&lab)[&(tcp.clone(), rs(1, PORT))];
    assert_eq!(
        (d.weight, d.active, d.inactive),
        (0, 1, 0),
        "rs1 after -w 0, one connection open"
    );

    let got = lab.spread(60).or_log(&lab, "60 connections with rs1 at weight 0");
    assert_eq!(got, counts(&[("rs2", 30), ("rs3", 30)]));
    for n in 0..3 {
        let name = held[k1]
            .0
            .get()
            .or_log(&lab, &format!("request {n} to rs1 at weight 0"));
        assert_eq!(name, "rs1", "the established connection moved");
    }
    let rows = conn_rows(&lab);
    let row = rows
        .iter()
        .find(|r| r.source == src)
        .unwrap_or_else(|| panic!("{src} is not listed: {rows:#?}"));
    assert_eq!((row.state.as_str(), row.dest), ("ESTABLISHED", rs(1, PORT)));

    set_weight(&lab, 1, 1);
    let got = lab
        .spread(30)
        .or_log(&lab, "30 connections with rs1 back at weight 1");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));
    for (c, first) in &mut held {
        let name = c.get().or_log(&lab, "request on a held connection");
        assert_eq!(name, *first, "a held connection moved");
    }
}

#[test]
fn wrr_weights_changed_mid_sequence_take_over_at_once() {
    let lab = lab(3);
    lab.add_service("wrr", &[3, 2, 1]).or_log(&lab, "configure wrr");
    // IPVS's wrr 3,2,1 sequence is rs3 rs2 rs1 rs1 rs2 rs1 (then again); stop inside the second period.
    let got = lab.spread(7).or_log(&lab, "7 connections with 3,2,1");
    assert_eq!(got, counts(&[("rs1", 3), ("rs2", 2), ("rs3", 2)]));

    set_weight(&lab, 1, 1);
    set_weight(&lab, 2, 1);
    let lines = dest_lines(&lab);
    let weights: Vec<u32> = (1..=3)
        .map(|i| lines[&(svc(Proto::Tcp, PORT), rs(i, PORT))].weight)
        .collect();
    assert_eq!(weights, [1, 1, 1], "{lines:#?}");

    let got = lab.spread(300).or_log(&lab, "300 connections with 1,1,1");
    assert_eq!(got, counts(&[("rs1", 100), ("rs2", 100), ("rs3", 100)]));
}

/// `rvsadm -d -t VIP:80 -r rsI:80`, or with `Some(w)` `rvsadm -a ... -g -w W`.
fn del_or_add(lab: &DrLab, i: usize, add: Option<u32>) {
    let rs = format!("{}:{PORT}", real_ip(i));
    let vip = vip_addr().to_string();
    let w = add.map(|w| w.to_string());
    let args: Vec<&str> = match &w {
        Some(w) => vec!["-a", "-t", &vip, "-r", &rs, "-g", "-w", w],
        None => vec!["-d", "-t", &vip, "-r", &rs],
    };
    lab.rvsadm_ok(&args).or_log(lab, &format!("rvsadm {args:?}"));
}

/// The real servers of `n` new connections, in order.
fn picks(lab: &DrLab, n: usize) -> String {
    (0..n)
        .map(|i| lab.get().or_log(lab, &format!("connection {i}")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn rr_goes_on_after_the_last_pick_when_a_real_server_is_deleted() {
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    assert_eq!(picks(&lab, 2), "rs3 rs2");
    // IPVS's cursor is on rs2; deleting it moves the cursor to rs3 (ip_vs_rr_del_dest): rs1 is next.
    del_or_add(&lab, 2, None);
    assert_eq!(picks(&lab, 3), "rs1 rs3 rs1");
}

#[test]
fn wrr_after_a_delete_and_an_add_is_the_kernels_golden_keepalived() {
    // keepalived.txt part 1: wrr 3,2,1, six connections, rs2 removed, six, rs2 added again, six.
    let lab = lab(3);
    lab.add_service("wrr", &[3, 2, 1]).or_log(&lab, "configure wrr");
    assert_eq!(picks(&lab, 6), "rs3 rs2 rs1 rs1 rs2 rs1");
    del_or_add(&lab, 2, None);
    assert_eq!(picks(&lab, 6), "rs1 rs3 rs1 rs1 rs1 rs3");
    del_or_add(&lab, 2, Some(2));
    assert_eq!(picks(&lab, 6), "rs2 rs3 rs1 rs1 rs2 rs1");
}
