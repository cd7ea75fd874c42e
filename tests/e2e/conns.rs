//! `-Lnc`, ActiveConn and InActConn while real connections are open, and after the client closes them.
//!
//! The director of VS/DR sees only the client's half of each connection, so IPVS moves its entries
//! through the INPUT_ONLY table (ipvs-features.md §2.6): the handshake's ACK makes an entry ESTABLISHED
//! (900 s), the client's FIN makes it FIN_WAIT (120 s; the client's last ACK leaves it there), and a RST
//! makes it CLOSE (10 s). Only ESTABLISHED counts as active here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvs_testkit::http::HttpConn;
use rvs_testkit::lab::{PORT, Proto, vip_addr};

use crate::rvsadm_out::{ConnRow, await_conns, conn_rows, dest_lines, index, rs, svc};
use crate::topo::{OrLog, lab};

/// The row of the connection from `source`.
fn row_of(rows: &[ConnRow], source: SocketAddr) -> Option<&ConnRow> {
    rows.iter().find(|r| r.source == source)
}

#[test]
fn open_connections_are_listed_and_counted_then_turn_inactive_when_closed() {
    const N: usize = 6;
    // Closed with a FIN; the others with a RST.
    const GRACEFUL: usize = 4;
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");

    // Every connection's last packet so far was sent after `t0`.
    let t0 = Instant::now();
    let mut held: Vec<(HttpConn, SocketAddr, usize)> = Vec::new();
    for k in 0..N {
        let mut c = lab.connect().or_log(&lab, "open a kept-alive connection");
        let name = c.get().or_log(&lab, &format!("request on connection {k}"));
        let src = c.local_addr().or_log(&lab, "local address");
        held.push((c, src, index(&name)));
    }
    let mut per_rs: BTreeMap<usize, u32> = BTreeMap::new();
    for (_, _, i) in &held {
        *per_rs.entry(*i).or_default() += 1;
    }
    // rr over three real servers: two connections each.
    assert_eq!(per_rs, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));

    let rows = conn_rows(&lab);
    // Seconds since t0, rounded up, as an upper bound of each entry's idle time.
    let idle = u32::try_from(t0.elapsed().as_secs()).expect("seconds") + 1;
    assert_eq!(rows.len(), N, "-Lnc lists other entries: {rows:#?}");
    for (_, src, i) in &held {
        let r = row_of(&rows, *src).unwrap_or_else(|| panic!("{src} not listed: {rows:#?}"));
        assert_eq!(
            (r.proto.as_str(), r.state.as_str(), r.virt, r.dest),
            ("TCP", "ESTABLISHED", vip_addr(), rs(*i, PORT)),
            "{r:?}"
        );
        // 15:00 minus the time since the last packet, rounded down.
        assert!(
            r.expire <= 900 && r.expire >= 900 - idle - 1,
            "{src} expires in {} s, not 15:00 minus at most {idle} s",
            r.expire
        );
    }

    // The expiry counts down while the connection is idle.
    let (_, first_src, _) = &held[0];
    let first = row_of(&rows, *first_src).expect("listed").expire;
    await_conns(
        &lab,
        "the expiry of an idle connection to count down",
        Duration::from_secs(10),
        |rows| match row_of(rows, *first_src) {
            Some(r) if r.expire < first && r.state == "ESTABLISHED" => Ok(()),
            other => Err(format!("row {other:?}, first seen at {first} s")),
        },
    );

    let tcp = svc(Proto::Tcp, PORT);
    let lines = dest_lines(&lab);
    for i in 1..=3 {
        let d = lines[&(tcp.clone(), rs(i, PORT))];
        assert_eq!(
            (d.weight, d.active, d.inactive),
            (1, per_rs[&i], 0),
            "rs{i}: {lines:#?}"
        );
    }

    // The client closes: FIN for the first ones, RST for the rest.
    let mut graceful: BTreeMap<usize, u32> = BTreeMap::new();
    let mut sources = Vec::new();
    for (k, (c, src, i)) in held.into_iter().enumerate() {
        sources.push((src, k < GRACEFUL));
        if k < GRACEFUL {
            *graceful.entry(i).or_default() += 1;
            drop(c);
        } else {
            c.abort().or_log(&lab, "abort a connection");
        }
    }
    let want_state = |fin: bool| if fin { "FIN_WAIT" } else { "CLOSE" };
    await_conns(
        &lab,
        "closed connections to be FIN_WAIT (FIN) or CLOSE (RST)",
        Duration::from_secs(10),
        |rows| {
            for (src, fin) in &sources {
                match row_of(rows, *src) {
                    Some(r) if r.state == want_state(*fin) => {
                        let max = if *fin { 120 } else { 10 };
                        if r.expire > max {
                            return Err(format!("{src}: {} expires in {} s", r.state, r.expire));
                        }
                    }
                    other => return Err(format!("{src} (fin: {fin}): {other:?}")),
                }
            }
            Ok(())
        },
    );
    let lines = dest_lines(&lab);
    for i in 1..=3 {
        let d = lines[&(tcp.clone(), rs(i, PORT))];
        assert_eq!(d.active, 0, "rs{i} still has active connections: {lines:#?}");
        assert!(
            d.inactive >= graceful.get(&i).copied().unwrap_or(0) && d.inactive <= per_rs[&i],
            "rs{i}: InActConn {} with {graceful:?} closed by FIN: {lines:#?}",
            d.inactive
        );
    }

    // CLOSE lasts 10 s, FIN_WAIT 2 minutes: the reset ones go, and InActConn counts what is left.
    let rows = await_conns(
        &lab,
        "the CLOSE entries to expire",
        Duration::from_secs(40),
        |rows| {
            let close = rows.iter().filter(|r| r.state == "CLOSE").count();
            if close == 0 {
                Ok(())
            } else {
                Err(format!("{close} CLOSE entries left"))
            }
        },
    );
    let lines = dest_lines(&lab);
    assert_eq!(rows.len(), GRACEFUL, "{rows:#?}");
    for (src, fin) in &sources {
        assert_eq!(row_of(&rows, *src).is_some(), *fin, "{src}: {rows:#?}");
    }
    for i in 1..=3 {
        let d = lines[&(tcp.clone(), rs(i, PORT))];
        assert_eq!(
            (d.active, d.inactive),
            (0, graceful.get(&i).copied().unwrap_or(0)),
            "rs{i}: {lines:#?}"
        );
    }
}
