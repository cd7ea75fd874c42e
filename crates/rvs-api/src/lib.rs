//! The rvsd local API. One JSON object per line in each direction over a Unix stream socket
//! (default [`DEFAULT_SOCKET`], mode 0600, root only): the client writes a [`Request`] line, the daemon
//! answers with one [`Response`] line. A connection may carry several requests in turn.
//!
//! Compatibility: fields added after the first release carry `#[serde(default)]`, so a newer client
//! reads an older daemon's snapshot (and the reverse); a request an older daemon does not know comes
//! back as [`Response::Failed`] ("malformed request").

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;

use rvs_core::{ApplyError, Command, Dest, Mark, Protocol, Service, ServiceKey};
use serde::{Deserialize, Serialize};

/// Where rvsd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";
/// Environment variable that names the socket for rvsadm.
pub const SOCKET_ENV: &str = "RVS_SOCKET";

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Apply the commands in order, all or nothing (`-R` sends a whole file as one batch).
    Apply(Vec<Command>),
    /// The whole table with counters, rates and timeouts; [`Snapshot::conns`] is left empty.
    List,
    /// Like [`Request::List`], with the connection entries (`-Lc`). A separate request because the
    /// connection table can hold millions of entries that the other listings never need.
    ListConns,
    /// `-Z`: zero the counters and rates of one service and its real servers, or of everything.
    /// An unknown service is refused with [`ApplyError::NoSuchService`].
    Zero(Option<ServiceKey>),
    /// The declared firewall marks (`--list-marks`, and `-S`'s `--add-mark` lines), answered with
    /// [`Response::Marks`]. An older daemon answers [`Response::Failed`]: it has no marks.
    Marks,
    /// `--set tcp tcpfin udp`, in seconds; 0 leaves that timeout as it is (IPVS's rule).
    SetTimeouts {
        /// TCP ESTABLISHED.
        tcp: u32,
        /// TCP FIN_WAIT.
        tcpfin: u32,
        /// UDP.
        udp: u32,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied.
    Ok,
    /// Nothing was applied: command `index` of the batch was refused.
    Refused {
        /// Position of the refused command in the batch.
        index: usize,
        /// Why.
        error: ApplyError,
    },
    /// The table.
    Snapshot(Snapshot),
    /// The declared firewall marks, by mark.
    Marks(Vec<Mark>),
    /// The request could not be served (malformed request, data plane failure).
    Failed(String),
}

/// Cumulative counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnap {
    /// Connections.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

/// Rates from IPVS's estimator (K:ip_vs_est.c): averages over the last seconds, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSnap {
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub inpps: u64,
    /// Packets out per second.
    pub outpps: u64,
    /// Bytes in per second.
    pub inbps: u64,
    /// Bytes out per second.
    pub outbps: u64,
}

/// The timeouts `--set` changes, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: u32,
    /// TCP FIN_WAIT.
    pub tcpfin: u32,
    /// UDP.
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults: 900 120 300 (K:ip_vs_proto_tcp.c, K:ip_vs_proto_udp.c).
    fn default() -> Self {
        Self {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// One connection entry, as `ipvsadm -Lc` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSnap {
    /// Protocol.
    pub proto: Protocol,
    /// Client address and port.
    pub caddr: SocketAddr,
    /// Virtual address and port.
    pub vaddr: SocketAddr,
    /// Real server address and port.
    pub daddr: SocketAddr,
    /// State as IPVS names it (`ESTABLISHED`, `SYN_RECV`, `TIME_WAIT`, `NONE`, `UDP`, ...).
    pub state: String,
    /// Seconds left before the entry expires (rounded down, as /proc/net/ip_vs_conn shows it).
    pub expire: u32,
}

/// A real server with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSnap {
    /// Configuration.
    pub dest: Dest,
    /// Connections in an active state (IPVS ActiveConn).
    pub active: u32,
    /// Other connections (IPVS InActConn).
    pub inactive: u32,
    /// Persistence templates (IPVS PersistConn).
    pub persist: u32,
    /// Counters (since it was added or last zeroed).
    pub stats: StatsSnap,
    /// Rates.
    #[serde(default)]
    pub rate: RateSnap,
}

