//! The encoder against a model of the maps that checks, op by op, what a packet could observe.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use proptest::prelude::*;
use rvs_abi::{
    CFG_F_NAT, Cfg, DEST_F_NEIGH, DEST_F_VALID, DestVal, MAX_DEST, MAX_SVC, MapOp, SCHED_SLOTS,
    SVC_F_PERSISTENT, SvcKey, SvcState, SvcVal, VipKey, addr_v4, addr_v6,
};

use super::{Encoder, Neighbor, dest_key, from_rules, service_key, svc_key};
use crate::domain::{ApplyError, Command, Dest, DestKey, FwdMethod, Protocol, Service, ServiceKey};
use crate::sched;
use crate::table::Table;

/// The maps as the data plane holds them, with the invariants a packet relies on checked after every op.
#[derive(Default)]
struct Maps {
    svc: HashMap<SvcKey, SvcVal>,
    /// Valid dest slots only.
    dest: HashMap<u32, DestVal>,
    sched: HashMap<u32, u32>,
    svc_st: HashMap<u32, SvcState>,
    svc_stats_cleared: HashSet<u32>,
    dest_stats_cleared: HashSet<u32>,
    dest_cnt_cleared: HashSet<u32>,
    /// Service ids whose lblc entries were flushed since their last `SvcSet` as a new service.
    lblc_flushed: HashSet<u32>,
    cfg: Cfg,
    vip: HashSet<VipKey>,
    mark: HashMap<rvs_abi::MarkKey, rvs_abi::MarkVal>,
}

