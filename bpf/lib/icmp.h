/* SPDX-License-Identifier: GPL-2.0-only */
/* ICMP tied to connections, as IPVS's ip_vs_in_icmp() and ip_vs_out_icmp() handle it, and echo
 * requests to a virtual address.
 *
 * An ICMP error (IPv4: destination unreachable, source quench, time exceeded; ICMPv6: destination
 * unreachable, packet too big, time exceeded) quotes the start of the packet it is about. The quoted
 * tuple, turned around, is the tuple of a packet of the connection it concerns:
 * - client side: a packet VIP:vport -> client:cport was refused on its way to the client (a router's
 *   "fragmentation needed", the client's "port unreachable"). Turned around it is the client's
 *   packet; when that connection exists, the error goes to the connection's real server by the real
 *   server's method (DR: new MACs; TUN: encapsulated; NAT: the outer destination and the quoted source
 *   rewritten to the real server's address and port), counted with the client's packets (inpkts,
 *   inbytes). The real server's stack then learns the path MTU or drops the connection.
 * - NAT real-server side: a NAT real server refused client:cport -> RIP:rport (our rewritten packet).
 *   Turned around it is a reply, found through the reply entry as rvs_xdp_reply finds a reply; the outer
 *   source and the quoted destination become VIP:vport again and the error goes to the client, counted
 *   with the replies (outpkts, outbytes). A client's connected UDP socket thus gets ECONNREFUSED.
 * Anything else passes to the stack untouched: other messages, errors quoting no tracked connection,
 * quotes too short to hold the ports (RFC 792 guarantees the IP header and 64 bits), quoted fragments
 * other than the first. The connection entries are only read: an error neither refreshes a connection
 * nor changes its state (IPVS does not either).
 *
 * Echo requests to an address in rvs_vip are answered here (type 0 / 129 back out of the ingress
 * interface, TTL 64), so that a virtual address answers ping whether or not an interface of the
 * director holds it.
 *
 * Checksums follow incrementally (lib/csum.h): the outer IPv4 header; the quoted IPv4 header; the ICMP
 * checksum, which covers the quote (every changed field sits at an even offset from the ICMP header,
 * so each is a whole 16-bit word of the sum) and for ICMPv6 a pseudo-header with the outer addresses.
 * The quoted transport checksum is left as it is, as IPVS leaves it: nobody checks a quote's.
 * Mirror: rvs-model/src/fwd/icmp.rs */
#ifndef RVS_ICMP_H
#define RVS_ICMP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/verdict.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/svc.h"
#include "lib/conn.h"
#include "lib/dr.h"
#include "lib/fib.h"
#include "lib/nat.h"
#include "lib/tun.h"
#include "lib/stats.h"

#define RVS_ICMP_HLEN		8	/* type, code, checksum, 4 bytes of rest */
#define RVS_ICMP_QUOTE_L4	8	/* quoted transport bytes needed: the ports, RFC 792's 64 bits */
/* Largest offset of the ICMP header: Ethernet, one 802.1Q tag, an IPv4 header with 40 bytes of
 * options. The parser never gives more; the bound lets the verifier accept the offsets below. */
#define RVS_ICMP_L4_MAX		(ETH_HLEN + RVS_VLAN_HLEN + 60)
#define RVS_ICMP_ECHO_TTL	64	/* TTL and hop limit of an echo reply: Linux's default */
#define RVS_ICMP_ECHOREPLY	0
#define RVS_ICMP_DEST_UNREACH	3
#define RVS_ICMP_SOURCE_QUENCH	4
#define RVS_ICMP_ECHO		8
#define RVS_ICMP_TIME_EXCEEDED	11
#define RVS_ICMPV6_DEST_UNREACH	1
#define RVS_ICMPV6_PKT_TOOBIG	2
#define RVS_ICMPV6_TIME_EXCEED	3
#define RVS_ICMPV6_ECHO_REQUEST	128
#define RVS_ICMPV6_ECHO_REPLY	129

/* The ICMP and ICMPv6 header (<linux/icmp.h> pulls in libc headers that do not build for the BPF
 * target). The checksum is a __u16 for lib/csum.h, which works on words as loaded. */
struct rvs_icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 rest;
};

