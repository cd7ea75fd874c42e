/* SPDX-License-Identifier: GPL-2.0-only */
/* Scheduler execution. rr and wrr are both a cyclic table that Rust computes in IPVS's order
 * (rvs-core::sched) and writes to the service's region of rvs_sched; the data plane only walks it.
 * sh, dh and mh are lookup tables that Rust computes the same way (availability and sh-fallback folded
 * in); the data plane computes IPVS's hash of the packet and reads the slot it names. mh-fallback is
 * the exception: its probes rehash the address, so the table holds every slot's dest and the data plane
 * checks weights and probes itself (ip_vs_mh_get_fallback). */
#ifndef RVS_SCHED_H
#define RVS_SCHED_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"
#include "lib/hooks.h"
#include "lib/conn.h"

/* The kernel's hash_32(val, bits) (include/linux/hash.h, GOLDEN_RATIO_32 since Linux 4.7).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline __u32
rvs_sched_hash_32(__u32 val, __u32 bits)
{
	return (val * 0x61C88647U) >> (32 - bits);
}

/* ntohl(addr_fold) of ip_vs_{sh,dh,mh}.c: IPv4 in host order, IPv6 as the XOR of its four words
 * (XOR commutes with the byte swap, so folding then swapping is the same).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline __u32
rvs_sched_addr_fold(const __be32 *addr, __u8 family)
{
	if (family == RVS_AF_INET6)
		return bpf_ntohl(addr[0] ^ addr[1] ^ addr[2] ^ addr[3]);
	return bpf_ntohl(addr[0]);
}

#define RVS_SIPROUND(v0, v1, v2, v3)					\
	do {								\
		v0 += v1; v1 = (v1 << 13) | (v1 >> 51); v1 ^= v0;	\
		v0 = (v0 << 32) | (v0 >> 32);				\
		v2 += v3; v3 = (v3 << 16) | (v3 >> 48); v3 ^= v2;	\
		v0 += v3; v3 = (v3 << 21) | (v3 >> 43); v3 ^= v0;	\
		v2 += v1; v1 = (v1 << 17) | (v1 >> 47); v1 ^= v2;	\
		v2 = (v2 << 32) | (v2 >> 32);				\
	} while (0)

/* hsiphash_1u32(@v, key) of a 64-bit kernel (lib/siphash.c: SipHash-1-3 there, truncated to 32 bits)
 * with IPVS mh's first key {2654435761, 2654435761}: what ip_vs_mh_hashkey hashes with offset 0.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline __u32
rvs_sched_mh_hash(__u32 v)
{
	const __u64 k = 2654435761ULL;
	__u64 v0 = 0x736f6d6570736575ULL ^ k, v1 = 0x646f72616e646f6dULL ^ k;
	__u64 v2 = 0x6c7967656e657261ULL ^ k, v3 = 0x7465646279746573ULL ^ k;
	/* One 4-byte message: the last word holds the bytes (little endian) and the length << 56. */
	__u64 b = (__u64)v | (4ULL << 56);

	v3 ^= b;
	RVS_SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	RVS_SIPROUND(v0, v1, v2, v3);
	RVS_SIPROUND(v0, v1, v2, v3);
	RVS_SIPROUND(v0, v1, v2, v3);
	return (__u32)((v0 ^ v1) ^ (v2 ^ v3));
}

