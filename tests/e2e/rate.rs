//! `-Ln --rate` under a steady load: the estimator (a tick every 2 s, IPVS's EWMA) shows connections and
//! packets per second while the load runs, and decays to zero after it stops.

use std::time::{Duration, Instant};

use rvs_testkit::lab::{DrLab, PORT, Proto};
use rvs_testkit::wait;

use crate::rvsadm_out::{Five, numbers, svc};
use crate::topo::{OrLog, lab};

/// The service's `--rate` numbers: CPS, InPPS, OutPPS, InBPS, OutBPS.
fn rate(lab: &DrLab) -> Five {
    numbers(lab, "--rate")[&(svc(Proto::Tcp, PORT), None)]
}

#[test]
fn rates_show_a_steady_load_and_decay_after_it() {
    // 20 connections per second for 6 s: three estimator ticks see it.
    const PER_SEC: u32 = 20;
    const CONNS: u32 = 6 * PER_SEC;
    let lab = lab(3);
    lab.add_service("rr", &[1, 1, 1]).or_log(&lab, "configure rr");
    assert_eq!(rate(&lab), [0; 5], "rates before any traffic");

    let mut seen = Vec::new();
    let slot = Duration::from_secs(1) / PER_SEC;
    let mut next = Instant::now();
    for k in 0..CONNS {
        // Pace the connections at most PER_SEC a second: a late one moves the schedule instead of
        // being caught up in a burst, so a slow machine only runs longer.
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next = Instant::now() + slot;
        lab.get().or_log(&lab, &format!("connection {k} of the load"));
        if k % PER_SEC == PER_SEC - 1 {
            seen.push(rate(&lab));
        }
    }
    // The last ticks may have come after the load's last sample: keep looking for a while.
    let peak = wait::until(
        "CPS > 0 under the load",
        Duration::from_secs(10),
        Duration::from_millis(500),
        || match seen.iter().copied().chain([rate(&lab)]).find(|r| r[0] > 0) {
            Some(r) => Ok(r),
            None => Err(format!("rates seen: {seen:?}")),
        },
    )
    .or_log(&lab, "the rate estimator");
    let [cps, inpps, outpps, inbps, outbps] = peak;
    // Each connection is several packets from the client, each at least an IPv4 header; the director
    // of VS/DR sees no replies.
    assert!(
        cps <= u64::from(PER_SEC) * 2 && inpps >= cps && inbps >= inpps * 20,
        "{peak:?}"
    );
    assert_eq!((outpps, outbps), (0, 0), "{peak:?}");

    eprintln!("--rate under {PER_SEC} connections/s: samples {seen:?}, first with CPS > 0 {peak:?}");

    // After the load, each tick takes a quarter off the averages (an arithmetic shift, so they reach
    // exactly 0). CPS and InPPS get there in about 25 s; InBPS, scaled by 2^5 rather than 2^10, takes
    // over a minute, so it only has to fall well below what the load showed.
    let top_inbps = seen.iter().chain([&peak]).map(|r| r[3]).max().unwrap_or(0);
    let mut last = peak;
    wait::until(
        "CPS and InPPS to decay to 0",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || {
            last = rate(&lab);
            let [cps, inpps, outpps, inbps, outbps] = last;
            if cps == 0 && inpps == 0 && inbps < top_inbps / 4 && (outpps, outbps) == (0, 0) {
                Ok(())
            } else {
                Err(format!("{last:?}"))
            }
        },
    )
    .or_log(&lab, "the rate estimator");
    eprintln!("--rate after the load: {last:?}");
}
