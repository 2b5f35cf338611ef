// cuda_attention.cu - fused multi-head attention: scores never reach global
// memory. Head size 64 (every UNet and CLIP layer of SDXL) runs a
// flash-attention kernel on the tensor cores (WMMA 16x16x16, fp32
// accumulators, online softmax in fp32 over key tiles of 64). Other head
// sizes (the VAE's single 512-wide head, the tiny test models) run a scalar
// online-softmax kernel, one warp per query, keys staged in shared memory.
#include <mma.h>
#include <stdio.h>

#include "kernels/cuda/cuda_internal.h"

using namespace nvcuda;

#define FA_D 64
#define FA_BQ 64
#define FA_BK 64
#define FA_WARPS 4
/* Row strides in shared memory, padded so that neither the WMMA fragment
 * loads/stores nor the softmax loops hit the same bank from several lanes:
 * 72 halves (144 B) for Q, K, V, P; 68 floats (272 B) for S and O. The
 * softmax loops also rotate their column order by lane (see below). */
#define FA_LDT 72
#define FA_LDF 68

static const size_t FA_SMEM = (size_t)3 * FA_BQ * FA_LDT * 2 /* Q, K, V */ +
                              (size_t)FA_WARPS * 16 * FA_LDF * 4 /* S */ + (size_t)FA_WARPS * 16 * FA_LDT * 2 /* P */ +
                              (size_t)FA_WARPS * 16 * FA_LDF * 4 /* O */ + (size_t)FA_WARPS * 16 * 2 * 4 /* m, l */;

template <typename T>
__global__ void __launch_bounds__(FA_WARPS * 32)
    flash64_kernel(T *__restrict__ O, const T *__restrict__ Q, const T *__restrict__ K, const T *__restrict__ V,
                   int Sq, int Sk, int H, int HD, float scale_log2, int causal)
{
    extern __shared__ __align__(16) unsigned char smem[];
    T *sQ = (T *)smem;
    T *sK = sQ + FA_BQ * FA_LDT;
    T *sV = sK + FA_BK * FA_LDT;
    float *sS = (float *)(sV + FA_BK * FA_LDT);
    T *sP = (T *)(sS + FA_WARPS * 16 * FA_LDF);
    float *sO = (float *)(sP + FA_WARPS * 16 * FA_LDT);
    float *sM = sO + FA_WARPS * 16 * FA_LDF;
    float *sL = sM + FA_WARPS * 16;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int qb = blockIdx.x, b = blockIdx.y / H, h = blockIdx.y % H;
    const T *Qb = Q + (size_t)b * Sq * HD + (size_t)h * FA_D;
    const T *Kb = K + (size_t)b * Sk * HD + (size_t)h * FA_D;
    const T *Vb = V + (size_t)b * Sk * HD + (size_t)h * FA_D;

    for (int v = tid; v < FA_BQ * FA_D / 8; v += FA_WARPS * 32) {
        int r = v / 8, c = (v % 8) * 8, q = qb * FA_BQ + r;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (q < Sq)
            val = *(const uint4 *)(Qb + (size_t)q * HD + c);
        *(uint4 *)(sQ + r * FA_LDT + c) = val;
    }
    for (int i = lane; i < 16 * FA_LDF; i += 32)
        sO[warp * 16 * FA_LDF + i] = 0.0f;
    if (lane < 16) {
        sM[warp * 16 + lane] = -INFINITY;
        sL[warp * 16 + lane] = 0.0f;
    }
    __syncthreads();

    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[FA_D / 16];
    for (int kk = 0; kk < FA_D / 16; kk++)
        wmma::load_matrix_sync(qf[kk], sQ + warp * 16 * FA_LDT + kk * 16, FA_LDT);

    /* two lanes per query row, 32 columns each, visited in an order rotated
     * by lane so the 32 lanes touch 32 different banks */
    const int r = lane >> 1, c0 = (lane & 1) * 32;
    const int qi = qb * FA_BQ + warp * 16 + r;
    float *srow = sS + warp * 16 * FA_LDF + r * FA_LDF;
    T *prow = sP + warp * 16 * FA_LDT + r * FA_LDT;
    float *orow = sO + warp * 16 * FA_LDF + r * FA_LDF;
    int kend = causal ? min(Sk, (qb + 1) * FA_BQ) : Sk;

    for (int kb0 = 0; kb0 < kend; kb0 += FA_BK) {
        __syncthreads();
        for (int v = tid; v < FA_BK * FA_D / 8; v += FA_WARPS * 32) {
            int rr = v / 8, c = (v % 8) * 8, key = kb0 + rr;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (key < Sk) {
                kv = *(const uint4 *)(Kb + (size_t)key * HD + c);
                vv = *(const uint4 *)(Vb + (size_t)key * HD + c);
            }
            *(uint4 *)(sK + rr * FA_LDT + c) = kv;
            *(uint4 *)(sV + rr * FA_LDT + c) = vv;
        }
        __syncthreads();
        /* S = Q K^T for this warp's 16 queries */
        for (int n = 0; n < FA_BK / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < FA_D / 16; kk++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, sK + n * 16 * FA_LDT + kk * 16, FA_LDT);
                wmma::mma_sync(acc, qf[kk], kf, acc);
            }
            wmma::store_matrix_sync(sS + warp * 16 * FA_LDF + n * 16, acc, FA_LDF, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax */
        float mx = -INFINITY;
        for (int k = 0; k < 32; k++) {
            int c = c0 + ((k + lane) & 31), key = kb0 + c;
            float sv = srow[c] * scale_log2;
            if (key >= Sk || (causal && key > qi))
                sv = -INFINITY;
            srow[c] = sv;
            mx = fmaxf(mx, sv);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float m_old = sM[warp * 16 + r];
        float m_new = fmaxf(m_old, mx);
        float m_use = m_new == -INFINITY ? 0.0f : m_new;
        float sum = 0.0f;
        for (int k = 0; k < 32; k++) {
            int c = c0 + ((k + lane) & 31);
            T pt = from_f<T>(exp2f(srow[c] - m_use));
            prow[c] = pt;
            sum += ld_f(&pt); /* the rounded value, as it enters P V */
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        float alpha = exp2f(m_old - m_use);
        __syncwarp();
        if ((lane & 1) == 0) {
            sL[warp * 16 + r] = sL[warp * 16 + r] * alpha + sum;
            sM[warp * 16 + r] = m_new;
        }
        for (int k = 0; k < 32; k++) {
            int c = c0 + ((k + lane) & 31);
            orow[c] *= alpha;
        }
        __syncwarp();
        /* O += P V */
        for (int n = 0; n < FA_D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, sP + warp * 16 * FA_LDT + kk * 16, FA_LDT);
                wmma::load_matrix_sync(vf, sV + kk * 16 * FA_LDT + n * 16, FA_LDT);
                wmma::mma_sync(acc, pf, vf, acc);
            }
            wmma::store_matrix_sync(sS + warp * 16 * FA_LDF + n * 16, acc, FA_LDF, wmma::mem_row_major);
        }
        __syncwarp();
        for (int k = 0; k < 32; k++) {
            int c = c0 + ((k + lane) & 31);
            orow[c] += srow[c];
        }
        __syncwarp();
    }
    if (qi < Sq) {
        float l = sL[warp * 16 + r];
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T *orow_g = O + ((size_t)b * Sq + qi) * HD + (size_t)h * FA_D;
        for (int c = c0; c < c0 + 32; c++)
            orow_g[c] = from_f<T>(orow[c] * inv);
    }
}

