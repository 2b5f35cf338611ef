/* data_plane.c - see data_plane.h. */
#include "worker/daemon/data_plane.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "proto/curve.h"

typedef struct {
    char *key;
    void *blob;
    size_t len;
} held_item;

struct sd_data_server {
    void *sock;
    pthread_t thread;
    volatile int quit;
    pthread_mutex_t lock;
    held_item *items; /* a ring, oldest first: at most cap */
    size_t cap, first, n;
};

void sd_data_key(char *out, size_t len, const char *job, long long idx)
{
    snprintf(out, len, "%s/%lld", job, idx);
}

/* index into the ring of key, or -1 (lock held) */
static long find(sd_data_server *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++) {
        size_t at = (s->first + i) % s->cap;
        if (s->items[at].key && !strcmp(s->items[at].key, key))
            return (long)at;
    }
    return -1;
}

static void drop(held_item *h)
{
    free(h->key);
    free(h->blob);
    memset(h, 0, sizeof *h);
}

sd_status sd_data_server_hold(sd_data_server *s, const char *key, const void *blob, size_t len, sd_error *err)
{
    char *k = strdup(key);
    void *b = malloc(len ? len : 1);
    if (!k || !b) {
        free(k);
        free(b);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory holding %s", key);
    }
    memcpy(b, blob, len);
    pthread_mutex_lock(&s->lock);
    long at = find(s, key);
    if (at >= 0)
        drop(&s->items[at]);
    /* the ring's slots of fetched items are empty: the oldest slot is reused */
    if (s->n == s->cap) {
        drop(&s->items[s->first]);
        s->first = (s->first + 1) % s->cap;
        s->n--;
    }
    held_item *h = &s->items[(s->first + s->n) % s->cap];
    h->key = k;
    h->blob = b;
    h->len = len;
    s->n++;
    pthread_mutex_unlock(&s->lock);
    return SD_OK;
}

/* one FETCH: the blob (then forgotten: it has its consumer) or "not held" */
static void serve_one(sd_data_server *s)
{
    unsigned char route[256];
    size_t rl = 0;
    sd_msg m, r;
    sd_error err = {0};
    if (sd_msg_recv(s->sock, 1, &m, route, &rl, &err) != SD_OK)
        return;
    const char *key = json_string_value(json_object_get(m.hdr, "key"));
    held_item h = {0};
    pthread_mutex_lock(&s->lock);
    long at = key && sd_msg_kind_of(&m) == SD_MSG_KIND_FETCH ? find(s, key) : -1;
    if (at >= 0) {
        h = s->items[at];
        memset(&s->items[at], 0, sizeof s->items[at]);
    }
    pthread_mutex_unlock(&s->lock);
    if (h.key && sd_msg_new(&r, "OK", &err) == SD_OK) {
        int64_t shape[1] = {(int64_t)h.len};
        if (sd_msg_add_tensor(&r, "blob", SD_DTYPE_U8, 1, shape, h.blob, &err) == SD_OK)
            sd_msg_send(s->sock, route, rl, &r, &err);
        sd_msg_free(&r);
    } else if (sd_msg_new(&r, "ERROR", &err) == SD_OK) {
        json_object_set_new(r.hdr, "reason", json_string("not held"));
        sd_msg_send(s->sock, route, rl, &r, &err);
        sd_msg_free(&r);
    }
    drop(&h);
    sd_msg_free(&m);
}

static void *serve(void *arg)
{
    sd_data_server *s = arg;
    while (!s->quit) {
        zmq_pollitem_t pi = {s->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 100) > 0 && (pi.revents & ZMQ_POLLIN))
            serve_one(s);
    }
    return NULL;
}

/* the address of this host that routes to the coordinator's: what a peer
 * reaches this worker at (a UDP socket "connected" sends nothing) */
static sd_status local_address(const char *coordinator_ep, char *out, size_t len, sd_error *err)
{
    char host[256];
    const char *p = strncmp(coordinator_ep, "tcp://", 6) ? NULL : coordinator_ep + 6;
    const char *colon = p ? strrchr(p, ':') : NULL;
    if (!p || !colon || (size_t)(colon - p) >= sizeof host)
        return sd_fail(err, SD_ERR_INVALID, "--coordinator %s: workers pass data over tcp:// (HOST:PORT)",
                       coordinator_ep);
    snprintf(host, sizeof host, "%.*s", (int)(colon - p), p);
    if (host[0] == '[') { /* [v6] */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, "9", &hints, &ai);
    if (rc != 0)
        return sd_fail(err, SD_ERR_IO, "--coordinator %s: %s", coordinator_ep, gai_strerror(rc));
    int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
    struct sockaddr_storage me;
    socklen_t ml = sizeof me;
    sd_status st = SD_OK;
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 || getsockname(fd, (struct sockaddr *)&me, &ml) != 0)
        st = sd_fail(err, SD_ERR_IO, "no route to the coordinator at %s", coordinator_ep);
    char addr[INET6_ADDRSTRLEN] = "";
    if (st == SD_OK && me.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&me)->sin_addr, addr, sizeof addr);
    else if (st == SD_OK)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&me)->sin6_addr, addr, sizeof addr);
    if (st == SD_OK)
        snprintf(out, len, me.ss_family == AF_INET6 ? "[%s]" : "%s", addr);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return st;
}

