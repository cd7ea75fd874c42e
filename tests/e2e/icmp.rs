//! ICMP tied to connections (bpf/lib/icmp.h) through the real data plane: a NAT real server's "port
//! unreachable" reaches the client translated back to the VIP (the client's connected UDP socket gets
//! ECONNREFUSED); a "fragmentation needed" sent to the VIP about a DR connection reaches the real server,
//! whose kernel learns the path MTU; echo requests to the VIP are answered by the director's XDP program
//! while no interface of the director holds the VIP.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use rvs_testkit::lab::{self, CLIENT, DIRECTOR, DrLab, IFNAME, Proto};
use rvs_testkit::natlab::{self, NatLab};
use rvs_testkit::wait;

use crate::topo::{OrLog, attach_pass, binaries, lab as dr_lab, require_root};

/// A port on which no NAT real server listens.
const CLOSED_PORT: u16 = 9999;

/// Sends ICMP messages from a raw socket: `echo DST` pings DST (up to 5 requests, 1 s each) and exits
/// 0 at the first echo reply from DST; `too-big VIP CLIENT VPORT CPORT MTU` sends VIP the router's
/// "fragmentation needed" (IPv4) or "packet too big" (IPv6) about a UDP datagram VIP:VPORT ->
/// CLIENT:CPORT; `tcp-too-big VIP VPORT MTU` opens a TCP connection to VIP:VPORT and sends the same
/// error about the real server's next segment on it; `listen ADDR PORT` accepts TCP connections and
/// holds them (60 s at most). The kernel computes ICMPv6 checksums of raw sockets itself (RFC 3542
/// 3.1).
const ICMP_PY: &str = r#"
import socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def sock(v6):
    if v6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

def echo(dst):
    v6 = ':' in dst
    s = sock(v6)
    s.settimeout(1.0)
    ident = 0x5256
    for seq in range(1, 6):
        msg = struct.pack('!BBHHH', 128 if v6 else 8, 0, 0, ident, seq) + b'rvs echo'
        if not v6:
            msg = msg[:2] + struct.pack('!H', csum(msg)) + msg[4:]
        s.sendto(msg, (dst, 0))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                break
            ttl = None
            if not v6:
                ttl = data[8]
                data = data[(data[0] & 15) * 4:]
            want = 129 if v6 else 0
            if addr[0] == dst and data[0] == want and struct.unpack('!HH', data[4:8]) == (ident, seq):
                print('reply from %s seq %d ttl %s' % (dst, seq, ttl))
                return 0
    print('no echo reply from %s' % dst)
    return 1

def too_big(vip, client, vport, cport, mtu):
    v6 = ':' in vip
    if v6:
        ip = struct.pack('!IHBB', 6 << 28, 1400, 17, 64)
        ip += socket.inet_pton(socket.AF_INET6, vip) + socket.inet_pton(socket.AF_INET6, client)
        head = struct.pack('!BBHI', 2, 0, 0, mtu)
    else:
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 1400, 0, 0x4000, 64, 17, 0,
                         socket.inet_aton(vip), socket.inet_aton(client))
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        head = struct.pack('!BBHHH', 3, 4, 0, 0, mtu)
    udp = struct.pack('!HHHH', vport, cport, 1400 - len(ip), 0)
    msg = head + ip + udp
    if not v6:
        msg = msg[:2] + struct.pack('!H', csum(msg)) + msg[4:]
    sock(v6).sendto(msg, (vip, 0))
    return 0

def tcp_too_big(vip, vport, mtu):
    # A connection to VIP:VPORT, left idle; then the error about the real server's next segment, whose
    # sequence number (the client's rcv_nxt, read in repair mode) the real server's TCP checks.
    v6 = ':' in vip
    c = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect((vip, vport))
    client, cport = c.getsockname()[:2]
    TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_RECV_QUEUE = 19, 20, 21, 1
    c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
    seq = struct.unpack('I', c.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    tcp = struct.pack('!HHI', vport, cport, seq)
    if v6:
        ip = struct.pack('!IHBB', 6 << 28, 1400, 6, 64)
        ip += socket.inet_pton(socket.AF_INET6, vip) + socket.inet_pton(socket.AF_INET6, client)
        msg = struct.pack('!BBHI', 2, 0, 0, mtu) + ip + tcp
    else:
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 1400, 0, 0x4000, 64, 6, 0,
                         socket.inet_aton(vip), socket.inet_aton(client))
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        msg = struct.pack('!BBHHH', 3, 4, 0, 0, mtu) + ip + tcp
        msg = msg[:2] + struct.pack('!H', csum(msg)) + msg[4:]
    sock(v6).sendto(msg, (vip, 0))
    print('sent: %s:%d -> %s:%d seq %d' % (vip, vport, client, cport, seq))
    time.sleep(1)
    return 0

