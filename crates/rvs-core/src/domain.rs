//! Services, real servers and the commands that change them, as ipvsadm names them.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// `-t`
    Tcp,
    /// `-u`
    Udp,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
    /// Name as ipvsadm lists it (`TCP`, `UDP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
    /// The selector flag (`-t`, `-u`).
    pub fn flag(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
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

impl fmt::Display for ServiceKey {
    /// `TCP 198.18.0.100:80` / `TCP [2001:db8::1]:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto.name(), SockAddrFmt(self.addr, self.port))
    }
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
}
