/* cmd_inspect.c - `sdxl inspect DIR|FILE [--config DIR] [--variant V] [--json]`: components,
 * classes, dtypes, tensor/parameter/byte counts, the config numbers that
 * matter and an estimate of memory per pipeline stage. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "common/builtin_models.h"
#include "common/model_folder.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl inspect DIR|FILE [--config DIR] [--variant fp16] [--json]\n\n"
                 "Lists the components of a diffusers SDXL folder, or of a single-file checkpoint in\n"
                 "Stability's layout (sd_xl_base_1.0.safetensors): class, weight file, dtypes, tensor\n"
                 "count, parameter count and bytes; the config numbers that matter; and an estimate of\n"
                 "GPU memory per stage (text, unet, final) at the default size, with weights in fp16 and\n"
                 "the VAE in fp32 where its config says force_upcast (as diffusers decodes it under fp16)\n"
                 "or fp16 (force_upcast false).\n"
                 "  --config DIR  the diffusers folder whose configs a single file uses (default: the\n"
                 "                real SDXL base's or refiner's, built in, chosen by the file's tensors)\n"
                 "  --variant V   read NAME.V.safetensors weights (default: what exists, plain first)\n"
                 "  --json        print the same as one JSON object\n");
}

typedef struct {
    size_t tensors;
    unsigned long long params, bytes;
    unsigned dtype_mask;
} weight_stats;

static void collect_stats(const sd_weights *w, weight_stats *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < w->n; i++) {
        const sd_st_tensor *t = w->tensors[i];
        s->tensors++;
        s->params += sd_st_numel(t);
        s->bytes += t->end - t->begin;
        s->dtype_mask |= 1u << t->dtype;
    }
}

static json_t *dtype_list(unsigned mask)
{
    json_t *a = json_array();
    for (int d = 0; d < SD_DTYPE_COUNT; d++)
        if (mask & (1u << d))
            json_array_append_new(a, json_string(sd_dtype_name((sd_dtype)d)));
    return a;
}

/* Copies the config keys that matter for each class into obj. */
static void add_config_numbers(json_t *obj, const sd_component *c, const sd_json_doc *cfg)
{
    static const char *unet_keys[] = {"sample_size", "in_channels", "out_channels", "block_out_channels",
                                      "layers_per_block", "transformer_layers_per_block", "attention_head_dim",
                                      "cross_attention_dim", "use_linear_projection", "addition_embed_type",
                                      "addition_time_embed_dim", "projection_class_embeddings_input_dim",
                                      "down_block_types", "up_block_types", "norm_num_groups", NULL};
    static const char *vae_keys[] = {"block_out_channels", "layers_per_block", "latent_channels",
                                     "norm_num_groups", "sample_size", "scaling_factor", "force_upcast", NULL};
    static const char *clip_keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                      "num_attention_heads", "hidden_act", "projection_dim",
                                      "max_position_embeddings", "vocab_size", NULL};
    static const char *sched_keys[] = {"_class_name", "beta_schedule", "beta_start", "beta_end",
                                       "num_train_timesteps", "timestep_spacing", "steps_offset",
                                       "prediction_type", "use_karras_sigmas", NULL};
    const char **keys = NULL;
    if (!strcmp(c->class_name, "UNet2DConditionModel"))
        keys = unet_keys;
    else if (!strcmp(c->class_name, "AutoencoderKL"))
        keys = vae_keys;
    else if (!strncmp(c->class_name, "CLIPTextModel", 13))
        keys = clip_keys;
    else if (c->kind == SD_COMPONENT_KIND_SCHEDULER)
        keys = sched_keys;
    if (!keys)
        return;
    json_t *conf = json_object();
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(cfg->root, keys[i]);
        if (v)
            json_object_set(conf, keys[i], v);
    }
    json_object_set_new(obj, "config", conf);
}

/* Largest activation map of a UNet forward in bytes (fp16, CFG batch 2), and
 * the skip connections it keeps: a rough planning figure, not a measurement. */
static unsigned long long unet_activation_estimate(const sd_json_doc *cfg)
{
    long long blocks[8];
    int nb = 0;
    if (sd_json_int_list(cfg, "block_out_channels", blocks, 8, &nb, NULL) != SD_OK)
        return 0;
    long long hw = sd_json_int_or(cfg, "sample_size", 128);
    unsigned long long total = 0, largest = 0;
    for (int i = 0; i < nb; i++) {
        long long side = hw >> i;
        unsigned long long map = 2ull * 2 * (unsigned long long)(blocks[i] * side * side);
        /* layers_per_block + 1 skips per level */
        total += map * (unsigned long long)(sd_json_int_or(cfg, "layers_per_block", 2) + 1);
        unsigned long long ff = map * 8; /* GEGLU inner width 8x channels in the transformer */
        if (ff > largest)
            largest = ff;
    }
    return total + largest * 2;
}

