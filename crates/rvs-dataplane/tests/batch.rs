//! The connection table read and written in batches (BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH,
//! BPF_MAP_DELETE_BATCH), on the director loaded through BPF_PROG_TEST_RUN's loader. Needs root.

mod common;

use std::collections::HashSet;

use common::*;
use rvs_abi::{Addr, Be16, CONN_F_REPLY, ConnKey, ConnVal, Family, MapOp, addr_v4};
use rvs_dataplane::{CONN_CHUNK, TestProgram};

/// Client `i` (198.18.x.y:port, distinct for every i below 2^24) to VIP:VPORT over TCP.
fn key(i: u32) -> ConnKey {
    ConnKey {
        saddr: addr_v4([198, 19, (i >> 16) as u8, (i >> 8) as u8]),
        daddr: addr_v4(VIP),
        sport: Be16::new(1024 + (i & 0xff) as u16),
        dport: Be16::new(VPORT),
        proto: TCP,
        family: Family::Inet as u8,
        ..ConnKey::default()
    }
}

fn val(dest_id: u32, flags: u8) -> ConnVal {
    ConnVal {
        dest_id,
        svc_id: 0,
        flags,
        ..ConnVal::default()
    }
}

/// The key of `key`'s NAT reply entry from real server `addr:port` (`rvs_conn_reply_key`).
fn reply_key(key: &ConnKey, addr: Addr, port: u16) -> ConnKey {
    ConnKey {
        saddr: addr,
        daddr: key.saddr,
        sport: Be16::new(port),
        dport: key.sport,
        ..*key
    }
}

fn load(conn_max: u32) -> TestProgram {
    require_root();
    TestProgram::load(conn_max).expect("load the director")
}

/// Every connection, with the size of each chunk it came in.
fn read(p: &TestProgram) -> (Vec<(ConnKey, ConnVal)>, Vec<usize>) {
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let n = p
        .conn_chunks(|c| {
            sizes.push(c.len());
            all.extend_from_slice(c);
        })
        .expect("batch read");
    assert_eq!(n, all.len(), "the count returned is the count handed over");
    (all, sizes)
}

#[test]
fn a_table_of_several_chunks_is_read_whole_once_per_key() {
    let mut p = load(16384);
    let n = 10_000u32;
    let keys: Vec<ConnKey> = (0..n).map(key).collect();
    let vals: Vec<ConnVal> = (0..n).map(|i| val(i, 0)).collect();
    assert_eq!(p.set_conns(&keys, &vals).unwrap(), n as usize);

    let (all, sizes) = read(&p);
    assert_eq!(all.len(), n as usize);
    assert!(
        sizes.len() >= 3,
        "10,000 entries take 3 chunks at least: {sizes:?}"
    );
    assert!(sizes.iter().all(|s| *s <= CONN_CHUNK), "{sizes:?}");
    let seen: HashSet<ConnKey> = all.iter().map(|(k, _)| *k).collect();
    assert_eq!(seen.len(), n as usize, "a key was read twice");
    for (k, v) in &all {
        assert_eq!(*k, key(v.dest_id), "a value came with another key");
    }
    assert_eq!(p.conn_entries().unwrap().len(), n as usize);
}

#[test]
fn an_empty_table_reads_as_nothing() {
    let p = load(1024);
    let (all, _) = read(&p);
    assert!(all.is_empty());
}

#[test]
fn expiring_without_nat_deletes_the_keys_present_and_skips_the_others() {
    let mut p = load(16384);
    let n = 9_000u32;
    let keys: Vec<ConnKey> = (0..n).map(key).collect();
    let vals: Vec<ConnVal> = (0..n).map(|i| val(i, 0)).collect();
    p.set_conns(&keys, &vals).unwrap();

    let even: Vec<ConnKey> = keys.iter().step_by(2).copied().collect();
    assert_eq!(p.delete_conns(&even).unwrap(), even.len());
    let (left, _) = read(&p);
    let left: HashSet<ConnKey> = left.into_iter().map(|(k, _)| k).collect();
    let odd: HashSet<ConnKey> = keys.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, odd);

    // Absent keys (already expired, or never there) among present ones, across chunk boundaries.
    let mut mixed: Vec<ConnKey> = keys.clone();
    mixed.push(key(n + 1));
    assert_eq!(p.delete_conns(&mixed).unwrap(), odd.len());
    assert!(read(&p).0.is_empty());
    assert_eq!(p.delete_conns(&mixed).unwrap(), 0);
    assert_eq!(p.delete_conns(&[]).unwrap(), 0);
}

#[test]
fn expiring_a_nat_connection_takes_its_reply_entry_and_only_its_own() {
    let mut p = load(1024);
    // Service 0 with NAT real server 0 at 198.18.1.9:8080 (dest id 0).
    let rs = addr_v4([198, 18, 1, 9]);
    let mut ops = one_service(TCP, 1, &[0], 0);
    if let MapOp::DestSet { val, .. } = &mut ops[0] {
        val.addr = rs;
        val.port = Be16::new(8080);
        val.fwd = rvs_abi::Fwd::Nat as u8;
    }
    p.apply(&ops).unwrap();

    let (gone, kept) = (key(1), key(2));
    let entries = [
        (gone, val(0, 0)),
        (reply_key(&gone, rs, 8080), val(0, CONN_F_REPLY)),
        (kept, val(0, 0)),
        (reply_key(&kept, rs, 8080), val(0, CONN_F_REPLY)),
    ];
    let (k, v): (Vec<ConnKey>, Vec<ConnVal>) = entries.iter().copied().unzip();
    p.set_conns(&k, &v).unwrap();
    assert_eq!(read(&p).0.len(), 2, "reply entries are not connections");

    assert_eq!(p.delete_conns(&[gone, key(3)]).unwrap(), 1);
    let mut left: Vec<ConnKey> = p.conn_entries().unwrap().into_iter().map(|(k, _)| k).collect();
    left.sort_by_key(|k| k.sport.get());
    let mut want = vec![kept, reply_key(&kept, rs, 8080)];
    want.sort_by_key(|k| k.sport.get());
    assert_eq!(left, want, "the other connection and its reply entry stay");
}

#[test]
fn open_refuses_an_empty_table_and_one_larger_than_the_kernel_makes_before_touching_anything() {
    let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/rvs-test-conn-max-{}", std::process::id()));
    for conn_max in [0, rvs_dataplane::CONN_MAX_LIMIT + 1, u32::MAX] {
        let cfg = rvs_dataplane::DataplaneConfig {
            pin_dir: dir.clone(),
            conn_max,
        };
        match rvs_dataplane::Dataplane::open(&cfg) {
            Err(e @ rvs_dataplane::DataplaneError::ConnMax { .. }) => {
                assert!(e.to_string().contains("must be 1 to 134217728"), "{e}");
            }
            Err(e) => panic!("conn_max {conn_max}: {e}"),
            Ok(_) => panic!("conn_max {conn_max} accepted"),
        }
        assert!(!dir.exists(), "{} created", dir.display());
    }
}
