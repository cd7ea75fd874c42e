//! The `rvs_pass` program (XDP_PASS), which the test labs and the demo attach to the veth peers of
//! interfaces whose XDP program sends frames on (XDP_TX, XDP_REDIRECT): a veth delivers those only
//! when its peer runs an XDP program.

use aya::programs::{Xdp, XdpMode};

/// `rvs_pass` attached to an interface; dropping it detaches the program.
pub struct PassProgram {
    _ebpf: aya::Ebpf,
}

impl std::fmt::Debug for PassProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassProgram")
    }
}

/// Loads `rvs_bpf::RVS_PASS_OBJ` and attaches its program `rvs_pass` in native mode to `ifname`,
/// resolved in the calling thread's network namespace.
///
/// # Errors
/// Load or attach failed; the message says which.
pub fn attach_pass(ifname: &str) -> Result<PassProgram, String> {
    let mut ebpf = aya::Ebpf::load(rvs_bpf::RVS_PASS_OBJ).map_err(|e| e.to_string())?;
    let prog: &mut Xdp = ebpf
        .program_mut(rvs_bpf::PASS_PROG)
        .ok_or_else(|| format!("no program {} in RVS_PASS_OBJ", rvs_bpf::PASS_PROG))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach(ifname, XdpMode::Driver)
        .map_err(|e| format!("attach to {ifname}: {e}"))?;
    Ok(PassProgram { _ebpf: ebpf })
}
