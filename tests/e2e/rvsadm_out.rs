//! Reading rvsadm's listings back, for the tests of connection tracking and counters. Every parser
//! renders each line again with ipvsadm's printf layout (ipvs-features.md §1.9) and insists on the same
//! bytes, so a test that reads a number also checks the layout it was printed in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rvs_testkit::lab::{self, DrLab, Proto};
use rvs_testkit::wait;

use crate::topo::OrLog;

/// `-Lnc`'s first two lines.
pub(crate) const CONN_HEADER: &str = "IPVS connection entries\n\
    pro expire state       source             virtual            destination\n";

/// One row of `-Lnc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnRow {
    /// `TCP` or `UDP`.
    pub(crate) proto: String,
    /// Seconds left, from the `mm:ss` column.
    pub(crate) expire: u32,
    pub(crate) state: String,
    pub(crate) source: SocketAddr,
    pub(crate) virt: SocketAddr,
    pub(crate) dest: SocketAddr,
}

impl ConnRow {
    /// The row as ipvsadm prints it: `"%-3s %-6s %-11s %-18s %-18s %s"`, expire `%02d:%02d`.
    pub(crate) fn render(&self) -> String {
        let expire = format!("{:02}:{:02}", self.expire / 60, self.expire % 60);
        format!(
            "{:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
            self.proto,
            self.state,
            self.source.to_string(),
            self.virt.to_string(),
            self.dest
        )
    }
}

fn parse_conn_row(line: &str) -> Result<ConnRow, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [proto, expire, state, source, virt, dest] = f[..] else {
        return Err(format!("not 6 columns: {line:?}"));
    };
    let (m, s) = expire
        .split_once(':')
        .ok_or_else(|| format!("expire {expire:?} is not mm:ss"))?;
    let num = |v: &str| v.parse::<u32>().map_err(|e| format!("{v:?} in {line:?}: {e}"));
    let addr = |v: &str| {
        v.parse::<SocketAddr>()
            .map_err(|e| format!("{v:?} in {line:?}: {e}"))
    };
    let (m, s) = (num(m)?, num(s)?);
    if s >= 60 || expire.len() < 5 {
        return Err(format!("expire {expire:?} is not %02d:%02d"));
    }
    let row = ConnRow {
        proto: proto.to_owned(),
        expire: m * 60 + s,
        state: state.to_owned(),
        source: addr(source)?,
        virt: addr(virt)?,
        dest: addr(dest)?,
    };
    if row.render() != line {
        return Err(format!(
            "row layout differs from ipvsadm's:\n got  {line:?}\n want {:?}",
            row.render()
        ));
    }
    Ok(row)
}

/// `rvsadm -Lnc`, its header and the layout of every row checked.
pub(crate) fn conn_rows(lab: &DrLab) -> Vec<ConnRow> {
    let text = lab.rvsadm_ok(&["-Lnc"]).or_log(lab, "rvsadm -Lnc");
    let rows = text
        .strip_prefix(CONN_HEADER)
        .unwrap_or_else(|| panic!("-Lnc does not start with ipvsadm's header:\n{text}"));
    rows.lines()
        .map(|l| parse_conn_row(l).unwrap_or_else(|e| panic!("-Lnc: {e}\n{text}")))
        .collect()
}

/// Polls `-Lnc` until `ok` accepts its rows (at most `timeout`, every 200 ms); returns those rows.
pub(crate) fn await_conns(
    lab: &DrLab,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&[ConnRow]) -> Result<(), String>,
) -> Vec<ConnRow> {
    wait::until(what, timeout, Duration::from_millis(200), || {
        let rows = conn_rows(lab);
        match ok(&rows) {
            Ok(()) => Ok(rows),
            Err(e) => Err(format!("{e}; rows {rows:#?}")),
        }
    })
    .or_log(lab, what)
}

/// `PROTO VIP:port`, the way the tests name a service.
pub(crate) fn svc(proto: Proto, port: u16) -> String {
    let name = match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    };
    format!("{name} {}:{port}", lab::VIP)
}

/// The index of real server `rsI` from its name (what its servers answer).
pub(crate) fn index(name: &str) -> usize {
    name.strip_prefix("rs")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("answered by {name:?}"))
}

/// `real_ip(i):port`.
pub(crate) fn rs(i: usize, port: u16) -> SocketAddr {
    SocketAddr::new(lab::real_ip(i).into(), port)
}