/* Any head size up to 32 * GA_MAXR: a block of GA_WARPS warps takes
 * GA_WARPS consecutive queries of one (batch, head), one per warp; key and
 * value rows are staged in shared memory tiles of GA_TK keys and shared by
 * the block's warps, so each is read from global memory once per block.
 * Each lane holds D/32 values of q and of the output; scores reduce across
 * the warp; the softmax is online, in fp32. */
#define GA_MAXR 16
#define GA_WARPS 8
#define GA_TK 32

template <typename T>
__global__ void __launch_bounds__(GA_WARPS * 32)
    attention_tiled_kernel(T *O, const T *Q, const T *K, const T *V, int Sq, int Sk, int H, int D, int HD,
                           float scale, int causal)
{
    extern __shared__ __align__(16) unsigned char smem[];
    T *sK = (T *)smem, *sV = sK + GA_TK * D;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int b = blockIdx.y / H, h = blockIdx.y % H;
    int i0 = blockIdx.x * GA_WARPS, i = i0 + warp;
    bool active = i < Sq;
    const T *q = Q + ((size_t)b * Sq + (active ? i : 0)) * HD + (size_t)h * D;
    float qr[GA_MAXR], acc[GA_MAXR];
    for (int r = 0; r < GA_MAXR; r++) {
        int d = lane + 32 * r;
        qr[r] = (active && d < D) ? ld_f(&q[d]) * scale : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    int last_q = min(Sq, i0 + GA_WARPS) - 1;
    int kend = causal ? min(Sk, last_q + 1) : Sk;
    const T *Kb = K + (size_t)b * Sk * HD + (size_t)h * D;
    const T *Vb = V + (size_t)b * Sk * HD + (size_t)h * D;
    for (int k0 = 0; k0 < kend; k0 += GA_TK) {
        __syncthreads();
        for (int e = threadIdx.x; e < GA_TK * D; e += GA_WARPS * 32) {
            int j = e / D, d = e % D, key = k0 + j;
            T zero = from_f<T>(0.0f);
            sK[e] = key < Sk ? Kb[(size_t)key * HD + d] : zero;
            sV[e] = key < Sk ? Vb[(size_t)key * HD + d] : zero;
        }
        __syncthreads();
        if (!active)
            continue;
        int jmax = min(GA_TK, kend - k0);
        for (int j = 0; j < jmax; j++) {
            if (causal && k0 + j > i)
                break;
            const T *k = sK + j * D, *v = sV + j * D;
            float s = 0.0f;
            for (int r = 0; r < GA_MAXR; r++) {
                int d = lane + 32 * r;
                if (d < D)
                    s += qr[r] * ld_f(&k[d]);
            }
            for (int off = 16; off; off >>= 1)
                s += __shfl_xor_sync(0xffffffffu, s, off);
            float m_new = fmaxf(m, s);
            float corr = __expf(m - m_new), p = __expf(s - m_new);
            l = l * corr + p;
            for (int r = 0; r < GA_MAXR; r++) {
                int d = lane + 32 * r;
                if (d < D)
                    acc[r] = acc[r] * corr + p * ld_f(&v[d]);
            }
            m = m_new;
        }
    }
    if (!active)
        return;
    T *o = O + ((size_t)b * Sq + i) * HD + (size_t)h * D;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int r = 0; r < GA_MAXR; r++) {
        int d = lane + 32 * r;
        if (d < D)
            o[d] = from_f<T>(acc[r] * inv);
    }
}

