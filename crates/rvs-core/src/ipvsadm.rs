//! ipvsadm 1.31's command-line grammar, shared by `rvsadm`, `rvsadm -R` and the daemon's rules file.
//!
//! Hand-written rather than clap: ipvsadm is popt-based and scripts depend on popt's behaviour, which clap
//! cannot reproduce: the first option must be the command (`-Ln` works, `-nL` does not), short options
//! bundle with their command (`-Lnc`, `-At`), `-p` takes an optional value only from a following word that
//! is not an option, a second command later on the line is ``invalid option `-D'`` (exit 2) while an unknown
//! option is `--bogus: unknown option` (exit 255), and `-R` feeds every stdin line through the very same
//! parser. Error texts and exit codes are ipvsadm's, checked against shared/ipvs-golden/errors.txt.
//!
//! The checks run in ipvsadm's order (each option as it is met, then popt errors, then `--set` values,
//! leftover words, `-b` flags, the legality matrix, then per-command checks), so a line with several
//! mistakes reports the same one ipvsadm reports. Features ipvsadm parses but rvs cannot hold (fwmark and
//! SCTP services, persistence engines, GUE/GRE tunnels, non-contiguous persistence masks, sync daemons)
//! are accepted by the grammar and refused afterwards with a message that says so.

mod addr;
mod check;
pub mod mark;
mod popt;

use std::net::{Ipv4Addr, Ipv6Addr};

use addr::{AddrSlot, Af, Proto};
use check::{Cmd, Optc, Options, TunType};
use popt::{Opt, Popt};

pub use addr::port_to_service;

use crate::domain::{
    Command, DEFAULT_PERSISTENT_TIMEOUT, DEFAULT_SCHEDULER, Dest, DestKey, FwdMethod, Protocol, Service,
    ServiceKey,
};

/// `ipvsadm -v`'s line (IPVS_VERSION_CODE 1.2.1).
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";
/// ipvsadm's usage hint (`tryhelp_exit`), printed alone for a line whose first option is not a command.
pub const TRY_HELP: &str = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.";
/// The largest timeout ipvsadm accepts (31 days).
pub const MAX_TIMEOUT: u32 = 86400 * 31;
/// What `-L --timeout` shows on a fresh IPVS (tcp, tcpfin, udp seconds).
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    tcp: 900,
    tcpfin: 120,
    udp: 300,
};

/// A command line that ipvsadm refuses: the text it prints and its exit status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// ipvsadm's message, without the final newline.
    pub message: String,
    /// 2 for ipvsadm's `fail()`, 255 for popt and usage errors and for what rvs refuses.
    pub exit_code: i32,
}

impl CliError {
    /// ipvsadm's `fail(2, ...)`.
    fn fail(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 2,
        }
    }
    /// A popt error (`<word>: unknown option`), exit -1.
    fn popt(message: String) -> Self {
        Self {
            message,
            exit_code: 255,
        }
    }
    /// ipvsadm's `tryhelp_exit(argv[0], -1)`.
    fn try_help() -> Self {
        Self {
            message: TRY_HELP.to_owned(),
            exit_code: 255,
        }
    }
    /// Valid for ipvsadm, but not something rvs can do; exit 255 like an operation the kernel refuses.
    fn unsupported(what: &str) -> Self {
        Self {
            message: format!("{what} not supported by rvs"),
            exit_code: 255,
        }
    }
    /// Whether this is the bare usage hint (the line had no command as its first option).
    pub fn is_usage(&self) -> bool {
        self.message == TRY_HELP
    }
}

/// The three timeouts of `--set` (seconds; 0 leaves a value unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: u32,
    /// TCP FIN_WAIT.
    pub tcpfin: u32,
    /// UDP.
    pub udp: u32,
}

/// What `-L` shows (ipvsadm's mutually exclusive `-c`, selector, `--timeout`, `--daemon`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListWhat {
    /// The whole table, with the version header.
    #[default]
    All,
    /// One service, without the version header.
    Service(ServiceKey),
    /// `-c`: the connection table.
    Connections,
    /// `--timeout`.
    Timeout,
    /// `--daemon`: sync daemons.
    Daemon,
}

