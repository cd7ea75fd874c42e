//! The option table of ipvsadm 1.31 and a tokenizer that splits argv the way popt does.
//!
//! popt behaviours kept here on purpose: short options bundle (`-Lnc`, `-w5`); a required argument is
//! the rest of the bundle or else the next word, whatever it looks like (`-s -p` schedules "-p"); the
//! optional argument of `-p` is taken only from a next word that does not start with `-`; long options
//! take `--opt=value` or the next word; words that are not options are collected as leftover arguments
//! wherever they appear; `--` ends the options. Names must match exactly (popt does no abbreviation).

/// One option of ipvsadm's popt table, named after its long form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opt {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

/// Whether an option takes an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    /// popt's POPT_ARGFLAG_OPTIONAL (only `-p`).
    Optional,
}

struct Def {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    opt: Opt,
}

const fn def(long: &'static str, short: Option<char>, arg: Arg, opt: Opt) -> Def {
    Def {
        long,
        short,
        arg,
        opt,
    }
}

/// ipvsadm.c `options_table`, in its order (the first `list` entry wins for `--list`).
const TABLE: &[Def] = &[
    def("add-service", Some('A'), Arg::None, Opt::AddService),
    def("edit-service", Some('E'), Arg::None, Opt::EditService),
    def("delete-service", Some('D'), Arg::None, Opt::DeleteService),
    def("clear", Some('C'), Arg::None, Opt::Clear),
    def("list", Some('L'), Arg::None, Opt::List),
    def("list", Some('l'), Arg::None, Opt::List),
    def("zero", Some('Z'), Arg::None, Opt::Zero),
    def("add-server", Some('a'), Arg::None, Opt::AddServer),
    def("edit-server", Some('e'), Arg::None, Opt::EditServer),
    def("delete-server", Some('d'), Arg::None, Opt::DeleteServer),
    def("set", None, Arg::None, Opt::Set),
    def("help", Some('h'), Arg::None, Opt::Help),
    def("version", Some('v'), Arg::None, Opt::Version),
    def("restore", Some('R'), Arg::None, Opt::Restore),
    def("save", Some('S'), Arg::None, Opt::Save),
    def("start-daemon", None, Arg::Required, Opt::StartDaemon),
    def("stop-daemon", None, Arg::Required, Opt::StopDaemon),
    def("tcp-service", Some('t'), Arg::Required, Opt::TcpService),
    def("udp-service", Some('u'), Arg::Required, Opt::UdpService),
    def("sctp-service", None, Arg::Required, Opt::SctpService),
    def("fwmark-service", Some('f'), Arg::Required, Opt::FwmarkService),
    def("scheduler", Some('s'), Arg::Required, Opt::Scheduler),
    def("persistent", Some('p'), Arg::Optional, Opt::Persistent),
    def("netmask", Some('M'), Arg::Required, Opt::Netmask),
    def("real-server", Some('r'), Arg::Required, Opt::RealServer),
    def("masquerading", Some('m'), Arg::None, Opt::Masquerading),
    def("ipip", Some('i'), Arg::None, Opt::Ipip),
    def("gatewaying", Some('g'), Arg::None, Opt::Gatewaying),
    def("weight", Some('w'), Arg::Required, Opt::Weight),
    def("u-threshold", Some('x'), Arg::Required, Opt::UThreshold),
    def("l-threshold", Some('y'), Arg::Required, Opt::LThreshold),
    def("numeric", Some('n'), Arg::None, Opt::Numeric),
    def("connection", Some('c'), Arg::None, Opt::Connection),
    def("mcast-interface", None, Arg::Required, Opt::McastInterface),
    def("syncid", None, Arg::Required, Opt::SyncId),
    def("timeout", None, Arg::None, Opt::Timeout),
    def("daemon", None, Arg::None, Opt::Daemon),
    def("stats", None, Arg::None, Opt::Stats),
    def("rate", None, Arg::None, Opt::Rate),
    def("thresholds", None, Arg::None, Opt::Thresholds),
    def("persistent-conn", None, Arg::None, Opt::PersistentConn),
    def("nosort", None, Arg::None, Opt::NoSort),
    def("sort", None, Arg::None, Opt::Sort),
    def("exact", Some('X'), Arg::None, Opt::Exact),
    def("ipv6", Some('6'), Arg::None, Opt::Ipv6),
    def("ops", Some('o'), Arg::None, Opt::Ops),
    def("pe", None, Arg::Required, Opt::Pe),
    def("sched-flags", Some('b'), Arg::Required, Opt::SchedFlags),
    def("mcast-group", None, Arg::Required, Opt::McastGroup),
    def("mcast-port", None, Arg::Required, Opt::McastPort),
    def("mcast-ttl", None, Arg::Required, Opt::McastTtl),
    def("sync-maxlen", None, Arg::Required, Opt::SyncMaxlen),
    def("tun-info", None, Arg::None, Opt::TunInfo),
    def("tun-type", None, Arg::Required, Opt::TunType),
    def("tun-port", None, Arg::Required, Opt::TunPort),
    def("tun-nocsum", None, Arg::None, Opt::TunNocsum),
    def("tun-csum", None, Arg::None, Opt::TunCsum),
    def("tun-remcsum", None, Arg::None, Opt::TunRemcsum),
];

