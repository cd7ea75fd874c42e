// SPDX-License-Identifier: GPL-2.0-only
/* Real-server side of VS/TUN on a kernel without the ipip/ip6_tunnel modules. Attached to the interface
 * that receives the director's tunnel packets (rvs-realserver setup --mode tun), it strips the outer
 * header of IPv4-in-IPv4 (protocol 4), IPv6-in-IPv6 (next header 41) and the mixed pairs, when the inner
 * destination is a virtual address in rvs_decap_vip, and passes the inner packet to the stack as if it
 * had arrived on this interface. The VIP is on lo, so the stack delivers it locally and the reply goes
 * straight to the client. Everything else passes untouched.
 *
 * "Addressed to this host" is judged at layer 2 (a unicast frame reached this interface, which accepts
 * only its own MAC unless promiscuous) and by the inner VIP, not by the outer destination address: XDP has
 * no cheap is-this-address-local test (bpf_fib_lookup answers FWD_DISABLED on a host that does not
 * forward, which a real server usually is), and a list kept in a map would go stale when the host is
 * readdressed. A host whose NIC is a bridge port carrying other hosts' tunnels should use the kernel's
 * decapsulation (--decap kernel) instead.
 *
 * Like the kernel's tunnel receive path (ip_tunnel_rcv), decapsulation combines the ECN fields as RFC 6040
 * says: a congestion mark (CE) on the outer header moves to an ECN-capable inner one, and a CE over a
 * not-ECN-capable inner packet is dropped: the only packet this program drops in practice.
 * Mirror: rvs-model/src/decap.rs */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_compiler.h"

#define RVS_DECAP_MAX_VIP	1024
#define RVS_DECAP_VLAN_HLEN	4
#define RVS_DECAP_L2_MAX	(ETH_HLEN + RVS_DECAP_VLAN_HLEN)
#define RVS_DECAP_IPV4_HLEN	20
#define RVS_DECAP_IPV6_HLEN	40
#define RVS_DECAP_IP_MF		0x2000
#define RVS_DECAP_IP_OFFMASK	0x1fff
#define RVS_DECAP_ECN_MASK	0x03
#define RVS_DECAP_ECN_NOT_ECT	0x00
#define RVS_DECAP_ECN_ECT1	0x01
#define RVS_DECAP_ECN_ECT0	0x02
#define RVS_DECAP_ECN_CE	0x03

#define RVS_DECAP_OK		0	/* go on to the next stage */

/* Key of rvs_decap_vip: an IPv6 address, or an IPv4 address mapped into ::ffff:0:0/96 (RFC 4291
 * 2.5.5.2), a prefix no IPv6 packet carries, so one map holds both families without a family field. */
struct rvs_decap_key {
	__be32 addr[4];
};
_Static_assert(sizeof(struct rvs_decap_key) == 16, "rvs-model and rvs-realserver use [u8; 16]");

/* Slots of rvs_decap_stats, per-CPU u64 counters. */
enum rvs_decap_stat {
	RVS_DECAP_ST_PACKETS	= 0,	/* decapsulated and passed to the stack */
	RVS_DECAP_ST_BYTES	= 1,	/* their inner IP bytes */
	RVS_DECAP_ST_NOT_VIP	= 2,	/* tunnel packets whose inner destination is no VIP: passed untouched */
	RVS_DECAP_ST_ADJUST	= 3,	/* bpf_xdp_adjust_head refused: passed untouched */
	RVS_DECAP_ST_DROP_ECN	= 4,	/* dropped: outer CE over a not-ECN-capable inner packet */
	RVS_DECAP_ST_DROP_SHORT	= 5,	/* dropped: frame shorter than its L2 header once stripped (the
					 * parse checks make it impossible; the verifier wants the branch) */
	RVS_DECAP_ST__MAX	= 6,
};

