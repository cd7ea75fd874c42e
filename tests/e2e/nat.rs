//! VS/NAT through the real data plane, IPv4 and IPv6, TCP and UDP, on a two-armed director
//! (`rvs_testkit::natlab`): the director rewrites VIP:vport to RIP:rport (another port: port mapping)
//! and the real servers' replies back, and everything crosses it in both directions.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rvs_testkit::lab::Proto;
use rvs_testkit::natlab::{self, NatLab, real_ip, real_name};

use crate::topo::{attach_pass, binaries, require_root};

fn nat_lab() -> NatLab {
    require_root();
    NatLab::start(binaries(), 3, &attach_pass).unwrap_or_else(|e| panic!("cannot build the NAT lab: {e}"))
}

/// Unwraps, or panics with `what`, the error and rvsd's log.
fn ok<T, E: std::fmt::Display>(r: Result<T, E>, lab: &NatLab, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\n--- rvsd log\n{}", lab.rvsd_log()))
}

fn even(per: usize) -> BTreeMap<String, usize> {
    (1..=3).map(|i| (real_name(i), per)).collect()
}

/// The rows of `rvsadm -Ln --stats --exact` for `svc` and its real servers: (address, [Conns, InPkts,
/// OutPkts, InBytes, OutBytes]), the service first.
fn stats_rows(lab: &NatLab, proto: Proto, svc: &str) -> Vec<(String, [u64; 5])> {
    let text = ok(
        lab.rvsadm_ok(&["-Ln", "--stats", "--exact", proto.flag(), svc]),
        lab,
        "rvsadm -Ln --stats",
    );
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let nums: Vec<u64> = f
                .get(2..)?
                .iter()
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            Some((f.get(1)?.to_string(), nums.try_into().ok()?))
        })
        .collect()
}

/// `-Ln` lists every real server of `svc` as `Masq`, and `--stats` shows `conns` connections spread
/// evenly, with replies counted (OutPkts > 0: in NAT they cross the director) on the service and on
/// every real server.
fn check_listing_and_stats(lab: &NatLab, proto: Proto, svc: &str, v6: bool, rport: u16, conns: u64) {
    let listing = ok(lab.rvsadm_ok(&["-Ln", proto.flag(), svc]), lab, "rvsadm -Ln");
    for i in 1..=3 {
        let rs = SocketAddr::new(real_ip(i, v6), rport).to_string();
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(rs.as_str()))
            .unwrap_or_else(|| panic!("{rs} not listed:\n{listing}"));
        assert_eq!(line.split_whitespace().nth(2), Some("Masq"), "{rs}:\n{listing}");
    }
    let rows = stats_rows(lab, proto, svc);
    assert_eq!(rows.len(), 4, "service and 3 real servers expected: {rows:?}");
    assert_eq!(rows[0].0, svc, "{rows:?}");
    assert_eq!(rows[0].1[0], conns, "service connections: {rows:?}");
    for (addr, [c, inpkts, outpkts, inbytes, outbytes]) in &rows {
        assert!(*c > 0 && *inpkts >= *c && *inbytes > 0, "{addr}: {rows:?}");
        assert!(
            *outpkts >= *c && *outbytes > 0,
            "{addr}: replies not counted: {rows:?}"
        );
    }
}

fn tcp(v6: bool, n: usize) {
    let lab = nat_lab();
    let svc = ok(
        lab.add_nat_service(Proto::Tcp, v6, 80, natlab::HTTP_PORT, "rr"),
        &lab,
        "configure the NAT service",
    );
    let to: SocketAddr = svc.parse().expect("rvsadm's service is an address");
    // A client connection completes only when the SYN-ACK comes from VIP:80: a reply from RIP:8080 would
    // match none of the client's sockets and be answered with a RST.
    let got = ok(lab.http_spread(to, n), &lab, "connections through the VIP");
    assert_eq!(got, even(n / 3));
    check_listing_and_stats(&lab, Proto::Tcp, &svc, v6, natlab::HTTP_PORT, n as u64);
}

