//! The IPVS table as the kernel keeps it: services and their real servers, changed by ipvsadm commands
//! with the kernel's checks, error codes and list order.

use std::collections::BTreeMap;

use crate::domain::{ApplyError, Command, Dest, DestKey, FwdMethod, Mark, MarkMatch, Service, ServiceKey};

/// Schedulers the data plane executes. Any other name is refused with
/// [`ApplyError::SchedulerNotFound`], as the kernel refuses a scheduler module it cannot load.
pub const SUPPORTED_SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sed", "nq", "sh", "dh", "mh", "fo", "ovf", "twos",
];

/// One virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service record (`-A`/`-E`).
    pub service: Service,
    /// Real servers in IPVS list order: the most recently added first (`list_add` at the head).
    pub dests: Vec<Dest>,
}

impl ServiceEntry {
    /// The real server with this address and port.
    pub fn dest(&self, key: &DestKey) -> Option<&Dest> {
        self.dests.iter().find(|d| d.key == *key)
    }
}

/// The whole configuration: services in the order they were added, and the firewall marks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    services: Vec<ServiceEntry>,
    /// Declared marks by number, each with its matches in the order given.
    marks: BTreeMap<u32, Vec<MarkMatch>>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Services in insertion order.
    pub fn services(&self) -> &[ServiceEntry] {
        &self.services
    }

    /// The declared firewall marks, by number.
    pub fn marks(&self) -> Vec<Mark> {
        self.marks
            .iter()
            .map(|(&mark, matches)| Mark {
                mark,
                matches: matches.clone(),
            })
            .collect()
    }

    /// The service with this key.
    pub fn get(&self, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.services.iter().find(|e| e.service.key == *key)
    }

    /// A table holding these entries as they are, without the kernel's checks (tests only).
    #[cfg(test)]
    pub(crate) fn from_entries(services: Vec<ServiceEntry>) -> Self {
        Self {
            services,
            marks: BTreeMap::new(),
        }
    }

    fn get_mut(&mut self, key: &ServiceKey) -> Option<&mut ServiceEntry> {
        self.services.iter_mut().find(|e| e.service.key == *key)
    }

    /// Applies one command with the kernel's semantics; on error the table is unchanged.
    ///
    /// # Errors
    /// The error the kernel returns for the same command on the same table (see [`ApplyError`]).
    pub fn apply(&mut self, cmd: &Command) -> Result<(), ApplyError> {
        match cmd {
            Command::AddService(svc) => {
                // ip_vs_genl_set_cmd looks the service up first: EEXIST wins over an unknown scheduler.
                if self.get(&svc.key).is_some() {
                    return Err(ApplyError::ServiceExists);
                }
                check_scheduler(svc)?;
                self.services.push(ServiceEntry {
                    service: svc.clone(),
                    dests: Vec::new(),
                });
            }
            Command::EditService(svc) => {
                let entry = self.get_mut(&svc.key).ok_or(ApplyError::NoSuchService)?;
                check_scheduler(svc)?;
                // -E replaces the whole record: an option left out goes back to its default.
                entry.service = svc.clone();
            }
            Command::DelService(key) => {
                let i = self.position(key).ok_or(ApplyError::NoSuchService)?;
                self.services.remove(i);
            }
            // The marks are part of the table `-S` saves, so `-C` clears them too: `-C` then `-R`
            // of a saved table rebuilds it.
            Command::Clear => {
                self.services.clear();
                self.marks.clear();
            }
            Command::AddMark(m) => {
                if self.marks.contains_key(&m.mark) {
                    return Err(ApplyError::MarkExists);
                }
                for (&other, matches) in &self.marks {
                    if m.matches.iter().any(|a| matches.iter().any(|b| a.overlaps(b))) {
                        return Err(ApplyError::MarkOverlap(other));
                    }
                }
                let mut next = self.marks.clone();
                next.insert(m.mark, m.matches.clone());
                crate::encode::mark_entries(&next)?;
                self.marks = next;
            }
            Command::DelMark(mark) => {
                self.marks.remove(mark).ok_or(ApplyError::NoSuchMark)?;
            }
            Command::AddDest(key, dest) => {
                let entry = self.get_mut(key).ok_or(ApplyError::ServiceNotDefined)?;
                check_dest(&entry.service, dest)?;
                if entry.dest(&dest.key).is_some() {
                    return Err(ApplyError::DestExists);
                }
                entry.dests.insert(0, dest.clone());
            }
            Command::EditDest(key, dest) => {
                let entry = self.get_mut(key).ok_or(ApplyError::ServiceNotDefined)?;
                check_dest(&entry.service, dest)?;
                let slot = entry
                    .dests
                    .iter_mut()
                    .find(|d| d.key == dest.key)
                    .ok_or(ApplyError::NoSuchDest)?;
                // -e replaces every parameter (omitted ones revert to defaults) but keeps the position.
                *slot = dest.clone();
            }
            Command::DelDest(key, dkey) => {
                let entry = self.get_mut(key).ok_or(ApplyError::ServiceNotDefined)?;
                let i = entry
                    .dests
                    .iter()
                    .position(|d| d.key == *dkey)
                    .ok_or(ApplyError::NoSuchDest)?;
                entry.dests.remove(i);
            }
        }
        Ok(())
    }

    /// Applies all commands or none: on error the table is unchanged and the error carries the index
    /// (0-based) of the command that failed.
    ///
    /// # Errors
    /// The first command's error, with its index.
    pub fn apply_all(&mut self, cmds: &[Command]) -> Result<(), (usize, ApplyError)> {
        let mut next = self.clone();
        for (i, cmd) in cmds.iter().enumerate() {
            next.apply(cmd).map_err(|e| (i, e))?;
        }
        *self = next;
        Ok(())
    }

    fn position(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|e| e.service.key == *key)
    }
}

