/* simulate.c - see simulate.h. One thread, one zmq_poll over every simulated
 * worker's socket; compute is a deadline per task. */
#include "worker/daemon/simulate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/gen_params.h"
#include "common/image_io.h"
#include "proto/curve.h"
#include "proto/message.h"
#include "proto/tensor_blob.h"
#include "worker/daemon/data_plane.h"
#include "worker/daemon/direct_out.h"

static const char *const role_names[3] = {"text", "unet", "final"};

sd_status sd_sim_spec_parse(const char *spec, sd_sim_spec *s, sd_error *err)
{
    memset(s, 0, sizeof *s);
    s->ms[0] = SD_SIM_TEXT_MS;
    s->ms[1] = SD_SIM_UNET_STEP_MS;
    s->ms[2] = SD_SIM_FINAL_MS;
    char buf[256];
    if (!spec || strlen(spec) >= sizeof buf)
        return sd_fail(err, SD_ERR_INVALID, "--simulate needs ROLE=COUNT[@MS],... (e.g. text=5,unet=100,final=25)");
    snprintf(buf, sizeof buf, "%s", spec);
    int total = 0;
    for (char *save = NULL, *part = strtok_r(buf, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        char role[16];
        int count, used = 0;
        double ms = -1;
        if (sscanf(part, "%15[a-z]=%d%n", role, &count, &used) != 2 ||
            (part[used] && (sscanf(part + used, "@%lf", &ms) != 1 || ms < 0 || ms > 3.6e6)))
            return sd_fail(err, SD_ERR_INVALID, "--simulate: '%s' is not ROLE=COUNT[@MS]", part);
        int r = !strcmp(role, "text") ? 0 : !strcmp(role, "unet") ? 1 : !strcmp(role, "final") ? 2 : -1;
        if (r < 0)
            return sd_fail(err, SD_ERR_INVALID, "--simulate: unknown role '%s' (text, unet or final)", role);
        if (count < 0 || count > SD_SIM_MAX_WORKERS)
            return sd_fail(err, SD_ERR_INVALID, "--simulate: %s=%d: from 0 to %d workers", role, count,
                           SD_SIM_MAX_WORKERS);
        s->count[r] = count;
        if (ms >= 0)
            s->ms[r] = ms;
        total += count;
    }
    if (total < 1 || total > SD_SIM_MAX_WORKERS)
        return sd_fail(err, SD_ERR_INVALID, "--simulate: %d workers in all (1 to %d)", total, SD_SIM_MAX_WORKERS);
    return SD_OK;
}

typedef struct {
    char id[96];
    int role;
    void *sock;
    double last_sent, last_register, done_at;
    int registered;
    sd_msg task;        /* the task being "computed" (task_id 0: none) */
    long long task_id;
    sd_msg outbox;      /* the last RESULT, kept until confirmed */
    long long outbox_task;
} sim_worker;

typedef struct {
    const sd_worker_opts *o;
    void *ctx;
    const sd_sim_spec *spec;
    sim_worker *w;
    int n;
    char session[40];
    float *zeros;       /* the tensors' data: its size is all that matters */
    size_t zeros_len;
    struct {
        int width, height;
        uint8_t *png;
        size_t len;
    } images[8];        /* one PNG per image size, made once */
    int nimages;
    /* what the text and unet workers hold, served as real ones do (text
     * conditioning forgotten once fetched, latents kept until released):
     * one server per role for the whole process, not a thread per worker */
    sd_data_server *data[2];
    char data_ep[2][128];
    sd_direct_out direct; /* whether the final workers write the images (direct_out.h) */
    sd_data_fetcher *fetcher; /* every unet and final worker's fetches: one thread */
    struct sim_held {
        int role;
        int64_t cfg;
        long long width, height;
        void *blob;
        size_t len;
    } held[8]; /* sim_held_blob */
    int nheld;
} sim;

static void sim_send(sim_worker *w, sd_msg *m)
{
    sd_error err;
    json_object_set_new(m->hdr, "worker_id", json_string(w->id));
    sd_msg_send(w->sock, NULL, 0, m, &err);
    w->last_sent = sd_now_s();
}

static void sim_register(sim *s, sim_worker *w)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_new(&m, "REGISTER", &err) != SD_OK)
        return;
    json_object_update_new(m.hdr, json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "role", role_names[w->role], "capacity",
                                            s->o->capacity, "model", "sdxl-simulated", "devices", "simulated",
                                            "cfg_split", "batch", "session", s->session));
    if (w->outbox_task)
        json_object_set_new(m.hdr, "holding", json_integer(w->outbox_task));
    if (w->role < 2) { /* its share of the role's data server, as a real worker's --hold */
        json_object_set_new(m.hdr, "data", json_string(s->data_ep[w->role]));
        json_object_set_new(m.hdr, "hold", json_integer(s->o->hold));
    }
    sim_send(w, &m);
    sd_msg_free(&m);
    w->last_register = sd_now_s();
}

