//! The rvsd local API. One JSON object per line in each direction over a Unix stream socket
//! (default [`DEFAULT_SOCKET`], mode 0600, root only): the client writes a [`Request`] line, the daemon
//! answers with one [`Response`] line. A connection may carry several requests in turn.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rvs_core::{ApplyError, Command, Dest, Service};
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
    /// The whole table with counters.
    List,
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
    /// Counters.
    pub stats: StatsSnap,
}

/// A virtual service with its real servers, in the order IPVS lists them (most recently added first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnap {
    /// Configuration.
    pub service: Service,
    /// Counters.
    pub stats: StatsSnap,
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
