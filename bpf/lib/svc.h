/* SPDX-License-Identifier: GPL-2.0-only */
/* Virtual service lookup. */
#ifndef RVS_SVC_H
#define RVS_SVC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/parse.h"
#include "lib/mark.h"

/* The service that @pkt is addressed to: the one of its (daddr, dport, proto, family), else the
 * port-0 service of (daddr, proto, family), else the firewall-mark service of its mark (lib/mark.h)
 * and family, else NULL. The key is zeroed first: the
 * hash compares all 20 bytes, and IPv4 leaves addr[1..3] unused. A connection of a mark service is
 * keyed by the packet's own tuple like any other (lib/conn.h), so each of its packets finds the
 * service the same way.
 * Mirror: rvs-model/src/svc.rs */
static __always_inline struct rvs_svc_val *
rvs_svc_lookup(const struct rvs_pkt *pkt)
{
	struct rvs_svc_val *svc;
	struct rvs_svc_key key;
	struct rvs_cfg *cfg;
	__u32 mark, zero = 0;

	__builtin_memset(&key, 0, sizeof(key));
	key.addr[0] = pkt->daddr[0];
	key.addr[1] = pkt->daddr[1];
	key.addr[2] = pkt->daddr[2];
	key.addr[3] = pkt->daddr[3];
	key.port = pkt->dport;
	key.proto = pkt->proto;
	key.family = pkt->family;
	svc = bpf_map_lookup_elem(&rvs_svc, &key);
	if (svc)
		return svc;
	/* IPVS's catch-all: the port-0 service of the address (useful only persistent; the encoder
	 * gives a non-persistent one no real server, as IPVS refuses to schedule it). Looked up only
	 * when one exists (rvs_cfg says so in one array read): a second hash lookup on every packet to
	 * no service costs about 20 ns. */
	cfg = bpf_map_lookup_elem(&rvs_cfg, &zero);
	if (cfg && (cfg->flags & RVS_CFG_F_PORT0)) {
		key.port = 0;
		svc = bpf_map_lookup_elem(&rvs_svc, &key);
		if (svc)
			return svc;
	}
	mark = rvs_mark_of(pkt);
	if (!mark)
		return NULL;
	__builtin_memset(&key, 0, sizeof(key));
	key.addr[0] = mark;
	key.proto = RVS_SVC_PROTO_FWMARK;
	key.family = pkt->family;
	return bpf_map_lookup_elem(&rvs_svc, &key);
}

#endif /* RVS_SVC_H */
