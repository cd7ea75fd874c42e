//! Firewall-mark services end to end: rvs declares its marks itself (`rvsadm --add-mark`), and one
//! `-f` service then schedules the connections to every port its mark holds, with one scheduler.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rvs_testkit::http;
use rvs_testkit::lab::{CLIENT, VIP, real_ip};

use crate::topo::{OrLog, lab, start_http_servers};

/// The second port of the service (the lab's HTTP servers hold port 80).
const PORT2: u16 = 8080;

/// Mark 1 holds VIP:80 and VIP:8080; `-f 1 -s rr` over rs1 and rs2. Connections alternate between the
/// two ports: with one rr cursor for the whole mark, every connection to port 80 lands on one real
/// server and every one to 8080 on the other (two services would split each port evenly instead).
#[test]
fn one_fwmark_service_schedules_two_ports_with_one_rr() {
    let mut lab = lab(2);
    let _servers = start_http_servers(&lab, PORT2);
    let m = format!("tcp:{VIP}/32:80");
    let m2 = format!("tcp:{VIP}:{PORT2}");
    lab.rvsadm_ok(&["--add-mark", "1", "--match", &m, "--match", &m2])
        .or_log(&lab, "rvsadm --add-mark");
    lab.rvsadm_ok(&["-A", "-f", "1", "-s", "rr"])
        .or_log(&lab, "rvsadm -A -f");
    for i in 1..=2 {
        let rs = real_ip(i).to_string();
        lab.rvsadm_ok(&["-a", "-f", "1", "-r", &rs, "-g"])
            .or_log(&lab, "rvsadm -a -f");
    }

    let froms: Vec<SocketAddr> = (0..20)
        .map(|_| lab.client_source().or_log(&lab, "client port"))
        .collect();
    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got: BTreeMap<(u16, String), usize> = BTreeMap::new();
            for (k, &from) in froms.iter().enumerate() {
                let port = if k % 2 == 0 { 80 } else { PORT2 };
                let to = SocketAddr::new(IpAddr::V4(VIP), port);
                let name = http::get_once(to, Some(from))
                    .map_err(|e| format!("request {k} to {to} from {from} (after {got:?}): {e}"))?;
                *got.entry((port, name)).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "20 connections to the mark's two ports");
    // rr starts at the head of IPVS's list, the real server added last.
    let want: BTreeMap<(u16, String), usize> =
        [((80, "rs2".to_owned()), 10), ((PORT2, "rs1".to_owned()), 10)].into();
    assert_eq!(got, want);

    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "rvsadm -Ln");
    let svc_line = listing.lines().nth(3).unwrap_or_default();
    assert_eq!(svc_line, "FWM  1 rr", "{listing}");
    for i in 1..=2 {
        let line = listing
            .lines()
            .find(|l| l.contains(&format!("-> {}:0 ", real_ip(i))))
            .unwrap_or_else(|| panic!("rs{i} not listed:\n{listing}"));
        // Forward and weight.
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[2..4], ["Route", "1"], "{listing}");
    }
    let marks = lab
        .rvsadm_ok(&["--list-marks"])
        .or_log(&lab, "rvsadm --list-marks");
    assert_eq!(
        marks,
        format!(
            "Mark       Prot Prefix:Ports\n1          TCP  {VIP}/32:80\n1          TCP  {VIP}/32:{PORT2}\n"
        )
    );

    // -S writes the mark before the service; -C clears both; -R of the saved text rebuilds the same.
    let saved = lab.rvsadm_ok(&["-Sn"]).or_log(&lab, "rvsadm -Sn");
    assert!(
        saved.starts_with(&format!(
            "--add-mark 1 --match tcp:{VIP}/32:80 --match tcp:{VIP}/32:{PORT2}\n-A -f 1 -s rr\n"
        )),
        "{saved}"
    );
    lab.rvsadm_ok(&["-C"]).or_log(&lab, "rvsadm -C");
    assert_eq!(
        lab.rvsadm_ok(&["--list-marks"]).or_log(&lab, "marks after -C"),
        "Mark       Prot Prefix:Ports\n"
    );
    let out = lab.rvsadm_stdin(&["-R"], &saved).or_log(&lab, "rvsadm -R");
    assert!(out.status.success(), "{}", rvs_testkit::lab::describe(&out));
    assert_eq!(lab.rvsadm_ok(&["-Sn"]).or_log(&lab, "rvsadm -Sn again"), saved);

    // A bad match is refused with its reason, and nothing is applied.
    let out = lab
        .rvsadm(&["--add-mark", "2", "--match", "tcp:198.18.0.100/24:80"])
        .or_log(&lab, "rvsadm --add-mark bad");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "invalid match `tcp:198.18.0.100/24:80': 198.18.0.100 has bits set after its /24 prefix (the prefix's address is 198.18.0.0)\n"
    );
    // A match that another mark already holds at the same prefix is refused by the daemon.
    let out = lab
        .rvsadm(&["--add-mark", "2", "--match", &format!("tcp:{VIP}:79-80")])
        .or_log(&lab, "rvsadm --add-mark overlap");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Firewall mark match overlaps mark 1\n"
    );
    assert_eq!(
        lab.rvsadm_ok(&["-Sn"]).or_log(&lab, "rvsadm -Sn after refusals"),
        saved
    );

    // The rules file keeps the marks: a restarted rvsd classifies again (without the mark, these
    // connections would reach the director's own stack, where nothing listens on these ports).
    lab.stop_rvsd().or_log(&lab, "stop rvsd");
    lab.start_rvsd().or_log(&lab, "start rvsd again");
    assert_eq!(
        lab.rvsadm_ok(&["-Sn"])
            .or_log(&lab, "rvsadm -Sn after the restart"),
        saved
    );
    for port in [80, PORT2, 80, PORT2] {
        let to = SocketAddr::new(IpAddr::V4(VIP), port);
        let from = lab.client_source().or_log(&lab, "client port");
        let name = lab
            .topo()
            .run_in(CLIENT, || http::get_once(to, Some(from)))
            .or_log(&lab, "client thread")
            .or_log(&lab, "a connection through the mark after the restart");
        assert!(name == "rs1" || name == "rs2", "{to} answered {name:?}");
    }
}
