/* SPDX-License-Identifier: GPL-2.0-only */
/* The C side of the ABI shared with user space: map keys and values, enums, flags, sizes.
 * Rust mirror: crates/rvs-abi/src/lib.rs. Checked by crates/rvs-bpf/tests/abi_layout.rs against the
 * BTF of the compiled object, so neither side can drift unnoticed.
 *
 * Addresses and ports are network byte order (__be*); counters, ids and times are host order.
 * Every struct has explicit padding: keys are compared byte for byte, so both sides zero every byte. */
#ifndef RVS_ABI_H
#define RVS_ABI_H

#include <linux/types.h>

#include "rvs_compiler.h"

/* Capacities. The connection table's size is set by the daemon at load time (max_entries). */
#define RVS_MAX_SVC		4096	/* services: ids 0..RVS_MAX_SVC-1 */
#define RVS_MAX_DEST		65536	/* real servers over all services: ids 0..RVS_MAX_DEST-1 */
#define RVS_SCHED_SLOTS		1048576	/* rvs_sched slots shared by all services' tables */
#define RVS_CONN_DEFAULT	1048576	/* default max_entries of rvs_conn */
#define RVS_MAX_TX_PORTS	256	/* interfaces XDP_REDIRECT can reach (rvs_tx_ports) */
#define RVS_TEST_FIB_MAX	64	/* routes a test can give rvs_fib_lookup (rvs_test_fib) */
#define RVS_MAX_MARK_PREFIXES	1024	/* rvs_mark entries: (family, protocol, address prefix) */
#define RVS_MARK_RANGES		16	/* port ranges in one rvs_mark entry */
#define RVS_LBLC_MAX		131072	/* rvs_lblc entries over all lblc/lblcr services */
#define RVS_LBLCR_SET_MAX	8	/* real servers in one lblcr set */

/* rvs_svc_key.proto of a firewall-mark service (-f MARK): no packet has it (the parser passes only TCP
 * and UDP on), addr[0] holds the mark in host order, the rest of addr and port are zero, and family is
 * the service's (-6 or not). */
#define RVS_SVC_PROTO_FWMARK	0

enum rvs_family {
	RVS_AF_INET	= 1,
	RVS_AF_INET6	= 2,
};

/* Forwarding method of a real server (ipvsadm -g / -m / -i). */
enum rvs_fwd {
	RVS_FWD_DR	= 0,	/* "Route": rewrite MACs only */
	RVS_FWD_NAT	= 1,	/* "Masq" */
	RVS_FWD_TUN	= 2,	/* "Tunnel" */
};

/* Scheduler executed by the data plane. Table-driven schedulers read rvs_sched. */
enum rvs_sched {
	RVS_SCHED_RR	= 0,	/* cyclic table of available dests, in IPVS order */
	RVS_SCHED_WRR	= 1,	/* cyclic table: one IPVS wrr period, computed in Rust */
	RVS_SCHED_SH	= 2,	/* 256 buckets indexed by a hash of the source address (+ port) */
	RVS_SCHED_DH	= 3,	/* 256 buckets indexed by a hash of the destination address */
	RVS_SCHED_MH	= 4,	/* Maglev table indexed by hsiphash of the source address (+ port) */
	/* Count-driven schedulers: the table lists the service's real servers in IPVS's list order and
	 * the data plane scans it, reading rvs_dest_cnt (lib/sched.h). */
	RVS_SCHED_LC	= 5,	/* least connections: active*256 + inactive */
	RVS_SCHED_WLC	= 6,	/* weighted least connections (IPVS's default) */
	RVS_SCHED_SED	= 7,	/* shortest expected delay: (active + 1) / weight */
	RVS_SCHED_NQ	= 8,	/* never queue: an idle server first, else sed */
	RVS_SCHED_FO	= 9,	/* weighted failover: the highest weight */
	RVS_SCHED_OVF	= 10,	/* overflow: the heaviest whose active conns do not exceed its weight */
	RVS_SCHED_TWOS	= 11,	/* weighted random choice of two, the less loaded wins */
	/* Locality-based: rvs_lblc maps the packet's destination address to a real server (lblc) or a
	 * set of them (lblcr); a miss or an overloaded choice falls back to wlc over the table. */
	RVS_SCHED_LBLC	= 12,
	RVS_SCHED_LBLCR	= 13,
};

