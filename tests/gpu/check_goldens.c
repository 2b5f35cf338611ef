/* check_goldens.c - the tiny SDXL models of ../shared/testdata run on the
 * GPU against diffusers' float32 outputs. Tolerances (relative L2): 2e-2 in
 * fp16 and 5e-2 in bf16. Every layer stores its output rounded to the storage
 * type (2^-11 relative for fp16, 2^-8 for bf16) and these models chain 20-40
 * such layers, so errors of a few 1e-3 (fp16) and 1e-2 (bf16) are expected;
 * the bounds leave room for that and still fail a wrong layer (order 1).
 * fp32 (the upcast VAE, --dtype f32): 1e-4, the CPU backend's own bar
 * against these goldens (tests/golden): the GPU's fp32 differs from the CPU's
 * only in summation order and __expf (about 1e-6 relative), while TF32 or any
 * 16-bit rounding on the way would show as 1e-3 or more. The fp32 run reads
 * sdxl-tiny's fp32 weights (the bundle carries them).
 * The VAE runs in bf16 and fp32, the dtypes the pipeline runs it in
 * (stage_backends.h: an fp16 pipeline decodes SDXL's VAE in fp32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "common/safetensors.h"
#include "tests/gpu/gpucheck.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/vae/vae.h"

static int fails;

static const sd_st_tensor *gt(const sd_st_file *g, const char *name)
{
    const sd_st_tensor *t = sd_st_find(g, name);
    if (!t) {
        fprintf(stderr, "%s: golden tensor %s missing\n", g->path, name);
        exit(1);
    }
    return t;
}

static void report(const char *what, sd_backend *be, const sd_tensor *t, const sd_st_file *g, const char *gname,
                   double tol)
{
    const sd_st_tensor *ref = gt(g, gname);
    size_t n = (size_t)sd_tensor_numel(t);
    float *h = malloc(n * sizeof *h);
    sd_error err = {0};
    double rel = INFINITY;
    if (n == sd_st_numel(ref) && sd_tensor_to_host_f32(t, h, &err) == SD_OK)
        rel = gc_rel_l2(h, ref->data, n);
    int pass = rel < tol;
    fails += !pass;
    printf("%-4s %-44s %-14s %10.2e (bound %.0e)\n", pass ? "ok" : "FAIL", what, sd_backend_name(be), rel, tol);
    free(h);
}

static void upload(sd_backend *be, sd_tensor *t, const sd_st_file *g, const char *name)
{
    const sd_st_tensor *s = gt(g, name);
    sd_error err = {0};
    if (sd_tensor_from_host(be, t, s->data, s->dtype, s->ndim, s->shape, 0, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static sd_st_file *golden(const char *testdata, const char *file)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/golden/%s", testdata, file);
    sd_st_file *f;
    sd_error err = {0};
    if (sd_st_open(&f, p, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return f;
}

static const sd_component *component(sd_model_folder *m, const char *testdata, const char *model, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", testdata, model);
    sd_error err = {0};
    const sd_component *c;
    if ((!m->root && sd_model_open(m, p, &err) != SD_OK) || sd_model_require(m, name, &c, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return c;
}

static void text(const char *td, sd_backend *be, double tol)
{
    sd_model_folder m = {0};
    sd_st_file *g = golden(td, "text_encoders.safetensors");
    const char *names[2] = {"text_encoder", "text_encoder_2"}, *ids[2] = {"ids_tokenizer", "ids_tokenizer_2"};
    for (int k = 0; k < 2; k++) {
        sd_clip_text *t;
        sd_error err = {0};
        if (sd_clip_text_load(&t, be, component(&m, td, "sdxl-tiny", names[k]), NULL, &err) != SD_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        const sd_st_tensor *it = gt(g, ids[k]);
        sd_tensor pen = {0}, emb = {0};
        sd_clip_outputs o = {.penultimate = &pen, .text_embeds = k ? &emb : NULL};
        int64_t *idv = sd_st_copy_i64(it); /* safetensors data may be unaligned */
        sd_status fst = sd_clip_text_forward(t, idv, (int)it->shape[0], (int)it->shape[1], &o, &err);
        free(idv);
        if (fst != SD_OK) {
            printf("FAIL %s: %s\n", names[k], err.msg);
            fails++;
        } else {
            report(k ? "text_encoder_2 hidden_states[-2]" : "text_encoder hidden_states[-2]", be, &pen, g,
                   k ? "te2_hidden_states_m2" : "te1_hidden_states_m2", tol);
            if (k)
                report("text_encoder_2 text_embeds (pooled)", be, &emb, g, "te2_text_embeds", tol);
        }
        sd_tensor_free(&pen);
        sd_tensor_free(&emb);
        sd_clip_text_free(t);
    }
    sd_model_close(&m);
    sd_st_close(g);
}

