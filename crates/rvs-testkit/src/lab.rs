//! A VS/DR lab in network namespaces: a client, a director running `rvsd`, and real servers prepared by
//! `rvs-realserver`, each running an HTTP server that answers with its name, all on one L2 segment.
//!
//! ```text
//!             netns sw: bridge br0 (ports named after the nodes)
//!   client 198.18.0.2   director 198.18.0.1 + VIP 198.18.0.100   rs1..rsN 198.18.0.11..
//! ```
//! Every node's interface is `eth0` with MAC `02:00:c6:12:00:<last octet>`. The director's XDP program
//! sends frames back out of `eth0` (XDP_TX); a veth delivers those only when its peer runs an XDP
//! program, so the switch port facing the director gets one from the caller (`attach_pass`): this
//! crate must not carry the C.
//!
//! The e2e tests and `cargo xtask demo` share this lab.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicU16;
use std::time::Duration;

use crate::http::{self, HttpConn};
pub use crate::labcore::describe;
use crate::labcore::{self, LabCore, io, tx_csum_off};
use crate::netns::{IfStats, NetnsError, Topology};
use crate::{udp, wait};

/// The virtual IP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The virtual service's port.
pub const PORT: u16 = 80;
/// The port of the UDP servers ([`DrLab::start_udp_servers`]) and of a UDP virtual service.
pub const UDP_PORT: u16 = 53;
/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The director's own address.
pub const DIRECTOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Interface name of every node.
pub const IFNAME: &str = "eth0";
/// Namespace (short name) of the client.
pub const CLIENT: &str = "client";
/// Namespace (short name) of the director.
pub const DIRECTOR: &str = "dir";
/// Namespace (short name) of the switch.
pub const SWITCH: &str = "sw";
/// Connection-table size of the lab's rvsd.
pub const LAB_CONN_MAX: u32 = labcore::LAB_CONN_MAX;
/// The client's connections to the VIP use source ports from here up, one each, below the kernel's
/// ephemeral range (32768 and up) so that nothing else in the client's namespace takes them.
pub const FIRST_CLIENT_PORT: u16 = labcore::FIRST_CLIENT_PORT;

/// Address of real server `i` (1-based): 198.18.0.1i.
pub fn real_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        0,
        10 + u8::try_from(i).expect("a handful of real servers"),
    )
}

/// The IPv6 VIP, once [`DrLab::enable_ipv6`] has put it on the director: 2001:db8::100.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// Address of node `last` on the IPv6 segment (1 = director, 2 = client, 0x1i = real server i).
pub fn ip6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// Real server `i`'s IPv6 address: 2001:db8::1i.
pub fn real_ip6(i: usize) -> Ipv6Addr {
    ip6(0x10 + u16::try_from(i).expect("a handful of real servers"))
}

/// Namespace (short name) and HTTP answer of real server `i` (1-based): `rs<i>`.
pub fn real_name(i: usize) -> String {
    format!("rs{i}")
}

/// `VIP:PORT`.
pub fn vip_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(VIP, PORT))
}

/// `VIP:UDP_PORT`.
pub fn vip_udp_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(VIP, UDP_PORT))
}

/// The protocol of a virtual service, as rvsadm selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `-t`.
    Tcp,
    /// `-u`.
    Udp,
}

impl Proto {
    /// rvsadm's option for a service of this protocol.
    pub fn flag(self) -> &'static str {
        match self {
            Proto::Tcp => "-t",
            Proto::Udp => "-u",
        }
    }
}

fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, 0xc6, 0x12, o[2], o[3]]
}

/// Something that keeps an XDP program attached while it lives (an `aya::Ebpf`, for instance).
pub type Keeper = Box<dyn std::any::Any + Send>;

/// Attaches an XDP_PASS program to interface `ifname` of namespace `ns` (short name) of the topology.
pub type AttachPass<'a> = &'a dyn Fn(&Topology, &str, &str) -> Result<Keeper, String>;

/// The programs the lab runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `rvsd`.
    pub rvsd: PathBuf,
    /// `rvsadm`.
    pub rvsadm: PathBuf,
    /// `rvs-realserver`.
    pub realserver: PathBuf,
}

/// What can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Building or entering a namespace.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A wait ran out.
    #[error(transparent)]
    Timeout(#[from] wait::Timeout),
    /// A file or socket operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A program of the lab failed; the message carries its output.
    #[error("{0}")]
    Failed(String),
}

