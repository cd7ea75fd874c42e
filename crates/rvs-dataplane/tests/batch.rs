//! The connection table read and written in batches (BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH,
//! BPF_MAP_DELETE_BATCH), on the director loaded through BPF_PROG_TEST_RUN's loader. Needs root.

mod common;

use std::collections::HashSet;

use common::*;
use rvs_abi::{Addr, Be16, CONN_F_REPLY, ConnKey, ConnVal, Family, MapOp, addr_v4};
use rvs_dataplane::{CONN_CHUNK, ConnCursor, TestProgram};

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

/// Walks the whole table in slices of `max` from the start, calling `between` after each slice; returns
/// every key read and how many slices it took.
fn walk_slices(
    p: &mut TestProgram,
    max: usize,
    mut between: impl FnMut(&mut TestProgram, usize),
) -> (Vec<ConnKey>, usize) {
    let mut seen = Vec::new();
    let mut at = ConnCursor::START;
    let mut slices = 0;
    loop {
        let mut n = 0;
        let (read, next) = p
            .conn_entry_slice(at, max, |c| {
                n += c.len();
                seen.extend(c.iter().map(|(k, _)| *k));
            })
            .expect("slice");
        assert_eq!(read, n, "the count returned is the count handed over");
        slices += 1;
        match next {
            Some(c) => {
                assert!(c > at, "the cursor moves forward: {at:?} -> {c:?}");
                assert!(
                    read >= max,
                    "a slice stops early only at the table's end ({read} < {max})"
                );
                at = c;
            }
            None => return (seen, slices),
        }
        between(p, slices);
        assert!(slices < 10_000, "the walk does not end");
    }
}

#[test]
fn a_sliced_walk_resumes_past_deleted_entries_and_reads_every_survivor_once() {
    let mut p = load(65536);
    let n = 40_000u32;
    let keys: Vec<ConnKey> = (0..n).map(key).collect();
    let vals: Vec<ConnVal> = (0..n).map(|i| val(i, 0)).collect();
    p.set_conns(&keys, &vals).unwrap();

    // Undisturbed: every key once, in several slices.
    let (seen, slices) = walk_slices(&mut p, 5000, |_, _| {});
    assert!(
        (8..=9).contains(&slices),
        "{slices} slices of 5000 for 40,000 entries"
    );
    let set: HashSet<ConnKey> = seen.iter().copied().collect();
    assert_eq!((seen.len(), set.len()), (n as usize, n as usize));

    // Between slices, delete every key read so far (the cursor's own last key among them, which a
    // BPF_MAP_GET_NEXT_KEY walk would restart from the first bucket after) and a tenth of those not
    // read yet. Each survivor is read exactly once, and nothing deleted before it was reached is.
    let mut deleted: HashSet<ConnKey> = HashSet::new();
    let mut read_so_far: Vec<ConnKey> = Vec::new();
    let mut seen = Vec::new();
    let mut seen_set: HashSet<ConnKey> = HashSet::new();
    let mut at = ConnCursor::START;
    loop {
        let mut slice = Vec::new();
        let (_, next) = p
            .conn_entry_slice(at, 3000, |c| slice.extend(c.iter().map(|(k, _)| *k)))
            .unwrap();
        assert!(
            slice.iter().all(|k| !deleted.contains(k)),
            "a slice returned a key deleted before it"
        );
        seen.extend_from_slice(&slice);
        seen_set.extend(slice.iter().copied());
        read_so_far.extend_from_slice(&slice);
        let Some(c) = next else { break };
        at = c;
        let mut gone: Vec<ConnKey> = std::mem::take(&mut read_so_far);
        gone.extend(
            keys.iter()
                .filter(|k| !deleted.contains(*k) && !seen_set.contains(*k))
                .step_by(10)
                .copied(),
        );
        for k in &gone {
            p.delete_conn(k).unwrap();
        }
        deleted.extend(gone);
    }
    let set: HashSet<ConnKey> = seen.iter().copied().collect();
    assert_eq!(set.len(), seen.len(), "a key was read twice");
    let survivors: HashSet<ConnKey> = keys.iter().filter(|k| !deleted.contains(*k)).copied().collect();
    // A survivor is a key never deleted: it must have been read.
    assert!(
        survivors.is_subset(&set),
        "{} survivors not read",
        survivors.difference(&set).count()
    );
    assert!(
        deleted.len() > 3000 * 2,
        "the test deleted too little to mean anything"
    );
}

#[test]
fn a_slice_from_past_the_end_or_of_an_empty_table_ends_the_walk() {
    let mut p = load(1024);
    let (seen, slices) = walk_slices(&mut p, 100, |_, _| {});
    assert_eq!((seen.len(), slices), (0, 1));
    p.set_conns(&[key(1)], &[val(1, 0)]).unwrap();
    let (read, next) = p
        .conn_entry_slice(ConnCursor::at_bucket(u32::MAX), 100, |_| {})
        .unwrap();
    assert_eq!((read, next), (0, None));
    let (seen, _) = walk_slices(&mut p, 1, |_, _| {});
    assert_eq!(seen, [key(1)]);
}
