/* cmd_top.c - `sdxl top`: a live view of a running cluster, refreshed in
 * place: each job's progress, rate and ETA; per stage the items waiting and
 * in flight and the rate its workers finish them; every worker with its
 * role, device, state, current task and busy fraction. From STATUS and
 * WORKERS, the rates from one refresh to the next. On a terminal the screen
 * is redrawn; otherwise (or with --plain) each refresh is printed after the
 * last, and --once prints one and exits. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/parse_number.h"
#include "coordinator/cli/cli.h"
#include "coordinator/cli/client/client.h"

static volatile sig_atomic_t stop_top;
static void on_signal(int sig)
{
    (void)sig;
    stop_top = 1;
}

/* what one refresh keeps for the next one's rates */
#define TOP_MAX_JOBS 64
typedef struct {
    double t;
    long long stage_done[3]; /* items the workers of each role finished */
    struct {
        char id[40];
        long long done;
        double rate; /* images/s, smoothed */
    } jobs[TOP_MAX_JOBS];
    int njobs;
} top_state;

static const char *const roles[3] = {"text", "unet", "final"};

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "?";
}

static long long num(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void eta(char *out, size_t len, long long left, double rate)
{
    if (left <= 0)
        snprintf(out, len, "-");
    else if (rate <= 0)
        snprintf(out, len, "?");
    else {
        double s = (double)left / rate;
        if (s < 60)
            snprintf(out, len, "%.0fs", s);
        else if (s < 3600)
            snprintf(out, len, "%ldm%02lds", (long)s / 60, (long)s % 60);
        else
            snprintf(out, len, "%.1fh", s / 3600);
    }
}

static void render(const char *endpoint, json_t *jobs, json_t *workers, top_state *prev, top_state *cur)
{
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
    double dt = prev->t > 0 ? cur->t - prev->t : 0;
    long long waiting[3] = {0, 0, 0}, flight[3] = {0, 0, 0}, nworkers[3] = {0, 0, 0}, busy[3] = {0, 0, 0};
    size_t i;
    json_t *j, *w;
    json_array_foreach(jobs, i, j) {
        if (strcmp(str(j, "state"), "running"))
            continue;
        waiting[0] += num(j, "pending");
        waiting[1] += num(j, "encoded");
        waiting[2] += num(j, "denoised");
    }
    json_array_foreach(json_object_get(workers, "workers"), i, w) {
        for (int r = 0; r < 3; r++)
            if (!strcmp(str(w, "role"), roles[r])) {
                nworkers[r]++;
                busy[r] += num(w, "inflight") > 0;
                flight[r] += num(json_object_get(w, "task"), "items");
                cur->stage_done[r] += num(w, "items_done");
            }
    }
    printf("sdxl top  %s  %s  (Ctrl-C to quit)\n\n", endpoint, when);
    printf("%-7s %8s %8s %9s %8s %6s\n", "stage", "waiting", "flight", "items/s", "workers", "busy");
    for (int r = 0; r < 3; r++) {
        double rate = dt > 0 && cur->stage_done[r] >= prev->stage_done[r]
                          ? (double)(cur->stage_done[r] - prev->stage_done[r]) / dt
                          : 0;
        printf("%-7s %8lld %8lld %9.2f %8lld %5.0f%%\n", roles[r], waiting[r] > flight[r] ? waiting[r] - flight[r] : 0,
               flight[r], rate, nworkers[r], nworkers[r] ? 100.0 * (double)busy[r] / (double)nworkers[r] : 0.0);
    }
    printf("\n%-22s %-10s %9s %9s %8s %9s %8s\n", "job", "state", "done", "total", "failed", "images/s", "eta");
    cur->njobs = 0;
    json_array_foreach(jobs, i, j) {
        const char *id = str(j, "id");
        long long done = num(j, "done"), total = num(j, "total");
        double rate = 0;
        for (int k = 0; k < prev->njobs; k++)
            if (!strcmp(prev->jobs[k].id, id)) {
                double inst = dt > 0 ? (double)(done - prev->jobs[k].done) / dt : 0;
                rate = prev->jobs[k].rate > 0 ? 0.7 * prev->jobs[k].rate + 0.3 * inst : inst;
            }
        if (cur->njobs < TOP_MAX_JOBS) {
            snprintf(cur->jobs[cur->njobs].id, sizeof cur->jobs[0].id, "%s", id);
            cur->jobs[cur->njobs].done = done;
            cur->jobs[cur->njobs++].rate = rate;
        }
        char e[32];
        eta(e, sizeof e, total - done - num(j, "failed") - num(j, "cancelled"), rate);
        printf("%-22s %-10s %9lld %9lld %8lld %9.2f %8s\n", id, str(j, "state"),
               done, total, num(j, "failed"), rate, e);
    }
    printf("\n%-26s %-6s %-12s %-6s %-30s %6s %9s\n", "worker", "role", "device", "state", "task", "busy", "items");
    json_array_foreach(json_object_get(workers, "workers"), i, w) {
        json_t *t = json_object_get(w, "task");
        char task[64] = "-";
        if (t)
            snprintf(task, sizeof task, "%.22s x%lld %.0fs", str(t, "job"),
                     num(t, "items"), json_number_value(json_object_get(t, "seconds")));
        printf("%-26.26s %-6s %-12.12s %-6s %-30s %5.0f%% %9lld\n", str(w, "id"),
               str(w, "role"),
               str(w, "devices"), num(w, "inflight") > 0 ? "busy" : "idle", task,
               100 * json_number_value(json_object_get(w, "busy_fraction")), num(w, "items_done"));
    }
}

int cmd_top(int argc, char **argv)
{
    const char *endpoint = NULL;
    double interval = 1.0;
    int once = 0, plain = !isatty(STDOUT_FILENO);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sdxl top [--coordinator ENDPOINT] [--interval S] [--once] [--plain]\n\n"
                   "A live view of a running cluster: each job's progress, rate and ETA; per stage the items\n"
                   "waiting and in flight, the rate its workers finish them and how many are busy; every worker\n"
                   "with its role, device, state, current task and busy fraction. Redrawn in place every\n"
                   "--interval seconds (1) on a terminal; printed one refresh after another otherwise or with\n"
                   "--plain; --once prints one refresh and exits.\n");
            return 0;
        } else if (!strcmp(argv[i], "--coordinator") && i + 1 < argc)
            endpoint = argv[++i];
        else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
            char *end;
            interval = strtod(argv[++i], &end);
            if (*end || interval < 0.1 || interval > 3600) {
                cli_errorf("top", "--interval must be seconds from 0.1 to 3600, not '%s'", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--once"))
            once = 1;
        else if (!strcmp(argv[i], "--plain"))
            plain = 1;
        else {
            cli_errorf("top", "unknown option '%s' (see --help)", argv[i]);
            return 2;
        }
    }
    client c;
    if (client_open(&c, endpoint, "top", 60))
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    top_state prev = {0}, cur;
    int rc = 0;
    if (!plain)
        printf("\033[?25l"); /* no cursor while redrawing */
    while (!stop_top) {
        json_t *st = client_request(&c, "STATUS", NULL), *ws = st ? client_request(&c, "WORKERS", NULL) : NULL;
        if (!st || !ws) {
            json_decref(st);
            rc = 1;
            break;
        }
        memset(&cur, 0, sizeof cur);
        cur.t = sd_now_s();
        if (!plain)
            printf("\033[H\033[2J");
        render(c.endpoint, json_object_get(st, "jobs"), ws, &prev, &cur);
        if (plain && !once)
            printf("\n");
        fflush(stdout);
        json_decref(st);
        json_decref(ws);
        prev = cur;
        if (once)
            break;
        for (double waited = 0; waited < interval && !stop_top; waited += 0.05)
            usleep(50000);
    }
    if (!plain)
        printf("\033[?25h");
    client_close(&c);
    return rc;
}
