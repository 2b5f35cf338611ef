/* param_loader.h - loads a network's parameters by diffusers' tensor names
 * onto a backend, checking each one's shape, and afterwards reports any
 * tensor in the file that no layer asked for (a sign of a config that does
 * not match the weights). Names the tensor and file in every error. */
#ifndef SDXL_WORKER_PARAM_LOADER_H
#define SDXL_WORKER_PARAM_LOADER_H

#include <stdint.h>

#include "common/model_folder.h"
#include "kernels/ops.h"

/* A parameter's name and shape, as recorded by a loader in record mode. */
typedef struct {
    char name[200];
    int ndim;
    int64_t shape[4];
} sd_param_info;

typedef struct {
    sd_param_info *p;
    int n, cap;
} sd_param_list;

void sd_param_list_free(sd_param_list *l);
unsigned long long sd_param_list_numel(const sd_param_list *l);

typedef struct {
    sd_backend *be;
    const sd_weights *w;
    sd_param_list *record; /* record mode: names and shapes only, no weights */
    unsigned char *used; /* per tensor of w, in w->tensors order */
    /* every tensor loaded, freed together by sd_param_free */
    sd_tensor **owned;
    int n_owned, cap_owned;
    char prefix[256]; /* prepended to names: "down_blocks.0.resnets.1." */
    unsigned long long bytes;
    int borrowed; /* tensors pointing into the file mapping (CPU, F32 files) */
    const struct sd_lora_deltas *lora; /* merged into the parameters they name */
} sd_param_loader;

/* A model's parameters: the tensors, and the weight files while any tensor
 * still points into their mapping. */
typedef struct {
    sd_weights w;
    int mapped;
    sd_tensor **owned;
    int n_owned;
    unsigned long long bytes;
} sd_param_set;

/* Opens a component's weights and starts a loader over them. */
sd_status sd_param_set_open(sd_param_set *ps, sd_param_loader *pl, sd_backend *be, const sd_component *c,
                            const char *variant, sd_error *err);
/* Ends loading: the set takes the tensors; the files stay mapped only if a
 * tensor borrows from them. On failure (ok == 0) everything is released. */
void sd_param_set_finish(sd_param_set *ps, sd_param_loader *pl, int ok);
void sd_param_set_free(sd_param_set *ps);

sd_status sd_param_begin(sd_param_loader *pl, sd_backend *be, const sd_weights *w, sd_error *err);
/* Record mode: every get appends (name, shape) to list and yields a
 * placeholder tensor; used to enumerate a model's parameters from its config
 * (random-model writes exactly what the loader will ask for). */
void sd_param_begin_record(sd_param_loader *pl, sd_param_list *list);
/* Loads prefix+name with the given shape into a new tensor. */
sd_status sd_param_get(sd_param_loader *pl, const char *name, int ndim, const int64_t *shape, sd_tensor **out,
                        sd_error *err);
/* Loads prefix+name if present (out set to NULL otherwise). */
sd_status sd_param_get_opt(sd_param_loader *pl, const char *name, int ndim, const int64_t *shape,
                            sd_tensor **out, sd_error *err);
/* Counts every tensor whose name starts with prefix as asked for without
 * loading it: a part of the model this process never runs (the VAE's
 * decoder on a UNet worker). */
void sd_param_skip_prefix(sd_param_loader *pl, const char *prefix);
/* Fails naming the first tensor never asked for, ignoring names matching
 * any of the ignore suffixes (e.g. "position_ids"). */
sd_status sd_param_check_all_used(sd_param_loader *pl, const char *const *ignore, sd_error *err);
/* Stops tracking tensors (keeps them loaded). */
void sd_param_end(sd_param_loader *pl);
/* Frees every tensor this loader created (call when the model is freed). */
void sd_param_free_all(sd_tensor **owned, int n);

/* printf-style prefix setter: sd_param_prefix(pl, "down_blocks.%d.", i). */
void sd_param_prefix(sd_param_loader *pl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shorthand shapes */
#define SHAPE1(a) 1, (int64_t[]){(a)}
#define SHAPE2(a, b) 2, (int64_t[]){(a), (b)}
#define SHAPE4(a, b, c, d) 4, (int64_t[]){(a), (b), (c), (d)}

#endif
