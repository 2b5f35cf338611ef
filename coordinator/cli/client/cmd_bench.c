/* cmd_bench.c - `sdxl bench`: throughput of a cluster on a synthetic job.
 * Against a running coordinator, or --local: a coordinator and one worker per
 * role started on loopback for the run. Prints images/s overall and per
 * stage, each worker's busy fraction, queue depths sampled during the run and
 * per-item compute latency percentiles, as a table and (--json) as JSON, so
 * runs can be compared across nodes and commits. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/cli/cli.h"
#include "common/clock.h"
#include "common/fsutil.h"
#include "common/parse_number.h"
#include "coordinator/cli/client/bench_util.h"

int cmd_bench(int argc, char **argv)
{
    const char *endpoint = NULL, *model = NULL, *device = "cpu";
    int local = 0, items = 16, steps = 4, as_json = 0;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--simulate"))
            return cmd_bench_simulate(argc, argv);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: sdxl bench [--local [--model DIR] [--device cpu|cuda:N]] [--coordinator ENDPOINT]\n"
                   "                  [--items N] [--steps N] [--json]\n"
                   "       sdxl bench --simulate [options]   (a simulated fleet: sdxl bench --simulate --help)\n\n"
                   "Submits a synthetic job of N items (16) and reports images/s overall and per stage, worker\n"
                   "busy fractions, queue depths and latency percentiles. --local starts a coordinator and one\n"
                   "worker per role on loopback (the project's default tiny model unless --model).\n");
            return 0;
        } else if (!strcmp(a, "--local"))
            local = 1;
        else if (!strcmp(a, "--json"))
            as_json = 1;
        else if (i + 1 < argc && !strcmp(a, "--coordinator"))
            endpoint = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--model"))
            model = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--device"))
            device = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--items")) {
            if (sd_parse_int_flag("sdxl bench", a, argv[++i], 1, 100000, &items))
                return 2;
        } else if (i + 1 < argc && !strcmp(a, "--steps")) {
            if (sd_parse_int_flag("sdxl bench", a, argv[++i], 1, 1000, &steps))
                return 2;
        } else {
            cli_errorf("bench", "unknown option '%s'", a);
            return 2;
        }
    }
    /* our own binaries sit beside this one */
    char dir[4096];
    if (bench_bin_dir(dir, sizeof dir))
        return 1;
    char tmpl[] = "/tmp/sdxl-bench-XXXXXX";
    char *tmp = mkdtemp(tmpl);
    if (!tmp) {
        cli_errorf("bench", "cannot create a temp folder");
        return 1;
    }
    char ep[128], path[4600], cmd[8192];
    pid_t pids[4] = {0};
    int np = 0;
    if (local) {
        if (!model) {
            static char def[4200];
            snprintf(def, sizeof def, "%s/../models/sdxl-tiny-random", dir);
            model = def;
        }
        srand((unsigned)getpid());
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 40000 + rand() % 20000);
        endpoint = ep;
        char coord[4200], worker[4200], state[4200], log[4300];
        snprintf(coord, sizeof coord, "%s/sdxl-coordinator", dir);
        snprintf(worker, sizeof worker, "%s/sdxl-worker", dir);
        snprintf(state, sizeof state, "%s/state", tmp);
        char *cargv[] = {coord, "--bind", (char *)endpoint, "--state", state, NULL};
        snprintf(log, sizeof log, "%s/coordinator.log", tmp);
        pids[np++] = bench_spawn(cargv, log);
        const char *roles[3] = {"text", "unet", "final"};
        char spool[4300];
        snprintf(spool, sizeof spool, "%s/spool", tmp); /* the unet worker's held latents: gone with tmp */
        for (int r = 0; r < 3; r++) {
            char *wargv[] = {worker, "--coordinator", (char *)endpoint, "--role", (char *)roles[r], "--model",
                             (char *)model, "--device", (char *)device, "--spool", spool, NULL};
            snprintf(log, sizeof log, "%s/worker-%s.log", tmp, roles[r]);
            pids[np++] = bench_spawn(wargv, log);
        }
    } else if (!endpoint) {
        endpoint = getenv("SDXL_COORDINATOR") ? getenv("SDXL_COORDINATOR") : "tcp://127.0.0.1:5555";
    }
    snprintf(path, sizeof path, "%s/prompts.txt", tmp);
    FILE *pf = fopen(path, "w");
    for (int i = 0; pf && i < items; i++)
        fprintf(pf, "benchmark prompt %d: a photo of a landscape, detailed\n", i);
    if (pf)
        fclose(pf);
    double t0 = sd_now_s();
    snprintf(cmd, sizeof cmd, "'%s/sdxl' submit '%s' --out '%s/out' --layout files --steps %d --coordinator '%s'", dir,
             path, tmp, steps, endpoint);
    int rc = 1;
    json_t *samples = json_array();
    char job[64];
    if (bench_submit(cmd, job, sizeof job))
        cli_errorf("bench", "submit failed (coordinator at %s?)", endpoint);
    int max_q[3] = {0}, finished = 0;
    double sum_q[3] = {0};
    int nsamples = 0;
    while (job[0] && !finished && sd_now_s() - t0 < 3600) {
        snprintf(cmd, sizeof cmd, "'%s/sdxl' status %s --json --coordinator '%s'", dir, job, endpoint);
        char *st = bench_capture(cmd);
        json_t *j = st ? json_loads(st, 0, NULL) : NULL;
        free(st);
        if (j) {
            int q[3] = {(int)json_integer_value(json_object_get(j, "pending")),
                        (int)json_integer_value(json_object_get(j, "encoded")),
                        (int)json_integer_value(json_object_get(j, "denoised"))};
            for (int k = 0; k < 3; k++) {
                max_q[k] = q[k] > max_q[k] ? q[k] : max_q[k];
                sum_q[k] += q[k];
            }
            nsamples++;
            finished = strcmp(json_string_value(json_object_get(j, "state")), "running") != 0;
            json_decref(j);
        }
        if (!finished)
            usleep(100000);
    }
    double wall = sd_now_s() - t0;
    snprintf(cmd, sizeof cmd, "'%s/sdxl' workers --json --coordinator '%s'", dir, endpoint);
    char *ws = bench_capture(cmd);
    json_t *workers = ws ? json_loads(ws, 0, NULL) : NULL;
    free(ws);
    snprintf(path, sizeof path, "%s/out/metadata.jsonl", tmp);
    char *meta = NULL;
    size_t mlen;
    sd_error err;
    double *lat = calloc((size_t)items, sizeof *lat), stage_sum[3] = {0};
    int nl = 0;
    if (finished && sd_read_file(path, &meta, &mlen, &err) == SD_OK) {
        for (char *line = strtok(meta, "\n"); line && nl < items; line = strtok(NULL, "\n")) {
            json_t *o = json_loads(line, 0, NULL);
            double s[3] = {json_number_value(json_object_get(o, "text_seconds")),
                           json_number_value(json_object_get(o, "unet_seconds")),
                           json_number_value(json_object_get(o, "final_seconds"))};
            lat[nl++] = s[0] + s[1] + s[2];
            for (int k = 0; k < 3; k++)
                stage_sum[k] += s[k];
            json_decref(o);
        }
        free(meta);
        rc = nl == items ? 0 : 1;
    }
    bench_sort(lat, nl);
    json_t *res = json_pack("{s:s, s:i, s:i, s:f, s:f}", "coordinator", endpoint, "items", items, "steps", steps,
                            "wall_seconds", wall, "images_per_second", nl / wall);
    const char *names[3] = {"text", "unet", "final"};
    json_t *per = json_object();
    for (int k = 0; k < 3; k++)
        json_object_set_new(per, names[k], json_pack("{s:f, s:i, s:f}", "images_per_second_busy",
                                                     stage_sum[k] > 0 ? nl / stage_sum[k] : 0.0, "max_queue", max_q[k],
                                                     "mean_queue", nsamples ? sum_q[k] / nsamples : 0.0));
    json_object_set_new(res, "stages", per);
    json_object_set_new(res, "latency_seconds", json_pack("{s:f, s:f, s:f}", "p50", bench_pct(lat, nl, 0.5), "p90",
                                                          bench_pct(lat, nl, 0.9), "p99", bench_pct(lat, nl, 0.99)));
    json_object_set_new(res, "workers", workers ? json_incref(json_object_get(workers, "workers")) : json_array());
    if (as_json) {
        char *s = json_dumps(res, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        printf("%d items x %d steps in %.2f s: %.2f images/s overall\n", items, steps, wall, nl / wall);
        printf("%-8s %18s %10s %10s\n", "stage", "images/s (busy)", "max queue", "mean queue");
        for (int k = 0; k < 3; k++)
            printf("%-8s %18.2f %10d %10.1f\n", names[k], stage_sum[k] > 0 ? nl / stage_sum[k] : 0.0, max_q[k],
                   nsamples ? sum_q[k] / nsamples : 0.0);
        printf("compute latency per item: p50 %.3f s, p90 %.3f s, p99 %.3f s\n", bench_pct(lat, nl, 0.5), bench_pct(lat, nl, 0.9),
               bench_pct(lat, nl, 0.99));
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(res, "workers"), i, w)
            printf("worker %-24s %-6s busy %5.1f%%  items %lld\n", json_string_value(json_object_get(w, "id")),
                   json_string_value(json_object_get(w, "role")),
                   100 * json_number_value(json_object_get(w, "busy_fraction")),
                   (long long)json_integer_value(json_object_get(w, "items_done")));
    }
    json_decref(res);
    json_decref(workers);
    json_decref(samples);
    free(lat);
    for (int i = 0; i < np; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "sdxl bench: could not remove %s\n", tmp);
    return rc;
}
