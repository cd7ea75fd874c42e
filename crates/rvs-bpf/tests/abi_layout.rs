//! The ABI shared by C and Rust, checked against the compiled object (Cilium's alignchecker, in
//! Rust): every struct of bpf/include/rvs_abi.h has the size and field offsets of its Rust mirror in
//! rvs-abi, every enum the same values, and every map the key, value and size rvs-abi expects.
//!
//! The BTF comes from the `.BTF` section of `RVS_XDP_OBJ` and is decoded here: aya-obj 0.3 keeps
//! its BTF accessors private, and the format is small (kernel Documentation/bpf/btf.rst).

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use object::{Object, ObjectSection};
use rvs_abi::*;

/// A struct or enum as BTF describes it.
#[derive(Debug)]
enum Ty {
    Struct { size: u32, members: Vec<(String, u32)> }, // (name, byte offset)
    Enum { values: Vec<(String, i64)> },
}

/// Named structs and enums of a BTF blob, by name.
fn parse_btf(btf: &[u8]) -> HashMap<String, Ty> {
    let u16_at = |o: usize| u16::from_le_bytes(btf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(btf[o..o + 4].try_into().unwrap());
    assert_eq!(u16_at(0), 0xeb9f, "BTF magic (little-endian object)");
    let hdr_len = u32_at(4) as usize;
    let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
    let str_off = u32_at(16) as usize;
    let types = hdr_len + type_off;
    let strs = hdr_len + str_off;
    let name = |off: u32| -> String {
        let s = &btf[strs + off as usize..];
        String::from_utf8(s[..s.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
    };
    let mut out = HashMap::new();
    let mut p = types;
    while p < types + type_len {
        let (name_off, info, size) = (u32_at(p), u32_at(p + 4), u32_at(p + 8));
        let (vlen, kind, kind_flag) = ((info & 0xffff) as usize, (info >> 24) & 0x1f, info >> 31);
        p += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,
            k => panic!("unknown BTF kind {k}"),
        };
        let tname = name(name_off);
        if kind == 4 && !tname.is_empty() {
            let members = (0..vlen)
                .map(|i| {
                    let m = p + 12 * i;
                    let bits = u32_at(m + 8);
                    // With kind_flag the top 8 bits hold a bitfield size; the ABI has no bitfields.
                    let bits = if kind_flag == 1 { bits & 0xff_ffff } else { bits };
                    assert_eq!(bits % 8, 0, "{tname}: member not byte aligned");
                    (name(u32_at(m)), bits / 8)
                })
                .collect();
            out.insert(tname, Ty::Struct { size, members });
        } else if kind == 6 && !tname.is_empty() {
            let values = (0..vlen)
                .map(|i| (name(u32_at(p + 8 * i)), i64::from(u32_at(p + 8 * i + 4) as i32)))
                .collect();
            out.insert(tname, Ty::Enum { values });
        }
        p += extra;
    }
    out
}

fn btf_types() -> HashMap<String, Ty> {
    let file = object::File::parse(rvs_bpf::RVS_XDP_OBJ).expect("parse rvs_xdp.o");
    let section = file
        .section_by_name(".BTF")
        .expect("rvs_xdp.o has .BTF (built with -g)");
    parse_btf(section.data().expect(".BTF data"))
}

/// Asserts that C struct `$c` and Rust `$rust` have the same size and the same fields at the same
/// offsets, all of them on both sides.
macro_rules! assert_layout {
    ($types:expr, $c:literal => $rust:ty { $($f:ident),+ $(,)? }) => {{
        let Some(Ty::Struct { size, members }) = $types.get($c) else {
            panic!("struct {} missing from the BTF of rvs_xdp.o", $c)
        };
        assert_eq!(*size as usize, size_of::<$rust>(), "sizeof(struct {})", $c);
        let rust: Vec<(&str, usize)> = vec![$((stringify!($f), offset_of!($rust, $f))),+];
        let c: Vec<(&str, usize)> = members.iter().map(|(n, o)| (n.as_str(), *o as usize)).collect();
        assert_eq!(c, rust, "fields and offsets of struct {} (C) vs {} (Rust)", $c, stringify!($rust));
    }};
}

#[test]
fn every_abi_struct_has_the_layout_of_its_rust_mirror() {
    let t = btf_types();
    assert_layout!(t, "rvs_svc_key" => SvcKey { addr, port, proto, family });
    assert_layout!(t, "rvs_svc_val" => SvcVal { id, flags, sched, sched_base, sched_len, persist_s, plen, _pad });
    assert_layout!(t, "rvs_dest_val" => DestVal {
        addr, port, family, fwd, dmac, smac, ifindex, weight, svc_id, flags, laddr, mtu, dgen, u_thresh,
        l_thresh
    });
    assert_layout!(t, "rvs_dest_cnt" => DestCnt { active, inactive, persist, flags });
    assert_layout!(t, "rvs_timeouts" => Timeouts { s });
    assert_layout!(t, "rvs_expire_hdr" => ExpireHdr { nkeys, deleted });
    assert_layout!(t, "rvs_svc_state" => SvcState { pos });
    assert_layout!(t, "rvs_conn_key" => ConnKey { saddr, daddr, sport, dport, proto, family, _pad });
    assert_layout!(t, "rvs_conn_val" => ConnVal {
        dest_id, svc_id, created_ns, last_ns, state, flags, cflags, tag, dest_gen, nctl, ctag
    });
    assert_layout!(t, "rvs_conn_rep" => ConnRep {
        dest_id, svc_id, vaddr, state, flags, cflags, tag, dest_gen, _pad, vport, _pad2
    });
    assert_layout!(t, "rvs_stats" => Stats { conns, inpkts, outpkts, inbytes, outbytes });
    assert_layout!(t, "rvs_test_env" => TestEnv { now_ns, prandom, cpu });
    assert_layout!(t, "rvs_cfg" => Cfg { flags, lblcr_exp_s });
    assert_layout!(t, "rvs_test_fib_key" => TestFibKey { addr, family, _pad });
    assert_layout!(t, "rvs_test_fib" => TestFib { ret, ifindex, smac, dmac });
    assert_layout!(t, "rvs_vip_key" => VipKey { addr, family, _pad });
    assert_layout!(t, "rvs_mark_addr" => MarkAddr { family, proto, _pad, addr });
    assert_layout!(t, "rvs_mark_key" => MarkKey { prefixlen, data });
    assert_layout!(t, "rvs_mark_range" => MarkRange { lo, hi, mark });
    assert_layout!(t, "rvs_mark_val" => MarkVal { n, _pad, ranges });
    assert_layout!(t, "rvs_lblc_key" => LblcKey { addr, svc_id, family, _pad });
    assert_layout!(t, "rvs_lblc_dest" => LblcDest { id, dgen });
    assert_layout!(t, "rvs_lblc_val" => LblcVal { lastuse_ns, lastmod_ns, n, _pad, dest });
}

/// `fib_ret` holds the kernel's `BPF_FIB_LKUP_RET_*`, which the C takes from <linux/bpf.h>: the same
/// header, read here, in its order (an anonymous enum counting from 0).
#[test]
fn fib_ret_values_are_the_kernel_headers() {
    let h = std::fs::read_to_string("/usr/include/linux/bpf.h").expect("linux/bpf.h (linux-libc-dev)");
    let start = h
        .find("BPF_FIB_LKUP_RET_SUCCESS,")
        .expect("BPF_FIB_LKUP_RET_SUCCESS in linux/bpf.h");
    let names: Vec<&str> = h[start..]
        .lines()
        .map_while(|l| l.trim().strip_prefix("BPF_FIB_LKUP_RET_"))
        .map(|l| l.split(',').next().unwrap().trim())
        .collect();
    let ours = [
        ("SUCCESS", fib_ret::SUCCESS),
        ("BLACKHOLE", fib_ret::BLACKHOLE),
        ("UNREACHABLE", fib_ret::UNREACHABLE),
        ("PROHIBIT", fib_ret::PROHIBIT),
        ("NOT_FWDED", fib_ret::NOT_FWDED),
        ("FWD_DISABLED", fib_ret::FWD_DISABLED),
        ("UNSUPP_LWT", fib_ret::UNSUPP_LWT),
        ("NO_NEIGH", fib_ret::NO_NEIGH),
        ("FRAG_NEEDED", fib_ret::FRAG_NEEDED),
        ("NO_SRC_ADDR", fib_ret::NO_SRC_ADDR),
    ];
    for (name, value) in ours {
        assert_eq!(
            names.iter().position(|n| *n == name).map(|i| i as u32),
            Some(value),
            "BPF_FIB_LKUP_RET_{name} in {names:?}"
        );
    }
}

/// Asserts that C enum `c` has exactly the enumerators `expected` (name, value).
fn assert_enum(types: &HashMap<String, Ty>, c: &str, expected: &[(&str, i64)]) {
    let Some(Ty::Enum { values }) = types.get(c) else {
        panic!("enum {c} missing from the BTF of rvs_xdp.o")
    };
    let got: Vec<(&str, i64)> = values.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(got, expected, "enum {c} (C) vs its Rust mirror");
}

#[test]
fn every_abi_enum_has_the_values_of_its_rust_mirror() {
    let t = btf_types();
    assert_enum(
        &t,
        "rvs_family",
        &[
            ("RVS_AF_INET", Family::Inet as i64),
            ("RVS_AF_INET6", Family::Inet6 as i64),
        ],
    );
    assert_enum(
        &t,
        "rvs_fwd",
        &[
            ("RVS_FWD_DR", Fwd::Dr as i64),
            ("RVS_FWD_NAT", Fwd::Nat as i64),
            ("RVS_FWD_TUN", Fwd::Tun as i64),
        ],
    );
    assert_enum(
        &t,
        "rvs_sched",
        &[
            ("RVS_SCHED_RR", Sched::Rr as i64),
            ("RVS_SCHED_WRR", Sched::Wrr as i64),
            ("RVS_SCHED_SH", Sched::Sh as i64),
            ("RVS_SCHED_DH", Sched::Dh as i64),
            ("RVS_SCHED_MH", Sched::Mh as i64),
            ("RVS_SCHED_LC", Sched::Lc as i64),
            ("RVS_SCHED_WLC", Sched::Wlc as i64),
            ("RVS_SCHED_SED", Sched::Sed as i64),
            ("RVS_SCHED_NQ", Sched::Nq as i64),
            ("RVS_SCHED_FO", Sched::Fo as i64),
            ("RVS_SCHED_OVF", Sched::Ovf as i64),
            ("RVS_SCHED_TWOS", Sched::Twos as i64),
            ("RVS_SCHED_LBLC", Sched::Lblc as i64),
            ("RVS_SCHED_LBLCR", Sched::Lblcr as i64),
        ],
    );
    let states = [
        ("RVS_TCP_S_NONE", TcpState::None),
        ("RVS_TCP_S_ESTABLISHED", TcpState::Established),
        ("RVS_TCP_S_SYN_SENT", TcpState::SynSent),
        ("RVS_TCP_S_SYN_RECV", TcpState::SynRecv),
        ("RVS_TCP_S_FIN_WAIT", TcpState::FinWait),
        ("RVS_TCP_S_TIME_WAIT", TcpState::TimeWait),
        ("RVS_TCP_S_CLOSE", TcpState::Close),
        ("RVS_TCP_S_CLOSE_WAIT", TcpState::CloseWait),
        ("RVS_TCP_S_LAST_ACK", TcpState::LastAck),
        ("RVS_TCP_S_LISTEN", TcpState::Listen),
        ("RVS_TCP_S_SYNACK", TcpState::SynAck),
        ("RVS_TCP_S_LAST", TcpState::Last),
        ("RVS_UDP_S_NORMAL", TcpState::UdpNormal),
    ];
    let states: Vec<(&str, i64)> = states.iter().map(|(n, s)| (*n, *s as i64)).collect();
    assert_enum(&t, "rvs_tcp_state", &states);
    for (_, v) in &states {
        assert_eq!(
            TcpState::from_u8(*v as u8).map(|s| s as i64),
            Some(*v),
            "TcpState::from_u8 round trip"
        );
    }
    // enum rvs_drop: NONE, then DropReason::ALL in order, then __MAX; names are the upper-case name().
    let names: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| format!("RVS_DROP_{}", r.name().to_uppercase()))
        .collect();
    let mut drops = vec![("RVS_DROP_NONE", 0)];
    drops.extend(
        names
            .iter()
            .zip(DropReason::ALL)
            .map(|(n, r)| (n.as_str(), r as i64)),
    );
    drops.push(("RVS_DROP__MAX", DropReason::ALL.len() as i64 + 1));
    assert_enum(&t, "rvs_drop", &drops);
}

#[test]
fn every_map_has_the_key_value_and_size_rvs_abi_expects() {
    let obj = aya_obj::Object::parse(rvs_bpf::RVS_XDP_OBJ).expect("aya-obj parses rvs_xdp.o");
    let expect: [(&str, u32, usize, usize, u32); 18] = [
        // (name, BPF_MAP_TYPE_*, key size, value size, max_entries)
        (map::SVC, 1, size_of::<SvcKey>(), size_of::<SvcVal>(), MAX_SVC),
        (map::SVC_ADDR, 2, 4, size_of::<SvcKey>(), MAX_SVC),
        (map::VIP, 1, size_of::<VipKey>(), 4, MAX_SVC),
        (map::DEST, 2, 4, size_of::<DestVal>(), MAX_DEST),
        (map::SCHED, 2, 4, 4, SCHED_SLOTS),
        (map::SVC_ST, 2, 4, size_of::<SvcState>(), MAX_SVC),
        (
            map::CONN,
            1,
            size_of::<ConnKey>(),
            size_of::<ConnVal>(),
            CONN_DEFAULT,
        ),
        (map::SVC_STATS, 6, 4, size_of::<Stats>(), MAX_SVC),
        (map::DEST_STATS, 6, 4, size_of::<Stats>(), MAX_DEST),
        (map::DROPS, 6, 4, 8, DropReason::ALL.len() as u32 + 1),
        (map::CFG, 2, 4, size_of::<Cfg>(), 1),
        (map::DEST_CNT, 2, 4, size_of::<DestCnt>(), MAX_DEST),
        (map::TIMEOUTS, 2, 4, size_of::<Timeouts>(), 1),
        // DEVMAP_HASH of struct bpf_devmap_val (ifindex, program fd/id)
        (map::TX_PORTS, 25, 4, 8, MAX_TX_PORTS),
        (
            map::TEST_FIB,
            1,
            size_of::<TestFibKey>(),
            size_of::<TestFib>(),
            TEST_FIB_MAX,
        ),
        (map::TEST_ENV, 2, 4, size_of::<TestEnv>(), 1),
        // LPM_TRIE
        (
            map::MARK,
            11,
            size_of::<MarkKey>(),
            size_of::<MarkVal>(),
            MAX_MARK_PREFIXES,
        ),
        (map::LBLC, 1, size_of::<LblcKey>(), size_of::<LblcVal>(), LBLC_MAX),
    ];
    for (name, ty, key, value, max) in expect {
        assert!(name.len() <= 15, "map name {name} longer than the kernel keeps");
        let m = obj
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("map {name} missing from rvs_xdp.o"));
        assert_eq!(
            (
                m.map_type(),
                m.key_size() as usize,
                m.value_size() as usize,
                m.max_entries()
            ),
            (ty, key, value, max),
            "map {name}: (type, key size, value size, max_entries)"
        );
        assert_eq!(
            m.pinning(),
            aya_obj::maps::PinningType::ByName,
            "map {name} is pinned by name"
        );
    }
    let ours: usize = obj.maps.keys().filter(|k| !k.starts_with('.')).count();
    assert_eq!(
        ours,
        expect.len(),
        "maps in rvs_xdp.o: {:?}",
        obj.maps.keys().collect::<Vec<_>>()
    );
}
