// SPDX-License-Identifier: GPL-2.0-only
/* The director: an IPVS-style virtual server in XDP, for IPv4 and IPv6. For a packet to a virtual
 * service it finds or schedules the connection's real server and forwards the packet to it by the real
 * server's method: direct routing (lib/dr.h), NAT (lib/nat.h) or IP-in-IP tunnel (lib/tun.h). When NAT is configured, a packet to no
 * service may be a NAT real server's reply, which goes back to the client from the virtual address.
 * ICMP errors about a tracked connection go to its other side, and echo requests to a virtual address
 * are answered (lib/icmp.h).
 * Everything else goes to the stack untouched (XDP_PASS), so the director stays reachable.
 * rvs_xdp_process lists the stages; each helper's comment says what its stage decides. rvs-model
 * mirrors every function (its xdp.rs mirrors this file). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/verdict.h"
#include "lib/hooks.h"
#include "lib/parse.h"
#include "lib/svc.h"
#include "lib/sched.h"
#include "lib/conn.h"
#include "lib/dr.h"
#include "lib/nat.h"
#include "lib/tun.h"
#include "lib/stats.h"
#include "lib/persist.h"
#include "lib/expire.h"
#include "lib/icmp.h"

/* Puts the ABI enums, and the ABI structs no map holds (clang's BTF keeps no local variable's type),
 * into the object's BTF, where rvs-bpf/tests/abi_layout.rs compares them with their Rust mirrors.
 * Never read. */
struct rvs_abi_enums {
	enum rvs_family family;
	enum rvs_fwd fwd;
	enum rvs_sched sched;
	enum rvs_tcp_state tcp_state;
	enum rvs_drop drop;
	struct rvs_expire_hdr expire_hdr;
	struct rvs_conn_rep conn_rep;
};
const volatile struct rvs_abi_enums rvs_abi_anchor __attribute__((used));

/* Finds the connection of @pkt, or schedules a new one (through its client network's template for a
 * persistent service, lib/persist.h), and returns its real server. An entry is used
 * when it has not timed out, its real server is still usable and the packet does not reopen it (a new
 * SYN on TIME_WAIT or CLOSE, or to a real server of weight 0). Otherwise the entry ends here: the packet claims it (lib/conn.h; a lost
 * claim is -CONN_BUSY) and is handled as if there were no entry: a TCP segment that cannot open a
 * connection is dropped (-NOT_SYN), anything else is scheduled and replaces the entry, counted in conns.
 * A claimed entry that nothing replaces is deleted at once (IPVS's expire_nodest_conn, on in rvs).
 * Not inlined, for its stack frame (see rvs_xdp_forward).
 * Mirror: rvs-model/src/xdp.rs */
