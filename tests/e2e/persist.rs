//! Persistence (`-p`, `-M`, port-0 services) through the real data plane: a template per client
//! network pins that network's later connections to one real server, across source ports and, for a
//! port-0 service, across the ports of the VIP (ipvs-features.md §2.4, bpf/lib/persist.h).
//!
//! IPVS's rules the tests rely on: a template's key is `<proto, client & mask, 0, vaddr, vport>`
//! (vport 0 for a port-0 service) and it shows in `-Lnc` as state ASSURED with client port 0; it counts in
//! its real server's PersistConn; it lives its timeout after the last connection it scheduled and as
//! long as connections it controls live; a quiesced (weight 0) real server keeps its templates' clients
//! unless `expire_quiescent_template` is set (§2.3). Only a new template consults the scheduler: rr
//! over rs3, rs2, rs1 (IPVS's list order, the last added first) gives the first template rs3 and the
//! next one rs2, whatever the connections in between.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rvs_testkit::http::{self, HttpConn};
use rvs_testkit::lab::{CLIENT, CLIENT_IP, DIRECTOR, DrLab, IFNAME, PORT, VIP, real_ip, real_name};
use rvs_testkit::wait;

use crate::rvsadm_out::{ConnRow, await_conns, conn_rows, index, rs};
use crate::topo::{OrLog, lab, start_http_servers};

/// The second port of the port-0 service test (the lab's HTTP servers hold port 80).
const PORT2: u16 = 8080;

/// How long the director may take to see a close, or the sweep to remove an entry out of force.
const SETTLE: Duration = Duration::from_secs(40);

/// `rvsadm ARGS`, which must succeed.
fn adm(lab: &DrLab, args: &[&str]) {
    lab.rvsadm_ok(args)
        .or_log(lab, &format!("rvsadm {}", args.join(" ")));
}

/// `VIP:port`.
fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), port)
}

/// `-A -t VIP:port -s rr -p TIMEOUT [extra]`, then rs1..=reals as DR real servers of weight 1, rs1
/// first (for a port-0 service without a port, which IPVS then takes from each packet).
fn service(lab: &DrLab, port: u16, timeout: u32, extra: &[&str]) {
    let (v, t) = (vip(port).to_string(), timeout.to_string());
    let mut add = vec!["-A", "-t", &v, "-s", "rr", "-p", &t];
    add.extend_from_slice(extra);
    adm(lab, &add);
    for i in 1..=lab.reals() {
        let r = if port == 0 {
            real_ip(i).to_string()
        } else {
            rs(i, port).to_string()
        };
        adm(lab, &["-a", "-t", &v, "-r", &r, "-g", "-w", "1"]);
    }
}

/// `rvsadm -e -t VIP:80 -r rsI:80 -g -w W`.
fn set_weight(lab: &DrLab, i: usize, w: u32) {
    let (v, r, w) = (vip(PORT).to_string(), rs(i, PORT).to_string(), w.to_string());
    adm(lab, &["-e", "-t", &v, "-r", &r, "-g", "-w", &w]);
}

/// Adds `ip`/`prefix` to the client's interface, so that connections can be made from it.
fn add_client_addr(lab: &DrLab, ip: Ipv4Addr, prefix: u8) {
    lab.topo()
        .ip(CLIENT, &["addr", "add", &format!("{ip}/{prefix}"), "dev", IFNAME])
        .or_log(lab, &format!("add {ip} to the client"));
}

