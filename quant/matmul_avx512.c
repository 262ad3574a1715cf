/* AVX-512 kernels (F + BW + VL + DQ, with FMA and F16C).
 *
 * Every function carries a target attribute instead of the file being built
 * with -mavx512f: the build does not assume the host CPU, and matmul.c only
 * calls these after cpuid reported the extensions (sr_kernels_for). */
#include "quant/matmul_kernels.h"
#include "quant/prefetch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* Rows computed together: each x vector loaded then serves R rows.  With
 * one row at a time the x loads (one per FMA) are the bottleneck, not the
 * weights.  R * n accumulators must fit the 32 registers. */
#define ROWS(n) ((n) == 1 ? 4 : 2)

/* Dense formats read 8 rows at once for one column.  With 4, a row of 8192
 * columns (too wide for the row-by-row kernel below: x leaves L1) fetched
 * x from L2 for every 4 rows.  2560 x 8192 against a same-size probe read
 * on the Zen 4 dev VM, slow-memory minutes, 4 -> 8 rows: bf16 0.94-0.97 ->
 * 0.97-1.00, f16 0.92-0.95 -> 0.95-0.99, LLM.int8 0.91-0.95 -> 0.96-0.99
 * (fast minutes, fewer samples: bf16 0.82 -> 0.90-0.92).  16 rows spill
 * registers (bf16 0.81-0.88).  LLM.int8 codes take this path at every
 * width; 8192 x 2560 moved 0.92-0.95 -> 0.93-0.97 (BENCHMARKS.md, quant,
 * "Decode, seventh pass"). */
#define DENSE_ROWS(n) ((n) == 1 ? 8 : ROWS(n))

/* GCC must unroll the small register-array loops completely, or the arrays
 * live in memory. */
#define UNROLL _Pragma("GCC unroll 8")

/* Keeps a loaded vector in a register: otherwise GCC folds the load into
 * each of the R FMAs that use it, loading it R times. */
#define PIN(v) __asm__("" : "+v"(v))

/* ---- dense formats (f32, bf16, f16, int8 codes) ------------------------ */

/* 16 consecutive weights of a dense row as f32 (int8: the raw codes). */
INLINE __m512 load16(sr_wformat f, const void *row, int64_t j)
{
    switch (f) {
    case SR_W_BF16: {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + j));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case SR_W_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + j)));
    case SR_W_INT8: {
        __m128i q = _mm_loadu_si128((const __m128i *)((const int8_t *)row + j));
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    }
    default:
        return _mm512_loadu_ps((const float *)row + j);
    }
}

/* Same for the first popcount(m) elements (masked lanes read as 0). */
INLINE __m512 load16_mask(sr_wformat f, const void *row, int64_t j, __mmask16 m)
{
    switch (f) {
    case SR_W_BF16: {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + j);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case SR_W_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + j));
    case SR_W_INT8:
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)row + j)));
    default:
        return _mm512_maskz_loadu_ps(m, (const float *)row + j);
    }
}

/* 32 bf16 weights (64 bytes) as f32: the even elements and the odd ones, to
 * be multiplied with x split the same way (matmul_kernels.h). */
enum { BF16_GROUP = 32 };
INLINE void load32_bf16_split(const void *row, int64_t j, __m512 *even, __m512 *odd)
{
    const __m512i v = _mm512_loadu_si512((const uint16_t *)row + j);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}

static size_t elem_size(sr_wformat f)
{
    return f == SR_W_F32 ? 4 : f == SR_W_INT8 ? 1 : 2;
}