static void sim_heartbeat(sim *s, sim_worker *w)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_new(&m, "HEARTBEAT", &err) != SD_OK)
        return;
    if (w->task_id)
        json_object_set_new(m.hdr, "task_id", json_integer(w->task_id));
    sim_send(w, &m);
    sd_msg_free(&m);
}

/* A PNG of width x height with about the entropy of a photo (a gradient
 * with a little noise): what a final worker sends, made once per size. */
static const uint8_t *sim_image(sim *s, int width, int height, size_t *len)
{
    for (int i = 0; i < s->nimages; i++)
        if (s->images[i].width == width && s->images[i].height == height) {
            *len = s->images[i].len;
            return s->images[i].png;
        }
    int slot = s->nimages < 8 ? s->nimages++ : 7;
    free(s->images[slot].png);
    s->images[slot].png = NULL;
    s->images[slot].len = 0;
    uint8_t *rgb = malloc((size_t)width * height * 3);
    if (!rgb)
        return NULL;
    uint32_t r = 12345;
    for (size_t p = 0; p < (size_t)width * height; p++) {
        r = r * 1664525u + 1013904223u;
        size_t x = p % (size_t)width, y = p / (size_t)width;
        for (int c = 0; c < 3; c++)
            rgb[p * 3 + c] = (uint8_t)((x * (c + 1) + y * (3 - c)) / 8 + ((r >> (8 * c)) & 15));
    }
    sd_error err;
    if (sd_image_encode(SD_IMAGE_FORMAT_PNG, rgb, width, height, NULL, 0, 90, &s->images[slot].png,
                        &s->images[slot].len, &err) != SD_OK)
        s->images[slot].png = NULL;
    free(rgb);
    s->images[slot].width = width;
    s->images[slot].height = height;
    *len = s->images[slot].len;
    return s->images[slot].png;
}

/* zero-filled data of at least n floats (shared by every tensor sent) */
static const float *sim_zeros(sim *s, size_t n)
{
    if (n > s->zeros_len) {
        free(s->zeros);
        s->zeros = calloc(n, sizeof *s->zeros);
        s->zeros_len = s->zeros ? n : 0;
    }
    return s->zeros;
}

/* The packed tensors a text (emb, pool) or unet (lat) worker holds for an
 * item of this shape: zeros of the real sizes, packed once and reused. */
static const void *sim_held_blob(sim *s, int role, int64_t cfg, long long width, long long height, size_t *len)
{
    for (int i = 0; i < s->nheld; i++)
        if (s->held[i].role == role && s->held[i].cfg == cfg && s->held[i].width == width &&
            s->held[i].height == height) {
            *len = s->held[i].len;
            return s->held[i].blob;
        }
    int64_t es[3] = {cfg, 77, 2048}, ps[2] = {cfg, 1280}, ls[4] = {1, 4, height / 8, width / 8};
    sd_msg held;
    sd_error err = {0};
    memset(&held, 0, sizeof held);
    sd_status st = role == 0 ? sd_msg_add_tensor(&held, "emb", SD_DTYPE_F32, 3, es,
                                                 sim_zeros(s, (size_t)(cfg * 77 * 2048)), &err)
                             : sd_msg_add_tensor(&held, "lat", SD_DTYPE_F32, 4, ls,
                                                 sim_zeros(s, (size_t)(4 * (height / 8) * (width / 8))), &err);
    if (st == SD_OK && role == 0)
        st = sd_msg_add_tensor(&held, "pool", SD_DTYPE_F32, 2, ps, sim_zeros(s, (size_t)(cfg * 1280)), &err);
    void *blob = NULL;
    if (st == SD_OK)
        st = sd_blob_pack(&held, &blob, len, &err);
    sd_msg_free(&held);
    if (st != SD_OK)
        return NULL;
    int slot = s->nheld < 8 ? s->nheld++ : 7;
    free(s->held[slot].blob);
    s->held[slot] = (struct sim_held){role, cfg, width, height, blob, *len};
    return blob;
}

