/* AVX2 kernels (with FMA and F16C), for x86-64 CPUs without AVX-512.
 *
 * Every function carries a target attribute (the build does not assume the
 * host CPU); matmul.c calls them only after cpuid reported AVX2 + FMA. */
#include "quant/matmul_kernels.h"
#include "quant/prefetch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "runtime/dtype.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* Rows computed together (each x load serves R rows) and independent
 * partial sums per accumulator (FMA latency), within 16 registers. */
#define ROWS(n) ((n) <= 2 ? 2 : 1)
#define CHAINS(R, n) ((R) * (n) >= 4 ? 1 : (R) * (n) == 1 ? 4 : 2)

#define UNROLL _Pragma("GCC unroll 8")
/* Keeps a loaded vector in a register (see matmul_avx512.c). */
#define PIN(v) __asm__("" : "+x"(v))

INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- dense formats (f32, bf16, f16, int8 codes) ------------------------ */

INLINE __m256 load8(sr_wformat f, const void *row, int64_t j)
{
    switch (f) {
    case SR_W_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case SR_W_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + j)));
    case SR_W_INT8:
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)row + j))));
    default:
        return _mm256_loadu_ps((const float *)row + j);
    }
}

/* One element for the scalar tail (int8: the raw code). */
static inline float load1(sr_wformat f, const void *row, int64_t j)
{
    switch (f) {
    case SR_W_BF16: return sr_bf16_to_f32(((const uint16_t *)row)[j]);
    case SR_W_F16: return sr_f16_to_f32(((const uint16_t *)row)[j]);
    case SR_W_INT8: return (float)((const int8_t *)row)[j];
    default: return ((const float *)row)[j];
    }
}

static size_t elem_size(sr_wformat f)
{
    return f == SR_W_F32 ? 4 : f == SR_W_INT8 ? 1 : 2;
}

/* Rows [r, r+R) of a dense matrix times n columns. */
INLINE void dense_block(sr_wformat f, const void *data, int64_t ldw, const float *scb,
                        int64_t cols, const float *x, int64_t ldx, float *y, int64_t ldy,
                        int64_t r, const int R, const int n)
{
    const int P = CHAINS(R, n);
    const char *row[2];
    __m256 acc[2][8][4];
    UNROLL for (int i = 0; i < R; i++) {
        row[i] = (const char *)data + (size_t)((r + i) * ldw) * elem_size(f);
        UNROLL for (int c = 0; c < n; c++)
            UNROLL for (int p = 0; p < P; p++) acc[i][c][p] = _mm256_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 8 * P <= cols; j += 8 * P)
        UNROLL for (int p = 0; p < P; p++) {
            __m256 wv[2];
            const int64_t jp = j + 8 * p, line_elems = 64 / (int64_t)elem_size(f);
            UNROLL for (int i = 0; i < R; i++) {
                if ((jp & (line_elems - 1)) == 0)
                    sr_prefetch_stream(row[i] + (size_t)jp * elem_size(f),
                                       jp * (int64_t)elem_size(f), ldw * (int64_t)elem_size(f), R);
                wv[i] = load8(f, row[i], jp);
            }
            UNROLL for (int c = 0; c < n; c++) {
                __m256 xv = _mm256_loadu_ps(x + c * ldx + j + 8 * p);
                PIN(xv);
                UNROLL for (int i = 0; i < R; i++)
                    acc[i][c][p] = _mm256_fmadd_ps(wv[i], xv, acc[i][c][p]);
            }
        }
    for (; j + 8 <= cols; j += 8) {
        __m256 wv[2];
        UNROLL for (int i = 0; i < R; i++) wv[i] = load8(f, row[i], j);
        UNROLL for (int c = 0; c < n; c++) {
            __m256 xv = _mm256_loadu_ps(x + c * ldx + j);
            UNROLL for (int i = 0; i < R; i++)
                acc[i][c][0] = _mm256_fmadd_ps(wv[i], xv, acc[i][c][0]);
        }
    }
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) {
            __m256 s = acc[i][c][0];
            UNROLL for (int p = 1; p < P; p++) s = _mm256_add_ps(s, acc[i][c][p]);
            float v = hsum8(s);
            for (int64_t t = j; t < cols; t++) v += load1(f, row[i], t) * x[c * ldx + t];
            if (f == SR_W_INT8) v = (v * scb[r + i]) * SR_INT8_DEQUANT_SCALE;
            y[c * ldy + r + i] = v;
        }
}