/// A source address for a new connection: `ip` and a port no earlier connection of the lab used.
fn from(lab: &DrLab, ip: Ipv4Addr) -> SocketAddr {
    let port = lab.client_source().or_log(lab, "a client port").port();
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// `n` requests, one new connection each, from `ip` (fresh source ports) to `VIP:port`; the index of
/// the real server that answered each.
fn ask(lab: &DrLab, ip: Ipv4Addr, port: u16, n: usize) -> Vec<usize> {
    let froms: Vec<SocketAddr> = (0..n).map(|_| from(lab, ip)).collect();
    lab.topo()
        .run_in(CLIENT, || {
            froms
                .iter()
                .enumerate()
                .map(|(k, &f)| {
                    http::get_once(vip(port), Some(f))
                        .map(|name| index(&name))
                        .map_err(|e| format!("request {k} to {} from {f}: {e}", vip(port)))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .or_log(lab, "enter the client's namespace")
        .or_log(lab, &format!("{n} requests from {ip}"))
}

/// A kept-alive connection from `ip` to `VIP:80`.
fn connect_from(lab: &DrLab, ip: Ipv4Addr) -> HttpConn {
    let f = from(lab, ip);
    lab.topo()
        .run_in(CLIENT, || HttpConn::connect(vip(PORT), Some(f)))
        .or_log(lab, "enter the client's namespace")
        .or_log(lab, &format!("connect from {f}"))
}

/// A real server's line of `-Ln --persistent-conn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PersistLine {
    weight: u32,
    persist: u32,
    active: u32,
    inactive: u32,
}

/// `rvsadm -Ln --persistent-conn`: the service lines, and every real server's line keyed by its
/// address. Each line is checked against ipvsadm's layout (title `"%-33s %-9s %-11s %-10s %-10s"`, real
/// server `"  -> %-28s %-9u %-11u %-10u %-10u"`).
fn persist_lines(lab: &DrLab) -> (Vec<String>, BTreeMap<SocketAddr, PersistLine>) {
    let text = lab
        .rvsadm_ok(&["-Ln", "--persistent-conn"])
        .or_log(lab, "rvsadm -Ln --persistent-conn");
    let title = format!(
        "{:<33} {:<9} {:<11} {:<10} {:<10}",
        "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.get(1..3),
        Some(&[title.as_str(), "  -> RemoteAddress:Port"][..]),
        "{text}"
    );
    let (mut services, mut dests) = (Vec::new(), BTreeMap::new());
    for line in lines.iter().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["->", addr, w, p, a, i] => {
                let num = |v: &str| {
                    v.parse::<u32>()
                        .unwrap_or_else(|e| panic!("{v:?} in {line:?}: {e}\n{text}"))
                };
                let d = PersistLine {
                    weight: num(w),
                    persist: num(p),
                    active: num(a),
                    inactive: num(i),
                };
                let want = format!(
                    "  -> {addr:<28} {:<9} {:<11} {:<10} {:<10}",
                    d.weight, d.persist, d.active, d.inactive
                );
                assert_eq!(*line, want, "--persistent-conn real-server line layout:\n{text}");
                let addr = addr.parse().unwrap_or_else(|e| panic!("{addr:?}: {e}\n{text}"));
                dests.insert(addr, d);
            }
            _ => services.push((*line).to_owned()),
        }
    }
    (services, dests)
}

/// PersistConn of rs1..=reals (at `port`).
fn persist_counts(lab: &DrLab, port: u16) -> Vec<u32> {
    let (_, dests) = persist_lines(lab);
    (1..=lab.reals())
        .map(|i| {
            dests
                .get(&rs(i, port))
                .unwrap_or_else(|| panic!("rs{i}:{port} not listed: {dests:#?}"))
                .persist
        })
        .collect()
}

/// PersistConn `want` for rs1..=reals, polled for at most [`SETTLE`].
fn await_persist(lab: &DrLab, what: &str, port: u16, want: &[u32]) {
    wait::until(what, SETTLE, Duration::from_millis(200), || {
        let got = persist_counts(lab, port);
        if got == want {
            Ok(())
        } else {
            Err(format!("PersistConn of rs1.. {got:?}, want {want:?}"))
        }
    })
    .or_log(lab, what);
}

/// The template rows (state ASSURED) of `-Lnc`.
fn templates(rows: &[ConnRow]) -> Vec<ConnRow> {
    rows.iter().filter(|r| r.state == "ASSURED").cloned().collect()
}

/// The one template `-Lnc` lists, which must be `<TCP, client:0, virt, dest>` expiring within
/// `timeout` seconds.
fn assert_one_template(lab: &DrLab, client: Ipv4Addr, virt: SocketAddr, dest: SocketAddr, timeout: u32) {
    let rows = conn_rows(lab);
    let t = templates(&rows);
    assert_eq!(t.len(), 1, "not one template: {rows:#?}");
    let t = &t[0];
    assert_eq!(
        (t.proto.as_str(), t.source, t.virt, t.dest),
        ("TCP", SocketAddr::new(IpAddr::V4(client), 0), virt, dest),
        "{rows:#?}"
    );
    assert!(
        t.expire <= timeout,
        "the template expires in {} s: {t:?}",
        t.expire
    );
}

/// Busy requests on `conn` for `secs` seconds, every 500 ms; after each one, `-Lnc` must list exactly
/// one template, on real server `i`, and PersistConn must be `persist`.
fn keep_busy(lab: &DrLab, conn: &mut HttpConn, i: usize, secs: u64, persist: &[u32]) {
    let start = Instant::now();
    let mut checks = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            index(&conn.get().or_log(lab, "request on the held connection")),
            i
        );
        let rows = conn_rows(lab);
        assert_eq!(
            templates(&rows).iter().map(|r| r.dest).collect::<Vec<_>>(),
            [rs(i, PORT)],
            "after {:?}: {rows:#?}",
            start.elapsed()
        );
        assert_eq!(persist_counts(lab, PORT), persist, "after {:?}", start.elapsed());
        checks += 1;
    }
    assert!(checks >= secs, "only {checks} checks in {secs} s");
}

