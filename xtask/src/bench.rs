//! `cargo xtask bench`: nanoseconds per packet of the director under BPF_PROG_TEST_RUN, beside a
//! baseline that only swaps MAC addresses and returns XDP_TX (`rvs_bench_swap`). It prints; it never
//! fails on time. docs/performance.md explains each case and records the figures.
//!
//! What each case measures (the kernel runs `--repeat` iterations in one syscall, each on the previous
//! iteration's output and map state):
//! - baseline: `rvs_bench_swap` on a TCP frame.
//! - established: the director on an ACK of a connection opened beforehand: parse, service lookup,
//!   connection hit, TCP state update, MAC rewrite, XDP_TX, stats. Repeating it is honest: DR leaves
//!   the IP packet unchanged, so every iteration is the same established packet.
//! - new connection: `rvs_bench_newconn` (bpf/rvs_bench.c) makes each iteration's SYN come from a new
//!   client (source address/port counter) and tail-calls the director, so every iteration misses the
//!   connection table, schedules, inserts into a table with room (a full table refuses new
//!   connections, so the case takes at most conn_max / rounds packets a round) and counts. The wrapper's own cost, timed with the baseline behind it, is
//!   subtracted: new = (wrapper -> director) - (wrapper -> baseline) + baseline.
//! - no service: the director on a TCP frame to an address that is no virtual service (XDP_PASS).
//! - no service, NAT configured: the same frame to a director with a NAT real server, which looks the
//!   packet up as a possible reply (and misses); "no service" above is a director without NAT, which
//!   skips that lookup.
//! - NAT, established flow and reply: NAT rewrites what it forwards, so repeating the frame would feed
//!   the director its own output. `rvs_bench_restore` (bpf/rvs_bench.c) copies the saved frame back
//!   before each run and tail-calls the director; its cost, timed with the baseline behind it, is
//!   subtracted as the new-connection wrapper's is. The director runs its real `bpf_fib_lookup`: the
//!   bench runs in a network namespace of its own where forwarding is on and the real servers and the
//!   client are routed through `lo` with a permanent neighbour, so the lookup succeeds and leaves by
//!   the ingress interface (test runs receive on `lo`): XDP_TX, as the baseline.
//!
//! Time is the thread's CPU time around the syscall (/proc/thread-self/schedstat) divided by the
//! repeat count, which has sub-ns resolution and excludes time the thread was preempted; the kernel's
//! own figure (whole ns, truncated) is printed beside it. Each case runs `--rounds` times,
//! interleaved; the median is shown.

use std::fmt::Write as _;

use anyhow::{Context, bail, ensure};
use aya::maps::ProgramArray;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use etherparse::PacketBuilder;
use rvs_abi::{
    Be16, CFG_F_NAT, Cfg, DEST_F_NEIGH, DEST_F_VALID, DestVal, Family, Fwd, MapOp, Sched, SvcKey, SvcState,
    SvcVal, addr_v4,
};
use rvs_dataplane::TestProgram;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd0];
const CLIENT: [u8; 4] = [198, 18, 0, 1];
const VIP: [u8; 4] = [198, 18, 0, 100];
const OTHER: [u8; 4] = [198, 18, 0, 99];
const VPORT: u16 = 80;
const REAL_SERVERS: u8 = 3;
/// The NAT service (VIP_NAT:VPORT -> NAT_REAL:NAT_RPORT), beside the DR one.
const VIP_NAT: [u8; 4] = [198, 18, 0, 101];
const NAT_REAL: [u8; 4] = [198, 18, 1, 10];
const NAT_RPORT: u16 = 8080;
/// The restoring wrapper in `RVS_BENCH_OBJ`, and its frame map.
const BENCH_RESTORE_PROG: &str = "rvs_bench_restore";
const BENCH_FRAME_MAP: &str = "rvs_bench_frame";
/// `rvs_bench_restore`'s frame buffer (struct rvs_bench_frame: a u32 length, then the bytes).
const BENCH_FRAME_SIZE: usize = 256;

struct Opts {
    repeat: u32,
    rounds: usize,
    conn_max: u32,
}

