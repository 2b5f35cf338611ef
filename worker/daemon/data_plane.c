/* data_plane.c - see data_plane.h. */
#include "worker/daemon/data_plane.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/hashmap.h"
#include "proto/curve.h"
#include "proto/tensor_blob.h"

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
    held_item *items; /* a ring, oldest first: at most cap in memory */
    size_t cap, first, n;
    sd_u64map index;  /* hash of a key -> its ring slot + 1 (0: gone); rebuilt as it fills with gone keys */
    int keep;         /* kept until released (a UNet result), not forgotten once fetched */
    _Atomic unsigned long long served; /* bytes sent to fetchers (the metrics) */
    char *spool;      /* keep: where each is also written, or NULL (memory only) */
};

static uint64_t key_hash(const char *key)
{
    return sd_hash_bytes(key, strlen(key));
}

/* ring slot of key, or -1 (lock held) */
static long find(sd_data_server *s, const char *key)
{
    uint64_t at = 0;
    if (!sd_u64map_get(&s->index, key_hash(key), &at) || !at)
        return -1;
    held_item *h = &s->items[at - 1];
    return h->key && !strcmp(h->key, key) ? (long)(at - 1) : -1;
}

static void drop(sd_data_server *s, held_item *h)
{
    if (h->key)
        sd_u64map_put(&s->index, key_hash(h->key), 0);
    free(h->key);
    free(h->blob);
    memset(h, 0, sizeof *h);
}

/* the index keeps an entry per key ever held: past 4 per slot it is built
 * again from what the ring holds now (lock held) */
static void index_compact(sd_data_server *s)
{
    if (s->index.n < 4 * s->cap + 64)
        return;
    sd_u64map_free(&s->index);
    sd_u64map_init(&s->index);
    for (size_t i = 0; i < s->cap; i++)
        if (s->items[i].key)
            sd_u64map_put(&s->index, key_hash(s->items[i].key), i + 1);
}

/* the spool file of key: '/' (job/idx) becomes '.' */
static void spool_path(const sd_data_server *s, const char *key, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/", s->spool);
    for (const char *k = key; *k && n + 1 < (int)len; k++)
        out[n++] = *k == '/' ? '.' : *k;
    out[n < (int)len ? n : (int)len - 1] = '\0';
}

static sd_status spool_write(sd_data_server *s, const char *key, const void *blob, size_t len, sd_error *err)
{
    char path[PATH_MAX];
    spool_path(s, key, path, sizeof path);
    /* written whole, then renamed: a worker killed mid-write leaves a .tmp
     * (swept at the next start), never a short file served as whole */
    return sd_write_file_atomic(path, blob, len, err);
}

static int spool_read(sd_data_server *s, const char *key, void **blob, size_t *len)
{
    char path[PATH_MAX], *buf = NULL;
    sd_error err;
    spool_path(s, key, path, sizeof path);
    if (sd_read_file(path, &buf, len, &err) != SD_OK)
        return 0;
    *blob = buf;
    return 1;
}

sd_status sd_data_server_hold(sd_data_server *s, const char *key, const void *blob, size_t len, sd_error *spool_err,
                              sd_error *err)
{
    sd_error serr = {0};
    if (s->spool && spool_write(s, key, blob, len, &serr) != SD_OK)
        sd_error_prefix(&serr, serr.code, "%s: held in memory only: ", key);
    if (spool_err)
        *spool_err = serr;
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
        drop(s, &s->items[at]);
    /* the ring's slots of fetched or released items are empty: the oldest
     * slot is reused (a spooled one stays on disk) */
    if (s->n == s->cap) {
        drop(s, &s->items[s->first]);
        s->first = (s->first + 1) % s->cap;
        s->n--;
    }
    size_t slot = (s->first + s->n) % s->cap;
    held_item *h = &s->items[slot];
    h->key = k;
    h->blob = b;
    h->len = len;
    s->n++;
    index_compact(s);
    sd_status st = sd_u64map_put(&s->index, key_hash(key), slot + 1) == 0
                       ? SD_OK
                       : sd_fail(err, SD_ERR_NOMEM, "out of memory holding %s", key);
    pthread_mutex_unlock(&s->lock);
    return st;
}

unsigned long long sd_data_server_served_bytes(sd_data_server *s)
{
    return s ? atomic_load(&s->served) : 0;
}

void sd_data_server_release(sd_data_server *s, const char *key)
{
    pthread_mutex_lock(&s->lock);
    long at = find(s, key);
    if (at >= 0)
        drop(s, &s->items[at]);
    pthread_mutex_unlock(&s->lock);
    if (s->spool) {
        char path[PATH_MAX];
        spool_path(s, key, path, sizeof path);
        unlink(path);
    }
}