/// An option found on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) opt: Opt,
    /// Its argument; `None` for options without one and for `-p` without a value.
    pub(crate) arg: Option<String>,
    /// The word it came from, as popt's `poptBadOption` reports it.
    pub(crate) token: String,
}

/// popt's error codes that ipvsadm can meet, with `poptStrerror`'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoptError {
    /// POPT_ERROR_BADOPT
    BadOption,
    /// POPT_ERROR_NOARG
    NoArg,
    /// POPT_ERROR_UNWANTEDARG
    UnwantedArg,
}

impl PoptError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            PoptError::BadOption => "unknown option",
            PoptError::NoArg => "missing argument",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// Walks argv like `poptGetNextOpt`, keeping the leftover (non-option) words for `poptGetArg`.
pub(crate) struct Popt<'a, S> {
    args: &'a [S],
    next: usize,
    /// Inside a bundle of short options: the word and the byte offset of the next option char.
    bundle: Option<(usize, usize)>,
    only_args: bool,
    /// Words that were not options, in order.
    pub(crate) leftovers: Vec<String>,
}

impl<'a, S: AsRef<str>> Popt<'a, S> {
    pub(crate) fn new(args: &'a [S]) -> Self {
        Self {
            args,
            next: 0,
            bundle: None,
            only_args: false,
            leftovers: Vec::new(),
        }
    }

    /// The next option, `None` when argv is exhausted.
    pub(crate) fn next_opt(&mut self) -> Option<Result<Found, (PoptError, String)>> {
        loop {
            if let Some((word, pos)) = self.bundle {
                return Some(self.short(word, pos));
            }
            let word = self.args.get(self.next)?.as_ref();
            self.next += 1;
            if self.only_args || word == "-" || !word.starts_with('-') {
                self.leftovers.push(word.to_owned());
                continue;
            }
            if word == "--" {
                self.only_args = true;
                continue;
            }
            if let Some(long) = word.strip_prefix("--") {
                return Some(self.long(word, long));
            }
            self.bundle = Some((self.next - 1, 1));
        }
    }

    fn long(&mut self, word: &str, long: &str) -> Result<Found, (PoptError, String)> {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let Some(d) = TABLE.iter().find(|d| d.long == name) else {
            return Err((PoptError::BadOption, word.to_owned()));
        };
        let arg = match (d.arg, inline) {
            (Arg::None, Some(_)) => return Err((PoptError::UnwantedArg, word.to_owned())),
            (Arg::None, None) => None,
            (_, Some(v)) => Some(v.to_owned()),
            (kind, None) => self.next_word(kind, word)?,
        };
        Ok(Found {
            opt: d.opt,
            arg,
            token: word.to_owned(),
        })
    }

    fn short(&mut self, index: usize, pos: usize) -> Result<Found, (PoptError, String)> {
        let word = self.args[index].as_ref();
        let rest = &word[pos..];
        let Some(c) = rest.chars().next() else {
            self.bundle = None;
            // Unreachable in practice: a bundle is left as soon as its last char is consumed.
            return Err((PoptError::BadOption, word.to_owned()));
        };
        let after = pos + c.len_utf8();
        let Some(d) = TABLE.iter().find(|d| d.short == Some(c)) else {
            self.bundle = None;
            return Err((PoptError::BadOption, word.to_owned()));
        };
        self.bundle = if after < word.len() {
            Some((index, after))
        } else {
            None
        };
        if d.arg == Arg::None {
            return Ok(Found {
                opt: d.opt,
                arg: None,
                token: word.to_owned(),
            });
        }
        // An option with an argument ends the bundle: the rest of the word is its argument.
        let arg = if after < word.len() {
            self.bundle = None;
            Some(word[after..].to_owned())
        } else {
            self.next_word(d.arg, word)?
        };
        Ok(Found {
            opt: d.opt,
            arg,
            token: word.to_owned(),
        })
    }

