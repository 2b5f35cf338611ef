/* clock.h - seconds on the monotonic clock, for timeouts, rates and stage
 * timings (never the wall clock, which can jump). */
#ifndef SDXL_COMMON_CLOCK_H
#define SDXL_COMMON_CLOCK_H

#include <time.h>

static inline double sd_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