/* Whether ICMP(v6) @type of @family is an error that quotes a packet and that rvs ties to a
 * connection: destination unreachable (fragmentation needed among them), source quench and time
 * exceeded; ICMPv6 destination unreachable, packet too big and time exceeded (IPVS's list, less the
 * parameter problems it leaves to the stack too).
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_is_error(__u8 family, __u8 type)
{
	if (family == RVS_AF_INET)
		return type == RVS_ICMP_DEST_UNREACH || type == RVS_ICMP_SOURCE_QUENCH ||
		       type == RVS_ICMP_TIME_EXCEEDED;
	return type == RVS_ICMPV6_DEST_UNREACH || type == RVS_ICMPV6_PKT_TOOBIG ||
	       type == RVS_ICMPV6_TIME_EXCEED;
}

/* Answers the echo request @pkt when its destination is a virtual address (rvs_vip): MACs and addresses
 * swapped, type echo reply, TTL (hop limit) 64, back out of the ingress interface. The IPv4 header
 * checksum changes with the TTL only (swapping two words leaves a one's-complement sum as it is), the
 * ICMP checksum with the type only (ICMPv6's pseudo-header holds both addresses, swapped or not).
 * XDP_PASS for any other destination.
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_echo(struct xdp_md *ctx, const struct rvs_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_icmp_hdr *icmp;
	struct rvs_vip_key key;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	__u16 old;

	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memcpy(key.addr, pkt->daddr, sizeof(key.addr));
	key.family = pkt->family;
	if (!bpf_map_lookup_elem(&rvs_vip, &key))
		return XDP_PASS;
	/* Checked by the caller already; the verifier wants them again on these pointers. */
	if (pkt->l4_off > RVS_ICMP_L4_MAX)
		return -RVS_DROP_L4_SHORT;
	icmp = data + pkt->l4_off;
	if ((void *)(icmp + 1) > data_end || (void *)(eth + 1) > data_end)
		return -RVS_DROP_L4_SHORT;
	old = *(__u16 *)icmp;
	icmp->type = pkt->family == RVS_AF_INET ? RVS_ICMP_ECHOREPLY : RVS_ICMPV6_ECHO_REPLY;
	rvs_csum_replace2(&icmp->check, old, *(__u16 *)icmp);
	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + RVS_L3_OFF(pkt);
		__be32 a;

		if ((void *)(ip + 1) > data_end)
			return -RVS_DROP_IPV4_SHORT;
		a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		/* TTL and protocol share one 16-bit word of the header. */
		old = *(__u16 *)&ip->ttl;
		ip->ttl = RVS_ICMP_ECHO_TTL;
		rvs_csum_replace2(&ip->check, old, *(__u16 *)&ip->ttl);
	} else {
		struct ipv6hdr *ip6 = data + RVS_L3_OFF(pkt);
		struct in6_addr a;

		if ((void *)(ip6 + 1) > data_end)
			return -RVS_DROP_IPV6_SHORT;
		a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		ip6->hop_limit = RVS_ICMP_ECHO_TTL;
	}
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	return XDP_TX;
}