    /// The argument of an option from the following word.
    fn next_word(&mut self, kind: Arg, word: &str) -> Result<Option<String>, (PoptError, String)> {
        match self.args.get(self.next).map(AsRef::as_ref) {
            None if kind == Arg::Optional => Ok(None),
            None => Err((PoptError::NoArg, word.to_owned())),
            Some(w) if kind == Arg::Optional && w.starts_with('-') => Ok(None),
            Some(w) => {
                self.next += 1;
                Ok(Some(w.to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Events = Vec<Result<(Opt, Option<String>), (PoptError, String)>>;

    fn all(args: &[&str]) -> (Events, Vec<String>) {
        let mut p = Popt::new(args);
        let mut out = Vec::new();
        while let Some(r) = p.next_opt() {
            let stop = r.is_err();
            out.push(r.map(|f| (f.opt, f.arg)));
            if stop {
                break;
            }
        }
        (out, p.leftovers)
    }

    #[test]
    fn bundles_split_into_options() {
        let (o, l) = all(&["-Lnc"]);
        assert_eq!(
            o,
            vec![
                Ok((Opt::List, None)),
                Ok((Opt::Numeric, None)),
                Ok((Opt::Connection, None))
            ]
        );
        assert!(l.is_empty());
    }

    #[test]
    fn bundle_rest_is_the_argument() {
        let (o, _) = all(&["-w5", "-At", "1.2.3.4:80"]);
        assert_eq!(
            o,
            vec![
                Ok((Opt::Weight, Some("5".into()))),
                Ok((Opt::AddService, None)),
                Ok((Opt::TcpService, Some("1.2.3.4:80".into())))
            ]
        );
    }

    #[test]
    fn required_argument_takes_any_next_word() {
        let (o, _) = all(&["-s", "-p"]);
        assert_eq!(o, vec![Ok((Opt::Scheduler, Some("-p".into())))]);
    }

    #[test]
    fn optional_argument_skips_options() {
        let (o, _) = all(&["-p", "-M", "x", "-p", "60", "-p"]);
        assert_eq!(
            o,
            vec![
                Ok((Opt::Persistent, None)),
                Ok((Opt::Netmask, Some("x".into()))),
                Ok((Opt::Persistent, Some("60".into()))),
                Ok((Opt::Persistent, None)),
            ]
        );
    }

    #[test]
    fn long_forms() {
        let (o, _) = all(&["--weight=5", "--weight", "6", "--persistent=7", "--numeric"]);
        assert_eq!(
            o,
            vec![
                Ok((Opt::Weight, Some("5".into()))),
                Ok((Opt::Weight, Some("6".into()))),
                Ok((Opt::Persistent, Some("7".into()))),
                Ok((Opt::Numeric, None)),
            ]
        );
    }

    #[test]
    fn errors_name_the_word() {
        assert_eq!(
            all(&["--bogus"]).0,
            vec![Err((PoptError::BadOption, "--bogus".into()))]
        );
        assert_eq!(
            all(&["-LQ"]).0,
            vec![Ok((Opt::List, None)), Err((PoptError::BadOption, "-LQ".into()))]
        );
        assert_eq!(all(&["-t"]).0, vec![Err((PoptError::NoArg, "-t".into()))]);
        assert_eq!(
            all(&["--numeric=1"]).0,
            vec![Err((PoptError::UnwantedArg, "--numeric=1".into()))]
        );
        assert_eq!(all(&["-1"]).0, vec![Err((PoptError::BadOption, "-1".into()))]);
    }

    #[test]
    fn leftovers_anywhere_and_after_double_dash() {
        let (o, l) = all(&["a", "-L", "b", "-", "--", "-n"]);
        assert_eq!(o, vec![Ok((Opt::List, None))]);
        assert_eq!(l, vec!["a", "b", "-", "-n"]);
    }
}
