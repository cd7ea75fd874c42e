//! `cargo xtask demo [--release] [--requests N]`: builds the binaries, sets up a client, one director and
//! six real servers in network namespaces (rvs_testkit::natlab: a director with a client-side and a
//! server-side interface), starts rvsd, configures one service per LVS forwarding method with rvsadm
//! (VS/DR, VS/NAT with port mapping, VS/TUN decapsulated by rvs-realserver's XDP program), sends HTTP
//! requests from the client to each, prints `rvsadm -Ln` and the spread, and cleans up.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rvs_testkit::lab::{Binaries, Keeper, describe};
use rvs_testkit::natlab::{self, DIRECTOR, NatLab, real_ip4, real_name};
use rvs_testkit::netns::Topology;
use rvs_testkit::{http, wait};

/// Requests sent to each service by default.
const REQUESTS: usize = 300;
/// Requests per batch: the demo checks for Ctrl-C between batches.
const BATCH: usize = 50;
/// The VS/NAT service's VIP (the DR one is the lab's VIP, 198.18.0.100).
const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
/// The VS/TUN service's VIP.
const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 102);
/// The virtual services' port.
const PORT: u16 = 80;

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
                println!(
                    "usage: cargo xtask demo [--release] [--requests N]   (as root; N requests per service)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown option {other}; try --help"),
        }
    }
    Ok(o)
}

/// One virtual service of the demo: how it forwards, where, and to which real servers.
struct Service {
    /// The forwarding method, as the listing names it.
    method: &'static str,
    /// rvsadm's flag for it.
    flag: &'static str,
    vip: Ipv4Addr,
    sched: &'static str,
    /// Real servers: (index, port, weight).
    reals: Vec<(usize, u16, u32)>,
}

impl Service {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.vip), PORT)
    }
}

/// The NAT lab plus what turns two of its real servers into tunnel ones. Drop stops the extra servers
/// and removes rvs_decap's pins; the lab then removes everything else.
struct Demo {
    servers: Vec<Child>,
    /// bpffs directory of the tunnel real servers' rvs_decap pins (one subdirectory each).
    decap_pins: PathBuf,
    lab: NatLab,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Removing the pinned links detaches rvs_decap and frees its maps.
        let _ = std::fs::remove_dir_all(&self.decap_pins);
    }
}

impl Demo {
    /// rs1 and rs2 stay VS/NAT real servers (HTTP on 8080, default route via the director); rs3 and rs4
    /// become VS/TUN ones for [`VIP_TUN`]; rs5 and rs6 are added as VS/DR ones for the lab's VIP.
    fn start(bins: Binaries) -> anyhow::Result<Self> {
        let lab = NatLab::start(bins, 4, &attach_pass).context("cannot build the lab")?;
        let decap_pins = PathBuf::from("/sys/fs/bpf").join(format!("{}-decap", lab.topo().prefix()));
        let mut demo = Demo {
            servers: Vec::new(),
            decap_pins,
            lab,
        };
        for vip in [VIP_NAT, VIP_TUN] {
            let cidr = format!("{vip}/32");
            demo.lab
                .topo()
                .ip(DIRECTOR, &["addr", "add", &cidr, "dev", natlab::CLIENT_IF])?;
        }
        for i in [3, 4] {
            demo.make_tun(i)?;
        }
        for _ in 0..2 {
            demo.lab.add_dr_server().context("cannot add a DR real server")?;
        }
        Ok(demo)
    }

