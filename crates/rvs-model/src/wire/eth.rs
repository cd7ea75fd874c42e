//! Ethernet header and 802.1Q tag.

/// `ETH_P_IP`.
pub const ETH_P_IP: u16 = 0x0800;
/// `ETH_P_ARP`.
pub const ETH_P_ARP: u16 = 0x0806;
/// `ETH_P_IPV6`.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// `ETH_P_8021Q`.
pub const ETH_P_8021Q: u16 = 0x8100;
/// `ETH_P_8021AD`.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Length of an Ethernet header (`ETH_HLEN`).
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag (`struct vlan_hdr`).
pub const VLAN_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const VLAN_TCI: Range<usize> = 0..2;
    pub(super) const VLAN_PROTO: Range<usize> = 2..4;
}

/// View of an Ethernet header (`struct ethhdr`) at the start of a buffer.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` when the buffer is shorter than `HEADER_LEN`; after `Some`, no accessor panics.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }
    /// `h_dest`.
    pub fn dst(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }
    /// `h_source`.
    pub fn src(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }
    /// `h_proto`, host order.
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::ETHERTYPE].try_into().unwrap())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes `h_dest`.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }
    /// Writes `h_source`.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }
}

/// View of an 802.1Q tag (`struct vlan_hdr`): TCI then the encapsulated EtherType.
#[derive(Debug)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// `None` when the buffer is shorter than `VLAN_LEN`.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= VLAN_LEN).then_some(VlanTag { buffer })
    }
    /// `h_vlan_TCI`, host order.
    pub fn tci(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::VLAN_TCI].try_into().unwrap())
    }
    /// `h_vlan_encapsulated_proto`, host order.
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes(self.buffer.as_ref()[field::VLAN_PROTO].try_into().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_short_buffer() {
        let mut b = [0u8; 14];
        b[0..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        b[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        b[12..14].copy_from_slice(&[0x81, 0x00]);
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        assert_eq!(h.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(h.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(h.ethertype(), ETH_P_8021Q);
        h.set_dst([0xaa; 6]);
        h.set_src([0xbb; 6]);
        assert_eq!(&b[0..12], &[[0xaa; 6], [0xbb; 6]].concat()[..]);
        assert!(Header::new_checked(&b[..13]).is_none());
    }

    #[test]
    fn vlan_tag_fields() {
        let t = VlanTag::new_checked(&[0x20, 0x64, 0x08, 0x00][..]).unwrap();
        assert_eq!(t.tci(), 0x2064);
        assert_eq!(t.ethertype(), ETH_P_IP);
        assert!(VlanTag::new_checked(&[0u8; 3][..]).is_none());
    }
}
