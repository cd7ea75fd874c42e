//! `cargo xtask bench conntable`: what the connection table costs at scale. For each size it opens the
//! data plane as rvsd does (rvs-dataplane, a pin directory of its own, `rvs_conn` of that many
//! entries), fills the table from user space (BPF_MAP_UPDATE_BATCH), and prints:
//! - the kernel memory per tracked connection: the map's fdinfo `memlock` (the kernel's own account
//!   of what the map allocated), beside the drop of MemAvailable and the growth of VmallocUsed in
//!   /proc/meminfo across the map's creation (system-wide, so other processes add noise);
//! - the daemon's incremental sweep with half the entries expired, through the same code rvsd runs
//!   (`sweep::Sweeper` from crates/rvsd/sweep.rs: slices of the batched read from a resumed cursor,
//!   `conns::Due` from crates/rvsd/conns.rs, the kernel's expiry through `Dataplane::expire_conns`):
//!   one whole pass slice by slice, with the longest slice (how long rvsd's loop is held) and the
//!   time a pass takes at one slice per period (how late an entry may be expired); then the same pass
//!   with nothing left to expire (the steady state), and the bounded sweep before a listing;
//! - with `--nat`, the same over NAT connections, each with its reply entry (half the table), whose
//!   reply entries the sweep judges by looking their connection up;
//! - a full `-Lnc`-style read (every connection into one vector), and at sizes up to 1,000,000 the
//!   per-entry iteration aya offers (two syscalls an entry), the way the table was read before.
//!
//! It prints; it never fails on time. docs/performance.md records the figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rvs_abi::{
    Be16, CONN_C_ACTIVE, CONN_F_INPUT_ONLY, CONN_F_REPLY, ConnKey, ConnVal, DEST_F_VALID, DestVal, Family,
    Fwd, MapOp, SvcKey, SvcVal, TcpState, addr_v4,
};
use rvs_api::Timeouts;
use rvs_dataplane::{Dataplane, DataplaneConfig, now_ns};

/// The daemon's own IPVS accounting, compiled here from rvsd's source file so that the benchmark runs
/// the very code the sweep runs (rvsd is a binary, not a library). Only `Due` and `plane_timeouts` are
/// used here.
#[allow(dead_code)]
#[path = "../../crates/rvsd/conns.rs"]
mod conns;
/// The daemon's incremental sweep, compiled here likewise.
#[allow(dead_code)]
#[path = "../../crates/rvsd/sweep.rs"]
mod sweep;

const USAGE: &str =
    "usage: cargo xtask bench conntable [--entries N]... [--nat] (default: 1000000 and 10000000, DR)";

/// Entries generated and written per step while filling, to bound the benchmark's own memory.
const FILL_STEP: u32 = 1 << 20;
const SEC: u64 = 1_000_000_000;

/// What the command line asks for.
struct Args {
    sizes: Vec<u32>,
    /// NAT connections with their reply entries instead of DR connections.
    nat: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut sizes = Vec::new();
    let mut nat = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--entries" => {
                let v = it
                    .next()
                    .with_context(|| format!("--entries needs a value\n{USAGE}"))?;
                sizes.push(v.parse().with_context(|| format!("--entries {v}"))?);
            }
            "--nat" => nat = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000_000, 10_000_000];
    }
    ensure!(
        sizes.iter().all(|&n| (2..=1 << 24).contains(&n)),
        "--entries must be 2 to 16777216 (the keys are generated from a 24-bit counter)"
    );
    Ok(Args { sizes, nat })
}

/// Client `i` to the VIP over TCP; distinct for every i below 2^24 (198.18.0.0/15 + a port).
fn key(i: u32) -> ConnKey {
    // 198.18.0.0 + i / 16384: at most 198.18.3.255 for i below 2^24.
    let host = u32::from_be_bytes([198, 18, 0, 0]) + (i >> 14);
    ConnKey {
        saddr: addr_v4(host.to_be_bytes()),
        daddr: addr_v4([198, 18, 255, 100]),
        sport: Be16::new(1024 + (i & 0x3fff) as u16),
        dport: Be16::new(80),
        proto: 6,
        family: Family::Inet as u8,
        ..ConnKey::default()
    }
}

