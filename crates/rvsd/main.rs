//! rvsd, the rvs daemon: drives the XDP director, restores and saves the rules, resolves the real
//! servers' next hops and serves rvsadm on a local socket. See `rvsd --help`.

mod api;
mod backend;
mod cli;
mod config;
mod conns;
mod daemon;
mod estimator;
mod lblc;
mod neigh;
mod state;
mod sweep;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line: "cannot attach to eth9: ...: No such device".
            eprintln!("rvsd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &cli::Args) -> anyhow::Result<()> {
    let cfg = config::load(args, Path::new(config::DEFAULT_CONFIG))?;
    if args.unload {
        return unload(&cfg);
    }
    // One thread: requests, neighbour updates and the sweep are serialised by the loop anyway, and the
    // data plane handle never has to cross threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(daemon::run(cfg))
}

/// `rvsd --unload`: detach everywhere, remove the pins and the socket. Refused while a daemon answers on
/// the socket: it would go on serving a data plane that no longer exists.
fn unload(cfg: &config::Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::os::unix::net::UnixStream::connect(&cfg.socket).is_err(),
        "rvsd is running on {}: stop it first",
        cfg.socket.display()
    );
    backend::unload(&cfg.pin_dir).with_context(|| format!("cannot unload {}", cfg.pin_dir.display()))?;
    match std::fs::remove_file(&cfg.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", cfg.socket.display())),
    }
    info!(pin_dir = %cfg.pin_dir.display(), "unloaded");
    Ok(())
}
