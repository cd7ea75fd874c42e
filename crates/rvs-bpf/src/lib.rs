//! The compiled XDP objects, embedded. The same bytes are loaded in production and in tests: test
//! behaviour comes from `const volatile` globals set by the loader, never from a second build.

/// The director (`SEC("xdp") rvs_xdp_ingress`), from `bpf/rvs_xdp.c`.
pub static RVS_XDP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_xdp.o"));
/// Real-server decapsulation (`SEC("xdp") rvs_decap_ingress`), from `bpf/rvs_decap.c`.
pub static RVS_DECAP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_decap.o"));
/// A program that only returns XDP_PASS (`rvs_pass`), for veth peers: XDP_TX into a veth drops frames
/// unless the peer runs an XDP program. Also the benchmark's MAC-swap baseline (`rvs_bench_swap`).
pub static RVS_PASS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_pass.o"));
/// The benchmark's new-connection wrapper (`rvs_bench_newconn`, tail-calls `rvs_bench_jmp[0]`), from
/// `bpf/rvs_bench.c`. Never attached.
pub static RVS_BENCH_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_bench.o"));

/// Name of the director's program in [`RVS_XDP_OBJ`].
pub const XDP_PROG: &str = "rvs_xdp_ingress";
/// The director's expiry program in [`RVS_XDP_OBJ`], run by the daemon with BPF_PROG_TEST_RUN.
pub const EXPIRE_PROG: &str = "rvs_xdp_expire";
/// Name of the decap program in [`RVS_DECAP_OBJ`].
pub const DECAP_PROG: &str = "rvs_decap_ingress";
/// Name of the pass-through program in [`RVS_PASS_OBJ`].
pub const PASS_PROG: &str = "rvs_pass";
/// Name of the MAC-swap baseline in [`RVS_PASS_OBJ`].
pub const BENCH_SWAP_PROG: &str = "rvs_bench_swap";
/// Name of the new-connection wrapper in [`RVS_BENCH_OBJ`].
pub const BENCH_NEWCONN_PROG: &str = "rvs_bench_newconn";
/// Name of the wrapper's tail-call map in [`RVS_BENCH_OBJ`].
pub const BENCH_JMP_MAP: &str = "rvs_bench_jmp";
