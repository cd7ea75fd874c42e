//! VS/DR through the real data plane: scheduling splits, the reply path, removing a real server.

use std::collections::BTreeMap;

use rvs_testkit::lab::{self, CLIENT, DIRECTOR, DrLab, real_ip, real_name, vip_addr};
use rvs_testkit::netns::{IfStats, mac_string};

use crate::topo::{OrLog, lab};

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

#[test]
fn rr_splits_300_connections_exactly_evenly() {
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    let got = lab.spread(300).or_log(&lab, "300 connections through the VIP");
    assert_eq!(got, counts(&[("rs1", 100), ("rs2", 100), ("rs3", 100)]));

    // The ARP problem is solved: the client learnt the VIP from the director, not from a real server.
    let neigh = lab
        .topo()
        .ip(CLIENT, &["neigh", "show", &lab::VIP.to_string()])
        .or_log(&lab, "client's neighbour entry for the VIP");
    let director_mac = mac_string([0x02, 0x00, 0xc6, 0x12, 0, 1]);
    assert!(
        neigh.contains(&director_mac),
        "the client reaches the VIP at {neigh:?}, not at the director's {director_mac}"
    );
}

#[test]
fn wrr_3_2_1_splits_300_connections_150_100_50() {
    let lab = lab(3);
    lab.add_service("wrr", &[3, 2, 1]).or_log(&lab, "configure wrr");
    let got = lab.spread(300).or_log(&lab, "300 connections through the VIP");
    assert_eq!(got, counts(&[("rs1", 150), ("rs2", 100), ("rs3", 50)]));
}

fn snapshot(lab: &DrLab, nodes: &[String]) -> Vec<IfStats> {
    nodes
        .iter()
        .map(|n| lab.if_stats(n).or_log(lab, "interface counters"))
        .collect()
}

/// Direct routing sends only the client's packets through the director; the real servers answer the
/// client straight over the segment. Interface counters over a run of N connections show it:
/// - the client sent C_tx packets, all to the VIP, i.e. to the director's MAC;
/// - the director's interface received about C_tx packets (plus a few ARP broadcasts), not C_tx plus
///   the replies, although every reply packet crossed the same switch;
/// - the real servers received about C_tx and sent about what the client received (C_rx).
///
/// If replies went through the director, its receive count would exceed C_tx by about C_rx, which is
/// several packets per connection, far above the slack allowed for ARP.
#[test]
fn replies_bypass_the_director() {
    const N: usize = 90;
    // ARP requests and replies that may cross the segment during the run (a handful; allow more).
    const SLACK: u64 = 20;
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    let mut nodes = vec![CLIENT.to_owned(), DIRECTOR.to_owned()];
    nodes.extend((1..=3).map(real_name));

    let before = snapshot(&lab, &nodes);
    let got = lab.spread(N).or_log(&lab, "connections through the VIP");
    let after = snapshot(&lab, &nodes);
    assert_eq!(got.values().sum::<usize>(), N);
    let d: Vec<IfStats> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let (client, director) = (d[0], d[1]);
    let rs_rx: u64 = d[2..].iter().map(|s| s.rx_packets).sum();
    let rs_tx: u64 = d[2..].iter().map(|s| s.tx_packets).sum();
    let report = format!(
        "client tx {} rx {}; director rx {} tx {}; real servers rx {rs_rx} tx {rs_tx}",
        client.tx_packets, client.rx_packets, director.rx_packets, director.tx_packets
    );
    eprintln!("{N} connections: {report}");

    // Every connection: SYN-ACK, the response and a FIN at least came back to the client.
    assert!(
        client.rx_packets >= 3 * N as u64,
        "too few replies reached the client: {report}"
    );
    assert!(
        client.tx_packets >= 3 * N as u64,
        "too few packets left the client: {report}"
    );
    assert!(
        director.rx_packets <= client.tx_packets + SLACK,
        "the director received more than the client sent: replies went through it. {report}"
    );
    assert!(
        rs_rx + SLACK >= client.tx_packets,
        "the real servers did not receive what the client sent: {report}"
    );
    assert!(
        rs_tx + SLACK >= client.rx_packets && rs_tx <= client.rx_packets + SLACK,
        "what the client received is not what the real servers sent: {report}"
    );
}

#[test]
fn deleted_real_server_gets_no_new_connections_and_the_others_keep_serving() {
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    let got = lab.spread(30).or_log(&lab, "connections before -d");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));

    let rs2 = format!("{}:{}", real_ip(2), lab::PORT);
    lab.rvsadm_ok(&["-d", "-t", &vip_addr().to_string(), "-r", &rs2])
        .or_log(&lab, "rvsadm -d");
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "rvsadm -Ln");
    assert!(!listing.contains(&rs2), "{rs2} is still listed:\n{listing}");

    let got = lab.spread(60).or_log(&lab, "connections after -d");
    assert_eq!(got, counts(&[("rs1", 30), ("rs3", 30)]));
}
