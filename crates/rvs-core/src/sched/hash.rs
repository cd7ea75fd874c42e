//! The hash functions IPVS's table-driven schedulers (`sh`, `dh`, `mh`) index their tables with, bit for
//! bit as a 64-bit Linux kernel computes them.
//!
//! Sources: `hash_32` of include/linux/hash.h (generic version; x86-64 has no arch override),
//! `hsiphash` of lib/siphash.c, and the address folding of net/netfilter/ipvs/ip_vs_{sh,dh,mh}.c.

use std::net::IpAddr;

/// `GOLDEN_RATIO_32` of include/linux/hash.h. Linux 4.7 ("hash.h: Eliminate bad hash multipliers from
/// hash_32() and hash_64()") replaced 0x9e370001 with it, and IPVS's `sh`/`dh` took `hash_32` later
/// still; older kernels spread their buckets differently.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)`: the top `bits` bits of `val * GOLDEN_RATIO_32` (mod 2^32).
/// `bits` is clamped to 1..=32, the range the kernel defines it for.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    let bits = bits.clamp(1, 32);
    // Shifting a u32 by 32 is an overflow in Rust; widen so bits == 32 returns the product itself.
    let product = u64::from(val.wrapping_mul(GOLDEN_RATIO_32));
    u32::try_from(product >> (32 - bits)).unwrap_or(u32::MAX)
}

/// Address family of the service whose scheduler hashes an address (`svc->af` in IPVS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Af {
    /// AF_INET.
    Inet,
    /// AF_INET6.
    Inet6,
}

impl Af {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Af::Inet,
            IpAddr::V6(_) => Af::Inet6,
        }
    }
}

/// `ntohl(addr_fold)` of ip_vs_{sh,dh,mh}.c for an address of the service's own family: an IPv4
/// address as a host-order integer, an IPv6 address as the XOR of its four 32-bit words.
pub fn addr_fold(addr: IpAddr) -> u32 {
    addr_fold_in(Af::of(addr), addr)
}

/// `ntohl(addr_fold)` as IPVS computes it when the address family of `addr` may differ from the
/// service's `af` (a mixed-family tunnel dest hashed by `mh`).
///
/// The kernel folds by `svc->af` over `union nf_inet_addr`: an IPv4 service reads the first 32 bits
/// of an IPv6 dest, and an IPv6 service XORs an IPv4 dest with the zeroed rest of the union, which
/// leaves the IPv4 address. XOR commutes with the byte swap, so folding host-order words is the same
/// as `ntohl` of the folded network-order words.
pub fn addr_fold_in(af: Af, addr: IpAddr) -> u32 {
    match (af, addr) {
        (_, IpAddr::V4(a)) => u32::from(a),
        (Af::Inet6, IpAddr::V6(a)) => {
            let b = a.octets();
            b.chunks_exact(4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .fold(0, |acc, w| acc ^ w)
        }
        (Af::Inet, IpAddr::V6(a)) => {
            let b = a.octets();
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        }
    }
}

/// `hsiphash_key_t` of a 64-bit kernel: two `unsigned long`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HsiphashKey(pub [u64; 2]);

/// SipHash state words, initialised as lib/siphash.c's `PREAMBLE`.
struct Sip {
    v: [u64; 4],
}

impl Sip {
    /// The constants are "somepseudorandomlygeneratedbytes" (the SipHash paper's, which the kernel keeps).
    fn new(key: &HsiphashKey) -> Self {
        let [k0, k1] = key.0;
        Sip {
            v: [
                0x736f_6d65_7073_6575 ^ k0,
                0x646f_7261_6e64_6f6d ^ k1,
                0x6c79_6765_6e65_7261 ^ k0,
                0x7465_6462_7974_6573 ^ k1,
            ],
        }
    }

    /// One SipRound (`SIPHASH_PERMUTATION`).
    fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.v = [v0, v1, v2, v3];
    }

    fn compress(&mut self, m: u64, rounds: usize) {
        self.v[3] ^= m;
        for _ in 0..rounds {
            self.round();
        }
        self.v[0] ^= m;
    }

    fn finish(mut self, rounds: usize) -> u64 {
        self.v[2] ^= 0xff;
        for _ in 0..rounds {
            self.round();
        }
        let [v0, v1, v2, v3] = self.v;
        (v0 ^ v1) ^ (v2 ^ v3)
    }
}

