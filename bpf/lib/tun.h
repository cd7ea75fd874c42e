/* SPDX-License-Identifier: GPL-2.0-only */
/* VS/TUN: the client's IP packet, unchanged, inside an outer IP header from the director to the real
 * server, as IPVS's ip_vs_tunnel_xmit(_v6) builds it: IPv4-in-IPv4 (protocol 4, as Linux ipip), IPv6 in
 * IPv6 (next header 41, as ip6_tunnel), and the mixed pairs IPVS also allows. The real server strips the
 * outer header (its ipip/ip6tnl device, or bpf/rvs_decap.c) and answers the client directly.
 *
 * When the encapsulated packet would exceed the MTU toward the real server, the director answers the
 * client the way IPVS's ensure_mtu_is_adequate() does: ICMP "fragmentation needed" for an IPv4 packet
 * with DF, ICMPv6 "packet too big" for IPv6, carrying the MTU minus the outer header, so that path MTU
 * discovery works through the tunnel. The reply is built in place and leaves by the ingress interface.
 *
 * Byte order: checksums are summed over 16-bit words loaded in host order; the one's-complement sum is
 * byte-order independent (RFC 1071 2.B), so the folded result stored in host order is the checksum in
 * network order. Values added to a sum that are not loaded from a header go through bpf_htons().
 * Mirror: rvs-model/src/fwd/tun.rs */
#ifndef RVS_TUN_H
#define RVS_TUN_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"
#include "lib/verdict.h"
#include "lib/hooks.h"
#include "lib/parse.h"

#define RVS_TUN_IPV4_HLEN	20	/* outer IPv4 header: never options */
#define RVS_TUN_IPV6_HLEN	40	/* outer IPv6 header: never extension headers */
#define RVS_TUN_ICMP_HLEN	8	/* ICMP and ICMPv6 error header */
#define RVS_TUN_L2_MAX		(ETH_HLEN + RVS_VLAN_HLEN)
/* Quoted bytes of the packet that was too big: as much as fits in 576 bytes for ICMP (RFC 1812 4.3.2.3;
 * Linux's icmp_send() does the same), in 1280 for ICMPv6 (RFC 4443 2.4 (c), a MUST). Both cover the
 * minimum RFC 792 asks for (the IP header + 64 bits). */
#define RVS_TUN_ICMP4_QUOTE	(576 - RVS_TUN_IPV4_HLEN - RVS_TUN_ICMP_HLEN)
#define RVS_TUN_ICMP6_QUOTE	(1280 - RVS_TUN_IPV6_HLEN - RVS_TUN_ICMP_HLEN)
/* Smallest MTU a host must accept: RFC 791 (68), RFC 8200 5 (1280). IPVS refuses to tunnel toward a
 * route whose inner MTU is below them (__ip_vs_get_out_rt*); rvs still sends what fits and drops the
 * rest as TOO_BIG, because a smaller MTU cannot be signalled. */
#define RVS_TUN_IPV4_MIN_MTU	68
#define RVS_TUN_IPV6_MIN_MTU	1280
#define RVS_TUN_ICMP_TTL	64	/* Linux's default TTL and hop limit for its own ICMP errors */
#define RVS_TUN_IP_DF		0x4000	/* "don't fragment" in frag_off, host order */
#define RVS_TUN_ECN_MASK	0x03
#define RVS_TUN_ECN_ECT0	0x02
#define RVS_TUN_ECN_CE		0x03
/* TOS of our ICMP errors: precedence 6, "internetwork control" (CS6), as Linux gives its own; no ECN
 * bits, ICMP not being an ECN-capable transport. */
#define RVS_TUN_ICMP_TOS	0xc0
#define RVS_TUN_FLOWLABEL_MASK	0xfffff
#define RVS_TUN_HASH_MUL	0x9e3779b1U	/* 2^32 / golden ratio (Fibonacci hashing) */
#define RVS_TUN_ICMP_DEST_UNREACH	3
#define RVS_TUN_ICMP_FRAG_NEEDED	4
#define RVS_TUN_ICMPV6_PKT_TOOBIG	2
/* The frame-walking checksum loop is bounded by the longest ICMP message it sums. */
#define RVS_TUN_CSUM_WORDS	((RVS_TUN_ICMP_HLEN + RVS_TUN_ICMP6_QUOTE) / 2)