/* ip_vs_mh_hashkey's input for offset 0: source port (with mh-port) + fold(saddr) (@sfold).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline __u32
rvs_sched_mh_key(const struct rvs_svc_val *svc, __u32 sfold, __be16 sport)
{
	__u32 port = 0;

	if (svc->flags & RVS_SVC_F_SCHED_PORT)
		port = bpf_ntohs(sport);
	return port + sfold;
}

/* The slot offset in @svc's table for a new connection from a source that folds to @sfold, port
 * @sport, to a destination that folds to @dfold: the cursor for rr/wrr (advanced
 * atomically so that all CPUs share one sequence, as IPVS's single cursor does), IPVS's hash for
 * sh (source address, + source port with sh-port), dh (destination address) and mh.
 * -NO_DEST when the cursor cannot be read. @len is not 0.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_index(const struct rvs_svc_val *svc, __u32 sfold, __u32 dfold, __be16 sport, __u32 len,
		__u32 *index)
{
	struct rvs_svc_state *st;
	__u32 id = svc->id, port = 0;
	__u64 pos;

	if (svc->flags & RVS_SVC_F_SCHED_PORT)
		port = bpf_ntohs(sport);
	switch (svc->sched) {
	case RVS_SCHED_SH:
		*index = rvs_sched_hash_32(port + sfold, 8) % len;
		return RVS_OK;
	case RVS_SCHED_DH:
		*index = rvs_sched_hash_32(dfold, 8) % len;
		return RVS_OK;
	case RVS_SCHED_MH:
		*index = rvs_sched_mh_hash(rvs_sched_mh_key(svc, sfold, sport)) % len;
		return RVS_OK;
	default:
		break;
	}
	st = bpf_map_lookup_elem(&rvs_svc_st, &id);
	if (!st)
		return -RVS_DROP_NO_DEST;
	pos = __sync_fetch_and_add(&st->pos, 1);
	*index = (__u32)(pos % len);
	return RVS_OK;
}

/* Whether real server @id (@d_val) is overloaded (lib/conn.h's rule on its rvs_dest_cnt slot).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_overloaded(__u32 id, const struct rvs_dest_val *d_val)
{
	struct rvs_dest_cnt *cnt;

	if (d_val->u_thresh == 0)
		return 0;
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	return cnt && rvs_conn_overloaded(d_val, cnt);
}

/* A dest of @svc that may take a new connection, or NULL: valid, of @svc, of weight > 0 and not
 * overloaded (IPVS's schedulers all skip weight 0 and OVERLOAD). The hashed tables and wrr's already
 * leave weight 0 out; rr's and mh-fallback's list every dest, so that a weight change leaves the
 * table, and rr's cursor, as they are (ip_vs_rr.c skips a quiesced dest, it does not unlink it).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline struct rvs_dest_val *
rvs_sched_dest(const struct rvs_svc_val *svc, __u32 id)
{
	struct rvs_dest_val *d_val = bpf_map_lookup_elem(&rvs_dest, &id);

	if (!d_val || !(d_val->flags & RVS_DEST_F_VALID) || d_val->svc_id != svc->id)
		return NULL;
	if (d_val->weight == 0)
		return NULL;
	if (rvs_sched_overloaded(id, d_val))
		return NULL;
	return d_val;
}

/* State of one scan of a count-driven scheduler over the service's real servers (bpf_loop). */
struct rvs_sched_scan {
	const struct rvs_svc_val *svc;
	__u32 found;		/* a choice was made */
	__u32 id;		/* the choice (or twos' first) */
	__u64 loh;		/* its overhead */
	__u64 lw;		/* its weight */
	__u64 total;		/* twos: sum of the candidates' weights */
	__s64 r1, r2;		/* twos: the two random weights, counted down */
	__u32 found2;		/* twos: second choice made */
	__u32 id2;
	__u64 oh2, w2;
};

/* State of the lblc/lblcr scans (bpf_loop): is_overloaded's search for a spare server, and lblcr's
 * least and most loaded set members. */
struct rvs_lblc_scan {
	const struct rvs_svc_val *svc;
	struct rvs_lblc_val *en;
	__u32 found;
	__u32 idx;		/* set scans: position of the choice in en->dest */
	__u64 oh;		/* its overhead (active * 256 + inactive) */
	__u64 w;		/* its weight */
};

/* State of one ip_vs_mh_get_fallback probe sequence, walked by bpf_loop. */
struct rvs_mh_probe {
	const struct rvs_svc_val *svc;
	__u32 v;		/* port + fold(saddr): the hash input without the offset */
	__u32 ihash;		/* the first slot */
	__u32 len;
	__u32 id;		/* out: the dest found */
	struct rvs_dest_val *dest;
};

/* State of an rr/wrr walk past unusable slots, walked by bpf_loop. */
struct rvs_rr_probe {
	const struct rvs_svc_val *svc;
	__u32 id;		/* out: the dest found */
	struct rvs_dest_val *dest;
};