/* Reads the packet quoted by ICMP error @pkt into @inv, turned around: @inv's source is the quote's
 * destination and the other way round, so that @inv has the tuple of a packet of the connection the
 * error is about (a client's, or a NAT real server's reply). @inv->l3_off and @inv->l4_off are the
 * offsets of the quoted IP and transport headers in the frame. XDP_PASS when the quote cannot be tied
 * to a connection: shorter than its IP header and 8 transport bytes (inside the ICMP packet, not just
 * the frame), not of @pkt's family, IPv4 with IHL < 5 or a non-first fragment, or not TCP or UDP (an
 * IPv6 quote whose next header is an extension header included).
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_inner(struct xdp_md *ctx, const struct rvs_pkt *pkt, struct rvs_pkt *inv)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 end = RVS_L3_OFF(pkt) + pkt->ip_len;
	__u32 off = pkt->l4_off + RVS_ICMP_HLEN;
	__be16 *ports;
	__u32 hlen;

	__builtin_memset(inv, 0, sizeof(*inv));
	if (pkt->l4_off > RVS_ICMP_L4_MAX)
		return XDP_PASS;
	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + off;

		if (off + sizeof(*ip) > end || (void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ip->version != 4 || ip->ihl < 5)
			return XDP_PASS;
		if (bpf_ntohs(ip->frag_off) & RVS_IP_OFFMASK)
			return XDP_PASS;
		if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		hlen = ip->ihl * 4;
		inv->saddr[0] = ip->daddr;
		inv->daddr[0] = ip->saddr;
		inv->proto = ip->protocol;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if (off + sizeof(*ip6) > end || (void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ip6->version != 6)
			return XDP_PASS;
		if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		hlen = RVS_IPV6_HLEN;
		__builtin_memcpy(inv->saddr, &ip6->daddr, sizeof(inv->saddr));
		__builtin_memcpy(inv->daddr, &ip6->saddr, sizeof(inv->daddr));
		inv->proto = ip6->nexthdr;
	}
	if (off + hlen + RVS_ICMP_QUOTE_L4 > end)
		return XDP_PASS;
	ports = data + off + hlen;
	if ((void *)ports + RVS_ICMP_QUOTE_L4 > data_end)
		return XDP_PASS;
	inv->sport = ports[1];
	inv->dport = ports[0];
	inv->family = pkt->family;
	inv->l3_off = off;
	inv->l4_off = off + hlen;
	return RVS_OK;
}

/* Rewrites NAT ICMP error @pkt, whose quote @inv read, to @addr:@port. Toward the real server (!@out):
 * the outer destination and the quote's source (the virtual address and port: @inv's destination).
 * Toward the client (@out): the outer source and the quote's destination (the real server's: @inv's
 * source). Every checksum follows (see the top of this file); @pkt's addresses follow the outer header.
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_nat(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_pkt *inv, int out,
	     const __be32 *addr, __be16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_icmp_hdr *icmp;
	__be32 old[4] = {};
	__be16 *ports;
	__u16 check;

	/* Checked by the parsers already; the verifier wants the pointers checked again. */
	if (pkt->l4_off > RVS_ICMP_L4_MAX || inv->l4_off > RVS_ICMP_L4_MAX + RVS_ICMP_HLEN + 60)
		return -RVS_DROP_L4_SHORT;
	icmp = data + pkt->l4_off;
	ports = data + inv->l4_off;
	if ((void *)(icmp + 1) > data_end || (void *)(ports + 2) > data_end)
		return -RVS_DROP_L4_SHORT;
	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + RVS_L3_OFF(pkt);
		struct iphdr *in = data + inv->l3_off;
		__be32 *a;

		if ((void *)(ip + 1) > data_end || (void *)(in + 1) > data_end)
			return -RVS_DROP_IPV4_SHORT;
		a = out ? &ip->saddr : &ip->daddr;
		old[0] = *a;
		*a = addr[0];
		rvs_csum_replace_addr(&ip->check, old, addr, RVS_AF_INET);
		a = out ? &in->daddr : &in->saddr;
		old[0] = *a;
		*a = addr[0];
		check = in->check;
		rvs_csum_replace_addr(&in->check, old, addr, RVS_AF_INET);
		rvs_csum_replace_addr(&icmp->check, old, addr, RVS_AF_INET);
		rvs_csum_replace2(&icmp->check, check, in->check);
	} else {
		struct ipv6hdr *ip6 = data + RVS_L3_OFF(pkt);
		struct ipv6hdr *in6 = data + inv->l3_off;
		__be32 *a;

		if ((void *)(ip6 + 1) > data_end || (void *)(in6 + 1) > data_end)
			return -RVS_DROP_IPV6_SHORT;
		/* The outer address is in ICMPv6's pseudo-header. */
		a = out ? ip6->saddr.in6_u.u6_addr32 : ip6->daddr.in6_u.u6_addr32;
		__builtin_memcpy(old, a, sizeof(old));
		__builtin_memcpy(a, addr, sizeof(old));
		rvs_csum_replace_addr(&icmp->check, old, addr, RVS_AF_INET6);
		a = out ? in6->daddr.in6_u.u6_addr32 : in6->saddr.in6_u.u6_addr32;
		__builtin_memcpy(old, a, sizeof(old));
		__builtin_memcpy(a, addr, sizeof(old));
		rvs_csum_replace_addr(&icmp->check, old, addr, RVS_AF_INET6);
	}
	/* The quote's ports: source first, then destination. */
	if (out) {
		rvs_csum_replace2(&icmp->check, ports[1], port);
		ports[1] = port;
		__builtin_memcpy(pkt->saddr, addr, sizeof(pkt->saddr));
	} else {
		rvs_csum_replace2(&icmp->check, ports[0], port);
		ports[0] = port;
		__builtin_memcpy(pkt->daddr, addr, sizeof(pkt->daddr));
	}
	return RVS_OK;
}

