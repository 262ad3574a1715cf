/* Internal interface between the matmul driver (matmul.c), the exact
 * dequantization (qmatrix.c) and the per-ISA kernels (matmul_scalar.c,
 * matmul_avx2.c, matmul_avx512.c).  Only quant/ and its tests use it.
 *
 * 4-bit decode layout.  The SIMD decode kernels never re-interleave nibbles:
 * they read a 32-bit word of packed weights (8 elements), shift it right by
 * 4k and use it directly as a table-permute index (vpermps ignores the upper
 * bits).  Lane d of the result then holds element 8d + (k ^ 1) of the group
 * (high nibble = even element).  Instead of shuffling weights back, the
 * driver permutes x once per call into the same order (sr_q4_permute_x), so
 * the dot product is a plain lane-wise FMA.  A group is `lanes * 8` elements
 * (128 for AVX-512, 64 for AVX2).  The n columns are interleaved per group
 * and k, xp[g*n + (k*n + c)*lanes + d] for the group starting at element g,
 * so a kernel reaches every x vector from one pointer. */
#ifndef SR_MATMUL_KERNELS_H
#define SR_MATMUL_KERNELS_H

#include <stdint.h>

#include "quant/bnb4.h"
#include "quant/matmul.h"
#include "quant/qmatrix.h"

/* bnb-format.md §4.2: f32(1/127) as bnb's int8_vectorwise_dequant uses it. */
#define SR_INT8_DEQUANT_SCALE 0.007874016f

static inline int sr_wformat_is_4bit(sr_wformat f) { return f == SR_W_NF4 || f == SR_W_FP4; }

/* bnb-format.md §1.1: the 16 dequantization values (quant/bnb4.c). */
static inline const float *sr_q4_table(sr_wformat f)
{
    return sr_bnb4_table(f == SR_W_FP4 ? SR_Q4_FP4 : SR_Q4_NF4);
}

/* Exact element j (flat row-major index) of a 4-bit matrix: one f32 multiply. */
static inline float sr_q4_element(const sr_qmatrix *w, const float *table, int64_t j)
{
    uint8_t b = ((const uint8_t *)w->data)[j >> 1];
    int nib = (j & 1) ? (b & 0xF) : (b >> 4);
    return table[nib] * w->scales[j / w->blocksize];
}

/* Exact element (r, j) of an LLM.int8 matrix: fl(fl(q * SCB) * 1/127). */
static inline float sr_int8_element(const sr_qmatrix *w, int64_t r, int64_t j)
{
    int8_t q = ((const int8_t *)w->data)[r * w->cols + j];
    float t = (float)q * w->scb[r];
    return t * SR_INT8_DEQUANT_SCALE;
}

/* Portable exact dequantization of flat elements [e0, e1) into out. */
void sr_dequant_flat_scalar(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out);

/* True if the SIMD 4-bit decode kernels with `group` elements per group can
 * take w (whole groups per row, blocks aligned with groups). */
int sr_q4_decode_fits(const sr_qmatrix *w, int group);

/* x (n columns of w->cols floats, stride ldx) -> xp (n * cols floats) in
 * the interleaved lane order described above. */
void sr_q4_permute_x(const float *x, int64_t n, int64_t ldx, int64_t cols, int group, float *xp);

/* bf16 decode layout.  Widening bf16 to f32 is a shift left by 16, and a
 * 32-bit word holds two bf16 weights: (word << 16) is the even element as
 * f32 and (word & 0xFFFF0000) the odd one, two plain integer ops per 64
 * bytes of weights, where widening in order needs a cross-lane shuffle per
 * 16 weights (the shuffles made the exact bf16 decode compute-bound at two
 * cores' fast-memory rate, BENCHMARKS.md).  So the driver splits x instead:
 * each group of `group` elements at g is stored as its even elements, then
 * its odd ones (xp[g + i] = x[g + 2i], xp[g + group/2 + i] = x[g + 2i + 1]);
 * elements past the last whole group stay in order.  The products and
 * their f32 rounding are the same; only the order of the sums changes. */
void sr_bf16_split_x(const float *x, int64_t n, int64_t ldx, int64_t cols, int group, float *xp);