/* A hashed scheduler's slot whose bucket has no usable real server (IPVS returns no dest). */
#define RVS_SCHED_NO_DEST	0xFFFFFFFFU

/* TCP connection states, numbered as IPVS numbers them (include/net/ip_vs.h IP_VS_TCP_S_*). */
enum rvs_tcp_state {
	RVS_TCP_S_NONE		= 0,
	RVS_TCP_S_ESTABLISHED	= 1,
	RVS_TCP_S_SYN_SENT	= 2,
	RVS_TCP_S_SYN_RECV	= 3,
	RVS_TCP_S_FIN_WAIT	= 4,
	RVS_TCP_S_TIME_WAIT	= 5,
	RVS_TCP_S_CLOSE		= 6,
	RVS_TCP_S_CLOSE_WAIT	= 7,
	RVS_TCP_S_LAST_ACK	= 8,
	RVS_TCP_S_LISTEN	= 9,
	RVS_TCP_S_SYNACK	= 10,
	RVS_TCP_S_LAST		= 11,
	RVS_UDP_S_NORMAL	= 12,	/* UDP "state"; IPVS names it UDP */
};

/* Why a packet was dropped. Each has its own per-CPU counter in rvs_drops; no bare XDP_DROP. */
enum rvs_drop {
	RVS_DROP_NONE		= 0,	/* slot 0 unused: 0 means "not dropped" */
	RVS_DROP_ETH_SHORT	= 1,	/* frame shorter than its Ethernet (+VLAN) header */
	RVS_DROP_IPV4_SHORT	= 2,	/* IPv4 header truncated */
	RVS_DROP_IPV4_BAD	= 3,	/* version != 4, IHL < 5, or total length beyond the frame */
	RVS_DROP_L4_SHORT	= 4,	/* TCP or UDP header truncated */
	RVS_DROP_NO_DEST	= 5,	/* service exists, the scheduler found no usable real server */
	RVS_DROP_NO_NEIGH	= 6,	/* real server's MAC not resolved yet */
	RVS_DROP_NOT_SYN	= 7,	/* TCP packet that is not a SYN and matches no connection */
	RVS_DROP_CONN_FULL	= 8,	/* connection table refused the insert */
	RVS_DROP_FWD_UNSUPP	= 9,	/* forwarding method not implemented by this data plane */
	RVS_DROP_FRAGMENT	= 10,	/* non-first IPv4 fragment to a virtual service (no L4 ports) */
	RVS_DROP_IPV6_SHORT	= 11,	/* IPv6 fixed header truncated */
	RVS_DROP_IPV6_BAD	= 12,	/* version != 6, or payload length beyond the frame */
	RVS_DROP_FWD_DISABLED	= 13,	/* NAT: the kernel's FIB says forwarding is off on the ingress
					 * interface (sysctl net.ipv{4,6}.conf.IF.forwarding) */
	RVS_DROP_ENCAP_FAIL	= 14,	/* TUN: bpf_xdp_adjust_head refused room for the outer header */
	RVS_DROP_TOO_BIG	= 15,	/* TUN: too big for the tunnel and no ICMP error can say so */
	RVS_DROP_CONN_BUSY	= 16,	/* the packet's entry is being expired on another CPU this very
					 * moment (lib/conn.h); the sender's retransmission finds it gone */
	RVS_DROP_PORT_ZERO	= 17,	/* source port 0 toward a persistent service: that key is its
					 * client network's template's (lib/persist.h) */
	RVS_DROP__MAX		= 18,
};

