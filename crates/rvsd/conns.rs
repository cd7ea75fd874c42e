//! Reading the connection table the way IPVS accounts for it: IPVS's timeout of each state (three of
//! them settable with `--set`), what counts as ActiveConn and InActConn, which entries have expired,
//! how long the others have left, and the state names `-Lc` prints.
//!
//! The data plane applies the same timeouts (written to its `rvs_timeouts` by [`plane_timeouts`]): an
//! entry past its timeout is a miss there. Deleting entries is the daemon's sweep (crate::sweep): it
//! picks the keys that are due ([`Due`]) and the data plane's expiry deletes those still due at that moment, keeping
//! the per-real-server counters exact. An entry's expiry is computed from its last packet and the
//! timeouts in force at the time of asking, so a `--set` applies at once to existing entries too (IPVS
//! re-arms an entry's timer with the new value only at its next packet).

use std::collections::HashMap;

use rvs_abi::{
    CONN_C_DEAD, CONN_F_INPUT_ONLY, CONN_F_INVALID, CONN_F_REPLY, CONN_F_TEMPLATE, ConnKey, ConnVal, DestVal,
    SvcKey, SvcVal, TIMEOUT_SLOTS, TcpState,
};
use rvs_api::Timeouts;

const SEC: u64 = 1_000_000_000;
const IPPROTO_UDP: u8 = 17;

/// The timeout of a TCP state: IPVS's defaults (K:ip_vs_proto_tcp.c `tcp_timeouts`,
/// ipvs-features.md §2.6), ESTABLISHED and FIN_WAIT as `--set` made them.
fn tcp_timeout_s(state: Option<TcpState>, t: &Timeouts) -> u64 {
    use TcpState::*;
    match state {
        Some(Established) => u64::from(t.tcp),
        Some(SynSent) => 120,
        Some(SynRecv) => 60,
        Some(FinWait) => u64::from(t.tcpfin),
        Some(TimeWait) => 120,
        Some(Close) => 10,
        Some(CloseWait) => 60,
        Some(LastAck) => 30,
        Some(Listen) => 120,
        Some(SynAck) => 120,
        // IP_VS_TCP_S_NONE is 2 s; an unknown byte (never written by the data plane) gets the same short
        // life rather than living forever.
        Some(None | Last | UdpNormal) | Option::None => 2,
    }
}

/// How long an entry lives after its last packet.
pub(crate) fn timeout_ns(key: &ConnKey, val: &ConnVal, t: &Timeouts) -> u64 {
    SEC * if key.proto == IPPROTO_UDP {
        // ip_vs_proto_udp.c: a single state (300 s unless set).
        u64::from(t.udp)
    } else {
        tcp_timeout_s(TcpState::from_u8(val.state), t)
    }
}

/// Whether IPVS would have removed the entry by `now_ns`. A `last_ns` ahead of `now_ns` (a packet that
/// arrived after the clock was read) is not expired.
pub(crate) fn is_expired(key: &ConnKey, val: &ConnVal, now_ns: u64, t: &Timeouts) -> bool {
    now_ns.saturating_sub(val.last_ns) >= timeout_ns(key, val, t)
}

/// Whole seconds left before the entry expires, rounded down as /proc/net/ip_vs_conn shows them
/// (`jiffies_delta_to_msecs(expires - jiffies) / 1000`); `None` once expired.
pub(crate) fn remaining_s(key: &ConnKey, val: &ConnVal, now_ns: u64, t: &Timeouts) -> Option<u32> {
    let left = timeout_ns(key, val, t).checked_sub(now_ns.saturating_sub(val.last_ns))?;
    if left == 0 {
        return None;
    }
    Some(u32::try_from(left / SEC).unwrap_or(u32::MAX))
}

