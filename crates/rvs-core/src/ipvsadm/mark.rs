//! rvs's own options for firewall marks, which ipvsadm does not have: XDP runs before netfilter, so no
//! iptables mark exists when a packet arrives, and rvs declares its marks itself.
//!
//! ```text
//! --add-mark MARK --match SPEC [--match SPEC]...
//! --del-mark MARK
//! --list-marks
//! SPEC = PROTO:ADDR[/PREFIX][:PORT[-PORT]]   PROTO tcp|udp, ADDR IPv4 or [IPv6]
//! ```
//! A prefix defaults to the whole address, ports to all of them. `-f MARK` services then receive the
//! packets the mark's matches hold. These lines are also what `-S` writes and `-R` reads. They are
//! parsed here, before ipvsadm's popt grammar sees the line, so ipvsadm's own options are untouched.

use std::net::{IpAddr, Ipv6Addr};

use super::{CliError, Invocation, parse_fwmark};
use crate::domain::{Command, Mark, MarkMatch, Protocol};
use crate::encode::mask_addr;

/// The long option that starts a mark declaration.
pub const ADD_MARK: &str = "--add-mark";
/// The long option that removes a mark.
pub const DEL_MARK: &str = "--del-mark";
/// The long option that lists the marks.
pub const LIST_MARKS: &str = "--list-marks";
/// The option that gives one match of `--add-mark`.
pub const MATCH: &str = "--match";

/// Whether `first` (the line's first word) starts one of rvs's mark commands.
pub(super) fn is_mark_command(first: &str) -> bool {
    [ADD_MARK, DEL_MARK, LIST_MARKS]
        .iter()
        .any(|o| first == *o || first.strip_prefix(o).is_some_and(|r| r.starts_with('=')))
}

fn bad(message: String) -> CliError {
    CliError::fail(message)
}

/// Splits `--opt=value` or takes the next word as the value of `--opt`.
fn value<'a, S: AsRef<str>>(
    word: &'a str,
    opt: &str,
    it: &mut std::slice::Iter<'a, S>,
) -> Result<String, CliError> {
    if let Some(v) = word.strip_prefix(opt).and_then(|r| r.strip_prefix('=')) {
        return Ok(v.to_owned());
    }
    it.next()
        .map(|s| s.as_ref().to_owned())
        .ok_or_else(|| bad(format!("{opt} needs a value")))
}

/// Parses a mark command line (its first word passed [`is_mark_command`]).
pub(super) fn parse<S: AsRef<str>>(args: &[S]) -> Result<Invocation, CliError> {
    let mut it = args.iter();
    let first = it.next().map(AsRef::as_ref).unwrap_or_default();
    if first == LIST_MARKS {
        if let Some(extra) = it.next() {
            return Err(bad(format!("unexpected argument {}", extra.as_ref())));
        }
        return Ok(Invocation::ListMarks);
    }
    let del = first.starts_with(DEL_MARK);
    let opt = if del { DEL_MARK } else { ADD_MARK };
    let mark = parse_fwmark(&value(first, opt, &mut it)?).map_err(|_| {
        bad(format!(
            "invalid mark `{}' specified: 1 to 4294967295",
            value_text(first, args)
        ))
    })?;
    let mut matches = Vec::new();
    while let Some(w) = it.next() {
        let w = w.as_ref();
        if !del && (w == MATCH || w.starts_with("--match=")) {
            let spec = value(w, MATCH, &mut it)?;
            matches.push(parse_match(&spec).map_err(|why| bad(format!("invalid match `{spec}': {why}")))?);
        } else {
            return Err(bad(format!("unexpected argument {w}")));
        }
    }
    if del {
        return Ok(Invocation::Command(Command::DelMark(mark)));
    }
    if matches.is_empty() {
        return Err(bad(format!(
            "{ADD_MARK} {mark} needs at least one {MATCH} PROTO:ADDR[/PREFIX][:PORTS]"
        )));
    }
    Ok(Invocation::Command(Command::AddMark(Mark { mark, matches })))
}

/// The mark's text as given, for an error message.
fn value_text<S: AsRef<str>>(first: &str, args: &[S]) -> String {
    match first.split_once('=') {
        Some((_, v)) => v.to_owned(),
        None => args.get(1).map(|s| s.as_ref().to_owned()).unwrap_or_default(),
    }
}

