/* cfg_pair.c - see cfg_pair.h. */
#include "worker/daemon/cfg_pair.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "worker/daemon/cfg_pair_nccl.h"
#include "kernels/device.h"
#include "proto/monitor.h"

struct sd_cfg_pair {
    void *sock; /* ZMQ_PAIR */
    void *mon;  /* the socket monitor's events: a peer's TCP connection closing */
    int gone;   /* the peer disconnected */
    int rank, timeout_ms;
    uint64_t seq; /* exchanges so far: both sides count the same */
    sd_nccl_pair *nccl;
};

/* "cuda:N" -> N (kernels/device.h); -1 for the CPU or a bad string */
static int cuda_index(const char *device)
{
    sd_device d;
    return sd_device_parse(device, &d, NULL) == SD_OK && d.kind == SD_DEVICE_KIND_CUDA ? d.index : -1;
}

static sd_status send_peer(sd_cfg_pair *p, json_t *fields, const unsigned char *nccl_id, sd_error *err)
{
    sd_msg m;
    SD_TRY(sd_msg_new(&m, "PEER", err));
    json_object_update(m.hdr, fields);
    json_decref(fields);
    sd_status st = SD_OK;
    if (nccl_id) {
        int64_t shape[1] = {SD_NCCL_ID_BYTES};
        st = sd_msg_add_tensor(&m, "nccl_id", SD_DTYPE_U8, 1, shape, nccl_id, err);
    }
    if (st == SD_OK)
        st = sd_msg_send(p->sock, NULL, 0, &m, err);
    sd_msg_free(&m);
    return st;
}

static sd_status recv_peer(sd_cfg_pair *p, sd_msg *m, sd_error *err)
{
    sd_status st = sd_msg_recv(p->sock, 0, m, NULL, NULL, err);
    if (st == SD_ERR_IO)
        return sd_fail(err, SD_ERR_IO, "cfg pair: no answer from the peer rank %d within %d ms", 1 - p->rank,
                       p->timeout_ms);
    SD_TRY(st);
    if (sd_msg_kind_of(m) != SD_MSG_KIND_PEER) {
        const char *t = sd_msg_type(m);
        sd_msg_free(m);
        return sd_fail(err, SD_ERR_FORMAT, "cfg pair: expected a PEER message, got %s", t);
    }
    return SD_OK;
}

static sd_status handshake(sd_cfg_pair *p, const char *device, const char *identity, sd_error *err)
{
    int my_cuda = cuda_index(device);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    sd_msg m;
    if (p->rank == 1) {
        SD_TRY(send_peer(p, json_pack("{s:s, s:i, s:s, s:i, s:s}", "peer", "hello", "rank", 1, "model", identity, "cuda",
                                      sd_nccl_built() ? my_cuda : -1, "host", host),
                         NULL, err));
        SD_TRY(recv_peer(p, &m, err));
        const char *model = json_string_value(json_object_get(m.hdr, "model"));
        const char *transport = json_string_value(json_object_get(m.hdr, "transport"));
        const sd_msg_tensor *id = sd_msg_tensor_get(&m, "nccl_id");
        sd_status st = SD_OK;
        const char *why = json_string_value(json_object_get(m.hdr, "refused"));
        if (why)
            st = sd_fail(err, SD_ERR_INVALID, "cfg pair: the leader refused: %s", why);
        else if (!model || strcmp(model, identity))
            st = sd_fail(err, SD_ERR_INVALID, "cfg pair: the leader has model %s, this follower %s",
                         model ? model : "(none)", identity);
        else if (transport && !strcmp(transport, "nccl")) {
            if (!id || id->nbytes != SD_NCCL_ID_BYTES)
                st = sd_fail(err, SD_ERR_FORMAT, "cfg pair: NCCL chosen but no nccl_id of %d bytes", SD_NCCL_ID_BYTES);
            else
                st = sd_nccl_pair_init(&p->nccl, id->data, 1, my_cuda, p->timeout_ms, err);
        }
        sd_msg_free(&m);
        return st;
    }
    /* the leader waits for its follower's hello */
    SD_TRY(recv_peer(p, &m, err));
    const char *model = json_string_value(json_object_get(m.hdr, "model"));
    const char *peer_host = json_string_value(json_object_get(m.hdr, "host"));
    json_t *pc = json_object_get(m.hdr, "cuda");
    int peer_cuda = json_is_integer(pc) ? (int)json_integer_value(pc) : -1;
    sd_status st = SD_OK;
    if (!model || strcmp(model, identity))
        st = sd_fail(err, SD_ERR_INVALID, "cfg pair: the follower has model %s, this leader %s",
                     model ? model : "(none)", identity);
    else if (my_cuda >= 0 && peer_cuda == my_cuda && peer_host && !strcmp(peer_host, host))
        st = sd_fail(err, SD_ERR_INVALID,
                     "cfg pair: both halves would run on cuda:%d of %s; --cfg-split nccl needs two GPUs "
                     "(use --cfg-split batch on one)", my_cuda, host);
    if (st != SD_OK) {
        /* tell the follower why before giving up */
        send_peer(p, json_pack("{s:s, s:s, s:s, s:s}", "peer", "welcome", "model", identity, "transport", "none",
                               "refused", err->msg),
                  NULL, &(sd_error){0});
        sd_msg_free(&m);
        return st;
    }
    sd_msg_free(&m);
    int use_nccl = peer_cuda >= 0 && my_cuda >= 0 && sd_nccl_built();
    unsigned char id[SD_NCCL_ID_BYTES];
    if (use_nccl)
        SD_TRY(sd_nccl_unique_id(id, err));
    SD_TRY(send_peer(p, json_pack("{s:s, s:s, s:s}", "peer", "welcome", "model", identity, "transport",
                                  use_nccl ? "nccl" : "zmq"),
                     use_nccl ? id : NULL, err));
    if (use_nccl)
        SD_TRY(sd_nccl_pair_init(&p->nccl, id, 0, my_cuda, p->timeout_ms, err));
    return SD_OK;
}

