//! Scheduler execution: walks the cyclic table (rr, wrr) or indexes the lookup table (sh, dh, mh) that
//! rvs-core::sched computes, or scans the service's real servers and their counters (lc, wlc, sed, nq,
//! fo, ovf, twos). Mirrors bpf/lib/sched.h.

use rvs_abi::{
    Addr, Be16, DEST_F_VALID, DestVal, DropReason, Family, LBLCR_SET_MAX, LblcDest, LblcKey, LblcVal,
    SVC_F_SCHED_FALLBACK, SVC_F_SCHED_PORT, Sched, SvcVal,
};

use crate::conn::rvs_conn_overloaded;
use crate::env::{Env, rvs_now_ns, rvs_prandom};
use crate::maps::BPF_ANY;
use crate::maps::Maps;

/// Mirrors `rvs_sched_hash_32` (bpf/lib/sched.h).
pub fn rvs_sched_hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Mirrors `rvs_sched_addr_fold` (bpf/lib/sched.h).
pub fn rvs_sched_addr_fold(addr: &Addr, family: u8) -> u32 {
    if family == Family::Inet6 as u8 {
        addr[0].get() ^ addr[1].get() ^ addr[2].get() ^ addr[3].get()
    } else {
        addr[0].get()
    }
}

/// One SipRound (`RVS_SIPROUND`).
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Mirrors `rvs_sched_mh_hash` (bpf/lib/sched.h).
pub fn rvs_sched_mh_hash(v: u32) -> u32 {
    const K: u64 = 2_654_435_761;
    let mut s = [
        0x736f_6d65_7073_6575 ^ K,
        0x646f_7261_6e64_6f6d ^ K,
        0x6c79_6765_6e65_7261 ^ K,
        0x7465_6462_7974_6573 ^ K,
    ];
    let b = u64::from(v) | (4u64 << 56);
    s[3] ^= b;
    sipround(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    for _ in 0..3 {
        sipround(&mut s);
    }
    // Truncation is the kernel's: hsiphash returns the u64 as u32.
    ((s[0] ^ s[1]) ^ (s[2] ^ s[3])) as u32
}

/// Mirrors `rvs_sched_mh_key` (bpf/lib/sched.h).
pub fn rvs_sched_mh_key(svc: &SvcVal, sfold: u32, sport: Be16) -> u32 {
    let port = if svc.flags & SVC_F_SCHED_PORT != 0 {
        u32::from(sport.get())
    } else {
        0
    };
    port.wrapping_add(sfold)
}

/// Mirrors `rvs_sched_index` (bpf/lib/sched.h). `len` is not 0.
pub fn rvs_sched_index(
    maps: &mut Maps,
    svc: &SvcVal,
    sfold: u32,
    dfold: u32,
    sport: Be16,
    len: u32,
) -> Result<u32, DropReason> {
    let port = if svc.flags & SVC_F_SCHED_PORT != 0 {
        u32::from(sport.get())
    } else {
        0
    };
    if svc.sched == Sched::Sh as u32 {
        return Ok(rvs_sched_hash_32(port.wrapping_add(sfold), 8) % len);
    }
    if svc.sched == Sched::Dh as u32 {
        return Ok(rvs_sched_hash_32(dfold, 8) % len);
    }
    if svc.sched == Sched::Mh as u32 {
        return Ok(rvs_sched_mh_hash(rvs_sched_mh_key(svc, sfold, sport)) % len);
    }
    let Some(st) = maps.rvs_svc_st.lookup_mut(svc.id) else {
        return Err(DropReason::NoDest);
    };
    // __sync_fetch_and_add: the cursor advances even when the slot turns out unusable.
    let pos = st.pos;
    st.pos = st.pos.wrapping_add(1);
    Ok((pos % u64::from(len)) as u32)
}

/// Mirrors `rvs_sched_overloaded` (bpf/lib/sched.h).
pub fn rvs_sched_overloaded(maps: &Maps, id: u32, d_val: &DestVal) -> bool {
    if d_val.u_thresh == 0 {
        return false;
    }
    maps.rvs_dest_cnt
        .lookup(id)
        .is_some_and(|cnt| rvs_conn_overloaded(d_val, &cnt))
}

/// Mirrors `rvs_sched_dest` (bpf/lib/sched.h).
pub fn rvs_sched_dest(maps: &Maps, svc: &SvcVal, id: u32) -> Option<DestVal> {
    let d = maps.rvs_dest.lookup(id)?;
    if d.flags & DEST_F_VALID == 0 || d.svc_id != svc.id {
        return None;
    }
    if d.weight == 0 {
        return None;
    }
    if rvs_sched_overloaded(maps, id, &d) {
        return None;
    }
    Some(d)
}

/// State of one scan of a count-driven scheduler. Mirrors `struct rvs_sched_scan`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedScan {
    /// A choice was made.
    pub found: bool,
    /// The choice (or twos' first).
    pub id: u32,
    /// Its overhead.
    pub loh: u64,
    /// Its weight.
    pub lw: u64,
    /// twos: sum of the candidates' weights.
    pub total: u64,
    /// twos: the first random weight, counted down.
    pub r1: i64,
    /// twos: the second random weight, counted down.
    pub r2: i64,
    /// twos: second choice made.
    pub found2: bool,
    /// twos: the second choice.
    pub id2: u32,
    /// twos: its overhead.
    pub oh2: u64,
    /// twos: its weight.
    pub w2: u64,
}

