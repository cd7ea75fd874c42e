//! The production data plane: load or adopt, attach through pinned bpf_links, apply, read, unload.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::EbpfLoader;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya_obj::programs::XdpAttachType;
use rvs_abi::{
    Cfg, ConnKey, ConnVal, DestCnt, DestVal, DropReason, EXPIRE_BATCH, ExpireHdr, MapOp, Stats, SvcKey,
    SvcVal, Timeouts, map,
};
use rvs_bpf::{EXPIRE_PROG, RVS_XDP_OBJ, XDP_PROG};
use zerocopy::{FromBytes, IntoBytes};

use crate::error::DataplaneError;
use crate::maps::{MAP_NAMES, Maps, check_pinned};
use crate::{DataplaneConfig, sys};

/// Prefix of the pinned link of an interface: `<pin_dir>/link_<ifname>`.
const LINK_PREFIX: &str = "link_";

/// The director's XDP program and maps, pinned in a directory so that they outlive this process.
///
/// Dropping a `Dataplane` detaches nothing and unpins nothing: the interfaces keep forwarding and the
/// next [`Dataplane::open`] adopts the same maps, connections included. [`unload`] removes it all.
pub struct Dataplane {
    pin_dir: PathBuf,
    adopted: bool,
    maps: Maps,
    prog: Xdp,
    prog_id: u32,
    expire: Xdp,
}

