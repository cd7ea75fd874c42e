//! UDP header (`struct udphdr`).

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LEN: Range<usize> = 4..6;
    pub(super) const CHECK: Range<usize> = 6..8;
}

/// View of a UDP header at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` when the buffer is shorter than `HEADER_LEN`; after `Some`, no accessor panics.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }
    /// `source`, wire bytes.
    pub fn src_port(&self) -> [u8; 2] {
        self.buffer.as_ref()[field::SRC_PORT].try_into().unwrap()
    }
    /// `dest`, wire bytes.
    pub fn dst_port(&self) -> [u8; 2] {
        self.buffer.as_ref()[field::DST_PORT].try_into().unwrap()
    }
    /// `len`, host order.
    pub fn len(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::LEN].try_into().unwrap())
    }
    /// True when `len` is 0 (a jumbogram marker; never valid here).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `check`.
    pub fn check(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::CHECK].try_into().unwrap())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes `source` (wire bytes).
    pub fn set_src_port(&mut self, p: [u8; 2]) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&p);
    }
    /// Writes `dest` (wire bytes).
    pub fn set_dst_port(&mut self, p: [u8; 2]) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&p);
    }
    /// Writes `check` (value as it goes on the wire, big-endian).
    pub fn set_check(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECK].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let b = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd];
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(u16::from_be_bytes(h.src_port()), 40000);
        assert_eq!(u16::from_be_bytes(h.dst_port()), 53);
        assert_eq!(h.len(), 12);
        assert_eq!(h.check(), 0xabcd);
        assert!(Header::new_checked(&b[..7]).is_none());
        let mut b = b;
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        h.set_src_port([1, 2]);
        h.set_dst_port([3, 4]);
        h.set_check(0);
        assert_eq!((h.src_port(), h.dst_port(), h.check()), ([1, 2], [3, 4], 0));
    }
}