/* The header of an ICMP or ICMPv6 error (<linux/icmp.h> pulls in libc headers that do not build for
 * the BPF target). @info is the MTU for both of ours: ICMP's "fragmentation needed" keeps it in the low
 * 16 bits (RFC 1191), ICMPv6's "packet too big" in all 32. */
struct rvs_tun_icmp {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 info;
};

/* The outer header's DS field: the inner one with its ECN field copied, except that CE becomes ECT(0)
 * (INET_ECN_encapsulate(), RFC 6040 4.1 "normal mode"): a congestion mark from before the tunnel stays
 * in the inner header, where the real server reads it, and the outer one only tells the tunnel's routers
 * that the packet is ECN-capable.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u8
rvs_tun_dsfield(__u8 inner)
{
	__u8 ecn = inner & RVS_TUN_ECN_MASK;

	if (ecn == RVS_TUN_ECN_CE)
		ecn = RVS_TUN_ECN_ECT0;
	return (inner & ~RVS_TUN_ECN_MASK) | ecn;
}

/* One step of the flow hash: mixes the 32-bit word @w into @h.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u32
rvs_tun_hash_step(__u32 h, __u32 w)
{
	h = (h ^ w) * RVS_TUN_HASH_MUL;
	return h ^ (h >> 16);
}

/* The outer IPv6 flow label of @pkt's flow: a hash of the inner addresses, ports and protocol, never
 * zero (RFC 6438 for tunnels, RFC 6437). An IPv4-in-IPv4 packet has no field a receiver hashes beyond
 * the two outer addresses, which are the same for every flow between the director and a real server; an
 * IPv6 outer header has the flow label, which ECMP routers (RFC 6438) and Linux's flow dissector (it
 * stops at a non-zero label: FLOW_DISSECTOR_F_STOP_AT_FLOW_LABEL) fold into their hash, so the real
 * server's RPS/RSS spreads the director's flows over its CPUs. IPVS leaves it zero.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u32
rvs_tun_flowlabel(const struct rvs_pkt *pkt)
{
	__u32 h = 0;
	int i;

	for (i = 0; i < 4; i++)
		h = rvs_tun_hash_step(h, bpf_ntohl(pkt->saddr[i]));
	for (i = 0; i < 4; i++)
		h = rvs_tun_hash_step(h, bpf_ntohl(pkt->daddr[i]));
	h = rvs_tun_hash_step(h, ((__u32)bpf_ntohs(pkt->sport) << 16) | bpf_ntohs(pkt->dport));
	h = rvs_tun_hash_step(h, pkt->proto);
	h = (h ^ (h >> 12)) & RVS_TUN_FLOWLABEL_MASK;
	return h ? h : 1;
}

/* Folds a one's-complement sum to 16 bits and complements it: the checksum field's value.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u16
rvs_tun_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* Adds the 16-bit words of @len bytes at @buf (on the stack; @len even and constant) to @sum.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u64
rvs_tun_csum_buf(const void *buf, __u32 len, __u64 sum)
{
	const __u16 *w = buf;
	__u32 i;

	for (i = 0; i < len / 2; i++)
		sum += w[i];
	return sum;
}

/* Adds the 16-bit words of the frame from byte @off to its end to @sum; an odd last byte counts as the
 * high byte of a word whose low byte is zero (RFC 1071). @off must be at most RVS_TUN_L2_MAX +
 * RVS_TUN_IPV6_HLEN (the verifier's packet offsets) and the rest of the frame at most
 * 2 * RVS_TUN_CSUM_WORDS bytes long: the callers trim the frame first.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline __u64
rvs_tun_csum_frame(struct xdp_md *ctx, __u32 off, __u64 sum)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p;
	__u32 i;

	if (off > RVS_TUN_L2_MAX + RVS_TUN_IPV6_HLEN)
		return sum;
	p = data + off;
	for (i = 0; i < RVS_TUN_CSUM_WORDS; i++) {
		if ((void *)(p + 2) > data_end)
			break;
		sum += *(__u16 *)p;
		p += 2;
	}
	if ((void *)(p + 1) <= data_end) {
		__u16 last = 0;

		*(__u8 *)&last = *p;
		sum += last;
	}
	return sum;
}

/* Opens @room bytes in front of the network header at @l3_off: grows the frame at its head and moves the
 * Ethernet header (with its 802.1Q tag, when @l3_off says there is one) to the new start, unchanged.
 * Returns -ENCAP_FAIL when the head cannot grow.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_push(struct xdp_md *ctx, __u16 l3_off, __u32 room)
{
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)room))
		return -RVS_DROP_ENCAP_FAIL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* The frame grew by room; the old one, with at least an IP header behind its Ethernet header,
	 * follows. Both checks hold; the verifier wants them on these pointers. */
	if (data + RVS_TUN_L2_MAX > data_end || data + room + RVS_TUN_L2_MAX > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memcpy(data, data + room, ETH_HLEN);
	if (l3_off > ETH_HLEN)
		__builtin_memcpy(data + ETH_HLEN, data + room + ETH_HLEN, RVS_VLAN_HLEN);
	return RVS_OK;
}

