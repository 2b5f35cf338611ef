/* test_eval_cli.c - `sdxl eval` end to end: golden inputs written as
 * safetensors, the binary run, its output compared with diffusers' (relative
 * L2 < 1e-4, the fp32 bar). Also the refiner's encoder-2-only embeddings and
 * the errors for missing inputs. The binary is $SDXL_BIN_DIR/sdxl
 * (build/bin by default). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/fsutil.h"
#include "tests/test_util.h"

static const char *bin_dir(void)
{
    const char *b = getenv("SDXL_BIN_DIR");
    return b && *b ? b : "build/bin";
}

/* Copies the named golden tensors (renamed) into a new safetensors file. */
static void write_inputs(const char *path, const sd_st_file *g, const char *const *from, const char *const *to,
                         int n)
{
    sd_st_writer *w = sd_st_writer_new();
    sd_error err = {0};
    for (int i = 0; i < n; i++) {
        const sd_st_tensor *t = sd_st_find(g, from[i]);
        cr_assert_not_null(t, "golden tensor %s", from[i]);
        cr_assert_eq(sd_st_writer_add(w, to[i], t->dtype, t->ndim, t->shape, t->data, &err), SD_OK, "%s", err.msg);
    }
    cr_assert_eq(sd_st_writer_save(w, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);
}

static int run_eval(const char *what, const char *model, const char *in, const char *out, char *log, size_t loglen)
{
    char *mdir = tu_data_path(model);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/sdxl eval %s --model '%s' --in '%s' --out '%s' 2>&1", bin_dir(), what, mdir, in, out);
    free(mdir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(log, 1, loglen - 1, p);
    log[n] = '\0';
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void compare_output(const char *path, const char *name, const sd_st_file *g, const char *gname)
{
    sd_st_file *o;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&o, path, &err), SD_OK, "%s", err.msg);
    const sd_st_tensor *t = tu_tensor(o, name, SD_DTYPE_F32);
    tu_expect_close_host(t->data, (size_t)sd_st_numel(t), g, gname, 1e-4);
    sd_st_close(o);
}

Test(eval_cli, text_unet_vae_match_goldens)
{
    char *dir = tu_tmpdir(), log[4096];
    char *in = sd_path_join(dir, "in.safetensors"), *out = sd_path_join(dir, "out.safetensors");

    sd_st_file *g = tu_golden("text_encoders.safetensors");
    const char *tf[] = {"ids_tokenizer", "ids_tokenizer_2"}, *tt[] = {"input_ids", "input_ids_2"};
    write_inputs(in, g, tf, tt, 2);
    cr_assert_eq(run_eval("text", "sdxl-tiny", in, out, log, sizeof log), 0, "%s", log);
    compare_output(out, "prompt_embeds", g, "prompt_embeds");
    compare_output(out, "pooled_prompt_embeds", g, "te2_text_embeds");
    sd_st_close(g);

    g = tu_golden("unet_refiner.safetensors");
    const char *uf[] = {"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"};
    write_inputs(in, g, uf, uf, 5);
    cr_assert_eq(run_eval("unet", "sdxl-tiny-refiner", in, out, log, sizeof log), 0, "%s", log);
    compare_output(out, "noise_pred", g, "out");
    sd_st_close(g);

    g = tu_golden("vae.safetensors");
    const char *vf[] = {"latents"}, *ef[] = {"image"};
    write_inputs(in, g, vf, vf, 1);
    cr_assert_eq(run_eval("vae-decode", "sdxl-tiny", in, out, log, sizeof log), 0, "%s", log);
    compare_output(out, "image", g, "decoded");
    write_inputs(in, g, ef, ef, 1);
    cr_assert_eq(run_eval("vae-encode", "sdxl-tiny", in, out, log, sizeof log), 0, "%s", log);
    compare_output(out, "mean", g, "latent_mean");
    compare_output(out, "std", g, "latent_std");
    sd_st_close(g);
    free(in);
    free(out);
    tu_rmrf(dir);
    free(dir);
}

Test(eval_cli, refiner_text_is_encoder_2_alone)
{
    char *dir = tu_tmpdir(), log[4096];
    char *in = sd_path_join(dir, "in.safetensors"), *out = sd_path_join(dir, "out.safetensors");
    sd_st_file *g = tu_golden("e2e_ensemble_refiner_part.safetensors");
    const char *f[] = {"ids_0"}, *t[] = {"input_ids_2"};
    write_inputs(in, g, f, t, 1);
    cr_assert_eq(run_eval("text", "sdxl-tiny-refiner", in, out, log, sizeof log), 0, "%s", log);
    compare_output(out, "prompt_embeds", g, "prompt_embeds");
    compare_output(out, "pooled_prompt_embeds", g, "pooled_prompt_embeds");
    sd_st_close(g);
    free(in);
    free(out);
    tu_rmrf(dir);
    free(dir);
}

Test(eval_cli, missing_input_is_named)
{
    char *dir = tu_tmpdir(), log[4096];
    char *in = sd_path_join(dir, "in.safetensors"), *out = sd_path_join(dir, "out.safetensors");
    sd_st_file *g = tu_golden("unet_base.safetensors");
    const char *uf[] = {"sample", "timestep", "encoder_hidden_states", "text_embeds"};
    write_inputs(in, g, uf, uf, 4);
    cr_assert_eq(run_eval("unet", "sdxl-tiny", in, out, log, sizeof log), 1, "%s", log);
    cr_assert(strstr(log, "'time_ids'"), "%s", log);
    cr_assert(!sd_path_exists(out), "no output may be written on failure");
    sd_st_close(g);
    free(in);
    free(out);
    tu_rmrf(dir);
    free(dir);
}
