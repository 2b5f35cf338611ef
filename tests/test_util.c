/* test_util.c - see test_util.h. */
#include "test_util.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsutil.h"
#include "common/image_io.h"
#include "common/json_config.h"
#include "common/model_folder.h"
#include "worker/engine/pipeline/pipeline.h"

const char *tu_testdata(void)
{
    const char *env = getenv("SDXL_TESTDATA");
    const char *dir = env && *env ? env : "../shared/testdata";
    char *manifest = sd_path_join(dir, "golden/manifest.json");
    int ok = manifest && sd_path_exists(manifest);
    free(manifest);
    if (!ok)
        cr_assert_fail("shared test data not found at '%s' (expected golden/manifest.json there; run the tests from the "
                 "project root with ../shared/testdata beside it, or set SDXL_TESTDATA)",
                 dir);
    return dir;
}

char *tu_data_path(const char *rel)
{
    return sd_path_join(tu_testdata(), rel);
}

sd_st_file *tu_golden(const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/%s", file);
    char *p = tu_data_path(rel);
    sd_st_file *f = NULL;
    sd_error err = {0};
    if (sd_st_open(&f, p, &err) != SD_OK)
        cr_assert_fail("cannot open golden file: %s", err.msg);
    free(p);
    return f;
}

const sd_st_tensor *tu_tensor(const sd_st_file *f, const char *name, sd_dtype dt)
{
    const sd_st_tensor *t = sd_st_find(f, name);
    if (!t)
        cr_assert_fail("%s: golden tensor '%s' missing", f->path, name);
    if (t->dtype != dt)
        cr_assert_fail("%s: golden tensor '%s' is %s, expected %s", f->path, name, sd_dtype_name(t->dtype),
                 sd_dtype_name(dt));
    return t;
}

char *tu_tmpdir(void)
{
    char tmpl[] = "/tmp/sdxl-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        cr_assert_fail("mkdtemp failed");
    return strdup(d);
}

void tu_rmrf(const char *path)
{
    char cmd[1024];
    if (strncmp(path, "/tmp/sdxl-test-", 15) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

void tu_write(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        cr_assert_fail("cannot write %s", path);
    if (len && fwrite(data, 1, len, fp) != len)
        cr_assert_fail("short write to %s", path);
    fclose(fp);
}

void tu_copy(const char *src_dir, const char *dst_dir, const char *rel)
{
    char path[4096], *data = NULL;
    size_t len = 0;
    sd_error err;
    snprintf(path, sizeof path, "%s/%s", src_dir, rel);
    cr_assert_eq(sd_read_file(path, &data, &len, &err), SD_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s", dst_dir, rel);
    tu_write(path, data, len);
    free(data);
}

double tu_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        if (isnan(a[i]))
            return INFINITY;
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(a[i]) || isnan(b[i]))
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

json_t *tu_manifest(void)
{
    char *p = tu_data_path("golden/manifest.json");
    char *text;
    size_t len;
    sd_error err = {0};
    if (sd_read_file(p, &text, &len, &err) != SD_OK)
        cr_assert_fail("%s", err.msg);
    free(p);
    json_error_t jerr;
    json_t *m = sd_json_loads_python(text, len, 0, &jerr);
    free(text);
    if (!m)
        cr_assert_fail("manifest.json: %s (line %d)", jerr.text, jerr.line);
    return m;
}

json_t *tu_manifest_case(const char *name)
{
    json_t *m = tu_manifest();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, "cases"), i, c) {
        if (!strcmp(json_string_value(json_object_get(c, "name")), name)) {
            json_incref(c);
            json_decref(m);
            return c;
        }
    }
    cr_assert_fail("manifest has no case '%s'", name);
    return NULL;
}

