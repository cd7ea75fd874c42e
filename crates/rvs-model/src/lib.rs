//! Reference model of the XDP data plane (bpf/), in pure Rust with no I/O.
