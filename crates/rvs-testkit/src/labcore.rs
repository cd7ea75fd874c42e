//! What the VS/DR lab ([`crate::lab`]) and the VS/NAT lab ([`crate::natlab`]) share: the director's
//! `rvsd` process, `rvsadm` and `rvs-realserver` invocations, the scratch and pin directories, the
//! servers' processes, the XDP_PASS keepers and the cleanup of all of these. The labs keep only their
//! topology and what their servers run.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::lab::{AttachPass, Binaries, Keeper, LabError};
use crate::netns::Topology;
use crate::wait;

/// First source port of the client's connections, below the kernel's ephemeral range (32768 and up)
/// so that nothing else in the client's namespace takes them.
pub(crate) const FIRST_CLIENT_PORT: u16 = 10_000;
const LAST_CLIENT_PORT: u16 = 32_767;
/// Connection-table size of the labs' rvsd.
pub(crate) const LAB_CONN_MAX: u32 = 65_536;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// A finished command's status, stdout and stderr, for an error message.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The next unused client source port of a lab.
pub(crate) fn take_port(next: &AtomicU16) -> Result<u16, LabError> {
    let port = next.fetch_add(1, Ordering::Relaxed);
    if !(FIRST_CLIENT_PORT..=LAST_CLIENT_PORT).contains(&port) {
        return Err(LabError::Failed(format!(
            "the lab has used all of its client ports ({FIRST_CLIENT_PORT}-{LAST_CLIENT_PORT})"
        )));
    }
    Ok(port)
}

/// `n` questions from the client, each from the source address `from` gives (one new connection or
/// socket each); `ask` sends one and returns the name that answered. Returns how many each name
/// answered. An error names the `noun` that failed, `dest` and how many had succeeded.
pub(crate) fn spread(
    n: usize,
    noun: &str,
    dest: &str,
    mut from: impl FnMut() -> Result<SocketAddr, LabError>,
    ask: impl Fn(SocketAddr) -> std::io::Result<String>,
) -> Result<BTreeMap<String, usize>, LabError> {
    let mut counts = BTreeMap::new();
    for k in 0..n {
        let from = from()?;
        let name = ask(from).map_err(io(format!(
            "{noun} {} of {n}{dest} from {from} (after {counts:?})",
            k + 1
        )))?;
        *counts.entry(name).or_insert(0) += 1;
    }
    Ok(counts)
}

/// The public methods both labs have, written once: a lab is a struct with a field `core: LabCore`, whose real servers are named by `real_name`.
macro_rules! lab_common_methods {
    () => {
        /// Runs `rvs-realserver ARGS` in real server `i`'s namespace. The lab gives each real server
        /// its own `--state-dir` ([`Self::realserver_state_dir`]): the default is shared by all
        /// namespaces.
        ///
        /// # Errors
        /// The program could not be started.
        pub fn realserver(&self, i: usize, args: &[&str]) -> Result<Output, LabError> {
            self.core.realserver(&real_name(i), args)
        }

        /// The state directory of `rvs-realserver` in real server `i`.
        pub fn realserver_state_dir(&self, i: usize) -> PathBuf {
            self.core.realserver_state_dir(&real_name(i))
        }

        /// The socket `rvsd` listens on.
        pub fn socket(&self) -> PathBuf {
            self.core.socket()
        }

        /// The namespaces.
        pub fn topo(&self) -> &Topology {
            &self.core.topo
        }

        /// Everything `rvsd` has printed so far (across restarts).
        pub fn rvsd_log(&self) -> String {
            self.core.rvsd_log()
        }

        /// Runs `rvsadm ARGS` against this lab's daemon.
        ///
        /// # Errors
        /// The program could not be started.
        pub fn rvsadm(&self, args: &[&str]) -> Result<Output, LabError> {
            self.core.rvsadm(args)
        }

        /// Runs `rvsadm ARGS` and returns its stdout; a non-zero exit is an error.
        ///
        /// # Errors
        /// As [`Self::rvsadm`], or rvsadm failed.
        pub fn rvsadm_ok(&self, args: &[&str]) -> Result<String, LabError> {
            self.core.rvsadm_ok(args)
        }

        /// Number of real servers.
        pub fn reals(&self) -> usize {
            self.core.reals
        }
    };
}
pub(crate) use lab_common_methods;

