// cuda_attention.cu - multi-head attention. SDXL's UNet and CLIP heads (64 wide) run fused:
// scores never reach global memory. Head size 64 runs a
// flash-attention kernel on the tensor cores (mma.sync m16n8k16, scores,
// softmax and accumulators in registers, fp32). Wide heads (the VAE's 512)
// go through cuBLASLt products on bounded blocks of queries. Other head
// sizes (the tiny test models) and fp32 run a scalar online-softmax kernel,
// one warp per query, keys staged in shared memory.
#include <stdio.h>

#include <type_traits>

#include "kernels/cuda/cuda_internal.h"

#define FA_D 64
#define FA_BQ 64
#define FA_BK 64
#define FA_WARPS 4
/* shared-memory row stride in halves: 72 (36 words) puts the 8 rows a
 * fragment load touches on different banks */
#define FA_LD 72

static const size_t FA_SMEM = (size_t)2 * FA_BK * FA_LD * 2; /* K tile and transposed V tile */

/* One m16n8k16 tensor-core product, fp32 accumulators (PTX mma.sync). The
 * fragment layouts are PTX's: A rows lane/4 and lane/4+8, columns
 * (lane%4)*2 + {0,1} and +8; B columns lane/4, rows (lane%4)*2 + {0,1} and +8;
 * C rows lane/4 and lane/4+8, columns (lane%4)*2 + {0,1}. */
