// Attention kernel (see attention_cuda.h).
#include <math.h>

#include "runtime/cuda/attention_cuda.h"
#include "runtime/cuda/cuda_check.cuh"

namespace {

constexpr int kWarps = 8;                           // key streams per (query, head)
constexpr int kDimsPerLane = SR_CUDA_ATTN_MAX_HD / 32;

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Lane `lane` holds head dims d = lane + 32u (u < kDimsPerLane, d < hd).
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(sr_attn_args a)
{
    extern __shared__ float sh[];   // [kWarps] max, [kWarps] sum, [kWarps][hd] outputs
    const int i = blockIdx.x, h = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int hd = a.hd, g = h / (a.nh / a.nkv);
    const int64_t n_keys = a.p0 + i + 1;
    const float *q = a.q + (int64_t)i * a.ldq + (int64_t)h * hd;
    const float *k = (const float *)a.k + g * a.head_stride;
    const float *v = (const float *)a.v + g * a.head_stride;
    const uint32_t sup = a.qsup && a.key_mem ? a.qsup[i] : 0u;

    float qr[kDimsPerLane], o[kDimsPerLane];
#pragma unroll
    for (int u = 0; u < kDimsPerLane; u++) {
        const int d = lane + 32 * u;
        qr[u] = d < hd ? q[d] : 0.0f;
        o[u] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = warp; j < n_keys; j += kWarps) {
        if (sup && (a.key_mem[j] & sup)) continue;     // hidden: exactly zero weight
        const float *kj = k + j * hd, *vj = v + j * hd;
        float part = 0.0f;
#pragma unroll
        for (int u = 0; u < kDimsPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < hd) part += qr[u] * kj[d];
        }
        const float s = warp_sum(part) * a.scale;
        float keep, p;                  // weight of what was summed so far, of this key
        if (s > m) {
            keep = expf(m - s);         // 0 for the first key (m = -inf)
            p = 1.0f;
            m = s;
        } else {
            keep = 1.0f;
            p = expf(s - m);
        }
        l = l * keep + p;
#pragma unroll
        for (int u = 0; u < kDimsPerLane; u++) {
            const int d = lane + 32 * u;
            if (d < hd) o[u] = o[u] * keep + p * vj[d];
        }
    }

    float *wm = sh, *wl = sh + kWarps, *wo = sh + 2 * kWarps;
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int u = 0; u < kDimsPerLane; u++) {
        const int d = lane + 32 * u;
        if (d < hd) wo[warp * hd + d] = o[u];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < kWarps; w++)
        if (wl[w] > 0.0f && wm[w] > M) M = wm[w];
    float *out = a.out + (int64_t)i * a.ldo + (int64_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float L = 0.0f, O = 0.0f;
        for (int w = 0; w < kWarps; w++) {
            if (!(wl[w] > 0.0f)) continue;     // this warp saw no visible key
            const float f = expf(wm[w] - M);
            L += wl[w] * f;
            O += wo[w * hd + d] * f;
        }
        out[d] = O / L;
    }
}

}  // namespace

extern "C" int sr_cuda_attention(sr_cuda_ctx *c, const sr_attn_args *a, sr_error *err)
{
    if (!a || a->nh < 1 || a->nkv < 1 || a->nh % a->nkv || a->hd < 1 ||
        a->hd > SR_CUDA_ATTN_MAX_HD || a->T < 0 || a->p0 < 0 || a->nh > 65535)
        return sr_fail(err, "cuda: attention: unsupported geometry (heads %d, kv heads %d, "
                       "head_dim %d <= %d, T %d, p0 %lld)", a ? a->nh : 0, a ? a->nkv : 0,
                       a ? a->hd : 0, SR_CUDA_ATTN_MAX_HD, a ? a->T : 0,
                       a ? (long long)a->p0 : 0LL);
    if (a->kv_type != SR_KV_F32)
        return sr_fail(err, "cuda: attention: a %s KV cache is not supported on CUDA (f32 only)",
                       sr_kv_type_name(a->kv_type));
    if (!a->T) return 0;
    if (!a->q || !a->k || !a->v || !a->out || a->head_stride < (a->p0 + a->T) * a->hd ||
        a->ldq < (int64_t)a->nh * a->hd || a->ldo < (int64_t)a->nh * a->hd)
        return sr_fail(err, "cuda: attention: bad buffers (head stride %lld for %lld keys, "
                       "ldq %lld, ldo %lld)", (long long)a->head_stride,
                       (long long)(a->p0 + a->T), (long long)a->ldq, (long long)a->ldo);
    const dim3 grid((unsigned)a->T, (unsigned)a->nh);
    const size_t shmem = sizeof(float) * (size_t)(2 * kWarps + kWarps * a->hd);
    attention_kernel<<<grid, kWarps * 32, shmem, (cudaStream_t)sr_cuda_ctx_enter(c)>>>(*a);
    SR_CUDA_LAUNCHED(err, "attention_kernel");
    return 0;
}