/// Turns tx checksum offload off on `ifname` in namespace `node`. The kernel leaves TCP checksums to
/// the "hardware" on a veth (CHECKSUM_PARTIAL); a frame that the director's XDP program sends on
/// (XDP_TX or XDP_REDIRECT) is raw bytes without that note, so its receiver would get a half-computed
/// checksum and drop it. Real NICs hand XDP complete frames; make the senders' veths do the same.
pub(crate) fn tx_csum_off(topo: &Topology, node: &str, ifname: &str) -> Result<(), LabError> {
    let out = topo.output_in(node, Command::new("ethtool").args(["-K", ifname, "tx", "off"]))?;
    if !out.status.success() {
        return Err(LabError::Failed(format!(
            "ethtool -K tx off in {node}: {}",
            describe(&out)
        )));
    }
    Ok(())
}

/// A server process of a lab, with what to call it when it dies and where it logs.
struct Server {
    label: String,
    log: String,
    child: Child,
}

/// The processes, programs and directories of a lab. Drop stops every process, releases the programs
/// and removes the pin and scratch directories, and then the namespaces.
pub(crate) struct LabCore {
    rvsd: Option<Child>,
    servers: Vec<Server>,
    pass: Vec<Keeper>,
    bins: Binaries,
    run_dir: PathBuf,
    pin_dir: PathBuf,
    /// Next source port of the client (see [`crate::http::connect`] for why each connection gets its
    /// own).
    pub(crate) next_port: AtomicU16,
    /// Number of real servers.
    pub(crate) reals: usize,
    /// The namespaces; last, so that they go after everything above.
    pub(crate) topo: Topology,
}

impl LabCore {
    /// A new (empty) topology for `reals` real servers, with its scratch directory (created here) and
    /// pin directory.
    pub(crate) fn new(bins: Binaries, reals: usize) -> Result<Self, LabError> {
        let topo = Topology::new();
        let core = LabCore {
            rvsd: None,
            servers: Vec::new(),
            pass: Vec::new(),
            bins,
            run_dir: std::env::temp_dir().join(topo.prefix()),
            pin_dir: Path::new("/sys/fs/bpf").join(topo.prefix()),
            next_port: AtomicU16::new(FIRST_CLIENT_PORT),
            reals,
            topo,
        };
        fs::create_dir_all(&core.run_dir).map_err(io(format!("create {}", core.run_dir.display())))?;
        Ok(core)
    }