const USAGE: &str =
    "usage: cargo xtask bench [--repeat N (10000000)] [--rounds N (5)] [--conn-max N (1048576)]
       cargo xtask bench conntable [--entries N]...";

impl Opts {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Opts {
            repeat: 10_000_000,
            rounds: 5,
            conn_max: rvs_abi::CONN_DEFAULT,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
            match a.as_str() {
                "--repeat" => o.repeat = value()?.parse().context("--repeat")?,
                "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
                "--conn-max" => o.conn_max = value()?.parse().context("--conn-max")?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option {other}\n{USAGE}"),
            }
        }
        ensure!(
            o.repeat > 0 && o.rounds > 0 && o.conn_max > 0,
            "--repeat, --rounds and --conn-max must be > 0"
        );
        Ok(o)
    }
}

/// One timed test run.
#[derive(Clone, Copy)]
struct Sample {
    /// Thread CPU time per packet.
    cpu_ns: f64,
    /// The kernel's mean per packet (whole ns).
    kernel_ns: f64,
}

/// This thread's CPU time in ns (first field of schedstat).
pub(crate) fn thread_cpu_ns() -> anyhow::Result<u64> {
    let s =
        std::fs::read_to_string("/proc/thread-self/schedstat").context("read /proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()
        .context("parse schedstat")
}

/// Runs `prog` `repeat` times on `frame`, checking the action.
fn time(prog: &Xdp, frame: &[u8], repeat: u32, want: u32, what: &str) -> anyhow::Result<Sample> {
    let mut out = vec![0u8; frame.len() + 256];
    let before = thread_cpu_ns()?;
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        })
        .with_context(|| format!("test run: {what}"))?;
    let after = thread_cpu_ns()?;
    ensure!(
        res.return_value == want,
        "{what}: action {} instead of {want}",
        res.return_value
    );
    Ok(Sample {
        cpu_ns: (after - before) as f64 / f64::from(repeat),
        kernel_ns: res.duration.as_nanos() as f64,
    })
}

fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, syn: bool) -> Vec<u8> {
    tcp_frame_ports(src, sport, dst, VPORT, syn)
}

fn tcp_frame_ports(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).expect("build frame");
    out
}

/// One rr service on VIP:VPORT/TCP over three DR real servers reached through the test run's ingress
/// interface (so the verdict is XDP_TX).
fn service_ops() -> Vec<MapOp> {
    let mut ops = Vec::new();
    for i in 0..REAL_SERVERS {
        let val = DestVal {
            addr: addr_v4([198, 18, 1, i + 1]),
            port: Be16::new(VPORT),
            family: Family::Inet as u8,
            fwd: Fwd::Dr as u8,
            dmac: [0x02, 0, 0, 0, 0x0b, i + 1],
            smac: DIRECTOR_MAC,
            ifindex: TestProgram::INGRESS_IFINDEX,
            weight: 1,
            svc_id: 0,
            flags: DEST_F_VALID | DEST_F_NEIGH,
            ..DestVal::default()
        };
        ops.push(MapOp::DestSet {
            id: u32::from(i),
            val,
        });
        ops.push(MapOp::SchedSet {
            slot: u32::from(i),
            dest_id: u32::from(REAL_SERVERS - 1 - i),
        });
    }
    ops.push(MapOp::SvcStateSet {
        id: 0,
        val: SvcState { pos: 0 },
    });
    let key = SvcKey {
        addr: addr_v4(VIP),
        port: Be16::new(VPORT),
        proto: 6,
        family: Family::Inet as u8,
    };
    let val = SvcVal {
        id: 0,
        flags: 0,
        sched: Sched::Rr as u32,
        sched_base: 0,
        sched_len: 3,
        ..SvcVal::default()
    };
    ops.push(MapOp::SvcSet { key, val });
    ops
}

