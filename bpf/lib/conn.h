/* SPDX-License-Identifier: GPL-2.0-only */
/* The connection table (rvs_conn) and IPVS's TCP state machine. States advance by IPVS's tables: a
 * client's packet by INPUT, or by INPUT_ONLY for DR and TUN, whose replies bypass the director (IPVS's
 * NOOUTPUT connections); a NAT real server's reply by OUTPUT. Timeouts are not applied here: the
 * daemon deletes expired entries, and the LRU evicts the oldest when the table is full.
 *
 * A NAT connection has two entries in rvs_conn. The client-side entry (client -> VIP:vport) is the
 * connection: real server, service, times, state. The reply entry, flagged RVS_CONN_F_REPLY, is keyed
 * by the reply's tuple (RIP:rport -> client:cport) and only leads back to the first: it holds the
 * dest and service ids, and the service id gives the virtual address and port through rvs_svc_addr
 * (Cilium's reverse-NAT index, here the service id). A reply is matched only when every step agrees:
 * the reply entry, the service still under that id, the client-side entry naming the same real
 * server, and the reply coming from that real server's address and port.
 * Why in rvs_conn rather than a map of its own: an LRU hash is preallocated to max_entries, so a second
 * table would cost every director about as much memory as rvs_conn (over 100 MB at the default
 * 1,048,576 entries), NAT or not. In rvs_conn the reply entries cost only NAT connections, one more
 * entry each (about 120 bytes with the map's overhead), out of the same capacity. LRU consistency:
 * the two entries age separately. Replies refresh both, client packets only the first. When a full
 * table evicts one of a pair, the connection ends as if unknown: without its client-side entry a
 * reply passes to the stack untouched and a client's segment is NOT_SYN; without its reply entry
 * replies pass untouched. IPVS does the same with a packet that matches no connection. The daemon
 * deletes a NAT connection's reply entry together with the connection; one whose connection was
 * evicted is the table's least recently used and goes first. */
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

/* Offsets of the three tables in rvs_tcp_states, as IPVS's tcp_state_off[] (TCP_DIR_*). */
#define RVS_TCP_DIR_INPUT	0	/* client -> real server, when replies are seen (NAT) */
#define RVS_TCP_DIR_OUTPUT	4	/* real server -> client (NAT replies) */
#define RVS_TCP_DIR_INPUT_ONLY	8	/* client -> real server, replies unseen (DR, TUN) */

/* IPVS tcp_states[] (ip_vs_proto_tcp.c), indexed [direction + event][current state]. */
static const __u8 rvs_tcp_states[12][RVS_TCP_S_LAST] = {
	/* INPUT      sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA */
	/* syn */ { sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR },
	/* fin */ { sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW },
	/* ack */ { sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES },
	/* rst */ { sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR },
	/* OUTPUT     sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA */
	/* syn */ { sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR },
	/* fin */ { sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW },
	/* ack */ { sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES },
	/* rst */ { sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL },
	/* IN_ONLY    sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA */
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

/* The state after a packet with @tcp_flags in @state, by the table of direction @dir
 * (RVS_TCP_DIR_*). A packet without an event, or a state outside the table (LAST, UDP), leaves the
 * state as it is.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __u8
rvs_tcp_next_state(__u32 dir, __u8 state, __u8 tcp_flags)
{
	int ev = rvs_tcp_event(tcp_flags);
	__u32 row;

	if (ev < 0 || ev > RVS_TCP_EV_RST || state >= RVS_TCP_S_LAST)
		return state;
	row = dir + ev;
	if (row >= 12)
		return state;
	return rvs_tcp_states[row][state];
}

/* The table a client's packet of a connection with @conn_flags goes by: INPUT_ONLY when the director
 * never sees the replies (DR, TUN), else INPUT.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __u32
rvs_tcp_dir_in(__u8 conn_flags)
{
	return conn_flags & RVS_CONN_F_INPUT_ONLY ? RVS_TCP_DIR_INPUT_ONLY : RVS_TCP_DIR_INPUT;
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

/* Records a packet of an existing connection: TCP state transition by @dir's table, and last_ns.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_touch(struct rvs_conn_val *conn, const struct rvs_pkt *pkt, __u32 dir, __u64 now_ns)
{
	if (pkt->proto == IPPROTO_TCP)
		conn->state = rvs_tcp_next_state(dir, conn->state, pkt->tcp_flags);
	conn->last_ns = now_ns;
}

/* The key of the reply entry of NAT connection @key to real server @dest: the reply's tuple, from the
 * real server's address and port to the client's.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_reply_key(const struct rvs_conn_key *key, const struct rvs_dest_val *dest,
		   struct rvs_conn_key *rkey)
{
	__builtin_memset(rkey, 0, sizeof(*rkey));
	__builtin_memcpy(rkey->saddr, dest->addr, sizeof(rkey->saddr));
	__builtin_memcpy(rkey->daddr, key->saddr, sizeof(rkey->daddr));
	rkey->sport = dest->port;
	rkey->dport = key->sport;
	rkey->proto = key->proto;
	rkey->family = key->family;
}

/* The client-side key of the connection that reply @pkt answers, given its service @vs: from the
 * reply's destination (the client) to the virtual address and port.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_client_key(const struct rvs_pkt *pkt, const struct rvs_svc_key *vs, struct rvs_conn_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->saddr, pkt->daddr, sizeof(key->saddr));
	__builtin_memcpy(key->daddr, vs->addr, sizeof(key->daddr));
	key->sport = pkt->dport;
	key->dport = vs->port;
	key->proto = pkt->proto;
	key->family = pkt->family;
}

/* Inserts (or replaces) the entry of @key for a connection just scheduled to @dest_id. TCP starts
 * from NONE through the client's table (a SYN gives SYN_RECV); UDP has its single state. A NAT
 * connection gets its reply entry first, so that a client-side entry never exists without one (a
 * reply entry left alone by a failed insert leads nowhere). -CONN_FULL if the table refuses an insert.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_create(const struct rvs_conn_key *key, const struct rvs_pkt *pkt,
		const struct rvs_svc_val *svc, __u32 dest_id, const struct rvs_dest_val *dest,
		__u64 now_ns)
{
	struct rvs_conn_key rkey;
	struct rvs_conn_val val;

	__builtin_memset(&val, 0, sizeof(val));
	val.dest_id = dest_id;
	val.svc_id = svc->id;
	val.created_ns = now_ns;
	val.last_ns = now_ns;
	if (dest->fwd == RVS_FWD_NAT) {
		val.flags = RVS_CONN_F_REPLY;
		rvs_conn_reply_key(key, dest, &rkey);
		if (bpf_map_update_elem(&rvs_conn, &rkey, &val, BPF_ANY))
			return -RVS_DROP_CONN_FULL;
	}
	/* Replies of DR and TUN bypass the director (IPVS sets NOOUTPUT for every method but NAT). */
	val.flags = dest->fwd == RVS_FWD_NAT ? 0 : RVS_CONN_F_INPUT_ONLY;
	if (pkt->proto == IPPROTO_TCP)
		val.state = rvs_tcp_next_state(rvs_tcp_dir_in(val.flags), RVS_TCP_S_NONE, pkt->tcp_flags);
	else
		val.state = RVS_UDP_S_NORMAL;
	if (bpf_map_update_elem(&rvs_conn, key, &val, BPF_ANY))
		return -RVS_DROP_CONN_FULL;
	return RVS_OK;
}

#endif /* RVS_CONN_H */