/// A real server's line of `-Ln`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DestLine {
    pub(crate) weight: u32,
    pub(crate) active: u32,
    pub(crate) inactive: u32,
}

/// `rvsadm -Ln`: every real server's weight, ActiveConn and InActConn, keyed by (service as [`svc`]
/// names it, real server). Every line is checked against ipvsadm's layout (all real servers are DR).
pub(crate) fn dest_lines(lab: &DrLab) -> BTreeMap<(String, SocketAddr), DestLine> {
    let text = lab.rvsadm_ok(&["-Ln"]).or_log(lab, "rvsadm -Ln");
    let mut out = BTreeMap::new();
    let mut service = None;
    for line in text.lines().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["->", addr, "Route", w, a, i] => {
                let s: &String = service
                    .as_ref()
                    .unwrap_or_else(|| panic!("real server before any service:\n{text}"));
                let num = |v: &str| {
                    v.parse::<u32>()
                        .unwrap_or_else(|e| panic!("{v:?} in {line:?}: {e}\n{text}"))
                };
                let d = DestLine {
                    weight: num(w),
                    active: num(a),
                    inactive: num(i),
                };
                let want = format!(
                    "  -> {addr:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Route", d.weight, d.active, d.inactive
                );
                assert_eq!(line, want, "-Ln real-server line layout:\n{text}");
                let addr = addr.parse().unwrap_or_else(|e| panic!("{addr:?}: {e}\n{text}"));
                out.insert((s.clone(), addr), d);
            }
            [proto @ ("TCP" | "UDP"), addr, sched, ref flags @ ..] => {
                let flags: String = flags.iter().map(|f| format!(" {f}")).collect();
                assert_eq!(
                    line,
                    format!("{proto:<4} {addr} {sched}{flags}"),
                    "-Ln service line:\n{text}"
                );
                service = Some(format!("{proto} {addr}"));
            }
            _ => panic!("unexpected -Ln line {line:?}:\n{text}"),
        }
    }
    out
}

/// The five numbers of a `--stats` or `--rate` line.
pub(crate) type Five = [u64; 5];

/// `rvsadm -Ln <format> --exact` (`format` is `--stats` or `--rate`): the five numbers of every service
/// (keyed `(svc, None)`) and real server (`(svc, Some(addr))`). Every line is checked against ipvsadm's
/// layout: a service is `"%-33s"` and a real server `"  -> %-28s"`, then the five columns 9 wide (the
/// `--rate` real-server line's `" %8u"` columns are the same width).
pub(crate) fn numbers(lab: &DrLab, format: &str) -> BTreeMap<(String, Option<SocketAddr>), Five> {
    let args = ["-Ln", format, "--exact"];
    let text = lab.rvsadm_ok(&args).or_log(lab, "rvsadm -Ln --stats/--rate");
    let title = if format == "--rate" {
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS"
    } else {
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.get(1..3),
        Some(&[title, "  -> RemoteAddress:Port"][..]),
        "{text}"
    );
    let mut out = BTreeMap::new();
    let mut service: Option<String> = None;
    for line in lines.iter().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (key, head, nums) = match f[..] {
            ["->", addr, ref rest @ ..] => {
                let s = service
                    .clone()
                    .unwrap_or_else(|| panic!("real server before any service:\n{text}"));
                let a: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr:?}: {e}\n{text}"));
                ((s, Some(a)), format!("  -> {addr:<28}"), rest)
            }
            [proto @ ("TCP" | "UDP"), addr, ref rest @ ..] => {
                let s = format!("{proto} {addr}");
                service = Some(s.clone());
                ((s, None), format!("{:<33}", format!("{proto:<4} {addr}")), rest)
            }
            _ => panic!("unexpected line {line:?}:\n{text}"),
        };
        let nums: Vec<u64> = nums
            .iter()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|e| panic!("{v:?} in {line:?}: {e}\n{text}"))
            })
            .collect();
        let five: Five = nums
            .try_into()
            .unwrap_or_else(|n| panic!("not five numbers ({n:?}) in {line:?}\n{text}"));
        let want = five.iter().fold(head, |acc, v| format!("{acc}{v:>9}"));
        assert_eq!(*line, want, "{format} line layout:\n{text}");
        out.insert(key, five);
    }
    out
}