/// A candidate's id, weight, active and inactive counts.
struct Candidate {
    id: u32,
    w: u64,
    act: u64,
    inact: u64,
}

/// Mirrors `rvs_sched_candidate` (bpf/lib/sched.h).
fn rvs_sched_candidate(maps: &Maps, svc: &SvcVal, i: u64) -> Option<Candidate> {
    let slot = svc.sched_base.wrapping_add(i as u32);
    let id = maps.rvs_sched.lookup(slot)?;
    let d_val = rvs_sched_dest(maps, svc, id)?;
    let cnt = maps.rvs_dest_cnt.lookup(id)?;
    Some(Candidate {
        id,
        w: u64::from(d_val.weight),
        act: u64::from(cnt.active),
        inact: u64::from(cnt.inactive),
    })
}

/// Mirrors `rvs_sched_scan_step` (bpf/lib/sched.h). Returns 1 to stop, as a `bpf_loop` callback.
fn rvs_sched_scan_step(maps: &Maps, svc: &SvcVal, i: u64, s: &mut SchedScan) -> i64 {
    let Some(Candidate { id, w, act, inact }) = rvs_sched_candidate(maps, svc, i) else {
        return 0;
    };
    // u64 products: the C's wrap (never reached with 32-bit counts and weights).
    let wlc_take = |s: &SchedScan, oh: u64| !s.found || s.loh.wrapping_mul(w) > oh.wrapping_mul(s.lw);
    let (oh, take) = match svc.sched {
        x if x == Sched::Lc as u32 => {
            let oh = (act << 8).wrapping_add(inact);
            (oh, !s.found || oh < s.loh)
        }
        // __ip_vs_lblc_schedule and __ip_vs_lblcr_schedule are wlc's loop.
        x if x == Sched::Wlc as u32 || x == Sched::Lblc as u32 || x == Sched::Lblcr as u32 => {
            let oh = (act << 8).wrapping_add(inact);
            (oh, wlc_take(s, oh))
        }
        x if x == Sched::Nq as u32 => {
            let oh = act + 1;
            if act == 0 {
                s.found = true;
                s.id = id;
                return 1;
            }
            (oh, wlc_take(s, oh))
        }
        x if x == Sched::Sed as u32 => {
            let oh = act + 1;
            (oh, wlc_take(s, oh))
        }
        x if x == Sched::Fo as u32 => (0, w > s.lw),
        x if x == Sched::Ovf as u32 => (0, act <= w && (!s.found || w > s.lw)),
        _ => return 1,
    };
    if take {
        s.found = true;
        s.id = id;
        s.loh = oh;
        s.lw = w;
    }
    0
}

