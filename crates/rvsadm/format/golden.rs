//! Byte-for-byte checks against real ipvsadm output (testdata/ipvs-golden/, copied from
//! shared/ipvs-golden/). Each test rebuilds the table from the golden run's own setup commands (parsed by
//! rvs-core's grammar), puts the counters the golden run shows into the snapshot, formats it, and
//! compares with the recorded stdout.

use std::collections::HashMap;
use std::net::IpAddr;

use rvs_api::{ConnSnap, DestSnap, RateSnap, ServiceSnap, Snapshot, StatsSnap, Timeouts};
use rvs_core::ipvsadm::{Invocation, parse_args};
use rvs_core::{Command, Protocol, ServiceKey};

use super::{Names, list, save};

const ERRORS: &str = include_str!("../testdata/ipvs-golden/errors.txt");
const VERSION: &str = include_str!("../testdata/ipvs-golden/version.txt");
const LISTING: &str = include_str!("../testdata/ipvs-golden/listing-formats.txt");
const SAVE_RESTORE: &str = include_str!("../testdata/ipvs-golden/save-restore.txt");
const NAT_RR: &str = include_str!("../testdata/ipvs-golden/nat-rr.txt");
const DR_WRR: &str = include_str!("../testdata/ipvs-golden/dr-wrr.txt");
const NAT_WRR: &str = include_str!("../testdata/ipvs-golden/nat-wrr.txt");
const SET_TIMEOUTS: &str = include_str!("../testdata/ipvs-golden/set-timeouts.txt");
const PERSISTENCE: &str = include_str!("../testdata/ipvs-golden/persistence.txt");

/// One `$ CMD` record of a golden file.
#[derive(Debug)]
struct Run {
    cmd: String,
    stdout: String,
    stderr: String,
    exit: i32,
}

/// The records of the `=== title ===` section (all sections when `title` is empty).
fn runs(file: &str, title: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut in_section = title.is_empty();
    let mut cur: Option<Run> = None;
    let mut in_stderr = false;
    for line in file.lines() {
        if let Some(t) = line.strip_prefix("=== ").and_then(|l| l.strip_suffix(" ===")) {
            in_section = title.is_empty() || t == title;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            cur = Some(Run {
                cmd: cmd.to_owned(),
                stdout: String::new(),
                stderr: String::new(),
                exit: -1,
            });
            in_stderr = false;
            continue;
        }
        let Some(run) = cur.as_mut() else { continue };
        if line == "[stderr]" {
            in_stderr = true;
        } else if let Some(code) = line.strip_prefix("[exit ").and_then(|l| l.strip_suffix(']')) {
            run.exit = code.parse().unwrap();
            out.push(cur.take().unwrap());
        } else if in_stderr {
            run.stderr.push_str(line);
            run.stderr.push('\n');
        } else {
            run.stdout.push_str(line);
            run.stdout.push('\n');
        }
    }
    out
}

/// The recorded stdout of `cmd` in section `title` (the first such record).
fn stdout_of(file: &str, title: &str, cmd: &str) -> String {
    let run = runs(file, title).into_iter().find(|r| r.cmd == cmd);
    run.unwrap_or_else(|| panic!("no `$ {cmd}` in section {title}"))
        .stdout
}

/// ipvsadm's arguments of a golden command line (single spaces, so that empty arguments survive).
fn golden_args(cmd: &str) -> Vec<&str> {
    cmd.strip_prefix("ipvsadm")
        .unwrap()
        .strip_prefix(' ')
        .map(|r| r.split(' ').collect())
        .unwrap_or_default()
}

/// The table the setup commands of `title` build, in IPVS order (newest real server first). Commands
/// rvs cannot hold (fwmark, SCTP, pe, gue/gre) are skipped.
fn table_from(file: &str, title: &str) -> Snapshot {
    let mut snap = Snapshot {
        conn_tab_size: 4096,
        timeouts: Default::default(),
        conns: vec![],
        services: vec![],
    };
    for run in runs(file, title) {
        let Ok(Invocation::Command(c)) = parse_args(&golden_args(&run.cmd)) else {
            continue;
        };
        match c {
            Command::AddService(service) => snap.services.push(ServiceSnap {
                service,
                stats: StatsSnap::default(),
                rate: RateSnap::default(),
                dests: vec![],
            }),
            Command::AddDest(key, dest) => {
                // The service may be one rvs could not hold (5060 has --pe).
                let Some(svc) = snap.services.iter_mut().find(|s| s.service.key == key) else {
                    continue;
                };
                let d = DestSnap {
                    dest,
                    active: 0,
                    inactive: 0,
                    persist: 0,
                    stats: StatsSnap::default(),
                    rate: RateSnap::default(),
                };
                svc.dests.insert(0, d);
            }
            other => panic!("setup command {other:?}"),
        }
    }
    snap
}

