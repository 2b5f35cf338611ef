/* broker_metrics.c - the coordinator's /metrics (Prometheus' text format):
 * items by state and jobs (the store's kept counts), what moved items
 * (done, requeued and why), the stages' compute times and waits as the
 * workers report them, items in flight per stage, workers by role and
 * state, refused messages and the time its database commits take. Rendered
 * on the broker's thread once a second and handed to the HTTP thread. */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "coordinator/broker_internal.h"
#include "proto/http_probe.h"

static const char *const stages[3] = {"text", "unet", "final"};

void broker_count_stages(const broker *b, broker_stage_counts *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < b->tasks_hw; i++)
        for (int s = 0; s < 3 && b->tasks[i].used; s++)
            if (!strcmp(b->tasks[i].stage, stages[s]))
                c->flight[s] += b->tasks[i].n;
    for (int i = 0; i < b->workers_hw; i++)
        for (int s = 0; s < 3 && b->workers[i].used; s++)
            if (!strcmp(b->workers[i].role, stages[s])) {
                c->workers[s]++;
                c->busy[s] += b->workers[i].inflight > 0;
                c->done[s] += b->workers[i].done;
            }
}

void broker_metrics_observe(broker *b, const json_t *info)
{
    for (int s = 0; s < 3; s++) {
        char key[32];
        snprintf(key, sizeof key, "%s_seconds", stages[s]);
        json_t *v = json_object_get(info, key);
        if (json_is_number(v))
            sd_hist_observe(&b->m.stage[s], json_number_value(v));
        if (s > 0) {
            snprintf(key, sizeof key, "%s_wait_seconds", stages[s]);
            v = json_object_get(info, key);
            if (json_is_number(v))
                sd_hist_observe(&b->m.wait[s - 1], json_number_value(v));
        }
    }
}