/// The column set of a table listing. When several are given, the first in this order wins, as in
/// ipvsadm's `print_title`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFormat {
    /// Forward, Weight, ActiveConn, InActConn.
    #[default]
    Default,
    /// `--stats`.
    Stats,
    /// `--rate`.
    Rate,
    /// `--thresholds`.
    Thresholds,
    /// `--persistent-conn`.
    PersistentConn,
    /// `--tun-info`.
    TunInfo,
}

/// Options of `-L`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// What to list.
    pub what: ListWhat,
    /// Columns of a table listing.
    pub format: ListFormat,
    /// `-n`: no name lookups.
    pub numeric: bool,
    /// `--exact`/`-X`: no K/M/G/T scaling.
    pub exact: bool,
    /// `--nosort`: kernel (snapshot) order.
    pub nosort: bool,
    /// `--persistent-conn` given (with `-c` it adds the pe columns).
    pub persistent_conn: bool,
}

/// What one ipvsadm command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// A change of the table (`-A -E -D -C -a -e -d`).
    Command(Command),
    /// `-L`/`-l`, or no arguments at all.
    List(ListOpts),
    /// `-S`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-R`: commands follow on stdin.
    Restore,
    /// `-Z`, optionally for one service.
    Zero(Option<ServiceKey>),
    /// `--set tcp tcpfin udp`.
    SetTimeouts(Timeouts),
    /// `-v`/`--version`.
    Version,
    /// `-h`/`--help`.
    Help,
    /// `--list-marks` (rvs's own): the declared firewall marks.
    ListMarks,
}

/// Parses one ipvsadm command line (`args` without argv\[0\]); no arguments means `-L`.
///
/// Host names are resolved (IPv4 only, as ipvsadm's gethostbyname) and port names are looked up in
/// /etc/services.
///
/// # Errors
/// ipvsadm's message and exit status for a line it would refuse, or for one rvs cannot carry out.
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Invocation, CliError> {
    if args.is_empty() {
        return Ok(Invocation::List(ListOpts::default()));
    }
    if args.first().is_some_and(|a| mark::is_mark_command(a.as_ref())) {
        return mark::parse(args);
    }
    let mut popt = Popt::new(args);
    let Some(Ok(first)) = popt.next_opt() else {
        return Err(CliError::try_help());
    };
    let mut ce = Entry::default();
    let cmd = match first.opt {
        Opt::AddService => Cmd::Add,
        Opt::EditService => Cmd::Edit,
        Opt::DeleteService => Cmd::Del,
        Opt::AddServer => Cmd::AddDest,
        Opt::EditServer => Cmd::EditDest,
        Opt::DeleteServer => Cmd::DelDest,
        Opt::Clear => Cmd::Flush,
        Opt::List => Cmd::List,
        Opt::Zero => Cmd::Zero,
        Opt::Set => Cmd::Timeout,
        Opt::Restore => Cmd::Restore,
        Opt::Save => Cmd::Save,
        Opt::StartDaemon | Opt::StopDaemon => {
            let start = first.opt == Opt::StartDaemon;
            match first.arg.as_deref() {
                Some("master" | "backup") => {}
                _ if start => return Err(CliError::fail("illegal start-daemon parameter specified")),
                // sic: ipvsadm's text for --stop-daemon.
                _ => return Err(CliError::fail("illegal start_daemon specified")),
            }
            if start { Cmd::StartDaemon } else { Cmd::StopDaemon }
        }
        Opt::Help => return Ok(Invocation::Help),
        Opt::Version => return Ok(Invocation::Version),
        _ => return Err(CliError::try_help()),
    };

    while let Some(found) = popt.next_opt() {
        let found = found.map_err(|(e, word)| CliError::popt(format!("{word}: {}", e.text())))?;
        ce.option(found)?;
    }

    let mut leftovers = std::mem::take(&mut popt.leftovers).into_iter();
    let mut timeouts = Timeouts::default();
    if cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (leftovers.next(), leftovers.next(), leftovers.next()) else {
            return Err(CliError::fail("--set option requires 3 timeout values"));
        };
        timeouts = Timeouts {
            tcp: parse_timeout(&a, 0, MAX_TIMEOUT)?,
            tcpfin: parse_timeout(&b, 0, MAX_TIMEOUT)?,
            udp: parse_timeout(&c, 0, MAX_TIMEOUT)?,
        };
    }
    if let Some(extra) = leftovers.next() {
        return Err(CliError::fail(format!("unexpected argument {extra}")));
    }
    if let Some(flags) = ce.sched_flags_arg.take().filter(|f| !f.is_empty()) {
        ce.sched_flags = parse_sched_flags(&ce.sched_name, &flags)?;
    }

    check::generic_opt_check(cmd, ce.options)?;
    ce.finish(cmd)?;
    ce.invocation(cmd, timeouts)
}

