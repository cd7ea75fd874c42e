//! IPv6 fixed header (`struct ipv6hdr`).

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// `IPPROTO_ICMPV6`.
pub const IPPROTO_ICMPV6: u8 = 58;

mod field {
    use core::ops::Range;
    pub(super) const VER_TC_FLOW: Range<usize> = 0..4;
    pub(super) const PAYLOAD_LEN: Range<usize> = 4..6;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SADDR: Range<usize> = 8..24;
    pub(super) const DADDR: Range<usize> = 24..40;
}

/// View of the fixed 40 bytes of an IPv6 header at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` when the buffer is shorter than `HEADER_LEN`; after `Some`, no accessor panics. Version
    /// and length are checked by `rvs_parse_ipv6` (parse.rs), in the C's order.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }
    /// `version`.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Version, traffic class and flow label: the first 32-bit word, wire bytes.
    pub fn ver_tc_flow(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::VER_TC_FLOW].try_into().unwrap()
    }
    /// `payload_len`, host order.
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::PAYLOAD_LEN].try_into().unwrap())
    }
    /// `nexthdr`.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    /// `hop_limit`.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// `saddr`, wire bytes.
    pub fn saddr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::SADDR].try_into().unwrap()
    }
    /// `daddr`, wire bytes.
    pub fn daddr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::DADDR].try_into().unwrap()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes `hop_limit`.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Writes `saddr`.
    pub fn set_saddr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SADDR].copy_from_slice(&a);
    }
    /// Writes `daddr`.
    pub fn set_daddr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DADDR].copy_from_slice(&a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_setters_and_short() {
        let mut b = [0u8; 40];
        b[0] = 0x60;
        b[1] = 0x0a;
        b[4..6].copy_from_slice(&20u16.to_be_bytes());
        b[6] = 6;
        b[7] = 64;
        b[8] = 0x20;
        b[24] = 0xfe;
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        assert_eq!(
            (h.version(), h.payload_len(), h.next_header(), h.hop_limit()),
            (6, 20, 6, 64)
        );
        assert_eq!(h.ver_tc_flow(), [0x60, 0x0a, 0, 0]);
        assert_eq!((h.saddr()[0], h.daddr()[0]), (0x20, 0xfe));
        h.set_hop_limit(63);
        h.set_saddr([1; 16]);
        h.set_daddr([2; 16]);
        assert_eq!((h.hop_limit(), h.saddr(), h.daddr()), (63, [1; 16], [2; 16]));
        assert!(Header::new_checked(&b[..39]).is_none());
    }
}
