//! Rust side of the ABI shared with the XDP program. Mirrors `bpf/include/rvs_abi.h` field by field;
//! `crates/rvs-bpf/tests/abi_layout.rs` compares both with the compiled object's BTF.
//!
//! Addresses and ports are network byte order ([`Be16`], [`Be32`]); counters, ids and times are host order.
#![no_std]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Services: ids `0..MAX_SVC`. Mirrors `RVS_MAX_SVC`.
pub const MAX_SVC: u32 = 4096;
/// Real servers over all services: ids `0..MAX_DEST`. Mirrors `RVS_MAX_DEST`.
pub const MAX_DEST: u32 = 65536;
/// Slots of `rvs_sched`, shared by all services' tables. Mirrors `RVS_SCHED_SLOTS`.
pub const SCHED_SLOTS: u32 = 1 << 20;
/// Default `max_entries` of `rvs_conn`. Mirrors `RVS_CONN_DEFAULT`.
pub const CONN_DEFAULT: u32 = 1 << 20;
/// Interfaces XDP_REDIRECT can reach (`rvs_tx_ports`). Mirrors `RVS_MAX_TX_PORTS`.
pub const MAX_TX_PORTS: u32 = 256;
/// Routes a test can give `rvs_fib_lookup` (`rvs_test_fib`). Mirrors `RVS_TEST_FIB_MAX`.
pub const TEST_FIB_MAX: u32 = 64;

/// `rvs_mark` entries: (family, protocol, address prefix). Mirrors `RVS_MAX_MARK_PREFIXES`.
pub const MAX_MARK_PREFIXES: u32 = 1024;
/// Port ranges in one `rvs_mark` entry. Mirrors `RVS_MARK_RANGES`.
pub const MARK_RANGES: usize = 16;
/// `SvcKey::proto` of a firewall-mark service, whose `addr[0]` holds the mark in host order. Mirrors
/// `RVS_SVC_PROTO_FWMARK`.
pub const SVC_PROTO_FWMARK: u8 = 0;

/// `rvs_lblc` entries over all lblc/lblcr services. Mirrors `RVS_LBLC_MAX`.
pub const LBLC_MAX: u32 = 131_072;
/// Real servers in one lblcr set. Mirrors `RVS_LBLCR_SET_MAX`.
pub const LBLCR_SET_MAX: usize = 8;

/// Map names, as in `bpf/include/rvs_maps.h` (at most 15 bytes: the kernel keeps 15).
pub mod map {
    /// Virtual services: `SvcKey` -> `SvcVal`.
    pub const SVC: &str = "rvs_svc";
    /// Real servers: array of `DestVal` indexed by dest id.
    pub const DEST: &str = "rvs_dest";
    /// Scheduler tables: array of dest ids.
    pub const SCHED: &str = "rvs_sched";
    /// Per-service scheduler state: array of `SvcState`.
    pub const SVC_ST: &str = "rvs_svc_st";
    /// Connections: LRU hash `ConnKey` -> `ConnVal`.
    pub const CONN: &str = "rvs_conn";
    /// Per-CPU `Stats` per service id.
    pub const SVC_STATS: &str = "rvs_svc_stats";
    /// Per-CPU `Stats` per dest id.
    pub const DEST_STATS: &str = "rvs_dest_stats";
    /// Per-CPU drop counters (u64) indexed by `DropReason`.
    pub const DROPS: &str = "rvs_drops";
    /// Test inputs (`TestEnv`), read only when `rvs_test_hooks` is set.
    pub const TEST_ENV: &str = "rvs_test_env";
    /// Service id -> `SvcKey`, written with every `SvcSet` (how a NAT reply finds its virtual address).
    pub const SVC_ADDR: &str = "rvs_svc_addr";
    /// Global switches: array of one `Cfg`.
    pub const CFG: &str = "rvs_cfg";
    /// Devmap (hash) of the interfaces XDP_REDIRECT may use, ifindex -> ifindex; filled on attach.
    pub const TX_PORTS: &str = "rvs_tx_ports";
    /// Test routes (`TestFibKey` -> `TestFib`), read only when `rvs_test_hooks` is set.
    pub const TEST_FIB: &str = "rvs_test_fib";
    /// Connection counters per dest id.
    pub const DEST_CNT: &str = "rvs_dest_cnt";
    /// Timeouts by state.
    pub const TIMEOUTS: &str = "rvs_timeouts";
    /// Virtual addresses: hash `VipKey` -> u32 (1), whose echo requests the director answers.
    pub const VIP: &str = "rvs_vip";
    /// Firewall marks: LPM trie `MarkKey` -> `MarkVal`.
    pub const MARK: &str = "rvs_mark";
    /// lblc/lblcr: hash `LblcKey` -> `LblcVal`.
    pub const LBLC: &str = "rvs_lblc";
}