impl Maps {
    fn regions(&self) -> impl Iterator<Item = (SvcKey, u32, u32)> + '_ {
        self.svc.iter().map(|(k, v)| (*k, v.sched_base, v.sched_len))
    }

    fn apply(&mut self, ops: &[MapOp]) {
        for op in ops {
            self.apply_one(op);
        }
    }

    fn apply_one(&mut self, op: &MapOp) {
        match *op {
            MapOp::SvcSet { key, val } => {
                assert!(val.id < MAX_SVC, "{op:?}");
                assert_eq!(val._pad, 0);
                assert!(u64::from(val.sched_base) + u64::from(val.sched_len) <= u64::from(SCHED_SLOTS));
                match self.svc.get(&key) {
                    Some(old) => assert_eq!(old.id, val.id, "a service changed its id: {op:?}"),
                    None => {
                        assert_eq!(
                            self.svc_st.get(&val.id),
                            Some(&SvcState { pos: 0 }),
                            "no state reset: {op:?}"
                        );
                        assert!(
                            self.svc_stats_cleared.remove(&val.id),
                            "no stats clear before {op:?}"
                        );
                        assert!(self.lblc_flushed.remove(&val.id), "no lblc flush before {op:?}");
                    }
                }
                for (k, b, l) in self.regions() {
                    if k == key {
                        continue;
                    }
                    assert_ne!(self.svc[&k].id, val.id, "two services share id {}", val.id);
                    let disjoint = l == 0
                        || val.sched_len == 0
                        || b + l <= val.sched_base
                        || val.sched_base + val.sched_len <= b;
                    assert!(disjoint, "regions overlap: {op:?} and {k:?} at {b}+{l}");
                }
                for slot in val.sched_base..val.sched_base + val.sched_len {
                    let id = self
                        .sched
                        .get(&slot)
                        .unwrap_or_else(|| panic!("{op:?}: slot {slot} never written"));
                    let d = self
                        .dest
                        .get(id)
                        .unwrap_or_else(|| panic!("{op:?}: slot {slot} names free dest {id}"));
                    assert_eq!(
                        d.svc_id, val.id,
                        "{op:?}: slot {slot} names dest {id} of another service"
                    );
                }
                self.svc.insert(key, val);
            }
            MapOp::SvcDel { key } => {
                assert!(self.svc.remove(&key).is_some(), "{op:?} of a missing service");
            }
            MapOp::DestSet { id, val } => {
                assert!(id < MAX_DEST, "{op:?}");
                if val.flags & DEST_F_VALID != 0 {
                    match self.dest.get(&id) {
                        Some(old) => assert_eq!(old.svc_id, val.svc_id, "a dest moved between services"),
                        None => {
                            assert!(
                                self.dest_stats_cleared.remove(&id),
                                "no stats clear before {op:?}"
                            );
                            assert!(
                                self.dest_cnt_cleared.remove(&id),
                                "no counter clear before {op:?}"
                            );
                            assert!(
                                self.dest.values().all(|d| d.dgen != val.dgen) && val.dgen != 0,
                                "{op:?}: a new dest needs a generation of its own"
                            );
                        }
                    }
                    self.dest.insert(id, val);
                } else {
                    assert_eq!(val, DestVal::default(), "a freed slot must be zero");
                    assert!(self.dest.remove(&id).is_some(), "{op:?} frees a free slot");
                    for (k, b, l) in self.regions() {
                        for slot in b..b + l {
                            assert_ne!(self.sched.get(&slot), Some(&id), "{op:?}: still in {k:?}'s table");
                        }
                    }
                }
            }
            MapOp::SchedSet { slot, .. } => {
                assert!(slot < SCHED_SLOTS);
                for (k, b, l) in self.regions() {
                    assert!(
                        !(b..b + l).contains(&slot),
                        "{op:?} writes into the live table of {k:?}"
                    );
                }
                if let MapOp::SchedSet { slot, dest_id } = *op {
                    self.sched.insert(slot, dest_id);
                }
            }
            MapOp::SvcStateSet { id, val } => {
                self.svc_st.insert(id, val);
            }
            MapOp::SvcStatsClear { id } => {
                self.svc_stats_cleared.insert(id);
            }
            MapOp::DestStatsClear { id } => {
                self.dest_stats_cleared.insert(id);
            }
            MapOp::CfgSet { val } => {
                self.cfg = val;
            }
            MapOp::DestCntClear { id } => {
                self.dest_cnt_cleared.insert(id);
            }
            MapOp::TimeoutsSet { .. } => panic!("the encoder never writes timeouts: {op:?}"),
            MapOp::LblcFlush { svc_id } => {
                assert!(svc_id < MAX_SVC, "{op:?}");
                self.lblc_flushed.insert(svc_id);
            }
            MapOp::MarkSet { key, val } => {
                assert!(val.n as usize <= rvs_abi::MARK_RANGES, "{op:?}");
                self.mark.insert(key, val);
            }
            MapOp::MarkDel { key } => {
                assert!(self.mark.remove(&key).is_some(), "{op:?} of a missing entry");
            }
            MapOp::VipSet { key } => {
                assert_eq!(key._pad, [0; 3]);
                assert!(self.vip.insert(key), "{op:?} of a present address");
            }
            MapOp::VipDel { key } => {
                assert!(self.vip.remove(&key), "{op:?} of a missing address");
                assert!(
                    self.svc.keys().all(|k| VipKey::of(k) != key),
                    "{op:?} while a service uses it"
                );
            }
        }
        // Every service's address is a virtual address.
        for k in self.svc.keys() {
            assert!(
                self.vip.contains(&VipKey::of(k)),
                "{op:?}: {k:?} has no rvs_vip entry"
            );
        }
        // A NAT dest that a table names needs reply lookups on.
        let nat_named = self.regions().any(|(_, b, l)| {
            (b..b + l).any(|s| {
                self.sched
                    .get(&s)
                    .and_then(|id| self.dest.get(id))
                    .is_some_and(|d| d.fwd == 1)
            })
        });
        assert!(
            !nat_named || self.cfg.flags & CFG_F_NAT != 0,
            "{op:?}: a table names a NAT dest while CFG_F_NAT is clear"
        );
    }

    /// The maps hold exactly `table`'s image, and the encoder's ids are the maps' ids.
    fn check_image(&self, table: &Table, enc: &Encoder, neigh: &dyn Fn(IpAddr) -> Option<Neighbor>) {
        assert_eq!(self.svc.len(), table.services().len(), "services");
        let vips: HashSet<VipKey> = self.svc.keys().map(VipKey::of).collect();
        assert_eq!(self.vip, vips, "rvs_vip holds exactly the services' addresses");
        let nat = table
            .services()
            .iter()
            .any(|e| e.dests.iter().any(|d| d.fwd == FwdMethod::Masq));
        assert_eq!(self.cfg.flags & CFG_F_NAT != 0, nat, "CFG_F_NAT");
        let ndests: usize = table.services().iter().map(|e| e.dests.len()).sum();
        assert_eq!(self.dest.len(), ndests, "valid dest slots");
        for entry in table.services() {
            let svc = &entry.service;
            let val = self
                .svc
                .get(&svc_key(&svc.key))
                .unwrap_or_else(|| panic!("{:?} missing", svc.key));
            assert_eq!(enc.svc_id(&svc.key), Some(val.id));
            assert_eq!(
                val.flags,
                if svc.persistent.is_some() {
                    SVC_F_PERSISTENT
                } else {
                    0
                }
            );
            let weights: Vec<u32> = entry.dests.iter().map(|d| d.weight).collect();
            let picks = match svc.scheduler.as_str() {
                "rr" => {
                    assert_eq!(val.sched, rvs_abi::Sched::Rr as u32);
                    sched::rr_table(&weights)
                }
                "wrr" => {
                    assert_eq!(val.sched, rvs_abi::Sched::Wrr as u32);
                    sched::wrr_table(&weights)
                }
                // Count-driven: every real server, in list order, weight 0 included.
                "wlc" => {
                    assert_eq!(val.sched, rvs_abi::Sched::Wlc as u32);
                    (0..weights.len()).collect()
                }
                other => panic!("scheduler {other} in the table"),
            };
            let want: Vec<DestKey> = picks.iter().map(|&i| entry.dests[i].key).collect();
            let got: Vec<DestKey> = (val.sched_base..val.sched_base + val.sched_len)
                .map(|s| dest_key(&self.dest[&self.sched[&s]]).unwrap())
                .collect();
            assert_eq!(got, want, "table of {:?}", svc.key);
            for d in &entry.dests {
                let id = enc
                    .dest_id(&svc.key, &d.key)
                    .unwrap_or_else(|| panic!("{:?} has no id", d.key));
                let n = if d.fwd == FwdMethod::Masq {
                    None
                } else {
                    neigh(d.key.addr)
                };
                let dgen = self.dest.get(&id).map_or(0, |v| v.dgen);
                assert_eq!(
                    self.dest.get(&id),
                    Some(&expected_dest(d, val.id, dgen, n)),
                    "dest {id}"
                );
            }
        }
    }

    fn adopt(&self) -> Encoder {
        let svcs: Vec<(SvcKey, SvcVal)> = self.svc.iter().map(|(k, v)| (*k, *v)).collect();
        let dests: Vec<(u32, DestVal)> = self.dest.iter().map(|(k, v)| (*k, *v)).collect();
        Encoder::adopt(&svcs, &dests)
    }
}

/// The `DestVal` of a dest, written out field by field (not through the encoder's helper).
fn expected_dest(d: &Dest, svc_id: u32, dgen: u32, n: Option<Neighbor>) -> DestVal {
    let (addr, family) = match d.key.addr {
        IpAddr::V4(a) => (addr_v4(a.octets()), 1),
        IpAddr::V6(a) => (addr_v6(a.octets()), 2),
    };
    let fwd = match d.fwd {
        FwdMethod::Route => 0,
        FwdMethod::Masq => 1,
        FwdMethod::Tunnel => 2,
    };
    DestVal {
        addr,
        port: rvs_abi::Be16::new(d.key.port),
        family,
        fwd,
        dmac: n.map_or([0; 6], |n| n.dmac),
        smac: n.map_or([0; 6], |n| n.smac),
        ifindex: n.map_or(0, |n| n.ifindex),
        weight: d.weight,
        svc_id,
        flags: DEST_F_VALID | if n.is_some() { DEST_F_NEIGH } else { 0 },
        // Every test resolver gives a laddr of the real server's family and a non-zero MTU.
        laddr: match (d.fwd, n.and_then(|n| n.laddr)) {
            (FwdMethod::Tunnel, Some(IpAddr::V4(a))) => addr_v4(a.octets()),
            (FwdMethod::Tunnel, Some(IpAddr::V6(a))) => addr_v6(a.octets()),
            _ => [rvs_abi::Be32::default(); 4],
        },
        mtu: match (d.fwd, n) {
            (FwdMethod::Tunnel, Some(n)) => n.mtu,
            _ => 0,
        },
        dgen,
        u_thresh: d.u_threshold,
        l_thresh: d.l_threshold,
    }
}