template <typename T> __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]);
template <> __device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* Flash attention for head size 64 (FlashAttention-2's scheme): a block of 4
 * warps takes 64 queries, each warp 16, with Q held in registers as mma
 * fragments; key tiles of 64 are staged in shared memory (K as is, V
 * transposed so both load as 32-bit fragment pairs); scores, the online
 * softmax (fp32, exp2) and the output accumulators stay in registers. */
template <typename T>
__global__ void __launch_bounds__(FA_WARPS * 32)
    flash64_kernel(T *__restrict__ O, const T *__restrict__ Q, const T *__restrict__ K, const T *__restrict__ V,
                   int Sq, int Sk, int H, int HD, float scale_log2, int causal)
{
    extern __shared__ __align__(16) unsigned char smem[];
    T *sK = (T *)smem;
    T *sVt = sK + FA_BK * FA_LD;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int qb = blockIdx.x, b = blockIdx.y / H, h = blockIdx.y % H;
    const T *Qb = Q + (size_t)b * Sq * HD + (size_t)h * FA_D;
    const T *Kb = K + (size_t)b * Sk * HD + (size_t)h * FA_D;
    const T *Vb = V + (size_t)b * Sk * HD + (size_t)h * FA_D;
    const int g = lane >> 2, t4 = lane & 3;
    const int row0 = qb * FA_BQ + warp * 16 + g, row1 = row0 + 8;

    /* Q fragments: 4 chunks of 16 dims */
    uint32_t qa[4][4];
    for (int kc = 0; kc < 4; kc++) {
        int c = kc * 16 + t4 * 2;
        uint32_t z = 0;
        qa[kc][0] = row0 < Sq ? *(const uint32_t *)(Qb + (size_t)row0 * HD + c) : z;
        qa[kc][1] = row1 < Sq ? *(const uint32_t *)(Qb + (size_t)row1 * HD + c) : z;
        qa[kc][2] = row0 < Sq ? *(const uint32_t *)(Qb + (size_t)row0 * HD + c + 8) : z;
        qa[kc][3] = row1 < Sq ? *(const uint32_t *)(Qb + (size_t)row1 * HD + c + 8) : z;
    }
    float o[8][4];
    for (int n = 0; n < 8; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
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
            *(uint4 *)(sK + rr * FA_LD + c) = kv;
            const T *ve = (const T *)&vv;
            for (int e = 0; e < 8; e++)
                sVt[(c + e) * FA_LD + rr] = ve[e];
        }
        __syncthreads();
        /* S = Q K^T: 8 tiles of 8 keys */
        float s[8][4];
        for (int n = 0; n < 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const T *kr = sK + (n * 8 + g) * FA_LD + t4 * 2;
            for (int kc = 0; kc < 4; kc++) {
                uint32_t bb[2] = {*(const uint32_t *)(kr + kc * 16), *(const uint32_t *)(kr + kc * 16 + 8)};
                mma16816<T>(s[n], qa[kc], bb);
            }
        }
        /* mask, scale, row maxima (rows g and g+8, 4 lanes each) */
        float mx0 = -INFINITY, mx1 = -INFINITY;
        for (int n = 0; n < 8; n++)
            for (int e = 0; e < 2; e++) {
                int key = kb0 + n * 8 + t4 * 2 + e;
                float a0 = s[n][e] * scale_log2, a1 = s[n][2 + e] * scale_log2;
                if (key >= Sk || (causal && key > row0))
                    a0 = -INFINITY;
                if (key >= Sk || (causal && key > row1))
                    a1 = -INFINITY;
                s[n][e] = a0;
                s[n][2 + e] = a1;
                mx0 = fmaxf(mx0, a0);
                mx1 = fmaxf(mx1, a1);
            }
        for (int off = 1; off < 4; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;
        float al0 = exp2f(m0 - mu0), al1 = exp2f(m1 - mu1);
        float sum0 = 0.0f, sum1 = 0.0f;
        for (int n = 0; n < 8; n++) {
            s[n][0] = exp2f(s[n][0] - mu0);
            s[n][1] = exp2f(s[n][1] - mu0);
            s[n][2] = exp2f(s[n][2] - mu1);
            s[n][3] = exp2f(s[n][3] - mu1);
            sum0 += s[n][0] + s[n][1];
            sum1 += s[n][2] + s[n][3];
        }
        for (int off = 1; off < 4; off <<= 1) {
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, off);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, off);
        }
        l0 = l0 * al0 + sum0;
        l1 = l1 * al1 + sum1;
        m0 = mn0;
        m1 = mn1;
        for (int n = 0; n < 8; n++) {
            o[n][0] *= al0;
            o[n][1] *= al0;
            o[n][2] *= al1;
            o[n][3] *= al1;
        }
        /* O += P V: P's accumulator layout is the A fragment layout */
        for (int kc = 0; kc < 4; kc++) {
            uint32_t pa[4] = {pack2<T>(s[2 * kc][0], s[2 * kc][1]), pack2<T>(s[2 * kc][2], s[2 * kc][3]),
                              pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                              pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
            for (int n = 0; n < 8; n++) {
                const T *vr = sVt + (n * 8 + g) * FA_LD + kc * 16 + t4 * 2;
                uint32_t bb[2] = {*(const uint32_t *)vr, *(const uint32_t *)(vr + 8)};
                mma16816<T>(o[n], pa, bb);
            }
        }
    }
    float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    T *o0 = O + ((size_t)b * Sq + row0) * HD + (size_t)h * FA_D, *o1 = o0 + (size_t)8 * HD;
    for (int n = 0; n < 8; n++) {
        int c = n * 8 + t4 * 2;
        if (row0 < Sq)
            *(uint32_t *)(o0 + c) = pack2<T>(o[n][0] * inv0, o[n][1] * inv0);
        if (row1 < Sq)
            *(uint32_t *)(o1 + c) = pack2<T>(o[n][2] * inv1, o[n][3] * inv1);
    }
}

/* Any head size up to 32 * GA_MAXR: a block of GA_WARPS warps takes
 * GA_WARPS consecutive queries of one (batch, head), one per warp; key and
 * value rows are staged in shared memory tiles of GA_TK keys and shared by
 * the block's warps, so each is read from global memory once per block.
 * Each lane holds D/32 values of q and of the output; scores reduce across
 * the warp; the softmax is online, in fp32. Keys whose Mask[b, key] is
 * not > 0 are skipped (Mask NULL: none), so a masked key costs nothing and
 * a query left with no key writes zeros (l == 0). */
