/* broker.c - see broker.h and broker_internal.h. One thread: poll, handle
 * one message, check liveness, dispatch, finish jobs; repeat. */
#include "coordinator/broker.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/service_notify.h"
#include "coordinator/broker_internal.h"
#include "proto/curve.h"
#include "proto/http_probe.h"

void broker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void broker_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "coordinator: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double broker_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void broker_reply(broker *b, const unsigned char *route, size_t rl, const char *type, json_t *fields)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_new(&m, type, &err) != SD_OK) {
        json_decref(fields);
        return;
    }
    if (fields)
        json_object_update(m.hdr, fields);
    json_decref(fields);
    broker_send(b, route, rl, &m, &err);
    sd_msg_free(&m);
}

/* a message of the turn, as its frames: route, header, tensors */
struct queued_msg {
    int nframes;
    void *frames[2 + SD_MSG_MAX_TENSORS];
    size_t lens[2 + SD_MSG_MAX_TENSORS];
};

static void queued_free(struct queued_msg *q)
{
    for (int i = 0; i < q->nframes; i++)
        free(q->frames[i]);
    q->nframes = 0;
}

static sd_status queue_copy(struct queued_msg *q, const void *data, size_t len, sd_error *err)
{
    void *c = malloc(len ? len : 1);
    if (!c)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory queueing a message");
    memcpy(c, data, len);
    q->frames[q->nframes] = c;
    q->lens[q->nframes++] = len;
    return SD_OK;
}

sd_status broker_send(broker *b, const unsigned char *route, size_t rl, const sd_msg *m, sd_error *err)
{
    for (int k = 0; k < m->ntensors; k++)
        b->m.bytes_out += m->tensors[k].nbytes;
    if (!b->turn_open)
        return sd_msg_send(b->sock, route, rl, m, err);
    if (b->nqueue == b->queue_cap) {
        int cap = b->queue_cap ? 2 * b->queue_cap : 256;
        struct queued_msg *g = realloc(b->queue, (size_t)cap * sizeof *g);
        if (!g)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory queueing a message");
        b->queue = g;
        b->queue_cap = cap;
    }
    struct queued_msg *q = &b->queue[b->nqueue];
    q->nframes = 0;
    void *hbuf;
    size_t hlen;
    sd_status st = queue_copy(q, route, rl, err);
    if (st == SD_OK && (st = sd_msg_encode_header(m, &hbuf, &hlen, err)) == SD_OK) {
        q->frames[q->nframes] = hbuf; /* taken as is */
        q->lens[q->nframes++] = hlen;
    }
    for (int i = 0; st == SD_OK && i < m->ntensors; i++)
        st = queue_copy(q, m->tensors[i].data, m->tensors[i].nbytes, err);
    if (st != SD_OK) {
        queued_free(q);
        return st;
    }
    b->nqueue++;
    return SD_OK;
}

/* The turn's messages, in order, once its writes are committed; a peer
 * gone meanwhile is the liveness check's business. */
static void flush_queue(broker *b)
{
    for (int k = 0; k < b->nqueue; k++) {
        struct queued_msg *q = &b->queue[k];
        int rc = 0;
        for (int i = 0; !rc && i < q->nframes; i++)
            rc = zmq_send(b->sock, q->frames[i], q->lens[i], ZMQ_DONTWAIT | (i + 1 < q->nframes ? ZMQ_SNDMORE : 0)) < 0;
        queued_free(q);
    }
    b->nqueue = 0;
}

void broker_reply_error(broker *b, const unsigned char *route, size_t rl, const char *reason)
{
    broker_reply(b, route, rl, "ERROR", json_pack("{s:s}", "reason", reason));
}

/* "tcp://localhost:P" as ZeroMQ can bind it (it takes an address or an
 * interface name, and no interface is called localhost) */
static void bind_endpoint(const char *bind, char *out, size_t len)
{
    if (!strncmp(bind, "tcp://localhost:", 16))
        snprintf(out, len, "tcp://127.0.0.1:%s", bind + 16);
    else
        snprintf(out, len, "%s", bind);
}

/* 1 when the endpoint ZeroMQ actually bound is on loopback (127.0.0.0/8 or
 * ::1) or local (ipc, inproc): judged from the bound address, not from the
 * name given, since an interface may be called anything */
static int bound_locally(void *sock)
{
    char ep[256];
    size_t len = sizeof ep;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
        return 0;
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return 1;
    if (!strncmp(ep, "tcp://127.", 10))
        return 1;
    return !strncmp(ep, "tcp://[::1]:", 12);
}

