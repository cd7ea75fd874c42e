/* SPDX-License-Identifier: GPL-2.0-only */
/* Persistence (-p): templates that pin a client network to a real server across connections, as
 * IPVS's ip_vs_sched_persist does. A template is an entry of rvs_conn flagged RVS_CONN_F_TEMPLATE,
 * keyed by (client address & the service's -M prefix, source port 0, the service's own address, port
 * and protocol: lib/conn.h rvs_persist_key). So there is one template per client network and
 * service, which for a port-0 service covers every port of its address and for a firewall-mark
 * service every match of its mark (its key holds the mark and protocol 0, as IPVS keys fwmark
 * templates by the mark).
 *
 * A template counts in its real server's persistconns. It stays in force svc->persist_s seconds after
 * the last connection it gave a real server, and for as long as connections it chose live: each holds
 * one count of its nctl and gives it back when it ends (IPVS re-arms such a template every 60 s
 * instead; rvs's expiry is lazy, so a count is enough). It is used while its real server is still
 * the one it was, also at weight 0 (quiesced), unless expire_quiescent_template is set
 * (RVS_CFG_F_QUIESCENT); otherwise the next connection claims it and schedules afresh. */
#ifndef RVS_PERSIST_H
#define RVS_PERSIST_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"
#include "lib/conn.h"

/* Whether expire_quiescent_template is on.
 * Mirror: rvs-model/src/persist.rs */
static __always_inline int
rvs_persist_quiescent(void)
{
	__u32 zero = 0;
	struct rvs_cfg *cfg = bpf_map_lookup_elem(&rvs_cfg, &zero);

	return cfg && (cfg->flags & RVS_CFG_F_QUIESCENT);
}

/* Whether template @t (word @w) of service @svc is in force at @now_ns: unclaimed, and controlling
 * connections or within its timeout.
 * Mirror: rvs-model/src/persist.rs */
static __always_inline int
rvs_persist_live(const struct rvs_conn_val *t, __u32 w, const struct rvs_svc_val *svc, __u64 now_ns)
{
	__u64 to = (__u64)svc->persist_s * 1000000000ULL;

	if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD)
		return 0;
	/* An invalidated template lives out its timer only: the connections it controlled now give
	 * their count back to the template that replaced it (the ctag tells them apart), not to it. */
	if (t->nctl > 0 && !(t->flags & RVS_CONN_F_INVALID))
		return 1;
	return now_ns < t->last_ns || now_ns - t->last_ns < to;
}

/* IPVS's invalidation of a template whose real server is quiesced under expire_quiescent_template
 * (ip_vs_check_template): the template, just claimed at @tkey (its word was @w, its last use
 * @last_ns), goes on under the same key with virtual port 65535, counted in its real server's
 * persistconns and listed by -Lc with ports 65535, until its timer (not restarted) ends. If that key
 * holds an earlier invalidated template of this client network (IPVS would keep both), the claimed one
 * is simply dropped. Not inlined: its frame stays out of rvs_xdp_conn's, at the 512-byte limit.
 * Mirror: rvs-model/src/persist.rs */
static __attribute__((noinline)) void
rvs_persist_invalidate(const struct rvs_conn_key *tkey, __u32 w, __u64 last_ns)
{
	struct rvs_conn_key k = *tkey;
	struct rvs_conn_val *t, *c;

	t = bpf_map_lookup_elem(&rvs_conn, tkey);
	if (!t)
		return;
	k.dport = bpf_htons(0xffff);
	if (bpf_map_update_elem(&rvs_conn, &k, t, BPF_NOEXIST))
		return;
	c = bpf_map_lookup_elem(&rvs_conn, &k);
	if (!c)
		return;
	c->last_ns = last_ns;
	/* The word before the claim (counted, not DEAD), and the invalid mark in its flags byte. */
	*rvs_conn_word(c) = w | ((__u32)RVS_CONN_F_INVALID << 8);
	rvs_conn_bind_template(c->dest_id);
}

/* rvs_persist_find's answer when the connection must be scheduled (and then recorded in a new template
 * by rvs_persist_create): a positive value, which no stage returns (lib/verdict.h). */
#define RVS_PERSIST_SCHEDULE	1