/* The scratch space of one scheduling: the scans, probes and rvs_lblc keys are used one after
 * another, so they share one stack slot (rvs_sched_choose's frame sits at the end of the packet
 * path's call chain, where the verifier's 512 bytes are nearly spent). */
union rvs_sched_tmp {
	struct rvs_lblc_key key;	/* lblc/lblcr: built for each map call, the scan overwrites it */
	struct rvs_sched_scan scan;
	struct rvs_lblc_scan lblc;
	struct rvs_mh_probe mh;
	struct rvs_rr_probe rr;
};

/* A candidate of a count-driven scheduler at position @i of @s->svc's table: a real server of the
 * service with weight > 0, not overloaded (weight-0 servers can never win IPVS's comparisons, so
 * skipping them changes no choice). Its weight, active and inactive counts go to the out-arguments.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_candidate(const struct rvs_sched_scan *s, __u64 i, __u32 *id, __u64 *w, __u64 *act,
		    __u64 *inact)
{
	__u32 slot = s->svc->sched_base + (__u32)i;
	struct rvs_dest_val *d_val;
	struct rvs_dest_cnt *cnt;
	__u32 *d = bpf_map_lookup_elem(&rvs_sched, &slot);

	if (!d)
		return 0;
	*id = *d;
	d_val = rvs_sched_dest(s->svc, *id);
	if (!d_val)
		return 0;
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, id);
	if (!cnt)
		return 0;
	*w = d_val->weight;
	*act = cnt->active;
	*inact = cnt->inactive;
	return 1;
}

/* One step of lc, wlc, sed, nq, fo and ovf: IPVS's loop body (ip_vs_{lc,wlc,sed,nq,fo,ovf}.c), the
 * weighted comparisons by cross-multiplication as IPVS does, ties to the earlier server.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_sched_scan_step(__u64 i, void *ctx)
{
	struct rvs_sched_scan *s = ctx;
	__u64 w, act, inact, oh;
	__u32 id;
	int take;

	if (!rvs_sched_candidate(s, i, &id, &w, &act, &inact))
		return 0;
	switch (s->svc->sched) {
	case RVS_SCHED_LC:
		oh = (act << 8) + inact;
		take = !s->found || oh < s->loh;
		break;
	case RVS_SCHED_WLC:
	/* __ip_vs_lblc_schedule and __ip_vs_lblcr_schedule are wlc's loop. */
	case RVS_SCHED_LBLC:
	case RVS_SCHED_LBLCR:
		oh = (act << 8) + inact;
		take = !s->found || s->loh * w > oh * s->lw;
		break;
	case RVS_SCHED_NQ:
		oh = act + 1;
		if (act == 0) {
			s->found = 1;
			s->id = id;
			return 1;
		}
		take = !s->found || s->loh * w > oh * s->lw;
		break;
	case RVS_SCHED_SED:
		oh = act + 1;
		take = !s->found || s->loh * w > oh * s->lw;
		break;
	case RVS_SCHED_FO:
		oh = 0;
		take = w > s->lw;
		break;
	case RVS_SCHED_OVF:
		oh = 0;
		take = act <= w && (!s->found || w > s->lw);
		break;
	default:
		return 1;
	}
	if (take) {
		s->found = 1;
		s->id = id;
		s->loh = oh;
		s->lw = w;
	}
	return 0;
}