fn udp(v6: bool, n: usize) {
    let lab = nat_lab();
    let svc = ok(
        lab.add_nat_service(Proto::Udp, v6, 53, natlab::UDP_PORT, "rr"),
        &lab,
        "configure the NAT service",
    );
    let to: SocketAddr = svc.parse().expect("rvsadm's service is an address");
    // The client's socket is connected to VIP:53: the kernel hands it only datagrams from VIP:53, so
    // every answer counted came from there.
    let got = ok(lab.udp_spread(to, n), &lab, "datagrams through the VIP");
    assert_eq!(got, even(n / 3));
    check_listing_and_stats(&lab, Proto::Udp, &svc, v6, natlab::UDP_PORT, n as u64);
}

#[test]
fn nat_ipv4_tcp_rr_with_port_mapping_splits_300_connections_evenly() {
    tcp(false, 300);
}

#[test]
fn nat_ipv4_udp_answers_come_from_the_vip() {
    udp(false, 60);
}

#[test]
fn nat66_tcp_rr_with_port_mapping_splits_connections_evenly() {
    tcp(true, 150);
}

#[test]
fn nat66_udp_answers_come_from_the_vip() {
    udp(true, 60);
}

/// The first packet toward a next hop the director has not resolved yet goes to its kernel, which
/// resolves it and forwards the packet: neither a request (toward a real server) nor a reply (toward
/// the client, with the VIP as its source: `accept_local`) is lost. Each datagram is sent once, right
/// after the director's neighbour tables were emptied, so only that one datagram can be answered.
fn first_packet_survives_unresolved_neighbours(v6: bool) {
    let lab = nat_lab();
    let svc = ok(
        lab.add_nat_service(Proto::Udp, v6, 53, natlab::UDP_PORT, "rr"),
        &lab,
        "configure the NAT service",
    );
    let to: SocketAddr = svc.parse().expect("rvsadm's service is an address");
    let mut got = BTreeMap::new();
    for k in 0..6 {
        ok(
            lab.flush_director_neighbours(),
            &lab,
            "flush the director's neighbours",
        );
        let name = lab.udp_once(to).unwrap_or_else(|e| {
            panic!(
                "datagram {k} after a neighbour flush: {e}\n--- director's neighbours\n{}\n--- rvsd log\n{}",
                lab.director_neighbours().unwrap_or_default(),
                lab.rvsd_log()
            )
        });
        *got.entry(name).or_insert(0) += 1;
    }
    assert_eq!(got, even(2));
}

#[test]
fn nat_ipv4_first_packet_survives_unresolved_neighbours() {
    first_packet_survives_unresolved_neighbours(false);
}

#[test]
fn nat66_first_packet_survives_unresolved_neighbours() {
    first_packet_survives_unresolved_neighbours(true);
}

/// One service, NAT and DR real servers (issue 3, item 5), all behind the director's server-side
/// interface: the NAT ones are rewritten, the DR one gets the client's packet unchanged through the other
/// interface (item 4) and answers from the VIP. `-Ln` shows `Masq` and `Route` as ipvsadm does.
#[test]
fn nat_and_dr_real_servers_mixed_in_one_service() {
    let mut lab = nat_lab();
    let svc = ok(
        lab.add_nat_service(Proto::Tcp, false, 80, natlab::HTTP_PORT, "rr"),
        &lab,
        "configure the NAT service",
    );
    let i = ok(lab.add_dr_server(), &lab, "add a DR real server");
    let dr = SocketAddr::new(real_ip(i, false), 80).to_string();
    ok(
        lab.rvsadm_ok(&["-a", "-t", &svc, "-r", &dr, "-g"]),
        &lab,
        "add the DR real server to the service",
    );
    let to: SocketAddr = svc.parse().expect("rvsadm's service is an address");
    let got = ok(lab.http_spread(to, 200), &lab, "connections through the VIP");
    let want: BTreeMap<String, usize> = (1..=4).map(|i| (real_name(i), 50)).collect();
    assert_eq!(got, want);

    let listing = ok(lab.rvsadm_ok(&["-Ln", "-t", &svc]), &lab, "rvsadm -Ln");
    for i in 1..=4 {
        let (rs, method) = if i == 4 {
            (dr.clone(), "Route")
        } else {
            (
                SocketAddr::new(real_ip(i, false), natlab::HTTP_PORT).to_string(),
                "Masq",
            )
        };
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(rs.as_str()))
            .unwrap_or_else(|| panic!("{rs} not listed:\n{listing}"));
        assert_eq!(line.split_whitespace().nth(2), Some(method), "{rs}:\n{listing}");
    }
}
