// Device-side view of an sr_qmatrix and its exact element dequantization
// (C++/CUDA only).  Shared by the dequantize, GEMV and embedding kernels so
// that every path computes an element the same way as quant/qmatrix.c:
//   4-bit: fl(table[nibble] * scale[j / blocksize]), high nibble = even j
//   int8:  fl(fl(q * SCB[row]) * f32(1/127))
//   bf16 / f16 / f32: exact widening.
// The explicit _rn intrinsics keep nvcc from contracting these products
// into FMAs, which would change the rounding.
#ifndef SR_QELEM_CUH
#define SR_QELEM_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

extern "C" {
#include "quant/matmul_kernels.h"
#include "quant/qmatrix.h"
}

struct sr_qview {
    int fmt;
    int blocksize;
    int64_t rows, cols;
    const void *data;
    const float *scales;
    const float *scb;
    float tab[16];          // 4-bit code values (unused otherwise)
};

// Host side: the view of a device descriptor (already checked).
static inline sr_qview sr_qview_of(const sr_qmatrix *w)
{
    sr_qview v;
    v.fmt = (int)w->fmt;
    v.blocksize = w->blocksize;
    v.rows = w->rows;
    v.cols = w->cols;
    v.data = w->data;
    v.scales = w->scales;
    v.scb = w->scb;
    const float *t = sr_wformat_is_4bit(w->fmt) ? sr_q4_table(w->fmt) : NULL;
    for (int i = 0; i < 16; i++) v.tab[i] = t ? t[i] : 0.0f;
    return v;
}

__device__ __forceinline__ float sr_bf16_bits_to_f32(uint32_t h)
{
    return __uint_as_float(h << 16);
}

__device__ __forceinline__ float sr_f16_bits_to_f32(uint32_t h)
{
    return __half2float(__ushort_as_half((unsigned short)h));
}

// Copies the 4-bit table into shared memory `tab` (call __syncthreads()
// after).  Compile-time indices only: a run-time index into a kernel
// parameter would copy the whole view to local memory.
__device__ __forceinline__ void sr_load_tab(const sr_qview &w, float *tab)
{
    if (threadIdx.x == 0) {
#pragma unroll
        for (int i = 0; i < 16; i++) tab[i] = w.tab[i];
    }
}

// Exact element j (flat row-major index) of w; `tab` is the 4-bit table
// (shared memory or the view's own copy).
__device__ __forceinline__ float sr_qelem(const sr_qview &w, const float *tab, int64_t j)
{
    switch (w.fmt) {
    case SR_W_F32:
        return ((const float *)w.data)[j];
    case SR_W_BF16:
        return sr_bf16_bits_to_f32(((const uint16_t *)w.data)[j]);
    case SR_W_F16:
        return sr_f16_bits_to_f32(((const uint16_t *)w.data)[j]);
    case SR_W_NF4:
    case SR_W_FP4: {
        uint32_t b = ((const uint8_t *)w.data)[j >> 1];
        uint32_t nib = (j & 1) ? (b & 0xFu) : (b >> 4);
        return __fmul_rn(tab[nib], w.scales[j / w.blocksize]);
    }
    case SR_W_INT8: {
        int64_t r = j / w.cols;
        float q = (float)((const int8_t *)w.data)[j];
        return __fmul_rn(__fmul_rn(q, w.scb[r]), SR_INT8_DEQUANT_SCALE);
    }
    default:
        return 0.0f;
    }
}

#endif
