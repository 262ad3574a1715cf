/* Y = X · Wᵀ for W in any sr_wformat, X in f32.
 *
 * X is token-major: n rows of `cols` floats (row stride ldx); Y gets n rows
 * of `rows` floats (row stride ldy, so a caller can write into a slice of a
 * wider buffer).  n = 1..8 takes the decode path (fused dequantize + dot,
 * every weight byte read once); larger n the prefill path (dequantize tiles
 * into a cache-sized buffer, then sgemm).  Threads: OpenMP over output rows;
 * call from outside any parallel region.
 *
 * Every fast path has a scalar reference (sr_matmul_ref) that the tests
 * compare it with. */
#ifndef SR_MATMUL_H
#define SR_MATMUL_H

#include <stdint.h>

#include "quant/qmatrix.h"

typedef enum sr_isa { SR_ISA_SCALAR, SR_ISA_AVX2, SR_ISA_AVX512 } sr_isa;

/* Best ISA this CPU supports (cpuid), capped by STRATA_ISA=scalar|avx2|avx512. */
sr_isa sr_isa_detect(void);
const char *sr_isa_name(sr_isa isa);

void sr_matmul(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy);

/* Scalar reference: dequantize exactly, accumulate in double. */
void sr_matmul_ref(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy);

/* Explicit paths for tests and benchmarks. */
void sr_matmul_decode(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                      int64_t ldy, sr_isa isa);
void sr_matmul_prefill(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                       int64_t ldy, sr_isa isa);

/* Prefill numerics: f32 by default.  STRATA_PREFILL=bf16 opts into rounding
 * weights and activations to bf16 (f32 accumulation): strata's AVX512_BF16
 * kernel (quant/gemm_bf16.h) where the CPU has it, else OpenBLAS sbgemm if
 * the linked OpenBLAS exports cblas_sbgemm. */
int sr_matmul_bf16_available(void);

/* Kernel numerics of sr_matmul.  SR_MATMUL_EXACT (the default): the exact
 * f32 kernels above.  SR_MATMUL_INT8 (opt-in, quant/matmul_vnni.c): for
 * NF4 / FP4 / LLM.int8 weights on CPUs with AVX-512 VNNI, activations are
 * quantized to int8 per block of 32 and the 4-bit codes approximated in
 * int8 (matmul_kernels.h documents both); untiled bf16 weights against one
 * column take x rounded to bf16 and vdpbf16ps on CPUs with AVX512_BF16
 * (quant/decode_bf16dot.h), and bf16 weights at prefill (n > 8, tiled or
 * not) the bf16 prefill of STRATA_PREFILL=bf16 (x rounded to bf16: a bf16
 * model's numerics upstream); other formats, shapes and CPUs stay exact.
 * The mode is STRATA_KERNELS=exact|int8, read once at the first call,
 * unless sr_matmul_set_mode set it.  A 4-bit matrix with tiles
 * (quant/qtile.h: what sr_model_load makes for a model that runs on the CPU
 * in this mode) is read from them instead of its bnb bytes.
 *
 * In both modes a bf16 matrix with tiles (a model on the CPU, AVX-512) is
 * read from them by the exact kernels (quant/bf16_tiles.h): sr_matmul's
 * decode and every prefill.  sr_matmul_decode reads the stored bytes. */
typedef enum sr_matmul_mode { SR_MATMUL_EXACT, SR_MATMUL_INT8 } sr_matmul_mode;
void sr_matmul_set_mode(sr_matmul_mode mode);
sr_matmul_mode sr_matmul_get_mode(void);
/* Does this CPU have the int8 kernels (AVX-512 F/BW/VL/DQ + VNNI)? */
int sr_matmul_int8_available(void);
/* The int8 path explicitly (n <= 8 decode, else prefill).  Returns 0 when
 * it computed y, -1 when it cannot take the call (no VNNI, format or shape
 * not covered, out of memory): y is untouched then. */
int sr_matmul_int8(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy);

/* Several matrices with the same input (q/k/v or gate/up stored apart):
 * y[i] = x · w[i]ᵀ, each as sr_matmul computes it.  Under the int8 kernels,
 * decode (n <= 8) over tiled parts of one format and width runs as one call
 * (the activations quantized once, one parallel loop); otherwise one
 * sr_matmul per part. */
#define SR_MATMUL_MAX_PARTS 3
void sr_matmul_parts(const sr_qmatrix *w, int parts, const float *x, int64_t n, int64_t ldx,
                     float *const *y, int64_t ldy);
/* The one-call int8 path explicitly: 0 when it computed every y[i], -1 when
 * it cannot take the call (y untouched). */
int sr_matmul_int8_parts(const sr_qmatrix *w, int parts, const float *x, int64_t n, int64_t ldx,
                         float *const *y, int64_t ldy);

#endif
