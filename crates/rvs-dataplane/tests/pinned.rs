//! The production data plane on a real interface: load, pin, attach in native mode, survive the
//! process's handle, adopt, upgrade in place, unload. Each test makes its own namespace and pin
//! directory and removes them. Needs root and bpffs at /sys/fs/bpf.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rvs_abi::{Be16, ConnKey, ConnVal, Family, TcpState, addr_v4, map};
use rvs_dataplane::{Dataplane, DataplaneConfig, DataplaneError, unload};

/// A pin directory unique to this test run, unloaded on drop if a test left it behind.
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> Self {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/rvsdp-{tag}-{}",
            std::process::id()
        )))
    }
    fn cfg(&self, conn_max: u32) -> DataplaneConfig {
        DataplaneConfig {
            pin_dir: self.0.clone(),
            conn_max,
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = unload(&self.0) {
            eprintln!("cleanup of {}: {e}", self.0.display());
        }
    }
}

/// A namespace with a veth pair `va0` <-> `vb0`, both up.
fn veth_ns(tag: &str) -> NetNs {
    let ns = NetNs::new(tag);
    ip(&[
        "-n", &ns.name, "link", "add", "va0", "type", "veth", "peer", "name", "vb0",
    ]);
    ip(&["-n", &ns.name, "link", "set", "va0", "up"]);
    ip(&["-n", &ns.name, "link", "set", "vb0", "up"]);
    ns
}

/// The id of the XDP program `ip` reports on `dev` in native mode, or None.
fn native_xdp_prog(ns: &NetNs, dev: &str) -> Option<u32> {
    let out = ip(&["-n", &ns.name, "-d", "link", "show", "dev", dev]);
    assert!(!out.contains("xdpgeneric"), "generic-mode XDP on {dev}: {out}");
    let rest = out.split("prog/xdp id ").nth(1)?;
    Some(rest.split_whitespace().next()?.parse().expect("prog id"))
}

fn map_id(dir: &Path, name: &str) -> u32 {
    aya::maps::MapInfo::from_pin(dir.join(name))
        .expect("pinned map")
        .id()
}

fn conn_key() -> ConnKey {
    ConnKey {
        saddr: addr_v4(CLIENT),
        daddr: addr_v4(VIP),
        sport: Be16::new(40000),
        dport: Be16::new(VPORT),
        proto: TCP,
        family: Family::Inet as u8,
        _pad: [0; 2],
    }
}

fn conn_val() -> ConnVal {
    ConnVal {
        dest_id: 0,
        svc_id: 0,
        created_ns: 1,
        last_ns: 2,
        state: TcpState::Established as u8,
        flags: 1,
        ..ConnVal::default()
    }
}

#[test]
fn dropping_the_handle_keeps_forwarding_and_open_adopts_everything() {
    require_root();
    let ns = veth_ns("adopt");
    let pins = PinDir::new("adopt");
    let cfg = pins.cfg(4096);

    let c = cfg.clone();
    let prog_id = ns.run(move || {
        let mut dp = Dataplane::open(&c).expect("first open loads");
        assert!(!dp.adopted());
        dp.attach("va0").expect("attach");
        dp.attach("va0").expect("attaching twice is a no-op");
        // SAFETY: a NUL-terminated name; if_nametoindex reads this thread's network namespace.
        let va0 = unsafe { libc::if_nametoindex(c"va0".as_ptr()) };
        assert_eq!(
            dp.tx_ports().unwrap(),
            [va0],
            "an attached interface is a NAT redirect target"
        );
        dp.apply(&one_service(TCP, 1, &[0], 2)).expect("apply");
        dp.set_conn(&conn_key(), &conn_val()).expect("write a connection");
        dp.prog_id()
    });
    assert_eq!(
        native_xdp_prog(&ns, "va0"),
        Some(prog_id),
        "still attached after the handle is gone"
    );
    assert!(pins.0.join("link_va0").exists());
    let ids: Vec<u32> = [map::SVC, map::CONN, map::DEST_STATS]
        .iter()
        .map(|m| map_id(&pins.0, m))
        .collect();

    let c = cfg.clone();
    let dp_prog = ns.run(move || {
        let mut dp = Dataplane::open(&c).expect("second open adopts");
        assert!(dp.adopted());
        assert_eq!(dp.conn_max(), 4096);
        assert_eq!(
            dp.conns().unwrap(),
            vec![(conn_key(), conn_val())],
            "the connection survived"
        );
        assert_eq!(dp.services().unwrap().len(), 1);
        assert_eq!(dp.dests().unwrap().len(), 1);
        assert_eq!(dp.tx_ports().unwrap().len(), 1, "the devmap is pinned too");
        dp.attach("va0").expect("attach after adopt is a no-op");
        dp.prog_id()
    });
    assert_eq!(dp_prog, prog_id, "adopting does not reload");
    let ids2: Vec<u32> = [map::SVC, map::CONN, map::DEST_STATS]
        .iter()
        .map(|m| map_id(&pins.0, m))
        .collect();
    assert_eq!(ids, ids2, "the same maps");
    assert_eq!(native_xdp_prog(&ns, "va0"), Some(prog_id));

    unload(&pins.0).expect("unload");
    assert!(!pins.0.exists(), "pin directory removed");
    assert_eq!(native_xdp_prog(&ns, "va0"), None, "nothing attached after unload");
    unload(&pins.0).expect("unloading again is a no-op");
}