fn skey(port: u16) -> ServiceKey {
    ServiceKey {
        proto: Protocol::Tcp,
        addr: "198.18.0.100".parse().unwrap(),
        port,
    }
}

fn svc(key: ServiceKey, sched: &str) -> Service {
    let netmask = if key.addr.is_ipv4() { 32 } else { 128 };
    Service {
        key,
        scheduler: sched.into(),
        persistent: None,
        netmask,
        sched_flags: Vec::new(),
        ops: false,
    }
}

fn dest(addr: &str, weight: u32) -> Dest {
    Dest {
        key: DestKey {
            addr: addr.parse().unwrap(),
            port: 80,
        },
        fwd: FwdMethod::Route,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn no_neigh(_: IpAddr) -> Option<Neighbor> {
    None
}

fn mac_of(addr: IpAddr) -> Option<Neighbor> {
    let last = match addr {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    Some(Neighbor {
        dmac: [2, 0, 0, 0, 0, last],
        smac: [2, 0, 0, 0, 0, 1],
        ifindex: 3,
        laddr: Some(match addr {
            IpAddr::V4(_) => IpAddr::from([198, 18, 0, 1]),
            IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
        }),
        mtu: 1500,
    })
}

fn table(cmds: &[Command]) -> Table {
    let mut t = Table::new();
    t.apply_all(cmds).unwrap();
    t
}

#[test]
fn nat_wrr_setup_gives_exactly_these_ops() {
    let k = skey(80);
    let t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 3)),
        Command::AddDest(k, dest("198.18.0.12", 2)),
        Command::AddDest(k, dest("198.18.0.13", 1)),
    ]);
    let mut enc = Encoder::new();
    let ops = enc.sync(&t, &mac_of).unwrap();
    let d = |i: usize| t.services()[0].dests[i].clone();
    let key = svc_key(&k);
    // New ids follow the order of addition: rs1 = 0, rs2 = 1, rs3 = 2; the table is rs3 rs2 rs1 rs1 rs2 rs1.
    let mut want = vec![
        MapOp::VipSet {
            key: VipKey::of(&key),
        },
        MapOp::SvcStateSet {
            id: 0,
            val: SvcState { pos: 0 },
        },
        MapOp::SvcStatsClear { id: 0 },
        MapOp::LblcFlush { svc_id: 0 },
        MapOp::DestStatsClear { id: 0 },
        MapOp::DestCntClear { id: 0 },
        MapOp::DestSet {
            id: 0,
            val: expected_dest(&d(2), 0, 1, mac_of(d(2).key.addr)),
        },
        MapOp::DestStatsClear { id: 1 },
        MapOp::DestCntClear { id: 1 },
        MapOp::DestSet {
            id: 1,
            val: expected_dest(&d(1), 0, 2, mac_of(d(1).key.addr)),
        },
        MapOp::DestStatsClear { id: 2 },
        MapOp::DestCntClear { id: 2 },
        MapOp::DestSet {
            id: 2,
            val: expected_dest(&d(0), 0, 3, mac_of(d(0).key.addr)),
        },
    ];
    for (slot, dest_id) in [2, 1, 0, 0, 1, 0].into_iter().enumerate() {
        want.push(MapOp::SchedSet {
            slot: slot as u32,
            dest_id,
        });
    }
    let val = SvcVal {
        id: 0,
        flags: 0,
        sched: 1,
        sched_base: 0,
        sched_len: 6,
        persist_s: 0,
        plen: u32::from(t.services()[0].service.netmask),
        _pad: 0,
    };
    want.push(MapOp::SvcSet { key, val });
    assert_eq!(ops, want);
    assert_eq!(enc.sync(&t, &mac_of).unwrap(), []);
}

#[test]
fn weight_edit_writes_a_new_region_then_switches_then_frees_the_old() {
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", 1)),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &no_neigh).unwrap());
    t.apply(&Command::EditDest(k, dest("198.18.0.11", 2))).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    maps.apply(&ops);
    maps.check_image(&t, &enc, &no_neigh);
    let kinds: Vec<&str> = ops
        .iter()
        .map(|op| match op {
            MapOp::DestSet { .. } => "dest",
            MapOp::SchedSet { .. } => "sched",
            MapOp::SvcSet { .. } => "svc",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["dest", "sched", "sched", "sched", "svc"]);
    // The first region (slots 0..2) is free again: the next change reuses it.
    t.apply(&Command::EditDest(k, dest("198.18.0.11", 1))).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    maps.apply(&ops);
    assert!(ops.contains(&MapOp::SchedSet { slot: 0, dest_id: 1 }), "{ops:?}");
}

#[test]
fn deleting_a_service_deletes_it_first_then_frees_its_dests() {
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "rr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", 1)),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &no_neigh).unwrap());
    t.apply(&Command::DelService(k)).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    assert_eq!(
        ops,
        [
            MapOp::SvcDel { key: svc_key(&k) },
            MapOp::LblcFlush { svc_id: 0 },
            MapOp::DestSet {
                id: 0,
                val: DestVal::default()
            },
            MapOp::DestSet {
                id: 1,
                val: DestVal::default()
            },
            MapOp::VipDel {
                key: VipKey::of(&svc_key(&k))
            },
        ]
    );
    maps.apply(&ops);
    assert_eq!(enc.svc_id(&k), None);
}