INLINE void dense_rows(sr_wformat f, const void *data, int64_t ldw, const float *scb,
                       int64_t cols, const float *x, int64_t ldx, float *y, int64_t ldy,
                       int64_t r0, int64_t r1, const int n)
{
    int64_t r = r0;
    for (; r + ROWS(n) <= r1; r += ROWS(n))
        dense_block(f, data, ldw, scb, cols, x, ldx, y, ldy, r, ROWS(n), n);
    for (; r < r1; r++) dense_block(f, data, ldw, scb, cols, x, ldx, y, ldy, r, 1, n);
}

#define DENSE_CALL(N) dense_rows(fmt_, data, ldw, scb, cols, x, ldx, y, ldy, r0, r1, N)
#define DENSE_FN(name, FMT)                                                                  \
    static TARGET void name(const void *data, int64_t ldw, const float *scb, int64_t cols,  \
                            const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy,  \
                            int64_t r0, int64_t r1)                                         \
    {                                                                                       \
        const sr_wformat fmt_ = FMT;                                                        \
        FOR_N(DENSE_CALL)                                                                   \
    }
DENSE_FN(dense_f32, SR_W_F32)
DENSE_FN(dense_bf16, SR_W_BF16)
DENSE_FN(dense_f16, SR_W_F16)
DENSE_FN(dense_int8, SR_W_INT8)

/* ---- 4-bit decode (permuted x, see matmul_kernels.h) ------------------- */

enum { Q4_GROUP = 64 }; /* 8 lanes x 8 nibbles = one 32-byte load */

/* 16-entry table lookup with 8-entry permutes: low and high halves of the
 * table, chosen by bit 3 of the index (moved to the sign bit for blendv). */
INLINE __m256 lookup16(__m256i idx, __m256 lo, __m256 hi)
{
    __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                            sel);
}

typedef struct q4_layout {
    __m256 tab_lo, tab_hi; /* codes 0-7 and 8-15 */
    int shift;             /* log2(blocksize) */
    int wide;              /* blocksize >= group: one scale per group */
    __m256i lane_blk;      /* otherwise: block of lane d within the group */
    __m256i smask;         /* ... and which of the group's scales to load */
} q4_layout;

INLINE q4_layout q4_layout_of(const sr_qmatrix *w)
{
    q4_layout l;
    const float *table = sr_q4_table(w->fmt);
    l.tab_lo = _mm256_loadu_ps(table);
    l.tab_hi = _mm256_loadu_ps(table + 8);
    l.shift = __builtin_ctz((unsigned)w->blocksize);
    l.wide = w->blocksize >= Q4_GROUP;
    /* Lane d holds group elements 8d..8d+7: block (8d >> shift). */
    l.lane_blk = _mm256_srlv_epi32(_mm256_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56),
                                   _mm256_set1_epi32(l.shift));
    int nblk = l.wide ? 1 : Q4_GROUP >> l.shift;
    l.smask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nblk),
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return l;
}

INLINE __m256 q4_group_scales(const q4_layout *l, const float *scales, int64_t e)
{
    if (l->wide) return _mm256_set1_ps(scales[e >> l->shift]);
    return _mm256_permutevar8x32_ps(_mm256_maskload_ps(scales + (e >> l->shift), l->smask),
                                    l->lane_blk);
}

/* Rows [r, r+R) times n permuted columns.  One column: the scale is applied
 * per group to a partial sum ("late"); more columns: to the weights, which
 * needs no per-group temporaries (AVX2 has 16 registers). */
