// Element-wise and row-wise forward kernels (see ops_cuda.h).  Each mirrors
// its CPU twin operation by operation; the _rn intrinsics keep nvcc from
// fusing a multiply and an add the CPU rounds separately.
#include <math.h>
#include <stdint.h>

#include "quant/cuda/qelem.cuh"
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_check.cuh"
#include "runtime/cuda/ops_cuda.h"

namespace {

constexpr int kThreads = 256;

#define SR_GRID_STRIDE(i, total)                                                         \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total);       \
         i += (int64_t)gridDim.x * blockDim.x)

template <typename V> __device__ __forceinline__ V warp_sum(V v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// One block per vector.
__global__ void rmsnorm_kernel(const float *x, int64_t ldx, int heads, int64_t hstride,
                               int64_t n, const float *__restrict__ w, float eps, float *out,
                               int64_t ldo)
{
    __shared__ double part[32];
    const int64_t t = blockIdx.x / heads, h = blockIdx.x % heads;
    const float *xr = x + t * ldx + h * hstride;
    float *o = out + t * ldo + h * hstride;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const double v = xr[j];
        ss += v * v;    // exact in double: a float squared has 48 significant bits
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();    // also: every read of x is done before out (maybe x) is written
    if (threadIdx.x < 32) {
        double v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0;
        v = warp_sum(v);
        if (threadIdx.x == 0) part[0] = v;
    }
    __syncthreads();
    const float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn((float)(part[0] / (double)n), eps)));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) o[j] = __fmul_rn(w[j], __fmul_rn(xr[j], r));
}

__global__ void rope_kernel(float *x, int64_t ldx, int T, int heads, int64_t hstride, int hd,
                            const float *__restrict__ inv_freq, const int32_t *__restrict__ pos)
{
    const int half = hd / 2;
    const int64_t total = (int64_t)T * heads * half;
    SR_GRID_STRIDE(i, total) {
        const int k = (int)(i % half);
        const int64_t th = i / half;
        const int64_t t = th / heads, h = th % heads;
        float *v = x + t * ldx + h * hstride;
        const float phi = __fmul_rn((float)pos[t], inv_freq[k]);
        float sn, cs;
        sincosf(phi, &sn, &cs);
        const float a = v[k], b = v[k + half];
        // q*cos + rotate_half(q)*sin, rotate_half = (-x2, x1)
        v[k] = __fadd_rn(__fmul_rn(a, cs), __fmul_rn(-b, sn));
        v[k + half] = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
    }
}

__global__ void kv_append_kernel(const float *__restrict__ k, const float *__restrict__ v,
                                 int64_t ld, int T, int nkv, int hd, float *__restrict__ kc,
                                 float *__restrict__ vc, int64_t ctx, int64_t p0)
{
    const int64_t total = (int64_t)T * nkv * hd;
    SR_GRID_STRIDE(i, total) {
        const int64_t d = i % hd, tg = i / hd, t = tg / nkv, g = tg % nkv;
        const int64_t src = t * ld + g * hd + d, dst = (g * ctx + p0 + t) * hd + d;
        kc[dst] = k[src];
        vc[dst] = v[src];
    }
}

__global__ void swiglu_kernel(const float *__restrict__ gu, int64_t ldgu, int T, int64_t I,
                              float *__restrict__ act, int64_t ldact)
{
    const int64_t total = (int64_t)T * I;
    SR_GRID_STRIDE(i, total) {
        const int64_t t = i / I, j = i % I;
        const float g = gu[t * ldgu + j], u = gu[t * ldgu + I + j];
        act[t * ldact + j] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
    }
}

__global__ void residual_kernel(float *__restrict__ x, const float *__restrict__ y, int64_t total,
                                float mult)
{
    SR_GRID_STRIDE(i, total) x[i] = __fadd_rn(x[i], __fmul_rn(y[i], mult));
}

__global__ void bias_kernel(float *__restrict__ y, int64_t ldy, int T, int64_t n,
                            const float *__restrict__ bias)
{
    const int64_t total = (int64_t)T * n;
    SR_GRID_STRIDE(i, total) {
        const int64_t t = i / n, j = i % n;
        y[t * ldy + j] = __fadd_rn(y[t * ldy + j], bias[j]);
    }
}

__global__ void embed_kernel(sr_qview e, const int32_t *__restrict__ ids, int T, float mult,
                             float *__restrict__ x)
{
    __shared__ float tab[16];
    sr_load_tab(e, tab);
    __syncthreads();
    const int64_t H = e.cols, total = (int64_t)T * H;
    SR_GRID_STRIDE(i, total) {
        const int64_t t = i / H, j = i % H;
        const int64_t id = ids[t];
        x[i] = id >= 0 && id < e.rows ? __fmul_rn(sr_qelem(e, tab, id * H + j), mult)
                                     : __int_as_float(0x7fc00000);   // NaN: visible downstream
    }
}

