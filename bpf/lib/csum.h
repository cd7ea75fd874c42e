/* SPDX-License-Identifier: GPL-2.0-only */
/* Incremental update of the Internet checksum for the header rewrites of NAT (RFC 1624 eqn. 3:
 * HC' = ~(~HC + ~m + m')): the IPv4 header checksum, and the TCP and UDP checksums, which cover a
 * pseudo-header holding both addresses (RFC 793 3.1, RFC 768, RFC 8200 8.1).
 *
 * Byte order: 16-bit words are summed as they are loaded, in network order. The one's-complement sum
 * is byte-order independent (RFC 1071 2.B): a sum of byte-swapped words is the byte-swapped sum, so a
 * checksum computed from raw words and stored raw is the right one. The model sums the same words
 * read big-endian and gets the same bytes.
 * Mirror: rvs-model/src/csum.rs */
#ifndef RVS_CSUM_H
#define RVS_CSUM_H

#include <linux/types.h>

#include "rvs_abi.h"

/* Folds a sum of 16-bit words into 16 bits and complements it. Two end-around carries bring any
 * 32-bit sum below 2^16.
 * Mirror: rvs-model/src/csum.rs */
static __always_inline __u16
rvs_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* *@check after one 16-bit word of the data it covers changed from @old to @new.
 * Mirror: rvs-model/src/csum.rs */
static __always_inline void
rvs_csum_replace2(__u16 *check, __u16 old, __u16 new)
{
	*check = rvs_csum_fold((__u32)(__u16)~*check + (__u16)~old + new);
}

/* *@check after an address of @family (IPv4: the word @old[0]; IPv6: four words) changed from @old to
 * @new. At most 17 words are summed, far below the 2^16 words that could overflow the 32-bit sum.
 * Mirror: rvs-model/src/csum.rs */
static __always_inline void
rvs_csum_replace_addr(__u16 *check, const __be32 *old, const __be32 *new, __u8 family)
{
	__u32 sum = (__u16)~*check;
	int n = family == RVS_AF_INET ? 1 : 4;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		if (i >= n)
			break;
		sum += (__u16)~(old[i] & 0xffff) + (__u16)~(old[i] >> 16);
		sum += (new[i] & 0xffff) + (new[i] >> 16);
	}
	*check = rvs_csum_fold(sum);
}

#endif /* RVS_CSUM_H */