#[test]
fn one_client_sticks_to_one_real_server_across_30_source_ports() {
    let lab = lab(3);
    service(&lab, PORT, 300, &[]);
    let (services, _) = persist_lines(&lab);
    assert_eq!(services, [format!("TCP  {} rr persistent 300", vip(PORT))]);

    // rr alone would give rs3, rs2, rs1 ten times each; the template pins all 30 to rr's first choice.
    let got = ask(&lab, CLIENT_IP, PORT, 30);
    assert_eq!(got, [3; 30], "30 connections from one client");

    // One template, on rs3; its 30 closed connections are rs3's and no one else's.
    await_persist(&lab, "the template to count on rs3", PORT, &[0, 0, 1]);
    let rows = await_conns(&lab, "the 30 connections to close", SETTLE, |rows| {
        let fin = rows.iter().filter(|r| r.state == "FIN_WAIT").count();
        if fin == 30 {
            Ok(())
        } else {
            Err(format!("{fin} FIN_WAIT"))
        }
    });
    assert_eq!(rows.len(), 31, "{rows:#?}");
    assert!(rows.iter().all(|r| r.dest == rs(3, PORT)), "{rows:#?}");
    assert_one_template(&lab, CLIENT_IP, vip(PORT), rs(3, PORT), 300);
    let (_, dests) = persist_lines(&lab);
    let want = |persist, inactive| PersistLine {
        weight: 1,
        persist,
        active: 0,
        inactive,
    };
    assert_eq!(dests[&rs(1, PORT)], want(0, 0), "{dests:#?}");
    assert_eq!(dests[&rs(2, PORT)], want(0, 0), "{dests:#?}");
    assert_eq!(dests[&rs(3, PORT)], want(1, 30), "{dests:#?}");

    // Without -M a template covers one address: another client address gets its own, and rr's next
    // choice.
    let other = Ipv4Addr::new(198, 18, 0, 3);
    add_client_addr(&lab, other, 24);
    assert_eq!(ask(&lab, other, PORT, 5), [2; 5], "5 connections from {other}");
    assert_eq!(ask(&lab, CLIENT_IP, PORT, 5), [3; 5], "the first client again");
    assert_eq!(persist_counts(&lab, PORT), [0, 1, 1]);
    assert_eq!(templates(&conn_rows(&lab)).len(), 2);
}