/* The virtual addresses this host serves; the value is unused (1). Written by rvs-realserver. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_DECAP_MAX_VIP);
	__type(key, struct rvs_decap_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_decap_vip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_DECAP_ST__MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_decap_stats SEC(".maps");

/* What the decision needs to know about a tunnel packet. Addresses stay in network order. */
struct rvs_decap_pkt {
	struct rvs_decap_key vip;	/* inner destination */
	__u32 inner_len;		/* inner packet bytes, per the outer header */
	__u16 l3_off;			/* outer IP header */
	__u16 outer_hlen;
	__be16 inner_proto;		/* EtherType of the inner packet */
	__u8 outer_ecn;
	__u8 inner_ecn;
	__u8 inner_v6;
};

/* Adds @n to per-CPU counter @stat.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline void
rvs_decap_count(__u32 stat, __u64 n)
{
	__u64 *cnt = bpf_map_lookup_elem(&rvs_decap_stats, &stat);

	if (cnt)
		*cnt += n;
}

/* Finds the network header behind a unicast Ethernet header and at most one 802.1Q tag. RVS_DECAP_OK with
 * pkt->l3_off set when it is IPv4 or IPv6, XDP_PASS for anything else.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_parse_l2(void *data, void *data_end, struct rvs_decap_pkt *pkt, __be16 *proto)
{
	struct ethhdr *eth = data;
	__u16 off = ETH_HLEN;

	if (data + ETH_HLEN > data_end)
		return XDP_PASS;
	if (eth->h_dest[0] & 1)
		return XDP_PASS;	/* multicast or broadcast: not addressed to this host alone */
	*proto = eth->h_proto;
	if (*proto == bpf_htons(ETH_P_8021Q)) {
		if (data + RVS_DECAP_L2_MAX > data_end)
			return XDP_PASS;
		*proto = *(__be16 *)(data + ETH_HLEN + 2);
		off += RVS_DECAP_VLAN_HLEN;
	}
	if (*proto != bpf_htons(ETH_P_IP) && *proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	pkt->l3_off = off;
	return RVS_DECAP_OK;
}

/* Whether the IPv4 header at @ip (20 bytes, no options) has a valid checksum: its 16-bit words, the
 * checksum included, sum to 0xffff.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_ipv4_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

	for (i = 0; i < RVS_DECAP_IPV4_HLEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* An outer IPv4 header as the director writes one: no options, valid checksum, not a fragment (the stack
 * would reassemble it but then has no tunnel to give it to), protocol 4 or 41, a unicast destination,
 * and a total length that covers at least an inner IPv4 header and fits the frame. Else XDP_PASS: the
 * stack judges the packet as it would without this program.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_parse_outer4(void *data, void *data_end, struct rvs_decap_pkt *pkt)
{
	__u32 l3_off = pkt->l3_off;
	struct iphdr *ip;
	__u32 tot_len;

	if (l3_off > RVS_DECAP_L2_MAX)
		return XDP_PASS;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->version != 4 || ip->ihl != RVS_DECAP_IPV4_HLEN / 4)
		return XDP_PASS;
	if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_IPV6)
		return XDP_PASS;
	if (bpf_ntohs(ip->frag_off) & (RVS_DECAP_IP_MF | RVS_DECAP_IP_OFFMASK))
		return XDP_PASS;
	/* 224.0.0.0/4 and 255.255.255.255 */
	if ((bpf_ntohl(ip->daddr) >> 28) == 0xe || ip->daddr == 0xffffffff)
		return XDP_PASS;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < RVS_DECAP_IPV4_HLEN * 2 || (void *)ip + tot_len > data_end)
		return XDP_PASS;
	if (!rvs_decap_ipv4_csum_ok(ip))
		return XDP_PASS;
	pkt->outer_hlen = RVS_DECAP_IPV4_HLEN;
	pkt->inner_len = tot_len - RVS_DECAP_IPV4_HLEN;
	pkt->outer_ecn = ip->tos & RVS_DECAP_ECN_MASK;
	pkt->inner_v6 = ip->protocol == IPPROTO_IPV6;
	return RVS_DECAP_OK;
}

