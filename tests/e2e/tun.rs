//! VS/TUN through the real data plane: the director puts the client's packet inside an outer IP header
//! toward the real server, which strips it with rvs_decap (`rvs-realserver setup --mode tun`) and
//! answers the client directly. The lab is the DR lab (one segment, so replies bypass the director
//! exactly as in DR) with real servers switched to tun mode; the director still reaches them by their
//! MACs, but only through the tunnel header.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rvs_testkit::lab::{
    self, CLIENT, DIRECTOR, DrLab, IFNAME, VIP6, describe, ip6, real_ip, real_ip6, real_name, vip_addr,
};
use rvs_testkit::netns::IfStats;
use rvs_testkit::{http, udp, wait};

use crate::topo::{OrLog, lab};

/// The IPv6 virtual IP.
/// Port of the servers started by [`TunLab::start_servers`] (the lab's own HTTP servers hold port 80 on
/// IPv4 only).
const PORT2: u16 = 8080;

/// An HTTP server for `python3 -c SERVER_PY NAME BIND_ADDR PORT`: answers `NAME\n` to a GET and
/// `NAME LENGTH\n` to a POST, LENGTH being the number of body bytes it received.
const SERVER_PY: &str = r#"
import http.server, socket, sys
name = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply((name + "\n").encode())
    def do_POST(self):
        want = int(self.headers["Content-Length"])
        got = 0
        while got < want:
            b = self.rfile.read(min(65536, want - got))
            if not b:
                break
            got += len(b)
        self.reply(f"{name} {got}\n".encode())
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    allow_reuse_address = True
    daemon_threads = True
Server((sys.argv[2], int(sys.argv[3])), Handler).serve_forever()
"#;

/// A UDP server for `python3 -c UDPD6_PY NAME ADDR PORT`: answers `NAME\n` to every datagram on the IPv6
/// address `ADDR`. Bound to the VIP, so that a tunnel real server answers from it (see [`udp::UDPD_PY`],
/// its IPv4 twin).
const UDPD6_PY: &str = r#"
import socket, sys
name = (sys.argv[1] + "\n").encode()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[2], int(sys.argv[3])))
while True:
    _, peer = s.recvfrom(2048)
    s.sendto(name, peer)
"#;

/// The DR lab plus what turns its real servers into tunnel ones. Drop stops the extra servers and
/// removes rvs_decap's pins before the lab removes the namespaces.
struct TunLab {
    servers: Vec<Child>,
    /// bpffs directory of every real server's rvs_decap pins (one subdirectory each).
    decap_pins: PathBuf,
    lab: DrLab,
}

impl Deref for TunLab {
    type Target = DrLab;
    fn deref(&self) -> &DrLab {
        &self.lab
    }
}

impl Drop for TunLab {
    fn drop(&mut self) {
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Removing the pinned links detaches rvs_decap and frees its maps.
        let _ = std::fs::remove_dir_all(&self.decap_pins);
    }
}

impl TunLab {
    fn new(reals: usize) -> Self {
        let lab = lab(reals);
        let decap_pins = PathBuf::from("/sys/fs/bpf").join(format!("{}-decap", lab.topo().prefix()));
        Self {
            servers: Vec::new(),
            decap_pins,
            lab,
        }
    }

    /// `rvs-realserver ARGS` in real server `i` with the lab's state dir; panics unless it succeeds.
    fn realserver_ok(&self, i: usize, args: &[&str]) {
        let state = self.realserver_state_dir(i).display().to_string();
        let pins = self.decap_pins.join(real_name(i)).display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--state-dir", &state]);
        if args[0] == "setup" {
            all.extend(["--pin-dir", &pins]);
        }
        let out = self.realserver(i, &all).or_log(self, "run rvs-realserver");
        assert!(
            out.status.success(),
            "rvs-realserver {}: {}",
            all.join(" "),
            describe(&out)
        );
    }

    /// Switches real server `i` from the lab's DR set-up to tun mode for the IPv4 VIP.
    fn tun(&self, i: usize) {
        let vip = lab::VIP.to_string();
        self.realserver_ok(i, &["teardown", "--vip", &vip]);
        self.realserver_ok(i, &["setup", "--vip", &vip, "--mode", "tun", "--dev", IFNAME]);
    }

    /// Sets up the IPv6 segment (the lab starts with IPv6 off), the IPv6 VIP on the director, and real
    /// servers `1..=reals` in tun mode for it.
    fn ipv6(&self) {
        self.enable_ipv6().or_log(self, "turn IPv6 on in the lab");
        for i in 1..=self.reals() {
            let vip = VIP6.to_string();
            self.realserver_ok(i, &["setup", "--vip", &vip, "--mode", "tun", "--dev", IFNAME]);
        }
    }

