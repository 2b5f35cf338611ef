/* op_reference.c - see op_reference.h. Loops as the definitions read; no
 * blocking, no fused tricks, double accumulators. */
#include "tests/ops/op_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double act(double x, int a)
{
    switch ((sd_act)a) {
    case SD_ACT_SILU:
        return x / (1.0 + exp(-x));
    case SD_ACT_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case SD_ACT_QUICK_GELU:
        return x / (1.0 + exp(-1.702 * x));
    case SD_ACT_NONE:
        break;
    }
    return x;
}

void ref_linear(float *y, float *const *in, const op_case *c)
{
    int64_t K = c->shape[0][c->ndim[0] - 1], N = c->shape[1][0], M = op_case_in_numel(c, 0) / K;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = c->nin > 2 ? in[2][n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)in[0][m * K + k] * in[1][n * K + k];
            y[m * N + n] = (float)act(s, c->p.i[0]);
        }
}

/* f_conv pads (i[1], i[2], i[1], i[2]) with stride i[0]; the VAE's case
 * (i[0] == 0) strides 2 with pads (0, 1, 0, 1) */
void ref_conv(float *y, float *const *in, const op_case *c)
{
    int vae = c->p.i[0] == 0;
    int stride = vae ? 2 : c->p.i[0], pt = vae ? 0 : c->p.i[1], pl = pt;
    int64_t B = c->shape[0][0], C = c->shape[0][1], H = c->shape[0][2], W = c->shape[0][3];
    int64_t O = c->shape[1][0], kh = c->shape[1][2], kw = c->shape[1][3];
    int64_t Ho = c->out_shape[2], Wo = c->out_shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    double s = in[2][o];
                    for (int64_t ch = 0; ch < C; ch++)
                        for (int64_t u = 0; u < kh; u++)
                            for (int64_t v = 0; v < kw; v++) {
                                int64_t r = i * stride - pt + u, q = j * stride - pl + v;
                                if (r < 0 || r >= H || q < 0 || q >= W)
                                    continue; /* zero padding */
                                s += (double)in[0][((b * C + ch) * H + r) * W + q] *
                                     in[1][((o * C + ch) * kh + u) * kw + v];
                            }
                    y[((b * O + o) * Ho + i) * Wo + j] = (float)s;
                }
}

void ref_group_norm(float *y, float *const *in, const op_case *c)
{
    int64_t B = c->shape[0][0], C = c->shape[0][1], HW = op_case_in_numel(c, 0) / (B * C);
    int G = c->p.i[0];
    int64_t cg = C / G;
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *x = in[0] + (b * C + g * cg) * HW;
            int64_t n = cg * HW;
            double mean = 0, var = 0;
            for (int64_t k = 0; k < n; k++)
                mean += x[k];
            mean /= (double)n;
            for (int64_t k = 0; k < n; k++)
                var += (x[k] - mean) * (x[k] - mean);
            var /= (double)n; /* biased, as torch.nn.GroupNorm */
            double inv = 1.0 / sqrt(var + c->p.f);
            for (int64_t k = 0; k < n; k++) {
                int64_t ch = g * cg + k / HW;
                double v = (x[k] - mean) * inv * in[1][ch] + in[2][ch];
                y[(b * C + g * cg) * HW + k] = (float)(c->p.i[1] ? act(v, SD_ACT_SILU) : v);
            }
        }
}

void ref_layer_norm(float *y, float *const *in, const op_case *c)
{
    int64_t D = c->shape[0][c->ndim[0] - 1], R = op_case_in_numel(c, 0) / D;
    for (int64_t r = 0; r < R; r++) {
        const float *x = in[0] + r * D;
        double mean = 0, var = 0;
        for (int64_t k = 0; k < D; k++)
            mean += x[k];
        mean /= (double)D;
        for (int64_t k = 0; k < D; k++)
            var += (x[k] - mean) * (x[k] - mean);
        var /= (double)D;
        for (int64_t k = 0; k < D; k++)
            y[r * D + k] = (float)((x[k] - mean) / sqrt(var + c->p.f) * in[1][k] + in[2][k]);
    }
}

void ref_attention(float *y, float *const *in, const op_case *c)
{
    int64_t B = c->shape[0][0], Sq = c->shape[0][1], HD = c->shape[0][2], Sk = c->shape[1][1];
    int H = c->p.i[0], causal = c->p.i[1];
    int64_t D = HD / H;
    double *p = malloc((size_t)Sk * sizeof *p);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < Sq; i++) {
                const float *q = in[0] + (b * Sq + i) * HD + h * D;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Sk; j++) {
                    const float *k = in[1] + (b * Sk + j) * HD + h * D;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += (double)q[d] * k[d];
                    /* a 4th input is the key mask: attend where > 0 */
                    int dropped = (causal && j > i) || (c->nin == 4 && !(in[3][b * Sk + j] > 0.0f));
                    p[j] = dropped ? -INFINITY : s / sqrt((double)D);
                    if (p[j] > mx)
                        mx = p[j];
                }
                for (int64_t j = 0; j < Sk; j++) {
                    p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
                    sum += p[j];
                }
                for (int64_t d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t j = 0; j < Sk; j++)
                        o += sum > 0 ? p[j] / sum * in[2][(b * Sk + j) * HD + h * D + d] : 0.0;
                    y[(b * Sq + i) * HD + h * D + d] = (float)o;
                }
            }
    free(p);
}