/* An outer IPv6 header as the director writes one: next header 41 or 4 (no extension headers), a
 * unicast destination, and a payload that holds at least an inner IPv4 header and fits the frame.
 * Else XDP_PASS.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_parse_outer6(void *data, void *data_end, struct rvs_decap_pkt *pkt)
{
	__u32 l3_off = pkt->l3_off;
	struct ipv6hdr *ip;
	__u32 plen;

	if (l3_off > RVS_DECAP_L2_MAX)
		return XDP_PASS;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->version != 6)
		return XDP_PASS;
	if (ip->nexthdr != IPPROTO_IPV6 && ip->nexthdr != IPPROTO_IPIP)
		return XDP_PASS;
	if (ip->daddr.s6_addr[0] == 0xff)
		return XDP_PASS;	/* multicast */
	plen = bpf_ntohs(ip->payload_len);
	if (plen < RVS_DECAP_IPV4_HLEN || (void *)(ip + 1) + plen > data_end)
		return XDP_PASS;
	pkt->outer_hlen = RVS_DECAP_IPV6_HLEN;
	pkt->inner_len = plen;
	/* traffic class: the 8 bits after the 4-bit version; ECN is its low two */
	pkt->outer_ecn = (ip->flow_lbl[0] >> 4) & RVS_DECAP_ECN_MASK;
	pkt->inner_v6 = ip->nexthdr == IPPROTO_IPV6;
	return RVS_DECAP_OK;
}

/* Reads the inner header's destination into pkt->vip, IPv4 (mapped) or IPv6 as the outer header
 * announced, and its ECN field, with the version to match and the whole fixed header inside the outer
 * payload. Else XDP_PASS. The stack checks the rest of the inner header after decapsulation, as it does
 * behind ipip.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_parse_inner(void *data, void *data_end, struct rvs_decap_pkt *pkt)
{
	__u32 off = (__u32)pkt->l3_off + pkt->outer_hlen;
	void *inner;

	if (off > RVS_DECAP_L2_MAX + RVS_DECAP_IPV6_HLEN)
		return XDP_PASS;
	inner = data + off;
	if (pkt->inner_v6) {
		struct ipv6hdr *ip6 = inner;

		if (pkt->inner_len < RVS_DECAP_IPV6_HLEN || (void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ip6->version != 6)
			return XDP_PASS;
		__builtin_memcpy(pkt->vip.addr, &ip6->daddr, sizeof(pkt->vip.addr));
		pkt->inner_ecn = (ip6->flow_lbl[0] >> 4) & RVS_DECAP_ECN_MASK;
		pkt->inner_proto = bpf_htons(ETH_P_IPV6);
	} else {
		struct iphdr *ip4 = inner;

		if ((void *)(ip4 + 1) > data_end)
			return XDP_PASS;
		if (ip4->version != 4)
			return XDP_PASS;
		pkt->vip.addr[0] = 0;
		pkt->vip.addr[1] = 0;
		pkt->vip.addr[2] = bpf_htonl(0xffff);
		pkt->vip.addr[3] = ip4->daddr;
		pkt->inner_ecn = ip4->tos & RVS_DECAP_ECN_MASK;
		pkt->inner_proto = bpf_htons(ETH_P_IP);
	}
	return RVS_DECAP_OK;
}

/* The ECN field the inner header gets (RFC 6040 4.2, as Linux's INET_ECN_decapsulate): CE from the
 * outer header, or ECT(1) over ECT(0); -1 when the outer CE meets a not-ECN-capable inner packet, which
 * must be dropped (its sender could not react to the mark); the inner field itself when nothing changes.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_ecn(__u8 outer, __u8 inner)
{
	if (inner == RVS_DECAP_ECN_NOT_ECT)
		return outer == RVS_DECAP_ECN_CE ? -1 : inner;
	if (outer == RVS_DECAP_ECN_CE)
		return RVS_DECAP_ECN_CE;
	if (outer == RVS_DECAP_ECN_ECT1 && inner == RVS_DECAP_ECN_ECT0)
		return RVS_DECAP_ECN_ECT1;
	return inner;
}

/* Writes @ecn into the inner header at @l3_off of the stripped frame; an IPv4 header's checksum follows
 * by RFC 1624 eqn. 3 over the 16-bit word holding the TOS byte.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline void
rvs_decap_set_ecn(void *data, void *data_end, __u32 l3_off, __u8 inner_v6, __u8 ecn)
{
	__u16 old, new;
	__u32 sum;
	__u8 *ip;

	if (l3_off > RVS_DECAP_L2_MAX)
		return;
	ip = data + l3_off;
	if ((void *)(ip + RVS_DECAP_IPV4_HLEN) > data_end)
		return;
	if (inner_v6) {
		ip[1] = (ip[1] & ~(RVS_DECAP_ECN_MASK << 4)) | (ecn << 4);
		return;
	}
	old = *(__u16 *)ip;
	ip[1] = (ip[1] & ~RVS_DECAP_ECN_MASK) | ecn;
	new = *(__u16 *)ip;
	sum = (__u16)~*(__u16 *)(ip + 10) + (__u16)~old + new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	*(__u16 *)(ip + 10) = ~sum;
}

/* Removes the outer header: saves the L2 header, moves the frame's start past the outer IP header, and
 * writes the L2 header back in front of the inner packet with the inner packet's EtherType. RVS_DECAP_OK
 * when done; XDP_PASS, untouched, when the head cannot move.
 * Mirror: rvs-model/src/decap.rs */
