/* SPDX-License-Identifier: GPL-2.0-only */
/* Ethernet (+ one 802.1Q tag), IPv4, IPv6, TCP and UDP parsing into struct rvs_pkt (ICMP and ICMPv6
 * stop after the IP header: lib/icmp.h reads them). The checks run in a fixed
 * order and the model runs them in the same order, so both report the same drop reason for a frame
 * that is wrong in more than one way. */
#ifndef RVS_PARSE_H
#define RVS_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"
#include "lib/verdict.h"

#define RVS_VLAN_HLEN	4
#define RVS_IPV6_HLEN	40	/* the fixed IPv6 header */
#define RVS_IP_MF	0x2000	/* "more fragments" in frag_off, host order */
#define RVS_IP_OFFMASK	0x1fff	/* fragment offset in frag_off, host order */
#define RVS_TCP_FLAGS	13	/* offset of the TCP flags byte */
#define RVS_TCP_FIN	0x01
#define RVS_TCP_SYN	0x02
#define RVS_TCP_RST	0x04
#define RVS_TCP_ACK	0x10

/* What the later stages need to know about a packet. Addresses and ports stay in network order. */
struct rvs_pkt {
	__be32 saddr[4];	/* IPv4 in [0], rest zero */
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u16 l3_off;		/* offset of the IP header in the frame */
	__u16 l4_off;		/* offset of the TCP/UDP (or ICMP) header in the frame */
	__u16 ip_len;		/* IP total length, host order: the unit of the byte counters */
	__u8 proto;		/* IPPROTO_TCP, IPPROTO_UDP, or IPPROTO_ICMP(V6) until lib/icmp.h */
	__u8 family;		/* enum rvs_family */
	__u8 tcp_flags;		/* byte 13 of the TCP header; 0 for UDP */
};

/* The header offsets of a parsed packet, masked so that the verifier can bound them where it does
 * not track the parser's values (a function called rather than inlined reads them back from the
 * caller's stack as any u16): the masks keep every offset the parser gives (IP header at 14 or 18,
 * TCP/UDP header at most 18 + 60), and a packet pointer at a bounded offset passes its checks. */
#define RVS_L3_OFF(pkt)	((__u32)(pkt)->l3_off & 0x1f)
#define RVS_L4_OFF(pkt)	((__u32)(pkt)->l4_off & 0x7f)

/* Finds the network header behind Ethernet and at most one 802.1Q tag. RVS_OK when it is IPv4 or IPv6
 * (sets pkt->l3_off and pkt->family); XDP_PASS for anything else, including a second tag (QinQ).
 * Mirror: rvs-model/src/parse.rs */
static __always_inline int
rvs_parse_eth(void *data, void *data_end, struct rvs_pkt *pkt)
{
	struct ethhdr *eth = data;
	__u16 off = sizeof(*eth);
	__be16 proto;

	if (data + sizeof(*eth) > data_end)
		return -RVS_DROP_ETH_SHORT;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		/* TCI (2 bytes), then the encapsulated EtherType */
		if (data + sizeof(*eth) + RVS_VLAN_HLEN > data_end)
			return -RVS_DROP_ETH_SHORT;
		proto = *(__be16 *)(data + sizeof(*eth) + 2);
		off += RVS_VLAN_HLEN;
	}
	if (proto == bpf_htons(ETH_P_IP))
		pkt->family = RVS_AF_INET;
	else if (proto == bpf_htons(ETH_P_IPV6))
		pkt->family = RVS_AF_INET6;
	else
		return XDP_PASS;
	pkt->l3_off = off;
	return RVS_OK;
}

/* Checks the IPv4 header at pkt->l3_off and fills the addresses, protocol and lengths. In order:
 * fixed header truncated -> IPV4_SHORT; version != 4 or IHL < 5 -> IPV4_BAD; options truncated ->
 * IPV4_SHORT; total length below the header or beyond the frame -> IPV4_BAD; a fragment (MF or an
 * offset) -> XDP_PASS untouched (the stack reassembles; a known limitation); not TCP, UDP or ICMP ->
 * XDP_PASS.
 * Mirror: rvs-model/src/parse.rs */