static __attribute__((noinline)) int
rvs_xdp_conn(const struct rvs_pkt *pkt, const struct rvs_svc_val *svc, __u64 now_ns,
	     __u32 *dest_id, struct rvs_dest_val **dest)
{
	struct rvs_conn_key key, tkey;
	struct rvs_conn_val *conn;
	int ret, claimed = 0;
	__u32 w, ctag = 0;
	__u8 ctl = 0;

	/* One-packet scheduling (-o, UDP only): every datagram is a connection of its own, scheduled
	 * and counted in conns but never entered in the table: IPVS frees such a connection after its
	 * one packet, so it never shows in the counters or in -Lc either (a persistent service's
	 * template still pins the client). */
	int ops = (svc->flags & RVS_SVC_F_ONEPACKET) && pkt->proto == IPPROTO_UDP;

	rvs_conn_key_of(pkt, &key);
	conn = ops ? NULL : rvs_conn_lookup(&key);
	/* A client's source port 0 makes its key its network's template key (lib/persist.h). */
	if (conn && (conn->flags & RVS_CONN_F_TEMPLATE))
		return -RVS_DROP_PORT_ZERO;
	/* A reply entry under a client's tuple (a client using a real server's address and port toward a
	 * virtual address that is another connection's client) is no connection of this packet. */
	if (conn && !(conn->flags & RVS_CONN_F_REPLY)) {
		w = rvs_conn_word_read(conn);
		if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD)
			return -RVS_DROP_CONN_BUSY;
		*dest = NULL;
		if (!rvs_conn_expired(RVS_CONN_W_STATE(w), conn->last_ns, now_ns) &&
		    !rvs_conn_reused(conn, pkt))
			*dest = rvs_conn_dest(conn, svc);
		/* IPVS with expire_nodest_conn (on in rvs) schedules a new SYN afresh when its
		 * connection's real server is quiesced (weight 0), rather than sending it there. */
		if (*dest && (*dest)->weight == 0 && pkt->proto == IPPROTO_TCP && rvs_conn_is_new(pkt))
			*dest = NULL;
		if (*dest) {
			rvs_conn_touch(conn, pkt, rvs_tcp_dir_in(conn->flags), now_ns);
			*dest_id = conn->dest_id;
			return RVS_OK;
		}
		if (!rvs_conn_claim(&key, conn, w, now_ns))
			return -RVS_DROP_CONN_BUSY;
		claimed = 1;
	}
	ret = -RVS_DROP_NOT_SYN;
	if (rvs_conn_is_new(pkt)) {
		ret = RVS_PERSIST_SCHEDULE;
		if (svc->flags & RVS_SVC_F_PERSISTENT) {
			ret = rvs_persist_find(svc, pkt, now_ns, &tkey, &ctag, dest_id, dest);
			ctl = RVS_CONN_F_CONTROLLED;
		}
		if (ret == RVS_PERSIST_SCHEDULE) {
			ret = rvs_sched_choose(svc, rvs_sched_addr_fold(pkt->saddr, pkt->family), pkt->sport,
					       pkt->family, (const struct rvs_addr *)pkt->daddr);
			if (ret >= 0) {
				*dest_id = (__u32)ret;
				*dest = bpf_map_lookup_elem(&rvs_dest, dest_id);
				ret = *dest ? RVS_OK : -RVS_DROP_NO_DEST;
			}
			if (ret == RVS_OK && ctl)
				ret = rvs_persist_create(svc, &tkey, now_ns, *dest_id, *dest, &ctag);
		}
	}
	if (ret == RVS_OK) {
		if (!ops) {
			struct rvs_conn_new n = {
				.now_ns = now_ns, .dest_id = *dest_id, .ctag = ctag, .ctl = ctl,
			};

			ret = rvs_conn_create(&key, pkt, svc, *dest, &n);
		}
		if ((ret != RVS_OK || ops) && ctl)
			rvs_persist_release(&tkey, ctag);
	}
	if (ret != RVS_OK) {
		if (claimed)
			bpf_map_delete_elem(&rvs_conn, &key);
		return ret;
	}
	rvs_stats_conn(svc->id, *dest_id);
	return RVS_OK;
}

/* Sends the packet to @dest by its forwarding method. Not inlined: a BPF-to-BPF call gets a stack
 * frame of its own, so the forwarding paths' locals (FIB lookup parameters, tunnel headers) do not
 * sit in rvs_xdp_process's frame while the scheduler's global function needs its own: the verifier
 * caps a chain of frames at 512 bytes.
 * Mirror: rvs-model/src/xdp.rs */
static __attribute__((noinline)) int
rvs_xdp_forward(struct xdp_md *ctx, struct rvs_pkt *pkt, const struct rvs_dest_val *dest)
{
	if (dest->fwd == RVS_FWD_DR)
		return rvs_dr_xmit(ctx, dest);
	if (dest->fwd == RVS_FWD_NAT)
		return rvs_nat_xmit(ctx, pkt, dest);
	if (dest->fwd == RVS_FWD_TUN)
		return rvs_tun_xmit(ctx, pkt, dest);
	return -RVS_DROP_FWD_UNSUPP;
}

/* (Not inlined, for its stack frame: see rvs_xdp_forward.)
 * A packet to no service: a NAT real server's reply if its tuple has a reply entry and the connection
 * behind it still agrees (lib/conn.h) and has not timed out; then the connection's state advances by IPVS's OUTPUT table,
 * the source becomes the virtual address and port the client used (the reply entry's), and the packet
 * goes to the client, counted in outpkts/outbytes. Anything else passes untouched. A director without NAT real servers skips all of
 * it after one array lookup.
 * Mirror: rvs-model/src/xdp.rs */
