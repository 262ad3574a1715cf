/* Exact f32 matmul over bf16 weights laid out in 16-row tiles (the layout:
 * quant/qtile.h, "bf16").
 *
 * Decode reads a bf16 matrix at the memory's rate only as one stream per
 * thread in which many rows share each activation load.  Row-major storage
 * offers one or the other: rows one at a time (one stream, an x load per
 * weight load and a horizontal sum per row) or 8 rows at once (8 streams
 * that restart every row).  In a tile each 64-byte chunk holds a column
 * pair of 16 rows, so a thread reads its tiles front to back, each chunk
 * widens to two f32 vectors (one lane per row) and takes two broadcast
 * activations: 8192 x 2560 on the Zen 4 dev VM at its fast-memory minutes
 * (probe > 55 GB/s) read 1.01 of a same-size probe read against 0.86 for
 * the row-major kernel (BENCHMARKS.md, quant, "Decode, eleventh pass").
 *
 * The arithmetic is the exact kernels' (f32 products of the widened
 * weights and x, f32 sums in an order of their own), so the tiles serve
 * the default mode; the reference is sr_matmul_ref on the stored bytes. */
#ifndef SR_BF16_TILES_H
#define SR_BF16_TILES_H

#include <stdint.h>

#include "quant/qmatrix.h"

/* Does this CPU (and build) have the tile decode kernel (AVX-512 F)? */
int sr_bf16tiles_available(void);

/* y = x · wᵀ for n = 1..8 columns from w->tiles.  Returns 0, or -1 when it
 * cannot take the call (no tiles, not bf16, n out of range, no AVX-512):
 * y is untouched then. */
int sr_bf16tiles_decode(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                        int64_t ldy);

/* Strips of the tiles for the prefill driver (quant/matmul.c).  r0 is a
 * multiple of 16; k0 and kk are even.  Rows r0 .. r0+nr-1, columns k0 ..
 * k0+kk-1:
 *   _f32t:   as f32, transposed: bt[j * ldb + r] = W[r0 + r][k0 + j] for
 *            r < nr rounded up to 16 (rows past the matrix are 0); ldb >=
 *            that, so sgemm takes bt as Wᵀ without a transpose.
 *   _packed: in sr_bf16_pack_b's layout (quant/gemm_bf16.h), the bytes as
 *            stored (what packing their f32 values gives). */
void sr_bf16tiles_strip_f32t(const sr_qmatrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kk,
                             float *bt, int64_t ldb);
void sr_bf16tiles_strip_packed(const sr_qmatrix *w, int64_t r0, int64_t nr, int64_t k0,
                               int64_t kk, uint16_t *packed);

#endif