/* one FETCH: the blob (forgotten then unless kept: it has its consumer),
 * or "not held" */
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
    if (at >= 0 && !s->keep) {
        h = s->items[at];
        sd_u64map_put(&s->index, key_hash(h.key), 0);
        memset(&s->items[at], 0, sizeof s->items[at]);
    } else if (at >= 0 && (h.blob = malloc(s->items[at].len ? s->items[at].len : 1))) {
        memcpy(h.blob, s->items[at].blob, s->items[at].len);
        h.len = s->items[at].len;
    }
    pthread_mutex_unlock(&s->lock);
    /* no longer in memory: from the spool (a restarted worker's, too) */
    int found = h.blob || (key && s->spool && sd_msg_kind_of(&m) == SD_MSG_KIND_FETCH &&
                           spool_read(s, key, &h.blob, &h.len));
    if (found && sd_msg_new(&r, "OK", &err) == SD_OK) {
        int64_t shape[1] = {(int64_t)h.len};
        if (sd_msg_add_tensor(&r, "blob", SD_DTYPE_U8, 1, shape, h.blob, &err) == SD_OK &&
            sd_msg_send(s->sock, route, rl, &r, &err) == SD_OK)
            atomic_fetch_add(&s->served, (unsigned long long)h.len);
        sd_msg_free(&r);
    } else if (sd_msg_new(&r, "ERROR", &err) == SD_OK) {
        json_object_set_new(r.hdr, "reason", json_string("not held"));
        sd_msg_send(s->sock, route, rl, &r, &err);
        sd_msg_free(&r);
    }
    free(h.key);
    free(h.blob);
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

/* A spool's leftovers: temp files of a write cut short, and outputs older
 * than SD_DATA_SPOOL_TTL_S whose release never came (the coordinator lost
 * the worker's registration meanwhile, or the job was cancelled). */
static void spool_sweep(const char *dir, double max_age_s)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        char path[PATH_MAX];
        struct stat st;
        if (e->d_name[0] == '.' || snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(e->d_name, ".tmp.") || difftime(now, st.st_mtime) >= max_age_s)
            unlink(path);
    }
    closedir(d);
}

void sd_data_spool_remove(const char *spool)
{
    spool_sweep(spool, 0);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", spool);
    rmdir(spool);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        rmdir(parent); /* only if empty: another model's spool stays */
    }
}

