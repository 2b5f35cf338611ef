/* http_probe.h - a process's HTTP endpoint (--http HOST:PORT) for the
 * engines that place it: liveness at /healthz, readiness at /readyz, its
 * metrics at /metrics, served
 * by libmicrohttpd on a thread of its own. The process only keeps two
 * facts up to date (sd_http_alive: its loop turned; sd_http_set_ready: it
 * can take work), so a probe never touches its state. A probe answers 200
 * "ok" or 503 with the reason, as Kubernetes' httpGet probes expect. */
#ifndef SDXL_PROTO_HTTP_PROBE_H
#define SDXL_PROTO_HTTP_PROBE_H

#include "common/error.h"

typedef struct sd_http_probe sd_http_probe;

/* Serves on addr ("HOST:PORT"; HOST an IPv4 or IPv6 address, "*" or empty
 * for every address, PORT 0 for a free one: *port_out says which). live_s:
 * once it has been ready, /healthz fails when the loop has not turned for
 * that long (before, answering at all is alive: a model may load for minutes). */
sd_status sd_http_start(sd_http_probe **out, const char *addr, double live_s, int *port_out, sd_error *err);
/* The process's loop (or its compute loop) is turning. Thread-safe. */
void sd_http_alive(sd_http_probe *p);
/* Ready (1) or not, and why not (copied). Thread-safe. */
void sd_http_set_ready(sd_http_probe *p, int ready, const char *why);
/* The text /metrics serves from now on (Prometheus' format, proto/metrics.h);
 * takes text (malloc'd). The process renders it from its own thread now and
 * then, so a scrape never touches its state. Thread-safe. */
void sd_http_set_metrics(sd_http_probe *p, char *text);
/* The page served at / (HTML, taken) and the image files served at
 * /thumb/0../thumb/N-1 (paths, taken: read from disk per request). */
#define SD_HTTP_THUMBS 8
void sd_http_set_page(sd_http_probe *p, char *html, char **thumbs, int nthumbs);
void sd_http_stop(sd_http_probe *p);

#endif