/// Parses a rules text (`rvsadm -R`'s stdin, the daemon's rules file) into commands, with the 1-based
/// line each came from.
///
/// Each line is one ipvsadm command line split on blanks; `ipvsadm` words are dropped and blank lines are
/// skipped, as ipvsadm -R does. rvs also skips lines whose first non-blank character is `#` (ipvsadm -R
/// would refuse them; its ipvsadm-restore wrapper filters them). Only table changes are allowed.
///
/// # Errors
/// The 1-based number of the first bad line and why it is bad.
pub fn parse_rules_with_lines(text: &str) -> Result<Vec<(usize, Command)>, (usize, CliError)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let words: Vec<&str> = line
            .split([' ', '\t', '\r', '\n'])
            .filter(|w| !w.is_empty() && *w != "ipvsadm")
            .collect();
        if words.is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let line = words.join(" ");
        match parse_args(&words) {
            Ok(Invocation::Command(c)) => out.push((n, c)),
            Ok(_) => {
                let message = format!("`{line}': only -A, -E, -D, -C, -a, -e and -d are allowed in rules");
                return Err((
                    n,
                    CliError {
                        message,
                        exit_code: 2,
                    },
                ));
            }
            Err(e) if e.is_usage() => {
                let message = format!("`{line}': a rule must start with -A, -E, -D, -C, -a, -e or -d");
                return Err((
                    n,
                    CliError {
                        message,
                        exit_code: 255,
                    },
                ));
            }
            Err(e) => return Err((n, e)),
        }
    }
    Ok(out)
}

/// [`parse_rules_with_lines`] without the line numbers.
///
/// # Errors
/// The 1-based number of the first bad line and why it is bad.
pub fn parse_rules(text: &str) -> Result<Vec<Command>, (usize, CliError)> {
    parse_rules_with_lines(text).map(|v| v.into_iter().map(|(_, c)| c).collect())
}

/// ipvsadm's `parse_timeout` for a value that was given.
fn parse_timeout(buf: &str, min: u32, max: u32) -> Result<u32, CliError> {
    addr::string_to_number(buf, i64::from(min), i64::from(max))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| CliError::fail(format!("invalid timeout value `{buf}' specified")))
}

/// ipvsadm's `parse_fwmark`: 1..=UINT_MAX.
fn parse_fwmark(buf: &str) -> Result<u32, CliError> {
    addr::strtol_whole(buf)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| CliError::fail(format!("invalid fwmark value `{buf}' specified")))
}

/// Scheduler flag bits (IP_VS_SVC_F_SCHED1..3).
const SCHED1: u8 = 1;
const SCHED2: u8 = 2;
const SCHED3: u8 = 4;

/// ipvsadm's `parse_sched_flags`, checked against the scheduler given anywhere on the line (default
/// wlc). Returns the flag names as ipvsadm lists them for that scheduler, in canonical order.
fn parse_sched_flags(sched: &str, arg: &str) -> Result<Vec<String>, CliError> {
    let sched = if sched.is_empty() {
        DEFAULT_SCHEDULER
    } else {
        sched
    };
    let mut bits = 0u8;
    let mut any = false;
    for flag in arg.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, needs) = match flag {
            "flag-1" => (SCHED1, None),
            "flag-2" => (SCHED2, None),
            "flag-3" => (SCHED3, None),
            "sh-fallback" => (SCHED1, Some("sh")),
            "sh-port" => (SCHED2, Some("sh")),
            "mh-fallback" => (SCHED1, Some("mh")),
            "mh-port" => (SCHED2, Some("mh")),
            _ => return Err(CliError::fail(format!("invalid scheduler flag `{flag}'"))),
        };
        if needs.is_some_and(|s| s != sched) {
            return Err(CliError::fail(format!("incompatible scheduler flag `{flag}'")));
        }
        bits |= bit;
    }
    if !any {
        // ipvsadm's strtok loop would dereference NULL here.
        return Err(CliError::fail(format!("invalid scheduler flag `{arg}'")));
    }
    Ok(sched_flag_names(sched, bits))
}