INLINE void q4_block(const sr_qmatrix *w, const q4_layout *l, const float *xp, float *y,
                     int64_t ldy, int64_t r, const int R, const int n)
{
    const int late = n == 1;
    const int P = late ? 1 : CHAINS(R, n);
    const int64_t cols = w->cols, ngroups = cols / Q4_GROUP;
    const uint8_t *data = w->data;
    __m256 acc[2][8][4];
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++)
            UNROLL for (int q = 0; q < P; q++) acc[i][c][q] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ngroups; g++) {
        __m256i v[2];
        __m256 sv[2], t[2];
        UNROLL for (int i = 0; i < R; i++) {
            const uint8_t *src = data + (r + i) * (cols / 2) + g * (Q4_GROUP / 2);
            if ((g & 1) == 0) /* one prefetch per 64-byte line */
                sr_prefetch_stream((const char *)src, g * (Q4_GROUP / 2), cols / 2, R);
            v[i] = _mm256_loadu_si256((const __m256i *)src);
            sv[i] = q4_group_scales(l, w->scales, (r + i) * cols + g * Q4_GROUP);
            t[i] = _mm256_setzero_ps();
        }
        const float *xg = xp + g * Q4_GROUP * n;
        UNROLL for (int k = 0; k < 8; k++) {
            __m256 wk[2];
            UNROLL for (int i = 0; i < R; i++) {
                wk[i] = lookup16(v[i], l->tab_lo, l->tab_hi);
                v[i] = _mm256_srli_epi32(v[i], 4);
                if (!late) wk[i] = _mm256_mul_ps(wk[i], sv[i]);
            }
            UNROLL for (int c = 0; c < n; c++) {
                __m256 xv = _mm256_loadu_ps(xg + (k * n + c) * 8);
                PIN(xv);
                UNROLL for (int i = 0; i < R; i++) {
                    if (late) t[i] = _mm256_fmadd_ps(wk[i], xv, t[i]);
                    else acc[i][c][k % P] = _mm256_fmadd_ps(wk[i], xv, acc[i][c][k % P]);
                }
            }
        }
        if (late)
            UNROLL for (int i = 0; i < R; i++)
                acc[i][0][0] = _mm256_fmadd_ps(t[i], sv[i], acc[i][0][0]);
    }
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) {
            __m256 s = acc[i][c][0];
            UNROLL for (int q = 1; q < P; q++) s = _mm256_add_ps(s, acc[i][c][q]);
            y[c * ldy + r + i] = hsum8(s);
        }
}

INLINE void q4_rows(const sr_qmatrix *w, const float *xp, float *y, int64_t ldy, int64_t r0,
                    int64_t r1, const int n)
{
    const q4_layout l = q4_layout_of(w);
    const int R = n == 1 ? 2 : 1;
    int64_t r = r0;
    for (; r + R <= r1; r += R) q4_block(w, &l, xp, y, ldy, r, R, n);
    for (; r < r1; r++) q4_block(w, &l, xp, y, ldy, r, 1, n);
}

#define Q4_CALL(N) q4_rows(w, x, y, ldy, r0, r1, N)

static TARGET void decode_avx2(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
                               float *y, int64_t ldy, int64_t r0, int64_t r1)
{
    switch (w->fmt) {
    case SR_W_NF4:
    case SR_W_FP4: FOR_N(Q4_CALL) break;
    case SR_W_F32: dense_f32(w->data, w->cols, NULL, w->cols, x, n, ldx, y, ldy, r0, r1); break;
    case SR_W_BF16: dense_bf16(w->data, w->cols, NULL, w->cols, x, n, ldx, y, ldy, r0, r1); break;
    case SR_W_F16: dense_f16(w->data, w->cols, NULL, w->cols, x, n, ldx, y, ldy, r0, r1); break;
    case SR_W_INT8: dense_int8(w->data, w->cols, w->scb, w->cols, x, n, ldx, y, ldy, r0, r1); break;
    default: break;
    }
}

static TARGET void dot_f32_avx2(const float *w, int64_t ldw, int64_t cols, const float *x,
                                int64_t n, int64_t ldx, float *y, int64_t ldy, int64_t r0,
                                int64_t r1)
{
    dense_f32(w, ldw, NULL, cols, x, n, ldx, y, ldy, r0, r1);
}

/* ---- exact dequantization (natural element order) ---------------------- */

