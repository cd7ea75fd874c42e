// SPDX-License-Identifier: GPL-2.0-only
/* Benchmark wrappers, never attached. BPF_PROG_TEST_RUN with repeat > 1 runs every iteration on the
 * previous iteration's output. Each wrapper prepares the frame, then tail-calls the program under test
 * in rvs_bench_jmp[0]; its own cost is measured with the MAC-swap baseline behind it and subtracted
 * (xtask/src/bench.rs).
 * - rvs_bench_newconn: a SYN repeated N times would open one connection and then find it N-1 times, so
 *   it turns the frame into the next client before each run, counting over (low 16 bits of the source
 *   address, source port): every iteration is a connection the director has never seen. The frame
 *   must be Ethernet + IPv4 without options + TCP or UDP; checksums are left stale (the director does
 *   not verify them).
 * - rvs_bench_restore: NAT rewrites the packet it forwards, so the next iteration would see the
 *   rewritten packet; it copies the frame saved in rvs_bench_frame back over the packet first: every
 *   iteration is the same packet of an established NAT flow. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rvs_bench_jmp SEC(".maps");

/* The frame rvs_bench_restore writes before each run. */
#define RVS_BENCH_FRAME_MAX	252
struct rvs_bench_frame {
	__u32 len;
	__u8 data[RVS_BENCH_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_bench_frame);
} rvs_bench_frame SEC(".maps");

SEC("xdp")
int
rvs_bench_restore(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct rvs_bench_frame *f = bpf_map_lookup_elem(&rvs_bench_frame, &zero);
	__u32 len;

	if (!f)
		return XDP_ABORTED;
	len = f->len;
	if (len == 0 || len > RVS_BENCH_FRAME_MAX)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, f->data, len))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &rvs_bench_jmp, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int
rvs_bench_newconn(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__be16 *sport = (void *)(ip + 1);
	__u16 port;

	if ((void *)(sport + 1) > data_end)
		return XDP_ABORTED;
	port = bpf_ntohs(*sport) + 1;
	*sport = bpf_htons(port);
	if (port == 0) {
		__u32 saddr = bpf_ntohl(ip->saddr);

		ip->saddr = bpf_htonl((saddr & 0xffff0000) | ((saddr + 1) & 0xffff));
	}
	bpf_tail_call(ctx, &rvs_bench_jmp, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";
