/* cmd_eval.c - `sdxl eval text|unet|vae-decode|vae-encode --model DIR --in IN
 * --out OUT`: safetensors in, safetensors out, one network forward. The
 * contract later checks (and users comparing with diffusers) rely on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "common/clock.h"
#include "common/model_folder.h"
#include "common/safetensors.h"
#include "kernels/ops.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/stage_backends.h"
#include "worker/engine/vae/vae.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sdxl eval text|unet|vae-decode|vae-encode --model DIR --in IN.safetensors --out OUT.safetensors\n"
            "                 [--device cpu|cuda:N] [--dtype f32|f16|bf16] [--variant fp16]\n\n"
            "One forward pass of a network, tensors in and out as safetensors (F32 unless stated):\n"
            "  text        in: input_ids (I64 [B,77], tokenizer 1; absent for a refiner), input_ids_2 (I64 [B,77])\n"
            "              out: prompt_embeds [B,77,D] (penultimate hidden states of encoder 1 and 2, concatenated;\n"
            "              encoder 2 alone for a refiner), pooled_prompt_embeds [B,P]\n"
            "  unet        in: sample [B,4,h,w], timestep [B] (or one value for all), encoder_hidden_states [B,77,C],\n"
            "              text_embeds [B,P], time_ids [B,6] (base) or [B,5] (refiner); out: noise_pred [B,4,h,w]\n"
            "  vae-decode  in: latents [B,4,h,w] as the pipeline holds them (divided by the config's scaling_factor\n"
            "              here, or mapped by its latents_mean/std when it has them); out: image [B,3,8h,8w], the raw\n"
            "              decoder output in [-1,1] space\n"
            "  vae-encode  in: image [B,3,H,W] in [-1,1]; out: mean and std of the latent distribution\n\n"
            "  --device    cpu (default) or cuda:N\n"
            "  --dtype     compute precision: f32 on the CPU; f16 (default), bf16 or f32 on CUDA, the VAE in\n"
            "              f32 where the pipeline would upcast it (force_upcast: decode under f16, encode)\n"
            "  --variant   read NAME.VARIANT.safetensors weights (default: what exists, plain first)\n");
}

typedef struct {
    const char *what, *model, *in, *out, *device, *variant;
    sd_dtype dtype;
} eval_args;

/* A float tensor of the input file, uploaded; ndim checked (0 = any). */
static sd_status input_tensor(sd_backend *be, const sd_st_file *f, const char *name, int ndim, sd_tensor *t,
                              sd_error *err)
{
    const sd_st_tensor *s = sd_st_find(f, name);
    if (!s)
        return sd_fail(err, SD_ERR_MISSING, "%s: input tensor '%s' is missing", f->path, name);
    if (!sd_dtype_is_float(s->dtype))
        return sd_fail(err, SD_ERR_FORMAT, "%s: input '%s' is %s, expected a float dtype", f->path, name,
                       sd_dtype_name(s->dtype));
    if (ndim && s->ndim != ndim)
        return sd_fail(err, SD_ERR_FORMAT, "%s: input '%s' has %d dimensions, expected %d", f->path, name, s->ndim,
                       ndim);
    return sd_tensor_from_host(be, t, s->data, s->dtype, s->ndim, s->shape, 0, err);
}

/* Float values of a small input as host floats (timesteps, time ids). */
static sd_status input_host_floats(const sd_st_file *f, const char *name, float **out, size_t *n, sd_error *err)
{
    const sd_st_tensor *s = sd_st_find(f, name);
    if (!s)
        return sd_fail(err, SD_ERR_MISSING, "%s: input tensor '%s' is missing", f->path, name);
    *n = (size_t)sd_st_numel(s);
    *out = malloc((*n ? *n : 1) * sizeof **out);
    if (!*out)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (sd_convert_to_f32(*out, s->data, s->dtype, *n) != 0) {
        free(*out);
        return sd_fail(err, SD_ERR_FORMAT, "%s: input '%s' is %s, expected a float dtype", f->path, name,
                       sd_dtype_name(s->dtype));
    }
    return SD_OK;
}