#define GA_MAXR 16
#define GA_WARPS 8
#define GA_TK 32

template <typename T>
__global__ void __launch_bounds__(GA_WARPS * 32)
    attention_tiled_kernel(T *O, const T *Q, const T *K, const T *V, const T *Mask, int Sq, int Sk, int H, int D,
                           int HD, float scale, int causal)
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
            /* warp-uniform: every lane reads the same mask entry */
            if (Mask && !(ld_f(&Mask[(size_t)b * Sk + k0 + j]) > 0.0f))
                continue;
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

template <typename T> static sd_status generic(sd_backend *be, T *o, const T *q, const T *k, const T *v,
                                               const T *mask, int B, int Sq, int Sk, int H, int D, int HD, int causal,
                                               sd_error *err)
{
    size_t smem = (size_t)2 * GA_TK * D * sizeof(T);
    SD_CUDA_TRY(cudaFuncSetAttribute(attention_tiled_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                err, "attention: shared memory opt-in");
    dim3 grid((unsigned)((Sq + GA_WARPS - 1) / GA_WARPS), (unsigned)(B * H));
    attention_tiled_kernel<T><<<grid, GA_WARPS * 32, smem, cuda_st(be)->stream>>>(o, q, k, v, mask, Sq, Sk, H, D,
                                                                                 HD, 1.0f / sqrtf((float)D), causal);
    SD_CUDA_LAUNCH_CHECK(err, "attention (tiled, any head size)");
    return SD_OK;
}

/* Row softmax of fp32 scores into the storage type: one block per row. */
template <typename T> __global__ void softmax_rows_kernel(T *P, const float *S, int Sk, int q0, int causal)
{
    __shared__ float red[32];
    const float *s = S + (size_t)blockIdx.x * Sk;
    T *p = P + (size_t)blockIdx.x * Sk;
    int limit = causal ? min(Sk, q0 + (int)blockIdx.x + 1) : Sk;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < limit; j += blockDim.x)
        mx = fmaxf(mx, s[j]);
    for (int off = 16; off; off >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0)
        red[warp] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int w = 0; w < nw; w++)
        mx = fmaxf(mx, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < limit; j += blockDim.x)
        sum += __expf(s[j] - mx);
    for (int off = 16; off; off >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0)
        red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < nw; w++)
        sum += red[w];
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < Sk; j += blockDim.x)
        p[j] = from_f<T>(j < limit ? __expf(s[j] - mx) * inv : 0.0f);
}

/* Wide heads (the VAE's single 512-wide head over up to 16384 positions):
 * the scores of a block of queries are produced by one cuBLASLt product in
 * fp32, turned into probabilities, and multiplied into V by a second
 * product. Score blocks are capped at ATT_CHUNK_BYTES, so the full score
 * matrix (1 GiB at 1024x1024) never exists; on this shape the tensor-core
 * products run ~50x faster than the scalar kernel. */
#define ATT_CHUNK_BYTES (64u << 20)

