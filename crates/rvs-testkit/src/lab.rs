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
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::http::{self, HttpConn};
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
pub const LAB_CONN_MAX: u32 = 65_536;
/// The client's connections to the VIP use source ports from here up, one each, below the kernel's
/// ephemeral range (32768 and up) so that nothing else in the client's namespace takes them.
pub const FIRST_CLIENT_PORT: u16 = 10_000;
const LAST_CLIENT_PORT: u16 = 32_767;

/// Address of real server `i` (1-based): 198.18.0.1i.
pub fn real_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        0,
        10 + u8::try_from(i).expect("a handful of real servers"),
    )
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

/// The running lab. Drop stops every process it started and removes every namespace, pin and file it
/// created.
pub struct DrLab {
    // Drop order matters: the processes go first (Drop below), then the programs, then the namespaces.
    rvsd: Option<Child>,
    servers: Vec<Child>,
    udp_servers: Vec<Child>,
    pass: Vec<Keeper>,
    bins: Binaries,
    reals: usize,
    run_dir: PathBuf,
    pin_dir: PathBuf,
    /// Next source port of the client (see [`http::connect`] for why each connection gets its own).
    next_port: AtomicU16,
    topo: Topology,
}

impl DrLab {
    /// Builds the namespaces and links, prepares and starts the real servers, and starts `rvsd` on the
    /// director (with no service configured).
    ///
    /// # Errors
    /// Any step failed; what was built so far is removed.
    pub fn start(bins: Binaries, reals: usize, attach_pass: AttachPass<'_>) -> Result<Self, LabError> {
        let topo = Topology::new();
        let run_dir = std::env::temp_dir().join(topo.prefix());
        let pin_dir = Path::new("/sys/fs/bpf").join(topo.prefix());
        let mut lab = DrLab {
            rvsd: None,
            servers: Vec::new(),
            udp_servers: Vec::new(),
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
        let keeper = attach_pass(&lab.topo, SWITCH, DIRECTOR).map_err(|e| {
            LabError::Failed(format!(
                "cannot attach the XDP_PASS program to the switch port: {e}"
            ))
        })?;
        lab.pass.push(keeper);
        lab.start_servers()?;
        lab.start_rvsd()?;
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let t = &mut self.topo;
        t.add_switch(SWITCH)?;
        let mut nodes = vec![(CLIENT.to_owned(), CLIENT_IP), (DIRECTOR.to_owned(), DIRECTOR_IP)];
        nodes.extend((1..=self.reals).map(|i| (real_name(i), real_ip(i))));
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
            // The kernel leaves TCP checksums to the "hardware" on a veth (CHECKSUM_PARTIAL). A frame
            // that the director's XDP program sends back out with XDP_TX is raw bytes without that
            // note, so the real server would get a half-computed checksum and drop it. Real NICs hand
            // XDP complete frames; make the client's veth do the same.
            if node == CLIENT {
                let out = t.output_in(node, Command::new("ethtool").args(["-K", IFNAME, "tx", "off"]))?;
                if !out.status.success() {
                    return Err(LabError::Failed(format!("ethtool -K tx off: {}", describe(&out))));
                }
            }
        }
        t.addr(DIRECTOR, IFNAME, &format!("{VIP}/32"))?;
        for i in 1..=self.reals {
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

    /// Runs `rvs-realserver ARGS` in real server `i`'s namespace. The lab gives each real server its own
    /// `--state-dir` ([`DrLab::realserver_state_dir`]): the default is shared by all namespaces.
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
            let log = self.log_file(&format!("{name}-httpd.log"))?;
            let child = self.topo.spawn_in(
                &name,
                Command::new("python3")
                    .args(["-c", http::HTTPD_PY, &name, &PORT.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(io("dup log"))?)
                    .stderr(log),
            )?;
            self.servers.push(child);
        }
        // Ask every server from the director: it proves the server is up and the segment forwards, and
        // it fills the director's neighbour table, which rvsd reads the real servers' MACs from.
        for i in 1..=self.reals {
            let addr = SocketAddr::V4(SocketAddrV4::new(real_ip(i), PORT));
            let want = real_name(i);
            let got = wait::until(
                &format!("{want}'s HTTP server at {addr}"),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    self.check_servers_alive()?;
                    let body = self
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
        if !self.udp_servers.is_empty() {
            return Err(LabError::Failed("the UDP servers are already running".into()));
        }
        for i in 1..=self.reals {
            let name = real_name(i);
            let log = self.log_file(&format!("{name}-udpd.log"))?;
            let child = self.topo.spawn_in(
                &name,
                Command::new("python3")
                    .args(["-c", udp::UDPD_PY, &name, &VIP.to_string(), &UDP_PORT.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(io("dup log"))?)
                    .stderr(log),
            )?;
            self.udp_servers.push(child);
        }
        // The VIP is a local address of every real server, so a datagram from inside reaches that
        // server's own socket without crossing the segment.
        for i in 1..=self.reals {
            let want = real_name(i);
            let got = wait::until(
                &format!("{want}'s UDP server at {}", vip_udp_addr()),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    if let Some(c) = self.udp_servers.get_mut(i - 1)
                        && let Some(status) = c.try_wait().map_err(io("wait for a UDP server"))?
                    {
                        let log = fs::read_to_string(self.run_dir.join(format!("{want}-udpd.log")))
                            .unwrap_or_default();
                        return Err(LabError::Failed(format!(
                            "UDP server {want} exited ({status}):\n{log}"
                        )));
                    }
                    self.topo
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

    fn check_servers_alive(&mut self) -> Result<(), LabError> {
        for (i, c) in self.servers.iter_mut().enumerate() {
            if let Some(status) = c.try_wait().map_err(io("wait for an HTTP server"))? {
                let log = fs::read_to_string(self.run_dir.join(format!("rs{}-httpd.log", i + 1)))
                    .unwrap_or_default();
                return Err(LabError::Failed(format!(
                    "HTTP server rs{} exited ({status}):\n{log}",
                    i + 1
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

    /// `rvsd`'s state directory (rules file).
    pub fn state_dir(&self) -> PathBuf {
        self.run_dir.join("state")
    }

    /// `rvsd`'s pin directory under /sys/fs/bpf.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The lab's scratch directory (logs, sockets, state).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The namespaces.
    pub fn topo(&self) -> &Topology {
        &self.topo
    }

    /// `rvsd`'s command line, without the program.
    pub fn rvsd_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            IFNAME.into(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            // Tests run several directors at once; the default table (1,048,576 entries) would
            // preallocate far more memory than a lab uses.
            "--conn-max".into(),
            LAB_CONN_MAX.to_string(),
        ]
    }

    /// Everything `rvsd` has printed so far (across restarts).
    pub fn rvsd_log(&self) -> String {
        fs::read_to_string(self.run_dir.join("rvsd.log")).unwrap_or_default()
    }

    /// Starts `rvsd` in the director's namespace and waits until it answers `rvsadm -Ln`.
    ///
    /// # Errors
    /// It is already running, could not start, exited, or did not answer in time.
    pub fn start_rvsd(&mut self) -> Result<(), LabError> {
        if self.rvsd.is_some() {
            return Err(LabError::Failed("rvsd is already running".into()));
        }
        let mut log = self.log_file("rvsd.log")?;
        writeln!(log, "=== rvsd {}", self.rvsd_args().join(" ")).map_err(io("write rvsd.log"))?;
        let child = self.topo.spawn_in(
            DIRECTOR,
            Command::new(&self.bins.rvsd)
                .args(self.rvsd_args())
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
        .map_err(|e| match e.last {
            Some(ref l) if l.starts_with("rvsd exited") => LabError::Failed(l.clone()),
            _ => LabError::Failed(format!("{e}\nrvsd log:\n{}", self.rvsd_log())),
        })
    }

    /// Kills `rvsd` with SIGKILL (no chance to clean up: what survives is what is pinned) and reaps it.
    ///
    /// # Errors
    /// It was not running.
    pub fn kill_rvsd(&mut self) -> Result<(), LabError> {
        let mut c = self
            .rvsd
            .take()
            .ok_or_else(|| LabError::Failed("rvsd is not running".into()))?;
        c.kill().map_err(io("kill rvsd"))?;
        c.wait().map_err(io("wait for rvsd"))?;
        Ok(())
    }

    /// Sends SIGTERM to `rvsd` and waits for it to exit. Returns its exit status.
    ///
    /// # Errors
    /// It was not running, or did not exit within 20 s (it is then killed).
    pub fn stop_rvsd(&mut self) -> Result<std::process::ExitStatus, LabError> {
        let mut c = self
            .rvsd
            .take()
            .ok_or_else(|| LabError::Failed("rvsd is not running".into()))?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pids fit i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .map_err(|e| LabError::Failed(format!("SIGTERM rvsd: {e}")))?;
        let r = wait::until(
            "rvsd to exit after SIGTERM",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || match c.try_wait() {
                Ok(Some(s)) => Ok(s),
                Ok(None) => Err("still running".to_owned()),
                Err(e) => Err(e.to_string()),
            },
        );
        if r.is_err() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(r?)
    }

    /// Runs `rvsadm ARGS` against this lab's daemon.
    ///
    /// # Errors
    /// The program could not be started.
    pub fn rvsadm(&self, args: &[&str]) -> Result<Output, LabError> {
        self.rvsadm_stdin(args, "")
    }

    /// Runs `rvsadm ARGS` with `input` on its standard input.
    ///
    /// # Errors
    /// The program could not be started or fed.
    pub fn rvsadm_stdin(&self, args: &[&str], input: &str) -> Result<Output, LabError> {
        let mut child = Command::new(&self.bins.rvsadm)
            .args(args)
            .env("RVS_SOCKET", self.socket())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("run {}", self.bins.rvsadm.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        // A refused batch may make rvsadm exit before reading all of it; that is not an error here.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        child.wait_with_output().map_err(io("wait for rvsadm"))
    }

    /// Runs `rvsadm ARGS` and returns its stdout; a non-zero exit is an error.
    ///
    /// # Errors
    /// As [`DrLab::rvsadm`], or rvsadm failed.
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
        take_port(&self.next_port)
    }

    /// One request from the client to the VIP on a new connection; returns the name that answered.
    ///
    /// # Errors
    /// The request failed.
    pub fn get(&self) -> Result<String, LabError> {
        let from = self.client_source()?;
        self.topo
            .run_in(CLIENT, || http::get_once(vip_addr(), Some(from)))?
            .map_err(io(format!("GET {} from {from}", vip_addr())))
    }

    /// `n` requests from the client to the VIP, one new connection each, one after the other, each from
    /// its own source port. Returns how many each name answered.
    ///
    /// # Errors
    /// Any request failed (the error says which one and how many had succeeded).
    pub fn spread(&self, n: usize) -> Result<BTreeMap<String, usize>, LabError> {
        let ports = &self.next_port;
        self.topo.run_in(CLIENT, || {
            let mut counts = BTreeMap::new();
            for k in 0..n {
                let from = take_port(ports)?;
                let name = http::get_once(vip_addr(), Some(from)).map_err(io(format!(
                    "request {} of {n} from {from} (after {counts:?})",
                    k + 1
                )))?;
                *counts.entry(name).or_insert(0) += 1;
            }
            Ok(counts)
        })?
    }

    /// A kept-alive connection from the client to the VIP.
    ///
    /// # Errors
    /// The connection failed.
    pub fn connect(&self) -> Result<HttpConn, LabError> {
        let from = self.client_source()?;
        self.topo
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
        Ok(self.topo.if_stats(node, IFNAME)?)
    }

    /// Number of real servers.
    pub fn reals(&self) -> usize {
        self.reals
    }
}

fn take_port(next: &AtomicU16) -> Result<SocketAddr, LabError> {
    let port = next.fetch_add(1, Ordering::Relaxed);
    if !(FIRST_CLIENT_PORT..=LAST_CLIENT_PORT).contains(&port) {
        return Err(LabError::Failed(format!(
            "the lab has used all of its client ports ({FIRST_CLIENT_PORT}-{LAST_CLIENT_PORT})"
        )));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(CLIENT_IP, port)))
}

impl Drop for DrLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.rvsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mut c in self.servers.drain(..).chain(self.udp_servers.drain(..)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.pass.clear();
        // Removing the pins releases the director's program, link and maps; deleting the namespaces
        // (when `topo` drops next) removes the interfaces, which detaches anything left.
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}