#[test]
fn netmask_makes_one_template_for_the_clients_of_a_network() {
    let lab = lab(3);
    service(&lab, PORT, 300, &["-M", "255.255.255.0"]);
    let (services, _) = persist_lines(&lab);
    assert_eq!(
        services,
        [format!("TCP  {} rr persistent 300 mask 255.255.255.0", vip(PORT))]
    );

    // Three addresses of 198.18.0.0/24 share one template, whichever comes first.
    let same = [
        CLIENT_IP,
        Ipv4Addr::new(198, 18, 0, 3),
        Ipv4Addr::new(198, 18, 0, 200),
    ];
    for ip in &same[1..] {
        add_client_addr(&lab, *ip, 24);
    }
    for round in 0..2 {
        for ip in same {
            assert_eq!(ask(&lab, ip, PORT, 4), [3; 4], "round {round}, from {ip}");
        }
    }
    assert_eq!(persist_counts(&lab, PORT), [0, 0, 1]);
    assert_one_template(&lab, Ipv4Addr::new(198, 18, 0, 0), vip(PORT), rs(3, PORT), 300);

    // A client of 198.18.1.0/24 (on the same segment; the real servers answer it on the link) has a
    // template of its own, scheduled afresh: rr's next choice, rs2.
    let far = Ipv4Addr::new(198, 18, 1, 2);
    add_client_addr(&lab, far, 24);
    // The director needs the route too: ARP from that address must pass its reverse-path check.
    let mut nodes: Vec<String> = (1..=lab.reals()).map(real_name).collect();
    nodes.push(DIRECTOR.to_owned());
    for node in &nodes {
        lab.topo()
            .ip(node, &["route", "add", "198.18.1.0/24", "dev", IFNAME])
            .or_log(&lab, &format!("route to the second client network in {node}"));
    }
    assert_eq!(ask(&lab, far, PORT, 4), [2; 4], "from {far}");
    assert_eq!(ask(&lab, same[1], PORT, 2), [3; 2], "from {} again", same[1]);
    assert_eq!(persist_counts(&lab, PORT), [0, 1, 1]);
    let rows = conn_rows(&lab);
    let mut t: Vec<(SocketAddr, SocketAddr)> = templates(&rows).iter().map(|r| (r.source, r.dest)).collect();
    t.sort();
    let net = |a, b| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, a, b)), 0);
    assert_eq!(
        t,
        [(net(0, 0), rs(3, PORT)), (net(1, 0), rs(2, PORT))],
        "{rows:#?}"
    );
}

#[test]
fn a_port_0_service_pins_a_client_across_the_ports_of_the_vip() {
    let lab = lab(3);
    let _servers = start_http_servers(&lab, PORT2);
    service(&lab, 0, 300, &[]);
    let (services, _) = persist_lines(&lab);
    assert_eq!(services, [format!("TCP  {} rr persistent 300", vip(0))]);

    // Alternating ports: one template for the VIP's every port, so all on rr's first choice (two
    // non-persistent services would each start their own rr).
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(ask(&lab, CLIENT_IP, PORT, 2));
        got.extend(ask(&lab, CLIENT_IP, PORT2, 2));
    }
    assert_eq!(got, [3; 20], "20 connections to ports 80 and 8080");
    assert_eq!(persist_counts(&lab, 0), [0, 0, 1]);

    // The template's virtual and real ports are 0; each connection keeps its own port (IPVS: a
    // packet's port that is not the service's stays).
    assert_one_template(&lab, CLIENT_IP, vip(0), rs(3, 0), 300);
    let rows = conn_rows(&lab);
    let conns: Vec<&ConnRow> = rows.iter().filter(|r| r.state != "ASSURED").collect();
    assert_eq!(conns.len(), 20, "{rows:#?}");
    for port in [PORT, PORT2] {
        let n = conns
            .iter()
            .filter(|r| r.virt == vip(port) && r.dest == rs(3, port))
            .count();
        assert_eq!(n, 10, "connections VIP:{port} -> rs3:{port}: {rows:#?}");
    }
}

