//! Forwarding methods: bpf/lib/{dr,nat,tun}.h, and bpf/lib/fib.h (forwarding by the routing table).

pub mod dr;
pub mod fib;
pub mod nat;
pub mod tun;