/* How long the task's items take: per item (text, final) or per step (unet). */
static double task_seconds(const sim *s, const sim_worker *w, json_t *items)
{
    double sum = 0;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *p = json_object_get(it, "params");
        long long steps = json_integer_value(json_object_get(p, "steps"));
        sum += s->spec->ms[w->role] / 1000.0 * (w->role == 1 ? (double)(steps > 0 ? steps : 50) : 1.0);
    }
    return sum;
}

/* The task's RESULT: each item's info as the real stage adds to it, and
 * tensors of the real names and sizes. */
static void sim_finish(sim *s, sim_worker *w)
{
    sd_msg res;
    sd_error err = {0};
    if (sd_msg_new(&res, "RESULT", &err) != SD_OK)
        return;
    json_object_set_new(res.hdr, "task_id", json_integer(w->task_id));
    json_t *items = json_object_get(w->task.hdr, "items"), *out = json_array(), *it;
    size_t k;
    sd_status st = SD_OK;
    int direct = 1; /* a final task's images written into the folder (until one cannot be) */
    json_array_foreach(items, k, it) {
        json_t *p = json_object_get(it, "params"), *info = json_deep_copy(json_object_get(it, "info"));
        if (!json_is_object(info)) {
            json_decref(info);
            info = json_object();
        }
        long long width = json_integer_value(json_object_get(p, "width")),
                  height = json_integer_value(json_object_get(p, "height"));
        width = width > 0 ? width : 1024;
        height = height > 0 ? height : 1024;
        double guidance = json_is_number(json_object_get(p, "guidance_scale"))
                              ? json_number_value(json_object_get(p, "guidance_scale"))
                              : 5.0;
        int64_t cfg = guidance > 1.0 ? 2 : 1;
        char name[32];
        if (w->role < 2) {
            /* held for the next stage to fetch, as a real worker does (the
             * packed zeros made once per shape: the copies that matter are
             * the holding and the serving) */
            size_t len = 0;
            const void *blob = sim_held_blob(s, w->role, cfg, width, height, &len);
            char key[96];
            sd_data_key(key, sizeof key, json_string_value(json_object_get(w->task.hdr, "job")),
                        json_integer_value(json_object_get(it, "idx")));
            st = blob ? sd_data_server_hold(s->data[w->role], key, blob, len, NULL, &err)
                      : sd_fail(&err, SD_ERR_NOMEM, "out of memory");
            if (w->role == 1)
                json_object_set_new(info, "refiner_pending", json_false());
            json_object_set_new(info, "held", json_true());
        }
        char key[32];
        snprintf(key, sizeof key, "%s_worker", role_names[w->role]);
        json_object_set_new(info, key, json_string(w->id));
        if (w->role == 2) {
            /* into the job's folder when it is the coordinator's too, as a
             * real final worker does; else the bytes go in the result */
            size_t len = 0;
            const uint8_t *png = sim_image(s, (int)width, (int)height, &len);
            int64_t shape[1] = {(int64_t)len};
            int checked;
            json_object_set_new(info, "prompt", json_incref(json_object_get(p, "prompt")));
            json_object_set_new(info, "seed", json_incref(json_object_get(p, "seed")));
            snprintf(name, sizeof name, "image_%zu", k);
            if (!png)
                st = sd_fail(&err, SD_ERR_NOMEM, "no image");
            else if (direct && sd_direct_out_ready(&s->direct, &w->task, &checked) &&
                     /* not fsync'ed: a simulation's images are kept by nobody, and one
                      * thread writing for every simulated worker would measure the disk */
                     sd_direct_out_write(&w->task, json_integer_value(json_object_get(it, "idx")), png, len, info, 0,
                                         &err) == SD_OK)
                json_object_set_new(info, "written", json_true());
            else
                st = sd_msg_add_tensor(&res, name, SD_DTYPE_U8, 1, shape, png, &err), direct = 0;
        }
        json_array_append_new(out, json_pack("{s:O, s:o}", "idx", json_object_get(it, "idx"), "info", info));
    }
    json_object_set_new(res.hdr, "items", out);
    if (st == SD_OK) {
        json_object_set_new(res.hdr, "worker_id", json_string(w->id));
        if (w->outbox_task)
            sd_msg_free(&w->outbox);
        w->outbox_task = sd_msg_clone(&w->outbox, &res, &err) == SD_OK ? w->task_id : 0;
        sim_send(w, &res);
    }
    sd_msg_free(&res);
    sd_msg_free(&w->task);
    w->task_id = 0;
}

