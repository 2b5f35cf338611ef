/* op_cases.c - see op_cases.h. */
#include "tests/ops/op_cases.h"

#include <stdlib.h>

#include "tests/ops/op_reference.h"

static sd_status f_linear(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_linear(y, in[0], in[1], in[2], (sd_act)p->i[0], err);
}
static sd_status f_conv(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_conv2d_pad4(y, in[0], in[1], in[2], p->i[0], p->i[1], p->i[2], p->i[1], p->i[2], err);
}
static sd_status f_conv_vae(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_conv2d_pad4(y, in[0], in[1], in[2], 2, 0, 1, 0, 1, err);
}
static sd_status f_gn(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_group_norm(y, in[0], in[1], in[2], p->i[0], p->f, p->i[1], err);
}
static sd_status f_ln(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_layer_norm(y, in[0], in[1], in[2], p->f, err);
}
static sd_status f_attn(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_attention(y, in[0], in[1], in[2], p->i[0], p->i[1], err);
}
static sd_status f_attn_masked(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_attention_masked(y, in[0], in[1], in[2], in[3], p->i[0], p->i[1], err);
}
static sd_status f_act(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_act(y, in[0], (sd_act)p->i[0], err);
}
static sd_status f_geglu(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_geglu(y, in[0], err);
}
static sd_status f_up(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_upsample_nearest(y, in[0], err);
}
static sd_status f_add(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_add(y, in[0], in[1], err);
}
static sd_status f_cbias(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_add_channel_bias(y, in[0], in[1], err);
}
static sd_status f_scale(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_scale(y, in[0], p->f, err);
}
static sd_status f_concat(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_concat(y, in[0], in[1], p->i[0], err);
}
static sd_status f_to_nlc(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_nchw_to_nlc(y, in[0], err);
}
static sd_status f_to_nchw(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_nlc_to_nchw(y, in[0], err);
}
static sd_status f_copy(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_copy(y, in[0], err);
}
/* the timesteps every embedding case embeds (n <= 8) */
const float op_temb_t[8] = {999, 501, 1, 0, 250.5f, 77, 640, 1024};
static sd_status f_temb(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_timestep_embedding(y, op_temb_t, (int)y->shape[0], (int)y->shape[1], p->i[0], p->f, err);
}
static sd_status f_embed(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    int64_t ids[2 * 77];
    for (int i = 0; i < 2 * 77; i++)
        ids[i] = (i * 7919) % in[0]->shape[0];
    return sd_op_embedding(y, ids, in[0], in[1], err);
}
static sd_status f_gather(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    int64_t S = in[0]->shape[1], rows[2] = {5 % S, S - 1}; /* {5, 76} for CLIP's 77 */
    return sd_op_gather_rows(y, in[0], rows, err);
}

#define S4(a, b, c, d) {a, b, c, d}

