//! Golden scenarios of the real IPVS, replayed through rvs. Each file of shared/ipvs-golden (copies in
//! crates/rvsadm/testdata/ipvs-golden), and of tests/e2e/ipvs-lab-lblc (lblc and lblcr, recorded with
//! the same lab), records a session of ipvsadm 1.31 on Debian's kernel 6.1: the
//! commands, their output, and which real server answered each connection. The test reads the file,
//! runs every `ipvsadm` command with rvsadm, makes every connection the way the lab's client.py made it
//! (same client address and source port, same request bytes, one at a time), and compares the real
//! server that answered each one and the output of every command with the recorded text.
//!
//! What is compared:
//! - the connections: the `NN SRC:PORT -> rsK` lines, byte for byte;
//! - `-Ln`, `-Ln --thresholds`, `-Ln --persistent-conn`, `-Ln --timeout`, `-S -n`: byte for byte, but the
//!   header's `size=`, where IPVS prints its hash table's size (4096) and rvs its `--conn-max`, which the
//!   labs set to [`LAB_CONN_MAX`]; and `-S` also saves `-x`/`-y`, which ipvsadm drops (a documented
//!   improvement, docs/configuration.md), so the recorded line plus those options is expected;
//! - `-Ln --stats`: the layout and the Conns column byte for byte; for VS/DR and VS/TUN the OutPkts and
//!   OutBytes too (0: the replies bypass the director); and for VS/NAT while held connections are open,
//!   every column (the NAT lab's real servers run ipvs-lab's httpd.py on port 80, so the same packets
//!   cross the director). The other counts depend on how the TCP stacks segment and acknowledge: a
//!   closed connection's last packets race its close (IPVS's own counts are not a multiple of the 24
//!   connections), and the VS/DR lab's server writes its header and body separately, which costs one
//!   more ACK from the client per connection. With `RVS_GOLDEN_SHOW=1` the test prints both texts;
//! - `-Ln --rate`: the three header lines (rates depend on timing);
//! - `-Lnc`: every row byte for byte but its expire column, as a set (IPVS lists in hash order);
//! - `cat /proc/net/ip_vs_conn`: rvs has no such file, not replayed; nor is `curl .../ip` (the real
//!   server's view of the client, from an ephemeral port: the labs' servers have no `/ip`);
//! - `sysctl -w net.ipv4.vs.expire_quiescent_template=1`: rvsd's `--expire-quiescent-template`: rvsd is
//!   restarted with it (the pinned table and connections carry over).
//!
//! A new lab starts where the recording started a fresh director ("fresh director netns", a "part" that
//! adds its service; persistence.txt's part 2 goes on with part 1's). A mismatch does not stop the
//! replay: the test goes on and panics at the end with every difference (golden, then got), apart from
//! the differences rvs has today and knows of ([`KNOWN`], each with its reason). It prints nothing on
//! success.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rvs_testkit::http;
use rvs_testkit::lab::{CLIENT, DrLab, IFNAME, LAB_CONN_MAX, describe, real_name};
use rvs_testkit::natlab::{self, NatLab};
use rvs_testkit::netns::Topology;
use rvs_testkit::wait;

use crate::topo::{attach_pass, binaries, lab, require_root};

/// Where the copies of the golden files are.
const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/rvsadm/testdata/ipvs-golden");

/// Recordings of lblc and lblcr made with the same lab (shared/ipvs-golden has none).
const LBLC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/ipvs-lab-lblc");

/// ipvs-lab's real-server program (shared/ipvs-lab/scenarios/httpd.py, copied): the NAT lab's real
/// servers run it on port 80, as the recordings did, so that they answer with the same bytes.
const LAB_HTTPD: &str = include_str!("ipvs-lab-httpd.py");

/// The VIP and port of every golden scenario.
const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)), 80);

/// client.py's request on a short connection: HTTP/1.0, so that the server answers and closes.
const SHORT_REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: 198.18.0.100\r\n\r\n";