sd_status sd_cfg_pair_open(sd_cfg_pair **out, void *zmq_ctx, const char *endpoint, int rank, const char *device,
                           const char *model_identity, int timeout_ms, sd_error *err)
{
    *out = NULL;
    if (rank != 0 && rank != 1)
        return sd_fail(err, SD_ERR_INVALID, "cfg pair: rank must be 0 or 1, not %d", rank);
    sd_cfg_pair *p = calloc(1, sizeof *p);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    p->rank = rank;
    p->timeout_ms = timeout_ms;
    p->sock = zmq_socket(zmq_ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(p->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(p->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    int rc = rank == 0 ? zmq_bind(p->sock, endpoint) : zmq_connect(p->sock, endpoint);
    sd_status st = rc == 0 ? SD_OK
                           : sd_fail(err, SD_ERR_IO, "--cfg-peer %s: cannot %s: %s", endpoint,
                                     rank == 0 ? "bind" : "connect", zmq_strerror(zmq_errno()));
    if (st == SD_OK)
        st = handshake(p, device, model_identity, err);
    if (st == SD_OK) {
        /* a peer killed outright closes its TCP connection: the monitor tells
         * us at once, instead of a timeout minutes later */
        char addr[64];
        snprintf(addr, sizeof addr, "inproc://sdxl-cfg-pair-%p", (void *)p);
        p->mon = zmq_socket(zmq_ctx, ZMQ_PAIR);
        if (zmq_socket_monitor(p->sock, addr, ZMQ_EVENT_DISCONNECTED) != 0 || zmq_connect(p->mon, addr) != 0) {
            zmq_close(p->mon);
            p->mon = NULL; /* then only the timeouts notice a dead peer */
        } else {
            zmq_setsockopt(p->mon, ZMQ_LINGER, &zero, sizeof zero);
        }
    }
    if (st != SD_OK) {
        sd_cfg_pair_close(p);
        return st;
    }
    *out = p;
    return SD_OK;
}

void sd_cfg_pair_close(sd_cfg_pair *p)
{
    if (!p)
        return;
    sd_nccl_pair_free(p->nccl);
    if (p->sock) {
        zmq_socket_monitor(p->sock, NULL, 0);
        zmq_close(p->sock);
    }
    if (p->mon)
        zmq_close(p->mon);
    free(p);
}

int sd_cfg_pair_rank(const sd_cfg_pair *p)
{
    return p->rank;
}

const char *sd_cfg_pair_transport(const sd_cfg_pair *p)
{
    return p->nccl ? "nccl" : "zmq";
}

int sd_cfg_pair_peer_gone(sd_cfg_pair *p)
{
    unsigned ev, value;
    while (!p->gone && sd_monitor_next(p->mon, &ev, &value))
        if (ev == ZMQ_EVENT_DISCONNECTED)
            p->gone = 1;
    return p->gone;
}

/* Waits until the peer's next message is here: SD_ERR_IO if the peer
 * disconnects or timeout_ms passes first. */
static sd_status wait_readable(sd_cfg_pair *p, const char *what, sd_error *err)
{
    for (int waited = 0;; waited += 100) {
        zmq_pollitem_t pi = {p->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 100) > 0 && (pi.revents & ZMQ_POLLIN))
            return SD_OK;
        if (sd_cfg_pair_peer_gone(p))
            return sd_fail(err, SD_ERR_IO, "cfg pair: rank %d disconnected (waiting for %s)", 1 - p->rank, what);
        if (waited >= p->timeout_ms)
            return sd_fail(err, SD_ERR_IO, "cfg pair: no %s from rank %d within %d ms (is it alive?)", what, 1 - p->rank,
                           p->timeout_ms);
    }
}

sd_status sd_cfg_pair_exchange(sd_cfg_pair *p, const float *mine, float *all, size_t n, sd_error *err)
{
    p->seq++;
    if (p->nccl)
        return sd_nccl_pair_allgather(p->nccl, mine, all, n, err);
    /* one frame each way: the sequence number, then the floats */
    uint64_t seq = p->seq;
    if (zmq_send(p->sock, &seq, sizeof seq, ZMQ_SNDMORE) < 0 || zmq_send(p->sock, mine, n * sizeof *mine, 0) < 0) {
        const char *why = zmq_strerror(zmq_errno());
        /* a peer that died makes the send fail before its disconnection
         * event arrives: give the event a moment, so the reason is said
         * as it is, whichever came first */
        for (int i = 0; i < 20 && !sd_cfg_pair_peer_gone(p); i++)
            usleep(50000);
        if (p->gone)
            return sd_fail(err, SD_ERR_IO, "cfg pair: rank %d disconnected (sending exchange %llu)", 1 - p->rank,
                           (unsigned long long)seq);
        return sd_fail(err, SD_ERR_IO, "cfg pair: sending exchange %llu to rank %d: %s", (unsigned long long)seq,
                       1 - p->rank, why);
    }
    uint64_t got = 0;
    int more = 0;
    size_t ml = sizeof more;
    SD_TRY(wait_readable(p, "noise prediction", err));
    int r = zmq_recv(p->sock, &got, sizeof got, 0);
    if (r < 0)
        return sd_fail(err, SD_ERR_IO, "cfg pair: no prediction from rank %d for exchange %llu: %s", 1 - p->rank,
                       (unsigned long long)seq, zmq_strerror(zmq_errno()));
    zmq_getsockopt(p->sock, ZMQ_RCVMORE, &more, &ml);
    float *other = all + (p->rank == 0 ? n : 0);
    int r2 = more ? zmq_recv(p->sock, other, n * sizeof *other, 0) : -1;
    if (r != (int)sizeof got || got != seq || r2 != (int)(n * sizeof *other)) {
        /* drain what is left of a malformed message */
        zmq_getsockopt(p->sock, ZMQ_RCVMORE, &more, &ml);
        while (more) {
            char sink[64];
            if (zmq_recv(p->sock, sink, sizeof sink, 0) < 0)
                break;
            zmq_getsockopt(p->sock, ZMQ_RCVMORE, &more, &ml);
        }
        return sd_fail(err, SD_ERR_FORMAT,
                       "cfg pair: rank %d is out of step (exchange %llu, got %llu with %d bytes, expected %zu)",
                       1 - p->rank, (unsigned long long)seq, (unsigned long long)got, r2, n * sizeof *other);
    }
    memcpy(all + (p->rank == 0 ? 0 : n), mine, n * sizeof *mine);
    return SD_OK;
}

sd_status sd_cfg_pair_send_task(sd_cfg_pair *p, const sd_msg *task, sd_error *err)
{
    return sd_msg_send(p->sock, NULL, 0, task, err);
}

sd_status sd_cfg_pair_recv_task(sd_cfg_pair *p, sd_msg *task, sd_error *err)
{
    return sd_msg_recv(p->sock, 0, task, NULL, NULL, err);
}

int sd_cfg_pair_poll(sd_cfg_pair *p, int timeout_ms)
{
    zmq_pollitem_t pi = {p->sock, 0, ZMQ_POLLIN, 0};
    return zmq_poll(&pi, 1, timeout_ms) > 0 && (pi.revents & ZMQ_POLLIN);
}
