/* cmd_generate.c - `sdxl generate`: prompt to image in one process, through
 * the three stage functions the cluster runs apart (worker/engine/pipeline/pipeline.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/cli/cli.h"
#include "common/clock.h"
#include "common/image_io.h"
#include "common/parse_number.h"
#include "common/safetensors.h"
#include "worker/engine/pipeline/image_meta.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/stage_backends.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sdxl generate --model DIR|FILE --prompt TEXT --out FILE.png [options]\n\n"
            "Generates images as diffusers' StableDiffusionXLPipeline does (same seed, same picture,\n"
            "up to backend rounding). Defaults are diffusers': 50 steps, guidance 5.0, the size the\n"
            "UNet was trained for (1024x1024 for SDXL), a random seed (printed).\n\n"
            "  --model DIR|FILE                 diffusers SDXL folder, or a single-file checkpoint in Stability's\n"
            "                                   layout (sd_xl_base_1.0.safetensors); a refiner alone is img2img\n"
            "  --config DIR                     the diffusers folder whose configs and tokenizers a single file\n"
            "                                   uses (default: the real SDXL base's or refiner's, built in)\n"
            "  --refiner DIR|FILE               refiner: ensemble of experts (base until --high-noise-frac)\n"
            "  --refiner-config DIR             --config for a single-file refiner\n"
            "  --vae DIR|FILE                   an AutoencoderKL folder or single file instead of the models' VAE\n"
            "  --lora FILE[:SCALE]              merge a LoRA (kohya or diffusers naming) at SCALE (1); repeatable\n"
            "  --out FILE                       .png (parameters in text chunks), .webp or .jpg\n"
            "  --init-image FILE                img2img from a PNG or JPEG of the output size (see --strength)\n"
            "  --batch N                        N images: FILE becomes FILE-000.png, FILE-001.png, ...; image i\n"
            "                                   has its own generator seeded with --seed + i\n"
            "  --one-generator                  with --batch N: one generator seeded with --seed for all N, as\n"
            "                                   diffusers' num_images_per_prompt=N (the same images as it gives)\n"
            "  --variant fp16                   read *.fp16.safetensors weights\n"
            "  --device cpu|cuda|cuda:N         (cpu)\n"
            "  --dtype f16|bf16|f32             compute dtype on CUDA (f16); the VAE runs in f32 where diffusers\n"
            "                                   upcasts it (force_upcast: decoding under f16, img2img encoding)\n"
            "  --save-latents FILE              noise, initial, step_000.., refiner_step_000.., final (safetensors)\n"
            "  --quiet                          no progress bar\n"
            "  --no-watermark                   leave out diffusers' invisible watermark (--watermark 0)\n"
            "generation parameters (the same keys go into sdxl submit's JSONL items):\n");
    sd_gen_params_print_help(out, SD_GEN_PARAMS_SCOPE_GENERATE);
    fprintf(out, "environment: SDXL_CUDA_GRAPH=1 relaunches UNet steps as a CUDA graph (experimental: not yet run on a GPU)\n"
                 "exit codes: 0 done, 1 failed, 2 usage error\n");
}

typedef struct {
    sd_st_writer *w;
    int n;
    int quiet, tty;
    double t0;
    int item, items;
} gen_ctx;

static void on_latents(void *user, const char *name, const float *data, const int64_t shape[4])
{
    gen_ctx *c = user;
    if (!c->w || c->n >= 512)
        return;
    sd_error err;
    char full[96];
    if (c->items > 1)
        snprintf(full, sizeof full, "item%03d_%s", c->item, name);
    else
        snprintf(full, sizeof full, "%s", name);
    if (sd_st_writer_add_copy(c->w, full, SD_DTYPE_F32, 4, shape, data, &err) == SD_OK)
        c->n++;
}

static void on_step(void *user, const char *stage, int step, int steps)
{
    gen_ctx *c = user;
    if (c->quiet || !c->tty)
        return;
    double el = sd_now_s() - c->t0;
    double rate = step / (el > 0 ? el : 1e-9), eta = (steps - step) / (rate > 0 ? rate : 1e-9);
    int bar = 30, done = steps ? step * bar / steps : bar;
    fprintf(stderr, "\r%s %d/%d [", stage, step, steps);
    for (int i = 0; i < bar; i++)
        fputc(i < done ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d  %.2f it/s  ETA %.0fs   ", c->item + 1, c->items, rate, eta);
    if (step == steps)
        fputc('\n', stderr);
    fflush(stderr);
}

/* output path of item i of n: FILE.ext or FILE-iii.ext */
static void item_path(const char *out, int i, int n, char *buf, size_t len)
{
    if (n == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.');
    int stem = dot ? (int)(dot - out) : (int)strlen(out);
    snprintf(buf, len, "%.*s-%03d%s", stem, out, i, dot ? dot : "");
}

int cmd_generate(int argc, char **argv)
{
    sd_gen_params g;
    sd_gen_params_init(&g);
    const char *out = NULL, *device = "cpu", *save = NULL, *init = NULL;
    sd_model_spec ms;
    memset(&ms, 0, sizeof ms);
    sd_dtype dtype = SD_DTYPE_COUNT;
    int have_seed = 0, quiet = 0, one_generator = 0;
    long long batch = 1;
    const sd_gen_params_spec *spec;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        } else if (!strcmp(a, "--no-watermark")) {
            g.watermark = 0;
            continue;
        } else if (!strcmp(a, "--one-generator")) {
            one_generator = 1;
            continue;
        } else if ((spec = sd_gen_params_by_flag(a)) && spec->type == SD_GEN_PARAMS_TYPE_SWITCH) {
            sd_error perr = {0};
            if (sd_gen_params_set_flag(&g, spec, NULL, &perr) != SD_OK) {
                cli_errorf("generate", "%s", perr.msg);
                return 2;
            }
            continue;
        }
        const char *val = sd_flag_value("sdxl generate", argc, argv, &i);
        if (!val)
            return 2;
        if (!strcmp(a, "--model")) {
            ms.model = val;
        } else if (!strcmp(a, "--config")) {
            ms.model_config = val;
        } else if (!strcmp(a, "--refiner")) {
            ms.refiner = val;
        } else if (!strcmp(a, "--refiner-config")) {
            ms.refiner_config = val;
        } else if (!strcmp(a, "--vae")) {
            ms.vae = val;
        } else if (!strcmp(a, "--lora")) {
            sd_error lerr = {0};
            if (sd_model_spec_add_lora(&ms, val, &lerr) != SD_OK) {
                cli_errorf("generate", "--lora: %s", lerr.msg);
                return 2;
            }
        } else if (!strcmp(a, "--out")) {
            out = val;
        } else if (!strcmp(a, "--save-latents")) {
            save = val;
        } else if (!strcmp(a, "--variant")) {
            ms.variant = val;
        } else if (!strcmp(a, "--device")) {
            device = val;
        } else if (!strcmp(a, "--init-image")) {
            init = val;
        } else if (!strcmp(a, "--dtype")) {
            if (sd_dtype_parse_user(val, &dtype) != 0) {
                cli_errorf("generate", "--dtype: f16, bf16 or f32, not '%s'", val);
                return 2;
            }
        } else if (!strcmp(a, "--batch")) {
            if (sd_parse_int(val, 1, 1000, &batch)) {
                cli_errorf("generate", "--batch: '%s' is not an integer from 1 to 1000", val);
                return 2;
            }
        } else if ((spec = sd_gen_params_by_flag(a)) && (spec->scope & SD_GEN_PARAMS_SCOPE_GENERATE)) {
            sd_error perr = {0};
            if (sd_gen_params_set_flag(&g, spec, val, &perr) != SD_OK) {
                cli_errorf("generate", "%s", perr.msg);
                return 2;
            }
            have_seed |= spec->type == SD_GEN_PARAMS_TYPE_SEED;
        } else {
            cli_errorf("generate", "unknown option '%s'", a);
            usage(stderr);
            return 2;
        }
    }
    if (one_generator && batch < 2) {
        cli_errorf("generate", "--one-generator goes with --batch N (N >= 2)");
        return 2;
    }
    if (!ms.model || !g.prompt || !out) {
        cli_errorf("generate", "--model, --prompt and --out are required");
        usage(stderr);
        return 2;
    }
    if (sd_image_format_of(out) < 0) {
        cli_errorf("generate", "--out: '%s' must end in .png, .webp or .jpg", out);
        return 2;
    }
    if (!have_seed) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (uint64_t)time(NULL);
        g.seed = r & 0x7fffffffffffull;
    }
    sd_error err = {0};
    uint8_t *init_rgb = NULL;
    float *init_f = NULL;
    if (init) {
        int w, h;
        if (sd_image_read(init, &init_rgb, &w, &h, &err) != SD_OK) {
            cli_errorf("generate", "--init-image: %s", err.msg);
            return 2;
        }
        init_f = malloc((size_t)w * h * 3 * sizeof *init_f);
        for (int c = 0; init_f && c < 3; c++)
            for (int k = 0; k < w * h; k++)
                init_f[(size_t)c * w * h + k] = (float)init_rgb[(size_t)k * 3 + c] / 255.0f * 2.0f - 1.0f;
        g.init_image = init_f;
        g.init_w = w;
        g.init_h = h;
    }
    sd_stage_backends sb;
    sd_pipeline p;
    memset(&p, 0, sizeof p);
    sd_status st = sd_stage_backends_open(&sb, device, dtype, SD_STAGE_ALL, &err);
    sd_backend *be = sb.be;
    if (st == SD_OK)
        st = sd_pipeline_load(&p, sb.be, sb.f32_be, &ms, SD_STAGE_ALL, &err);
    if (st == SD_OK)
        st = sd_pipeline_check_params(&p, &g, &err);
    if (st != SD_OK) {
        cli_errorf("generate", "%s", err.msg);
        sd_pipeline_free(&p);
        sd_stage_backends_close(&sb);
        free(init_rgb);
        free(init_f);
        return err.code == SD_ERR_INVALID ? 2 : 1;
    }
    int W, H;
    sd_pipeline_size(&p, &g, &W, &H);
    gen_ctx ctx = {0};
    ctx.quiet = quiet;
    ctx.tty = isatty(2);
    ctx.items = (int)batch;
    if (save)
        ctx.w = sd_st_writer_new();
    sd_gen_hooks hooks = {on_step, on_latents, &ctx, NULL};
    uint64_t base_seed = g.seed;
    if (!one_generator && base_seed > UINT64_MAX - (uint64_t)(batch - 1)) {
        cli_errorf("generate", "--seed %llu + --batch %lld goes past 2^64 - 1", (unsigned long long)base_seed, batch);
        st = SD_ERR_INVALID;
    }
    for (int item = 0; item < batch && st == SD_OK; item++) {
        g.seed = one_generator ? base_seed : base_seed + (uint64_t)item;
        g.batch_n = one_generator ? (int)batch : 0;
        g.batch_i = item;
        ctx.item = item;
        ctx.t0 = sd_now_s();
        sd_text_result t;
        sd_latent_result lat;
        sd_image_result img;
        memset(&lat, 0, sizeof lat);
        memset(&img, 0, sizeof img);
        double ta = ctx.t0, tb = 0, tc = 0, td = 0;
        char cut[2048];
        if (item == 0 && sd_pipeline_truncation(&p, &g, cut, sizeof cut, &err) == SD_OK && cut[0])
            fprintf(stderr,
                    "sdxl generate: warning: the following part of your input was truncated because CLIP can only "
                    "handle sequences up to 77 tokens: %s (see --long-prompts)\n",
                    cut);
        st = sd_stage_text(&p, &g, &t, &err);
        tb = sd_now_s();
        if (st == SD_OK)
            st = sd_stage_unet(&p, &g, &t, &hooks, &lat, &err);
        tc = sd_now_s();
        if (st == SD_OK)
            st = sd_stage_final(&p, &g, &t, &lat, &hooks, &img, &err);
        td = sd_now_s();
        if (st == SD_OK && !quiet)
            fprintf(stderr, "sdxl generate: item %d: %dx%d, %d steps on %s: text %.1f ms, unet %.1f ms, final %.1f ms, "
                            "total %.3f s\n",
                    item, W, H, g.steps, sd_backend_name(be), (tb - ta) * 1e3, (tc - tb) * 1e3, (td - tc) * 1e3,
                    td - ta);
        if (st == SD_OK) {
            char path[4096];
            item_path(out, item, (int)batch, path, sizeof path);
            sd_image_meta meta;
            sd_image_meta_fill(&meta, &g, W, H, &p);
            st = sd_image_write(path, img.rgb, img.width, img.height, meta.text, meta.n, &err);
            if (st == SD_OK)
                printf("%s seed=%llu %dx%d\n", path, (unsigned long long)g.seed, img.width, img.height);
        }
        sd_image_result_free(&img);
        sd_latent_result_free(&lat);
        sd_text_result_free(&t);
    }
    if (st == SD_OK && ctx.w)
        st = sd_st_writer_save(ctx.w, save, &err);
    if (st != SD_OK)
        cli_errorf("generate", "%s", err.msg);
    sd_st_writer_free(ctx.w);
    sd_pipeline_free(&p);
    sd_stage_backends_close(&sb);
    free(init_rgb);
    free(init_f);
    return st == SD_OK ? 0 : 1;
}
