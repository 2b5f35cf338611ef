/* brownian_tree.h - the Brownian motion DPM++ SDE (DPMSolverSDEScheduler)
 * draws its noise from: torchsde's BrownianInterval as diffusers' sampler
 * builds it (halfway_tree=True, tol=1e-6, pool_size=24, no Levy area),
 * reproduced to the bit:
 *   - times are rounded to 6 decimals (Python's round(x, 6));
 *   - the interval [t0, t1] is split at rounded halves until a query's
 *     ends are interval ends; each split node's noise seed is numpy's
 *     SeedSequence(entropy, spawn_key=(key, depth), pool_size=24)
 *     .generate_state(4)[0] (a node's key: 2 * its parent's + 1 on the
 *     right; the root's 0 at depth 0);
 *   - the root's increment is randn(seed) * sqrt(t1 - t0), seed from
 *     SeedSequence(entropy, pool_size=24).generate_state(3)[0]; a child's
 *     is the Brownian bridge of its parent's: left = l/h * W + sqrt(l r/h)
 *     * randn(parent's seed), right = W - left, in float32 as torch does;
 *   - a query sums the increments of the intervals tiling it, in order.
 * randn is torch.randn with a CPU generator seeded with the node's seed,
 * of the whole batch's shape (one item's slice kept). */
#ifndef SDXL_WORKER_BROWNIAN_TREE_H
#define SDXL_WORKER_BROWNIAN_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct sd_brownian_tree sd_brownian_tree;

/* The motion over [t0, t1] (t0 < t1) for `entropy`; n values per item, of
 * a batch of batch_n items (<= 1: no batch) of which this is batch_i. */
sd_status sd_brownian_tree_create(sd_brownian_tree **out, double t0, double t1, uint64_t entropy, size_t n,
                                  int batch_n, int batch_i, sd_error *err);
void sd_brownian_tree_free(sd_brownian_tree *t);
/* W(tb) - W(ta) for ta <= tb (clamped to [t0, t1]) into w[n]. */
sd_status sd_brownian_tree_increment(sd_brownian_tree *t, double ta, double tb, float *w, sd_error *err);

/* numpy's SeedSequence(entropy, spawn_key=key[0..nkey), pool_size)
 * .generate_state(n_words) (uint32 words); exposed for its test. */
void sd_numpy_seed_sequence(uint64_t entropy, const uint64_t *key, int nkey, int pool_size, uint32_t *out,
                            int n_words);

#endif