static sd_status setup_socket(broker *b, void *ctx, sd_error *err)
{
    b->sock = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(b->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(b->sock, ZMQ_LINGER, &zero, sizeof zero);
    int64_t maxmsg = (int64_t)1 << 31;
    zmq_setsockopt(b->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (b->o->curve_secret_file)
        SD_TRY(sd_curve_server_setup(b->sock, ctx, b->o->curve_secret_file, b->o->allow_file, err));
    char ep[512];
    bind_endpoint(b->o->bind, ep, sizeof ep);
    if (zmq_bind(b->sock, ep) != 0)
        return sd_fail(err, SD_ERR_IO, "--bind %s: %s", b->o->bind, zmq_strerror(zmq_errno()));
    if (!b->o->curve_secret_file && !bound_locally(b->sock)) {
        char got[256] = "?";
        size_t len = sizeof got;
        zmq_getsockopt(b->sock, ZMQ_LAST_ENDPOINT, got, &len);
        zmq_unbind(b->sock, got);
        return sd_fail(err, SD_ERR_INVALID,
                       "--bind %s: bound %s, which is not loopback; without --curve-secret the coordinator binds to "
                       "loopback only",
                       b->o->bind, got);
    }
    return SD_OK;
}

sd_status sd_broker_run(const sd_broker_opts *o, sd_error *err)
{
    broker *b = calloc(1, sizeof *b);
    if (!b)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    b->o = o;
    b->started = sd_now_s();
    void *ctx = zmq_ctx_new();
    sd_status st = store_open(&b->store, o->state_dir, err);
    if (st == SD_OK)
        broker_load_tasks(b);
    b->cancelling = 1; /* a cancel a restart cut short goes on */
    if (st == SD_OK)
        st = setup_socket(b, ctx, err);
    sd_http_probe *probe = NULL;
    int http_port = 0;
    if (st == SD_OK && o->http && (st = sd_http_start(&probe, o->http, o->live_timeout_s, &http_port, err)) == SD_OK) {
        sd_http_set_ready(probe, 1, NULL); /* its store open, its socket bound: it takes work */
        broker_log("health probes on http port %d (/healthz, /readyz)", http_port);
    }
    if (st == SD_OK) {
        broker_log("listening on %s, state in %s, heartbeat %d ms", o->bind, o->state_dir, o->heartbeat_ms);
        char status[400];
        snprintf(status, sizeof status, "serving on %s, state in %s", o->bind, o->state_dir);
        sd_service_ready(status);
    }
    double last_dispatch = 0;
    while (st == SD_OK && !*o->stop) {
        zmq_pollitem_t pi = {b->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&pi, 1, 10);
        /* the turn's writes are one transaction: a fleet's thousand results
         * a second cost a few commits, not a thousand */
        sd_http_alive(probe);
        sd_service_watchdog();
        if ((st = store_turn_begin(b->store, err)) != SD_OK)
            break;
        b->turn_open = 1;
        /* every message queued (up to a bound, so liveness and dispatch
         * still run under a flood), not one per turn of the loop: a fleet
         * sends thousands a second */
        int drained = 0;
        for (; rc > 0 && (pi.revents & ZMQ_POLLIN) && drained < 1024; drained++) {
            unsigned char route[256];
            size_t rl = 0;
            sd_msg m;
            sd_error merr = {0};
            if (sd_msg_recv(b->sock, 1, &m, route, &rl, &merr) == SD_OK) {
                for (int k = 0; k < m.ntensors; k++)
                    b->m.bytes_in += m.tensors[k].nbytes;
                if (json_object_get(m.hdr, "worker_id"))
                    broker_handle_worker(b, &m, route, rl);
                else
                    broker_handle_client(b, &m, route, rl);
                sd_msg_free(&m);
            } else {
                b->malformed++;
                if (rl)
                    broker_reply_error(b, route, rl, merr.msg);
                broker_log("refused a message: %s", merr.msg);
            }
            int ev = 0;
            size_t el = sizeof ev;
            if (zmq_getsockopt(b->sock, ZMQ_EVENTS, &ev, &el) != 0 || !(ev & ZMQ_POLLIN))
                break;
        }
        broker_liveness(b);
        double now = sd_now_s();
        /* at once after messages (a result frees a worker: it should not
         * wait for the next tick), else every 10 ms */
        if (now - last_dispatch > (drained ? 0.001 : 0.01)) {
            last_dispatch = now;
            broker_dispatch(b);
            broker_finish_jobs(b);
            broker_cancel_items(b, 0.005); /* a cancelled 10^7-item job, a slice per turn */
        }
        broker_send_releases(b);
        b->turn_open = 0;
        double c0 = sd_now_s();
        st = store_turn_commit(b->store, err);
        b->m.commit_s += sd_now_s() - c0;
        b->m.turns++;
        if (st != SD_OK) {
            /* nothing of the turn is acknowledged; what memory holds of it
             * no longer matches the store: a restart resumes from the store */
            st = sd_error_prefix(err, st, "stopping: the turn's writes were not committed (a restart resumes from what "
                                          "was): ");
            for (int k = 0; k < b->nqueue; k++)
                queued_free(&b->queue[k]);
            b->nqueue = 0;
            break;
        }
        flush_queue(b);
        broker_metrics(b, probe);
    }
    sd_service_stopping();
    for (int i = 0; i < b->workers_hw; i++)
        json_decref(b->workers[i].release);
    free(b->queue);
    sd_http_stop(probe);
    store_close(b->store);
    if (b->sock)
        zmq_close(b->sock);
    zmq_ctx_term(ctx);
    free(b);
    return st;
}