sd_status sd_data_server_start(sd_data_server **out, void *ctx, const char *coordinator_ep, size_t capacity,
                               const char *curve_secret, char *endpoint_out, size_t len, sd_error *err)
{
    char host[INET6_ADDRSTRLEN + 2], ep[300];
    SD_TRY(local_address(coordinator_ep, host, sizeof host, err));
    sd_data_server *s = calloc(1, sizeof *s);
    if (!s || !(s->items = calloc(capacity ? capacity : 1, sizeof *s->items))) {
        free(s);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    s->cap = capacity ? capacity : 1;
    pthread_mutex_init(&s->lock, NULL);
    s->sock = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, v6 = host[0] == '[';
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->sock, ZMQ_IPV6, &v6, sizeof v6);
    sd_status st = curve_secret ? sd_curve_data_server_setup(s->sock, curve_secret, err) : SD_OK;
    snprintf(ep, sizeof ep, "tcp://%s:*", host);
    if (st == SD_OK && zmq_bind(s->sock, ep) != 0)
        st = sd_fail(err, SD_ERR_IO, "data socket: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
    size_t el = len;
    if (st == SD_OK && zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, endpoint_out, &el) != 0)
        st = sd_fail(err, SD_ERR_IO, "data socket: %s", zmq_strerror(zmq_errno()));
    if (st == SD_OK && pthread_create(&s->thread, NULL, serve, s) != 0)
        st = sd_fail(err, SD_ERR_IO, "data socket: cannot start its thread");
    if (st != SD_OK) {
        zmq_close(s->sock);
        free(s->items);
        free(s);
        return st;
    }
    *out = s;
    return SD_OK;
}

void sd_data_server_stop(sd_data_server *s)
{
    if (!s)
        return;
    s->quit = 1;
    pthread_join(s->thread, NULL);
    zmq_close(s->sock);
    for (size_t i = 0; i < s->cap; i++)
        drop(&s->items[i]);
    free(s->items);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

sd_status sd_data_fetch(void *ctx, const char *endpoint, const char *server_key, const char *curve_secret,
                        const char *curve_public, const char *key, int timeout_ms, void **blob, size_t *len,
                        sd_error *err)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!sock)
        return sd_fail(err, SD_ERR_IO, "fetch %s: %s", key, zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_IPV6, &(int){endpoint[6] == '['}, sizeof(int));
    sd_status st = server_key && server_key[0]
                       ? sd_curve_client_setup_key(sock, server_key, curve_secret, curve_public, err)
                       : SD_OK;
    if (st == SD_OK && zmq_connect(sock, endpoint) != 0)
        st = sd_fail(err, SD_ERR_MISSING, "fetch %s from %s: %s", key, endpoint, zmq_strerror(zmq_errno()));
    sd_msg m;
    if (st == SD_OK && (st = sd_msg_new(&m, "FETCH", err)) == SD_OK) {
        json_object_set_new(m.hdr, "key", json_string(key));
        /* queued on the pipe zmq_connect made, sent once connected: the
         * wait below bounds it */
        st = sd_msg_send(sock, NULL, 0, &m, err);
        sd_msg_free(&m);
    }
    zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
    if (st == SD_OK && !(zmq_poll(&pi, 1, timeout_ms) > 0 && (pi.revents & ZMQ_POLLIN)))
        st = sd_fail(err, SD_ERR_MISSING, "fetch %s: the holder at %s did not answer within %d ms", key, endpoint,
                     timeout_ms);
    sd_msg r;
    if (st == SD_OK && (st = sd_msg_recv(sock, 0, &r, NULL, NULL, err)) == SD_OK) {
        const sd_msg_tensor *t = sd_msg_tensor_get(&r, "blob");
        if (sd_msg_kind_of(&r) != SD_MSG_KIND_OK || !t)
            st = sd_fail(err, SD_ERR_MISSING, "fetch %s: the holder at %s does not hold it", key, endpoint);
        else if (!(*blob = malloc(t->nbytes ? t->nbytes : 1)))
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        else {
            memcpy(*blob, t->data, t->nbytes);
            *len = t->nbytes;
        }
        sd_msg_free(&r);
    } else if (st == SD_ERR_IO) {
        st = sd_error_prefix(err, SD_ERR_MISSING, "fetch %s: ", key);
    }
    zmq_close(sock);
    return st;
}

sd_status sd_data_fetch_item(void *ctx, const char *job, const json_t *item, const char *curve_secret,
                             const char *curve_public, int timeout_ms, int *has_source, void **blob, size_t *len,
                             sd_error *err)
{
    json_t *src = json_object_get(json_object_get(item, "info"), "source");
    const char *ep = json_string_value(json_object_get(src, "data"));
    const char *skey = json_string_value(json_object_get(src, "key"));
    *has_source = json_is_object(src);
    if (!*has_source)
        return SD_OK;
    if (!ep)
        return sd_fail(err, SD_ERR_MISSING, "its source names no data endpoint");
    char key[96];
    sd_data_key(key, sizeof key, job ? job : "", json_integer_value(json_object_get(item, "idx")));
    return sd_data_fetch(ctx, ep, skey && skey[0] ? skey : NULL, curve_secret, curve_public, key, timeout_ms, blob,
                         len, err);
}

sd_status sd_data_lost_inputs_msg(sd_msg *m, long long task_id, json_t *lost, sd_error *err)
{
    sd_status st = sd_msg_new(m, "FAIL", err);
    if (st != SD_OK) {
        json_decref(lost);
        return st;
    }
    json_object_set_new(m->hdr, "task_id", json_integer(task_id));
    json_object_set_new(m->hdr, "reason", json_string("its text conditioning was no longer held: made again"));
    json_object_set_new(m->hdr, "lost_inputs", lost ? lost : json_array());
    return SD_OK;
}
