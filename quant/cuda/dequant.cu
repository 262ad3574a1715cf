// Exact dequantization of sr_qmatrix rows on the device (bnb-format.md §1.4,
// §2.4, §4.2): the same element values as sr_qmatrix_dequant_rows, written
// as f32 or rounded to nearest even into bf16 / f16.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "quant/cuda/qelem.cuh"
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_check.cuh"

template <typename T> __device__ __forceinline__ T sr_store_as(float v);
template <> __device__ __forceinline__ float sr_store_as<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 sr_store_as<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half sr_store_as<__half>(float v)
{
    return __float2half_rn(v);
}

// Flat elements [e0, e0 + count) -> out[0 .. count).  Grid-stride loop.
template <typename T>
__global__ void sr_dequant_kernel(sr_qview w, int64_t e0, int64_t count, T *out)
{
    __shared__ float tab[16];
    sr_load_tab(w, tab);
    __syncthreads();
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        out[i] = sr_store_as<T>(sr_qelem(w, tab, e0 + i));
}

extern "C" int sr_cuda_dequant_rows(sr_cuda_ctx *c, const sr_qmatrix *w, int64_t r0, int64_t nr,
                                    sr_cuda_dtype out_type, void *out, sr_error *err)
{
    if (sr_cuda_qmatrix_check(w, "dequantize", err)) return -1;
    if (r0 < 0 || nr < 0 || r0 + nr > w->rows)
        return sr_fail(err, "cuda: dequantize: rows [%lld, +%lld) outside the %s matrix of %lld "
                       "rows", (long long)r0, (long long)nr, sr_wformat_name(w->fmt),
                       (long long)w->rows);
    if (!nr) return 0;
    if (!out) return sr_fail(err, "cuda: dequantize: no output buffer");
    const sr_qview v = sr_qview_of(w);
    const int64_t e0 = r0 * w->cols, count = nr * w->cols;
    const int threads = 256;
    const unsigned blocks = sr_cuda_blocks(count, threads);
    cudaStream_t s = (cudaStream_t)sr_cuda_ctx_enter(c);
    switch (out_type) {
    case SR_CUDA_F32:
        sr_dequant_kernel<float><<<blocks, threads, 0, s>>>(v, e0, count, (float *)out);
        break;
    case SR_CUDA_BF16:
        sr_dequant_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>(v, e0, count,
                                                                    (__nv_bfloat16 *)out);
        break;
    case SR_CUDA_F16:
        sr_dequant_kernel<__half><<<blocks, threads, 0, s>>>(v, e0, count, (__half *)out);
        break;
    default:
        return sr_fail(err, "cuda: dequantize: unknown output type %d", (int)out_type);
    }
    SR_CUDA_LAUNCHED(err, "sr_dequant_kernel");
    return 0;
}