static sd_status add_output(sd_st_writer *w, const char *name, const sd_tensor *t, sd_error *err)
{
    size_t n = (size_t)sd_tensor_numel(t);
    float *host = malloc((n ? n : 1) * sizeof *host);
    if (!host)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_tensor_to_host_f32(t, host, err);
    if (st == SD_OK)
        st = sd_st_writer_add_copy(w, name, SD_DTYPE_F32, t->ndim, t->shape, host, err);
    free(host);
    return st;
}

static sd_status ids_input(const sd_st_file *f, const char *name, int64_t **ids, int *B, int *S, sd_error *err)
{
    const sd_st_tensor *s = sd_st_find(f, name);
    if (!s)
        return sd_fail(err, SD_ERR_MISSING, "%s: input tensor '%s' is missing", f->path, name);
    if (s->dtype != SD_DTYPE_I64 || s->ndim != 2)
        return sd_fail(err, SD_ERR_FORMAT, "%s: input '%s' must be I64 [B, 77]", f->path, name);
    *ids = sd_st_copy_i64(s);
    if (!*ids)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    *B = (int)s->shape[0];
    *S = (int)s->shape[1];
    return SD_OK;
}

static sd_status eval_text(const eval_args *a, sd_backend *be, const sd_model_folder *m, const sd_st_file *in,
                           sd_st_writer *w, sd_error *err)
{
    const sd_component *c1 = sd_model_find(m, "text_encoder"), *c2;
    SD_TRY(sd_model_require(m, "text_encoder_2", &c2, err));
    int has1 = c1 && c1->present;
    int64_t *ids1 = NULL, *ids2 = NULL;
    int B1 = 0, S1 = 0, B2, S2;
    sd_tensor pen1 = {0}, pen2 = {0}, pooled = {0}, cat = {0};
    sd_status st = SD_OK;
    if (has1)
        st = ids_input(in, "input_ids", &ids1, &B1, &S1, err);
    if (st == SD_OK)
        st = ids_input(in, "input_ids_2", &ids2, &B2, &S2, err);
    if (st == SD_OK && has1 && (B1 != B2 || S1 != S2))
        st = sd_fail(err, SD_ERR_FORMAT, "%s: input_ids [%d,%d] and input_ids_2 [%d,%d] differ in shape", in->path, B1,
                     S1, B2, S2);
    if (st == SD_OK && has1) {
        sd_clip_text *t1;
        st = sd_clip_text_load(&t1, be, c1, a->variant, err);
        if (st == SD_OK) {
            sd_clip_outputs o = {.penultimate = &pen1};
            st = sd_clip_text_forward(t1, ids1, B1, S1, &o, err);
            sd_clip_text_free(t1);
        }
    }
    if (st == SD_OK) {
        sd_clip_text *t2;
        st = sd_clip_text_load(&t2, be, c2, a->variant, err);
        if (st == SD_OK) {
            sd_clip_outputs o = {.penultimate = &pen2, .text_embeds = &pooled};
            st = sd_clip_text_forward(t2, ids2, B2, S2, &o, err);
            sd_clip_text_free(t2);
        }
    }
    if (st == SD_OK && has1) {
        int64_t shape[3] = {B2, S2, pen1.shape[2] + pen2.shape[2]};
        st = sd_tensor_alloc(be, &cat, 3, shape, err);
        if (st == SD_OK)
            st = sd_op_concat(&cat, &pen1, &pen2, 2, err);
    }
    if (st == SD_OK)
        st = add_output(w, "prompt_embeds", has1 ? &cat : &pen2, err);
    if (st == SD_OK)
        st = add_output(w, "pooled_prompt_embeds", &pooled, err);
    sd_tensor_free(&pen1);
    sd_tensor_free(&pen2);
    sd_tensor_free(&pooled);
    sd_tensor_free(&cat);
    free(ids1);
    free(ids2);
    return st;
}

