//! Persistence (`-p`): templates that pin a client network to a real server across connections, as
//! IPVS's `ip_vs_sched_persist` does. Mirrors bpf/lib/persist.h, whose header comment gives the
//! semantics; the template key and the counting live with the connection table ([`crate::conn`]).

use rvs_abi::{
    Be16, CFG_F_QUIESCENT, CONN_C_DEAD, CONN_F_INVALID, CONN_F_TEMPLATE, ConnKey, ConnVal, DestVal,
    DropReason, SvcVal, TcpState,
};

use crate::conn::{
    rvs_conn_bind_template, rvs_conn_claim, rvs_conn_dest, rvs_conn_w_cflags, rvs_conn_word_cas,
    rvs_conn_word_read, rvs_persist_key,
};
use crate::maps::{BPF_ANY, BPF_NOEXIST, Maps};
use crate::parse::Pkt;

/// Mirrors `rvs_persist_quiescent` (bpf/lib/persist.h).
pub fn rvs_persist_quiescent(maps: &Maps) -> bool {
    maps.rvs_cfg
        .lookup(0)
        .is_some_and(|cfg| cfg.flags & CFG_F_QUIESCENT != 0)
}

/// Mirrors `rvs_persist_live` (bpf/lib/persist.h).
pub fn rvs_persist_live(t: &ConnVal, w: u32, svc: &SvcVal, now_ns: u64) -> bool {
    let to = u64::from(svc.persist_s) * 1_000_000_000;
    if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0 {
        return false;
    }
    if t.nctl > 0 && t.flags & CONN_F_INVALID == 0 {
        return true;
    }
    now_ns < t.last_ns || now_ns - t.last_ns < to
}

/// Mirrors `rvs_persist_invalidate` (bpf/lib/persist.h).
pub fn rvs_persist_invalidate(maps: &mut Maps, tkey: &ConnKey, w: u32, last_ns: u64) {
    let Some(t) = maps.rvs_conn.lookup(tkey).copied() else {
        return;
    };
    let k = ConnKey {
        dport: Be16::new(0xffff),
        ..*tkey
    };
    if maps.rvs_conn.update(k, t, BPF_NOEXIST).is_err() {
        return;
    }
    let Some(c) = maps.rvs_conn.lookup_mut(&k) else {
        return;
    };
    c.last_ns = last_ns;
    // A plain store of the word: the CAS from whatever it holds.
    let cur = rvs_conn_word_read(c);
    rvs_conn_word_cas(c, cur, w | (u32::from(CONN_F_INVALID) << 8));
    let dest_id = c.dest_id;
    rvs_conn_bind_template(maps, dest_id);
}

/// `RVS_PERSIST_SCHEDULE`'s meaning and `RVS_OK`'s, as [`rvs_persist_find`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistFind {
    /// `RVS_OK`: the template is in force and its real server usable; it now controls the caller's
    /// connection, which carries `ctag`.
    Found {
        /// `(u32)created_ns` of the template (`*ctag`).
        ctag: u32,
        /// The real server's id (`*dest_id`).
        dest_id: u32,
        /// The real server (`*dest`).
        dest: DestVal,
    },
    /// `RVS_PERSIST_SCHEDULE`: none, or out of force (then claimed): schedule, then
    /// [`rvs_persist_create`].
    Schedule,
}

/// Mirrors `rvs_persist_find` (bpf/lib/persist.h): the template key (the C's `*tkey`) and the answer.
/// The C writes the template through the map's pointer; here the copy is written back.
pub fn rvs_persist_find(
    maps: &mut Maps,
    svc: &SvcVal,
    pkt: &Pkt,
    now_ns: u64,
) -> Result<(ConnKey, PersistFind), DropReason> {
    let Some(vs) = maps.rvs_svc_addr.lookup(svc.id) else {
        return Err(DropReason::NoDest);
    };
    let tkey = rvs_persist_key(&pkt.saddr, &vs, svc.plen);
    if pkt.sport.get() == 0
        && pkt.dport == tkey.dport
        && pkt.proto == tkey.proto
        && pkt.saddr == tkey.saddr
        && pkt.daddr == tkey.daddr
    {
        return Err(DropReason::PortZero);
    }
    let Some(mut t) = maps.rvs_conn.lookup(&tkey).copied() else {
        return Ok((tkey, PersistFind::Schedule));
    };
    if t.flags & CONN_F_TEMPLATE == 0 {
        return Ok((tkey, PersistFind::Schedule));
    }
    let w = rvs_conn_word_read(&t);
    if rvs_conn_w_cflags(w) & CONN_C_DEAD != 0 {
        return Err(DropReason::ConnBusy);
    }
    let mut dest = None;
    if t.svc_id == svc.id && rvs_persist_live(&t, w, svc, now_ns) {
        dest = rvs_conn_dest(maps, &t, svc);
    }
    if let Some(dest) = dest
        && !(dest.weight == 0 && rvs_persist_quiescent(maps))
    {
        t.last_ns = now_ns;
        t.nctl = t.nctl.wrapping_add(1);
        if let Some(slot) = maps.rvs_conn.lookup_mut(&tkey) {
            *slot = t;
        }
        let found = PersistFind::Found {
            ctag: t.created_ns as u32,
            dest_id: t.dest_id,
            dest,
        };
        return Ok((tkey, found));
    }
    let last = t.last_ns;
    let won = rvs_conn_claim(maps, &tkey, &mut t, w, now_ns);
    if let Some(slot) = maps.rvs_conn.lookup_mut(&tkey) {
        *slot = t;
    }
    if !won {
        return Err(DropReason::ConnBusy);
    }
    // In force with a usable real server, so refused only for its weight 0.
    if dest.is_some() {
        rvs_persist_invalidate(maps, &tkey, w, last);
    }
    Ok((tkey, PersistFind::Schedule))
}

/// Mirrors `rvs_persist_create` (bpf/lib/persist.h): the new template's tag (the C's `*ctag`).
pub fn rvs_persist_create(
    maps: &mut Maps,
    svc: &SvcVal,
    tkey: &ConnKey,
    now_ns: u64,
    dest_id: u32,
    dest: &DestVal,
) -> Result<u32, DropReason> {
    let val = ConnVal {
        dest_id,
        svc_id: svc.id,
        created_ns: now_ns,
        last_ns: now_ns,
        state: TcpState::None as u8,
        flags: CONN_F_TEMPLATE,
        tag: (now_ns >> 20) as u8,
        dest_gen: dest.dgen,
        nctl: 1,
        ..ConnVal::default()
    };
    maps.rvs_conn
        .update(*tkey, val, BPF_ANY)
        .map_err(|_| DropReason::ConnFull)?;
    rvs_conn_bind_template(maps, dest_id);
    Ok(now_ns as u32)
}
