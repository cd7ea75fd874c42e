//! Forwarding methods: bpf/lib/{dr,nat,tun}.h. Only DR exists so far.

pub mod dr;
