/* clip_text.h - transformers' CLIPTextModel and CLIPTextModelWithProjection
 * (the text towers of CLIP ViT-L/14 and OpenCLIP bigG), built from their
 * config.json and loaded by transformers' tensor names:
 *   text_model.embeddings.{token,position}_embedding.weight
 *   text_model.encoder.layers.N.{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,mlp.fc2}
 *   text_model.final_layer_norm, text_projection (with projection only). */
#ifndef SDXL_WORKER_CLIP_TEXT_H
#define SDXL_WORKER_CLIP_TEXT_H

#include "common/model_folder.h"
#include "kernels/ops.h"

typedef struct {
    int hidden, intermediate, layers, heads, max_positions, vocab, projection_dim;
    sd_act act;
    float eps;
    int with_projection;
    long long eos_token_id;
} sd_clip_config;

typedef struct sd_clip_text sd_clip_text;

/* What a forward pass should produce; each non-NULL tensor is allocated by
 * the call ([B, S, D] for sequences, [B, D] or [B, P] for pooled). */
typedef struct {
    sd_tensor *hidden_states; /* array of layers + 1: embeddings, then each layer's output */
    sd_tensor *penultimate;   /* hidden_states[-(2 + skip)], what SDXL conditions on */
    int skip;                 /* diffusers' clip_skip (0: hidden_states[-2]) */
    const float *attention_mask; /* NULL, or B x S on the host: 0 hides that token from every other (compel) */
    sd_tensor *last_hidden;   /* final_layer_norm(last layer) */
    sd_tensor *pooled;        /* last_hidden at the eos position (legacy argmax of ids) */
    sd_tensor *text_embeds;   /* text_projection(pooled); WithProjection only */
} sd_clip_outputs;

sd_status sd_clip_config_load(sd_clip_config *cfg, const sd_component *c, sd_error *err);
/* The same from a parsed config.json of a component of that class (cfg zeroed by the caller). */
sd_status sd_clip_config_parse(sd_clip_config *cfg, const sd_json_doc *d, const char *class_name, sd_error *err);
sd_status sd_clip_text_load(sd_clip_text **out, sd_backend *be, const sd_component *c, const char *variant,
                            sd_error *err);
void sd_clip_text_free(sd_clip_text *m);
const sd_clip_config *sd_clip_text_config(const sd_clip_text *m);

/* ids: B x S token ids on the host (S <= max_position_embeddings). */
sd_status sd_clip_text_forward(sd_clip_text *m, const int64_t *ids, int B, int S, sd_clip_outputs *out,
                               sd_error *err);

/* Names and shapes of every parameter the config implies, in load order
 * (what sdxl random-model writes). */
#include "worker/engine/weights/param_loader.h"
sd_status sd_clip_text_list_params(const sd_component *c, sd_param_list *list, sd_error *err);

#endif