fn prog_err(op: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DataplaneError {
    named_prog_err(XDP_PROG, op)
}

fn named_prog_err(prog: &'static str, op: &'static str) -> impl FnOnce(ProgramError) -> DataplaneError {
    move |e| DataplaneError::Program {
        prog,
        op,
        source: Box::new(e),
    }
}

impl Dataplane {
    /// Adopts the pinned program and maps in pin_dir if they are there (no reload), else loads and pins.
    ///
    /// Pinned maps are checked against this build (type, key and value sizes, max_entries, with
    /// `conn_max` for rvs_conn) before anything is reused; a mismatch is refused.
    ///
    /// # Errors
    /// `conn_max` out of range, creating the directory, a map mismatch, the verifier, or pinning.
    pub fn open(cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        if !(1..=crate::CONN_MAX_LIMIT).contains(&cfg.conn_max) {
            return Err(DataplaneError::ConnMax {
                conn_max: cfg.conn_max,
            });
        }
        let dir = &cfg.pin_dir;
        sys::create_pin_dir(dir)?;
        let mut maps_pinned = 0;
        for name in MAP_NAMES {
            let path = dir.join(name);
            if path.exists() {
                check_pinned(&path, name, cfg.conn_max)?;
                maps_pinned += 1;
            }
        }
        let prog_pin = dir.join(XDP_PROG);
        let expire_pin = dir.join(EXPIRE_PROG);
        let adopted = maps_pinned == MAP_NAMES.len() && prog_pin.exists() && expire_pin.exists();
        if !adopted {
            // An incomplete set (a crash during a previous open): load afresh, reusing the maps that
            // are there; the program pins are replaced and attach() swaps the new program into any
            // existing link.
            for pin in [&prog_pin, &expire_pin] {
                match fs::remove_file(pin) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(DataplaneError::io("remove stale program pin", pin, e));
                    }
                    _ => {}
                }
            }
            load_and_pin(dir, cfg.conn_max, &prog_pin, &expire_pin)?;
        }
        let maps = Maps::from_pins(dir)?;
        let prog = Xdp::from_pin(&prog_pin, XdpAttachType::Interface).map_err(prog_err("open pin"))?;
        let expire = Xdp::from_pin(&expire_pin, XdpAttachType::Interface)
            .map_err(named_prog_err(EXPIRE_PROG, "open pin"))?;
        let prog_id = prog.info().map_err(prog_err("read info"))?.id();
        tracing::info!(pin_dir = %dir.display(), adopted, prog_id, conn_max = maps.conn_max(), "data plane open");
        Ok(Dataplane {
            pin_dir: dir.clone(),
            adopted,
            maps,
            prog,
            prog_id,
            expire,
        })
    }

    /// Whether [`Dataplane::open`] found a complete pinned set and reused it.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The kernel's id of the program in use.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Native-mode attach through a pinned bpf_link (pin_dir/link_<ifname>); no-op if already attached.
    /// The interface also goes into rvs_tx_ports, so that NAT can redirect packets to it.
    ///
    /// If the link exists but runs another program (this process loaded a new one), the new program
    /// is swapped into the link atomically: the interface never runs without a program. A link left
    /// from an interface that was deleted (and maybe re-created) is dropped and a new one made.
    ///
    /// # Errors
    /// No such interface, the driver refuses native XDP, another program is attached, or pinning.
    pub fn attach(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        let ifindex = sys::if_index(ifname).ok_or_else(|| DataplaneError::NoInterface {
            ifname: ifname.into(),
        })?;
        let link_path = self.pin_dir.join(format!("{LINK_PREFIX}{ifname}"));
        // Before the program runs on it: a NAT route through this interface can then be taken from
        // its first packet. Idempotent; a deleted interface leaves the devmap by itself.
        self.maps.set_tx_port(ifindex)?;
        if link_path.exists() {
            let fd = sys::obj_get(&link_path)
                .map_err(|e| DataplaneError::io("open pinned link", &link_path, e))?;
            let info = sys::link_info(fd.as_fd())
                .map_err(|e| DataplaneError::io("read link info", &link_path, e))?;
            if info.ifindex == ifindex {
                if info.prog_id != self.prog_id {
                    self.upgrade_link(&link_path)?;
                    tracing::info!(
                        ifname,
                        old = info.prog_id,
                        new = self.prog_id,
                        "program replaced in link"
                    );
                }
                return Ok(());
            }
            tracing::warn!(
                ifname,
                link_ifindex = info.ifindex,
                ifindex,
                "dropping a stale link"
            );
            sys::link_detach(fd.as_fd())
                .map_err(|e| DataplaneError::io("detach stale link", &link_path, e))?;
            fs::remove_file(&link_path)
                .map_err(|e| DataplaneError::io("remove stale link pin", &link_path, e))?;
        }
        let id = self
            .prog
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|e| DataplaneError::Attach {
                ifname: ifname.into(),
                source: Box::new(e),
            })?;
        // Taken out of the program so that nothing detaches it on drop; the pin keeps it attached.
        let link = self.prog.take_link(id).map_err(prog_err("take link"))?;
        let link = FdLink::try_from(link).map_err(|_| DataplaneError::NotFdLink {
            ifname: ifname.into(),
        })?;
        link.pin(&link_path).map_err(|source| DataplaneError::Pin {
            path: link_path.clone(),
            source,
        })?;
        tracing::info!(ifname, ifindex, "attached (native mode)");
        Ok(())
    }

    fn upgrade_link(&mut self, link_path: &Path) -> Result<(), DataplaneError> {
        let link_err = |op| {
            move |source| DataplaneError::Link {
                path: link_path.to_owned(),
                op,
                source,
            }
        };
        let pinned = PinnedLink::from_pin(link_path).map_err(link_err("open"))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(link_err("open as XDP link"))?;
        let id = self
            .prog
            .attach_to_link(link)
            .map_err(prog_err("replace program in link"))?;
        drop(self.prog.take_link(id).map_err(prog_err("take link"))?);
        Ok(())
    }

    /// Applies configuration changes in order (see [`MapOp`]).
    ///
    /// # Errors
    /// The first map write that fails; the ops before it stay applied.
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        self.maps.apply(ops)
    }

    /// Every service in rvs_svc.
    ///
    /// # Errors
    /// A map read failed.
    pub fn services(&self) -> Result<Vec<(SvcKey, SvcVal)>, DataplaneError> {
        self.maps.services()
    }

    /// Every dest slot holding a real server (`DEST_F_VALID`), by id.
    ///
    /// # Errors
    /// A map read failed.
    pub fn dests(&self) -> Result<Vec<(u32, DestVal)>, DataplaneError> {
        self.maps.dests()
    }

    /// Counters of service `id`, summed over CPUs.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn svc_stats(&self, id: u32) -> Result<Stats, DataplaneError> {
        Ok(sum(&self.maps.svc_stats_percpu(id)?))
    }

    /// Counters of dest `id`, summed over CPUs.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn dest_stats(&self, id: u32) -> Result<Stats, DataplaneError> {
        Ok(sum(&self.maps.dest_stats_percpu(id)?))
    }

    /// Drops by reason, summed over CPUs, every reason listed.
    ///
    /// # Errors
    /// A map read failed.
    pub fn drops(&self) -> Result<Vec<(DropReason, u64)>, DataplaneError> {
        Ok(self
            .maps
            .drops_percpu()?
            .into_iter()
            .map(|(r, v)| (r, v.iter().sum()))
            .collect())
    }

    /// Every connection in rvs_conn (a snapshot of a table that changes while it is read), without the
    /// NAT reply entries (`CONN_F_REPLY`), which index a connection by its real server's side.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conns(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        self.maps.conns()
    }

    /// The connections (as [`Dataplane::conns`]) read [`crate::CONN_CHUNK`] entries per syscall and
    /// handed to `f` one chunk at a time, so that a table of millions is never copied whole; returns
    /// how many. An entry added or removed during the read may or may not be seen; none is seen twice.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_chunks(&self, f: impl FnMut(&[(ConnKey, ConnVal)])) -> Result<usize, DataplaneError> {
        self.maps.conn_chunks(f)
    }

    /// Every entry of rvs_conn, NAT reply entries included, chunk by chunk as [`Dataplane::conn_chunks`].
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_entry_chunks(&self, f: impl FnMut(&[(ConnKey, ConnVal)])) -> Result<usize, DataplaneError> {
        self.maps.conn_entry_chunks(f)
    }

    /// Entries of rvs_conn (NAT reply entries included) from `from` on, chunk by chunk, until at least
    /// `max` were read or the table ends: one slice of a walk that later slices resume. Returns how
    /// many and where the next slice starts, `None` once the walk reached the end. An entry present for
    /// the whole walk is read exactly once, whatever is deleted between slices.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_entry_slice(
        &self,
        from: crate::ConnCursor,
        max: usize,
        f: impl FnMut(&[(ConnKey, ConnVal)]),
    ) -> Result<(usize, Option<crate::ConnCursor>), DataplaneError> {
        self.maps.conn_entry_slice(from, max, f)
    }

    /// The entry of `key` in rvs_conn (a connection or a NAT reply entry), if any.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_get(&self, key: &ConnKey) -> Result<Option<ConnVal>, DataplaneError> {
        self.maps.conn_get(key)
    }

    /// Inserts or replaces `keys[i] -> vals[i]` in rvs_conn, [`crate::CONN_CHUNK`] per syscall (tests
    /// and benchmarks; the data plane creates its own). Returns how many were written.
    ///
    /// # Errors
    /// A map write failed (the entries before it stay written).
    ///
    /// # Panics
    /// If `keys` and `vals` differ in length.
    pub fn set_conns(&mut self, keys: &[ConnKey], vals: &[ConnVal]) -> Result<usize, DataplaneError> {
        self.maps.set_conns(keys, vals)
    }

    /// Bytes of kernel memory rvs_conn takes (its fdinfo `memlock`): all of it is allocated when the
    /// map is created, whether the entries are used or not.
    ///
    /// # Errors
    /// /proc/self/fdinfo could not be read.
    pub fn conn_memory(&self) -> Result<u64, DataplaneError> {
        self.maps.conn_memlock()
    }

    /// Every entry of rvs_conn, NAT reply entries included.
    ///
    /// # Errors
    /// A map read failed.
    pub fn conn_entries(&self) -> Result<Vec<(ConnKey, ConnVal)>, DataplaneError> {
        self.maps.conn_entries()
    }

    /// The interfaces NAT may redirect to (rvs_tx_ports), ascending.
    ///
    /// # Errors
    /// A map read failed.
    pub fn tx_ports(&self) -> Result<Vec<u32>, DataplaneError> {
        self.maps.tx_ports()
    }

    /// The global switches (rvs_cfg).
    ///
    /// # Errors
    /// A map read failed.
    pub fn cfg(&self) -> Result<Cfg, DataplaneError> {
        self.maps.cfg()
    }

    /// Inserts or replaces a connection entry.
    ///
    /// # Errors
    /// The map write failed.
    pub fn set_conn(&mut self, key: &ConnKey, val: &ConnVal) -> Result<(), DataplaneError> {
        self.maps.set_conn(key, val)
    }

    /// Deletes a connection entry (absent is fine), and the reply entry of a NAT connection with it.
    ///
    /// # Errors
    /// The map write failed.
    pub fn delete_conn(&mut self, key: &ConnKey) -> Result<(), DataplaneError> {
        self.maps.delete_conn(key)
    }

    /// rvs_conn's max_entries, as the kernel reports it.
    pub fn conn_max(&self) -> u32 {
        self.maps.conn_max()
    }

    /// Hands `keys` to the kernel's expiry (rvs_xdp_expire, bpf/lib/expire.h), which deletes those
    /// still due at that moment and keeps the connection counters exact. Returns how many it deleted.
    ///
    /// # Errors
    /// The kernel refused a run.
    pub fn expire_conns(&mut self, keys: &[ConnKey]) -> Result<usize, DataplaneError> {
        let mut deleted = 0;
        let mut frame = Vec::with_capacity(size_of::<ExpireHdr>() + EXPIRE_BATCH * size_of::<ConnKey>());
        for chunk in keys.chunks(EXPIRE_BATCH) {
            frame.clear();
            let hdr = ExpireHdr {
                nkeys: chunk.len() as u32,
                deleted: 0,
            };
            frame.extend_from_slice(hdr.as_bytes());
            for k in chunk {
                frame.extend_from_slice(k.as_bytes());
            }
            let mut out = vec![0u8; frame.len()];
            let res = self
                .expire
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    data_out: Some(&mut out),
                    ..Default::default()
                })
                .map_err(|e| DataplaneError::TestRun {
                    len: frame.len(),
                    source: Box::new(e),
                })?;
            let hdr = ExpireHdr::read_from_prefix(&out)
                .map(|(h, _)| h)
                .unwrap_or_default();
            if res.return_value != 2 {
                // XDP_ABORTED: the frame was too short for its header, which cannot happen here.
                return Err(DataplaneError::Missing {
                    kind: "expiry result",
                    name: EXPIRE_PROG,
                });
            }
            deleted += hdr.deleted as usize;
        }
        Ok(deleted)
    }

    /// Every entry of rvs_lblc (lblc/lblcr: destination address -> real servers).
    ///
    /// # Errors
    /// A map read failed.
    pub fn lblc_entries(&self) -> Result<Vec<(rvs_abi::LblcKey, rvs_abi::LblcVal)>, DataplaneError> {
        self.maps.lblc_entries()
    }

    /// Deletes `keys` from rvs_lblc (the daemon's expiry of lblc/lblcr entries); absent keys are
    /// skipped.
    ///
    /// # Errors
    /// A map delete failed otherwise.
    pub fn lblc_delete(&mut self, keys: &[rvs_abi::LblcKey]) -> Result<(), DataplaneError> {
        self.maps.lblc_delete(keys)
    }

    /// Active, inactive and persistent connections of dest `id`, as the data plane counts them.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn dest_cnt(&self, id: u32) -> Result<DestCnt, DataplaneError> {
        self.maps.dest_cnt(id)
    }

    /// The rr/wrr cursor of service `id` (`rvs_svc_st[id].pos`): the next slot of its table, before
    /// the modulo.
    ///
    /// # Errors
    /// A map read failed (or `id` is out of range).
    pub fn svc_pos(&self, id: u32) -> Result<u64, DataplaneError> {
        Ok(self.maps.svc_state(id)?.pos)
    }

    /// The timeouts the data plane applies.
    ///
    /// # Errors
    /// A map read failed.
    pub fn timeouts(&self) -> Result<Timeouts, DataplaneError> {
        self.maps.timeouts()
    }

    /// Sets the timeouts the data plane applies (rvsd's `--set` and IPVS's fixed ones).
    ///
    /// # Errors
    /// The map write failed.
    pub fn set_timeouts(&mut self, val: &Timeouts) -> Result<(), DataplaneError> {
        self.maps.apply(&[MapOp::TimeoutsSet { val: *val }])
    }
}

