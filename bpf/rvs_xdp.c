// SPDX-License-Identifier: GPL-2.0-only
/* The director: an IPVS-style virtual server in XDP. For a packet to a virtual service it finds or
 * schedules the connection's real server and forwards the frame to it by direct routing; everything
 * else goes to the stack untouched (XDP_PASS), so the director stays reachable. rvs_xdp_process
 * lists the stages; each helper's comment says what its stage decides. rvs-model mirrors every
 * function (its xdp.rs mirrors this file). */
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
#include "lib/stats.h"

/* Puts the ABI enums into the object's BTF, where rvs-bpf/tests/abi_layout.rs compares their values
 * with the Rust enums. Never read. */
struct rvs_abi_enums {
	enum rvs_family family;
	enum rvs_fwd fwd;
	enum rvs_sched sched;
	enum rvs_tcp_state tcp_state;
	enum rvs_drop drop;
};
const volatile struct rvs_abi_enums rvs_abi_anchor __attribute__((used));

/* Finds the connection of @pkt, or schedules a new one, and returns its real server. An entry is used
 * when its real server is still usable and the packet does not reopen it (a new SYN on TIME_WAIT or
 * CLOSE); otherwise the packet is handled as if there were no entry: a TCP segment that cannot open a
 * connection is dropped (-NOT_SYN), anything else is scheduled, inserted and counted in conns.
 * Mirror: rvs-model/src/xdp.rs */
static __always_inline int
rvs_xdp_conn(const struct rvs_pkt *pkt, const struct rvs_svc_val *svc, __u64 now_ns,
	     __u32 *dest_id, struct rvs_dest_val **dest)
{
	struct rvs_conn_key key;
	struct rvs_conn_val *conn;
	int ret;

	rvs_conn_key_of(pkt, &key);
	conn = rvs_conn_lookup(&key);
	if (conn && !rvs_conn_reused(conn, pkt)) {
		*dest = rvs_conn_dest(conn, svc);
		if (*dest) {
			rvs_conn_touch(conn, pkt, now_ns);
			*dest_id = conn->dest_id;
			return RVS_OK;
		}
	}
	if (!rvs_conn_is_new(pkt))
		return -RVS_DROP_NOT_SYN;
	ret = rvs_sched_pick(svc, dest_id, dest);
	if (ret != RVS_OK)
		return ret;
	ret = rvs_conn_create(&key, pkt, svc, *dest_id, *dest, now_ns);
	if (ret != RVS_OK)
		return ret;
	rvs_stats_conn(svc->id, *dest_id);
	return RVS_OK;
}

/* Sends the frame to @dest by its forwarding method. Only DR exists so far.
 * Mirror: rvs-model/src/xdp.rs */
static __always_inline int
rvs_xdp_forward(struct xdp_md *ctx, const struct rvs_dest_val *dest)
{
	if (dest->fwd == RVS_FWD_DR)
		return rvs_dr_xmit(ctx, dest);
	return -RVS_DROP_FWD_UNSUPP;
}

/* The packet path, returning a verdict (lib/verdict.h): parse; service lookup (a miss passes the
 * frame untouched); connection; forwarding; per-CPU stats of every forwarded packet.
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
	ret = rvs_parse_ipv4(data, data_end, &pkt);
	if (ret != RVS_OK)
		return ret;
	ret = rvs_parse_l4(data, data_end, &pkt);
	if (ret != RVS_OK)
		return ret;
	svc = rvs_svc_lookup(&pkt);
	if (!svc)
		return XDP_PASS;
	ret = rvs_xdp_conn(&pkt, svc, rvs_now_ns(), &dest_id, &dest);
	if (ret != RVS_OK)
		return ret;
	ret = rvs_xdp_forward(ctx, dest);
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

char _license[] SEC("license") = "GPL";
