//! A tiny UDP server that answers every datagram with its own name, and a blocking client for it. Like
//! the HTTP server ([`crate::http`]), the server is a separate python3 process (standard library only).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The server, for `python3 -c UDPD_PY NAME ADDR PORT`: answers `NAME\n` to every datagram on
/// `ADDR:PORT`.
///
/// A VS/DR real server must answer from the VIP. The source of a reply sent from a socket bound to the
/// wildcard address is chosen by the route back to the client (the real server's own address), and the
/// client's connected socket would drop it; binding to the VIP makes the VIP the source.
pub const UDPD_PY: &str = r#"
import socket, sys
name = (sys.argv[1] + "\n").encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], int(sys.argv[3])))
while True:
    _, peer = s.recvfrom(2048)
    s.sendto(name, peer)
"#;

/// How long the client waits for each answer before it sends its datagram again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many datagrams the client sends at most before it gives up.
pub const TRIES: usize = 3;

/// Sends one datagram to `addr` from `from` (a port the kernel picks when `None`) and returns the name
/// that answered, without its newline. A lost datagram is sent again from the same socket, so every try
/// belongs to the same flow (and to the same connection entry of a director).
///
/// # Errors
/// Bind, send or receive failed, or no answer came after [`TRIES`] datagrams.
pub fn ask(addr: SocketAddr, from: Option<SocketAddr>) -> std::io::Result<String> {
    let local = from.unwrap_or_else(|| match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let s = UdpSocket::bind(local)?;
    // Connected: the kernel drops datagrams from anyone but `addr`, and reports ICMP errors as errors.
    s.connect(addr)?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut buf = [0u8; 2048];
    let mut last = None;
    for _ in 0..TRIES {
        s.send(b"hello\n")?;
        match s.recv(&mut buf) {
            Ok(n) => {
                let body = buf.get(..n).unwrap_or_default();
                return Ok(String::from_utf8_lossy(body).trim_end().to_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from {addr} to {TRIES} datagrams from {}: {}",
            s.local_addr()?,
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}
