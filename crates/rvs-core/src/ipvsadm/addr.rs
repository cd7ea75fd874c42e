//! Numbers, addresses, ports and names as ipvsadm reads them (libc's strtol, inet_aton, inet_pton,
//! gethostbyname and getservbyname semantics, reproduced so that the same words are accepted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::sync::OnceLock;

/// Address family of a parsed address, `Unspec` until one is parsed (ipvsadm's zeroed `af`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Af {
    #[default]
    Unspec,
    V4,
    V6,
}

/// Transport protocol as ipvsadm's `svc.protocol` holds it while parsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Proto {
    /// IPPROTO_IP: nothing chosen yet.
    #[default]
    None,
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn services_name(self) -> Option<&'static str> {
        match self {
            Proto::None => None,
            Proto::Tcp => Some("tcp"),
            Proto::Udp => Some("udp"),
            Proto::Sctp => Some("sctp"),
        }
    }
}

/// C's `strtol(s, &end, 10)` requiring the whole string to be consumed (`*end == '\0' && end != s`).
/// Leading whitespace and a sign are accepted, as strtol accepts them. `None` on overflow.
pub(crate) fn strtol_whole(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// ipvsadm's `string_to_number`: a whole decimal number within `min..=max`.
pub(crate) fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    strtol_whole(s).filter(|n| (min..=max).contains(n))
}

/// C's `atoi`: leading digits after optional whitespace and sign, 0 when there are none.
pub(crate) fn atoi(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in rest.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -v } else { v }
}

/// glibc's `inet_aton`: one to four parts, each decimal, octal (leading 0) or hex (0x); the last part
/// fills the remaining bytes (`198.18.1` is 198.18.0.1). Anything after a whitespace is ignored.
pub(crate) fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = s
        .split([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .next()
        .unwrap_or("");
    let mut parts = Vec::with_capacity(4);
    for p in s.split('.') {
        parts.push(c_strtoul_base0(p)?);
        if parts.len() > 4 {
            return None;
        }
    }
    let v = match parts.as_slice() {
        [a] => *a,
        [a, b] if *a <= 0xff && *b <= 0xff_ffff => (a << 24) | b,
        [a, b, c] if *a <= 0xff && *b <= 0xff && *c <= 0xffff => (a << 24) | (b << 16) | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|x| **x <= 0xff) => (a << 24) | (b << 16) | (c << 8) | d,
        _ => return None,
    };
    Some(Ipv4Addr::from(v))
}

/// One inet_aton part: non-empty, base from its prefix, at most 32 bits.
fn c_strtoul_base0(p: &str) -> Option<u32> {
    let (radix, digits) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (16, h)
    } else if p.len() > 1 && p.starts_with('0') {
        (8, &p[1..])
    } else {
        (10, p)
    };
    if p.is_empty() || (radix == 16 && digits.is_empty()) {
        // "0x" alone is 0 for glibc's strtoul; ipvsadm users never write it, so refuse it.
        return None;
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// ipvsadm's `host_to_addr` (gethostbyname): the first IPv4 address of a host name.
pub(crate) fn host_to_v4(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    let addrs = (name, 0u16).to_socket_addrs().ok()?;
    addrs.into_iter().find_map(|a| match a.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}

/// What `parse_service` set: ipvsadm's SERVICE_ADDR / SERVICE_PORT bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) port_given: bool,
}

/// The address fields `parse_service` writes into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AddrSlot {
    pub(crate) af: Af,
    pub(crate) addr: Option<IpAddr>,
    pub(crate) port: u16,
    /// ipvsadm's `svc.netmask`: a dotted IPv4 mask as u32, or an IPv6 prefix length.
    pub(crate) netmask: u32,
}

/// ipvsadm's `parse_service` for `host[:port]`, `[v6]:port` or a bare IPv6 literal. Writes what it
/// parsed into `slot` (the port only when given) and returns `None` for anything it rejects.
pub(crate) fn parse_service(buf: &str, proto: Proto, slot: &mut AddrSlot) -> Option<Parsed> {
    if buf.bytes().all(|b| b.is_ascii_digit()) {
        // Also the empty string: str_is_digit("") is true.
        return None;
    }
    let mut host = buf;
    let mut port: Option<&str> = None;
    if let Some(inner) = buf.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        port = Some(after.strip_prefix(':')?);
        host = h;
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        slot.addr = Some(IpAddr::V6(v6));
        slot.af = Af::V6;
        slot.netmask = 128;
    } else {
        // ipvsadm searches the last ':' again here, also inside brackets (`[1.2.3.4]:80` loses its port).
        match host.rsplit_once(':') {
            Some((h, p)) => {
                host = h;
                port = Some(p);
            }
            None => port = None,
        }
        let v4 = inet_aton(host).or_else(|| host_to_v4(host))?;
        slot.addr = Some(IpAddr::V4(v4));
        slot.af = Af::V4;
    }
    if let Some(p) = port {
        let n = match string_to_number(p, 0, 65535) {
            Some(n) => u16::try_from(n).ok()?,
            None => service_to_port(p, proto)?,
        };
        slot.port = n;
    }
    Some(Parsed {
        port_given: port.is_some(),
    })
}

