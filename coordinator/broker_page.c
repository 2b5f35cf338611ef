/* broker_page.c - the coordinator's status page at / on its --http address:
 * jobs with progress and ETA, the stages (waiting, in flight, rate, busy
 * workers), the workers by role, and the latest finished images (served at
 * /thumb/K from the job's folder). Plain HTML with its own styles and no
 * external asset, reloading itself every 2 s; rendered on the broker's
 * thread once a second, with the metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/output_item.h"
#include "coordinator/broker_internal.h"
#include "proto/http_probe.h"

typedef sd_metrics_buf page; /* a growing text: the metrics' buffer does for HTML too */

static void put(page *p, const char *s)
{
    sd_metrics_printf(p, "%s", s);
}

#define putf sd_metrics_printf

/* text from a worker or a job (ids are the workers' own): escaped */
static void put_text(page *p, const char *s)
{
    char buf[8];
    for (; s && *s; s++) {
        const char *e = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : *s == '"' ? "&quot;" : NULL;
        if (!e) {
            buf[0] = *s;
            buf[1] = '\0';
            e = buf;
        }
        put(p, e);
    }
}

static long long num(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *const stages[3] = {"text", "unet", "final"};

void broker_status_page(broker *b, struct sd_http_probe *probe)
{
    double now = sd_now_s(), dt = b->m.page_t > 0 ? now - b->m.page_t : 0;
    /* rates over the last seconds, smoothed */
    broker_stage_counts sc;
    broker_count_stages(b, &sc);
    const unsigned long long *stage_done = sc.done;
    if (dt > 0) {
        double inst = (double)(b->m.done - b->m.page_done) / dt;
        b->m.rate = 0.7 * b->m.rate + 0.3 * inst;
        for (int s = 0; s < 3; s++) {
            double d = stage_done[s] >= b->m.page_stage_done[s] ? (double)(stage_done[s] - b->m.page_stage_done[s]) : 0;
            b->m.stage_rate[s] = 0.7 * b->m.stage_rate[s] + 0.3 * d / dt;
        }
    }
    b->m.page_t = now;
    b->m.page_done = b->m.done;
    memcpy(b->m.page_stage_done, sc.done, sizeof sc.done);

    page p = {0};
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
    put(&p, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">"
            "<title>sdxl coordinator</title><style>"
            "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}"
            "table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
            "text-align:right}td:first-child,th:first-child{text-align:left}"
            "progress{width:12em}.thumbs{display:flex;flex-wrap:wrap;gap:10px}"
            ".thumbs figure{margin:0;font-size:12px;text-align:center}.thumbs img{width:160px;height:160px;"
            "object-fit:cover;background:#eee;display:block}"
            "</style></head><body>\n");
    putf(&p, "<h1>sdxl coordinator</h1><p>%s &middot; %.2f images/s</p>\n", when, b->m.rate);

    json_t *jobs = store_jobs_list(b->store);
    long long waiting[3] = {0, 0, 0};
    put(&p, "<h2>Jobs</h2><table id=\"jobs\"><tr><th>job</th><th>state</th><th>done</th><th>total</th><th>failed</th>"
            "<th>progress</th><th>ETA</th></tr>\n");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) {
        const char *state = json_string_value(json_object_get(j, "state"));
        long long done = num(j, "done"), total = num(j, "total"), failed = num(j, "failed");
        long long left = total - done - failed - num(j, "cancelled");
        int running = state && !strcmp(state, "running");
        if (running) {
            waiting[0] += num(j, "pending");
            waiting[1] += num(j, "encoded");
            waiting[2] += num(j, "denoised");
        }
        char eta[32] = "-";
        if (running && left > 0 && b->m.rate > 0.01)
            snprintf(eta, sizeof eta, "%.0f s", (double)left / b->m.rate);
        else if (running && left > 0)
            snprintf(eta, sizeof eta, "?");
        put(&p, "<tr><td>");
        put_text(&p, json_string_value(json_object_get(j, "id")));
        put(&p, "</td><td>");
        put_text(&p, state);
        putf(&p, "</td><td class=\"done\">%lld</td><td>%lld</td><td>%lld</td><td><progress value=\"%lld\" max=\"%lld\">"
                 "</progress></td><td>%s</td></tr>\n",
             done, total, failed, done, total > 0 ? total : 1, eta);
    }
    put(&p, "</table>\n");
    json_decref(jobs);

    put(&p, "<h2>Stages</h2><table id=\"stages\"><tr><th>stage</th><th>waiting</th><th>in flight</th>"
            "<th>items/s</th><th>workers</th><th>busy</th></tr>\n");
    for (int s = 0; s < 3; s++)
        putf(&p, "<tr><td>%s</td><td>%lld</td><td>%lld</td><td>%.2f</td><td>%lld</td><td>%lld</td></tr>\n", stages[s],
             waiting[s] > sc.flight[s] ? waiting[s] - sc.flight[s] : 0, sc.flight[s], b->m.stage_rate[s], sc.workers[s],
             sc.busy[s]);
    put(&p, "</table>\n<h2>Workers</h2><table id=\"workers\"><tr><th>worker</th><th>role</th><th>device</th>"
            "<th>state</th><th>items</th><th>last seen</th></tr>\n");
    for (int s = 0; s < 3; s++)
        for (int k = 0; k < b->workers_hw; k++) {
            const worker_t *w = &b->workers[k];
            if (!w->used || strcmp(w->role, stages[s]))
                continue;
            put(&p, "<tr><td>");
            put_text(&p, w->id);
            putf(&p, "</td><td>%s</td><td>", w->role);
            put_text(&p, w->devices);
            putf(&p, "</td><td>%s</td><td>%llu</td><td>%.1f s ago</td></tr>\n", w->inflight ? "busy" : "idle", w->done,
                 now - w->last_seen);
        }
    put(&p, "</table>\n<h2>Latest images</h2><div class=\"thumbs\">\n");
    char *thumbs[SD_HTTP_THUMBS];
    int nt = 0;
    for (int k = 0; k < b->m.nrecent && nt < SD_HTTP_THUMBS; k++) {
        job_outputs *o = broker_outputs(b, b->m.recent[k].job);
        if (!o || !o->dir[0])
            continue;
        /* a file of the folder (files layout), or one still staged (WebDataset) */
        char *path = sd_output_item_path(o->dir, o->o.webdataset, b->m.recent[k].idx, o->o.ext);
        if (!path || !sd_path_exists(path)) {
            free(path);
            continue;
        }
        thumbs[nt] = path;
        /* data-loaded: set by the browser once the image decoded (the page's test reads it) */
        putf(&p, "<figure><img class=\"thumb\" src=\"/thumb/%d\" alt=\"item %d\" onload=\"this.dataset.loaded=1\">"
                 "<figcaption>", nt, b->m.recent[k].idx);
        put_text(&p, b->m.recent[k].job);
        putf(&p, " #%d</figcaption></figure>\n", b->m.recent[k].idx);
        nt++;
    }
    if (!nt)
        put(&p, "<p>none yet</p>\n");
    put(&p, "</div></body></html>\n");
    if (p.failed) {
        sd_metrics_buf_free(&p);
        for (int k = 0; k < nt; k++)
            free(thumbs[k]);
        nt = 0;
    }
    sd_http_set_page(probe, p.text, thumbs, nt);
}
