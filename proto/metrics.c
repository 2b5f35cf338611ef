/* metrics.c - see metrics.h. */
#include "proto/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* from a text item (milliseconds) to a slow UNet step on a CPU (minutes) */
static const double bounds[SD_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

void sd_metrics_printf(sd_metrics_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->text ? b->text + b->len : NULL, b->text ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->text && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *t = realloc(b->text, cap);
        if (!t) {
            b->failed = 1;
            return;
        }
        b->text = t;
        b->cap = cap;
    }
}

void sd_metrics_family(sd_metrics_buf *b, const char *name, const char *type, const char *help)
{
    sd_metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(sd_metrics_buf *b, double v)
{
    if (isnan(v))
        sd_metrics_printf(b, " NaN\n");
    else if (isinf(v))
        sd_metrics_printf(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else if (v == floor(v) && fabs(v) < 1e15)
        sd_metrics_printf(b, " %.0f\n", v);
    else
        sd_metrics_printf(b, " %.9g\n", v);
}

void sd_metrics_sample(sd_metrics_buf *b, const char *name, const char *labels, double v)
{
    if (labels && labels[0])
        sd_metrics_printf(b, "%s{%s}", name, labels);
    else
        sd_metrics_printf(b, "%s", name);
    value(b, v);
}

void sd_metrics_buf_free(sd_metrics_buf *b)
{
    free(b->text);
    memset(b, 0, sizeof *b);
}

void sd_hist_observe(sd_hist *h, double v)
{
    int i = 0;
    while (i < SD_HIST_BUCKETS && v > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void sd_hist_write(sd_metrics_buf *b, const char *name, const char *labels, const sd_hist *h)
{
    const char *sep = labels && labels[0] ? "," : "";
    unsigned long long cum = 0;
    for (int i = 0; i <= SD_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        if (i < SD_HIST_BUCKETS)
            sd_metrics_printf(b, "%s_bucket{%s%sle=\"%g\"}", name, labels ? labels : "", sep, bounds[i]);
        else
            sd_metrics_printf(b, "%s_bucket{%s%sle=\"+Inf\"}", name, labels ? labels : "", sep);
        value(b, (double)cum);
    }
    char n[128];
    snprintf(n, sizeof n, "%s_sum", name);
    sd_metrics_sample(b, n, labels, h->sum);
    snprintf(n, sizeof n, "%s_count", name);
    sd_metrics_sample(b, n, labels, (double)h->count);
}
