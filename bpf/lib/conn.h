/* SPDX-License-Identifier: GPL-2.0-only */
/* The connection table (rvs_conn), IPVS's TCP state machine and the per-real-server connection
 * counters (rvs_dest_cnt). States advance by IPVS's tables: a client's packet by INPUT, or by
 * INPUT_ONLY for DR and TUN, whose replies bypass the director (IPVS's NOOUTPUT connections); a NAT
 * real server's reply by OUTPUT.
 *
 * Exact counters. Every client-side entry counts once in its real server's active or inactive
 * counter, in the class its cflags name (RVS_CONN_C_ACTIVE: IPVS's active states). Three parties
 * change entries at the same time: the program on each CPU, and the daemon's expiry (rvs_xdp_expire,
 * lib/expire.h, run by the daemon in the kernel so that it can use the same atomics). The entry's
 * state, flags, cflags and tag form one 32-bit word that only compare-and-swap changes, so exactly one
 * party moves a counter for each change of class, and exactly one claims an ending entry
 * (RVS_CONN_C_DEAD) and takes it out of its counter. An entry whose timeout has passed is a miss for
 * the program too, so a packet never revives an entry the expiry is about to delete: the packet
 * claims it and replaces it with a new connection. Losing a claim (the other party is deleting the
 * entry this very moment) drops the packet as CONN_BUSY. Timeouts come from rvs_timeouts (the
 * daemon's --set values); with none written, entries never time out here.
 *
 * A NAT connection has two entries in rvs_conn. The client-side entry (client -> VIP:vport) is the
 * connection: real server, service, times, state. The reply entry, flagged RVS_CONN_F_REPLY, is keyed
 * by the reply's tuple (RIP:rport -> client:cport) and only leads back to the first: it holds the
 * dest and service ids and the virtual address and port the client used (struct rvs_conn_rep: a
 * port-0 or firewall-mark service covers many, so its key cannot tell them). A reply is matched only
 * when every step agrees: the reply entry, the service still under that id (rvs_svc_addr, Cilium's
 * reverse-NAT index), the client-side entry naming the same real server, and the reply coming from
 * that real server's address and port.
 * Why in rvs_conn rather than a map of its own: a hash is preallocated to max_entries, so a second
 * table would cost every director about as much memory as rvs_conn (over 100 MB at the default
 * 1,048,576 entries), NAT or not. In rvs_conn the reply entries cost only NAT connections, one more
 * entry each (about 120 bytes with the map's overhead), out of the same capacity. The reply entry is
 * inserted first, so a client-side entry never exists without one; it carries no counter, no times
 * and no timeout of its own (its time fields hold the virtual address): the expiry (lib/expire.h)
 * deletes it once its client-side entry is gone or names another real server. Packets of either side
 * refresh only the client-side entry. */
#ifndef RVS_CONN_H
#define RVS_CONN_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

/* The 32-bit word of @conn that holds state (byte 0), flags, cflags and tag (byte 3), in the order of
 * struct rvs_conn_val on a little-endian machine; 4-byte aligned (offset 24). */
#define RVS_CONN_W_STATE(w)	((__u8)((w) & 0xff))
#define RVS_CONN_W_CFLAGS(w)	((__u8)(((w) >> 16) & 0xff))
#define RVS_CONN_W(state, flags, cflags, tag)						\
	((__u32)(state) | ((__u32)(flags) << 8) | ((__u32)(cflags) << 16) | ((__u32)(tag) << 24))