fn key(proto: Protocol, addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto,
        addr: addr.parse().unwrap(),
        port,
    }
}

fn stats(v: [u64; 5]) -> StatsSnap {
    StatsSnap {
        conns: v[0],
        inpkts: v[1],
        outpkts: v[2],
        inbytes: v[3],
        outbytes: v[4],
    }
}

/// Sets a service's counters, and for each `(real server, counters, inactive)` its own.
fn counters(snap: &mut Snapshot, k: ServiceKey, svc: [u64; 5], dests: &[(&str, [u64; 5], u32)]) {
    let s = snap.services.iter_mut().find(|s| s.service.key == k).unwrap();
    s.stats = stats(svc);
    for (addr, st, inactive) in dests {
        let addr: IpAddr = addr.parse().unwrap();
        let d = s.dests.iter_mut().find(|d| d.dest.key.addr == addr).unwrap();
        d.stats = stats(*st);
        d.inactive = *inactive;
    }
}

/// Runs `ipvsadm ARGS` against the snapshot: the formatted stdout, or the error's text. A save is
/// shown without the `-x`/`-y` options, which ipvsadm drops and rvsadm keeps (a documented
/// improvement, checked by `save_keeps_the_thresholds`), so that the rest compares byte for byte.
fn render(snap: &Snapshot, cmd: &str, names: &dyn Names) -> String {
    match parse_args(&golden_args(cmd)).unwrap() {
        Invocation::List(opts) => list(snap, &opts, names).map_err(|_| "No such service").unwrap(),
        Invocation::Save { numeric } => without_thresholds(&save(snap, numeric, names)),
        other => panic!("{cmd}: {other:?}"),
    }
}

/// `text` with every ` -x N` and ` -y N` option taken out.
fn without_thresholds(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = line.split(' ').peekable();
        let mut kept: Vec<&str> = Vec::new();
        while let Some(w) = words.next() {
            if (w == "-x" || w == "-y") && words.peek().is_some_and(|n| n.parse::<u32>().is_ok()) {
                words.next();
                continue;
            }
            kept.push(w);
        }
        out.push_str(&kept.join(" "));
        out.push('\n');
    }
    out
}

/// rvsadm -S saves the thresholds after the weight, where ipvsadm drops them.
#[test]
fn save_keeps_the_thresholds() {
    let snap = table_from(SAVE_RESTORE, "setup");
    let text = save(&snap, true, &LabNames::new());
    let with: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" -x ") || l.contains(" -y "))
        .collect();
    assert!(!with.is_empty(), "no threshold saved:\n{text}");
    for line in with {
        let w = line.find(" -w ").unwrap_or_else(|| panic!("{line}"));
        assert!(line.find(" -x ").or(line.find(" -y ")).unwrap() > w, "{line}");
    }
}

/// Names as the lab's /etc/netns/director/hosts and Debian's /etc/services give them.
struct LabNames {
    hosts: HashMap<IpAddr, &'static str>,
}

impl LabNames {
    /// errors.txt ran without the hosts file: addresses stay numbers, ports get names.
    fn ports_only() -> Self {
        Self {
            hosts: HashMap::new(),
        }
    }

    fn new() -> Self {
        let hosts = [
            ("198.18.0.100", "vip.lab.test"),
            ("198.18.1.11", "rs1.lab.test"),
            ("198.18.1.12", "rs2.lab.test"),
            ("198.18.1.13", "rs3.lab.test"),
            ("198.18.0.11", "rs1-dr.lab.test"),
            ("198.18.0.2", "client.lab.test"),
        ];
        Self {
            hosts: hosts.iter().map(|(a, n)| (a.parse().unwrap(), *n)).collect(),
        }
    }
}

impl Names for LabNames {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.hosts.get(&addr).map(|n| (*n).to_owned())
    }
    fn port(&self, port: u16, proto: Protocol) -> Option<String> {
        let name = match (port, proto) {
            (80, Protocol::Tcp) => "http",
            (443, _) => "https",
            (6000, Protocol::Tcp) => "x11",
            (8080, Protocol::Tcp) => "http-alt",
            (8081, Protocol::Tcp) => "tproxy",
            (53, _) => "domain",
            (5060, _) => "sip",
            _ => return None,
        };
        Some(name.to_owned())
    }
}

