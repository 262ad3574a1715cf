/* bf16 GEMM with f32 accumulation on AVX512_BF16 (vdpbf16ps), for the
 * opt-in bf16 prefill (STRATA_PREFILL=bf16).  Debian's OpenBLAS 0.3.21 is
 * built without BUILD_BFLOAT16 and has no cblas_sbgemm; this is the
 * replacement for the one shape prefill needs:
 *
 *     C[M][N] = A[M][K] · B[N][K]ᵀ + beta · C
 *
 * A (activations) is bf16 row-major.  B (a tile of weight rows) is first
 * packed by sr_bf16_pack_b from f32: rounded to bf16 (nearest even) and
 * interleaved as strips of SR_BF16_NR rows, K in pairs, zero-padded, the
 * layout whose 64-byte rows feed vdpbf16ps directly.  Products of two bf16
 * are exact in f32; sums are f32 in an order of their own.
 *
 * Single-threaded: callers parallelize over tiles. */
#ifndef SR_GEMM_BF16_H
#define SR_GEMM_BF16_H

#include <stdint.h>

#define SR_BF16_NR 32

/* Does this CPU have AVX512F + AVX512_BF16 (and the build the kernel)? */
int sr_gemm_bf16_available(void);

/* uint16 elements of a packed B of n rows by k columns. */
int64_t sr_bf16_packed_elems(int64_t n, int64_t k);

/* b: f32 [n][k] with row stride ldb -> packed (sr_bf16_packed_elems(n, k)). */
void sr_bf16_pack_b(const float *b, int64_t ldb, int64_t n, int64_t k, uint16_t *packed);

/* C = A · Bᵀ + beta·C with B packed for (n, k).  beta == 0 never reads C.
 * Only call when sr_gemm_bf16_available(). */
void sr_gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                  const uint16_t *packed_b, float beta, float *c, int64_t ldc);

#endif