/* Pointer to the word of @conn that compare-and-swap updates.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __u32 *
rvs_conn_word(struct rvs_conn_val *conn)
{
	return (__u32 *)&conn->state;
}

/* A one-time read of the word (another CPU may change it at any moment).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __u32
rvs_conn_word_read(struct rvs_conn_val *conn)
{
	return *(volatile __u32 *)rvs_conn_word(conn);
}

/* Whether a connection of @proto in @state counts as active: IPVS's ESTABLISHED, SYN_SENT, SYN_RECV
 * and SYNACK; UDP never (ipvs-features.md §2.6).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_is_active(__u8 proto, __u8 state)
{
	if (proto != IPPROTO_TCP)
		return 0;
	return state == RVS_TCP_S_ESTABLISHED || state == RVS_TCP_S_SYN_SENT ||
	       state == RVS_TCP_S_SYN_RECV || state == RVS_TCP_S_SYNACK;
}

/* Whether an entry in @state last seen at @last_ns has timed out at @now_ns, by rvs_timeouts. A slot
 * of 0 (or no timeouts written) never times out; a last_ns ahead of now (read before another CPU's
 * write) has not.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_expired(__u8 state, __u64 last_ns, __u64 now_ns)
{
	__u32 zero = 0, idx = state;
	struct rvs_timeouts *t = bpf_map_lookup_elem(&rvs_timeouts, &zero);
	__u64 to;

	if (!t || idx >= RVS_TIMEOUT_SLOTS)
		return 0;
	to = (__u64)t->s[idx] * 1000000000ULL;
	if (to == 0 || now_ns < last_ns)
		return 0;
	return now_ns - last_ns >= to;
}

/* Whether @dest is overloaded: IPVS's OVERLOAD flag, which only an upper threshold can set, set under
 * the current overload generation (an edit that removes or raises -x bumps it, as IPVS clears the
 * flag on that edit).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline int
rvs_conn_overloaded(const struct rvs_dest_val *dest, const struct rvs_dest_cnt *cnt)
{
	return dest->u_thresh != 0 && (cnt->flags & RVS_DEST_C_OVERLOAD) &&
	       (cnt->flags & RVS_DEST_F_OGEN_MASK) == (dest->flags & RVS_DEST_F_OGEN_MASK);
}

/* Counts a new connection on its real server (IPVS's ip_vs_bind_dest): active or inactive, then
 * OVERLOAD when active + inactive reaches the upper threshold, stamped with the current overload
 * generation (one exchange: an OVERLOAD left from an older generation is replaced, not or-ed into).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_bind(__u32 dest_id, const struct rvs_dest_val *dest, int active)
{
	struct rvs_dest_cnt *cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &dest_id);

	if (!cnt)
		return;
	if (active)
		__sync_fetch_and_add(&cnt->active, 1);
	else
		__sync_fetch_and_add(&cnt->inactive, 1);
	if (dest->u_thresh != 0 && cnt->active + cnt->inactive >= dest->u_thresh)
		__sync_lock_test_and_set(&cnt->flags,
					 (dest->flags & RVS_DEST_F_OGEN_MASK) | RVS_DEST_C_OVERLOAD);
}

/* Counts a new persistence template on its real server (IPVS's ip_vs_bind_dest for a template:
 * persistconns, which no threshold looks at).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_bind_template(__u32 dest_id)
{
	struct rvs_dest_cnt *cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &dest_id);

	if (cnt)
		__sync_fetch_and_add(&cnt->persist, 1);
}

/* Word @i (0..3) of the network-order mask of a prefix of @plen bits.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __be32
rvs_persist_mask_word(__u32 plen, __u32 i)
{
	__u32 bits;

	if (plen <= i * 32)
		return 0;
	bits = plen - i * 32;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(~0U << (32 - bits));
}

/* The persistence template key (lib/persist.h) of client address @saddr for the service keyed @vs
 * with client prefix @plen: the client network, source port 0, the service's own address, port,
 * protocol and family.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_persist_key(const __be32 *saddr, const struct rvs_svc_key *vs, __u32 plen,
		struct rvs_conn_key *tkey)
{
	__builtin_memset(tkey, 0, sizeof(*tkey));
	tkey->saddr[0] = saddr[0] & rvs_persist_mask_word(plen, 0);
	tkey->saddr[1] = saddr[1] & rvs_persist_mask_word(plen, 1);
	tkey->saddr[2] = saddr[2] & rvs_persist_mask_word(plen, 2);
	tkey->saddr[3] = saddr[3] & rvs_persist_mask_word(plen, 3);
	__builtin_memcpy(tkey->daddr, vs->addr, sizeof(tkey->daddr));
	tkey->dport = vs->port;
	tkey->proto = vs->proto;
	tkey->family = vs->family;
}

/* Gives back one connection's control of template @tkey, if that is still the template of @ctag
 * (a template replaced meanwhile controls other connections).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_persist_release(const struct rvs_conn_key *tkey, __u32 ctag)
{
	struct rvs_conn_val *t = bpf_map_lookup_elem(&rvs_conn, tkey);

	if (t && (t->flags & RVS_CONN_F_TEMPLATE) && (__u32)t->created_ns == ctag && t->nctl > 0)
		__sync_fetch_and_sub(&t->nctl, 1);
}

/* Ends controlled connection @key (@conn)'s hold on its template: the template is found again from
 * the connection's client address and service.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_persist_conn_end(const struct rvs_conn_key *key, const struct rvs_conn_val *conn)
{
	struct rvs_conn_key tkey;
	struct rvs_svc_key *vs;
	struct rvs_svc_val *svc;
	__u32 svc_id = conn->svc_id;

	vs = bpf_map_lookup_elem(&rvs_svc_addr, &svc_id);
	if (!vs)
		return;
	svc = bpf_map_lookup_elem(&rvs_svc, vs);
	if (!svc || svc->id != svc_id)
		return;
	rvs_persist_key(key->saddr, vs, svc->plen, &tkey);
	rvs_persist_release(&tkey, conn->ctag);
}

/* Takes ending entry @key (@conn) out of its real server's counters (IPVS's ip_vs_unbind_dest): a
 * connection from active or inactive, by the class @cflags names, then OVERLOAD is cleared by IPVS's
 * rules (below -y if set, else below 3/4 of -x); a template from persistconns. A controlled
 * connection also gives its template's control back. Counters are left alone when the dest id now
 * belongs to another real server (its counters started from zero) or to none. Reply entries are never
 * counted.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_unbind(const struct rvs_conn_key *key, const struct rvs_conn_val *conn, __u8 cflags)
{
	__u32 id = conn->dest_id, total;
	struct rvs_dest_val *dest;
	struct rvs_dest_cnt *cnt;

	if (conn->flags & RVS_CONN_F_REPLY)
		return;
	if (conn->flags & RVS_CONN_F_CONTROLLED)
		rvs_persist_conn_end(key, conn);
	dest = bpf_map_lookup_elem(&rvs_dest, &id);
	if (!dest || !(dest->flags & RVS_DEST_F_VALID) || dest->dgen != conn->dest_gen)
		return;
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	if (!cnt)
		return;
	if (conn->flags & RVS_CONN_F_TEMPLATE) {
		__sync_fetch_and_sub(&cnt->persist, 1);
		return;
	}
	if (cflags & RVS_CONN_C_ACTIVE)
		__sync_fetch_and_sub(&cnt->active, 1);
	else
		__sync_fetch_and_sub(&cnt->inactive, 1);
	total = cnt->active + cnt->inactive;
	if (dest->l_thresh != 0) {
		if (total < dest->l_thresh)
			__sync_fetch_and_and(&cnt->flags, ~RVS_DEST_C_OVERLOAD);
	} else if (dest->u_thresh != 0) {
		if (total * 4 < dest->u_thresh * 3)
			__sync_fetch_and_and(&cnt->flags, ~RVS_DEST_C_OVERLOAD);
	} else if (cnt->flags & RVS_DEST_C_OVERLOAD) {
		__sync_fetch_and_and(&cnt->flags, ~RVS_DEST_C_OVERLOAD);
	}
}

/* Claims entry @key (@conn), whose word was @w, for deletion or replacement: succeeds (1) for exactly
 * one party, which takes the entry out of its counters. last_ns then records the claim, so that the
 * expiry leaves a freshly claimed entry to its claimer. Not inlined: its locals (a template key, to give
 * a controlled connection's hold back) get a frame of their own, off the scheduler's chain of frames,
 * which the verifier caps at 512 bytes.
 * Mirror: rvs-model/src/conn.rs */
