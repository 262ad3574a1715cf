/* bitsandbytes 4-bit blockwise codecs: NF4 and FP4 (bnb-format.md §1).
 *
 * A weight of N elements is flattened row-major and cut into blocks of
 * `blocksize` elements (the last block may be partial); every block stores
 * its absmax (f32) and each element a 4-bit code, two codes per byte, the
 * even element in the high nibble.  Dequantization is
 *     out[j] = fl(table[code[j]] * scale[j / blocksize])
 * and is the same everywhere; quantization differs between bnb's CUDA
 * kernels and its CPU path, so both rule sets are implemented:
 *
 *   SR_RULES_CUDA (default): what transformers produces on a GPU and what
 *     nearly every Hub checkpoint holds.  y = fl(x * fl(1/absmax)) with a
 *     correctly rounded reciprocal (the GPU's fast-math reciprocal and
 *     flush-to-zero are not emulated: they only matter within ~1 ulp of a
 *     decision boundary or for subnormal data), no clamp, and the decision
 *     thresholds of bnb's dQuantizeNF4 / dQuantizeFP4.  An all-zero block
 *     gives NF4 code 0 / FP4 code 0 (0 * inf = NaN), stored absmax is raw.
 *   SR_RULES_CPU: bnb >= 0.50 CPU ("default" torch backend):
 *     y = clamp(fl(x * fl(1/max(absmax, 1e-38))), -1, 1) for full blocks,
 *     y = clamp(fl(x / max(absmax, 1e-38)), -1, 1) for the trailing partial
 *     block (a division, as bnb does), codes by bucketing on the f32
 *     midpoints of the sorted table.  As in bnb the stored absmax of the
 *     partial block is the clamped value max(absmax, 1e-38); full blocks
 *     store the raw absmax (0 for an all-zero block).
 *
 * Non-finite input (NaN, +-inf) is rejected with an error naming the first
 * offending element: bnb does not define a result for it (CPU: the whole
 * block becomes garbage; CUDA: the NaN gets code 0), and a checkpoint must
 * never silently carry garbage.
 *
 * Inputs may be F32, F16 or BF16 (converted exactly to f32 first) and need
 * not be aligned (they may point straight into a safetensors mapping). */
#ifndef SR_BNB4_H
#define SR_BNB4_H

#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

typedef enum sr_q4type { SR_Q4_NF4 = 0, SR_Q4_FP4 = 1 } sr_q4type;

typedef enum sr_bnb_rules { SR_RULES_CUDA = 0, SR_RULES_CPU = 1 } sr_bnb_rules;

#define SR_BNB4_MIN_BLOCKSIZE 32
#define SR_BNB4_MAX_BLOCKSIZE 4096

/* "nf4" / "fp4"; parse returns 0 or -1 for anything else. */
const char *sr_q4type_name(sr_q4type t);
int sr_q4type_parse(const char *s, sr_q4type *out);
/* "cuda" / "cpu". */
const char *sr_bnb_rules_name(sr_bnb_rules r);
int sr_bnb_rules_parse(const char *s, sr_bnb_rules *out);

/* The 16 dequantization values in code order, exactly bnb's `quant_map`
 * tensor (FP4 code 8 is +0.0). */
const float *sr_bnb4_table(sr_q4type t);

/* 1 if bs is one of bnb's 4-bit blocksizes 32, 64, ..., 4096. */
int sr_bnb4_blocksize_ok(int64_t bs);
/* Number of blocks ceil(n / bs) and packed bytes (n + 1) / 2. */
static inline int64_t sr_bnb_nblocks(int64_t n, int64_t bs) { return (n + bs - 1) / bs; }
static inline int64_t sr_bnb4_packed_bytes(int64_t n) { return (n + 1) / 2; }

/* The code bnb chooses for an already normalised value y (NaN -> 0). */
uint8_t sr_bnb4_code(sr_q4type t, sr_bnb_rules rules, float y);

/* Quantizes n elements of x (dtype F32/F16/BF16) into packed[(n+1)/2] and
 * absmax[ceil(n/blocksize)].  If n is odd the last low nibble is the code
 * of 0.0 (what bnb stores there).  blocksize must satisfy
 * sr_bnb4_blocksize_ok.  Multi-threaded (OpenMP) over blocks.  Returns 0,
 * or -1 (nothing meaningful written) for bad arguments or non-finite
 * input. */
int sr_bnb4_quantize(const void *x, sr_dtype dtype, int64_t n, int blocksize, sr_q4type t,
                     sr_bnb_rules rules, uint8_t *packed, float *absmax, sr_error *err);

/* Exact dequantization (§1.4) of n elements: out[j] = fl(table[code] *
 * scales[j / blocksize]).  scales = the f32 absmax, or the reconstructed
 * scales of a double-quantized weight (blockwise8.h: sr_dq_scales).
 * Any blocksize > 0 is accepted (a loader honours the stored one). */
void sr_bnb4_dequantize(const uint8_t *packed, const float *scales, int64_t n, int64_t blocksize,
                        sr_q4type t, float *out);
/* Same, then rounded to nearest even into `dtype` (F32, F16 or BF16): the
 * output bnb's dequantize_4bit gives for quant_state.dtype.  Returns -1 for
 * another dtype. */
int sr_bnb4_dequantize_to(const uint8_t *packed, const float *scales, int64_t n,
                          int64_t blocksize, sr_q4type t, sr_dtype dtype, void *out,
                          sr_error *err);

/* Exact element conversion to f32 of `n` F32/F16/BF16 values at any
 * alignment (shared with the other quantizers).  Vectorisable, no
 * branches per element. */
void sr_load_f32(const void *src, sr_dtype dtype, int64_t n, float *dst);

#endif
