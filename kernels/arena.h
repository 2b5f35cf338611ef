/* arena.h - the activations of a repeated computation (a UNet step) in one
 * block, planned from its first run.
 *
 *   sd_arena_enter(a); ...ops allocate and free tensors...; sd_arena_leave(a, ok)
 *
 * The first run takes memory from the backend as usual and records the order
 * of allocations and frees (kernels/arena_plan.h); leaving it plans offsets
 * and allocates the block once. Every later run must make the same calls in
 * the same order (same shapes): each allocation is then served at its planned
 * offset, nothing reaches the device allocator, and every address is the one
 * of the run before, which a captured CUDA graph relies on. A run that
 * departs from the plan fails with the event at fault rather than risk two
 * live tensors sharing memory. Tensors allocated inside a run must be freed
 * before it ends. One arena at a time is entered on a backend. */
#ifndef SDXL_KERNELS_ARENA_H
#define SDXL_KERNELS_ARENA_H

#include <stddef.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_arena sd_arena;

typedef struct {
    size_t arena_bytes;     /* the planned block (0 before the first run ends) */
    size_t peak_live_bytes; /* most bytes alive at once: the block's lower bound */
    int buffers;            /* allocations per run */
    long long runs;         /* completed runs, the recording one included */
} sd_arena_stats;

sd_status sd_arena_create(sd_arena **out, sd_backend *be, sd_error *err);
/* Gives the block back to the backend (the arena must not be entered). */
void sd_arena_free(sd_arena *a);
sd_status sd_arena_enter(sd_arena *a, sd_error *err);
/* Ends a run. run_ok = 0 (the run's own work failed): the arena detaches and,
 * if it was recording, forgets the partial record. Otherwise a recording run
 * is planned and its block allocated; a replay is checked to have followed
 * the plan to its end. */
sd_status sd_arena_leave(sd_arena *a, int run_ok, sd_error *err);
void sd_arena_get_stats(const sd_arena *a, sd_arena_stats *s);

#ifdef __cplusplus
}
#endif

#endif
