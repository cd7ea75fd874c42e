//! The program's impure inputs (time, randomness, CPU), which the C reads only through
//! bpf/lib/hooks.h. Here they are arguments, never read from the OS.

use rvs_abi::TestEnv;

/// Inputs of one program run: what `rvs_now_ns()`, `rvs_prandom()` and `rvs_cpu()` return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Env {
    /// Monotonic clock, ns (`bpf_ktime_get_ns`).
    pub now_ns: u64,
    /// CPU the program runs on (`bpf_get_smp_processor_id`); selects the per-CPU map slots.
    pub cpu: u32,
    /// Next pseudo-random number (`bpf_get_prandom_u32`).
    pub prandom: u32,
}

impl Env {
    /// The same inputs in the form the test loader writes to `rvs_test_env[0]`.
    pub fn to_test_env(&self) -> TestEnv {
        TestEnv {
            now_ns: self.now_ns,
            prandom: self.prandom,
            cpu: self.cpu,
        }
    }
}

/// Mirrors `rvs_now_ns` (bpf/lib/hooks.h).
pub fn rvs_now_ns(env: &Env) -> u64 {
    env.now_ns
}

/// Mirrors `rvs_prandom` (bpf/lib/hooks.h).
pub fn rvs_prandom(env: &Env) -> u32 {
    env.prandom
}

/// Mirrors `rvs_cpu` (bpf/lib/hooks.h).
pub fn rvs_cpu(env: &Env) -> u32 {
    env.cpu
}
