/* SPDX-License-Identifier: GPL-2.0-only */
/* VS/NAT ("Masq"): the director rewrites a client's packet from VIP:vport to the real server's
 * RIP:rport (the ports may differ) and the real server's replies from RIP:rport back to VIP:vport, as
 * IPVS's tcp/udp_dnat_handler and snat_handler do; the real servers route their replies through the
 * director. Checksums are updated incrementally (lib/csum.h) and packets are forwarded by the routing
 * table (lib/fib.h). How a reply finds its connection is explained in lib/conn.h.
 * Mirror: rvs-model/src/fwd/nat.rs */
#ifndef RVS_NAT_H
#define RVS_NAT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/verdict.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/fib.h"
#include "lib/conn.h"

/* Written for a UDP checksum that computes to 0, which would mean "no checksum" (RFC 768; the kernel's
 * CSUM_MANGLED_0). */
#define RVS_CSUM_MANGLED_0	0xffff

/* Whether some real server is NAT (rvs_cfg, written by the encoder): only then can a packet to no
 * service be a reply that needs rewriting, so a director without NAT skips the lookup.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline int
rvs_nat_enabled(void)
{
	__u32 zero = 0;
	struct rvs_cfg *cfg = bpf_map_lookup_elem(&rvs_cfg, &zero);

	return cfg && (cfg->flags & RVS_CFG_F_NAT);
}

/* The TCP or UDP checksum *@check after one address of the pseudo-header changed from @old to @new and
 * the port beside it from @old_port to @new_port. A UDP datagram over IPv4 without a checksum (0)
 * stays without one; a UDP checksum that comes out 0 is written 0xffff. Over IPv6 the UDP checksum is
 * mandatory (RFC 8200 8.1): a zero one is invalid, is updated like any other value, and stays invalid
 * for the real server, which drops it as it would have.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline void
rvs_nat_l4_csum(__u16 *check, const struct rvs_pkt *pkt, const __be32 *old, const __be32 *new,
		__be16 old_port, __be16 new_port)
{
	int udp = pkt->proto == IPPROTO_UDP;

	if (udp && pkt->family == RVS_AF_INET && *check == 0)
		return;
	rvs_csum_replace_addr(check, old, new, pkt->family);
	rvs_csum_replace2(check, old_port, new_port);
	if (udp && *check == 0)
		*check = RVS_CSUM_MANGLED_0;
}

/* Rewrites one side of the packet to @addr:@port: the destination when @dnat (a client's packet on its
 * way to a real server), else the source (a reply on its way back, from the virtual address). The IPv4
 * header checksum and the TCP/UDP checksum follow; @pkt is updated to the new headers.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline int
rvs_nat_rewrite(struct xdp_md *ctx, struct rvs_pkt *pkt, int dnat, const __be32 *addr, __be16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__be32 old[4] = {};
	__be16 *l4_port;
	__u16 *check;

	/* Checked by the parser already; the verifier wants the pointers checked again. */
	if (pkt->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + RVS_L4_OFF(pkt);

		if ((void *)(tcp + 1) > data_end)
			return -RVS_DROP_L4_SHORT;
		check = &tcp->check;
		l4_port = dnat ? &tcp->dest : &tcp->source;
	} else {
		struct udphdr *udp = data + RVS_L4_OFF(pkt);

		if ((void *)(udp + 1) > data_end)
			return -RVS_DROP_L4_SHORT;
		check = &udp->check;
		l4_port = dnat ? &udp->dest : &udp->source;
	}
	if (pkt->family == RVS_AF_INET) {
		struct iphdr *ip = data + RVS_L3_OFF(pkt);
		__be32 *a;

		if ((void *)(ip + 1) > data_end)
			return -RVS_DROP_IPV4_SHORT;
		a = dnat ? &ip->daddr : &ip->saddr;
		old[0] = *a;
		*a = addr[0];
		rvs_csum_replace_addr(&ip->check, old, addr, RVS_AF_INET);
	} else {
		struct ipv6hdr *ip6 = data + RVS_L3_OFF(pkt);
		__be32 *a;

		if ((void *)(ip6 + 1) > data_end)
			return -RVS_DROP_IPV6_SHORT;
		a = dnat ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
		__builtin_memcpy(old, a, sizeof(old));
		__builtin_memcpy(a, addr, sizeof(old));
	}
	rvs_nat_l4_csum(check, pkt, old, addr, *l4_port, port);
	*l4_port = port;
	/* @addr is in the maps' form: an IPv4 address has words 1..3 zero, as pkt's. */
	if (dnat) {
		__builtin_memcpy(pkt->daddr, addr, sizeof(pkt->daddr));
		pkt->dport = port;
	} else {
		__builtin_memcpy(pkt->saddr, addr, sizeof(pkt->saddr));
		pkt->sport = port;
	}
	return RVS_OK;
}

