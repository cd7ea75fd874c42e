//! `-Z` and `-Ln --stats`: zeroing one service leaves the others alone, zeroing all zeroes everything,
//! new traffic counts from zero, and an unknown service is ipvsadm's `No such service`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rvs_testkit::lab::{DrLab, PORT, Proto, UDP_PORT, vip_addr};

use crate::rvsadm_out::{Five, numbers, rs, svc};
use crate::topo::{OrLog, lab};

type Stats = BTreeMap<(String, Option<SocketAddr>), Five>;

/// The numbers of `service` and of its real servers rs1..rs3 on `port`.
fn of(stats: &Stats, service: &str, port: u16) -> (Five, [Five; 3]) {
    let get = |dest: Option<SocketAddr>| {
        *stats
            .get(&(service.to_owned(), dest))
            .unwrap_or_else(|| panic!("{service} {dest:?} not in --stats: {stats:#?}"))
    };
    (get(None), [1, 2, 3].map(|i| get(Some(rs(i, port)))))
}

/// Checks the counters of `service` after `conns` connections split evenly over three real servers:
/// connections exact, some packets and bytes in (at least `min_pkts` per connection, each at least
/// an IPv4 header), nothing out (the director of VS/DR never sees the replies), and the real servers
/// adding up to the service.
fn check_traffic(stats: &Stats, service: &str, port: u16, conns: u64, min_pkts: u64) {
    let (s, d) = of(stats, service, port);
    let [c, inpkts, outpkts, inbytes, outbytes] = s;
    assert_eq!(c, conns, "{service}: {stats:#?}");
    assert!(inpkts >= conns * min_pkts, "{service}: {stats:#?}");
    assert!(inbytes >= inpkts * 20, "{service}: {stats:#?}");
    assert_eq!((outpkts, outbytes), (0, 0), "{service}: {stats:#?}");
    for (i, dest) in d.iter().enumerate() {
        assert_eq!(dest[0], conns / 3, "rs{} of {service}: {stats:#?}", i + 1);
    }
    let sum: Five = std::array::from_fn(|k| d.iter().map(|x| x[k]).sum());
    assert_eq!(sum, s, "{service}: the real servers do not add up: {stats:#?}");
}

fn check_zero(stats: &Stats, service: &str, port: u16) {
    let (s, d) = of(stats, service, port);
    assert_eq!(
        (s, d),
        ([0; 5], [[0; 5]; 3]),
        "{service} is not zeroed: {stats:#?}"
    );
}

fn zero(lab: &DrLab, args: &[&str]) {
    let out = lab.rvsadm(args).or_log(lab, "rvsadm -Z");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{args:?}: {out:?}"
    );
}

#[test]
fn zero_one_service_then_all_and_new_traffic_counts_from_zero() {
    let mut lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    lab.add_service_on(Proto::Udp, UDP_PORT, "rr", &[1, 1, 1])
        .or_log(&lab, "configure the UDP service");
    lab.start_udp_servers().or_log(&lab, "start the UDP servers");
    let (tcp, udp) = (svc(Proto::Tcp, PORT), svc(Proto::Udp, UDP_PORT));

    lab.spread(6).or_log(&lab, "6 connections");
    for _ in 0..3 {
        lab.udp_ask().or_log(&lab, "a datagram through the VIP");
    }
    let before = numbers(&lab, "--stats");
    // A connection is at least a SYN, a request and a FIN; a datagram is one packet (or a resend).
    check_traffic(&before, &tcp, PORT, 6, 3);
    check_traffic(&before, &udp, UDP_PORT, 3, 1);

    zero(&lab, &["-Z", "-t", &vip_addr().to_string()]);
    let after = numbers(&lab, "--stats");
    check_zero(&after, &tcp, PORT);
    assert_eq!(
        of(&after, &udp, UDP_PORT),
        of(&before, &udp, UDP_PORT),
        "-Z -t changed the UDP service"
    );

    zero(&lab, &["-Z"]);
    let after = numbers(&lab, "--stats");
    check_zero(&after, &tcp, PORT);
    check_zero(&after, &udp, UDP_PORT);

    // New traffic counts from zero: three connections, and fewer packets than the first six made.
    lab.spread(3).or_log(&lab, "3 connections after -Z");
    let fresh = numbers(&lab, "--stats");
    check_traffic(&fresh, &tcp, PORT, 3, 3);
    check_zero(&fresh, &udp, UDP_PORT);
    let (first, _) = of(&before, &tcp, PORT);
    let (now, _) = of(&fresh, &tcp, PORT);
    assert!(
        now[1] < first[1] && now[3] < first[3],
        "3 connections after -Z counted {now:?}, 6 before it {first:?}"
    );

    // The zero points are kept across a restart of rvsd.
    lab.kill_rvsd().or_log(&lab, "SIGKILL rvsd");
    lab.start_rvsd().or_log(&lab, "start rvsd again");
    assert_eq!(numbers(&lab, "--stats"), fresh, "a restart changed the counters");

    // errors.txt: `ipvsadm -Z -t 198.18.0.100:99` prints `No such service`, exit 255.
    let out = lab
        .rvsadm(&["-Z", "-t", "198.18.0.100:99"])
        .or_log(&lab, "rvsadm -Z of an unknown service");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(255), "", "No such service\n")
    );
    assert_eq!(
        numbers(&lab, "--stats"),
        fresh,
        "a refused -Z changed the counters"
    );
}