static __attribute__((noinline)) int
rvs_xdp_reply(struct xdp_md *ctx, struct rvs_pkt *pkt)
{
	struct rvs_conn_rep *rep;
	struct rvs_conn_val *conn;
	struct rvs_dest_val *dest;
	struct rvs_svc_val *svc;
	__u64 now_ns;
	__u32 svc_id, w;
	int ret;

	conn = rvs_nat_reply_conn(pkt, &rep, &svc, &dest);
	if (!conn)
		return XDP_PASS;
	svc_id = svc->id;
	/* A connection past its timeout, or claimed, is gone for its replies too, as for the client's
	 * packets (IPVS finds no connection once its timer fired): refreshing it here would revive an
	 * entry the expiry is deleting. */
	now_ns = rvs_now_ns();
	w = rvs_conn_word_read(conn);
	if ((RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD) ||
	    rvs_conn_expired(RVS_CONN_W_STATE(w), conn->last_ns, now_ns))
		return XDP_PASS;
	rvs_conn_touch(conn, pkt, RVS_TCP_DIR_OUTPUT, now_ns);
	ret = rvs_nat_reply_xmit(ctx, pkt, rep);
	if (ret < 0)
		return ret;
	rvs_stats_out(svc_id, conn->dest_id, pkt->ip_len);
	return ret;
}

/* The packet path, returning a verdict (lib/verdict.h): parse (ICMP and ICMPv6 go to lib/icmp.h after
 * the IP header); service lookup (a miss is a NAT reply, or passes the frame untouched); connection;
 * forwarding; per-CPU stats of every forwarded packet.
 * Mirror: rvs-model/src/xdp.rs */
static __always_inline int
rvs_xdp_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_dest_val *dest = NULL;
	struct rvs_svc_val *svc;
	struct rvs_pkt pkt;
	__u32 dest_id = 0;
	int ret;

	__builtin_memset(&pkt, 0, sizeof(pkt));
	ret = rvs_parse_eth(data, data_end, &pkt);
	if (ret != RVS_OK)
		return ret;
	if (pkt.family == RVS_AF_INET)
		ret = rvs_parse_ipv4(data, data_end, &pkt);
	else
		ret = rvs_parse_ipv6(data, data_end, &pkt);
	if (ret != RVS_OK)
		return ret;
	if (pkt.proto == IPPROTO_ICMP || pkt.proto == IPPROTO_ICMPV6)
		return rvs_icmp_process(ctx, &pkt);
	ret = rvs_parse_l4(data, data_end, &pkt);
	if (ret != RVS_OK)
		return ret;
	svc = rvs_svc_lookup(&pkt);
	if (!svc)
		return rvs_xdp_reply(ctx, &pkt);
	ret = rvs_xdp_conn(&pkt, svc, rvs_now_ns(), &dest_id, &dest);
	if (ret != RVS_OK)
		return ret;
	ret = rvs_xdp_forward(ctx, &pkt, dest);
	if (ret < 0)
		return ret;
	rvs_stats_in(svc->id, dest_id, pkt.ip_len);
	return ret;
}

/* Entry point: runs the packet path and turns a negative verdict into a counted XDP_DROP, the
 * program's only drop.
 * Mirror: rvs-model/src/xdp.rs */
SEC("xdp")
int
rvs_xdp_ingress(struct xdp_md *ctx)
{
	int ret = rvs_xdp_process(ctx);

	if (ret < 0)
		return rvs_stats_drop(-ret);
	return ret;
}

/* The daemon's expiry, run by it with BPF_PROG_TEST_RUN (never attached): the frame is a struct
 * rvs_expire_hdr and the connection keys the daemon found due; each is deleted only if it is still
 * due now, by lib/expire.h's rules, and hdr.deleted counts those deleted. Living beside the packet
 * path in one object, it shares its maps and its atomics.
 * Mirror: rvs-model/src/xdp.rs (rvs_expire_one and the rest: rvs-model/src/expire.rs) */
SEC("xdp")
int
rvs_xdp_expire(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct rvs_expire_hdr *hdr = data;
	struct rvs_conn_key key;
	__u64 now_ns = rvs_now_ns();
	__u32 i, n, deleted = 0;

	if ((void *)(hdr + 1) > data_end)
		return XDP_ABORTED;
	n = hdr->nkeys;
	for (i = 0; i < RVS_EXPIRE_BATCH && i < n; i++) {
		void *k = data + sizeof(*hdr) + i * sizeof(key);

		if (k + sizeof(key) > data_end)
			break;
		__builtin_memcpy(&key, k, sizeof(key));
		deleted += rvs_expire_one(&key, now_ns);
	}
	hdr->deleted = deleted;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
