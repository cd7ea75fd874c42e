/* SPDX-License-Identifier: GPL-2.0-only */
/* Per-CPU counters: service and real-server statistics (IPVS's conns, in/out packets and bytes) and
 * drops by reason. Per-CPU values need no atomics; user space sums the CPUs. */
#ifndef RVS_STATS_H
#define RVS_STATS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"

/* Counts one drop of @reason and returns XDP_DROP: the only place the program drops a packet.
 * Mirror: rvs-model/src/stats.rs */
static __always_inline int
rvs_stats_drop(__u32 reason)
{
	__u64 *cnt = bpf_map_lookup_elem(&rvs_drops, &reason);

	if (cnt)
		*cnt += 1;
	return XDP_DROP;
}

/* Counts a newly scheduled connection on its service and real server.
 * Mirror: rvs-model/src/stats.rs */
static __always_inline void
rvs_stats_conn(__u32 svc_id, __u32 dest_id)
{
	struct rvs_stats *st;

	st = bpf_map_lookup_elem(&rvs_svc_stats, &svc_id);
	if (st)
		st->conns += 1;
	st = bpf_map_lookup_elem(&rvs_dest_stats, &dest_id);
	if (st)
		st->conns += 1;
}

/* Counts a forwarded client packet of @bytes (IP total length, as IPVS counts skb->len at L3).
 * Mirror: rvs-model/src/stats.rs */
static __always_inline void
rvs_stats_in(__u32 svc_id, __u32 dest_id, __u32 bytes)
{
	struct rvs_stats *st;

	st = bpf_map_lookup_elem(&rvs_svc_stats, &svc_id);
	if (st) {
		st->inpkts += 1;
		st->inbytes += bytes;
	}
	st = bpf_map_lookup_elem(&rvs_dest_stats, &dest_id);
	if (st) {
		st->inpkts += 1;
		st->inbytes += bytes;
	}
}

/* Counts a forwarded reply of a real server (NAT) of @bytes.
 * Mirror: rvs-model/src/stats.rs */
static __always_inline void
rvs_stats_out(__u32 svc_id, __u32 dest_id, __u32 bytes)
{
	struct rvs_stats *st;

	st = bpf_map_lookup_elem(&rvs_svc_stats, &svc_id);
	if (st) {
		st->outpkts += 1;
		st->outbytes += bytes;
	}
	st = bpf_map_lookup_elem(&rvs_dest_stats, &dest_id);
	if (st) {
		st->outpkts += 1;
		st->outbytes += bytes;
	}
}

#endif /* RVS_STATS_H */
