/* SPDX-License-Identifier: GPL-2.0-only */
/* The only place the program reads time, randomness, the CPU or the kernel's routing table. With
 * rvs_test_hooks set (by the test loader, never in production) the values come from rvs_test_env[0]
 * and the routes from rvs_test_fib instead, so that the kernel and the sans-IO model see the same
 * inputs. rvs_test_hooks lives in .rodata, frozen at load: when it is 0 the
 * verifier proves the test branch dead and removes it, so production pays nothing for it. */
#ifndef RVS_HOOKS_H
#define RVS_HOOKS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"

volatile const __u8 rvs_test_hooks = 0;

/* Current time in ns on CLOCK_MONOTONIC (what bpf_ktime_get_ns reads), or rvs_test_env[0].now_ns.
 * Mirror: rvs-model/src/env.rs */
static __always_inline __u64
rvs_now_ns(void)
{
	if (rvs_test_hooks) {
		__u32 zero = 0;
		struct rvs_test_env *env = bpf_map_lookup_elem(&rvs_test_env, &zero);

		return env ? env->now_ns : 0;
	}
	return bpf_ktime_get_ns();
}

/* A pseudo-random u32, or rvs_test_env[0].prandom.
 * Mirror: rvs-model/src/env.rs */
static __always_inline __u32
rvs_prandom(void)
{
	if (rvs_test_hooks) {
		__u32 zero = 0;
		struct rvs_test_env *env = bpf_map_lookup_elem(&rvs_test_env, &zero);

		return env ? env->prandom : 0;
	}
	return bpf_get_prandom_u32();
}

/* The CPU running the program, or rvs_test_env[0].cpu. Per-CPU maps need no call: the kernel picks the
 * slot; the model uses this value to pick the same one.
 * Mirror: rvs-model/src/env.rs */
static __always_inline __u32
rvs_cpu(void)
{
	if (rvs_test_hooks) {
		__u32 zero = 0;
		struct rvs_test_env *env = bpf_map_lookup_elem(&rvs_test_env, &zero);

		return env ? env->cpu : 0;
	}
	return bpf_get_smp_processor_id();
}

/* struct bpf_fib_lookup's family: AF_INET and AF_INET6 of <sys/socket.h>, which BPF programs cannot
 * include. */
#define RVS_SYS_AF_INET		2
#define RVS_SYS_AF_INET6	10

/* The kernel's FIB lookup for a packet being forwarded (bpf_fib_lookup with no flags: the ingress
 * interface's view, neighbour included). On SUCCESS params->ifindex, smac and dmac name the next hop;
 * on NO_NEIGH params->ifindex is the egress interface. Callers read nothing else back: the kernel
 * also overwrites the destination with the gateway, which tests do not reproduce.
 * With rvs_test_hooks the answer comes from rvs_test_fib, keyed by the destination: SUCCESS and
 * NO_NEIGH set params->ifindex, SUCCESS the MACs, and a destination without an entry gets NOT_FWDED,
 * which is what the kernel answers when there is no route.
 * Mirror: rvs-model/src/env.rs */
static __always_inline long
rvs_fib_lookup(struct xdp_md *ctx, struct bpf_fib_lookup *params)
{
	if (rvs_test_hooks) {
		struct rvs_test_fib_key key;
		struct rvs_test_fib *res;

		__builtin_memset(&key, 0, sizeof(key));
		if (params->family == RVS_SYS_AF_INET) {
			key.addr[0] = params->ipv4_dst;
			key.family = RVS_AF_INET;
		} else {
			__builtin_memcpy(key.addr, params->ipv6_dst, sizeof(key.addr));
			key.family = RVS_AF_INET6;
		}
		res = bpf_map_lookup_elem(&rvs_test_fib, &key);
		if (!res)
			return BPF_FIB_LKUP_RET_NOT_FWDED;
		if (res->ret == BPF_FIB_LKUP_RET_SUCCESS || res->ret == BPF_FIB_LKUP_RET_NO_NEIGH)
			params->ifindex = res->ifindex;
		if (res->ret == BPF_FIB_LKUP_RET_SUCCESS) {
			__builtin_memcpy(params->smac, res->smac, ETH_ALEN);
			__builtin_memcpy(params->dmac, res->dmac, ETH_ALEN);
		}
		return res->ret;
	}
	return bpf_fib_lookup(ctx, params, sizeof(*params), 0);
}

#endif /* RVS_HOOKS_H */