pub(crate) fn sum(v: &[Stats]) -> Stats {
    let mut total = Stats::default();
    for s in v {
        total.add(s);
    }
    total
}

/// Loads the object with its maps pinned by name in `dir` (reusing those already there) and pins the
/// program. The loader is dropped afterwards: everything lives on through the pins.
fn load_and_pin(dir: &Path, conn_max: u32, prog_pin: &Path, expire_pin: &Path) -> Result<(), DataplaneError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .map_max_entries(map::CONN, conn_max)
        .load(RVS_XDP_OBJ)
        .map_err(|e| DataplaneError::Load(Box::new(e)))?;
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROG)
        .ok_or(DataplaneError::Missing {
            kind: "program",
            name: XDP_PROG,
        })?
        .try_into()
        .map_err(prog_err("open"))?;
    prog.load().map_err(prog_err("load (verifier)"))?;
    prog.pin(prog_pin).map_err(|source| DataplaneError::Pin {
        path: prog_pin.to_owned(),
        source,
    })?;
    let expire: &mut Xdp = ebpf
        .program_mut(EXPIRE_PROG)
        .ok_or(DataplaneError::Missing {
            kind: "program",
            name: EXPIRE_PROG,
        })?
        .try_into()
        .map_err(named_prog_err(EXPIRE_PROG, "open"))?;
    expire
        .load()
        .map_err(named_prog_err(EXPIRE_PROG, "load (verifier)"))?;
    expire.pin(expire_pin).map_err(|source| DataplaneError::Pin {
        path: expire_pin.to_owned(),
        source,
    })?;
    Ok(())
}