/// Compares and shows both texts on failure (trailing spaces matter, so they are made visible).
fn same(cmd: &str, got: &str, want: &str) {
    if got != want {
        panic!(
            "`{cmd}` differs\n--- want\n{}--- got\n{}",
            want.replace(' ', "·"),
            got.replace(' ', "·")
        );
    }
}

fn check(file: &str, title: &str, snap: &Snapshot, cmd: &str) {
    same(
        cmd,
        &render(snap, cmd, &LabNames::new()),
        &stdout_of(file, title, cmd),
    );
}

// ---- version.txt ----

#[test]
fn empty_table() {
    let snap = Snapshot {
        conn_tab_size: 4096,
        timeouts: Default::default(),
        conns: vec![],
        services: vec![],
    };
    for cmd in [
        "ipvsadm -Ln",
        "ipvsadm -L",
        "ipvsadm -Lnc",
        "ipvsadm -Ln --stats",
        "ipvsadm -Ln --rate",
        "ipvsadm -Ln --timeout",
        "ipvsadm -S -n",
        "ipvsadm -L --daemon",
    ] {
        check(VERSION, "empty table (fresh netns)", &snap, cmd);
    }
    // `ipvsadm` alone lists like -L.
    let want = stdout_of(VERSION, "empty table (fresh netns)", "ipvsadm");
    same("ipvsadm", &render(&snap, "ipvsadm -L", &LabNames::new()), &want);
    assert_eq!(parse_args::<&str>(&[]).unwrap(), parse_args(&["-L"]).unwrap());
}

#[test]
fn version_line() {
    let want = stdout_of(VERSION, "version", "ipvsadm --version");
    assert_eq!(want, format!("{}\n", rvs_core::ipvsadm::VERSION_LINE));
}

#[test]
fn help_text() {
    let want = stdout_of(VERSION, "help", "ipvsadm -h");
    same("ipvsadm -h", &crate::help::usage("ipvsadm"), &want);
    same(
        "ipvsadm --help",
        &crate::help::usage("ipvsadm"),
        &stdout_of(VERSION, "help", "ipvsadm --help"),
    );
}

// ---- nat-rr.txt and dr-wrr.txt ----

fn nat_rr() -> Snapshot {
    let mut snap = table_from(NAT_RR, "setup (in netns director)");
    counters(
        &mut snap,
        key(Protocol::Tcp, "198.18.0.100", 80),
        [24, 142, 98, 8488, 7952],
        &[
            ("198.18.1.11", [8, 48, 32, 2864, 2616], 8),
            ("198.18.1.12", [8, 47, 33, 2812, 2668], 8),
            ("198.18.1.13", [8, 47, 33, 2812, 2668], 8),
        ],
    );
    snap
}

#[test]
fn nat_rr_listings() {
    let snap = nat_rr();
    // IPVS order is newest first; the listing sorts.
    assert_eq!(
        snap.services[0].dests[0].dest.key.addr,
        "198.18.1.13".parse::<IpAddr>().unwrap()
    );
    for cmd in [
        "ipvsadm -Ln",
        "ipvsadm -Ln --stats",
        "ipvsadm -Ln --stats --exact",
        "ipvsadm -Ln --thresholds",
        "ipvsadm -Ln --persistent-conn",
        "ipvsadm -Ln --timeout",
        "ipvsadm -S -n",
    ] {
        check(NAT_RR, "listings after the connections above", &snap, cmd);
    }
}

#[test]
fn dr_wrr_listings() {
    let mut snap = table_from(DR_WRR, "setup (in netns director)");
    counters(
        &mut snap,
        key(Protocol::Tcp, "198.18.0.100", 80),
        [24, 144, 0, 8592, 0],
        &[
            ("198.18.0.11", [12, 72, 0, 4296, 0], 12),
            ("198.18.0.12", [8, 48, 0, 2864, 0], 8),
            ("198.18.0.13", [4, 24, 0, 1432, 0], 4),
        ],
    );
    for cmd in [
        "ipvsadm -Ln",
        "ipvsadm -Ln --stats",
        "ipvsadm -Ln --stats --exact",
        "ipvsadm -Ln --thresholds",
        "ipvsadm -Ln --persistent-conn",
        "ipvsadm -Ln --timeout",
        "ipvsadm -S -n",
    ] {
        check(DR_WRR, "listings after the connections above", &snap, cmd);
    }
}

