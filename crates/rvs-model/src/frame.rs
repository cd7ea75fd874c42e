//! The XDP runtime as the program sees it: the frame between `data` and `data_end` inside a buffer with
//! the kernel's headroom, `bpf_xdp_adjust_head`, `bpf_redirect`, and the verdicts.

/// Headroom the kernel reserves in front of every XDP frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// `sizeof(struct xdp_frame)` on 64-bit kernels: `bpf_xdp_adjust_head` keeps the start of the headroom
/// for it, so only `XDP_PACKET_HEADROOM - XDP_FRAME_SIZE` bytes can be pushed in front of the frame.
pub const XDP_FRAME_SIZE: usize = 40;
/// Ethernet header length (`ETH_HLEN`): `bpf_xdp_adjust_head` never leaves a shorter frame.
pub const ETH_HLEN: usize = 14;
/// The longest frame BPF_PROG_TEST_RUN builds (net/bpf/test_run.c: a page minus the headroom and the
/// aligned `struct skb_shared_info`): what `bpf_xdp_adjust_tail` can grow a frame to.
pub const XDP_TEST_RUN_MAX_LEN: usize = 3520;

/// `ctx->ingress_ifindex` of a frame run through BPF_PROG_TEST_RUN without a context: the kernel runs
/// the program on rx queue 0 of the caller's loopback device (net/bpf/test_run.c,
/// `bpf_prog_test_run_xdp`), and lo is ifindex 1 in every network namespace (`LOOPBACK_IFINDEX`).
pub const TEST_RUN_INGRESS_IFINDEX: u32 = 1;

/// XDP verdict. Values equal `enum xdp_action` (include/uapi/linux/bpf.h).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// XDP_ABORTED: program error.
    Aborted = 0,
    /// XDP_DROP.
    Drop = 1,
    /// XDP_PASS: on to the kernel's stack.
    Pass = 2,
    /// XDP_TX: out of the interface it came in on.
    Tx = 3,
    /// XDP_REDIRECT: to the target set by `bpf_redirect`.
    Redirect = 4,
}

impl XdpAction {
    /// From the program's raw return value (`None` for values outside `enum xdp_action`).
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            _ => return None,
        })
    }
}

/// Error of a helper that changes the frame's bounds (the kernel returns `-EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError;

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("frame bounds change refused (EINVAL)")
    }
}

impl std::error::Error for FrameError {}

/// One XDP frame: `buf[data..data_end]` is what the program sees, with the kernel's headroom in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    buf: Vec<u8>,
    data: usize,
    data_end: usize,
    /// `ctx->ingress_ifindex`.
    pub ingress_ifindex: u32,
    /// `ctx->rx_queue_index`.
    pub rx_queue_index: u32,
    redirect: Option<u32>,
}

