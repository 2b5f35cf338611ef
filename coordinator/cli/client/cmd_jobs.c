/* cmd_jobs.c - the job CLI: `sdxl submit | status | wait | cancel | results |
 * workers`, clients of a coordinator (--coordinator ENDPOINT, default
 * $SDXL_COORDINATOR, else tcp://127.0.0.1:5555). Data on stdout (the job id
 * is the last word of submit's output), diagnostics on stderr. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "coordinator/cli/cli.h"
#include "common/model_spec.h"
#include "common/clock.h"
#include "common/fsutil.h"
#include "common/model_identity.h"
#include "common/parse_number.h"
#include "proto/curve.h"
#include "proto/message.h"
#include "coordinator/cli/client/client.h"
#include "coordinator/cli/client/prompt_file.h"
#include "common/gen_params.h"
#include "common/job_spec.h"

#define DEFAULT_ENDPOINT CLIENT_DEFAULT_ENDPOINT
/* how long a client command rides out a coordinator that does not answer */
#define RIDE_OUT_S 60.0

/* ---- submit ---- */

static void usage_submit(FILE *out)
{
    fprintf(out, "usage: sdxl submit PROMPTS.txt|PROMPTS.jsonl --out DIR [options]\n\n"
                 "Submits a dataset job: one prompt per line (.txt), or one JSON object per line (.jsonl) with\n"
                 "prompt and optionally negative_prompt, prompt_2, seed and any generate option; either may be\n"
                 "gzip-compressed (.txt.gz, .jsonl.gz). The file is read as a stream and sent in pieces, so\n"
                 "jobs of 10^7 prompts take little memory here. Prints the job id as the last word. The same\n"
                 "file and options to the same --out is the same job: an interrupted submit run again sends\n"
                 "the rest; a finished one run again skips what is done and retries what is not.\n"
                 "  --out DIR               output folder\n"
                 "  --no-watermark          leave out diffusers' invisible watermark (--watermark 0)\n"
                 "  --images-per-prompt N   (1)\n"
                 "  --layout webdataset|files (webdataset)\n"
                 "  --shard-size N          samples per tar shard (1000); a shard is written once its samples are done\n"
                 "  --model DIR|FILE|ID     run only on workers of this model: a folder or single file (with\n"
                 "                          --config, --refiner, --refiner-config and --variant as the workers\n"
                 "                          were started with) or an identity as `sdxl workers` shows it\n"
                 "                          (default: the model of the first worker that takes the job).\n"
                 "                          --lora and --vae below are the items' own, on top of it: workers\n"
                 "                          load them as items need them (sdxl-worker --model-cache)\n"
                 "  --coordinator ENDPOINT  (default $SDXL_COORDINATOR, else %s)\n"
                 "job-wide generation parameters (the defaults of every item; a JSONL item's own keys, spelt\n"
                 "as below without '--' and with '_', override them; --seed is the base seed: an item\n"
                 "without a seed gets N + its index):\n",
            DEFAULT_ENDPOINT);
    sd_gen_params_print_help(out, SD_GEN_PARAMS_SCOPE_JOB);
    fprintf(out, "exit codes: 0 submitted, 1 failure, 2 usage error\n");
}

/* --model: a model folder or single file (with --config, --refiner, --vae,
 * --lora and --variant, hashed exactly as a worker hashes what it loaded) or
 * an identity as `sdxl workers` prints it */
static int job_model_identity(const sd_model_spec *ms, char *out, size_t len)
{
    sd_error err = {0};
    const char *model = ms->model;
    if (!sd_path_exists(model)) {
        int other = ms->refiner || ms->vae || ms->nloras || ms->model_config;
        if (other || strncmp(model, "sdxl-", 5) || strlen(model) >= len) {
            cli_errorf("submit", "--model %s: neither a model folder or file nor a model identity (sdxl-...)%s", model,
                       other ? "; --config, --refiner, --vae and --lora need --model DIR|FILE" : "");
            return 1;
        }
        snprintf(out, len, "%s", model);
        return 0;
    }
    if (sd_model_spec_identity(ms, out, len, &err) != SD_OK) {
        cli_errorf("submit", "%s", err.msg);
        return 1;
    }
    return 0;
}