void ref_act(float *y, float *const *in, const op_case *c)
{
    for (int64_t k = 0; k < op_case_in_numel(c, 0); k++)
        y[k] = (float)act(in[0][k], c->p.i[0]);
}

void ref_geglu(float *y, float *const *in, const op_case *c)
{
    int64_t N = c->out_shape[1], M = c->out_shape[0];
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            y[m * N + n] = (float)(in[0][m * 2 * N + n] * act(in[0][m * 2 * N + N + n], SD_ACT_GELU));
}

void ref_upsample(float *y, float *const *in, const op_case *c)
{
    int64_t BC = c->shape[0][0] * c->shape[0][1], H = c->shape[0][2], W = c->shape[0][3];
    int64_t Ho = c->out_shape[2], Wo = c->out_shape[3];
    for (int64_t p = 0; p < BC; p++)
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++) /* torch 'nearest': floor(dst * in / out) */
                y[(p * Ho + i) * Wo + j] = in[0][(p * H + i * H / Ho) * W + j * W / Wo];
}

void ref_add(float *y, float *const *in, const op_case *c)
{
    for (int64_t k = 0; k < op_case_in_numel(c, 0); k++)
        y[k] = in[0][k] + in[1][k];
}

void ref_channel_bias(float *y, float *const *in, const op_case *c)
{
    int64_t BC = c->shape[0][0] * c->shape[0][1], HW = c->shape[0][2] * c->shape[0][3];
    for (int64_t p = 0; p < BC; p++)
        for (int64_t k = 0; k < HW; k++)
            y[p * HW + k] = in[0][p * HW + k] + in[1][p];
}

void ref_scale(float *y, float *const *in, const op_case *c)
{
    for (int64_t k = 0; k < op_case_in_numel(c, 0); k++)
        y[k] = in[0][k] * c->p.f;
}

void ref_concat(float *y, float *const *in, const op_case *c)
{
    int axis = c->p.i[0];
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= c->shape[0][d];
    for (int d = axis + 1; d < c->ndim[0]; d++)
        inner *= c->shape[0][d];
    int64_t a = c->shape[0][axis] * inner, b = c->shape[1][axis] * inner;
    for (int64_t o = 0; o < outer; o++) {
        memcpy(y + o * (a + b), in[0] + o * a, (size_t)a * sizeof *y);
        memcpy(y + o * (a + b) + a, in[1] + o * b, (size_t)b * sizeof *y);
    }
}

void ref_to_nlc(float *y, float *const *in, const op_case *c)
{
    int64_t B = c->shape[0][0], C = c->shape[0][1], L = c->shape[0][2] * c->shape[0][3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t l = 0; l < L; l++)
                y[(b * L + l) * C + ch] = in[0][(b * C + ch) * L + l];
}

void ref_to_nchw(float *y, float *const *in, const op_case *c)
{
    int64_t B = c->out_shape[0], C = c->out_shape[1], L = c->out_shape[2] * c->out_shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t l = 0; l < L; l++)
                y[(b * C + ch) * L + l] = in[0][(b * L + l) * C + ch];
}

void ref_copy(float *y, float *const *in, const op_case *c)
{
    memcpy(y, in[0], (size_t)op_case_in_numel(c, 0) * sizeof *y);
}

/* diffusers' get_timestep_embedding: exponent and argument in float32 as
 * torch computes them, sin and cos of that argument */
void ref_temb(float *y, float *const *in, const op_case *c)
{
    (void)in;
    int64_t n = c->out_shape[0], dim = c->out_shape[1], half = dim / 2;
    int flip = c->p.i[0];
    float shift = c->p.f;
    for (int64_t r = 0; r < n; r++)
        for (int64_t k = 0; k < half; k++) {
            float exponent = -logf(10000.0f) * (float)k / ((float)half - shift);
            float arg = op_temb_t[r] * expf(exponent);
            double s = sin((double)arg), co = cos((double)arg);
            y[r * dim + (flip ? half : 0) + k] = (float)s;
            y[r * dim + (flip ? 0 : half) + k] = (float)co;
        }
}

/* f_embed's ids: (i * 7919) % rows */
void ref_embed(float *y, float *const *in, const op_case *c)
{
    int64_t rows = c->shape[0][0], D = c->shape[0][1], B = c->out_shape[0], S = c->out_shape[1];
    for (int64_t i = 0; i < B * S; i++)
        for (int64_t d = 0; d < D; d++)
            y[i * D + d] = in[0][((i * 7919) % rows) * D + d] + in[1][(i % S) * D + d];
}

/* f_gather's rows: {5 % S, S - 1} */
void ref_gather(float *y, float *const *in, const op_case *c)
{
    int64_t S = c->shape[0][1], D = c->shape[0][2];
    int64_t rows[2] = {5 % S, S - 1};
    for (int64_t b = 0; b < 2; b++)
        memcpy(y + b * D, in[0] + (b * S + rows[b]) * D, (size_t)D * sizeof *y);
}
