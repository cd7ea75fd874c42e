//! ipvsadm's output formats as pure functions of a [`Snapshot`]: `-L` in all its column sets and `-S`.
//! Every layout is a printf string of ipvsadm.c reproduced byte for byte (trailing spaces included) and
//! checked against shared/ipvs-golden/ in the tests.

mod list;
mod marks;
mod names;
mod save;

#[cfg(test)]
mod golden;

use std::cmp::Ordering;
use std::net::IpAddr;

use rvs_api::{DestSnap, ServiceSnap, Snapshot};
use rvs_core::Protocol;

pub(crate) use list::{NoSuchService, list};
pub(crate) use marks::{list_marks, mark_rules};
pub(crate) use names::{Names, SystemNames};
pub(crate) use save::save;

/// ipvsadm's `addrport_to_anyname`: `addr:port`, IPv6 in brackets, names unless `numeric`. The result
/// is cut at 59 bytes like the C buffer of 60.
fn addrport(addr: IpAddr, port: u16, proto: Protocol, numeric: bool, names: &dyn Names) -> String {
    let host = if numeric { None } else { names.host(addr) }.unwrap_or_else(|| addr.to_string());
    let port = if numeric { None } else { names.port(port, proto) }.unwrap_or_else(|| port.to_string());
    let s = match addr {
        IpAddr::V4(_) => format!("{host}:{port}"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
    };
    cut(s, 59)
}

/// Truncates to at most `max` bytes on a char boundary (C's `buf[max] = '\0'`).
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Services in ipvsadm's order (`ipvs_cmp_services`): fwmark, family, protocol number, address, port.
///
/// ipvsadm subtracts unsigned addresses as `int`, so addresses 2^31 apart can come out in a
/// surprising order; rvs compares them as unsigned numbers, which agrees everywhere else.
fn sorted_services(snap: &Snapshot, nosort: bool) -> Vec<&ServiceSnap> {
    let mut v: Vec<&ServiceSnap> = snap.services.iter().collect();
    if !nosort {
        v.sort_by(|a, b| {
            let (a, b) = (&a.service.key, &b.service.key);
            // ipvs_cmp_services compares the fwmark first: 0 for services by address.
            a.mark()
                .unwrap_or(0)
                .cmp(&b.mark().unwrap_or(0))
                .then(cmp_addr(a.addr, b.addr))
                .then(a.proto.number().cmp(&b.proto.number()))
                .then(a.addr.cmp(&b.addr))
                .then(a.port.cmp(&b.port))
        });
    }
    v
}

/// Real servers in ipvsadm's order (`ipvs_cmp_dests`): address, then port.
fn sorted_dests(svc: &ServiceSnap, nosort: bool) -> Vec<&DestSnap> {
    let mut v: Vec<&DestSnap> = svc.dests.iter().collect();
    if !nosort {
        v.sort_by(|a, b| {
            let (a, b) = (&a.dest.key, &b.dest.key);
            cmp_addr(a.addr, b.addr)
                .then(a.addr.cmp(&b.addr))
                .then(a.port.cmp(&b.port))
        });
    }
    v
}

/// AF_INET (2) sorts before AF_INET6 (10).
fn cmp_addr(a: IpAddr, b: IpAddr) -> Ordering {
    a.is_ipv6().cmp(&b.is_ipv6())
}