/* Pass 1 over the prompt file: every item checked (FILE:LINE and key named),
 * counted and hashed; nothing kept. 0, or an exit code after printing why. */
static int scan_items(prompt_file *pf, long long *total, uint64_t *hash)
{
    json_t *it;
    int r;
    *total = 0;
    *hash = SD_JOB_ITEMS_HASH_INIT;
    while ((r = prompt_file_next(pf, &it)) == 1) {
        *hash = sd_job_items_hash_add(*hash, it);
        json_decref(it);
        if (++*total > SD_JOB_MAX_ITEMS) {
            cli_errorf("submit", "%s: more than %d items", pf->path, SD_JOB_MAX_ITEMS);
            return 2;
        }
    }
    if (r < 0)
        return -r;
    if (*total == 0) {
        cli_errorf("submit", "%s holds no prompts", pf->path);
        return 2;
    }
    return 0;
}

/* pieces of at most this many items or bytes of JSON (the wire's header cap is 1 MiB) */
#define PIECE_ITEMS 4096
#define PIECE_BYTES (512 * 1024)

/* Pass 2: the items from index `from` on, piece by piece (SUBMIT_ITEMS);
 * progress on stderr for long ones. 0, or an exit code after printing why. */
static int send_items(client *c, prompt_file *pf, const char *job, long long from, long long total)
{
    if (prompt_file_rewind(pf))
        return 1;
    json_t *it, *piece = json_array();
    long long idx = 0, first = from;
    size_t bytes = 0;
    int r, tty = isatty(2);
    double t0 = sd_now_s(), said = t0;
    while ((r = prompt_file_next(pf, &it)) >= 0) {
        if (r == 1 && idx++ < from) { /* stored by an earlier, interrupted submit */
            json_decref(it);
            continue;
        }
        if (r == 1) {
            char *text = json_dumps(it, JSON_COMPACT);
            bytes += text ? strlen(text) + 1 : 0;
            free(text);
            json_array_append_new(piece, it);
        }
        size_t n = json_array_size(piece);
        if (n && (r == 0 || n >= PIECE_ITEMS || bytes >= PIECE_BYTES)) {
            json_t *reply = client_request(c, "SUBMIT_ITEMS",
                                           json_pack("{s:s, s:I, s:O}", "job_id", job, "first", (json_int_t)first,
                                                     "items", piece));
            if (!reply) {
                json_decref(piece);
                return 1;
            }
            json_decref(reply);
            first += (long long)n;
            json_array_clear(piece);
            bytes = 0;
            double now = sd_now_s();
            if ((tty || total >= 100000) && (now - said > 2.0 || r == 0)) {
                fprintf(stderr, "sdxl submit: %lld of %lld items sent (%.0f items/s)%s", first, total,
                        (double)(first - from) / (now - t0 > 0 ? now - t0 : 1), tty && r ? "\r" : "\n");
                said = now;
            }
        }
        if (r == 0)
            break;
    }
    json_decref(piece);
    return r < 0 ? -r : 0;
}

/* submit: check and hash the whole file, open the job (SUBMIT), send the
 * items it does not hold yet (an interrupted submit resumes), close it
 * (SUBMIT_END: a job submitted again retries what is not done). */