/// Network-order u16 that keeps u16's alignment (zerocopy's `U16` has align 1 and would move fields).
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct Be16(u16);

impl Be16 {
    /// From a host-order value.
    pub const fn new(host: u16) -> Self {
        Self(host.to_be())
    }
    /// As a host-order value.
    pub const fn get(self) -> u16 {
        u16::from_be(self.0)
    }
    /// From the two bytes as they are on the wire.
    pub const fn from_wire(b: [u8; 2]) -> Self {
        Self(u16::from_ne_bytes(b))
    }
    /// The two bytes as they are on the wire.
    pub const fn to_wire(self) -> [u8; 2] {
        self.0.to_ne_bytes()
    }
}

/// Network-order u32 that keeps u32's alignment.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct Be32(u32);

impl Be32 {
    /// From a host-order value.
    pub const fn new(host: u32) -> Self {
        Self(host.to_be())
    }
    /// As a host-order value.
    pub const fn get(self) -> u32 {
        u32::from_be(self.0)
    }
    /// From the four bytes as they are on the wire.
    pub const fn from_wire(b: [u8; 4]) -> Self {
        Self(u32::from_ne_bytes(b))
    }
    /// The four bytes as they are on the wire.
    pub const fn to_wire(self) -> [u8; 4] {
        self.0.to_ne_bytes()
    }
}

/// An address as the maps hold it: IPv4 in word 0 with the rest zero, or IPv6.
pub type Addr = [Be32; 4];

/// Converts an IPv4 address to the maps' form.
pub fn addr_v4(a: [u8; 4]) -> Addr {
    [
        Be32::from_wire(a),
        Be32::default(),
        Be32::default(),
        Be32::default(),
    ]
}

/// Converts an IPv6 address to the maps' form.
pub fn addr_v6(a: [u8; 16]) -> Addr {
    let w = |i: usize| Be32::from_wire([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// The 16 wire bytes of a map address (IPv4 in the first four).
pub fn addr_bytes(a: &Addr) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, w) in a.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_wire());
    }
    out
}

/// Address family. Mirrors `enum rvs_family`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    Inet = 1,
    /// IPv6.
    Inet6 = 2,
}

/// Forwarding method. Mirrors `enum rvs_fwd`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// Direct routing ("Route").
    Dr = 0,
    /// NAT ("Masq").
    Nat = 1,
    /// IP-in-IP tunnel ("Tunnel").
    Tun = 2,
}

/// Scheduler executed by the data plane. Mirrors `enum rvs_sched`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sched {
    /// Cyclic table of available dests.
    Rr = 0,
    /// Cyclic table holding one IPVS wrr period.
    Wrr = 1,
    /// 256 buckets indexed by a hash of the source address (and port with `SVC_F_SCHED_PORT`).
    Sh = 2,
    /// 256 buckets indexed by a hash of the destination address.
    Dh = 3,
    /// Maglev table indexed by hsiphash of the source address (and port with `SVC_F_SCHED_PORT`).
    Mh = 4,
    /// Least connections; the table lists the service's real servers (as for all below).
    Lc = 5,
    /// Weighted least connections.
    Wlc = 6,
    /// Shortest expected delay.
    Sed = 7,
    /// Never queue.
    Nq = 8,
    /// Weighted failover.
    Fo = 9,
    /// Overflow.
    Ovf = 10,
    /// Weighted random choice of two.
    Twos = 11,
    /// Locality-based least connections: `rvs_lblc` remembers a real server per destination address.
    Lblc = 12,
    /// Locality-based least connections with replication: a set of real servers per address.
    Lblcr = 13,
}

impl Sched {
    /// Whether the data plane scans the service's real servers and their counters (the table lists
    /// them in IPVS's order) rather than reading one slot.
    pub const fn counts(self) -> bool {
        (self as u32) >= Sched::Lc as u32
    }
}

/// A hashed scheduler's slot whose bucket has no usable real server. Mirrors `RVS_SCHED_NO_DEST`.
pub const SCHED_NO_DEST: u32 = u32::MAX;