/* rvs_svc_val.flags */
#define RVS_SVC_F_PERSISTENT	(1U << 0)
#define RVS_SVC_F_SCHED_PORT	(1U << 1)	/* sh-port/mh-port: hash the source port too */
#define RVS_SVC_F_SCHED_FALLBACK (1U << 2)	/* mh-fallback: rehash past an unusable slot */
#define RVS_SVC_F_ONEPACKET	(1U << 3)	/* -o: each UDP datagram scheduled on its own, no entry */

/* rvs_dest_val.flags */
#define RVS_DEST_F_VALID	(1U << 0)	/* slot holds a configured real server */
#define RVS_DEST_F_NEIGH	(1U << 1)	/* dmac/smac/ifindex resolved */
/* Bits 8-31 of rvs_dest_val.flags: the overload generation, which the daemon bumps when an edit
 * clears OVERLOAD (IPVS's __ip_vs_update_dest: -x set to 0 or raised). OVERLOAD is stored in
 * rvs_dest_cnt.flags with the generation it was set under and counts only while that is current, so
 * the edit clears it by writing rvs_dest alone: the counters beside it, which CPUs update with
 * atomics, are never written by the daemon. */
#define RVS_DEST_F_OGEN_SHIFT	8
#define RVS_DEST_F_OGEN_MASK	0xFFFFFF00U

/* rvs_dest_cnt.flags */
#define RVS_DEST_C_OVERLOAD	(1U << 0)	/* -x reached; cleared by IPVS's -y rules (lib/conn.h) */
/* Bits 8-31 of rvs_dest_cnt.flags: the overload generation (RVS_DEST_F_OGEN_MASK) OVERLOAD was set
 * under. */

/* rvs_conn_val.flags (fixed when the entry is created) */
#define RVS_CONN_F_INPUT_ONLY	(1U << 0)	/* DR/TUN: the director sees only the client's half */
#define RVS_CONN_F_REPLY	(1U << 1)	/* NAT reply entry: keyed by the real server's side (see
						 * lib/conn.h), never a connection of its own */
#define RVS_CONN_F_TEMPLATE	(1U << 2)	/* persistence template (lib/persist.h), never a connection */
#define RVS_CONN_F_CONTROLLED	(1U << 3)	/* scheduled through a template, whose nctl it holds */
#define RVS_CONN_F_INVALID	(1U << 4)	/* template invalidated by expire_quiescent_template, kept
						 * under ports 65535 until its timer ends (lib/persist.h) */

/* rvs_conn_val.cflags (change during the entry's life, only by compare-and-swap: lib/conn.h) */
#define RVS_CONN_C_ACTIVE	(1U << 0)	/* counted in its real server's active (else inactive) */
#define RVS_CONN_C_DEAD		(1U << 1)	/* claimed by whoever deletes or replaces it */

/* rvs_timeouts slots: one per rvs_tcp_state (RVS_UDP_S_NORMAL for UDP). */
#define RVS_TIMEOUT_SLOTS	16

/* Connection keys one run of rvs_xdp_expire examines (lib/expire.h). */
#define RVS_EXPIRE_BATCH	64

/* rvs_cfg.flags */
#define RVS_CFG_F_NAT		(1U << 0)	/* some real server is NAT: look up replies */
#define RVS_CFG_F_PORT0		(1U << 2)	/* some service has port 0: look it up after a miss */
#define RVS_CFG_F_QUIESCENT	(1U << 1)	/* expire_quiescent_template: a template whose real
						 * server has weight 0 is not used */

/* Key of rvs_svc: one virtual service. */
struct rvs_svc_key {
	__be32 addr[4];		/* IPv4 in addr[0], rest zero; or IPv6 */
	__be16 port;
	__u8 proto;		/* IPPROTO_TCP, IPPROTO_UDP */
	__u8 family;		/* enum rvs_family */
};
RVS_ABI_ASSERT_SIZE(struct rvs_svc_key, 20);

/* What an rvs_mark entry matches, after its prefix length: family and protocol always (the prefix
 * length counts their 32 bits), then the first bits of the address. */