/* Sets the EtherType in front of the network header at @l3_off (after the 802.1Q tag, if any) and the
 * frame's MAC addresses toward @dest's next hop.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_l2(struct xdp_md *ctx, __u16 l3_off, __be16 proto, const struct rvs_dest_val *dest)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (data + RVS_TUN_L2_MAX > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memcpy(eth->h_dest, dest->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dest->smac, ETH_ALEN);
	if (l3_off > ETH_HLEN)
		*(__be16 *)(data + ETH_HLEN + 2) = proto;
	else
		eth->h_proto = proto;
	return RVS_OK;
}

/* Puts an outer IPv4 header from dest->laddr to dest->addr in front of @pkt. As ip_vs_tunnel_xmit():
 * protocol 4 (IPv4 inside) or 41 (IPv6 inside); TTL and DS field from the inner header (ECN per
 * rvs_tun_dsfield); DF copied from an inner IPv4 header and clear for IPv6 inside (IPVS with pmtu_disc=1,
 * its default). With DF the ID is 0, as Linux's ip_select_ident() makes it for DF packets (RFC 6864:
 * an atomic datagram's ID means nothing); without DF a router may fragment the outer packet, and a random
 * ID keeps fragments of different inner packets apart.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_encap4(struct xdp_md *ctx, const struct rvs_pkt *pkt, const struct rvs_dest_val *dest)
{
	__u32 l3_off = RVS_L3_OFF(pkt);
	void *data, *data_end, *l3;
	struct iphdr outer;
	__u8 *inner;
	int ret;

	ret = rvs_tun_push(ctx, l3_off, RVS_TUN_IPV4_HLEN);
	if (ret != RVS_OK)
		return ret;
	if (l3_off > RVS_TUN_L2_MAX)
		return -RVS_DROP_ENCAP_FAIL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + l3_off;
	inner = l3 + RVS_TUN_IPV4_HLEN;
	/* 20 bytes of inner header hold every field read below, for both families. */
	if ((void *)(inner + RVS_TUN_IPV4_HLEN) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memset(&outer, 0, sizeof(outer));
	outer.version = 4;
	outer.ihl = RVS_TUN_IPV4_HLEN / 4;
	outer.tot_len = bpf_htons(pkt->ip_len + RVS_TUN_IPV4_HLEN);
	outer.saddr = dest->laddr[0];
	outer.daddr = dest->addr[0];
	if (pkt->family == RVS_AF_INET6) {
		/* version (4 bits), traffic class (8), flow label (20) */
		outer.tos = rvs_tun_dsfield((inner[0] << 4) | (inner[1] >> 4));
		outer.ttl = inner[7];
		outer.protocol = IPPROTO_IPV6;
	} else {
		outer.tos = rvs_tun_dsfield(inner[1]);
		outer.ttl = inner[8];
		outer.protocol = IPPROTO_IPIP;
		outer.frag_off = *(__be16 *)(inner + 6) & bpf_htons(RVS_TUN_IP_DF);
	}
	if (!outer.frag_off)
		outer.id = bpf_htons((__u16)rvs_prandom());
	outer.check = rvs_tun_csum_fold(rvs_tun_csum_buf(&outer, sizeof(outer), 0));
	if (l3 + RVS_TUN_IPV4_HLEN > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memcpy(l3, &outer, sizeof(outer));
	return rvs_tun_l2(ctx, l3_off, bpf_htons(ETH_P_IP), dest);
}

/* Puts an outer IPv6 header from dest->laddr to dest->addr in front of @pkt. As
 * ip_vs_tunnel_xmit_v6(): next header 41 (IPv6 inside) or 4 (IPv4 inside); hop limit and traffic class
 * from the inner header (ECN per rvs_tun_dsfield). The flow label is rvs_tun_flowlabel's, where IPVS
 * leaves it zero.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_encap6(struct xdp_md *ctx, const struct rvs_pkt *pkt, const struct rvs_dest_val *dest)
{
	__u32 l3_off = RVS_L3_OFF(pkt);
	void *data, *data_end, *l3;
	struct ipv6hdr outer;
	__u8 *inner;
	__u8 ds, ttl;
	int ret;

	ret = rvs_tun_push(ctx, l3_off, RVS_TUN_IPV6_HLEN);
	if (ret != RVS_OK)
		return ret;
	if (l3_off > RVS_TUN_L2_MAX)
		return -RVS_DROP_ENCAP_FAIL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + l3_off;
	inner = l3 + RVS_TUN_IPV6_HLEN;
	if ((void *)(inner + RVS_TUN_IPV4_HLEN) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	if (pkt->family == RVS_AF_INET6) {
		ds = (inner[0] << 4) | (inner[1] >> 4);
		ttl = inner[7];
	} else {
		ds = inner[1];
		ttl = inner[8];
	}
	*(__be32 *)&outer = bpf_htonl((6U << 28) | ((__u32)rvs_tun_dsfield(ds) << 20) |
				      rvs_tun_flowlabel(pkt));
	outer.payload_len = bpf_htons(pkt->ip_len);
	outer.nexthdr = pkt->family == RVS_AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	outer.hop_limit = ttl;
	__builtin_memcpy(&outer.saddr, dest->laddr, sizeof(outer.saddr));
	__builtin_memcpy(&outer.daddr, dest->addr, sizeof(outer.daddr));
	if (l3 + RVS_TUN_IPV6_HLEN > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memcpy(l3, &outer, sizeof(outer));
	return rvs_tun_l2(ctx, l3_off, bpf_htons(ETH_P_IPV6), dest);
}

/* Cuts the frame to the first @quote bytes of the IP packet at @l3_off, then opens @room bytes in front of it and
 * swaps the MAC addresses: the frame of an error message back to the sender, ready for its headers.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_reply(struct xdp_md *ctx, __u32 l3_off, __u32 quote, __u32 room)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 mac[ETH_ALEN];
	int ret;

	if (bpf_xdp_adjust_tail(ctx, (int)(l3_off + quote) - (int)(data_end - data)))
		return -RVS_DROP_ENCAP_FAIL;
	ret = rvs_tun_push(ctx, l3_off, room);
	if (ret != RVS_OK)
		return ret;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memcpy(mac, data, ETH_ALEN);
	__builtin_memcpy(data, data + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, mac, ETH_ALEN);
	return RVS_OK;
}

/* Answers the client's IPv4 packet @pkt, too big for the tunnel, with ICMP "fragmentation needed and DF
 * set" (type 3 code 4) carrying the next-hop MTU @mtu (RFC 1191), from the virtual address (the packet's
 * destination, which Linux's icmp_send() picks for a local destination) to the client, quoting the
 * packet's start. Back out of the ingress interface.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_icmp4_too_big(struct xdp_md *ctx, const struct rvs_pkt *pkt, __u32 mtu)
{
	__u32 quote = pkt->ip_len < RVS_TUN_ICMP4_QUOTE ? pkt->ip_len : RVS_TUN_ICMP4_QUOTE;
	__u32 off = RVS_L3_OFF(pkt);
	void *data, *data_end, *l3;
	struct {
		struct iphdr ip;
		struct rvs_tun_icmp icmp;
	} hdr;
	struct iphdr *orig;
	int ret;

	if (off > RVS_TUN_L2_MAX)
		return -RVS_DROP_ENCAP_FAIL;
	ret = rvs_tun_reply(ctx, off, quote, sizeof(hdr));
	if (ret != RVS_OK)
		return ret;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + off;
	orig = l3 + sizeof(hdr);
	if ((void *)(orig + 1) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memset(&hdr, 0, sizeof(hdr));
	hdr.ip.version = 4;
	hdr.ip.ihl = sizeof(hdr.ip) / 4;
	hdr.ip.tos = RVS_TUN_ICMP_TOS;
	hdr.ip.tot_len = bpf_htons(sizeof(hdr) + quote);
	hdr.ip.frag_off = bpf_htons(RVS_TUN_IP_DF);
	hdr.ip.ttl = RVS_TUN_ICMP_TTL;
	hdr.ip.protocol = IPPROTO_ICMP;
	hdr.ip.saddr = orig->daddr;
	hdr.ip.daddr = orig->saddr;
	hdr.ip.check = rvs_tun_csum_fold(rvs_tun_csum_buf(&hdr.ip, sizeof(hdr.ip), 0));
	hdr.icmp.type = RVS_TUN_ICMP_DEST_UNREACH;
	hdr.icmp.code = RVS_TUN_ICMP_FRAG_NEEDED;
	hdr.icmp.info = bpf_htonl(mtu & 0xffff);
	__builtin_memcpy(l3, &hdr, sizeof(hdr));
	/* The checksum covers the ICMP header (checksum zero) and the quote: the rest of the frame. */
	hdr.icmp.checksum = rvs_tun_csum_fold(rvs_tun_csum_frame(ctx, off + sizeof(hdr.ip), 0));
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + off;
	if (l3 + sizeof(hdr) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	*(__sum16 *)(l3 + sizeof(hdr.ip) + 2) = hdr.icmp.checksum;
	return XDP_TX;
}

/* Answers the client's IPv6 packet @pkt, too big for the tunnel, with ICMPv6 "packet too big" (type 2
 * code 0, RFC 4443 3.2) carrying @mtu, from the virtual address to the client, quoting the packet's
 * start. Back out of the ingress interface.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_icmp6_too_big(struct xdp_md *ctx, const struct rvs_pkt *pkt, __u32 mtu)
{
	__u32 quote = pkt->ip_len < RVS_TUN_ICMP6_QUOTE ? pkt->ip_len : RVS_TUN_ICMP6_QUOTE;
	__u32 off = RVS_L3_OFF(pkt);
	void *data, *data_end, *l3;
	struct {
		struct ipv6hdr ip;
		struct rvs_tun_icmp icmp;
	} hdr;
	struct ipv6hdr *orig;
	__u64 sum;
	int ret;

	if (off > RVS_TUN_L2_MAX)
		return -RVS_DROP_ENCAP_FAIL;
	ret = rvs_tun_reply(ctx, off, quote, sizeof(hdr));
	if (ret != RVS_OK)
		return ret;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + off;
	orig = l3 + sizeof(hdr);
	if ((void *)(orig + 1) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	__builtin_memset(&hdr, 0, sizeof(hdr));
	*(__be32 *)&hdr.ip = bpf_htonl(6U << 28);
	hdr.ip.payload_len = bpf_htons(sizeof(hdr.icmp) + quote);
	hdr.ip.nexthdr = IPPROTO_ICMPV6;
	hdr.ip.hop_limit = RVS_TUN_ICMP_TTL;
	hdr.ip.saddr = orig->daddr;
	hdr.ip.daddr = orig->saddr;
	hdr.icmp.type = RVS_TUN_ICMPV6_PKT_TOOBIG;
	hdr.icmp.info = bpf_htonl(mtu);
	__builtin_memcpy(l3, &hdr, sizeof(hdr));
	/* Pseudo-header (RFC 8200 8.1): addresses, upper-layer length, next header; then the message. */
	sum = rvs_tun_csum_buf(&hdr.ip.saddr, 2 * sizeof(hdr.ip.saddr), 0);
	sum += bpf_htons(sizeof(hdr.icmp) + quote) + bpf_htons(IPPROTO_ICMPV6);
	hdr.icmp.checksum = rvs_tun_csum_fold(rvs_tun_csum_frame(ctx, off + sizeof(hdr.ip), sum));
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + off;
	if (l3 + sizeof(hdr) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	*(__sum16 *)(l3 + sizeof(hdr.ip) + 2) = hdr.icmp.checksum;
	return XDP_TX;
}

/* @pkt does not fit the tunnel, whose inner MTU is @mtu. IPv6 is never fragmented on the way: the client
 * gets "packet too big". IPv4 with DF gets "fragmentation needed". IPv4 without DF would be fragmented by
 * IPVS, which XDP cannot do (one frame in, one frame out): dropped as TOO_BIG, as is a packet whose
 * tunnel MTU is below the minimum its family guarantees (no MTU that small can be announced).
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_too_big(struct xdp_md *ctx, const struct rvs_pkt *pkt, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3_off = RVS_L3_OFF(pkt);
	struct iphdr *ip;

	if (pkt->family == RVS_AF_INET6) {
		if (mtu < RVS_TUN_IPV6_MIN_MTU)
			return -RVS_DROP_TOO_BIG;
		return rvs_tun_icmp6_too_big(ctx, pkt, mtu);
	}
	if (l3_off > RVS_TUN_L2_MAX)
		return -RVS_DROP_ENCAP_FAIL;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return -RVS_DROP_ENCAP_FAIL;
	if (mtu < RVS_TUN_IPV4_MIN_MTU || !(ip->frag_off & bpf_htons(RVS_TUN_IP_DF)))
		return -RVS_DROP_TOO_BIG;
	return rvs_tun_icmp4_too_big(ctx, pkt, mtu);
}

/* Sends @pkt to @dest through the tunnel: outer IPv4 or IPv6 by @dest's family, out of dest->ifindex
 * (XDP_TX when it is the ingress interface, else bpf_redirect). When the outer packet would exceed
 * dest->mtu (0: unknown, never checked) the client gets the ICMP error of rvs_tun_too_big instead.
 * -NO_NEIGH while the daemon has not resolved the next hop, -ENCAP_FAIL when the frame cannot grow.
 * Mirror: rvs-model/src/fwd/tun.rs */
static __always_inline int
rvs_tun_xmit(struct xdp_md *ctx, const struct rvs_pkt *pkt, const struct rvs_dest_val *dest)
{
	__u32 room = dest->family == RVS_AF_INET6 ? RVS_TUN_IPV6_HLEN : RVS_TUN_IPV4_HLEN;
	int ret;

	if (!(dest->flags & RVS_DEST_F_NEIGH))
		return -RVS_DROP_NO_NEIGH;
	if (dest->mtu && (__u32)pkt->ip_len + room > dest->mtu)
		return rvs_tun_too_big(ctx, pkt, dest->mtu > room ? dest->mtu - room : 0);
	if (dest->family == RVS_AF_INET6)
		ret = rvs_tun_encap6(ctx, pkt, dest);
	else
		ret = rvs_tun_encap4(ctx, pkt, dest);
	if (ret != RVS_OK)
		return ret;
	if (dest->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(dest->ifindex, 0);
}

#endif /* RVS_TUN_H */
