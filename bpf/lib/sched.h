/* SPDX-License-Identifier: GPL-2.0-only */
/* Scheduler execution. rr and wrr are both a cyclic table that Rust computes in IPVS's order
 * (rvs-core::sched) and writes to the service's region of rvs_sched; the data plane only walks it. */
#ifndef RVS_SCHED_H
#define RVS_SCHED_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/verdict.h"

/* Picks the next real server of @svc: rvs_sched[sched_base + pos++ % sched_len], where pos is the
 * service's cursor in rvs_svc_st. The add is atomic so that all CPUs share one sequence, as IPVS's
 * single cursor does (the exact rr/wrr splits depend on it). RVS_OK with *dest_id and *dest, or
 * -NO_DEST when the table is empty, a slot cannot be read, or the slot names a dest that is not a
 * valid real server of @svc (possible for a moment while the daemon rewrites a table).
 * Mirror: rvs-model/src/sched.rs */
static __always_inline int
rvs_sched_pick(const struct rvs_svc_val *svc, __u32 *dest_id, struct rvs_dest_val **dest)
{
	struct rvs_svc_state *st;
	struct rvs_dest_val *d_val;
	__u32 id = svc->id, slot, len = svc->sched_len;
	__u32 *d;
	__u64 pos;

	if (len == 0)
		return -RVS_DROP_NO_DEST;
	st = bpf_map_lookup_elem(&rvs_svc_st, &id);
	if (!st)
		return -RVS_DROP_NO_DEST;
	pos = __sync_fetch_and_add(&st->pos, 1);
	slot = svc->sched_base + (__u32)(pos % len);
	d = bpf_map_lookup_elem(&rvs_sched, &slot);
	if (!d)
		return -RVS_DROP_NO_DEST;
	id = *d;
	d_val = bpf_map_lookup_elem(&rvs_dest, &id);
	if (!d_val || !(d_val->flags & RVS_DEST_F_VALID) || d_val->svc_id != svc->id)
		return -RVS_DROP_NO_DEST;
	*dest_id = id;
	*dest = d_val;
	return RVS_OK;
}

#endif /* RVS_SCHED_H */
