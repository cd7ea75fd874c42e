/* SPDX-License-Identifier: GPL-2.0-only */
/* The only place the program reads time, randomness or the CPU. With rvs_test_hooks set (by the test
 * loader, never in production) the values come from rvs_test_env[0] instead, so that the kernel and the
 * sans-IO model see the same inputs. rvs_test_hooks lives in .rodata, frozen at load: when it is 0 the
 * verifier proves the test branch dead and removes it, so production pays nothing for it. */
#ifndef RVS_HOOKS_H
#define RVS_HOOKS_H

#include <linux/bpf.h>
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

#endif /* RVS_HOOKS_H */