/* twos' first pass: the total weight of the candidates.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_sched_twos_sum(__u64 i, void *ctx)
{
	struct rvs_sched_scan *s = ctx;
	__u64 w, act, inact;
	__u32 id;

	if (rvs_sched_candidate(s, i, &id, &w, &act, &inact)) {
		s->total += w;
		s->found = 1;
		s->id = id;
	}
	return 0;
}

/* twos' second pass (ip_vs_twos.c): each random weight, counted down by the candidates' weights in
 * list order, names the candidate where it reaches zero.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_sched_twos_pick(__u64 i, void *ctx)
{
	struct rvs_sched_scan *s = ctx;
	__u64 w, act, inact;
	__u32 id;

	if (!rvs_sched_candidate(s, i, &id, &w, &act, &inact))
		return 0;
	s->r1 -= (__s64)w;
	s->r2 -= (__s64)w;
	if (s->r1 <= 0 && !s->found) {
		s->found = 1;
		s->id = id;
		s->lw = w;
		s->loh = (act << 8) + inact;
	}
	if (s->r2 <= 0 && !s->found2) {
		s->found2 = 1;
		s->id2 = id;
		s->w2 = w;
		s->oh2 = (act << 8) + inact;
	}
	return s->found && s->found2;
}

/* The choice of a count-driven scheduler for @svc, whose table lists its real servers in IPVS's
 * order: RVS_OK with *id, or -NO_DEST when no server is available (IPVS: "no destination available").
 * Two CPUs scheduling at once may both see the same counts and choose the same server, as two IPVS
 * CPUs do.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_scan(const struct rvs_svc_val *svc, union rvs_sched_tmp *t, __u32 *id)
{
	struct rvs_sched_scan *s = &t->scan;
	__u64 total;

	__builtin_memset(s, 0, sizeof(*s));
	s->svc = svc;
	if (svc->sched != RVS_SCHED_TWOS) {
		bpf_loop(svc->sched_len, rvs_sched_scan_step, s, 0);
		if (!s->found)
			return -RVS_DROP_NO_DEST;
		*id = s->id;
		return RVS_OK;
	}
	bpf_loop(svc->sched_len, rvs_sched_twos_sum, s, 0);
	if (!s->found)
		return -RVS_DROP_NO_DEST;
	/* Random weights in [0, total]: IPVS adds 1 to the total before drawing below it. */
	total = s->total + 1;
	s->r1 = (__s64)(rvs_prandom() % total);
	s->r2 = (__s64)(rvs_prandom() % total);
	s->found = 0;
	bpf_loop(svc->sched_len, rvs_sched_twos_pick, s, 0);
	if (s->found2 && s->w2 * s->loh > s->lw * s->oh2)
		s->id = s->id2;
	*id = s->id;
	return RVS_OK;
}

/* IPVS's AVAILABLE for a real server an lblc/lblcr entry names: still a real server of @svc, and the
 * one the entry meant (a deleted server's id may have been given to another; dgen tells).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline struct rvs_dest_val *
rvs_lblc_member(const struct rvs_svc_val *svc, __u32 id, __u32 dgen)
{
	struct rvs_dest_val *d = bpf_map_lookup_elem(&rvs_dest, &id);

	if (!d || !(d->flags & RVS_DEST_F_VALID) || d->svc_id != svc->id || d->dgen != dgen)
		return NULL;
	return d;
}

/* One real server of is_overloaded's loop (ip_vs_lblc.c): one whose active connections are fewer than
 * half its weight. Every real server of the service counts, overloaded (-x) ones too, as in IPVS.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_lblc_spare_step(__u64 i, void *ctx)
{
	struct rvs_lblc_scan *s = ctx;
	__u32 slot = s->svc->sched_base + (__u32)i, id;
	struct rvs_dest_val *d;
	struct rvs_dest_cnt *cnt;
	__u32 *p = bpf_map_lookup_elem(&rvs_sched, &slot);

	if (!p)
		return 0;
	id = *p;
	d = bpf_map_lookup_elem(&rvs_dest, &id);
	if (!d || !(d->flags & RVS_DEST_F_VALID) || d->svc_id != s->svc->id)
		return 0;
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	if (cnt && (__u64)cnt->active * 2 < d->weight) {
		s->found = 1;
		return 1;
	}
	return 0;
}

/* IPVS's is_overloaded of lblc and lblcr: @d (id @id) has more active connections than its weight and
 * another real server of @svc has fewer than half its own. Not the -x OVERLOAD flag: a cached server
 * over its threshold is still used, as in IPVS.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_lblc_overloaded(const struct rvs_svc_val *svc, __u32 id, const struct rvs_dest_val *d,
		    union rvs_sched_tmp *t)
{
	struct rvs_dest_cnt *cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);

	if (!cnt || cnt->active <= d->weight)
		return 0;
	__builtin_memset(&t->lblc, 0, sizeof(t->lblc));
	t->lblc.svc = svc;
	bpf_loop(svc->sched_len, rvs_lblc_spare_step, &t->lblc, 0);
	return t->lblc.found;
}

/* Member @i of an lblcr set for ip_vs_dest_set_min: skipped when its server is gone or overloaded
 * (-x), the first of weight > 0 taken, then any that is less loaded by IPVS's cross-multiplication.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_lblcr_min_step(__u64 i, void *ctx)
{
	struct rvs_lblc_scan *s = ctx;
	struct rvs_dest_val *d;
	struct rvs_dest_cnt *cnt;
	__u32 id;
	__u64 oh;

	if (i >= RVS_LBLCR_SET_MAX)
		return 1;
	id = s->en->dest[i].id;
	d = rvs_lblc_member(s->svc, id, s->en->dest[i].dgen);
	if (!d)
		return 0;
	/* rvs_sched_overloaded on the counters read once (the callback's stack is at the chain's end). */
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	if (!cnt || (d->u_thresh && rvs_conn_overloaded(d, cnt)))
		return 0;
	oh = ((__u64)cnt->active << 8) + cnt->inactive;
	if (s->found ? s->oh * d->weight > oh * s->w : d->weight > 0) {
		s->found = 1;
		s->idx = (__u32)i;
		s->oh = oh;
		s->w = d->weight;
	}
	return 0;
}

