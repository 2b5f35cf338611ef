/* arena_plan.h - where each buffer of a repeated computation lives in one
 * block of memory. A first run records the order of its allocations and
 * frees; the plan then gives every buffer an offset such that no two buffers
 * alive at the same time overlap, and the block's size. Later runs that make
 * the same calls in the same order take their buffers at those offsets, so a
 * UNet step allocates nothing from the device after the first one and its
 * addresses stay fixed (what replaying it as a CUDA graph needs).
 *
 * Offsets come from the "greedy by size" heuristic (largest buffer first, at
 * the lowest offset free for its whole lifetime), as TensorFlow Lite's memory
 * planner does it. It is not optimal in general; the plan reports the peak of
 * live bytes, a lower bound, so its overhead is visible. Pure host code. */
#ifndef SDXL_KERNELS_ARENA_PLAN_H
#define SDXL_KERNELS_ARENA_PLAN_H

#include <stddef.h>

#include "common/error.h"

typedef struct {
    size_t size;
    int first, last; /* event indices of its allocation and free (last: nevents if never freed) */
    size_t offset;   /* set by sd_arena_plan_solve */
} sd_arena_buf;

typedef struct {
    sd_arena_buf *bufs;
    int nbufs, capbufs;
    int *events; /* k >= 0: buffer k allocated; -(k+1): buffer k freed */
    int nevents, capevents;
    size_t arena_bytes;     /* after solve: the block size */
    size_t peak_live_bytes; /* after solve: most bytes (aligned) alive at once */
} sd_arena_plan;

void sd_arena_plan_init(sd_arena_plan *p);
void sd_arena_plan_free(sd_arena_plan *p);
/* Records that a buffer of `size` bytes is allocated; *index names it. */
sd_status sd_arena_plan_note_alloc(sd_arena_plan *p, size_t size, int *index, sd_error *err);
/* Records that buffer `index` is freed (at most once). */
sd_status sd_arena_plan_note_free(sd_arena_plan *p, int index, sd_error *err);
/* Assigns offsets (multiples of align, a power of two) and the block size. */
sd_status sd_arena_plan_solve(sd_arena_plan *p, size_t align, sd_error *err);

#endif
