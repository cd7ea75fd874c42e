//! VS/DR over IPv6: the DR lab with an IPv6 segment (2001:db8::/64), the IPv6 VIP on the director and
//! `rvs-realserver setup --vip 2001:db8::100` on the real servers, which answer the client from the VIP
//! directly.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rvs_testkit::lab::{self, CLIENT, DrLab, VIP6, describe, ip6, real_ip6, real_name};
use rvs_testkit::{http, udp, wait};

use crate::topo::{OrLog, lab};

/// The IPv6 virtual IP.
/// The UDP service's port.
const UDP_PORT: u16 = 53;

/// `python3 -c SERVER_PY NAME PROTO PORT`: binds the IPv6 VIP only (the lab's IPv4 servers keep the
/// IPv4 wildcard of the same port), answers `NAME\n` to an HTTP GET (`tcp`) or to every datagram
/// (`udp`), and prints `ready` once it is bound.
const SERVER_PY: &str = r#"
import http.server, socket, sys
name, proto, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
vip = "2001:db8::100"
if proto == "udp":
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((vip, port))
    print("ready", flush=True)
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto((name + "\n").encode(), peer)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (name + "\n").encode()
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
srv = Server((vip, port), Handler)
print("ready", flush=True)
srv.serve_forever()
"#;

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

/// The DR lab on IPv6. Drop stops the IPv6 servers before the lab removes the namespaces.
struct Dr6Lab {
    servers: Vec<Child>,
    lab: DrLab,
}

impl Deref for Dr6Lab {
    type Target = DrLab;
    fn deref(&self) -> &DrLab {
        &self.lab
    }
}

impl Drop for Dr6Lab {
    fn drop(&mut self) {
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Dr6Lab {
    /// The DR lab with `reals` real servers, IPv6 on its segment, the IPv6 VIP on the director and the
    /// real servers set up for it.
    fn new(reals: usize) -> Self {
        let lab = Self {
            servers: Vec::new(),
            lab: lab(reals),
        };
        lab.enable_ipv6().or_log(&lab, "turn IPv6 on in the lab");
        for i in 1..=reals {
            let state = lab.realserver_state_dir(i).display().to_string();
            let args = ["setup", "--vip", &VIP6.to_string(), "--state-dir", &state];
            let out = lab.realserver(i, &args).or_log(&lab, "run rvs-realserver");
            assert!(
                out.status.success(),
                "rvs-realserver {}: {}",
                args.join(" "),
                describe(&out)
            );
        }
        lab
    }

    /// Starts [`SERVER_PY`] for `proto` on `VIP6:port` in every real server and waits until each is bound.
    fn start_servers(&mut self, proto: &str, port: u16) {
        let mut logs = Vec::new();
        for i in 1..=self.reals() {
            let name = real_name(i);
            let path = self.run_dir().join(format!("{name}-{proto}6.log"));
            let log = std::fs::File::create(&path).expect("create a server log");
            let child = self
                .topo()
                .spawn_in(
                    &name,
                    Command::new("python3")
                        .args(["-c", SERVER_PY, &name, proto, &port.to_string()])
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().expect("dup log"))
                        .stderr(log),
                )
                .or_log(self, "start a server");
            self.servers.push(child);
            logs.push(path);
        }
        for path in &logs {
            wait::until(
                &format!("the server logging to {}", path.display()),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || {
                    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                    if text.contains("ready") {
                        Ok(())
                    } else {
                        Err(format!("log so far: {text:?}"))
                    }
                },
            )
            .or_log(self, "server up");
        }
    }

    /// `-A proto [VIP6]:port -s rr` with every real server, `-g`, on the same port.
    fn add_service(&self, proto: &str, port: u16) {
        let svc = SocketAddr::new(IpAddr::V6(VIP6), port).to_string();
        self.rvsadm_ok(&["-A", proto, &svc, "-s", "rr"])
            .or_log(self, "rvsadm -A");
        for i in 1..=self.reals() {
            let rs = SocketAddr::new(IpAddr::V6(real_ip6(i)), port).to_string();
            self.rvsadm_ok(&["-a", proto, &svc, "-r", &rs, "-g"])
                .or_log(self, "rvsadm -a");
        }
    }

    /// `n` client sources on the IPv6 segment, each with its own port from `first`.
    fn sources(n: u16, first: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|k| SocketAddr::new(IpAddr::V6(ip6(2)), first + k))
            .collect()
    }
}

#[test]
fn dr6_rr_splits_150_tcp_connections_evenly() {
    let mut lab = Dr6Lab::new(3);
    lab.start_servers("tcp", lab::PORT);
    lab.add_service("-t", lab::PORT);
    let listing = lab.rvsadm_ok(&["-Ln"]).or_log(&lab, "rvsadm -Ln");
    assert!(
        listing.contains(&format!("TCP  [{VIP6}]:{} rr", lab::PORT)),
        "{listing}"
    );
    let vip = SocketAddr::new(IpAddr::V6(VIP6), lab::PORT);
    let froms = Dr6Lab::sources(150, lab::FIRST_CLIENT_PORT);
    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got = BTreeMap::new();
            for (k, &from) in froms.iter().enumerate() {
                let name = http::get_once(vip, Some(from))
                    .map_err(|e| format!("request {k} from {from} (after {got:?}): {e}"))?;
                *got.entry(name).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "150 IPv6 connections");
    assert_eq!(got, counts(&[("rs1", 50), ("rs2", 50), ("rs3", 50)]));
}

#[test]
fn dr6_udp_answers_come_from_the_vip() {
    let mut lab = Dr6Lab::new(3);
    lab.start_servers("udp", UDP_PORT);
    lab.add_service("-u", UDP_PORT);
    let vip = SocketAddr::new(IpAddr::V6(VIP6), UDP_PORT);
    let froms = Dr6Lab::sources(30, lab::FIRST_CLIENT_PORT);
    // A connected socket (udp::ask) takes only datagrams whose source is the VIP: an answer proves it.
    let got = lab
        .topo()
        .run_in(CLIENT, || {
            let mut got = BTreeMap::new();
            for (k, &from) in froms.iter().enumerate() {
                let name = udp::ask(vip, Some(from))
                    .map_err(|e| format!("datagram {k} from {from} (after {got:?}): {e}"))?;
                *got.entry(name).or_insert(0) += 1;
            }
            Ok::<_, String>(got)
        })
        .or_log(&lab, "client thread")
        .or_log(&lab, "30 IPv6 datagrams");
    assert_eq!(got, counts(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]));
}