fn check_scheduler(svc: &Service) -> Result<(), ApplyError> {
    if SUPPORTED_SCHEDULERS.contains(&svc.scheduler.as_str()) {
        Ok(())
    } else {
        Err(ApplyError::SchedulerNotFound)
    }
}

/// The checks of ip_vs_genl_set_cmd (family) and ip_vs_add_dest/ip_vs_edit_dest (thresholds), in the
/// kernel's order; they run before the dest lookup, so they win over EEXIST/ENOENT.
fn check_dest(svc: &Service, dest: &Dest) -> Result<(), ApplyError> {
    if dest.key.addr.is_ipv4() != svc.key.addr.is_ipv4() && dest.fwd != FwdMethod::Tunnel {
        return Err(ApplyError::AfNotSupported);
    }
    // The kernel's weight is an int: what would be negative there is EINVAL.
    if i32::try_from(dest.weight).is_err() {
        return Err(ApplyError::Invalid);
    }
    if dest.l_threshold > dest.u_threshold {
        return Err(ApplyError::OutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Protocol;
    use std::net::IpAddr;

    fn skey(port: u16) -> ServiceKey {
        ServiceKey {
            proto: Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port,
        }
    }

    fn svc(port: u16, sched: &str) -> Service {
        Service {
            key: skey(port),
            scheduler: sched.into(),
            persistent: None,
            netmask: 32,
            sched_flags: Vec::new(),
            ops: false,
        }
    }

    fn dkey(addr: &str, port: u16) -> DestKey {
        DestKey {
            addr: addr.parse::<IpAddr>().unwrap(),
            port,
        }
    }

    fn dest(addr: &str, weight: u32) -> Dest {
        Dest {
            key: dkey(addr, 80),
            fwd: FwdMethod::Masq,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    fn addrs(t: &Table, port: u16) -> Vec<String> {
        t.get(&skey(port))
            .unwrap()
            .dests
            .iter()
            .map(|d| d.key.addr.to_string())
            .collect()
    }

    #[test]
    fn new_dests_go_to_the_head_and_edit_keeps_the_position() {
        let mut t = Table::new();
        t.apply_all(&[
            Command::AddService(svc(80, "rr")),
            Command::AddDest(skey(80), dest("198.18.1.11", 1)),
            Command::AddDest(skey(80), dest("198.18.1.12", 1)),
            Command::AddDest(skey(80), dest("198.18.1.13", 1)),
            Command::EditDest(skey(80), dest("198.18.1.12", 7)),
        ])
        .unwrap();
        assert_eq!(addrs(&t, 80), ["198.18.1.13", "198.18.1.12", "198.18.1.11"]);
        assert_eq!(t.get(&skey(80)).unwrap().dests[1].weight, 7);
        t.apply(&Command::DelDest(skey(80), dkey("198.18.1.13", 80)))
            .unwrap();
        assert_eq!(addrs(&t, 80), ["198.18.1.12", "198.18.1.11"]);
    }

    #[test]
    fn errors_are_the_kernels() {
        let mut t = Table::new();
        t.apply(&Command::AddService(svc(80, "rr"))).unwrap();
        t.apply(&Command::AddDest(skey(80), dest("198.18.1.11", 1)))
            .unwrap();
        let cases: Vec<(Command, ApplyError)> = vec![
            (Command::AddService(svc(80, "rr")), ApplyError::ServiceExists),
            (Command::AddService(svc(80, "nosuch")), ApplyError::ServiceExists),
            (
                Command::AddService(svc(81, "lblcx")),
                ApplyError::SchedulerNotFound,
            ),
            (
                Command::AddService(svc(81, "nosuch")),
                ApplyError::SchedulerNotFound,
            ),
            (Command::EditService(svc(99, "wrr")), ApplyError::NoSuchService),
            (
                Command::EditService(svc(80, "lblcx")),
                ApplyError::SchedulerNotFound,
            ),
            (Command::DelService(skey(99)), ApplyError::NoSuchService),
            (
                Command::AddDest(skey(99), dest("198.18.1.11", 1)),
                ApplyError::ServiceNotDefined,
            ),
            (
                Command::EditDest(skey(99), dest("198.18.1.11", 1)),
                ApplyError::ServiceNotDefined,
            ),
            (
                Command::DelDest(skey(99), dkey("198.18.1.11", 80)),
                ApplyError::ServiceNotDefined,
            ),
            (
                Command::AddDest(skey(80), dest("198.18.1.11", 2)),
                ApplyError::DestExists,
            ),
            (
                Command::EditDest(skey(80), dest("198.18.1.99", 2)),
                ApplyError::NoSuchDest,
            ),
            (
                Command::DelDest(skey(80), dkey("198.18.1.11", 81)),
                ApplyError::NoSuchDest,
            ),
            (
                Command::AddDest(
                    skey(80),
                    Dest {
                        u_threshold: 10,
                        l_threshold: 20,
                        ..dest("198.18.1.12", 1)
                    },
                ),
                ApplyError::OutOfRange,
            ),
            (
                // The range check comes before the lookup, as in ip_vs_add_dest.
                Command::AddDest(
                    skey(80),
                    Dest {
                        l_threshold: 1,
                        ..dest("198.18.1.11", 1)
                    },
                ),
                ApplyError::OutOfRange,
            ),
            (
                Command::EditDest(
                    skey(80),
                    Dest {
                        l_threshold: 1,
                        ..dest("198.18.1.11", 1)
                    },
                ),
                ApplyError::OutOfRange,
            ),
            (
                Command::AddDest(skey(80), dest("198.18.1.12", 1 << 31)),
                ApplyError::Invalid,
            ),
            (
                Command::EditDest(skey(80), dest("198.18.1.11", u32::MAX)),
                ApplyError::Invalid,
            ),
            (
                Command::AddDest(
                    skey(80),
                    Dest {
                        key: dkey("2001:db8::1", 80),
                        ..dest("198.18.1.12", 1)
                    },
                ),
                ApplyError::AfNotSupported,
            ),
        ];
        for (cmd, want) in cases {
            let before = t.clone();
            assert_eq!(t.apply(&cmd), Err(want.clone()), "{cmd:?}");
            assert_eq!(t, before, "{cmd:?} changed the table");
        }
        // A tunnel may cross families; deleting never checks the family.
        let tun = Dest {
            key: dkey("2001:db8::1", 80),
            fwd: FwdMethod::Tunnel,
            ..dest("198.18.1.12", 1)
        };
        t.apply(&Command::AddDest(skey(80), tun)).unwrap();
        t.apply(&Command::DelDest(skey(80), dkey("2001:db8::1", 80)))
            .unwrap();
        t.apply(&Command::EditDest(skey(80), dest("198.18.1.11", i32::MAX as u32)))
            .unwrap();
        let ok = Dest {
            u_threshold: 20,
            l_threshold: 10,
            ..dest("198.18.1.12", 1)
        };
        t.apply(&Command::AddDest(skey(80), ok)).unwrap();
    }

    #[test]
    fn edit_service_replaces_the_record_and_keeps_the_dests() {
        let mut t = Table::new();
        let mut persistent = svc(80, "rr");
        persistent.persistent = Some(60);
        t.apply_all(&[
            Command::AddService(persistent),
            Command::AddDest(skey(80), dest("198.18.1.11", 1)),
            Command::EditService(svc(80, "wrr")),
        ])
        .unwrap();
        let e = t.get(&skey(80)).unwrap();
        assert_eq!(e.service, svc(80, "wrr"));
        assert_eq!(e.dests.len(), 1);
    }

    #[test]
    fn services_keep_insertion_order_and_clear_empties() {
        let mut t = Table::new();
        for port in [90, 80, 85] {
            t.apply(&Command::AddService(svc(port, "rr"))).unwrap();
        }
        t.apply(&Command::DelService(skey(80))).unwrap();
        t.apply(&Command::AddService(svc(80, "rr"))).unwrap();
        let ports: Vec<u16> = t.services().iter().map(|e| e.service.key.port).collect();
        assert_eq!(ports, [90, 85, 80]);
        t.apply(&Command::Clear).unwrap();
        assert!(t.services().is_empty());
    }

    #[test]
    fn apply_all_is_all_or_nothing() {
        let mut t = Table::new();
        t.apply(&Command::AddService(svc(80, "rr"))).unwrap();
        let before = t.clone();
        let err = t.apply_all(&[
            Command::AddDest(skey(80), dest("198.18.1.11", 1)),
            Command::AddService(svc(81, "rr")),
            Command::AddDest(skey(80), dest("198.18.1.11", 1)),
        ]);
        assert_eq!(err, Err((2, ApplyError::DestExists)));
        assert_eq!(t, before);
    }
}