/// Detach every link, remove every pin + dir. Idempotent: a missing directory is not an error.
///
/// Each link is detached with BPF_LINK_DETACH before its pin goes, because removing the last reference
/// only detaches later, from a kernel work queue; the link's info must then report no interface.
///
/// # Errors
/// A link that cannot be detached, a pin that cannot be removed, or files left in the directory.
pub fn unload(pin_dir: &Path) -> Result<(), DataplaneError> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataplaneError::io("read pin directory", pin_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| DataplaneError::io("read pin directory", pin_dir, e))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(LINK_PREFIX) {
            continue;
        }
        let path = entry.path();
        let fd = sys::obj_get(&path).map_err(|e| DataplaneError::io("open pinned link", &path, e))?;
        sys::link_detach(fd.as_fd()).map_err(|e| DataplaneError::io("detach link", &path, e))?;
        let info = sys::link_info(fd.as_fd()).map_err(|e| DataplaneError::io("read link info", &path, e))?;
        if info.ifindex != 0 {
            return Err(DataplaneError::StillAttached {
                path,
                link_id: info.id,
                ifindex: info.ifindex,
            });
        }
        fs::remove_file(&path).map_err(|e| DataplaneError::io("remove link pin", &path, e))?;
        tracing::info!(link = %path.display(), link_id = info.id, "detached");
    }
    for name in MAP_NAMES.iter().chain([&XDP_PROG, &EXPIRE_PROG]) {
        let path = pin_dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(DataplaneError::io("remove pin", &path, e));
            }
            _ => {}
        }
    }
    fs::remove_dir(pin_dir).map_err(|e| DataplaneError::io("remove pin directory", pin_dir, e))
}