/// Mirrors `rvs_sched_twos_sum` (bpf/lib/sched.h).
fn rvs_sched_twos_sum(maps: &Maps, svc: &SvcVal, i: u64, s: &mut SchedScan) -> i64 {
    if let Some(c) = rvs_sched_candidate(maps, svc, i) {
        s.total = s.total.wrapping_add(c.w);
        s.found = true;
        s.id = c.id;
    }
    0
}

/// Mirrors `rvs_sched_twos_pick` (bpf/lib/sched.h).
fn rvs_sched_twos_pick(maps: &Maps, svc: &SvcVal, i: u64, s: &mut SchedScan) -> i64 {
    let Some(Candidate { id, w, act, inact }) = rvs_sched_candidate(maps, svc, i) else {
        return 0;
    };
    s.r1 = s.r1.wrapping_sub(w as i64);
    s.r2 = s.r2.wrapping_sub(w as i64);
    if s.r1 <= 0 && !s.found {
        s.found = true;
        s.id = id;
        s.lw = w;
        s.loh = (act << 8).wrapping_add(inact);
    }
    if s.r2 <= 0 && !s.found2 {
        s.found2 = true;
        s.id2 = id;
        s.w2 = w;
        s.oh2 = (act << 8).wrapping_add(inact);
    }
    i64::from(s.found && s.found2)
}

/// `bpf_loop(n, cb, s, 0)`: calls `cb` for 0..n until it returns 1.
fn bpf_loop(n: u32, mut cb: impl FnMut(u64) -> i64) {
    for i in 0..u64::from(n) {
        if cb(i) == 1 {
            break;
        }
    }
}

/// Mirrors `rvs_sched_scan` (bpf/lib/sched.h). twos draws `rvs_prandom()` twice.
pub fn rvs_sched_scan(maps: &Maps, env: &Env, svc: &SvcVal) -> Result<u32, DropReason> {
    let mut s = SchedScan::default();
    if svc.sched != Sched::Twos as u32 {
        bpf_loop(svc.sched_len, |i| rvs_sched_scan_step(maps, svc, i, &mut s));
        if !s.found {
            return Err(DropReason::NoDest);
        }
        return Ok(s.id);
    }
    bpf_loop(svc.sched_len, |i| rvs_sched_twos_sum(maps, svc, i, &mut s));
    if !s.found {
        return Err(DropReason::NoDest);
    }
    // Random weights in [0, total]: IPVS adds 1 to the total before drawing below it.
    let total = s.total.wrapping_add(1);
    s.r1 = (u64::from(rvs_prandom(env)) % total) as i64;
    s.r2 = (u64::from(rvs_prandom(env)) % total) as i64;
    s.found = false;
    bpf_loop(svc.sched_len, |i| rvs_sched_twos_pick(maps, svc, i, &mut s));
    if s.found2 && s.w2.wrapping_mul(s.loh) > s.lw.wrapping_mul(s.oh2) {
        s.id = s.id2;
    }
    Ok(s.id)
}

/// Mirrors `rvs_lblc_member` (bpf/lib/sched.h).
pub fn rvs_lblc_member(maps: &Maps, svc: &SvcVal, id: u32, dgen: u32) -> Option<DestVal> {
    let d = maps.rvs_dest.lookup(id)?;
    if d.flags & DEST_F_VALID == 0 || d.svc_id != svc.id || d.dgen != dgen {
        return None;
    }
    Some(d)
}

/// State of the lblc/lblcr scans. Mirrors `struct rvs_lblc_scan`.
#[derive(Clone, Copy, Debug, Default)]
struct LblcScan {
    found: bool,
    idx: u32,
    oh: u64,
    w: u64,
}