template <typename T>
static sd_status chunked(sd_backend *be, T *o, const T *q, const T *k, const T *v, int B, int Sq, int Sk, int H,
                         int D, int HD, int causal, sd_error *err)
{
    int qc = (int)(ATT_CHUNK_BYTES / ((size_t)Sk * sizeof(float)));
    qc = qc < 1 ? 1 : qc > Sq ? Sq : qc;
    void *sbuf = NULL, *pbuf = NULL;
    SD_TRY(cuda_scratch(be, (size_t)qc * Sk * sizeof(float), &sbuf, err));
    sd_status st = cuda_scratch(be, (size_t)qc * Sk * sizeof(T), &pbuf, err);
    float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B && st == SD_OK; b++)
        for (int h = 0; h < H && st == SD_OK; h++) {
            const T *qb = q + (size_t)b * Sq * HD + (size_t)h * D;
            const T *kb = k + (size_t)b * Sk * HD + (size_t)h * D;
            const T *vb = v + (size_t)b * Sk * HD + (size_t)h * D;
            T *ob = o + (size_t)b * Sq * HD + (size_t)h * D;
            for (int q0 = 0; q0 < Sq && st == SD_OK; q0 += qc) {
                int n = Sq - q0 < qc ? Sq - q0 : qc;
                /* S (n x Sk, row-major) = Q K^T: col-major S^T (Sk x n) = K (Sk x D) Q^T */
                st = cuda_lt_matmul(be, 1, 0, Sk, n, D, kb, HD, 0, qb + (size_t)q0 * HD, HD, 0, sbuf, Sk, 0, 1, NULL,
                                    scale, 1, err);
                if (st != SD_OK)
                    break;
                softmax_rows_kernel<T><<<n, 256, 0, cuda_st(be)->stream>>>((T *)pbuf, (const float *)sbuf, Sk, q0,
                                                                          causal);
                cudaError_t e = cudaGetLastError();
                if (e != cudaSuccess) {
                    st = sd_fail(err, SD_ERR_BACKEND, "cuda: softmax: %s", cudaGetErrorString(e));
                    break;
                }
                /* O (n x D, row stride HD) = P V: col-major O^T (D x n) = V^T (D x Sk) P^T (Sk x n) */
                st = cuda_lt_matmul(be, 0, 0, D, n, Sk, vb, HD, 0, pbuf, Sk, 0, ob + (size_t)q0 * HD, HD, 0, 1, NULL,
                                    1.0f, 0, err);
            }
        }
    if (pbuf)
        cuda_scratch_free(be, pbuf);
    cuda_scratch_free(be, sbuf);
    return st;
}

/* The path for the shapes, in element type T: flash for 64-wide heads,
 * chunked GEMMs for wide heads (the VAE's 512), the generic kernel else and
 * for every masked attention (only CLIP's 77 tokens under compel's
 * down-weighting take it: too small for the fast paths to matter). */
template <typename T>
static sd_status attend(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                        const sd_tensor *key_mask, int B, int Sq, int Sk, int heads, int D, int HD, int causal,
                        sd_error *err)
{
    T *O = (T *)o->data;
    const T *Q = (const T *)q->data, *K = (const T *)k->data, *V = (const T *)v->data;
    if (key_mask)
        return generic(be, O, Q, K, V, (const T *)key_mask->data, B, Sq, Sk, heads, D, HD, causal, err);
    /* the tensor-core kernel takes 16-bit inputs; f32 (the upcast VAE,
     * --dtype f32) takes the scalar kernel at head size 64 */
    if constexpr (!std::is_same<T, float>::value) {
        if (D == FA_D && HD % 8 == 0)
            return flash64(be, O, Q, K, V, B, Sq, Sk, heads, HD, causal, err);
    }
    if (D >= 256 && D % 8 == 0 && HD % 8 == 0)
        return chunked(be, O, Q, K, V, B, Sq, Sk, heads, D, HD, causal, err);
    return generic(be, O, Q, K, V, (const T *)NULL, B, Sq, Sk, heads, D, HD, causal, err);
}

sd_status cuda_attention(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                         const sd_tensor *key_mask, int heads, int causal, sd_error *err)
{
    int B = (int)q->shape[0], Sq = (int)q->shape[1], Sk = (int)k->shape[1], HD = (int)q->shape[2];
    int D = HD / heads;
    if (D > 32 * GA_MAXR)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "attention: head size %d is over %d", D, 32 * GA_MAXR);
    sd_status st = CUDA_DISPATCH(be, attend, be, o, q, k, v, key_mask, B, Sq, Sk, heads, D, HD, causal, err);
    if (st != SD_OK)
        st = sd_error_prefix(err, st, "attention q[%d,%d,%d] k[%d,%d,%d] heads %d: ", B, Sq, HD, B, Sk, HD, heads);
    return st;
}