def listen(addr, port):
    # Holds every connection open; ends by itself after 60 s whatever happens to its parent.
    l = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port))
    l.listen(16)
    l.settimeout(1)
    print('ready', flush=True)
    held, end = [], time.monotonic() + 60
    while time.monotonic() < end:
        try:
            held.append(l.accept()[0])
        except socket.timeout:
            pass
    return 0

if sys.argv[1] == 'echo':
    sys.exit(echo(sys.argv[2]))
if sys.argv[1] == 'tcp-too-big':
    sys.exit(tcp_too_big(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
if sys.argv[1] == 'listen':
    sys.exit(listen(sys.argv[2], int(sys.argv[3])))
sys.exit(too_big(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])))
"#;

/// Runs [`ICMP_PY`] with `args` in namespace `ns` of `topo`; returns (success, stdout and stderr).
fn icmp_py(topo: &rvs_testkit::netns::Topology, ns: &str, args: &[&str]) -> (bool, String) {
    let out = topo
        .output_in(ns, Command::new("python3").arg("-c").arg(ICMP_PY).args(args))
        .unwrap_or_else(|e| panic!("python3 in {ns}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// --- (a) NAT: the real server's "port unreachable" reaches the client as coming from the VIP.

/// A datagram from the client's connected socket to `to`, whose real servers have nothing listening:
/// the socket must report ECONNREFUSED, which the kernel does only for an ICMP error quoting the very
/// datagram it sent (client -> VIP:53). Without rvs the error would quote client -> RIP:9999 and match
/// no socket. Up to 3 datagrams (the real server's ICMP rate limit lets the first error through).
fn refused(lab: &NatLab, to: SocketAddr) -> Result<(), String> {
    let local = if to.is_ipv6() {
        SocketAddr::new(IpAddr::V6(natlab::CLIENT_IP6), 0)
    } else {
        SocketAddr::new(IpAddr::V4(natlab::CLIENT_IP4), 0)
    };
    lab.topo()
        .run_in(CLIENT, || -> Result<(), String> {
            let s = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
            s.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 512];
            for _ in 0..3 {
                match s.send(b"anyone?\n") {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                    Err(e) => return Err(format!("send: {e}")),
                    Ok(_) => {}
                }
                match s.recv(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(format!("recv: {e} (expected ECONNREFUSED)")),
                    Ok(n) => {
                        return Err(format!(
                            "an answer ({:?}) from a port nobody listens on",
                            String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
                        ));
                    }
                }
            }
            Err("no ECONNREFUSED after 3 datagrams: the port unreachable did not reach the client".into())
        })
        .map_err(|e| e.to_string())?
}

fn nat_port_unreachable(v6: bool) {
    require_root();
    let lab = NatLab::start(binaries(), 1, &attach_pass)
        .unwrap_or_else(|e| panic!("cannot build the NAT lab: {e}"));
    let svc = lab
        .add_nat_service(Proto::Udp, v6, 53, CLOSED_PORT, "rr")
        .unwrap_or_else(|e| panic!("configure the NAT service: {e}\n{}", lab.rvsd_log()));
    let to: SocketAddr = svc.parse().expect("rvsadm's service is an address");
    if let Err(e) = refused(&lab, to) {
        panic!("{e}\n--- rvsd log\n{}", lab.rvsd_log());
    }
    // The error crossed the director as a reply of the connection: counted in OutPkts.
    let stats = lab
        .rvsadm_ok(&["-Ln", "--stats", "--exact", "-u", &svc])
        .unwrap_or_else(|e| panic!("rvsadm --stats: {e}"));
    let row = stats
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(svc.as_str()))
        .unwrap_or_else(|| panic!("{svc} not listed:\n{stats}"));
    let outpkts: u64 = row
        .split_whitespace()
        .nth(4)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no OutPkts in {row:?}"));
    assert!(outpkts >= 1, "the error is not counted as a reply:\n{stats}");
}

#[test]
fn nat_ipv4_udp_port_unreachable_reaches_the_clients_connected_socket() {
    nat_port_unreachable(false);
}

#[test]
fn nat66_udp_port_unreachable_reaches_the_clients_connected_socket() {
    nat_port_unreachable(true);
}

// --- (b) DR: "fragmentation needed" about a connection reaches its real server.

/// The real server's route toward the client, as `ip route get` shows it (with any learned PMTU).
fn route_to_client(lab: &DrLab, v6: bool) -> String {
    let client = if v6 {
        lab::ip6(2).to_string()
    } else {
        lab::CLIENT_IP.to_string()
    };
    lab.topo()
        .ip(&lab::real_name(1), &["route", "get", &client])
        .unwrap_or_else(|e| panic!("ip route get {client} in rs1: {e}"))
}

#[test]
fn dr_frag_needed_about_a_udp_connection_teaches_the_real_server_the_path_mtu() {
    let mut lab = dr_lab(1);
    lab.start_udp_servers().or_log(&lab, "UDP servers");
    lab.add_service_on(Proto::Udp, lab::UDP_PORT, "rr", &[1])
        .or_log(&lab, "configure the UDP service");
    // The connection: one datagram answered by rs1.
    let (from, name) = lab.udp_ask().or_log(&lab, "a datagram through the VIP");
    assert_eq!(name, lab::real_name(1));
    let before = route_to_client(&lab, false);
    assert!(
        !before.contains("mtu 1300"),
        "rs1 knows the MTU already: {before}"
    );
    // A router on the way to the client (played by the client) refuses the real server's answer.
    let args = [
        "too-big",
        &lab::VIP.to_string(),
        &lab::CLIENT_IP.to_string(),
        &lab::UDP_PORT.to_string(),
        &from.port().to_string(),
        "1300",
    ];
    let (ok, out) = icmp_py(lab.topo(), CLIENT, &args);
    assert!(ok, "sending the ICMP error: {out}");
    let route = wait::until(
        "rs1 to learn the path MTU 1300 toward the client",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let r = route_to_client(&lab, false);
            if r.contains("mtu 1300") {
                Ok(r)
            } else {
                Err(format!("ip route get: {r}"))
            }
        },
    )
    .or_log(&lab, "the real server's route");
    assert!(route.contains("mtu 1300"), "{route}");
}

