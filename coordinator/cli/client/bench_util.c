/* bench_util.c - see bench_util.h. */
#include "coordinator/cli/client/bench_util.h"
#include "coordinator/cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_bin_dir(char *dir, size_t len)
{
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        cli_errorf("bench", "cannot find the sdxl binary");
        return -1;
    }
    self[sl] = '\0';
    snprintf(dir, len, "%s", self);
    *strrchr(dir, '/') = '\0';
    return 0;
}

/* Runs a command, returns its stdout (malloc'd) or NULL. */
char *bench_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else
                buf = nb;
        }
    }
    int rc = pclose(p);
    if (buf)
        buf[len] = '\0';
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int bench_submit(const char *cmd, char *job, size_t len)
{
    char *out = bench_capture(cmd);
    job[0] = '\0';
    if (out) {
        char *last = strrchr(out, ' ');
        snprintf(job, len, "%s", last ? last + 1 : out);
        job[strcspn(job, "\n")] = '\0';
        free(out);
    }
    return job[0] ? 0 : -1;
}

pid_t bench_spawn(char *const argv[], const char *log)
{
    pid_t p = fork();
    if (p == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        setenv("OMP_NUM_THREADS", getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "1", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_pct(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

void bench_sort(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
}
