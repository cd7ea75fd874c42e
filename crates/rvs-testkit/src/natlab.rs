//! A VS/NAT lab in network namespaces: a two-armed director between a client network and a real-server
//! network, real servers whose default route is the director, each running an HTTP and a UDP server
//! (both dual-stack) that answer with their name.
//!
//! ```text
//!   client eth0 198.18.0.2, 2001:db8::2
//!      |  (one veth)
//!   director eth0 198.18.0.1 + VIP 198.18.0.100, 2001:db8::1 + VIP 2001:db8::100
//!   director eth1 198.18.1.1, 2001:db8:1::1
//!      |
//!   netns sw: bridge br0
//!      |            |            |
//!     rs1          rs2          rs3      198.18.1.1i, 2001:db8:1::1i, default routes via the director
//! ```
//! The director forwards between its two interfaces with XDP_REDIRECT, which a veth delivers only when
//! its peer runs an XDP program: the client's `eth0` and the switch port facing the director get one
//! from the caller (`attach_pass`), as in [`crate::lab`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::lab::{AttachPass, Binaries, Keeper, LabError, Proto};
use crate::netns::Topology;
use crate::{http, udp, wait};

/// The IPv4 virtual IP (on the director's client-side interface).
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The IPv6 virtual IP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The client's IPv4 address.
pub const CLIENT_IP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's IPv6 address.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The director's IPv4 address on the real servers' network: their default gateway.
pub const DIRECTOR_RS_IP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The director's IPv6 address on the real servers' network: their default gateway.
pub const DIRECTOR_RS_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The port the real servers' HTTP servers listen on (the virtual service's is 80: port mapping).
pub const HTTP_PORT: u16 = 8080;
/// The port the real servers' UDP servers listen on.
pub const UDP_PORT: u16 = 5353;
/// Namespace (short name) of the client.
pub const CLIENT: &str = "client";
/// Namespace (short name) of the director.
pub const DIRECTOR: &str = "dir";
/// Namespace (short name) of the real servers' switch.
pub const SWITCH: &str = "sw";
/// The director's client-side interface (and the interface of the client and of every real server).
pub const CLIENT_IF: &str = "eth0";
/// The director's server-side interface.
pub const SERVER_IF: &str = "eth1";
/// Connection-table size of the lab's rvsd.
pub const LAB_CONN_MAX: u32 = 65_536;
/// First source port of the client's connections (below the kernel's ephemeral range, see
/// [`crate::lab::FIRST_CLIENT_PORT`]).
pub const FIRST_CLIENT_PORT: u16 = 10_000;
const LAST_CLIENT_PORT: u16 = 32_767;
/// How long [`NatLab::udp_once`] waits for its answer: far longer than a neighbour resolution on a
/// veth takes, so that only a lost datagram makes it fail.
pub const ONCE_TIMEOUT: Duration = Duration::from_secs(5);

/// The real servers' HTTP server: [`http::HTTPD_PY`]'s, listening on `::` so that it serves IPv4
/// (as mapped addresses) and IPv6 alike.
const HTTPD6_PY: &str = r#"
import http.server, socket, sys
body = (sys.argv[1] + "\n").encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
Server(("::", int(sys.argv[2])), Handler).serve_forever()
"#;

/// The real servers' UDP server: answers `NAME\n` to every datagram on `[::]:PORT` (IPv4 too). A NAT
/// real server answers from its own address, which the wildcard socket gets from the route back.
const UDPD6_PY: &str = r#"
import socket, sys
name = (sys.argv[1] + "\n").encode()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[2])))
while True:
    _, peer = s.recvfrom(2048)
    s.sendto(name, peer)
"#;

/// IPv4 address of real server `i` (1-based): 198.18.1.1i.
pub fn real_ip4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        1,
        10 + u8::try_from(i).expect("a handful of real servers"),
    )
}

/// IPv6 address of real server `i` (1-based): 2001:db8:1::1i.
pub fn real_ip6(i: usize) -> Ipv6Addr {
    let i = u16::try_from(i).expect("a handful of real servers");
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + i)
}

