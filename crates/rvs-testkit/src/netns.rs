//! Network namespaces for one test, behind a guard that deletes them on Drop, even when the test panics.
//!
//! Names are unique per process and per [`Topology`] (`rvst<pid>-<n>-<name>`), so tests may run in
//! parallel, and other users of the machine are never touched: Drop deletes only the namespaces this
//! guard created.
//!
//! Code enters a namespace in one of two ways, both of which change only the network namespace:
//! [`Topology::spawn_in`] (setns in the child before exec) and [`Topology::run_in`] (a dedicated thread,
//! because setns changes only the calling thread). Never `ip netns exec`: it also remounts /sys for the
//! child, which hides /sys/fs/bpf, so a daemon started that way would pin its maps where nobody else
//! sees them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Counter of guards made by this process: the second part of every name.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// What can go wrong while building or using a topology.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command or file could not be used at all.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A namespace name that this topology did not create.
    #[error("no namespace {0:?} in this topology")]
    UnknownNs(String),
    /// An interface that has no line in /proc/net/dev of its namespace.
    #[error("no interface {ifname} in namespace {ns}")]
    UnknownIf {
        /// Namespace (short name).
        ns: String,
        /// Interface.
        ifname: String,
    },
    /// The code given to [`Topology::run_in`] panicked; the message is kept.
    #[error("code run in namespace {ns} panicked: {message}")]
    Panicked {
        /// Namespace (short name).
        ns: String,
        /// Panic message.
        message: String,
    },
}

/// A namespace of a [`Topology`].
#[derive(Clone, Debug)]
pub struct Netns {
    short: String,
    name: String,
}

impl Netns {
    /// The name given to [`Topology::add_ns`].
    pub fn short(&self) -> &str {
        &self.short
    }
    /// The system-wide name (`ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The bind mount that keeps the namespace alive: `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
    fn open(&self) -> Result<File, NetnsError> {
        File::open(self.path()).map_err(|source| NetnsError::Io {
            what: format!("open {}", self.path().display()),
            source,
        })
    }
}

/// Packet and byte counters of one interface, as /proc/net/dev of its namespace shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped on send.
    pub tx_dropped: u64,
}