impl Frame {
    /// A frame holding a copy of `bytes` as BPF_PROG_TEST_RUN builds it: `XDP_PACKET_HEADROOM` in front,
    /// received on `TEST_RUN_INGRESS_IFINDEX`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = vec![0u8; XDP_PACKET_HEADROOM + bytes.len()];
        buf[XDP_PACKET_HEADROOM..].copy_from_slice(bytes);
        Frame {
            data: XDP_PACKET_HEADROOM,
            data_end: buf.len(),
            buf,
            ingress_ifindex: TEST_RUN_INGRESS_IFINDEX,
            rx_queue_index: 0,
            redirect: None,
        }
    }

    /// The bytes between `data` and `data_end`.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data..self.data_end]
    }

    /// The bytes between `data` and `data_end`, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.data..self.data_end]
    }

    /// `data_end - data`.
    pub fn len(&self) -> usize {
        self.data_end - self.data
    }

    /// True when `data == data_end`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `bpf_xdp_adjust_head(ctx, delta)`: a negative delta grows the frame at the front (into the
    /// headroom, minus the room the kernel keeps for `struct xdp_frame`), a positive one shrinks it.
    ///
    /// # Errors
    /// `FrameError` (the kernel's `-EINVAL`) when the new start would leave the usable headroom or leave
    /// less than an Ethernet header; the frame is then unchanged.
    pub fn adjust_head(&mut self, delta: i32) -> Result<(), FrameError> {
        let new = self.data as i64 + i64::from(delta);
        if new < XDP_FRAME_SIZE as i64 || new > self.data_end as i64 - ETH_HLEN as i64 {
            return Err(FrameError);
        }
        self.data = new as usize;
        Ok(())
    }

    /// `bpf_xdp_adjust_tail(ctx, delta)`: a negative delta cuts the end of the frame, a positive one
    /// grows it (with zeros here; the kernel leaves whatever the buffer held, which a program must
    /// overwrite before it sends it) up to `XDP_TEST_RUN_MAX_LEN`.
    ///
    /// # Errors
    /// `FrameError` (the kernel's `-EINVAL`) when the frame would become shorter than an Ethernet header
    /// or longer than the buffer allows; the frame is then unchanged.
    pub fn adjust_tail(&mut self, delta: i32) -> Result<(), FrameError> {
        let new = self.data_end as i64 + i64::from(delta);
        let len = new - self.data as i64;
        if len < ETH_HLEN as i64 || len > XDP_TEST_RUN_MAX_LEN as i64 {
            return Err(FrameError);
        }
        let new = new as usize;
        if new > self.buf.len() {
            self.buf.resize(new, 0);
        }
        self.data_end = new;
        Ok(())
    }

    /// `bpf_redirect(ifindex, flags)` as XDP programs see it: any flag aborts, else the target is
    /// remembered and the program should return the result.
    pub fn redirect(&mut self, ifindex: u32, flags: u64) -> XdpAction {
        if flags != 0 {
            return XdpAction::Aborted;
        }
        self.redirect = Some(ifindex);
        XdpAction::Redirect
    }

    /// `bpf_redirect_map(map, key, flags)` on a devmap, given what the map holds for `key`: `flags`
    /// outside the action bits abort; no entry returns the action in `flags` (the fallback); else the
    /// target is remembered and XDP_REDIRECT returned.
    pub fn redirect_map(&mut self, entry: Option<u32>, flags: u64) -> XdpAction {
        // XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX: the actions a fallback may name.
        const ACTION_MASK: u64 = 3;
        if flags & !ACTION_MASK != 0 {
            return XdpAction::Aborted;
        }
        match entry {
            None => XdpAction::from_u32(flags as u32).unwrap_or(XdpAction::Aborted),
            Some(ifindex) => {
                self.redirect = Some(ifindex);
                XdpAction::Redirect
            }
        }
    }

    /// Interface set by the last `redirect` call, if any.
    pub fn redirect_target(&self) -> Option<u32> {
        self.redirect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_frame_has_kernel_headroom_and_same_bytes() {
        let f = Frame::new(&[1, 2, 3]);
        assert_eq!(f.data(), &[1, 2, 3]);
        assert_eq!(f.data, XDP_PACKET_HEADROOM);
    }

    #[test]
    fn adjust_head_respects_headroom_and_eth_len() {
        let mut f = Frame::new(&[0u8; 60]);
        assert!(
            f.adjust_head(-((XDP_PACKET_HEADROOM - XDP_FRAME_SIZE) as i32))
                .is_ok()
        );
        assert_eq!(f.len(), 60 + XDP_PACKET_HEADROOM - XDP_FRAME_SIZE);
        assert_eq!(f.adjust_head(-1), Err(FrameError));
        let mut f = Frame::new(&[0u8; 60]);
        assert!(f.adjust_head(46).is_ok());
        assert_eq!(f.len(), 14);
        assert_eq!(f.adjust_head(1), Err(FrameError));
    }

    #[test]
    fn adjust_tail_cuts_and_grows_within_bounds() {
        let mut f = Frame::new(&[7u8; 60]);
        assert!(f.adjust_tail(-46).is_ok());
        assert_eq!(f.data(), &[7u8; 14]);
        assert_eq!(f.adjust_tail(-1), Err(FrameError));
        assert!(f.adjust_tail(10).is_ok());
        assert_eq!(f.len(), 24);
        assert_eq!(
            f.adjust_tail((XDP_TEST_RUN_MAX_LEN - 24 + 1) as i32),
            Err(FrameError)
        );
        assert!(f.adjust_tail((XDP_TEST_RUN_MAX_LEN - 24) as i32).is_ok());
        assert_eq!(f.len(), XDP_TEST_RUN_MAX_LEN);
    }

    #[test]
    fn redirect_map_falls_back_to_the_flags_action() {
        let mut f = Frame::new(&[0u8; 14]);
        assert_eq!(f.redirect_map(None, XdpAction::Pass as u64), XdpAction::Pass);
        assert_eq!(f.redirect_target(), None);
        assert_eq!(
            f.redirect_map(Some(5), XdpAction::Pass as u64),
            XdpAction::Redirect
        );
        assert_eq!(f.redirect_target(), Some(5));
        assert_eq!(f.redirect_map(Some(5), 1 << 3), XdpAction::Aborted);
    }

    #[test]
    fn redirect_with_flags_aborts() {
        let mut f = Frame::new(&[0u8; 14]);
        assert_eq!(f.redirect(3, 1), XdpAction::Aborted);
        assert_eq!(f.redirect_target(), None);
        assert_eq!(f.redirect(3, 0), XdpAction::Redirect);
        assert_eq!(f.redirect_target(), Some(3));
    }
}