static void unet(const char *td, sd_backend *be, const char *model, const char *file, double tol)
{
    sd_model_folder m = {0};
    sd_st_file *g = golden(td, file);
    sd_unet *u;
    sd_error err = {0};
    if (sd_unet_load(&u, be, component(&m, td, model, "unet"), NULL, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    sd_tensor s, ctx, te, out = {0};
    upload(be, &s, g, "sample");
    upload(be, &ctx, g, "encoder_hidden_states");
    upload(be, &te, g, "text_embeds");
    const sd_st_tensor *ts = gt(g, "timestep"), *ids = gt(g, "time_ids");
    float t[2] = {((const float *)ts->data)[0], ((const float *)ts->data)[0]};
    char what[96];
    snprintf(what, sizeof what, "unet %s", model);
    float idf[16];
    memcpy(idf, ids->data, (size_t)sd_st_numel(ids) * sizeof(float));
    if (sd_unet_forward(u, &s, t, &ctx, &te, idf, (int)ids->shape[1], &out, &err) != SD_OK) {
        printf("FAIL %s: %s\n", what, err.msg);
        fails++;
    } else {
        report(what, be, &out, g, "out", tol);
    }
    sd_tensor_free(&s);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_tensor_free(&out);
    sd_unet_free(u);
    sd_model_close(&m);
    sd_st_close(g);
}

static void vae(const char *td, sd_backend *be, double tol)
{
    sd_model_folder m = {0};
    sd_st_file *g = golden(td, "vae.safetensors");
    sd_vae *v;
    sd_error err = {0};
    if (sd_vae_load(&v, be, component(&m, td, "sdxl-tiny", "vae"), NULL, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    sd_tensor z, img = {0}, x, mom = {0};
    upload(be, &z, g, "latents");
    sd_op_scale(&z, &z, 1.0f / sd_vae_get_config(v)->scaling_factor, &err);
    if (sd_vae_decode(v, &z, &img, &err) != SD_OK) {
        printf("FAIL vae decode: %s\n", err.msg);
        fails++;
    } else {
        report("vae decode", be, &img, g, "decoded", tol);
    }
    upload(be, &x, g, "image");
    if (sd_vae_encode(v, &x, &mom, &err) != SD_OK) {
        printf("FAIL vae encode: %s\n", err.msg);
        fails++;
    } else {
        int64_t B = mom.shape[0], L = mom.shape[1] / 2, hw = mom.shape[2] * mom.shape[3];
        float *h = malloc((size_t)(2 * B * L * hw) * sizeof *h), *mean = malloc((size_t)(B * L * hw) * sizeof *mean);
        sd_tensor_to_host_f32(&mom, h, &err);
        sd_vae_moments_split(h, B, L, hw, mean, NULL, NULL);
        const sd_st_tensor *ref = gt(g, "latent_mean");
        double rel = gc_rel_l2(mean, ref->data, (size_t)(B * L * hw));
        int pass = rel < tol;
        fails += !pass;
        printf("%-4s %-44s %-14s %10.2e (bound %.0e)\n", pass ? "ok" : "FAIL", "vae encode (latent mean)",
               sd_backend_name(be), rel, tol);
        free(h);
        free(mean);
    }
    sd_tensor_free(&z);
    sd_tensor_free(&img);
    sd_tensor_free(&x);
    sd_tensor_free(&mom);
    sd_vae_free(v);
    sd_model_close(&m);
    sd_st_close(g);
}

int gpucheck_goldens(const char *testdata)
{
    sd_error err = {0};
    sd_dtype dts[3] = {SD_DTYPE_F16, SD_DTYPE_BF16, SD_DTYPE_F32};
    double tols[3] = {2e-2, 5e-2, 1e-4};
    for (int d = 0; d < 3; d++) {
        sd_backend *be;
        if (gc_backend(&be, dts[d], &err) != SD_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        text(testdata, be, tols[d]);
        unet(testdata, be, "sdxl-tiny", "unet_base.safetensors", tols[d]);
        if (dts[d] != SD_DTYPE_F32) /* the bundle has the refiner's fp16 weights only */
            unet(testdata, be, "sdxl-tiny-refiner", "unet_refiner.safetensors", tols[d]);
        if (dts[d] != SD_DTYPE_F16)
            vae(testdata, be, tols[d]);
        sd_backend_free(be);
    }
    printf("goldens: %d failed\n", fails);
    return fails;
}
