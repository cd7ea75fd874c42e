//! `-L`: ipvsadm.c `list_all`, `list_service`, `print_title`, `print_service_entry`, `list_conn`,
//! `list_timeout`, `list_daemon`.

use std::fmt::Write as _;
use std::net::IpAddr;

use rvs_api::{ConnSnap, RateSnap, ServiceSnap, Snapshot, StatsSnap};
use rvs_core::FwdMethod;
use rvs_core::ipvsadm::{ListFormat, ListOpts, ListWhat};

use super::{Names, addrport, cut, sorted_dests, sorted_services};

/// `-L` with a selector that names no service (ipvsadm prints `No such service`, exit 1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoSuchService;

/// The whole `-L` output for `opts`. `-c` lists `snap.conns` (which rvsd fills only when asked with
/// `Request::ListConns`). rvs has no sync daemons: `--daemon` prints nothing.
pub(crate) fn list(snap: &Snapshot, opts: &ListOpts, names: &dyn Names) -> Result<String, NoSuchService> {
    let mut out = String::new();
    match &opts.what {
        ListWhat::All => {
            let _ = writeln!(
                out,
                "IP Virtual Server version 1.2.1 (size={})",
                snap.conn_tab_size
            );
            title(&mut out, opts.format);
            for svc in sorted_services(snap, opts.nosort) {
                service_entry(&mut out, svc, opts, names);
            }
        }
        ListWhat::Service(key) => {
            let svc = snap
                .services
                .iter()
                .find(|s| s.service.key == *key)
                .ok_or(NoSuchService)?;
            title(&mut out, opts.format);
            service_entry(&mut out, svc, opts, names);
        }
        ListWhat::Connections => {
            out.push_str("IPVS connection entries\n");
            // ipvsadm's "pro expire %-11s %-18s %-18s %s" (+ " %-18s %-16s %s" with --persistent-conn),
            // filled with constant column names.
            out.push_str(if opts.persistent_conn {
                "pro expire state       source             virtual            destination        pe name          \
                 pe_data\n"
            } else {
                "pro expire state       source             virtual            destination\n"
            });
            for c in &snap.conns {
                conn_entry(&mut out, c, opts, names);
            }
        }
        ListWhat::Timeout => {
            let t = snap.timeouts;
            let _ = writeln!(out, "Timeout (tcp tcpfin udp): {} {} {}", t.tcp, t.tcpfin, t.udp);
        }
        ListWhat::Daemon => {}
    }
    Ok(out)
}

/// ipvsadm's `print_title`.
fn title(out: &mut String, format: ListFormat) {
    let prot = "Prot LocalAddress:Port";
    let _ = match format {
        ListFormat::Stats => writeln!(
            out,
            "{prot:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListFormat::Rate => writeln!(
            out,
            "{prot:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        ListFormat::Thresholds => writeln!(
            out,
            "{prot:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListFormat::PersistentConn => writeln!(
            out,
            "{prot:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        ListFormat::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    \
             Weight ActiveConn InActConn"
        ),
        ListFormat::Default => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn \
             InActConn"
        ),
    };
}