#[test]
fn nosort_keeps_ipvs_order() {
    let snap = nat_rr();
    let opts = match parse_args(&["-Ln", "--nosort"]).unwrap() {
        Invocation::List(o) => o,
        other => panic!("{other:?}"),
    };
    let got = list(&snap, &opts, &LabNames::new()).unwrap();
    let order: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("  -> 1"))
        .map(|l| &l[5..16])
        .collect();
    assert_eq!(order, vec!["198.18.1.13", "198.18.1.12", "198.18.1.11"]);
}

// ---- listing-formats.txt ----

/// Services of listing-formats.txt that rvs cannot hold: 6000 (gue and gre real servers), 5060 (pe sip)
/// and the SCTP service. Their blocks are cut from the golden text before comparing. (Fwmark 7's `FWM`
/// lines are compared: rvs has firewall-mark services.)
const NOT_IN_RVS: [&str; 5] = [
    "TCP  198.18.0.100:6000",
    "UDP  198.18.0.100:5060",
    "TCP  vip.lab.test:x11",
    "UDP  vip.lab.test:sip",
    "SCTP ",
];
const NOT_IN_RVS_SAVE: [&str; 7] = [
    "-t 198.18.0.100:6000",
    "-u 198.18.0.100:5060",
    "-t vip.lab.test:x11",
    "-u vip.lab.test:sip",
    "-t 198.18.0.100:x11",
    "-u 198.18.0.100:sip",
    "--sctp-service",
];