/* Member @i of an lblcr set for ip_vs_dest_set_max: the first of weight > 0, then any more loaded one
 * of weight > 0. A member whose real server was deleted is taken at once: rvs no longer knows its
 * weight and counts (IPVS keeps the server in its trash and compares it), and a set has room for
 * only RVS_LBLCR_SET_MAX members.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_lblcr_max_step(__u64 i, void *ctx)
{
	struct rvs_lblc_scan *s = ctx;
	struct rvs_dest_val *d;
	struct rvs_dest_cnt *cnt;
	__u32 id;
	__u64 oh;

	if (i >= RVS_LBLCR_SET_MAX)
		return 1;
	id = s->en->dest[i].id;
	d = rvs_lblc_member(s->svc, id, s->en->dest[i].dgen);
	if (!d) {
		s->found = 1;
		s->idx = (__u32)i;
		return 1;
	}
	cnt = bpf_map_lookup_elem(&rvs_dest_cnt, &id);
	if (!cnt || d->weight == 0)
		return 0;
	oh = ((__u64)cnt->active << 8) + cnt->inactive;
	if (!s->found || s->oh * d->weight < oh * s->w) {
		s->found = 1;
		s->idx = (__u32)i;
		s->oh = oh;
		s->w = d->weight;
	}
	return 0;
}

/* Removes member @idx of @en's set (ip_vs_dest_set_erase), keeping the others' order. Written in
 * place: a CPU reading the set meanwhile may see a member twice or miss one for a moment, which
 * changes at most that one choice (IPVS's readers see its RCU list whole).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline void
rvs_lblcr_erase(struct rvs_lblc_val *en, __u32 idx, __u64 now)
{
	__u32 i;

	for (i = 0; i + 1 < RVS_LBLCR_SET_MAX; i++) {
		if (i >= idx && i + 1 < en->n)
			en->dest[i] = en->dest[i + 1];
	}
	if (en->n > 0)
		en->n--;
	en->lastmod_ns = now;
}

/* Adds real server @id (generation @dgen) at the head of @en's set unless it is a member
 * (ip_vs_dest_set_insert with check). A full set loses its oldest member (IPVS's set has no bound).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline void
rvs_lblcr_insert(struct rvs_lblc_val *en, __u32 id, __u32 dgen, __u64 now)
{
	__u32 i, n = en->n;

	for (i = 0; i < RVS_LBLCR_SET_MAX; i++) {
		if (i < n && en->dest[i].id == id && en->dest[i].dgen == dgen)
			return;
	}
	if (n >= RVS_LBLCR_SET_MAX)
		n = RVS_LBLCR_SET_MAX - 1;
	for (i = RVS_LBLCR_SET_MAX - 1; i > 0; i--) {
		if (i <= n)
			en->dest[i] = en->dest[i - 1];
	}
	en->dest[0].id = id;
	en->dest[0].dgen = dgen;
	en->n = n + 1;
	en->lastmod_ns = now;
}

/* Writes the rvs_lblc key of @svc and destination @daddr (family @family) to @k.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline void
rvs_lblc_key_fill(struct rvs_lblc_key *k, const struct rvs_svc_val *svc, __u8 family,
		  const struct rvs_addr *daddr)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->addr, daddr->a, sizeof(k->addr));
	k->svc_id = svc->id;
	k->family = family;
}

/* The value a new rvs_lblc entry starts from: zero, in .rodata rather than on the stack, whose 512
 * bytes the scheduler's call chain already uses. */
