//! VS/DR: hand the unchanged IP packet to the real server's MAC. Mirrors bpf/lib/dr.h.

use rvs_abi::{DEST_F_NEIGH, DestVal, DropReason};

use crate::frame::{Frame, XdpAction};
use crate::wire::eth;
use crate::xdp::Verdict;

/// Mirrors `rvs_dr_xmit` (bpf/lib/dr.h).
pub fn rvs_dr_xmit(frame: &mut Frame, dest: &DestVal) -> Verdict {
    if dest.flags & DEST_F_NEIGH == 0 {
        return Verdict::Drop(DropReason::NoNeigh);
    }
    let Some(mut h) = eth::Header::new_checked(frame.data_mut()) else {
        return Verdict::Drop(DropReason::EthShort);
    };
    h.set_dst(dest.dmac);
    h.set_src(dest.smac);
    if dest.ifindex == frame.ingress_ifindex {
        return Verdict::Action(XdpAction::Tx);
    }
    Verdict::Action(frame.redirect(dest.ifindex, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_macs_only_and_picks_tx_or_redirect() {
        let input: Vec<u8> = (0u8..60).collect();
        let dest = DestVal {
            dmac: [0xd; 6],
            smac: [0x5; 6],
            flags: DEST_F_NEIGH,
            ifindex: crate::frame::TEST_RUN_INGRESS_IFINDEX,
            ..Default::default()
        };
        let mut f = Frame::new(&input);
        assert_eq!(rvs_dr_xmit(&mut f, &dest), Verdict::Action(XdpAction::Tx));
        assert_eq!(&f.data()[..12], &[[0xd; 6], [0x5; 6]].concat()[..]);
        assert_eq!(&f.data()[12..], &input[12..]);
        let mut f = Frame::new(&input);
        let dest = DestVal { ifindex: 7, ..dest };
        assert_eq!(rvs_dr_xmit(&mut f, &dest), Verdict::Action(XdpAction::Redirect));
        assert_eq!(f.redirect_target(), Some(7));
    }

    #[test]
    fn unresolved_neighbour_is_dropped_untouched() {
        let input = [1u8; 60];
        let mut f = Frame::new(&input);
        let dest = DestVal {
            dmac: [0xd; 6],
            ..Default::default()
        };
        assert_eq!(rvs_dr_xmit(&mut f, &dest), Verdict::Drop(DropReason::NoNeigh));
        assert_eq!(f.data(), &input[..]);
    }
}
