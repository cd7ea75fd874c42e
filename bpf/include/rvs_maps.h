/* SPDX-License-Identifier: GPL-2.0-only */
/* Every map of the director, pinned by name in the daemon's pin directory (default /sys/fs/bpf/rvs) so
 * that the daemon can restart, or be upgraded, while packets keep flowing and connections keep their
 * real server. Names are at most 15 characters (the kernel keeps 15) and equal rvs_abi::map::*.
 * Mirror: rvs-model/src/maps.rs */
#ifndef RVS_MAPS_H
#define RVS_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"

/* Virtual services by (address, port, protocol, family). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_SVC);
	__type(key, struct rvs_svc_key);
	__type(value, struct rvs_svc_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_svc SEC(".maps");

/* Firewall marks (rvsadm --add-mark): (family, protocol, address prefix) -> port ranges and their
 * marks, looked up when a packet matches no service by address (lib/mark.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RVS_MAX_MARK_PREFIXES);
	__type(key, struct rvs_mark_key);
	__type(value, struct rvs_mark_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_mark SEC(".maps");

/* Real servers by dest id. A slot without RVS_DEST_F_VALID is free. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_DEST);
	__type(key, __u32);
	__type(value, struct rvs_dest_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_dest SEC(".maps");

/* Service id -> the service's key (virtual address, port, protocol, family): how a NAT reply, which
 * carries the real server's address, finds the virtual address to put back (Cilium's reverse-NAT
 * index, here the service id). Written with every rvs_svc update by the loader's apply; a slot of a
 * deleted service keeps its old key, so readers check rvs_svc[key].id == id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_SVC);
	__type(key, __u32);
	__type(value, struct rvs_svc_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_svc_addr SEC(".maps");

/* Virtual addresses (struct rvs_vip_key -> 1): every address of a service in rvs_svc, at most one
 * entry per service. Echo requests to them are answered in XDP (lib/icmp.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_SVC);
	__type(key, struct rvs_vip_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_vip SEC(".maps");

/* Scheduler tables: slot -> dest id; service i owns [sched_base, sched_base + sched_len). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_SCHED_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_sched SEC(".maps");

/* Scheduler cursor per service id. Shared by all CPUs (not per-CPU): IPVS has one cursor per service,
 * and rr/wrr only split exactly when every CPU draws from the same sequence. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_SVC);
	__type(key, __u32);
	__type(value, struct rvs_svc_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_svc_st SEC(".maps");

/* lblc/lblcr: (service, destination address) -> the real server(s) it was sent to. Not preallocated:
 * most directors run no lblc service, and IPVS's tables grow with use too. A full map schedules by
 * wlc without remembering, as IPVS does when it cannot allocate an entry. The daemon expires entries
 * as IPVS's timer does (rvsd conns.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_LBLC_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rvs_lblc_key);
	__type(value, struct rvs_lblc_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_lblc SEC(".maps");

/* Connections, client side (and NAT reply entries, lib/conn.h). A plain preallocated hash, not an
 * LRU: an LRU evicts entries behind the program's back, and every evicted connection would stay
 * counted in rvs_dest_cnt for ever. A full table refuses new connections (RVS_DROP_CONN_FULL) until
 * the daemon expires entries; size it with rvsd's conn-max. max_entries is a placeholder: the loader
 * sets it (DataplaneConfig::conn_max). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_CONN_DEFAULT);
	__type(key, struct rvs_conn_key);
	__type(value, struct rvs_conn_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_conn SEC(".maps");

/* Active, inactive and persistent connections per dest id, and overload (struct rvs_dest_cnt).
 * Shared by all CPUs, updated atomically: schedulers compare them across real servers. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_DEST);
	__type(key, __u32);
	__type(value, struct rvs_dest_cnt);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_dest_cnt SEC(".maps");

/* Timeouts by state, rvs_timeouts[0] (struct rvs_timeouts), written by the daemon (--set). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_timeouts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_timeouts SEC(".maps");

/* Counters per service id, per CPU (no atomics on the fast path; user space sums the CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_MAX_SVC);
	__type(key, __u32);
	__type(value, struct rvs_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_svc_stats SEC(".maps");

/* Counters per dest id, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_MAX_DEST);
	__type(key, __u32);
	__type(value, struct rvs_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_dest_stats SEC(".maps");

/* Drop counters by enum rvs_drop, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_DROP__MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_drops SEC(".maps");

/* Global switches, rvs_cfg[0] (struct rvs_cfg). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_cfg SEC(".maps");

/* Interfaces a NAT packet may be redirected to, by ifindex (value: the same ifindex). The data plane
 * fills it when it attaches an interface. A hash devmap because ifindexes are sparse; a route through
 * an interface missing here falls back to the kernel (bpf_redirect_map's XDP_PASS default). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, RVS_MAX_TX_PORTS);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_tx_ports SEC(".maps");

/* Routes of lib/hooks.h's rvs_fib_lookup in tests; read only when rvs_test_hooks is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_TEST_FIB_MAX);
	__type(key, struct rvs_test_fib_key);
	__type(value, struct rvs_test_fib);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_test_fib SEC(".maps");

/* Inputs of lib/hooks.h in tests; read only when rvs_test_hooks is set. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_test_env);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rvs_test_env SEC(".maps");

#endif /* RVS_MAPS_H */
