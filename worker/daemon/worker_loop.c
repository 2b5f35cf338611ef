/* worker_loop.c - see worker_loop.h. */
#include "worker/daemon/worker_loop.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/hashmap.h"
#include "common/service_notify.h"
#include "common/model_identity.h"
#include "proto/curve.h"
#include "proto/http_probe.h"
#include "proto/metrics.h"
#include "proto/message.h"
#include "proto/monitor.h"
#include "proto/tensor_blob.h"
#include "worker/daemon/cfg_pair.h"
#include "worker/daemon/data_plane.h"
#include "worker/daemon/direct_out.h"
#include "worker/engine/pipeline/image_meta.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/stage_backends.h"
#include "worker/daemon/worker_internal.h"

void wlog(const worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "worker %s: ", w->o->worker_id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void send_simple(worker *w, const char *type, json_t *fields)
{
    sd_msg m;
    sd_error err;
    if (!w->sock || sd_msg_new(&m, type, &err) != SD_OK) { /* a pair's follower has no coordinator */
        json_decref(fields);
        return;
    }
    json_object_set_new(m.hdr, "worker_id", json_string(w->o->worker_id));
    if (fields)
        json_object_update(m.hdr, fields);
    json_decref(fields);
    sd_msg_send(w->sock, NULL, 0, &m, &err);
    sd_msg_free(&m);
    w->last_sent = sd_now_s();
}

static void send_register(worker *w)
{
    json_t *f = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "role", w->o->role, "capacity", w->o->capacity, "model",
                          w->identity, "devices", w->o->device, "cfg_split",
                          w->pair ? sd_cfg_pair_transport(w->pair) : "batch", "session", w->session);
    if (w->outbox_task) /* the task whose result is not yet confirmed */
        json_object_set_new(f, "holding", json_integer(w->outbox_task));
    if (w->data) {
        json_object_set_new(f, "data", json_string(w->data_ep));
        /* how many outputs it keeps in memory: the coordinator does not let
         * text workers make more than they can hold */
        json_object_set_new(f, "hold", json_integer(w->o->hold));
    }
    send_simple(w, "REGISTER", f);
    w->last_heard = w->last_register = sd_now_s();
}

/* Asked to register (a coordinator that restarted, or one that lost us):
 * once per heartbeat interval at most, however many requests queued up
 * while this worker computed. */
static void register_again(worker *w)
{
    if (w->registered) {
        sd_http_set_ready(w->probe, 0, "registering again with the coordinator (it went silent or lost us)");
        sd_service_status("registering again with the coordinator (it went silent or lost us)");
    }
    w->registered = 0;
    if (sd_now_s() - w->last_register >= w->o->heartbeat_ms / 1000.0)
        send_register(w);
}

static void outbox_clear(worker *w)
{
    if (w->outbox_task)
        sd_msg_free(&w->outbox);
    w->outbox_task = 0;
}

/* Sends a task's RESULT or FAIL and keeps a copy until it is confirmed. */
static void report(worker *w, sd_msg *m, long long tid)
{
    sd_error err = {0};
    json_object_set_new(m->hdr, "worker_id", json_string(w->o->worker_id));
    outbox_clear(w);
    if (sd_msg_clone(&w->outbox, m, &err) == SD_OK)
        w->outbox_task = tid;
    else
        wlog(w, "result of task %lld not kept for a resend: %s", tid, err.msg);
    if (sd_msg_send(w->sock, NULL, 0, m, &err) != SD_OK)
        wlog(w, "result of task %lld not sent (kept for a resend): %s", tid, err.msg);
    w->last_sent = sd_now_s();
}

static void report_fail(worker *w, long long tid, const char *reason)
{
    w->m.tasks_failed++;
    sd_msg m;
    sd_error err = {0};
    if (!w->sock || sd_msg_new(&m, "FAIL", &err) != SD_OK)
        return;
    json_object_set_new(m.hdr, "task_id", json_integer(tid));
    json_object_set_new(m.hdr, "reason", json_string(reason));
    report(w, &m, tid);
    sd_msg_free(&m);
}

