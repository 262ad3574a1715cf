/* LLM.int8 weight quantization (bnb-format.md §4): row-wise absmax int8.
 *
 * Quantization (bnb Int8Params._quantize -> int8_vectorwise_quant):
 *   1. the weight is cast to float16 (round to nearest even), whatever its
 *      dtype;
 *   2. SCB[r] = max_j |W16[r, j]| (exact, stored as f32);
 *   3. q[r, j] = round_half_even(fl(W16[r, j] * fl(fl(1 / SCB[r]) * 127))).
 *   An all-zero row has SCB = 0 and codes 0 (bnb: 0 * inf = NaN -> 0).
 *   The scale is two roundings because bnb writes 127.0 / row_stats and
 *   torch evaluates a number over a tensor as tensor.reciprocal() * number
 *   (bnb-format.md §4.2 says one correctly rounded division: it decides
 *   products near k + 0.5, and the golden tiny_int8_fp16 has two such,
 *   tests/data/README.md).  bnb's CUDA kernel uses __fdividef, also a
 *   reciprocal then a multiply, with an approximate reciprocal that is not
 *   emulated.
 * Input that is NaN/inf, or overflows float16 (|w| >= 65520, which bnb turns
 * into inf and a garbage row), is rejected with an error naming the
 * element.
 *
 * Dequantization (int8_vectorwise_dequant):
 *   W[r, j] = fl(fl(q[r, j] * SCB[r]) * 0.007874016f)   (f32 3c010204). */
#ifndef SR_LLM_INT8_H
#define SR_LLM_INT8_H

#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

/* bnb's 1/127 constant of int8_vectorwise_dequant. */
#define SR_INT8_DEQUANT_SCALE 7.874015718698502e-3f

/* w: rows x cols of F32/F16/BF16 at any alignment; q[rows*cols], scb[rows]. */
int sr_int8_quantize(const void *w, sr_dtype dtype, int64_t rows, int64_t cols, int8_t *q,
                     float *scb, sr_error *err);

/* Rows [r0, r0 + nr) into out[nr * cols] (f32). */
void sr_int8_dequantize(const int8_t *q, const float *scb, int64_t r0, int64_t nr, int64_t cols,
                        float *out);

#endif