#[test]
fn a_newly_loaded_program_replaces_the_old_one_inside_the_pinned_link() {
    require_root();
    let ns = veth_ns("upgrade");
    let pins = PinDir::new("upgrade");
    let cfg = pins.cfg(4096);

    let c = cfg.clone();
    let old = ns.run(move || {
        let mut dp = Dataplane::open(&c).unwrap();
        dp.attach("va0").unwrap();
        dp.set_conn(&conn_key(), &conn_val()).unwrap();
        dp.prog_id()
    });
    let conn_id = map_id(&pins.0, map::CONN);
    // Without its program pin the set is incomplete: the next open loads a new program.
    std::fs::remove_file(pins.0.join(rvs_bpf::XDP_PROG)).unwrap();

    let c = cfg.clone();
    let new = ns.run(move || {
        let mut dp = Dataplane::open(&c).unwrap();
        assert!(!dp.adopted());
        assert_eq!(dp.conns().unwrap().len(), 1, "the pinned maps were reused");
        dp.attach("va0").expect("swap into the link");
        dp.prog_id()
    });
    assert_ne!(old, new);
    assert_eq!(map_id(&pins.0, map::CONN), conn_id);
    assert_eq!(native_xdp_prog(&ns, "va0"), Some(new));
    unload(&pins.0).unwrap();
    assert_eq!(native_xdp_prog(&ns, "va0"), None);
}

#[test]
fn a_pinned_map_of_another_size_is_refused() {
    require_root();
    let pins = PinDir::new("mismatch");
    drop(Dataplane::open(&pins.cfg(4096)).unwrap());
    match Dataplane::open(&pins.cfg(8192)) {
        Err(DataplaneError::MapMismatch {
            path,
            expected,
            found,
        }) => {
            assert_eq!(path, pins.0.join(map::CONN));
            assert_eq!((expected.max_entries, found.max_entries), (8192, 4096));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an rvs_conn of another size was adopted"),
    }
}

#[test]
fn attaching_to_a_missing_interface_names_it() {
    require_root();
    let ns = veth_ns("noif");
    let pins = PinDir::new("noif");
    let cfg = pins.cfg(1024);
    let err = ns.run(move || {
        Dataplane::open(&cfg)
            .unwrap()
            .attach("nosuch0")
            .unwrap_err()
            .to_string()
    });
    assert!(err.contains("nosuch0"), "{err}");
}

#[test]
fn a_pin_directory_off_bpffs_is_refused_with_the_mount_command() {
    require_root();
    let dir = std::env::temp_dir().join(format!("rvsdp-notbpffs-{}", std::process::id()));
    let err = Dataplane::open(&DataplaneConfig {
        pin_dir: dir.clone(),
        conn_max: 1024,
    })
    .err()
    .expect("refused");
    assert!(matches!(err, DataplaneError::NotBpffs { .. }), "{err}");
    assert!(err.to_string().contains("mount -t bpf bpf /sys/fs/bpf"), "{err}");
    assert!(!dir.exists(), "nothing created");
}

#[test]
fn handles_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Dataplane>();
    send::<rvs_dataplane::TestProgram>();
}

/// A raw AF_PACKET socket bound to one interface, with a receive timeout.
struct RawSocket(std::os::fd::OwnedFd);

impl RawSocket {
    fn bind(ifname: &str) -> Self {
        use std::os::fd::{AsRawFd, FromRawFd};
        let ifindex = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: plain syscalls on values we own; every return value is checked.
        unsafe {
            let ifindex = libc::if_nametoindex(ifindex.as_ptr()) as i32;
            assert_ne!(ifindex, 0, "{ifname}");
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = ifindex;
            let r = libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            let r = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                size_of::<libc::timeval>() as u32,
            );
            assert_eq!(r, 0, "SO_RCVTIMEO");
            RawSocket(fd)
        }
    }

    fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: `frame` is valid for its length; the socket is bound, so no address is needed.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame, or None after the timeout.
    fn recv(&self) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 2048];
        // SAFETY: `buf` is valid and writable for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }
}

#[test]
fn a_syn_on_the_wire_comes_back_out_with_the_real_servers_mac() {
    require_root();
    let ns = veth_ns("live");
    let pins = PinDir::new("live");
    let cfg = pins.cfg(1024);
    let got = ns.run(move || {
        use aya::programs::{Xdp, XdpMode};
        let mut dp = Dataplane::open(&cfg).unwrap();
        dp.attach("va0").unwrap();
        let ifindex = std::ffi::CString::new("va0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        let va0 = unsafe { libc::if_nametoindex(ifindex.as_ptr()) };
        dp.apply(&one_service(TCP, 1, &[0], va0)).unwrap();
        // XDP_TX into a veth reaches the peer only if the peer runs an XDP program.
        let mut pass = aya::Ebpf::load(rvs_bpf::RVS_PASS_OBJ).unwrap();
        let p: &mut Xdp = pass.program_mut(rvs_bpf::PASS_PROG).unwrap().try_into().unwrap();
        p.load().unwrap();
        p.attach("vb0", XdpMode::Driver).unwrap();

        let sock = RawSocket::bind("vb0");
        let syn = tcp_frame(40100, VIP, VPORT, SYN, b"");
        sock.send(&syn);
        // Our own transmission shows up first; wait for the one the director sent back.
        let back = (0..50)
            .filter_map(|_| sock.recv())
            .find(|f| f.len() >= 12 && f[0..6] == rs_mac(0));
        let conns = dp.conns().unwrap().len();
        let stats = dp.svc_stats(0).unwrap();
        drop(pass);
        (back, syn, conns, stats.inpkts)
    });
    let (back, syn, conns, inpkts) = got;
    let back = back.expect("the director sent the SYN back out of va0 to the real server's MAC");
    assert_eq!(back[6..12], DIRECTOR_MAC);
    assert_eq!(back[12..], syn[12..], "the IP packet is unchanged");
    assert_eq!((conns, inpkts), (1, 1));
}