/// SipHash-c-d over `data`: little-endian 64-bit words, then the last word holding the tail bytes and
/// `len << 56`.
fn siphash_cd(data: &[u8], key: &HsiphashKey, c: usize, d: usize) -> u64 {
    let mut s = Sip::new(key);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut m = [0u8; 8];
        m.copy_from_slice(w);
        s.compress(u64::from_le_bytes(m), c);
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // The kernel's `len` is a size_t shifted into the top byte, so only its low 8 bits count.
    let b = u64::from_le_bytes(last) | ((data.len() as u64) << 56);
    s.compress(b, c);
    s.finish(d)
}

/// The kernel's `hsiphash(data, len, key)` on a 64-bit kernel: SipHash-1-3 (not HalfSipHash; lib/siphash.c
/// says so: "on 64-bit, we make HalfSipHash1-3 actually be SipHash1-3"), truncated to its low 32 bits.
/// A 32-bit kernel computes real HalfSipHash-1-3 and so builds different `mh` tables.
pub fn hsiphash(data: &[u8], key: &HsiphashKey) -> u32 {
    // Truncation is the kernel's: the u64 result is returned as u32.
    siphash_cd(data, key, 1, 3) as u32
}

/// The kernel's `hsiphash_1u32(v, key)`, which equals `hsiphash(&v, 4, key)` on a little-endian
/// machine: what IPVS's `mh` hashes (`hsiphash(&v, sizeof(v), key)` on an `unsigned int`).
pub fn hsiphash_1u32(v: u32, key: &HsiphashKey) -> u32 {
    hsiphash(&v.to_le_bytes(), key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn hash_32_is_the_top_bits_of_the_golden_ratio_product() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 32), GOLDEN_RATIO_32);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(2, 8), 0xc3);
        assert_eq!(hash_32(0xC612_0002, 32), 0xC612_0002u32.wrapping_mul(0x61C8_8647));
        for v in [0u32, 1, 7, 0xdead_beef, u32::MAX] {
            for bits in 1..=32 {
                assert!(u64::from(hash_32(v, bits)) < (1u64 << bits));
            }
        }
    }

    #[test]
    fn fold_of_ipv4_is_host_order_and_ipv6_xors_words() {
        assert_eq!(addr_fold(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))), 0xC612_0002);
        let a6: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        assert_eq!(addr_fold(IpAddr::V6(a6)), 0x2001_0db8 ^ 0x0001_0002);
        assert_eq!(addr_fold_in(Af::Inet, IpAddr::V6(a6)), 0x2001_0db8);
        let a4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(addr_fold_in(Af::Inet6, a4), addr_fold(a4));
    }

    /// The SipHash core, run as SipHash-2-4, agrees with std's (deprecated, but stable) SipHasher, which
    /// is the reference SipHash-2-4 over the bytes written.
    #[test]
    fn siphash_core_matches_std_siphash24() {
        use std::hash::Hasher;
        let (k0, k1) = (0x0706_0504_0302_0100u64, 0x0f0e_0d0c_0b0a_0908u64);
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            #[allow(deprecated, reason = "the only SipHash-2-4 in std, used as an oracle")]
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(&data);
            assert_eq!(
                siphash_cd(&data, &HsiphashKey([k0, k1]), 2, 4),
                h.finish(),
                "len {len}"
            );
        }
    }

    #[test]
    fn siphash24_paper_vector() {
        // SipHash paper, appendix A: key 00..0f, message 00..0e -> a129ca6149be45e5.
        let data: Vec<u8> = (0..15).collect();
        let key = HsiphashKey([0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]);
        assert_eq!(siphash_cd(&data, &key, 2, 4), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn hsiphash_1u32_is_hsiphash_of_the_le_bytes() {
        let key = HsiphashKey([2_654_435_761, 2_654_435_761]);
        for v in [0u32, 80, 0xC612_000B + 80, u32::MAX] {
            assert_eq!(hsiphash_1u32(v, &key), hsiphash(&v.to_le_bytes(), &key));
        }
    }
}
