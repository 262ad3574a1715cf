/* y = W·x for bf16 W and one column x rounded to bf16, vdpbf16ps
 * (AVX512_BF16): the bf16 decode of the opt-in approximate kernels
 * (STRATA_KERNELS=int8, quant/matmul.h), used for the LM head.  The exact
 * path stays the default everywhere else. */
#ifndef SR_DECODE_BF16DOT_H
#define SR_DECODE_BF16DOT_H

#include <stdint.h>

/* Widest row the kernel takes, as for the exact row-by-row kernel: at
 * 8192 columns (16 KiB of bf16 x) it read 0.55-0.79 of the probe at the
 * Zen 4 dev VM's fast-memory minutes, where the exact kernel, 8 rows
 * sharing each x load, read 0.81-1.00 (BENCHMARKS.md). */
#define SR_BF16DOT_MAX_COLS 4096

/* Does this CPU (and build) have the kernel? */
int sr_bf16dot_available(void);

/* w: rows x cols bf16, row-major, rows contiguous.  OpenMP over rows; call
 * from outside any parallel region.  Returns 0 when it computed y, -1 when
 * it cannot take the call (no AVX512_BF16, cols outside 1..MAX_COLS, out of
 * memory): y is untouched then. */
int sr_bf16dot_decode(const uint16_t *w, int64_t rows, int64_t cols, const float *x, float *y);

/* x rounded to bf16 as the kernel does (nearest even). */
void sr_bf16dot_round_x(const float *x, int64_t cols, uint16_t *xb);
/* Scalar reference: the same products in f64, summed in order. */
void sr_bf16dot_ref(const uint16_t *w, int64_t rows, int64_t cols, const float *x, float *y);

#endif
