/* bench_util.h - memory helper for the benchmarks (timing: common/clock.h). */
#ifndef SDXL_TESTS_BENCH_UTIL_H
#define SDXL_TESTS_BENCH_UTIL_H

#include <sys/resource.h>

#include <stdlib.h>

#include "common/clock.h" /* sd_now_s: the timer */
#include "kernels/cpu/sgemm.h"

/* FLOP/s of our sgemm on an n x n x n product (after one warm-up): the
 * floor a benchmark of products sets its figures against */
static inline double bench_sgemm_rate(int n)
{
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
          *c = malloc((size_t)n * n * sizeof *c);
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    sd_sgemm(0, n, n, n, 1, a, n, b, n, 0, c, n);
    double t0 = sd_now_s();
    sd_sgemm(0, n, n, n, 1, a, n, b, n, 0, c, n);
    double t = sd_now_s() - t0;
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / t;
}

/* Peak resident set size of this process in GiB. */
static inline double bench_peak_rss_gib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);
}

#endif
