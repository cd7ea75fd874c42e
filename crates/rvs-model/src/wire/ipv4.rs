//! IPv4 header (`struct iphdr`).

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;
/// `IPPROTO_ICMP`.
pub const IPPROTO_ICMP: u8 = 1;
/// `IP_MF`: more fragments (in the host-order `frag_off` word).
pub const IP_MF: u16 = 0x2000;
/// `IP_OFFSET`: fragment offset mask.
pub const IP_OFFSET: u16 = 0x1fff;

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const TOT_LEN: Range<usize> = 2..4;
    pub(super) const FRAG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECK: Range<usize> = 10..12;
    pub(super) const SADDR: Range<usize> = 12..16;
    pub(super) const DADDR: Range<usize> = 16..20;
}

/// View of the fixed 20 bytes of an IPv4 header at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` when the buffer is shorter than `HEADER_LEN`; after `Some`, no accessor panics. Version,
    /// IHL and length are checked by `rvs_parse_ipv4` (parse.rs), in the C's order.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }
    /// `version`.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// `ihl`, in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }
    /// `tos`.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }
    /// `tot_len`, host order.
    pub fn tot_len(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::TOT_LEN].try_into().unwrap())
    }
    /// `frag_off` (flags and offset), host order.
    pub fn frag_off(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::FRAG_OFF].try_into().unwrap())
    }
    /// `ttl`.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// `protocol`.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// `check`, as the wire holds it.
    pub fn check(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::CHECK].try_into().unwrap())
    }
    /// `saddr`, wire bytes.
    pub fn saddr(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::SADDR].try_into().unwrap()
    }
    /// `daddr`, wire bytes.
    pub fn daddr(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::DADDR].try_into().unwrap()
    }
    /// True when this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.frag_off() & (IP_MF | IP_OFFSET) != 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes `check` (value as it goes on the wire, big-endian).
    pub fn set_check(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }
    /// Writes `saddr`.
    pub fn set_saddr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SADDR].copy_from_slice(&a);
    }
    /// Writes `daddr`.
    pub fn set_daddr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DADDR].copy_from_slice(&a);
    }
    /// Writes `ttl`.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb1, 0xe6, 198, 18, 2, 5, 198, 18, 0, 10,
    ];

    #[test]
    fn fields() {
        let h = Header::new_checked(&HDR[..]).unwrap();
        assert_eq!((h.version(), h.ihl(), h.tot_len()), (4, 5, 60));
        assert_eq!(h.frag_off(), 0x4000);
        assert!(!h.is_fragment());
        assert_eq!((h.ttl(), h.protocol(), h.check()), (64, IPPROTO_TCP, 0xb1e6));
        assert_eq!(h.saddr(), [198, 18, 2, 5]);
        assert_eq!(h.daddr(), [198, 18, 0, 10]);
    }

    #[test]
    fn fragments_and_short() {
        let mut b = HDR;
        b[6] = 0x20; // MF
        assert!(Header::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x01; // offset 8
        assert!(Header::new_checked(&b[..]).unwrap().is_fragment());
        assert!(Header::new_checked(&HDR[..19]).is_none());
    }

    #[test]
    fn setters() {
        let mut b = HDR;
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        h.set_daddr([1, 2, 3, 4]);
        h.set_saddr([5, 6, 7, 8]);
        h.set_check(0x1234);
        h.set_ttl(9);
        assert_eq!((h.daddr(), h.check(), h.ttl()), ([1, 2, 3, 4], 0x1234, 9));
        assert_eq!((h.saddr(), h.tos()), ([5, 6, 7, 8], 0));
    }
}