struct rvs_mark_addr {
	__u8 family;		/* enum rvs_family */
	__u8 proto;		/* IPPROTO_TCP, IPPROTO_UDP */
	__u8 _pad[2];
	__be32 addr[4];		/* IPv4 in addr[0], rest zero; or IPv6 */
};
RVS_ABI_ASSERT_SIZE(struct rvs_mark_addr, 20);

/* Key of rvs_mark, an LPM trie: struct bpf_lpm_trie_key_hdr's prefixlen, then the data. */
struct rvs_mark_key {
	__u32 prefixlen;	/* 32 (family, proto, _pad) + the address prefix length */
	struct rvs_mark_addr data;
};
RVS_ABI_ASSERT_SIZE(struct rvs_mark_key, 24);

/* A destination port range (host order, inclusive) and the mark it gives. */
struct rvs_mark_range {
	__u16 lo;
	__u16 hi;
	__u32 mark;
};
RVS_ABI_ASSERT_SIZE(struct rvs_mark_range, 8);

/* Value of rvs_mark: the port ranges of a (family, protocol, prefix), most specific prefix first. The
 * encoder copies the ranges of every shorter prefix that covers this one after its own, so that the
 * longest-prefix match alone answers: the first range holding the port gives the mark. */
struct rvs_mark_val {
	__u32 n;		/* ranges in use, at most RVS_MARK_RANGES */
	__u32 _pad;
	struct rvs_mark_range ranges[RVS_MARK_RANGES];
};
RVS_ABI_ASSERT_SIZE(struct rvs_mark_val, 136);

/* Value of rvs_svc. sched_base/sched_len name this service's region of rvs_sched; the daemon writes a
 * new region before switching these fields, so a packet never sees a half-written table. */
struct rvs_svc_val {
	__u32 id;		/* index into rvs_svc_st and rvs_svc_stats */
	__u32 flags;		/* RVS_SVC_F_* */
	__u32 sched;		/* enum rvs_sched */
	__u32 sched_base;	/* first slot in rvs_sched */
	__u32 sched_len;	/* slots in the table; 0 = no usable real server */
	__u32 persist_s;	/* -p: seconds a template lives (RVS_SVC_F_PERSISTENT) */
	__u32 plen;		/* -M: prefix length of the client network a template covers */
	__u32 _pad;
};
RVS_ABI_ASSERT_SIZE(struct rvs_svc_val, 32);

/* Value of rvs_dest (an array indexed by dest id). */
struct rvs_dest_val {
	__be32 addr[4];		/* real server address */
	__be16 port;		/* real server port */
	__u8 family;		/* enum rvs_family */
	__u8 fwd;		/* enum rvs_fwd */
	__u8 dmac[6];		/* next hop's (the real server's) MAC */
	__u8 smac[6];		/* the director's MAC on ifindex */
	__u32 ifindex;		/* interface toward the real server */
	__u32 weight;
	__u32 svc_id;		/* owning service's id */
	__u32 flags;		/* RVS_DEST_F_* */
	__be32 laddr[4];	/* TUN: the director's address toward the real server (outer source) */
	__u32 mtu;		/* TUN: path MTU toward the real server; 0 = unknown, not checked */
	__u32 dgen;		/* generation of this dest id: a connection counts for its real server
				 * only while rvs_conn_val.dest_gen equals it (ids are reused) */
	__u32 u_thresh;		/* -x: upper connection threshold; 0 = none */
	__u32 l_thresh;		/* -y: lower connection threshold; 0 = none */
};
RVS_ABI_ASSERT_SIZE(struct rvs_dest_val, 80);

/* Value of rvs_dest_cnt (an array indexed by dest id): IPVS's activeconns, inactconns and
 * persistconns, and the overload flag, kept exact by the data plane with atomic operations (every
 * entry of rvs_conn counts once, in the class its cflags name). The daemon only zeroes a slot when it
 * gives the id to a new real server. */
struct rvs_dest_cnt {
	__u32 active;
	__u32 inactive;
	__u32 persist;
	__u32 flags;		/* RVS_DEST_C_* */
};
RVS_ABI_ASSERT_SIZE(struct rvs_dest_cnt, 16);