/* A task's inputs, fetched from the worker that holds them (as a real unet
 * or final worker does); 0 when some were lost: reported. */
static int sim_fetch_inputs(sim *s, sim_worker *w, const sd_msg *task, long long tid)
{
    json_t *items = json_object_get(task->hdr, "items"), *it, *lost = NULL;
    const char *job = json_string_value(json_object_get(task->hdr, "job"));
    size_t k;
    json_array_foreach(items, k, it) {
        void *blob = NULL;
        size_t len;
        int has_source;
        sd_error err;
        if (sd_data_fetch_item(s->fetcher, job, it, 2000, &has_source, &blob, &len, &err) != SD_OK) {
            if (!lost)
                lost = json_array();
            json_array_append_new(lost, json_incref(json_object_get(it, "idx")));
        }
        free(blob);
    }
    if (!lost)
        return 1;
    sd_msg m;
    sd_error err;
    if (sd_data_lost_inputs_msg(&m, tid, lost, &err) == SD_OK) {
        if (w->outbox_task)
            sd_msg_free(&w->outbox);
        w->outbox_task = sd_msg_clone(&w->outbox, &m, &err) == SD_OK ? tid : 0;
        sim_send(w, &m);
        sd_msg_free(&m);
    }
    return 0;
}

static void sim_receive(sim *s, sim_worker *w)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_recv(w->sock, 0, &m, NULL, NULL, &err) != SD_OK)
        return;
    switch (sd_msg_kind_of(&m)) {
    case SD_MSG_KIND_TASK: {
        long long tid = json_integer_value(json_object_get(m.hdr, "task_id"));
        if (w->role > 0 && !sim_fetch_inputs(s, w, &m, tid)) {
            sd_msg_free(&m);
            return;
        }
        w->task = m; /* read only while idle (sd_simulate_run): one task at a time */
        w->task_id = tid;
        w->done_at = sd_now_s() + task_seconds(s, w, json_object_get(m.hdr, "items"));
        return; /* the task keeps the message */
    }
    case SD_MSG_KIND_RELEASE: {
        size_t k;
        json_t *key;
        json_array_foreach(json_object_get(m.hdr, "keys"), k, key)
            if (json_is_string(key))
                sd_data_server_release(s->data[1], json_string_value(key));
        break;
    }
    case SD_MSG_KIND_OK: {
        json_t *tid = json_object_get(m.hdr, "task_id");
        if (json_is_integer(tid) && json_integer_value(tid) == w->outbox_task) {
            sd_msg_free(&w->outbox);
            w->outbox_task = 0;
        }
        if (json_is_true(json_object_get(m.hdr, "registered"))) {
            w->registered = 1;
            if (w->outbox_task) /* a restarted coordinator gets the unconfirmed result again */
                sim_send(w, &w->outbox);
        }
        break;
    }
    case SD_MSG_KIND_ERROR: {
        const char *why = json_string_value(json_object_get(m.hdr, "reason"));
        json_t *tid = json_object_get(m.hdr, "task_id");
        if (json_is_integer(tid) && json_integer_value(tid) == w->outbox_task) {
            sd_msg_free(&w->outbox);
            w->outbox_task = 0;
        } else if (why && strstr(why, "register") && sd_now_s() - w->last_register >= s->o->heartbeat_ms / 1000.0) {
            sim_register(s, w);
        }
        break;
    }
    default:
        break;
    }
    sd_msg_free(&m);
}

