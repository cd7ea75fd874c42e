/* SPDX-License-Identifier: GPL-2.0-only */
/* VS/DR: hand the unchanged IP packet to the real server's MAC. */
#ifndef RVS_DR_H
#define RVS_DR_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "lib/verdict.h"

/* Rewrites the Ethernet addresses (dst := dest->dmac, src := dest->smac; a VLAN tag and the IP packet
 * stay as they are) and sends the frame back out of the ingress interface (XDP_TX) or to
 * dest->ifindex (bpf_redirect). -NO_NEIGH while the daemon has not resolved the real server's MAC.
 * Mirror: rvs-model/src/fwd/dr.rs */
static __always_inline int
rvs_dr_xmit(struct xdp_md *ctx, const struct rvs_dest_val *dest)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (!(dest->flags & RVS_DEST_F_NEIGH))
		return -RVS_DROP_NO_NEIGH;
	/* Checked by rvs_parse_eth already; the verifier wants it again on this pointer. */
	if ((void *)(eth + 1) > data_end)
		return -RVS_DROP_ETH_SHORT;
	__builtin_memcpy(eth->h_dest, dest->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dest->smac, ETH_ALEN);
	if (dest->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(dest->ifindex, 0);
}

#endif /* RVS_DR_H */