/// TCP (and UDP) connection states, numbered as IPVS numbers them. Mirrors `enum rvs_tcp_state`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// NONE (also persistence templates).
    None = 0,
    /// ESTABLISHED.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
    /// Sentinel (IP_VS_TCP_S_LAST).
    Last = 11,
    /// The single UDP state.
    UdpNormal = 12,
}

impl TcpState {
    /// From the raw byte in `ConnVal::state`.
    pub fn from_u8(v: u8) -> Option<Self> {
        use TcpState::*;
        Some(match v {
            0 => None,
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait,
            5 => TimeWait,
            6 => Close,
            7 => CloseWait,
            8 => LastAck,
            9 => Listen,
            10 => SynAck,
            11 => Last,
            12 => UdpNormal,
            _ => return Option::None,
        })
    }
}

/// Why a packet was dropped. Values equal `enum rvs_drop` (checked by abi_layout.rs).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Frame shorter than its Ethernet (+VLAN) header.
    EthShort = 1,
    /// IPv4 header truncated.
    Ipv4Short = 2,
    /// Version not 4, IHL below 5, or total length beyond the frame.
    Ipv4Bad = 3,
    /// TCP or UDP header truncated.
    L4Short = 4,
    /// The service exists but the scheduler found no usable real server.
    NoDest = 5,
    /// The real server's MAC is not resolved yet.
    NoNeigh = 6,
    /// A TCP packet that is not a SYN and matches no connection.
    NotSyn = 7,
    /// The connection table refused the insert.
    ConnFull = 8,
    /// Forwarding method not implemented by this data plane.
    FwdUnsupp = 9,
    /// Non-first IPv4 fragment to a virtual service.
    Fragment = 10,
    /// IPv6 fixed header truncated.
    Ipv6Short = 11,
    /// Version not 6, or payload length beyond the frame.
    Ipv6Bad = 12,
    /// NAT: the kernel's FIB says forwarding is disabled on the ingress interface.
    FwdDisabled = 13,
    /// TUN: no room could be made for the outer header.
    EncapFail = 14,
    /// TUN: too big for the tunnel, and no ICMP error can say so.
    TooBig = 15,
    /// The packet's entry was being expired on another CPU at that moment.
    ConnBusy = 16,
    /// Source port 0 toward a persistent service (that key is its client network's template's).
    PortZero = 17,
}

/// Number of drop counter slots. Mirrors `RVS_DROP__MAX`.
pub const DROP_MAX: u32 = 18;

impl DropReason {
    /// Every reason, in value order.
    pub const ALL: [DropReason; 17] = [
        DropReason::EthShort,
        DropReason::Ipv4Short,
        DropReason::Ipv4Bad,
        DropReason::L4Short,
        DropReason::NoDest,
        DropReason::NoNeigh,
        DropReason::NotSyn,
        DropReason::ConnFull,
        DropReason::FwdUnsupp,
        DropReason::Fragment,
        DropReason::Ipv6Short,
        DropReason::Ipv6Bad,
        DropReason::FwdDisabled,
        DropReason::EncapFail,
        DropReason::TooBig,
        DropReason::ConnBusy,
        DropReason::PortZero,
    ];
    /// The name operators see (`rvsadm --stats`, logs): the C enumerator without `RVS_DROP_`, lower case.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::EthShort => "eth_short",
            DropReason::Ipv4Short => "ipv4_short",
            DropReason::Ipv4Bad => "ipv4_bad",
            DropReason::L4Short => "l4_short",
            DropReason::NoDest => "no_dest",
            DropReason::NoNeigh => "no_neigh",
            DropReason::NotSyn => "not_syn",
            DropReason::ConnFull => "conn_full",
            DropReason::FwdUnsupp => "fwd_unsupp",
            DropReason::Fragment => "fragment",
            DropReason::Ipv6Short => "ipv6_short",
            DropReason::Ipv6Bad => "ipv6_bad",
            DropReason::FwdDisabled => "fwd_disabled",
            DropReason::EncapFail => "encap_fail",
            DropReason::TooBig => "too_big",
            DropReason::ConnBusy => "conn_busy",
            DropReason::PortZero => "port_zero",
        }
    }
}

