//! Host and port names for listings without `-n` (ipvsadm's gethostbyaddr and getservbyport).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

use rvs_core::Protocol;

/// Where names come from; tests give fixed tables, the binary asks the system.
pub(crate) trait Names {
    /// The host name of `addr`, `None` to print the address.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// The service name of `port` for `proto`, `None` to print the number.
    fn port(&self, port: u16, proto: Protocol) -> Option<String>;
}

/// Reverse DNS through getnameinfo (same sources as gethostbyaddr: /etc/hosts, then DNS) and
/// /etc/services, each address looked up once per run.
#[derive(Default)]
pub(crate) struct SystemNames {
    hosts: RefCell<HashMap<IpAddr, Option<String>>>,
}

impl Names for SystemNames {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.hosts
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| reverse_lookup(addr))
            .clone()
    }

    fn port(&self, port: u16, proto: Protocol) -> Option<String> {
        let proto = match proto {
            // ipvsadm gives a fwmark service protocol TCP internally, and names its ports by it.
            Protocol::Tcp | Protocol::Fwmark => "tcp",
            Protocol::Udp => "udp",
        };
        rvs_core::ipvsadm::port_to_service(port, proto)
    }
}

/// getnameinfo(NI_NAMEREQD): the name, or `None` when there is none.
fn reverse_lookup(addr: IpAddr) -> Option<String> {
    let sa = SocketAddr::new(addr, 0);
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `storage` holds a sockaddr of `len` bytes; `host` is a writable buffer of the length passed;
    // no service buffer is requested (null, 0). getnameinfo NUL-terminates what it writes on success.
    let rc = unsafe {
        libc::getnameinfo(
            (&raw const storage).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string within its bounds.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_a_name_and_services_resolve() {
        let n = SystemNames::default();
        // /etc/hosts maps 127.0.0.1 to localhost on the machines this runs on.
        assert_eq!(n.host("127.0.0.1".parse().unwrap()).as_deref(), Some("localhost"));
        assert_eq!(n.port(80, Protocol::Tcp).as_deref(), Some("http"));
        assert_eq!(n.port(53, Protocol::Udp).as_deref(), Some("domain"));
        assert_eq!(n.port(4789, Protocol::Udp), None);
    }
}
