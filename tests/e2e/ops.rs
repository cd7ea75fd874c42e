//! One-packet scheduling (`-o`): every UDP datagram of one flow is scheduled on its own and leaves no
//! connection entry, as IPVS's OPS does; without `-o` the same flow sticks to one real server.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use rvs_testkit::lab::{CLIENT, Proto, UDP_PORT, vip_udp_addr};

use crate::rvsadm_out::{conn_rows, dest_lines, rs, svc};
use crate::topo::{OrLog, lab};

/// Datagrams sent per flow.
const N: usize = 30;

/// `n` datagrams from one socket (one source port: one flow) to the UDP service; the names that
/// answered, counted. A datagram that gets no answer within a second is sent again (as udp::ask does):
/// the director's choice for it is then the retry's.
fn one_flow(lab: &rvs_testkit::lab::DrLab, n: usize) -> BTreeMap<String, usize> {
    let from = lab.client_source().or_log(lab, "a client port");
    let names = lab
        .topo()
        .run_in(CLIENT, move || -> std::io::Result<Vec<String>> {
            let s = UdpSocket::bind(from)?;
            s.connect(vip_udp_addr())?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0u8; 256];
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let mut answered = None;
                for _ in 0..3 {
                    s.send(b"hello\n")?;
                    if let Ok(len) = s.recv(&mut buf) {
                        answered = Some(String::from_utf8_lossy(&buf[..len]).trim_end().to_owned());
                        break;
                    }
                }
                out.push(answered.ok_or_else(|| std::io::Error::other("no answer after 3 datagrams"))?);
            }
            Ok(out)
        })
        .or_log(lab, "enter the client namespace")
        .or_log(lab, "UDP flow");
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

#[test]
fn one_packet_scheduling_spreads_one_udp_flow_and_keeps_no_entries() {
    let mut lab = lab(3);
    lab.add_service_on(Proto::Udp, UDP_PORT, "rr", &[1, 1, 1])
        .or_log(&lab, "configure the UDP service");
    lab.start_udp_servers().or_log(&lab, "start the UDP servers");
    let vs = format!("{}", vip_udp_addr());

    // Without -o: one flow, one entry, one real server.
    let counts = one_flow(&lab, N);
    assert_eq!(
        counts.len(),
        1,
        "without -o one flow goes to one real server: {counts:?}"
    );
    assert_eq!(conn_rows(&lab).len(), 1, "one entry for the flow");

    // With -o: rr over the datagrams of one flow, N/3 each, and no entry at all.
    lab.rvsadm_ok(&["-E", "-u", &vs, "-s", "rr", "-o"])
        .or_log(&lab, "-E -o");
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "-Ln");
    assert!(
        listing.contains(&format!("UDP  {vs} rr ops")),
        "-Ln shows the ops flag:\n{listing}"
    );
    let before = conn_rows(&lab).len();
    let counts = one_flow(&lab, N);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [N / 3, N / 3, N / 3],
        "rr over every datagram: {counts:?}"
    );
    assert_eq!(
        conn_rows(&lab).len(),
        before,
        "one-packet datagrams leave no entry"
    );
    let lines = dest_lines(&lab);
    for i in 1..=3 {
        let d = lines[&(svc(Proto::Udp, UDP_PORT), rs(i, UDP_PORT))];
        assert_eq!(d.active, 0, "rs{i}: {lines:#?}");
    }
    // --stats counts every datagram as a connection: the first flow's one, then N.
    let stats = lab
        .rvsadm_ok(&["-Ln", "--stats", "--exact"])
        .or_log(&lab, "--stats");
    let conns: u64 = stats
        .lines()
        .find(|l| l.starts_with(&format!("UDP  {vs}")))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no service line in\n{stats}"));
    assert!(conns > N as u64, "Conns {conns} counts each datagram:\n{stats}");
}