/// Mirrors `rvs_lblc_spare_step` (bpf/lib/sched.h).
fn rvs_lblc_spare_step(maps: &Maps, svc: &SvcVal, i: u64, s: &mut LblcScan) -> i64 {
    let slot = svc.sched_base.wrapping_add(i as u32);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return 0;
    };
    let Some(d) = maps.rvs_dest.lookup(id) else {
        return 0;
    };
    if d.flags & DEST_F_VALID == 0 || d.svc_id != svc.id {
        return 0;
    }
    if maps
        .rvs_dest_cnt
        .lookup(id)
        .is_some_and(|cnt| u64::from(cnt.active) * 2 < u64::from(d.weight))
    {
        s.found = true;
        return 1;
    }
    0
}

/// Mirrors `rvs_lblc_overloaded` (bpf/lib/sched.h).
pub fn rvs_lblc_overloaded(maps: &Maps, svc: &SvcVal, id: u32, d: &DestVal) -> bool {
    let Some(cnt) = maps.rvs_dest_cnt.lookup(id) else {
        return false;
    };
    if cnt.active <= d.weight {
        return false;
    }
    let mut s = LblcScan::default();
    bpf_loop(svc.sched_len, |i| rvs_lblc_spare_step(maps, svc, i, &mut s));
    s.found
}

/// Mirrors `rvs_lblcr_min_step` (bpf/lib/sched.h).
fn rvs_lblcr_min_step(maps: &Maps, svc: &SvcVal, en: &LblcVal, i: u64, s: &mut LblcScan) -> i64 {
    if i >= LBLCR_SET_MAX as u64 {
        return 1;
    }
    let m = en.dest[i as usize];
    let Some(d) = rvs_lblc_member(maps, svc, m.id, m.dgen) else {
        return 0;
    };
    // rvs_sched_overloaded on the counters read once.
    let Some(cnt) = maps.rvs_dest_cnt.lookup(m.id) else {
        return 0;
    };
    if d.u_thresh != 0 && rvs_conn_overloaded(&d, &cnt) {
        return 0;
    }
    let oh = (u64::from(cnt.active) << 8).wrapping_add(u64::from(cnt.inactive));
    let w = u64::from(d.weight);
    let take = if s.found {
        s.oh.wrapping_mul(w) > oh.wrapping_mul(s.w)
    } else {
        w > 0
    };
    if take {
        *s = LblcScan {
            found: true,
            idx: i as u32,
            oh,
            w,
        };
    }
    0
}

/// Mirrors `rvs_lblcr_max_step` (bpf/lib/sched.h).
fn rvs_lblcr_max_step(maps: &Maps, svc: &SvcVal, en: &LblcVal, i: u64, s: &mut LblcScan) -> i64 {
    if i >= LBLCR_SET_MAX as u64 {
        return 1;
    }
    let m = en.dest[i as usize];
    let Some(d) = rvs_lblc_member(maps, svc, m.id, m.dgen) else {
        s.found = true;
        s.idx = i as u32;
        return 1;
    };
    let Some(cnt) = maps.rvs_dest_cnt.lookup(m.id) else {
        return 0;
    };
    if d.weight == 0 {
        return 0;
    }
    let oh = (u64::from(cnt.active) << 8).wrapping_add(u64::from(cnt.inactive));
    let w = u64::from(d.weight);
    if !s.found || s.oh.wrapping_mul(w) < oh.wrapping_mul(s.w) {
        *s = LblcScan {
            found: true,
            idx: i as u32,
            oh,
            w,
        };
    }
    0
}

/// Mirrors `rvs_lblcr_erase` (bpf/lib/sched.h).
fn rvs_lblcr_erase(en: &mut LblcVal, idx: u32, now: u64) {
    for i in 0..LBLCR_SET_MAX - 1 {
        if i as u32 >= idx && (i as u32) + 1 < en.n {
            en.dest[i] = en.dest[i + 1];
        }
    }
    if en.n > 0 {
        en.n -= 1;
    }
    en.lastmod_ns = now;
}