static const struct rvs_lblc_val rvs_lblc_zero;

/* A new entry for @key naming @id (ip_vs_lblc_new, ip_vs_lblcr_new), created zero and then filled in
 * place. If the map is full the choice stands unremembered, as in IPVS when it cannot allocate one.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline void
rvs_lblc_new(const struct rvs_lblc_key *key, __u32 id, __u32 dgen, __u64 now)
{
	struct rvs_lblc_val *v;

	if (bpf_map_update_elem(&rvs_lblc, key, &rvs_lblc_zero, BPF_ANY))
		return;
	v = bpf_map_lookup_elem(&rvs_lblc, key);
	if (!v)
		return;
	v->lastuse_ns = now;
	v->lastmod_ns = now;
	v->dest[0].id = id;
	v->dest[0].dgen = dgen;
	v->n = 1;
}

/* The remembered part of lblc and lblcr for the entry @en: IPVS's choice from it (lblc: its real
 * server if available, of weight > 0; lblcr: the set's least loaded, after the set lost its most
 * loaded member if it has not changed for lblcr_expiration), unless that server is lblc-overloaded.
 * 1 with *id, or 0 to schedule by wlc. lastuse is written on every lookup, as IPVS does without a
 * lock.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_lblc_hit(const struct rvs_svc_val *svc, struct rvs_lblc_val *en, union rvs_sched_tmp *t,
	     __u32 *id)
{
	struct rvs_lblc_scan *s = &t->lblc;
	struct rvs_dest_val *d = NULL;
	struct rvs_cfg *cfg;
	__u32 zero = 0, idx;

	en->lastuse_ns = rvs_now_ns();
	if (svc->sched == RVS_SCHED_LBLC) {
		*id = en->dest[0].id;
		d = rvs_lblc_member(svc, *id, en->dest[0].dgen);
		if (d && d->weight == 0)
			d = NULL;
	} else {
		__builtin_memset(s, 0, sizeof(*s));
		s->svc = svc;
		s->en = en;
		bpf_loop(en->n, rvs_lblcr_min_step, s, 0);
		idx = s->idx;
		if (s->found && idx < RVS_LBLCR_SET_MAX) {
			*id = en->dest[idx].id;
			d = bpf_map_lookup_elem(&rvs_dest, id);
		}
		cfg = bpf_map_lookup_elem(&rvs_cfg, &zero);
		/* time_after(jiffies, lastmod + expiration): strictly after. */
		if (cfg && en->n > 1 &&
		    en->lastuse_ns > en->lastmod_ns + (__u64)cfg->lblcr_exp_s * 1000000000ULL) {
			s->found = 0;
			bpf_loop(en->n, rvs_lblcr_max_step, s, 0);
			if (s->found)
				rvs_lblcr_erase(en, s->idx, en->lastuse_ns);
		}
	}
	return d && !rvs_lblc_overloaded(svc, *id, d, t);
}

/* Remembers wlc's choice @id for the entry of @key (ip_vs_lblc_new, ip_vs_dest_set_insert,
 * ip_vs_lblcr_new): a new entry, lblcr's set gains it, lblc's entry names it instead.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline void
rvs_lblc_remember(const struct rvs_svc_val *svc, const struct rvs_lblc_key *key, __u32 id)
{
	struct rvs_dest_val *d = bpf_map_lookup_elem(&rvs_dest, &id);
	struct rvs_lblc_val *en;

	if (!d)
		return;
	en = bpf_map_lookup_elem(&rvs_lblc, key);
	if (!en) {
		rvs_lblc_new(key, id, d->dgen, rvs_now_ns());
	} else if (svc->sched == RVS_SCHED_LBLCR) {
		rvs_lblcr_insert(en, id, d->dgen, rvs_now_ns());
	} else {
		/* ip_vs_lblc_new over an entry naming another server replaces it (lastuse is now). */
		en->dest[0].id = id;
		en->dest[0].dgen = d->dgen;
		en->n = 1;
	}
}

