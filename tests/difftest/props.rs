//! Generated differential runs: random configurations, then random packet sequences (valid,
//! truncated, mutated, random bytes) with random clock advances and real-server removals. Model and
//! kernel must agree after every step. The tables are small enough that the LRU never evicts.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rvs_abi::{DestVal, Fwd, MapOp};
use rvs_model::Env;
use rvs_testkit::packet::{Packet, pkt};

use crate::fixtures::{CLIENT_MAC, DIRECTOR_MAC, INGRESS, Real, Svc, VIP};
use crate::harness::{CPU, Pair, T0, hex};

/// Services the generator may configure: (TCP?, port).
const SERVICES: [(bool, u16); 4] = [(true, 80), (true, 443), (false, 53), (false, 80)];
const CLIENTS: [&str; 3] = ["198.18.2.5", "198.18.2.6", "198.18.3.7"];
const DSTS: [&str; 2] = [VIP, "198.18.0.11"];
const DPORTS: [u16; 4] = [80, 443, 53, 22];

#[derive(Clone, Debug)]
struct RealSpec {
    weight: u32,
    neigh: bool,
    other_if: bool,
    nat: bool,
}

#[derive(Clone, Debug)]
struct SvcSpec {
    which: usize,
    wrr: bool,
    reals: Vec<RealSpec>,
}

fn arb_real() -> impl Strategy<Value = RealSpec> {
    (
        prop_oneof![1 => Just(0u32), 4 => 1u32..4],
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(weight, neigh, other_if, nat)| RealSpec {
            weight,
            neigh,
            other_if,
            nat,
        })
}

fn arb_svcs() -> impl Strategy<Value = Vec<SvcSpec>> {
    prop::collection::vec(
        (
            0..SERVICES.len(),
            any::<bool>(),
            prop::collection::vec(arb_real(), 0..5),
        ),
        1..4,
    )
    .prop_map(|v| {
        let mut seen = std::collections::BTreeSet::new();
        v.into_iter()
            .filter(|(w, _, _)| seen.insert(*w))
            .map(|(which, wrr, reals)| SvcSpec { which, wrr, reals })
            .collect()
    })
}

fn build_config(specs: &[SvcSpec]) -> (Vec<MapOp>, Vec<u32>) {
    let mut ops = Vec::new();
    let mut dest_ids = Vec::new();
    let mut next_dest = 1;
    for (i, s) in specs.iter().enumerate() {
        let (tcp, port) = SERVICES[s.which];
        let id = i as u32 + 1;
        let mut svc = if tcp {
            Svc::tcp(id, port)
        } else {
            Svc::udp(id, port)
        };
        if s.wrr {
            svc = svc.wrr();
        }
        for r in &s.reals {
            svc = svc.real_with(Real {
                id: next_dest,
                weight: r.weight,
                neigh: r.neigh,
                ifindex: if r.other_if { 9 } else { INGRESS },
                fwd: if r.nat { Fwd::Nat } else { Fwd::Dr },
            });
            dest_ids.push(next_dest);
            next_dest += 1;
        }
        ops.extend(svc.ops());
    }
    (ops, dest_ids)
}

#[derive(Clone, Debug)]
struct PktSpec {
    /// Protocol and port of the configured service `svc` (modulo their number), or `udp` and
    /// `DPORTS[dport]` when `svc` is `SERVICES.len()`.
    svc: usize,
    udp: bool,
    client: usize,
    sport: u16,
    dst: usize,
    dport: usize,
    flags: u8,
    vlan: bool,
    options: usize,
    payload: usize,
    pad: bool,
}

impl PktSpec {
    fn packet(&self, svcs: &[SvcSpec]) -> Packet {
        let mut p = pkt().eth(CLIENT_MAC, DIRECTOR_MAC);
        if self.vlan {
            p = p.vlan(42);
        }
        p = p.ipv4(CLIENTS[self.client], DSTS[self.dst]);
        if self.options > 0 {
            p = p.ipv4_options(&vec![1u8; self.options * 4]); // NOPs
        }
        let (udp, dport) = match svcs.get(self.svc % svcs.len().max(1)) {
            Some(s) if self.svc < SERVICES.len() => (!SERVICES[s.which].0, SERVICES[s.which].1),
            _ => (self.udp, DPORTS[self.dport]),
        };
        p = if udp {
            p.udp(self.sport, dport)
        } else {
            p.tcp(self.sport, dport).tcp_flags(self.flags)
        };
        p = p.payload(&vec![0xab; self.payload]);
        if self.pad { p.pad_to(60) } else { p }
    }
}

