// Prefill: Y = X·Wᵀ for any number of tokens through cuBLAS.  The weight is
// dequantized tile by tile (a band of rows at a time) into scratch in the
// compute type; float weights already in that type are used in place.
//
// cuBLAS is column-major: the row-major Y[n][ldy] is the column-major
// Yᵀ (rows × n, ld ldy), W's row-major tile [tr][cols] is a column-major
// cols × tr matrix taken transposed, X[n][ldx] a column-major cols × n:
//     Yᵀ[r0 : r0+tr, :] = op_T(tile) · X  ->  GemmEx(T, N, m = tr, n, k = cols).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_check.cuh"

namespace {

// Bytes of one dequantized tile: large enough for full-rate GEMMs, small
// next to the weights of one layer.  STRATA_CUDA_TILE_BYTES overrides it
// (tests use small tiles to run the multi-tile path on small matrices).
size_t tile_bytes()
{
    const char *s = getenv("STRATA_CUDA_TILE_BYTES");
    if (s && *s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*end && v > 0) return (size_t)v;
    }
    return (size_t)64 << 20;
}

__device__ __forceinline__ void store16(__half *o, float v) { *o = __float2half_rn(v); }
__device__ __forceinline__ void store16(__nv_bfloat16 *o, float v) { *o = __float2bfloat16_rn(v); }

// Activations rounded to nearest even into 16 bits, packed (ld = cols).
template <typename T>
__global__ void to_half_kernel(const float *__restrict__ x, int64_t ldx, int64_t n, int64_t cols,
                               T *__restrict__ out)
{
    const int64_t total = n * cols, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int64_t t = i / cols, j = i - t * cols;
        store16(out + i, x[t * ldx + j]);
    }
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

}  // namespace

extern "C" int sr_cuda_matmul_prefill(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x,
                                      int64_t n, int64_t ldx, float *y, int64_t ldy,
                                      sr_cuda_dtype compute, sr_error *err)
{
    if (sr_cuda_qmatrix_check(w, "prefill", err)) return -1;
    if (n < 1 || !fits_int(n) || !x || !y || ldx < w->cols || ldy < w->rows || !fits_int(ldx) ||
        !fits_int(ldy))
        return sr_fail(err, "cuda: prefill: %s [%lld, %lld]: bad activations (%lld tokens, "
                       "ldx %lld, ldy %lld)", sr_wformat_name(w->fmt), (long long)w->rows,
                       (long long)w->cols, (long long)n, (long long)ldx, (long long)ldy);
    if (compute != SR_CUDA_F32 && compute != SR_CUDA_BF16 && compute != SR_CUDA_F16)
        return sr_fail(err, "cuda: prefill: unknown compute type %d", (int)compute);

    cudaStream_t s = (cudaStream_t)sr_cuda_ctx_enter(c);
    cublasHandle_t h = (cublasHandle_t)sr_cuda_ctx_cublas(c);
    const int64_t rows = w->rows, cols = w->cols;
    const size_t elt = compute == SR_CUDA_F32 ? 4 : 2;
    const cudaDataType ab_type = compute == SR_CUDA_F32  ? CUDA_R_32F
                               : compute == SR_CUDA_BF16 ? CUDA_R_16BF
                                                         : CUDA_R_16F;

    // B operand: the activations, in place (f32) or converted to 16 bits.
    const void *b = x;
    int64_t ldb = ldx;
    if (compute != SR_CUDA_F32) {
        void *xs;
        if (sr_cuda_ctx_scratch(c, SR_CUDA_SCRATCH_XCONV, (size_t)(n * cols) * 2, &xs, err))
            return sr_fail_prefix(err, "cuda: prefill: activations");
        const unsigned blocks = sr_cuda_blocks(n * cols, 256);
        if (compute == SR_CUDA_BF16)
            to_half_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(x, ldx, n, cols,
                                                                 (__nv_bfloat16 *)xs);
        else
            to_half_kernel<__half><<<blocks, 256, 0, s>>>(x, ldx, n, cols, (__half *)xs);
        SR_CUDA_LAUNCHED(err, "to_half_kernel");
        b = xs;
        ldb = cols;
    }

    // A operand: the weight itself when it is stored in the compute type.
    const bool in_place = (compute == SR_CUDA_F32 && w->fmt == SR_W_F32) ||
                          (compute == SR_CUDA_BF16 && w->fmt == SR_W_BF16) ||
                          (compute == SR_CUDA_F16 && w->fmt == SR_W_F16);
    int64_t tile_rows = rows;
    void *tile = NULL;
    if (!in_place) {
        tile_rows = (int64_t)(tile_bytes() / ((size_t)cols * elt));
        if (tile_rows > 64) tile_rows -= tile_rows % 64;
        if (tile_rows < 1) tile_rows = 1;
        if (tile_rows > rows) tile_rows = rows;
        if (sr_cuda_ctx_scratch(c, SR_CUDA_SCRATCH_TILE, (size_t)(tile_rows * cols) * elt, &tile,
                                err))
            return sr_fail_prefix(err, "cuda: prefill: weight tile");
    }
    const float alpha = 1.0f, beta = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
        const int64_t tr = rows - r0 < tile_rows ? rows - r0 : tile_rows;
        const void *a;
        if (in_place) {
            a = (const char *)w->data + (size_t)(r0 * cols) * elt;
        } else {
            if (sr_cuda_dequant_rows(c, w, r0, tr, compute, tile, err))
                return sr_fail_prefix(err, "cuda: prefill: rows %lld..%lld", (long long)r0,
                                      (long long)(r0 + tr));
            a = tile;
        }
        SR_CUBLAS_TRY(err, cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)tr, (int)n, (int)cols,
                                        &alpha, a, ab_type, (int)cols, b, ab_type, (int)ldb,
                                        &beta, y + r0, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
    }
    return 0;
}

extern "C" int sr_cuda_matmul(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x, int64_t n,
                              int64_t ldx, float *y, int64_t ldy, sr_cuda_dtype prefill_compute,
                              sr_error *err)
{
    if (n >= 1 && n <= 8) return sr_cuda_matmul_decode(c, w, x, n, ldx, y, ldy, err);
    return sr_cuda_matmul_prefill(c, w, x, n, ldx, y, ldy, prefill_compute, err);
}