#[test]
fn a_virtual_address_lives_as_long_as_one_of_its_services() {
    let (a, b) = (skey(80), skey(81));
    let six = ServiceKey {
        addr: "2001:db8::100".parse().unwrap(),
        ..skey(80)
    };
    let mut t = table(&[
        Command::AddService(svc(a, "rr")),
        Command::AddService(svc(six, "rr")),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    let vip = VipKey::of(&svc_key(&a));
    let vip6 = VipKey::of(&svc_key(&six));
    assert_eq!(vip._pad, [0; 3]);
    assert_eq!(vip.addr, svc_key(&a).addr);
    assert!(
        ops.starts_with(&[MapOp::VipSet { key: vip }, MapOp::VipSet { key: vip6 }]),
        "{ops:?}"
    );
    maps.apply(&ops);
    // A second service on the address writes no VipSet; deleting one of two no VipDel.
    t.apply(&Command::AddService(svc(b, "rr"))).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    assert!(
        !ops.iter()
            .any(|op| matches!(op, MapOp::VipSet { .. } | MapOp::VipDel { .. })),
        "{ops:?}"
    );
    maps.apply(&ops);
    t.apply(&Command::DelService(a)).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    assert!(
        !ops.iter()
            .any(|op| matches!(op, MapOp::VipSet { .. } | MapOp::VipDel { .. })),
        "{ops:?}"
    );
    maps.apply(&ops);
    // The last one goes: its address goes last.
    t.apply(&Command::DelService(b)).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    assert_eq!(ops.last(), Some(&MapOp::VipDel { key: vip }), "{ops:?}");
    maps.apply(&ops);
    maps.check_image(&t, &enc, &no_neigh);
    // An adopted encoder knows the addresses of the services it found.
    let adopted = Encoder::adopt(&maps.svc.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), &[]);
    assert_eq!(adopted.vips, [vip6].into_iter().collect());
}

#[test]
fn ids_survive_unrelated_changes_and_freed_ids_wait() {
    let (a, b) = (skey(80), skey(81));
    let mut t = table(&[
        Command::AddService(svc(a, "rr")),
        Command::AddDest(a, dest("198.18.0.11", 1)),
        Command::AddService(svc(b, "rr")),
        Command::AddDest(b, dest("198.18.0.11", 1)),
    ]);
    let mut enc = Encoder::new();
    enc.sync(&t, &no_neigh).unwrap();
    let dk = dest("198.18.0.11", 1).key;
    let (sa, sb, da, db) = (
        enc.svc_id(&a),
        enc.svc_id(&b),
        enc.dest_id(&a, &dk),
        enc.dest_id(&b, &dk),
    );
    assert_eq!((sa, sb, da, db), (Some(0), Some(1), Some(0), Some(1)));
    t.apply_all(&[
        Command::DelService(a),
        Command::AddDest(b, dest("198.18.0.12", 1)),
    ])
    .unwrap();
    enc.sync(&t, &no_neigh).unwrap();
    assert_eq!((enc.svc_id(&b), enc.dest_id(&b, &dk)), (sb, db));
    // Dest id 0 was just freed; the new dest gets 2, and a re-created service gets a new id too.
    assert_eq!(enc.dest_id(&b, &dest("198.18.0.12", 1).key), Some(2));
    t.apply(&Command::AddService(svc(a, "rr"))).unwrap();
    enc.sync(&t, &no_neigh).unwrap();
    assert_eq!(enc.svc_id(&a), Some(2));
}

#[test]
fn a_neighbour_change_rewrites_only_the_dests_behind_it() {
    let (a, b) = (skey(80), skey(81));
    let t = table(&[
        Command::AddService(svc(a, "wrr")),
        Command::AddDest(a, dest("198.18.0.11", 1)),
        Command::AddDest(a, dest("198.18.0.12", 3)),
        Command::AddService(svc(b, "rr")),
        Command::AddDest(b, dest("198.18.0.12", 1)),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &no_neigh).unwrap());
    let only_12 = |addr: IpAddr| {
        if addr.to_string() == "198.18.0.12" {
            mac_of(addr)
        } else {
            None
        }
    };
    let ops = enc.sync(&t, &only_12).unwrap();
    let ids: HashSet<u32> = [
        enc.dest_id(&a, &dest("198.18.0.12", 1).key),
        enc.dest_id(&b, &dest("198.18.0.12", 1).key),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops.iter().all(
        |op| matches!(op, MapOp::DestSet { id, val } if ids.contains(id) && val.flags & DEST_F_NEIGH != 0)
    ));
    maps.apply(&ops);
    maps.check_image(&t, &enc, &only_12);
}

#[test]
fn capacity_errors_are_no_memory_and_change_nothing() {
    // A table longer than rvs_sched.
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", SCHED_SLOTS)),
    ]);
    let mut enc = Encoder::new();
    assert_eq!(enc.sync(&t, &no_neigh), Err(ApplyError::NoMemory));
    assert_eq!(enc.svc_id(&k), None, "a failed sync left state behind");
    // Two tables that fit one at a time but not together.
    let half = SCHED_SLOTS / 2 + 1;
    t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", half)),
    ]);
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &no_neigh).unwrap());
    let mut t2 = t.clone();
    t2.apply(&Command::AddService(svc(skey(81), "wrr"))).unwrap();
    t2.apply(&Command::AddDest(skey(81), dest("198.18.0.11", 1)))
        .unwrap();
    t2.apply(&Command::AddDest(skey(81), dest("198.18.0.12", half)))
        .unwrap();
    assert_eq!(enc.sync(&t2, &no_neigh), Err(ApplyError::NoMemory));
    assert_eq!(
        enc.sync(&t, &no_neigh).unwrap(),
        [],
        "the failed sync changed the encoder"
    );
    // Too many services.
    let mut many = Table::new();
    for port in 0..=MAX_SVC as u16 {
        many.apply(&Command::AddService(svc(skey(port), "rr"))).unwrap();
    }
    let mut enc = Encoder::new();
    assert_eq!(enc.sync(&many, &no_neigh), Err(ApplyError::NoMemory));
    many.apply(&Command::DelService(skey(0))).unwrap();
    // Four ops per service, and one VipSet for their one address.
    assert_eq!(
        enc.sync(&many, &no_neigh).map(|ops| ops.len()),
        Ok(MAX_SVC as usize * 4 + 1)
    );
}