/// The request of a held connection, as long as client.py's `GET /hold/120 HTTP/1.0` (46 bytes): ipvs-lab's
/// httpd.py keeps the connection open after answering either; the VS/DR lab's server needs HTTP/1.1 to.
const HOLD_REQUEST: &[u8] = b"GET /hold/120 HTTP/1.1\r\nHost: 198.18.0.100\r\n\r\n";

/// The source port of persistence.sh's probe (`client.py -n 1 -s 198.18.0.2 -p 40399`).
const PROBE_PORT: u16 = 40_399;

/// How long the director may take to see a connection's close.
const SETTLE: Duration = Duration::from_secs(20);

/// A difference between rvs and the kernel that rvs has today, and why. The replay accepts exactly
/// these (same file, a section whose title starts with `section`, same command), shows them with
/// `RVS_GOLDEN_SHOW=1`, and fails once one no longer shows up, so that the list stays true.
struct Known {
    file: &'static str,
    section: &'static str,
    /// `$ CMD` as recorded, or `connections`.
    what: &'static str,
    why: &'static str,
}

/// The differences rvs has today (see the report of each in [`Known::why`]).
const KNOWN: &[Known] = &[];

/// A `=== title ===` section of a golden file and the lines up to the next one.
struct Section {
    title: String,
    lines: Vec<String>,
}

/// The sections of a golden file (the comment lines before the first one are dropped).
fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("=== ").and_then(|l| l.strip_suffix(" ===")) {
            out.push(Section {
                title: t.to_owned(),
                lines: Vec::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.lines.push(line.to_owned());
        }
    }
    out
}

/// One recorded connection: `NN SRC:PORT -> rsK`.
struct Conn {
    line: String,
    from: SocketAddr,
}

/// One recorded command: `$ CMD`, its stdout, and its exit code.
struct Cmd {
    cmd: String,
    stdout: String,
    exit: i32,
}

/// The connections and the commands of a section (the summary lines, `sequence:` and `counts:`, repeat
/// what the connection lines say).
fn parse(s: &Section) -> (Vec<Conn>, Vec<Cmd>) {
    let (mut conns, mut cmds) = (Vec::new(), Vec::new());
    let mut lines = s.lines.iter();
    while let Some(line) = lines.next() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            let (mut stdout, mut in_stderr) = (String::new(), false);
            let exit = loop {
                let l = lines
                    .next()
                    .unwrap_or_else(|| panic!("`$ {cmd}` has no [exit N] line"));
                if let Some(n) = l.strip_prefix("[exit ").and_then(|r| r.strip_suffix(']')) {
                    break n.parse().unwrap_or_else(|e| panic!("{l:?}: {e}"));
                }
                if l == "[stderr]" {
                    in_stderr = true;
                } else if !in_stderr {
                    stdout.push_str(l);
                    stdout.push('\n');
                }
            };
            cmds.push(Cmd {
                cmd: cmd.to_owned(),
                stdout,
                exit,
            });
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [n, from, "->", name] = f[..]
            && n.parse::<u32>().is_ok()
            && name.starts_with("rs")
        {
            let from = from.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
            conns.push(Conn {
                line: line.clone(),
                from,
            });
        } else if let [ip, "is", "persistent", "to", name, ..] = f[..] {
            // persistence.sh's probe of which server a client sticks to: one connection, from port
            // PROBE_PORT, which the file shows only in the name.
            let ip: Ipv4Addr = ip.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let from = SocketAddr::new(IpAddr::V4(ip), PROBE_PORT);
            conns.push(Conn {
                line: format!("{:02} {from} -> {name}", conns.len() + 1),
                from,
            });
        }
    }
    (conns, cmds)
}

/// Server processes, killed on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Which lab a golden file was recorded on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// VS/DR: real servers 198.18.0.1i on the client's segment.
    Dr,
    /// VS/NAT: real servers 198.18.1.1i behind the director.
    Nat,
    /// VS/TUN: the VS/DR lab with its real servers in tun mode (as tests/e2e/tun.rs sets them up).
    Tun,
}