    /// Starts [`UDPD6_PY`] on `[VIP6]:PORT2` in real servers `1..=reals` and waits until each answers a
    /// datagram sent inside its own namespace (the VIP is one of its local addresses).
    fn start_udp6_servers(&mut self) {
        let vip = SocketAddr::new(IpAddr::V6(VIP6), PORT2);
        for i in 1..=self.reals() {
            let name = real_name(i);
            let log = std::fs::File::create(self.run_dir().join(format!("{name}-udpd6.log")))
                .expect("create a server log");
            let child = self
                .topo()
                .spawn_in(
                    &name,
                    Command::new("python3")
                        .args(["-c", UDPD6_PY, &name, &VIP6.to_string(), &PORT2.to_string()])
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().expect("dup log"))
                        .stderr(log),
                )
                .or_log(self, "start a UDP server");
            self.servers.push(child);
        }
        for i in 1..=self.reals() {
            let name = real_name(i);
            let got = wait::until(
                &format!("{name}'s UDP server at {vip}"),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    self.topo()
                        .run_in(&name, || udp::ask(vip, None))
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())
                },
            )
            .or_log(self, "UDP server up");
            assert_eq!(got, name);
        }
    }

    /// Starts [`SERVER_PY`] on `bind:PORT2` in real servers `1..=reals` and waits until each answers
    /// the director at `addr_of(i):PORT2`.
    fn start_servers(&mut self, bind: &str, addr_of: &dyn Fn(usize) -> IpAddr) {
        for i in 1..=self.reals() {
            let name = real_name(i);
            let log = std::fs::File::create(self.run_dir().join(format!("{name}-srv2.log")))
                .expect("create a server log");
            let child = self
                .topo()
                .spawn_in(
                    &name,
                    Command::new("python3")
                        .args(["-c", SERVER_PY, &name, bind, &PORT2.to_string()])
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().expect("dup log"))
                        .stderr(log),
                )
                .or_log(self, "start a server");
            self.servers.push(child);
        }
        for i in 1..=self.reals() {
            let addr = SocketAddr::new(addr_of(i), PORT2);
            let got = wait::until(
                &format!("{}'s server at {addr}", real_name(i)),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    self.topo()
                        .run_in(DIRECTOR, || http::get_once(addr, None))
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())
                },
            )
            .or_log(self, "server up");
            assert_eq!(got, real_name(i));
        }
    }
}