typedef struct sr_kernels {
    sr_isa isa;
    /* 4-bit decode group size (elements); 0 = no permuted 4-bit kernel. */
    int q4_group;
    /* bf16 decode group size (elements); 0 = the bf16 kernel takes x as is. */
    int bf16_group;
    /* y[c*ldy + r] = sum_j W[r,j] * x[c*ldx + j] for r in [r0, r1), c < n,
     * n <= 8.  For 4-bit formats x is the permuted layout (ldx unused) and
     * sr_q4_decode_fits() holds; for bf16 with bf16_group set, x is split
     * (sr_bf16_split_x) with column stride ldx. */
    void (*decode)(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy, int64_t r0, int64_t r1);
    /* Same for a dense f32 matrix with row stride ldw (rows r0..r1 of w). */
    void (*dot_f32)(const float *w, int64_t ldw, int64_t cols, const float *x, int64_t n,
                    int64_t ldx, float *y, int64_t ldy, int64_t r0, int64_t r1);
    /* Exact dequantization of flat elements [e0, e1) (bit-identical to
     * sr_dequant_flat_scalar). */
    void (*dequant)(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out);
    /* f32 -> bf16, round to nearest even (as sr_f32_to_bf16). */
    void (*to_bf16)(const float *in, int64_t count, uint16_t *out);
} sr_kernels;

extern const sr_kernels sr_kernels_scalar;
extern const sr_kernels sr_kernels_avx2;
extern const sr_kernels sr_kernels_avx512;

/* Kernels of `isa`, downgraded to what this CPU supports. */
const sr_kernels *sr_kernels_for(sr_isa isa);

/* ---- opt-in int8 path (quant/matmul_vnni.c) ------------------------------
 *
 * Activations: each x row is cut into blocks of SR_INT8_XBLOCK elements from
 * element 0 (the last one zero-padded).  Per block m = max|x|, the scale is
 * d = m / 127 and the codes q = rint(x * fl(127 / m)) (f32 ops, ties to
 * even, |q| <= 127, |x - d q| <= d/2 up to f32 rounding); m = 0 gives
 * q = 0; a NaN or infinity in the block gives q = 0 and m = NaN (the outputs
 * it touches become NaN).
 * 4-bit weights: code i -> int8 sr_int8_q4_table(f)[i] = rint(a * value_i)
 * with a = sr_int8_q4_scale(f), so value_i ~ table[i] / a.  a is chosen per
 * table: NF4 a = 123.25, the minimax choice (max |value - table/a| =
 * 0.00286, RMS 0.00201; a = 127 gives 0.00367 / 0.00219); FP4 a = 120
 * (14 of the 16 codes exact, max error 0.00313 on the +-0.0052 codes; a =
 * 127 gives 0.00394).  LLM.int8 weights keep their codes (scale SCB / 127).
 * Each product block sums code * q exactly in int32 and is scaled in f32 by
 * d / a (or d / 127) times the weight block scale (or SCB).  Read from the
 * 16-row tiles (quant/qtile.h), a 4-bit block scale is the row's largest
 * block scale times an f16 (relative error <= 2^-11, a tenth of the code
 * table's). */
#define SR_INT8_XBLOCK 32
#define SR_INT8_NF4_SCALE 123.25f
#define SR_INT8_FP4_SCALE 120.0f

const int8_t *sr_int8_q4_table(sr_wformat f);
float sr_int8_q4_scale(sr_wformat f);

/* The activation quantizer of the kernels: x[0..len) -> codes q (room for
 * whole blocks: ceil(len / 32) * 32, padding codes 0), per block absmax[b]
 * = m and sum[b] = Σ codes. */
void sr_int8_quantize_x(const float *x, int64_t len, int8_t *q, float *absmax, int32_t *sum);

/* True if the int8 kernels take w: LLM.int8 any shape; 4-bit with cols a
 * multiple of 32 and a power-of-two blocksize >= 32 (activation blocks never
 * cross a row or a weight block). */
int sr_matmul_int8_fits(const sr_qmatrix *w);

/* Instantiates CALL(N) for the runtime column count n = 1..8 (a variable
 * `n` in scope), so that every kernel body is compiled with a constant column
 * count (registers, unroll).  Used by the SIMD kernel files. */
#define FOR_N(CALL)                \
    switch (n) {                   \
    case 1: CALL(1); break;        \
    case 2: CALL(2); break;        \
    case 3: CALL(3); break;        \
    case 4: CALL(4); break;        \
    case 5: CALL(5); break;        \
    case 6: CALL(6); break;        \
    case 7: CALL(7); break;        \
    case 8: CALL(8); break;        \
    default: break;                \
    }

#endif