impl IfStats {
    /// Counter increase from `earlier` to `self` (counters only grow while the interface lives).
    pub fn since(&self, earlier: &IfStats) -> IfStats {
        IfStats {
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

/// The namespaces and links of one test. Drop deletes every namespace it created, in reverse order.
///
/// Processes started in a namespace keep it alive after the guard deletes its name: stop them first
/// (own their [`Child`] in a field declared before the `Topology`, or kill them in your own Drop).
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    netns: Vec<Netns>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Topology {
    /// An empty topology with a fresh name prefix. Creates nothing yet.
    pub fn new() -> Self {
        let prefix = format!(
            "rvst{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            prefix,
            netns: Vec::new(),
        }
    }

    /// The prefix of every name this topology creates (`rvst<pid>-<n>`); also usable for pin
    /// directories and sockets that must be unique to this topology.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `short` with its loopback up.
    ///
    /// # Errors
    /// `ip netns add` or `ip link set lo up` failed.
    pub fn add_ns(&mut self, short: &str) -> Result<&Netns, NetnsError> {
        let ns = Netns {
            short: short.to_owned(),
            name: format!("{}-{short}", self.prefix),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]))?;
        // Recorded before anything else can fail, so that Drop deletes it.
        self.netns.push(ns);
        self.ip(short, &["link", "set", "lo", "up"])?;
        Ok(self.netns.last().expect("just pushed"))
    }

    /// The namespace created as `short`.
    ///
    /// # Errors
    /// [`NetnsError::UnknownNs`] when this topology has no such namespace.
    pub fn ns(&self, short: &str) -> Result<&Netns, NetnsError> {
        self.netns
            .iter()
            .find(|n| n.short == short)
            .ok_or_else(|| NetnsError::UnknownNs(short.to_owned()))
    }

    /// Every namespace, in creation order.
    pub fn namespaces(&self) -> &[Netns] {
        &self.netns
    }

    /// Runs `ip ARGS` in namespace `short` (`ip -n`, which affects only that ip process) and returns its
    /// stdout.
    ///
    /// # Errors
    /// Unknown namespace, or ip failed.
    pub fn ip(&self, short: &str, args: &[&str]) -> Result<String, NetnsError> {
        let ns = self.ns(short)?;
        let out = run(Command::new("ip").arg("-n").arg(&ns.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a veth pair: `a_if` in namespace `a`, `b_if` in namespace `b`, both up.
    ///
    /// # Errors
    /// Unknown namespace, name too long, or ip failed.
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> Result<(), NetnsError> {
        check_ifname(a_if)?;
        check_ifname(b_if)?;
        let peer_ns = self.ns(b)?.name.clone();
        // Created inside `a` with the peer placed directly in `b`: nothing ever appears in the
        // caller's namespace, so names cannot clash with other users of the machine.
        self.ip(
            a,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &peer_ns,
            ],
        )?;
        self.ip(a, &["link", "set", a_if, "up"])?;
        self.ip(b, &["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Creates namespace `short` holding bridge `br0`: an L2 switch. STP is off (the kernel's default),
    /// so ports forward as soon as they are up.
    ///
    /// # Errors
    /// As [`Topology::add_ns`] and ip.
    pub fn add_switch(&mut self, short: &str) -> Result<(), NetnsError> {
        self.add_ns(short)?;
        self.ip(short, &["link", "add", "br0", "type", "bridge"])?;
        self.ip(short, &["link", "set", "br0", "up"])?;
        Ok(())
    }

    /// Plugs namespace `node` into switch `switch`: `node_if` in `node`, and a bridge port in the switch
    /// named after the node (truncated to 15 characters). Returns the port's name.
    ///
    /// # Errors
    /// As [`Topology::veth`].
    pub fn plug(&self, switch: &str, node: &str, node_if: &str) -> Result<String, NetnsError> {
        let port: String = node.chars().take(IFNAME_MAX).collect();
        self.veth(node, node_if, switch, &port)?;
        self.ip(switch, &["link", "set", &port, "master", "br0"])?;
        Ok(port)
    }

    /// Adds address `cidr` (`a.b.c.d/len`) to `ifname` in namespace `ns`.
    ///
    /// # Errors
    /// As [`Topology::ip`].
    pub fn addr(&self, ns: &str, ifname: &str, cidr: &str) -> Result<(), NetnsError> {
        self.ip(ns, &["addr", "add", cidr, "dev", ifname]).map(drop)
    }

    /// Sets the MAC address of `ifname` in namespace `ns`.
    ///
    /// # Errors
    /// As [`Topology::ip`].
    pub fn set_mac(&self, ns: &str, ifname: &str, mac: [u8; 6]) -> Result<(), NetnsError> {
        self.ip(ns, &["link", "set", ifname, "address", &mac_string(mac)])
            .map(drop)
    }

    /// Writes `value` to `/proc/sys/<key>` (slash-separated, e.g. `net/ipv6/conf/all/disable_ipv6`) in
    /// namespace `ns`: /proc/sys/net belongs to the namespace of the thread that opens it.
    ///
    /// # Errors
    /// Unknown namespace, or the write failed.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = format!("/proc/sys/{key}");
        let value = format!("{value}\n");
        self.run_in(ns, || std::fs::write(&path, &value))?
            .map_err(|source| NetnsError::Io {
                what: format!("write {path} in {ns}"),
                source,
            })
    }

    /// Reads `/proc/sys/<key>` in namespace `ns`, trimmed.
    ///
    /// # Errors
    /// Unknown namespace, or the read failed.
    pub fn sysctl_read(&self, ns: &str, key: &str) -> Result<String, NetnsError> {
        let path = format!("/proc/sys/{key}");
        self.run_in(ns, || std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_owned())
            .map_err(|source| NetnsError::Io {
                what: format!("read {path} in {ns}"),
                source,
            })
    }

    /// Starts `cmd` in namespace `ns`. Only the network namespace changes: the child keeps the caller's
    /// mount namespace, so /sys/fs/bpf is the same for it as for the caller.
    ///
    /// # Errors
    /// Unknown namespace, or the spawn (or the child's setns) failed.
    pub fn spawn_in(&self, ns: &str, cmd: &mut Command) -> Result<Child, NetnsError> {
        let netns = self.ns(ns)?;
        let file = netns.open()?;
        let fd = file.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe calls are
        // allowed; setns(2) is a plain syscall and touches no allocator or lock. `fd` stays open in the
        // parent (`file` lives until spawn returns) and is inherited by the child across the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd.spawn().map_err(|source| NetnsError::Io {
            what: format!("spawn {cmd:?} in {}", netns.name),
            source,
        });
        drop(file);
        child
    }

    /// Runs `cmd` in namespace `ns` to completion and returns its output (whatever its exit status).
    ///
    /// # Errors
    /// As [`Topology::spawn_in`].
    pub fn output_in(&self, ns: &str, cmd: &mut Command) -> Result<Output, NetnsError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = self.spawn_in(ns, cmd)?;
        child.wait_with_output().map_err(|source| NetnsError::Io {
            what: format!("wait for {cmd:?}"),
            source,
        })
    }

    /// Runs `f` on a new thread that has entered namespace `ns` and returns its result. setns changes
    /// only the calling thread, and the thread ends with `f`, so the namespace cannot leak into other
    /// code. Sockets `f` creates stay in `ns` wherever they are used afterwards.
    ///
    /// # Errors
    /// Unknown namespace, setns failed, or `f` panicked.
    pub fn run_in<R: Send>(&self, ns: &str, f: impl FnOnce() -> R + Send) -> Result<R, NetnsError> {
        let netns = self.ns(ns)?;
        let file = netns.open()?;
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetnsError::Io {
                        what: format!("setns into {}", netns.name),
                        source: std::io::Error::from(e),
                    }
                })?;
                Ok(f())
            });
            h.join().unwrap_or_else(|p| {
                Err(NetnsError::Panicked {
                    ns: ns.to_owned(),
                    message: panic_message(&p),
                })
            })
        })
    }

    /// Counters of interface `ifname` in namespace `ns`.
    ///
    /// # Errors
    /// Unknown namespace or interface.
    pub fn if_stats(&self, ns: &str, ifname: &str) -> Result<IfStats, NetnsError> {
        // /proc/net is /proc/self/net, which follows the thread-group leader's namespace; the thread's
        // own view is under /proc/thread-self.
        let text = self
            .run_in(ns, || std::fs::read_to_string("/proc/thread-self/net/dev"))?
            .map_err(|source| NetnsError::Io {
                what: format!("read /proc/net/dev in {ns}"),
                source,
            })?;
        parse_net_dev(&text, ifname).ok_or_else(|| NetnsError::UnknownIf {
            ns: ns.to_owned(),
            ifname: ifname.to_owned(),
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.netns.iter().rev() {
            // Errors are ignored on purpose: Drop may run while a panic unwinds, and a second panic
            // would abort before the other namespaces are deleted.
            let _ = Command::new("ip")
                .args(["netns", "del", &ns.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `02:00:c6:12:00:0b`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn check_ifname(name: &str) -> Result<(), NetnsError> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(NetnsError::Io {
            what: format!("interface name {name:?}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "must be 1 to 15 bytes"),
        });
    }
    Ok(())
}

/// Runs a command to completion; a non-zero exit is an error carrying stderr.
fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Io {
            what: format!("run {cmd:?}"),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd: format!("{cmd:?}"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned())
}

/// The counters of `ifname` from /proc/net/dev text:
/// `  eth0: rx_bytes rx_packets errs drop fifo frame compressed multicast tx_bytes tx_packets errs drop ...`
fn parse_net_dev(text: &str, ifname: &str) -> Option<IfStats> {
    text.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != ifname {
            return None;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(IfStats {
            rx_bytes: *v.first()?,
            rx_packets: *v.get(1)?,
            rx_dropped: *v.get(3)?,
            tx_bytes: *v.get(8)?,
            tx_packets: *v.get(9)?,
            tx_dropped: *v.get(11)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_parse_by_column() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
            eth0:  123456     789    0    5    0     0          0         0    65432     321    0    7    0     0       0          0\n";
        let s = parse_net_dev(text, "eth0").unwrap();
        assert_eq!(
            s,
            IfStats {
                rx_bytes: 123456,
                rx_packets: 789,
                rx_dropped: 5,
                tx_bytes: 65432,
                tx_packets: 321,
                tx_dropped: 7
            }
        );
        assert!(parse_net_dev(text, "eth1").is_none());
    }

    #[test]
    fn names_are_unique_per_topology() {
        let (a, b) = (Topology::new(), Topology::new());
        assert_ne!(a.prefix(), b.prefix());
        assert!(a.prefix().starts_with(&format!("rvst{}-", std::process::id())));
    }
}