static __attribute__((noinline)) int
rvs_conn_claim(const struct rvs_conn_key *key, struct rvs_conn_val *conn, __u32 w, __u64 now_ns)
{
	__u32 dead = w | ((__u32)RVS_CONN_C_DEAD << 16);

	if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD)
		return 0;
	if (__sync_val_compare_and_swap(rvs_conn_word(conn), w, dead) != w)
		return 0;
	rvs_conn_unbind(key, conn, RVS_CONN_W_CFLAGS(w));
	conn->last_ns = now_ns;
	return 1;
}

/* The key of @pkt's connection: client address and port, virtual address and port, protocol, family.
 * Every byte is written (padding included): the hash compares all 40.
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

	__u32 idx = state;

	if (ev < 0 || ev > RVS_TCP_EV_RST || idx >= RVS_TCP_S_LAST)
		return state;
	row = dir + ev;
	if (row >= 12)
		return state;
	rvs_barrier_var(idx);
	rvs_barrier_var(row);
	if (idx >= RVS_TCP_S_LAST || row >= 12)
		return state;
	return rvs_tcp_states[row][idx];
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
 * connection's service, is still the real server it was (generation), and that service is @svc (a
 * deleted and re-added service gets a new id). NULL
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
	if (!dest || !(dest->flags & RVS_DEST_F_VALID) || dest->svc_id != conn->svc_id ||
	    dest->dgen != conn->dest_gen)
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

/* Moves @conn from the counter class of @from to that of @to (IPVS's set_tcp_state), when they differ
 * and the dest id still belongs to the connection's real server.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_recount(const struct rvs_conn_val *conn, __u8 from, __u8 to)
{
	__u32 id = conn->dest_id;
	struct rvs_dest_val *dest;
	struct rvs_dest_cnt *cnt;

	if ((from & RVS_CONN_C_ACTIVE) == (to & RVS_CONN_C_ACTIVE) || (conn->flags & RVS_CONN_F_REPLY))
		return;
	dest = bpf_map_lookup_elem(&rvs_dest, &id);
	if (!dest || !(dest->flags & RVS_DEST_F_VALID) || dest->dgen != conn->dest_gen)
		return;
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	if (!cnt)
		return;
	if (to & RVS_CONN_C_ACTIVE) {
		__sync_fetch_and_add(&cnt->active, 1);
		__sync_fetch_and_sub(&cnt->inactive, 1);
	} else {
		__sync_fetch_and_sub(&cnt->active, 1);
		__sync_fetch_and_add(&cnt->inactive, 1);
	}
}

/* Records a packet of an existing connection: last_ns, and the TCP state transition by @dir's table.
 * A transition swaps the word, so that of two CPUs moving the same connection, one moves the counters
 * (a failed swap re-reads and retries, a few times: each retry means another CPU made progress). An
 * entry claimed meanwhile keeps its state: its claimer counted it out.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_touch(struct rvs_conn_val *conn, const struct rvs_pkt *pkt, __u32 dir, __u64 now_ns)
{
	__u32 w, nw, i;
	__u8 st, cf;

	conn->last_ns = now_ns;
	if (pkt->proto != IPPROTO_TCP)
		return;
	w = rvs_conn_word_read(conn);
	for (i = 0; i < 4; i++) {
		cf = RVS_CONN_W_CFLAGS(w);
		if (cf & RVS_CONN_C_DEAD)
			return;
		st = rvs_tcp_next_state(dir, RVS_CONN_W_STATE(w), pkt->tcp_flags);
		if (st == RVS_CONN_W_STATE(w))
			return;
		cf &= ~RVS_CONN_C_ACTIVE;
		if (rvs_conn_is_active(IPPROTO_TCP, st))
			cf |= RVS_CONN_C_ACTIVE;
		nw = (w & 0xff00ff00U) | st | ((__u32)cf << 16);
		if (__sync_val_compare_and_swap(rvs_conn_word(conn), w, nw) == w) {
			rvs_conn_recount(conn, RVS_CONN_W_CFLAGS(w), cf);
			return;
		}
		w = rvs_conn_word_read(conn);
	}
}

/* The port that a packet to virtual port @vport reaches on real server @dest: the real server's own,
 * or @vport itself when the real server has port 0 (IPVS keeps the packet's port then: the real
 * servers of port-0 and firewall-mark services; the encoder gives the real servers of a persistent
 * one port 0, as IPVS uses their port only for a packet to the service's own port 0).
 * Mirror: rvs-model/src/conn.rs */