/// `SvcVal::flags`: persistent service. Mirrors `RVS_SVC_F_PERSISTENT`.
pub const SVC_F_PERSISTENT: u32 = 1 << 0;
/// `SvcVal::flags`: `sh-port`/`mh-port`, hash the source port too. Mirrors `RVS_SVC_F_SCHED_PORT`.
pub const SVC_F_SCHED_PORT: u32 = 1 << 1;
/// `SvcVal::flags`: `mh-fallback`, the table holds every slot's dest and the data plane rehashes past
/// an unusable one (weight 0). Mirrors `RVS_SVC_F_SCHED_FALLBACK`.
pub const SVC_F_SCHED_FALLBACK: u32 = 1 << 2;
/// `SvcVal::flags`: `-o`, each UDP datagram scheduled on its own, no entry. Mirrors
/// `RVS_SVC_F_ONEPACKET`.
pub const SVC_F_ONEPACKET: u32 = 1 << 3;
/// `DestVal::flags`: the slot holds a configured real server. Mirrors `RVS_DEST_F_VALID`.
pub const DEST_F_VALID: u32 = 1 << 0;
/// `DestVal::flags`: MACs and ifindex resolved. Mirrors `RVS_DEST_F_NEIGH`.
pub const DEST_F_NEIGH: u32 = 1 << 1;
/// Shift of the overload generation in `DestVal::flags` (and `DestCnt::flags`). Mirrors
/// `RVS_DEST_F_OGEN_SHIFT`.
pub const DEST_F_OGEN_SHIFT: u32 = 8;
/// The overload generation's bits in `DestVal::flags` (and `DestCnt::flags`). Mirrors
/// `RVS_DEST_F_OGEN_MASK`.
pub const DEST_F_OGEN_MASK: u32 = 0xFFFF_FF00;
/// `ConnVal::flags`: the director sees only the client's half. Mirrors `RVS_CONN_F_INPUT_ONLY`.
pub const CONN_F_INPUT_ONLY: u8 = 1 << 0;
/// `ConnVal::flags`: a NAT reply entry, keyed by the real server's side of a connection (bpf/lib/conn.h);
/// not a connection of its own. Mirrors `RVS_CONN_F_REPLY`.
pub const CONN_F_REPLY: u8 = 1 << 1;
/// `ConnVal::cflags`: counted in its real server's active connections (else inactive). Mirrors
/// `RVS_CONN_C_ACTIVE`.
pub const CONN_C_ACTIVE: u8 = 1 << 0;
/// `ConnVal::flags`: a persistence template, never a connection. Mirrors `RVS_CONN_F_TEMPLATE`.
pub const CONN_F_TEMPLATE: u8 = 1 << 2;
/// `ConnVal::flags`: scheduled through a template, whose `nctl` it holds. Mirrors
/// `RVS_CONN_F_CONTROLLED`.
pub const CONN_F_CONTROLLED: u8 = 1 << 3;
/// `RVS_CONN_F_INVALID`: a template invalidated by expire_quiescent_template, kept under ports 65535
/// until its timer ends.
pub const CONN_F_INVALID: u8 = 1 << 4;
/// `ConnVal::cflags`: claimed by whoever deletes or replaces it. Mirrors `RVS_CONN_C_DEAD`.
pub const CONN_C_DEAD: u8 = 1 << 1;
/// `DestCnt::flags`: the upper threshold was reached. Mirrors `RVS_DEST_C_OVERLOAD`.
pub const DEST_C_OVERLOAD: u32 = 1 << 0;
/// Slots of `Timeouts::s`, one per `TcpState`. Mirrors `RVS_TIMEOUT_SLOTS`.
pub const TIMEOUT_SLOTS: usize = 16;
/// Keys one run of `rvs_xdp_expire` examines. Mirrors `RVS_EXPIRE_BATCH`.
pub const EXPIRE_BATCH: usize = 64;
/// `Cfg::flags`: some real server is NAT, so packets to no service are looked up as replies. Mirrors
/// `RVS_CFG_F_NAT`.
pub const CFG_F_NAT: u32 = 1 << 0;
/// `Cfg::flags`: expire_quiescent_template (a template whose real server has weight 0 is not used).
/// Mirrors `RVS_CFG_F_QUIESCENT`.
pub const CFG_F_QUIESCENT: u32 = 1 << 1;
/// `Cfg::flags`: some service has port 0 (look it up after an exact miss). Mirrors `RVS_CFG_F_PORT0`.
pub const CFG_F_PORT0: u32 = 1 << 2;