/// ipvsadm's `print_service_entry` for the listing formats.
fn service_entry(out: &mut String, svc: &ServiceSnap, opts: &ListOpts, names: &dyn Names) {
    let s = &svc.service;
    let key = s.key;
    let mut svc_name = match key.fwmark_list_name() {
        // ipvsadm: "FWM  %d" or "FWM  %d IPv6".
        Some(name) => format!("FWM  {name}"),
        None => {
            let vname = addrport(key.addr, key.port, key.proto, opts.numeric, names);
            format!("{:<4} {vname}", key.proto.name())
        }
    };
    if key.addr.is_ipv4() {
        svc_name = cut(svc_name, 33);
    }
    match opts.format {
        ListFormat::Stats => {
            let _ = write!(out, "{svc_name:<33}");
            stats_columns(out, &svc.stats, opts.exact);
        }
        ListFormat::Rate => {
            let _ = write!(out, "{svc_name:<33}");
            let r = &svc.rate;
            for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                largenum(out, v, opts.exact);
            }
        }
        _ => {
            let _ = write!(out, "{svc_name} {}", s.scheduler);
            if !s.sched_flags.is_empty() {
                let _ = write!(out, " ({})", s.sched_flags.join(","));
            }
            if let Some(timeout) = s.persistent {
                let _ = write!(out, " persistent {timeout}");
                match key.addr {
                    IpAddr::V4(_) if s.netmask != 32 => {
                        let _ = write!(out, " mask {}", prefix_to_dotted(s.netmask));
                    }
                    IpAddr::V6(_) if s.netmask != 128 => {
                        let _ = write!(out, " mask {}", s.netmask);
                    }
                    _ => {}
                }
            }
            if s.ops {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');

    for d in sorted_dests(svc, opts.nosort) {
        let dk = d.dest.key;
        let mut dname = addrport(dk.addr, dk.port, key.proto, opts.numeric, names);
        if dk.addr.is_ipv4() {
            dname = cut(dname, 28);
        }
        let fwd = d.dest.fwd.name();
        let _ = match opts.format {
            ListFormat::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                stats_columns(out, &d.stats, opts.exact);
                writeln!(out)
            }
            ListFormat::Rate => {
                // ipvsadm prints a real server's cps and pps with "%8u", never scaled.
                let RateSnap {
                    cps,
                    inpps,
                    outpps,
                    inbps,
                    outbps,
                } = d.rate;
                let _ = write!(out, "  -> {dname:<28} {cps:>8} {inpps:>8} {outpps:>8}");
                largenum(out, inbps, opts.exact);
                largenum(out, outbps, opts.exact);
                writeln!(out)
            }
            ListFormat::Thresholds => writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.dest.u_threshold, d.dest.l_threshold, d.active, d.inactive
            ),
            ListFormat::PersistentConn => writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.dest.weight, d.persist, d.active, d.inactive
            ),
            ListFormat::TunInfo => {
                // rvs tunnels are IPIP; ipvsadm prints n/a for the other methods.
                let info = if d.dest.fwd == FwdMethod::Tunnel {
                    "ipip"
                } else {
                    "n/a"
                };
                writeln!(
                    out,
                    "  -> {dname:<28} {fwd:<7} {info:<13} {:<6} {:<10} {:<10}",
                    d.dest.weight, d.active, d.inactive
                )
            }
            ListFormat::Default => {
                writeln!(
                    out,
                    "  -> {dname:<28} {fwd:<7} {:<6} {:<10} {:<10}",
                    d.dest.weight, d.active, d.inactive
                )
            }
        };
    }
}

/// One row of `-c` (ipvsadm's `print_conn`): `"%-3s %-6s %-11s %-18s %-18s %s"`, the expiry as
/// `%02d:%02d` minutes and seconds (minutes may pass 99). The longer `--persistent-conn` row is only
/// printed for entries with persistence-engine data, which rvs never has.
fn conn_entry(out: &mut String, c: &ConnSnap, opts: &ListOpts, names: &dyn Names) {
    let name = |a: std::net::SocketAddr| addrport(a.ip(), a.port(), c.proto, opts.numeric, names);
    let expire = format!("{:02}:{:02}", c.expire / 60, c.expire % 60);
    let _ = writeln!(
        out,
        "{:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
        c.proto.name(),
        c.state,
        name(c.caddr),
        name(c.vaddr),
        name(c.daddr)
    );
}

fn stats_columns(out: &mut String, s: &StatsSnap, exact: bool) {
    for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
        largenum(out, v, exact);
    }
}

/// ipvsadm's `print_largenum`: 9 columns, scaled to K/M/G/T unless `--exact`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>w$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// An IPv4 prefix length as the dotted mask ipvsadm prints (`inet_ntoa`).
pub(super) fn prefix_to_dotted(prefix: u8) -> std::net::Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    std::net::Ipv4Addr::from(mask)
}

#[cfg(test)]
mod tests {
    use rvs_api::DestSnap;
    use rvs_core::ipvsadm::{Invocation, parse_args, parse_rules};
    use rvs_core::{Command, Protocol};

    use super::*;

    /// Long names, to see ipvsadm's cuts (service column 33 bytes, real server 28, IPv4 only).
    struct LongNames;
    impl Names for LongNames {
        fn host(&self, addr: IpAddr) -> Option<String> {
            Some(format!("a-very-long-host-name-for-{addr}.example.test"))
        }
        fn port(&self, _: u16, _: Protocol) -> Option<String> {
            Some("http".to_owned())
        }
    }