static void heartbeat(worker *w)
{
    send_simple(w, "HEARTBEAT", w->task_id ? json_pack("{s:I}", "task_id", (json_int_t)w->task_id) : NULL);
}

/* its loops turn: what liveness probes and systemd's watchdog ask */
static void loops_turn(worker *w)
{
    sd_http_alive(w->probe);
    sd_service_watchdog();
}

/* between denoising steps: heartbeat, and the fault hooks */
static void on_step(void *user, const char *stage, int step, int steps)
{
    (void)stage;
    (void)steps;
    worker *w = user;
    if (w->o->die_at_step >= 0 && step >= w->o->die_at_step) {
        wlog(w, "fault hook: dying at step %d", step);
        raise(SIGKILL);
    }
    if (w->o->stall_at_step >= 0 && step >= w->o->stall_at_step) {
        wlog(w, "fault hook: stalling at step %d", step);
        for (;;)
            sleep(60);
    }
    if (w->o->freeze_at_step >= 0 && step >= w->o->freeze_at_step && !w->froze) {
        w->froze = 1;
        wlog(w, "fault hook: freezing (SIGSTOP) at step %d", step);
        raise(SIGSTOP);
        wlog(w, "fault hook: resumed after the freeze");
    }
    if (sd_now_s() - w->last_sent >= w->o->heartbeat_ms / 1000.0 / 2)
        heartbeat(w);
    w->m.steps++;
    loops_turn(w); /* the compute loop turns */
}

/* the engine's CFG split hook over this worker's pair */
static sd_status pair_exchange(void *user, const float *mine, float *all, size_t n, sd_error *err)
{
    return sd_cfg_pair_exchange(user, mine, all, n, err);
}

static const sd_msg_tensor *need(const sd_msg *m, const char *base, int k, sd_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", base, k);
    const sd_msg_tensor *t = sd_msg_tensor_get(m, name);
    if (!t || t->dtype != SD_DTYPE_F32)
        sd_fail(err, SD_ERR_FORMAT, "task lacks F32 tensor '%s'", name);
    return t && t->dtype == SD_DTYPE_F32 ? t : NULL;
}

/* Rebuilds a text result from tensors emb/pool (and remb/rpool) of item k. */
static sd_status text_from_msg(const sd_msg *m, int k, sd_text_result *t, sd_error *err)
{
    memset(t, 0, sizeof *t);
    char name[64];
    snprintf(name, sizeof name, "emb_%d", k);
    const sd_msg_tensor *e = sd_msg_tensor_get(m, name);
    if (e) {
        const sd_msg_tensor *pl = need(m, "pool", k, err);
        if (!pl || e->ndim != 3 || pl->ndim != 2)
            return sd_fail(err, SD_ERR_FORMAT, "task: bad text conditioning of item %d", k);
        t->cfg = e->shape[0] == 2;
        t->S = (int)e->shape[1];
        t->D = (int)e->shape[2];
        t->P = (int)pl->shape[1];
        t->embeds = (float *)e->data; /* borrowed from the message */
        t->pooled = (float *)pl->data;
    }
    snprintf(name, sizeof name, "remb_%d", k);
    const sd_msg_tensor *re = sd_msg_tensor_get(m, name);
    if (re) {
        const sd_msg_tensor *rp = need(m, "rpool", k, err);
        if (!rp || re->ndim != 3)
            return sd_fail(err, SD_ERR_FORMAT, "task: bad refiner conditioning of item %d", k);
        t->cfg = re->shape[0] == 2;
        t->rS = (int)re->shape[1];
        t->rD = (int)re->shape[2];
        t->rP = (int)rp->shape[1];
        t->r_embeds = (float *)re->data;
        t->r_pooled = (float *)rp->data;
    }
    return SD_OK;
}

static sd_status add_f32(sd_msg *r, const char *base, int k, int ndim, const int64_t *shape, const float *data,
                         sd_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", base, k);
    return sd_msg_add_tensor(r, name, SD_DTYPE_F32, ndim, shape, data, err);
}

typedef struct {
    float *bufs[64];
    int n;
    uint8_t *images[16];
    int ni;
} keep;