/// Mirrors `rvs_lblcr_insert` (bpf/lib/sched.h).
fn rvs_lblcr_insert(en: &mut LblcVal, id: u32, dgen: u32, now: u64) {
    let mut n = en.n;
    for i in 0..LBLCR_SET_MAX {
        if (i as u32) < n && en.dest[i].id == id && en.dest[i].dgen == dgen {
            return;
        }
    }
    if n >= LBLCR_SET_MAX as u32 {
        n = LBLCR_SET_MAX as u32 - 1;
    }
    for i in (1..LBLCR_SET_MAX).rev() {
        if i as u32 <= n {
            en.dest[i] = en.dest[i - 1];
        }
    }
    en.dest[0] = LblcDest { id, dgen };
    en.n = n + 1;
    en.lastmod_ns = now;
}

/// Mirrors `rvs_lblc_key_fill` (bpf/lib/sched.h).
pub fn rvs_lblc_key_fill(svc: &SvcVal, family: u8, daddr: &Addr) -> LblcKey {
    LblcKey {
        addr: *daddr,
        svc_id: svc.id,
        family,
        _pad: [0; 3],
    }
}

/// Mirrors `rvs_lblc_new` (bpf/lib/sched.h).
fn rvs_lblc_new(maps: &mut Maps, key: &LblcKey, id: u32, dgen: u32, now: u64) {
    // Created zero, then filled in place; a full map leaves the choice unremembered.
    if maps.rvs_lblc.update(*key, LblcVal::default(), BPF_ANY).is_err() {
        return;
    }
    if let Some(v) = maps.rvs_lblc.lookup_mut(key) {
        v.lastuse_ns = now;
        v.lastmod_ns = now;
        v.dest[0] = LblcDest { id, dgen };
        v.n = 1;
    }
}

/// Mirrors `rvs_lblc_hit` (bpf/lib/sched.h): `Some(id)` of the remembered server for the entry
/// `key`, or `None` to schedule by wlc. Writes the entry back (lastuse, lblcr's erase).
fn rvs_lblc_hit(maps: &mut Maps, env: &Env, svc: &SvcVal, key: &LblcKey) -> Option<u32> {
    let mut en = *maps.rvs_lblc.lookup(key)?;
    en.lastuse_ns = rvs_now_ns(env);
    let mut chosen: Option<(u32, DestVal)> = None;
    if svc.sched == Sched::Lblc as u32 {
        let m = en.dest[0];
        chosen = rvs_lblc_member(maps, svc, m.id, m.dgen)
            .filter(|d| d.weight != 0)
            .map(|d| (m.id, d));
    } else {
        let mut s = LblcScan::default();
        bpf_loop(en.n, |i| rvs_lblcr_min_step(maps, svc, &en, i, &mut s));
        if s.found && (s.idx as usize) < LBLCR_SET_MAX {
            let mid = en.dest[s.idx as usize].id;
            chosen = maps.rvs_dest.lookup(mid).map(|d| (mid, d));
        }
        // time_after(jiffies, lastmod + expiration): strictly after.
        if let Some(cfg) = maps.rvs_cfg.lookup(0)
            && en.n > 1
            && en.lastuse_ns
                > en.lastmod_ns
                    .wrapping_add(u64::from(cfg.lblcr_exp_s) * 1_000_000_000)
        {
            let mut s = LblcScan::default();
            bpf_loop(en.n, |i| rvs_lblcr_max_step(maps, svc, &en, i, &mut s));
            if s.found {
                let now = en.lastuse_ns;
                rvs_lblcr_erase(&mut en, s.idx, now);
            }
        }
    }
    *maps.rvs_lblc.lookup_mut(key).expect("looked up above") = en;
    let (id, d) = chosen?;
    (!rvs_lblc_overloaded(maps, svc, id, &d)).then_some(id)
}

/// Mirrors `rvs_lblc_remember` (bpf/lib/sched.h).
fn rvs_lblc_remember(maps: &mut Maps, env: &Env, svc: &SvcVal, key: &LblcKey, id: u32) {
    let Some(d) = maps.rvs_dest.lookup(id) else {
        return;
    };
    match maps.rvs_lblc.lookup_mut(key) {
        None => rvs_lblc_new(maps, key, id, d.dgen, rvs_now_ns(env)),
        Some(en) if svc.sched == Sched::Lblcr as u32 => rvs_lblcr_insert(en, id, d.dgen, rvs_now_ns(env)),
        Some(en) => {
            // ip_vs_lblc_new over an entry naming another server replaces it (lastuse is now).
            en.dest[0] = LblcDest { id, dgen: d.dgen };
            en.n = 1;
        }
    }
}