/// An ESTABLISHED connection (DR, or NAT) to real server `i % 16` (generation 1), last seen at
/// `last_ns`.
fn val(i: u32, last_ns: u64, nat: bool) -> ConnVal {
    ConnVal {
        dest_id: i % 16,
        svc_id: 0,
        last_ns,
        state: TcpState::Established as u8,
        flags: if nat { 0 } else { CONN_F_INPUT_ONLY },
        cflags: CONN_C_ACTIVE,
        dest_gen: 1,
        ..ConnVal::default()
    }
}

/// The reply entry of NAT connection `i` (`rvs_conn_reply_key`, bpf/lib/conn.h).
fn reply(i: u32, last_ns: u64) -> (ConnKey, ConnVal) {
    let k = key(i);
    let d = dest(i % 16, true);
    let rk = ConnKey {
        saddr: d.addr,
        daddr: k.saddr,
        sport: d.port,
        dport: k.sport,
        ..k
    };
    let v = ConnVal {
        flags: CONN_F_REPLY,
        ..val(i, last_ns, true)
    };
    (rk, v)
}

/// The virtual service the connections are to: service 0, 198.18.255.100:80/TCP.
fn vip() -> MapOp {
    MapOp::SvcSet {
        key: SvcKey {
            addr: addr_v4([198, 18, 255, 100]),
            port: Be16::new(80),
            proto: 6,
            family: Family::Inet as u8,
        },
        val: SvcVal::default(),
    }
}

/// Real server `id` of service 0, DR or NAT, generation 1: what the connections name.
fn dest(id: u32, nat: bool) -> DestVal {
    DestVal {
        addr: addr_v4([198, 18, 1, 10 + id as u8]),
        port: Be16::new(80),
        family: Family::Inet as u8,
        fwd: if nat { Fwd::Nat } else { Fwd::Dr } as u8,
        svc_id: 0,
        weight: 1,
        flags: DEST_F_VALID,
        dgen: 1,
        ..DestVal::default()
    }
}

/// kB figures of /proc/meminfo.
#[derive(Clone, Copy, Debug)]
struct MemInfo {
    available_kb: i64,
    vmalloc_kb: i64,
}

fn meminfo() -> anyhow::Result<MemInfo> {
    let text = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    let field = |name: &str| -> anyhow::Result<i64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/meminfo"))
    };
    Ok(MemInfo {
        available_kb: field("MemAvailable:")?,
        vmalloc_kb: field("VmallocUsed:")?,
    })
}

/// Unloads the benchmark's data plane however the run ends.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(e) = rvs_dataplane::unload(&self.0) {
            eprintln!("cannot unload {}: {e}", self.0.display());
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate(n: usize, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64().max(1e-9);
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

/// Writes connections `range` with `last_ns(i)` in steps of [`FILL_STEP`], NAT ones each with its
/// reply entry.
fn fill(
    dp: &mut Dataplane,
    range: impl Iterator<Item = u32>,
    last_ns: impl Fn(u32) -> u64,
    nat: bool,
) -> anyhow::Result<usize> {
    let mut written = 0;
    let mut keys = Vec::with_capacity(FILL_STEP as usize);
    let mut vals = Vec::with_capacity(FILL_STEP as usize);
    let mut flush = |keys: &mut Vec<ConnKey>, vals: &mut Vec<ConnVal>| -> anyhow::Result<()> {
        written += dp.set_conns(keys, vals).context("fill rvs_conn")?;
        keys.clear();
        vals.clear();
        Ok(())
    };
    for i in range {
        keys.push(key(i));
        vals.push(val(i, last_ns(i), nat));
        if nat {
            let (k, v) = reply(i, last_ns(i));
            keys.push(k);
            vals.push(v);
        }
        if keys.len() >= FILL_STEP as usize {
            flush(&mut keys, &mut vals)?;
        }
    }
    flush(&mut keys, &mut vals)?;
    Ok(written)
}

/// What one pass of the incremental sweep did and took: CPU time of this thread (the syscalls' time in
/// the kernel included, time preempted by other work on the machine not), and wall time.
struct Pass {
    swept: sweep::Swept,
    slices: usize,
    cpu: Duration,
    wall: Duration,
    longest: Duration,
    median: Duration,
}

/// Runs `f`, returning its result, wall time and this thread's CPU time.
fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration, Duration)> {
    let cpu0 = crate::bench::thread_cpu_ns()?;
    let start = Instant::now();
    let r = f()?;
    let wall = start.elapsed();
    let cpu = Duration::from_nanos(crate::bench::thread_cpu_ns()? - cpu0);
    Ok((r, wall, cpu))
}