static int submit_job(const char *file, const char *out, const char *endpoint, const sd_model_spec *ms, const char *layout, long long shard, long long per_prompt,
                      uint64_t base_seed, json_t *defaults)
{
    prompt_file pf;
    int rc = prompt_file_open(&pf, file, defaults, per_prompt, base_seed);
    long long total = 0;
    uint64_t hash = 0;
    if (rc == 0)
        rc = scan_items(&pf, &total, &hash);
    char absout[PATH_MAX];
    sd_error err = {0};
    if (rc == 0 && sd_path_exists(out) && !sd_path_is_dir(out)) {
        cli_errorf("submit", "--out %s: not a folder", out);
        rc = 2;
    }
    if (rc == 0) {
        if (sd_mkdirs(out, &err) != SD_OK) {
            cli_errorf("submit", "--out %s", err.msg);
            rc = 1;
        } else if (!realpath(out, absout)) {
            cli_errorf("submit", "--out %s: %s", out, strerror(errno));
            rc = 1;
        }
    }
    char identity[80] = "";
    if (rc == 0 && ms->model && job_model_identity(ms, identity, sizeof identity))
        rc = 1;
    client c;
    if (rc == 0 && client_open(&c, endpoint, "submit", RIDE_OUT_S))
        rc = 1;
    if (rc) {
        prompt_file_close(&pf);
        return rc;
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
    json_t *spec = json_pack("{s:s, s:s, s:s, s:I, s:O, s:I, s:s}", "out", absout, "format",
                             json_string_value(json_object_get(defaults, "format")), "layout", layout, "shard_size",
                             (json_int_t)shard, "defaults", defaults, "total", (json_int_t)total, "items_hash", hex);
    if (identity[0])
        json_object_set_new(spec, "model", json_string(identity));
    json_t *r = client_request(&c, "SUBMIT", json_pack("{s:o}", "spec", spec));
    char job[64] = "";
    long long received = 0;
    int existed = 0;
    if (r) {
        snprintf(job, sizeof job, "%s", json_string_value(json_object_get(r, "job_id")));
        received = json_integer_value(json_object_get(r, "received"));
        existed = json_is_true(json_object_get(r, "existed"));
        json_decref(r);
        rc = received < total ? send_items(&c, &pf, job, received, total) : 0;
    } else {
        rc = 1;
    }
    json_t *end = rc == 0 ? client_request(&c, "SUBMIT_END", json_pack("{s:s}", "job_id", job)) : NULL;
    if (rc == 0 && !end)
        rc = 1;
    client_close(&c);
    prompt_file_close(&pf);
    if (rc)
        return rc;
    int again = json_is_true(json_object_get(end, "again"));
    json_decref(end);
    printf("submitted %lld items%s: job %s\n", total,
           again ? " (resumed: same spec and output; done items kept, failed, cancelled and missing ones made again)"
           : existed ? " (an interrupted submission completed)"
                     : "",
           job);
    return 0;
}

int cmd_submit(int argc, char **argv)
{
    const char *file = NULL, *out = NULL, *endpoint = NULL, *format = "png", *layout = "webdataset";
    sd_model_spec ms;
    memset(&ms, 0, sizeof ms);
    long long per_prompt = 1, shard = 1000;
    uint64_t base_seed = 0;
    const sd_gen_params_spec *spec;
    json_t *defaults = json_object();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_submit(stdout);
            json_decref(defaults);
            return 0;
        }
        if (a[0] != '-') {
            file = a;
            continue;
        }
        if (!strcmp(a, "--no-watermark")) { /* --watermark 0 */
            json_object_set_new(defaults, "watermark", json_integer(0));
            continue;
        }
        if ((spec = sd_gen_params_by_flag(a)) && spec->type == SD_GEN_PARAMS_TYPE_SWITCH) { /* on, job-wide */
            json_object_set_new(defaults, spec->key, json_true());
            continue;
        }
        const char *v = sd_flag_value("sdxl submit", argc, argv, &i);
        if (!v) {
            json_decref(defaults);
            return 2;
        }
        int bad = 0;
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--coordinator"))
            endpoint = v;
        else if (!strcmp(a, "--layout"))
            layout = v, bad = strcmp(v, "webdataset") && strcmp(v, "files");
        else if (!strcmp(a, "--images-per-prompt"))
            bad = sd_parse_int(v, 1, 100000, &per_prompt);
        else if (!strcmp(a, "--shard-size"))
            bad = sd_parse_int(v, 1, 1000000, &shard);
        else if (!strcmp(a, "--model"))
            ms.model = v;
        else if (!strcmp(a, "--config"))
            ms.model_config = v;
        else if (!strcmp(a, "--refiner"))
            ms.refiner = v;
        else if (!strcmp(a, "--refiner-config"))
            ms.refiner_config = v;
        else if (!strcmp(a, "--lora") && json_is_string(json_object_get(defaults, "loras"))) {
            /* repeated: one more on the job-wide list */
            char *all = NULL;
            if (asprintf(&all, "%s,%s", json_string_value(json_object_get(defaults, "loras")), v) < 0) {
                json_decref(defaults);
                return 1;
            }
            json_object_set_new(defaults, "loras", json_string(all));
            free(all);
        } else if (!strcmp(a, "--variant"))
            ms.variant = v, bad = strcmp(v, "fp16") != 0;
        else if ((spec = sd_gen_params_by_flag(a)) && (spec->scope & SD_GEN_PARAMS_SCOPE_JOB)) {
            /* a job-wide default, checked as the worker will check it */
            json_t *jv;
            sd_error perr = {0};
            if (sd_gen_params_flag_to_json(spec, v, &jv, &perr) != SD_OK) {
                cli_errorf("submit", "%s", perr.msg);
                json_decref(defaults);
                return 2;
            }
            if (spec->type == SD_GEN_PARAMS_TYPE_SEED) { /* the base seed: item i without one gets N + i */
                sd_seed_from_json(jv, &base_seed);
                json_decref(jv);
            } else if (spec->type == SD_GEN_PARAMS_TYPE_FORMAT) { /* job-wide: the outputs' file names */
                format = v;
                json_decref(jv);
            } else {
                json_object_set_new(defaults, spec->key, jv);
            }
        } else {
            cli_errorf("submit", "unknown option '%s'", a);
            usage_submit(stderr);
            json_decref(defaults);
            return 2;
        }
        if (bad) {
            cli_errorf("submit", "%s: '%s' is not a valid value", a, v);
            json_decref(defaults);
            return 2;
        }
    }
    if (!file || !out) {
        usage_submit(stderr);
        json_decref(defaults);
        return 2;
    }
    json_object_set_new(defaults, "format", json_string(format));
    int rc = submit_job(file, out, endpoint, &ms, layout, shard, per_prompt, base_seed, defaults);
    json_decref(defaults);
    return rc;
}