#[test]
fn adopt_then_sync_of_the_saved_and_restored_table_emits_nothing() {
    let (a, b) = (skey(80), skey(81));
    let t = table(&[
        Command::AddService(svc(a, "wrr")),
        Command::AddDest(a, dest("198.18.0.13", 1)),
        Command::AddDest(a, dest("198.18.0.11", 3)),
        Command::AddDest(a, dest("198.18.0.12", 2)),
        Command::AddService(svc(b, "rr")),
        Command::AddDest(b, dest("198.18.0.11", 0)),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &mac_of).unwrap());
    // The rules file lists dests sorted, so the restored list order differs from the running one.
    let restored = restore(&t);
    assert_ne!(restored, t);
    let mut adopted = maps.adopt();
    assert_eq!(adopted.sync(&restored, &mac_of).unwrap(), []);
    // The next real change rewrites the table in the restored order.
    let mut changed = restored.clone();
    changed
        .apply(&Command::EditDest(a, dest("198.18.0.13", 2)))
        .unwrap();
    maps.apply(&adopted.sync(&changed, &mac_of).unwrap());
    maps.check_image(&changed, &adopted, &mac_of);
}

#[test]
fn adopt_cleans_up_what_it_cannot_own() {
    let k = skey(80);
    let t = table(&[
        Command::AddService(svc(k, "rr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
    ]);
    let mut enc = Encoder::new();
    let mut maps = Maps::default();
    maps.apply(&enc.sync(&t, &no_neigh).unwrap());
    let mut svcs: Vec<(SvcKey, SvcVal)> = maps.svc.iter().map(|(k, v)| (*k, *v)).collect();
    let mut dests: Vec<(u32, DestVal)> = maps.dest.iter().map(|(k, v)| (*k, *v)).collect();
    // A service with a duplicate id and an overlapping region, and a dest of no service.
    let dup = svc_key(&skey(81));
    svcs.push((dup, SvcVal { id: 0, ..svcs[0].1 }));
    maps.svc.insert(dup, SvcVal { id: 0, ..svcs[0].1 });
    let orphan = DestVal {
        svc_id: 77,
        ..dests[0].1
    };
    dests.push((9, orphan));
    maps.dest.insert(9, orphan);
    let mut adopted = Encoder::adopt(&svcs, &dests);
    let ops = adopted.sync(&t, &no_neigh).unwrap();
    assert_eq!(
        ops,
        [
            MapOp::SvcDel { key: dup },
            MapOp::DestSet {
                id: 9,
                val: DestVal::default()
            }
        ]
    );
}

#[test]
fn from_rules_is_parse_apply_sync() {
    let rules = "-A -t 198.18.0.100:80 -s wrr\n\
                 -a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 3\n\
                 -a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 2\n\
                 -a -t 198.18.0.100:80 -r 198.18.0.13:80 -g -w 1\n";
    let k = skey(80);
    let t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 3)),
        Command::AddDest(k, dest("198.18.0.12", 2)),
        Command::AddDest(k, dest("198.18.0.13", 1)),
    ]);
    assert_eq!(
        from_rules(rules, &mac_of),
        Encoder::new().sync(&t, &mac_of).map_err(|e| e.to_string())
    );
    let err = from_rules(
        "-A -t 198.18.0.100:80 -s rr\n-A -t 198.18.0.100:80 -s rr\n",
        &no_neigh,
    )
    .unwrap_err();
    assert!(err.contains("Service already exists"), "{err}");
    let err = from_rules("-A -t 198.18.0.100:80 -s rr\nhello world\n", &no_neigh).unwrap_err();
    assert!(err.starts_with("line 2: "), "{err}");
}

#[test]
fn keys_round_trip() {
    for key in [
        skey(80),
        ServiceKey {
            proto: Protocol::Udp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 53,
        },
    ] {
        assert_eq!(service_key(&svc_key(&key)), Some(key));
    }
    let d = dest("2001:db8::7", 1);
    assert_eq!(dest_key(&expected_dest(&d, 0, 1, None)), Some(d.key));
}

/// The table as `-S` then `-R` rebuild it: save order, dests re-added sorted (so listed reversed).
fn restore(t: &Table) -> Table {
    let mut entries: Vec<_> = t.services().to_vec();
    entries.sort_by_key(|e| (e.service.key.proto, e.service.key.addr, e.service.key.port));
    let mut cmds = Vec::new();
    for e in entries {
        cmds.push(Command::AddService(e.service.clone()));
        let mut dests = e.dests.clone();
        dests.sort_by_key(|d| d.key);
        cmds.extend(dests.into_iter().map(|d| Command::AddDest(e.service.key, d)));
    }
    table(&cmds)
}

// ---- generated sequences ----

#[derive(Clone, Debug)]
enum Step {
    Cmd(Command),
    /// Which of the real-server addresses resolve, and to which interface.
    Neigh(u8, u32),
}

const ADDRS: [&str; 5] = [
    "198.18.1.1",
    "198.18.1.2",
    "198.18.1.3",
    "2001:db8::1",
    "2001:db8::2",
];

fn service_keys() -> impl Strategy<Value = ServiceKey> {
    prop_oneof![
        Just(skey(80)),
        Just(skey(81)),
        Just(ServiceKey {
            proto: Protocol::Udp,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80
        }),
        Just(ServiceKey {
            proto: Protocol::Tcp,
            addr: "2001:db8::100".parse().unwrap(),
            port: 80
        }),
    ]
}

fn services() -> impl Strategy<Value = Service> {
    (
        service_keys(),
        prop_oneof![3 => Just("rr"), 3 => Just("wrr"), 2 => Just("wlc"), 1 => Just("lblcx")],
        any::<bool>(),
    )
        .prop_map(|(k, s, p)| {
            let mut svc = svc(k, s);
            svc.persistent = p.then_some(360);
            svc
        })
}

fn dests() -> impl Strategy<Value = Dest> {
    (
        0..ADDRS.len(),
        prop_oneof![Just(80u16), Just(8080)],
        prop_oneof![
            Just(FwdMethod::Route),
            Just(FwdMethod::Masq),
            Just(FwdMethod::Tunnel)
        ],
        prop_oneof![0u32..4, 0u32..40],
    )
        .prop_map(|(a, port, fwd, weight)| Dest {
            key: DestKey {
                addr: ADDRS[a].parse().unwrap(),
                port,
            },
            fwd,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        })
}

