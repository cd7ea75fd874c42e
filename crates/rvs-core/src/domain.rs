//! Services, real servers and the commands that change them, as ipvsadm names them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// `-t`
    Tcp,
    /// `-u`
    Udp,
    /// `-f MARK`: a firewall-mark service, whose [`ServiceKey`] carries the mark in its address (see
    /// [`ServiceKey::fwmark`]). Never the protocol of a packet or a mark match.
    Fwmark,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            // rvs_abi::SVC_PROTO_FWMARK: the data plane's key of a mark service.
            Protocol::Fwmark => 0,
        }
    }
    /// Name as ipvsadm lists it (`TCP`, `UDP`, `FWM`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Fwmark => "FWM",
        }
    }
    /// The selector flag (`-t`, `-u`, `-f`).
    pub fn flag(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
            Protocol::Fwmark => "-f",
        }
    }
    /// The lower-case name of a mark match's protocol (`tcp`, `udp`).
    pub fn match_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Fwmark => "fwm",
        }
    }
}

/// Identifies a virtual service: protocol, virtual address, virtual port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Protocol.
    pub proto: Protocol,
    /// Virtual address.
    pub addr: IpAddr,
    /// Virtual port (0 only for persistent services).
    pub port: u16,
}

impl ServiceKey {
    /// The key of firewall-mark service `mark` (`-f MARK`, with `-6` when `ipv6`): protocol
    /// [`Protocol::Fwmark`], port 0, and the mark as the address's last 32 bits, so that the address's
    /// family is the service's and keys of different marks differ.
    pub fn fwmark(mark: u32, ipv6: bool) -> Self {
        let addr = if ipv6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(mark)))
        } else {
            IpAddr::V4(Ipv4Addr::from(mark))
        };
        ServiceKey {
            proto: Protocol::Fwmark,
            addr,
            port: 0,
        }
    }

    /// The mark of a firewall-mark service, `None` for a service by address.
    pub fn mark(&self) -> Option<u32> {
        if self.proto != Protocol::Fwmark {
            return None;
        }
        Some(match self.addr {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => u128::from(a) as u32,
        })
    }

    /// The selector as `-S` writes it: `-t 198.18.0.100:80`, `-f 7`, `-f 7 -6`.
    pub fn rule_selector(&self) -> String {
        match self.mark() {
            Some(m) if self.addr.is_ipv6() => format!("-f {m} -6"),
            Some(m) => format!("-f {m}"),
            None => format!("{} {}", self.proto.flag(), SockAddrFmt(self.addr, self.port)),
        }
    }

    /// The name of a firewall-mark service in `-L` listings (after `FWM  `): `7`, `7 IPv6`.
    pub fn fwmark_list_name(&self) -> Option<String> {
        let m = self.mark()?;
        Some(if self.addr.is_ipv6() {
            format!("{m} IPv6")
        } else {
            m.to_string()
        })
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 198.18.0.100:80` / `TCP [2001:db8::1]:80` / `FWM 7` / `FWM 7 IPv6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fwmark_list_name() {
            Some(name) => write!(f, "FWM {name}"),
            None => write!(f, "{} {}", self.proto.name(), SockAddrFmt(self.addr, self.port)),
        }
    }
}

/// One match of a firewall mark (`--match PROTO:ADDR/PREFIX:PORTS`): packets of protocol `proto` to an
/// address in `addr/prefix` and a destination port in `ports`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MarkMatch {
    /// [`Protocol::Tcp`] or [`Protocol::Udp`].
    pub proto: Protocol,
    /// The prefix's address; bits after `prefix` are zero.
    pub addr: IpAddr,
    /// Prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
    /// First destination port.
    pub port_lo: u16,
    /// Last destination port (inclusive, at least `port_lo`).
    pub port_hi: u16,
}

impl fmt::Display for MarkMatch {
    /// As `--match` takes it: `tcp:198.18.0.100/32:80-90`, `udp:[2001:db8::]/64:53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.proto.match_name())?;
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}", self.prefix)?,
            IpAddr::V6(a) => write!(f, "[{a}]/{}", self.prefix)?,
        }
        if self.port_lo == self.port_hi {
            write!(f, ":{}", self.port_lo)
        } else {
            write!(f, ":{}-{}", self.port_lo, self.port_hi)
        }
    }
}

impl MarkMatch {
    /// Whether two matches compete for the same packets at the same specificity: same protocol and
    /// prefix, overlapping port ranges. (Of nested prefixes the longer one wins, so they never compete.)
    pub fn overlaps(&self, other: &MarkMatch) -> bool {
        self.proto == other.proto
            && self.prefix == other.prefix
            && self.addr == other.addr
            && self.port_lo <= other.port_hi
            && other.port_lo <= self.port_hi
    }
}

/// A firewall mark as declared (`--add-mark MARK --match ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The mark, 1..=u32::MAX.
    pub mark: u32,
    /// Its matches, in the order given.
    pub matches: Vec<MarkMatch>,
}