/// Return values of the kernel's `bpf_fib_lookup` (`BPF_FIB_LKUP_RET_*`, include/uapi/linux/bpf.h), as
/// `TestFib::ret` holds them.
pub mod fib_ret {
    /// Lookup successful: egress interface and both MACs known.
    pub const SUCCESS: u32 = 0;
    /// Destination is blackholed.
    pub const BLACKHOLE: u32 = 1;
    /// Destination is unreachable.
    pub const UNREACHABLE: u32 = 2;
    /// Destination not allowed.
    pub const PROHIBIT: u32 = 3;
    /// Packet is not forwarded (no route, or a local destination).
    pub const NOT_FWDED: u32 = 4;
    /// Forwarding is not enabled on the ingress interface.
    pub const FWD_DISABLED: u32 = 5;
    /// Forwarding requires encapsulation.
    pub const UNSUPP_LWT: u32 = 6;
    /// No neighbour entry for the next hop (egress interface known).
    pub const NO_NEIGH: u32 = 7;
    /// Fragmentation required to forward.
    pub const FRAG_NEEDED: u32 = 8;
    /// Failed to derive a source address.
    pub const NO_SRC_ADDR: u32 = 9;
}

/// Key of `rvs_svc`. Mirrors `struct rvs_svc_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SvcKey {
    /// Virtual address.
    pub addr: Addr,
    /// Virtual port.
    pub port: Be16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    /// `Family` as u8.
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<SvcKey>() == 20);

impl SvcKey {
    /// The key of firewall-mark service `mark` of `family`.
    pub fn fwmark(mark: u32, family: Family) -> Self {
        let mut addr = Addr::default();
        addr[0] = Be32::from_wire(mark.to_ne_bytes());
        SvcKey {
            addr,
            port: Be16::default(),
            proto: SVC_PROTO_FWMARK,
            family: family as u8,
        }
    }

    /// The mark of a firewall-mark service's key, or `None` for a service by address.
    pub fn mark(&self) -> Option<u32> {
        (self.proto == SVC_PROTO_FWMARK).then(|| u32::from_ne_bytes(self.addr[0].to_wire()))
    }
}

/// What an `rvs_mark` entry matches after its prefix length. Mirrors `struct rvs_mark_addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MarkAddr {
    /// `Family` as u8.
    pub family: u8,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 2],
    /// Address (its first bits, the rest zero).
    pub addr: Addr,
}
const _: () = assert!(core::mem::size_of::<MarkAddr>() == 20);

/// Key of `rvs_mark` (an LPM trie). Mirrors `struct rvs_mark_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MarkKey {
    /// Bits of `data` that must match: 32 (family, protocol, padding) plus the address prefix length.
    pub prefixlen: u32,
    /// Family, protocol and address.
    pub data: MarkAddr,
}
const _: () = assert!(core::mem::size_of::<MarkKey>() == 24);

/// A destination port range (host order, inclusive) and its mark. Mirrors `struct rvs_mark_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MarkRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
    /// The mark a port in the range gives.
    pub mark: u32,
}
const _: () = assert!(core::mem::size_of::<MarkRange>() == 8);

/// Value of `rvs_mark`: the port ranges of an entry, most specific prefix first. Mirrors
/// `struct rvs_mark_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MarkVal {
    /// Ranges in use, at most [`MARK_RANGES`].
    pub n: u32,
    /// Explicit padding, zero.
    pub _pad: u32,
    /// The ranges; the first `n` count.
    pub ranges: [MarkRange; MARK_RANGES],
}
const _: () = assert!(core::mem::size_of::<MarkVal>() == 136);

/// Value of `rvs_svc`. Mirrors `struct rvs_svc_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SvcVal {
    /// Index into `rvs_svc_st` and `rvs_svc_stats`.
    pub id: u32,
    /// `SVC_F_*`.
    pub flags: u32,
    /// `Sched` as u32.
    pub sched: u32,
    /// First slot of this service's table in `rvs_sched`.
    pub sched_base: u32,
    /// Slots in the table; 0 = no usable real server.
    pub sched_len: u32,
    /// `-p`: seconds a persistence template lives (with `SVC_F_PERSISTENT`).
    pub persist_s: u32,
    /// `-M`: prefix length of the client network one template covers.
    pub plen: u32,
    /// Explicit padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SvcVal>() == 32);