#[test]
fn weight_0_keeps_a_persistent_clients_real_server() {
    let lab = lab(3);
    service(&lab, PORT, 300, &[]);
    let mut held = connect_from(&lab, CLIENT_IP);
    assert_eq!(index(&held.get().or_log(&lab, "first request")), 3);

    // Quiesced: IPVS's default keeps the template, so the client's new connections still go to rs3.
    set_weight(&lab, 3, 0);
    assert_eq!(ask(&lab, CLIENT_IP, PORT, 10), [3; 10], "after rs3 -w 0");
    assert_eq!(persist_counts(&lab, PORT), [0, 0, 1]);
    assert_eq!(index(&held.get().or_log(&lab, "held connection")), 3);
    // A new client network is scheduled by rr, which skips weight 0: one other server, in a template
    // of its own. (Which one depends on where rr's cursor stands after the weight change, which is
    // rr's business, not persistence's.)
    let other = Ipv4Addr::new(198, 18, 0, 3);
    add_client_addr(&lab, other, 24);
    let got = ask(&lab, other, PORT, 3);
    let rs_other = got[0];
    assert!(rs_other != 3 && got == [rs_other; 3], "from {other}: {got:?}");
    let mut want = vec![0, 0, 1];
    want[rs_other - 1] = 1;
    assert_eq!(persist_counts(&lab, PORT), want);
}

#[test]
fn removing_the_real_server_replaces_its_template_at_the_next_connection() {
    let lab = lab(3);
    service(&lab, PORT, 300, &[]);
    assert_eq!(ask(&lab, CLIENT_IP, PORT, 3), [3; 3]);
    let (v, r) = (vip(PORT).to_string(), rs(3, PORT).to_string());
    adm(&lab, &["-d", "-t", &v, "-r", &r]);

    // The template names a real server that is gone: the next connection is scheduled afresh, in a new
    // template that the later ones follow (which server depends on rr's cursor, not on persistence).
    let got = ask(&lab, CLIENT_IP, PORT, 6);
    let moved = got[0];
    assert!(moved != 3 && got == [moved; 6], "after -d rs3: {got:?}");
    let (_, dests) = persist_lines(&lab);
    assert!(!dests.contains_key(&rs(3, PORT)), "rs3 still listed: {dests:#?}");
    for i in [1, 2] {
        let want = u32::from(i == moved);
        assert_eq!(
            dests[&rs(i, PORT)].persist,
            want,
            "PersistConn of rs{i}: {dests:#?}"
        );
    }
    assert_one_template(&lab, CLIENT_IP, vip(PORT), rs(moved, PORT), 300);
}

#[test]
fn expire_quiescent_template_moves_a_client_off_a_quiesced_server() {
    let mut lab = lab(3);
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let mut args = lab.rvsd_args();
    args.push("--expire-quiescent-template".into());
    lab.start_rvsd_with(&args)
        .or_log(&lab, "start rvsd with --expire-quiescent-template");
    service(&lab, PORT, 300, &[]);
    let mut held = connect_from(&lab, CLIENT_IP);
    assert_eq!(index(&held.get().or_log(&lab, "first request")), 3);
    assert_eq!(ask(&lab, CLIENT_IP, PORT, 3), [3; 3]);

    // The next connection drops the template and is scheduled afresh (rr skips rs3 at weight 0): a new
    // template on another server, which the later ones follow. (Which server depends on rr's cursor
    // across the weight change, not on persistence.) The established connection stays on rs3.
    set_weight(&lab, 3, 0);
    let got = ask(&lab, CLIENT_IP, PORT, 6);
    let moved = got[0];
    assert!(moved != 3 && got == [moved; 6], "after rs3 -w 0: {got:?}");
    assert_eq!(index(&held.get().or_log(&lab, "held connection")), 3);
    let rows = conn_rows(&lab);
    let live: Vec<&ConnRow> = rows
        .iter()
        .filter(|r| r.state == "ASSURED" && r.dest == rs(moved, PORT))
        .collect();
    assert_eq!(live.len(), 1, "no template on rs{moved}: {rows:#?}");
    assert_eq!(
        persist_counts(&lab, PORT)[moved - 1],
        1,
        "PersistConn of rs{moved}"
    );
}