static float *kept_copy(keep *kp, const float *src, size_t n)
{
    float *c = malloc(n * sizeof *c + 1);
    if (c && kp->n < 64) {
        memcpy(c, src, n * sizeof *c);
        kp->bufs[kp->n++] = c;
        return c;
    }
    free(c);
    return NULL;
}

static sd_status run_item(worker *w, const sd_msg *task, int k, json_t *item, sd_msg *res, json_t *out_info,
                          keep *kp, sd_error *err)
{
    json_t *params = json_object_get(item, "params");
    sd_gen_params g;
    /* checked again here, as at submit: a bad field fails the item with the
     * key at fault instead of running with a default */
    if (sd_gen_params_from_json(&g, params, err) != SD_OK)
        return sd_error_prefix(err, err->code, "item %d: ", k);
    if (w->o->fail_items)
        return sd_fail(err, SD_ERR_INVALID, "item %d: fault hook: this item fails", k);
    /* the item's own LoRAs or VAE: the model that has them */
    if (worker_select_model(w, &g, err) != SD_OK)
        return sd_error_prefix(err, err->code, "item %d: ", k);
    double t0 = sd_now_s();
    sd_status st = SD_OK;
    const char *role = w->o->role;
    if (!strcmp(role, "text")) {
        sd_text_result t;
        SD_TRY(sd_stage_text(&w->p, &g, &t, err));
        int64_t es[3] = {1 + t.cfg, t.S, t.D}, ps[2] = {1 + t.cfg, t.P};
        st = add_f32(res, "emb", k, 3, es, kept_copy(kp, t.embeds, (size_t)es[0] * es[1] * es[2]), err);
        if (st == SD_OK)
            st = add_f32(res, "pool", k, 2, ps, kept_copy(kp, t.pooled, (size_t)ps[0] * ps[1]), err);
        if (st == SD_OK && t.r_embeds) {
            int64_t rs[3] = {1 + t.cfg, t.rS, t.rD}, rps[2] = {1 + t.cfg, t.rP};
            st = add_f32(res, "remb", k, 3, rs, kept_copy(kp, t.r_embeds, (size_t)rs[0] * rs[1] * rs[2]), err);
            if (st == SD_OK)
                st = add_f32(res, "rpool", k, 2, rps, kept_copy(kp, t.r_pooled, (size_t)rps[0] * rps[1]), err);
        }
        sd_text_result_free(&t);
    } else if (!strcmp(role, "unet")) {
        sd_text_result t;
        SD_TRY(text_from_msg(task, k, &t, err));
        if (!t.embeds)
            return sd_fail(err, SD_ERR_FORMAT, "unet task without text conditioning for item %d", k);
        sd_cfg_split split = {w->pair ? sd_cfg_pair_rank(w->pair) : 0, pair_exchange, w->pair};
        sd_gen_hooks hooks = {on_step, NULL, w, w->pair ? &split : NULL};
        sd_latent_result lat;
        SD_TRY(sd_stage_unet(&w->p, &g, &t, &hooks, &lat, err));
        st = add_f32(res, "lat", k, 4, lat.shape,
                     kept_copy(kp, lat.latents, (size_t)(lat.shape[1] * lat.shape[2] * lat.shape[3])), err);
        json_object_set_new(out_info, "refiner_pending", json_boolean(lat.refiner_pending));
        /* the refiner's conditioning travels on to the final stage */
        if (st == SD_OK && t.r_embeds) {
            int64_t rs[3] = {1 + t.cfg, t.rS, t.rD}, rps[2] = {1 + t.cfg, t.rP};
            st = add_f32(res, "remb", k, 3, rs, t.r_embeds, err);
            if (st == SD_OK)
                st = add_f32(res, "rpool", k, 2, rps, t.r_pooled, err);
        }
        sd_latent_result_free(&lat);
    } else {
        sd_text_result t;
        SD_TRY(text_from_msg(task, k, &t, err));
        const sd_msg_tensor *lt = need(task, "lat", k, err);
        if (!lt || lt->ndim != 4)
            return sd_fail(err, SD_ERR_FORMAT, "final task without latents for item %d", k);
        sd_latent_result lat;
        memcpy(lat.shape, lt->shape, sizeof lat.shape);
        lat.latents = (float *)lt->data;
        json_t *prev = json_object_get(item, "info");
        lat.refiner_pending = json_is_true(json_object_get(prev, "refiner_pending"));
        sd_gen_hooks hooks = {on_step, NULL, w, NULL};
        sd_image_result img;
        SD_TRY(sd_stage_final(&w->p, &g, &t, &lat, &hooks, &img, err));
        sd_image_meta meta;
        sd_image_meta_fill(&meta, &g, img.width, img.height, &w->p);
        uint8_t *bytes = NULL;
        size_t len = 0;
        st = sd_image_meta_encode(&meta, (sd_image_format)g.format, img.rgb, img.width, img.height, &bytes, &len, err);
        if (st == SD_OK && kp->ni < 16) {
            kp->images[kp->ni++] = bytes;
            char name[64];
            int64_t shape[1] = {(int64_t)len};
            snprintf(name, sizeof name, "image_%d", k);
            st = sd_msg_add_tensor(res, name, SD_DTYPE_U8, 1, shape, bytes, err);
            sd_image_meta_json(out_info, &meta, &g, img.width, img.height, &w->p);
        } else {
            free(bytes);
        }
        sd_image_result_free(&img);
    }
    char key[32];
    snprintf(key, sizeof key, "%s_worker", role);
    json_object_set_new(out_info, key, json_string(w->o->worker_id));
    snprintf(key, sizeof key, "%s_seconds", role);
    json_object_set_new(out_info, key, json_real(sd_now_s() - t0));
    return st;
}

