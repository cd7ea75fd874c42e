/* SPDX-License-Identifier: GPL-2.0-only */
/* Firewall marks. XDP runs before netfilter, so no iptables mark exists yet when a packet arrives:
 * rvs defines marks itself, as sets of (protocol, address prefix, destination port range) declared
 * with rvsadm --add-mark, and classifies a packet that matches no service by address. The longest
 * address prefix wins (the encoder copies the ranges of covering prefixes into every entry, so one
 * LPM lookup answers), then the first of its port ranges that holds the destination port. */
#ifndef RVS_MARK_H
#define RVS_MARK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/parse.h"

/* The mark of @pkt (its family, protocol, destination address and port), or 0 when none of the
 * declared matches holds it.
 * Mirror: rvs-model/src/mark.rs */
static __always_inline __u32
rvs_mark_of(const struct rvs_pkt *pkt)
{
	struct rvs_mark_key key;
	struct rvs_mark_val *val;
	__u16 port = bpf_ntohs(pkt->dport);
	__u32 i;

	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = pkt->family == RVS_AF_INET ? 32 + 32 : 32 + 128;
	key.data.family = pkt->family;
	key.data.proto = pkt->proto;
	key.data.addr[0] = pkt->daddr[0];
	key.data.addr[1] = pkt->daddr[1];
	key.data.addr[2] = pkt->daddr[2];
	key.data.addr[3] = pkt->daddr[3];
	val = bpf_map_lookup_elem(&rvs_mark, &key);
	if (!val)
		return 0;
	for (i = 0; i < RVS_MARK_RANGES; i++) {
		if (i >= val->n)
			break;
		if (port >= val->ranges[i].lo && port <= val->ranges[i].hi)
			return val->ranges[i].mark;
	}
	return 0;
}

#endif /* RVS_MARK_H */