/// `-A -t/-u VIP -s rr` and real servers `reals` (`(address, method flag)`) on the same port.
fn add_service(lab: &DrLab, proto: &str, vip: SocketAddr, reals: &[(IpAddr, &str)]) {
    let svc = vip.to_string();
    lab.rvsadm_ok(&["-A", proto, &svc, "-s", "rr"])
        .or_log(lab, "rvsadm -A");
    for (ip, method) in reals {
        let rs = SocketAddr::new(*ip, vip.port()).to_string();
        lab.rvsadm_ok(&["-a", proto, &svc, "-r", &rs, method])
            .or_log(lab, "rvsadm -a");
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

fn snapshot(lab: &DrLab, nodes: &[String]) -> Vec<IfStats> {
    nodes
        .iter()
        .map(|n| lab.if_stats(n).or_log(lab, "interface counters"))
        .collect()
}

/// The `-Ln` line of real server `rs`, or a panic with the listing.
fn listing_line(lab: &DrLab, rs: &str) -> String {
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(lab, "rvsadm -Ln");
    listing
        .lines()
        .find(|l| l.contains(&format!("-> {rs} ")))
        .unwrap_or_else(|| panic!("{rs} is not listed:\n{listing}"))
        .to_owned()
}

/// What `rvs_dest` holds for the tunnel real servers: real server -> (outer source, MTU, flags), read
/// with bpftool from the raw bytes of `struct rvs_dest_val` (addr at 0, flags at 44, laddr at 48, mtu
/// at 64; family at 18, fwd at 19).
fn tunnel_dests(lab: &DrLab) -> BTreeMap<IpAddr, (IpAddr, u32, u32)> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(lab.pin_dir().join("rvs_dest"))
        .output()
        .expect("run bpftool");
    assert!(out.status.success(), "bpftool map dump: {}", describe(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    let mut dests = BTreeMap::new();
    for e in entries {
        let bytes: Vec<u8> = e["value"]
            .as_array()
            .expect("raw value bytes")
            .iter()
            .map(|b| {
                let h = b.as_str().expect("hex byte");
                u8::from_str_radix(h.trim_start_matches("0x"), 16).expect("hex byte")
            })
            .collect();
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let ip_at = |o: usize, v6: bool| -> IpAddr {
            let b: [u8; 16] = bytes[o..o + 16].try_into().expect("16 bytes");
            if v6 {
                IpAddr::V6(Ipv6Addr::from(b))
            } else {
                IpAddr::from([b[0], b[1], b[2], b[3]])
            }
        };
        if u32_at(44) & rvs_abi::DEST_F_VALID == 0 || bytes[19] != rvs_abi::Fwd::Tun as u8 {
            continue;
        }
        let v6 = bytes[18] == rvs_abi::Family::Inet6 as u8;
        dests.insert(ip_at(0, v6), (ip_at(48, v6), u32_at(64), u32_at(44)));
    }
    dests
}

/// Panics unless rvsd has given every tunnel real server in `reals` its next hop, the outer source
/// `laddr` and the MTU `mtu`; waits for the resolver first.
fn assert_tunnel_dests(lab: &DrLab, reals: &[IpAddr], laddr: IpAddr, mtu: u32) {
    let want: BTreeMap<IpAddr, (IpAddr, u32, u32)> = reals
        .iter()
        .map(|r| (*r, (laddr, mtu, rvs_abi::DEST_F_VALID | rvs_abi::DEST_F_NEIGH)))
        .collect();
    wait::until(
        "rvsd to resolve the tunnel real servers",
        // Generous: on a loaded machine one bpftool dump alone has taken over 10 s.
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let got = tunnel_dests(lab);
            if got == want {
                Ok(())
            } else {
                Err(format!("rvs_dest holds {got:?}, want {want:?}"))
            }
        },
    )
    .or_log(lab, "tunnel dests");
}

#[test]
fn tun_rr_splits_300_connections_and_replies_bypass_the_director() {
    const SLACK: u64 = 20;
    let lab = TunLab::new(3);
    for i in 1..=3 {
        lab.tun(i);
    }
    let reals: Vec<(IpAddr, &str)> = (1..=3).map(|i| (IpAddr::V4(real_ip(i)), "-i")).collect();
    add_service(&lab, "-t", vip_addr(), &reals);
    for i in 1..=3 {
        let line = listing_line(&lab, &format!("{}:80", real_ip(i)));
        assert!(line.contains(" Tunnel "), "{line}");
    }
    let rips: Vec<IpAddr> = reals.iter().map(|(ip, _)| *ip).collect();
    assert_tunnel_dests(&lab, &rips, IpAddr::V4(lab::DIRECTOR_IP), 1500);

    let mut nodes = vec![CLIENT.to_owned(), DIRECTOR.to_owned()];
    nodes.extend((1..=3).map(real_name));
    let before = snapshot(&lab, &nodes);
    let got = lab.spread(300).or_log(&lab, "300 connections through the tunnel");
    let after = snapshot(&lab, &nodes);
    assert_eq!(got, counts(&[("rs1", 100), ("rs2", 100), ("rs3", 100)]));

    let d: Vec<IfStats> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let (client, director) = (d[0], d[1]);
    let rs_rx: u64 = d[2..].iter().map(|s| s.rx_packets).sum();
    let rs_tx: u64 = d[2..].iter().map(|s| s.tx_packets).sum();
    let report = format!(
        "client tx {} rx {}; director rx {} tx {}; real servers rx {rs_rx} tx {rs_tx}",
        client.tx_packets, client.rx_packets, director.rx_packets, director.tx_packets
    );
    assert!(client.rx_packets >= 900, "too few replies: {report}");
    assert!(
        director.rx_packets <= client.tx_packets + SLACK,
        "the director received more than the client sent: replies went through it. {report}"
    );
    assert!(
        rs_tx + SLACK >= client.rx_packets,
        "the client received more than the real servers sent: {report}"
    );
    // Every client packet went on through the tunnel, 20 bytes longer: the director sent about as many
    // packets as it received and, outer headers outweighing the few ARP frames, more bytes.
    assert!(
        director.tx_packets + SLACK >= client.tx_packets,
        "the director did not forward the client's packets: {report}"
    );
    assert!(
        director.tx_bytes > director.rx_bytes,
        "the director's packets did not grow by the outer header: {report}; bytes rx {} tx {}",
        director.rx_bytes,
        director.tx_bytes
    );
}

#[test]
fn tun_carries_udp() {
    let mut lab = TunLab::new(3);
    for i in 1..=3 {
        lab.tun(i);
    }
    lab.lab.start_udp_servers().or_log(&lab, "UDP servers");
    let reals: Vec<(IpAddr, &str)> = (1..=3).map(|i| (IpAddr::V4(real_ip(i)), "-i")).collect();
    add_service(&lab, "-u", lab::vip_udp_addr(), &reals);
    let mut got = BTreeMap::new();
    for _ in 0..30 {
        let (_, name) = lab.udp_ask().or_log(&lab, "UDP through the tunnel");
        *got.entry(name).or_insert(0) += 1;
    }
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));
    let line = listing_line(&lab, &format!("{}:53", real_ip(1)));
    assert!(line.contains(" Tunnel "), "{line}");
}

