// Decode: Y = X·Wᵀ for n = 1..8 tokens with the dequantization fused into the
// dot products (no weight tile in memory).  One warp per output row: each
// lane reads 16-byte chunks of the row (32 4-bit, 16 int8, 8 bf16/f16 or 4
// f32 elements), dequantizes them in registers and multiplies them with the
// n activation vectors; a warp reduction gives the n outputs.  Every weight
// byte is read exactly once (streaming loads: they are not reused), the
// activations come from L1/L2.
#include <stdint.h>

#include "quant/cuda/qelem.cuh"
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_check.cuh"

namespace {

constexpr int kWarps = 8;           // output rows per block
constexpr int kMaxN = 8;            // tokens per call

__host__ __device__ constexpr int chunk_elems(int fmt)
{
    return fmt == SR_W_NF4 || fmt == SR_W_FP4 ? 32
         : fmt == SR_W_INT8                   ? 16
         : fmt == SR_W_F32                    ? 4
                                              : 8;   // bf16, f16
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// The K elements of one 16-byte chunk, exactly as sr_qelem computes them.
// `scale`: the block scale (4-bit) or SCB of the row (int8).
template <int FMT>
__device__ __forceinline__ void unpack(uint4 q, const float *tab, float scale, float *wv)
{
    const uint32_t word[4] = {q.x, q.y, q.z, q.w};
    if constexpr (FMT == SR_W_NF4 || FMT == SR_W_FP4) {
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const uint32_t byte = (word[i] >> (8 * b)) & 0xFFu;   // little-endian bytes
                wv[8 * i + 2 * b] = __fmul_rn(tab[byte >> 4], scale);       // even: high nibble
                wv[8 * i + 2 * b + 1] = __fmul_rn(tab[byte & 0xFu], scale);
            }
    } else if constexpr (FMT == SR_W_INT8) {
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const float qv = (float)(int8_t)((word[i] >> (8 * b)) & 0xFFu);
                wv[4 * i + b] = __fmul_rn(__fmul_rn(qv, scale), SR_INT8_DEQUANT_SCALE);
            }
    } else if constexpr (FMT == SR_W_BF16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            wv[2 * i] = sr_bf16_bits_to_f32(word[i] & 0xFFFFu);
            wv[2 * i + 1] = sr_bf16_bits_to_f32(word[i] >> 16);
        }
    } else if constexpr (FMT == SR_W_F16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            wv[2 * i] = sr_f16_bits_to_f32(word[i] & 0xFFFFu);
            wv[2 * i + 1] = sr_f16_bits_to_f32(word[i] >> 16);
        }
    } else {    // f32
#pragma unroll
        for (int i = 0; i < 4; i++) wv[i] = __uint_as_float(word[i]);
    }
}

// Vector path: cols % K == 0, 16-byte aligned data and activations, and for
// 4-bit a blocksize that is a multiple of 32 (a chunk never spans blocks).
template <int FMT>
__global__ void __launch_bounds__(kWarps * 32)
gemv_vec_kernel(sr_qview w, const float *__restrict__ x, int n, int64_t ldx,
                float *__restrict__ y, int64_t ldy)
{
    constexpr int K = chunk_elems(FMT);
    __shared__ float tab[16];
    sr_load_tab(w, tab);
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (r >= w.rows) return;
    const int64_t nchunk = w.cols / K;
    const uint4 *wrow = reinterpret_cast<const uint4 *>(w.data) + r * nchunk;
    float row_scb = 0.0f;
    if constexpr (FMT == SR_W_INT8) row_scb = w.scb[r];

    float acc[kMaxN];
#pragma unroll
    for (int c = 0; c < kMaxN; c++) acc[c] = 0.0f;
#pragma unroll 2
    for (int64_t ch = lane; ch < nchunk; ch += 32) {
        const uint4 q = __ldcs(wrow + ch);
        float scale = row_scb;
        if constexpr (FMT == SR_W_NF4 || FMT == SR_W_FP4)
            scale = w.scales[(r * w.cols + ch * K) / w.blocksize];
        float wv[K];
        unpack<FMT>(q, tab, scale, wv);
#pragma unroll
        for (int c = 0; c < kMaxN; c++) {
            if (c < n) {
                const float4 *xv = reinterpret_cast<const float4 *>(x + c * ldx + ch * K);
                float a = acc[c];
#pragma unroll
                for (int k = 0; k < K / 4; k++) {
                    const float4 t = __ldg(xv + k);
                    a += wv[4 * k] * t.x;
                    a += wv[4 * k + 1] * t.y;
                    a += wv[4 * k + 2] * t.z;
                    a += wv[4 * k + 3] * t.w;
                }
                acc[c] = a;
            }
        }
    }
#pragma unroll
    for (int c = 0; c < kMaxN; c++) {
        if (c < n) {
            const float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + r] = s;
        }
    }
}