static unsigned long long vae_decode_activation_estimate(const sd_json_doc *cfg, int bytes)
{
    long long blocks[8];
    int nb = 0;
    if (sd_json_int_list(cfg, "block_out_channels", blocks, 8, &nb, NULL) != SD_OK)
        return 0;
    long long side = sd_json_int_or(cfg, "sample_size", 1024);
    /* the decoder's last level runs at full size with block_out_channels[0]
     * channels; a resnet holds about three such maps at once, and a
     * convolution's column buffer its 256 MiB cap (kernels/cuda/cuda_gemm.cu) */
    unsigned long long map = (unsigned long long)bytes * (unsigned long long)(blocks[0] * side * side);
    unsigned long long col = 9 * map < (256ull << 20) ? 9 * map : (256ull << 20);
    return 3 * map + col;
}

static void print_bytes(unsigned long long b)
{
    if (b >= (1ull << 30))
        printf("%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        printf("%.1f MiB", (double)b / (1ull << 20));
    else
        printf("%.1f KiB", (double)b / 1024);
}

static void print_text(json_t *root)
{
    printf("model: %s\npipeline: %s\n", json_string_value(json_object_get(root, "path")),
           json_string_value(json_object_get(root, "pipeline")));
    if (json_object_get(root, "configs"))
        printf("single file in the original layout; configs: %s\n", json_string_value(json_object_get(root, "configs")));
    printf("\n");
    printf("%-16s %-30s %-8s %8s %16s %12s\n", "component", "class", "dtypes", "tensors", "parameters", "bytes");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "components"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (!json_is_true(json_object_get(c, "present"))) {
            printf("%-16s %-30s\n", name, "(null in model_index.json)");
            continue;
        }
        char dts[64] = "";
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(c, "dtypes"), k, d) {
            if (k)
                strncat(dts, ",", sizeof dts - strlen(dts) - 1);
            strncat(dts, json_string_value(d), sizeof dts - strlen(dts) - 1);
        }
        printf("%-16s %-30s %-8s", name, json_string_value(json_object_get(c, "class")), dts);
        if (json_object_get(c, "tensors")) {
            printf(" %8lld %16lld   ", (long long)json_integer_value(json_object_get(c, "tensors")),
                   (long long)json_integer_value(json_object_get(c, "parameters")));
            print_bytes((unsigned long long)json_integer_value(json_object_get(c, "bytes")));
        }
        putchar('\n');
    }
    size_t ci;
    json_array_foreach(json_object_get(root, "components"), ci, c) {
        json_t *conf = json_object_get(c, "config");
        if (!conf)
            continue;
        printf("\n%s:", json_string_value(json_object_get(c, "name")));
        if (json_object_get(c, "weights"))
            printf(" (%s)", json_string_value(json_object_get(c, "weights")));
        putchar('\n');
        const char *key;
        json_t *v;
        json_object_foreach(conf, key, v) {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
            printf("  %-40s %s\n", key, s ? s : "?");
            free(s);
        }
    }
    json_t *mem = json_object_get(root, "memory_estimate");
    if (mem) {
        printf("\nmemory estimate per stage (weights in fp16, VAE fp32 where force_upcast; activations at %s):\n",
               json_string_value(json_object_get(mem, "at")));
        const char *key;
        json_t *v;
        json_object_foreach(mem, key, v) {
            if (!json_is_object(v))
                continue;
            printf("  %-8s weights ", key);
            print_bytes((unsigned long long)json_integer_value(json_object_get(v, "weights_bytes")));
            printf(", activations ~");
            print_bytes((unsigned long long)json_integer_value(json_object_get(v, "activation_bytes")));
            printf(", total ~");
            print_bytes((unsigned long long)json_integer_value(json_object_get(v, "total_bytes")));
            putchar('\n');
        }
    }
}

static json_t *stage(unsigned long long weights, unsigned long long act)
{
    return json_pack("{s:I,s:I,s:I}", "weights_bytes", (json_int_t)weights, "activation_bytes", (json_int_t)act,
                     "total_bytes", (json_int_t)(weights + act));
}

int cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL, *variant = NULL, *config = NULL;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            as_json = 1;
        } else if (!strcmp(argv[i], "--variant") && i + 1 < argc) {
            variant = argv[++i];
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (argv[i][0] == '-') {
            cli_errorf("inspect", "unknown option '%s'", argv[i]);
            usage(stderr);
            return 2;
        } else if (!dir) {
            dir = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    sd_model_folder m;
    sd_error err = {0};
    if (sd_model_open_path(&m, dir, config, &err) != SD_OK) {
        cli_errorf("inspect", "%s", err.msg);
        return 1;
    }
    json_t *root = json_object(), *comps = json_array();
    json_object_set_new(root, "path", json_string(dir));
    json_object_set_new(root, "pipeline", json_string(m.pipeline_class));
    if (m.single_file)
        json_object_set_new(root, "configs", json_string(config ? config : "built in (real SDXL)"));
    json_object_set_new(root, "components", comps);
    unsigned long long text_w = 0, unet_w = 0, unet_act = 0, vae_w = 0, vae_act = 0;
    long long vae_scale = 8, unet_side = 0;
    int rc = 0;
    for (int i = 0; i < m.n && rc == 0; i++) {
        const sd_component *c = &m.comps[i];
        json_t *o = json_object();
        json_array_append_new(comps, o);
        json_object_set_new(o, "name", json_string(c->name));
        json_object_set_new(o, "present", json_boolean(c->present));
        if (!c->present)
            continue;
        json_object_set_new(o, "library", json_string(c->library));
        json_object_set_new(o, "class", json_string(c->class_name));
        json_object_set_new(o, "dtypes", json_array());
        if (c->kind == SD_COMPONENT_KIND_TOKENIZER)
            continue;
        sd_json_doc cfg;
        if (sd_component_config(c, &cfg, &err) != SD_OK) {
            rc = 1;
            break;
        }
        add_config_numbers(o, c, &cfg);
        if (c->kind == SD_COMPONENT_KIND_WEIGHTS) {
            sd_weights w;
            if (sd_weights_open(&w, c, variant, &err) != SD_OK) {
                sd_json_free(&cfg);
                rc = 1;
                break;
            }
            weight_stats s;
            collect_stats(&w, &s);
            json_object_set_new(o, "weights", json_string(w.description));
            json_object_set_new(o, "dtypes", dtype_list(s.dtype_mask));
            json_object_set_new(o, "tensors", json_integer((json_int_t)s.tensors));
            json_object_set_new(o, "parameters", json_integer((json_int_t)s.params));
            json_object_set_new(o, "bytes", json_integer((json_int_t)s.bytes));
            if (!strncmp(c->class_name, "CLIPTextModel", 13))
                text_w += s.params * 2;
            else if (!strcmp(c->class_name, "UNet2DConditionModel")) {
                unet_w += s.params * 2;
                unet_act = unet_activation_estimate(&cfg);
                unet_side = sd_json_int_or(&cfg, "sample_size", 128);
            } else if (!strcmp(c->class_name, "AutoencoderKL")) {
                /* an fp16 pipeline decodes a force_upcast VAE in fp32 */
                int vae_bytes = sd_json_bool_or(&cfg, "force_upcast", 1) ? 4 : 2;
                vae_w += s.params * (unsigned long long)vae_bytes;
                long long blocks[8];
                int nb = 0;
                if (sd_json_int_list(&cfg, "block_out_channels", blocks, 8, &nb, NULL) == SD_OK)
                    vae_scale = 1ll << (nb - 1);
                vae_act = vae_decode_activation_estimate(&cfg, vae_bytes);
            }
            sd_weights_close(&w);
        }
        sd_json_free(&cfg);
    }
    if (rc == 0) {
        json_t *mem = json_object();
        char at[64];
        snprintf(at, sizeof at, "%lldx%lld, batch 1 (UNet batch 2 for CFG)", unet_side * vae_scale,
                 unet_side * vae_scale);
        json_object_set_new(mem, "at", json_string(at));
        if (text_w)
            json_object_set_new(mem, "text", stage(text_w, 64ull << 20));
        if (unet_w)
            json_object_set_new(mem, "unet", stage(unet_w, unet_act));
        if (vae_w)
            json_object_set_new(mem, "final", stage(vae_w + (strcmp(m.pipeline_class, "StableDiffusionXLImg2ImgPipeline") ? 0 : unet_w), vae_act));
        json_object_set_new(root, "memory_estimate", mem);
        if (as_json) {
            char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            puts(s);
            free(s);
        } else {
            print_text(root);
        }
    } else {
        cli_errorf("inspect", "%s", err.msg);
    }
    json_decref(root);
    sd_model_close(&m);
    return rc;
}