/// The state as IPVS names it (K:ip_vs_proto_tcp.c `tcp_state_name_table`, K:ip_vs_proto_udp.c
/// `udp_state_name_table`): `ERR!` for a byte outside the protocol's table, `BUG!` for TCP's LAST.
pub(crate) fn state_name(key: &ConnKey, val: &ConnVal) -> &'static str {
    use TcpState::*;
    // A template's own states (K:ip_vs_conn.c ip_vs_ctpl_state_name_table): IPVS marks it ASSURED
    // once a connection it controls was used, which every template rvs lists has been (it is created
    // with its first connection), so rvs lists them all as ASSURED.
    if val.flags & CONN_F_TEMPLATE != 0 {
        return "ASSURED";
    }
    let state = TcpState::from_u8(val.state);
    if key.proto == IPPROTO_UDP {
        return if state == Some(UdpNormal) { "UDP" } else { "ERR!" };
    }
    match state {
        Some(None) => "NONE",
        Some(Established) => "ESTABLISHED",
        Some(SynSent) => "SYN_SENT",
        Some(SynRecv) => "SYN_RECV",
        Some(FinWait) => "FIN_WAIT",
        Some(TimeWait) => "TIME_WAIT",
        Some(Close) => "CLOSE",
        Some(CloseWait) => "CLOSE_WAIT",
        Some(LastAck) => "LAST_ACK",
        Some(Listen) => "LISTEN",
        Some(SynAck) => "SYNACK",
        Some(Last) => "BUG!",
        Some(UdpNormal) | Option::None => "ERR!",
    }
}

/// The data plane's timeout table: IPVS's timeout of every state, in seconds, by state number (the UDP
/// state included), with `--set`'s values.
pub(crate) fn plane_timeouts(t: &Timeouts) -> rvs_abi::Timeouts {
    let mut out = rvs_abi::Timeouts::default();
    for (i, slot) in out.s.iter_mut().enumerate().take(TIMEOUT_SLOTS) {
        let state = u8::try_from(i).ok().and_then(TcpState::from_u8);
        *slot = match state {
            Some(TcpState::UdpNormal) => t.udp,
            Some(_) => u32::try_from(tcp_timeout_s(state, t)).unwrap_or(u32::MAX),
            // No state has this number: the shortest life, as for an unknown byte.
            None => 2,
        };
    }
    out
}

/// Whether persistence template `val` of a service with `persist_s` is out of force at `now_ns`: it
/// controls no connection (an invalidated one controls none any more, bpf/lib/persist.h) and its
/// timeout has passed since the last connection it gave a real server.
pub(crate) fn template_expired(val: &ConnVal, now_ns: u64, persist_s: u32) -> bool {
    (val.nctl == 0 || val.flags & CONN_F_INVALID != 0)
        && now_ns.saturating_sub(val.last_ns) >= SEC * u64::from(persist_s)
}

/// Seconds `-Lc` shows for a template: what is left of its timeout; past it (it still controls
/// connections) the time to the next of IPVS's 60-second re-arms, which is what ipvsadm would show.
/// `None` once out of force.
pub(crate) fn template_remaining_s(val: &ConnVal, now_ns: u64, persist_s: u32) -> Option<u32> {
    if template_expired(val, now_ns, persist_s) {
        return None;
    }
    let age = now_ns.saturating_sub(val.last_ns) / SEC;
    let to = u64::from(persist_s);
    let left = if age < to { to - age } else { 60 - (age - to) % 60 };
    Some(u32::try_from(left).unwrap_or(u32::MAX))
}

/// What the sweep judges entries against: the valid real servers and the services, as the data plane
/// holds them.
pub(crate) struct Known {
    dests: HashMap<u32, DestVal>,
    vs_of: HashMap<u32, SvcKey>,
    /// Persistence timeout by service id.
    persist_of: HashMap<u32, u32>,
}

impl Known {
    /// The real servers `dests` (valid slots) and services `svcs`.
    pub(crate) fn new(dests: &[(u32, DestVal)], svcs: &[(SvcKey, SvcVal)]) -> Self {
        Known {
            dests: dests.iter().copied().collect(),
            vs_of: svcs.iter().map(|(k, v)| (v.id, *k)).collect(),
            persist_of: svcs.iter().map(|(_, v)| (v.id, v.persist_s)).collect(),
        }
    }
}