static TARGET void dequant_q4(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out)
{
    const float *table = sr_q4_table(w->fmt);
    const int bs = w->blocksize;
    if (bs < 8 || (bs & (bs - 1))) { /* 8-element chunks must not cross blocks */
        sr_dequant_flat_scalar(w, e0, e1, out);
        return;
    }
    const int shift = __builtin_ctz((unsigned)bs);
    const uint8_t *data = w->data;
    const __m256 tab_lo = _mm256_loadu_ps(table), tab_hi = _mm256_loadu_ps(table + 8);
    /* Bytes are duplicated (b0 b0 b1 b1 ...): even element = high nibble. */
    const __m256i nib_shift = _mm256_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0);
    int64_t j = e0;
    for (; j < e1 && (j & 7); j++) out[j - e0] = sr_q4_element(w, table, j);
    for (; j + 8 <= e1; j += 8) {
        int32_t four;
        memcpy(&four, data + j / 2, 4);
        __m128i b = _mm_cvtsi32_si128(four);
        __m256i idx = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), nib_shift);
        __m256 q = lookup16(idx, tab_lo, tab_hi);
        _mm256_storeu_ps(out + (j - e0), _mm256_mul_ps(q, _mm256_set1_ps(w->scales[j >> shift])));
    }
    for (; j < e1; j++) out[j - e0] = sr_q4_element(w, table, j);
}

static TARGET void dequant_avx2(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out)
{
    switch (w->fmt) {
    case SR_W_NF4:
    case SR_W_FP4: dequant_q4(w, e0, e1, out); return;
    case SR_W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data;
        int64_t j = e0;
        for (; j + 8 <= e1; j += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(p + j));
            _mm256_storeu_ps(out + (j - e0),
                             _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
        }
        sr_dequant_flat_scalar(w, j, e1, out + (j - e0));
        return;
    }
    case SR_W_F16: {
        const uint16_t *p = (const uint16_t *)w->data;
        int64_t j = e0;
        for (; j + 8 <= e1; j += 8)
            _mm256_storeu_ps(out + (j - e0),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + j))));
        sr_dequant_flat_scalar(w, j, e1, out + (j - e0));
        return;
    }
    case SR_W_INT8: {
        const int64_t cols = w->cols;
        const __m256 inv127 = _mm256_set1_ps(SR_INT8_DEQUANT_SCALE);
        for (int64_t e = e0; e < e1;) { /* one row segment at a time: SCB is per row */
            int64_t r = e / cols, j0 = e % cols;
            int64_t len = cols - j0 < e1 - e ? cols - j0 : e1 - e;
            const int8_t *src = (const int8_t *)w->data + r * cols + j0;
            float *dst = out + (e - e0);
            const __m256 scb = _mm256_set1_ps(w->scb[r]);
            int64_t i = 0;
            for (; i + 8 <= len; i += 8) {
                __m256 q = _mm256_cvtepi32_ps(
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(src + i))));
                _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_mul_ps(q, scb), inv127));
            }
            sr_dequant_flat_scalar(w, e + i, e + len, dst + i);
            e += len;
        }
        return;
    }
    default: sr_dequant_flat_scalar(w, e0, e1, out); return;
    }
}

static TARGET void to_bf16_avx2(const float *in, int64_t count, uint16_t *out)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256i h[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_castps_si256(_mm256_loadu_ps(in + i + 8 * k));
            __m256i hi = _mm256_srli_epi32(u, 16);
            __m256i rnd = _mm256_srli_epi32(
                _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(hi, one)), 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            h[k] = _mm256_blendv_epi8(rnd, _mm256_or_si256(hi, quiet), nan);
        }
        /* packus works per 128-bit lane: restore element order afterwards. */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(out + i), packed);
    }
    for (; i < count; i++) out[i] = sr_f32_to_bf16(in[i]);
}

const sr_kernels sr_kernels_avx2 = {
    .isa = SR_ISA_AVX2,
    .q4_group = Q4_GROUP,
    .decode = decode_avx2,
    .dot_f32 = dot_f32_avx2,
    .dequant = dequant_avx2,
    .to_bf16 = to_bf16_avx2,
};

#else  /* not x86: never selected (sr_kernels_for only picks what cpuid reports) */
const sr_kernels sr_kernels_avx2 = {.isa = SR_ISA_SCALAR};
#endif