/// Mirrors `rvs_sched_lblc` (bpf/lib/sched.h).
pub fn rvs_sched_lblc(
    maps: &mut Maps,
    env: &Env,
    svc: &SvcVal,
    family: u8,
    daddr: &Addr,
) -> Result<u32, DropReason> {
    let key = rvs_lblc_key_fill(svc, family, daddr);
    if let Some(id) = rvs_lblc_hit(maps, env, svc, &key) {
        return Ok(id);
    }
    let id = rvs_sched_scan(maps, env, svc)?;
    rvs_lblc_remember(maps, env, svc, &key, id);
    Ok(id)
}

/// State of one `ip_vs_mh_get_fallback` probe sequence. Mirrors `struct rvs_mh_probe`.
struct MhProbe<'a> {
    svc: &'a SvcVal,
    v: u32,
    ihash: u32,
    len: u32,
    found: Option<(u32, DestVal)>,
}

/// Mirrors `rvs_sched_mh_probe` (bpf/lib/sched.h). Returns 1 to stop, as a `bpf_loop` callback.
fn rvs_sched_mh_probe(maps: &Maps, k: u64, p: &mut MhProbe<'_>) -> i64 {
    let roffset = ((k + u64::from(p.ihash)) % u64::from(p.len)) as u32;
    let slot = p
        .svc
        .sched_base
        .wrapping_add(rvs_sched_mh_hash(roffset.wrapping_add(p.v)) % p.len);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return 1;
    };
    match rvs_sched_dest(maps, p.svc, id) {
        Some(d) => {
            p.found = Some((id, d));
            1
        }
        None => 0,
    }
}

/// State of an rr/wrr walk past unusable slots. Mirrors `struct rvs_rr_probe`.
struct RrProbe<'a> {
    svc: &'a SvcVal,
    found: Option<(u32, DestVal)>,
}

/// Mirrors `rvs_sched_rr_probe` (bpf/lib/sched.h). Returns 1 to stop, as a `bpf_loop` callback.
fn rvs_sched_rr_probe(maps: &mut Maps, _k: u64, p: &mut RrProbe<'_>) -> i64 {
    let len = p.svc.sched_len;
    let Some(st) = maps.rvs_svc_st.lookup_mut(p.svc.id) else {
        return 1;
    };
    if len == 0 {
        return 1;
    }
    // __sync_fetch_and_add, as rvs_sched_index.
    let pos = st.pos;
    st.pos = st.pos.wrapping_add(1);
    let slot = p.svc.sched_base.wrapping_add((pos % u64::from(len)) as u32);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return 1;
    };
    match rvs_sched_dest(maps, p.svc, id) {
        Some(d) => {
            p.found = Some((id, d));
            1
        }
        None => 0,
    }
}

/// Mirrors `rvs_sched_choose` (bpf/lib/sched.h): the real server's id for a new connection whose
/// folded source address is `sfold` (host order), from source port `sport`, to `daddr` of `family`.
pub fn rvs_sched_choose(
    maps: &mut Maps,
    env: &Env,
    svc: &SvcVal,
    sfold: u32,
    sport: Be16,
    family: u8,
    daddr: &Addr,
) -> Result<u32, DropReason> {
    rvs_sched_pick(maps, env, svc, sfold, sport, family, daddr).map(|(id, _)| id)
}

