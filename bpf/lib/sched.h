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

/* ip_vs_mh_hashkey's input for offset 0: source port (with mh-port) + fold(saddr).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline __u32
rvs_sched_mh_key(const struct rvs_svc_val *svc, const struct rvs_pkt *pkt)
{
	__u32 port = 0;

	if (svc->flags & RVS_SVC_F_SCHED_PORT)
		port = bpf_ntohs(pkt->sport);
	return port + rvs_sched_addr_fold(pkt->saddr, pkt->family);
}

/* The slot offset in @svc's table for a new connection of @pkt: the cursor for rr/wrr (advanced
 * atomically so that all CPUs share one sequence, as IPVS's single cursor does), IPVS's hash for
 * sh (source address, + source port with sh-port), dh (destination address) and mh.
 * -NO_DEST when the cursor cannot be read. @len is not 0.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_index(const struct rvs_svc_val *svc, const struct rvs_pkt *pkt, __u32 len, __u32 *index)
{
	struct rvs_svc_state *st;
	__u32 id = svc->id, port = 0;
	__u64 pos;

	if (svc->flags & RVS_SVC_F_SCHED_PORT)
		port = bpf_ntohs(pkt->sport);
	switch (svc->sched) {
	case RVS_SCHED_SH:
		*index = rvs_sched_hash_32(port + rvs_sched_addr_fold(pkt->saddr, pkt->family), 8) % len;
		return RVS_OK;
	case RVS_SCHED_DH:
		*index = rvs_sched_hash_32(rvs_sched_addr_fold(pkt->daddr, pkt->family), 8) % len;
		return RVS_OK;
	case RVS_SCHED_MH:
		*index = rvs_sched_mh_hash(rvs_sched_mh_key(svc, pkt)) % len;
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
	if (!d_val || d_val->weight == 0)
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
rvs_sched_scan(const struct rvs_svc_val *svc, __u32 *id)
{
	struct rvs_sched_scan s;
	__u64 total;

	__builtin_memset(&s, 0, sizeof(s));
	s.svc = svc;
	if (svc->sched != RVS_SCHED_TWOS) {
		bpf_loop(svc->sched_len, rvs_sched_scan_step, &s, 0);
		if (!s.found)
			return -RVS_DROP_NO_DEST;
		*id = s.id;
		return RVS_OK;
	}
	bpf_loop(svc->sched_len, rvs_sched_twos_sum, &s, 0);
	if (!s.found)
		return -RVS_DROP_NO_DEST;
	/* Random weights in [0, total]: IPVS adds 1 to the total before drawing below it. */
	total = s.total + 1;
	s.r1 = (__s64)(rvs_prandom() % total);
	s.r2 = (__s64)(rvs_prandom() % total);
	s.found = 0;
	bpf_loop(svc->sched_len, rvs_sched_twos_pick, &s, 0);
	if (s.found2 && s.w2 * s.loh > s.lw * s.oh2)
		s.id = s.id2;
	*id = s.id;
	return RVS_OK;
}

/* State of one ip_vs_mh_get_fallback probe sequence, walked by bpf_loop. */
struct rvs_mh_probe {
	const struct rvs_svc_val *svc;
	__u32 v;		/* port + fold(saddr): the hash input without the offset */
	__u32 ihash;		/* the first slot */
	__u32 len;
	__u32 id;		/* out: the dest found */
	struct rvs_dest_val *dest;
};

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

/* State of an rr/wrr walk past unusable slots, walked by bpf_loop. */
struct rvs_rr_probe {
	const struct rvs_svc_val *svc;
	__u32 id;		/* out: the dest found */
	struct rvs_dest_val *dest;
};

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

/* Picks the real server of a new connection of @pkt: rvs_sched[sched_base + index], the index from
 * rvs_sched_index (rr/wrr: pos++ % sched_len, the exact splits depend on the shared cursor). RVS_OK
 * with *dest_id and *dest, or -NO_DEST when the table is empty, a slot cannot be read, or the slot
 * names a dest that is not a valid real server of @svc (RVS_SCHED_NO_DEST, a bucket without a usable
 * real, or for a moment while the daemon rewrites a table).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_pick(const struct rvs_svc_val *svc, const struct rvs_pkt *pkt, __u32 *dest_id,
	       struct rvs_dest_val **dest)
{
	struct rvs_dest_val *d_val;
	__u32 id, slot, index, len = svc->sched_len;
	__u32 *d;
	int ret;

	if (len == 0)
		return -RVS_DROP_NO_DEST;
	if (svc->sched >= RVS_SCHED_LC) {
		ret = rvs_sched_scan(svc, &id);
		if (ret != RVS_OK)
			return ret;
		d_val = rvs_sched_dest(svc, id);
		if (!d_val)
			return -RVS_DROP_NO_DEST;
		*dest_id = id;
		*dest = d_val;
		return RVS_OK;
	}
	ret = rvs_sched_index(svc, pkt, len, &index);
	if (ret != RVS_OK)
		return ret;
	slot = svc->sched_base + index;
	d = bpf_map_lookup_elem(&rvs_sched, &slot);
	if (!d)
		return -RVS_DROP_NO_DEST;
	id = *d;
	d_val = rvs_sched_dest(svc, id);
	if (!d_val && svc->sched == RVS_SCHED_MH && (svc->flags & RVS_SVC_F_SCHED_FALLBACK)) {
		struct rvs_mh_probe p = {
			.svc = svc,
			.v = rvs_sched_mh_key(svc, pkt),
			.ihash = index,
			.len = len,
		};

		bpf_loop(len, rvs_sched_mh_probe, &p, 0);
		id = p.id;
		d_val = p.dest;
	}
	if (!d_val && (svc->sched == RVS_SCHED_RR || svc->sched == RVS_SCHED_WRR)) {
		struct rvs_rr_probe p = { .svc = svc };

		bpf_loop(len - 1, rvs_sched_rr_probe, &p, 0);
		id = p.id;
		d_val = p.dest;
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
 * instructions ran out. It takes what the schedulers read of a packet as scalars: the folded source
 * and destination addresses (rvs_sched_addr_fold) and the source port. A pointer to the caller's
 * packet would make the verifier forget what it proved about the header offsets there (a global
 * function may write what it is given), and a copy would not fit the 512-byte stack. Returns the dest
 * id (>= 0) or a -RVS_DROP_* reason; the caller reads the dest again (a global function returns no
 * pointer).
 * Mirror: rvs-model/src/sched.rs */
__attribute__((noinline)) int
rvs_sched_choose(const struct rvs_svc_val *svc, __u32 sfold, __u32 dfold, __be16 sport)
{
	struct rvs_dest_val *dest;
	struct rvs_pkt p;
	__u32 id = 0;
	int ret;

	if (!svc)
		return -RVS_DROP_NO_DEST;
	/* An IPv4 packet whose addresses fold to the same values: all that sh, dh and mh hash. */
	__builtin_memset(&p, 0, sizeof(p));
	p.saddr[0] = bpf_htonl(sfold);
	p.daddr[0] = bpf_htonl(dfold);
	p.sport = sport;
	p.family = RVS_AF_INET;
	ret = rvs_sched_pick(svc, &p, &id, &dest);
	if (ret != RVS_OK)
		return ret;
	return (int)id;
}

#endif /* RVS_SCHED_H */
