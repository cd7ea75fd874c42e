//! A tiny HTTP server that answers every GET with its own name, and blocking clients for it. The server
//! is a separate python3 process (standard library only), so the real servers of a test are real
//! processes with real sockets, independent of the test binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The request handler of [`HTTPD_PY`] and [`HTTPD6_PY`]: answers `sys.argv[1]` and a newline to any
/// GET, HTTP/1.1 with keep-alive.
macro_rules! httpd_handler_py {
    () => {
        r#"
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
"#
    };
}

/// The server, for `python3 -c HTTPD_PY NAME PORT`: listens on every address of its namespace, answers
/// `NAME\n` to any GET, HTTP/1.1 with keep-alive (a client that sends `Connection: close` gets one
/// answer and a FIN).
pub const HTTPD_PY: &str = concat!(
    httpd_handler_py!(),
    r#"http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("", int(sys.argv[2])), Handler).serve_forever()
"#
);

/// [`HTTPD_PY`]'s server listening on `::`, so that it serves IPv4 (as mapped addresses) and IPv6
/// alike (the VS/NAT lab's real servers).
pub(crate) const HTTPD6_PY: &str = concat!(
    httpd_handler_py!(),
    r#"class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
Server(("::", int(sys.argv[2])), Handler).serve_forever()
"#
);

/// How long a client waits to connect, and then for each read or write. Long enough to ride out a
/// dropped SYN (Linux retransmits it after 1 s, then 3 s), short enough that a broken path fails a test
/// instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Connects to `addr`, from `from` when given (else from a port the kernel picks), with timeouts set.
///
/// Tests that count connections per real server give each connection its own source port: the kernel's
/// ephemeral ports come from a sequence shared by every network namespace (it is keyed by the address
/// pair), so a busy neighbour can make it wrap, and a connection from a port the director still tracks
/// (in FIN_WAIT, as IPVS would) goes to that entry's real server without being scheduled.
///
/// # Errors
/// Bind, connect or timeout.
pub fn connect(addr: SocketAddr, from: Option<SocketAddr>) -> std::io::Result<TcpStream> {
    let s = match from {
        None => TcpStream::connect_timeout(&addr, IO_TIMEOUT)?,
        Some(from) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.bind(&from.into())?;
            sock.connect_timeout(&addr.into(), IO_TIMEOUT)?;
            sock.into()
        }
    };
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// One request on a new connection (`Connection: close`), from `from` if given (see [`connect`]);
/// returns the body without its newline.
///
/// # Errors
/// Connect, I/O, timeout, or a reply that is not `200` with a body.
pub fn get_once(addr: SocketAddr, from: Option<SocketAddr>) -> std::io::Result<String> {
    let mut s = connect(addr, from)?;
    // One write, so the request leaves in one segment (write! would send each fragment on its own).
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid(format!("reply from {addr} has no header end: {reply:?}")))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(invalid(format!("reply from {addr} is not 200: {head:?}")));
    }
    Ok(body.trim_end().to_owned())
}

/// A kept-alive connection: several requests over one TCP connection.
#[derive(Debug)]
pub struct HttpConn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    /// Connects, from `from` if given (see [`connect`]). The socket belongs to the network namespace of
    /// the calling thread, wherever it is used afterwards.
    ///
    /// # Errors
    /// Connect failed or timed out.
    pub fn connect(addr: SocketAddr, from: Option<SocketAddr>) -> std::io::Result<Self> {
        let s = connect(addr, from)?;
        Ok(Self {
            addr,
            reader: BufReader::new(s),
        })
    }

    /// The local (client) address of the connection.
    ///
    /// # Errors
    /// getsockname failed.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.reader.get_ref().local_addr()
    }

    /// Closes the connection with a RST instead of a FIN (SO_LINGER with a zero timeout, then close).
    ///
    /// # Errors
    /// setsockopt failed (the connection is then closed normally).
    pub fn abort(self) -> std::io::Result<()> {
        socket2::SockRef::from(self.reader.get_ref()).set_linger(Some(Duration::ZERO))
    }

    /// One request on this connection; returns the body without its newline.
    ///
    /// # Errors
    /// I/O, timeout, the peer closed, or a malformed reply.
    pub fn get(&mut self) -> std::io::Result<String> {
        let addr = self.addr;
        let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{addr} closed the connection"),
            ));
        }
        if !line.starts_with("HTTP/1.1 200") {
            return Err(invalid(format!("reply from {addr} is not 200: {line:?}")));
        }
        let mut len = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(invalid(format!("{addr} closed inside the headers")));
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let len = len.ok_or_else(|| invalid(format!("reply from {addr} has no Content-Length")))?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(String::from_utf8_lossy(&body).trim_end().to_owned())
    }
}