#[test]
fn tun_ip6ip6_tcp_with_bracketed_addresses() {
    let mut lab = TunLab::new(3);
    lab.ipv6();
    lab.start_servers("::", &|i| IpAddr::V6(real_ip6(i)));
    let vip = SocketAddr::new(IpAddr::V6(VIP6), PORT2);
    let reals: Vec<(IpAddr, &str)> = (1..=3).map(|i| (IpAddr::V6(real_ip6(i)), "-i")).collect();
    add_service(&lab, "-t", vip, &reals);
    let line = listing_line(&lab, &format!("[{}]:{PORT2}", real_ip6(2)));
    assert!(line.contains(" Tunnel "), "{line}");
    let rips: Vec<IpAddr> = reals.iter().map(|(ip, _)| *ip).collect();
    assert_tunnel_dests(&lab, &rips, IpAddr::V6(ip6(1)), 1500);

    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got = BTreeMap::new();
            for k in 0..30u16 {
                // Own source ports, as the lab's `spread` does (see `http::connect`).
                let from = SocketAddr::new(IpAddr::V6(ip6(2)), lab::FIRST_CLIENT_PORT + k);
                let name = http::get_once(vip, Some(from))
                    .map_err(|e| format!("request {k} from {from} (after {got:?}): {e}"))?;
                *got.entry(name).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "30 IPv6 connections through the tunnel");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));
}

/// UDP over ip6ip6: an IPv6 UDP service, IPv6 tunnel real servers with rvs_decap, each answering from
/// the VIP with its name; rr spreads the client's flows evenly.
#[test]
fn tun_ip6ip6_udp() {
    let mut lab = TunLab::new(3);
    lab.ipv6();
    lab.start_udp6_servers();
    let vip = SocketAddr::new(IpAddr::V6(VIP6), PORT2);
    let reals: Vec<(IpAddr, &str)> = (1..=3).map(|i| (IpAddr::V6(real_ip6(i)), "-i")).collect();
    add_service(&lab, "-u", vip, &reals);
    let line = listing_line(&lab, &format!("[{}]:{PORT2}", real_ip6(3)));
    assert!(line.contains(" Tunnel "), "{line}");
    let rips: Vec<IpAddr> = reals.iter().map(|(ip, _)| *ip).collect();
    assert_tunnel_dests(&lab, &rips, IpAddr::V6(ip6(1)), 1500);

    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got = BTreeMap::new();
            for k in 0..30u16 {
                // Each flow from its own source port: one connection entry, one scheduling, each.
                let from = SocketAddr::new(IpAddr::V6(ip6(2)), lab::FIRST_CLIENT_PORT + k);
                let name = udp::ask(vip, Some(from))
                    .map_err(|e| format!("datagram {k} from {from} (after {got:?}): {e}"))?;
                *got.entry(name).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "30 IPv6 UDP flows through the tunnel");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));
    let listing = lab
        .rvsadm_ok(&["-Ln", "-u", &vip.to_string()])
        .or_log(&lab, "rvsadm -Ln");
    for i in 1..=3 {
        let rs = format!("[{}]:{PORT2}", real_ip6(i));
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(rs.as_str()))
            .unwrap_or_else(|| panic!("{rs} not listed:\n{listing}"));
        // IPVS counts UDP entries as inactive: 10 flows each.
        assert_eq!(line.split_whitespace().nth(5), Some("10"), "{listing}");
    }
}