fn steps() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => services().prop_map(|s| Step::Cmd(Command::AddService(s))),
        1 => services().prop_map(|s| Step::Cmd(Command::EditService(s))),
        1 => service_keys().prop_map(|k| Step::Cmd(Command::DelService(k))),
        1 => Just(Step::Cmd(Command::Clear)),
        14 => (service_keys(), dests()).prop_map(|(k, d)| Step::Cmd(Command::AddDest(k, d))),
        4 => (service_keys(), dests()).prop_map(|(k, d)| Step::Cmd(Command::EditDest(k, d))),
        2 => (service_keys(), dests()).prop_map(|(k, d)| Step::Cmd(Command::DelDest(k, d.key))),
        2 => (any::<u8>(), 1u32..4).prop_map(|(m, i)| Step::Neigh(m, i)),
    ]
}

fn resolver(mask: u8, ifindex: u32) -> impl Fn(IpAddr) -> Option<Neighbor> {
    move |addr| {
        let i = ADDRS.iter().position(|a| a.parse::<IpAddr>().unwrap() == addr)?;
        (mask & (1 << i) != 0).then(|| Neighbor {
            ifindex,
            ..mac_of(addr).unwrap()
        })
    }
}

/// Every (service, dest) -> (svc id, dest id) the encoder holds for `t`.
fn ids(t: &Table, enc: &Encoder) -> HashMap<(ServiceKey, DestKey), (u32, u32)> {
    let mut out = HashMap::new();
    for e in t.services() {
        for d in &e.dests {
            let id = (
                enc.svc_id(&e.service.key).unwrap(),
                enc.dest_id(&e.service.key, &d.key).unwrap(),
            );
            out.insert((e.service.key, d.key), id);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn maps_follow_any_command_sequence(seq in prop::collection::vec(steps(), 1..60)) {
        let mut t = Table::new();
        let mut enc = Encoder::new();
        let mut maps = Maps::default();
        let (mut mask, mut ifindex) = (0u8, 1u32);
        for step in &seq {
            let before_ids = ids(&t, &enc);
            let before = t.clone();
            let neigh_changed = match step {
                Step::Cmd(cmd) => {
                    let _ = t.apply(cmd);
                    false
                }
                Step::Neigh(m, i) => {
                    (mask, ifindex) = (*m, *i);
                    true
                }
            };
            let neigh = resolver(mask, ifindex);
            let ops = enc.sync(&t, &neigh).unwrap();
            let prev = maps.dest.clone();
            maps.apply(&ops);
            maps.check_image(&t, &enc, &neigh);
            if t == before && !neigh_changed {
                prop_assert!(ops.is_empty(), "no change but {:?}", ops);
            }
            if neigh_changed {
                // Only DestSets, and only for dests whose value changed.
                let only_dest_sets =
                    ops.iter().all(|op| matches!(op, MapOp::DestSet { val, .. } if val.flags & DEST_F_VALID != 0));
                prop_assert!(only_dest_sets, "{:?}", ops);
                let changed = maps.dest.iter().filter(|(id, v)| prev.get(id) != Some(v)).count();
                prop_assert_eq!(ops.len(), changed);
            }
            // Ids are stable for everything that stayed.
            for (k, id) in ids(&t, &enc) {
                if let Some(old) = before_ids.get(&k) {
                    prop_assert_eq!(*old, id, "{:?} changed ids", k);
                }
            }
        }
        // A restarted daemon adopting these maps has nothing to write for the same table.
        let neigh = resolver(mask, ifindex);
        prop_assert_eq!(maps.adopt().sync(&restore(&t), &neigh).unwrap(), vec![]);
        let mut adopted = maps.adopt();
        prop_assert_eq!(adopted.sync(&t, &neigh).unwrap(), vec![]);
        // ...and keeps the maps right through the next changes.
        let mut t2 = t.clone();
        for step in &seq {
            if let Step::Cmd(cmd) = step {
                let _ = t2.apply(cmd);
            }
            maps.apply(&adopted.sync(&t2, &neigh).unwrap());
            maps.check_image(&t2, &adopted, &neigh);
        }
    }
}

/// The table the last `SvcSet` of `ops` points at, read back from the `SchedSet`s before it.
fn written_table(ops: &[MapOp]) -> (SvcVal, Vec<u32>) {
    let val = ops
        .iter()
        .rev()
        .find_map(|op| match op {
            MapOp::SvcSet { val, .. } => Some(*val),
            _ => None,
        })
        .expect("a SvcSet");
    let slots: HashMap<u32, u32> = ops
        .iter()
        .filter_map(|op| match op {
            MapOp::SchedSet { slot, dest_id } => Some((*slot, *dest_id)),
            _ => None,
        })
        .collect();
    let table = (val.sched_base..val.sched_base + val.sched_len)
        .map(|s| slots[&s])
        .collect();
    (val, table)
}

#[test]
fn sh_writes_256_buckets_with_unusable_ones_marked_and_the_port_flag() {
    let k = skey(80);
    let mut s = svc(k, "sh");
    s.sched_flags = vec!["sh-port".into()];
    let t = table(&[
        Command::AddService(s),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", 0)),
        Command::AddDest(k, dest("198.18.0.13", 2)),
    ]);
    let mut enc = Encoder::new();
    let (val, written) = written_table(&enc.sync(&t, &mac_of).unwrap());
    assert_eq!(val.sched, rvs_abi::Sched::Sh as u32);
    assert_eq!(val.flags, rvs_abi::SVC_F_SCHED_PORT);
    // List order rs3 (id 2, weight 2), rs2 (id 1, weight 0), rs1 (id 0): rs3 rs3 rs2 rs1 rs3 rs3 ...
    let ids = [2u32, 1, 0];
    let want: Vec<u32> = sched::sh::sh_table(&[2, 0, 1])
        .iter()
        .map(|b| match b.unwrap() {
            1 => rvs_abi::SCHED_NO_DEST,
            i => ids[i],
        })
        .collect();
    assert_eq!(written, want);
    assert_eq!(&written[..5], &[2, 2, rvs_abi::SCHED_NO_DEST, 0, 2]);
}

#[test]
fn mh_keeps_a_quiesced_reals_slots_and_fallback_gets_the_whole_table() {
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "mh")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", 1)),
    ]);
    let mut enc = Encoder::new();
    let (val, before) = written_table(&enc.sync(&t, &mac_of).unwrap());
    assert_eq!(val.sched_len as usize, sched::mh::MH_TAB_SIZE);
    assert!(before.iter().all(|&d| d == 0 || d == 1));
    t.apply(&Command::EditDest(k, dest("198.18.0.12", 0))).unwrap();
    let (_, quiesced) = written_table(&enc.sync(&t, &mac_of).unwrap());
    // rs2 (id 1) keeps its slots, now unusable; rs1 does not take them over.
    let marked: Vec<u32> = before
        .iter()
        .map(|&d| if d == 1 { rvs_abi::SCHED_NO_DEST } else { d })
        .collect();
    assert_eq!(quiesced, marked);
    t.apply(&Command::EditDest(k, dest("198.18.0.12", 1))).unwrap();
    let (_, back) = written_table(&enc.sync(&t, &mac_of).unwrap());
    assert_eq!(back, before);

    let mut fb = svc(k, "mh");
    fb.sched_flags = vec!["mh-fallback".into()];
    t.apply(&Command::EditService(fb)).unwrap();
    t.apply(&Command::EditDest(k, dest("198.18.0.12", 0))).unwrap();
    let ops = enc.sync(&t, &mac_of).unwrap();
    // The data plane checks weights itself: the table is `before` again (region kept, nothing
    // written), only the service's flags change.
    assert!(
        !ops.iter().any(|op| matches!(op, MapOp::SchedSet { .. })),
        "{ops:?}"
    );
    let flags: Vec<u32> = ops
        .iter()
        .filter_map(|op| match op {
            MapOp::SvcSet { val, .. } => Some(val.flags),
            _ => None,
        })
        .collect();
    assert_eq!(flags, [rvs_abi::SVC_F_SCHED_FALLBACK]);
}