/* ---- status / wait / cancel / results / workers ---- */

typedef struct {
    const char *job, *endpoint;
    int json, timeout_s;
} common_args;

static int parse_common(const char *cmd, int argc, char **argv, common_args *a, int need_job)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            a->json = 1;
        else if (!strcmp(argv[i], "--coordinator") && i + 1 < argc)
            a->endpoint = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            long long t;
            if (sd_parse_int(argv[++i], 0, 100000000, &t)) {
                cli_errorf(cmd, "--timeout must be a whole number of seconds, not '%s'", argv[i]);
                return 2;
            }
            a->timeout_s = (int)t;
        }
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sdxl %s %s[--json] [--coordinator ENDPOINT]%s\n", cmd, need_job ? "JOB " : "[JOB] ",
                   !strcmp(cmd, "wait") ? " [--timeout S]\nexit codes: 0 all done, 1 some failed or cancelled (or a "
                                          "timeout), 2 usage error"
                                        : "");
            return 1;
        } else if (argv[i][0] != '-' && !a->job)
            a->job = argv[i];
        else {
            cli_errorf(cmd, "unknown option '%s'", argv[i]);
            return 2;
        }
    }
    if (need_job && !a->job) {
        cli_errorf(cmd, "a JOB id is required");
        return 2;
    }
    return 0;
}