/* A client's packet to a NAT real server: destination rewritten to the real server's address and port
 * (the packet's own port for a real server of port 0, lib/conn.h rvs_conn_rport), then forwarded by
 * the routing table. A real server of the other family cannot be reached by rewriting (only TUN mixes
 * families) -> FWD_UNSUPP.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline int
rvs_nat_xmit(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_dest_val *dest)
{
	int ret;

	if (dest->family != pkt->family)
		return -RVS_DROP_FWD_UNSUPP;
	ret = rvs_nat_rewrite(ctx, pkt, 1, dest->addr, rvs_conn_rport(dest, pkt->dport));
	if (ret != RVS_OK)
		return ret;
	return rvs_fib_xmit(ctx, pkt);
}

/* Whether @pkt comes from NAT real server @dest of a connection to virtual port @vport: its source
 * address and port are the ones the connection's packets are sent to.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline int
rvs_nat_from_dest(const struct rvs_pkt *pkt, const struct rvs_dest_val *dest, __be16 vport)
{
	return dest->fwd == RVS_FWD_NAT && dest->family == pkt->family &&
	       dest->addr[0] == pkt->saddr[0] && dest->addr[1] == pkt->saddr[1] &&
	       dest->addr[2] == pkt->saddr[2] && dest->addr[3] == pkt->saddr[3] &&
	       rvs_conn_rport(dest, vport) == pkt->sport;
}

/* A real server's reply: source rewritten to the virtual address and port its connection's client
 * used (reply entry @rep), then forwarded by the routing table toward the client.
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline int
rvs_nat_reply_xmit(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_conn_rep *rep)
{
	int ret;

	ret = rvs_nat_rewrite(ctx, pkt, 0, rep->vaddr, rep->vport);
	if (ret != RVS_OK)
		return ret;
	return rvs_fib_xmit(ctx, pkt);
}

/* The NAT connection that a real server's packet with @pkt's addresses and ports answers, found the
 * way lib/conn.h describes: its reply entry (*rep, which names the virtual address and port to answer
 * from), the service still under that id (*svc), the client-side entry naming the same real server,
 * and the packet coming from that real server's address and port (*dest). NULL when any step fails:
 * the packet is no NAT reply. Serves the replies (rvs_xdp_reply) and the ICMP errors that quote one
 * (lib/icmp.h).
 * Mirror: rvs-model/src/fwd/nat.rs */
static __always_inline struct rvs_conn_val *
rvs_nat_reply_conn(const struct rvs_pkt *pkt, struct rvs_conn_rep **rep, struct rvs_svc_val **svc,
		   struct rvs_dest_val **dest)
{
	struct rvs_conn_val *conn;
	struct rvs_conn_rep *r;
	struct rvs_svc_key *k;
	struct rvs_svc_val *s;
	struct rvs_dest_val *d;
	struct rvs_conn_key key;
	__u32 svc_id;

	if (!rvs_nat_enabled())
		return NULL;
	rvs_conn_key_of(pkt, &key);
	r = (struct rvs_conn_rep *)rvs_conn_lookup(&key);
	if (!r || !(r->flags & RVS_CONN_F_REPLY))
		return NULL;
	svc_id = r->svc_id;
	k = bpf_map_lookup_elem(&rvs_svc_addr, &svc_id);
	if (!k)
		return NULL;
	s = bpf_map_lookup_elem(&rvs_svc, k);
	if (!s || s->id != svc_id)
		return NULL;
	rvs_conn_client_key(pkt, r, &key);
	conn = rvs_conn_lookup(&key);
	if (!conn || (conn->flags & RVS_CONN_F_REPLY) || conn->dest_id != r->dest_id)
		return NULL;
	d = rvs_conn_dest(conn, s);
	if (!d || !rvs_nat_from_dest(pkt, d, r->vport))
		return NULL;
	*rep = r;
	*svc = s;
	*dest = d;
	return conn;
}

#endif /* RVS_NAT_H */