/* Runs a task's items and reports the result to the coordinator. A CFG
 * pair's leader first hands the task to its follower, which runs the same
 * items (its half of each step) and reports nothing. Returns the task's
 * status: a pair cannot recover from a failed task (the two sides may be out
 * of step), so the caller ends it. */
static sd_status run_task(worker *w, const sd_msg *given)
{
    sd_error err = {0};
    long long tid;
    if (sd_msg_get_int(given, "task_id", 1, 1ll << 62, &tid, &err) != SD_OK) {
        wlog(w, "bad task: %s", err.msg);
        return SD_OK;
    }
    /* inputs held by their producers first: the follower of a pair gets them too */
    sd_msg full;
    int have_full = 0;
    void *blobs[MAX_FETCH] = {0};
    json_t *lost = NULL;
    if (worker_fetch_inputs(w, given, &full, &have_full, blobs, &lost, &err) != SD_OK || lost) {
        sd_msg m;
        sd_error e2 = {0};
        if (sd_data_lost_inputs_msg(&m, tid, lost, &e2) == SD_OK) {
            if (!lost) /* the fetch itself broke: its reason, the items still not charged */
                json_object_set_new(m.hdr, "reason", json_string(err.msg));
            report(w, &m, tid);
            sd_msg_free(&m);
        }
        worker_free_fetched(&full, have_full, blobs);
        w->last_sent = w->last_heard = sd_now_s();
        return SD_OK;
    }
    const sd_msg *task = have_full ? &full : given;
    if (w->pair && sd_cfg_pair_rank(w->pair) == 0 && sd_cfg_pair_send_task(w->pair, task, &err) != SD_OK) {
        wlog(w, "task %lld not handed to the cfg pair's follower: %s", tid, err.msg);
        report_fail(w, tid, err.msg);
        return SD_ERR_IO;
    }
    w->task_id = tid;
    json_t *items = json_object_get(task->hdr, "items");
    sd_msg res;
    sd_msg_new(&res, "RESULT", &err);
    json_object_set_new(res.hdr, "task_id", json_integer(tid)); /* worker_id: report() adds it */
    json_t *out_items = json_array();
    keep kp = {0};
    sd_status st = json_is_array(items) && json_array_size(items) > 0
                       ? SD_OK
                       : sd_fail(&err, SD_ERR_FORMAT, "task without items");
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        if (st != SD_OK)
            break;
        json_t *info = json_deep_copy(json_object_get(item, "info"));
        if (!json_is_object(info)) {
            json_decref(info);
            info = json_object();
        }
        double t_item = sd_now_s();
        st = run_item(w, task, (int)i, item, &res, info, &kp, &err);
        if (st == SD_OK) {
            w->m.items++;
            sd_hist_observe(&w->m.item_s, sd_now_s() - t_item);
        }
        w->m.busy_s += sd_now_s() - t_item;
        json_array_append_new(out_items, json_pack("{s:O, s:o}", "idx", json_object_get(item, "idx"), "info", info));
        heartbeat(w);
    }
    if (st == SD_OK && w->sock && !strcmp(w->o->role, "final"))
        worker_write_outputs(w, task, &res, out_items); /* or the coordinator writes them */
    if (st == SD_OK && !w->sock) {
        json_decref(out_items); /* a follower: the leader reports */
    } else if (st == SD_OK && w->data && (st = worker_hold_outputs(w, task, &res, out_items, &err)) != SD_OK) {
        json_decref(out_items);
        wlog(w, "task %lld failed: %s", tid, err.msg);
        report_fail(w, tid, err.msg);
    } else if (st == SD_OK) {
        json_object_set_new(res.hdr, "items", out_items);
        report(w, &res, tid);
    } else {
        json_decref(out_items);
        wlog(w, "task %lld failed: %s", tid, err.msg);
        report_fail(w, tid, err.msg);
    }
    sd_msg_free(&res);
    for (int k = 0; k < kp.n; k++)
        free(kp.bufs[k]);
    for (int k = 0; k < kp.ni; k++)
        free(kp.images[k]);
    worker_free_fetched(&full, have_full, blobs);
    w->task_id = 0;
    /* we were computing, not listening: what the coordinator sent meanwhile
     * is queued, so silence is judged from now on */
    w->last_sent = w->last_heard = sd_now_s();
    return st;
}