static __always_inline __be16
rvs_conn_rport(const struct rvs_dest_val *dest, __be16 vport)
{
	return dest->port ? dest->port : vport;
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
	rkey->sport = rvs_conn_rport(dest, key->dport);
	rkey->dport = key->sport;
	rkey->proto = key->proto;
	rkey->family = key->family;
}

/* The client-side key of the connection that reply @pkt answers, given its reply entry @rep: from the
 * reply's destination (the client) to the virtual address and port the client used.
 * Mirror: rvs-model/src/conn.rs */
static __always_inline void
rvs_conn_client_key(const struct rvs_pkt *pkt, const struct rvs_conn_rep *rep, struct rvs_conn_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->saddr, pkt->daddr, sizeof(key->saddr));
	__builtin_memcpy(key->daddr, rep->vaddr, sizeof(key->daddr));
	key->sport = pkt->dport;
	key->dport = rep->vport;
	key->proto = pkt->proto;
	key->family = pkt->family;
}

/* What rvs_conn_create needs besides the key, packet, service and real server: a BPF-to-BPF call takes
 * five arguments at most. */
struct rvs_conn_new {
	__u64 now_ns;
	__u32 dest_id;
	__u32 ctag;		/* the controlling template's, with ctl */
	__u8 ctl;		/* RVS_CONN_F_CONTROLLED or 0 */
	__u8 _pad[7];
};