/* Rows [r, r+R) of a dense matrix (row stride ldw elements) times n columns. */
INLINE void dense_block(sr_wformat f, const void *data, int64_t ldw, const float *scb,
                        int64_t cols, const float *x, int64_t ldx, float *y, int64_t ldy,
                        int64_t r, const int R, const int n)
{
    const int64_t tail = cols & 15;
    const __mmask16 tmask = (__mmask16)((1u << tail) - 1);
    const char *row[8];
    __m512 acc[8][8];
    UNROLL for (int i = 0; i < R; i++) {
        row[i] = (const char *)data + (size_t)((r + i) * ldw) * elem_size(f);
        UNROLL for (int c = 0; c < n; c++) acc[i][c] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    const int64_t line_elems = 64 / (int64_t)elem_size(f);
    if (f == SR_W_BF16) /* x split in groups of 32 (one line per row) */
        for (; j + BF16_GROUP <= cols; j += BF16_GROUP) {
            __m512 we[8], wo[8];
            UNROLL for (int i = 0; i < R; i++) {
                sr_prefetch_stream(row[i] + 2 * j, 2 * j, 2 * ldw, R);
                load32_bf16_split(row[i], j, &we[i], &wo[i]);
            }
            UNROLL for (int c = 0; c < n; c++) {
                __m512 xe = _mm512_loadu_ps(x + c * ldx + j);
                __m512 xo = _mm512_loadu_ps(x + c * ldx + j + BF16_GROUP / 2);
                PIN(xe);
                PIN(xo);
                UNROLL for (int i = 0; i < R; i++)
                    acc[i][c] = _mm512_fmadd_ps(wo[i], xo, _mm512_fmadd_ps(we[i], xe, acc[i][c]));
            }
        }
    for (; j + 16 <= cols; j += 16) {
        __m512 wv[8];
        UNROLL for (int i = 0; i < R; i++) {
            if ((j & (line_elems - 1)) == 0)
                sr_prefetch_stream(row[i] + (size_t)j * elem_size(f),
                                   j * (int64_t)elem_size(f), ldw * (int64_t)elem_size(f), R);
            wv[i] = load16(f, row[i], j);
        }
        UNROLL for (int c = 0; c < n; c++) {
            __m512 xv = _mm512_loadu_ps(x + c * ldx + j);
            PIN(xv);
            UNROLL for (int i = 0; i < R; i++) acc[i][c] = _mm512_fmadd_ps(wv[i], xv, acc[i][c]);
        }
    }
    if (tail) {
        __m512 wv[8];
        UNROLL for (int i = 0; i < R; i++) wv[i] = load16_mask(f, row[i], j, tmask);
        UNROLL for (int c = 0; c < n; c++) {
            __m512 xv = _mm512_maskz_loadu_ps(tmask, x + c * ldx + j);
            UNROLL for (int i = 0; i < R; i++) acc[i][c] = _mm512_fmadd_ps(wv[i], xv, acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) {
            float v = _mm512_reduce_add_ps(acc[i][c]);
            if (f == SR_W_INT8) v = (v * scb[r + i]) * SR_INT8_DEQUANT_SCALE;
            y[c * ldy + r + i] = v;
        }
}

/* Row r times one column: four partial sums (the FMA latency).  A thread's
 * rows follow each other in memory, so row by row it reads one stream; 4
 * rows at once (4 streams, sharing each x load) held the reads from DRAM
 * back: bf16 8192x2560 on the Zen 4 dev VM, two cores, 62 % of a 63.5 GB/s
 * probe with 4 rows, 85 % row by row; the 8-row kernel above, tried on the
 * 100352 x 2560 bf16 head, read 0.76-0.78 of the probe above 55 GB/s against
 * 0.90 row by row (BENCHMARKS.md, "Decode, eighth pass").  Every line is also
 * asked for into L2 ROW1_PREFETCH_AHEAD bytes ahead (past the row end: the
 * next row, the same stream): 8192x2560 against the probe pass before each
 * call, bf16 84-92 -> 91-98 % at ~36 GB/s and 67-71 -> 75-80 % at ~60 GB/s,
 * f32 93 -> 98 % and 81-82 -> 89 %; 512-1024 bytes ahead did as well, 2048
 * lost for bf16, into L1 lost everywhere (BENCHMARKS.md).
 * Only while x stays in L1 beside the stream (ROW1_MAX_COLS): with 8192
 * columns (32 KiB of x) row by row reloads x from L2 for every row and
 * fell to 50-70 % of the 4-row rate.  Not for LLM.int8 codes either: at
 * 4 x loads per 64 weight bytes row by row read 24-25 GB/s against 32-35
 * with 4 rows sharing them (BENCHMARKS.md).  bf16 takes x split even/odd
 * (matmul_kernels.h): widening in order was the limit at ~65 GB/s. */
#define ROW1_MAX_COLS 4096
#define ROW1_PREFETCH_AHEAD 1024
INLINE void dense_row1(sr_wformat f, const void *data, int64_t ldw, const float *scb,
                       int64_t cols, const float *x, float *y, int64_t r)
{
    const char *row = (const char *)data + (size_t)(r * ldw) * elem_size(f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    if (f == SR_W_BF16) { /* x split in groups of 32 */
        for (; j + 2 * BF16_GROUP <= cols; j += 2 * BF16_GROUP) {
            const char *ahead = row + 2 * j + ROW1_PREFETCH_AHEAD;
            _mm_prefetch(ahead, _MM_HINT_T1);
            _mm_prefetch(ahead + 64, _MM_HINT_T1);
            __m512 e0, o0, e1, o1;
            load32_bf16_split(row, j, &e0, &o0);
            load32_bf16_split(row, j + BF16_GROUP, &e1, &o1);
            a0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(x + j + 16), a1);
            a2 = _mm512_fmadd_ps(e1, _mm512_loadu_ps(x + j + 32), a2);
            a3 = _mm512_fmadd_ps(o1, _mm512_loadu_ps(x + j + 48), a3);
        }
        if (j + BF16_GROUP <= cols) {
            __m512 e0, o0;
            load32_bf16_split(row, j, &e0, &o0);
            a0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(x + j + 16), a1);
            j += BF16_GROUP;
        }
    }
    for (; j + 64 <= cols; j += 64) {
        const char *ahead = row + (size_t)j * elem_size(f) + ROW1_PREFETCH_AHEAD;
        for (int l = 0; l < 64 * (int)elem_size(f); l += 64) _mm_prefetch(ahead + l, _MM_HINT_T1);
        a0 = _mm512_fmadd_ps(load16(f, row, j), _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(load16(f, row, j + 16), _mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_fmadd_ps(load16(f, row, j + 32), _mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_fmadd_ps(load16(f, row, j + 48), _mm512_loadu_ps(x + j + 48), a3);
    }
    for (; j + 16 <= cols; j += 16)
        a0 = _mm512_fmadd_ps(load16(f, row, j), _mm512_loadu_ps(x + j), a0);
    if (j < cols) {
        const __mmask16 m = (__mmask16)((1u << (cols - j)) - 1);
        a1 = _mm512_fmadd_ps(load16_mask(f, row, j, m), _mm512_maskz_loadu_ps(m, x + j), a1);
    }
    float v = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    if (f == SR_W_INT8) v = (v * scb[r]) * SR_INT8_DEQUANT_SCALE;
    y[r] = v;
}

INLINE void dense_rows(sr_wformat f, const void *data, int64_t ldw, const float *scb,
                       int64_t cols, const float *x, int64_t ldx, float *y, int64_t ldy,
                       int64_t r0, int64_t r1, const int n)
{
    if (n == 1 && cols <= ROW1_MAX_COLS && f != SR_W_INT8) {
        for (int64_t r = r0; r < r1; r++) dense_row1(f, data, ldw, scb, cols, x, y, r);
        return;
    }
    int64_t r = r0;
    for (; r + DENSE_ROWS(n) <= r1; r += DENSE_ROWS(n))
        dense_block(f, data, ldw, scb, cols, x, ldx, y, ldy, r, DENSE_ROWS(n), n);
    for (; r + ROWS(n) <= r1; r += ROWS(n)) /* the rest: fewer rows at once */
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

enum { Q4_GROUP = 128 }; /* 16 lanes x 8 nibbles = one 64-byte load */

typedef struct q4_layout {
    __m512 tab;         /* the 16 code values */
    int shift;          /* log2(blocksize) */
    int wide;           /* blocksize >= group: one scale per group */
    __m512i lane_blk;   /* otherwise: block of lane d within the group */
    int nblk;           /* ... and the number of blocks in a group */
} q4_layout;

INLINE q4_layout q4_layout_of(const sr_qmatrix *w)
{
    q4_layout l;
    l.tab = _mm512_loadu_ps(sr_q4_table(w->fmt));
    l.shift = __builtin_ctz((unsigned)w->blocksize);
    l.wide = w->blocksize >= Q4_GROUP;
    /* Lane d holds group elements 8d..8d+7: block (8d >> shift). */
    l.lane_blk = _mm512_srlv_epi32(
        _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),
        _mm512_set1_epi32(l.shift));
    l.nblk = l.wide ? 1 : Q4_GROUP >> l.shift;
    return l;
}

/* Per-lane scales of the group starting at flat element e. */
INLINE __m512 q4_group_scales(const q4_layout *l, const float *scales, int64_t e)
{
    const float *s = scales + (e >> l->shift);
    __m512 v;
    switch (l->nblk) { /* load exactly the group's scales */
    case 1: return _mm512_set1_ps(*s);
    case 2: v = _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_load_sd((const double *)s))); break;
    case 4: v = _mm512_castps128_ps512(_mm_loadu_ps(s)); break;
    case 8: v = _mm512_castps256_ps512(_mm256_loadu_ps(s)); break;
    default: v = _mm512_loadu_ps(s); break;
    }
    return _mm512_permutexvar_ps(l->lane_blk, v);
}

/* Rows [r, r+R) times n permuted columns.  With few columns the scale is
 * applied once per group to a partial sum ("late"); with many, to the
 * weights (one multiply shared by n FMAs, fewer registers). */
INLINE void q4_block(const sr_qmatrix *w, const q4_layout *l, const float *xp, float *y,
                     int64_t ldy, int64_t r, const int R, const int n)
{
    const int late = n <= 4;
    const int P = R * n >= 4 ? 1 : 2; /* partial-sum chains (FMA latency) */
    const int64_t cols = w->cols, ngroups = cols / Q4_GROUP;
    const uint8_t *data = w->data;
    __m512 acc[4][8];
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ngroups; g++) {
        __m512i v[4];
        __m512 sv[4], t[4][8][2];
        UNROLL for (int i = 0; i < R; i++) {
            const uint8_t *src = data + (r + i) * (cols / 2) + g * (Q4_GROUP / 2);
            sr_prefetch_stream((const char *)src, g * (Q4_GROUP / 2), cols / 2, R);
            v[i] = _mm512_loadu_si512((const void *)src);
            sv[i] = q4_group_scales(l, w->scales, (r + i) * cols + g * Q4_GROUP);
            if (late)
                UNROLL for (int c = 0; c < n; c++)
                    UNROLL for (int q = 0; q < P; q++) t[i][c][q] = _mm512_setzero_ps();
        }
        const float *xg = xp + g * Q4_GROUP * n;
        UNROLL for (int k = 0; k < 8; k++) {
            __m512 wk[4];
            UNROLL for (int i = 0; i < R; i++) {
                /* vpermps reads only the low 4 bits of each index. */
                wk[i] = _mm512_permutexvar_ps(v[i], l->tab);
                v[i] = _mm512_srli_epi32(v[i], 4);
                if (!late) wk[i] = _mm512_mul_ps(wk[i], sv[i]);
            }
            UNROLL for (int c = 0; c < n; c++) {
                __m512 xv = _mm512_loadu_ps(xg + (k * n + c) * 16);
                PIN(xv);
                UNROLL for (int i = 0; i < R; i++) {
                    if (late)
                        t[i][c][k % P] = _mm512_fmadd_ps(wk[i], xv, t[i][c][k % P]);
                    else
                        acc[i][c] = _mm512_fmadd_ps(wk[i], xv, acc[i][c]);
                }
            }
        }
        if (late)
            UNROLL for (int i = 0; i < R; i++)
                UNROLL for (int c = 0; c < n; c++) {
                    __m512 s = P == 2 ? _mm512_add_ps(t[i][c][0], t[i][c][1]) : t[i][c][0];
                    acc[i][c] = _mm512_fmadd_ps(s, sv[i], acc[i][c]);
                }
    }
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) y[c * ldy + r + i] = _mm512_reduce_add_ps(acc[i][c]);
}

INLINE void q4_rows(const sr_qmatrix *w, const float *xp, float *y, int64_t ldy, int64_t r0,
                    int64_t r1, const int n)
{
    const q4_layout l = q4_layout_of(w);
    int64_t r = r0;
    for (; r + ROWS(n) <= r1; r += ROWS(n)) q4_block(w, &l, xp, y, ldy, r, ROWS(n), n);
    for (; r < r1; r++) q4_block(w, &l, xp, y, ldy, r, 1, n);
}

#define Q4_CALL(N) q4_rows(w, x, y, ldy, r0, r1, N)

static TARGET void decode_avx512(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
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

static TARGET void dot_f32_avx512(const float *w, int64_t ldw, int64_t cols, const float *x,
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
    if (bs < 16 || (bs & (bs - 1))) { /* 16-element chunks must not cross blocks */
        sr_dequant_flat_scalar(w, e0, e1, out);
        return;
    }
    const int shift = __builtin_ctz((unsigned)bs);
    const uint8_t *data = w->data;
    const __m512 tab = _mm512_loadu_ps(table);
    /* Bytes are duplicated (b0 b0 b1 b1 ...): even element = high nibble. */
    const __m512i nib_shift = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    int64_t j = e0;
    for (; j < e1 && (j & 15); j++) out[j - e0] = sr_q4_element(w, table, j);
    for (; j + 16 <= e1; j += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(data + j / 2));
        __m512i idx = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), nib_shift);
        __m512 q = _mm512_permutexvar_ps(idx, tab);
        _mm512_storeu_ps(out + (j - e0), _mm512_mul_ps(q, _mm512_set1_ps(w->scales[j >> shift])));
    }
    for (; j < e1; j++) out[j - e0] = sr_q4_element(w, table, j);
}

