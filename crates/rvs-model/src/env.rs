//! The program's impure inputs (time, randomness, CPU, the kernel's routing table), which the C reads
//! only through bpf/lib/hooks.h. Here they are arguments, never read from the OS.

use std::collections::BTreeMap;

use rvs_abi::{Addr, Be16, Family, TestEnv, TestFib, TestFibKey, fib_ret};

/// Routes, as the test loader writes them to `rvs_test_fib`: destination -> what `bpf_fib_lookup`
/// answers for it. A destination without an entry has no route.
pub type Fib = BTreeMap<TestFibKey, TestFib>;

/// Inputs of one program run: what `rvs_now_ns()`, `rvs_prandom()`, `rvs_cpu()` and
/// `rvs_fib_lookup()` return.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Env {
    /// Monotonic clock, ns (`bpf_ktime_get_ns`).
    pub now_ns: u64,
    /// CPU the program runs on (`bpf_get_smp_processor_id`); selects the per-CPU map slots.
    pub cpu: u32,
    /// Next pseudo-random number (`bpf_get_prandom_u32`).
    pub prandom: u32,
    /// The routing table and neighbours as `bpf_fib_lookup` sees them.
    pub fib: Fib,
}

impl Env {
    /// The clock, CPU and random number in the form the test loader writes to `rvs_test_env[0]` (the
    /// routes go to `rvs_test_fib`: [`Env::fib`]).
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

/// `AF_INET`, the family of `struct bpf_fib_lookup` (`RVS_SYS_AF_INET`).
pub const RVS_SYS_AF_INET: u8 = 2;
/// `AF_INET6` (`RVS_SYS_AF_INET6`).
pub const RVS_SYS_AF_INET6: u8 = 10;

/// The fields of `struct bpf_fib_lookup` that the program fills or reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibParams {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// IP protocol.
    pub l4_protocol: u8,
    /// Source port.
    pub sport: Be16,
    /// Destination port.
    pub dport: Be16,
    /// IP length (for the kernel's MTU check).
    pub tot_len: u16,
    /// In: the ingress interface; out: the egress interface.
    pub ifindex: u32,
    /// IPv4 TOS.
    pub tos: u8,
    /// IPv6 traffic class and flow label, wire bytes (the union with `tos`).
    pub flowinfo: [u8; 4],
    /// Source address (IPv4 in word 0).
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Out: the egress interface's MAC.
    pub smac: [u8; 6],
    /// Out: the next hop's MAC.
    pub dmac: [u8; 6],
}

/// Mirrors `rvs_fib_lookup` (bpf/lib/hooks.h), in its test-hook form: the answer comes from
/// `env.fib`, keyed by the destination.
pub fn rvs_fib_lookup(env: &Env, params: &mut FibParams) -> i64 {
    let key = TestFibKey {
        addr: if params.family == RVS_SYS_AF_INET {
            [
                params.dst[0],
                Default::default(),
                Default::default(),
                Default::default(),
            ]
        } else {
            params.dst
        },
        family: if params.family == RVS_SYS_AF_INET {
            Family::Inet as u8
        } else {
            Family::Inet6 as u8
        },
        _pad: [0; 3],
    };
    let Some(res) = env.fib.get(&key) else {
        return i64::from(fib_ret::NOT_FWDED);
    };
    if res.ret == fib_ret::SUCCESS || res.ret == fib_ret::NO_NEIGH {
        params.ifindex = res.ifindex;
    }
    if res.ret == fib_ret::SUCCESS {
        params.smac = res.smac;
        params.dmac = res.dmac;
    }
    i64::from(res.ret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_abi::addr_v4;

    #[test]
    fn fib_answers_by_destination_and_no_route_is_not_fwded() {
        let mut env = Env::default();
        env.fib.insert(
            TestFibKey::v4([198, 18, 1, 2]),
            TestFib {
                ret: fib_ret::SUCCESS,
                ifindex: 7,
                smac: [1; 6],
                dmac: [2; 6],
            },
        );
        env.fib.insert(
            TestFibKey::v4([198, 18, 1, 3]),
            TestFib {
                ret: fib_ret::NO_NEIGH,
                ifindex: 8,
                smac: [9; 6],
                dmac: [9; 6],
            },
        );
        let mut p = FibParams {
            family: RVS_SYS_AF_INET,
            dst: addr_v4([198, 18, 1, 2]),
            ifindex: 1,
            ..Default::default()
        };
        assert_eq!(rvs_fib_lookup(&env, &mut p), 0);
        assert_eq!((p.ifindex, p.smac, p.dmac), (7, [1; 6], [2; 6]));
        let mut p = FibParams {
            family: RVS_SYS_AF_INET,
            dst: addr_v4([198, 18, 1, 3]),
            ..Default::default()
        };
        assert_eq!(rvs_fib_lookup(&env, &mut p), i64::from(fib_ret::NO_NEIGH));
        assert_eq!((p.ifindex, p.smac), (8, [0; 6]));
        let mut p = FibParams {
            family: RVS_SYS_AF_INET6,
            dst: addr_v4([198, 18, 1, 2]),
            ..Default::default()
        };
        assert_eq!(rvs_fib_lookup(&env, &mut p), i64::from(fib_ret::NOT_FWDED));
    }
}