#[test]
fn a_template_outlives_its_timeout_while_its_connection_lives_then_expires() {
    let lab = lab(3);
    service(&lab, PORT, 3, &[]);
    // Idle ESTABLISHED entries last 5 s, FIN_WAIT 2 s.
    adm(&lab, &["--set", "5", "2", "5"]);
    let mut held = connect_from(&lab, CLIENT_IP);
    assert_eq!(index(&held.get().or_log(&lab, "first request")), 3);
    assert_one_template(&lab, CLIENT_IP, vip(PORT), rs(3, PORT), 3);

    // For twice the template's 3 s, the connection stays busy: the template controls it, so it stays
    // listed (and counted) past its timeout, and a new connection of the client still follows it.
    keep_busy(&lab, &mut held, 3, 6, &[0, 0, 1]);
    assert_eq!(ask(&lab, CLIENT_IP, PORT, 1), [3], "a new connection after 6 s");

    // Closed: FIN_WAIT for 2 s, then the template's 3 s, then it goes and PersistConn falls to 0.
    drop(held);
    await_conns(&lab, "every entry to expire", SETTLE, |rows| {
        if rows.is_empty() {
            Ok(())
        } else {
            Err(format!("{} entries left", rows.len()))
        }
    });
    assert_eq!(persist_counts(&lab, PORT), [0, 0, 0]);

    // The next connection is scheduled afresh: rr's next choice, in a new template.
    assert_eq!(
        ask(&lab, CLIENT_IP, PORT, 3),
        [2; 3],
        "after the template expired"
    );
    assert_eq!(persist_counts(&lab, PORT), [0, 1, 0]);
    assert_one_template(&lab, CLIENT_IP, vip(PORT), rs(2, PORT), 3);
}

#[test]
fn a_connection_of_a_replaced_template_does_not_release_its_successor() {
    let mut lab = lab(3);
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let mut args = lab.rvsd_args();
    args.push("--expire-quiescent-template".into());
    lab.start_rvsd_with(&args)
        .or_log(&lab, "start rvsd with --expire-quiescent-template");
    service(&lab, PORT, 3, &[]);
    adm(&lab, &["--set", "5", "2", "5"]);
    let mut old = connect_from(&lab, CLIENT_IP);
    assert_eq!(index(&old.get().or_log(&lab, "first request")), 3);

    // rs3 quiesced: the client's next connection replaces the template (the first connection stays).
    set_weight(&lab, 3, 0);
    let mut new = connect_from(&lab, CLIENT_IP);
    let moved = index(&new.get().or_log(&lab, "request after rs3 -w 0"));
    assert_ne!(moved, 3);
    assert_eq!(index(&old.get().or_log(&lab, "the first connection")), 3);

    // IPVS keeps the replaced template, invalidated (ports 65535), in rs3's PersistConn and in -Lc
    // until its own timer ends (3 s after its last use, not restarted); then it goes.
    let invalid = SocketAddr::new(rs(3, PORT).ip(), 65535);
    let rows = conn_rows(&lab);
    assert!(
        templates(&rows)
            .iter()
            .any(|r| r.virt.port() == 65535 && r.dest == invalid),
        "no invalidated template on rs3: {rows:#?}"
    );
    await_conns(&lab, "the invalidated template to expire", SETTLE, |rows| {
        if templates(rows).iter().any(|r| r.dest == invalid) {
            Err(format!("still listed: {rows:#?}"))
        } else {
            Ok(())
        }
    });

    // The first connection ends (FIN_WAIT 2 s, then the sweep): its control belonged to the replaced
    // template, so the new one keeps controlling the second connection and outlives its 3 s while that
    // connection lives. A release that reached the new template would let it expire here.
    drop(old);
    let mut persist = vec![0, 0, 0];
    persist[moved - 1] = 1;
    keep_busy(&lab, &mut new, moved, 8, &persist);

    // And once the second connection ends too, everything goes (a count below zero would keep it).
    drop(new);
    await_conns(&lab, "every entry to expire", SETTLE, |rows| {
        if rows.is_empty() {
            Ok(())
        } else {
            Err(format!("{} entries left", rows.len()))
        }
    });
    assert_eq!(persist_counts(&lab, PORT), [0, 0, 0]);
}