/// The golden text without the blocks of [`NOT_IN_RVS`] (a service line and its `  -> ` lines).
fn without_unsupported(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("  -> ") && !line.starts_with("  -> RemoteAddress") {
            if skipping {
                continue;
            }
        } else {
            skipping = NOT_IN_RVS.iter().any(|p| line.starts_with(p))
                || NOT_IN_RVS_SAVE.iter().any(|p| line.contains(&format!(" {p} ")));
            if skipping {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn listing_formats() -> Snapshot {
    let mut snap = table_from(LISTING, "setup");
    snap.services.retain(|s| {
        let k = s.service.key;
        k != key(Protocol::Tcp, "198.18.0.100", 6000) && k != key(Protocol::Udp, "198.18.0.100", 5060)
    });
    counters(
        &mut snap,
        key(Protocol::Tcp, "198.18.0.100", 80),
        [6, 36, 24, 2148, 1962],
        &[
            ("198.18.1.11", [3, 18, 12, 1074, 981], 3),
            ("198.18.1.12", [2, 12, 8, 716, 654], 2),
            ("198.18.1.13", [1, 6, 4, 358, 327], 1),
        ],
    );
    snap
}

#[test]
fn listing_formats_numeric() {
    let snap = listing_formats();
    assert_eq!(snap.services.len(), 7, "80 443 8080 8081 53 4789 fwmark 7");
    for cmd in [
        "ipvsadm -Ln",
        "ipvsadm -Ln --stats",
        "ipvsadm -Ln --stats --exact",
        "ipvsadm -Ln --thresholds",
        "ipvsadm -Ln --persistent-conn",
        "ipvsadm -Ln --timeout",
        "ipvsadm -Ln --exact",
        "ipvsadm -Ln --sort",
        "ipvsadm -Ln --tun-info",
        "ipvsadm -ln",
        "ipvsadm -S -n",
    ] {
        let want = without_unsupported(&stdout_of(LISTING, "numeric listings", cmd));
        assert!(
            cmd.ends_with("--timeout") || want.contains(":8443 "),
            "{cmd}: filtered too much"
        );
        same(cmd, &render(&snap, cmd, &LabNames::new()), &want);
    }
}

#[test]
fn listing_formats_selectors() {
    let snap = listing_formats();
    for cmd in [
        "ipvsadm -Ln -t 198.18.0.100:80",
        "ipvsadm -Ln -t 198.18.0.100:80 --stats",
        "ipvsadm -Ln -u 198.18.0.100:53",
    ] {
        check(LISTING, "numeric listings", &snap, cmd);
    }
}

#[test]
fn listing_formats_names() {
    let snap = listing_formats();
    for cmd in ["ipvsadm -L", "ipvsadm -L --stats", "ipvsadm -S"] {
        let want = without_unsupported(&stdout_of(
            LISTING,
            "names (no -n): /etc/hosts and /etc/services",
            cmd,
        ));
        assert!(want.contains("rs2.lab.test:8443 "), "{cmd}: filtered too much");
        same(cmd, &render(&snap, cmd, &LabNames::new()), &want);
    }
}

#[test]
fn listing_formats_flush() {
    let snap = Snapshot {
        conn_tab_size: 4096,
        timeouts: Default::default(),
        conns: vec![],
        services: vec![],
    };
    let section = runs(LISTING, "delete and flush");
    let after_flush = section
        .iter()
        .skip_while(|r| r.cmd != "ipvsadm -C")
        .find(|r| r.cmd == "ipvsadm -Ln");
    same(
        "ipvsadm -Ln",
        &render(&snap, "ipvsadm -Ln", &LabNames::new()),
        &after_flush.unwrap().stdout,
    );
}

// ---- save-restore.txt ----

#[test]
fn save_restore_round_trip() {
    let mut snap = table_from(SAVE_RESTORE, "setup");
    snap.services.retain(|s| {
        let k = s.service.key;
        k != key(Protocol::Tcp, "198.18.0.100", 6000) && k != key(Protocol::Udp, "198.18.0.100", 5060)
    });
    for (title, cmd) in [
        ("save", "ipvsadm -S -n"),
        ("save", "ipvsadm -S"),
        ("save", "ipvsadm --save --numeric"),
    ] {
        let want = without_unsupported(&stdout_of(SAVE_RESTORE, title, cmd));
        // This run had no hosts file: addresses stay numbers.
        same(cmd, &render(&snap, cmd, &LabNames::ports_only()), &want);
    }
    // The numeric save parses back into the same table (the -R half of the round trip).
    let text = save(&snap, true, &LabNames::new());
    let mut again = Snapshot {
        conn_tab_size: 4096,
        timeouts: Default::default(),
        conns: vec![],
        services: vec![],
    };
    for c in rvs_core::ipvsadm::parse_rules(&text).unwrap() {
        match c {
            Command::AddService(service) => again.services.push(ServiceSnap {
                service,
                stats: StatsSnap::default(),
                rate: RateSnap::default(),
                dests: vec![],
            }),
            Command::AddDest(k, dest) => again
                .services
                .iter_mut()
                .find(|s| s.service.key == k)
                .unwrap()
                .dests
                .push(DestSnap {
                    dest,
                    active: 0,
                    inactive: 0,
                    persist: 0,
                    stats: StatsSnap::default(),
                    rate: RateSnap::default(),
                }),
            other => panic!("{other:?}"),
        }
    }
    same("save after restore", &save(&again, true, &LabNames::new()), &text);
}

// ---- errors.txt ----

#[test]
fn errors_listings() {
    let mut snap = table_from(ERRORS, "baseline");
    let rs12 = parse_args(&golden_args(
        "ipvsadm -a -t 198.18.0.100:80 -r 198.18.1.12:80 -m -x 20 -y 10",
    ))
    .unwrap();
    let Invocation::Command(Command::AddDest(_, d)) = rs12 else {
        panic!()
    };
    snap.services[0].dests.insert(
        0,
        DestSnap {
            dest: d,
            active: 0,
            inactive: 0,
            persist: 0,
            stats: StatsSnap::default(),
            rate: RateSnap::default(),
        },
    );
    check(
        ERRORS,
        "thresholds",
        &snap,
        "ipvsadm -Ln --thresholds -t 198.18.0.100:80",
    );
    assert_eq!(
        list(&snap, &list_opts("-Ln -t 198.18.0.100:99"), &LabNames::new()),
        Err(super::NoSuchService),
        "errors.txt: `-Ln -t 198.18.0.100:99` is No such service, exit 1"
    );
    // `-L --stats --rate` (no -n) shows the stats columns with names.
    snap.services[0].dests.remove(0);
    let cmd = "ipvsadm -L --stats --rate";
    let want = stdout_of(ERRORS, "conflicting / misplaced options", cmd);
    same(cmd, &render(&snap, cmd, &LabNames::ports_only()), &want);
}

fn list_opts(line: &str) -> rvs_core::ipvsadm::ListOpts {
    match parse_args(&line.split(' ').collect::<Vec<_>>()).unwrap() {
        Invocation::List(o) => o,
        other => panic!("{other:?}"),
    }
}

/// Kernel-side refusals in errors.txt: the grammar accepts these lines and the table (or, for the sync
/// daemon, the kernel) refuses them.
const KERNEL_TEXTS: [&str; 10] = [
    "Service already exists\n",
    "Scheduler or persistence engine not found\n",
    "No such service\n",
    "Service not defined\n",
    "Destination already exists\n",
    "No such destination\n",
    "Numerical result out of range\n",
    "No such device\n",
    "No daemon is running\n",
    "",
];

/// Lines ipvsadm accepts that rvs refuses on purpose, with rvs's message (all exit 255).
const RVS_REFUSES: [(&str, &str); 6] = [
    (
        "-A -t 198.18.0.100:86 -s rr -p 60 -M 255.0.255.0",
        "non-contiguous persistence mask 255.0.255.0 is not supported by rvs",
    ),
    (
        "-A -t 198.18.0.100:87 -s rr -p 60 -M 33",
        "non-contiguous persistence mask 0.0.0.33 is not supported by rvs",
    ),
    (
        "-A -u 198.18.0.100:5060 -s rr --pe sip",
        "Scheduler or persistence engine not found",
    ),
    (
        "-A -u 198.18.0.100:5060 -s rr -p 60 --pe sip",
        "Scheduler or persistence engine not found",
    ),
    (
        "--start-daemon master --mcast-interface nosuch0",
        "connection synchronisation daemons are not supported by rvs",
    ),
    (
        "--stop-daemon master",
        "connection synchronisation daemons are not supported by rvs",
    ),
];

#[test]
fn errors_txt_parse_errors_exactly() {
    let mut checked = 0;
    for run in runs(ERRORS, "") {
        if run.cmd.contains('<') || !run.cmd.starts_with("ipvsadm") {
            continue; // -R with a here-document; covered by rvs-core's rules tests.
        }
        let args = golden_args(&run.cmd);
        let line = args.join(" ");
        let got = parse_args(&args);
        if let Some((_, msg)) = RVS_REFUSES.iter().find(|(l, _)| *l == line) {
            let e = got.expect_err(&line);
            assert_eq!((e.message.as_str(), e.exit_code), (*msg, 255), "{line}");
        } else if KERNEL_TEXTS.contains(&run.stderr.as_str()) {
            // Parses, or rvs refuses it at once with the very text and status ipvsadm got from the kernel.
            if let Err(e) = got {
                assert_eq!(
                    (format!("{}\n", e.message), e.exit_code),
                    (run.stderr.clone(), run.exit),
                    "{line}"
                );
            }
        } else {
            let e = got.expect_err(&line);
            assert_eq!(format!("{}\n", e.message), run.stderr, "`{line}`");
            assert_eq!(e.exit_code, run.exit, "`{line}`");
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} command lines found");
}

// ---- the daemon's rules file (rvs_core::save) and `-S -n` are the same text ----

#[test]
fn save_matches_rvs_core_save() {
    let rules = "\
-A -u 198.18.0.100:4789 -s rr -o
-A -t 198.18.0.100:80 -s wrr
-a -t 198.18.0.100:80 -r 198.18.1.13:80 -m -w 1
-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 3
-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2
-A -t 198.18.0.100:443 -s rr -p 300 -M 255.255.255.0
-a -t 198.18.0.100:443 -r 198.18.0.11:443 -g -w 1
-a -t 198.18.0.100:443 -r 198.18.0.12:443 -i -w 0
-A -t [2001:db8::1]:80 -s rr -p 60 -M 64
-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 5
-A -t 10.0.0.1:80 -s rr
";
    let cmds = rvs_core::ipvsadm::parse_rules(rules).unwrap();
    let mut table = rvs_core::table::Table::new();
    table.apply_all(&cmds).unwrap();
    let snap = Snapshot {
        conn_tab_size: 4096,
        timeouts: Default::default(),
        conns: vec![],
        services: table
            .services()
            .iter()
            .map(|e| ServiceSnap {
                service: e.service.clone(),
                stats: StatsSnap::default(),
                rate: RateSnap::default(),
                dests: e
                    .dests
                    .iter()
                    .map(|d| DestSnap {
                        dest: d.clone(),
                        active: 0,
                        inactive: 0,
                        persist: 0,
                        stats: StatsSnap::default(),
                        rate: RateSnap::default(),
                    })
                    .collect(),
            })
            .collect(),
    };
    same(
        "-S -n vs rvs_core::save",
        &save(&snap, true, &LabNames::new()),
        &rvs_core::save::save(&table),
    );
}

// ---- rates, connection entries and timeouts: nat-wrr.txt, set-timeouts.txt, persistence.txt ----

fn rate(v: [u64; 5]) -> RateSnap {
    RateSnap {
        cps: v[0],
        inpps: v[1],
        outpps: v[2],
        inbps: v[3],
        outbps: v[4],
    }
}

/// Sets a service's rates, and for each `(real server, rates)` its own.
fn rates(snap: &mut Snapshot, k: ServiceKey, svc: [u64; 5], dests: &[(&str, [u64; 5])]) {
    let s = snap.services.iter_mut().find(|s| s.service.key == k).unwrap();
    s.rate = rate(svc);
    for (addr, r) in dests {
        let addr: IpAddr = addr.parse().unwrap();
        s.dests.iter_mut().find(|d| d.dest.key.addr == addr).unwrap().rate = rate(*r);
    }
}

/// The connection entries of a recorded `ipvsadm -Lnc`, read back field by field (whitespace
/// separated): rendering them again must give the very same bytes.
fn conns_from(stdout: &str) -> Vec<ConnSnap> {
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("IPVS connection entries"));
    assert!(lines.next().unwrap().starts_with("pro expire state"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [proto, expire, state, c, v, d] = f[..] else {
                panic!("{l}")
            };
            let (m, s) = expire.split_once(':').unwrap();
            ConnSnap {
                proto: match proto {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    other => panic!("{other}"),
                },
                caddr: c.parse().unwrap(),
                vaddr: v.parse().unwrap(),
                daddr: d.parse().unwrap(),
                state: state.to_owned(),
                expire: m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap(),
            }
        })
        .collect()
}

fn nat_wrr() -> Snapshot {
    let mut snap = table_from(NAT_WRR, "setup (in netns director)");
    let vip = key(Protocol::Tcp, "198.18.0.100", 80);
    counters(
        &mut snap,
        vip,
        [24, 139, 104, 8332, 8264],
        &[
            ("198.18.1.11", [12, 71, 49, 4244, 3976], 12),
            ("198.18.1.12", [8, 46, 36, 2760, 2824], 8),
            ("198.18.1.13", [4, 22, 19, 1328, 1464], 4),
        ],
    );
    rates(
        &mut snap,
        vip,
        [1, 7, 5, 439, 436],
        &[
            ("198.18.1.11", [1, 4, 3, 224, 210]),
            ("198.18.1.12", [0, 2, 2, 146, 149]),
            ("198.18.1.13", [0, 1, 1, 70, 77]),
        ],
    );
    snap
}

#[test]
fn nat_wrr_listings_rates_and_connections() {
    let title = "listings after the connections above";
    let mut snap = nat_wrr();
    snap.conns = conns_from(&stdout_of(NAT_WRR, title, "ipvsadm -Lnc"));
    assert_eq!(snap.conns.len(), 24);
    for cmd in [
        "ipvsadm -Ln",
        "ipvsadm -Ln --stats",
        "ipvsadm -Ln --stats --exact",
        "ipvsadm -Ln --rate",
        "ipvsadm -Ln --thresholds",
        "ipvsadm -Ln --persistent-conn",
        "ipvsadm -Lnc",
        "ipvsadm -Ln --timeout",
        "ipvsadm -S -n",
    ] {
        check(NAT_WRR, title, &snap, cmd);
    }
}

#[test]
fn rates_of_large_values_scale_on_services_but_not_on_real_servers_pps() {
    let mut snap = nat_wrr();
    let vip = key(Protocol::Tcp, "198.18.0.100", 80);
    let big = [123_456_789, 234_567_890, 5, 345_678_901, 7];
    rates(&mut snap, vip, big, &[("198.18.1.11", big)]);
    let got = render(&snap, "ipvsadm -Ln --rate", &LabNames::new());
    let lines: Vec<&str> = got.lines().collect();
    // print_largenum for the service's five; "%8u %8u %8u" then print_largenum for a real server.
    assert_eq!(
        lines[3],
        "TCP  198.18.0.100:80               123456K  234567K        5  345678K        7"
    );
    assert_eq!(
        lines[4],
        "  -> 198.18.1.11:80               123456789 234567890        5  345678K        7"
    );
    let got = render(&snap, "ipvsadm -Ln --rate --exact", &LabNames::new());
    assert!(
        got.contains("TCP  198.18.0.100:80              123456789 234567890        5 345678901        7\n"),
        "{got}"
    );
}

#[test]
fn connection_listings_of_every_golden_file() {
    let mut checked = 0;
    for file in [NAT_WRR, NAT_RR, DR_WRR, LISTING, SET_TIMEOUTS, PERSISTENCE] {
        for run in runs(file, "").iter().filter(|r| r.cmd == "ipvsadm -Lnc") {
            let snap = Snapshot {
                conn_tab_size: 4096,
                services: vec![],
                timeouts: Timeouts::default(),
                conns: conns_from(&run.stdout),
            };
            same(&run.cmd, &render(&snap, &run.cmd, &LabNames::new()), &run.stdout);
            checked += 1;
        }
    }
    // nat-wrr 1, nat-rr 1, dr-wrr 1, listing-formats 1, set-timeouts 3, persistence 4.
    assert_eq!(checked, 11);
}

#[test]
fn connection_listing_with_names() {
    let numeric = stdout_of(LISTING, "numeric listings", "ipvsadm -Lnc");
    let want = stdout_of(
        LISTING,
        "names (no -n): /etc/hosts and /etc/services",
        "ipvsadm -Lc",
    );
    let mut conns = conns_from(&numeric);
    // Recorded six seconds later.
    for c in &mut conns {
        c.expire -= 6;
    }
    let snap = Snapshot {
        conn_tab_size: 4096,
        services: vec![],
        timeouts: Timeouts::default(),
        conns,
    };
    same(
        "ipvsadm -Lc",
        &render(&snap, "ipvsadm -Lc", &LabNames::new()),
        &want,
    );
    // With --persistent-conn only the title grows: rvs entries carry no persistence-engine data, and
    // ipvsadm prints those columns only for entries that do.
    let got = render(&snap, "ipvsadm -Lnc --persistent-conn", &LabNames::new());
    let rows = numeric.replace("01:54", "01:48");
    assert_eq!(
        got.lines().skip(2).collect::<Vec<_>>(),
        rows.lines().skip(2).collect::<Vec<_>>()
    );
    assert!(got.lines().nth(1).unwrap().ends_with("pe name          pe_data"));
}

#[test]
fn expiry_minutes_pass_99() {
    let mut conns = conns_from(&stdout_of(
        NAT_WRR,
        "listings after the connections above",
        "ipvsadm -Lnc",
    ));
    conns.truncate(1);
    conns[0].expire = 2_678_400; // --set's largest, 31 days
    conns[0].state = "ESTABLISHED".into();
    let snap = Snapshot {
        conn_tab_size: 4096,
        services: vec![],
        timeouts: Timeouts::default(),
        conns,
    };
    let got = render(&snap, "ipvsadm -Lnc", &LabNames::new());
    assert_eq!(
        got.lines().nth(2).unwrap(),
        "TCP 44640:00 ESTABLISHED 198.18.0.2:40116   198.18.0.100:80    198.18.1.12:80"
    );
}

/// set-timeouts.txt: every `--timeout` listing after the `--set` lines before it, with `0` leaving a
/// value as it is (what rvsd does with `Request::SetTimeouts`).
#[test]
fn set_timeouts_sequence() {
    let mut t = Timeouts::default();
    let mut checked = 0;
    for run in runs(SET_TIMEOUTS, "")
        .iter()
        .filter(|r| r.cmd.starts_with("ipvsadm"))
    {
        match parse_args(&golden_args(&run.cmd)) {
            Ok(Invocation::SetTimeouts(set)) => {
                for (slot, v) in [
                    (&mut t.tcp, set.tcp),
                    (&mut t.tcpfin, set.tcpfin),
                    (&mut t.udp, set.udp),
                ] {
                    if v != 0 {
                        *slot = v;
                    }
                }
            }
            Ok(Invocation::List(_)) if run.cmd == "ipvsadm -Ln --timeout" => {
                let snap = Snapshot {
                    conn_tab_size: 4096,
                    services: vec![],
                    timeouts: t,
                    conns: vec![],
                };
                same(&run.cmd, &render(&snap, &run.cmd, &LabNames::new()), &run.stdout);
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 6);
    assert_eq!(t, Timeouts::default(), "the file ends back at the defaults");
}

#[test]
fn persistence_rates() {
    let mut snap = table_from(
        PERSISTENCE,
        "part 1: -p 60, three clients (198.18.0.2 makes 24 connections)",
    );
    rates(
        &mut snap,
        key(Protocol::Tcp, "198.18.0.100", 80),
        [1, 8, 6, 491, 456],
        &[
            ("198.18.1.11", [0, 1, 1, 85, 78]),
            ("198.18.1.12", [0, 1, 1, 64, 58]),
            ("198.18.1.13", [1, 6, 4, 342, 320]),
        ],
    );
    check(PERSISTENCE, "listings", &snap, "ipvsadm -Ln --rate");
}