/// The bpffs directory of the real servers' rvs_decap pins; removing it on drop detaches rvs_decap.
struct DecapPins(PathBuf);

impl Drop for DecapPins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running lab of any kind.
enum Lab {
    Dr(DrLab),
    // The servers go before the lab (fields drop in order): their namespaces must still exist.
    Nat { _servers: Servers, lab: NatLab },
    // The pins go first, as the servers above.
    Tun { _pins: DecapPins, lab: DrLab },
}

impl Lab {
    fn start(kind: Kind) -> Lab {
        match kind {
            Kind::Dr => Lab::Dr(lab(3)),
            Kind::Tun => {
                let lab = lab(3);
                let pins =
                    DecapPins(PathBuf::from("/sys/fs/bpf").join(format!("{}-decap", lab.topo().prefix())));
                for i in 1..=lab.reals() {
                    to_tun(&lab, &pins.0, i);
                }
                Lab::Tun { _pins: pins, lab }
            }
            Kind::Nat => {
                require_root();
                let lab = NatLab::start(binaries(), 3, &attach_pass)
                    .unwrap_or_else(|e| panic!("cannot build the NAT lab: {e}"));
                let servers = start_lab_httpd(&lab);
                Lab::Nat {
                    _servers: servers,
                    lab,
                }
            }
        }
    }

    fn rvsadm(&self, args: &[&str]) -> Output {
        match self {
            Lab::Dr(l) | Lab::Tun { lab: l, .. } => l.rvsadm(args),
            Lab::Nat { lab: l, .. } => l.rvsadm(args),
        }
        .unwrap_or_else(|e| panic!("run rvsadm {args:?}: {e}"))
    }

    fn topo(&self) -> &Topology {
        match self {
            Lab::Dr(l) | Lab::Tun { lab: l, .. } => l.topo(),
            Lab::Nat { lab: l, .. } => l.topo(),
        }
    }

    fn log(&self) -> String {
        match self {
            Lab::Dr(l) | Lab::Tun { lab: l, .. } => l.rvsd_log(),
            Lab::Nat { lab: l, .. } => l.rvsd_log(),
        }
    }
}

/// Switches real server `i` of a VS/DR lab to tun mode for the VIP (`rvs-realserver teardown`, then
/// `setup --mode tun`, its rvs_decap pinned under `pins`).
fn to_tun(lab: &DrLab, pins: &Path, i: usize) {
    let vip = VIP.ip().to_string();
    let state = lab.realserver_state_dir(i).display().to_string();
    let pin = pins.join(real_name(i)).display().to_string();
    let steps: [&[&str]; 2] = [
        &["teardown", "--vip", &vip, "--state-dir", &state],
        &[
            "setup",
            "--vip",
            &vip,
            "--mode",
            "tun",
            "--dev",
            IFNAME,
            "--state-dir",
            &state,
            "--pin-dir",
            &pin,
        ],
    ];
    for args in steps {
        let out = lab
            .realserver(i, args)
            .unwrap_or_else(|e| panic!("rvs-realserver {args:?}: {e}"));
        assert!(
            out.status.success(),
            "rvs-realserver {args:?}: {}",
            describe(&out)
        );
    }
}

