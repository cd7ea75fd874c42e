//! Reference model of the XDP data plane (bpf/), in pure Rust with no I/O: time, randomness, the CPU and
//! the kernel's routing table are arguments ([`Env`]). Each module mirrors one C file and each function one C function, with the
//! C's name (STYLE.md 3.3); the difftests run the same packets through this model and the real program
//! and require identical verdicts, bytes and map changes.
//!
//! | C | here |
//! |---|---|
//! | bpf/include/rvs_maps.h | [`maps`] |
//! | bpf/lib/hooks.h | [`env`] |
//! | bpf/lib/parse.h | [`parse`] + [`wire`] |
//! | bpf/lib/csum.h | [`csum`] |
//! | bpf/lib/svc.h | [`svc`] |
//! | bpf/lib/mark.h | [`mark`] |
//! | bpf/lib/conn.h | [`conn`] |
//! | bpf/lib/sched.h | [`sched`] |
//! | bpf/lib/persist.h | [`persist`] |
//! | bpf/lib/expire.h | [`expire`] |
//! | bpf/lib/dr.h | [`fwd::dr`] |
//! | bpf/lib/fib.h | [`fwd::fib`] |
//! | bpf/lib/nat.h | [`fwd::nat`] |
//! | bpf/lib/tun.h | [`fwd::tun`] |
//! | bpf/lib/icmp.h | [`fwd::icmp`] |
//! | bpf/lib/stats.h | [`stats`] |
//! | bpf/lib/verdict.h, bpf/rvs_xdp.c | [`xdp`] |
//! | bpf/rvs_decap.c (the real server's program) | [`decap`] |
//! | XDP runtime | [`frame`] |

pub mod conn;
pub mod csum;
pub mod decap;
pub mod env;
pub mod expire;
pub mod frame;
pub mod fwd;
pub mod maps;
pub mod mark;
pub mod parse;
pub mod persist;
pub mod sched;
pub mod stats;
pub mod svc;
pub mod wire;
pub mod xdp;

pub use env::Env;
pub use frame::{Frame, XdpAction};
pub use maps::Maps;
pub use xdp::{Verdict, rvs_xdp_expire, rvs_xdp_ingress};
