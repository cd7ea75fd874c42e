//! The connection table's size is a daemon setting: rvsd starts with a table of 16,777,216 entries (the
//! kernel holds it all from the start, about 2 GB) and refuses sizes the kernel cannot make; a table of
//! millions of entries is swept in slices, so `rvsadm` gets its answer while timed-out entries go.

use std::process::Command;

use rvs_abi::{ConnKey, ConnVal};
use rvs_testkit::lab::DIRECTOR;

use crate::topo::{OrLog, binaries, lab};

/// 2^24: the size issue 4 asks rvsd to accept at least.
const BIG: u32 = 16_777_216;

/// `bpftool -j map show pinned PATH`'s `"field":value`, as text.
fn map_field(path: &std::path::Path, field: &str) -> String {
    let out = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(path)
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    let pat = format!("\"{field}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("no {field} in {json}")) + pat.len();
    json[at..]
        .split([',', '}'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Runs `rvsd ARGS` in the director's namespace to completion.
fn rvsd_once(lab: &rvs_testkit::lab::DrLab, args: &[String]) -> std::process::Output {
    lab.topo()
        .output_in(DIRECTOR, Command::new(binaries().rvsd).args(args))
        .or_log(lab, "run rvsd")
}

#[test]
fn rvsd_starts_with_a_table_of_16_million_entries_and_forwards() {
    let mut lab = lab(1);
    // The lab's rvsd made a small table; a pinned table of another size is refused, so unload first.
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let mut unload = lab.rvsd_args();
    unload.push("--unload".into());
    let out = rvsd_once(&lab, &unload);
    assert!(
        out.status.success(),
        "rvsd --unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut args = lab.rvsd_args();
    let at = args
        .iter()
        .position(|a| a == "--conn-max")
        .expect("the lab sets --conn-max")
        + 1;
    args[at] = BIG.to_string();
    lab.start_rvsd_with(&args)
        .or_log(&lab, "start rvsd with --conn-max 16777216");

    let conn = lab.pin_dir().join(rvs_abi::map::CONN);
    assert_eq!(
        map_field(&conn, "max_entries"),
        BIG.to_string(),
        "the kernel's max_entries"
    );
    let memlock: u64 = map_field(&conn, "bytes_memlock").parse().expect("a byte count");
    assert!(
        memlock >= u64::from(BIG) * 72,
        "{memlock} bytes cannot hold {BIG} keys and values"
    );
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "rvsadm -Ln");
    assert!(
        listing.starts_with(&format!("IP Virtual Server version 1.2.1 (size={BIG})")),
        "{listing}"
    );
    lab.add_service("rr", &[1]).or_log(&lab, "configure rr");
    let got = lab.get().or_log(&lab, "a request through the big table");
    assert!(got.starts_with("rs"), "answered by {got:?}");
    let conns = lab.rvsadm_ok(&["-Lnc"]).or_log(&lab, "rvsadm -Lnc");
    assert!(conns.contains("198.18.0.100:80"), "{conns}");

    // Give the memory back now rather than when the lab is dropped.
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let out = rvsd_once(&lab, &unload);
    assert!(
        out.status.success(),
        "rvsd --unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!conn.exists(), "rvs_conn still pinned");
}

#[test]
fn rvsd_refuses_a_table_larger_than_the_kernel_makes_and_an_empty_one() {
    // No interface: should a check ever let a size through, rvsd stops at "no interface" instead of
    // attaching to anything.
    for (n, want) in [("134217729", "1..=134217728"), ("0", "1..=134217728")] {
        let out = Command::new(binaries().rvsd)
            .args(["--conn-max", n, "--config", "/dev/null"])
            .output()
            .expect("run rvsd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--conn-max {n}: {err}");
        assert!(err.contains(want), "--conn-max {n}: {err}");
    }
    let file = std::env::temp_dir().join(format!("rvs-conntable-{}.toml", std::process::id()));
    std::fs::write(&file, "conn_max = 134217729\n").expect("write the configuration");
    let out = Command::new(binaries().rvsd)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run rvsd");
    std::fs::remove_file(&file).expect("remove the configuration");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "conn_max = 134217729 accepted: {err}");
    assert!(err.contains("1 to 134217728"), "{err}");
}

/// A table of 4,194,304 entries for the sweep test: large enough that sweeping it whole takes seconds
/// (docs/performance.md), which an incremental sweep must never make a listing wait for.
const SWEPT: u32 = 1 << 22;

/// Client `i` below 2^22 (198.18.0.0/24 + port 1024..17407) to the VIP over TCP.
fn client_key(i: u32) -> rvs_abi::ConnKey {
    use rvs_abi::{Be16, Family, addr_v4};
    ConnKey {
        saddr: addr_v4([198, 18, 0, (i >> 14) as u8]),
        daddr: addr_v4(rvs_testkit::lab::VIP.octets()),
        sport: Be16::new(1024 + (i & 0x3fff) as u16),
        dport: Be16::new(rvs_testkit::lab::PORT),
        proto: 6,
        family: Family::Inet as u8,
        ..ConnKey::default()
    }
}

#[test]
fn rvsadm_answers_while_the_sweep_works_through_millions_of_entries_in_slices() {
    use std::time::{Duration, Instant};

    use rvs_abi::{CONN_C_ACTIVE, CONN_F_INPUT_ONLY, CONN_F_REPLY, DestCnt, TcpState};
    use rvs_dataplane::{Dataplane, DataplaneConfig, now_ns};

    use crate::rvsadm_out::{dest_lines, rs, svc};
    use rvs_testkit::lab::{PORT, Proto};

    const SEC: u64 = 1_000_000_000;
    let mut lab = lab(1);
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let mut unload = lab.rvsd_args();
    unload.push("--unload".into());
    let out = rvsd_once(&lab, &unload);
    assert!(
        out.status.success(),
        "rvsd --unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = lab.rvsd_args();
    let at = args
        .iter()
        .position(|a| a == "--conn-max")
        .expect("the lab sets --conn-max")
        + 1;
    args[at] = SWEPT.to_string();
    lab.start_rvsd_with(&args)
        .or_log(&lab, "start rvsd with a large table");
    lab.add_service("rr", &[1]).or_log(&lab, "configure rr");

    // The daemon's own maps, adopted as a restarted rvsd would (nothing is written by opening them).
    let mut dp = Dataplane::open(&DataplaneConfig {
        pin_dir: lab.pin_dir().to_path_buf(),
        conn_max: SWEPT,
    })
    .or_log(&lab, "open the pinned data plane");
    let (_, sv) = dp.services().or_log(&lab, "read the services")[0];
    let (dest_id, dest) = dp.dests().or_log(&lab, "read the real servers")[0];
    assert_eq!(dest.svc_id, sv.id);

    // 4,000,000 DR connections: the odd ones ESTABLISHED now (active, 15 minutes to live), the even
    // ones CLOSE 11 s ago (inactive, timed out: CLOSE lives 10 s), with the real server's counters to
    // match, as the data plane would have counted them.
    let n = 4_000_000u32;
    let now = now_ns();
    let val = |i: u32| ConnVal {
        dest_id,
        svc_id: sv.id,
        dest_gen: dest.dgen,
        created_ns: now.saturating_sub(11 * SEC),
        last_ns: if i % 2 == 1 {
            now
        } else {
            now.saturating_sub(11 * SEC)
        },
        state: if i % 2 == 1 {
            TcpState::Established
        } else {
            TcpState::Close
        } as u8,
        cflags: if i % 2 == 1 { CONN_C_ACTIVE } else { 0 },
        flags: CONN_F_INPUT_ONLY,
        ..ConnVal::default()
    };
    let mut keys: Vec<ConnKey> = (0..n).map(client_key).collect();
    let mut vals: Vec<ConnVal> = (0..n).map(val).collect();
    // Two reply entries (as of NAT connections): one of live connection 1, one of connection
    // n + 1, which does not exist (an orphan the sweep must find by looking its connection up).
    let reply = |i: u32| {
        let k = client_key(i);
        let rk = ConnKey {
            saddr: dest.addr,
            daddr: k.saddr,
            sport: dest.port,
            dport: k.sport,
            ..k
        };
        (
            rk,
            // A reply entry names the virtual address and port its client used.
            ConnVal::from(rvs_abi::ConnRep {
                dest_id,
                svc_id: sv.id,
                vaddr: k.daddr,
                flags: CONN_F_REPLY,
                dest_gen: dest.dgen,
                vport: k.dport,
                ..rvs_abi::ConnRep::default()
            }),
        )
    };
    let (kept, orphan) = (reply(1), reply(n + 1));
    keys.extend([kept.0, orphan.0]);
    vals.extend([kept.1, orphan.1]);
    // Connection 1 must be a NAT one for its reply entry to be its own.
    vals[1].flags = 0;
    // The counters first: the sweep expires entries as soon as they are written.
    let cnt_path = lab.pin_dir().join(rvs_abi::map::DEST_CNT);
    let data = aya::maps::MapData::from_pin(&cnt_path).expect("open rvs_dest_cnt");
    let mut cnt: aya::maps::Array<_, DestCnt> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("rvs_dest_cnt is an array");
    let counted = DestCnt {
        active: n / 2,
        inactive: n / 2,
        ..DestCnt::default()
    };
    cnt.set(dest_id, counted, 0).expect("set the counters");
    assert_eq!(
        dp.set_conns(&keys, &vals).or_log(&lab, "fill rvs_conn"),
        keys.len()
    );
    drop((keys, vals));
    let filled = Instant::now();

    // Every listing is answered after a bounded sweep, not one of the whole table (seconds at this
    // size), while the periodic slices work through it.
    let key = (svc(Proto::Tcp, PORT), rs(1, PORT));
    for _ in 0..3 {
        let start = Instant::now();
        let lines = dest_lines(&lab);
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1500), "a listing took {took:?}");
        assert_eq!(lines[&key].active, n / 2, "{:?}", lines[&key]);
    }

    // The periodic sweep alone (the counters read straight from the map, which sweeps nothing) expires
    // every timed-out entry within a pass: 4,000,002 entries at 32,768 every 100 ms, about 12 s; up to
    // five times that on a machine shared with other work.
    let deadline = filled + Duration::from_secs(60);
    let left = loop {
        let c = dp.dest_cnt(dest_id).or_log(&lab, "read the counters");
        if c.inactive == 0 || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = filled.elapsed();
    assert_eq!(
        (left.active, left.inactive),
        (n / 2, 0),
        "every timed-out entry expired and left the counters, no live one (after {took:?}); rvsd's log:\n{}",
        lab.rvsd_log()
    );
    let d = dest_lines(&lab)[&key];
    assert_eq!((d.active, d.inactive), (n / 2, 0));

    // The orphan reply entry went, the other stayed with its connection.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dp
        .conn_get(&orphan.0)
        .or_log(&lab, "look the orphan up")
        .is_some()
    {
        assert!(Instant::now() < deadline, "the orphan reply entry is still there");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        dp.conn_get(&kept.0)
            .or_log(&lab, "look up the reply entry")
            .is_some()
    );
    assert!(
        dp.conn_get(&client_key(1))
            .or_log(&lab, "look up connection 1")
            .is_some()
    );

    drop(cnt);
    drop(dp);
    lab.stop_rvsd().or_log(&lab, "SIGTERM rvsd");
    let out = rvsd_once(&lab, &unload);
    assert!(
        out.status.success(),
        "rvsd --unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
