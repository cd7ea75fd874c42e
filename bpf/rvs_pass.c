// SPDX-License-Identifier: GPL-2.0-only
/* Helper programs that are not the director.
 * rvs_pass: returns XDP_PASS. Attached to the peer of a veth that receives XDP_TX or XDP_REDIRECT
 * frames: a veth delivers those only when its peer runs an XDP program (NAPI).
 * rvs_bench_swap: swaps the MAC addresses and returns XDP_TX, the benchmark's baseline. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int rvs_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

SEC("xdp")
int rvs_bench_swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	unsigned char *p = data;
	unsigned char tmp[6];

	if (data + 14 > data_end)
		return XDP_PASS;
	__builtin_memcpy(tmp, p, 6);
	__builtin_memcpy(p, p + 6, 6);
	__builtin_memcpy(p + 6, tmp, 6);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