/* A CFG pair's follower: runs what its leader hands on until stopped. */
static sd_status follow(worker *w, sd_error *err)
{
    wlog(w, "following the cfg pair's leader at %s (predictions over %s)", w->o->cfg_peer,
         sd_cfg_pair_transport(w->pair));
    sd_http_set_ready(w->probe, 1, NULL); /* its leader serves the coordinator */
    sd_service_ready("following its cfg pair's leader");
    while (!*w->o->stop) {
        loops_turn(w);
        if (!sd_cfg_pair_poll(w->pair, 100)) {
            if (sd_cfg_pair_peer_gone(w->pair))
                return sd_fail(err, SD_ERR_IO, "the cfg pair's leader disconnected: stopping (restart both workers)");
            continue;
        }
        sd_msg m;
        SD_TRY(sd_cfg_pair_recv_task(w->pair, &m, err));
        sd_status st = sd_msg_kind_of(&m) != SD_MSG_KIND_TASK
                           ? sd_fail(err, SD_ERR_FORMAT, "cfg pair: the leader sent %s, not a TASK", sd_msg_type(&m))
                           : run_task(w, &m);
        sd_msg_free(&m);
        if (st != SD_OK)
            return st == SD_ERR_FORMAT ? st : sd_fail(err, st, "a task failed: the cfg pair is out of step, stopping");
    }
    return SD_OK;
}

static sd_status setup_socket(worker *w, void *ctx, sd_error *err)
{
    w->sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, w->o->worker_id, strlen(w->o->worker_id));
    if (w->o->curve_server_key) {
        SD_TRY(sd_curve_client_setup(w->sock, w->o->curve_server_key, w->o->curve_secret, w->o->curve_public, err));
        /* a refused key shows only as a handshake event: watch for it */
        w->mon = sd_monitor_open(ctx, w->sock, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                                   ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    }
    if (zmq_connect(w->sock, w->o->coordinator) != 0)
        return sd_fail(err, SD_ERR_IO, "--coordinator %s: %s", w->o->coordinator, zmq_strerror(zmq_errno()));
    return SD_OK;
}

