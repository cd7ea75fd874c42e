//! VS/NAT on services of many ports, through the real data plane on the two-armed NAT lab
//! (`rvs_testkit::natlab`): a persistent port-0 service (`-t VIP:0 -p`, every port of the VIP) and a
//! firewall-mark service (`-f MARK`), IPv4 and IPv6, TCP and UDP. Their real servers have port 0, so each
//! packet keeps its destination port (the lab's servers listen on HTTP_PORT and UDP_PORT), and each reply
//! must come back from the VIP and the port the client used: a TCP client completes its handshake only
//! with a SYN-ACK from VIP:port, and the UDP client's socket is connected to VIP:port, so it accepts
//! answers from there only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rvs_testkit::natlab::{self, NatLab, real_ip, real_name, vip};

use crate::topo::{attach_pass, binaries, require_root};

fn nat_lab() -> NatLab {
    require_root();
    NatLab::start(binaries(), 3, &attach_pass).unwrap_or_else(|e| panic!("cannot build the NAT lab: {e}"))
}

/// Unwraps, or panics with `what`, the error and rvsd's log.
fn ok<T, E: std::fmt::Display>(r: Result<T, E>, lab: &NatLab, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\n--- rvsd log\n{}", lab.rvsd_log()))
}

/// Real server `i` as `-r` takes it, with port 0.
fn rs0(i: usize, v6: bool) -> String {
    rs(i, v6, 0)
}

/// Real server `i` as `-r` takes it, with port `port`.
fn rs(i: usize, v6: bool, port: u16) -> String {
    SocketAddr::new(real_ip(i, v6), port).to_string()
}

/// A persistent port-0 TCP and UDP service on the VIP, every real server NAT with port `rport`, which
/// the service ignores (IPVS uses it only for a packet to port 0): each client sticks to one real
/// server, on whichever port it connects to, and is answered from that port.
fn port0(v6: bool, rport: u16) {
    let lab = nat_lab();
    let svc = SocketAddr::new(vip(v6), 0).to_string();
    for proto in ["-t", "-u"] {
        ok(
            lab.rvsadm_ok(&["-A", proto, &svc, "-s", "rr", "-p", "60"]),
            &lab,
            "rvsadm -A port 0",
        );
        for i in 1..=3 {
            ok(
                lab.rvsadm_ok(&["-a", proto, &svc, "-r", &rs(i, v6, rport), "-m"]),
                &lab,
                "rvsadm -a -m on port 0",
            );
        }
    }
    let http = SocketAddr::new(vip(v6), natlab::HTTP_PORT);
    let got = ok(lab.http_spread(http, 30), &lab, "connections to VIP:HTTP_PORT");
    assert_eq!(got.len(), 1, "one client, one real server (persistence): {got:?}");
    assert_eq!(got.values().sum::<usize>(), 30, "{got:?}");
    let dns = SocketAddr::new(vip(v6), natlab::UDP_PORT);
    let got = ok(lab.udp_spread(dns, 12), &lab, "datagrams to VIP:UDP_PORT");
    assert_eq!(got.len(), 1, "one client, one real server (persistence): {got:?}");
    assert_eq!(got.values().sum::<usize>(), 12, "{got:?}");

    // -Lnc shows each connection (not the templates) toward the port the packets kept.
    let conns = ok(lab.rvsadm_ok(&["-Lnc"]), &lab, "rvsadm -Lnc");
    let dests: Vec<&str> = conns
        .lines()
        .filter(|l| l.starts_with("TCP") && !l.contains("ASSURED"))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let rport = format!(":{}", natlab::HTTP_PORT);
    assert!(
        !dests.is_empty() && dests.iter().all(|d| d.ends_with(&rport)),
        "{conns}"
    );
}

#[test]
fn nat_on_a_port0_service_answers_from_the_port_used() {
    // The real servers' port 9999, where nothing listens, is ignored.
    port0(false, 9999);
}

#[test]
fn nat66_on_a_port0_service_answers_from_the_port_used() {
    port0(true, 0);
}

/// Mark 1 holds VIP:HTTP_PORT over TCP and VIP:UDP_PORT over UDP; its service `-f 1 -s rr` (`-6` for
/// IPv6) has every real server NAT with port 0: rr spreads both ports evenly with one cursor, and every
/// answer comes from the VIP and port the client used.
fn fwmark(v6: bool) {
    let lab = nat_lab();
    let host = if v6 {
        format!("[{}]", vip(v6))
    } else {
        vip(v6).to_string()
    };
    let tcp = format!("tcp:{host}:{}", natlab::HTTP_PORT);
    let udp = format!("udp:{host}:{}", natlab::UDP_PORT);
    ok(
        lab.rvsadm_ok(&["--add-mark", "1", "--match", &tcp, "--match", &udp]),
        &lab,
        "rvsadm --add-mark",
    );
    let fam: &[&str] = if v6 { &["-6"] } else { &[] };
    let add = [&["-A", "-f", "1"][..], fam, &["-s", "rr"]].concat();
    ok(lab.rvsadm_ok(&add), &lab, "rvsadm -A -f");
    for i in 1..=3 {
        let rs = rs0(i, v6);
        let args = [&["-a", "-f", "1"][..], fam, &["-r", &rs, "-m"]].concat();
        ok(lab.rvsadm_ok(&args), &lab, "rvsadm -a -f -m");
    }
    let even = |n: usize| -> BTreeMap<String, usize> { (1..=3).map(|i| (real_name(i), n)).collect() };
    let http = SocketAddr::new(vip(v6), natlab::HTTP_PORT);
    assert_eq!(
        ok(
            lab.http_spread(http, 30),
            &lab,
            "connections to the mark's TCP port"
        ),
        even(10)
    );
    let dns = SocketAddr::new(vip(v6), natlab::UDP_PORT);
    assert_eq!(
        ok(lab.udp_spread(dns, 30), &lab, "datagrams to the mark's UDP port"),
        even(10)
    );
    let listing = ok(lab.rvsadm_ok(&["-Ln"]), &lab, "rvsadm -Ln");
    for i in 1..=3 {
        assert!(
            listing
                .lines()
                .any(|l| l.contains(&format!("-> {} ", rs0(i, v6))) && l.contains("Masq")),
            "rs{i} not listed as Masq with port 0:\n{listing}"
        );
    }
}

#[test]
fn nat_on_a_fwmark_service_answers_from_the_address_and_port_used() {
    fwmark(false);
}

#[test]
fn nat66_on_a_fwmark_service_answers_from_the_address_and_port_used() {
    fwmark(true);
}