/// One whole pass of the daemon's periodic sweep (crates/rvsd/daemon.rs `Daemon::sweep_slice`, one
/// slice a period), slice after slice with no pause, each slice timed.
fn pass(dp: &mut Dataplane, sweeper: &mut sweep::Sweeper, t: &Timeouts) -> anyhow::Result<Pass> {
    let mut swept = sweep::Swept::default();
    let mut times = Vec::new();
    let mut wall = Duration::ZERO;
    while swept.passes == 0 {
        let (s, w, cpu) = timed(|| sweeper.slice(dp, now_ns(), t, sweep::SLICE))?;
        times.push(cpu);
        wall += w;
        swept.read += s.read;
        swept.due += s.due;
        swept.expired += s.expired;
        swept.passes += s.passes;
    }
    let cpu = times.iter().sum();
    let slices = times.len();
    times.sort_unstable();
    Ok(Pass {
        swept,
        slices,
        cpu,
        wall,
        longest: times.last().copied().unwrap_or_default(),
        median: times[slices / 2],
    })
}

fn print_pass(what: &str, p: &Pass) {
    println!(
        "  {what:<34} {:>8.3} s  CPU ({} entries in {} slices, {}; {} due, {} expired; wall {:.3} s)",
        secs(p.cpu),
        p.swept.read,
        p.slices,
        rate(p.swept.read, p.cpu),
        p.swept.due,
        p.swept.expired,
        secs(p.wall),
    );
    println!(
        "    slice CPU: longest {:.1} ms, median {:.1} ms; a pass at one slice per {} ms: {:.1} s",
        p.longest.as_secs_f64() * 1e3,
        p.median.as_secs_f64() * 1e3,
        sweep::PERIOD.as_millis(),
        (p.slices as u32 * sweep::PERIOD).as_secs_f64(),
    );
}