static void print_job_row(json_t *j)
{
    printf("%-22s %-10s %8lld %8lld %8lld %8lld\n", json_string_value(json_object_get(j, "id")),
           json_string_value(json_object_get(j, "state")), (long long)json_integer_value(json_object_get(j, "done")),
           (long long)json_integer_value(json_object_get(j, "failed")),
           (long long)(json_integer_value(json_object_get(j, "pending")) + json_integer_value(json_object_get(j, "encoded")) +
                       json_integer_value(json_object_get(j, "denoised"))),
           (long long)json_integer_value(json_object_get(j, "total")));
    /* why it does not move, under its row (as `sdxl wait` says it) */
    const char *why = json_string_value(json_object_get(j, "paused"));
    if (why)
        printf("  paused: %s\n", why);
    if ((why = json_string_value(json_object_get(j, "waiting"))))
        printf("  waiting: %s\n", why);
}

/* The start every client command shares: its arguments, then a connection.
 * -1 when both are ready, else the exit code (0 after --help). */
static int open_command(const char *cmd, int argc, char **argv, int need_job, common_args *a, client *c)
{
    int pr = parse_common(cmd, argc, argv, a, need_job);
    if (pr)
        return pr == 1 ? 0 : pr;
    /* wait rides out a restart until its own --timeout; the others a minute */
    return client_open(c, a->endpoint, cmd, !strcmp(cmd, "wait") ? a->timeout_s : RIDE_OUT_S) ? 1 : -1;
}