    fn snap(rules: &str) -> Snapshot {
        let mut snap = Snapshot {
            conn_tab_size: 4096,
            timeouts: Default::default(),
            conns: vec![],
            services: vec![],
        };
        for c in parse_rules(rules).unwrap() {
            match c {
                Command::AddService(service) => snap.services.push(ServiceSnap {
                    service,
                    stats: StatsSnap::default(),
                    rate: RateSnap::default(),
                    dests: vec![],
                }),
                Command::AddDest(k, dest) => snap
                    .services
                    .iter_mut()
                    .find(|s| s.service.key == k)
                    .unwrap()
                    .dests
                    .insert(
                        0,
                        DestSnap {
                            dest,
                            active: 0,
                            inactive: 0,
                            persist: 0,
                            stats: StatsSnap::default(),
                            rate: RateSnap::default(),
                        },
                    ),
                other => panic!("{other:?}"),
            }
        }
        snap
    }

    fn run(snap: &Snapshot, line: &str, names: &dyn Names) -> String {
        let Invocation::List(opts) = parse_args(&line.split(' ').collect::<Vec<_>>()).unwrap() else {
            panic!()
        };
        list(snap, &opts, names).unwrap()
    }

    #[test]
    fn names_are_cut_like_ipvsadm() {
        let s = snap("-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11 -m\n");
        let got = run(&s, "-L", &LongNames);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[3], "TCP  a-very-long-host-name-for-19 rr");
        assert_eq!(
            lines[4],
            "  -> a-very-long-host-name-for-19 Masq    1      0          0         "
        );
    }

    #[test]
    fn ipv6_services_are_bracketed_and_not_cut() {
        let s = snap(
            "-A -t [2001:db8::1]:80 -s rr -p 60 -M 64\n-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 2\n",
        );
        let got = run(&s, "-Ln", &LongNames);
        let want = "TCP  [2001:db8::1]:80 rr persistent 60 mask 64\n  -> [2001:db8::10]:80            Route   2      \
                    0          0         \n";
        assert!(got.ends_with(want), "{got}");
        let got = run(&s, "-L", &LongNames);
        assert!(got.contains(
            "TCP  [a-very-long-host-name-for-2001:db8::1.example.test]:http rr persistent 60 mask 64\n"
        ));
    }

    #[test]
    fn fwmark_services_list_as_ipvsadm_lists_them_after_the_others() {
        let s = snap(
            "-A -f 2 -6 -s rr -p 60 -M 64\n-a -f 2 -6 -r [2001:db8::10]:0 -i\n\
             -A -f 1 -s wrr\n-a -f 1 -r 198.18.1.11 -g\n-A -t 198.18.0.100:80 -s rr\n",
        );
        let got = run(&s, "-L", &LongNames);
        let services: Vec<&str> = got.lines().skip(3).filter(|l| !l.starts_with("  ->")).collect();
        // ipvs_cmp_services: fwmark first (0 for services by address), then the family.
        assert_eq!(
            services,
            [
                "TCP  a-very-long-host-name-for-19 rr",
                "FWM  1 wrr",
                "FWM  2 IPv6 rr persistent 60 mask 64"
            ]
        );
        assert!(
            got.contains("\n  -> a-very-long-host-name-for-19 Route   1"),
            "{got}"
        );
    }

    #[test]
    fn connection_headers() {
        let s = snap("");
        assert_eq!(
            run(&s, "-Lnc --persistent-conn", &LongNames),
            "IPVS connection entries\npro expire state       source             virtual            destination        \
             pe name          pe_data\n"
        );
        assert_eq!(run(&s, "-L --daemon", &LongNames), "");
    }

    fn num(i: u64, exact: bool) -> String {
        let mut s = String::new();
        largenum(&mut s, i, exact);
        s
    }

    #[test]
    fn largenum_scales_like_ipvsadm() {
        assert_eq!(num(0, false), "        0");
        assert_eq!(num(99_999_999, false), " 99999999");
        assert_eq!(num(100_000_000, false), "  100000K");
        assert_eq!(num(5_000_000_000, false), "    5000M");
        assert_eq!(num(100_000_000_000, false), "     100G");
        assert_eq!(num(100_000_000_000_000, false), "     100T");
        assert_eq!(num(100_000_000, true), " 100000000");
        assert_eq!(num(12, true), "       12");
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_to_dotted(24).to_string(), "255.255.255.0");
        assert_eq!(prefix_to_dotted(32).to_string(), "255.255.255.255");
        assert_eq!(prefix_to_dotted(0).to_string(), "0.0.0.0");
    }
}