/// NAT switched on and one rr service VIP_NAT:VPORT/TCP -> NAT_REAL:NAT_RPORT (service 1, dest 3).
fn nat_service_ops() -> Vec<MapOp> {
    let val = DestVal {
        addr: addr_v4(NAT_REAL),
        port: Be16::new(NAT_RPORT),
        family: Family::Inet as u8,
        fwd: Fwd::Nat as u8,
        weight: 1,
        svc_id: 1,
        flags: DEST_F_VALID,
        ..DestVal::default()
    };
    let key = SvcKey {
        addr: addr_v4(VIP_NAT),
        port: Be16::new(VPORT),
        proto: 6,
        family: Family::Inet as u8,
    };
    let svc = SvcVal {
        id: 1,
        flags: 0,
        sched: Sched::Rr as u32,
        sched_base: 16,
        sched_len: 1,
        ..SvcVal::default()
    };
    vec![
        MapOp::CfgSet {
            val: Cfg {
                flags: CFG_F_NAT,
                lblcr_exp_s: 0,
            },
        },
        MapOp::DestSet { id: 3, val },
        MapOp::SchedSet { slot: 16, dest_id: 3 },
        MapOp::SvcStateSet {
            id: 1,
            val: SvcState { pos: 0 },
        },
        MapOp::SvcSet { key, val: svc },
    ]
}

/// Moves this process into a network namespace of its own where the kernel's FIB routes the NAT real
/// server and the client through `lo` (the test run's ingress interface) with a permanent neighbour,
/// and forwarding is on: the director's `bpf_fib_lookup` then answers SUCCESS and the NAT packets
/// leave by XDP_TX. Nothing to clean up: the namespace goes with the process.
fn enter_bench_netns() -> anyhow::Result<()> {
    // SAFETY: unshare has no memory preconditions; xtask's bench runs on this one thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    ensure!(
        rc == 0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let ip = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .context("run ip")?;
        ensure!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    ip(&["link", "set", "lo", "up"])?;
    ip(&["route", "add", "198.18.0.0/16", "dev", "lo"])?;
    // lo is NOARP: its neighbours are all keyed 0.0.0.0, so one permanent entry answers every lookup.
    ip(&[
        "neigh",
        "add",
        "198.18.1.10",
        "lladdr",
        "02:00:00:00:0b:0a",
        "dev",
        "lo",
        "nud",
        "permanent",
    ])?;
    for f in ["all", "lo"] {
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{f}/forwarding"), "1")
            .with_context(|| format!("enable forwarding on {f}"))?;
    }
    Ok(())
}