__global__ void scale_div_kernel(float *__restrict__ y, int64_t ldy, int T, int64_t n, float s)
{
    const int64_t total = (int64_t)T * n;
    SR_GRID_STRIDE(i, total) {
        const int64_t t = i / n, j = i % n;
        y[t * ldy + j] = __fdiv_rn(y[t * ldy + j], s);
    }
}

// The better of two candidates: larger value, then lower index; index -1 = none.
__device__ __forceinline__ void arg_better(float &bv, int64_t &bi, float v, int64_t i)
{
    if (i < 0) return;
    if (bi < 0 || v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

// One block per row.
__global__ void argmax_kernel(const float *__restrict__ logits, int64_t ld, int64_t n,
                              int64_t *__restrict__ out)
{
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    const float *row = logits + (int64_t)blockIdx.x * ld;
    float bv = 0.0f;
    int64_t bi = -1;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float v = row[j];
        if (isfinite(v) && (bi < 0 || v > bv)) {
            bv = v;
            bi = j;
        }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        arg_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off),
                   __shfl_xor_sync(0xffffffffu, bi, off));
    if ((threadIdx.x & 31) == 0) {
        sv[threadIdx.x >> 5] = bv;
        si[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned w = 1; w < (blockDim.x >> 5); w++) arg_better(bv, bi, sv[w], si[w]);
        out[blockIdx.x] = bi;
    }
}

bool bad_grid(int T, int64_t n) { return T < 0 || n < 0; }

}  // namespace

extern "C" int sr_cuda_rmsnorm(sr_cuda_ctx *c, const float *x, int64_t ldx, int T, int heads,
                               int64_t hstride, int64_t n, const float *w, float eps, float *out,
                               int64_t ldo, sr_error *err)
{
    if (bad_grid(T, n) || heads < 1 || n < 1 || !x || !w || !out)
        return sr_fail(err, "cuda: rmsnorm: bad arguments (T %d, heads %d, n %lld)", T, heads,
                       (long long)n);
    if (!T) return 0;
    cudaStream_t s = (cudaStream_t)sr_cuda_ctx_enter(c);
    const int threads = n >= 1024 ? 256 : n >= 256 ? 128 : 64;
    rmsnorm_kernel<<<(unsigned)((int64_t)T * heads), threads, 0, s>>>(x, ldx, heads, hstride, n,
                                                                      w, eps, out, ldo);
    SR_CUDA_LAUNCHED(err, "rmsnorm_kernel");
    return 0;
}

extern "C" int sr_cuda_rope(sr_cuda_ctx *c, float *x, int64_t ldx, int T, int heads,
                            int64_t hstride, int hd, const float *inv_freq, const int32_t *pos,
                            sr_error *err)
{
    if (T < 0 || heads < 1 || hd < 2 || hd % 2 || !x || !inv_freq || !pos)
        return sr_fail(err, "cuda: rope: bad arguments (T %d, heads %d, head_dim %d)", T, heads,
                       hd);
    if (!T) return 0;
    const int64_t total = (int64_t)T * heads * (hd / 2);
    rope_kernel<<<sr_cuda_blocks(total, kThreads), kThreads, 0,
                  (cudaStream_t)sr_cuda_ctx_enter(c)>>>(x, ldx, T, heads, hstride, hd, inv_freq,
                                                         pos);
    SR_CUDA_LAUNCHED(err, "rope_kernel");
    return 0;
}

extern "C" int sr_cuda_kv_append(sr_cuda_ctx *c, const float *k, const float *v, int64_t ld,
                                 int T, int nkv, int hd, float *kc, float *vc, int64_t ctx,
                                 int64_t p0, sr_error *err)
{
    if (T < 0 || nkv < 1 || hd < 1 || !k || !v || !kc || !vc)
        return sr_fail(err, "cuda: kv append: bad arguments (T %d, kv heads %d, head_dim %d)", T,
                       nkv, hd);
    if (p0 < 0 || p0 + T > ctx)
        return sr_fail(err, "cuda: kv append: positions %lld..%lld outside the cache of %lld",
                       (long long)p0, (long long)(p0 + T), (long long)ctx);
    if (!T) return 0;
    const int64_t total = (int64_t)T * nkv * hd;
    kv_append_kernel<<<sr_cuda_blocks(total, kThreads), kThreads, 0,
                       (cudaStream_t)sr_cuda_ctx_enter(c)>>>(k, v, ld, T, nkv, hd, kc, vc, ctx,
                                                              p0);
    SR_CUDA_LAUNCHED(err, "kv_append_kernel");
    return 0;
}

