/* test_util.h - helpers shared by the Criterion tests: where the shared test
 * data lives, golden tensor access, temp folders, float comparisons. */
#ifndef SDXL_TESTS_TEST_UTIL_H
#define SDXL_TESTS_TEST_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/gen_params.h"
#include "common/model_spec.h"
#include "common/safetensors.h"
#include "kernels/ops.h"
#include "worker/engine/unet/unet.h"

/* ../shared/testdata relative to the project root (tests run from there), or
 * $SDXL_TESTDATA. Fails the calling test loudly if it does not exist. */
const char *tu_testdata(void);
/* tu_testdata()/rel, malloc'd. */
char *tu_data_path(const char *rel);
/* Opens golden/<file>; fails the test if absent. */
sd_st_file *tu_golden(const char *file);
/* Tensor of a golden file; fails the test if absent or not of dtype dt. */
const sd_st_tensor *tu_tensor(const sd_st_file *f, const char *name, sd_dtype dt);
/* A fresh temp folder (removed by tu_rmrf). */
char *tu_tmpdir(void);
void tu_rmrf(const char *path);
/* Writes bytes to a file; fails the test on error. */
void tu_write(const char *path, const void *data, size_t len);
/* Copies the file src_dir/rel to dst_dir/rel; fails the test on error. */
void tu_copy(const char *src_dir, const char *dst_dir, const char *rel);
/* ||a - b|| / ||b|| in double. */
double tu_rel_l2(const float *a, const float *b, size_t n);
double tu_max_abs_diff(const float *a, const float *b, size_t n);

/* golden/manifest.json, parsed. Python wrote it, with -Infinity where JSON
 * has no spelling for it: such tokens (outside strings) are read as null. */
json_t *tu_manifest(void);
/* The case called name from the manifest (a new reference); fails if absent. */
json_t *tu_manifest_case(const char *name);

/* Downloads t and asserts ||t - golden|| / ||golden|| < tol, with equal
 * element counts; prints the error in the failure message. Returns it. */
double tu_expect_close(const sd_tensor *t, const sd_st_file *g, const char *golden_name, double tol);
/* Same for a host array. */
double tu_expect_close_host(const float *got, size_t n, const sd_st_file *g, const char *golden_name, double tol);
/* A backend for tests: the CPU one. */
sd_backend *tu_cpu(void);
/* The UNet of testdata/<model> (variant NULL: the default weights) on be;
 * fails the test on any error. */
sd_unet *tu_load_unet(sd_backend *be, const char *model, const char *variant);
/* Uploads a golden F32 tensor to the backend. */
void tu_upload(sd_backend *be, sd_tensor *t, const sd_st_file *g, const char *name);

/* Runs the whole pipeline of ms on the CPU: the final latents [C*h*w] and
 * the 8-bit image [h*w*3] (malloc'd). */
sd_status tu_generate(const sd_model_spec *ms, const sd_gen_params *g, float **lat_out, uint8_t **rgb_out,
                      sd_error *err);
/* tu_generate, then expects golden_file's <name>_latents within relative L2
 * 1e-4 and <name>_image within 1 level: the bounds of every pipeline golden
 * (float32 on a CPU both sides; only summation order differs). */
void tu_expect_generated(const sd_model_spec *ms, const sd_gen_params *g, const char *golden_file, const char *name);
/* g from a golden case's diffusers keyword arguments (prompt, prompt_2,
 * negative_prompt(_2), num_inference_steps, guidance_scale, seed, strength,
 * aesthetic scores, width, height, (height, width) micro-conditioning
 * pairs, our scheduler name), the rest at the defaults; strings borrowed
 * from c. */
void tu_params_from_case(sd_gen_params *g, json_t *c);
/* A PNG or JPEG as the pipeline's init image: [3, h, w] in [-1, 1]
 * (malloc'd); fails the test if it cannot be read. */
float *tu_load_image_f(const char *path, int *w, int *h);

#endif
