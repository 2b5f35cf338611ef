/* bench_util.h - timing and memory helpers for the benchmarks. */
#ifndef SDXL_TESTS_BENCH_UTIL_H
#define SDXL_TESTS_BENCH_UTIL_H

#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Peak resident set size of this process in GiB. */
static inline double bench_peak_rss_gib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);
}

#endif
