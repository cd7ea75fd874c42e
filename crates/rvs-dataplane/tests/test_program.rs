//! The director under BPF_PROG_TEST_RUN: verdicts, output frames and map changes for hand-picked
//! packets. Needs root.

mod common;

use common::*;
use rvs_abi::{CONN_F_INPUT_ONLY, DropReason, TcpState, TestEnv};
use rvs_dataplane::TestProgram;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

fn env(now_ns: u64) -> TestEnv {
    TestEnv {
        now_ns,
        prandom: 0,
        cpu: 0,
    }
}

fn load() -> TestProgram {
    require_root();
    pin_cpu0();
    TestProgram::load(1024).expect("load the director with test hooks")
}

fn drop_count(p: &TestProgram, reason: DropReason) -> u64 {
    p.drops_cpu(0)
        .unwrap()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .unwrap()
        .1
}

#[test]
fn verifier_accepts_the_program_with_and_without_test_hooks() {
    require_root();
    TestProgram::load(1024).expect("rvs_test_hooks = 1");
    TestProgram::load_unhooked(1024).expect("rvs_test_hooks = 0");
}

#[test]
fn syn_to_a_dr_service_is_sent_back_out_with_the_real_servers_mac() {
    let mut p = load();
    p.apply(&one_service(TCP, 1, &[0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    let frame = tcp_frame(40000, VIP, VPORT, SYN, b"");
    let (action, out) = p.run(&env(1_000), &frame).unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!(out.len(), frame.len());
    assert_eq!(out[0..6], rs_mac(0), "destination MAC");
    assert_eq!(out[6..12], DIRECTOR_MAC, "source MAC");
    assert_eq!(out[12..], frame[12..], "the IP packet is unchanged");

    let conns = p.conns().unwrap();
    assert_eq!(conns.len(), 1);
    let (k, v) = conns[0];
    assert_eq!(rvs_abi::addr_bytes(&k.saddr)[..4], CLIENT);
    assert_eq!(k.sport.get(), 40000);
    assert_eq!(k.dport.get(), VPORT);
    assert_eq!(
        (v.dest_id, v.svc_id, v.created_ns, v.last_ns),
        (0, 0, 1_000, 1_000)
    );
    assert_eq!(v.state, TcpState::SynRecv as u8);
    assert_eq!(v.flags, CONN_F_INPUT_ONLY);

    let ip_len = (frame.len() - 14) as u64;
    let s = p.svc_stats_cpu(0, 0).unwrap();
    assert_eq!((s.conns, s.inpkts, s.inbytes), (1, 1, ip_len));
    let d = p.dest_stats_cpu(0, 0).unwrap();
    assert_eq!((d.conns, d.inpkts, d.inbytes), (1, 1, ip_len));
    assert_eq!(p.svc_st(0).unwrap().pos, 1);
}

#[test]
fn an_ack_after_the_syn_establishes_the_connection_on_the_same_server() {
    let mut p = load();
    p.apply(&one_service(TCP, 3, &[2, 1, 0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    p.run(&env(1_000), &tcp_frame(40001, VIP, VPORT, SYN, b""))
        .unwrap();
    let (action, out) = p
        .run(&env(2_000), &tcp_frame(40001, VIP, VPORT, ACK, b"hello"))
        .unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!(out[0..6], rs_mac(2));
    let (_, v) = p.conns().unwrap()[0];
    assert_eq!((v.dest_id, v.created_ns, v.last_ns), (2, 1_000, 2_000));
    assert_eq!(v.state, TcpState::Established as u8);
    let s = p.svc_stats_cpu(0, 0).unwrap();
    assert_eq!((s.conns, s.inpkts), (1, 2));
    assert_eq!(
        p.svc_st(0).unwrap().pos,
        1,
        "an established packet does not advance the scheduler"
    );
}

#[test]
fn new_connections_follow_the_table_in_order() {
    let mut p = load();
    p.apply(&one_service(TCP, 3, &[2, 1, 0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    let picks: Vec<u8> = (0..6)
        .map(|i| {
            let (action, out) = p
                .run(&env(1), &tcp_frame(41000 + i, VIP, VPORT, SYN, b""))
                .unwrap();
            assert_eq!(action, XDP_TX);
            out[5]
        })
        .collect();
    assert_eq!(picks, [2, 1, 0, 2, 1, 0]);
}

#[test]
fn udp_datagrams_are_scheduled_without_a_handshake() {
    let mut p = load();
    p.apply(&one_service(UDP, 1, &[0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    let (action, out) = p.run(&env(5), &udp_frame(5353, VIP, VPORT, b"q")).unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!(out[0..6], rs_mac(0));
    let (_, v) = p.conns().unwrap()[0];
    assert_eq!(v.state, TcpState::UdpNormal as u8);
}

#[test]
fn a_dest_on_another_interface_is_redirected() {
    let mut p = load();
    p.apply(&one_service(TCP, 1, &[0], 7)).unwrap();
    let (action, out) = p.run(&env(1), &tcp_frame(40002, VIP, VPORT, SYN, b"")).unwrap();
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(out[0..6], rs_mac(0));
}

#[test]
fn a_packet_to_no_service_passes_unchanged() {
    let mut p = load();
    p.apply(&one_service(TCP, 1, &[0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    for frame in [
        tcp_frame(40003, [198, 18, 0, 99], VPORT, SYN, b""),
        tcp_frame(40003, VIP, 81, SYN, b""),
        udp_frame(40003, VIP, VPORT, b""),
    ] {
        let (action, out) = p.run(&env(1), &frame).unwrap();
        assert_eq!(action, XDP_PASS);
        assert_eq!(out, frame);
    }
    assert!(p.conns().unwrap().is_empty());
}

#[test]
fn malformed_and_unexpected_packets_are_dropped_under_their_reason() {
    let mut p = load();
    p.apply(&one_service(TCP, 1, &[0], TestProgram::INGRESS_IFINDEX))
        .unwrap();
    let good = tcp_frame(40004, VIP, VPORT, SYN, b"");

    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44; // version 4, IHL 4
    let mut too_long = good.clone();
    too_long[16..18].copy_from_slice(&200u16.to_be_bytes()); // total length beyond the frame
    let mut short_tcp = good[..14 + 20 + 10].to_vec();
    short_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    let cases = [
        (bad_ihl, DropReason::Ipv4Bad),
        (too_long, DropReason::Ipv4Bad),
        (good[..14 + 12].to_vec(), DropReason::Ipv4Short),
        (short_tcp, DropReason::L4Short),
        (tcp_frame(40005, VIP, VPORT, ACK, b""), DropReason::NotSyn),
    ];
    for (frame, reason) in cases {
        let before = drop_count(&p, reason);
        let (action, _) = p.run(&env(1), &frame).unwrap();
        assert_eq!(action, XDP_DROP, "{reason:?}");
        assert_eq!(drop_count(&p, reason), before + 1, "{reason:?}");
    }
    assert!(p.conns().unwrap().is_empty());
}

#[test]
fn a_real_server_without_a_resolved_mac_drops_no_neigh() {
    let mut p = load();
    let mut ops = one_service(TCP, 1, &[0], TestProgram::INGRESS_IFINDEX);
    if let rvs_abi::MapOp::DestSet { val, .. } = &mut ops[0] {
        val.flags = rvs_abi::DEST_F_VALID;
    }
    p.apply(&ops).unwrap();
    let (action, _) = p.run(&env(1), &tcp_frame(40006, VIP, VPORT, SYN, b"")).unwrap();
    assert_eq!(action, XDP_DROP);
    assert_eq!(drop_count(&p, DropReason::NoNeigh), 1);
}

/// A NAT service VIP:VPORT -> 198.18.1.9:8080 (dest 0), NAT switched on.
fn nat_service(proto: u8) -> Vec<rvs_abi::MapOp> {
    let mut ops = one_service(proto, 1, &[0], 0);
    if let rvs_abi::MapOp::DestSet { val, .. } = &mut ops[0] {
        *val = rvs_abi::DestVal {
            addr: rvs_abi::addr_v4([198, 18, 1, 9]),
            port: rvs_abi::Be16::new(8080),
            fwd: rvs_abi::Fwd::Nat as u8,
            dmac: [0; 6],
            smac: [0; 6],
            ifindex: 0,
            flags: rvs_abi::DEST_F_VALID,
            ..*val
        };
    }
    ops.insert(
        0,
        rvs_abi::MapOp::CfgSet {
            val: rvs_abi::Cfg {
                flags: rvs_abi::CFG_F_NAT,
                lblcr_exp_s: 0,
            },
        },
    );
    ops
}

#[test]
fn nat_rewrites_by_the_test_routes_and_replies_find_their_connection() {
    let mut p = load();
    p.apply(&nat_service(TCP)).unwrap();
    assert_eq!(p.cfg().unwrap().flags, rvs_abi::CFG_F_NAT);
    let route = |ret| {
        (
            rvs_abi::TestFibKey::v4([198, 18, 1, 9]),
            rvs_abi::TestFib {
                ret,
                ifindex: TestProgram::INGRESS_IFINDEX,
                smac: DIRECTOR_MAC,
                dmac: rs_mac(9),
            },
        )
    };
    let client_route = (
        rvs_abi::TestFibKey::v4(CLIENT),
        rvs_abi::TestFib {
            ret: rvs_abi::fib_ret::SUCCESS,
            ifindex: TestProgram::INGRESS_IFINDEX,
            smac: DIRECTOR_MAC,
            dmac: CLIENT_MAC,
        },
    );
    let no_neigh = [route(rvs_abi::fib_ret::NO_NEIGH)];
    p.set_test_fib(no_neigh.iter().map(|(k, v)| (k, v))).unwrap();
    let syn = tcp_frame(40000, VIP, VPORT, SYN, b"");
    let (action, out) = p.run(&env(1), &syn).unwrap();
    assert_eq!(
        action, XDP_PASS,
        "no neighbour yet: the kernel forwards and resolves it"
    );
    assert_eq!(out[30..34], [198, 18, 1, 9], "already rewritten");
    assert_eq!(out[22], 64, "TTL left to the kernel");

    let ok = [route(rvs_abi::fib_ret::SUCCESS), client_route];
    p.set_test_fib(ok.iter().map(|(k, v)| (k, v))).unwrap();
    let (action, out) = p.run(&env(2), &syn).unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!((out[0..6].to_vec(), out[22]), (rs_mac(9).to_vec(), 63));
    assert_eq!(out[36..38], 8080u16.to_be_bytes());

    // The connection and its reply entry; conns() shows only the connection.
    assert_eq!(p.conn_entries().unwrap().len(), 2);
    let conns = p.conns().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].1.flags, 0);

    // The real's SYN+ACK goes back from VIP:VPORT.
    let reply = etherparse::PacketBuilder::ethernet2(rs_mac(9), DIRECTOR_MAC)
        .ipv4([198, 18, 1, 9], CLIENT, 64)
        .tcp(8080, 40000, 5, 64240)
        .syn()
        .ack(1001);
    let mut frame = Vec::new();
    reply.write(&mut frame, &[]).unwrap();
    let (action, out) = p.run(&env(3), &frame).unwrap();
    assert_eq!(action, XDP_TX);
    assert_eq!(out[0..6], CLIENT_MAC);
    assert_eq!(out[26..30], VIP, "source is the virtual address again");
    assert_eq!(out[34..36], VPORT.to_be_bytes());
    let s = p.svc_stats_cpu(0, 0).unwrap();
    assert_eq!((s.inpkts, s.outpkts), (2, 1));

    // Deleting the connection (the daemon's expiry sweep) takes its reply entry with it.
    p.delete_conn(&conns[0].0).unwrap();
    assert!(p.conn_entries().unwrap().is_empty());
    let (action, out) = p.run(&env(4), &frame).unwrap();
    assert_eq!(
        (action, out),
        (XDP_PASS, frame),
        "no connection: the reply passes untouched"
    );
}

#[test]
fn redirect_targets_must_exist_and_are_listed() {
    let mut p = load();
    p.set_tx_port(TestProgram::INGRESS_IFINDEX).expect("lo exists");
    assert_eq!(p.tx_ports().unwrap(), [TestProgram::INGRESS_IFINDEX]);
    assert!(p.set_tx_port(999_999).is_err(), "no such interface");
}
