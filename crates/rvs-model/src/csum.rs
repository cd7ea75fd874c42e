//! Internet checksums (RFC 1071) and their incremental update (RFC 1624), for the header rewrites of
//! NAT and TUN. bpf/lib/csum.h does not exist yet (DR changes no IP byte); when it lands, these become
//! its mirrors. Until then they check, in tests, that a forwarded packet's checksums are still valid.

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
pub fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checksum of an IPv4 header, computed with its `check` field (bytes 10..12) taken as zero.
pub fn ipv4_header_csum(hdr: &[u8]) -> u16 {
    let sum = csum_partial(hdr.get(..10).unwrap_or(hdr), 0);
    csum_fold(csum_partial(hdr.get(12..).unwrap_or_default(), sum))
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data changes from `old` to `new`:
/// `HC' = ~(~HC + ~m + m')`.
pub fn csum_replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!check) + u64::from(!old) + u64::from(new);
    csum_fold(sum)
}

/// RFC 1624 for a 32-bit change (an IPv4 address), as two 16-bit replacements.
pub fn csum_replace4(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let sum = u64::from(!check)
        + u64::from(!u16::from_be_bytes([old[0], old[1]]))
        + u64::from(!u16::from_be_bytes([old[2], old[3]]))
        + u64::from(u16::from_be_bytes([new[0], new[1]]))
        + u64::from(u16::from_be_bytes([new[2], new[3]]));
    csum_fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header};

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
        assert_eq!(csum_fold(csum_partial(&HDR, 0)), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(csum_partial(&[0x12], 0), 0x1200);
    }

    #[test]
    fn incremental_update_equals_full_recompute() {
        let mut h = HDR;
        let new = [198, 18, 1, 2];
        let inc = csum_replace4(0xb861, [0xc0, 0xa8, 0x00, 0xc7], new);
        h[16..20].copy_from_slice(&new);
        assert_eq!(inc, ipv4_header_csum(&h));
        let inc = csum_replace2(inc, 0x4011, 0x3f11); // TTL 64 -> 63
        h[8] = 0x3f;
        assert_eq!(inc, ipv4_header_csum(&h));
    }
}