/* Inserts (or replaces: the caller claimed the old one) the entry of @key for a connection just
 * scheduled to n->dest_id, and counts it on the real server. n->ctl is RVS_CONN_F_CONTROLLED for a
 * connection a persistence template chose (n->ctag: the template's), else 0. Not inlined: its two
 * entries get a frame of their own, off the scheduler's chain of frames (the verifier caps one at 512
 * bytes). TCP starts from NONE through the client's table (a SYN gives SYN_RECV); UDP has its single
 * state. A NAT connection gets its reply entry (struct rvs_conn_rep, which names the virtual address
 * and port) first, so that a client-side entry never exists without one (a reply entry left alone by
 * a failed insert leads nowhere). -CONN_FULL if the table refuses an insert.
 * Mirror: rvs-model/src/conn.rs */
static __attribute__((noinline)) int
rvs_conn_create(const struct rvs_conn_key *key, const struct rvs_pkt *pkt,
		const struct rvs_svc_val *svc, const struct rvs_dest_val *dest,
		const struct rvs_conn_new *n)
{
	struct rvs_conn_key rkey;
	/* One buffer for both values, written one after the other, and @n read where used rather than
	 * copied (fewer values to keep across the helper calls): this frame sits on the chain of frames
	 * that the verifier caps at 512 bytes. */
	union {
		struct rvs_conn_rep rep;
		struct rvs_conn_val val;
	} u;

	if (dest->fwd == RVS_FWD_NAT) {
		__builtin_memset(&u.rep, 0, sizeof(u.rep));
		u.rep.dest_id = n->dest_id;
		u.rep.svc_id = svc->id;
		__builtin_memcpy(u.rep.vaddr, key->daddr, sizeof(u.rep.vaddr));
		u.rep.flags = RVS_CONN_F_REPLY;
		u.rep.tag = (__u8)(n->now_ns >> 20);
		u.rep.dest_gen = dest->dgen;
		u.rep.vport = key->dport;
		rvs_conn_reply_key(key, dest, &rkey);
		if (bpf_map_update_elem(&rvs_conn, &rkey, &u.rep, BPF_ANY))
			return -RVS_DROP_CONN_FULL;
	}
	__builtin_memset(&u.val, 0, sizeof(u.val));
	u.val.dest_id = n->dest_id;
	u.val.svc_id = svc->id;
	u.val.created_ns = n->now_ns;
	u.val.last_ns = n->now_ns;
	u.val.tag = (__u8)(n->now_ns >> 20);
	u.val.dest_gen = dest->dgen;
	/* Replies of DR and TUN bypass the director (IPVS sets NOOUTPUT for every method but NAT). */
	u.val.flags = (dest->fwd == RVS_FWD_NAT ? 0 : RVS_CONN_F_INPUT_ONLY) | n->ctl;
	u.val.ctag = n->ctag;
	if (pkt->proto == IPPROTO_TCP)
		u.val.state = rvs_tcp_next_state(rvs_tcp_dir_in(u.val.flags), RVS_TCP_S_NONE, pkt->tcp_flags);
	else
		u.val.state = RVS_UDP_S_NORMAL;
	if (rvs_conn_is_active(pkt->proto, u.val.state))
		u.val.cflags = RVS_CONN_C_ACTIVE;
	if (bpf_map_update_elem(&rvs_conn, key, &u.val, BPF_ANY))
		return -RVS_DROP_CONN_FULL;
	rvs_conn_bind(n->dest_id, dest, u.val.cflags & RVS_CONN_C_ACTIVE);
	return RVS_OK;
}

#endif /* RVS_CONN_H */