/* CURVE handshake events. A ZAP refusal (HANDSHAKE_FAILED_AUTH) is the
 * coordinator's verdict on this key: said at once, and the worker gives up
 * (returns 1) when no REGISTER was answered within 10 heartbeat intervals (at
 * least 3 s) of it. Any other failed handshake is ambiguous: a wrong
 * --curve-server-key looks the same from here as a connection that broke
 * mid-handshake (a proxy whose coordinator is down or restarting, a network
 * fault), so it is said once per streak and retried, never a reason to exit:
 * a worker must not die of a network fault. A handshake that succeeds ends a
 * streak. */
static int curve_refused(worker *w, sd_error *err)
{
    unsigned event, value;
    while (sd_monitor_next(w->mon, &event, &value)) {
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            w->handshake_failing = 0;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            if (!w->refused_since) {
                w->refused_since = sd_now_s();
                wlog(w, "the coordinator refused this worker's CURVE key (ZAP status %u): its public key is not in "
                        "the coordinator's --allow file", value);
            }
        } else if (!w->handshake_failing) {
            w->handshake_failing = 1;
            wlog(w, "the CURVE handshake with the coordinator at %s failed: a wrong --curve-server-key (the "
                    "coordinator's public key, printed when it starts), or the connection broke before it ended (a "
                    "proxy whose coordinator is down, a network fault); retrying",
                 w->o->coordinator);
        }
    }
    double deadline = 10.0 * w->o->heartbeat_ms / 1000.0;
    if (deadline < 3.0)
        deadline = 3.0;
    if (w->refused_since && !w->registered && sd_now_s() - w->refused_since > deadline) {
        sd_fail(err, SD_ERR_INVALID, "the coordinator at %s refused this worker's CURVE key for %.0f s: giving up",
                w->o->coordinator, deadline);
        return 1;
    }
    return 0;
}

/* Process liveness: a thread with its own socket says "alive" every
 * interval, so a long step without progress reports (a VAE decode on a CPU)
 * does not look like a dead process. Whether the compute itself moves is
 * judged from the task heartbeats the denoising loop sends (on_step). */
typedef struct {
    void *sock; /* connected by the main thread (its CURVE setup checked there) */
    const sd_worker_opts *o;
    volatile int quit;
} alive_state;

/* The liveness socket, with the same keys as the main one: a failure here
 * refuses to start, as the main socket's does. */
static sd_status alive_socket(void *ctx, const sd_worker_opts *o, void **out, sd_error *err)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return sd_fail(err, SD_ERR_IO, "liveness socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    sd_status st = SD_OK;
    if (o->curve_server_key)
        st = sd_curve_client_setup(s, o->curve_server_key, o->curve_secret, o->curve_public, err);
    if (st == SD_OK && zmq_connect(s, o->coordinator) != 0)
        st = sd_fail(err, SD_ERR_IO, "--coordinator %s: %s", o->coordinator, zmq_strerror(zmq_errno()));
    if (st != SD_OK) {
        zmq_close(s);
        return sd_error_prefix(err, st, "liveness socket: ");
    }
    *out = s;
    return SD_OK;
}

static void *alive_thread(void *arg)
{
    alive_state *a = arg;
    void *s = a->sock;
    while (!a->quit && !*a->o->stop) {
        sd_msg m;
        sd_error err;
        if (sd_msg_new(&m, "HEARTBEAT", &err) == SD_OK) {
            json_object_set_new(m.hdr, "worker_id", json_string(a->o->worker_id));
            json_object_set_new(m.hdr, "alive", json_true());
            sd_msg_send(s, NULL, 0, &m, &err);
            sd_msg_free(&m);
        }
        /* replies to this socket are not needed */
        char sink[256];
        while (zmq_recv(s, sink, sizeof sink, ZMQ_DONTWAIT) >= 0)
            ;
        usleep((useconds_t)a->o->heartbeat_ms * 1000u);
    }
    zmq_close(s);
    return NULL;
}