/// [`ICMP_PY`] `listen` in a real server's namespace, killed on drop.
struct Listener(std::process::Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_frag_needed(v6: bool) {
    let lab = dr_lab(1);
    let rs1 = lab::real_name(1);
    let (vip, mtu) = if v6 {
        lab.enable_ipv6().or_log(&lab, "IPv6 in the lab");
        let state = lab.realserver_state_dir(1).display().to_string();
        let vip6 = lab::VIP6.to_string();
        let out = lab
            .realserver(1, &["setup", "--vip", &vip6, "--state-dir", &state])
            .or_log(&lab, "rvs-realserver setup");
        assert!(
            out.status.success(),
            "rvs-realserver setup: {}",
            lab::describe(&out)
        );
        (vip6, "1280")
    } else {
        (lab::VIP.to_string(), "1300")
    };
    // IPv4: the lab's HTTP server holds the idle connection; IPv6: a listener on the VIP.
    let _listener = v6.then(|| {
        let log = lab.run_dir().join("rs1-listen6.log");
        let file = std::fs::File::create(&log).expect("listener log");
        let child = lab
            .topo()
            .spawn_in(
                &rs1,
                Command::new("python3")
                    .args(["-c", ICMP_PY, "listen", &vip, "80"])
                    .stdin(std::process::Stdio::null())
                    .stdout(file.try_clone().expect("dup log"))
                    .stderr(file),
            )
            .or_log(&lab, "start the listener");
        let guard = Listener(child);
        wait::until(
            "the listener",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
                if text.contains("ready") {
                    Ok(())
                } else {
                    Err(format!("log so far: {text:?}"))
                }
            },
        )
        .or_log(&lab, "listener up");
        guard
    });
    let svc = SocketAddr::new(vip.parse().expect("VIP"), 80).to_string();
    let rs = SocketAddr::new(
        if v6 {
            IpAddr::V6(lab::real_ip6(1))
        } else {
            IpAddr::V4(lab::real_ip(1))
        },
        80,
    )
    .to_string();
    lab.rvsadm_ok(&["-A", "-t", &svc, "-s", "rr"])
        .or_log(&lab, "rvsadm -A");
    lab.rvsadm_ok(&["-a", "-t", &svc, "-r", &rs, "-g"])
        .or_log(&lab, "rvsadm -a");
    let want = format!("mtu {mtu}");
    let before = route_to_client(&lab, v6);
    assert!(!before.contains(&want), "rs1 knows the MTU already: {before}");
    let (ok, out) = icmp_py(lab.topo(), CLIENT, &["tcp-too-big", &vip, "80", mtu]);
    assert!(
        ok,
        "connection and ICMP error: {out}\n--- rvsd log\n{}",
        lab.rvsd_log()
    );
    wait::until(
        &format!("rs1 to learn the path MTU {mtu} toward the client ({out})"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let r = route_to_client(&lab, v6);
            if r.contains(&want) {
                Ok(r)
            } else {
                Err(format!("ip route get: {r}"))
            }
        },
    )
    .or_log(&lab, "the real server's route");
}

