/* SPDX-License-Identifier: GPL-2.0-only */
/* Forwarding by the kernel's routing table, as a router: the next hop of a NAT packet comes from
 * bpf_fib_lookup (through lib/hooks.h) on its rewritten addresses, not from the daemon, so NAT follows
 * whatever routes and neighbours the director has, on any interface.
 *
 * What the kernel's answer leads to:
 * - SUCCESS: TTL / hop limit decremented (the IPv4 checksum with it), the next hop's MACs written, then
 *   XDP_TX when the route leaves by the ingress interface, else XDP_REDIRECT through rvs_tx_ports.
 * - FWD_DISABLED: dropped (FWD_DISABLED), so that the mistake shows in rvs's counters; the director must
 *   forward (net.ipv4.conf.all.forwarding=1, net.ipv6.conf.all.forwarding=1 for NAT66).
 * - anything else: XDP_PASS of the rewritten packet, for the kernel to forward. NO_NEIGH is the common
 *   case: the kernel resolves the neighbour (ARP/NDP) while it queues the packet, so the first packet
 *   of a connection is never lost and the next ones find the neighbour. No route, unreachable or
 *   prohibited destinations get the kernel's ICMP error; FRAG_NEEDED the kernel's fragmentation or its
 *   ICMP "fragmentation needed" (which quotes the rewritten packet: a known limitation until rvs
 *   handles ICMP itself).
 * - a route through an interface rvs is not attached to (not in rvs_tx_ports): XDP_PASS as well,
 *   bpf_redirect_map's fallback action.
 * An 802.1Q-tagged frame is not looked up: it passes, rewritten, to the kernel. XDP runs on the
 * physical interface (ctx->ingress_ifindex), not on the VLAN device the packet belongs to, so neither
 * the lookup's input interface nor the tag the packet must leave with would be right.
 * A packet that the kernel is to forward keeps its TTL: the kernel decrements it. A TTL or hop limit
 * of 1 or less goes to the kernel too, which drops it and sends the ICMP "time exceeded" a router owes
 * (IPVS's decrement_ttl() does the same in ip_vs_xmit.c).
 *
 * Replies of NAT passed to the kernel carry the virtual address as their source, an address of the
 * director: the kernel forwards them only with net.ipv4.conf.<server-side interface>.accept_local=1
 * (and rp_filter 0 or 2 there), else it drops them as martians.
 * Mirror: rvs-model/src/fwd/fib.rs */
#ifndef RVS_FIB_H
#define RVS_FIB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/verdict.h"
#include "lib/hooks.h"
#include "lib/parse.h"
#include "lib/csum.h"

/* Traffic class and flow label in the first word of an IPv6 header (IPV6_FLOWINFO_MASK). */
#define RVS_IPV6_FLOWINFO_MASK	0x0fffffff

/* Fills @fib for the packet's current headers and returns its TTL (hop limit), or -drop reason.
 * Mirror: rvs-model/src/fwd/fib.rs */
static __always_inline int
rvs_fib_params(struct xdp_md *ctx, const struct rvs_pkt *pkt, struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = pkt->proto;
	fib->sport = pkt->sport;
	fib->dport = pkt->dport;
	fib->tot_len = pkt->ip_len;
	fib->ifindex = ctx->ingress_ifindex;
	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + RVS_L3_OFF(pkt);

		if ((void *)(ip + 1) > data_end)
			return -RVS_DROP_IPV4_SHORT;
		fib->family = RVS_SYS_AF_INET;
		fib->tos = ip->tos;
		fib->ipv4_src = pkt->saddr[0];
		fib->ipv4_dst = pkt->daddr[0];
		return ip->ttl;
	} else {
		struct ipv6hdr *ip6 = data + RVS_L3_OFF(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return -RVS_DROP_IPV6_SHORT;
		fib->family = RVS_SYS_AF_INET6;
		fib->flowinfo = *(__be32 *)ip6 & bpf_htonl(RVS_IPV6_FLOWINFO_MASK);
		__builtin_memcpy(fib->ipv6_src, pkt->saddr, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, pkt->daddr, sizeof(fib->ipv6_dst));
		return ip6->hop_limit;
	}
}

/* Decrements the TTL (IPv4, checksum updated as RFC 1624 does it) or the hop limit (IPv6) of a
 * packet whose TTL rvs_fib_params found above 1.
 * Mirror: rvs-model/src/fwd/fib.rs */
static __always_inline int
rvs_fib_dec_ttl(struct xdp_md *ctx, const struct rvs_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + RVS_L3_OFF(pkt);
		__u16 old;

		if ((void *)(ip + 1) > data_end)
			return -RVS_DROP_IPV4_SHORT;
		/* TTL and protocol share one 16-bit word of the header. */
		old = *(__u16 *)&ip->ttl;
		ip->ttl -= 1;
		rvs_csum_replace2(&ip->check, old, *(__u16 *)&ip->ttl);
	} else {
		struct ipv6hdr *ip6 = data + RVS_L3_OFF(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return -RVS_DROP_IPV6_SHORT;
		ip6->hop_limit -= 1;
	}
	return RVS_OK;
}

/* Sends the packet, rewritten but for its TTL, toward its destination as the routing table says: see
 * the top of this file for each outcome.
 * Mirror: rvs-model/src/fwd/fib.rs */
static __always_inline int
rvs_fib_xmit(struct xdp_md *ctx, const struct rvs_pkt *pkt)
{
	struct bpf_fib_lookup fib;
	void *data, *data_end;
	struct ethhdr *eth;
	int ttl, action, ret;
	long lookup;

	if (pkt->l3_off != ETH_HLEN)
		return XDP_PASS;
	ttl = rvs_fib_params(ctx, pkt, &fib);
	if (ttl < 0)
		return ttl;
	if (ttl <= 1)
		return XDP_PASS;
	lookup = rvs_fib_lookup(ctx, &fib);
	if (lookup == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return -RVS_DROP_FWD_DISABLED;
	if (lookup != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	if (fib.ifindex == ctx->ingress_ifindex)
		action = XDP_TX;
	else
		action = bpf_redirect_map(&rvs_tx_ports, fib.ifindex, XDP_PASS);
	if (action != XDP_TX && action != XDP_REDIRECT)
		return XDP_PASS;
	ret = rvs_fib_dec_ttl(ctx, pkt);
	if (ret != RVS_OK)
		return ret;
	/* Checked by rvs_parse_eth already; the verifier wants it again on this pointer. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -RVS_DROP_ETH_SHORT;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return action;
}

#endif /* RVS_FIB_H */