/* Sends client-side ICMP error @pkt to real server @dest by its method. TUN: an error that would not
 * fit the tunnel is dropped (-TOO_BIG): no ICMP error answers an ICMP error (RFC 1122 3.2.2,
 * RFC 4443 2.4 (e.1)).
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_xmit(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_pkt *inv,
	      const struct rvs_dest_val *dest)
{
	__u32 room = dest->family == RVS_AF_INET6 ? RVS_TUN_IPV6_HLEN : RVS_TUN_IPV4_HLEN;
	int ret;

	if (dest->fwd == RVS_FWD_DR)
		return rvs_dr_xmit(ctx, dest);
	if (dest->fwd == RVS_FWD_TUN) {
		if (dest->mtu && (__u32)pkt->ip_len + room > dest->mtu)
			return -RVS_DROP_TOO_BIG;
		return rvs_tun_xmit(ctx, pkt, dest);
	}
	if (dest->fwd == RVS_FWD_NAT) {
		if (dest->family != pkt->family)
			return -RVS_DROP_FWD_UNSUPP;
		ret = rvs_icmp_nat(ctx, pkt, inv, 0, dest->addr, rvs_conn_rport(dest, inv->dport));
		if (ret != RVS_OK)
			return ret;
		return rvs_fib_xmit(ctx, pkt);
	}
	return -RVS_DROP_FWD_UNSUPP;
}

/* A client-side ICMP error whose turned-around quote @inv is addressed to service @svc: forwarded to the
 * connection's real server when the connection exists (not a reply entry) and its real server is still
 * usable (rvs_conn_dest), counted in inpkts/inbytes; else XDP_PASS.
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_in(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_pkt *inv,
	    const struct rvs_svc_val *svc)
{
	struct rvs_dest_val *dest;
	struct rvs_conn_val *conn;
	struct rvs_conn_key key;
	__u32 dest_id;
	int ret;

	rvs_conn_key_of(inv, &key);
	conn = rvs_conn_lookup(&key);
	if (!conn || (conn->flags & RVS_CONN_F_REPLY))
		return XDP_PASS;
	dest = rvs_conn_dest(conn, svc);
	if (!dest)
		return XDP_PASS;
	dest_id = conn->dest_id;
	ret = rvs_icmp_xmit(ctx, pkt, inv, dest);
	if (ret < 0)
		return ret;
	rvs_stats_in(svc->id, dest_id, pkt->ip_len);
	return ret;
}

/* An ICMP error from a NAT real server's side whose turned-around quote @inv is a reply: matched as
 * rvs_xdp_reply matches a reply (reply entry, service by id, client-side entry naming the same real
 * server, quote from that real server's address and port), rewritten back to the virtual address and
 * port and sent toward the client, counted in outpkts/outbytes; else XDP_PASS.
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __always_inline int
rvs_icmp_out(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_pkt *inv)
{
	struct rvs_conn_rep *rep;
	struct rvs_conn_val *conn;
	struct rvs_dest_val *dest;
	struct rvs_svc_val *svc;
	__u32 svc_id, dest_id;
	int ret;

	conn = rvs_nat_reply_conn(inv, &rep, &svc, &dest);
	if (!conn)
		return XDP_PASS;
	svc_id = svc->id;
	dest_id = conn->dest_id;
	ret = rvs_icmp_nat(ctx, pkt, inv, 1, rep->vaddr, rep->vport);
	if (ret != RVS_OK)
		return ret;
	ret = rvs_fib_xmit(ctx, pkt);
	if (ret < 0)
		return ret;
	rvs_stats_out(svc_id, dest_id, pkt->ip_len);
	return ret;
}

/* The ICMP or ICMPv6 packet @pkt (parsed up to its IP header): an echo request to a virtual address is
 * answered, an error about a tracked connection goes to the other side of it (client side when the
 * turned-around quote is addressed to a service, else possibly a NAT reply), anything else passes,
 * a message shorter than its 8-byte header included.
 * Not inlined, for its stack frame (rvs_xdp.c rvs_xdp_forward says why).
 * Mirror: rvs-model/src/fwd/icmp.rs */
static __attribute__((noinline)) int
rvs_icmp_process(struct xdp_md *ctx, struct rvs_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_icmp_hdr *icmp;
	struct rvs_svc_val *svc;
	struct rvs_pkt inv;
	__u8 type;
	int ret;

	if (pkt->l4_off > RVS_ICMP_L4_MAX || pkt->l4_off + RVS_ICMP_HLEN > RVS_L3_OFF(pkt) + pkt->ip_len)
		return XDP_PASS;
	icmp = data + pkt->l4_off;
	if ((void *)(icmp + 1) > data_end)
		return XDP_PASS;
	type = icmp->type;
	if (type == (pkt->family == RVS_AF_INET ? RVS_ICMP_ECHO : RVS_ICMPV6_ECHO_REQUEST))
		return rvs_icmp_echo(ctx, pkt);
	if (!rvs_icmp_is_error(pkt->family, type))
		return XDP_PASS;
	ret = rvs_icmp_inner(ctx, pkt, &inv);
	if (ret != RVS_OK)
		return ret;
	svc = rvs_svc_lookup(&inv);
	if (svc)
		return rvs_icmp_in(ctx, pkt, &inv, svc);
	return rvs_icmp_out(ctx, pkt, &inv);
}

#endif /* RVS_ICMP_H */