/// Formats `addr:port` the ipvsadm way: IPv6 addresses in brackets.
#[derive(Clone, Copy, Debug)]
pub struct SockAddrFmt(pub IpAddr, pub u16);

impl fmt::Display for SockAddrFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Forwarding method of a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FwdMethod {
    /// `-g`, listed as `Route` (ipvsadm's default).
    #[default]
    Route,
    /// `-m`, listed as `Masq`.
    Masq,
    /// `-i`, listed as `Tunnel`.
    Tunnel,
}

impl FwdMethod {
    /// Name in `-L` listings.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Route => "Route",
            FwdMethod::Masq => "Masq",
            FwdMethod::Tunnel => "Tunnel",
        }
    }
    /// Flag in `-S` output.
    pub fn flag(self) -> &'static str {
        match self {
            FwdMethod::Route => "-g",
            FwdMethod::Masq => "-m",
            FwdMethod::Tunnel => "-i",
        }
    }
}

/// Default persistence timeout when `-p` has no value (IPVS_SVC_PERSISTENT_TIMEOUT; the man page's 300 is wrong).
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;
/// Default scheduler (ipvsadm's DEF_SCHED).
pub const DEFAULT_SCHEDULER: &str = "wlc";

/// A virtual service as configured (`-A`/`-E`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Protocol, address, port.
    pub key: ServiceKey,
    /// Scheduler name as given (validated by [`crate::table`] against what the data plane executes).
    pub scheduler: String,
    /// Persistence timeout in seconds, if persistent.
    pub persistent: Option<u32>,
    /// Persistence netmask: IPv4 prefix length or IPv6 prefix length (32/128 = whole address).
    pub netmask: u8,
    /// `-b` scheduler flags as given (e.g. `sh-port`), in ipvsadm's canonical order.
    pub sched_flags: Vec<String>,
    /// `-o` one-packet scheduling.
    pub ops: bool,
}

/// Identifies a real server within a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DestKey {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
}

/// A real server as configured (`-a`/`-e`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dest {
    /// Address and port.
    pub key: DestKey,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight, 0..=65535 from ipvsadm.
    pub weight: u32,
    /// `-x` upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// `-y` lower connection threshold (0 = none).
    pub l_threshold: u32,
}

/// One change to the table, as one ipvsadm command line expresses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `-A`
    AddService(Service),
    /// `-E`
    EditService(Service),
    /// `-D`
    DelService(ServiceKey),
    /// `-C`
    Clear,
    /// `-a`
    AddDest(ServiceKey, Dest),
    /// `-e`
    EditDest(ServiceKey, Dest),
    /// `-d`
    DelDest(ServiceKey, DestKey),
    /// `--add-mark MARK --match ...` (rvs's own: XDP runs before netfilter, so rvs declares its marks).
    AddMark(Mark),
    /// `--del-mark MARK`.
    DelMark(u32),
}

/// Why the table refused a command. The texts are ipvsadm's (`ipvs_strerror`), so `rvsadm` prints
/// `Display` as it is and exits 255, as ipvsadm does for a refused operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// EEXIST on add-service.
    #[error("Service already exists")]
    ServiceExists,
    /// ENOENT on add/edit-service: the scheduler is unknown (or not implemented yet).
    #[error("Scheduler or persistence engine not found")]
    SchedulerNotFound,
    /// ESRCH on edit/del/zero-service.
    #[error("No such service")]
    NoSuchService,
    /// ESRCH on add/edit/del-dest.
    #[error("Service not defined")]
    ServiceNotDefined,
    /// EEXIST on add-dest.
    #[error("Destination already exists")]
    DestExists,
    /// ENOENT on edit/del-dest.
    #[error("No such destination")]
    NoSuchDest,
    /// ERANGE, e.g. l_threshold > u_threshold.
    #[error("Numerical result out of range")]
    OutOfRange,
    /// ENOMEM: a table of the data plane is full.
    #[error("Memory allocation problem")]
    NoMemory,
    /// EINVAL.
    #[error("Invalid operation.  Possibly wrong module version, address not unicast, ...")]
    Invalid,
    /// EAFNOSUPPORT: mixed families where the method does not allow it.
    #[error("Operation not supported with specified address family")]
    AfNotSupported,
    /// `--add-mark` of a mark that is already declared (rvs's own).
    #[error("Firewall mark already declared")]
    MarkExists,
    /// `--del-mark` of a mark that is not declared (rvs's own).
    #[error("No such firewall mark")]
    NoSuchMark,
    /// `--add-mark` with a match that another mark already has for the same prefix and ports.
    #[error("Firewall mark match overlaps mark {0}")]
    MarkOverlap(u32),
    /// A prefix would need more port ranges (its own and those of covering prefixes) than the data
    /// plane holds per prefix.
    #[error("Too many port ranges for one address prefix")]
    MarkTooManyRanges,
}
