//! Helpers shared by the data plane's integration tests: root check, frames built with etherparse
//! (never with the code under test), a one-service configuration, and a network-namespace guard.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use etherparse::PacketBuilder;
use rvs_abi::{
    Be16, DEST_F_NEIGH, DEST_F_VALID, DestVal, Family, Fwd, MapOp, Sched, SvcKey, SvcState, SvcVal, addr_v4,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd0];
pub const CLIENT: [u8; 4] = [198, 18, 0, 1];
pub const VIP: [u8; 4] = [198, 18, 0, 100];
pub const VPORT: u16 = 80;
/// MAC of real server `i`.
pub fn rs_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x0b, i]
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Panics unless running as root: these tests load BPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and needs root (run the suite with sudo)"
    );
}

/// Pins the calling thread to CPU 0, so per-CPU counters of a test run land in slot 0.
pub fn pin_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin to CPU 0"
        );
    }
}

/// Which TCP flags to set.
#[derive(Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

/// An Ethernet/IPv4/TCP frame from CLIENT:sport to dst:dport with `payload`.
pub fn tcp_frame(sport: u16, dst: [u8; 4], dport: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, dst, 64)
        .tcp(sport, dport, 1000, 64240);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(1);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build TCP frame");
    out
}

/// An Ethernet/IPv4/UDP frame from CLIENT:sport to dst:dport.
pub fn udp_frame(sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, dst, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build UDP frame");
    out
}

/// The key of the VIP:VPORT service for `proto`.
pub fn svc_key(proto: u8) -> SvcKey {
    SvcKey {
        addr: addr_v4(VIP),
        port: Be16::new(VPORT),
        proto,
        family: Family::Inet as u8,
    }
}

/// A DR real server of service `svc_id` reached through `ifindex`.
pub fn dr_dest(i: u8, svc_id: u32, ifindex: u32) -> DestVal {
    DestVal {
        addr: addr_v4([198, 18, 1, i]),
        port: Be16::new(VPORT),
        family: Family::Inet as u8,
        fwd: Fwd::Dr as u8,
        dmac: rs_mac(i),
        smac: DIRECTOR_MAC,
        ifindex,
        weight: 1,
        svc_id,
        flags: DEST_F_VALID | DEST_F_NEIGH,
        ..DestVal::default()
    }
}

/// Ops for service 0 (VIP:VPORT/`proto`, rr) with real servers 0..n (dest ids 0..n) whose table
/// is `table` (dest ids), all DR through `ifindex`.
pub fn one_service(proto: u8, n: u8, table: &[u32], ifindex: u32) -> Vec<MapOp> {
    let mut ops = Vec::new();
    for i in 0..n {
        ops.push(MapOp::DestSet {
            id: u32::from(i),
            val: dr_dest(i, 0, ifindex),
        });
    }
    for (slot, &d) in table.iter().enumerate() {
        ops.push(MapOp::SchedSet {
            slot: slot as u32,
            dest_id: d,
        });
    }
    ops.push(MapOp::SvcStateSet {
        id: 0,
        val: SvcState { pos: 0 },
    });
    ops.push(MapOp::SvcSet {
        key: svc_key(proto),
        val: SvcVal {
            id: 0,
            flags: 0,
            sched: Sched::Rr as u32,
            sched_base: 0,
            sched_len: table.len() as u32,
            ..SvcVal::default()
        },
    });
    ops
}

/// Runs `ip args...`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace named uniquely for this process, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        let name = format!("rvsdp-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        NetNs { name }
    }

    /// Runs `f` on a thread that entered this namespace (setns affects the calling thread only).
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            // SAFETY: a valid namespace fd; CLONE_NEWNET only changes this thread's network namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