/// Starts ipvs-lab's httpd.py on port 80 of every real server of the NAT lab (whose own servers use
/// other ports) and waits until each answers the director.
fn start_lab_httpd(lab: &NatLab) -> Servers {
    let mut servers = Servers(Vec::new());
    for i in 1..=lab.reals() {
        let name = natlab::real_name(i);
        let child = lab
            .topo()
            .spawn_in(
                &name,
                Command::new("python3")
                    .args(["-c", LAB_HTTPD, &name, "80"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap_or_else(|e| panic!("start httpd.py in {name}: {e}"));
        servers.0.push(child);
    }
    for i in 1..=lab.reals() {
        let addr = SocketAddr::new(natlab::real_ip(i, false), 80);
        let got = wait::until(
            &format!("httpd.py at {addr}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                lab.topo()
                    .run_in(natlab::DIRECTOR, || http::get_once(addr, None))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, natlab::real_name(i), "{addr}");
    }
    servers
}

/// One connection from `from` to the VIP, as client.py makes it: the request, then the answer's header
/// and first body line, which names the real server. A held connection is returned open.
fn ask(from: SocketAddr, hold: bool) -> std::io::Result<(String, Option<TcpStream>)> {
    let mut s = http::connect(VIP, Some(from))?;
    s.write_all(if hold { HOLD_REQUEST } else { SHORT_REQUEST })?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && body.contains('\n')
        {
            break body.to_owned();
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {text:?}"),
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let name = body.lines().next().unwrap_or_default().trim().to_owned();
    Ok((name, hold.then_some(s)))
}

/// The sum of ActiveConn over every real server of `-Ln`.
fn active_total(listing: &str) -> u32 {
    listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                ["->", _, _, _, active, _] => active.parse::<u32>().ok(),
                _ => None,
            }
        })
        .sum()
}

/// `text` with the `size=` of its first line replaced by `golden`'s, when it is the lab's.
fn same_size(text: &str, golden: &str) -> String {
    let ours = format!("IP Virtual Server version 1.2.1 (size={LAB_CONN_MAX})");
    match (text.split_once('\n'), golden.split_once('\n')) {
        (Some((head, rest)), Some((gold_head, _)))
            if head == ours && gold_head.starts_with("IP Virtual Server version") =>
        {
            format!("{gold_head}\n{rest}")
        }
        _ => text.to_owned(),
    }
}

/// `--stats` text with the number columns not in `keep` replaced by `*` (every line after the three of
/// the header is 33 characters of address, then five columns of 9).
fn mask_stats(text: &str, keep: [bool; 5]) -> String {
    let mut out = String::new();
    for (k, line) in text.lines().enumerate() {
        if k < 3 || line.len() != 33 + 5 * 9 {
            out.push_str(line);
        } else {
            out.push_str(line.get(..33).unwrap_or_default());
            for (c, kept) in keep.iter().enumerate() {
                let col = line.get(33 + c * 9..33 + (c + 1) * 9).unwrap_or_default();
                if *kept {
                    out.push_str(col);
                } else {
                    out.push_str(&format!("{:>9}", "*"));
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `-Lnc` text with each row's expire column (`%-6s` after `%-3s `) masked and the rows sorted.
fn mask_conns(text: &str) -> String {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.by_ref().take(2).collect();
    let mut rows: Vec<String> = lines
        .map(|l| match (l.get(..4), l.get(10..)) {
            (Some(a), Some(b)) => format!("{a}--:-- {b}"),
            _ => l.to_owned(),
        })
        .collect();
    rows.sort();
    let mut out = head.join("\n");
    out.push('\n');
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

/// The replay of one golden file.
struct Replay {
    file: &'static str,
    kind: Kind,
    lab: Option<Lab>,
    /// The held connections of the current section, open.
    held: Vec<TcpStream>,
    /// Client addresses added to the client's interface (198.18.0.2 is there from the start).
    client_addrs: BTreeSet<Ipv4Addr>,
    /// `-x`, `-y` of each real server, from the replayed commands: `-S` saves them.
    thresholds: BTreeMap<String, (String, String)>,
    /// The entries of [`KNOWN`] that showed up.
    known_seen: BTreeSet<usize>,
    diffs: Vec<String>,
}

impl Replay {
    fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("a lab is running")
    }

    /// Stops the replay: `what` went wrong; the differences found so far are shown too.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n\n{} differences before that:\n\n{}\n--- rvsd log\n{}",
            self.file,
            self.diffs.len(),
            self.diffs.join("\n"),
            self.lab().log()
        )
    }

    /// Records a difference between `golden` and `got`, unless they are the same or it is [`KNOWN`].
    fn differ(&mut self, section: &str, what: &str, golden: &str, got: &str) {
        if golden == got {
            return;
        }
        let text = format!(
            "{} [{section}] {what}\n--- golden\n{golden}--- got\n{got}",
            self.file
        );
        let known = KNOWN
            .iter()
            .position(|k| k.file == self.file && section.starts_with(k.section) && what == k.what);
        match known {
            Some(k) => {
                if std::env::var_os("RVS_GOLDEN_SHOW").is_some() {
                    eprintln!("known difference ({}):\n{text}", KNOWN[k].why);
                }
                self.known_seen.insert(k);
            }
            None => self.diffs.push(text),
        }
    }

    fn new_lab(&mut self) {
        self.held.clear();
        self.lab = None;
        self.client_addrs.clear();
        self.thresholds.clear();
        self.lab = Some(Lab::start(self.kind));
    }

    /// Closes the held connections and waits until the director counts none active.
    fn release(&mut self) {
        self.held.clear();
        self.await_active(0);
    }

    /// Polls `-Ln` until the real servers' ActiveConn add up to `n`.
    fn await_active(&self, n: u32) {
        let r = wait::until(
            &format!("{n} active connections"),
            SETTLE,
            Duration::from_millis(100),
            || {
                let out = self.lab().rvsadm(&["-Ln"]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if active_total(&text) == n {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
        if let Err(e) = r {
            self.fail(&e.to_string());
        }
    }

    /// Makes the section's connections one at a time, each from its recorded source, and compares who
    /// answered. A short connection is closed, and counted inactive by the director, before the next.
    fn connect(&mut self, section: &str, conns: &[Conn]) {
        let hold = section.contains("held open");
        let mut got = String::new();
        let mut golden = String::new();
        for (k, c) in conns.iter().enumerate() {
            let IpAddr::V4(ip) = c.from.ip() else {
                self.fail(&format!("an IPv6 client in {:?}", c.line))
            };
            if ip != Ipv4Addr::new(198, 18, 0, 2) && self.client_addrs.insert(ip) {
                let cidr = format!("{ip}/24");
                if let Err(e) = self
                    .lab()
                    .topo()
                    .ip(CLIENT, &["addr", "add", &cidr, "dev", IFNAME])
                {
                    self.fail(&format!("add {cidr} to the client: {e}"));
                }
            }
            let from = c.from;
            let r = self.lab().topo().run_in(CLIENT, || ask(from, hold));
            let (name, stream) = match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    // Recorded as a difference; the rest of the section is not tried (each would wait
                    // for its own timeout), and the replay goes on with the listings.
                    got.push_str(&format!("{:02} {from} -> failed: {e}\n", k + 1));
                    golden.push_str(&c.line);
                    golden.push('\n');
                    break;
                }
                Err(e) => self.fail(&format!("enter the client's namespace: {e}")),
            };
            self.held.extend(stream);
            got.push_str(&format!("{:02} {from} -> {name}\n", k + 1));
            golden.push_str(&c.line);
            golden.push('\n');
            let n = u32::try_from(self.held.len()).expect("a few dozen");
            self.await_active(n);
        }
        self.differ(section, "connections", &golden, &got);
    }

    /// Runs a recorded command and compares its output.
    fn command(&mut self, section: &str, c: &Cmd) {
        if c.cmd.starts_with("cat /proc/net/ip_vs_conn") || c.cmd.starts_with("curl ") {
            return;
        }
        if c.cmd == "sysctl -w net.ipv4.vs.expire_quiescent_template=1" {
            self.restart_rvsd(&["--expire-quiescent-template"]);
            return;
        }
        let Some(line) = c.cmd.strip_prefix("ipvsadm ") else {
            self.fail(&format!("cannot replay `{}`", c.cmd))
        };
        let args: Vec<&str> = line.split_whitespace().collect();
        self.note_thresholds(&args);
        let out = self.lab().rvsadm(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let what = format!("$ {}", c.cmd);
        let exit = out.status.code().map_or("a signal".to_owned(), |c| c.to_string());
        self.differ(
            section,
            &format!("{what}: exit"),
            &format!("{}\n", c.exit),
            &format!("{exit}\n{}", String::from_utf8_lossy(&out.stderr)),
        );
        let show = std::env::var_os("RVS_GOLDEN_SHOW").is_some();
        let (golden, got) = if args.contains(&"-Lnc") || args.contains(&"-c") {
            (mask_conns(&c.stdout), mask_conns(&text))
        } else if args.contains(&"--rate") {
            let head = |t: &str| t.lines().take(3).map(|l| format!("{l}\n")).collect::<String>();
            (head(&c.stdout), head(&same_size(&text, &c.stdout)))
        } else if args.contains(&"--stats") {
            // Held connections through the NAT lab's httpd.py exchange exactly the recorded packets
            // (no close to race): every column counts.
            let all = self.kind == Kind::Nat && section.starts_with("while the connections above are open");
            let out_zero = self.kind != Kind::Nat;
            let keep = [true, all, all || out_zero, all, all || out_zero];
            let got = same_size(&text, &c.stdout);
            if show {
                eprintln!(
                    "{} [{section}] {what}\n--- golden\n{}--- got\n{got}",
                    self.file, c.stdout
                );
            }
            (mask_stats(&c.stdout, keep), mask_stats(&got, keep))
        } else if args.first() == Some(&"-S") {
            (self.with_thresholds(&c.stdout), text)
        } else {
            (c.stdout.clone(), same_size(&text, &c.stdout))
        };
        self.differ(section, &what, &golden, &got);
    }

    /// Restarts rvsd with `extra` options; the table and the connections carry over.
    fn restart_rvsd(&mut self, extra: &[&str]) {
        let r = match self.lab.as_mut().expect("a lab is running") {
            Lab::Nat { lab, .. } => lab.restart_rvsd_with(extra),
            Lab::Dr(lab) | Lab::Tun { lab, .. } => lab.kill_rvsd().and_then(|()| {
                let mut args = lab.rvsd_args();
                args.extend(extra.iter().map(|a| (*a).to_owned()));
                lab.start_rvsd_with(&args)
            }),
        };
        if let Err(e) = r {
            self.fail(&format!("restart rvsd with {extra:?}: {e}"));
        }
    }

    /// Remembers the `-x`/`-y` of an `-a` or `-e` command.
    fn note_thresholds(&mut self, args: &[&str]) {
        if !matches!(args.first(), Some(&"-a" | &"-e")) {
            return;
        }
        let value = |flag: &str| {
            args.iter()
                .position(|a| *a == flag)
                .and_then(|p| args.get(p + 1))
                .map(|v| (*v).to_owned())
        };
        let (Some(svc), Some(rs)) = (value("-t"), value("-r")) else {
            return;
        };
        let key = format!("{svc} {rs}");
        let old = self.thresholds.remove(&key).unwrap_or_default();
        let x = value("-x").unwrap_or(old.0);
        let y = value("-y").unwrap_or(old.1);
        self.thresholds.insert(key, (x, y));
    }

    /// ipvsadm's `-S` output with the `-x`/`-y` rvs adds (after `-w`, each when not 0).
    fn with_thresholds(&self, golden: &str) -> String {
        let mut out = String::new();
        for line in golden.lines() {
            out.push_str(line);
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["-a", "-t", svc, "-r", rs, ..] = f[..]
                && let Some((x, y)) = self.thresholds.get(&format!("{svc} {rs}"))
            {
                for (flag, v) in [("-x", x), ("-y", y)] {
                    if !v.is_empty() && v != "0" {
                        out.push_str(&format!(" {flag} {v}"));
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Replays golden file `file`, recorded on a lab of kind `kind`.
fn replay(file: &'static str, kind: Kind) {
    replay_from(GOLDEN_DIR, file, kind);
}

/// [`replay`] of `dir`/`file`.
fn replay_from(dir: &str, file: &'static str, kind: Kind) {
    let path = format!("{dir}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut r = Replay {
        file,
        kind,
        lab: None,
        held: Vec::new(),
        client_addrs: BTreeSet::new(),
        thresholds: BTreeMap::new(),
        known_seen: BTreeSet::new(),
        diffs: Vec::new(),
    };
    for s in sections(&text) {
        let (conns, cmds) = parse(&s);
        // A part that adds its service starts from a fresh director; one that does not goes on with the
        // previous part's (persistence.txt's part 2).
        let fresh = s.title.starts_with("part ") || s.title.starts_with("fresh director netns");
        if r.lab.is_none() || (fresh && cmds.iter().any(|c| c.cmd.starts_with("ipvsadm -A "))) {
            r.new_lab();
        }
        if s.title.starts_with("after the connections above were closed") || s.title == "after release" {
            r.release();
        }
        if !conns.is_empty() {
            r.connect(&s.title, &conns);
        }
        for c in &cmds {
            r.command(&s.title, c);
        }
    }
    for (k, known) in KNOWN.iter().enumerate() {
        if known.file == file && !r.known_seen.contains(&k) {
            r.diffs.push(format!(
                "{file} [{}] {}: this known difference is gone; remove it from KNOWN ({})\n",
                known.section, known.what, known.why
            ));
        }
    }
    assert!(
        r.diffs.is_empty(),
        "{} differences from {file}:\n\n{}",
        r.diffs.len(),
        r.diffs.join("\n")
    );
}

#[test]
fn dr_lblc_matches_the_kernel() {
    replay_from(LBLC_DIR, "dr-lblc.txt", Kind::Dr);
}

#[test]
fn dr_lblcr_matches_the_kernel() {
    replay_from(LBLC_DIR, "dr-lblcr.txt", Kind::Dr);
}

#[test]
fn dr_lblc_weights_4_1_1_match_the_kernel() {
    replay_from(LBLC_DIR, "dr-lblc-411.txt", Kind::Dr);
}

#[test]
fn dr_lblcr_weights_4_1_1_match_the_kernel() {
    replay_from(LBLC_DIR, "dr-lblcr-411.txt", Kind::Dr);
}

#[test]
fn dr_rr_matches_the_kernel() {
    replay("dr-rr.txt", Kind::Dr);
}

#[test]
fn dr_wrr_matches_the_kernel() {
    replay("dr-wrr.txt", Kind::Dr);
}

#[test]
fn dr_sh_matches_the_kernel() {
    replay("dr-sh.txt", Kind::Dr);
}

#[test]
fn dr_mh_matches_the_kernel() {
    replay("dr-mh.txt", Kind::Dr);
}

#[test]
fn nat_rr_matches_the_kernel() {
    replay("nat-rr.txt", Kind::Nat);
}

#[test]
fn nat_wrr_matches_the_kernel() {
    replay("nat-wrr.txt", Kind::Nat);
}

#[test]
fn nat_sh_matches_the_kernel() {
    replay("nat-sh.txt", Kind::Nat);
}

#[test]
fn nat_mh_matches_the_kernel() {
    replay("nat-mh.txt", Kind::Nat);
}

#[test]
fn tun_rr_matches_the_kernel() {
    replay("tun-rr.txt", Kind::Tun);
}

#[test]
fn tun_wrr_matches_the_kernel() {
    replay("tun-wrr.txt", Kind::Tun);
}

#[test]
fn tun_sh_matches_the_kernel() {
    replay("tun-sh.txt", Kind::Tun);
}

#[test]
fn tun_mh_matches_the_kernel() {
    replay("tun-mh.txt", Kind::Tun);
}

#[test]
fn tun_wlc_matches_the_kernel() {
    replay("tun-wlc.txt", Kind::Tun);
}

#[test]
fn dr_wlc_matches_the_kernel() {
    replay("dr-wlc.txt", Kind::Dr);
}

#[test]
fn nat_wlc_matches_the_kernel() {
    replay("nat-wlc.txt", Kind::Nat);
}

#[test]
fn thresholds_match_the_kernel() {
    replay("thresholds.txt", Kind::Nat);
}

#[test]
fn persistence_matches_the_kernel() {
    replay("persistence.txt", Kind::Nat);
}
