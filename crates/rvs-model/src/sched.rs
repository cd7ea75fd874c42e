//! Scheduler execution: walks the cyclic table that rvs-core::sched computes. Mirrors bpf/lib/sched.h.

use rvs_abi::{DEST_F_VALID, DestVal, DropReason, SvcVal};

use crate::maps::Maps;

/// Mirrors `rvs_sched_pick` (bpf/lib/sched.h). `Ok((dest_id, dest))` or the drop reason.
pub fn rvs_sched_pick(maps: &mut Maps, svc: &SvcVal) -> Result<(u32, DestVal), DropReason> {
    let len = svc.sched_len;
    if len == 0 {
        return Err(DropReason::NoDest);
    }
    let Some(st) = maps.rvs_svc_st.lookup_mut(svc.id) else {
        return Err(DropReason::NoDest);
    };
    // __sync_fetch_and_add: the cursor advances even when the slot turns out unusable.
    let pos = st.pos;
    st.pos = st.pos.wrapping_add(1);
    let slot = svc.sched_base.wrapping_add((pos % u64::from(len)) as u32);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return Err(DropReason::NoDest);
    };
    match maps.rvs_dest.lookup(id) {
        Some(d) if d.flags & DEST_F_VALID != 0 && d.svc_id == svc.id => Ok((id, d)),
        _ => Err(DropReason::NoDest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::{MapOp, SvcState};

    fn dest(svc_id: u32) -> DestVal {
        DestVal {
            svc_id,
            flags: DEST_F_VALID,
            ..Default::default()
        }
    }

    #[test]
    fn walks_the_table_cyclically_from_the_cursor() {
        let mut m = Maps::new(16);
        let mut ops = vec![MapOp::SvcStateSet {
            id: 3,
            val: SvcState { pos: 1 },
        }];
        for (i, d) in [7u32, 8, 9].into_iter().enumerate() {
            ops.push(MapOp::DestSet { id: d, val: dest(3) });
            ops.push(MapOp::SchedSet {
                slot: 100 + i as u32,
                dest_id: d,
            });
        }
        m.apply(&ops).unwrap();
        let svc = SvcVal {
            id: 3,
            sched_base: 100,
            sched_len: 3,
            ..Default::default()
        };
        let picks: Vec<u32> = (0..5).map(|_| rvs_sched_pick(&mut m, &svc).unwrap().0).collect();
        assert_eq!(picks, [8, 9, 7, 8, 9]);
    }

    #[test]
    fn empty_table_or_foreign_dest_is_no_dest() {
        let mut m = Maps::new(16);
        let svc = SvcVal {
            id: 1,
            sched_base: 0,
            sched_len: 0,
            ..Default::default()
        };
        assert_eq!(rvs_sched_pick(&mut m, &svc), Err(DropReason::NoDest));
        m.apply(&[MapOp::DestSet { id: 0, val: dest(2) }]).unwrap();
        let svc = SvcVal { sched_len: 1, ..svc };
        assert_eq!(rvs_sched_pick(&mut m, &svc), Err(DropReason::NoDest));
        assert_eq!(m.rvs_svc_st.lookup(1).unwrap().pos, 1, "the cursor moved anyway");
    }
}
