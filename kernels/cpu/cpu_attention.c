/* cpu_attention.c - multi-head attention of the CPU backend: per batch and
 * head, scores = q k^T / sqrt(D) in blocks of queries (so a 16384-token VAE
 * attention needs 64 MiB, not 1 GiB), softmax in fp32 over the keys the
 * causal rule and the key mask leave, then scores v. */
#include <float.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/sgemm.h"

#define ATTN_MAX_SCORE_FLOATS (16u << 20)

sd_status sd_cpu_attention(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k,
                           const sd_tensor *v, const sd_tensor *key_mask, int heads, int causal, sd_error *err)
{
    (void)be;
    int64_t B = q->shape[0], Sq = q->shape[1], Sk = k->shape[1], HD = q->shape[2];
    int64_t D = HD / heads;
    int64_t block = Sk > 0 ? (int64_t)(ATTN_MAX_SCORE_FLOATS / (uint64_t)Sk) : Sq;
    if (block > Sq)
        block = Sq;
    if (block < 1)
        block = 1;
    float *S = malloc((size_t)(block * (Sk ? Sk : 1)) * sizeof *S);
    if (!S)
        return sd_fail(err, SD_ERR_NOMEM, "attention: out of memory for %lldx%lld scores", (long long)block,
                       (long long)Sk);
    float scale = 1.0f / sqrtf((float)D);
    const float *Q = CF32(q), *K = CF32(k), *V = CF32(v);
    float *O = F32(o);
    const float *mask = key_mask ? CF32(key_mask) : NULL;
    for (int64_t n = 0; n < B; n++) {
        const float *keep = mask ? mask + n * Sk : NULL;
        for (int h = 0; h < heads; h++) {
            const float *qh = Q + n * Sq * HD + h * D;
            const float *kh = K + n * Sk * HD + h * D;
            const float *vh = V + n * Sk * HD + h * D;
            float *oh = O + n * Sq * HD + h * D;
            for (int64_t q0 = 0; q0 < Sq; q0 += block) {
                int64_t rows = Sq - q0 < block ? Sq - q0 : block;
                sd_sgemm(1, rows, Sk, D, scale, qh + q0 * HD, HD, kh, HD, 0.0f, S, Sk);
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < rows; r++) {
                    float *s = S + r * Sk;
                    int64_t limit = causal ? q0 + r + 1 : Sk;
                    float mx = -FLT_MAX;
                    for (int64_t j = 0; j < limit; j++)
                        if (!keep || keep[j] > 0.0f)
                            mx = s[j] > mx ? s[j] : mx;
                    float sum = 0;
                    for (int64_t j = 0; j < limit; j++) {
                        s[j] = !keep || keep[j] > 0.0f ? expf(s[j] - mx) : 0.0f;
                        sum += s[j];
                    }
                    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                    for (int64_t j = 0; j < limit; j++)
                        s[j] *= inv;
                    for (int64_t j = limit; j < Sk; j++)
                        s[j] = 0.0f;
                }
                sd_sgemm(0, rows, D, Sk, 1.0f, S, Sk, vh, HD, 0.0f, oh + q0 * HD, HD);
            }
        }
    }
    free(S);
    return SD_OK;
}
