/* SPDX-License-Identifier: GPL-2.0-only */
/* Expiry of connection entries, in the kernel. The daemon reads the table in batches, picks the keys
 * that look due (timed out, or their real server gone) and hands them to rvs_xdp_expire, which decides
 * again at this moment with the same compare-and-swap as the packet path (lib/conn.h): an entry a
 * packet refreshed in between is kept, and one that a packet is replacing is left to it. So counters
 * stay exact however the daemon's reads and the packets interleave, which user-space deletes could not
 * promise (IPVS runs its expiry under the connection's lock for the same reason). */
#ifndef RVS_EXPIRE_H
#define RVS_EXPIRE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "rvs_abi.h"
#include "rvs_maps.h"
#include "lib/conn.h"
#include "lib/persist.h"

/* A claimed entry younger than this belongs to the packet that claimed it, which deletes or replaces
 * it in the same run; only one its claimer left behind (a lost race) is the expiry's. */
#define RVS_EXPIRE_CLAIM_GRACE_NS	1000000000ULL

/* Whether NAT reply entry @rkey (@rep) still leads to its connection: the service under its id, and
 * the client-side entry from the reply's client to the virtual address and port @rep names, naming
 * the same real server. The same steps as rvs_xdp_reply. A claimed (DEAD) client-side entry counts as live: its claimer may be replacing
 * the connection to the same real server this very moment, and has then already written the new
 * reply entry under this key (rvs_conn_create inserts it first); the next run deletes the reply entry
 * once the client-side entry is gone.
 * Mirror: rvs-model/src/expire.rs */
static __always_inline int
rvs_expire_reply_live(const struct rvs_conn_key *rkey, const struct rvs_conn_rep *rep)
{
	struct rvs_conn_key key;
	struct rvs_conn_val *conn;
	struct rvs_svc_key *vs;
	struct rvs_svc_val *svc;
	__u32 svc_id = rep->svc_id;

	vs = bpf_map_lookup_elem(&rvs_svc_addr, &svc_id);
	if (!vs)
		return 0;
	svc = bpf_map_lookup_elem(&rvs_svc, vs);
	if (!svc || svc->id != svc_id)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memcpy(key.saddr, rkey->daddr, sizeof(key.saddr));
	__builtin_memcpy(key.daddr, rep->vaddr, sizeof(key.daddr));
	key.sport = rkey->dport;
	key.dport = rep->vport;
	key.proto = rkey->proto;
	key.family = rkey->family;
	conn = bpf_map_lookup_elem(&rvs_conn, &key);
	return conn && !(conn->flags & RVS_CONN_F_REPLY) && conn->dest_id == rep->dest_id;
}

/* Whether @conn's real server is still the one it was scheduled to (IPVS expires a connection whose
 * destination is gone when expire_nodest_conn is set, which rvs keeps on).
 * Mirror: rvs-model/src/expire.rs */
static __always_inline int
rvs_expire_dest_live(const struct rvs_conn_val *conn)
{
	__u32 id = conn->dest_id;
	struct rvs_dest_val *dest = bpf_map_lookup_elem(&rvs_dest, &id);

	return dest && (dest->flags & RVS_DEST_F_VALID) && dest->svc_id == conn->svc_id &&
	       dest->dgen == conn->dest_gen;
}

/* Whether template @t (word @w) is still in force at @now_ns: its service still there under its id,
 * its real server too, and it controls connections or is within the service's persistence timeout.
 * Mirror: rvs-model/src/expire.rs */
static __always_inline int
rvs_expire_template_live(const struct rvs_conn_val *t, __u32 w, __u64 now_ns)
{
	struct rvs_svc_key *vs;
	struct rvs_svc_val *svc;
	__u32 svc_id = t->svc_id;

	vs = bpf_map_lookup_elem(&rvs_svc_addr, &svc_id);
	if (!vs)
		return 0;
	svc = bpf_map_lookup_elem(&rvs_svc, vs);
	if (!svc || svc->id != svc_id)
		return 0;
	return rvs_persist_live(t, w, svc, now_ns) && rvs_expire_dest_live(t);
}

/* Deletes the entry of @key if it is due at @now_ns: a reply entry whose connection is gone; a
 * connection that timed out or lost its real server, or a template out of force (claimed first, which
 * counts it out); a claimed entry its claimer left behind. Returns 1 if it deleted the entry.
 * Mirror: rvs-model/src/expire.rs */
static __always_inline int
rvs_expire_one(const struct rvs_conn_key *key, __u64 now_ns)
{
	struct rvs_conn_val *conn = bpf_map_lookup_elem(&rvs_conn, key);
	__u32 w;

	if (!conn)
		return 0;
	if (conn->flags & RVS_CONN_F_REPLY) {
		if (rvs_expire_reply_live(key, (const struct rvs_conn_rep *)conn))
			return 0;
	} else if (conn->flags & RVS_CONN_F_TEMPLATE) {
		w = rvs_conn_word_read(conn);
		if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD) {
			if (now_ns < conn->last_ns + RVS_EXPIRE_CLAIM_GRACE_NS)
				return 0;
		} else {
			if (rvs_expire_template_live(conn, w, now_ns))
				return 0;
			if (!rvs_conn_claim(key, conn, w, now_ns))
				return 0;
		}
	} else {
		w = rvs_conn_word_read(conn);
		if (RVS_CONN_W_CFLAGS(w) & RVS_CONN_C_DEAD) {
			if (now_ns < conn->last_ns + RVS_EXPIRE_CLAIM_GRACE_NS)
				return 0;
		} else {
			if (!rvs_conn_expired(RVS_CONN_W_STATE(w), conn->last_ns, now_ns) &&
			    rvs_expire_dest_live(conn))
				return 0;
			if (!rvs_conn_claim(key, conn, w, now_ns))
				return 0;
		}
	}
	return bpf_map_delete_elem(&rvs_conn, key) == 0;
}

#endif /* RVS_EXPIRE_H */