void broker_metrics(broker *b, struct sd_http_probe *probe)
{
    double now = sd_now_s();
    if (!probe || now - b->m.rendered < 1.0)
        return;
    b->m.rendered = now;
    broker_status_page(b, probe);
    sd_metrics_buf t = {0};
    char labels[96];
    long long items[6], running, ended;
    store_state_totals(b->store, items, &running, &ended);
    static const char *const states[6] = {"pending", "encoded", "denoised", "done", "failed", "cancelled"};
    sd_metrics_family(&t, "sdxl_items", "gauge", "Items of every job by state (pending: waiting for text, encoded: "
                                                 "for a unet worker, denoised: for a final worker).");
    for (int i = 0; i < 6; i++) {
        snprintf(labels, sizeof labels, "state=\"%s\"", states[i]);
        sd_metrics_sample(&t, "sdxl_items", labels, (double)items[i]);
    }
    sd_metrics_family(&t, "sdxl_jobs", "gauge", "Jobs known to the coordinator, running or ended.");
    sd_metrics_sample(&t, "sdxl_jobs", "state=\"running\"", (double)running);
    sd_metrics_sample(&t, "sdxl_jobs", "state=\"ended\"", (double)ended);
    sd_metrics_family(&t, "sdxl_items_done_total", "counter", "Items made and recorded done since the coordinator started.");
    sd_metrics_sample(&t, "sdxl_items_done_total", NULL, (double)b->m.done);
    sd_metrics_family(&t, "sdxl_items_requeued_total", "counter",
                      "Items sent back to waiting since the coordinator started, by reason: worker_lost (it died, "
                      "stalled or restarted: not charged), worker_failed (its FAIL: an attempt charged), input_lost "
                      "(its input's holder was gone: made again).");
    sd_metrics_sample(&t, "sdxl_items_requeued_total", "reason=\"worker_lost\"", (double)b->m.requeued_lost);
    sd_metrics_sample(&t, "sdxl_items_requeued_total", "reason=\"worker_failed\"", (double)b->m.requeued_failed);
    sd_metrics_sample(&t, "sdxl_items_requeued_total", "reason=\"input_lost\"", (double)b->m.inputs_lost);
    sd_metrics_family(&t, "sdxl_stage_seconds", "histogram", "Compute time of an item in a stage, as its worker reports it.");
    for (int s = 0; s < 3; s++) {
        snprintf(labels, sizeof labels, "stage=\"%s\"", stages[s]);
        sd_hist_write(&t, "sdxl_stage_seconds", labels, &b->m.stage[s]);
    }
    sd_metrics_family(&t, "sdxl_stage_wait_seconds", "histogram",
                      "Time an item waited between the end of one stage and the start of the next.");
    for (int s = 1; s < 3; s++) {
        snprintf(labels, sizeof labels, "stage=\"%s\"", stages[s]);
        sd_hist_write(&t, "sdxl_stage_wait_seconds", labels, &b->m.wait[s - 1]);
    }
    broker_stage_counts sc;
    broker_count_stages(b, &sc);
    sd_metrics_family(&t, "sdxl_stage_in_flight", "gauge", "Items a worker of the stage is computing now.");
    for (int s = 0; s < 3; s++) {
        snprintf(labels, sizeof labels, "stage=\"%s\"", stages[s]);
        sd_metrics_sample(&t, "sdxl_stage_in_flight", labels, (double)sc.flight[s]);
    }
    sd_metrics_family(&t, "sdxl_workers", "gauge", "Registered workers by role and state (busy: a task in flight).");
    for (int s = 0; s < 3; s++)
        for (int busy = 0; busy < 2; busy++) {
            snprintf(labels, sizeof labels, "role=\"%s\",state=\"%s\"", stages[s], busy ? "busy" : "idle");
            sd_metrics_sample(&t, "sdxl_workers", labels, (double)(busy ? sc.busy[s] : sc.workers[s] - sc.busy[s]));
        }
    sd_metrics_family(&t, "sdxl_messages_refused_total", "counter",
                      "Messages refused, by reason: malformed (garbage, a wrong version, missing fields), key_not_allowed "
                      "(a REGISTER under a CURVE key not allowed that worker id), unknown_worker (not registered), "
                      "expired_task (a result of a task given up on).");
    sd_metrics_sample(&t, "sdxl_messages_refused_total", "reason=\"malformed\"", (double)b->malformed);
    sd_metrics_sample(&t, "sdxl_messages_refused_total", "reason=\"key_not_allowed\"", (double)b->m.refused_key);
    sd_metrics_sample(&t, "sdxl_messages_refused_total", "reason=\"unknown_worker\"", (double)b->m.refused_unknown);
    sd_metrics_sample(&t, "sdxl_messages_refused_total", "reason=\"expired_task\"", (double)b->m.expired);
    sd_metrics_family(&t, "sdxl_coordinator_tensor_bytes_total", "counter",
                      "Tensor bytes through the coordinator (the data plane goes worker to worker: only what a worker "
                      "could not hand on itself), by direction.");
    sd_metrics_sample(&t, "sdxl_coordinator_tensor_bytes_total", "direction=\"received\"", (double)b->m.bytes_in);
    sd_metrics_sample(&t, "sdxl_coordinator_tensor_bytes_total", "direction=\"sent\"", (double)b->m.bytes_out);
    sd_metrics_family(&t, "sdxl_images_per_second", "gauge", "Images finished a second, smoothed over a few seconds.");
    sd_metrics_sample(&t, "sdxl_images_per_second", NULL, b->m.rate);
    sd_metrics_family(&t, "sdxl_coordinator_db_commit_seconds_total", "counter",
                      "Time spent committing the turns' writes to the state database.");
    sd_metrics_sample(&t, "sdxl_coordinator_db_commit_seconds_total", NULL, b->m.commit_s);
    sd_metrics_family(&t, "sdxl_coordinator_turns_total", "counter", "Turns of the coordinator's loop.");
    sd_metrics_sample(&t, "sdxl_coordinator_turns_total", NULL, (double)b->m.turns);
    if (t.failed)
        sd_metrics_buf_free(&t);
    sd_http_set_metrics(probe, t.text); /* taken (NULL when out of memory: an empty page) */
}
