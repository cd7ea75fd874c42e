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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::AtomicU16;
use std::time::Duration;

use crate::lab::{AttachPass, Binaries, LabError, Proto};
/// The namespaces (short names) of the client, the director and the real servers' switch, the real
/// servers' names (`rs<i>`, also their answer), the connection-table size of the lab's rvsd and the
/// client's first source port are the VS/DR lab's.
pub use crate::lab::{CLIENT, DIRECTOR, FIRST_CLIENT_PORT, LAB_CONN_MAX, SWITCH, real_name};
use crate::labcore::{self, LabCore, describe, io, tx_csum_off};
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
/// The director's client-side interface (and the interface of the client and of every real server).
pub const CLIENT_IF: &str = "eth0";
/// The director's server-side interface.
pub const SERVER_IF: &str = "eth1";
/// How long [`NatLab::udp_once`] waits for its answer: far longer than a neighbour resolution on a
/// veth takes, so that only a lost datagram makes it fail.
pub const ONCE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The running NAT lab. Drop stops every process it started and removes every namespace, pin and file
/// it created.
pub struct NatLab {
    core: LabCore,
}

impl NatLab {
    labcore::lab_common_methods!();

    /// Builds the namespaces and links, prepares the real servers (`rvs-realserver setup --mode nat`
    /// for both families), starts their HTTP and UDP servers, and starts `rvsd` on both director
    /// interfaces (with no service configured).
    ///
    /// # Errors
    /// Any step failed; what was built so far is removed.
    pub fn start(bins: Binaries, reals: usize, attach_pass: AttachPass<'_>) -> Result<Self, LabError> {
        let mut lab = NatLab {
            core: LabCore::new(bins, reals)?,
        };
        lab.build_network()?;
        for (ns, ifname) in [(SWITCH, DIRECTOR), (CLIENT, CLIENT_IF)] {
            lab.core
                .attach_pass(attach_pass, ns, ifname, &format!("{ns}/{ifname}"))?;
        }
        lab.setup_realservers()?;
        lab.start_servers()?;
        lab.start_rvsd()?;
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let t = &mut self.core.topo;
        t.add_switch(SWITCH)?;
        // Without an MLD querier, multicast snooping may keep the neighbour solicitations for the real
        // servers' IPv6 addresses from the ports that need them.
        t.ip(
            SWITCH,
            &["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"],
        )?;
        t.add_ns(CLIENT)?;
        t.add_ns(DIRECTOR)?;
        for i in 1..=self.core.reals {
            t.add_ns(&real_name(i))?;
        }
        t.veth(CLIENT, CLIENT_IF, DIRECTOR, CLIENT_IF)?;
        t.plug(SWITCH, DIRECTOR, SERVER_IF)?;
        for i in 1..=self.core.reals {
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
        for i in 1..=self.core.reals {
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
        // The frames the director redirects must carry complete checksums (see labcore::tx_csum_off).
        let mut senders = vec![CLIENT.to_owned()];
        senders.extend((1..=self.core.reals).map(real_name));
        for node in &senders {
            tx_csum_off(t, node, CLIENT_IF)?;
        }
        Ok(())
    }

    /// Runs `rvs-realserver ARGS` in real server `i`'s namespace; a non-zero exit is an error.
    fn realserver_ok(&self, i: usize, args: &[&str]) -> Result<(), LabError> {
        let out = self.realserver(i, args)?;
        if !out.status.success() {
            return Err(LabError::Failed(format!(
                "rvs-realserver {} in {}: {}",
                args.join(" "),
                real_name(i),
                describe(&out)
            )));
        }
        Ok(())
    }

    fn setup_realservers(&self) -> Result<(), LabError> {
        for i in 1..=self.core.reals {
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
                self.realserver_ok(i, &args)?;
            }
        }
        Ok(())
    }

    /// Starts real server `i`'s HTTP server on `http_port` and its UDP server on [`UDP_PORT`].
    fn spawn_servers(&mut self, i: usize, http_port: u16) -> Result<(), LabError> {
        let name = real_name(i);
        for (what, script, port) in [
            ("httpd", http::HTTPD6_PY, http_port),
            ("udpd", UDPD6_PY, UDP_PORT),
        ] {
            self.core.spawn_server(
                &name,
                format!("{what} of {name}"),
                format!("{name}-{what}.log"),
                script,
                &[&name, &port.to_string()],
            )?;
        }
        Ok(())
    }

    fn start_servers(&mut self) -> Result<(), LabError> {
        for i in 1..=self.core.reals {
            self.spawn_servers(i, HTTP_PORT)?;
        }
        // Ask every server from the director, in both families: it proves the servers are up and the
        // network forwards, and it fills the director's neighbour tables.
        for i in 1..=self.core.reals {
            let want = real_name(i);
            for v6 in [false, true] {
                let http_addr = SocketAddr::new(real_ip(i, v6), HTTP_PORT);
                let udp_addr = SocketAddr::new(real_ip(i, v6), UDP_PORT);
                let got = wait::until(
                    &format!("{want}'s servers at {http_addr} and {udp_addr}"),
                    Duration::from_secs(20),
                    Duration::from_millis(100),
                    || {
                        self.core.check_servers_alive()?;
                        self.core.topo.run_in(DIRECTOR, || {
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

    fn start_rvsd(&mut self) -> Result<(), LabError> {
        let args = self.core.rvsd_args(&[CLIENT_IF, SERVER_IF]);
        self.core.start_rvsd(DIRECTOR, &args)
    }

    /// Kills `rvsd` (SIGKILL) and starts it again with its usual arguments and `extra`: the new daemon
    /// adopts the pinned data plane, so the table and the connections (persistence templates included)
    /// carry over. It is how a test changes a setting that only rvsd's command line sets.
    ///
    /// # Errors
    /// rvsd was not running, or the new one did not start or answer in time.
    pub fn restart_rvsd_with(&mut self, extra: &[&str]) -> Result<(), LabError> {
        self.core.kill_rvsd()?;
        let mut args = self.core.rvsd_args(&[CLIENT_IF, SERVER_IF]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        self.core.start_rvsd(DIRECTOR, &args)
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
        for i in 1..=self.core.reals {
            let rs = SocketAddr::new(real_ip(i, v6), rport).to_string();
            self.rvsadm_ok(&["-a", proto.flag(), &svc, "-r", &rs, "-m"])?;
        }
        Ok(svc)
    }

    fn take_port(next: &AtomicU16, v6: bool) -> Result<SocketAddr, LabError> {
        let port = labcore::take_port(next)?;
        let ip = if v6 {
            IpAddr::V6(CLIENT_IP6)
        } else {
            IpAddr::V4(CLIENT_IP4)
        };
        Ok(SocketAddr::new(ip, port))
    }

    /// `n` questions from the client to `to`, each from its own source port, asked by `ask`.
    fn spread(
        &self,
        to: SocketAddr,
        n: usize,
        noun: &str,
        ask: impl Fn(SocketAddr) -> std::io::Result<String> + Send,
    ) -> Result<BTreeMap<String, usize>, LabError> {
        let ports = &self.core.next_port;
        let dest = format!(" to {to}");
        self.core.topo.run_in(CLIENT, || {
            labcore::spread(n, noun, &dest, || Self::take_port(ports, to.is_ipv6()), ask)
        })?
    }

    /// `n` HTTP requests from the client to `to`, one new connection each from its own source port.
    /// Returns how many each name answered.
    ///
    /// # Errors
    /// Any request failed (the error says which one and how many had succeeded).
    pub fn http_spread(&self, to: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        self.spread(to, n, "request", |from| http::get_once(to, Some(from)))
    }

    /// `n` UDP questions from the client to `to`, each from its own source port on a socket connected
    /// to `to`, which therefore accepts only answers whose source is `to`. Returns how many each name
    /// answered.
    ///
    /// # Errors
    /// A question got no answer from `to`.
    pub fn udp_spread(&self, to: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        self.spread(to, n, "datagram", |from| udp::ask(to, Some(from)))
    }

    /// One datagram from the client to `to`, from a port no earlier connection of this lab used, sent
    /// once: unlike [`udp::ask`] it is never sent again, so an answer proves that this very datagram
    /// went through (in both directions). Waits up to [`ONCE_TIMEOUT`] for the answer.
    ///
    /// # Errors
    /// Bind or send failed, or no answer from `to` came.
    pub fn udp_once(&self, to: SocketAddr) -> Result<String, LabError> {
        let from = Self::take_port(&self.core.next_port, to.is_ipv6())?;
        self.core
            .topo
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
                self.core
                    .topo
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
        Ok(self.core.topo.ip(DIRECTOR, &["neigh", "show"])?)
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
        let i = self.core.reals + 1;
        let name = real_name(i);
        self.core.topo.add_ns(&name)?;
        self.core.topo.plug(SWITCH, &name, CLIENT_IF)?;
        let cidr = format!("{}/24", real_ip4(i));
        self.core
            .topo
            .ip(&name, &["addr", "add", &cidr, "dev", CLIENT_IF])?;
        let gw = DIRECTOR_RS_IP4.to_string();
        self.core
            .topo
            .ip(&name, &["route", "add", "default", "via", &gw, "dev", CLIENT_IF])?;
        tx_csum_off(&self.core.topo, &name, CLIENT_IF)?;
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
        self.realserver_ok(i, &args)?;
        self.spawn_servers(i, 80)?;
        self.core.reals = i;
        let addr = SocketAddr::new(IpAddr::V4(real_ip4(i)), 80);
        let got = wait::until(
            &format!("{name}'s HTTP server at {addr}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                self.core.check_servers_alive()?;
                self.core
                    .topo
                    .run_in(DIRECTOR, || http::get_once(addr, None))?
                    .map_err(io(format!("GET {addr}")))
            },
        )?;
        if got != name {
            return Err(LabError::Failed(format!("{addr} answered {got:?}, not {name:?}")));
        }
        Ok(i)
    }
}