fn bench_one(n: u32, nat: bool) -> anyhow::Result<()> {
    let pin_dir = PathBuf::from(format!(
        "{}-bench-conntable-{}-{n}",
        rvs_dataplane::DEFAULT_PIN_DIR,
        std::process::id()
    ));
    ensure!(!pin_dir.exists(), "{} exists", pin_dir.display());
    println!(
        "rvs_conn of {n} entries, {} (pin dir {})",
        if nat {
            "NAT connections with their reply entries"
        } else {
            "DR connections"
        },
        pin_dir.display()
    );

    let before = meminfo()?;
    let start = Instant::now();
    let guard = PinGuard(pin_dir.clone());
    let mut dp = Dataplane::open(&DataplaneConfig {
        pin_dir: pin_dir.clone(),
        conn_max: n,
    })
    .context("open the data plane")?;
    let opened = start.elapsed();
    let after = meminfo()?;
    ensure!(dp.conn_max() == n, "max_entries {} != {n}", dp.conn_max());
    let memlock = dp.conn_memory()?;
    let per = |bytes: f64| bytes / f64::from(n);
    println!("  open (load, verify, allocate)     {:>8.3} s", secs(opened));
    println!(
        "  kernel memory per entry            {:>8.1} B  (fdinfo memlock {} MiB; the whole table is \
         allocated at creation)",
        per(memlock as f64),
        memlock >> 20
    );
    println!(
        "  meminfo across creation            {:>8.1} B  MemAvailable drop, {:.1} B VmallocUsed growth \
         (system-wide)",
        per((before.available_kb - after.available_kb) as f64 * 1024.0),
        per((after.vmalloc_kb - before.vmalloc_kb) as f64 * 1024.0),
    );

    let t = Timeouts::default();
    dp.set_timeouts(&conns::plane_timeouts(&t))?;
    let mut ops: Vec<MapOp> = (0..16)
        .map(|id| MapOp::DestSet {
            id,
            val: dest(id, nat),
        })
        .collect();
    ops.push(vip());
    dp.apply(&ops)?;
    // Half the connections were last seen two hours ago (expired: ESTABLISHED lives 900 s), half now.
    let now = now_ns();
    let old = now.saturating_sub(7200 * SEC);
    let last = |i: u32| if i.is_multiple_of(2) { old } else { now };
    let start = Instant::now();
    // A NAT connection takes two entries.
    let conns = if nat { n / 2 } else { n };
    let written = fill(&mut dp, 0..conns, last, nat)?;
    let filled = start.elapsed();
    println!(
        "  fill (BPF_MAP_UPDATE_BATCH)        {:>8.3} s  ({written} entries, {})",
        secs(filled),
        rate(written, filled)
    );
    let after_fill = meminfo()?;
    println!(
        "  MemAvailable change while filling  {:>8.1} B per entry (preallocated: about 0)",
        per((after.available_kb - after_fill.available_kb) as f64 * 1024.0)
    );

    let (all, wall, listed) = timed(|| dp.conns().context("read rvs_conn"))?;
    println!(
        "  full read, -Lnc style (one Vec)    {:>8.3} s  CPU ({} entries, {}; wall {:.3} s)",
        secs(listed),
        all.len(),
        rate(all.len(), listed),
        secs(wall),
    );
    ensure!(
        all.len() == conns as usize,
        "the table holds {} of {conns} connections",
        all.len()
    );
    let present = written;
    drop(all);
    if n <= 1_000_000 {
        let start = Instant::now();
        let data = aya::maps::MapData::from_pin(pin_dir.join(rvs_abi::map::CONN))?;
        let map: aya::maps::HashMap<_, ConnKey, ConnVal> =
            aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?;
        let mut seen = 0usize;
        for kv in map.iter() {
            kv.context("iterate rvs_conn")?;
            seen += 1;
        }
        let it = start.elapsed();
        println!(
            "  aya per-entry iteration (before)   {:>8.3} s  ({seen} entries, {})",
            secs(it),
            rate(seen, it)
        );
    }

    // The periodic sweep from the table's start, as a fresh daemon's.
    let mut sweeper = sweep::Sweeper::new();
    let p = pass(&mut dp, &mut sweeper, &t)?;
    print_pass("sweep pass, half expired", &p);
    // A reply entry the walk has not reached yet goes with its connection (after it in the due keys).
    ensure!(
        p.swept.read == present || nat && p.swept.read < present,
        "the pass read {} of {present}",
        p.swept.read
    );
    // Every other connection, each NAT one with its reply entry.
    let want = conns.div_ceil(2) as usize * if nat { 2 } else { 1 };
    ensure!(
        p.swept.expired == want,
        "the pass expired {} of {present}, not {want}",
        p.swept.expired
    );
    let p = pass(&mut dp, &mut sweeper, &t)?;
    print_pass("sweep pass, nothing expired", &p);
    ensure!(p.swept.expired == 0, "a second pass expired {}", p.swept.expired);
    // The sweep before `rvsadm -L` (crates/rvsd/daemon.rs `Daemon::sweep`), from mid-table.
    sweeper.slice(&mut dp, now_ns(), &t, sweep::SLICE)?;
    let (r, wall, cpu) = timed(|| {
        sweeper.round(
            &mut dp,
            now_ns(),
            &t,
            sweep::LIST_SWEEP,
            rvs_dataplane::CONN_CHUNK,
        )
    })?;
    println!(
        "  sweep before a listing             {:>8.3} s  CPU ({} entries, {}; wall {:.3} s)",
        secs(cpu),
        r.read,
        rate(r.read, cpu),
        secs(wall),
    );

    drop(dp);
    drop(guard);
    println!("  unloaded");
    Ok(())
}

/// Runs the benchmark at every size asked for.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    ensure!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "cargo xtask bench conntable creates BPF maps: run it as root"
    );
    println!(
        "connection table: key {} B, value {} B; sweep timeouts as IPVS's defaults; chunk {} entries",
        size_of::<ConnKey>(),
        size_of::<ConnVal>(),
        rvs_dataplane::CONN_CHUNK
    );
    for n in args.sizes {
        bench_one(n, args.nat)?;
    }
    Ok(())
}
