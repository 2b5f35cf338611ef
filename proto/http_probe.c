/* http_probe.c - see http_probe.h. */
#include "proto/http_probe.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/parse_number.h"

struct sd_http_probe {
    struct MHD_Daemon *d;
    double live_s;
    _Atomic double last_alive;
    pthread_mutex_t lock; /* ready, ever_ready and why */
    int ready, ever_ready;
    char why[256];
    char *metrics; /* the latest /metrics text (sd_http_set_metrics), or NULL */
    char *page;    /* the latest status page served at / (sd_http_set_page), or NULL */
    char *thumbs[SD_HTTP_THUMBS]; /* files served at /thumb/K */
    int nthumbs;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_len, void **state)
{
    (void)version;
    (void)upload;
    sd_http_probe *p = cls;
    if (!*state) { /* the headers: answer once the (empty) body is in */
        *state = p;
        return MHD_YES;
    }
    if (*upload_len) { /* a probe has no body: take and ignore it */
        *upload_len = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    char text[320];
    if (!strcmp(url, "/healthz")) {
        pthread_mutex_lock(&p->lock);
        int starting = !p->ever_ready;
        pthread_mutex_unlock(&p->lock);
        double since = sd_now_s() - atomic_load(&p->last_alive);
        /* before it was first ready (loading a model can take minutes) the
         * process is alive if it answers at all */
        if (starting || since <= p->live_s)
            return reply(c, MHD_HTTP_OK, starting ? "ok (starting)\n" : "ok\n");
        snprintf(text, sizeof text, "not alive: its loop has not turned for %.0f s (limit %.0f s)\n", since, p->live_s);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    if (!strcmp(url, "/readyz")) {
        pthread_mutex_lock(&p->lock);
        int ready = p->ready;
        snprintf(text, sizeof text, "not ready: %s\n", p->why);
        pthread_mutex_unlock(&p->lock);
        return ready ? reply(c, MHD_HTTP_OK, "ok\n") : reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    if (!strcmp(url, "/") || !strncmp(url, "/thumb/", 7)) {
        int k = -1;
        char *data = NULL;
        size_t len = 0;
        const char *type = "text/html; charset=utf-8";
        if (url[1]) {
            long long kk;
            if (!sd_parse_int(url + 7, 0, SD_HTTP_THUMBS - 1, &kk))
                k = (int)kk;
        }
        pthread_mutex_lock(&p->lock);
        char *path = k >= 0 && k < p->nthumbs && p->thumbs[k] ? strdup(p->thumbs[k]) : NULL;
        if (!url[1] && p->page)
            data = strdup(p->page), len = strlen(p->page);
        pthread_mutex_unlock(&p->lock);
        sd_error err;
        if (path) { /* an image file, read here, on the HTTP thread */
            if (sd_read_file(path, &data, &len, &err) != SD_OK)
                data = NULL;
            const char *dot = strrchr(path, '.');
            type = dot && !strcmp(dot, ".webp") ? "image/webp" : dot && !strcmp(dot, ".jpg") ? "image/jpeg" : "image/png";
            free(path);
        }
        if (!data)
            return reply(c, MHD_HTTP_NOT_FOUND, url[1] ? "no such image (gone, or in a shard)\n" : "no status page\n");
        struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(data);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", type);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (!strcmp(url, "/metrics")) {
        pthread_mutex_lock(&p->lock);
        struct MHD_Response *r = MHD_create_response_from_buffer(p->metrics ? strlen(p->metrics) : 0,
                                                                 p->metrics ? p->metrics : (void *)"",
                                                                 MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&p->lock);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "not found: /, /healthz, /readyz, /metrics\n");
}

/* "HOST:PORT" (HOST "[v6]", an address, "*" or empty) */
static sd_status parse_addr(const char *addr, struct sockaddr_storage *ss, int *v6, sd_error *err)
{
    const char *colon = strrchr(addr, ':');
    long long port;
    char host[64];
    if (!colon || (size_t)(colon - addr) >= sizeof host || sd_parse_int(colon + 1, 0, 65535, &port))
        return sd_fail(err, SD_ERR_INVALID, "--http %s: not HOST:PORT (e.g. 0.0.0.0:8080, [::1]:8080)", addr);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    memset(ss, 0, sizeof *ss);
    *v6 = host[0] == '[';
    if (*v6) {
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']')
            return sd_fail(err, SD_ERR_INVALID, "--http %s: an IPv6 host is written [ADDR]", addr);
        host[n - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return sd_fail(err, SD_ERR_INVALID, "--http %s: '%s' is not an IPv6 address", addr, host + 1);
        return SD_OK;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (!host[0] || !strcmp(host, "*"))
        a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return sd_fail(err, SD_ERR_INVALID, "--http %s: '%s' is not an IPv4 address (a name is not resolved)", addr,
                       host);
    return SD_OK;
}

sd_status sd_http_start(sd_http_probe **out, const char *addr, double live_s, int *port_out, sd_error *err)
{
    struct sockaddr_storage ss;
    int v6 = 0;
    SD_TRY(parse_addr(addr, &ss, &v6, err));
    sd_http_probe *p = calloc(1, sizeof *p);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    p->live_s = live_s;
    atomic_store(&p->last_alive, sd_now_s());
    pthread_mutex_init(&p->lock, NULL);
    snprintf(p->why, sizeof p->why, "starting");
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    p->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, p, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_END);
    if (!p->d) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return sd_fail(err, SD_ERR_IO, "--http %s: cannot listen there (in use, or not an address of this host)",
                       addr);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT);
    if (port_out)
        *port_out = info ? (int)info->port : 0;
    *out = p;
    return SD_OK;
}

void sd_http_alive(sd_http_probe *p)
{
    if (p)
        atomic_store(&p->last_alive, sd_now_s());
}

void sd_http_set_ready(sd_http_probe *p, int ready, const char *why)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->ready = ready;
    p->ever_ready |= ready;
    snprintf(p->why, sizeof p->why, "%s", why ? why : "");
    pthread_mutex_unlock(&p->lock);
}

void sd_http_set_metrics(sd_http_probe *p, char *text)
{
    if (!p) {
        free(text);
        return;
    }
    pthread_mutex_lock(&p->lock);
    free(p->metrics);
    p->metrics = text;
    pthread_mutex_unlock(&p->lock);
}

void sd_http_set_page(sd_http_probe *p, char *html, char **thumbs, int nthumbs)
{
    if (!p) {
        free(html);
        for (int i = 0; i < nthumbs; i++)
            free(thumbs[i]);
        return;
    }
    pthread_mutex_lock(&p->lock);
    free(p->page);
    p->page = html;
    for (int i = 0; i < p->nthumbs; i++)
        free(p->thumbs[i]);
    p->nthumbs = nthumbs < SD_HTTP_THUMBS ? nthumbs : SD_HTTP_THUMBS;
    for (int i = 0; i < nthumbs; i++) {
        if (i < SD_HTTP_THUMBS)
            p->thumbs[i] = thumbs[i];
        else
            free(thumbs[i]);
    }
    pthread_mutex_unlock(&p->lock);
}

void sd_http_stop(sd_http_probe *p)
{
    if (!p)
        return;
    MHD_stop_daemon(p->d);
    free(p->metrics);
    free(p->page);
    for (int i = 0; i < p->nthumbs; i++)
        free(p->thumbs[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