    /// Attaches an XDP_PASS program with `attach_pass` to `ifname` in namespace `ns` and keeps it
    /// attached until the lab drops; `place` names the interface in an error.
    pub(crate) fn attach_pass(
        &mut self,
        attach_pass: AttachPass<'_>,
        ns: &str,
        ifname: &str,
        place: &str,
    ) -> Result<(), LabError> {
        let keeper = attach_pass(&self.topo, ns, ifname)
            .map_err(|e| LabError::Failed(format!("cannot attach the XDP_PASS program to {place}: {e}")))?;
        self.pass.push(keeper);
        Ok(())
    }

    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub(crate) fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.run_dir.join("rvsd.sock")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.run_dir.join("state")
    }

    /// The state directory of `rvs-realserver` in namespace `name`.
    pub(crate) fn realserver_state_dir(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    /// Runs `rvs-realserver ARGS` in namespace `name`.
    pub(crate) fn realserver(&self, name: &str, args: &[&str]) -> Result<Output, LabError> {
        Ok(self
            .topo
            .output_in(name, Command::new(&self.bins.realserver).args(args))?)
    }

    pub(crate) fn log_file(&self, name: &str) -> Result<File, LabError> {
        let p = self.run_dir.join(name);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(format!("open {}", p.display())))
    }

    /// Starts `python3 -c SCRIPT ARGS` in namespace `ns`, logging to `log` in the scratch directory;
    /// `label` names it if it dies ([`LabCore::check_servers_alive`]).
    pub(crate) fn spawn_server(
        &mut self,
        ns: &str,
        label: String,
        log: String,
        script: &str,
        args: &[&str],
    ) -> Result<(), LabError> {
        let file = self.log_file(&log)?;
        let child = self.topo.spawn_in(
            ns,
            Command::new("python3")
                .arg("-c")
                .arg(script)
                .args(args)
                .stdin(Stdio::null())
                .stdout(file.try_clone().map_err(io("dup log"))?)
                .stderr(file),
        )?;
        self.servers.push(Server { label, log, child });
        Ok(())
    }

    /// An error naming the first server that has exited, with its log.
    pub(crate) fn check_servers_alive(&mut self) -> Result<(), LabError> {
        for s in &mut self.servers {
            if let Some(status) = s.child.try_wait().map_err(io(format!("wait for {}", s.label)))? {
                let log = fs::read_to_string(self.run_dir.join(&s.log)).unwrap_or_default();
                return Err(LabError::Failed(format!("{} exited ({status}):\n{log}", s.label)));
            }
        }
        Ok(())
    }

    /// `rvsd`'s command line for interfaces `ifaces`, without the program.
    pub(crate) fn rvsd_args(&self, ifaces: &[&str]) -> Vec<String> {
        let mut args = Vec::new();
        for i in ifaces {
            args.extend(["-i".to_owned(), (*i).to_owned()]);
        }
        args.extend([
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
        ]);
        args
    }

    pub(crate) fn rvsd_log(&self) -> String {
        fs::read_to_string(self.run_dir.join("rvsd.log")).unwrap_or_default()
    }

    /// Starts `rvsd ARGS` in namespace `ns` and waits until it answers `rvsadm -Ln`.
    pub(crate) fn start_rvsd(&mut self, ns: &str, args: &[String]) -> Result<(), LabError> {
        if self.rvsd.is_some() {
            return Err(LabError::Failed("rvsd is already running".into()));
        }
        let mut log = self.log_file("rvsd.log")?;
        writeln!(log, "=== rvsd {}", args.join(" ")).map_err(io("write rvsd.log"))?;
        let child = self.topo.spawn_in(
            ns,
            Command::new(&self.bins.rvsd)
                .args(args)
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

    pub(crate) fn kill_rvsd(&mut self) -> Result<(), LabError> {
        let mut c = self
            .rvsd
            .take()
            .ok_or_else(|| LabError::Failed("rvsd is not running".into()))?;
        c.kill().map_err(io("kill rvsd"))?;
        c.wait().map_err(io("wait for rvsd"))?;
        Ok(())
    }

    pub(crate) fn stop_rvsd(&mut self) -> Result<std::process::ExitStatus, LabError> {
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

    /// Runs `rvsadm ARGS` with `input` on its standard input, against this lab's daemon.
    pub(crate) fn rvsadm_stdin(&self, args: &[&str], input: &str) -> Result<Output, LabError> {
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

    pub(crate) fn rvsadm(&self, args: &[&str]) -> Result<Output, LabError> {
        self.rvsadm_stdin(args, "")
    }

    /// Runs `rvsadm ARGS` and returns its stdout; a non-zero exit is an error.
    pub(crate) fn rvsadm_ok(&self, args: &[&str]) -> Result<String, LabError> {
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
}

impl Drop for LabCore {
    fn drop(&mut self) {
        if let Some(mut c) = self.rvsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mut s in self.servers.drain(..) {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        self.pass.clear();
        // Removing the pins releases the director's program, link and maps; deleting the namespaces
        // (when `topo` drops next) removes the interfaces, which detaches anything left.
        // The real servers' records live in run_dir; their routes vanish with the namespaces.
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}
