/* bitsandbytes 8-bit blockwise quantization with a 256-entry map, and the
 * double quantization of 4-bit absmax built on it (bnb-format.md §2).
 *
 * 8-bit code selection (§2.3), with A = max |x| over the block:
 *   SR_RULES_CUDA: y = fl(x * fl(1/A)) (correctly rounded reciprocal), code =
 *     nearest map entry, a value exactly on an f32 midpoint
 *     fl(fl(c[k] + c[k+1]) * 0.5) goes to the even index (what bnb's
 *     dQuantize<0> binary search yields); A = 0 gives NaN -> code 0.
 *   SR_RULES_CPU (bnb >= 0.50 native CPU kernel): A = 0 -> all codes 0;
 *     otherwise y = clamp(fl(x * fl(1/A)), -1, 1) and the 65536-bin lookup
 *     table of bnb's quantize_cpu_impl (an approximation of nearest).
 * The stored absmax is the raw A in both cases.
 *
 * Double quantization (§2.1): offset = mean(absmax), d = fl(absmax - offset),
 * 8-bit blockwise quantization of d with blocksize 256 and the dynamic map.
 * Reconstruction (§2.4), in this order and never fused:
 *     scale[b] = fl(fl(map[qabs[b]] * nested_absmax[b / nested_bs]) + offset)
 *
 * The map must be sorted ascending for quantization (dequantization takes
 * any map: loaders pass the checkpoint's stored nested_quant_map). */
#ifndef SR_BLOCKWISE8_H
#define SR_BLOCKWISE8_H

#include <stdint.h>

#include "quant/bnb4.h"
#include "runtime/error.h"

/* bnb's nested blocksize for double quantization. */
#define SR_DQ_BLOCKSIZE 256

/* Quantizes n f32 values in blocks of `blocksize` (> 0) to codes[n] and
 * absmax[ceil(n/blocksize)].  Non-finite input is an error naming the
 * element, as for 4 bit. */
int sr_q8_quantize(const float *x, int64_t n, int64_t blocksize, const float map[256],
                   sr_bnb_rules rules, uint8_t *codes, float *absmax, sr_error *err);

/* out[j] = fl(map[codes[j]] * absmax[j / blocksize]). */
void sr_q8_dequantize(const uint8_t *codes, const float *absmax, int64_t n, int64_t blocksize,
                      const float map[256], float *out);

/* The code of one normalised value under the CUDA rule (exact nearest, ties
 * to the even index, NaN -> 0). */
uint8_t sr_q8_code_cuda(const float map[256], float y);

/* Default double-quantization offset: mean of absmax[0..nb) summed in
 * double, rounded to f32 (bnb's torch mean may differ by 1-2 ulp; the
 * offset is stored, so any of these is valid).  0 for nb = 0. */
float sr_dq_offset(const float *absmax, int64_t nb);

/* Double quantization of the 4-bit absmax[nb] with a given offset: qabs[nb]
 * codes and nested_absmax[ceil(nb/256)].  Pass sr_dq_offset(...) or a
 * stored offset (to reproduce an existing checkpoint bit for bit). */
int sr_dq_quantize(const float *absmax, int64_t nb, float offset, const float map[256],
                   sr_bnb_rules rules, uint8_t *qabs, float *nested_absmax, sr_error *err);

/* Reconstructed 4-bit scales of a double-quantized weight (§2.4). */
void sr_dq_scales(const uint8_t *qabs, int64_t nb, const float *nested_absmax,
                  int64_t nested_blocksize, const float map[256], float offset, float *scales);

#endif
