//! `-S`: ipvsadm.c `print_service_entry` with FMT_RULE, in `-L`'s sort order.

use std::fmt::Write as _;
use std::net::IpAddr;

use rvs_api::Snapshot;
use rvs_core::FwdMethod;

use super::list::prefix_to_dotted;
use super::{Names, addrport, sorted_dests, sorted_services};

/// The whole `-S` output: one `-A` line per service followed by its `-a` lines.
///
/// With `numeric` this is the same text as `rvs_core::save` writes for the daemon's rules file; without
/// it, hosts and ports are names (`-t vip.lab.test:http`), as ipvsadm does.
pub(crate) fn save(snap: &Snapshot, numeric: bool, names: &dyn Names) -> String {
    let mut out = String::new();
    for svc in sorted_services(snap, false) {
        let s = &svc.service;
        let key = s.key;
        let svc_name = match key.mark() {
            Some(_) => key.rule_selector(),
            None => format!(
                "{} {}",
                key.proto.flag(),
                addrport(key.addr, key.port, key.proto, numeric, names)
            ),
        };
        let _ = write!(out, "-A {svc_name} -s {}", s.scheduler);
        if let Some(timeout) = s.persistent {
            let _ = write!(out, " -p {timeout}");
            match key.addr {
                IpAddr::V4(_) if s.netmask != 32 => {
                    let _ = write!(out, " -M {}", prefix_to_dotted(s.netmask));
                }
                IpAddr::V6(_) if s.netmask != 128 => {
                    let _ = write!(out, " -M {}", s.netmask);
                }
                _ => {}
            }
        }
        if s.ops {
            out.push_str(" -o");
        }
        if !s.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", s.sched_flags.join(","));
        }
        out.push('\n');
        for d in sorted_dests(svc, false) {
            let dk = d.dest.key;
            let dname = addrport(dk.addr, dk.port, key.proto, numeric, names);
            let _ = write!(
                out,
                "-a {svc_name} -r {dname} {} -w {}",
                d.dest.fwd.flag(),
                d.dest.weight
            );
            // A documented improvement on ipvsadm, which drops the thresholds from -S.
            if d.dest.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.dest.u_threshold);
            }
            if d.dest.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.dest.l_threshold);
            }
            if d.dest.fwd == FwdMethod::Tunnel {
                // ipvsadm names the tunnel type of every -i server; rvs tunnels are IPIP.
                out.push_str(" --tun-type ipip");
            }
            out.push('\n');
        }
    }
    out
}
