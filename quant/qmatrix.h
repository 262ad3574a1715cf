/* A weight matrix in any storage format strata computes with.
 *
 * Logical shape is [rows = out_features, cols = in_features], row-major, as
 * a torch Linear weight.  The matmul kernels (quant/matmul.h) take this
 * descriptor; loaders build it from checkpoint tensors without copying the
 * weight bytes (they point into the mapping). */
#ifndef SR_QMATRIX_H
#define SR_QMATRIX_H

#include <stdint.h>

#include "runtime/error.h"

typedef enum sr_wformat {
    SR_W_F32,
    SR_W_BF16,
    SR_W_F16,
    SR_W_NF4,       /* bnb 4-bit, flat row-major nibbles, high nibble first */
    SR_W_FP4,
    SR_W_INT8,      /* LLM.int8: int8 codes row-major, per-row SCB */
    SR_W_FORMAT_COUNT
} sr_wformat;

typedef struct sr_qmatrix {
    sr_wformat fmt;
    int64_t rows, cols;
    const void *data;       /* f32/bf16/f16 elements, packed nibbles, or int8 codes */
    /* 4-bit: f32 scale per block of `blocksize` flat elements (for double
     * quantization these are the reconstructed scales of bnb-format §2.4,
     * computed once at load: bit-exact with bnb's dequantization). */
    int blocksize;
    const float *scales;
    /* int8: per-row absmax (SCB). */
    const float *scb;
    /* Owned buffers (freed by sr_qmatrix_free), e.g. reconstructed scales. */
    void *owned[2];
    /* Optional: the same weights re-laid in 16-row tiles (quant/qtile.h),
     * derived at load for a model that runs on the CPU (4-bit and LLM.int8
     * for the opt-in int8 kernels, bf16 for the exact ones); NULL otherwise.
     * Owned when tile_buf is set. */
    const uint8_t *tiles;
    const float *tile_row_scale; /* 16 per tile; NULL for bf16 */
    void *tile_buf;
} sr_qmatrix;

const char *sr_wformat_name(sr_wformat f);
/* Bytes a kernel reads for the whole matrix (weights + scales): what the
 * planner and the bandwidth benchmarks count. */
uint64_t sr_qmatrix_bytes(const sr_qmatrix *w);
/* Of those, the bytes `data` points at (elements, packed nibbles or codes). */
uint64_t sr_qmatrix_data_bytes(const sr_qmatrix *w);
void sr_qmatrix_free(sr_qmatrix *w);
/* A descriptor of the same stored bytes that owns nothing and carries no
 * CPU-side derived layout (tiles): what a copy of the matrix onto another
 * tier or device starts from before it points data and scales there. */
sr_qmatrix sr_qmatrix_borrow(const sr_qmatrix *w);

/* Exact dequantization of rows [r0, r0+nr) into out[nr * cols] (f32). */
void sr_qmatrix_dequant_rows(const sr_qmatrix *w, int64_t r0, int64_t nr, float *out);

#endif