/* The template of @pkt's client network for persistent service @svc (key to @tkey): RVS_OK with its
 * real server in *dest_id and *dest if it is in force and that real server usable (IPVS's
 * ip_vs_check_template); the template then controls one more connection, the caller's (which carries
 * *ctag), and its timeout starts again. RVS_PERSIST_SCHEDULE if there is none, or it is out of force
 * (then claimed, which takes it out of persistconns): the caller schedules and calls
 * rvs_persist_create. -CONN_BUSY if another CPU is deleting it this very moment.
 * Kept apart from the scheduling so that the scheduler is inlined once in the program: twice made
 * the verifier's walk exceed its instruction budget.
 * Mirror: rvs-model/src/persist.rs */
static __always_inline int
rvs_persist_find(const struct rvs_svc_val *svc, const struct rvs_pkt *pkt, __u64 now_ns,
		 struct rvs_conn_key *tkey, __u32 *ctag, __u32 *dest_id, struct rvs_dest_val **dest)
{
	struct rvs_conn_val *t;
	struct rvs_svc_key *vs;
	__u32 id = svc->id, w;
	__u64 last;

	vs = bpf_map_lookup_elem(&rvs_svc_addr, &id);
	if (!vs)
		return -RVS_DROP_NO_DEST;
	rvs_persist_key(pkt->saddr, vs, svc->plen, tkey);
	/* A packet from source port 0 whose own key is this very template key (a whole-address -M):
	 * its connection entry would overwrite its template. */
	if (pkt->sport == 0 && pkt->dport == tkey->dport && pkt->proto == tkey->proto &&
	    pkt->saddr[0] == tkey->saddr[0] && pkt->saddr[1] == tkey->saddr[1] &&
	    pkt->saddr[2] == tkey->saddr[2] && pkt->saddr[3] == tkey->saddr[3] &&
	    pkt->daddr[0] == tkey->daddr[0] && pkt->daddr[1] == tkey->daddr[1] &&
	    pkt->daddr[2] == tkey->daddr[2] && pkt->daddr[3] == tkey->daddr[3])
		return -RVS_DROP_PORT_ZERO;
	t = bpf_map_lookup_elem(&rvs_conn, tkey);
	if (!t || !(t->flags & RVS_CONN_F_TEMPLATE))
		return RVS_PERSIST_SCHEDULE;
	w = rvs_conn_word_read(t);
	if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD)
		return -RVS_DROP_CONN_BUSY;
	*dest = NULL;
	if (t->svc_id == svc->id && rvs_persist_live(t, w, svc, now_ns))
		*dest = rvs_conn_dest(t, svc);
	if (*dest && !((*dest)->weight == 0 && rvs_persist_quiescent())) {
		t->last_ns = now_ns;
		__sync_fetch_and_add(&t->nctl, 1);
		*dest_id = t->dest_id;
		*ctag = (__u32)t->created_ns;
		return RVS_OK;
	}
	last = t->last_ns;
	if (!rvs_conn_claim(tkey, t, w, now_ns))
		return -RVS_DROP_CONN_BUSY;
	/* In force with a usable real server, so refused only for its weight 0. */
	if (*dest)
		rvs_persist_invalidate(tkey, w, last);
	return RVS_PERSIST_SCHEDULE;
}

/* Records the scheduler's choice @dest_id (@dest) for @svc's client network in a new template at
 * @tkey (replacing one rvs_persist_find claimed), controlling the caller's connection from the start,
 * and counts it in persistconns. -CONN_FULL if the table refuses it.
 * Mirror: rvs-model/src/persist.rs */
static __always_inline int
rvs_persist_create(const struct rvs_svc_val *svc, const struct rvs_conn_key *tkey, __u64 now_ns,
		   __u32 dest_id, const struct rvs_dest_val *dest, __u32 *ctag)
{
	struct rvs_conn_val val;

	__builtin_memset(&val, 0, sizeof(val));
	val.dest_id = dest_id;
	val.svc_id = svc->id;
	val.created_ns = now_ns;
	val.last_ns = now_ns;
	val.state = RVS_TCP_S_NONE;
	val.flags = RVS_CONN_F_TEMPLATE;
	val.tag = (__u8)(now_ns >> 20);
	val.dest_gen = dest->dgen;
	val.nctl = 1;
	if (bpf_map_update_elem(&rvs_conn, tkey, &val, BPF_ANY))
		return -RVS_DROP_CONN_FULL;
	rvs_conn_bind_template(dest_id);
	*ctag = (__u32)now_ns;
	return RVS_OK;
}

#endif /* RVS_PERSIST_H */
