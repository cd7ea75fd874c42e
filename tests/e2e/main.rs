//! End-to-end tests: real `rvsd`, `rvsadm` and `rvs-realserver` processes, real TCP connections between
//! network namespaces on one L2 segment (see `rvs_testkit::lab`). They need root, and fail (never skip)
//! without it. Each test builds its own namespaces with unique names, so they may run in parallel.

mod conns;
mod conntable;
mod countsched;
mod dr;
mod dr6;
mod fwmark;
mod golden;
mod hashsched;
mod icmp;
mod listing;
mod nat;
mod natports;
mod ops;
mod persist;
mod rate;
mod realserver;
mod restart;
mod restore;
mod rvsadm_out;
mod symlink;
mod timeouts;
mod topo;
mod tun;
mod weights;
mod zero;