/// Value of `rvs_dest`. Mirrors `struct rvs_dest_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DestVal {
    /// Real server address.
    pub addr: Addr,
    /// Real server port.
    pub port: Be16,
    /// `Family` as u8.
    pub family: u8,
    /// `Fwd` as u8.
    pub fwd: u8,
    /// Next hop's (the real server's) MAC.
    pub dmac: [u8; 6],
    /// The director's MAC on `ifindex`.
    pub smac: [u8; 6],
    /// Interface toward the real server.
    pub ifindex: u32,
    /// Weight.
    pub weight: u32,
    /// Owning service's id.
    pub svc_id: u32,
    /// `DEST_F_*`.
    pub flags: u32,
    /// TUN: the director's address toward the real server (the outer source).
    pub laddr: Addr,
    /// TUN: path MTU toward the real server; 0 = unknown, not checked.
    pub mtu: u32,
    /// Generation of this dest id (a connection counts for it only while its `dest_gen` matches).
    pub dgen: u32,
    /// `-x` upper connection threshold; 0 = none.
    pub u_thresh: u32,
    /// `-y` lower connection threshold; 0 = none.
    pub l_thresh: u32,
}
const _: () = assert!(core::mem::size_of::<DestVal>() == 80);

/// Value of `rvs_dest_cnt`: a real server's connection counters. Mirrors `struct rvs_dest_cnt`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DestCnt {
    /// IPVS's activeconns.
    pub active: u32,
    /// IPVS's inactconns.
    pub inactive: u32,
    /// IPVS's persistconns (templates).
    pub persist: u32,
    /// `DEST_C_*`.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<DestCnt>() == 16);

/// Value of `rvs_timeouts[0]`: seconds by state. Mirrors `struct rvs_timeouts`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Timeouts {
    /// Timeout of each `TcpState` (index = its value); 0 = never times out in the data plane.
    pub s: [u32; TIMEOUT_SLOTS],
}
const _: () = assert!(core::mem::size_of::<Timeouts>() == 64);

/// Header of `rvs_xdp_expire`'s input. Mirrors `struct rvs_expire_hdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ExpireHdr {
    /// Keys that follow.
    pub nkeys: u32,
    /// Out: entries deleted.
    pub deleted: u32,
}
const _: () = assert!(core::mem::size_of::<ExpireHdr>() == 8);

/// Per-service scheduler state. Mirrors `struct rvs_svc_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SvcState {
    /// Next position in the service's table (taken modulo its length).
    pub pos: u64,
}
const _: () = assert!(core::mem::size_of::<SvcState>() == 8);

/// Key of `rvs_lblc`. Mirrors `struct rvs_lblc_key`.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct LblcKey {
    /// The packet's destination address (IPv4 in `addr[0]`, the rest zero).
    pub addr: Addr,
    /// Service id.
    pub svc_id: u32,
    /// `Family` as u8.
    pub family: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<LblcKey>() == 24);

/// A real server named by an lblc/lblcr entry. Mirrors `struct rvs_lblc_dest`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct LblcDest {
    /// Dest id.
    pub id: u32,
    /// `DestVal::dgen` of the id when it was added.
    pub dgen: u32,
}

/// Value of `rvs_lblc`. Mirrors `struct rvs_lblc_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct LblcVal {
    /// Last scheduling that looked the entry up (ns).
    pub lastuse_ns: u64,
    /// lblcr: last change of the set (ns).
    pub lastmod_ns: u64,
    /// Members in `dest`.
    pub n: u32,
    /// Explicit padding, zero.
    pub _pad: u32,
    /// lblc: `dest[0]`; lblcr: the set, most recently added first.
    pub dest: [LblcDest; LBLCR_SET_MAX],
}
const _: () = assert!(core::mem::size_of::<LblcVal>() == 88);

/// Key of `rvs_conn`. Mirrors `struct rvs_conn_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConnKey {
    /// Client address.
    pub saddr: Addr,
    /// Virtual address.
    pub daddr: Addr,
    /// Client port.
    pub sport: Be16,
    /// Virtual port.
    pub dport: Be16,
    /// IP protocol.
    pub proto: u8,
    /// `Family` as u8.
    pub family: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<ConnKey>() == 40);

/// Value of `rvs_conn`. Mirrors `struct rvs_conn_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConnVal {
    /// Real server.
    pub dest_id: u32,
    /// Service.
    pub svc_id: u32,
    /// Time of scheduling (ns, the data plane's clock).
    pub created_ns: u64,
    /// Time of the last packet (ns).
    pub last_ns: u64,
    /// `TcpState` as u8.
    pub state: u8,
    /// `CONN_F_*` (fixed at creation).
    pub flags: u8,
    /// `CONN_C_*` (counter class, claim).
    pub cflags: u8,
    /// `(created_ns >> 20) as u8`: tells a reused entry from the one it replaced.
    pub tag: u8,
    /// `DestVal::dgen` of `dest_id` when scheduled.
    pub dest_gen: u32,
    /// Template: the connections it controls.
    pub nctl: u32,
    /// Controlled connection: `created_ns as u32` of its template.
    pub ctag: u32,
}
const _: () = assert!(core::mem::size_of::<ConnVal>() == 40);