/// Mirrors `rvs_sched_pick` (bpf/lib/sched.h). `Ok((dest_id, dest))` or the drop reason.
pub fn rvs_sched_pick(
    maps: &mut Maps,
    env: &Env,
    svc: &SvcVal,
    sfold: u32,
    sport: Be16,
    family: u8,
    daddr: &Addr,
) -> Result<(u32, DestVal), DropReason> {
    let len = svc.sched_len;
    if len == 0 {
        return Err(DropReason::NoDest);
    }
    if svc.sched == Sched::Lblc as u32 || svc.sched == Sched::Lblcr as u32 {
        let id = rvs_sched_lblc(maps, env, svc, family, daddr)?;
        // The remembered server need not pass rvs_sched_dest: IPVS uses it over its -x.
        let d = maps.rvs_dest.lookup(id).ok_or(DropReason::NoDest)?;
        return Ok((id, d));
    }
    if svc.sched >= Sched::Lc as u32 {
        let id = rvs_sched_scan(maps, env, svc)?;
        let d = rvs_sched_dest(maps, svc, id).ok_or(DropReason::NoDest)?;
        return Ok((id, d));
    }
    let index = rvs_sched_index(maps, svc, sfold, rvs_sched_addr_fold(daddr, family), sport, len)?;
    let slot = svc.sched_base.wrapping_add(index);
    let Some(id) = maps.rvs_sched.lookup(slot) else {
        return Err(DropReason::NoDest);
    };
    if let Some(d) = rvs_sched_dest(maps, svc, id) {
        return Ok((id, d));
    }
    if svc.sched == Sched::Mh as u32 && svc.flags & SVC_F_SCHED_FALLBACK != 0 {
        let mut p = MhProbe {
            svc,
            v: rvs_sched_mh_key(svc, sfold, sport),
            ihash: index,
            len,
            found: None,
        };
        // bpf_loop(len, ...): at most len probes, stopping when the callback returns 1.
        for k in 0..u64::from(len) {
            if rvs_sched_mh_probe(maps, k, &mut p) == 1 {
                break;
            }
        }
        return p.found.ok_or(DropReason::NoDest);
    }
    if svc.sched == Sched::Rr as u32 || svc.sched == Sched::Wrr as u32 {
        let mut p = RrProbe { svc, found: None };
        // bpf_loop(len - 1, ...): the slot already tried was the first of len.
        for k in 0..u64::from(len - 1) {
            if rvs_sched_rr_probe(maps, k, &mut p) == 1 {
                break;
            }
        }
        return p.found.ok_or(DropReason::NoDest);
    }
    Err(DropReason::NoDest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rvs_sched_pick` for a connection whose addresses and port play no part (IPv4, all zero).
    fn pick_any(m: &mut Maps, env: &Env, svc: &SvcVal) -> Result<(u32, DestVal), DropReason> {
        rvs_sched_pick(
            m,
            env,
            svc,
            0,
            Be16::default(),
            Family::Inet as u8,
            &Addr::default(),
        )
    }
    use rvs_abi::{MapOp, SvcState};

    fn dest(svc_id: u32) -> DestVal {
        DestVal {
            weight: 1,
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
        let picks: Vec<u32> = (0..5)
            .map(|_| pick_any(&mut m, &Env::default(), &svc).unwrap().0)
            .collect();
        assert_eq!(picks, [8, 9, 7, 8, 9]);
    }

    /// Service 1 scanning dests 7, 8, 9 (table order) of `weights` under `sched`, with counters.
    fn counted(sched: Sched, weights: [u32; 3], counts: [(u32, u32); 3]) -> (Maps, SvcVal) {
        let mut m = Maps::new(16);
        for (i, d) in [7u32, 8, 9].into_iter().enumerate() {
            let val = DestVal {
                weight: weights[i],
                ..dest(1)
            };
            m.apply(&[
                MapOp::DestSet { id: d, val },
                MapOp::SchedSet {
                    slot: i as u32,
                    dest_id: d,
                },
            ])
            .unwrap();
            let c = m.rvs_dest_cnt.lookup_mut(d).unwrap();
            (c.active, c.inactive) = counts[i];
        }
        let svc = SvcVal {
            id: 1,
            sched: sched as u32,
            sched_base: 0,
            sched_len: 3,
            ..Default::default()
        };
        (m, svc)
    }

    fn pick(
        sched: Sched,
        weights: [u32; 3],
        counts: [(u32, u32); 3],
        prandom: u32,
    ) -> Result<u32, DropReason> {
        let (mut m, svc) = counted(sched, weights, counts);
        let env = Env {
            prandom,
            ..Env::default()
        };
        pick_any(&mut m, &env, &svc).map(|(id, _)| id)
    }

    #[test]
    fn count_driven_choices_follow_ipvs() {
        use Sched::*;
        let z = (0, 0);
        assert_eq!(pick(Lc, [1, 1, 1], [(0, 5), (0, 5), (1, 0)], 0), Ok(7));
        assert_eq!(pick(Lc, [0, 1, 1], [z, (0, 5), (0, 4)], 0), Ok(9));
        // wlc: 7 (256/1) vs 8 (512/2): equal, the first stays.
        assert_eq!(pick(Wlc, [1, 2, 1], [(1, 0), (2, 0), (1, 1)], 0), Ok(7));
        assert_eq!(pick(Sed, [1, 3, 1], [(1, 0), (2, 0), (1, 0)], 0), Ok(8));
        assert_eq!(pick(Nq, [1, 1, 1], [(1, 0), (0, 9), z], 0), Ok(8));
        assert_eq!(pick(Fo, [1, 5, 5], [z, z, z], 0), Ok(8));
        assert_eq!(pick(Ovf, [1, 5, 3], [z, (6, 0), (3, 0)], 0), Ok(9));
        // twos: total 1 + 2 + 3 + 1 = 7; r = 3: 3 - 1 - 2 = 0 at 8.
        assert_eq!(pick(Twos, [1, 2, 3], [z, z, z], 3), Ok(8));
        assert_eq!(pick(Lc, [0, 0, 0], [z, z, z], 0), Err(DropReason::NoDest));
    }

    #[test]
    fn overloaded_dests_are_skipped_only_while_u_thresh_is_set() {
        let (mut m, svc) = counted(Sched::Rr, [1, 1, 1], [(0, 0); 3]);
        m.rvs_dest_cnt.lookup_mut(7).unwrap().flags = rvs_abi::DEST_C_OVERLOAD;
        assert!(rvs_sched_dest(&m, &svc, 7).is_some(), "flag without -x");
        m.rvs_dest.lookup_mut(7).unwrap().u_thresh = 1;
        assert!(rvs_sched_dest(&m, &svc, 7).is_none());
        // rr: slot 0 (7) overloaded, the probe moves on to 8; the cursor passed both.
        let got = pick_any(&mut m, &Env::default(), &svc);
        assert_eq!(got.map(|(id, _)| id), Ok(8));
        assert_eq!(m.rvs_svc_st.lookup(1).unwrap().pos, 2);
    }

    #[test]
    fn hashes_are_the_kernels() {
        // include/linux/hash.h: the top bits of val * GOLDEN_RATIO_32.
        assert_eq!(rvs_sched_hash_32(1, 8), 0x61);
        assert_eq!(rvs_sched_hash_32(2, 8), 0xc3);
        let a6 = rvs_abi::addr_v6("2001:db8::1:2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(
            rvs_sched_addr_fold(&a6, Family::Inet6 as u8),
            0x2001_0db8 ^ 0x0001_0002
        );
        let a4 = rvs_abi::addr_v4([198, 18, 0, 2]);
        assert_eq!(rvs_sched_addr_fold(&a4, Family::Inet as u8), 0xC612_0002);
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
        assert_eq!(pick_any(&mut m, &Env::default(), &svc), Err(DropReason::NoDest));
        m.apply(&[MapOp::DestSet { id: 0, val: dest(2) }]).unwrap();
        let svc = SvcVal { sched_len: 1, ..svc };
        assert_eq!(pick_any(&mut m, &Env::default(), &svc), Err(DropReason::NoDest));
        assert_eq!(m.rvs_svc_st.lookup(1).unwrap().pos, 1, "the cursor moved anyway");
    }
}