/// A virtual service with its real servers, in the order IPVS lists them (most recently added first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnap {
    /// Configuration.
    pub service: Service,
    /// Counters (since it was added or last zeroed).
    pub stats: StatsSnap,
    /// Rates.
    #[serde(default)]
    pub rate: RateSnap,
    /// Real servers.
    pub dests: Vec<DestSnap>,
}

/// The whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What `-L`'s header shows as `size=`.
    pub conn_tab_size: u32,
    /// Services, in insertion order (rvsadm sorts them as ipvsadm does).
    pub services: Vec<ServiceSnap>,
    /// The timeouts in force.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Connection entries, in the data plane's table order; only filled for [`Request::ListConns`].
    #[serde(default)]
    pub conns: Vec<ConnSnap>,
}

/// A client-side failure to talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to rvsd at {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// I/O after connecting.
    #[error("rvsd connection: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something that is not a `Response`.
    #[error("rvsd sent a malformed response: {0}")]
    Decode(#[from] serde_json::Error),
    /// The daemon closed the connection without answering.
    #[error("rvsd closed the connection without answering")]
    Closed,
}

/// A blocking client (rvsadm needs no async runtime).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon's socket.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when nothing listens there.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let writer = s.try_clone()?;
        Ok(Self {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends one request and waits for its response.
    ///
    /// # Errors
    /// I/O and decoding failures; a refusal is a successful [`Response::Refused`].
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut buf = String::new();
        if self.reader.read_line(&mut buf)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(serde_json::from_str(&buf)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_daemons_snapshot_reads_with_defaults() {
        // What rvsd sent before rates, timeouts and connections existed.
        let old = r#"{"Snapshot":{"conn_tab_size":4096,"services":[{"service":{"key":{"proto":"Tcp",
            "addr":"198.18.0.100","port":80},"scheduler":"rr","persistent":null,"netmask":32,
            "sched_flags":[],"ops":false},"stats":{"conns":1,"inpkts":2,"outpkts":0,"inbytes":3,
            "outbytes":0},"dests":[{"dest":{"key":{"addr":"198.18.1.11","port":80},"fwd":"Masq",
            "weight":1,"u_threshold":0,"l_threshold":0},"active":0,"inactive":1,"persist":0,
            "stats":{"conns":1,"inpkts":2,"outpkts":0,"inbytes":3,"outbytes":0}}]}]}}"#;
        let Response::Snapshot(s) = serde_json::from_str(old).unwrap() else {
            panic!("not a snapshot")
        };
        assert_eq!(
            s.timeouts,
            Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert!(s.conns.is_empty());
        assert_eq!(s.services[0].rate, RateSnap::default());
        assert_eq!(s.services[0].dests[0].rate, RateSnap::default());
        assert_eq!(s.services[0].dests[0].stats.inbytes, 3);
    }

    #[test]
    fn requests_and_connections_round_trip() {
        let reqs = [
            Request::List,
            Request::ListConns,
            Request::Zero(None),
            Request::Zero(Some(ServiceKey {
                proto: Protocol::Udp,
                addr: "2001:db8::1".parse().unwrap(),
                port: 53,
            })),
            Request::SetTimeouts {
                tcp: 30,
                tcpfin: 0,
                udp: 10,
            },
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r, "{line}");
        }
        let c = ConnSnap {
            proto: Protocol::Tcp,
            caddr: "198.18.0.2:40100".parse().unwrap(),
            vaddr: "198.18.0.100:80".parse().unwrap(),
            daddr: "[2001:db8::10]:80".parse().unwrap(),
            state: "TIME_WAIT".into(),
            expire: 111,
        };
        let line = serde_json::to_string(&c).unwrap();
        // Addresses travel as text: a million entries stay readable and reasonably small.
        assert!(line.contains(r#""caddr":"198.18.0.2:40100""#), "{line}");
        assert_eq!(serde_json::from_str::<ConnSnap>(&line).unwrap(), c);
    }
}