static __always_inline int
rvs_decap_strip(struct xdp_md *ctx, const struct rvs_decap_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 l2[RVS_DECAP_L2_MAX];

	if (data + RVS_DECAP_L2_MAX > data_end)
		return XDP_PASS;
	__builtin_memcpy(l2, data, RVS_DECAP_L2_MAX);
	if (bpf_xdp_adjust_head(ctx, pkt->outer_hlen)) {
		rvs_decap_count(RVS_DECAP_ST_ADJUST, 1);
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + RVS_DECAP_L2_MAX > data_end) {
		rvs_decap_count(RVS_DECAP_ST_DROP_SHORT, 1);
		return XDP_DROP;
	}
	__builtin_memcpy(data, l2, ETH_HLEN);
	if (pkt->l3_off > ETH_HLEN) {
		__builtin_memcpy(data + ETH_HLEN, l2 + ETH_HLEN, RVS_DECAP_VLAN_HLEN);
		*(__be16 *)(data + ETH_HLEN + 2) = pkt->inner_proto;
	} else {
		*(__be16 *)(data + ETH_HLEN - 2) = pkt->inner_proto;
	}
	return RVS_DECAP_OK;
}

/* Entry point: parse (anything but a tunnel packet to a VIP passes untouched), combine ECN, strip, and
 * count.
 * Mirror: rvs-model/src/decap.rs */
SEC("xdp")
int
rvs_decap_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_decap_pkt pkt;
	__be16 proto = 0;
	int ecn, ret;

	__builtin_memset(&pkt, 0, sizeof(pkt));
	ret = rvs_decap_parse_l2(data, data_end, &pkt, &proto);
	if (ret != RVS_DECAP_OK)
		return ret;
	if (proto == bpf_htons(ETH_P_IP))
		ret = rvs_decap_parse_outer4(data, data_end, &pkt);
	else
		ret = rvs_decap_parse_outer6(data, data_end, &pkt);
	if (ret != RVS_DECAP_OK)
		return ret;
	ret = rvs_decap_parse_inner(data, data_end, &pkt);
	if (ret != RVS_DECAP_OK)
		return ret;
	if (!bpf_map_lookup_elem(&rvs_decap_vip, &pkt.vip)) {
		rvs_decap_count(RVS_DECAP_ST_NOT_VIP, 1);
		return XDP_PASS;
	}
	ecn = rvs_decap_ecn(pkt.outer_ecn, pkt.inner_ecn);
	if (ecn < 0) {
		rvs_decap_count(RVS_DECAP_ST_DROP_ECN, 1);
		return XDP_DROP;
	}
	ret = rvs_decap_strip(ctx, &pkt);
	if (ret != RVS_DECAP_OK)
		return ret;
	if (ecn != pkt.inner_ecn) {
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		rvs_decap_set_ecn(data, data_end, pkt.l3_off, pkt.inner_v6, ecn);
	}
	rvs_decap_count(RVS_DECAP_ST_PACKETS, 1);
	rvs_decap_count(RVS_DECAP_ST_BYTES, pkt.inner_len);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
