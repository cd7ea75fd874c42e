//! Reading the connection table the way IPVS accounts for it: IPVS's timeout of each state (three of
//! them settable with `--set`), what counts as ActiveConn and InActConn, which entries have expired,
//! how long the others have left, and the state names `-Lc` prints.
//!
//! The data plane only refreshes `last_ns`; it never ages entries out (the LRU map evicts only when
//! full). Expiry is therefore the daemon's job: a periodic sweep deletes what IPVS would have timed out.
//! An entry's expiry is computed from its last packet and the timeouts in force at the time of asking,
//! so a `--set` applies at once to existing entries too (IPVS re-arms an entry's timer with the new
//! value only at its next packet).

use std::collections::HashMap;

use rvs_abi::{ConnKey, ConnVal, TcpState};
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

/// Whether the entry counts in ActiveConn: ESTABLISHED, SYN_SENT, SYN_RECV and SYNACK (§2.6). UDP
/// connections are created inactive and never become active.
pub(crate) fn is_active(key: &ConnKey, val: &ConnVal) -> bool {
    key.proto != IPPROTO_UDP
        && matches!(
            TcpState::from_u8(val.state),
            Some(TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck)
        )
}

/// ActiveConn and InActConn of one real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) active: u32,
    pub(crate) inactive: u32,
}

/// Live (unexpired) connections per `(svc_id, dest_id)`. Keying by both ids keeps an entry left over
/// from a deleted real server from being counted for a new one that got its freed dest id.
pub(crate) fn count(conns: &[(ConnKey, ConnVal)], now_ns: u64, t: &Timeouts) -> HashMap<(u32, u32), Counts> {
    let mut out: HashMap<(u32, u32), Counts> = HashMap::new();
    for (k, v) in conns.iter().filter(|(k, v)| !is_expired(k, v, now_ns, t)) {
        let c = out.entry((v.svc_id, v.dest_id)).or_default();
        if is_active(k, v) {
            c.active += 1;
        } else {
            c.inactive += 1;
        }
    }
    out
}

/// Keys of the expired entries.
pub(crate) fn expired(conns: &[(ConnKey, ConnVal)], now_ns: u64, t: &Timeouts) -> Vec<ConnKey> {
    conns
        .iter()
        .filter(|(k, v)| is_expired(k, v, now_ns, t))
        .map(|(k, _)| *k)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rvs_abi::{Be16, addr_v4};

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
                flags: 0,
                _pad: [0; 6],
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

    #[test]
    fn active_states_are_the_four_of_ipvs_and_udp_is_never_active() {
        use TcpState::*;
        for s in [Established, SynSent, SynRecv, SynAck] {
            let (k, v) = conn(1, TCP, s, 0, 0, 0);
            assert!(is_active(&k, &v), "{s:?}");
        }
        for s in [None, FinWait, TimeWait, Close, CloseWait, LastAck, Listen] {
            let (k, v) = conn(1, TCP, s, 0, 0, 0);
            assert!(!is_active(&k, &v), "{s:?}");
        }
        let (k, v) = conn(1, UDP, UdpNormal, 0, 0, 0);
        assert!(!is_active(&k, &v));
        // Even a (corrupt) ESTABLISHED byte on a UDP entry stays inactive.
        let (k, v) = conn(1, UDP, Established, 0, 0, 0);
        assert!(!is_active(&k, &v));
    }

    #[test]
    fn counts_per_dest_skip_expired_and_separate_services() {
        use TcpState::*;
        let now = 1000;
        let conns = [
            conn(1, TCP, Established, 0, 7, now - 10),   // active
            conn(2, TCP, SynRecv, 0, 7, now - 59),       // active
            conn(3, TCP, SynRecv, 0, 7, now - 60),       // expired
            conn(4, TCP, TimeWait, 0, 7, now - 119),     // inactive
            conn(5, TCP, Close, 0, 7, now - 11),         // expired
            conn(6, TCP, FinWait, 0, 8, now),            // inactive, other dest
            conn(7, UDP, UdpNormal, 1, 9, now - 299),    // inactive (UDP)
            conn(8, UDP, UdpNormal, 1, 9, now - 300),    // expired
            conn(9, TCP, Established, 2, 7, now - 899),  // same dest id, other service
            conn(10, TCP, Established, 0, 7, now - 900), // expired
        ];
        let c = count(&conns, now * SEC, &D);
        assert_eq!(
            c.get(&(0, 7)),
            Some(&Counts {
                active: 2,
                inactive: 1
            })
        );
        assert_eq!(
            c.get(&(0, 8)),
            Some(&Counts {
                active: 0,
                inactive: 1
            })
        );
        assert_eq!(
            c.get(&(1, 9)),
            Some(&Counts {
                active: 0,
                inactive: 1
            })
        );
        assert_eq!(
            c.get(&(2, 7)),
            Some(&Counts {
                active: 1,
                inactive: 0
            })
        );
        assert_eq!(c.len(), 4);

        let gone: Vec<u16> = expired(&conns, now * SEC, &D)
            .iter()
            .map(|k| k.sport.get())
            .collect();
        assert_eq!(gone, [3, 5, 8, 10]);
    }

    #[test]
    fn empty_table_counts_nothing() {
        assert!(count(&[], 5 * SEC, &D).is_empty());
        assert!(expired(&[], 5 * SEC, &D).is_empty());
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
        assert_eq!(count(&[(k, v)], 130 * SEC, &t).len(), 0);
        assert_eq!(expired(&[(k, v)], 130 * SEC, &t), [k]);
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