double tu_expect_close_host(const float *got, size_t n, const sd_st_file *g, const char *golden_name, double tol)
{
    const sd_st_tensor *ref = tu_tensor(g, golden_name, SD_DTYPE_F32);
    cr_assert_eq(sd_st_numel(ref), n, "%s: %zu elements, golden has %llu", golden_name, n,
                 (unsigned long long)sd_st_numel(ref));
    double e = tu_rel_l2(got, ref->data, n);
    cr_assert(e < tol, "%s: relative L2 error %.3g is not under %.1g (max abs diff %.3g)", golden_name, e, tol,
              tu_max_abs_diff(got, ref->data, n));
    return e;
}

double tu_expect_close(const sd_tensor *t, const sd_st_file *g, const char *golden_name, double tol)
{
    size_t n = (size_t)sd_tensor_numel(t);
    float *host = malloc(n * sizeof *host + 1);
    sd_error err = {0};
    cr_assert_eq(sd_tensor_to_host_f32(t, host, &err), SD_OK, "%s", err.msg);
    double e = tu_expect_close_host(host, n, g, golden_name, tol);
    free(host);
    return e;
}

sd_backend *tu_cpu(void)
{
    sd_backend *be;
    sd_error err = {0};
    cr_assert_eq(sd_backend_create(&be, "cpu", SD_DTYPE_F32, &err), SD_OK, "%s", err.msg);
    return be;
}

sd_unet *tu_load_unet(sd_backend *be, const char *model, const char *variant)
{
    char *dir = tu_data_path(model);
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "unet", &c, &err), SD_OK, "%s", err.msg);
    sd_unet *u;
    cr_assert_eq(sd_unet_load(&u, be, c, variant, &err), SD_OK, "%s", err.msg);
    sd_model_close(&m);
    free(dir);
    return u;
}

void tu_upload(sd_backend *be, sd_tensor *t, const sd_st_file *g, const char *name)
{
    const sd_st_tensor *s = tu_tensor(g, name, SD_DTYPE_F32);
    sd_error err = {0};
    int ndim = s->ndim ? s->ndim : 1;
    int64_t one = 1;
    cr_assert_eq(sd_tensor_from_host(be, t, s->data, SD_DTYPE_F32, ndim, s->ndim ? s->shape : &one, 0, &err), SD_OK,
                 "%s: %s", name, err.msg);
}

/* runs the whole pipeline; returns the final latents and image */
sd_status tu_generate(const sd_model_spec *ms, const sd_gen_params *g, float **lat_out, uint8_t **rgb_out,
                          sd_error *err)
{
    sd_backend *be = tu_cpu();
    sd_pipeline p;
    sd_status st = sd_pipeline_load(&p, be, NULL, ms, SD_STAGE_ALL, err);
    if (st != SD_OK) {
        sd_backend_free(be);
        return st;
    }
    sd_text_result t = {0};
    sd_latent_result lat = {0};
    sd_image_result img = {0};
    st = sd_stage_text(&p, g, &t, err);
    if (st == SD_OK)
        st = sd_stage_unet(&p, g, &t, NULL, &lat, err);
    if (st == SD_OK)
        st = sd_stage_final(&p, g, &t, &lat, NULL, &img, err);
    if (st == SD_OK) {
        size_t n = (size_t)(lat.shape[1] * lat.shape[2] * lat.shape[3]);
        *lat_out = malloc(n * sizeof(float));
        memcpy(*lat_out, lat.latents, n * sizeof(float));
        *rgb_out = malloc((size_t)img.width * img.height * 3);
        memcpy(*rgb_out, img.rgb, (size_t)img.width * img.height * 3);
    }
    sd_text_result_free(&t);
    sd_image_result_free(&img);
    sd_latent_result_free(&lat);
    sd_pipeline_free(&p);
    sd_backend_free(be);
    return st;
}

