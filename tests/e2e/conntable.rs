//! The connection table's size is a daemon setting: rvsd starts with a table of 16,777,216 entries (the
//! kernel holds it all from the start, about 2 GB) and refuses sizes the kernel cannot make.

use std::process::Command;

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
