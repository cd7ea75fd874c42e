//! Per-CPU counters: service and real-server statistics (in and out) and drops by reason. Mirrors bpf/lib/stats.h.
//! The kernel picks a per-CPU slot by itself; the model is told the CPU (`Env::cpu`).

use rvs_abi::DropReason;

use crate::frame::XdpAction;
use crate::maps::Maps;

/// Mirrors `rvs_stats_drop` (bpf/lib/stats.h).
pub fn rvs_stats_drop(maps: &mut Maps, cpu: u32, reason: DropReason) -> XdpAction {
    if let Some(cnt) = maps.rvs_drops.lookup_mut(cpu, reason as u32) {
        *cnt = cnt.wrapping_add(1);
    }
    XdpAction::Drop
}

/// Mirrors `rvs_stats_conn` (bpf/lib/stats.h).
pub fn rvs_stats_conn(maps: &mut Maps, cpu: u32, svc_id: u32, dest_id: u32) {
    if let Some(st) = maps.rvs_svc_stats.lookup_mut(cpu, svc_id) {
        st.conns = st.conns.wrapping_add(1);
    }
    if let Some(st) = maps.rvs_dest_stats.lookup_mut(cpu, dest_id) {
        st.conns = st.conns.wrapping_add(1);
    }
}

/// Mirrors `rvs_stats_in` (bpf/lib/stats.h).
pub fn rvs_stats_in(maps: &mut Maps, cpu: u32, svc_id: u32, dest_id: u32, bytes: u32) {
    for st in [
        maps.rvs_svc_stats.lookup_mut(cpu, svc_id),
        maps.rvs_dest_stats.lookup_mut(cpu, dest_id),
    ]
    .into_iter()
    .flatten()
    {
        st.inpkts = st.inpkts.wrapping_add(1);
        st.inbytes = st.inbytes.wrapping_add(u64::from(bytes));
    }
}

/// Mirrors `rvs_stats_out` (bpf/lib/stats.h).
pub fn rvs_stats_out(maps: &mut Maps, cpu: u32, svc_id: u32, dest_id: u32, bytes: u32) {
    for st in [
        maps.rvs_svc_stats.lookup_mut(cpu, svc_id),
        maps.rvs_dest_stats.lookup_mut(cpu, dest_id),
    ]
    .into_iter()
    .flatten()
    {
        st.outpkts = st.outpkts.wrapping_add(1);
        st.outbytes = st.outbytes.wrapping_add(u64::from(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_on_the_given_cpu_only() {
        let mut m = Maps::new(4);
        assert_eq!(rvs_stats_drop(&mut m, 1, DropReason::NotSyn), XdpAction::Drop);
        rvs_stats_conn(&mut m, 1, 2, 3);
        rvs_stats_in(&mut m, 1, 2, 3, 60);
        rvs_stats_out(&mut m, 1, 2, 3, 52);
        assert_eq!(m.rvs_drops.lookup(1, DropReason::NotSyn as u32), Some(1));
        assert_eq!(m.rvs_drops.lookup(0, DropReason::NotSyn as u32), Some(0));
        let s = m.rvs_svc_stats.lookup(1, 2).unwrap();
        assert_eq!((s.conns, s.inpkts, s.inbytes), (1, 1, 60));
        assert_eq!((s.outpkts, s.outbytes), (1, 52));
        assert_eq!(m.rvs_dest_stats.lookup(1, 3), Some(s));
        assert_eq!(m.rvs_svc_stats.lookup(0, 2).unwrap().inpkts, 0);
    }
}