template <typename T> static sd_status flash64(sd_backend *be, T *o, const T *q, const T *k, const T *v, int B,
                                               int Sq, int Sk, int H, int HD, int causal, sd_error *err)
{
    /* per device, so asked each time (a host-side attribute write) */
    SD_CUDA_TRY(cudaFuncSetAttribute(flash64_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FA_SMEM),
                err, "attention: shared memory opt-in");
    dim3 grid((unsigned)((Sq + FA_BQ - 1) / FA_BQ), (unsigned)(B * H));
    float scale_log2 = 1.4426950408889634f / sqrtf((float)FA_D);
    flash64_kernel<T><<<grid, FA_WARPS * 32, FA_SMEM, cuda_st(be)->stream>>>(o, q, k, v, Sq, Sk, H, HD, scale_log2,
                                                                            causal);
    SD_CUDA_LAUNCH_CHECK(err, "attention (flash, head 64)");
    return SD_OK;
}

template <typename T> static sd_status generic(sd_backend *be, T *o, const T *q, const T *k, const T *v, int B,
                                               int Sq, int Sk, int H, int D, int HD, int causal, sd_error *err)
{
    size_t smem = (size_t)2 * GA_TK * D * sizeof(T);
    SD_CUDA_TRY(cudaFuncSetAttribute(attention_tiled_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                err, "attention: shared memory opt-in");
    dim3 grid((unsigned)((Sq + GA_WARPS - 1) / GA_WARPS), (unsigned)(B * H));
    attention_tiled_kernel<T><<<grid, GA_WARPS * 32, smem, cuda_st(be)->stream>>>(o, q, k, v, Sq, Sk, H, D, HD,
                                                                                 1.0f / sqrtf((float)D), causal);
    SD_CUDA_LAUNCH_CHECK(err, "attention (tiled, any head size)");
    return SD_OK;
}

sd_status cuda_attention(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                         int heads, int causal, sd_error *err)
{
    int B = (int)q->shape[0], Sq = (int)q->shape[1], Sk = (int)k->shape[1], HD = (int)q->shape[2];
    int D = HD / heads;
    if (D > 32 * GA_MAXR)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "attention: head size %d is over %d", D, 32 * GA_MAXR);
    sd_status st;
    if (D == FA_D && HD % 8 == 0) {
        if (be->dtype == SD_DTYPE_BF16)
            st = flash64(be, (__nv_bfloat16 *)o->data, (const __nv_bfloat16 *)q->data, (const __nv_bfloat16 *)k->data,
                         (const __nv_bfloat16 *)v->data, B, Sq, Sk, heads, HD, causal, err);
        else
            st = flash64(be, (__half *)o->data, (const __half *)q->data, (const __half *)k->data,
                         (const __half *)v->data, B, Sq, Sk, heads, HD, causal, err);
    } else {
        if (be->dtype == SD_DTYPE_BF16)
            st = generic(be, (__nv_bfloat16 *)o->data, (const __nv_bfloat16 *)q->data, (const __nv_bfloat16 *)k->data,
                         (const __nv_bfloat16 *)v->data, B, Sq, Sk, heads, D, HD, causal, err);
        else
            st = generic(be, (__half *)o->data, (const __half *)q->data, (const __half *)k->data,
                         (const __half *)v->data, B, Sq, Sk, heads, D, HD, causal, err);
    }
    if (st != SD_OK)
        sd_error_prefix(err, "attention q[%d,%d,%d] k[%d,%d,%d] heads %d: ", B, Sq, HD, B, Sk, HD, heads);
    return st;
}