/// The running lab. Drop stops every process it started and removes every namespace, pin and file it
/// created.
pub struct DrLab {
    core: LabCore,
    udp_started: bool,
}

impl DrLab {
    /// Turns IPv6 on across the segment (the lab starts with it off): [`ip6`] addresses on every node,
    /// [`VIP6`] on the director, and multicast snooping off on the switch. The real servers are left
    /// to the caller (`rvs-realserver setup --vip` with the mode it tests).
    ///
    /// # Errors
    /// A sysctl or `ip` command failed.
    pub fn enable_ipv6(&self) -> Result<(), LabError> {
        let t = self.topo();
        let mut nodes = vec![(CLIENT.to_owned(), ip6(2)), (DIRECTOR.to_owned(), ip6(1))];
        nodes.extend((1..=self.reals()).map(|i| (real_name(i), real_ip6(i))));
        for (node, ip) in &nodes {
            for conf in ["all", "default", IFNAME] {
                t.sysctl(node, &format!("net/ipv6/conf/{conf}/disable_ipv6"), "0")?;
            }
            // Duplicate address detection would hold each address back for a second or more.
            t.ip(
                node,
                &["addr", "add", &format!("{ip}/64"), "dev", IFNAME, "nodad"],
            )?;
        }
        // Deprecated at once: a /128 in the segment's /64 would otherwise win source address selection
        // (longest matching prefix) and become the director's source toward the real servers, which
        // hold the VIP themselves.
        let vip = format!("{VIP6}/128");
        t.ip(
            DIRECTOR,
            &["addr", "add", &vip, "dev", IFNAME, "nodad", "preferred_lft", "0"],
        )?;
        // Without an MLD querier, snooping could keep neighbour solicitations from some ports.
        t.ip(
            SWITCH,
            &["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"],
        )?;
        Ok(())
    }

    labcore::lab_common_methods!();

    /// Builds the namespaces and links, prepares and starts the real servers, and starts `rvsd` on the
    /// director (with no service configured).
    ///
    /// # Errors
    /// Any step failed; what was built so far is removed.
    pub fn start(bins: Binaries, reals: usize, attach_pass: AttachPass<'_>) -> Result<Self, LabError> {
        let mut lab = DrLab {
            core: LabCore::new(bins, reals)?,
            udp_started: false,
        };
        lab.build_network()?;
        lab.core
            .attach_pass(attach_pass, SWITCH, DIRECTOR, "the switch port")?;
        lab.start_servers()?;
        lab.start_rvsd()?;
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let t = &mut self.core.topo;
        t.add_switch(SWITCH)?;
        let mut nodes = vec![(CLIENT.to_owned(), CLIENT_IP), (DIRECTOR.to_owned(), DIRECTOR_IP)];
        nodes.extend((1..=self.core.reals).map(|i| (real_name(i), real_ip(i))));
        for (node, _) in &nodes {
            t.add_ns(node)?;
        }
        for ns in t
            .namespaces()
            .iter()
            .map(|n| n.short().to_owned())
            .collect::<Vec<_>>()
        {
            // No IPv6: its autoconfiguration chatter (DAD, router and MLD solicitations) would add
            // packets to the interface counters some tests compare.
            t.sysctl(&ns, "net/ipv6/conf/all/disable_ipv6", "1")?;
            t.sysctl(&ns, "net/ipv6/conf/default/disable_ipv6", "1")?;
        }
        for (node, ip) in &nodes {
            t.plug(SWITCH, node, IFNAME)?;
            t.set_mac(node, IFNAME, mac_of(*ip))?;
            t.addr(node, IFNAME, &format!("{ip}/24"))?;
            // The director's XDP_TX frames must carry complete checksums (see labcore::tx_csum_off).
            if node == CLIENT {
                tx_csum_off(t, node, IFNAME)?;
            }
        }
        t.addr(DIRECTOR, IFNAME, &format!("{VIP}/32"))?;
        for i in 1..=self.core.reals {
            let state = self.realserver_state_dir(i).display().to_string();
            let out = self.realserver(i, &["setup", "--vip", &VIP.to_string(), "--state-dir", &state])?;
            if !out.status.success() {
                return Err(LabError::Failed(format!(
                    "rvs-realserver setup: {}",
                    describe(&out)
                )));
            }
        }
        Ok(())
    }

