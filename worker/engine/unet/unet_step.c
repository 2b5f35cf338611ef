/* unet_step.c - a replayed UNet step: fixed inputs, a planned arena, and a
 * captured graph where the backend has them (see unet_step.h). */
#include "worker/engine/unet/unet_step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"

/* the eager step after which the capture happens (see unet_step.h) */
#define CAPTURE_AT_STEP 3

struct sd_unet_step {
    sd_unet *u;
    sd_backend *be;
    int64_t B, h, w, S, P;
    int nids, use_graph;
    int graph_failed; /* a capture failed: this step stays eager (said once) */
    /* inputs, rewritten before each step (sample, tproj) or image (the rest) */
    sd_tensor sample, tproj, ctx, text_embeds, ids;
    sd_arena *arena;
    void *graph;   /* the captured step, once made */
    sd_tensor out; /* graph steps: the captured step's output, a view into the arena */
    long long steps, graph_steps;
};

sd_status sd_unet_step_create(sd_unet_step **out, sd_unet *u, int64_t B, int64_t h, int64_t w, int64_t S, int64_t P,
                              int nids, int use_graph, sd_error *err)
{
    *out = NULL;
    const sd_unet_config *c = sd_unet_get_config(u);
    if (c->text_time && (P < 1 || nids < 1))
        return sd_fail(err, SD_ERR_INVALID, "unet step: text_time conditioning needs text_embeds and time ids");
    sd_unet_step *s = calloc(1, sizeof *s);
    if (!s)
        return sd_fail(err, SD_ERR_NOMEM, "unet step: out of memory");
    s->u = u;
    s->be = sd_unet_backend(u);
    s->B = B, s->h = h, s->w = w, s->S = S, s->P = P, s->nids = nids, s->use_graph = use_graph;
    int64_t xs[4] = {B, c->in_channels, h, w}, tps[2] = {B, c->block_out[0]}, cs[3] = {B, S, c->cross_dim},
            es[2] = {B, P}, ids_shape[2] = {B * nids, c->addition_time_embed_dim};
    sd_status st = sd_tensor_alloc(s->be, &s->sample, 4, xs, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(s->be, &s->tproj, 2, tps, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(s->be, &s->ctx, 3, cs, err);
    if (st == SD_OK && c->text_time)
        st = sd_tensor_alloc(s->be, &s->text_embeds, 2, es, err);
    if (st == SD_OK && c->text_time)
        st = sd_tensor_alloc(s->be, &s->ids, 2, ids_shape, err);
    if (st == SD_OK)
        st = sd_arena_create(&s->arena, s->be, err);
    if (st != SD_OK) {
        sd_unet_step_free(s);
        return st;
    }
    *out = s;
    return SD_OK;
}

int sd_unet_step_fits(const sd_unet_step *s, const sd_unet *u, int64_t B, int64_t h, int64_t w, int64_t S, int64_t P,
                      int nids, int use_graph)
{
    return s && s->u == u && s->B == B && s->h == h && s->w == w && s->S == S && s->P == P && s->nids == nids &&
           s->use_graph == use_graph;
}

sd_status sd_unet_step_condition(sd_unet_step *s, const float *ctx, const float *text_embeds, const float *time_ids,
                                 sd_error *err)
{
    SD_TRY(sd_tensor_upload(&s->ctx, ctx, SD_DTYPE_F32, err));
    if (sd_unet_get_config(s->u)->text_time) {
        if (!text_embeds || !time_ids)
            return sd_fail(err, SD_ERR_INVALID, "unet step: text_time conditioning needs text_embeds and time ids");
        SD_TRY(sd_tensor_upload(&s->text_embeds, text_embeds, SD_DTYPE_F32, err));
        SD_TRY(sd_unet_embed_time_ids(s->u, &s->ids, time_ids, err));
    }
    return SD_OK;
}

/* One eager forward inside the arena; capture: record it as the graph
 * instead of running it (the graph is then launched once to run it). */
static sd_status eager_step(sd_unet_step *s, int capture, float *pred, sd_error *err)
{
    const sd_unet_config *c = sd_unet_get_config(s->u);
    sd_tensor out = {0};
    SD_TRY(sd_arena_enter(s->arena, err));
    sd_status st = capture ? sd_backend_capture_begin(s->be, err) : SD_OK;
    if (st == SD_OK) {
        st = sd_unet_forward_prepared(s->u, &s->sample, &s->tproj, &s->ctx, c->text_time ? &s->text_embeds : NULL,
                                      c->text_time ? &s->ids : NULL, &out, err);
        if (capture) {
            /* end the capture even after a failure, so the stream is usable */
            sd_error end_err;
            sd_status end = sd_backend_capture_end(s->be, &s->graph, st == SD_OK ? err : &end_err);
            if (st == SD_OK)
                st = end;
            if (st == SD_OK)
                st = sd_backend_graph_launch(s->be, s->graph, err);
        }
    }
    if (st == SD_OK) {
        st = sd_tensor_to_host_f32(&out, pred, err);
        if (capture) { /* later launches write the same place */
            s->out = out;
            s->out.owned = 0;
        }
    }
    sd_tensor_free(&out);
    sd_error leave_err;
    sd_status left = sd_arena_leave(s->arena, st == SD_OK, st == SD_OK ? err : &leave_err);
    if (capture && (st != SD_OK || left != SD_OK)) {
        sd_backend_graph_free(s->be, s->graph);
        s->graph = NULL;
    }
    return st != SD_OK ? st : left;
}

sd_status sd_unet_step_run(sd_unet_step *s, const float *sample, const float *timesteps, float *pred,
                           sd_error *err)
{
    SD_TRY(sd_tensor_upload(&s->sample, sample, SD_DTYPE_F32, err));
    SD_TRY(sd_unet_embed_timesteps(s->u, &s->tproj, timesteps, err));
    if (s->graph) {
        SD_TRY(sd_backend_graph_launch(s->be, s->graph, err));
        SD_TRY(sd_tensor_to_host_f32(&s->out, pred, err));
        s->graph_steps++;
    } else if (s->use_graph && !s->graph_failed && sd_backend_can_capture(s->be) && s->steps + 1 == CAPTURE_AT_STEP) {
        /* a capture that fails must not fail the image: the step runs
         * eagerly instead, now and from then on */
        sd_error cap_err;
        if (eager_step(s, 1, pred, &cap_err) == SD_OK) {
            s->graph_steps++;
        } else {
            s->graph_failed = 1;
            fprintf(stderr, "sdxl: capturing the UNet step as a CUDA graph failed (%s); its steps stay eager\n",
                    cap_err.msg);
            SD_TRY(eager_step(s, 0, pred, err));
        }
    } else {
        SD_TRY(eager_step(s, 0, pred, err));
    }
    s->steps++;
    return SD_OK;
}

void sd_unet_step_get_info(const sd_unet_step *s, sd_unet_step_info *info)
{
    sd_arena_stats a;
    sd_arena_get_stats(s->arena, &a);
    info->steps = s->steps;
    info->graph_steps = s->graph_steps;
    info->arena_bytes = a.arena_bytes;
    info->peak_live_bytes = a.peak_live_bytes;
    info->buffers = a.buffers;
}

void sd_unet_step_free(sd_unet_step *s)
{
    if (!s)
        return;
    sd_backend_graph_free(s->be, s->graph);
    sd_arena_free(s->arena);
    sd_tensor_free(&s->sample);
    sd_tensor_free(&s->tproj);
    sd_tensor_free(&s->ctx);
    sd_tensor_free(&s->text_embeds);
    sd_tensor_free(&s->ids);
    free(s);
}