static sd_status eval_unet(const eval_args *a, sd_backend *be, const sd_model_folder *m, const sd_st_file *in,
                           sd_st_writer *w, sd_error *err)
{
    const sd_component *c;
    SD_TRY(sd_model_require(m, "unet", &c, err));
    sd_tensor sample = {0}, ctx = {0}, te = {0}, out = {0};
    float *ts = NULL, *ids = NULL, *tsb = NULL;
    size_t nts = 0, nids = 0;
    sd_unet *u = NULL;
    sd_status st = input_tensor(be, in, "sample", 4, &sample, err);
    if (st == SD_OK)
        st = input_tensor(be, in, "encoder_hidden_states", 3, &ctx, err);
    if (st == SD_OK)
        st = input_tensor(be, in, "text_embeds", 2, &te, err);
    if (st == SD_OK)
        st = input_host_floats(in, "timestep", &ts, &nts, err);
    if (st == SD_OK)
        st = input_host_floats(in, "time_ids", &ids, &nids, err);
    int64_t B = sample.shape[0];
    if (st == SD_OK && nts != 1 && nts != (size_t)B)
        st = sd_fail(err, SD_ERR_FORMAT, "%s: timestep has %zu values for a batch of %lld", in->path, nts,
                     (long long)B);
    if (st == SD_OK && (B == 0 || nids % (size_t)B))
        st = sd_fail(err, SD_ERR_FORMAT, "%s: time_ids has %zu values, not a multiple of the batch %lld", in->path,
                     nids, (long long)B);
    if (st == SD_OK) {
        tsb = malloc((size_t)B * sizeof *tsb);
        for (int64_t i = 0; tsb && i < B; i++)
            tsb[i] = ts[nts == 1 ? 0 : i];
        if (!tsb)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    if (st == SD_OK)
        st = sd_unet_load(&u, be, c, a->variant, err);
    if (st == SD_OK) {
        int want = sd_unet_time_ids(u, (int)te.shape[1]);
        if (want && (size_t)want * (size_t)B != nids)
            st = sd_fail(err, SD_ERR_FORMAT, "%s: time_ids must be [%lld, %d] for this unet", in->path, (long long)B,
                         want);
    }
    if (st == SD_OK)
        st = sd_unet_forward(u, &sample, tsb, &ctx, &te, ids, (int)(nids / (size_t)B), &out, err);
    if (st == SD_OK)
        st = add_output(w, "noise_pred", &out, err);
    sd_unet_free(u);
    free(ts);
    free(tsb);
    free(ids);
    sd_tensor_free(&sample);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_tensor_free(&out);
    return st;
}

/* be, f32_be: the stage's backends; the VAE runs on the one the pipeline
 * would pick for its force_upcast (stage_backends.h) */
static sd_status eval_vae(const eval_args *a, sd_backend *be, sd_backend *f32_be, const sd_model_folder *m,
                          const sd_st_file *in, sd_st_writer *w, int encode, sd_error *err)
{
    const sd_component *c;
    SD_TRY(sd_model_require(m, "vae", &c, err));
    sd_vae_config vcfg;
    memset(&vcfg, 0, sizeof vcfg);
    SD_TRY(sd_vae_config_load(&vcfg, c, err));
    be = sd_stage_vae_backend(be, f32_be, vcfg.force_upcast, encode);
    sd_vae *v = NULL;
    sd_tensor x = {0}, y = {0};
    sd_status st = sd_vae_load_parts(&v, be, c, a->variant, encode ? SD_VAE_ENCODER : SD_VAE_DECODER, err);
    if (st == SD_OK && encode)
        st = input_tensor(be, in, "image", 4, &x, err);
    if (st == SD_OK && !encode) {
        /* the pipeline's mapping, on the host: x / scaling_factor, or with
         * the config's latent statistics x * std / scaling_factor + mean */
        const sd_st_tensor *lt = sd_st_find(in, "latents");
        const sd_vae_config *vc = sd_vae_get_config(v);
        float *host = NULL;
        size_t n = 0;
        if (lt && (lt->ndim != 4 || lt->shape[1] != vc->latent_channels))
            st = sd_fail(err, SD_ERR_FORMAT, "%s: input 'latents' must be [B,%d,h,w]", in->path, vc->latent_channels);
        if (st == SD_OK)
            st = input_host_floats(in, "latents", &host, &n, err);
        if (st == SD_OK) {
            sd_vae_latents_for_decoder(vc, host, lt->shape[0], lt->shape[2] * lt->shape[3]);
            st = sd_tensor_from_host(be, &x, host, SD_DTYPE_F32, 4, lt->shape, 0, err);
        }
        free(host);
        if (st == SD_OK)
            st = sd_vae_decode(v, &x, &y, err);
        if (st == SD_OK)
            st = add_output(w, "image", &y, err);
    } else if (st == SD_OK) {
        st = sd_vae_encode(v, &x, &y, err);
        if (st == SD_OK) {
            int64_t B = y.shape[0], L = y.shape[1] / 2, hw = y.shape[2] * y.shape[3];
            size_t n = (size_t)(B * L * hw);
            float *host = malloc(2 * n * sizeof *host), *mean = malloc(n * sizeof *mean),
                  *std = malloc(n * sizeof *std);
            if (!host || !mean || !std)
                st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
            if (st == SD_OK)
                st = sd_tensor_to_host_f32(&y, host, err);
            if (st == SD_OK) {
                sd_vae_moments_split(host, B, L, hw, mean, std, NULL);
                int64_t shape[4] = {B, L, y.shape[2], y.shape[3]};
                st = sd_st_writer_add_copy(w, "mean", SD_DTYPE_F32, 4, shape, mean, err);
                if (st == SD_OK)
                    st = sd_st_writer_add_copy(w, "std", SD_DTYPE_F32, 4, shape, std, err);
            }
            free(host);
            free(mean);
            free(std);
        }
    }
    sd_vae_free(v);
    sd_tensor_free(&x);
    sd_tensor_free(&y);
    return st;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a = {.device = "cpu", .dtype = SD_DTYPE_COUNT};
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(o, "--model")) {
            a.model = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--in")) {
            a.in = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--out")) {
            a.out = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--device")) {
            a.device = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--variant")) {
            a.variant = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--dtype")) {
            if (sd_dtype_parse_user(argv[++i], &a.dtype) != 0) {
                cli_errorf("eval", "--dtype must be f32, f16 or bf16, not '%s'", argv[i]);
                return 2;
            }
        } else if (o[0] != '-' && !a.what) {
            a.what = o;
        } else {
            cli_errorf("eval", "unknown or incomplete option '%s'", o);
            usage(stderr);
            return 2;
        }
    }
    if (!a.what || !a.model || !a.in || !a.out) {
        usage(stderr);
        return 2;
    }
    int kind = !strcmp(a.what, "text") ? 0 : !strcmp(a.what, "unet") ? 1 : !strcmp(a.what, "vae-decode") ? 2
             : !strcmp(a.what, "vae-encode") ? 3 : -1;
    if (kind < 0) {
        cli_errorf("eval", "unknown network '%s' (text, unet, vae-decode, vae-encode)", a.what);
        return 2;
    }
    sd_error err = {0};
    sd_stage_backends sb;
    int stages = kind == 0 ? SD_STAGE_TEXT : kind == 1 || kind == 3 ? SD_STAGE_UNET : SD_STAGE_FINAL;
    if (sd_stage_backends_open(&sb, a.device, a.dtype, stages, &err) != SD_OK) {
        cli_errorf("eval", "%s", err.msg);
        return err.code == SD_ERR_INVALID ? 2 : 1;
    }
    sd_backend *be = sb.be;
    sd_model_folder m;
    memset(&m, 0, sizeof m);
    sd_st_file *in = NULL;
    sd_st_writer *w = sd_st_writer_new();
    sd_status st = sd_model_open(&m, a.model, &err);
    if (st == SD_OK)
        st = sd_st_open(&in, a.in, &err);
    double t0 = sd_now_s();
    if (st == SD_OK) {
        if (kind == 0)
            st = eval_text(&a, be, &m, in, w, &err);
        else if (kind == 1)
            st = eval_unet(&a, be, &m, in, w, &err);
        else
            st = eval_vae(&a, be, sb.f32_be, &m, in, w, kind == 3, &err);
    }
    double t1 = sd_now_s();
    if (st == SD_OK)
        st = sd_st_writer_save(w, a.out, &err);
    if (st == SD_OK)
        fprintf(stderr, "sdxl eval %s: wrote %s (%.2f s on %s)\n", a.what, a.out,
                t1 - t0, sd_backend_name(be));
    else
        cli_errorf("eval", "%s", err.msg);
    sd_st_writer_free(w);
    sd_st_close(in);
    if (m.root)
        sd_model_close(&m);
    sd_stage_backends_close(&sb);
    return st == SD_OK ? 0 : 1;
}