/// Address of real server `i` in family `v6`.
pub fn real_ip(i: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(real_ip6(i))
    } else {
        IpAddr::V4(real_ip4(i))
    }
}

/// The VIP of family `v6`.
pub fn vip(v6: bool) -> IpAddr {
    if v6 { IpAddr::V6(VIP6) } else { IpAddr::V4(VIP4) }
}

/// Namespace (short name) and answer of real server `i` (1-based): `rs<i>`.
pub fn real_name(i: usize) -> String {
    format!("rs{i}")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The running NAT lab. Drop stops every process it started and removes every namespace, pin and file
/// it created.
pub struct NatLab {
    // Drop order: the processes (Drop below), then the programs, then the namespaces.
    rvsd: Option<Child>,
    servers: Vec<Child>,
    pass: Vec<Keeper>,
    bins: Binaries,
    reals: usize,
    run_dir: PathBuf,
    pin_dir: PathBuf,
    next_port: AtomicU16,
    topo: Topology,
}

impl NatLab {
    /// Builds the namespaces and links, prepares the real servers (`rvs-realserver setup --mode nat`
    /// for both families), starts their HTTP and UDP servers, and starts `rvsd` on both director
    /// interfaces (with no service configured).
    ///
    /// # Errors
    /// Any step failed; what was built so far is removed.
    pub fn start(bins: Binaries, reals: usize, attach_pass: AttachPass<'_>) -> Result<Self, LabError> {
        let topo = Topology::new();
        let run_dir = std::env::temp_dir().join(topo.prefix());
        let pin_dir = Path::new("/sys/fs/bpf").join(topo.prefix());
        let mut lab = NatLab {
            rvsd: None,
            servers: Vec::new(),
            pass: Vec::new(),
            bins,
            reals,
            run_dir,
            pin_dir,
            next_port: AtomicU16::new(FIRST_CLIENT_PORT),
            topo,
        };
        fs::create_dir_all(&lab.run_dir).map_err(io(format!("create {}", lab.run_dir.display())))?;
        lab.build_network()?;
        for (ns, ifname) in [(SWITCH, DIRECTOR), (CLIENT, CLIENT_IF)] {
            let keeper = attach_pass(&lab.topo, ns, ifname).map_err(|e| {
                LabError::Failed(format!(
                    "cannot attach the XDP_PASS program to {ns}/{ifname}: {e}"
                ))
            })?;
            lab.pass.push(keeper);
        }
        lab.setup_realservers()?;
        lab.start_servers()?;
        lab.start_rvsd()?;
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let t = &mut self.topo;
        t.add_switch(SWITCH)?;
        // Without an MLD querier, multicast snooping may keep the neighbour solicitations for the real
        // servers' IPv6 addresses from the ports that need them.
        t.ip(
            SWITCH,
            &["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"],
        )?;
        t.add_ns(CLIENT)?;
        t.add_ns(DIRECTOR)?;
        for i in 1..=self.reals {
            t.add_ns(&real_name(i))?;
        }
        t.veth(CLIENT, CLIENT_IF, DIRECTOR, CLIENT_IF)?;
        t.plug(SWITCH, DIRECTOR, SERVER_IF)?;
        for i in 1..=self.reals {
            t.plug(SWITCH, &real_name(i), CLIENT_IF)?;
        }
        // nodad: duplicate address detection would keep the IPv6 addresses unusable for a second or so.
        let addr = |ns: &str, ifname: &str, cidr: String| {
            t.ip(ns, &["addr", "add", &cidr, "dev", ifname, "nodad"])
                .map(drop)
        };
        addr(CLIENT, CLIENT_IF, format!("{CLIENT_IP4}/24"))?;
        addr(CLIENT, CLIENT_IF, format!("{CLIENT_IP6}/64"))?;
        addr(DIRECTOR, CLIENT_IF, "198.18.0.1/24".into())?;
        addr(DIRECTOR, CLIENT_IF, "2001:db8::1/64".into())?;
        addr(DIRECTOR, CLIENT_IF, format!("{VIP4}/32"))?;
        addr(DIRECTOR, CLIENT_IF, format!("{VIP6}/128"))?;
        addr(DIRECTOR, SERVER_IF, format!("{DIRECTOR_RS_IP4}/24"))?;
        addr(DIRECTOR, SERVER_IF, format!("{DIRECTOR_RS_IP6}/64"))?;
        for i in 1..=self.reals {
            addr(&real_name(i), CLIENT_IF, format!("{}/24", real_ip4(i)))?;
            addr(&real_name(i), CLIENT_IF, format!("{}/64", real_ip6(i)))?;
        }
        // What a NAT director needs (docs/nat-setup.md): forwarding, for what the program hands the
        // kernel (a first packet whose next hop is unresolved); accept_local on the server side, or the
        // kernel drops such a reply, already rewritten to come from the VIP, as a martian; no
        // redirects, which would send the real servers' replies around the director.
        t.sysctl(DIRECTOR, "net/ipv4/ip_forward", "1")?;
        t.sysctl(DIRECTOR, "net/ipv6/conf/all/forwarding", "1")?;
        t.sysctl(DIRECTOR, &format!("net/ipv4/conf/{SERVER_IF}/accept_local"), "1")?;
        t.sysctl(DIRECTOR, "net/ipv4/conf/all/send_redirects", "0")?;
        t.sysctl(
            DIRECTOR,
            &format!("net/ipv4/conf/{SERVER_IF}/send_redirects"),
            "0",
        )?;
        // The frames the director redirects must carry complete checksums (see crate::lab): turn tx
        // checksum offload off wherever they are sent from.
        let mut senders = vec![CLIENT.to_owned()];
        senders.extend((1..=self.reals).map(real_name));
        for node in &senders {
            let out = t.output_in(node, Command::new("ethtool").args(["-K", CLIENT_IF, "tx", "off"]))?;
            if !out.status.success() {
                return Err(LabError::Failed(format!(
                    "ethtool -K tx off in {node}: {}",
                    describe(&out)
                )));
            }
        }
        Ok(())
    }

    fn setup_realservers(&self) -> Result<(), LabError> {
        for i in 1..=self.reals {
            let state = self.realserver_state_dir(i).display().to_string();
            for (vip, dir) in [
                (VIP4.to_string(), DIRECTOR_RS_IP4.to_string()),
                (VIP6.to_string(), DIRECTOR_RS_IP6.to_string()),
            ] {
                let args = [
                    "setup",
                    "--vip",
                    &vip,
                    "--mode",
                    "nat",
                    "--director",
                    &dir,
                    "--state-dir",
                    &state,
                ];
                let out = self.realserver(i, &args)?;
                if !out.status.success() {
                    return Err(LabError::Failed(format!(
                        "rvs-realserver {} in {}: {}",
                        args.join(" "),
                        real_name(i),
                        describe(&out)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs `rvs-realserver ARGS` in real server `i`'s namespace.
    ///
    /// # Errors
    /// The program could not be started.
    pub fn realserver(&self, i: usize, args: &[&str]) -> Result<Output, LabError> {
        Ok(self
            .topo
            .output_in(&real_name(i), Command::new(&self.bins.realserver).args(args))?)
    }

    /// The state directory of `rvs-realserver` in real server `i`.
    pub fn realserver_state_dir(&self, i: usize) -> PathBuf {
        self.run_dir.join(real_name(i))
    }

    fn start_servers(&mut self) -> Result<(), LabError> {
        for i in 1..=self.reals {
            let name = real_name(i);
            for (what, script, port) in [("httpd", HTTPD6_PY, HTTP_PORT), ("udpd", UDPD6_PY, UDP_PORT)] {
                let log = self.log_file(&format!("{name}-{what}.log"))?;
                let child = self.topo.spawn_in(
                    &name,
                    Command::new("python3")
                        .args(["-c", script, &name, &port.to_string()])
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().map_err(io("dup log"))?)
                        .stderr(log),
                )?;
                self.servers.push(child);
            }
        }
        // Ask every server from the director, in both families: it proves the servers are up and the
        // network forwards, and it fills the director's neighbour tables.
        for i in 1..=self.reals {
            let want = real_name(i);
            for v6 in [false, true] {
                let http_addr = SocketAddr::new(real_ip(i, v6), HTTP_PORT);
                let udp_addr = SocketAddr::new(real_ip(i, v6), UDP_PORT);
                let got = wait::until(
                    &format!("{want}'s servers at {http_addr} and {udp_addr}"),
                    Duration::from_secs(20),
                    Duration::from_millis(100),
                    || {
                        self.check_servers_alive()?;
                        self.topo.run_in(DIRECTOR, || {
                            let h =
                                http::get_once(http_addr, None).map_err(io(format!("GET {http_addr}")))?;
                            let u = udp::ask(udp_addr, None).map_err(io(format!("ask {udp_addr}")))?;
                            Ok::<_, LabError>((h, u))
                        })?
                    },
                )?;
                if got != (want.clone(), want.clone()) {
                    return Err(LabError::Failed(format!(
                        "{http_addr} and {udp_addr} answered {got:?}, not {want:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_servers_alive(&mut self) -> Result<(), LabError> {
        for (k, c) in self.servers.iter_mut().enumerate() {
            if let Some(status) = c.try_wait().map_err(io("wait for a server"))? {
                let what = if k % 2 == 0 { "httpd" } else { "udpd" };
                let name = real_name(k / 2 + 1);
                let log =
                    fs::read_to_string(self.run_dir.join(format!("{name}-{what}.log"))).unwrap_or_default();
                return Err(LabError::Failed(format!(
                    "{what} of {name} exited ({status}):\n{log}"
                )));
            }
        }
        Ok(())
    }

    fn log_file(&self, name: &str) -> Result<File, LabError> {
        let p = self.run_dir.join(name);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(format!("open {}", p.display())))
    }

    /// The socket `rvsd` listens on.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("rvsd.sock")
    }

    /// The namespaces.
    pub fn topo(&self) -> &Topology {
        &self.topo
    }

    /// Everything `rvsd` has printed so far.
    pub fn rvsd_log(&self) -> String {
        fs::read_to_string(self.run_dir.join("rvsd.log")).unwrap_or_default()
    }

    fn start_rvsd(&mut self) -> Result<(), LabError> {
        let args: Vec<String> = vec![
            "-i".into(),
            CLIENT_IF.into(),
            "-i".into(),
            SERVER_IF.into(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--state-dir".into(),
            self.run_dir.join("state").display().to_string(),
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            "--conn-max".into(),
            LAB_CONN_MAX.to_string(),
        ];
        let mut log = self.log_file("rvsd.log")?;
        writeln!(log, "=== rvsd {}", args.join(" ")).map_err(io("write rvsd.log"))?;
        let child = self.topo.spawn_in(
            DIRECTOR,
            Command::new(&self.bins.rvsd)
                .args(&args)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("dup log"))?)
                .stderr(log),
        )?;
        self.rvsd = Some(child);
        wait::until(
            "rvsd to answer `rvsadm -Ln`",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                if let Some(c) = self.rvsd.as_mut()
                    && let Some(status) = c.try_wait().map_err(io("wait for rvsd"))?
                {
                    self.rvsd = None;
                    return Err(LabError::Failed(format!(
                        "rvsd exited ({status}):\n{}",
                        self.rvsd_log()
                    )));
                }
                let out = self.rvsadm(&["-Ln"])?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(LabError::Failed(describe(&out)))
                }
            },
        )
        .map_err(|e| LabError::Failed(format!("{e}\nrvsd log:\n{}", self.rvsd_log())))
    }

    /// Runs `rvsadm ARGS` against this lab's daemon.
    ///
    /// # Errors
    /// The program could not be started.
    pub fn rvsadm(&self, args: &[&str]) -> Result<Output, LabError> {
        Command::new(&self.bins.rvsadm)
            .args(args)
            .env("RVS_SOCKET", self.socket())
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("run {}", self.bins.rvsadm.display())))
    }

    /// Runs `rvsadm ARGS` and returns its stdout; a non-zero exit is an error.
    ///
    /// # Errors
    /// As [`NatLab::rvsadm`], or rvsadm failed.
    pub fn rvsadm_ok(&self, args: &[&str]) -> Result<String, LabError> {
        let out = self.rvsadm(args)?;
        if !out.status.success() {
            return Err(LabError::Failed(format!(
                "rvsadm {}: {}",
                args.join(" "),
                describe(&out)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Adds the service `VIP:vport` (family `v6`, protocol `proto`, scheduler `sched`) and every real
    /// server, rs1 first, as a NAT (`-m`) real server on `rport`. Returns the service as rvsadm writes
    /// it.
    ///
    /// # Errors
    /// rvsadm refused something.
    pub fn add_nat_service(
        &self,
        proto: Proto,
        v6: bool,
        vport: u16,
        rport: u16,
        sched: &str,
    ) -> Result<String, LabError> {
        let svc = SocketAddr::new(vip(v6), vport).to_string();
        self.rvsadm_ok(&["-A", proto.flag(), &svc, "-s", sched])?;
        for i in 1..=self.reals {
            let rs = SocketAddr::new(real_ip(i, v6), rport).to_string();
            self.rvsadm_ok(&["-a", proto.flag(), &svc, "-r", &rs, "-m"])?;
        }
        Ok(svc)
    }

    fn take_port(next: &AtomicU16, v6: bool) -> Result<SocketAddr, LabError> {
        let port = next.fetch_add(1, Ordering::Relaxed);
        if !(FIRST_CLIENT_PORT..=LAST_CLIENT_PORT).contains(&port) {
            return Err(LabError::Failed(format!(
                "the lab has used all of its client ports ({FIRST_CLIENT_PORT}-{LAST_CLIENT_PORT})"
            )));
        }
        let ip = if v6 {
            IpAddr::V6(CLIENT_IP6)
        } else {
            IpAddr::V4(CLIENT_IP4)
        };
        Ok(SocketAddr::new(ip, port))
    }

    /// `n` HTTP requests from the client to `to`, one new connection each from its own source port.
    /// Returns how many each name answered.
    ///
    /// # Errors
    /// Any request failed (the error says which one and how many had succeeded).
    pub fn http_spread(&self, to: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let ports = &self.next_port;
        self.topo.run_in(CLIENT, || {
            let mut counts = BTreeMap::new();
            for k in 0..n {
                let from = Self::take_port(ports, to.is_ipv6())?;
                let name = http::get_once(to, Some(from)).map_err(io(format!(
                    "request {} of {n} to {to} from {from} (after {counts:?})",
                    k + 1
                )))?;
                *counts.entry(name).or_insert(0) += 1;
            }
            Ok(counts)
        })?
    }

    /// `n` UDP questions from the client to `to`, each from its own source port on a socket connected
    /// to `to`, which therefore accepts only answers whose source is `to`. Returns how many each name
    /// answered.
    ///
    /// # Errors
    /// A question got no answer from `to`.
    pub fn udp_spread(&self, to: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let ports = &self.next_port;
        self.topo.run_in(CLIENT, || {
            let mut counts = BTreeMap::new();
            for k in 0..n {
                let from = Self::take_port(ports, to.is_ipv6())?;
                let name = udp::ask(to, Some(from)).map_err(io(format!(
                    "datagram {} of {n} to {to} from {from} (after {counts:?})",
                    k + 1
                )))?;
                *counts.entry(name).or_insert(0) += 1;
            }
            Ok(counts)
        })?
    }

    /// One datagram from the client to `to`, from a port no earlier connection of this lab used, sent
    /// once: unlike [`udp::ask`] it is never sent again, so an answer proves that this very datagram
    /// went through (in both directions). Waits up to [`ONCE_TIMEOUT`] for the answer.
    ///
    /// # Errors
    /// Bind or send failed, or no answer from `to` came.
    pub fn udp_once(&self, to: SocketAddr) -> Result<String, LabError> {
        let from = Self::take_port(&self.next_port, to.is_ipv6())?;
        self.topo
            .run_in(CLIENT, || -> std::io::Result<String> {
                let s = std::net::UdpSocket::bind(from)?;
                s.connect(to)?;
                s.set_read_timeout(Some(ONCE_TIMEOUT))?;
                s.send(b"hello\n")?;
                let mut buf = [0u8; 2048];
                let n = s.recv(&mut buf)?;
                Ok(String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
                    .trim_end()
                    .to_owned())
            })?
            .map_err(io(format!("one datagram to {to} from {from}")))
    }

    /// Deletes every neighbour entry of the director (both interfaces, both families), so that its next
    /// packets toward the client and the real servers find their next hop unresolved.
    ///
    /// # Errors
    /// ip failed.
    pub fn flush_director_neighbours(&self) -> Result<(), LabError> {
        for ifname in [CLIENT_IF, SERVER_IF] {
            for family in ["-4", "-6"] {
                self.topo
                    .ip(DIRECTOR, &[family, "neigh", "flush", "dev", ifname])?;
            }
        }
        Ok(())
    }

    /// The director's neighbour entries (`ip neigh show`), to explain a failure.
    ///
    /// # Errors
    /// ip failed.
    pub fn director_neighbours(&self) -> Result<String, LabError> {
        Ok(self.topo.ip(DIRECTOR, &["neigh", "show"])?)
    }

    /// Adds a VS/DR real server beside the NAT ones: `rs<n>` (n = [`NatLab::reals`] + 1) at
    /// 198.18.1.1n on the server-side network, IPv4 only, prepared by `rvs-realserver setup --vip VIP4`
    /// (DR mode), with HTTP on port 80 (DR cannot map ports) and UDP on [`UDP_PORT`]. Its default route
    /// is the director too: it answers the client, on the other network, straight from the VIP, and the
    /// director's kernel routes those replies (they match no NAT connection, so the program leaves them
    /// alone). Returns n.
    ///
    /// # Errors
    /// Any step failed.
    pub fn add_dr_server(&mut self) -> Result<usize, LabError> {
        let i = self.reals + 1;
        let name = real_name(i);
        self.topo.add_ns(&name)?;
        self.topo.plug(SWITCH, &name, CLIENT_IF)?;
        let cidr = format!("{}/24", real_ip4(i));
        self.topo.ip(&name, &["addr", "add", &cidr, "dev", CLIENT_IF])?;
        let gw = DIRECTOR_RS_IP4.to_string();
        self.topo
            .ip(&name, &["route", "add", "default", "via", &gw, "dev", CLIENT_IF])?;
        let out = self.topo.output_in(
            &name,
            Command::new("ethtool").args(["-K", CLIENT_IF, "tx", "off"]),
        )?;
        if !out.status.success() {
            return Err(LabError::Failed(format!(
                "ethtool -K tx off in {name}: {}",
                describe(&out)
            )));
        }
        let state = self.realserver_state_dir(i).display().to_string();
        let args = [
            "setup",
            "--vip",
            &VIP4.to_string(),
            "--dev",
            CLIENT_IF,
            "--state-dir",
            &state,
        ];
        let out = self.realserver(i, &args)?;
        if !out.status.success() {
            return Err(LabError::Failed(format!(
                "rvs-realserver {} in {name}: {}",
                args.join(" "),
                describe(&out)
            )));
        }
        // Same order as start_servers (httpd, udpd), which check_servers_alive relies on.
        for (what, script, port) in [("httpd", HTTPD6_PY, 80), ("udpd", UDPD6_PY, UDP_PORT)] {
            let log = self.log_file(&format!("{name}-{what}.log"))?;
            let child = self.topo.spawn_in(
                &name,
                Command::new("python3")
                    .args(["-c", script, &name, &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(io("dup log"))?)
                    .stderr(log),
            )?;
            self.servers.push(child);
        }
        self.reals = i;
        let addr = SocketAddr::new(IpAddr::V4(real_ip4(i)), 80);
        let got = wait::until(
            &format!("{name}'s HTTP server at {addr}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                self.check_servers_alive()?;
                self.topo
                    .run_in(DIRECTOR, || http::get_once(addr, None))?
                    .map_err(io(format!("GET {addr}")))
            },
        )?;
        if got != name {
            return Err(LabError::Failed(format!("{addr} answered {got:?}, not {name:?}")));
        }
        Ok(i)
    }

    /// Number of real servers.
    pub fn reals(&self) -> usize {
        self.reals
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.rvsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.pass.clear();
        // The real servers' records live in run_dir; their routes vanish with the namespaces.
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}
