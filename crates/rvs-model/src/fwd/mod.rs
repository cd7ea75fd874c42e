//! Forwarding methods: bpf/lib/{dr,nat,tun}.h, bpf/lib/fib.h (forwarding by the routing table), and
//! bpf/lib/icmp.h (ICMP tied to connections, echo requests to virtual addresses).

pub mod dr;
pub mod fib;
pub mod icmp;
pub mod nat;
pub mod tun;