/* lblc and lblcr (ip_vs_lblc_schedule, ip_vs_lblcr_schedule): the real server remembered for the
 * packet's destination address @daddr, if it is usable, else wlc's choice, remembered. RVS_OK with
 * *id, or -NO_DEST. The key is built again after the scan, which shares its stack slot.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_lblc(const struct rvs_svc_val *svc, __u8 family, const struct rvs_addr *daddr,
	       union rvs_sched_tmp *t, __u32 *id)
{
	struct rvs_lblc_val *en;
	int ret;

	rvs_lblc_key_fill(&t->key, svc, family, daddr);
	en = bpf_map_lookup_elem(&rvs_lblc, &t->key);
	if (en && rvs_lblc_hit(svc, en, t, id))
		return RVS_OK;
	ret = rvs_sched_scan(svc, t, id);
	if (ret != RVS_OK)
		return ret;
	rvs_lblc_key_fill(&t->key, svc, family, daddr);
	rvs_lblc_remember(svc, &t->key, *id);
	return RVS_OK;
}

/* Probe @k of ip_vs_mh_get_fallback: slot hsiphash(((k + ihash) % len) + v) % len; stops (returns 1)
 * at the first usable dest or at a slot that cannot be read.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_sched_mh_probe(__u64 k, void *ctx)
{
	struct rvs_mh_probe *p = ctx;
	__u32 roffset = (__u32)((k + p->ihash) % p->len);
	__u32 slot = p->svc->sched_base + rvs_sched_mh_hash(roffset + p->v) % p->len;
	__u32 *d = bpf_map_lookup_elem(&rvs_sched, &slot);

	if (!d)
		return 1;
	p->dest = rvs_sched_dest(p->svc, *d);
	if (p->dest) {
		p->id = *d;
		return 1;
	}
	return 0;
}

/* One more step of the shared cursor of rr/wrr: IPVS moves on to the next available server in its
 * sequence when one is overloaded, and the cursor passes the skipped position, as here. Stops (returns
 * 1) at the first usable dest or at a cursor or slot that cannot be read.
 * Mirror: rvs-model/src/sched.rs */
static long
rvs_sched_rr_probe(__u64 k __attribute__((unused)), void *ctx)
{
	struct rvs_rr_probe *p = ctx;
	struct rvs_svc_state *st;
	__u32 id = p->svc->id, slot, *d;

	st = bpf_map_lookup_elem(&rvs_svc_st, &id);
	if (!st || p->svc->sched_len == 0)
		return 1;
	slot = p->svc->sched_base + (__u32)(__sync_fetch_and_add(&st->pos, 1) % p->svc->sched_len);
	d = bpf_map_lookup_elem(&rvs_sched, &slot);
	if (!d)
		return 1;
	p->dest = rvs_sched_dest(p->svc, *d);
	if (p->dest) {
		p->id = *d;
		return 1;
	}
	return 0;
}