#[test]
fn dh_buckets_are_round_robin_over_the_list() {
    let k = skey(80);
    let t = table(&[
        Command::AddService(svc(k, "dh")),
        Command::AddDest(k, dest("198.18.0.11", 5)),
        Command::AddDest(k, dest("198.18.0.12", 1)),
    ]);
    let (val, written) = written_table(&Encoder::new().sync(&t, &mac_of).unwrap());
    assert_eq!((val.sched, val.flags), (rvs_abi::Sched::Dh as u32, 0));
    assert_eq!(written.len(), 256);
    assert!(written.chunks(2).all(|p| p == [1, 0]));
}

#[test]
fn lblc_tables_go_with_their_service_or_scheduler_and_lblcr_gets_its_expiration() {
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "lblcr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
    ]);
    let mut enc = Encoder::new();
    enc.set_lblcr_expiration(600);
    let ops = enc.sync(&t, &no_neigh).unwrap();
    // The expiration is in rvs_cfg before the service can be scheduled.
    let cfg_at = ops
        .iter()
        .position(|op| matches!(op, MapOp::CfgSet { val } if val.lblcr_exp_s == 600))
        .expect("rvs_cfg carries lblcr_expiration");
    let svc_at = ops
        .iter()
        .position(|op| matches!(op, MapOp::SvcSet { .. }))
        .expect("SvcSet");
    assert!(cfg_at < svc_at, "{ops:?}");
    let flush_at = ops
        .iter()
        .position(|op| *op == MapOp::LblcFlush { svc_id: 0 })
        .expect("a new service starts with no lblc entries");
    assert!(flush_at < svc_at, "{ops:?}");

    // Another scheduler: the old entries go after the service runs the new one.
    t.apply(&Command::EditService(svc(k, "wlc"))).unwrap();
    let ops = enc.sync(&t, &no_neigh).unwrap();
    let svc_at = ops.iter().position(|op| matches!(op, MapOp::SvcSet { .. }));
    let flush_at = ops.iter().position(|op| *op == MapOp::LblcFlush { svc_id: 0 });
    assert!(svc_at.is_some() && flush_at > svc_at, "{ops:?}");
    // No lblcr service is left: rvs_cfg is back to zero.
    assert!(
        ops.iter()
            .any(|op| matches!(op, MapOp::CfgSet { val } if val.lblcr_exp_s == 0)),
        "{ops:?}"
    );
    // An edit that keeps the scheduler keeps the entries.
    t.apply(&Command::EditDest(k, dest("198.18.0.11", 3))).unwrap();
    assert!(
        !enc.sync(&t, &no_neigh)
            .unwrap()
            .iter()
            .any(|op| matches!(op, MapOp::LblcFlush { .. }))
    );
    // Deleting the service drops them too.
    t.apply(&Command::DelService(k)).unwrap();
    assert!(
        enc.sync(&t, &no_neigh)
            .unwrap()
            .contains(&MapOp::LblcFlush { svc_id: 0 })
    );
}

/// The `pos` of the `SvcStateSet` in `ops`, if any.
fn cursor_written(ops: &[MapOp]) -> Option<u64> {
    ops.iter().find_map(|op| match op {
        MapOp::SvcStateSet { val, .. } => Some(val.pos),
        _ => None,
    })
}

/// Syncs `t` with the cursors `maps` holds, applies the ops and returns them.
fn sync_cursors(enc: &mut Encoder, maps: &mut Maps, t: &Table) -> Vec<MapOp> {
    let st = maps.svc_st.clone();
    let ops = enc
        .sync_with_cursors(t, &no_neigh, &|id| st.get(&id).map(|s| s.pos))
        .unwrap();
    maps.apply(&ops);
    ops
}