sd_status sd_data_server_start(sd_data_server **out, void *ctx, const sd_data_server_opts *o, char *endpoint_out,
                               size_t len, sd_error *err)
{
    char host[INET6_ADDRSTRLEN + 2], ep[300];
    SD_TRY(local_address(o->coordinator, host, sizeof host, err));
    if (o->spool) {
        SD_TRY(sd_mkdirs(o->spool, err));
        if (!sd_path_is_dir(o->spool))
            return sd_fail(err, SD_ERR_IO, "--spool %s: not a folder", o->spool);
        spool_sweep(o->spool, SD_DATA_SPOOL_TTL_S);
    }
    sd_data_server *s = calloc(1, sizeof *s);
    size_t cap = o->capacity ? o->capacity : 1;
    if (!s || !(s->items = calloc(cap, sizeof *s->items)) || (o->spool && !(s->spool = strdup(o->spool)))) {
        if (s)
            free(s->items);
        free(s);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    s->cap = cap;
    s->keep = o->keep;
    sd_u64map_init(&s->index);
    pthread_mutex_init(&s->lock, NULL);
    s->sock = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, v6 = host[0] == '[';
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->sock, ZMQ_IPV6, &v6, sizeof v6);
    sd_status st = o->curve_secret ? sd_curve_data_server_setup(s->sock, o->curve_secret, err) : SD_OK;
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
        sd_u64map_free(&s->index);
        free(s->items);
        free(s->spool);
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
        drop(s, &s->items[i]);
    sd_u64map_free(&s->index);
    free(s->items);
    free(s->spool);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* One connection per holder, kept: a fetch is a request and its reply on
 * an open pipe, not a TCP connection and handshake each time. */
#define FETCH_CONNS 64
typedef struct {
    char endpoint[160], server_key[48];
    void *sock;
    unsigned long long used; /* for dropping the least recently used */
} fetch_conn;

struct sd_data_fetcher {
    void *ctx;
    char *curve_secret, *curve_public;
    fetch_conn conns[FETCH_CONNS];
    unsigned long long tick;
};

sd_status sd_data_fetcher_new(sd_data_fetcher **out, void *ctx, const char *curve_secret, const char *curve_public,
                              sd_error *err)
{
    sd_data_fetcher *f = calloc(1, sizeof *f);
    if (!f || (curve_secret && !(f->curve_secret = strdup(curve_secret))) ||
        (curve_public && !(f->curve_public = strdup(curve_public)))) {
        if (f)
            free(f->curve_secret);
        free(f);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    f->ctx = ctx;
    *out = f;
    return SD_OK;
}

static void conn_close(fetch_conn *c)
{
    if (c->sock)
        zmq_close(c->sock);
    memset(c, 0, sizeof *c);
}

void sd_data_fetcher_free(sd_data_fetcher *f)
{
    if (!f)
        return;
    for (int i = 0; i < FETCH_CONNS; i++)
        conn_close(&f->conns[i]);
    free(f->curve_secret);
    free(f->curve_public);
    free(f);
}

/* the open connection to endpoint (under server_key), or a new one in the
 * least recently used slot */
static sd_status conn_of(sd_data_fetcher *f, const char *endpoint, const char *server_key, fetch_conn **out,
                         const char *key, sd_error *err)
{
    const char *sk = server_key ? server_key : "";
    fetch_conn *lru = &f->conns[0];
    for (int i = 0; i < FETCH_CONNS; i++) {
        fetch_conn *c = &f->conns[i];
        if (c->sock && !strcmp(c->endpoint, endpoint) && !strcmp(c->server_key, sk)) {
            c->used = ++f->tick;
            *out = c;
            return SD_OK;
        }
        if (c->used < lru->used)
            lru = c;
    }
    conn_close(lru);
    if (strlen(endpoint) >= sizeof lru->endpoint || strlen(sk) >= sizeof lru->server_key)
        return sd_fail(err, SD_ERR_MISSING, "fetch %s: endpoint %s too long", key, endpoint);
    void *sock = zmq_socket(f->ctx, ZMQ_DEALER);
    if (!sock)
        return sd_fail(err, SD_ERR_IO, "fetch %s: %s", key, zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_IPV6, &(int){endpoint[6] == '['}, sizeof(int));
    sd_status st = sk[0] ? sd_curve_client_setup_key(sock, sk, f->curve_secret, f->curve_public, err) : SD_OK;
    if (st == SD_OK && zmq_connect(sock, endpoint) != 0)
        st = sd_fail(err, SD_ERR_MISSING, "fetch %s from %s: %s", key, endpoint, zmq_strerror(zmq_errno()));
    if (st != SD_OK) {
        zmq_close(sock);
        return st;
    }
    snprintf(lru->endpoint, sizeof lru->endpoint, "%s", endpoint);
    snprintf(lru->server_key, sizeof lru->server_key, "%s", sk);
    lru->sock = sock;
    lru->used = ++f->tick;
    *out = lru;
    return SD_OK;
}

sd_status sd_data_fetch(sd_data_fetcher *f, const char *endpoint, const char *server_key, const char *key,
                        int timeout_ms, void **blob, size_t *len, sd_error *err)
{
    fetch_conn *c = NULL;
    SD_TRY(conn_of(f, endpoint, server_key, &c, key, err));
    sd_msg m;
    sd_status st = sd_msg_new(&m, "FETCH", err);
    if (st == SD_OK) {
        json_object_set_new(m.hdr, "key", json_string(key));
        /* queued on the pipe zmq_connect made, sent once connected: the
         * wait below bounds it */
        st = sd_msg_send(c->sock, NULL, 0, &m, err);
        sd_msg_free(&m);
    }
    zmq_pollitem_t pi = {c->sock, 0, ZMQ_POLLIN, 0};
    if (st == SD_OK && !(zmq_poll(&pi, 1, timeout_ms) > 0 && (pi.revents & ZMQ_POLLIN)))
        st = sd_fail(err, SD_ERR_MISSING, "fetch %s: the holder at %s did not answer within %d ms", key, endpoint,
                     timeout_ms);
    sd_msg r;
    if (st == SD_OK && (st = sd_msg_recv(c->sock, 0, &r, NULL, NULL, err)) == SD_OK) {
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
        return st;
    }
    /* no answer (a late one must never be taken for the next request's):
     * this connection goes */
    conn_close(c);
    if (st == SD_ERR_IO)
        st = sd_error_prefix(err, SD_ERR_MISSING, "fetch %s: ", key);
    return st;
}

sd_status sd_data_fetch_item(sd_data_fetcher *f, const char *job, const json_t *item, int timeout_ms, int *has_source,
                             void **blob, size_t *len, sd_error *err)
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
    return sd_data_fetch(f, ep, skey && skey[0] ? skey : NULL, key, timeout_ms, blob, len, err);
}

sd_status sd_result_lean(sd_msg *res, sd_error *err)
{
    sd_msg lean;
    SD_TRY(sd_msg_new(&lean, "RESULT", err));
    json_object_set(lean.hdr, "task_id", json_object_get(res->hdr, "task_id"));
    sd_msg_free(res);
    *res = lean;
    return SD_OK;
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
