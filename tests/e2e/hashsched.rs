//! The hashing schedulers through the real data plane: sh and mh hash the client's address only (one
//! client, one real server) unless `-b sh-port` / `-b mh-port` adds the source port; dh hashes the
//! destination address, so one VIP goes to one real server.

use std::collections::BTreeMap;

use rvs_testkit::lab::{DrLab, vip_addr};

use crate::topo::{OrLog, lab};

/// The `-Ln` service line of the lab's TCP service, without trailing blanks.
fn service_line(lab: &DrLab) -> String {
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(lab, "rvsadm -Ln");
    let head = format!("TCP  {} ", vip_addr());
    listing
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no service line in:\n{listing}"))
        .trim_end()
        .to_owned()
}

/// 60 new connections from the client, each from its own source port.
fn spread60(lab: &DrLab, what: &str) -> BTreeMap<String, usize> {
    let got = lab.spread(60).or_log(lab, what);
    assert_eq!(got.values().sum::<usize>(), 60, "{got:?}");
    got
}

/// `sched` alone keeps the single client on one real server; `-b port_flag` spreads its source ports.
fn source_hash(sched: &str, port_flag: &str) {
    let lab = lab(3);
    lab.add_service(sched, &[1, 1, 1])
        .or_log(&lab, &format!("configure {sched}"));
    assert_eq!(service_line(&lab), format!("TCP  {} {sched}", vip_addr()));
    let got = spread60(&lab, &format!("60 connections with {sched}"));
    assert_eq!(got.len(), 1, "{sched} split one client address: {got:?}");

    let vip = vip_addr().to_string();
    lab.rvsadm_ok(&["-E", "-t", &vip, "-s", sched, "-b", port_flag])
        .or_log(&lab, &format!("rvsadm -E -s {sched} -b {port_flag}"));
    assert_eq!(
        service_line(&lab),
        format!("TCP  {} {sched} ({port_flag})", vip_addr())
    );
    let got = spread60(&lab, &format!("60 connections with {sched} -b {port_flag}"));
    assert!(
        got.len() > 1,
        "{sched} with {port_flag} kept 60 source ports on one real server: {got:?}"
    );
}

#[test]
fn sh_keeps_one_client_on_one_real_server_unless_sh_port() {
    source_hash("sh", "sh-port");
}

#[test]
fn mh_keeps_one_client_on_one_real_server_unless_mh_port() {
    source_hash("mh", "mh-port");
}

#[test]
fn dh_sends_every_connection_to_one_vip_to_one_real_server() {
    let lab = lab(3);
    lab.add_service("dh", &[1, 1, 1]).or_log(&lab, "configure dh");
    assert_eq!(service_line(&lab), format!("TCP  {} dh", vip_addr()));
    let got = spread60(&lab, "60 connections with dh");
    assert_eq!(got.len(), 1, "dh split one VIP: {got:?}");
}
