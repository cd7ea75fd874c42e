//! ICMP and ICMPv6 header (`struct icmphdr`, `struct icmp6hdr`: the same first 8 bytes).

/// Length of the header: type, code, checksum and 4 bytes that depend on the type.
pub const HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECK: Range<usize> = 2..4;
}

/// View of an ICMP or ICMPv6 header at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` when the buffer is shorter than `HEADER_LEN`; after `Some`, no accessor panics.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }
    /// `type`.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// `code`.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Type and code as one 16-bit word, as the checksum sums them.
    pub fn type_code(&self) -> u16 {
        u16::from_be_bytes([self.msg_type(), self.code()])
    }
    /// `checksum`, as the wire holds it (big-endian).
    pub fn check(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::CHECK].try_into().unwrap())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes `type`.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }
    /// Writes `checksum` (value as it goes on the wire, big-endian).
    pub fn set_check(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_setters_and_short() {
        let mut b = [8u8, 0, 0x12, 0x34, 0, 1, 0, 2];
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        assert_eq!(
            (h.msg_type(), h.code(), h.type_code(), h.check()),
            (8, 0, 0x0800, 0x1234)
        );
        h.set_msg_type(0);
        h.set_check(0xabcd);
        assert_eq!(b[..4], [0, 0, 0xab, 0xcd]);
        assert!(Header::new_checked(&b[..7]).is_none());
    }
}