    fn start_servers(&mut self) -> Result<(), LabError> {
        for i in 1..=self.core.reals {
            let name = real_name(i);
            self.core.spawn_server(
                &name,
                format!("HTTP server {name}"),
                format!("{name}-httpd.log"),
                http::HTTPD_PY,
                &[&name, &PORT.to_string()],
            )?;
        }
        // Ask every server from the director: it proves the server is up and the segment forwards, and
        // it fills the director's neighbour table, which rvsd reads the real servers' MACs from.
        for i in 1..=self.core.reals {
            let addr = SocketAddr::V4(SocketAddrV4::new(real_ip(i), PORT));
            let want = real_name(i);
            let got = wait::until(
                &format!("{want}'s HTTP server at {addr}"),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    self.core.check_servers_alive()?;
                    let body = self
                        .core
                        .topo
                        .run_in(DIRECTOR, || http::get_once(addr, None))?
                        .map_err(io(format!("GET {addr}")))?;
                    Ok::<_, LabError>(body)
                },
            )?;
            if got != want {
                return Err(LabError::Failed(format!("{addr} answered {got:?}, not {want:?}")));
            }
        }
        Ok(())
    }

    /// Starts a UDP server ([`udp::UDPD_PY`]) on `VIP:UDP_PORT` in every real server, answering with
    /// the real server's name, and waits until each answers a datagram sent inside its own namespace.
    ///
    /// # Errors
    /// They are already running, or one did not start or answer in time.
    pub fn start_udp_servers(&mut self) -> Result<(), LabError> {
        if self.udp_started {
            return Err(LabError::Failed("the UDP servers are already running".into()));
        }
        self.udp_started = true;
        for i in 1..=self.core.reals {
            let name = real_name(i);
            self.core.spawn_server(
                &name,
                format!("UDP server {name}"),
                format!("{name}-udpd.log"),
                udp::UDPD_PY,
                &[&name, &VIP.to_string(), &UDP_PORT.to_string()],
            )?;
        }
        // The VIP is a local address of every real server, so a datagram from inside reaches that
        // server's own socket without crossing the segment.
        for i in 1..=self.core.reals {
            let want = real_name(i);
            let got = wait::until(
                &format!("{want}'s UDP server at {}", vip_udp_addr()),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    self.core.check_servers_alive()?;
                    self.core
                        .topo
                        .run_in(&want, || udp::ask(vip_udp_addr(), None))?
                        .map_err(io(format!("ask {}", vip_udp_addr())))
                },
            )?;
            if got != want {
                return Err(LabError::Failed(format!("{want}'s UDP server answered {got:?}")));
            }
        }
        Ok(())
    }

    /// `rvsd`'s state directory (rules file).
    pub fn state_dir(&self) -> PathBuf {
        self.core.state_dir()
    }

    /// `rvsd`'s pin directory under /sys/fs/bpf.
    pub fn pin_dir(&self) -> &Path {
        self.core.pin_dir()
    }

    /// The lab's scratch directory (logs, sockets, state).
    pub fn run_dir(&self) -> &Path {
        self.core.run_dir()
    }

    /// `rvsd`'s command line, without the program.
    pub fn rvsd_args(&self) -> Vec<String> {
        self.core.rvsd_args(&[IFNAME])
    }

    /// Starts `rvsd` in the director's namespace and waits until it answers `rvsadm -Ln`.
    ///
    /// # Errors
    /// It is already running, could not start, exited, or did not answer in time.
    pub fn start_rvsd(&mut self) -> Result<(), LabError> {
        let args = self.rvsd_args();
        self.core.start_rvsd(DIRECTOR, &args)
    }

    /// Starts `rvsd ARGS` (e.g. [`DrLab::rvsd_args`] with an option changed) in the director's namespace
    /// and waits until it answers `rvsadm -Ln`.
    ///
    /// # Errors
    /// As [`DrLab::start_rvsd`].
    pub fn start_rvsd_with(&mut self, args: &[String]) -> Result<(), LabError> {
        self.core.start_rvsd(DIRECTOR, args)
    }

    /// Kills `rvsd` with SIGKILL (no chance to clean up: what survives is what is pinned) and reaps it.
    ///
    /// # Errors
    /// It was not running.
    pub fn kill_rvsd(&mut self) -> Result<(), LabError> {
        self.core.kill_rvsd()
    }

    /// Sends SIGTERM to `rvsd` and waits for it to exit. Returns its exit status.
    ///
    /// # Errors
    /// It was not running, or did not exit within 20 s (it is then killed).
    pub fn stop_rvsd(&mut self) -> Result<std::process::ExitStatus, LabError> {
        self.core.stop_rvsd()
    }

    /// Runs `rvsadm ARGS` with `input` on its standard input.
    ///
    /// # Errors
    /// The program could not be started or fed.
    pub fn rvsadm_stdin(&self, args: &[&str], input: &str) -> Result<Output, LabError> {
        self.core.rvsadm_stdin(args, input)
    }

    /// Adds the service `VIP:80` with scheduler `sched` and one DR real server per weight, rs1 first.
    ///
    /// # Errors
    /// rvsadm refused something.
    pub fn add_service(&self, sched: &str, weights: &[u32]) -> Result<(), LabError> {
        self.add_service_on(Proto::Tcp, PORT, sched, weights)
    }

    /// Adds the service `VIP:port` of protocol `proto` with scheduler `sched` and one DR real server
    /// `real_ip(i):port` per weight, rs1 first.
    ///
    /// # Errors
    /// rvsadm refused something.
    pub fn add_service_on(
        &self,
        proto: Proto,
        port: u16,
        sched: &str,
        weights: &[u32],
    ) -> Result<(), LabError> {
        let svc = SocketAddr::V4(SocketAddrV4::new(VIP, port)).to_string();
        self.rvsadm_ok(&["-A", proto.flag(), &svc, "-s", sched])?;
        for (i, w) in weights.iter().enumerate() {
            let rs = SocketAddr::V4(SocketAddrV4::new(real_ip(i + 1), port)).to_string();
            self.rvsadm_ok(&["-a", proto.flag(), &svc, "-r", &rs, "-g", "-w", &w.to_string()])?;
        }
        Ok(())
    }

    /// A source address for the next client connection: the client's address and a port no earlier
    /// connection of this lab used.
    ///
    /// # Errors
    /// The lab has used all of its ports.
    pub fn client_source(&self) -> Result<SocketAddr, LabError> {
        take_port(&self.core.next_port)
    }

    /// One request from the client to the VIP on a new connection; returns the name that answered.
    ///
    /// # Errors
    /// The request failed.
    pub fn get(&self) -> Result<String, LabError> {
        let from = self.client_source()?;
        self.core
            .topo
            .run_in(CLIENT, || http::get_once(vip_addr(), Some(from)))?
            .map_err(io(format!("GET {} from {from}", vip_addr())))
    }

    /// `n` requests from the client to the VIP, one new connection each, one after the other, each from
    /// its own source port. Returns how many each name answered.
    ///
    /// # Errors
    /// Any request failed (the error says which one and how many had succeeded).
    pub fn spread(&self, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let ports = &self.core.next_port;
        self.core.topo.run_in(CLIENT, || {
            labcore::spread(
                n,
                "request",
                "",
                || take_port(ports),
                |from| http::get_once(vip_addr(), Some(from)),
            )
        })?
    }

    /// A kept-alive connection from the client to the VIP.
    ///
    /// # Errors
    /// The connection failed.
    pub fn connect(&self) -> Result<HttpConn, LabError> {
        let from = self.client_source()?;
        self.core
            .topo
            .run_in(CLIENT, || HttpConn::connect(vip_addr(), Some(from)))?
            .map_err(io(format!("connect to {} from {from}", vip_addr())))
    }

    /// One datagram from the client to `VIP:UDP_PORT`, from a source port no earlier connection of this
    /// lab used (sent again from the same port if lost, see [`udp::ask`]). Returns that source address and
    /// the name that answered.
    ///
    /// # Errors
    /// No answer.
    pub fn udp_ask(&self) -> Result<(SocketAddr, String), LabError> {
        let from = self.client_source()?;
        let name = self
            .core
            .topo
            .run_in(CLIENT, || udp::ask(vip_udp_addr(), Some(from)))?
            .map_err(io(format!("ask {} from {from}", vip_udp_addr())))?;
        Ok((from, name))
    }

    /// Counters of `eth0` in namespace `node` (short name).
    ///
    /// # Errors
    /// Unknown namespace.
    pub fn if_stats(&self, node: &str) -> Result<IfStats, LabError> {
        Ok(self.core.topo.if_stats(node, IFNAME)?)
    }
}

fn take_port(next: &AtomicU16) -> Result<SocketAddr, LabError> {
    Ok(SocketAddr::V4(SocketAddrV4::new(
        CLIENT_IP,
        labcore::take_port(next)?,
    )))
}