/// A NAT reply entry's view of its [`ConnVal`] (`flags` holds [`CONN_F_REPLY`]): the virtual address
/// and port the client used, where a connection keeps its times and template. Mirrors
/// `struct rvs_conn_rep`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConnRep {
    /// Real server.
    pub dest_id: u32,
    /// Service.
    pub svc_id: u32,
    /// The virtual address the client's packets went to (its client-side key's `daddr`).
    pub vaddr: Addr,
    /// As [`ConnVal::state`].
    pub state: u8,
    /// As [`ConnVal::flags`].
    pub flags: u8,
    /// As [`ConnVal::cflags`].
    pub cflags: u8,
    /// As [`ConnVal::tag`].
    pub tag: u8,
    /// As [`ConnVal::dest_gen`].
    pub dest_gen: u32,
    /// Zero.
    pub _pad: u32,
    /// The virtual port the client's packets went to (its client-side key's `dport`).
    pub vport: Be16,
    /// Zero.
    pub _pad2: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<ConnRep>() == 40);
const _: () = assert!(core::mem::offset_of!(ConnRep, state) == core::mem::offset_of!(ConnVal, state));
const _: () = assert!(core::mem::offset_of!(ConnRep, dest_gen) == core::mem::offset_of!(ConnVal, dest_gen));

impl ConnVal {
    /// This entry's bytes read as a NAT reply entry.
    pub fn as_rep(&self) -> ConnRep {
        zerocopy::transmute!(*self)
    }
}

impl From<ConnRep> for ConnVal {
    fn from(rep: ConnRep) -> Self {
        zerocopy::transmute!(rep)
    }
}

/// Per-CPU counters of a service or a real server. Mirrors `struct rvs_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client -> real server.
    pub inpkts: u64,
    /// Packets real server -> client (NAT only).
    pub outpkts: u64,
    /// Bytes client -> real server (IP length, as IPVS counts skb->len).
    pub inbytes: u64,
    /// Bytes real server -> client.
    pub outbytes: u64,
}
const _: () = assert!(core::mem::size_of::<Stats>() == 40);

impl Stats {
    /// Field-wise sum (for totals over CPUs).
    pub fn add(&mut self, o: &Stats) {
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.outpkts += o.outpkts;
        self.inbytes += o.inbytes;
        self.outbytes += o.outbytes;
    }
}

/// The director's global switches, `rvs_cfg[0]`. Mirrors `struct rvs_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Cfg {
    /// `CFG_F_*`.
    pub flags: u32,
    /// IPVS's lblcr_expiration (s): an lblcr set of more than one real server unchanged this long
    /// loses its most loaded member.
    pub lblcr_exp_s: u32,
}
const _: () = assert!(core::mem::size_of::<Cfg>() == 8);

/// Key of `rvs_vip`: an address some virtual service uses. Mirrors `struct rvs_vip_key`.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct VipKey {
    /// The address (IPv4 in word 0).
    pub addr: Addr,
    /// `Family` as u8.
    pub family: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

impl VipKey {
    /// The key of a service's address.
    pub fn of(key: &SvcKey) -> Self {
        VipKey {
            addr: key.addr,
            family: key.family,
            _pad: [0; 3],
        }
    }
}

/// The value of every `rvs_vip` entry: the key is what matters.
pub const VIP_PRESENT: u32 = 1;

/// Key of `rvs_test_fib`: a destination. Mirrors `struct rvs_test_fib_key`.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct TestFibKey {
    /// Destination address.
    pub addr: Addr,
    /// `Family` as u8.
    pub family: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<TestFibKey>() == 20);

impl TestFibKey {
    /// The key of an IPv4 destination.
    pub fn v4(a: [u8; 4]) -> Self {
        TestFibKey {
            addr: addr_v4(a),
            family: Family::Inet as u8,
            _pad: [0; 3],
        }
    }
    /// The key of an IPv6 destination.
    pub fn v6(a: [u8; 16]) -> Self {
        TestFibKey {
            addr: addr_v6(a),
            family: Family::Inet6 as u8,
            _pad: [0; 3],
        }
    }
}

