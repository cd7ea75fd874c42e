/* SPDX-License-Identifier: GPL-2.0-only */
/* What every stage of the packet path returns, as an int:
 *   RVS_OK (0)          go on to the next stage;
 *   XDP_PASS/TX/REDIRECT (> 0)  stop here and return this action;
 *   -RVS_DROP_* (< 0)   stop here: rvs_xdp_ingress counts the reason and returns XDP_DROP.
 * Stages never return XDP_DROP or XDP_ABORTED themselves, so every drop is counted in one place.
 * Mirror: rvs-model/src/xdp.rs (enum Verdict) */
#ifndef RVS_VERDICT_H
#define RVS_VERDICT_H

#define RVS_OK	0

#endif /* RVS_VERDICT_H */