fn arb_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(0x02u8),          // SYN
        4 => Just(0x10),            // ACK
        2 => Just(0x18),            // PSH|ACK
        2 => Just(0x11),            // FIN|ACK
        1 => Just(0x01),            // FIN
        1 => Just(0x04),            // RST
        1 => Just(0x14),            // RST|ACK
        1 => Just(0x12),            // SYN|ACK
        1 => Just(0x06),            // SYN|RST
        1 => any::<u8>(),
    ]
}

fn arb_pkt() -> impl Strategy<Value = PktSpec> {
    (
        0..SERVICES.len() + 1,
        prop::bool::weighted(0.25),
        prop_oneof![6 => Just(0usize), 1 => 1..CLIENTS.len()],
        prop_oneof![4 => Just(40000u16), 1 => 40001u16..40003],
        prop_oneof![9 => Just(0usize), 1 => Just(1usize)],
        0..DPORTS.len(),
        arb_flags(),
        prop::bool::weighted(0.15),
        prop_oneof![8 => Just(0usize), 1 => 1usize..=10],
        prop_oneof![6 => 0usize..64, 1 => 64usize..3400],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(svc, udp, client, sport, dst, dport, flags, vlan, options, payload, pad)| PktSpec {
                svc,
                udp,
                client,
                sport,
                dst,
                dport,
                flags,
                vlan,
                options,
                payload,
                pad,
            },
        )
}

#[derive(Clone, Debug)]
enum Mutation {
    None,
    /// Keep this fraction (per mille) of the frame, at least 14 bytes.
    Truncate(u16),
    /// XOR one byte (offset taken modulo the length).
    Flip(usize, u8),
}

#[derive(Clone, Debug)]
enum Step {
    Packet(PktSpec, Mutation),
    /// Random bytes after a valid Ethernet header of some EtherType.
    Junk(u16, Vec<u8>),
    Advance(u64),
    /// Frees dest slot `n % count` (the daemon deleting a real without rewriting the table yet).
    FreeDest(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (arb_pkt(), prop_oneof![
            12 => Just(Mutation::None),
            2 => (0u16..1000).prop_map(Mutation::Truncate),
            2 => (0usize..128, 1u8..=255).prop_map(|(o, x)| Mutation::Flip(o, x)),
        ]).prop_map(|(p, m)| Step::Packet(p, m)),
        1 => (prop_oneof![Just(0x0800u16), Just(0x8100), Just(0x86dd), Just(0x0806)], prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(t, b)| Step::Junk(t, b)),
        2 => prop_oneof![1u64..1_000_000, 1_000_000_000u64..1_000_000_000_000].prop_map(Step::Advance),
        1 => any::<usize>().prop_map(Step::FreeDest),
    ]
}

fn frame_of(step: &Step, svcs: &[SvcSpec]) -> Option<Vec<u8>> {
    match step {
        Step::Packet(p, m) => {
            let mut f = p.packet(svcs).build();
            match *m {
                Mutation::None => {}
                Mutation::Truncate(pm) => {
                    let keep = 14 + (f.len() - 14) * usize::from(pm) / 1000;
                    f.truncate(keep);
                }
                Mutation::Flip(off, x) => {
                    let i = off % f.len();
                    f[i] ^= x;
                }
            }
            Some(f)
        }
        Step::Junk(t, bytes) => {
            let mut f = pkt().eth(CLIENT_MAC, DIRECTOR_MAC).ethertype(*t).build();
            f.extend_from_slice(bytes);
            Some(f)
        }
        Step::Advance(_) | Step::FreeDest(_) => None,
    }
}

fn run_sequence(svcs: &[SvcSpec], steps: &[Step]) -> Result<(), TestCaseError> {
    let mut pair = Pair::new();
    let (ops, dest_ids) = build_config(svcs);
    pair.apply(&ops);
    let mut now = T0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Advance(ns) => now += ns,
            Step::FreeDest(n) if !dest_ids.is_empty() => {
                let id = dest_ids[n % dest_ids.len()];
                pair.apply(&[MapOp::DestSet {
                    id,
                    val: DestVal::default(),
                }]);
            }
            Step::FreeDest(_) => {}
            _ => {
                let frame = frame_of(step, svcs).expect("a packet step");
                now += 1000;
                let env = Env {
                    now_ns: now,
                    cpu: CPU,
                    prandom: i as u32,
                };
                if let Err(report) = pair.step(&env, &frame) {
                    return Err(TestCaseError::fail(format!(
                        "step {i} ({step:?}): model and kernel disagree:\n{report}\nframe:\n{}",
                        hex(&frame)
                    )));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/difftest/corpus/props.txt"))),
        ..ProptestConfig::default()
    })]

    /// Any configuration, any packet sequence: identical verdicts, bytes and maps after every step.
    #[test]
    fn model_and_kernel_agree_on_any_packet_sequence(
        svcs in arb_svcs(),
        steps in prop::collection::vec(arb_step(), 1..64),
    ) {
        run_sequence(&svcs, &steps)?;
    }
}
