//! `rvs-realserver`: prepares a Linux host to be a VS/DR real server of an rvs director, and undoes it.
//!
//! In direct routing the director hands the client's packet, unchanged, to the real server: its
//! destination is the virtual IP (VIP). The real server must therefore own the VIP, without ever
//! answering ARP for it, or the router's ARP cache could point at a real server and bypass the director
//! (the LVS "ARP problem"). `setup` puts the VIP on `lo` and sets `arp_ignore`/`arp_announce`; it records
//! every change with the value it replaced, so that `teardown` restores exactly those and nothing else.
//! Everything it touches belongs to the network namespace it runs in.

mod plan;
mod state;
mod sys;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Default directory of the state files (one per VIP). `/run` is cleared at boot, as are the addresses
/// and sysctls the files describe.
const DEFAULT_STATE_DIR: &str = "/run/rvs-realserver";

#[derive(Parser)]
#[command(
    name = "rvs-realserver",
    version,
    about = "Prepare a host to be an rvs VS/DR real server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Put the VIP on lo and stop this host from answering ARP for it.
    Setup {
        /// The virtual IP of the service (IPv4; IPv6 gets the address on lo only).
        #[arg(long)]
        vip: IpAddr,
        /// Interface that receives the director's packets (default: the one routing toward the VIP).
        #[arg(long)]
        dev: Option<String>,
        /// Leave rp_filter alone even when it is strict.
        #[arg(long)]
        keep_rp_filter: bool,
        /// Where the record of changes is kept.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Undo what `setup` changed for this VIP.
    Teardown {
        /// The virtual IP given to `setup`.
        #[arg(long)]
        vip: IpAddr,
        /// Where the record of changes is kept.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rvs-realserver: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Setup {
            vip,
            dev,
            keep_rp_filter,
            state_dir,
        } => {
            let netns = sys::netns_id().context("cannot identify the network namespace")?;
            let mut st = state::load(&state_dir, vip, netns)?;
            let dev = match (dev, &st) {
                (Some(d), Some(s)) if d != s.dev => anyhow::bail!(
                    "{vip} is already set up on {} (state in {}); run teardown first",
                    s.dev,
                    state_dir.display()
                ),
                (Some(d), _) => d,
                (None, Some(s)) => s.dev.clone(),
                (None, None) => sys::route_dev(vip)?,
            };
            let record = st.get_or_insert_with(|| state::State::new(vip, netns, &dev));
            let n = plan::setup(record, &state_dir, keep_rp_filter)?;
            if n == 0 {
                println!("{vip}: already set up on {dev}; nothing to change");
            } else {
                println!(
                    "{vip}: set up on {dev} ({n} change(s) recorded in {})",
                    state_dir.display()
                );
            }
            Ok(())
        }
        Cmd::Teardown { vip, state_dir } => {
            let netns = sys::netns_id().context("cannot identify the network namespace")?;
            match state::load(&state_dir, vip, netns)? {
                None => {
                    println!(
                        "{vip}: no setup recorded in {}; nothing to undo",
                        state_dir.display()
                    );
                    Ok(())
                }
                Some(st) => plan::teardown(st, &state_dir),
            }
        }
    }
}