#[test]
fn dr_frag_needed_about_a_tcp_connection_reaches_its_real_server() {
    tcp_frag_needed(false);
}

#[test]
fn dr6_packet_too_big_about_a_tcp_connection_reaches_its_real_server() {
    tcp_frag_needed(true);
}

// --- (c) Echo requests to the VIP, answered in XDP.

/// The MAC of the director's interface.
fn director_mac(lab: &DrLab) -> String {
    let out = lab
        .topo()
        .ip(DIRECTOR, &["-br", "link", "show", IFNAME])
        .unwrap_or_else(|e| panic!("ip link in the director: {e}"));
    out.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC in {out:?}"))
        .to_owned()
}

/// Takes `vip` off the director's interface, tells its kernel to ignore echo requests anyway, and lets
/// the client reach `vip` at the director's MAC (nothing answers ARP or NDP for it any more).
fn vip_only_in_xdp(lab: &DrLab, vip: &str, prefix: u8) {
    let t = lab.topo();
    t.ip(
        DIRECTOR,
        &["addr", "del", &format!("{vip}/{prefix}"), "dev", IFNAME],
    )
    .unwrap_or_else(|e| panic!("remove {vip} from the director: {e}"));
    let key = if vip.contains(':') {
        "net/ipv6/icmp/echo_ignore_all"
    } else {
        "net/ipv4/icmp_echo_ignore_all"
    };
    t.sysctl(DIRECTOR, key, "1")
        .unwrap_or_else(|e| panic!("sysctl {key}: {e}"));
    let mac = director_mac(lab);
    t.ip(
        CLIENT,
        &[
            "neigh",
            "replace",
            vip,
            "lladdr",
            &mac,
            "dev",
            IFNAME,
            "nud",
            "permanent",
        ],
    )
    .unwrap_or_else(|e| panic!("static neighbour {vip} on the client: {e}"));
}

#[test]
fn ping_of_the_vip_is_answered_by_xdp_while_no_interface_holds_it() {
    let lab = dr_lab(1);
    lab.add_service("rr", &[1]).or_log(&lab, "configure the service");
    lab.enable_ipv6().or_log(&lab, "IPv6 in the lab");
    let vip6 = lab::VIP6.to_string();
    lab.rvsadm_ok(&["-A", "-t", &format!("[{vip6}]:80"), "-s", "rr"])
        .or_log(&lab, "configure the IPv6 service");
    vip_only_in_xdp(&lab, &lab::VIP.to_string(), 32);
    vip_only_in_xdp(&lab, &vip6, 128);
    for vip in [lab::VIP.to_string(), vip6.clone()] {
        let (ok, out) = icmp_py(lab.topo(), CLIENT, &["echo", &vip]);
        assert!(ok, "ping {vip}: {out}\n--- rvsd log\n{}", lab.rvsd_log());
    }
    // An address of no service is not answered (the director's kernel ignores echo requests, and rvs
    // answers only virtual addresses).
    let other = "198.18.0.200";
    lab.topo()
        .ip(
            CLIENT,
            &[
                "neigh",
                "replace",
                other,
                "lladdr",
                &director_mac(&lab),
                "dev",
                IFNAME,
                "nud",
                "permanent",
            ],
        )
        .or_log(&lab, "static neighbour");
    let (ok, out) = icmp_py(lab.topo(), CLIENT, &["echo", other]);
    assert!(!ok, "{other} answered: {out}");
}