/// One `--match` value: `PROTO:ADDR[/PREFIX][:PORT[-PORT]]`.
///
/// # Errors
/// What is wrong with it, in words.
pub fn parse_match(spec: &str) -> Result<MarkMatch, String> {
    let (proto, rest) = spec
        .split_once(':')
        .ok_or("expected PROTO:ADDR[/PREFIX][:PORTS]")?;
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("protocol `{other}' is not tcp or udp")),
    };
    // The address (bracketed when IPv6), then optionally /PREFIX, then optionally :PORTS.
    let (addr, rest): (IpAddr, &str) = if let Some(r) = rest.strip_prefix('[') {
        let (a, r) = r.split_once(']').ok_or("IPv6 address without its closing `]'")?;
        let a: Ipv6Addr = a.parse().map_err(|_| format!("`{a}' is not an IPv6 address"))?;
        (IpAddr::V6(a), r)
    } else {
        if rest
            .split('/')
            .next()
            .is_some_and(|a| a.matches(':').count() >= 2)
        {
            return Err("IPv6 addresses go in brackets: [2001:db8::1]".into());
        }
        let end = rest.find(['/', ':']).unwrap_or(rest.len());
        let a = &rest[..end];
        let a = a
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("`{a}' is not an IPv4 address"))?;
        (IpAddr::V4(a), &rest[end..])
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let (prefix, rest) = match rest.strip_prefix('/') {
        Some(r) => {
            let end = r.find(':').unwrap_or(r.len());
            let p = &r[..end];
            let n: u8 = p
                .parse()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("prefix length `{p}' is not 0 to {max}"))?;
            (n, &r[end..])
        }
        None => (max, rest),
    };
    if mask_addr(addr, prefix) != addr {
        return Err(format!(
            "{addr} has bits set after its /{prefix} prefix (the prefix's address is {})",
            mask_addr(addr, prefix)
        ));
    }
    let (port_lo, port_hi) = match rest.strip_prefix(':') {
        None if rest.is_empty() => (0, u16::MAX),
        None => return Err(format!("unexpected `{rest}' after the address")),
        Some(ports) => {
            let port = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}' is not a port (0 to 65535)"))
            };
            let (lo, hi) = match ports.split_once('-') {
                Some((lo, hi)) => (port(lo)?, port(hi)?),
                None => (port(ports)?, port(ports)?),
            };
            if lo > hi {
                return Err(format!("port range {lo}-{hi} ends before it starts"));
            }
            (lo, hi)
        }
    };
    Ok(MarkMatch {
        proto,
        addr,
        prefix,
        port_lo,
        port_hi,
    })
}