#[test]
fn rr_cursor_stays_on_a_weight_change_and_follows_a_delete() {
    // persistence.txt: rr, rs1..rs3 added in order (list rs3 rs2 rs1), three picks made.
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "rr")),
        Command::AddDest(k, dest("198.18.0.11", 1)),
        Command::AddDest(k, dest("198.18.0.12", 1)),
        Command::AddDest(k, dest("198.18.0.13", 1)),
    ]);
    let (mut enc, mut maps) = (Encoder::new(), Maps::default());
    sync_cursors(&mut enc, &mut maps, &t);
    let id = enc.svc_id(&k).unwrap();
    maps.svc_st.insert(id, SvcState { pos: 3 });
    // Quiescing rs3 rewrites no table and leaves the cursor: the next pick skips rs3 and takes rs2.
    t.apply(&Command::EditDest(k, dest("198.18.0.13", 0))).unwrap();
    let ops = sync_cursors(&mut enc, &mut maps, &t);
    assert!(
        ops.iter()
            .all(|op| !matches!(op, MapOp::SchedSet { .. } | MapOp::SvcStateSet { .. })),
        "{ops:?}"
    );
    // One more pick (rs2: the cursor is past slot 1); deleting rs2 moves IPVS's cursor to rs3, so
    // the next slot is rs1's, 1 in the new table (rs3 rs1).
    maps.svc_st.insert(id, SvcState { pos: 5 });
    t.apply(&Command::DelDest(k, dest("198.18.0.12", 0).key)).unwrap();
    assert_eq!(cursor_written(&sync_cursors(&mut enc, &mut maps, &t)), Some(1));
    // Without a cursor to read, an existing service's cursor is left alone.
    t.apply(&Command::AddDest(k, dest("198.18.0.14", 1))).unwrap();
    assert_eq!(cursor_written(&enc.sync(&t, &no_neigh).unwrap()), None);
}

#[test]
fn wrr_cursor_goes_to_the_pass_of_ipvs_cw_golden_keepalived() {
    // keepalived.txt: wrr rs1=3 rs2=2 rs3=1, six picks (one period), rs2 removed, six picks, rs2 back.
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 3)),
        Command::AddDest(k, dest("198.18.0.12", 2)),
        Command::AddDest(k, dest("198.18.0.13", 1)),
    ]);
    let (mut enc, mut maps) = (Encoder::new(), Maps::default());
    sync_cursors(&mut enc, &mut maps, &t);
    let id = enc.svc_id(&k).unwrap();
    maps.svc_st.insert(id, SvcState { pos: 6 });
    // cw was 2 (the last pass: rs2 rs1) and stays 2: the pass at 2 of (rs3 rs1 | rs1 | rs1) is slot 3.
    t.apply(&Command::DelDest(k, dest("198.18.0.12", 0).key)).unwrap();
    let ops = sync_cursors(&mut enc, &mut maps, &t);
    assert_eq!(written_table(&ops).1.len(), 4);
    assert_eq!(cursor_written(&ops), Some(3));
    // Six picks later (rs1 rs3 rs1 rs1 rs1 rs3) cw is 1; rs2 added back: the head at cw 1, slot 0.
    maps.svc_st.insert(id, SvcState { pos: 9 });
    t.apply(&Command::AddDest(k, dest("198.18.0.12", 2))).unwrap();
    assert_eq!(cursor_written(&sync_cursors(&mut enc, &mut maps, &t)), Some(0));
    // Two picks (rs2 rs3, cw 1); an edit that changes no weight returns wrr to the head too: slot 0.
    maps.svc_st.insert(id, SvcState { pos: 2 });
    let mut x = dest("198.18.0.13", 1);
    x.u_threshold = 10;
    t.apply(&Command::EditDest(k, x)).unwrap();
    assert_eq!(cursor_written(&sync_cursors(&mut enc, &mut maps, &t)), Some(0));
    // Switching to rr puts the cursor at the head.
    let mut t2 = t.clone();
    t2.apply(&Command::EditService(svc(k, "rr"))).unwrap();
    maps.svc_st.insert(id, SvcState { pos: 2 });
    assert_eq!(cursor_written(&sync_cursors(&mut enc, &mut maps, &t2)), Some(0));
}

#[test]
fn an_edit_that_raises_or_removes_x_bumps_the_overload_generation() {
    let k = skey(80);
    let with_x = |u: u32, w: u32| Dest {
        u_threshold: u,
        ..dest("198.18.0.11", w)
    };
    let mut t = table(&[
        Command::AddService(svc(k, "rr")),
        Command::AddDest(k, with_x(4, 1)),
    ]);
    let mut enc = Encoder::new();
    enc.sync(&t, &no_neigh).unwrap();
    let ogen = |ops: &[MapOp]| {
        ops.iter()
            .find_map(|op| match op {
                MapOp::DestSet { val, .. } => Some(val.flags >> rvs_abi::DEST_F_OGEN_SHIFT),
                _ => None,
            })
            .expect("a DestSet")
    };
    // (new -x, weight, generation after): lowering keeps it, raising bumps it, removing bumps it,
    // 0 again (a weight edit) keeps it, setting it from 0 bumps it.
    for (u, w, want) in [(2, 1, 0), (8, 1, 1), (0, 1, 2), (0, 2, 2), (3, 2, 3)] {
        t.apply(&Command::EditDest(k, with_x(u, w))).unwrap();
        assert_eq!(ogen(&enc.sync(&t, &no_neigh).unwrap()), want, "-x {u} -w {w}");
    }
}

#[test]
fn only_a_change_of_the_real_servers_reads_a_cursor() {
    let k = skey(80);
    let mut t = table(&[
        Command::AddService(svc(k, "wrr")),
        Command::AddDest(k, dest("198.18.0.11", 3)),
    ]);
    let mut enc = Encoder::new();
    let unread = |_: u32| -> Option<u64> { panic!("a cursor was read") };
    enc.sync_with_cursors(&t, &no_neigh, &unread).unwrap();
    // A neighbour found: the dest's slot is rewritten, the cursor neither read nor written.
    let ops = enc.sync_with_cursors(&t, &mac_of, &unread).unwrap();
    assert!(!ops.is_empty());
    assert_eq!(cursor_written(&ops), None);
    // A weight edit reads it (wrr goes back to the head).
    t.apply(&Command::EditDest(k, dest("198.18.0.11", 4))).unwrap();
    let ops = enc.sync_with_cursors(&t, &mac_of, &|_| Some(0)).unwrap();
    assert_eq!(cursor_written(&ops), Some(0));
}