void tu_expect_generated(const sd_model_spec *ms, const sd_gen_params *g, const char *golden_file, const char *name)
{
    sd_error err = {0};
    float *lat;
    uint8_t *rgb;
    cr_assert_eq(tu_generate(ms, g, &lat, &rgb, &err), SD_OK, "%s: %s", name, err.msg);
    sd_st_file *gf;
    cr_assert_eq(sd_st_open(&gf, golden_file, &err), SD_OK, "%s", err.msg);
    char key[96];
    snprintf(key, sizeof key, "%s_latents", name);
    const sd_st_tensor *gl = tu_tensor(gf, key, SD_DTYPE_F32);
    tu_expect_close_host(lat, sd_st_numel(gl), gf, key, 1e-4);
    snprintf(key, sizeof key, "%s_image", name);
    const sd_st_tensor *gi = tu_tensor(gf, key, SD_DTYPE_U8);
    const uint8_t *r = gi->data;
    int worst = 0;
    for (size_t i = 0; i < sd_st_numel(gi); i++) {
        int d = abs((int)rgb[i] - (int)r[i]);
        worst = d > worst ? d : worst;
    }
    cr_assert_leq(worst, 1, "%s: image differs from diffusers' by %d levels", name, worst);
    free(lat);
    free(rgb);
    sd_st_close(gf);
}

float *tu_load_image_f(const char *path, int *w, int *h)
{
    uint8_t *rgb;
    sd_error err = {0};
    cr_assert_eq(sd_image_read(path, &rgb, w, h, &err), SD_OK, "%s", err.msg);
    size_t n = (size_t)*w * *h;
    float *f = malloc(n * 3 * sizeof *f);
    for (int c = 0; c < 3; c++)
        for (size_t k = 0; k < n; k++)
            f[(size_t)c * n + k] = (float)rgb[k * 3 + c] / 255.0f * 2.0f - 1.0f;
    free(rgb);
    return f;
}

/* diffusers' (height, width) pair of key into *h, *w, when present */
static void hw_pair(json_t *c, const char *key, int *h, int *w)
{
    json_t *v = json_object_get(c, key);
    if (json_is_array(v) && json_array_size(v) == 2) {
        *h = (int)json_integer_value(json_array_get(v, 0));
        *w = (int)json_integer_value(json_array_get(v, 1));
    }
}

/* key into *out, when present (else *out keeps its default) */
static void opt_int(json_t *c, const char *key, int *out)
{
    json_t *v = json_object_get(c, key);
    if (v)
        *out = (int)json_integer_value(v);
}

static void opt_float(json_t *c, const char *key, float *out)
{
    json_t *v = json_object_get(c, key);
    if (v)
        *out = (float)json_number_value(v);
}

void tu_params_from_case(sd_gen_params *g, json_t *c)
{
    sd_gen_params_init(g);
    g->prompt = json_string_value(json_object_get(c, "prompt"));
    g->prompt_2 = json_string_value(json_object_get(c, "prompt_2"));
    g->negative_prompt = json_string_value(json_object_get(c, "negative_prompt"));
    g->negative_prompt_2 = json_string_value(json_object_get(c, "negative_prompt_2"));
    json_t *v;
    if ((v = json_object_get(c, "seed")))
        g->seed = (uint64_t)json_integer_value(v);
    opt_int(c, "num_inference_steps", &g->steps);
    opt_int(c, "width", &g->width);
    opt_int(c, "height", &g->height);
    opt_float(c, "guidance_scale", &g->guidance);
    opt_float(c, "strength", &g->strength);
    opt_float(c, "aesthetic_score", &g->aesthetic_score);
    opt_float(c, "negative_aesthetic_score", &g->negative_aesthetic_score);
    hw_pair(c, "original_size", &g->original_h, &g->original_w);
    hw_pair(c, "negative_original_size", &g->neg_original_h, &g->neg_original_w);
    hw_pair(c, "negative_crops_coords_top_left", &g->neg_crop_top, &g->neg_crop_left);
    hw_pair(c, "negative_target_size", &g->neg_target_h, &g->neg_target_w);
    const char *sched = json_string_value(json_object_get(c, "scheduler"));
    if (sched) {
        sd_sched_kind k;
        cr_assert_eq(sd_sched_kind_parse(sched, &k), 0, "scheduler '%s'", sched);
        g->scheduler = (int)k;
    }
}