/// The command line that declares `mark`, as `-S` writes it.
pub fn mark_rule(mark: &Mark) -> String {
    let mut s = format!("{ADD_MARK} {}", mark.mark);
    for m in &mark.matches {
        s.push_str(&format!(" {MATCH} {m}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::parse_args;

    fn ok(line: &str) -> Invocation {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse_args(&words).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse_args(&words).expect_err(line).message
    }

    #[test]
    fn add_mark_with_several_matches_round_trips_through_its_rule() {
        let line = "--add-mark 7 --match tcp:198.18.0.100/32:80-90 --match udp:[2001:db8::]/64:53 \
                    --match tcp:198.18.0.0/24";
        let Invocation::Command(Command::AddMark(m)) = ok(line) else {
            panic!("not an add-mark");
        };
        assert_eq!(m.mark, 7);
        assert_eq!(
            m.matches[1],
            MarkMatch {
                proto: Protocol::Udp,
                addr: "2001:db8::".parse().unwrap(),
                prefix: 64,
                port_lo: 53,
                port_hi: 53,
            }
        );
        assert_eq!((m.matches[2].port_lo, m.matches[2].port_hi), (0, 65535));
        let rule = mark_rule(&m);
        assert_eq!(
            rule,
            "--add-mark 7 --match tcp:198.18.0.100/32:80-90 --match udp:[2001:db8::]/64:53 \
             --match tcp:198.18.0.0/24:0-65535"
        );
        assert_eq!(ok(&rule), Invocation::Command(Command::AddMark(m)));
        assert_eq!(
            ok("--add-mark=7 --match=tcp:198.18.0.1"),
            ok("--add-mark 7 --match tcp:198.18.0.1/32")
        );
    }

    #[test]
    fn del_and_list() {
        assert_eq!(ok("--del-mark 3"), Invocation::Command(Command::DelMark(3)));
        assert_eq!(ok("--list-marks"), Invocation::ListMarks);
    }

    #[test]
    fn bad_input_names_the_problem() {
        for (line, want) in [
            (
                "--add-mark 0 --match tcp:1.2.3.4",
                "invalid mark `0' specified: 1 to 4294967295",
            ),
            (
                "--add-mark x --match tcp:1.2.3.4",
                "invalid mark `x' specified: 1 to 4294967295",
            ),
            ("--add-mark", "--add-mark needs a value"),
            (
                "--add-mark 1",
                "--add-mark 1 needs at least one --match PROTO:ADDR[/PREFIX][:PORTS]",
            ),
            ("--add-mark 1 --match", "--match needs a value"),
            (
                "--add-mark 1 --match sctp:1.2.3.4",
                "invalid match `sctp:1.2.3.4': protocol `sctp' is not tcp or udp",
            ),
            (
                "--add-mark 1 --match tcp:1.2.3.400",
                "invalid match `tcp:1.2.3.400': `1.2.3.400' is not an IPv4 address",
            ),
            (
                "--add-mark 1 --match tcp:2001:db8::1",
                "invalid match `tcp:2001:db8::1': IPv6 addresses go in brackets: [2001:db8::1]",
            ),
            (
                "--add-mark 1 --match tcp:[2001:db8::1",
                "invalid match `tcp:[2001:db8::1': IPv6 address without its closing `]'",
            ),
            (
                "--add-mark 1 --match tcp:1.2.3.4/33",
                "invalid match `tcp:1.2.3.4/33': prefix length `33' is not 0 to 32",
            ),
            (
                "--add-mark 1 --match tcp:1.2.3.4/24:80",
                "invalid match `tcp:1.2.3.4/24:80': 1.2.3.4 has bits set after its /24 prefix (the prefix's address is 1.2.3.0)",
            ),
            (
                "--add-mark 1 --match tcp:1.2.3.4:90-80",
                "invalid match `tcp:1.2.3.4:90-80': port range 90-80 ends before it starts",
            ),
            (
                "--add-mark 1 --match tcp:1.2.3.4:http",
                "invalid match `tcp:1.2.3.4:http': `http' is not a port (0 to 65535)",
            ),
            ("--add-mark 1 --match tcp:1.2.3.4 -s rr", "unexpected argument -s"),
            ("--del-mark 1 --match tcp:1.2.3.4", "unexpected argument --match"),
            ("--list-marks -n", "unexpected argument -n"),
        ] {
            assert_eq!(err(line), want, "{line}");
        }
    }

    fn table(rules: &str) -> Result<crate::table::Table, (usize, crate::domain::ApplyError)> {
        let cmds = crate::ipvsadm::parse_rules(rules).expect("rules parse");
        let mut t = crate::table::Table::new();
        t.apply_all(&cmds).map(|()| t)
    }

    #[test]
    fn the_table_refuses_what_the_data_plane_cannot_hold() {
        use crate::domain::ApplyError;
        let base = "--add-mark 1 --match tcp:198.18.0.100:80-90\n";
        assert!(table(base).is_ok());
        for (more, want) in [
            ("--add-mark 1 --match tcp:198.18.0.1:1\n", ApplyError::MarkExists),
            ("--del-mark 2\n", ApplyError::NoSuchMark),
            (
                "--add-mark 2 --match tcp:198.18.0.100:90-95\n",
                ApplyError::MarkOverlap(1),
            ),
        ] {
            let rules = format!("{base}{more}");
            assert_eq!(table(&rules).map(drop).map_err(|e| e.1), Err(want), "{rules}");
        }
        // Another prefix or protocol does not overlap; the longer prefix simply wins.
        assert!(
            table(&format!(
                "{base}--add-mark 2 --match tcp:198.18.0.0/24:80\n--add-mark 3 --match udp:198.18.0.100:80\n"
            ))
            .is_ok()
        );
        // 17 ranges under one prefix do not fit an entry.
        let many: String = (0..17u16)
            .map(|i| format!(" --match tcp:198.18.0.100:{}", 1000 + i))
            .collect();
        assert_eq!(
            table(&format!("--add-mark 5{many}\n")).map(drop).map_err(|e| e.1),
            Err(ApplyError::MarkTooManyRanges)
        );
        // -C clears the marks with the services; -D of a mark service leaves its mark.
        let t = table(&format!("{base}-A -f 1 -s rr\n-D -f 1\n")).unwrap();
        assert_eq!(t.marks().len(), 1);
        assert!(table(&format!("{base}-C\n")).unwrap().marks().is_empty());
    }

    #[test]
    fn entries_carry_the_ranges_of_covering_prefixes_after_their_own() {
        let t = table(
            "--add-mark 1 --match tcp:198.18.0.0/16:1-10 --match tcp:198.18.0.0/24:20-30\n\
             --add-mark 2 --match tcp:198.18.0.7:20 --match udp:198.18.0.7:20\n",
        )
        .unwrap();
        let marks: std::collections::BTreeMap<u32, Vec<MarkMatch>> =
            t.marks().into_iter().map(|m| (m.mark, m.matches)).collect();
        let entries = crate::encode::mark_entries(&marks).unwrap();
        type Ranges = Vec<(u16, u16, u32)>;
        let summary: Vec<(u8, u32, Ranges)> = entries
            .iter()
            .map(|(k, v)| {
                let r = v.ranges[..v.n as usize]
                    .iter()
                    .map(|r| (r.lo, r.hi, r.mark))
                    .collect();
                (k.data.proto, k.prefixlen - 32, r)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (6, 16, vec![(1, 10, 1)]),
                (6, 24, vec![(20, 30, 1), (1, 10, 1)]),
                (6, 32, vec![(20, 20, 2), (20, 30, 1), (1, 10, 1)]),
                (17, 32, vec![(20, 20, 2)]),
            ]
        );
    }

    #[test]
    fn rules_accept_mark_lines() {
        let cmds =
            crate::ipvsadm::parse_rules("--add-mark 1 --match tcp:198.18.0.100:80\n-A -f 1 -s rr\n").unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(matches!(cmds[1], Command::AddService(ref s) if s.key.mark() == Some(1)));
    }
}
