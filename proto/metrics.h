/* metrics.h - Prometheus' text exposition format (version 0.0.4), written
 * into a growing buffer: HELP and TYPE lines, samples with labels, and
 * histograms of fixed buckets. What a process serves at /metrics
 * (proto/http_probe.h). Names follow Prometheus' conventions: an sdxl_
 * prefix, base units (seconds, bytes), _total for counters. */
#ifndef SDXL_PROTO_METRICS_H
#define SDXL_PROTO_METRICS_H

#include <stddef.h>

typedef struct {
    char *text;
    size_t len, cap;
    int failed; /* out of memory: the text is cut short */
} sd_metrics_buf;

/* Appends formatted text (the buffer serves other text too: the status page). */
void sd_metrics_printf(sd_metrics_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* HELP and TYPE ("counter", "gauge", "histogram") of a metric family. */
void sd_metrics_family(sd_metrics_buf *b, const char *name, const char *type, const char *help);
/* One sample: labels as written between the braces ("role=\"unet\"") or NULL. */
void sd_metrics_sample(sd_metrics_buf *b, const char *name, const char *labels, double value);
void sd_metrics_buf_free(sd_metrics_buf *b);

/* A histogram over fixed bucket bounds (seconds): the stage times. */
#define SD_HIST_BUCKETS 14
typedef struct {
    unsigned long long counts[SD_HIST_BUCKETS + 1]; /* the last: above every bound */
    double sum;
    unsigned long long count;
} sd_hist;
void sd_hist_observe(sd_hist *h, double v);
/* Its _bucket (cumulative, le=...), _sum and _count samples. */
void sd_hist_write(sd_metrics_buf *b, const char *name, const char *labels, const sd_hist *h);

#endif
