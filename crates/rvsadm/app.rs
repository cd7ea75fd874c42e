//! One rvsadm run: an ipvsadm command line in, stdout, stderr and an exit status out. All I/O goes
//! through the arguments, so that every path is testable without a daemon.

use std::error::Error as _;
use std::io::Read;

use rvs_api::{ClientError, Request, Response, Snapshot};
use rvs_core::Command;
use rvs_core::ipvsadm::{CliError, Invocation, ListWhat, VERSION_LINE, parse_args, parse_rules_with_lines};

use crate::daemon::Daemon;
use crate::format::{self, Names};
use crate::help;

/// What the process prints and returns.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: u8,
}

impl Outcome {
    fn out(stdout: String) -> Self {
        Self {
            stdout,
            ..Self::default()
        }
    }
    fn err(message: impl std::fmt::Display, code: u8) -> Self {
        Self {
            stderr: format!("{message}\n"),
            code,
            ..Self::default()
        }
    }
}

/// Exit status of a refused operation (ipvsadm exits -1 after a kernel error).
const REFUSED: u8 = 255;
/// Exit status when rvsd cannot be reached (ipvsadm's "Can't initialize ipvs" is fail(2)).
const NO_DAEMON: u8 = 2;

/// Runs the ipvsadm command line `args` (after rvsadm's own options) for program name `prog`.
pub(crate) fn run(
    prog: &str,
    args: &[String],
    stdin: &mut dyn Read,
    daemon: &mut dyn Daemon,
    names: &dyn Names,
) -> Outcome {
    let inv = match parse_args(args) {
        Ok(inv) => inv,
        Err(e) => return cli_error(prog, &e),
    };
    match inv {
        Invocation::Help => Outcome::out(help::usage(prog)),
        Invocation::Version => Outcome::out(format!("{VERSION_LINE}\n")),
        Invocation::Command(cmd) => apply(daemon, vec![cmd], &[]),
        Invocation::List(opts) => match snapshot(daemon, opts.what == ListWhat::Connections) {
            Ok(snap) => match format::list(&snap, &opts, names) {
                Ok(text) => Outcome::out(text),
                // ipvsadm's list_service: ipvs_strerror(ESRCH) and exit(1).
                Err(format::NoSuchService) => Outcome::err("No such service", 1),
            },
            Err(o) => o,
        },
        Invocation::Save { numeric } => match snapshot(daemon, false) {
            Ok(snap) => match marks(daemon) {
                Ok(m) => Outcome::out(format::mark_rules(&m) + &format::save(&snap, numeric, names)),
                Err(o) => o,
            },
            Err(o) => o,
        },
        Invocation::ListMarks => match marks(daemon) {
            Ok(m) => Outcome::out(format::list_marks(&m)),
            Err(o) => o,
        },
        Invocation::Restore => restore(stdin, daemon),
        Invocation::Zero(sel) => request(daemon, &Request::Zero(sel), &[]),
        Invocation::SetTimeouts(t) => request(
            daemon,
            &Request::SetTimeouts {
                tcp: t.tcp,
                tcpfin: t.tcpfin,
                udp: t.udp,
            },
            &[],
        ),
    }
}

/// A refused command line: ipvsadm's text and status; the usage hint names the program as invoked.
fn cli_error(prog: &str, e: &CliError) -> Outcome {
    let code = u8::try_from(e.exit_code).unwrap_or(REFUSED);
    if e.is_usage() {
        return Outcome::err(
            format!("Try `{prog} -h' or '{prog} --help' for more information."),
            code,
        );
    }
    Outcome::err(&e.message, code)
}

/// `-R`: every line parsed before anything is sent, then one all-or-nothing batch.
fn restore(stdin: &mut dyn Read, daemon: &mut dyn Daemon) -> Outcome {
    let mut raw = Vec::new();
    if let Err(e) = stdin.read_to_end(&mut raw) {
        return Outcome::err(format!("cannot read the rules from stdin: {e}"), 2);
    }
    let text = String::from_utf8_lossy(&raw);
    let lines = match parse_rules_with_lines(&text) {
        Ok(l) => l,
        Err((n, e)) => {
            return Outcome::err(
                format!("line {n}: {}", e.message),
                u8::try_from(e.exit_code).unwrap_or(2),
            );
        }
    };
    if lines.is_empty() {
        return Outcome::default();
    }
    let (numbers, cmds): (Vec<usize>, Vec<Command>) = lines.into_iter().unzip();
    apply(daemon, cmds, &numbers)
}

