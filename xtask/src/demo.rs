//! `cargo xtask demo [--release] [--requests N]`: builds the binaries, sets up a client, a director and
//! three real servers in network namespaces (rvs_testkit::lab), starts rvsd, configures a wrr service
//! with rvsadm, sends requests from the client, prints `rvsadm -Ln` and the spread, and cleans up.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use rvs_testkit::lab::{self, Binaries, DrLab, Keeper};
use rvs_testkit::netns::Topology;

/// Weights of rs1, rs2, rs3.
const WEIGHTS: [u32; 3] = [3, 2, 1];
/// Requests sent by default.
const REQUESTS: usize = 600;
/// Requests per batch: the demo checks for Ctrl-C between batches.
const BATCH: usize = 50;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

struct Opts {
    release: bool,
    requests: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        release: false,
        requests: REQUESTS,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--release" => o.release = true,
            "--requests" => {
                let n = it.next().context("--requests needs a number")?;
                o.requests = n.parse().with_context(|| format!("--requests {n}"))?;
            }
            "-h" | "--help" => {
                println!("usage: cargo xtask demo [--release] [--requests N]   (as root)");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}; try --help"),
        }
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    if !is_root() {
        bail!("the demo creates network namespaces and attaches XDP programs: run it as root");
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe. Catching SIGINT lets the
    // demo stop between steps and run its cleanup instead of leaving namespaces behind.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }

    println!("rvs demo: an LVS-style director in XDP, balancing real TCP connections by direct routing\n");
    let bins = build(opts.release)?;

    println!("building the network (namespaces, a switch, rvs-realserver setup on each real server)...");
    let lab = DrLab::start(bins, WEIGHTS.len(), &attach_pass).context("cannot build the lab")?;
    print_network(&lab);
    check_interrupt()?;

    let svc = lab::vip_addr().to_string();
    rvsadm(&lab, &["-A", "-t", &svc, "-s", "wrr"])?;
    for (i, w) in WEIGHTS.iter().enumerate() {
        let rs = format!("{}:{}", lab::real_ip(i + 1), lab::PORT);
        rvsadm(&lab, &["-a", "-t", &svc, "-r", &rs, "-g", "-w", &w.to_string()])?;
    }

    println!(
        "\nsending {} requests from the client to http://{}/, one new TCP connection each...",
        opts.requests,
        lab::VIP
    );
    let start = Instant::now();
    let mut spread = std::collections::BTreeMap::new();
    let mut left = opts.requests;
    while left > 0 {
        check_interrupt()?;
        let n = left.min(BATCH);
        // Ctrl-C reaches the real servers too (same process group), so requests fail before the
        // flag is checked: say what happened rather than report a broken request.
        let batch = lab.spread(n);
        check_interrupt()?;
        for (name, c) in batch.context("requests through the VIP")? {
            *spread.entry(name).or_insert(0usize) += c;
        }
        left -= n;
    }
    println!(
        "{} requests answered in {:.1} s\n",
        opts.requests,
        start.elapsed().as_secs_f64()
    );

    rvsadm(&lab, &["-Ln"])?;
    if let Ok(stats) = lab.rvsadm_ok(&["-Ln", "--stats"]) {
        println!("$ rvsadm -Ln --stats\n{stats}");
    }

    let total: usize = spread.values().sum();
    let wsum: u32 = WEIGHTS.iter().sum();
    println!("spread over the real servers (wrr, weights 3:2:1):");
    for (i, w) in WEIGHTS.iter().enumerate() {
        let name = lab::real_name(i + 1);
        let n = spread.get(&name).copied().unwrap_or(0);
        let pct = 100.0 * n as f64 / total.max(1) as f64;
        println!(
            "  {name} {:<12} weight {w}  {n:>5}  {pct:5.1}%  (expected {:5.1}%)  {}",
            lab::real_ip(i + 1),
            100.0 * f64::from(*w) / f64::from(wsum),
            "#".repeat((pct / 2.0).round() as usize)
        );
    }
    for (name, n) in spread.iter().filter(|(n, _)| !n.starts_with("rs")) {
        println!("  unexpected answer {name:?}: {n}");
    }

    drop(lab);
    println!("\ncleaned up: processes stopped, namespaces, pins and files removed");
    Ok(())
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted (everything the demo created is removed on the way out)");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn rvsadm(lab: &DrLab, args: &[&str]) -> anyhow::Result<()> {
    let out = lab.rvsadm_ok(args)?;
    println!("$ rvsadm {}", args.join(" "));
    print!("{out}");
    Ok(())
}

fn print_network(lab: &DrLab) {
    println!(
        "network: namespaces {}-*, one L2 segment (bridge in {}-sw)",
        lab.topo().prefix(),
        lab.topo().prefix()
    );
    println!("  client    {}", lab::CLIENT_IP);
    println!(
        "  director  {} + VIP {}: rvsd {}",
        lab::DIRECTOR_IP,
        lab::VIP,
        lab.rvsd_args().join(" ")
    );
    for i in 1..=lab.reals() {
        println!(
            "  {}       {}, VIP on lo (ARP hidden), HTTP server answering \"{}\"",
            lab::real_name(i),
            lab::real_ip(i),
            lab::real_name(i)
        );
    }
    println!();
}

/// Builds the three binaries and returns their paths.
fn build(release: bool) -> anyhow::Result<Binaries> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf();
    let profile = if release { "release" } else { "debug" };
    println!("building rvsd, rvsadm, rvs-realserver ({profile})...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build", "--quiet", "-p", "rvs", "--bin", "rvsd", "--bin", "rvsadm",
        ])
        .args(["--bin", "rvs-realserver"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(profile);
    let bins = Binaries {
        rvsd: target.join("rvsd"),
        rvsadm: target.join("rvsadm"),
        realserver: target.join("rvs-realserver"),
    };
    for p in [&bins.rvsd, &bins.rvsadm, &bins.realserver] {
        if !p.exists() {
            bail!("{} was not built", p.display());
        }
    }
    Ok(bins)
}

/// Attaches `rvs_pass` (XDP_PASS) to `ifname` in namespace `ns`: the switch port facing the director
/// must run an XDP program for the director's XDP_TX frames to get through the veth.
fn attach_pass(topo: &Topology, ns: &str, ifname: &str) -> Result<Keeper, String> {
    topo.run_in(ns, || {
        rvs_dataplane::attach_pass(ifname).map(|p| Box::new(p) as Keeper)
    })
    .map_err(|e| e.to_string())?
}
