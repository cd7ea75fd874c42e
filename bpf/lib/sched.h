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

/* A dest of @svc that may take a new connection, or NULL: valid, of @svc, and for a service with
 * mh-fallback (whose table is not filtered) of weight > 0.
 * Mirror: rvs-model/src/sched.rs */
static __always_inline struct rvs_dest_val *
rvs_sched_dest(const struct rvs_svc_val *svc, __u32 id)
{
	struct rvs_dest_val *d_val = bpf_map_lookup_elem(&rvs_dest, &id);

	if (!d_val || !(d_val->flags & RVS_DEST_F_VALID) || d_val->svc_id != svc->id)
		return NULL;
	if ((svc->flags & RVS_SVC_F_SCHED_FALLBACK) && d_val->weight == 0)
		return NULL;
	return d_val;
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
	if (!d_val)
		return -RVS_DROP_NO_DEST;
	*dest_id = id;
	*dest = d_val;
	return RVS_OK;
}

#endif /* RVS_SCHED_H */