static __always_inline int
rvs_parse_ipv4(void *data, void *data_end, struct rvs_pkt *pkt)
{
	struct iphdr *ip = data + pkt->l3_off;
	__u32 hlen, tot_len;

	if ((void *)(ip + 1) > data_end)
		return -RVS_DROP_IPV4_SHORT;
	if (ip->version != 4 || ip->ihl < 5)
		return -RVS_DROP_IPV4_BAD;
	hlen = ip->ihl * 4;
	if ((void *)ip + hlen > data_end)
		return -RVS_DROP_IPV4_SHORT;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < hlen || (void *)ip + tot_len > data_end)
		return -RVS_DROP_IPV4_BAD;
	if (bpf_ntohs(ip->frag_off) & (RVS_IP_MF | RVS_IP_OFFMASK))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return XDP_PASS;
	pkt->saddr[0] = ip->saddr;
	pkt->daddr[0] = ip->daddr;
	pkt->proto = ip->protocol;
	pkt->ip_len = tot_len;
	pkt->l4_off = pkt->l3_off + hlen;
	return RVS_OK;
}

/* Checks the fixed IPv6 header at pkt->l3_off and fills the addresses, protocol and lengths. In order:
 * header truncated -> IPV6_SHORT; version != 6 -> IPV6_BAD; payload length beyond the frame ->
 * IPV6_BAD; a next header other than TCP, UDP or ICMPv6 -> XDP_PASS untouched (lib/icmp.h passes
 * every ICMPv6 message it does not handle, neighbour and router discovery included). That covers every
 * extension header (hop-by-hop, routing, fragment,
 * destination options, AH, ESP, ...): rvs does not walk extension headers, so a packet that carries one
 * goes to the stack even when it is addressed to a virtual service (a known limitation, as IPv4
 * fragments; a jumbogram, payload length 0, always carries hop-by-hop). The byte counters count the
 * fixed header and the payload, as IPVS counts skb->len at L3.
 * Mirror: rvs-model/src/parse.rs */
static __always_inline int
rvs_parse_ipv6(void *data, void *data_end, struct rvs_pkt *pkt)
{
	struct ipv6hdr *ip6 = data + pkt->l3_off;
	__u32 plen;

	if ((void *)(ip6 + 1) > data_end)
		return -RVS_DROP_IPV6_SHORT;
	if (ip6->version != 6)
		return -RVS_DROP_IPV6_BAD;
	plen = bpf_ntohs(ip6->payload_len);
	if ((void *)(ip6 + 1) + plen > data_end)
		return -RVS_DROP_IPV6_BAD;
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != IPPROTO_ICMPV6)
		return XDP_PASS;
	__builtin_memcpy(pkt->saddr, &ip6->saddr, sizeof(pkt->saddr));
	__builtin_memcpy(pkt->daddr, &ip6->daddr, sizeof(pkt->daddr));
	pkt->proto = ip6->nexthdr;
	pkt->ip_len = RVS_IPV6_HLEN + plen;
	pkt->l4_off = pkt->l3_off + RVS_IPV6_HLEN;
	return RVS_OK;
}

/* Reads the ports (and TCP flags) at pkt->l4_off. The header must lie inside the IP packet, not just
 * inside the frame (Ethernet padding follows short packets) -> else L4_SHORT.
 * Mirror: rvs-model/src/parse.rs */
static __always_inline int
rvs_parse_l4(void *data, void *data_end, struct rvs_pkt *pkt)
{
	void *l4 = data + pkt->l4_off;
	__u32 hlen = pkt->proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);

	if (pkt->l4_off + hlen > pkt->l3_off + pkt->ip_len)
		return -RVS_DROP_L4_SHORT;
	/* The ip_len check implies the data_end checks below; the verifier needs them on the pointer. */
	if (pkt->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return -RVS_DROP_L4_SHORT;
		pkt->sport = tcp->source;
		pkt->dport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[RVS_TCP_FLAGS];
	} else {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return -RVS_DROP_L4_SHORT;
		pkt->sport = udp->source;
		pkt->dport = udp->dest;
		pkt->tcp_flags = 0;
	}
	return RVS_OK;
}

#endif /* RVS_PARSE_H */
