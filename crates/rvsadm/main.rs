//! rvsadm: ipvsadm 1.31's command line, output and exit codes, driving rvsd over its Unix socket.
//!
//! `rvsadm [--socket PATH] <ipvsadm arguments>`. The socket is `--socket PATH` (only as the leading
//! option), else `$RVS_SOCKET`, else /run/rvs/rvsd.sock. Everything after it is ipvsadm's grammar
//! (`rvs_core::ipvsadm`, hand-written to reproduce popt; see there). Installed or linked as `ipvsadm`,
//! `-h` prints ipvsadm's usage byte for byte; `-v` always prints ipvsadm's version line so that scripts
//! that check it keep working.
//!
//! Differences from ipvsadm, on purpose: `-R` parses all of stdin before sending anything and applies it
//! as one all-or-nothing batch (errors say `line N: ...`), and skips `#` comment lines; rvs refuses
//! features it does not have (SCTP services, persistence engines, GUE/GRE, sync daemons) with
//! exit 255, as ipvsadm does for an operation the kernel refuses. `--set` timeouts survive an rvsd
//! restart, and apply at once to existing connections too (IPVS uses them from an entry's next packet).
//! rvs's own `--add-mark`, `--del-mark` and `--list-marks` declare the firewall marks that `-f`
//! services receive (XDP runs before netfilter, so no iptables mark exists yet; docs/configuration.md).

mod app;
mod daemon;
mod format;
mod help;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = if args.is_empty() {
        "rvsadm".to_owned()
    } else {
        args.remove(0)
    };
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .map_or_else(|| "rvsadm".to_owned(), |n| n.to_string_lossy().into_owned());

    let socket = match daemon::take_socket(&mut args, std::env::var_os(rvs_api::SOCKET_ENV)) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(255);
        }
    };
    let mut rvsd = daemon::SocketDaemon::new(socket);
    let names = format::SystemNames::default();
    let outcome = app::run(&prog, &args, &mut std::io::stdin().lock(), &mut rvsd, &names);

    // A closed pipe (`rvsadm -Ln | head`) is not an error worth a panic; the status stays the command's.
    let _ = std::io::stdout().lock().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().lock().write_all(outcome.stderr.as_bytes());
    ExitCode::from(outcome.code)
}