// Any shape: element by element (odd column counts, rows starting mid-byte,
// blocks spanning rows, unaligned pointers).
__global__ void __launch_bounds__(kWarps * 32)
gemv_any_kernel(sr_qview w, const float *__restrict__ x, int n, int64_t ldx,
                float *__restrict__ y, int64_t ldy)
{
    __shared__ float tab[16];
    sr_load_tab(w, tab);
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (r >= w.rows) return;
    float acc[kMaxN];
#pragma unroll
    for (int c = 0; c < kMaxN; c++) acc[c] = 0.0f;
    for (int64_t j = lane; j < w.cols; j += 32) {
        const float wv = sr_qelem(w, tab, r * w.cols + j);
#pragma unroll
        for (int c = 0; c < kMaxN; c++)
            if (c < n) acc[c] += wv * x[c * ldx + j];
    }
#pragma unroll
    for (int c = 0; c < kMaxN; c++) {
        if (c < n) {
            const float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + r] = s;
        }
    }
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

bool vec_path_fits(const sr_qmatrix *w, const float *x, int64_t ldx)
{
    const int K = chunk_elems((int)w->fmt);
    if (w->cols % K || !aligned16(w->data) || !aligned16(x) || ldx % 4) return false;
    if (sr_wformat_is_4bit(w->fmt) && w->blocksize % 32) return false;
    return true;
}

}  // namespace

extern "C" int sr_cuda_matmul_decode(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x,
                                     int64_t n, int64_t ldx, float *y, int64_t ldy, sr_error *err)
{
    if (sr_cuda_qmatrix_check(w, "decode", err)) return -1;
    if (n < 1 || n > kMaxN)
        return sr_fail(err, "cuda: decode: %lld tokens (the fused GEMV takes 1..%d)",
                       (long long)n, kMaxN);
    if (!x || !y || ldx < w->cols || ldy < w->rows)
        return sr_fail(err, "cuda: decode: %s [%lld, %lld]: bad activations (ldx %lld, ldy %lld)",
                       sr_wformat_name(w->fmt), (long long)w->rows, (long long)w->cols,
                       (long long)ldx, (long long)ldy);
    const sr_qview v = sr_qview_of(w);
    const unsigned blocks = (unsigned)((w->rows + kWarps - 1) / kWarps);
    const int threads = kWarps * 32;
    cudaStream_t s = (cudaStream_t)sr_cuda_ctx_enter(c);
    const int nn = (int)n;
    if (!vec_path_fits(w, x, ldx)) {
        gemv_any_kernel<<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy);
        SR_CUDA_LAUNCHED(err, "gemv_any_kernel");
        return 0;
    }
    switch (w->fmt) {
    case SR_W_NF4: gemv_vec_kernel<SR_W_NF4><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    case SR_W_FP4: gemv_vec_kernel<SR_W_FP4><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    case SR_W_INT8: gemv_vec_kernel<SR_W_INT8><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    case SR_W_BF16: gemv_vec_kernel<SR_W_BF16><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    case SR_W_F16: gemv_vec_kernel<SR_W_F16><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    case SR_W_F32: gemv_vec_kernel<SR_W_F32><<<blocks, threads, 0, s>>>(v, x, nn, ldx, y, ldy); break;
    default: return sr_fail(err, "cuda: decode: unknown weight format %d", (int)w->fmt);
    }
    SR_CUDA_LAUNCHED(err, "gemv_vec_kernel");
    return 0;
}