/// ipvsadm's `print_sched_flags`: sh and mh name their flags, other schedulers show flag-N.
fn sched_flag_names(sched: &str, bits: u8) -> Vec<String> {
    let names: [(u8, &str); 3] = match sched {
        "sh" => [(SCHED1, "sh-fallback"), (SCHED2, "sh-port"), (0, "")],
        "mh" => [(SCHED1, "mh-fallback"), (SCHED2, "mh-port"), (0, "")],
        _ => [(SCHED1, "flag-1"), (SCHED2, "flag-2"), (SCHED3, "flag-3")],
    };
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

/// ipvsadm's `ipvs_command_entry` while options are processed, plus the option set.
#[derive(Debug, Default)]
struct Entry {
    options: Options,
    proto: Proto,
    svc: AddrSlot,
    fwmark: u32,
    sched_name: String,
    persistent: Option<u32>,
    ops: bool,
    pe: Option<String>,
    sched_flags_arg: Option<String>,
    sched_flags: Vec<String>,
    dest: AddrSlot,
    fwd: Option<FwdMethod>,
    weight: Option<u32>,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: TunType,
}

impl Entry {
    /// One option after the command (ipvsadm's second switch).
    fn option(&mut self, f: popt::Found) -> Result<(), CliError> {
        let arg = f.arg.clone().unwrap_or_default();
        let o = &mut self.options;
        match f.opt {
            Opt::TcpService | Opt::UdpService | Opt::SctpService => {
                o.set(Optc::Service)?;
                self.proto = match f.opt {
                    Opt::TcpService => Proto::Tcp,
                    Opt::UdpService => Proto::Udp,
                    _ => Proto::Sctp,
                };
                if addr::parse_service(&arg, self.proto, &mut self.svc).is_none() {
                    return Err(CliError::fail("illegal virtual server address[:port] specified"));
                }
            }
            Opt::FwmarkService => {
                o.set(Optc::Service)?;
                self.svc.af = Af::V4;
                self.proto = Proto::Tcp;
                self.fwmark = parse_fwmark(&arg)?;
            }
            Opt::Scheduler => {
                o.set(Optc::Scheduler)?;
                // strncpy into char[IP_VS_SCHEDNAME_MAXLEN]: 15 bytes at most.
                let mut end = arg.len().min(15);
                while !arg.is_char_boundary(end) {
                    end -= 1;
                }
                self.sched_name = arg[..end].to_owned();
            }
            Opt::Persistent => {
                o.set(Optc::Persistent)?;
                self.persistent = Some(match &f.arg {
                    None => DEFAULT_PERSISTENT_TIMEOUT,
                    Some(a) => parse_timeout(a, 1, MAX_TIMEOUT)?,
                });
            }
            Opt::Netmask => {
                o.set(Optc::Netmask)?;
                if self.svc.af != Af::V6 {
                    self.svc.netmask = addr::parse_netmask(&arg)
                        .ok_or_else(|| CliError::fail("illegal virtual server persistent mask specified"))?;
                } else {
                    let n = addr::atoi(&arg);
                    if !(1..=128).contains(&n) {
                        return Err(CliError::fail("illegal ipv6 netmask specified"));
                    }
                    self.svc.netmask = n as u32;
                }
            }
            Opt::RealServer => {
                o.set(Optc::Server)?;
                // ipvsadm parses into a copy of the service, so the port defaults to the service port
                // parsed so far and the protocol for port names is the service's.
                let mut t = self.svc;
                let parsed = addr::parse_service(&arg, self.proto, &mut t)
                    .ok_or_else(|| CliError::fail("illegal real server address[:port] specified"))?;
                self.dest = AddrSlot {
                    af: t.af,
                    addr: t.addr,
                    port: t.port,
                    netmask: 0,
                };
                if !parsed.port_given {
                    self.dest.port = self.svc.port;
                }
            }
            Opt::Ipip | Opt::Gatewaying | Opt::Masquerading => {
                o.set(Optc::Forward)?;
                self.fwd = Some(match f.opt {
                    Opt::Ipip => FwdMethod::Tunnel,
                    Opt::Gatewaying => FwdMethod::Route,
                    _ => FwdMethod::Masq,
                });
            }
            Opt::Weight => {
                o.set(Optc::Weight)?;
                // ipvsadm 1.31's source says 0..65535; the recorded Debian build accepts up to INT_MAX
                // (golden errors.txt: 65536 and 2147483647 pass, 2147483648 fails). The golden run wins.
                let w = addr::string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| CliError::fail("illegal weight specified"))?;
                self.weight = Some(w as u32);
            }
            Opt::UThreshold => {
                o.set(Optc::UThreshold)?;
                self.u_threshold = addr::string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| CliError::fail("illegal u_threshold specified"))?
                    as u32;
            }
            Opt::LThreshold => {
                o.set(Optc::LThreshold)?;
                self.l_threshold = addr::string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| CliError::fail("illegal l_threshold specified"))?
                    as u32;
            }
            Opt::Connection => o.set(Optc::Connection)?,
            Opt::Numeric => o.set(Optc::Numeric)?,
            Opt::McastInterface => o.set(Optc::Mcast)?,
            Opt::SyncId => {
                o.set(Optc::SyncId)?;
                addr::string_to_number(&arg, 0, 255)
                    .ok_or_else(|| CliError::fail("illegal syncid specified"))?;
            }
            Opt::Timeout => o.set(Optc::Timeout)?,
            Opt::Daemon => o.set(Optc::Daemon)?,
            Opt::Stats => o.set(Optc::Stats)?,
            Opt::Rate => o.set(Optc::Rate)?,
            Opt::Thresholds => o.set(Optc::Thresholds)?,
            Opt::PersistentConn => o.set(Optc::PersistentConn)?,
            Opt::NoSort => o.set(Optc::NoSort)?,
            Opt::Sort => {}
            Opt::Exact => o.set(Optc::Exact)?,
            Opt::Ipv6 => {
                if self.fwmark == 0 {
                    // sic: ipvsadm's format string ends in "\n" and fail() adds another.
                    return Err(CliError::fail("-6 used before -f\n"));
                }
                self.svc.af = Af::V6;
                self.svc.netmask = 128;
            }
            Opt::Ops => {
                o.set(Optc::OnePacket)?;
                self.ops = true;
            }
            Opt::Pe => {
                o.set(Optc::PersistenceEngine)?;
                self.pe = Some(arg);
            }
            Opt::SchedFlags => {
                o.set(Optc::SchedFlags)?;
                self.sched_flags_arg = Some(arg);
            }
            Opt::McastGroup => {
                o.set(Optc::McastGroup)?;
                if arg.contains(':') {
                    if !arg.parse::<Ipv6Addr>().is_ok_and(|a| a.is_multicast()) {
                        return Err(CliError::fail(format!("invalid IPv6 mcast-group `{arg}'")));
                    }
                } else if !arg.parse::<Ipv4Addr>().is_ok_and(|a| a.is_multicast()) {
                    return Err(CliError::fail(format!("invalid IPv4 mcast-group `{arg}'")));
                }
            }
            Opt::McastPort => {
                o.set(Optc::McastPort)?;
                addr::string_to_number(&arg, 1, 65535)
                    .ok_or_else(|| CliError::fail("illegal mcast-port specified"))?;
            }
            Opt::McastTtl => {
                o.set(Optc::McastTtl)?;
                addr::string_to_number(&arg, 1, 255)
                    .ok_or_else(|| CliError::fail("illegal mcast-ttl specified"))?;
            }
            Opt::SyncMaxlen => {
                o.set(Optc::SyncMaxlen)?;
                addr::string_to_number(&arg, 1, 65535 - 20 - 8)
                    .ok_or_else(|| CliError::fail("illegal sync-maxlen specified"))?;
            }
            Opt::TunInfo => o.set(Optc::TunInfo)?,
            Opt::TunType => {
                o.set(Optc::TunType)?;
                self.tun_type = match arg.as_str() {
                    "ipip" => TunType::Ipip,
                    "gue" => TunType::Gue,
                    "gre" => TunType::Gre,
                    _ => return Err(CliError::fail("illegal tunnel type specified")),
                };
            }
            Opt::TunPort => {
                o.set(Optc::TunPort)?;
                addr::string_to_number(&arg, 1, 65535)
                    .ok_or_else(|| CliError::fail("illegal tunnel port specified"))?;
            }
            Opt::TunNocsum => o.set(Optc::TunNocsum)?,
            Opt::TunCsum => o.set(Optc::TunCsum)?,
            Opt::TunRemcsum => o.set(Optc::TunRemcsum)?,
            Opt::AddService
            | Opt::EditService
            | Opt::DeleteService
            | Opt::Clear
            | Opt::List
            | Opt::Zero
            | Opt::AddServer
            | Opt::EditServer
            | Opt::DeleteServer
            | Opt::Set
            | Opt::Help
            | Opt::Version
            | Opt::Restore
            | Opt::Save
            | Opt::StartDaemon
            | Opt::StopDaemon => return Err(CliError::fail(format!("invalid option `{}'", f.token))),
        }
        Ok(())
    }

    /// ipvsadm's checks after the legality matrix (`process_options`).
    fn finish(&mut self, cmd: Cmd) -> Result<(), CliError> {
        let o = self.options;
        match cmd {
            Cmd::Add | Cmd::Edit => {
                if self.fwmark == 0 && self.svc.port == 0 && self.persistent.is_none() {
                    return Err(CliError::fail("Zero port specified for non-persistent service"));
                }
                if self.ops && self.fwmark == 0 && self.proto != Proto::Udp {
                    return Err(CliError::fail(
                        "One-Packet Scheduling is only for UDP virtual services",
                    ));
                }
                if self.sched_name.is_empty() {
                    DEFAULT_SCHEDULER.clone_into(&mut self.sched_name);
                }
            }
            Cmd::AddDest | Cmd::EditDest => {
                let fwd = self.fwd.unwrap_or_default();
                // Without -m the real server cannot remap the port: it must be the service's.
                if self.fwmark == 0 && matches!(fwd, FwdMethod::Tunnel | FwdMethod::Route) {
                    self.dest.port = self.svc.port;
                }
                if self.dest.af != self.svc.af && fwd != FwdMethod::Tunnel {
                    return Err(CliError::fail(
                        "Different address family is allowed only for tunneling servers",
                    ));
                }
                let tun_opts = [
                    Optc::TunType,
                    Optc::TunPort,
                    Optc::TunNocsum,
                    Optc::TunCsum,
                    Optc::TunRemcsum,
                ];
                if tun_opts.iter().any(|t| o.has(*t)) && fwd != FwdMethod::Tunnel {
                    return Err(CliError::fail("Tunnel options conflict with forward method"));
                }
                check::tunnel_opt_check(self.tun_type, o)?;
            }
            Cmd::List => {
                let out_of_table = o.has(Optc::Connection) || o.has(Optc::Timeout) || o.has(Optc::Daemon);
                let columns = o.has(Optc::Stats) || o.has(Optc::Rate) || o.has(Optc::Thresholds);
                let not_table = o.has(Optc::Timeout) || o.has(Optc::Daemon);
                if (out_of_table && columns) || (not_table && o.has(Optc::PersistentConn)) {
                    return Err(CliError::fail("options conflicts in the list command"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The service selector as rvs's key; SCTP services do not exist in rvs.
    fn service_key(&self) -> Result<ServiceKey, CliError> {
        if self.fwmark != 0 {
            return Ok(ServiceKey::fwmark(self.fwmark, self.svc.af == Af::V6));
        }
        let proto = match self.proto {
            Proto::Tcp => Protocol::Tcp,
            Proto::Udp => Protocol::Udp,
            Proto::Sctp => return Err(CliError::unsupported("SCTP services are")),
            Proto::None => return Err(CliError::try_help()),
        };
        let addr = self.svc.addr.ok_or_else(CliError::try_help)?;
        Ok(ServiceKey {
            proto,
            addr,
            port: self.svc.port,
        })
    }

    /// The persistence netmask as a prefix length.
    fn prefix(&self) -> Result<u8, CliError> {
        match self.svc.af {
            Af::V6 => Ok(self.svc.netmask.min(128) as u8),
            _ => {
                // ipvsadm's default is /32 (0xffffffff); a mask given with -M is a dotted u32.
                let mask = if self.options.has(Optc::Netmask) {
                    self.svc.netmask
                } else {
                    u32::MAX
                };
                let prefix = mask.leading_ones();
                if mask.checked_shl(prefix).unwrap_or(0) != 0 {
                    return Err(CliError::unsupported(&format!(
                        "non-contiguous persistence mask {} is",
                        Ipv4Addr::from(mask)
                    )));
                }
                Ok(prefix as u8)
            }
        }
    }

    fn invocation(self, cmd: Cmd, timeouts: Timeouts) -> Result<Invocation, CliError> {
        let o = self.options;
        Ok(match cmd {
            Cmd::Add | Cmd::Edit => {
                let key = self.service_key()?;
                if self.pe.is_some() {
                    // What ipvsadm prints when the kernel has no such engine: rvs has none.
                    return Err(CliError {
                        message: "Scheduler or persistence engine not found".to_owned(),
                        exit_code: 255,
                    });
                }
                let svc = Service {
                    key,
                    scheduler: self.sched_name.clone(),
                    persistent: self.persistent,
                    netmask: self.prefix()?,
                    sched_flags: self.sched_flags.clone(),
                    ops: self.ops,
                };
                Invocation::Command(if cmd == Cmd::Add {
                    Command::AddService(svc)
                } else {
                    Command::EditService(svc)
                })
            }
            Cmd::Del => Invocation::Command(Command::DelService(self.service_key()?)),
            Cmd::Flush => Invocation::Command(Command::Clear),
            Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
                let key = self.service_key()?;
                let addr = self.dest.addr.ok_or_else(CliError::try_help)?;
                let dkey = DestKey {
                    addr,
                    port: self.dest.port,
                };
                if cmd == Cmd::DelDest {
                    return Ok(Invocation::Command(Command::DelDest(key, dkey)));
                }
                let fwd = self.fwd.unwrap_or_default();
                if fwd == FwdMethod::Tunnel && self.tun_type != TunType::Ipip {
                    return Err(CliError::unsupported(&format!(
                        "{} tunnels are",
                        self.tun_type.name()
                    )));
                }
                let dest = Dest {
                    key: dkey,
                    fwd,
                    weight: self.weight.unwrap_or(1),
                    u_threshold: self.u_threshold,
                    l_threshold: self.l_threshold,
                };
                Invocation::Command(if cmd == Cmd::AddDest {
                    Command::AddDest(key, dest)
                } else {
                    Command::EditDest(key, dest)
                })
            }
            Cmd::List => {
                let what = if o.has(Optc::Connection) {
                    ListWhat::Connections
                } else if o.has(Optc::Service) {
                    ListWhat::Service(self.service_key()?)
                } else if o.has(Optc::Timeout) {
                    ListWhat::Timeout
                } else if o.has(Optc::Daemon) {
                    ListWhat::Daemon
                } else {
                    ListWhat::All
                };
                let format = if o.has(Optc::Stats) {
                    ListFormat::Stats
                } else if o.has(Optc::Rate) {
                    ListFormat::Rate
                } else if o.has(Optc::Thresholds) {
                    ListFormat::Thresholds
                } else if o.has(Optc::PersistentConn) {
                    ListFormat::PersistentConn
                } else if o.has(Optc::TunInfo) {
                    ListFormat::TunInfo
                } else {
                    ListFormat::Default
                };
                Invocation::List(ListOpts {
                    what,
                    format,
                    numeric: o.has(Optc::Numeric),
                    exact: o.has(Optc::Exact),
                    nosort: o.has(Optc::NoSort),
                    persistent_conn: o.has(Optc::PersistentConn),
                })
            }
            Cmd::Save => Invocation::Save {
                numeric: o.has(Optc::Numeric),
            },
            Cmd::Restore => Invocation::Restore,
            Cmd::Zero => Invocation::Zero(if o.has(Optc::Service) {
                Some(self.service_key()?)
            } else {
                None
            }),
            Cmd::Timeout => Invocation::SetTimeouts(timeouts),
            Cmd::StartDaemon | Cmd::StopDaemon => {
                return Err(CliError::unsupported("connection synchronisation daemons are"));
            }
        })
    }
}

#[cfg(test)]
mod tests;
