//! Internet checksums: the incremental update of RFC 1624 that NAT's header rewrites use. Mirrors
//! bpf/lib/csum.h. The C sums 16-bit words as loaded (network order, byte-swapped on the host); here
//! they are read big-endian. The one's-complement sum is byte-order independent (RFC 1071 2.B), so both
//! store the same bytes.
//!
//! [`csum_partial`] and [`ipv4_header_csum`] compute checksums from scratch. The data plane never does;
//! the tests use them to check the incremental results.

use rvs_abi::{Addr, Family};

/// Mirrors `rvs_csum_fold` (bpf/lib/csum.h): folds a sum of 16-bit words into 16 bits and complements
/// it.
pub fn rvs_csum_fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Mirrors `rvs_csum_replace2` (bpf/lib/csum.h): the checksum after one 16-bit word of the covered data
/// changed from `old` to `new` (RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`).
pub fn rvs_csum_replace2(check: u16, old: u16, new: u16) -> u16 {
    rvs_csum_fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// The two 16-bit words of an address word, as the wire holds them.
fn halves(w: rvs_abi::Be32) -> [u16; 2] {
    let b = w.to_wire();
    [u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]])]
}

/// Mirrors `rvs_csum_replace_addr` (bpf/lib/csum.h): the checksum after an address of `family` (IPv4:
/// word 0 only; IPv6: all four) changed from `old` to `new`.
pub fn rvs_csum_replace_addr(check: u16, old: &Addr, new: &Addr, family: u8) -> u16 {
    let n = if family == Family::Inet as u8 { 1 } else { 4 };
    let mut sum = u32::from(!check);
    for (o, w) in old.iter().zip(new).take(n) {
        let [o0, o1] = halves(*o);
        let [w0, w1] = halves(*w);
        sum += u32::from(!o0) + u32::from(!o1);
        sum += u32::from(w0) + u32::from(w1);
    }
    rvs_csum_fold(sum)
}

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded with zero),
/// added to `sum`, not folded.
pub fn csum_partial(data: &[u8], mut sum: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Folds a 64-bit one's-complement sum to 16 bits and complements it.
pub fn csum_fold64(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checksum of an IPv4 header, computed with its `check` field (bytes 10..12) taken as zero.
pub fn ipv4_header_csum(hdr: &[u8]) -> u16 {
    let sum = csum_partial(hdr.get(..10).unwrap_or(hdr), 0);
    csum_fold64(csum_partial(hdr.get(12..).unwrap_or_default(), sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header};
    use rvs_abi::{addr_v4, addr_v6};

    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn ipv4_header_checksum_matches_known_value_and_etherparse() {
        // The classic example (Wikipedia "IPv4 header checksum"): 0xb861.
        assert_eq!(ipv4_header_csum(&HDR), 0xb861);
        let h = Ipv4Header::new(40, 7, IpNumber::TCP, [198, 18, 2, 5], [198, 18, 0, 10]).unwrap();
        let bytes = h.to_bytes();
        assert_eq!(ipv4_header_csum(&bytes), h.calc_header_checksum());
    }

    #[test]
    fn a_valid_header_sums_to_zero() {
        assert_eq!(csum_fold64(csum_partial(&HDR, 0)), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(csum_partial(&[0x12], 0), 0x1200);
    }

    #[test]
    fn two_folds_bring_any_u32_below_2_16() {
        for s in [0u32, 0xffff, 0x1_0000, 0x1_fffe, 0x10_ffef, u32::MAX] {
            assert_eq!(rvs_csum_fold(s), csum_fold64(u64::from(s)), "{s:#x}");
        }
    }

    #[test]
    fn incremental_update_equals_full_recompute() {
        let mut h = HDR;
        let new = [198, 18, 1, 2];
        let old = addr_v4([0xc0, 0xa8, 0x00, 0xc7]);
        let inc = rvs_csum_replace_addr(0xb861, &old, &addr_v4(new), Family::Inet as u8);
        h[16..20].copy_from_slice(&new);
        assert_eq!(inc, ipv4_header_csum(&h));
        let inc = rvs_csum_replace2(inc, 0x4011, 0x3f11); // TTL 64 -> 63
        h[8] = 0x3f;
        assert_eq!(inc, ipv4_header_csum(&h));
    }

    #[test]
    fn ipv6_address_change_equals_full_recompute() {
        let mut data = [0u8; 34];
        data[..16].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        data[16..32].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        data[32..].copy_from_slice(&[0x12, 0x34]);
        let check = csum_fold64(csum_partial(&data, 0));
        let new: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd];
        let old: [u8; 16] = data[..16].try_into().unwrap();
        let inc = rvs_csum_replace_addr(check, &addr_v6(old), &addr_v6(new), Family::Inet6 as u8);
        data[..16].copy_from_slice(&new);
        assert_eq!(inc, csum_fold64(csum_partial(&data, 0)));
    }
}
