//! rvs's own firewall marks: `--list-marks` and the `--add-mark` lines that `-S` writes before the
//! services (ipvsadm has no such lines; `-R` reads them back).

use rvs_core::Mark;
use rvs_core::ipvsadm::mark::mark_rule;

/// One `--add-mark` line per mark, by mark.
pub(crate) fn mark_rules(marks: &[Mark]) -> String {
    marks.iter().map(|m| mark_rule(m) + "\n").collect()
}

/// `--list-marks`: a header, then one line per match, marks in order and each mark's matches in the
/// order they were declared.
pub(crate) fn list_marks(marks: &[Mark]) -> String {
    let mut out = String::from("Mark       Prot Prefix:Ports\n");
    for m in marks {
        for x in &m.matches {
            let text = x.to_string();
            // "tcp:PREFIX:PORTS" without the protocol, which has its own column.
            let rest = text.split_once(':').map_or(text.as_str(), |(_, r)| r);
            out.push_str(&format!("{:<10} {:<4} {rest}\n", m.mark, x.proto.name()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_core::Command;
    use rvs_core::ipvsadm::{Invocation, parse_args};

    fn mark(line: &str) -> Mark {
        let words: Vec<&str> = line.split_whitespace().collect();
        match parse_args(&words) {
            Ok(Invocation::Command(Command::AddMark(m))) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn listing_and_rules() {
        let marks = [
            mark("--add-mark 1 --match tcp:198.18.0.100:80-81 --match udp:198.18.0.0/24:53"),
            mark("--add-mark 4294967295 --match tcp:[2001:db8::]/32"),
        ];
        assert_eq!(
            list_marks(&marks),
            "Mark       Prot Prefix:Ports\n\
             1          TCP  198.18.0.100/32:80-81\n\
             1          UDP  198.18.0.0/24:53\n\
             4294967295 TCP  [2001:db8::]/32:0-65535\n"
        );
        assert_eq!(
            mark_rules(&marks),
            "--add-mark 1 --match tcp:198.18.0.100/32:80-81 --match udp:198.18.0.0/24:53\n\
             --add-mark 4294967295 --match tcp:[2001:db8::]/32:0-65535\n"
        );
    }
}
