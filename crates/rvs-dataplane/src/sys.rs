//! The few bpf(2) commands aya 0.14 does not expose: opening a pinned link to read its interface, and
//! detaching a link synchronously (the batch commands are in [`crate::batch`]). Plus the clock the data
//! plane reads.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aya_obj::generated::{bpf_cmd, bpf_link_type};

/// `union bpf_attr` as a zeroed buffer: every command below fills a few leading fields and the kernel
/// requires the rest to be zero.
pub(crate) type Attr = [u64; 16];

pub(crate) fn sys_bpf(cmd: bpf_cmd, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, writable buffer of the size passed, laid out as the command expects.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            size_of::<Attr>() as libc::c_long,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a pinned BPF object (BPF_OBJ_GET).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr: Attr = [0; 16];
    attr[0] = c.as_ptr() as u64; // pathname; bpf_fd and file_flags (word 1) stay 0
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What `struct bpf_link_info` says about an XDP link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    /// Link id (system-wide).
    pub id: u32,
    /// Id of the program the link runs.
    pub prog_id: u32,
    /// Interface the link is attached to; 0 once detached (interface deleted, or BPF_LINK_DETACH).
    pub ifindex: u32,
}

/// Reads the info of an XDP link (BPF_OBJ_GET_INFO_BY_FD). Fails with InvalidData for another type.
pub(crate) fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    // struct bpf_link_info: type, id, prog_id (u32 each), then a union aligned to 8 whose xdp member
    // starts with ifindex: byte offsets 0, 4, 8, 16.
    let mut info = [0u8; 128];
    let mut attr: Attr = [0; 16];
    attr[0] = fd.as_raw_fd() as u32 as u64 | ((info.len() as u64) << 32); // bpf_fd, info_len
    attr[1] = info.as_mut_ptr() as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let word = |off: usize| u32::from_ne_bytes(info[off..off + 4].try_into().expect("4 bytes"));
    if word(0) != bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("link type {} is not XDP", word(0)),
        ));
    }
    Ok(LinkInfo {
        id: word(4),
        prog_id: word(8),
        ifindex: word(16),
    })
}

/// Detaches a link now (BPF_LINK_DETACH), instead of when its last reference goes away, which the
/// kernel does later from a work queue.
pub(crate) fn link_detach(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr: Attr = [0; 16];
    attr[0] = fd.as_raw_fd() as u32 as u64;
    sys_bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr).map(|_| ())
}

/// The interface index of `name`, or None.
pub(crate) fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Nanoseconds on CLOCK_MONOTONIC: the clock `bpf_ktime_get_ns()` reads, so user space can compare
/// it with `ConnVal::created_ns` and `last_ns`.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether `path` (which must exist) is on a BPF file system, where pins can be made.
pub(crate) fn is_bpffs(path: &Path) -> io::Result<bool> {
    const BPF_FS_MAGIC: libc::c_long = 0xcafe_4a11;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a zeroed statfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as libc::c_long == BPF_FS_MAGIC)
}

/// Where BPF file systems are conventionally mounted.
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Mounts a BPF file system on `at`.
fn mount_bpffs(at: &Path) -> Result<(), crate::DataplaneError> {
    let c = CString::new(at.as_os_str().as_bytes()).map_err(|e| {
        crate::DataplaneError::io("mount bpffs", at, io::Error::new(io::ErrorKind::InvalidInput, e))
    })?;
    // SAFETY: every pointer is a valid NUL-terminated string; bpffs takes no data.
    let ret = unsafe { libc::mount(c"bpf".as_ptr(), c.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if ret != 0 {
        return Err(crate::DataplaneError::io(
            "mount bpffs",
            at,
            io::Error::last_os_error(),
        ));
    }
    tracing::info!(path = %at.display(), "mounted a BPF file system");
    Ok(())
}

/// Creates `dir` (and its parents) after checking that it will be on bpffs, so that a missing
/// `mount -t bpf bpf /sys/fs/bpf` gives a clear error instead of "no such file".
pub(crate) fn create_pin_dir(dir: &Path) -> Result<(), crate::DataplaneError> {
    use crate::DataplaneError;
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let mut on_bpffs = is_bpffs(existing).map_err(|e| DataplaneError::io("statfs", existing, e))?;
    if !on_bpffs && dir.starts_with(BPFFS_ROOT) && existing == Path::new(BPFFS_ROOT) {
        // systemd mounts bpffs at boot, but minimal images and containers often do not; like
        // Cilium's agent, mount the conventional one ourselves rather than fail on a fresh machine.
        mount_bpffs(Path::new(BPFFS_ROOT))?;
        on_bpffs = is_bpffs(existing).map_err(|e| DataplaneError::io("statfs", existing, e))?;
    }
    if !on_bpffs {
        return Err(DataplaneError::NotBpffs { path: dir.to_owned() });
    }
    std::fs::create_dir_all(dir).map_err(|e| DataplaneError::io("create pin directory", dir, e))
}
