/* SPDX-License-Identifier: GPL-2.0-only */
/* The connection table (rvs_conn) and IPVS's TCP state machine. The director of DR sees only the
 * client's half of a connection, so states advance by IPVS's INPUT_ONLY table (the one IPVS uses for
 * connections flagged NOOUTPUT). Timeouts are not applied here: the LRU evicts old entries. */
#ifndef RVS_CONN_H
#define RVS_CONN_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"

/* Rows of the state table, in IPVS's order (ip_vs_proto_tcp.c tcp_state_idx). */
#define RVS_TCP_EV_SYN	0
#define RVS_TCP_EV_FIN	1
#define RVS_TCP_EV_ACK	2
#define RVS_TCP_EV_RST	3
#define RVS_TCP_EV_NONE	-1	/* no flag IPVS looks at: the state stays */

#define sNO	RVS_TCP_S_NONE
#define sES	RVS_TCP_S_ESTABLISHED
#define sSS	RVS_TCP_S_SYN_SENT
#define sSR	RVS_TCP_S_SYN_RECV
#define sFW	RVS_TCP_S_FIN_WAIT
#define sTW	RVS_TCP_S_TIME_WAIT
#define sCL	RVS_TCP_S_CLOSE
#define sCW	RVS_TCP_S_CLOSE_WAIT
#define sLA	RVS_TCP_S_LAST_ACK
#define sLI	RVS_TCP_S_LISTEN
#define sSA	RVS_TCP_S_SYNACK

/* IPVS tcp_states[] INPUT_ONLY rows (ip_vs_proto_tcp.c), indexed [event][current state]. */
static const __u8 rvs_tcp_in_only[4][RVS_TCP_S_LAST] = {
	/*	      sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA */
	/* syn */ { sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR },
	/* fin */ { sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW },
	/* ack */ { sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES },
	/* rst */ { sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL },
};

#undef sNO
#undef sES
#undef sSS
#undef sSR
#undef sFW
#undef sTW
#undef sCL
#undef sCW
#undef sLA
#undef sLI
#undef sSA

/* The key of @pkt's connection: client address and port, virtual address and port, protocol, family.
 * Every byte is written (padding included): the LRU hash compares all 40.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_key_of(const struct rvs_pkt *pkt, struct rvs_conn_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr[0] = pkt->saddr[0];
	key->saddr[1] = pkt->saddr[1];
	key->saddr[2] = pkt->saddr[2];
	key->saddr[3] = pkt->saddr[3];
	key->daddr[0] = pkt->daddr[0];
	key->daddr[1] = pkt->daddr[1];
	key->daddr[2] = pkt->daddr[2];
	key->daddr[3] = pkt->daddr[3];
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->proto = pkt->proto;
	key->family = pkt->family;
}

/* The state-table row of a TCP flags byte. Priority RST > SYN > FIN > ACK, as IPVS's tcp_state_idx;
 * RVS_TCP_EV_NONE when none of them is set.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_tcp_event(__u8 tcp_flags)
{
	if (tcp_flags & RVS_TCP_RST)
		return RVS_TCP_EV_RST;
	if (tcp_flags & RVS_TCP_SYN)
		return RVS_TCP_EV_SYN;
	if (tcp_flags & RVS_TCP_FIN)
		return RVS_TCP_EV_FIN;
	if (tcp_flags & RVS_TCP_ACK)
		return RVS_TCP_EV_ACK;
	return RVS_TCP_EV_NONE;
}

/* The state after a client packet with @tcp_flags in @state (INPUT_ONLY table). A packet without an
 * event, or a state outside the table (LAST, UDP), leaves the state as it is.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __u8
rvs_tcp_next_state(__u8 state, __u8 tcp_flags)
{
	int ev = rvs_tcp_event(tcp_flags);

	if (ev < 0 || ev > RVS_TCP_EV_RST || state >= RVS_TCP_S_LAST)
		return state;
	return rvs_tcp_in_only[ev][state];
}

/* Whether @pkt may create a connection: any UDP datagram; a TCP segment only with SYN and without
 * RST (IPVS's tcp_conn_schedule; SYN+ACK is allowed there too).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_is_new(const struct rvs_pkt *pkt)
{
	if (pkt->proto != IPPROTO_TCP)
		return 1;
	return (pkt->tcp_flags & (RVS_TCP_SYN | RVS_TCP_RST)) == RVS_TCP_SYN;
}

/* The entry of @key, or NULL.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline struct rvs_conn_val *
rvs_conn_lookup(const struct rvs_conn_key *key)
{
	return bpf_map_lookup_elem(&rvs_conn, key);
}

/* The real server of @conn if the packet may still use it: the dest slot is valid, belongs to the
 * connection's service, and that service is @svc (a deleted and re-added service gets a new id). NULL
 * otherwise; the caller then treats the packet as if no entry existed.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline struct rvs_dest_val *
rvs_conn_dest(const struct rvs_conn_val *conn, const struct rvs_svc_val *svc)
{
	__u32 id = conn->dest_id;
	struct rvs_dest_val *dest;

	if (conn->svc_id != svc->id)
		return NULL;
	dest = bpf_map_lookup_elem(&rvs_dest, &id);
	if (!dest || !(dest->flags & RVS_DEST_F_VALID) || dest->svc_id != conn->svc_id)
		return NULL;
	return dest;
}

/* Whether @pkt ends @conn and starts a new connection on the same ports: a new SYN on an entry in
 * TIME_WAIT or CLOSE is scheduled afresh (IPVS conn_reuse_mode 1, is_new_conn_expected).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_reused(const struct rvs_conn_val *conn, const struct rvs_pkt *pkt)
{
	if (pkt->proto != IPPROTO_TCP || !rvs_conn_is_new(pkt))
		return 0;
	return conn->state == RVS_TCP_S_TIME_WAIT || conn->state == RVS_TCP_S_CLOSE;
}

/* Records a packet of an existing connection: TCP state transition and last_ns.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_touch(struct rvs_conn_val *conn, const struct rvs_pkt *pkt, __u64 now_ns)
{
	if (pkt->proto == IPPROTO_TCP)
		conn->state = rvs_tcp_next_state(conn->state, pkt->tcp_flags);
	conn->last_ns = now_ns;
}

/* Inserts (or replaces) the entry of @key for a connection just scheduled to @dest_id. TCP starts
 * from NONE through the state table (a SYN gives SYN_RECV); UDP has its single state. -CONN_FULL if
 * the table refuses the insert.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_create(const struct rvs_conn_key *key, const struct rvs_pkt *pkt,
		const struct rvs_svc_val *svc, __u32 dest_id, const struct rvs_dest_val *dest,
		__u64 now_ns)
{
	struct rvs_conn_val val;

	__builtin_memset(&val, 0, sizeof(val));
	val.dest_id = dest_id;
	val.svc_id = svc->id;
	val.created_ns = now_ns;
	val.last_ns = now_ns;
	if (pkt->proto == IPPROTO_TCP)
		val.state = rvs_tcp_next_state(RVS_TCP_S_NONE, pkt->tcp_flags);
	else
		val.state = RVS_UDP_S_NORMAL;
	/* DR: replies bypass the director (IPVS sets NOOUTPUT for it). */
	val.flags = dest->fwd == RVS_FWD_DR ? RVS_CONN_F_INPUT_ONLY : 0;
	if (bpf_map_update_elem(&rvs_conn, key, &val, BPF_ANY))
		return -RVS_DROP_CONN_FULL;
	return RVS_OK;
}

#endif /* RVS_CONN_H */