int cmd_status(int argc, char **argv)
{
    common_args a;
    client c;
    int rc = open_command("status", argc, argv, 0, &a, &c);
    if (rc >= 0)
        return rc;
    json_t *r = client_request(&c, "STATUS", a.job ? json_pack("{s:s}", "job_id", a.job) : NULL);
    client_close(&c);
    if (!r)
        return 1;
    json_t *jobs = a.job ? json_pack("[O]", json_object_get(r, "job")) : json_incref(json_object_get(r, "jobs"));
    if (a.json) {
        char *s = json_dumps(a.job ? json_object_get(r, "job") : jobs, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        printf("%-22s %-10s %8s %8s %8s %8s\n", "job", "state", "done", "failed", "waiting", "total");
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
            print_job_row(j);
    }
    json_decref(jobs);
    json_decref(r);
    return 0;
}

int cmd_wait(int argc, char **argv)
{
    common_args a;
    client c;
    int rc = open_command("wait", argc, argv, 1, &a, &c);
    if (rc >= 0)
        return rc;
    int tty = isatty(2);
    rc = 1;
    double t0 = sd_now_s();
    long long done0 = -1;
    char last_why[300] = "";
    for (;;) {
        json_t *r = client_request(&c, "STATUS", json_pack("{s:s}", "job_id", a.job));
        if (!r)
            break;
        json_t *j = json_object_get(r, "job");
        long long done = json_integer_value(json_object_get(j, "done")),
                  failed = json_integer_value(json_object_get(j, "failed")),
                  total = json_integer_value(json_object_get(j, "total"));
        const char *state = json_string_value(json_object_get(j, "state"));
        double el = sd_now_s() - t0;
        if (done0 < 0)
            done0 = done;
        double rate = el > 0 ? (double)(done - done0) / el : 0;
        if (tty) {
            fprintf(stderr, "\r%s: %lld done, %lld failed, %lld total  %.2f images/s  ETA %s   ", a.job, done, failed,
                    total, rate, rate > 0 ? "" : "?");
            if (rate > 0)
                fprintf(stderr, "\b\b\b%.0fs   ", (double)(total - done - failed) / rate);
        }
        /* why a job does not move: outputs that cannot be written, or no
         * worker of its model (said once each time it changes) */
        const char *why = json_string_value(json_object_get(j, "paused"));
        if (!why)
            why = json_string_value(json_object_get(j, "waiting"));
        if (why && strcmp(why, last_why)) {
            fprintf(stderr, "%s%s: waiting: %s\n", tty ? "\n" : "", a.job, why);
            snprintf(last_why, sizeof last_why, "%s", why);
        } else if (!why) {
            last_why[0] = '\0';
        }
        int finished = strcmp(state, "running") != 0;
        if (finished) {
            if (tty)
                fputc('\n', stderr);
            printf("%s %s: %lld done, %lld failed, %lld total\n", a.job, state, done, failed, total);
            json_t *f;
            size_t i;
            json_array_foreach(json_object_get(j, "failures"), i, f)
                fprintf(stderr, "item %lld failed: %s\n", (long long)json_integer_value(json_object_get(f, "item")),
                        json_string_value(json_object_get(f, "error")));
            /* 0 only when every item's image is there */
            rc = (!strcmp(state, "done") && failed == 0 && done == total) ? 0 : 1;
            json_decref(r);
            break;
        }
        json_decref(r);
        if (a.timeout_s > 0 && el > a.timeout_s) {
            cli_errorf("wait", "%s still running after %d s", a.job, a.timeout_s);
            break;
        }
        usleep(200000);
    }
    client_close(&c);
    return rc;
}

static int simple(const char *cmd, const char *type, int argc, char **argv, int need_job)
{
    common_args a;
    client c;
    int rc = open_command(cmd, argc, argv, need_job, &a, &c);
    if (rc >= 0)
        return rc;
    json_t *r = client_request(&c, type, a.job ? json_pack("{s:s}", "job_id", a.job) : NULL);
    client_close(&c);
    if (!r)
        return 1;
    json_object_del(r, "v");
    json_object_del(r, "type");
    if (a.json || !strcmp(type, "CANCEL") || !strcmp(type, "RETRY")) {
        char *s = json_dumps(r, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        printf("%-28s %-6s %8s %8s %10s %8s %s\n", "worker", "role", "capacity", "inflight", "items", "busy", "model");
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(r, "workers"), i, w)
            printf("%-28s %-6s %8lld %8lld %10lld %7.0f%% %s\n", json_string_value(json_object_get(w, "id")),
                   json_string_value(json_object_get(w, "role")), (long long)json_integer_value(json_object_get(w, "capacity")),
                   (long long)json_integer_value(json_object_get(w, "inflight")),
                   (long long)json_integer_value(json_object_get(w, "items_done")),
                   100 * json_number_value(json_object_get(w, "busy_fraction")),
                   json_string_value(json_object_get(w, "model")));
    }
    json_decref(r);
    return 0;
}

int cmd_cancel(int argc, char **argv)
{
    return simple("cancel", "CANCEL", argc, argv, 1);
}

int cmd_retry(int argc, char **argv)
{
    return simple("retry", "RETRY", argc, argv, 1);
}

/* results: the done items page by page (a 10^7-item job is never one
 * message), one line each, or one JSON object a line with --json */
int cmd_results(int argc, char **argv)
{
    common_args a;
    client c;
    int rc = open_command("results", argc, argv, 1, &a, &c);
    if (rc >= 0)
        return rc;
    for (long long after = -1;;) {
        json_t *r = client_request(&c, "RESULTS", json_pack("{s:s, s:I, s:i}", "job_id", a.job, "after",
                                                            (json_int_t)after, "limit", 10000));
        if (!r) {
            rc = 1;
            break;
        }
        json_t *items = json_object_get(r, "items"), *it;
        size_t i, n = json_array_size(items);
        json_array_foreach(items, i, it) {
            json_t *info = json_object_get(it, "info");
            after = json_integer_value(json_object_get(it, "idx"));
            if (a.json) {
                char *line = json_dumps(it, JSON_COMPACT | JSON_SORT_KEYS);
                puts(line ? line : "{}");
                free(line);
            } else {
                const char *prompt = json_string_value(json_object_get(info, "prompt"));
                uint64_t seed = 0;
                sd_seed_from_json(json_object_get(info, "seed"), &seed);
                printf("%08lld seed=%llu %s\n", after, (unsigned long long)seed,
                       prompt ? prompt : "");
            }
        }
        json_decref(r);
        if (n < 10000) {
            rc = 0;
            break;
        }
    }
    client_close(&c);
    return rc;
}

int cmd_workers(int argc, char **argv)
{
    return simple("workers", "WORKERS", argc, argv, 0);
}
