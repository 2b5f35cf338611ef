/* bench_util.h - what the two benchmarks of `sdxl bench` share: running our
 * own binaries and reading figures off them. */
#ifndef SDXL_COORDINATOR_CLI_CLIENT_BENCH_UTIL_H
#define SDXL_COORDINATOR_CLI_CLIENT_BENCH_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* The folder of this sdxl binary, where our other binaries sit: 0, or -1
 * after printing why. */
int bench_bin_dir(char *dir, size_t len);
/* Runs a shell command; its stdout (malloc'd), or NULL when it failed. */
char *bench_capture(const char *cmd);
/* Runs an `sdxl submit` command line and puts the job id (the last word of
 * its output) in job; 0, or -1 when it failed. */
int bench_submit(const char *cmd, char *job, size_t len);
/* Starts argv[0] (an absolute path) with stderr to log, stdout to /dev/null. */
pid_t bench_spawn(char *const argv[], const char *log);
/* The q-quantile (0..1) of sorted v[0..n). */
double bench_pct(double *v, int n, double q);
void bench_sort(double *v, int n);
/* The simulated fleet (cmd_bench_sim.c). */
int cmd_bench_simulate(int argc, char **argv);

#endif