    /// Prepares real server `i` for VS/TUN on [`VIP_TUN`] (rvs_decap on its interface, the VIP on lo)
    /// and starts an HTTP server on port 80 there.
    fn make_tun(&mut self, i: usize) -> anyhow::Result<()> {
        let name = real_name(i);
        let state = self.lab.realserver_state_dir(i).display().to_string();
        let pins = self.decap_pins.join(&name).display().to_string();
        let vip = VIP_TUN.to_string();
        let args = [
            "setup",
            "--vip",
            &vip,
            "--mode",
            "tun",
            "--dev",
            natlab::CLIENT_IF,
            "--state-dir",
            &state,
            "--pin-dir",
            &pins,
        ];
        let out = self.lab.realserver(i, &args)?;
        if !out.status.success() {
            bail!("rvs-realserver {} in {name}: {}", args.join(" "), describe(&out));
        }
        let child = self.lab.topo().spawn_in(
            &name,
            Command::new("python3")
                .args(["-c", http::HTTPD_PY, &name, &PORT.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        self.servers.push(child);
        let addr = SocketAddr::new(IpAddr::V4(real_ip4(i)), PORT);
        let got = wait::until(
            &format!("{name}'s HTTP server at {addr}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                self.lab
                    .topo()
                    .run_in(DIRECTOR, || http::get_once(addr, None))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            },
        )?;
        if got != name {
            bail!("{addr} answered {got:?}, not {name:?}");
        }
        Ok(())
    }
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

    println!(
        "rvs demo: an LVS-style director in XDP, one service per forwarding method (direct routing, NAT, tunnel)\n"
    );
    let bins = build(opts.release)?;

    println!("building the network (namespaces, a switch, rvs-realserver setup on each real server)...");
    let demo = Demo::start(bins)?;
    let lab = &demo.lab;
    print_network(lab);
    check_interrupt()?;

    let services = [
        Service {
            method: "Route",
            flag: "-g",
            vip: natlab::VIP4,
            sched: "wrr",
            reals: vec![(5, PORT, 2), (6, PORT, 1)],
        },
        Service {
            method: "Masq",
            flag: "-m",
            vip: VIP_NAT,
            sched: "rr",
            reals: vec![(1, natlab::HTTP_PORT, 1), (2, natlab::HTTP_PORT, 1)],
        },
        Service {
            method: "Tunnel",
            flag: "-i",
            vip: VIP_TUN,
            sched: "rr",
            reals: vec![(3, PORT, 1), (4, PORT, 1)],
        },
    ];
    for s in &services {
        let svc = s.addr().to_string();
        rvsadm(lab, &["-A", "-t", &svc, "-s", s.sched])?;
        for &(i, port, w) in &s.reals {
            let rs = SocketAddr::new(IpAddr::V4(real_ip4(i)), port).to_string();
            rvsadm(lab, &["-a", "-t", &svc, "-r", &rs, s.flag, "-w", &w.to_string()])?;
        }
    }

    let mut spreads = Vec::new();
    for s in &services {
        println!(
            "\nsending {} requests from the client to http://{}/ ({}), one new TCP connection each...",
            opts.requests, s.vip, s.method
        );
        let start = Instant::now();
        let mut spread = BTreeMap::new();
        let mut left = opts.requests;
        while left > 0 {
            check_interrupt()?;
            let n = left.min(BATCH);
            // Ctrl-C reaches the real servers too (same process group), so requests fail before the
            // flag is checked: say what happened rather than report a broken request.
            let batch = lab.http_spread(s.addr(), n);
            check_interrupt()?;
            for (name, c) in batch.with_context(|| format!("requests through {}", s.addr()))? {
                *spread.entry(name).or_insert(0usize) += c;
            }
            left -= n;
        }
        println!(
            "{} requests answered in {:.1} s",
            opts.requests,
            start.elapsed().as_secs_f64()
        );
        spreads.push(spread);
    }

    println!();
    rvsadm(lab, &["-Ln"])?;
    if let Ok(stats) = lab.rvsadm_ok(&["-Ln", "--stats"]) {
        println!("$ rvsadm -Ln --stats\n{stats}");
    }

    for (s, spread) in services.iter().zip(&spreads) {
        print_spread(s, spread);
    }

    drop(demo);
    println!("\ncleaned up: processes stopped, namespaces, pins and files removed");
    Ok(())
}

fn print_spread(s: &Service, spread: &BTreeMap<String, usize>) {
    let total: usize = spread.values().sum();
    let wsum: u32 = s.reals.iter().map(|r| r.2).sum();
    let weights: Vec<String> = s.reals.iter().map(|r| r.2.to_string()).collect();
    println!(
        "spread over the real servers of {} ({}, {} {}):",
        s.addr(),
        s.method,
        s.sched,
        weights.join(":")
    );
    for &(i, port, w) in &s.reals {
        let name = real_name(i);
        let n = spread.get(&name).copied().unwrap_or(0);
        let pct = 100.0 * n as f64 / total.max(1) as f64;
        let rs = SocketAddr::new(IpAddr::V4(real_ip4(i)), port).to_string();
        println!(
            "  {name} {rs:<18} weight {w}  {n:>5}  {pct:5.1}%  (expected {:5.1}%)  {}",
            100.0 * f64::from(w) / f64::from(wsum),
            "#".repeat((pct / 2.0).round() as usize)
        );
    }
    let ours: Vec<String> = s.reals.iter().map(|r| real_name(r.0)).collect();
    for (name, n) in spread.iter().filter(|(n, _)| !ours.contains(n)) {
        println!("  unexpected answer {name:?}: {n}");
    }
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

fn rvsadm(lab: &NatLab, args: &[&str]) -> anyhow::Result<()> {
    let out = lab.rvsadm_ok(args)?;
    println!("$ rvsadm {}", args.join(" "));
    print!("{out}");
    Ok(())
}

fn print_network(lab: &NatLab) {
    println!(
        "network: namespaces {}-*; the client on one side of the director, the real servers on a switch \
         (bridge in {}-sw) on the other",
        lab.topo().prefix(),
        lab.topo().prefix()
    );
    println!("  client    {}", natlab::CLIENT_IP4);
    println!(
        "  director  eth0 198.18.0.1 + VIPs {} (DR), {VIP_NAT} (NAT), {VIP_TUN} (TUN); eth1 {}: rvsd -i eth0 -i eth1",
        natlab::VIP4,
        natlab::DIRECTOR_RS_IP4
    );
    let rs = |i: usize| format!("{} {}", real_name(i), real_ip4(i));
    println!(
        "  {}, {}  NAT: default route via the director, HTTP on :{}",
        rs(1),
        rs(2),
        natlab::HTTP_PORT
    );
    println!(
        "  {}, {}  TUN: rvs_decap (XDP) strips the outer header, VIP {VIP_TUN} on lo, HTTP on :{PORT}",
        rs(3),
        rs(4)
    );
    println!(
        "  {}, {}  DR:  VIP {} on lo (ARP hidden), HTTP on :{PORT}",
        rs(5),
        rs(6),
        natlab::VIP4
    );
    println!("  every HTTP server answers with its name\n");
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

/// Attaches `rvs_pass` (XDP_PASS) to `ifname` in namespace `ns`: a veth delivers the director's
/// XDP_TX and XDP_REDIRECT frames only when its peer runs an XDP program.
fn attach_pass(topo: &Topology, ns: &str, ifname: &str) -> Result<Keeper, String> {
    topo.run_in(ns, || {
        rvs_dataplane::attach_pass(ifname).map(|p| Box::new(p) as Keeper)
    })
    .map_err(|e| e.to_string())?
}
