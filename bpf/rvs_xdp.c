// SPDX-License-Identifier: GPL-2.0-only
/* The director. Placeholder: replaced by the walking skeleton's data plane. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"

SEC("xdp")
int rvs_xdp_ingress(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