/// POSTs `len` bytes to `addr` from the client on one connection; returns the server's answer.
fn upload(lab: &DrLab, addr: SocketAddr, from: SocketAddr, len: usize) -> String {
    lab.topo()
        .run_in(CLIENT, || -> std::io::Result<String> {
            let mut s = http::connect(addr, Some(from))?;
            let head = format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes())?;
            s.write_all(&vec![b'x'; len])?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply
                .split_once("\r\n\r\n")
                .map_or(reply.clone(), |(_, body)| body.trim_end().to_owned()))
        })
        .or_log(lab, "client thread")
        .or_log(lab, "upload through the tunnel")
}

/// The route toward the real server allows 1400 bytes: the director answers the client's full-size
/// segments with "fragmentation needed" (1380 = 1400 - the outer header), the client lowers its path
/// MTU toward the VIP, and the upload completes.
#[test]
fn tun_path_mtu_discovery_through_the_tunnel() {
    const LEN: usize = 300_000;
    let mut lab = TunLab::new(1);
    lab.tun(1);
    lab.start_servers("0.0.0.0", &|i| IpAddr::V4(real_ip(i)));
    let vip = SocketAddr::new(IpAddr::V4(lab::VIP), PORT2);
    let rs1 = [IpAddr::V4(real_ip(1))];
    add_service(&lab, "-t", vip, &[(rs1[0], "-i")]);
    let director = IpAddr::V4(lab::DIRECTOR_IP);
    assert_tunnel_dests(&lab, &rs1, director, 1500);
    // A route change reaches the map through rvsd's route notifications.
    let rs1_route = format!("{}/32", real_ip(1));
    lab.topo()
        .ip(
            DIRECTOR,
            &["route", "replace", &rs1_route, "dev", IFNAME, "mtu", "1400"],
        )
        .or_log(&lab, "lower the route MTU toward rs1");
    assert_tunnel_dests(&lab, &rs1, director, 1400);

    let from = lab.client_source().or_log(&lab, "client port");
    let got = upload(&lab, vip, from, LEN);
    assert_eq!(got, format!("rs1 {LEN}"));
    let route = lab
        .topo()
        .ip(CLIENT, &["route", "get", &lab::VIP.to_string()])
        .or_log(&lab, "client's route to the VIP");
    assert!(
        route.contains("mtu 1380"),
        "the client did not learn the tunnel's MTU: {route}"
    );
}

#[test]
fn one_service_mixes_route_and_tunnel_real_servers() {
    let lab = TunLab::new(2);
    lab.tun(2);
    let reals = [(IpAddr::V4(real_ip(1)), "-g"), (IpAddr::V4(real_ip(2)), "-i")];
    add_service(&lab, "-t", vip_addr(), &reals);
    let dr = listing_line(&lab, &format!("{}:80", real_ip(1)));
    assert!(dr.contains(" Route "), "{dr}");
    let tun = listing_line(&lab, &format!("{}:80", real_ip(2)));
    assert!(tun.contains(" Tunnel "), "{tun}");
    let got = lab.spread(40).or_log(&lab, "connections to a mixed service");
    assert_eq!(got, counts(&[("rs1", 20), ("rs2", 20)]));
}

/// IPVS lets a tunnel cross families: an IPv4 service whose real servers are reached over IPv6 (the
/// client's IPv4 packet inside an IPv6 header, from the director's IPv6 address).
#[test]
fn ipv4_service_tunnels_to_ipv6_real_servers() {
    let mut lab = TunLab::new(2);
    lab.ipv6();
    for i in 1..=2 {
        lab.tun(i);
    }
    // "::" takes IPv4 connections as well (IPV6_V6ONLY off): the inner packets are IPv4.
    lab.start_servers("::", &|i| IpAddr::V6(real_ip6(i)));
    let vip = SocketAddr::new(IpAddr::V4(lab::VIP), PORT2);
    let reals: Vec<(IpAddr, &str)> = (1..=2).map(|i| (IpAddr::V6(real_ip6(i)), "-i")).collect();
    add_service(&lab, "-t", vip, &reals);
    let rips: Vec<IpAddr> = reals.iter().map(|(ip, _)| *ip).collect();
    assert_tunnel_dests(&lab, &rips, IpAddr::V6(ip6(1)), 1500);
    let froms: Vec<SocketAddr> = (0..20)
        .map(|_| lab.client_source().or_log(&lab, "client port"))
        .collect();
    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got = BTreeMap::new();
            for (k, &from) in froms.iter().enumerate() {
                let name = http::get_once(vip, Some(from))
                    .map_err(|e| format!("request {k} from {from} (after {got:?}): {e}"))?;
                *got.entry(name).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "IPv4 connections through IPv6 tunnels");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10)]));
}