/// The key of the reply entry of NAT connection `key` to real server `dest`.
/// Mirrors `rvs_conn_reply_key` (bpf/lib/conn.h).
fn reply_key(key: &ConnKey, dest: &DestVal) -> ConnKey {
    ConnKey {
        saddr: dest.addr,
        daddr: key.saddr,
        sport: dest.port,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// The keys the sweep hands to the data plane's expiry, from any part of the table: persistence
/// templates out of force, connections that timed out, whose real server is gone (a dest slot no
/// longer valid, of another service, or of another generation: rvs keeps IPVS's `expire_nodest_conn`
/// on) or that a packet claimed, each NAT connection followed by its reply entry; then NAT reply entries
/// whose connection is gone or names another real server. The data plane decides again for each.
///
/// Memory: the due keys and the reply entries of the entries fed, nothing of the rest of the table. A
/// reply entry is judged by looking its connection up in the table ([`Due::finish`]), as the data
/// plane's expiry does (`rvs_expire_reply_live`, bpf/lib/expire.h), not against the connections seen.
pub(crate) struct Due<'a> {
    known: &'a Known,
    now_ns: u64,
    t: Timeouts,
    out: Vec<ConnKey>,
    /// Reply entries: (key, the client-side key it leads to, dest id).
    replies: Vec<(ConnKey, ConnKey, u32)>,
}

impl<'a> Due<'a> {
    /// A sweep at `now_ns` over a table whose real servers and services are `known`.
    pub(crate) fn new(known: &'a Known, now_ns: u64, t: &Timeouts) -> Self {
        Due {
            known,
            now_ns,
            t: *t,
            out: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Looks at one batch of entries.
    pub(crate) fn feed(&mut self, chunk: &[(ConnKey, ConnVal)]) {
        for (k, v) in chunk {
            if v.flags & CONN_F_REPLY != 0 {
                // The virtual address and port the client used are the reply entry's own (a port-0
                // or mark service's key lacks them); the service only has to be there still.
                if self.known.vs_of.contains_key(&v.svc_id) {
                    let rep = v.as_rep();
                    let client = ConnKey {
                        saddr: k.daddr,
                        daddr: rep.vaddr,
                        sport: k.dport,
                        dport: rep.vport,
                        proto: k.proto,
                        family: k.family,
                        _pad: [0; 2],
                    };
                    self.replies.push((*k, client, v.dest_id));
                } else {
                    // No service has its id any more: it leads nowhere.
                    self.out.push(*k);
                }
                continue;
            }
            let dest = self.known.dests.get(&v.dest_id);
            let dest_ok = dest.is_some_and(|d| (d.svc_id, d.dgen) == (v.svc_id, v.dest_gen));
            if v.flags & CONN_F_TEMPLATE != 0 {
                // A template of a service that is gone is due too.
                let persist = self.known.persist_of.get(&v.svc_id).copied();
                if v.cflags & CONN_C_DEAD != 0
                    || !dest_ok
                    || persist.is_none_or(|p| template_expired(v, self.now_ns, p))
                {
                    self.out.push(*k);
                }
                continue;
            }
            if v.cflags & CONN_C_DEAD != 0 || !dest_ok || is_expired(k, v, self.now_ns, &self.t) {
                self.out.push(*k);
                // Its reply entry right after it: the data plane's expiry takes the keys in order, so
                // the connection is gone when the reply entry is judged, which then leads nowhere. Left
                // to its own turn in the walk, it would wait for the next pass.
                if v.flags & CONN_F_INPUT_ONLY == 0
                    && dest_ok
                    && let Some(d) = dest
                {
                    self.out.push(reply_key(k, d));
                }
            }
        }
    }

    /// The due keys: connections first (each NAT connection's reply entry after it), then the reply
    /// entries whose connection `lookup` does not find in the table naming the same real server.
    ///
    /// # Errors
    /// The first error of `lookup`.
    pub(crate) fn finish<E>(
        mut self,
        mut lookup: impl FnMut(&ConnKey) -> Result<Option<ConnVal>, E>,
    ) -> Result<Vec<ConnKey>, E> {
        for (k, client, dest_id) in std::mem::take(&mut self.replies) {
            // Mirrors the test of `rvs_expire_reply_live` (bpf/lib/expire.h): a claimed connection
            // still counts, its claimer may be replacing it under the same reply entry.
            let live = lookup(&client)?.is_some_and(|c| c.flags & CONN_F_REPLY == 0 && c.dest_id == dest_id);
            if !live {
                self.out.push(k);
            }
        }
        Ok(self.out)
    }
}

/// [`Due`] over a whole table at once, fed two entries at a time, each reply entry's connection
/// looked up in `entries`.
#[cfg(test)]
pub(crate) fn due(
    entries: &[(ConnKey, ConnVal)],
    dests: &[(u32, DestVal)],
    svcs: &[(SvcKey, SvcVal)],
    now_ns: u64,
    t: &Timeouts,
) -> Vec<ConnKey> {
    let known = Known::new(dests, svcs);
    let mut d = Due::new(&known, now_ns, t);
    for chunk in entries.chunks(2) {
        d.feed(chunk);
    }
    let table: HashMap<ConnKey, ConnVal> = entries.iter().copied().collect();
    d.finish(|k| Ok::<_, std::convert::Infallible>(table.get(k).copied()))
        .unwrap_or_else(|e| match e {})
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rvs_abi::{Be16, ConnRep, addr_v4};

    /// A connection from 198.18.0.1:`sport` to the VIP, last seen at `last_s` seconds.
    pub(crate) fn conn(
        sport: u16,
        proto: u8,
        state: TcpState,
        svc_id: u32,
        dest_id: u32,
        last_s: u64,
    ) -> (ConnKey, ConnVal) {
        (
            ConnKey {
                saddr: addr_v4([198, 18, 0, 1]),
                daddr: addr_v4([198, 18, 0, 100]),
                sport: Be16::new(sport),
                dport: Be16::new(80),
                proto,
                family: 1,
                _pad: [0; 2],
            },
            ConnVal {
                dest_id,
                svc_id,
                created_ns: 0,
                last_ns: last_s * SEC,
                state: state as u8,
                dest_gen: 1,
                ..ConnVal::default()
            },
        )
    }

    const TCP: u8 = 6;
    const UDP: u8 = 17;
    /// IPVS's defaults.
    const D: Timeouts = Timeouts {
        tcp: 900,
        tcpfin: 120,
        udp: 300,
    };

    #[test]
    fn timeouts_are_ipvs_defaults() {
        use TcpState::*;
        let cases = [
            (TCP, Established, 900),
            (TCP, SynSent, 120),
            (TCP, SynRecv, 60),
            (TCP, FinWait, 120),
            (TCP, TimeWait, 120),
            (TCP, Close, 10),
            (TCP, CloseWait, 60),
            (TCP, LastAck, 30),
            (TCP, Listen, 120),
            (TCP, SynAck, 120),
            (TCP, None, 2),
            (UDP, UdpNormal, 300),
        ];
        for (proto, state, secs) in cases {
            let (k, v) = conn(1000, proto, state, 0, 0, 0);
            assert_eq!(timeout_ns(&k, &v, &D), secs * SEC, "{state:?}");
        }
        let (k, mut v) = conn(1000, TCP, Established, 0, 0, 0);
        v.state = 200;
        assert_eq!(timeout_ns(&k, &v, &D), 2 * SEC, "unknown state byte");
    }

    #[test]
    fn expiry_boundary_and_future_last_seen() {
        let (k, v) = conn(1000, TCP, TcpState::Close, 0, 0, 100);
        assert!(!is_expired(&k, &v, 109 * SEC, &D));
        assert!(!is_expired(&k, &v, 110 * SEC - 1, &D));
        assert!(is_expired(&k, &v, 110 * SEC, &D));
        assert!(!is_expired(&k, &v, 50 * SEC, &D), "last_ns after now is live");
    }

    fn dest(svc_id: u32, dgen: u32) -> DestVal {
        DestVal {
            svc_id,
            dgen,
            flags: rvs_abi::DEST_F_VALID,
            ..DestVal::default()
        }
    }

    #[test]
    fn due_are_the_timed_out_the_orphaned_and_the_claimed() {
        use TcpState::*;
        let now = 1000;
        let mut conns = vec![
            conn(1, TCP, Established, 0, 7, now - 10),  // live
            conn(2, TCP, SynRecv, 0, 7, now - 59),      // live
            conn(3, TCP, SynRecv, 0, 7, now - 60),      // timed out
            conn(4, TCP, TimeWait, 0, 7, now - 119),    // live
            conn(5, TCP, Close, 0, 7, now - 11),        // timed out
            conn(6, UDP, UdpNormal, 1, 9, now - 299),   // live
            conn(7, UDP, UdpNormal, 1, 9, now - 300),   // timed out
            conn(8, TCP, Established, 2, 7, now - 10),  // dest 7 is service 0's: orphan
            conn(9, TCP, Established, 0, 8, now - 10),  // dest 8 gone: orphan
            conn(10, TCP, Established, 0, 7, now - 10), // claimed by a packet
            conn(11, TCP, Established, 0, 7, now - 10), // dest 7 of another generation
        ];
        conns[9].1.cflags = CONN_C_DEAD;
        conns[10].1.dest_gen = 2;
        // DR connections: no reply entry to hand with them.
        for (_, v) in &mut conns {
            v.flags |= CONN_F_INPUT_ONLY;
        }
        let dests = [(7, dest(0, 1)), (9, dest(1, 1))];
        let gone: Vec<u16> = due(&conns, &dests, &[], now * SEC, &D)
            .iter()
            .map(|k| k.sport.get())
            .collect();
        assert_eq!(gone, [3, 5, 7, 8, 9, 10, 11]);
        assert!(due(&[], &dests, &[], 5 * SEC, &D).is_empty());
    }

    const RIP: [u8; 4] = [198, 18, 1, 11];

    /// The port-0 service 198.18.0.100:0/TCP as service 0 (the virtual port, 80, is the reply
    /// entries' own).
    fn vip_svc() -> [(SvcKey, SvcVal); 1] {
        let vs = SvcKey {
            addr: addr_v4([198, 18, 0, 100]),
            port: Be16::new(0),
            proto: TCP,
            family: 1,
        };
        [(vs, SvcVal::default())]
    }

    /// NAT real server 198.18.1.11:8080 of service 0, generation 1.
    fn nat_dest() -> DestVal {
        DestVal {
            addr: addr_v4(RIP),
            port: Be16::new(8080),
            ..dest(0, 1)
        }
    }

    /// The reply entry from RIP:8080 to client 198.18.0.1:`cport` of a connection to
    /// 198.18.0.100:80 (service 0, dest `dest_id`).
    fn reply(cport: u16, dest_id: u32) -> (ConnKey, ConnVal) {
        (
            ConnKey {
                saddr: addr_v4(RIP),
                daddr: addr_v4([198, 18, 0, 1]),
                sport: Be16::new(8080),
                dport: Be16::new(cport),
                proto: TCP,
                family: 1,
                _pad: [0; 2],
            },
            ConnVal::from(ConnRep {
                dest_id,
                vaddr: addr_v4([198, 18, 0, 100]),
                flags: CONN_F_REPLY,
                vport: Be16::new(80),
                ..ConnRep::default()
            }),
        )
    }

    #[test]
    fn due_reply_entries_are_those_without_their_connection() {
        use TcpState::*;
        let now = 1000;
        let entries = [
            conn(1, TCP, Established, 0, 7, now - 10), // live, with its reply entry
            reply(1, 7),
            conn(2, TCP, Close, 0, 7, now - 11), // timed out: its reply entry goes right after it
            reply(2, 7),
            reply(3, 7), // no connection
            conn(4, TCP, Established, 0, 7, now - 10),
            reply(4, 8), // the connection names another real server
        ];
        let dests = [(7, nat_dest())];
        let gone: Vec<(u16, u16)> = due(&entries, &dests, &vip_svc(), now * SEC, &D)
            .iter()
            .map(|k| (k.sport.get(), k.dport.get()))
            .collect();
        assert_eq!(gone, [(2, 80), (8080, 2), (8080, 3), (8080, 4)]);
    }

    #[test]
    fn a_reply_entry_is_judged_by_looking_its_connection_up_not_by_the_entries_fed() {
        use TcpState::*;
        let now = 1000;
        let known = Known::new(&[(7, nat_dest())], &vip_svc());
        let live = conn(1, TCP, Established, 0, 7, now - 10);
        let claimed = {
            let (k, mut v) = conn(5, TCP, Established, 0, 7, now - 10);
            v.cflags = CONN_C_DEAD;
            (k, v)
        };
        // A slice of reply entries only: their connections are elsewhere in the table.
        let mut d = Due::new(&known, now * SEC, &D);
        d.feed(&[reply(1, 7), reply(3, 7), reply(5, 7)]);
        let mut asked = Vec::new();
        let gone = d
            .finish(|k| {
                asked.push(k.sport.get());
                Ok::<_, ()>([live, claimed].iter().find(|(c, _)| c == k).map(|(_, v)| *v))
            })
            .unwrap();
        assert_eq!(
            asked,
            [1, 3, 5],
            "one lookup per reply entry, of its client-side key"
        );
        let gone: Vec<u16> = gone.iter().map(|k| k.dport.get()).collect();
        assert_eq!(
            gone,
            [3],
            "only the orphan; a claimed connection still holds its reply entry"
        );

        // A lookup that fails fails the sweep; a reply entry of a service gone needs no lookup.
        let mut d = Due::new(&known, now * SEC, &D);
        d.feed(&[reply(1, 7)]);
        assert_eq!(d.finish(|_| Err("EPERM")), Err("EPERM"));
        let mut d = Due::new(&known, now * SEC, &D);
        let (k, mut v) = reply(1, 7);
        v.svc_id = 9;
        d.feed(&[(k, v)]);
        assert_eq!(
            d.finish(|_| -> Result<_, ()> { panic!("looked up") }),
            Ok(vec![k])
        );
    }

    #[test]
    fn a_due_connection_hands_its_reply_entry_only_if_it_has_one_and_its_dest_is_known() {
        use TcpState::*;
        let now = 1000;
        let known = Known::new(&[(7, nat_dest())], &vip_svc());
        let mut d = Due::new(&known, now * SEC, &D);
        let nat = conn(2, TCP, Close, 0, 7, now - 11);
        let mut dr = conn(3, TCP, Close, 0, 7, now - 11);
        dr.1.flags = CONN_F_INPUT_ONLY;
        let mut regenerated = conn(4, TCP, Close, 0, 7, now - 11);
        regenerated.1.dest_gen = 2;
        let gone_dest = conn(6, TCP, Close, 0, 8, now - 11);
        d.feed(&[nat, dr, regenerated, gone_dest]);
        let gone = d.finish(|_| -> Result<_, ()> { panic!("looked up") }).unwrap();
        assert_eq!(gone, [nat.0, reply(2, 7).0, dr.0, regenerated.0, gone_dest.0]);
    }

    #[test]
    fn an_invalidated_template_lives_out_its_timer_whatever_it_controls() {
        let t = ConnVal {
            flags: CONN_F_TEMPLATE,
            nctl: 2,
            last_ns: SEC,
            ..ConnVal::default()
        };
        assert!(
            !template_expired(&t, 400 * SEC, 300),
            "a template controlling connections stays"
        );
        let inv = ConnVal {
            flags: CONN_F_TEMPLATE | CONN_F_INVALID,
            ..t
        };
        assert!(!template_expired(&inv, 300 * SEC, 300));
        assert_eq!(template_remaining_s(&inv, 300 * SEC, 300), Some(1));
        assert!(template_expired(&inv, 301 * SEC, 300));
    }

    #[test]
    fn plane_timeouts_are_ipvss_by_state_number() {
        let t = plane_timeouts(&Timeouts {
            tcp: 30,
            tcpfin: 20,
            udp: 10,
        });
        assert_eq!(
            &t.s[..13],
            &[2, 30, 120, 60, 20, 120, 10, 60, 30, 120, 120, 2, 10]
        );
        assert!(t.s[13..].iter().all(|s| *s == 2), "unknown states live shortest");
    }

    #[test]
    fn set_timeouts_change_established_fin_wait_and_udp_only() {
        use TcpState::*;
        let t = Timeouts {
            tcp: 30,
            tcpfin: 20,
            udp: 10,
        };
        let cases = [
            (TCP, Established, 30),
            (TCP, FinWait, 20),
            (UDP, UdpNormal, 10),
            // set-timeouts.txt: a TIME_WAIT entry shows 01:59 after `--set 30 20 10`.
            (TCP, TimeWait, 120),
            (TCP, SynRecv, 60),
            (TCP, Close, 10),
        ];
        for (proto, state, secs) in cases {
            let (k, v) = conn(1000, proto, state, 0, 0, 0);
            assert_eq!(timeout_ns(&k, &v, &t), secs * SEC, "{state:?}");
        }
        let (k, v) = conn(1, TCP, Established, 0, 7, 100);
        assert!(!is_expired(&k, &v, 129 * SEC, &t));
        assert!(is_expired(&k, &v, 130 * SEC, &t));
        assert!(!is_expired(&k, &v, 130 * SEC, &D));
        assert_eq!(due(&[(k, v)], &[(0, dest(0, 1))], &[], 130 * SEC, &t), [k]);
    }

    #[test]
    fn remaining_seconds_round_down_and_end_at_expiry() {
        let t = Timeouts {
            tcp: 30,
            tcpfin: 20,
            udp: 10,
        };
        let (k, v) = conn(41053, UDP, TcpState::UdpNormal, 0, 0, 100);
        // set-timeouts.txt: sent just before listing with udp=10, shown as 00:09.
        assert_eq!(remaining_s(&k, &v, 100 * SEC + 1, &t), Some(9));
        assert_eq!(remaining_s(&k, &v, 100 * SEC, &t), Some(10));
        assert_eq!(remaining_s(&k, &v, 109 * SEC, &t), Some(1));
        assert_eq!(remaining_s(&k, &v, 110 * SEC - 1, &t), Some(0));
        assert_eq!(remaining_s(&k, &v, 110 * SEC, &t), None);
        assert_eq!(remaining_s(&k, &v, 500 * SEC, &t), None);
        // A packet seen after the clock was read: the full timeout.
        assert_eq!(remaining_s(&k, &v, 90 * SEC, &t), Some(10));
        let (k, v) = conn(1, TCP, TcpState::TimeWait, 0, 0, 100);
        assert_eq!(remaining_s(&k, &v, 101 * SEC - 1, &t), Some(119));
    }

    #[test]
    fn state_names_are_ipvss() {
        use TcpState::*;
        let names = [
            (None, "NONE"),
            (Established, "ESTABLISHED"),
            (SynSent, "SYN_SENT"),
            (SynRecv, "SYN_RECV"),
            (FinWait, "FIN_WAIT"),
            (TimeWait, "TIME_WAIT"),
            (Close, "CLOSE"),
            (CloseWait, "CLOSE_WAIT"),
            (LastAck, "LAST_ACK"),
            (Listen, "LISTEN"),
            (SynAck, "SYNACK"),
            (Last, "BUG!"),
            (UdpNormal, "ERR!"),
        ];
        for (state, name) in names {
            let (k, v) = conn(1, TCP, state, 0, 0, 0);
            assert_eq!(state_name(&k, &v), name);
        }
        let (k, mut v) = conn(1, TCP, Established, 0, 0, 0);
        v.state = 200;
        assert_eq!(state_name(&k, &v), "ERR!");
        let (k, v) = conn(1, UDP, UdpNormal, 0, 0, 0);
        assert_eq!(state_name(&k, &v), "UDP");
        let (k, v) = conn(1, UDP, Established, 0, 0, 0);
        assert_eq!(state_name(&k, &v), "ERR!");
    }
}
