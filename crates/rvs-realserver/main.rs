//! `rvs-realserver`: prepares a Linux host to be a real server of an rvs director, for each LVS
//! forwarding method, and undoes it.
//!
//! - `--mode dr` (direct routing, the default): the director hands the client's packet, unchanged, to
//!   the real server, so its destination is the virtual IP (VIP). The real server must own the VIP
//!   without ever answering ARP for it, or the router's ARP cache could point at a real server and
//!   bypass the director (the LVS "ARP problem"): the VIP goes on `lo`, with `arp_ignore`/`arp_announce`.
//! - `--mode tun` (IP-in-IP): the same packet arrives inside an outer IP header. Besides the VIP on lo,
//!   something must strip that header: the XDP program rvs_decap (`--decap xdp`, the default; no ipip
//!   module needed), or the kernel's tunnel device (`--decap kernel`).
//! - `--mode nat`: the director rewrites the VIP to this host's address, and must see the replies to
//!   rewrite them back: the default route goes via the director (`--director`).
//!
//! `setup` records every change with the value it replaced, so that `teardown` restores exactly those
//! and nothing else. Everything it touches belongs to the network namespace it runs in (and, for
//! rvs_decap, to the pin directory on bpffs).

mod decap;
mod plan;
mod state;
mod sys;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::plan::Decap;
use crate::state::Mode;

/// Default directory of the state files (one per VIP). `/run` is cleared at boot, as are the addresses
/// and sysctls the files describe.
const DEFAULT_STATE_DIR: &str = "/run/rvs-realserver";

/// Default bpffs directory of rvs_decap's pins (one subdirectory per interface).
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/rvs-realserver";

#[derive(Parser)]
#[command(
    name = "rvs-realserver",
    version,
    about = "Prepare a host to be a real server of an rvs director (VS/DR, VS/TUN or VS/NAT)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prepare this host for the director's forwarding method (idempotent).
    Setup {
        /// The virtual IP of the service (IPv4; IPv6 gets the address on lo only). With --mode nat it
        /// only names the record of changes.
        #[arg(long)]
        vip: IpAddr,
        /// How the director forwards to this host: dr (ipvsadm -g), tun (-i) or nat (-m).
        #[arg(long, value_enum, default_value_t = Mode::Dr)]
        mode: Mode,
        /// Interface that receives the director's packets (default: the one routing toward the VIP, or
        /// toward the director with --mode nat).
        #[arg(long)]
        dev: Option<String>,
        /// Leave rp_filter alone even when it is strict.
        #[arg(long)]
        keep_rp_filter: bool,
        /// --mode tun: who strips the outer header: the XDP program rvs_decap, or the kernel's tunnel
        /// device (needs the ipip or ip6_tunnel module).
        #[arg(long, value_enum, default_value_t = Decap::Xdp)]
        decap: Decap,
        /// --mode tun --decap xdp: bpffs directory of rvs_decap's pins (a subdirectory per interface).
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// --mode nat: the director's address on this host's network, the new default gateway.
        #[arg(long, required_if_eq("mode", "nat"))]
        director: Option<IpAddr>,
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
            mode,
            dev,
            keep_rp_filter,
            decap,
            pin_dir,
            director,
            state_dir,
        } => {
            let netns = sys::netns_id().context("cannot identify the network namespace")?;
            let mut st = state::load(&state_dir, vip, netns)?;
            if let Some(s) = &st
                && s.mode != mode
            {
                anyhow::bail!(
                    "{vip} is set up in {} mode (state in {}); run teardown first",
                    s.mode,
                    state_dir.display()
                );
            }
            let dev = match (dev, &st) {
                (Some(d), Some(s)) if d != s.dev => anyhow::bail!(
                    "{vip} is already set up on {} (state in {}); run teardown first",
                    s.dev,
                    state_dir.display()
                ),
                (Some(d), _) => d,
                (None, Some(s)) => s.dev.clone(),
                (None, None) => sys::route_dev(match (mode, director) {
                    (Mode::Nat, Some(d)) => d,
                    _ => vip,
                })?,
            };
            let record = st.get_or_insert_with(|| state::State::new(vip, mode, netns, &dev));
            let opts = plan::Opts {
                keep_rp_filter,
                decap,
                pin_dir,
                director,
            };
            let n = plan::setup(record, &state_dir, &opts)?;
            // Saved even without a change of its own: teardown of another VIP must know this one
            // still relies on the host-wide changes that VIP made (see plan::teardown).
            state::save(&state_dir, record)?;
            if n == 0 {
                println!("{vip}: already set up on {dev} ({mode}); nothing to change");
            } else {
                println!(
                    "{vip}: set up on {dev} for {mode} ({n} change(s) recorded in {})",
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