/// The restore wrapper's saved frame.
fn bench_frame(frame: &[u8]) -> anyhow::Result<[u8; BENCH_FRAME_SIZE]> {
    ensure!(frame.len() <= BENCH_FRAME_SIZE - 4, "bench frame too long");
    let mut v = [0u8; BENCH_FRAME_SIZE];
    v[..4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    v[4..4 + frame.len()].copy_from_slice(frame);
    Ok(v)
}

fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?;
    prog.load().with_context(|| format!("load {name}"))?;
    Ok(prog)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if args.first().map(String::as_str) == Some("conntable") {
        return crate::conntable::run(&args[1..]);
    }
    let o = Opts::parse(args)?;
    // Root's /proc/self/status has "Uid:\t0 ..." (xtask does not link libc for geteuid).
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    ensure!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "cargo xtask bench loads BPF programs: run it as root"
    );

    enter_bench_netns()?;

    // The baseline, and the wrappers: each iteration a new client; each iteration the same frame.
    let mut pass = Ebpf::load(rvs_bpf::RVS_PASS_OBJ).context("load rvs_pass.o")?;
    let swap = load_xdp(&mut pass, rvs_bpf::BENCH_SWAP_PROG)?;
    let mut bench = EbpfLoader::new()
        .load(rvs_bpf::RVS_BENCH_OBJ)
        .context("load rvs_bench.o")?;
    let mut jmp = ProgramArray::try_from(
        bench
            .take_map(rvs_bpf::BENCH_JMP_MAP)
            .context("no rvs_bench_jmp")?,
    )?;
    let mut saved: aya::maps::Array<_, [u8; BENCH_FRAME_SIZE]> =
        aya::maps::Array::try_from(bench.take_map(BENCH_FRAME_MAP).context("no rvs_bench_frame")?)?;
    load_xdp(&mut bench, rvs_bpf::BENCH_NEWCONN_PROG)?;
    load_xdp(&mut bench, BENCH_RESTORE_PROG)?;
    let wrapper: &Xdp = bench
        .program(rvs_bpf::BENCH_NEWCONN_PROG)
        .context("no newconn wrapper")?
        .try_into()?;
    let restore: &Xdp = bench
        .program(BENCH_RESTORE_PROG)
        .context("no restore wrapper")?
        .try_into()?;

    // The director as production runs it (rvs_test_hooks = 0: the real clock).
    let mut dp = TestProgram::load_unhooked(o.conn_max).context("load the director")?;
    dp.apply(&service_ops()).context("configure the service")?;
    let est = tcp_frame(CLIENT, VIP, 40000, false);
    let miss = tcp_frame(CLIENT, OTHER, 40000, false);
    // The wrapper counts over (low 16 bits of the source address, source port); round r starts at
    // 198.18.r+1.0:0, so rounds never meet each other's clients (or CLIENT) below 2^24 packets.
    ensure!(
        o.repeat < 1 << 24 && o.rounds < 254,
        "at most 2^24 - 1 packets per round and 253 rounds"
    );
    let syn = |round: usize| tcp_frame([198, 18, round as u8 + 1, 0], VIP, 0, true);
    // The connection table refuses new connections once full (it never evicts: every entry counts
    // for its real server), so the new-connection cases take as many packets as all rounds can insert.
    let newconn_repeat = o
        .repeat
        .min(o.conn_max.saturating_sub(2) / o.rounds as u32)
        .max(1);
    let (action, _) = dp.run(&Default::default(), &tcp_frame(CLIENT, VIP, 40000, true))?;
    ensure!(
        action == XDP_TX,
        "opening the established connection: action {action}"
    );
    // NAT: open the connection, then check that an established packet and a reply leave by XDP_TX
    // rewritten (a failed FIB lookup would pass them to the stack and time something else).
    let mut nat = TestProgram::load_unhooked(o.conn_max).context("load the NAT director")?;
    nat.apply(&nat_service_ops())
        .context("configure the NAT service")?;
    let (action, _) = nat.run(
        &Default::default(),
        &tcp_frame_ports(CLIENT, 40000, VIP_NAT, VPORT, true),
    )?;
    ensure!(
        action == XDP_TX,
        "opening the NAT connection: action {action} (FIB?)"
    );
    let nat_in = tcp_frame_ports(CLIENT, 40000, VIP_NAT, VPORT, false);
    let nat_reply = tcp_frame_ports(NAT_REAL, NAT_RPORT, CLIENT, 40000, false);
    let (action, out) = nat.run(&Default::default(), &nat_in)?;
    ensure!(
        action == XDP_TX && out[30..34] == NAT_REAL && out[22] == 63,
        "NAT established packet: action {action}, not rewritten as expected"
    );
    let (action, out) = nat.run(&Default::default(), &nat_reply)?;
    ensure!(
        action == XDP_TX && out[26..30] == VIP_NAT,
        "NAT reply: action {action}, not rewritten as expected"
    );
    let nat_in_saved = bench_frame(&nat_in)?;
    let nat_reply_saved = bench_frame(&nat_reply)?;
    let director = dp.program()?;
    let nat_director = nat.program()?;

    let cases = [
        "baseline",
        "established",
        "wrapper+director",
        "wrapper+baseline",
        "no service",
        "restore+director (NAT in)",
        "restore+director (NAT reply)",
        "restore+baseline",
        "no service, NAT configured",
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cases.len()];
    eprintln!(
        "{} rounds x {} cases x {} packets ...",
        o.rounds,
        cases.len(),
        o.repeat
    );
    for round in 0..o.rounds {
        samples[0].push(time(swap, &est, o.repeat, XDP_TX, "baseline")?);
        samples[1].push(time(director, &est, o.repeat, XDP_TX, "established")?);
        jmp.set(0, director.fd()?, 0)?;
        samples[2].push(time(
            wrapper,
            &syn(round),
            newconn_repeat,
            XDP_TX,
            "wrapper -> director",
        )?);
        jmp.set(0, swap.fd()?, 0)?;
        samples[3].push(time(
            wrapper,
            &syn(round),
            newconn_repeat,
            XDP_TX,
            "wrapper -> baseline",
        )?);
        samples[4].push(time(director, &miss, o.repeat, XDP_PASS, "no service")?);
        jmp.set(0, nat_director.fd()?, 0)?;
        saved.set(0, nat_in_saved, 0)?;
        samples[5].push(time(
            restore,
            &nat_in,
            o.repeat,
            XDP_TX,
            "restore -> director, NAT in",
        )?);
        saved.set(0, nat_reply_saved, 0)?;
        samples[6].push(time(
            restore,
            &nat_reply,
            o.repeat,
            XDP_TX,
            "restore -> director, NAT reply",
        )?);
        jmp.set(0, swap.fd()?, 0)?;
        samples[7].push(time(restore, &nat_in, o.repeat, XDP_TX, "restore -> baseline")?);
        samples[8].push(time(
            nat_director,
            &miss,
            o.repeat,
            XDP_PASS,
            "no service, NAT configured",
        )?);
    }
    let cpu: Vec<f64> = samples
        .iter()
        .map(|s| median(s.iter().map(|x| x.cpu_ns).collect()))
        .collect();
    let kern: Vec<f64> = samples
        .iter()
        .map(|s| median(s.iter().map(|x| x.kernel_ns).collect()))
        .collect();
    let new_conn = cpu[2] - cpu[3] + cpu[0];
    let new_conn_k = kern[2] - kern[3] + kern[0];
    let nat_est = cpu[5] - cpu[7] + cpu[0];
    let nat_est_k = kern[5] - kern[7] + kern[0];
    let nat_rep = cpu[6] - cpu[7] + cpu[0];
    let nat_rep_k = kern[6] - kern[7] + kern[0];

    // The new-connection figure is only meaningful if every wrapped iteration did open a connection.
    let opened = dp.svc_stats(0)?.conns;
    let expected = 1 + o.rounds as u64 * u64::from(newconn_repeat);

    let mut t = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    writeln!(
        t,
        "rvs director, BPF_PROG_TEST_RUN, {} packets x {} rounds (median)",
        o.repeat, o.rounds
    )?;
    writeln!(
        t,
        "kernel {}, {}, conn table {} entries",
        kernel.trim(),
        cpu_model,
        o.conn_max
    )?;
    writeln!(t)?;
    writeln!(
        t,
        "{:<52} {:>10} {:>10} {:>11}",
        "case", "ns/packet", "kernel ns", "x baseline"
    )?;
    let row = |t: &mut String, name: &str, c: f64, k: f64| {
        writeln!(t, "{name:<52} {c:>10.2} {k:>10.0} {:>10.2}x", c / cpu[0])
    };
    row(
        &mut t,
        "baseline: MAC swap + XDP_TX (rvs_bench_swap)",
        cpu[0],
        kern[0],
    )?;
    row(&mut t, "DR, established TCP flow (XDP_TX)", cpu[1], kern[1])?;
    row(
        &mut t,
        "DR, new TCP connection (SYN, XDP_TX)",
        new_conn,
        new_conn_k,
    )?;
    row(&mut t, "no service (XDP_PASS)", cpu[4], kern[4])?;
    row(
        &mut t,
        "NAT, established TCP flow (fib, XDP_TX)",
        nat_est,
        nat_est_k,
    )?;
    row(
        &mut t,
        "NAT, reply of that flow (fib, XDP_TX)",
        nat_rep,
        nat_rep_k,
    )?;
    row(
        &mut t,
        "no service, NAT configured (reply lookup, XDP_PASS)",
        cpu[8],
        kern[8],
    )?;
    writeln!(t)?;
    writeln!(
        t,
        "new connection = wrapper->director {:.2} - wrapper->baseline {:.2} + baseline {:.2}",
        cpu[2], cpu[3], cpu[0]
    )?;
    writeln!(
        t,
        "NAT = restore->director {:.2} (in) / {:.2} (reply) - restore->baseline {:.2} + baseline {:.2}",
        cpu[5], cpu[6], cpu[7], cpu[0]
    )?;
    writeln!(t, "connections opened: {opened} (expected {expected})")?;
    writeln!(
        t,
        "reference: Katran costs about 4.7x the baseline (established TCP) and 2.7x (no service)"
    )?;
    print!("{t}");
    if opened != expected {
        eprintln!("warning: the new-connection case did not open one connection per packet");
    }
    Ok(())
}