static sd_status sim_open(sim *s, void *ctx, sd_error *err)
{
    SD_TRY(sd_data_fetcher_new(&s->fetcher, ctx, s->o->curve_secret, s->o->curve_public, err));
    for (int r = 0; r < 2; r++)
        if (s->spec->count[r]) {
            /* room for every worker's share: latents wait for their release */
            sd_data_server_opts dopts = {s->o->coordinator, (size_t)s->o->hold * (size_t)s->spec->count[r], r == 1,
                                         NULL, s->o->curve_server_key ? s->o->curve_secret : NULL};
            SD_TRY(sd_data_server_start(&s->data[r], ctx, &dopts, s->data_ep[r], sizeof s->data_ep[r], err));
        }
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < s->spec->count[r]; i++) {
            sim_worker *w = &s->w[s->n++];
            snprintf(w->id, sizeof w->id, "%s-%s-%d", s->o->worker_id, role_names[r], i);
            w->role = r;
            w->sock = zmq_socket(ctx, ZMQ_DEALER);
            if (!w->sock)
                return sd_fail(err, SD_ERR_IO, "simulated worker %s: %s (raise the open-file limit?)", w->id,
                               zmq_strerror(zmq_errno()));
            int zero = 0;
            zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
            zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, w->id, strlen(w->id));
            if (s->o->curve_server_key)
                SD_TRY(sd_curve_client_setup(w->sock, s->o->curve_server_key, s->o->curve_secret, s->o->curve_public,
                                             err));
            if (zmq_connect(w->sock, s->o->coordinator) != 0)
                return sd_fail(err, SD_ERR_IO, "--coordinator %s: %s", s->o->coordinator, zmq_strerror(zmq_errno()));
            sim_register(s, w);
        }
    return SD_OK;
}

sd_status sd_simulate_run(const sd_worker_opts *o, const sd_sim_spec *spec, sd_error *err)
{
    int total = spec->count[0] + spec->count[1] + spec->count[2];
    /* each worker is a socket and a connection: a thousand need more than
     * the usual 1024 descriptors */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sim s = {.o = o, .spec = spec};
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint64_t)sd_now_s();
    snprintf(s.session, sizeof s.session, "%016llx", (unsigned long long)r);
    s.w = calloc((size_t)total, sizeof *s.w);
    zmq_pollitem_t *pi = calloc((size_t)total, sizeof *pi);
    void *ctx = zmq_ctx_new();
    sd_status st = s.w && pi && ctx ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (ctx)
        zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 2 * total + 256);
    s.ctx = ctx;
    if (st == SD_OK)
        st = sim_open(&s, ctx, err);
    if (st == SD_OK)
        fprintf(stderr, "sdxl-worker: simulating %d text, %d unet and %d final workers (%.1f ms per text item, %.1f "
                        "ms per unet step, %.1f ms per final item) for %s\n",
                spec->count[0], spec->count[1], spec->count[2], spec->ms[0], spec->ms[1], spec->ms[2], o->coordinator);
    double hb = o->heartbeat_ms / 1000.0;
    while (st == SD_OK && !*o->stop) {
        double now = sd_now_s(), next = now + 0.05;
        for (int i = 0; i < s.n; i++) {
            sim_worker *w = &s.w[i];
            if (w->task_id && now >= w->done_at)
                sim_finish(&s, w);
            if (now - w->last_sent >= hb)
                sim_heartbeat(&s, w);
            if (w->task_id && w->done_at < next)
                next = w->done_at;
            /* a busy worker reads nothing, as a real one computing: what
             * the coordinator sends meanwhile waits in its queue */
            pi[i] = (zmq_pollitem_t){w->sock, 0, w->task_id ? 0 : ZMQ_POLLIN, 0};
        }
        long timeout = (long)((next - sd_now_s()) * 1000.0);
        int got = zmq_poll(pi, s.n, timeout > 0 ? timeout : 0);
        for (int i = 0; got > 0 && i < s.n; i++) {
            if (!(pi[i].revents & ZMQ_POLLIN))
                continue;
            int events = ZMQ_POLLIN;
            size_t el = sizeof events;
            /* every message queued on this socket, until a task arrives */
            while (!s.w[i].task_id && (events & ZMQ_POLLIN)) {
                sim_receive(&s, &s.w[i]);
                if (zmq_getsockopt(s.w[i].sock, ZMQ_EVENTS, &events, &el) != 0)
                    break;
            }
        }
    }
    for (int i = 0; i < s.n; i++) {
        if (s.w[i].task_id)
            sd_msg_free(&s.w[i].task);
        if (s.w[i].outbox_task)
            sd_msg_free(&s.w[i].outbox);
        zmq_close(s.w[i].sock);
    }
    for (int r = 0; r < 2; r++)
        sd_data_server_stop(s.data[r]);
    sd_data_fetcher_free(s.fetcher);
    for (int i = 0; i < s.nimages; i++)
        free(s.images[i].png);
    for (int i = 0; i < s.nheld; i++)
        free(s.held[i].blob);
    free(s.zeros);
    free(s.w);
    free(pi);
    if (ctx)
        zmq_ctx_term(ctx);
    return st;
}