/* Value of rvs_timeouts[0]: seconds an entry lives after its last packet, by state (IPVS's
 * timeout_table; --set changes three of them). 0 = the entry never times out in the data plane. */
struct rvs_timeouts {
	__u32 s[RVS_TIMEOUT_SLOTS];
};
RVS_ABI_ASSERT_SIZE(struct rvs_timeouts, 64);

/* Header of rvs_xdp_expire's input frame, followed by up to RVS_EXPIRE_BATCH struct rvs_conn_key. */
struct rvs_expire_hdr {
	__u32 nkeys;		/* keys that follow */
	__u32 deleted;		/* out: entries deleted */
};
RVS_ABI_ASSERT_SIZE(struct rvs_expire_hdr, 8);

/* Per-service scheduler state (rvs_svc_st, an array indexed by service id). pos is advanced with an
 * atomic add so that every CPU draws from one sequence, as IPVS's single cursor does. */
struct rvs_svc_state {
	__u64 pos;
};
RVS_ABI_ASSERT_SIZE(struct rvs_svc_state, 8);

/* An IPv4 (in a[0], the rest zero) or IPv6 address, as a type of its own: how a BPF global function
 * takes a pointer to 16 bytes. */
struct rvs_addr {
	__be32 a[4];
};

/* Key of rvs_lblc: a service and a destination address (IPVS's lblc/lblcr tables are per service and
 * keyed by the packet's daddr: the VIP, or for a firewall-mark service every address it covers). */
struct rvs_lblc_key {
	__be32 addr[4];		/* the packet's destination address; IPv4 in addr[0], the rest zero */
	__u32 svc_id;
	__u8 family;		/* enum rvs_family */
	__u8 _pad[3];
};
RVS_ABI_ASSERT_SIZE(struct rvs_lblc_key, 24);

/* A real server named by an lblc/lblcr entry: its id and the generation the id had (a deleted real
 * server's id may be reused; the entry must not then name the newcomer). */
struct rvs_lblc_dest {
	__u32 id;
	__u32 dgen;
};
RVS_ABI_ASSERT_SIZE(struct rvs_lblc_dest, 8);

/* Value of rvs_lblc. lblc uses dest[0] only. lblcr's set is dest[0..n), the most recently added
 * first, as IPVS's list_add_rcu puts it at the head (its scans take the first of equals). */
struct rvs_lblc_val {
	__u64 lastuse_ns;	/* last scheduling that looked it up (the daemon's expiry reads it) */
	__u64 lastmod_ns;	/* lblcr: last change of the set */
	__u32 n;		/* members in dest[] */
	__u32 _pad;
	struct rvs_lblc_dest dest[RVS_LBLCR_SET_MAX];
};
RVS_ABI_ASSERT_SIZE(struct rvs_lblc_val, 88);

/* Key of rvs_conn: the client's side of a connection. */
struct rvs_conn_key {
	__be32 saddr[4];	/* client */
	__be32 daddr[4];	/* virtual address */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 _pad[2];
};
RVS_ABI_ASSERT_SIZE(struct rvs_conn_key, 40);

/* Value of rvs_conn. */
struct rvs_conn_val {
	__u32 dest_id;
	__u32 svc_id;
	__u64 created_ns;	/* rvs_now_ns() when scheduled */
	__u64 last_ns;		/* rvs_now_ns() of the last packet */
	/* state, flags, cflags and tag form one aligned 32-bit word that changes only by
	 * compare-and-swap (lib/conn.h rvs_conn_word). */
	__u8 state;		/* enum rvs_tcp_state */
	__u8 flags;		/* RVS_CONN_F_* */
	__u8 cflags;		/* RVS_CONN_C_* */
	__u8 tag;		/* (created_ns >> 20) & 0xff: a word compared against an entry that was
				 * freed and reused in between differs (ABA) */
	__u32 dest_gen;		/* rvs_dest_val.dgen of dest_id when scheduled */
	__u32 nctl;		/* template: connections it controls (lib/persist.h) */
	__u32 ctag;		/* controlled connection: (__u32)created_ns of its template */
};
RVS_ABI_ASSERT_SIZE(struct rvs_conn_val, 40);