extern "C" int sr_cuda_swiglu(sr_cuda_ctx *c, const float *gu, int64_t ldgu, int T, int64_t I,
                              float *act, int64_t ldact, sr_error *err)
{
    if (bad_grid(T, I) || !gu || !act || ldgu < 2 * I || ldact < I)
        return sr_fail(err, "cuda: swiglu: bad arguments (T %d, width %lld)", T, (long long)I);
    if (!T || !I) return 0;
    swiglu_kernel<<<sr_cuda_blocks((int64_t)T * I, kThreads), kThreads, 0,
                    (cudaStream_t)sr_cuda_ctx_enter(c)>>>(gu, ldgu, T, I, act, ldact);
    SR_CUDA_LAUNCHED(err, "swiglu_kernel");
    return 0;
}

extern "C" int sr_cuda_residual_add(sr_cuda_ctx *c, float *x, const float *y, int T, int64_t n,
                                    float mult, sr_error *err)
{
    if (bad_grid(T, n) || !x || !y)
        return sr_fail(err, "cuda: residual: bad arguments (T %d, width %lld)", T, (long long)n);
    const int64_t total = (int64_t)T * n;
    if (!total) return 0;
    residual_kernel<<<sr_cuda_blocks(total, kThreads), kThreads, 0,
                      (cudaStream_t)sr_cuda_ctx_enter(c)>>>(x, y, total, mult);
    SR_CUDA_LAUNCHED(err, "residual_kernel");
    return 0;
}

extern "C" int sr_cuda_bias_add(sr_cuda_ctx *c, float *y, int64_t ldy, int T, int64_t n,
                                const float *bias, sr_error *err)
{
    if (bad_grid(T, n) || !y || !bias || ldy < n)
        return sr_fail(err, "cuda: bias: bad arguments (T %d, width %lld)", T, (long long)n);
    if (!T || !n) return 0;
    bias_kernel<<<sr_cuda_blocks((int64_t)T * n, kThreads), kThreads, 0,
                  (cudaStream_t)sr_cuda_ctx_enter(c)>>>(y, ldy, T, n, bias);
    SR_CUDA_LAUNCHED(err, "bias_kernel");
    return 0;
}

extern "C" int sr_cuda_embed(sr_cuda_ctx *c, const sr_qmatrix *emb, const int32_t *ids, int T,
                             float mult, float *x, sr_error *err)
{
    if (sr_cuda_qmatrix_check(emb, "embedding", err)) return -1;
    if (T < 0 || !ids || !x) return sr_fail(err, "cuda: embedding: bad arguments (T %d)", T);
    if (!T) return 0;
    const sr_qview e = sr_qview_of(emb);
    embed_kernel<<<sr_cuda_blocks((int64_t)T * emb->cols, kThreads), kThreads, 0,
                   (cudaStream_t)sr_cuda_ctx_enter(c)>>>(e, ids, T, mult, x);
    SR_CUDA_LAUNCHED(err, "embed_kernel");
    return 0;
}

extern "C" int sr_cuda_scale_div(sr_cuda_ctx *c, float *y, int64_t ldy, int T, int64_t n, float s,
                                 sr_error *err)
{
    if (bad_grid(T, n) || !y || ldy < n)
        return sr_fail(err, "cuda: logits scaling: bad arguments (T %d, width %lld)", T,
                       (long long)n);
    if (!T || !n) return 0;
    scale_div_kernel<<<sr_cuda_blocks((int64_t)T * n, kThreads), kThreads, 0,
                       (cudaStream_t)sr_cuda_ctx_enter(c)>>>(y, ldy, T, n, s);
    SR_CUDA_LAUNCHED(err, "scale_div_kernel");
    return 0;
}

extern "C" int sr_cuda_argmax(sr_cuda_ctx *c, const float *logits, int64_t ld, int T, int64_t n,
                              int64_t *out, sr_error *err)
{
    if (bad_grid(T, n) || !logits || !out || (T > 1 && ld < n))
        return sr_fail(err, "cuda: argmax: bad arguments (T %d, width %lld)", T, (long long)n);
    if (!T) return 0;
    argmax_kernel<<<(unsigned)T, kThreads, 0, (cudaStream_t)sr_cuda_ctx_enter(c)>>>(logits, ld, n,
                                                                                    out);
    SR_CUDA_LAUNCHED(err, "argmax_kernel");
    return 0;
}
