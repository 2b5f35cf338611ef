/* bench_util.h - memory helper for the benchmarks (timing: common/clock.h). */
#ifndef SDXL_TESTS_BENCH_UTIL_H
#define SDXL_TESTS_BENCH_UTIL_H

#include <sys/resource.h>

#include "common/clock.h" /* sd_now_s: the timer */

/* Peak resident set size of this process in GiB. */
static inline double bench_peak_rss_gib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);
}

#endif