/* A NAT reply entry's view of its rvs_conn_val (flags holds RVS_CONN_F_REPLY; lib/conn.h). A reply
 * entry has no times, template or control of its own, so those bytes hold what the reply is rewritten
 * to and what leads back to the client-side entry: the virtual address and port the client's packets
 * went to (the client-side key's daddr and dport). A service key cannot tell them: a port-0 service's
 * has port 0, a firewall-mark service's neither address nor port. dest_id, svc_id and the word stay
 * where rvs_conn_val has them. */
struct rvs_conn_rep {
	__u32 dest_id;
	__u32 svc_id;
	__be32 vaddr[4];	/* over created_ns and last_ns */
	__u8 state;
	__u8 flags;
	__u8 cflags;
	__u8 tag;
	__u32 dest_gen;
	__u32 _pad;		/* over nctl; 0 */
	__be16 vport;		/* over ctag */
	__u8 _pad2[2];
};
RVS_ABI_ASSERT_SIZE(struct rvs_conn_rep, 40);
_Static_assert(__builtin_offsetof(struct rvs_conn_rep, state) ==
	       __builtin_offsetof(struct rvs_conn_val, state), "rvs_conn_rep's word is rvs_conn_val's");

/* Per-CPU counters of a service or a real server (rvs_svc_stats, rvs_dest_stats). IPVS names. */
struct rvs_stats {
	__u64 conns;
	__u64 inpkts;
	__u64 outpkts;
	__u64 inbytes;
	__u64 outbytes;
};
RVS_ABI_ASSERT_SIZE(struct rvs_stats, 40);

/* The director's global switches (rvs_cfg[0]), written by the encoder like any configuration. */
struct rvs_cfg {
	__u32 flags;		/* RVS_CFG_F_* */
	__u32 lblcr_exp_s;	/* IPVS's lblcr_expiration: an lblcr set of more than one real server
				 * unchanged this long loses its most loaded member */
};
RVS_ABI_ASSERT_SIZE(struct rvs_cfg, 8);

/* Key of rvs_vip: an address some virtual service uses, of any port and protocol (value: 1). Written
 * by the encoder from the service table; the director answers echo requests to it (lib/icmp.h), even
 * when no interface of the director holds the address. */
struct rvs_vip_key {
	__be32 addr[4];		/* IPv4 in addr[0], rest zero; or IPv6 */
	__u8 family;		/* enum rvs_family */
	__u8 _pad[3];
};
RVS_ABI_ASSERT_SIZE(struct rvs_vip_key, 20);

/* Key of rvs_test_fib: the destination that lib/hooks.h's rvs_fib_lookup is asked about. */
struct rvs_test_fib_key {
	__be32 addr[4];		/* IPv4 in addr[0], rest zero; or IPv6 */
	__u8 family;		/* enum rvs_family */
	__u8 _pad[3];
};
RVS_ABI_ASSERT_SIZE(struct rvs_test_fib_key, 20);

/* Value of rvs_test_fib: what bpf_fib_lookup would answer in tests (a route table as an input). */
struct rvs_test_fib {
	__u32 ret;		/* BPF_FIB_LKUP_RET_* */
	__u32 ifindex;		/* egress interface (SUCCESS, NO_NEIGH) */
	__u8 smac[6];		/* egress interface's MAC (SUCCESS) */
	__u8 dmac[6];		/* next hop's MAC (SUCCESS) */
};
RVS_ABI_ASSERT_SIZE(struct rvs_test_fib, 20);

/* Inputs that the test loader pins (rvs_test_env[0]) when rvs_test_hooks is set; see lib/hooks.h. */
struct rvs_test_env {
	__u64 now_ns;
	__u32 prandom;
	__u32 cpu;
};
RVS_ABI_ASSERT_SIZE(struct rvs_test_env, 16);

#endif /* RVS_ABI_H */
