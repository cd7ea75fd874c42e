/* SPDX-License-Identifier: GPL-2.0-only */
/* Compiler helpers shared by every BPF source file. */
#ifndef RVS_COMPILER_H
#define RVS_COMPILER_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

/* Makes clang forget what it knows about @var, so that it uses the value a bounds check saw instead
 * of re-deriving it from a wider one (e.g. `x & 15` after `x & 255 <= 10`), which the verifier could
 * not bound (libbpf's barrier_var). */
#define rvs_barrier_var(var) asm volatile("" : "+r"(var))

/* Checked at compile time here and, against the Rust mirror, by rvs-bpf/tests/abi_layout.rs. */
#define RVS_ABI_ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), "size of " #type " changed: update crates/rvs-abi too")

#endif /* RVS_COMPILER_H */
