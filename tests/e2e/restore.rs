//! `rvsadm -R` is atomic: one bad line and nothing of the batch is applied.

use rvs_testkit::lab::DrLab;

use crate::topo::{OrLog, lab};

fn listings(lab: &DrLab) -> (String, String) {
    (
        lab.rvsadm_ok(&["-Ln"]).or_log(lab, "rvsadm -Ln"),
        lab.rvsadm_ok(&["-Sn"]).or_log(lab, "rvsadm -Sn"),
    )
}

/// Feeds `rules` to `rvsadm -R` and checks it fails, names line `bad_line`, and changes nothing.
fn refused(lab: &DrLab, rules: &str, bad_line: usize) {
    let before = listings(lab);
    let out = lab.rvsadm_stdin(&["-R"], rules).or_log(lab, "rvsadm -R");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rvsadm -R accepted a batch with a bad line {bad_line}:\n{rules}"
    );
    assert!(
        stderr.to_lowercase().contains(&format!("line {bad_line}")),
        "the error does not name line {bad_line}: {stderr:?}\nrules:\n{rules}"
    );
    let after = listings(lab);
    assert_eq!(before.0, after.0, "-Ln changed after a refused -R:\n{rules}");
    assert_eq!(before.1, after.1, "-Sn changed after a refused -R:\n{rules}");
}

#[test]
fn restore_with_one_bad_line_changes_nothing() {
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");

    // A line rvsadm cannot parse (the weight), after good lines that must not be applied either.
    refused(
        &lab,
        "-A -t 198.18.0.100:81 -s rr\n\
         -a -t 198.18.0.100:81 -r 198.18.0.11:81 -g -w 1\n\
         -a -t 198.18.0.100:81 -r 198.18.0.12:81 -g -w x\n",
        3,
    );
    // A line that parses but the daemon refuses (a real server of a service that does not exist).
    refused(
        &lab,
        "-A -t 198.18.0.100:82 -s wrr\n\
         -a -t 198.18.0.100:83 -r 198.18.0.11:83 -g -w 1\n",
        2,
    );
    // A line that conflicts with the existing table (the service is already there).
    refused(&lab, "-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 1\n", 1);

    // The same batch without its bad line is applied whole, and traffic still flows.
    let out = lab
        .rvsadm_stdin(
            &["-R"],
            "-A -t 198.18.0.100:81 -s rr\n-a -t 198.18.0.100:81 -r 198.18.0.11:81 -g -w 1\n",
        )
        .or_log(&lab, "rvsadm -R");
    assert!(
        out.status.success(),
        "a good -R batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = lab.rvsadm_ok(&["-Sn"]).or_log(&lab, "rvsadm -Sn");
    assert!(
        saved.contains("-A -t 198.18.0.100:81 -s rr\n-a -t 198.18.0.100:81 -r 198.18.0.11:81 -g -w 1\n"),
        "the good batch is not in the table:\n{saved}"
    );
    let got = lab.spread(3).or_log(&lab, "requests after -R");
    assert_eq!(got.values().sum::<usize>(), 3);
}