/* SDXL's shapes (the GPU check; ref unused there) */
const op_case op_cases_sdxl[] = {
    {"linear q/k/v 2x4096 tok 640", 2, {2, 2}, {S4(8192, 640, 0, 0), S4(640, 640, 0, 0)}, {1, 0.05f}, 2,
     S4(8192, 640, 0, 0), f_linear, {{0}, 0}, 2.0 * 8192 * 640 * 640, 1, NULL},
    {"linear+bias GEGLU-in 2x1024 tok", 3, {2, 2, 1}, {S4(2048, 1280, 0, 0), S4(10240, 1280, 0, 0), S4(10240, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 2, S4(2048, 10240, 0, 0), f_linear, {{0}, 0}, 2.0 * 2048 * 10240 * 1280, 1, NULL},
    {"linear+bias+gelu CLIP-G mlp", 3, {2, 2, 1}, {S4(154, 1280, 0, 0), S4(5120, 1280, 0, 0), S4(5120, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 2, S4(154, 5120, 0, 0), f_linear, {{SD_ACT_GELU}, 0}, 2.0 * 154 * 5120 * 1280, 0, NULL},
    {"linear tiny K=40 (unaligned)", 3, {2, 2, 1}, {S4(154, 40, 0, 0), S4(72, 40, 0, 0), S4(72, 0, 0, 0)},
     {1, 0.2f, 0.1f}, 2, S4(154, 72, 0, 0), f_linear, {{SD_ACT_QUICK_GELU}, 0}, 2.0 * 154 * 72 * 40, 0, NULL},
    {"conv3x3 320 at 128x128 b2", 3, {4, 4, 1}, {S4(2, 320, 128, 128), S4(320, 320, 3, 3), S4(320, 0, 0, 0)},
     {1, 0.02f, 0.1f}, 4, S4(2, 320, 128, 128), f_conv, {{1, 1, 1}, 0}, 2.0 * 2 * 320 * 128 * 128 * 2880, 1, NULL},
    {"conv3x3 640->1280 at 32x32 b2", 3, {4, 4, 1}, {S4(2, 640, 32, 32), S4(1280, 640, 3, 3), S4(1280, 0, 0, 0)},
     {1, 0.015f, 0.1f}, 4, S4(2, 1280, 32, 32), f_conv, {{1, 1, 1}, 0}, 2.0 * 2 * 1280 * 1024 * 5760, 0, NULL},
    {"conv3x3 stride2 320 128->64", 3, {4, 4, 1}, {S4(2, 320, 128, 128), S4(320, 320, 3, 3), S4(320, 0, 0, 0)},
     {1, 0.02f, 0.1f}, 4, S4(2, 320, 64, 64), f_conv, {{2, 1, 1}, 0}, 2.0 * 2 * 320 * 4096 * 2880, 0, NULL},
    {"conv1x1 shortcut 640->1280 32x32", 3, {4, 4, 1}, {S4(2, 640, 32, 32), S4(1280, 640, 1, 1), S4(1280, 0, 0, 0)},
     {1, 0.04f, 0.1f}, 4, S4(2, 1280, 32, 32), f_conv, {{1, 0, 0}, 0}, 2.0 * 2 * 1280 * 1024 * 640, 0, NULL},
    {"conv VAE down pad(0,1,0,1) 128", 3, {4, 4, 1}, {S4(1, 128, 256, 256), S4(128, 128, 3, 3), S4(128, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 4, S4(1, 128, 128, 128), f_conv_vae, {{0}, 0}, 2.0 * 128 * 16384 * 1152, 0, NULL},
    /* the CUDA backend cuts this one's column buffer (1152 x 262144 values)
     * into bands of output pixels (cuda_gemm.cu: 3 bands in 16 bits, 5 in
     * fp32, the last one partial) */
    {"conv3x3 VAE 128 at 512x512 banded", 3, {4, 4, 1}, {S4(1, 128, 512, 512), S4(128, 128, 3, 3), S4(128, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 4, S4(1, 128, 512, 512), f_conv, {{1, 1, 1}, 0}, 2.0 * 128 * 262144 * 1152, 0, NULL},
    {"conv3x3 tiny 4->16 at 8x12", 3, {4, 4, 1}, {S4(2, 4, 8, 12), S4(16, 4, 3, 3), S4(16, 0, 0, 0)},
     {1, 0.2f, 0.1f}, 4, S4(2, 16, 8, 12), f_conv, {{1, 1, 1}, 0}, 0, 0, NULL},
    {"group_norm+silu 320 at 128x128", 3, {4, 1, 1}, {S4(2, 320, 128, 128), S4(320, 0, 0, 0), S4(320, 0, 0, 0)},
     {2, 0, 0.1f}, 4, S4(2, 320, 128, 128), f_gn, {{32, 1}, 1e-5f}, 0, 1, NULL},
    {"group_norm 1280 at 32x32 eps1e-6", 3, {4, 1, 1}, {S4(2, 1280, 32, 32), S4(1280, 0, 0, 0), S4(1280, 0, 0, 0)},
     {3, 0, 0.1f}, 4, S4(2, 1280, 32, 32), f_gn, {{32, 0}, 1e-6f}, 0, 0, NULL},
    {"layer_norm 8192x640", 3, {2, 1, 1}, {S4(8192, 640, 0, 0), S4(640, 0, 0, 0), S4(640, 0, 0, 0)}, {2, 0, 0.1f}, 2,
     S4(8192, 640, 0, 0), f_ln, {{0}, 1e-5f}, 0, 1, NULL},
    {"attention self 2x4096 10h d64", 3, {3, 3, 3}, {S4(2, 4096, 640, 0), S4(2, 4096, 640, 0), S4(2, 4096, 640, 0)},
     {1, 1, 1}, 3, S4(2, 4096, 640, 0), f_attn, {{10, 0}, 0}, 4.0 * 2 * 4096 * 4096 * 640, 1, NULL},
    {"attention cross 2x1024 vs 77 20h", 3, {3, 3, 3}, {S4(2, 1024, 1280, 0), S4(2, 77, 1280, 0), S4(2, 77, 1280, 0)},
     {1, 1, 1}, 3, S4(2, 1024, 1280, 0), f_attn, {{20, 0}, 0}, 4.0 * 2 * 1024 * 77 * 1280, 0, NULL},
    {"attention causal CLIP 77 12h", 3, {3, 3, 3}, {S4(2, 77, 768, 0), S4(2, 77, 768, 0), S4(2, 77, 768, 0)},
     {1, 1, 1}, 3, S4(2, 77, 768, 0), f_attn, {{12, 1}, 0}, 0, 1, NULL},
    {"attention VAE 1 head d512 1024tok", 3, {3, 3, 3}, {S4(1, 1024, 512, 0), S4(1, 1024, 512, 0), S4(1, 1024, 512, 0)},
     {0.3f, 0.3f, 1}, 3, S4(1, 1024, 512, 0), f_attn, {{1, 0}, 0}, 4.0 * 1024 * 1024 * 512, 0, NULL},
    {"attention VAE d512 8192 tok chunked", 3, {3, 3, 3},
     {S4(1, 8192, 512, 0), S4(1, 8192, 512, 0), S4(1, 8192, 512, 0)}, {0.3f, 0.3f, 1}, 3, S4(1, 8192, 512, 0), f_attn,
     {{1, 0}, 0}, 4.0 * 8192 * 8192 * 512, 0, NULL},
    {"attention self 2x1024 20h d64", 3, {3, 3, 3}, {S4(2, 1024, 1280, 0), S4(2, 1024, 1280, 0), S4(2, 1024, 1280, 0)},
     {1, 1, 1}, 3, S4(2, 1024, 1280, 0), f_attn, {{20, 0}, 0}, 4.0 * 2 * 1024 * 1024 * 1280, 0, NULL},
    {"attention causal CLIP 77 20h key-masked", 4, {3, 3, 3, 2},
     {S4(2, 77, 1280, 0), S4(2, 77, 1280, 0), S4(2, 77, 1280, 0), S4(2, 77, 0, 0)}, {1, 1, 1, 1}, 3,
     S4(2, 77, 1280, 0), f_attn_masked, {{20, 1}, 0}, 0, 1, NULL},
    {"attention tiny d12 causal", 3, {3, 3, 3}, {S4(2, 77, 48, 0), S4(2, 77, 48, 0), S4(2, 77, 48, 0)}, {1, 1, 1}, 3,
     S4(2, 77, 48, 0), f_attn, {{4, 1}, 0}, 0, 0, NULL},
    {"silu 2x320x128x128", 1, {4}, {S4(2, 320, 128, 128)}, {3}, 4, S4(2, 320, 128, 128), f_act, {{SD_ACT_SILU}, 0}, 0, 0, NULL},
    {"quick_gelu 154x3072", 1, {2}, {S4(154, 3072, 0, 0)}, {3}, 2, S4(154, 3072, 0, 0), f_act, {{SD_ACT_QUICK_GELU}, 0},
     0, 0, NULL},
    {"geglu 8192x(2x2560)", 1, {2}, {S4(8192, 5120, 0, 0)}, {2}, 2, S4(8192, 2560, 0, 0), f_geglu, {{0}, 0}, 0, 1, NULL},
    {"upsample 1280 32->64", 1, {4}, {S4(2, 1280, 32, 32)}, {1}, 4, S4(2, 1280, 64, 64), f_up, {{0}, 0}, 0, 0, NULL},
    {"add 2x640x64x64", 2, {4, 4}, {S4(2, 640, 64, 64), S4(2, 640, 64, 64)}, {1, 1}, 4, S4(2, 640, 64, 64), f_add,
     {{0}, 0}, 0, 0, NULL},
    {"add_channel_bias 320 128x128", 2, {4, 2}, {S4(2, 320, 128, 128), S4(2, 320, 0, 0)}, {1, 1}, 4,
     S4(2, 320, 128, 128), f_cbias, {{0}, 0}, 0, 0, NULL},
    {"scale 2x4x128x128", 1, {4}, {S4(2, 4, 128, 128)}, {1}, 4, S4(2, 4, 128, 128), f_scale, {{0}, 7.6775f}, 0, 0, NULL},
    {"concat channels 640+320 64x64", 2, {4, 4}, {S4(2, 640, 64, 64), S4(2, 320, 64, 64)}, {1, 1}, 4,
     S4(2, 960, 64, 64), f_concat, {{1}, 0}, 0, 1, NULL},
    {"concat features 768+1280", 2, {3, 3}, {S4(2, 77, 768, 0), S4(2, 77, 1280, 0)}, {1, 1}, 3, S4(2, 77, 2048, 0),
     f_concat, {{2}, 0}, 0, 0, NULL},
    {"nchw->nlc 640x64x64", 1, {4}, {S4(2, 640, 64, 64)}, {1}, 3, S4(2, 4096, 640, 0), f_to_nlc, {{0}, 0}, 0, 1, NULL},
    {"nlc->nchw 640x64x64", 1, {3}, {S4(2, 4096, 640, 0)}, {1}, 4, S4(2, 640, 64, 64), f_to_nchw, {{0}, 0}, 0, 0, NULL},
    {"nchw->nlc odd 48x9x13", 1, {4}, {S4(2, 48, 9, 13)}, {1}, 3, S4(2, 117, 48, 0), f_to_nlc, {{0}, 0}, 0, 0, NULL},
    {"copy 2x4x128x128", 1, {4}, {S4(2, 4, 128, 128)}, {1}, 4, S4(2, 4, 128, 128), f_copy, {{0}, 0}, 0, 0, NULL},
    {"timestep_embedding 8x320", 0, {0}, {S4(0, 0, 0, 0)}, {0}, 2, S4(8, 320, 0, 0), f_temb, {{1}, 0}, 0, 0, NULL},
    {"embedding 2x77 from 49408x768", 2, {2, 2}, {S4(49408, 768, 0, 0), S4(77, 768, 0, 0)}, {0.02f, 0.01f}, 3,
     S4(2, 77, 768, 0), f_embed, {{0}, 0}, 0, 0, NULL},
    {"gather_rows 2x77x1280", 1, {3}, {S4(2, 77, 1280, 0)}, {1}, 2, S4(2, 1280, 0, 0), f_gather, {{0}, 0}, 0, 0, NULL},
};

const int op_cases_sdxl_count = (int)(sizeof op_cases_sdxl / sizeof op_cases_sdxl[0]);

/* Small shapes: every op and every variant of the table above (odd sizes,
 * leading dims, all activations, both paddings, causal and cross attention,
 * the [B, C] form of group norm), cheap enough for the scalar reference. */
const op_case op_cases_small[] = {
    {"linear", 2, {2, 2}, {S4(6, 40, 0, 0), S4(24, 40, 0, 0)}, {1, 0.2f}, 2, S4(6, 24, 0, 0), f_linear, {{0}, 0}, 0, 0, ref_linear},
    {"linear+bias leading dims", 3, {3, 2, 1}, {S4(2, 3, 16, 0), S4(9, 16, 0, 0), S4(9, 0, 0, 0)}, {1, 0.3f, 0.1f}, 3,
     S4(2, 3, 9, 0), f_linear, {{0}, 0}, 0, 0, ref_linear},
    {"linear+bias+gelu", 3, {2, 2, 1}, {S4(5, 33, 0, 0), S4(17, 33, 0, 0), S4(17, 0, 0, 0)}, {1, 0.2f, 0.1f}, 2,
     S4(5, 17, 0, 0), f_linear, {{SD_ACT_GELU}, 0}, 0, 0, ref_linear},
    {"linear+bias+quick_gelu", 3, {2, 2, 1}, {S4(5, 12, 0, 0), S4(7, 12, 0, 0), S4(7, 0, 0, 0)}, {1, 0.3f, 0.1f}, 2,
     S4(5, 7, 0, 0), f_linear, {{SD_ACT_QUICK_GELU}, 0}, 0, 0, ref_linear},
    {"linear+bias+silu", 3, {2, 2, 1}, {S4(3, 20, 0, 0), S4(11, 20, 0, 0), S4(11, 0, 0, 0)}, {1, 0.3f, 0.1f}, 2,
     S4(3, 11, 0, 0), f_linear, {{SD_ACT_SILU}, 0}, 0, 0, ref_linear},
    {"conv3x3 pad1", 3, {4, 4, 1}, {S4(2, 4, 9, 7), S4(6, 4, 3, 3), S4(6, 0, 0, 0)}, {1, 0.2f, 0.1f}, 4, S4(2, 6, 9, 7),
     f_conv, {{1, 1, 1}, 0}, 0, 0, ref_conv},
    {"conv3x3 stride2", 3, {4, 4, 1}, {S4(1, 3, 10, 8), S4(5, 3, 3, 3), S4(5, 0, 0, 0)}, {1, 0.2f, 0.1f}, 4,
     S4(1, 5, 5, 4), f_conv, {{2, 1, 1}, 0}, 0, 0, ref_conv},
    {"conv1x1", 3, {4, 4, 1}, {S4(2, 6, 3, 5), S4(4, 6, 1, 1), S4(4, 0, 0, 0)}, {1, 0.3f, 0.1f}, 4, S4(2, 4, 3, 5),
     f_conv, {{1, 0, 0}, 0}, 0, 0, ref_conv},
    {"conv VAE down pad(0,1,0,1)", 3, {4, 4, 1}, {S4(1, 4, 8, 6), S4(3, 4, 3, 3), S4(3, 0, 0, 0)}, {1, 0.2f, 0.1f}, 4,
     S4(1, 3, 4, 3), f_conv_vae, {{0}, 0}, 0, 0, ref_conv},
    {"group_norm+silu", 3, {4, 1, 1}, {S4(2, 8, 5, 3), S4(8, 0, 0, 0), S4(8, 0, 0, 0)}, {2, 0, 0.1f}, 4, S4(2, 8, 5, 3),
     f_gn, {{4, 1}, 1e-5f}, 0, 0, ref_group_norm},
    {"group_norm rows eps1e-6", 3, {2, 1, 1}, {S4(3, 12, 0, 0), S4(12, 0, 0, 0), S4(12, 0, 0, 0)}, {3, 0, 0.1f}, 2,
     S4(3, 12, 0, 0), f_gn, {{3, 0}, 1e-6f}, 0, 0, ref_group_norm},
    {"layer_norm", 3, {2, 1, 1}, {S4(5, 24, 0, 0), S4(24, 0, 0, 0), S4(24, 0, 0, 0)}, {2, 0, 0.1f}, 2, S4(5, 24, 0, 0),
     f_ln, {{0}, 1e-5f}, 0, 0, ref_layer_norm},
    {"attention self 3 heads", 3, {3, 3, 3}, {S4(2, 9, 24, 0), S4(2, 9, 24, 0), S4(2, 9, 24, 0)}, {1, 1, 1}, 3,
     S4(2, 9, 24, 0), f_attn, {{3, 0}, 0}, 0, 0, ref_attention},
    {"attention cross", 3, {3, 3, 3}, {S4(2, 7, 16, 0), S4(2, 5, 16, 0), S4(2, 5, 16, 0)}, {1, 1, 1}, 3,
     S4(2, 7, 16, 0), f_attn, {{2, 0}, 0}, 0, 0, ref_attention},
    {"attention causal", 3, {3, 3, 3}, {S4(2, 6, 12, 0), S4(2, 6, 12, 0), S4(2, 6, 12, 0)}, {1, 1, 1}, 3,
     S4(2, 6, 12, 0), f_attn, {{2, 1}, 0}, 0, 0, ref_attention},
    {"attention causal key-masked", 4, {3, 3, 3, 2}, {S4(2, 8, 12, 0), S4(2, 8, 12, 0), S4(2, 8, 12, 0), S4(2, 8, 0, 0)},
     {1, 1, 1, 1}, 3, S4(2, 8, 12, 0), f_attn_masked, {{2, 1}, 0}, 0, 0, ref_attention},
    {"attention cross key-masked", 4, {3, 3, 3, 2}, {S4(2, 5, 16, 0), S4(2, 9, 16, 0), S4(2, 9, 16, 0), S4(2, 9, 0, 0)},
     {1, 1, 1, 1}, 3, S4(2, 5, 16, 0), f_attn_masked, {{2, 0}, 0}, 0, 0, ref_attention},
    {"silu", 1, {4}, {S4(2, 3, 4, 5)}, {3}, 4, S4(2, 3, 4, 5), f_act, {{SD_ACT_SILU}, 0}, 0, 0, ref_act},
    {"gelu", 1, {2}, {S4(7, 9, 0, 0)}, {3}, 2, S4(7, 9, 0, 0), f_act, {{SD_ACT_GELU}, 0}, 0, 0, ref_act},
    {"quick_gelu", 1, {2}, {S4(7, 9, 0, 0)}, {3}, 2, S4(7, 9, 0, 0), f_act, {{SD_ACT_QUICK_GELU}, 0}, 0, 0, ref_act},
    {"geglu", 1, {2}, {S4(4, 20, 0, 0)}, {2}, 2, S4(4, 10, 0, 0), f_geglu, {{0}, 0}, 0, 0, ref_geglu},
    {"upsample 2x", 1, {4}, {S4(1, 3, 4, 5)}, {1}, 4, S4(1, 3, 8, 10), f_up, {{0}, 0}, 0, 0, ref_upsample},
    {"add", 2, {4, 4}, {S4(2, 3, 4, 4), S4(2, 3, 4, 4)}, {1, 1}, 4, S4(2, 3, 4, 4), f_add, {{0}, 0}, 0, 0, ref_add},
    {"add_channel_bias", 2, {4, 2}, {S4(2, 3, 4, 4), S4(2, 3, 0, 0)}, {1, 1}, 4, S4(2, 3, 4, 4), f_cbias, {{0}, 0}, 0, 0,
     ref_channel_bias},
    {"scale", 1, {4}, {S4(2, 4, 3, 3)}, {1}, 4, S4(2, 4, 3, 3), f_scale, {{0}, 7.6775f}, 0, 0, ref_scale},
    {"concat channels", 2, {4, 4}, {S4(2, 3, 2, 2), S4(2, 2, 2, 2)}, {1, 1}, 4, S4(2, 5, 2, 2), f_concat, {{1}, 0}, 0, 0,
     ref_concat},
    {"concat features", 2, {3, 3}, {S4(2, 3, 4, 0), S4(2, 3, 5, 0)}, {1, 1}, 3, S4(2, 3, 9, 0), f_concat, {{2}, 0}, 0, 0,
     ref_concat},
    {"nchw->nlc odd", 1, {4}, {S4(2, 5, 3, 7)}, {1}, 3, S4(2, 21, 5, 0), f_to_nlc, {{0}, 0}, 0, 0, ref_to_nlc},
    {"nlc->nchw", 1, {3}, {S4(2, 21, 5, 0)}, {1}, 4, S4(2, 5, 3, 7), f_to_nchw, {{0}, 0}, 0, 0, ref_to_nchw},
    {"copy", 1, {4}, {S4(2, 4, 3, 3)}, {1}, 4, S4(2, 4, 3, 3), f_copy, {{0}, 0}, 0, 0, ref_copy},
    {"timestep_embedding flip", 0, {0}, {S4(0, 0, 0, 0)}, {0}, 2, S4(8, 16, 0, 0), f_temb, {{1}, 0}, 0, 0, ref_temb},
    {"timestep_embedding shift 1", 0, {0}, {S4(0, 0, 0, 0)}, {0}, 2, S4(5, 10, 0, 0), f_temb, {{0}, 1}, 0, 0, ref_temb},
    {"embedding with positions", 2, {2, 2}, {S4(50, 8, 0, 0), S4(6, 8, 0, 0)}, {0.02f, 0.01f}, 3, S4(2, 6, 8, 0),
     f_embed, {{0}, 0}, 0, 0, ref_embed},
    {"gather_rows", 1, {3}, {S4(2, 9, 6, 0)}, {1}, 2, S4(2, 6, 0, 0), f_gather, {{0}, 0}, 0, 0, ref_gather},
};
const int op_cases_small_count = (int)(sizeof op_cases_small / sizeof op_cases_small[0]);

static unsigned long long rng_state;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

void op_cases_fill(float *h, size_t n, float scale, sd_dtype dt)
{
    for (size_t i = 0; i < n; i++)
        h[i] = scale == 0 ? 1.0f + 0.2f * frand() : scale * frand();
    void *tmp = malloc(n * sizeof(float)); /* room for any storage dtype */
    if (tmp && dt != SD_DTYPE_F32) {
        sd_convert_from_f32(tmp, dt, h, n);
        sd_convert_to_f32(h, tmp, dt, n);
    }
    free(tmp);
}


void op_cases_seed(unsigned long long seed)
{
    rng_state = seed;
}

int64_t op_case_in_numel(const op_case *c, int k)
{
    int64_t n = 1;
    for (int d = 0; d < c->ndim[k]; d++)
        n *= c->shape[k][d];
    return n;
}

int64_t op_case_out_numel(const op_case *c)
{
    int64_t n = 1;
    for (int d = 0; d < c->out_ndim; d++)
        n *= c->out_shape[d];
    return n;
}
