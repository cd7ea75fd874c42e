//! `rvsadm -Ln` and `-Sn` after real traffic have ipvsadm's layout, byte for byte, with the counts the
//! traffic implies (shared/ipvs-golden/dr-wrr.txt shows the kernel's own output for this setup).

use crate::topo::{OrLog, lab};

/// One real-server line as ipvsadm prints it: `"  -> %-28s %-7s %-6d %-10u %-10u"`.
fn dest_line(addr: &str, weight: u32, active: u64, inactive: u64) -> String {
    format!(
        "  -> {addr:<28} {:<7} {weight:<6} {active:<10} {inactive:<10}",
        "Route"
    )
}

#[test]
fn listing_after_traffic_has_the_ipvsadm_layout() {
    let lab = lab(3);
    lab.add_service("wrr", &[3, 2, 1]).or_log(&lab, "configure wrr");
    // Two periods of wrr 3,2,1: rs1 6, rs2 4, rs3 2.
    let got = lab.spread(12).or_log(&lab, "connections through the VIP");
    assert_eq!(got.get("rs1"), Some(&6), "{got:?}");

    let text = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "rvsadm -Ln");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "-Ln:\n{text}");
    let size = lines[0]
        .strip_prefix("IP Virtual Server version 1.2.1 (size=")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(size.is_some(), "header: {:?}", lines[0]);
    assert_eq!(lines[1], "Prot LocalAddress:Port Scheduler Flags");
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
    );
    assert_eq!(lines[3], "TCP  198.18.0.100:80 wrr");
    // ipvsadm sorts real servers by address; every connection has closed, so all are inactive
    // (ActiveConn counts ESTABLISHED only) and none has expired yet (TIME_WAIT lasts 2 minutes).
    let want = [
        ("198.18.0.11:80", 3, 6),
        ("198.18.0.12:80", 2, 4),
        ("198.18.0.13:80", 1, 2),
    ];
    for (line, (addr, weight, conns)) in lines[4..].iter().zip(want) {
        assert_eq!(*line, dest_line(addr, weight, 0, conns), "-Ln:\n{text}");
    }

    let saved = lab.rvsadm_ok(&["-Sn"]).or_log(&lab, "rvsadm -Sn");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s wrr\n\
         -a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 3\n\
         -a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 2\n\
         -a -t 198.18.0.100:80 -r 198.18.0.13:80 -g -w 1\n"
    );
}