static TARGET void dequant_int8(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out)
{
    const int64_t cols = w->cols;
    const __m512 inv127 = _mm512_set1_ps(SR_INT8_DEQUANT_SCALE);
    for (int64_t e = e0; e < e1;) { /* one row segment at a time: SCB is per row */
        int64_t r = e / cols, j0 = e % cols;
        int64_t len = cols - j0 < e1 - e ? cols - j0 : e1 - e;
        const int8_t *src = (const int8_t *)w->data + r * cols + j0;
        float *dst = out + (e - e0);
        const __m512 scb = _mm512_set1_ps(w->scb[r]);
        for (int64_t i = 0; i < len; i += 16) {
            __mmask16 m = len - i >= 16 ? 0xFFFF : (__mmask16)((1u << (len - i)) - 1);
            __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, src + i)));
            /* Two roundings, as bnb: fl(fl(q * SCB) * 1/127). */
            _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(_mm512_mul_ps(q, scb), inv127));
        }
        e += len;
    }
}

static TARGET void dequant_avx512(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out)
{
    switch (w->fmt) {
    case SR_W_NF4:
    case SR_W_FP4: dequant_q4(w, e0, e1, out); return;
    case SR_W_INT8: dequant_int8(w, e0, e1, out); return;
    case SR_W_BF16:
    case SR_W_F16: {
        const uint16_t *p = (const uint16_t *)w->data;
        for (int64_t j = e0; j < e1; j += 16) {
            __mmask16 m = e1 - j >= 16 ? 0xFFFF : (__mmask16)((1u << (e1 - j)) - 1);
            __m256i h = _mm256_maskz_loadu_epi16(m, p + j);
            __m512 v = w->fmt == SR_W_F16
                           ? _mm512_cvtph_ps(h)
                           : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_mask_storeu_ps(out + (j - e0), m, v);
        }
        return;
    }
    default: sr_dequant_flat_scalar(w, e0, e1, out); return;
    }
}

/* Round to nearest even; NaN stays a quiet NaN (as sr_f32_to_bf16). */
static TARGET void to_bf16_avx512(const float *in, int64_t count, uint16_t *out)
{
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (int64_t i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? 0xFFFF : (__mmask16)((1u << (count - i)) - 1);
        __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, in + i));
        __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i rounded = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
        rounded = _mm512_mask_or_epi32(rounded, nan, hi, quiet);
        _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(rounded));
    }
}

const sr_kernels sr_kernels_avx512 = {
    .isa = SR_ISA_AVX512,
    .q4_group = Q4_GROUP,
    .bf16_group = BF16_GROUP,
    .decode = decode_avx512,
    .dot_f32 = dot_f32_avx512,
    .dequant = dequant_avx512,
    .to_bf16 = to_bf16_avx512,
};

#else  /* not x86: never selected (sr_kernels_for only picks what cpuid reports) */
const sr_kernels sr_kernels_avx512 = {.isa = SR_ISA_SCALAR};
#endif