/// Value of `rvs_test_fib`: what `bpf_fib_lookup` answers for a destination in tests. Mirrors
/// `struct rvs_test_fib`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TestFib {
    /// A [`fib_ret`] value.
    pub ret: u32,
    /// Egress interface (with `SUCCESS` and `NO_NEIGH`).
    pub ifindex: u32,
    /// The egress interface's MAC (with `SUCCESS`).
    pub smac: [u8; 6],
    /// The next hop's MAC (with `SUCCESS`).
    pub dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<TestFib>() == 20);

/// Test inputs. Mirrors `struct rvs_test_env`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TestEnv {
    /// Clock value returned by `rvs_now_ns()`.
    pub now_ns: u64,
    /// Value returned by `rvs_prandom()`.
    pub prandom: u32,
    /// Value returned by `rvs_cpu()`.
    pub cpu: u32,
}
const _: () = assert!(core::mem::size_of::<TestEnv>() == 16);

/// One change to the maps. `rvs_core::encode` is the single producer; the daemon's data plane and the
/// reference model both apply the same list, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Insert or replace a service.
    SvcSet {
        /// Key.
        key: SvcKey,
        /// Value.
        val: SvcVal,
    },
    /// Remove a service.
    SvcDel {
        /// Key.
        key: SvcKey,
    },
    /// Write dest slot `id` (a zero value with no `DEST_F_VALID` frees it).
    DestSet {
        /// Dest id.
        id: u32,
        /// Value.
        val: DestVal,
    },
    /// Write scheduler slot `slot`.
    SchedSet {
        /// Slot in `rvs_sched`.
        slot: u32,
        /// Dest id stored there.
        dest_id: u32,
    },
    /// Reset a service's scheduler state (new service id).
    SvcStateSet {
        /// Service id.
        id: u32,
        /// New state.
        val: SvcState,
    },
    /// Zero a service's per-CPU counters on every CPU.
    SvcStatsClear {
        /// Service id.
        id: u32,
    },
    /// Zero a real server's per-CPU counters on every CPU.
    DestStatsClear {
        /// Dest id.
        id: u32,
    },
    /// Write the global switches (`rvs_cfg[0]`).
    CfgSet {
        /// New value.
        val: Cfg,
    },
    /// Zero a real server's connection counters (a dest id given to a new real server).
    DestCntClear {
        /// Dest id.
        id: u32,
    },
    /// Write the timeouts (`rvs_timeouts[0]`).
    TimeoutsSet {
        /// New value.
        val: Timeouts,
    },
    /// Insert (or keep) a virtual address in `rvs_vip`, value [`VIP_PRESENT`].
    VipSet {
        /// Key.
        key: VipKey,
    },
    /// Remove a virtual address from `rvs_vip` (absent is not an error).
    VipDel {
        /// Key.
        key: VipKey,
    },
    /// Insert or replace a firewall-mark entry.
    MarkSet {
        /// Key.
        key: MarkKey,
        /// Value.
        val: MarkVal,
    },
    /// Remove a firewall-mark entry.
    MarkDel {
        /// Key.
        key: MarkKey,
    },
    /// Remove every `rvs_lblc` entry of a service (IPVS frees an lblc/lblcr table with its service
    /// or its scheduler; a new service id starts with none).
    LblcFlush {
        /// Service id.
        svc_id: u32,
    },
}

#[cfg(feature = "aya")]
mod pod {
    use super::*;
    // SAFETY (all below): repr(C), no padding (the IntoBytes derive proves it), every bit pattern valid
    // (FromBytes derive).
    // SAFETY: see above.
    unsafe impl aya::Pod for SvcKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for SvcVal {}
    // SAFETY: see above.
    unsafe impl aya::Pod for DestVal {}
    // SAFETY: see above.
    unsafe impl aya::Pod for SvcState {}
    // SAFETY: see above.
    unsafe impl aya::Pod for ConnKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for ConnVal {}
    // SAFETY: see above.
    unsafe impl aya::Pod for Stats {}
    // SAFETY: see above.
    unsafe impl aya::Pod for TestEnv {}
    // SAFETY: see above.
    unsafe impl aya::Pod for Cfg {}
    // SAFETY: see above.
    unsafe impl aya::Pod for DestCnt {}
    // SAFETY: see above.
    unsafe impl aya::Pod for Timeouts {}
    // SAFETY: see above.
    unsafe impl aya::Pod for TestFibKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for TestFib {}
    // SAFETY: see above.
    unsafe impl aya::Pod for VipKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for MarkAddr {}
    // SAFETY: see above.
    unsafe impl aya::Pod for MarkVal {}
    // SAFETY: see above.
    unsafe impl aya::Pod for LblcKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for LblcVal {}
}
