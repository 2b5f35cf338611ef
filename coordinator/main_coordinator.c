/* main_coordinator.c - `sdxl-coordinator`: the cluster's broker (broker.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse_number.h"
#include "common/stop_signal.h"
#include "coordinator/broker.h"
#include "coordinator/outputs.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl-coordinator --bind ENDPOINT --state DIR [--heartbeat-ms N] [--max-attempts N]\n"
                 "                        [--max-losses N] [--progress-timeout-ms N] [--hold-grace-ms N]\n"
                 "                        [--max-ahead N]\n"
                 "                        [--curve-secret FILE --allow FILE] [--http HOST:PORT]\n\n"
                 "The cluster's broker: workers (sdxl-worker) and clients (sdxl submit/status/...) connect to\n"
                 "ENDPOINT (e.g. tcp://127.0.0.1:5555). Jobs and items live in DIR/coordinator.sqlite, so a\n"
                 "coordinator killed and restarted on the same DIR resumes every unfinished job.\n"
                 "  --heartbeat-ms N   heartbeat interval (1000); silent for 3 intervals = dead\n"
                 "  --progress-timeout-ms N  a task whose compute loop reports no progress for this long\n"
                 "                     marks its worker dead (120000: a CPU may take a minute per step)\n"
                 "  --max-attempts N   an item failing N times (a worker's FAIL: the item's own failure) is\n"
                 "                     failed with its reason (3)\n"
                 "  --max-losses N     work lost N times through no fault of the item (its workers died,\n"
                 "                     stalled or restarted while computing it) fails it, saying so (10);\n"
                 "                     lost work is never charged as an attempt\n"
                 "  --hold-grace-ms N  a UNet result waits this long for its holder (a unet worker keeps its\n"
                 "                     latents, on disk too, until the image is written) to register again\n"
                 "                     after it died, before the item is made again from its prompt (300000)\n"
                 "  --max-ahead N      a job's items done with the text or unet stage and waiting for the\n"
                 "                     next are at most N plus the next stage's capacity; past that the\n"
                 "                     stage waits, so unet workers' spools and text workers' memory stay\n"
                 "                     bounded while the next stage is slow or down (256)\n"
                 "  --fault shard:N    test hook: die at step N (1-4) of writing a shard: its temp file\n"
                 "                     created, written, renamed, its first staged file removed\n"
                 "  --http HOST:PORT   answer health probes over HTTP: /healthz (alive: the loop turns),\n"
                 "                     /readyz (ready: state open, socket bound); off when not given\n"
                 "  --live-timeout-s N /healthz fails when the loop has not turned for N s (60)\n"
                 "  --curve-secret F   server secret key (Z85, 40 chars): enables CURVE encryption\n"
                 "  --allow F          public keys (Z85, one per line) of the workers and clients admitted\n"
                 "Without CURVE keys the coordinator only binds to loopback.\n"
                 "exit codes: 0 stopped by a signal, 1 failure, 2 usage error\n");
}

int main(int argc, char **argv)
{
    sd_broker_opts o = {.heartbeat_ms = 1000, .progress_timeout_ms = 120000, .max_attempts = 3, .max_losses = 10, .hold_grace_ms = 300000, .max_ahead = 256, .live_timeout_s = 60, .stop = &sd_stop_requested};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char *v = sd_flag_value("sdxl-coordinator", argc, argv, &i);
        if (!v)
            return 2;
        if (!strcmp(a, "--bind"))
            o.bind = v;
        else if (!strcmp(a, "--state"))
            o.state_dir = v;
        else if (!strcmp(a, "--heartbeat-ms")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 10, 86400000, &o.heartbeat_ms))
                return 2;
        } else if (!strcmp(a, "--progress-timeout-ms")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 10, 86400000, &o.progress_timeout_ms))
                return 2;
        } else if (!strcmp(a, "--max-attempts")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 1, 1000, &o.max_attempts))
                return 2;
        } else if (!strcmp(a, "--max-losses")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 1, 100000, &o.max_losses))
                return 2;
        } else if (!strcmp(a, "--http")) {
            o.http = v;
        } else if (!strcmp(a, "--live-timeout-s")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 1, 86400, &o.live_timeout_s))
                return 2;
        } else if (!strcmp(a, "--hold-grace-ms")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 0, 86400000, &o.hold_grace_ms))
                return 2;
        } else if (!strcmp(a, "--max-ahead")) {
            if (sd_parse_int_flag("sdxl-coordinator", a, v, 1, 100000000, &o.max_ahead))
                return 2;
        } else if (!strcmp(a, "--fault")) {
            int n;
            if (sscanf(v, "shard:%d", &n) != 1 || n < 1 || n > 4) {
                fprintf(stderr, "sdxl-coordinator: --fault must be shard:N with N from 1 to 4\n");
                return 2;
            }
            outputs_set_fault(n);
        } else if (!strcmp(a, "--curve-secret"))
            o.curve_secret_file = v;
        else if (!strcmp(a, "--allow"))
            o.allow_file = v;
        else {
            fprintf(stderr, "sdxl-coordinator: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.bind || !o.state_dir || o.heartbeat_ms < 10 || o.max_attempts < 1) {
        usage(stderr);
        return 2;
    }
    if (!!o.curve_secret_file != !!o.allow_file) {
        fprintf(stderr, "sdxl-coordinator: --curve-secret and --allow go together\n");
        return 2;
    }
    sd_stop_on_signals();
    sd_error err = {0};
    if (sd_broker_run(&o, &err) != SD_OK) {
        fprintf(stderr, "sdxl-coordinator: %s\n", err.msg);
        return 1;
    }
    return 0;
}