sd_status sd_worker_run(const sd_worker_opts *o, sd_error *err)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    w->o = o;
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)time(NULL);
    snprintf(w->session, sizeof w->session, "%016llx", (unsigned long long)r);
    int stages = !strcmp(o->role, "text") ? SD_STAGE_TEXT : !strcmp(o->role, "unet") ? SD_STAGE_UNET : SD_STAGE_FINAL;
    /* first: an engine probing it sees it alive while the model loads */
    sd_status st = SD_OK;
    int http_port = 0;
    if (o->http && (st = sd_http_start(&w->probe, o->http, o->live_timeout_s, &http_port, err)) == SD_OK) {
        sd_http_set_ready(w->probe, 0, "loading the model");
        wlog(w, "health probes on http port %d (/healthz, /readyz)", http_port);
    }
    if (st == SD_OK)
        st = sd_stage_backends_open(&w->sb, o->device, o->dtype, stages, err);
    w->be = w->sb.be;
    double t_load = sd_now_s();
    w->stages = stages;
    if (st == SD_OK)
        st = sd_pipeline_load(&w->p, w->sb.be, w->sb.f32_be, &o->spec, stages, err);
    if (st == SD_OK)
        sd_model_spec_key(&o->spec, w->cur_key, sizeof w->cur_key);
    w->m.load_s = sd_now_s() - t_load;
    /* the identity covers the refiner, VAE and LoRAs too: jobs go only to
     * workers that loaded the same */
    if (st == SD_OK)
        snprintf(w->identity, sizeof w->identity, "%s", w->p.identity);
    void *ctx = zmq_ctx_new();
    if (st == SD_OK && o->cfg_peer) {
        wlog(w, "cfg pair rank %d: waiting for the peer at %s", o->cfg_rank, o->cfg_peer);
        st = sd_cfg_pair_open(&w->pair, ctx, o->cfg_peer, o->cfg_rank, o->device, w->identity, o->cfg_timeout_ms, err);
    }
    /* a follower serves its leader only, never the coordinator */
    int following = st == SD_OK && w->pair && o->cfg_rank == 1;
    if (following)
        st = follow(w, err);
    if (st == SD_OK && !following)
        st = setup_socket(w, ctx, err);
    w->ctx = ctx;
    if (st == SD_OK && !following && strcmp(o->role, "text"))
        st = sd_data_fetcher_new(&w->fetcher, ctx, o->curve_secret, o->curve_public, err);
    /* text and unet workers serve what they make to the next stage
     * themselves; a unet worker keeps it until released, on disk too */
    if (st == SD_OK && !following && strcmp(o->role, "final")) {
        int keep = !strcmp(o->role, "unet");
        if (keep)
            st = worker_spool_folder(w, w->spool, sizeof w->spool, err);
        sd_data_server_opts dopts = {o->coordinator, (size_t)o->hold, keep, keep ? w->spool : NULL,
                                     o->curve_server_key ? o->curve_secret : NULL};
        if (st == SD_OK)
            st = sd_data_server_start(&w->data, ctx, &dopts, w->data_ep, sizeof w->data_ep, err);
    }
    alive_state alive = {NULL, o, 0};
    pthread_t alive_th;
    int alive_started = 0;
    if (st == SD_OK && !following)
        st = alive_socket(ctx, o, &alive.sock, err);
    if (st == SD_OK && !following) {
        wlog(w, "%s worker on %s, model %s, capacity %d, cfg split %s", o->role, sd_backend_name(w->be), w->identity,
             o->capacity, w->pair ? sd_cfg_pair_transport(w->pair) : "batch");
        sd_http_set_ready(w->probe, 0, "not registered with the coordinator yet");
        send_register(w);
        alive_started = pthread_create(&alive_th, NULL, alive_thread, &alive) == 0;
        if (!alive_started) {
            zmq_close(alive.sock);
            st = sd_fail(err, SD_ERR_NOMEM, "cannot start the liveness thread");
        }
    }
    while (st == SD_OK && !following && !*o->stop) {
        loops_turn(w);
        worker_render_metrics(w);
        zmq_pollitem_t pi = {w->sock, 0, ZMQ_POLLIN, 0};
        int got = zmq_poll(&pi, 1, 50) > 0 && (pi.revents & ZMQ_POLLIN);
        if (curve_refused(w, err)) {
            st = SD_ERR_INVALID;
            break;
        }
        if (got) {
            sd_msg m;
            sd_error merr = {0};
            if (sd_msg_recv(w->sock, 0, &m, NULL, NULL, &merr) == SD_OK) {
                w->last_heard = sd_now_s();
                sd_msg_kind kind = sd_msg_kind_of(&m);
                if (kind == SD_MSG_KIND_TASK) {
                    if (run_task(w, &m) != SD_OK && w->pair)
                        st = sd_fail(err, SD_ERR_IO, "a task failed: the cfg pair may be out of step, stopping "
                                                     "(restart both workers)");
                } else if (kind == SD_MSG_KIND_RELEASE && w->data) {
                    /* their final results are safe: the latents may go */
                    size_t k;
                    json_t *key;
                    json_array_foreach(json_object_get(m.hdr, "keys"), k, key)
                        if (json_is_string(key))
                            sd_data_server_release(w->data, json_string_value(key));
                } else if (kind == SD_MSG_KIND_OK) {
                    json_t *tid = json_object_get(m.hdr, "task_id");
                    if (json_is_integer(tid) && json_integer_value(tid) == w->outbox_task)
                        outbox_clear(w); /* confirmed */
                    if (json_is_true(json_object_get(m.hdr, "registered"))) {
                        w->registered = 1, w->refused_since = 0;
                        sd_http_set_ready(w->probe, 1, NULL);
                        char status[300];
                        snprintf(status, sizeof status, "registered with %s as %s (%s)", w->o->coordinator,
                                 w->o->worker_id, w->o->role);
                        sd_service_ready(status);
                    }
                    if (json_is_true(json_object_get(m.hdr, "registered")) && w->outbox_task) {
                        sd_error rerr = {0};
                        wlog(w, "sending the result of task %lld again", w->outbox_task);
                        if (sd_msg_send(w->sock, NULL, 0, &w->outbox, &rerr) != SD_OK)
                            wlog(w, "result of task %lld not sent: %s", w->outbox_task, rerr.msg);
                    }
                } else if (kind == SD_MSG_KIND_ERROR) {
                    const char *why = json_string_value(json_object_get(m.hdr, "reason"));
                    json_t *tid = json_object_get(m.hdr, "task_id");
                    if (json_is_integer(tid) && json_integer_value(tid) == w->outbox_task) {
                        outbox_clear(w); /* given up on by the coordinator: nothing to resend */
                        wlog(w, "coordinator says: %s", why ? why : "?");
                    } else if (why && strstr(why, "register")) {
                        register_again(w);
                    } else {
                        wlog(w, "coordinator says: %s", why ? why : "?");
                    }
                }
                sd_msg_free(&m);
            } else {
                wlog(w, "refused a message: %s", merr.msg);
            }
        }
        if (st == SD_OK && w->pair && sd_cfg_pair_peer_gone(w->pair)) {
            st = sd_fail(err, SD_ERR_IO, "the cfg pair's follower disconnected: stopping (restart both workers)");
            break;
        }
        double now = sd_now_s();
        if (now - w->last_sent >= o->heartbeat_ms / 1000.0)
            heartbeat(w);
        if (!got && now - w->last_heard > 3.0 * o->heartbeat_ms / 1000.0) {
            /* the coordinator went silent: it may have restarted without us */
            register_again(w);
        }
    }
    alive.quit = 1;
    if (alive_started)
        pthread_join(alive_th, NULL);
    if (w->mon)
        zmq_close(w->mon);
    if (w->sock)
        zmq_close(w->sock);
    sd_cfg_pair_close(w->pair);
    sd_data_server_stop(w->data);
    sd_data_fetcher_free(w->fetcher);
    sd_http_stop(w->probe);
    sd_service_stopping();
    /* a spool under a process-made id: no later process can serve it */
    if (w->spool[0] && o->spool_is_own)
        sd_data_spool_remove(w->spool);
    zmq_ctx_term(ctx);
    outbox_clear(w);
    worker_free_models(w);
    sd_stage_backends_close(&w->sb);
    free(w);
    return st;
}