/* Picks the real server of a new connection (source fold @sfold, port @sport, destination @daddr of
 * @family): lblc/lblcr's (rvs_sched_lblc), a count-driven scheduler's scan, or
 * rvs_sched[sched_base + index], the index from rvs_sched_index (rr/wrr: pos++ % sched_len, the
 * exact splits depend on the shared cursor). RVS_OK
 * with *dest_id and *dest, or -NO_DEST when the table is empty, a slot cannot be read, or the slot
 * names a dest that is not a valid real server of @svc (RVS_SCHED_NO_DEST, a bucket without a usable
 * real, or for a moment while the daemon rewrites a table).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_pick(const struct rvs_svc_val *svc, __u32 sfold, __be16 sport, __u8 family,
	       const struct rvs_addr *daddr, union rvs_sched_tmp *t, __u32 *dest_id,
	       struct rvs_dest_val **dest)
{
	struct rvs_dest_val *d_val;
	__u32 id, slot, index, len = svc->sched_len;
	__u32 *d;
	int ret;

	if (len == 0)
		return -RVS_DROP_NO_DEST;
	if (svc->sched == RVS_SCHED_LBLC || svc->sched == RVS_SCHED_LBLCR) {
		ret = rvs_sched_lblc(svc, family, daddr, t, &id);
		if (ret != RVS_OK)
			return ret;
		/* The remembered server need not pass rvs_sched_dest: IPVS uses it over its -x. */
		d_val = bpf_map_lookup_elem(&rvs_dest, &id);
		if (!d_val)
			return -RVS_DROP_NO_DEST;
		*dest_id = id;
		*dest = d_val;
		return RVS_OK;
	}
	if (svc->sched >= RVS_SCHED_LC) {
		ret = rvs_sched_scan(svc, t, &id);
		if (ret != RVS_OK)
			return ret;
		d_val = rvs_sched_dest(svc, id);
		if (!d_val)
			return -RVS_DROP_NO_DEST;
		*dest_id = id;
		*dest = d_val;
		return RVS_OK;
	}
	ret = rvs_sched_index(svc, sfold, rvs_sched_addr_fold(daddr->a, family), sport, len, &index);
	if (ret != RVS_OK)
		return ret;
	slot = svc->sched_base + index;
	d = bpf_map_lookup_elem(&rvs_sched, &slot);
	if (!d)
		return -RVS_DROP_NO_DEST;
	id = *d;
	d_val = rvs_sched_dest(svc, id);
	if (!d_val && svc->sched == RVS_SCHED_MH && (svc->flags & RVS_SVC_F_SCHED_FALLBACK)) {
		struct rvs_mh_probe *p = &t->mh;

		__builtin_memset(p, 0, sizeof(*p));
		p->svc = svc;
		p->v = rvs_sched_mh_key(svc, sfold, sport);
		p->ihash = index;
		p->len = len;
		bpf_loop(len, rvs_sched_mh_probe, p, 0);
		id = p->id;
		d_val = p->dest;
	}
	if (!d_val && (svc->sched == RVS_SCHED_RR || svc->sched == RVS_SCHED_WRR)) {
		struct rvs_rr_probe *p = &t->rr;

		__builtin_memset(p, 0, sizeof(*p));
		p->svc = svc;
		bpf_loop(len - 1, rvs_sched_rr_probe, p, 0);
		id = p->id;
		d_val = p->dest;
	}
	if (!d_val)
		return -RVS_DROP_NO_DEST;
	*dest_id = id;
	*dest = d_val;
	return RVS_OK;
}

/* rvs_sched_pick as a function of its own (a BPF global function): the verifier checks it once, with
 * its arguments' types, instead of at every path of the packet path that schedules; inlined, the
 * scheduler's branches multiplied with the packet path's until the verifier's budget of a million
 * instructions ran out. It takes what the schedulers read of a packet: the folded source address
 * (rvs_sched_addr_fold), the source port and the family as scalars, and the destination address by
 * pointer (lblc and lblcr key on the whole address; dh folds it). A pointer to the caller's whole
 * packet would make the verifier forget what it proved about the header offsets there (a global
 * function may write what it is given; the address's 16 bytes hold no offset), and a copy would not
 * fit the 512-byte stack. Returns the dest
 * id (>= 0) or a -RVS_DROP_* reason; the caller reads the dest again (a global function returns no
 * pointer).
 * Mirror: rvs-model/src/sched.rs */
__attribute__((noinline)) int
rvs_sched_choose(const struct rvs_svc_val *svc, __u32 sfold, __be16 sport, __u8 family,
		 const struct rvs_addr *daddr)
{
	union rvs_sched_tmp t;
	struct rvs_dest_val *dest;
	__u32 id = 0;
	int ret;

	if (!svc || !daddr)
		return -RVS_DROP_NO_DEST;
	ret = rvs_sched_pick(svc, sfold, sport, family, daddr, &t, &id, &dest);
	if (ret != RVS_OK)
		return ret;
	return (int)id;
}

#endif /* RVS_SCHED_H */
