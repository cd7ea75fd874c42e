// SPDX-License-Identifier: GPL-2.0-only
/* Real-server decapsulation of VS/TUN (IP-in-IP) without the ipip module. Placeholder until the
 * forwarding-methods work: passes everything to the stack. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int rvs_decap_ingress(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
