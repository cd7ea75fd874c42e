//! Reader for the scheduler runs of the golden files in sched/testdata/ (copied byte for byte from
//! shared/ipvs-golden/): real kernel IPVS (Linux 6.1) choosing a real server for each new connection.

use std::net::IpAddr;

/// One real server of a golden setup, as `ipvsadm -a` added it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GoldenDest {
    pub(super) name: String,
    pub(super) addr: IpAddr,
    pub(super) port: u16,
    pub(super) weight: u32,
}

/// One batch of new connections and the real server the kernel gave each.
#[derive(Clone, Debug)]
pub(super) struct GoldenRun {
    /// `-b ...` flags of the service at the time (from the last `-A`/`-E` before the run).
    pub(super) sched_flags: Vec<String>,
    /// Client address, client port, name of the chosen real server (`rs1`...).
    pub(super) conns: Vec<(IpAddr, u16, String)>,
}

/// A golden scheduler file.
#[derive(Clone, Debug)]
pub(super) struct Golden {
    /// Scheduler of the `-A` line.
    pub(super) scheduler: String,
    /// Real servers in the order they were added (oldest first).
    pub(super) added: Vec<GoldenDest>,
    pub(super) runs: Vec<GoldenRun>,
}

impl Golden {
    /// The dests in IPVS list order: `ip_vs_add_dest` does `list_add` at the head, newest first.
    pub(super) fn list_order(&self) -> Vec<GoldenDest> {
        self.added.iter().rev().cloned().collect()
    }
}

/// Replays every run of `g`: `pick(list_index_usable, client, port, flags)` schedules one recorded
/// connection, given the dests in IPVS list order; each pick must name the real server the kernel chose.
pub(super) fn replay(
    g: &Golden,
    list: &[GoldenDest],
    pick: impl Fn(IpAddr, u16, super::sh::HashFlags) -> Option<usize>,
) {
    assert!(!g.runs.is_empty());
    for run in &g.runs {
        let flags = super::sh::HashFlags::from_names(&run.sched_flags);
        let got: Vec<&str> = run
            .conns
            .iter()
            .map(|&(addr, port, _)| list[pick(addr, port, flags).expect("a dest")].name.as_str())
            .collect();
        let want: Vec<&str> = run.conns.iter().map(|c| c.2.as_str()).collect();
        assert_eq!(got, want, "flags {:?}", run.sched_flags);
    }
}

fn opt<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| *w == flag)?;
    words.get(at + 1).copied()
}

fn split_addr_port(s: &str) -> (IpAddr, u16) {
    let (a, p) = s.rsplit_once(':').expect("addr:port");
    let a = a.trim_start_matches('[').trim_end_matches(']');
    (a.parse().expect("address"), p.parse().expect("port"))
}

/// Parses the setup commands, the `rsN = addr` legend and every numbered connection line.
pub(super) fn parse(text: &str) -> Golden {
    let mut names: Vec<(IpAddr, String)> = Vec::new();
    let mut scheduler = String::new();
    let mut flags: Vec<String> = Vec::new();
    let mut added = Vec::new();
    let mut runs: Vec<GoldenRun> = Vec::new();
    let mut in_run = false;
    for line in text.lines() {
        if let Some(legend) = line.strip_prefix("#   rs") {
            let (n, addr) = legend.split_once(" = ").expect("legend");
            names.push((addr.trim().parse().expect("legend address"), format!("rs{n}")));
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ipvsadm ") {
            in_run = false;
            let words: Vec<&str> = cmd.split_whitespace().collect();
            match words.first().copied() {
                Some("-A") | Some("-E") => {
                    scheduler = opt(&words, "-s").unwrap_or("wlc").to_string();
                    flags = opt(&words, "-b")
                        .map(|b| b.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                }
                Some("-a") => {
                    let (addr, port) = split_addr_port(opt(&words, "-r").expect("-r"));
                    let weight = opt(&words, "-w").map_or(1, |w| w.parse().expect("weight"));
                    let name = names
                        .iter()
                        .find(|(a, _)| *a == addr)
                        .map(|(_, n)| n.clone())
                        .expect("dest named in the legend");
                    added.push(GoldenDest {
                        name,
                        addr,
                        port,
                        weight,
                    });
                }
                _ => {}
            }
            continue;
        }
        if line.starts_with("=== ") {
            in_run = line.contains(" new connections");
            if in_run {
                runs.push(GoldenRun {
                    sched_flags: flags.clone(),
                    conns: Vec::new(),
                });
            }
            continue;
        }
        if !in_run {
            continue;
        }
        // "01 198.18.0.2:40400 -> rs3"
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [n, client, "->", rs] = words.as_slice()
            && n.chars().all(|c| c.is_ascii_digit())
        {
            let (addr, port) = split_addr_port(client);
            runs.last_mut()
                .expect("a run is open")
                .conns
                .push((addr, port, (*rs).to_string()));
        }
    }
    Golden {
        scheduler,
        added,
        runs,
    }
}

#[test]
fn parses_a_golden_file() {
    let g = parse(include_str!("testdata/dr-sh.txt"));
    assert_eq!(g.scheduler, "sh");
    let list = g.list_order();
    let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["rs3", "rs2", "rs1"]);
    assert_eq!(g.runs.len(), 2);
    assert_eq!(g.runs[0].conns.len(), 24);
    assert!(g.runs[0].sched_flags.is_empty());
    assert_eq!(g.runs[1].conns.len(), 12);
    assert_eq!(g.runs[1].sched_flags, ["sh-port"]);
    assert_eq!(
        g.runs[1].conns[0],
        ("198.18.0.2".parse().unwrap(), 40500, "rs2".to_string())
    );
}