/// Sends one batch. `lines` maps batch positions to input lines for `-R`'s messages (empty otherwise).
fn apply(daemon: &mut dyn Daemon, cmds: Vec<Command>, lines: &[usize]) -> Outcome {
    request(daemon, &Request::Apply(cmds), lines)
}

/// Sends a request that changes something; a refusal prints ipvsadm's text, exit 255.
fn request(daemon: &mut dyn Daemon, req: &Request, lines: &[usize]) -> Outcome {
    match daemon.call(req) {
        Ok(Response::Ok) => Outcome::default(),
        Ok(Response::Refused { index, error }) => match lines.get(index) {
            Some(n) => Outcome::err(format!("line {n}: {error}"), REFUSED),
            None => Outcome::err(error, REFUSED),
        },
        Ok(other) => unexpected(other),
        Err(e) => client_error(&e),
    }
}

/// The declared firewall marks; none from a daemon that predates them (it fails the request).
fn marks(daemon: &mut dyn Daemon) -> Result<Vec<rvs_core::Mark>, Outcome> {
    match daemon.call(&Request::Marks) {
        Ok(Response::Marks(m)) => Ok(m),
        Ok(Response::Failed(_)) => Ok(Vec::new()),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(client_error(&e)),
    }
}

/// The table; with the connection entries if `conns` (`-c`).
fn snapshot(daemon: &mut dyn Daemon, conns: bool) -> Result<Snapshot, Outcome> {
    let req = if conns { Request::ListConns } else { Request::List };
    match daemon.call(&req) {
        Ok(Response::Snapshot(s)) => Ok(s),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(client_error(&e)),
    }
}

fn unexpected(r: Response) -> Outcome {
    match r {
        Response::Failed(msg) => Outcome::err(msg, REFUSED),
        other => Outcome::err(format!("rvsd sent an unexpected response: {other:?}"), NO_DAEMON),
    }
}

