// SPDX-License-Identifier: GPL-2.0-only
/* Benchmark wrapper, never attached. BPF_PROG_TEST_RUN with repeat > 1 runs every iteration on the
 * previous iteration's output, so a SYN repeated N times would open one connection and then find it
 * N-1 times. rvs_bench_newconn turns the frame into the next client before each run, counting over
 * (low 16 bits of the source address, source port), then tail-calls the program under test in
 * rvs_bench_jmp[0]: every iteration is a connection the director has never seen. Its own cost is
 * measured with the MAC-swap baseline behind it and subtracted (xtask/src/bench.rs).
 * The frame must be Ethernet + IPv4 without options + TCP or UDP; checksums are left stale (the
 * director does not verify them). */
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