/// ipvsadm's `parse_netmask`: a dotted mask (inet_aton, so `33` is 0.0.0.33) or a host name.
pub(crate) fn parse_netmask(buf: &str) -> Option<u32> {
    inet_aton(buf).or_else(|| host_to_v4(buf)).map(u32::from)
}

/// getservbyname(name, proto) through /etc/services.
pub(crate) fn service_to_port(name: &str, proto: Proto) -> Option<u16> {
    let proto = proto.services_name()?;
    etc_services()
        .iter()
        .find(|e| e.proto == proto && e.names.iter().any(|n| n == name))
        .map(|e| e.port)
}

/// getservbyport(port, proto) through /etc/services: the official name of the first matching entry.
pub fn port_to_service(port: u16, proto: &str) -> Option<String> {
    etc_services()
        .iter()
        .find(|e| e.proto == proto && e.port == port)
        .map(|e| e.names[0].clone())
}

/// One line of /etc/services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    /// Official name first, then aliases.
    pub(crate) names: Vec<String>,
    pub(crate) port: u16,
    pub(crate) proto: String,
}

fn etc_services() -> &'static [ServiceEntry] {
    static CACHE: OnceLock<Vec<ServiceEntry>> = OnceLock::new();
    CACHE.get_or_init(|| parse_services(&std::fs::read_to_string("/etc/services").unwrap_or_default()))
}

/// Parses services(5) text: `name port/proto [aliases...] [# comment]`; malformed lines are skipped.
pub(crate) fn parse_services(text: &str) -> Vec<ServiceEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let (port, proto) = words.next()?.split_once('/')?;
            let port = port.parse().ok()?;
            let mut names = vec![name.to_owned()];
            names.extend(words.map(str::to_owned));
            Some(ServiceEntry {
                names,
                port,
                proto: proto.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_like_c() {
        assert_eq!(strtol_whole("42"), Some(42));
        assert_eq!(strtol_whole(" +7"), Some(7));
        assert_eq!(strtol_whole("-1"), Some(-1));
        assert_eq!(strtol_whole(""), None);
        assert_eq!(strtol_whole("4x"), None);
        assert_eq!(strtol_whole("99999999999999999999"), None);
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("abc"), 0);
    }

    #[test]
    fn inet_aton_like_glibc() {
        assert_eq!(inet_aton("198.18.0.100"), Some(Ipv4Addr::new(198, 18, 0, 100)));
        assert_eq!(inet_aton("198.18.0"), Some(Ipv4Addr::new(198, 18, 0, 0)));
        assert_eq!(inet_aton("198.18.1"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(inet_aton("33"), Some(Ipv4Addr::new(0, 0, 0, 33)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(inet_aton("198.18.0.300"), None);
        assert_eq!(inet_aton("198.18.0.100.5"), None);
        assert_eq!(inet_aton(""), None);
        assert_eq!(inet_aton("1..2"), None);
        assert_eq!(inet_aton("08.1.1.1"), None);
    }

    #[test]
    fn services_file() {
        let s =
            parse_services("# c\nhttp\t\t80/tcp\t\twww\t# web\nhttp 80/udp\nbad line\nx11 6000/tcp x11-0\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].names, vec!["http", "www"]);
        assert_eq!(s[2].port, 6000);
    }

    #[test]
    fn service_addresses() {
        let mut slot = AddrSlot::default();
        assert_eq!(
            parse_service("198.18.0.1:80", Proto::Tcp, &mut slot),
            Some(Parsed { port_given: true })
        );
        assert_eq!((slot.addr, slot.port), (Some("198.18.0.1".parse().unwrap()), 80));
        let mut slot = AddrSlot::default();
        assert_eq!(
            parse_service("[2001:db8::1]:443", Proto::Tcp, &mut slot),
            Some(Parsed { port_given: true })
        );
        assert_eq!((slot.af, slot.port, slot.netmask), (Af::V6, 443, 128));
        let mut slot = AddrSlot::default();
        assert_eq!(
            parse_service("2001:db8::1", Proto::Tcp, &mut slot),
            Some(Parsed { port_given: false })
        );
        for bad in [
            "",
            "80",
            "[2001:db8::1]",
            "[2001:db8::1]80",
            "1.2.3.4:",
            ":80",
            "1.2.3.4:65536",
            "1.2.3.4:-1",
        ] {
            assert_eq!(
                parse_service(bad, Proto::Tcp, &mut AddrSlot::default()),
                None,
                "{bad}"
            );
        }
    }
}
