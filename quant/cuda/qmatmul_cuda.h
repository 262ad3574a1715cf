/* The CUDA kernels over bitsandbytes / float weights (sr_qmatrix).
 *
 * A device sr_qmatrix is the same descriptor as on the host with `data`,
 * `scales` and `scb` pointing to device memory (sr_cuda_qmatrix_upload makes
 * one; the offload manager may build its own over device buffers).
 *
 *   dequant   exact dequantization (bnb-format.md §1.4, §2.4 via the f32
 *             scales the descriptor holds, §4.2) into f32, or rounded to
 *             nearest even into bf16 / f16, bit-identical to the CPU.
 *   decode    Y = X·Wᵀ for n = 1..8 tokens: fused dequantize + GEMV, one warp
 *             per output row, 16-byte weight loads, the 16-entry 4-bit table
 *             in shared memory, one scale per 32-element chunk; every weight
 *             byte is read once.  Shapes the vector path cannot take (odd
 *             column counts, unaligned data) run an element-wise path.
 *   prefill   dequantize row tiles into scratch, then cublasGemmEx with f32
 *             accumulation.  compute = f32: the tile is exact f32 (results
 *             differ from the CPU only by summation order); bf16 / f16: tile
 *             and activations rounded to 16 bits (what bnb + transformers do
 *             on a GPU), tensor cores.  Tiles are 64 MiB
             (STRATA_CUDA_TILE_BYTES overrides, for tests).
 *
 * X and Y are token-major, as in quant/matmul.h: X n rows of `cols` floats
 * (stride ldx), Y n rows of `rows` floats (stride ldy >= rows).  Everything
 * is enqueued on the context's stream. */
#ifndef SR_QMATMUL_CUDA_H
#define SR_QMATMUL_CUDA_H

#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "quant/qmatrix.h"
#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"

typedef enum sr_cuda_dtype { SR_CUDA_F32, SR_CUDA_BF16, SR_CUDA_F16 } sr_cuda_dtype;

const char *sr_cuda_dtype_name(sr_cuda_dtype t);

/* Checks a device descriptor before a kernel reads it (format, shape,
 * pointers); `what` names the matrix in the message. */
int sr_cuda_qmatrix_check(const sr_qmatrix *w, const char *what, sr_error *err);

/* Device copy of a host matrix (weights, scales, SCB).  dev->owned stays
 * NULL: free with sr_cuda_qmatrix_free, never sr_qmatrix_free. */
int sr_cuda_qmatrix_upload(const sr_qmatrix *host, sr_qmatrix *dev, sr_error *err);
void sr_cuda_qmatrix_free(sr_qmatrix *dev);

/* Rows [r0, r0+nr) of w into out[nr * cols] of type `out_type`. */
int sr_cuda_dequant_rows(sr_cuda_ctx *c, const sr_qmatrix *w, int64_t r0, int64_t nr,
                         sr_cuda_dtype out_type, void *out, sr_error *err);

/* Fused dequantize + GEMV, n = 1..8. */
int sr_cuda_matmul_decode(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x, int64_t n,
                          int64_t ldx, float *y, int64_t ldy, sr_error *err);
/* Dequantized tiles + cuBLAS, any n >= 1. */
int sr_cuda_matmul_prefill(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x, int64_t n,
                           int64_t ldx, float *y, int64_t ldy, sr_cuda_dtype compute,
                           sr_error *err);
/* n <= 8: decode, else prefill with `prefill_compute`. */
int sr_cuda_matmul(sr_cuda_ctx *c, const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
                   float *y, int64_t ldy, sr_cuda_dtype prefill_compute, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
