/* cmd_bench_sim.c - `sdxl bench --simulate`: a coordinator against a fleet of
 * simulated workers (sdxl-worker --simulate: real messages and tensor sizes,
 * compute replaced by a timer), on loopback, for one job. Prints what the
 * coordinator costs at that fleet size: images/s against the ideal (the unet
 * workers' own rate: N / (steps x step time)), the coordinator's CPU seconds,
 * bytes read and written and database rows written per image, and the wait
 * it adds between two stages (p50/p99), as a table or --json. A job larger
 * than the run is measured over --window seconds without running it all. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/parse_number.h"
#include "coordinator/cli/cli.h"
#include "coordinator/cli/client/bench_util.h"

typedef struct {
    long long unet, text, final, items, steps, width, height, window_s, heartbeat_ms, procs;
    double step_ms, text_ms, final_ms;
    int zero, json;
    const char *keep;
} sim_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sdxl bench --simulate [--unet N] [--text N] [--final N] [--items N] [--steps N]\n"
            "                  [--width W] [--height H] [--step-ms MS] [--text-ms MS] [--final-ms MS]\n"
            "                  [--zero-compute] [--window S] [--heartbeat-ms N] [--procs N] [--json] [--keep DIR]\n\n"
            "Starts a coordinator and N simulated unet workers (10) with text and final workers in the\n"
            "design's ratio (one text worker per 24 unet, one final per 4, unless given), submits a job of\n"
            "--items prompts (2000) at WxH (1024x1024) and --steps (30), and reports images/s against the\n"
            "ideal N / (steps x step time), the coordinator's CPU seconds, bytes and database rows per image,\n"
            "and the wait it adds between stages (p50/p99). Compute times default to the H200 figures of\n"
            "bench/RESULTS.md (56 ms a unet step, 3.4 ms a text item, 71 ms a final item); --zero-compute\n"
            "measures the coordinator's ceiling. --window S stops S seconds after the submit returned (a job\n"
            "larger than the run). --procs N splits the simulated workers over N processes (1): one\n"
            "process's single thread, not the coordinator, bounds a large zero-compute fleet.\n");
}

static int parse(int argc, char **argv, sim_opts *o)
{
    *o = (sim_opts){.unet = 10, .text = -1, .final = -1, .items = 2000, .steps = 30, .width = 1024, .height = 1024,
                    .heartbeat_ms = 1000, .procs = 1, .step_ms = 56.0, .text_ms = 3.4, .final_ms = 71.0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        long long *iv = NULL, lo = 0, hi = 0;
        double *dv = NULL;
        if (!strcmp(a, "--simulate"))
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--zero-compute")) {
            o->zero = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            cli_errorf("bench", "%s needs a value", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--unet"))
            iv = &o->unet, lo = 1, hi = 4000;
        else if (!strcmp(a, "--text"))
            iv = &o->text, lo = 1, hi = 1000;
        else if (!strcmp(a, "--final"))
            iv = &o->final, lo = 1, hi = 2000;
        else if (!strcmp(a, "--items"))
            iv = &o->items, lo = 1, hi = 100000000;
        else if (!strcmp(a, "--steps"))
            iv = &o->steps, lo = 1, hi = 1000;
        else if (!strcmp(a, "--width"))
            iv = &o->width, lo = 64, hi = 4096;
        else if (!strcmp(a, "--height"))
            iv = &o->height, lo = 64, hi = 4096;
        else if (!strcmp(a, "--window"))
            iv = &o->window_s, lo = 1, hi = 86400;
        else if (!strcmp(a, "--heartbeat-ms"))
            iv = &o->heartbeat_ms, lo = 10, hi = 60000;
        else if (!strcmp(a, "--procs"))
            iv = &o->procs, lo = 1, hi = 64;
        else if (!strcmp(a, "--step-ms"))
            dv = &o->step_ms;
        else if (!strcmp(a, "--text-ms"))
            dv = &o->text_ms;
        else if (!strcmp(a, "--final-ms"))
            dv = &o->final_ms;
        else if (!strcmp(a, "--keep"))
            o->keep = v;
        else {
            cli_errorf("bench", "unknown option '%s'", a);
            return 2;
        }
        if (iv && sd_parse_int(v, lo, hi, iv)) {
            cli_errorf("bench", "%s must be a whole number from %lld to %lld, not '%s'", a, lo, hi, v);
            return 2;
        }
        char *end;
        if (dv && ((*dv = strtod(v, &end)) < 0 || *end || end == v || *dv > 3.6e6)) {
            cli_errorf("bench", "%s: '%s' is not a time in milliseconds", a, v);
            return 2;
        }
    }
    if (o->text < 0)
        o->text = (o->unet + 23) / 24;
    if (o->final < 0)
        o->final = (o->unet + 3) / 4;
    if (o->zero)
        o->step_ms = o->text_ms = o->final_ms = 0;
    if (o->unet + o->text + o->final > 4096) {
        cli_errorf("bench", "at most 4096 simulated workers in all");
        return 2;
    }
    return -1;
}

/* the coordinator's CPU seconds and bytes read + written so far */
static void proc_usage(long pid, double *cpu_s, double *bytes)
{
    char path[64], buf[1024];
    *cpu_s = *bytes = 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(buf, sizeof buf, f)) {
            char *p = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            /* after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%ld/io", pid);
    f = fopen(path, "r");
    while (f && fgets(buf, sizeof buf, f)) {
        unsigned long long v;
        if (sscanf(buf, "rchar: %llu", &v) == 1 || sscanf(buf, "wchar: %llu", &v) == 1)
            *bytes += (double)v;
    }
    if (f)
        fclose(f);
}

/* the coordinator's peak resident memory (VmHWM), MB */
static double peak_rss_mb(long pid)
{
    char path[64], buf[256];
    double kb = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(buf, sizeof buf, f))
        if (sscanf(buf, "VmHWM: %lf", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024.0;
}

static double file_mb(const char *dir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
}

static json_t *json_of(const char *cmd)
{
    char *out = bench_capture(cmd);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    return j;
}

/* The waits the coordinator added between stages, from the done items'
 * JSON files (up to 4000 of them): unet (text done -> unet task sent) and
 * final (unet done -> final task sent). */
static void hop_waits(const char *out_dir, long long items, double *p50, double *p99)
{
    int cap = 4000, n[2] = {0, 0};
    double *v[2] = {calloc((size_t)cap, sizeof(double)), calloc((size_t)cap, sizeof(double))};
    long long step = items > cap ? items / cap : 1;
    for (long long i = 0; v[0] && v[1] && i < items && n[0] < cap; i += step) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%08lld.json", out_dir, i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        json_error_t je;
        json_t *j = json_loadf(f, 0, &je);
        fclose(f);
        const char *keys[2] = {"unet_wait_seconds", "final_wait_seconds"};
        for (int k = 0; k < 2; k++)
            if (json_is_number(json_object_get(j, keys[k])))
                v[k][n[k]++] = json_number_value(json_object_get(j, keys[k]));
        json_decref(j);
    }
    for (int k = 0; k < 2; k++) {
        bench_sort(v[k], n[k]);
        p50[k] = bench_pct(v[k], n[k], 0.5);
        p99[k] = bench_pct(v[k], n[k], 0.99);
        free(v[k]);
    }
}

int cmd_bench_simulate(int argc, char **argv)
{
    sim_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char dir[4096];
    if (bench_bin_dir(dir, sizeof dir))
        return 1;
    char tmpl[] = "/tmp/sdxl-bench-sim-XXXXXX";
    sd_error err = {0};
    char *tmp = o.keep ? (char *)o.keep : mkdtemp(tmpl);
    if (!tmp || (o.keep && sd_mkdirs(o.keep, &err) != SD_OK)) {
        cli_errorf("bench", "cannot create %s: %s", o.keep ? o.keep : "a temp folder", err.msg);
        return 1;
    }
    char ep[64], path[4600], cmd[9000], coord[4200], worker[4200], state[4300], log[4300], spec[200], hb[32];
    srand((unsigned)getpid() ^ (unsigned)sd_now_s());
    snprintf(coord, sizeof coord, "%s/sdxl-coordinator", dir);
    snprintf(worker, sizeof worker, "%s/sdxl-worker", dir);
    snprintf(state, sizeof state, "%s/state", tmp);
    snprintf(hb, sizeof hb, "%lld", o.heartbeat_ms);
    snprintf(log, sizeof log, "%s/coordinator.log", tmp);
    pid_t cpid = -1;
    /* a port picked at random may be taken (an outgoing connection's): the
     * coordinator then exits at once, and another is tried */
    for (int attempt = 0; attempt < 8; attempt++) {
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + rand() % 12000);
        char *cargv[] = {coord, "--bind", ep, "--state", state, "--heartbeat-ms", hb, NULL};
        cpid = bench_spawn(cargv, log);
        usleep(300000);
        if (waitpid(cpid, NULL, WNOHANG) == 0)
            break;
        cpid = -1;
    }
    if (cpid < 0) {
        cli_errorf("bench", "the coordinator did not start (see %s)", log);
        return 1;
    }
    /* each process its share of every role, under ids of its own */
    pid_t wpids[64];
    int nw = 0;
    for (long long p = 0; p < o.procs; p++) {
        long long share[3], all[3] = {o.text, o.unet, o.final};
        for (int r = 0; r < 3; r++)
            share[r] = all[r] / o.procs + (p < all[r] % o.procs);
        if (share[0] + share[1] + share[2] == 0)
            continue;
        char prefix[32];
        snprintf(spec, sizeof spec, "text=%lld@%g,unet=%lld@%g,final=%lld@%g", share[0], o.text_ms, share[1],
                 o.step_ms, share[2], o.final_ms);
        snprintf(prefix, sizeof prefix, "sim%lld", p);
        char *wargv[] = {worker, "--coordinator", ep, "--simulate", spec, "--heartbeat-ms", hb, "--id", prefix, NULL};
        snprintf(log, sizeof log, "%s/workers-%lld.log", tmp, p);
        wpids[nw++] = bench_spawn(wargv, log);
    }
    long long fleet = o.unet + o.text + o.final, registered = 0;
    double t_reg = sd_now_s();
    while (registered < fleet && sd_now_s() - t_reg < 120 && waitpid(cpid, NULL, WNOHANG) == 0) {
        usleep(200000);
        snprintf(cmd, sizeof cmd, "'%s/sdxl' workers --json --coordinator '%s'", dir, ep);
        json_t *w = json_of(cmd);
        registered = (long long)json_array_size(json_object_get(w, "workers"));
        json_decref(w);
    }
    json_t *res = NULL;
    if (registered < fleet) {
        cli_errorf("bench", "only %lld of %lld simulated workers registered within 120 s (see %s)", registered, fleet,
                   tmp);
        rc = 1;
        goto out;
    }
    snprintf(path, sizeof path, "%s/prompts.txt", tmp);
    FILE *pf = fopen(path, "w");
    for (long long i = 0; pf && i < o.items; i++)
        fprintf(pf, "simulated prompt %lld: a photo of a landscape, detailed\n", i);
    if (!pf || fclose(pf) != 0) {
        cli_errorf("bench", "cannot write %s", path);
        rc = 1;
        goto out;
    }
    snprintf(cmd, sizeof cmd, "'%s/sdxl' workers --json --coordinator '%s'", dir, ep);
    json_t *w0 = json_of(cmd);
    double rows0 = (double)json_integer_value(json_object_get(json_object_get(w0, "coordinator"), "db_row_writes"));
    json_decref(w0);
    double cpu0, bytes0, cpu1, bytes1;
    proc_usage((long)cpid, &cpu0, &bytes0);
    double t0 = sd_now_s();
    snprintf(cmd, sizeof cmd,
             "'%s/sdxl' submit '%s' --out '%s/out' --layout files --width %lld --height %lld --steps %lld "
             "--coordinator '%s' 2>/dev/null",
             dir, path, tmp, o.width, o.height, o.steps, ep);
    char job[64];
    int submitted = bench_submit(cmd, job, sizeof job) == 0;
    double t_submit = sd_now_s() - t0;
    if (!submitted) {
        cli_errorf("bench", "submit failed (see %s)", tmp);
        rc = 1;
        goto out;
    }
    /* done over time: the whole run's rate and the steady one (10% to 90%
     * of what got done, without the pipeline's fill and drain) */
    int cap = 1 << 16, ns = 0;
    double *ts = calloc((size_t)cap, sizeof *ts), *ds = calloc((size_t)cap, sizeof *ds);
    long long done = 0;
    for (;;) {
        snprintf(cmd, sizeof cmd, "'%s/sdxl' status %s --json --coordinator '%s'", dir, job, ep);
        json_t *st = json_of(cmd);
        done = st ? json_integer_value(json_object_get(st, "done")) : done;
        json_decref(st);
        double t = sd_now_s() - t0;
        if (ns < cap && ts && ds)
            ts[ns] = t, ds[ns++] = (double)done;
        /* the window starts once the submit returned: a large job's
         * submission is not part of it */
        if (done >= o.items || (o.window_s && t - t_submit > (double)o.window_s) || t > 86400)
            break;
        usleep(200000);
    }
    double wall = sd_now_s() - t0;
    proc_usage((long)cpid, &cpu1, &bytes1);
    double t_status = sd_now_s();
    snprintf(cmd, sizeof cmd, "'%s/sdxl' status %s --json --coordinator '%s'", dir, job, ep);
    json_decref(json_of(cmd));
    t_status = sd_now_s() - t_status; /* a status of this job, process start included */
    double rss = peak_rss_mb((long)cpid),
           db = file_mb(state, "coordinator.sqlite") + file_mb(state, "coordinator.sqlite-wal");
    snprintf(cmd, sizeof cmd, "'%s/sdxl' workers --json --coordinator '%s'", dir, ep);
    json_t *w1 = json_of(cmd);
    double rows1 = (double)json_integer_value(json_object_get(json_object_get(w1, "coordinator"), "db_row_writes"));
    json_decref(w1);
    double lo_t = 0, lo_d = 0, hi_t = wall, hi_d = (double)done;
    for (int i = 0; i < ns; i++) {
        if (ds[i] <= 0.1 * (double)done)
            lo_t = ts[i], lo_d = ds[i];
        if (ds[i] <= 0.9 * (double)done)
            hi_t = ts[i], hi_d = ds[i];
    }
    /* after the submit returned: what a job larger than the run does once all of it is in */
    double after = ns > 1 && wall > ts[0] ? ((double)done - ds[0]) / (wall - ts[0]) : 0;
    free(ts);
    free(ds);
    double steady = hi_t > lo_t ? (hi_d - lo_d) / (hi_t - lo_t) : 0;
    double ideal = o.step_ms > 0 ? (double)o.unet / ((double)o.steps * o.step_ms / 1000.0) : 0;
    double per = done > 0 ? 1.0 / (double)done : 0, p50[2], p99[2];
    snprintf(path, sizeof path, "%s/out", tmp);
    hop_waits(path, o.items, p50, p99);
    res = json_pack("{s:{s:I, s:I, s:I}, s:{s:f, s:f, s:f}, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, "
                    "s:f, s:f, s:{s:f, s:f}, s:{s:f, s:f}}",
                    "workers", "text", (json_int_t)o.text, "unet", (json_int_t)o.unet, "final", (json_int_t)o.final,
                    "ms", "text_item", o.text_ms, "unet_step", o.step_ms, "final_item", o.final_ms, "items",
                    (json_int_t)o.items, "done", (json_int_t)done, "steps", (json_int_t)o.steps, "width",
                    (json_int_t)o.width, "height", (json_int_t)o.height, "submit_seconds", t_submit, "wall_seconds",
                    wall, "images_per_second", (double)done / wall, "steady_images_per_second", steady,
                    "ideal_images_per_second", ideal, "coordinator_cpu_seconds_per_image", (cpu1 - cpu0) * per,
                    "coordinator_bytes_per_image", (bytes1 - bytes0) * per, "db_rows_per_image", (rows1 - rows0) * per,
                    "unet_wait_seconds", "p50", p50[0], "p99", p99[0], "final_wait_seconds", "p50", p50[1], "p99",
                    p99[1]);
    if (ideal > 0)
        json_object_set_new(res, "of_ideal", json_real(steady / ideal));
    json_object_set_new(res, "status_seconds", json_real(t_status));
    json_object_set_new(res, "simulator_processes", json_integer((json_int_t)nw));
    json_object_set_new(res, "after_submit_images_per_second", json_real(after));
    json_object_set_new(res, "coordinator_peak_rss_mb", json_real(rss));
    json_object_set_new(res, "db_mb", json_real(db));
    if (o.json) {
        char *s = json_dumps(res, JSON_COMPACT);
        puts(s);
        free(s);
    } else {
        printf("simulated fleet: %lld text, %lld unet, %lld final workers; %lld items of %lldx%lld, %lld steps\n",
               o.text, o.unet, o.final, o.items, o.width, o.height, o.steps);
        printf("%lld images in %.1f s (submit %.1f s): %.1f images/s, steady %.1f", done, wall, t_submit,
               (double)done / wall, steady);
        if (ideal > 0)
            printf(" against the ideal %.1f (%.2f)\n", ideal, steady / ideal);
        else
            printf(" (no compute: the coordinator's ceiling)\n");
        printf("coordinator per image: %.2f ms CPU, %.2f MB read+written, %.1f database rows\n",
               1000 * (cpu1 - cpu0) * per, (bytes1 - bytes0) * per / 1e6, (rows1 - rows0) * per);
        printf("wait added between stages: unet p50 %.1f ms p99 %.1f ms, final p50 %.1f ms p99 %.1f ms\n",
               1000 * p50[0], 1000 * p99[0], 1000 * p50[1], 1000 * p99[1]);
        printf("status of the job %.0f ms; coordinator peak memory %.0f MB; database %.0f MB\n", 1000 * t_status, rss,
               db);
    }
    rc = o.window_s || done >= o.items ? 0 : 1;
out:
    json_decref(res);
    for (int i = 0; i < nw; i++)
        kill(wpids[i], SIGTERM);
    kill(cpid, SIGTERM);
    for (int i = 0; i < nw; i++)
        waitpid(wpids[i], NULL, 0);
    waitpid(cpid, NULL, 0);
    if (!o.keep) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "sdxl bench: could not remove %s\n", tmp);
    }
    return rc;
}