/// Cannot talk to rvsd: modelled on ipvsadm's "Can't initialize ipvs: ...\nAre you sure ...".
fn client_error(e: &ClientError) -> Outcome {
    if let ClientError::Connect { path, source } = e {
        return Outcome::err(
            format!(
                "Can't connect to rvsd at {path}: {source}\nIs rvsd running? (rvsadm --socket PATH or RVS_SOCKET \
                 selects another one)"
            ),
            NO_DAEMON,
        );
    }
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    Outcome::err(msg, NO_DAEMON)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::IpAddr;

    use rvs_api::{DestSnap, RateSnap, ServiceSnap, StatsSnap};
    use rvs_core::{ApplyError, Protocol};

    use super::*;

    /// Answers from a queue and records what it was asked.
    struct Fake {
        answers: VecDeque<Result<Response, ClientError>>,
        asked: Vec<Request>,
    }

    impl Fake {
        fn new(answers: Vec<Result<Response, ClientError>>) -> Self {
            Self {
                answers: answers.into(),
                asked: vec![],
            }
        }
    }

    impl Daemon for Fake {
        fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
            self.asked.push(req.clone());
            self.answers.pop_front().expect("unexpected request")
        }
    }

    struct NoNames;
    impl Names for NoNames {
        fn host(&self, _: IpAddr) -> Option<String> {
            None
        }
        fn port(&self, _: u16, _: Protocol) -> Option<String> {
            None
        }
    }

    fn go(prog: &str, line: &str, stdin: &str, fake: &mut Fake) -> Outcome {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        run(prog, &args, &mut stdin.as_bytes(), fake, &NoNames)
    }

    fn connect_refused() -> ClientError {
        ClientError::Connect {
            path: "/run/rvs/rvsd.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn version_help_and_bad_lines_need_no_daemon() {
        let mut f = Fake::new(vec![]);
        let o = go("ipvsadm", "--version", "", &mut f);
        assert_eq!(
            o,
            Outcome::out("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n".into())
        );
        assert_eq!(go("rvsadm", "-v", "", &mut f).stdout, o.stdout);
        let h = go("rvsadm", "-h", "", &mut f);
        assert_eq!(h.code, 0);
        assert!(h.stdout.contains("  rvsadm -S [-n]\n"));
        let e = go("ipvsadm", "-A -t 198.18.0.300:80", "", &mut f);
        assert_eq!(
            e,
            Outcome::err("illegal virtual server address[:port] specified", 2)
        );
        let e = go("ipvsadm", "-s rr", "", &mut f);
        assert_eq!(
            e,
            Outcome::err("Try `ipvsadm -h' or 'ipvsadm --help' for more information.", 255)
        );
        let e = go("rvsadm", "--bogus", "", &mut f);
        assert_eq!(
            e,
            Outcome::err("Try `rvsadm -h' or 'rvsadm --help' for more information.", 255)
        );
        assert!(f.asked.is_empty());
    }

    #[test]
    fn a_command_is_one_apply_and_a_refusal_is_ipvsadms_text() {
        let mut f = Fake::new(vec![
            Ok(Response::Ok),
            Ok(Response::Refused {
                index: 0,
                error: ApplyError::ServiceExists,
            }),
            Ok(Response::Failed("map rvs_svc: update failed".into())),
        ]);
        assert_eq!(
            go("rvsadm", "-A -t 198.18.0.100:80 -s rr", "", &mut f),
            Outcome::default()
        );
        assert_eq!(
            go("rvsadm", "-A -t 198.18.0.100:80 -s rr", "", &mut f),
            Outcome::err("Service already exists", 255)
        );
        assert_eq!(
            go("rvsadm", "-C", "", &mut f),
            Outcome::err("map rvs_svc: update failed", 255)
        );
        assert!(matches!(&f.asked[0], Request::Apply(v) if v.len() == 1));
        assert_eq!(f.asked[2], Request::Apply(vec![Command::Clear]));
    }

    #[test]
    fn no_daemon_exits_2() {
        let mut f = Fake::new(vec![Err(connect_refused())]);
        let o = go("rvsadm", "-Ln", "", &mut f);
        assert_eq!(o.code, 2);
        assert!(
            o.stderr
                .starts_with("Can't connect to rvsd at /run/rvs/rvsd.sock: "),
            "{}",
            o.stderr
        );
    }

    #[test]
    fn restore_parses_everything_first_and_sends_one_batch() {
        let rules = "-A -t 198.18.0.100:80 -s rr\n\n# comment\n-a -t 198.18.0.100:80 -r 198.18.1.11 -m\n";
        let mut f = Fake::new(vec![Ok(Response::Ok)]);
        assert_eq!(go("rvsadm", "-R", rules, &mut f), Outcome::default());
        assert_eq!(f.asked.len(), 1);
        assert!(matches!(&f.asked[0], Request::Apply(v) if v.len() == 2));

        // A bad line: nothing is sent, the line is named, ipvsadm's status.
        let mut f = Fake::new(vec![]);
        let bad = "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11 -w x\n";
        assert_eq!(
            go("rvsadm", "-R", bad, &mut f),
            Outcome::err("line 2: illegal weight specified", 2)
        );
        assert!(f.asked.is_empty());

        // A refused command: the daemon applied nothing; the message names the input line.
        let mut f = Fake::new(vec![Ok(Response::Refused {
            index: 1,
            error: ApplyError::ServiceExists,
        })]);
        let dup = "-A -t 198.18.0.100:94 -s rr\n\n-A -t 198.18.0.100:94 -s rr\n";
        assert_eq!(
            go("rvsadm", "-R", dup, &mut f),
            Outcome::err("line 3: Service already exists", 255)
        );

        // Empty input: nothing to do.
        let mut f = Fake::new(vec![]);
        assert_eq!(go("rvsadm", "-R", "\n\n", &mut f), Outcome::default());
    }

    fn one_service() -> Snapshot {
        let cmds = rvs_core::ipvsadm::parse_rules(
            "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 1\n",
        )
        .unwrap();
        let (Command::AddService(service), Command::AddDest(_, dest)) = (&cmds[0], &cmds[1]) else {
            panic!()
        };
        let d = DestSnap {
            dest: dest.clone(),
            active: 0,
            inactive: 0,
            persist: 0,
            stats: StatsSnap::default(),
            rate: RateSnap::default(),
        };
        Snapshot {
            conn_tab_size: 4096,
            timeouts: Default::default(),
            conns: vec![],
            services: vec![ServiceSnap {
                service: service.clone(),
                stats: StatsSnap::default(),
                rate: RateSnap::default(),
                dests: vec![d],
            }],
        }
    }

    #[test]
    fn list_save_and_missing_service() {
        let mut f = Fake::new(vec![
            Ok(Response::Snapshot(one_service())),
            Ok(Response::Snapshot(one_service())),
            Ok(Response::Marks(vec![])),
            Ok(Response::Snapshot(one_service())),
        ]);
        let o = go("rvsadm", "-Ln", "", &mut f);
        assert_eq!(
            o.stdout,
            "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> \
             RemoteAddress:Port           Forward Weight ActiveConn InActConn\nTCP  198.18.0.100:80 rr\n  -> \
             198.18.1.11:80               Masq    1      0          0         \n"
        );
        let o = go("rvsadm", "-S -n", "", &mut f);
        assert_eq!(
            o.stdout,
            "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 1\n"
        );
        // errors.txt: `-Ln -t 198.18.0.100:99` is `No such service`, exit 1.
        assert_eq!(
            go("rvsadm", "-Ln -t 198.18.0.100:99", "", &mut f),
            Outcome::err("No such service", 1)
        );
    }

    #[test]
    fn save_writes_the_marks_first_and_an_older_daemon_has_none() {
        let marks = parse_args(&["--add-mark", "1", "--match", "tcp:198.18.0.100:80-81"]);
        let Ok(Invocation::Command(Command::AddMark(m))) = marks else {
            panic!("{marks:?}")
        };
        let mut f = Fake::new(vec![
            Ok(Response::Snapshot(one_service())),
            Ok(Response::Marks(vec![m.clone()])),
            Ok(Response::Marks(vec![m])),
            Ok(Response::Snapshot(one_service())),
            Ok(Response::Failed("malformed request".into())),
        ]);
        assert_eq!(
            go("rvsadm", "-Sn", "", &mut f).stdout,
            "--add-mark 1 --match tcp:198.18.0.100/32:80-81\n-A -t 198.18.0.100:80 -s rr\n\
             -a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 1\n"
        );
        assert_eq!(
            go("rvsadm", "--list-marks", "", &mut f).stdout,
            "Mark       Prot Prefix:Ports\n1          TCP  198.18.0.100/32:80-81\n"
        );
        assert_eq!(
            go("rvsadm", "-Sn", "", &mut f).stdout,
            "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 1\n"
        );
    }

    #[test]
    fn zero_and_set_go_to_the_daemon() {
        let mut f = Fake::new(vec![
            Ok(Response::Ok),
            Ok(Response::Ok),
            // errors.txt: `-Z -t 198.18.0.100:99` is `No such service`, exit 255.
            Ok(Response::Refused {
                index: 0,
                error: ApplyError::NoSuchService,
            }),
            Ok(Response::Ok),
        ]);
        assert_eq!(go("rvsadm", "-Z", "", &mut f), Outcome::default());
        assert_eq!(
            go("rvsadm", "-Z -t 198.18.0.100:80", "", &mut f),
            Outcome::default()
        );
        assert_eq!(
            go("rvsadm", "-Z -t 198.18.0.100:99", "", &mut f),
            Outcome::err("No such service", 255)
        );
        assert_eq!(go("rvsadm", "--set 0 20 10", "", &mut f), Outcome::default());
        let vip = |port| rvs_core::ServiceKey {
            proto: Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port,
        };
        assert_eq!(
            f.asked,
            [
                Request::Zero(None),
                Request::Zero(Some(vip(80))),
                Request::Zero(Some(vip(99))),
                Request::SetTimeouts {
                    tcp: 0,
                    tcpfin: 20,
                    udp: 10
                },
            ]
        );
        // A bad --set never reaches the daemon.
        assert_eq!(
            go("rvsadm", "--set 1 2", "", &mut f),
            Outcome::err("--set option requires 3 timeout values", 2)
        );
        assert_eq!(f.asked.len(), 4);
    }

    #[test]
    fn only_the_connection_listing_asks_for_connections() {
        let mut answers: Vec<_> = (0..4).map(|_| Ok(Response::Snapshot(one_service()))).collect();
        answers.push(Ok(Response::Marks(vec![])));
        let mut f = Fake::new(answers);
        for line in ["-Lnc", "-Ln", "-Ln --timeout", "-S -n"] {
            assert_eq!(go("rvsadm", line, "", &mut f).code, 0, "{line}");
        }
        assert_eq!(
            f.asked,
            [
                Request::ListConns,
                Request::List,
                Request::List,
                Request::List,
                Request::Marks
            ]
        );
    }
}
