/* Opt-in int8 kernels on AVX-512 VNNI (STRATA_KERNELS=int8 or
 * sr_matmul_set_mode): Y = X · Wᵀ for NF4 / FP4 and LLM.int8 weights with the
 * activations quantized to int8, multiplied with vpdpbusd.  The numerics
 * (activation blocks, int8 code tables) are documented in matmul_kernels.h.
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes.  The weights are the
 * unsigned side, stored as code + 128: the 4-bit table lookup (vpshufb)
 * produces them at no cost and an LLM.int8 code needs one xor.  The
 * activations are the signed side.  The extra 128 · Σq of an activation
 * block is removed by starting that block's int32 accumulator at -128 · Σq,
 * so every int32 sum is exactly Σ code · q.
 *
 * Decode (n <= 8): x is quantized once per call into groups laid out for
 * the kernel (xgroup_q4 / xgroup_i8 below); each 64-byte weight load feeds
 * one (int8) or two (4-bit) vpdpbusd per column, and the per-lane scales
 * are applied in f32 once per group.
 * Prefill (n > 8): each thread repacks strips of 16 weight rows into the
 * vpdpbusd layout (4 consecutive k of 16 rows per 64 bytes) and runs a
 * register-blocked micro-kernel of up to PF_MR activation rows against one
 * strip, one int32 accumulator per row and 32-element activation block.
 *
 * Every AVX-512 function carries a target attribute; nothing runs before
 * cpuid has reported AVX-512 F/BW/VL/DQ and VNNI. */
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant/matmul_kernels.h"
#include "quant/prefetch.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

/* ---- the documented numerics (portable) -------------------------------- */

/* rint(a · code) of the bnb tables (quant/bnb4.c) with a = SR_INT8_NF4_SCALE
 * or SR_INT8_FP4_SCALE; tests/quant/test_matmul_int8.c recomputes them. */
static const int8_t nf4_int8[16] = {-123, -86, -65, -49, -35, -23, -11, 0,
                                    10,   20,  30,  42,  54,  69,  89,  123};
static const int8_t fp4_int8[16] = {0, 1, 80, 120, 40, 60, 20, 30,
                                    0, -1, -80, -120, -40, -60, -20, -30};

const int8_t *sr_int8_q4_table(sr_wformat f) { return f == SR_W_FP4 ? fp4_int8 : nf4_int8; }

float sr_int8_q4_scale(sr_wformat f)
{
    return f == SR_W_FP4 ? SR_INT8_FP4_SCALE : SR_INT8_NF4_SCALE;
}

/* Scalar version of the activation quantizer (CPUs without the kernels). */
static float quantize_block_scalar(const float *x, int len, int8_t *q, int32_t *sum)
{
    float m = 0;
    int finite = 1;
    for (int i = 0; i < len; i++) {
        if (!isfinite(x[i])) finite = 0;
        else if (fabsf(x[i]) > m) m = fabsf(x[i]);
    }
    memset(q, 0, SR_INT8_XBLOCK);
    *sum = 0;
    if (!finite) return NAN;
    if (m == 0) return 0;
    float inv = 127.0f / m;
    for (int i = 0; i < len; i++) {
        q[i] = (int8_t)lrintf(x[i] * inv);
        *sum += q[i];
    }
    return m;
}

/* ---- mode selection ---------------------------------------------------- */

static atomic_int mode_state = -1; /* -1: STRATA_KERNELS not read yet */

void sr_matmul_set_mode(sr_matmul_mode mode) { atomic_store(&mode_state, (int)mode); }

sr_matmul_mode sr_matmul_get_mode(void)
{
    int m = atomic_load(&mode_state);
    if (m >= 0) return (sr_matmul_mode)m;
    const char *env = getenv("STRATA_KERNELS");
    int want = SR_MATMUL_EXACT, unknown = 0;
    if (env && !strcmp(env, "int8")) want = SR_MATMUL_INT8;
    else if (env && *env && strcmp(env, "exact")) unknown = 1;
    int expected = -1;
    if (!atomic_compare_exchange_strong(&mode_state, &expected, want))
        return (sr_matmul_mode)expected; /* another thread read it first */
    if (unknown) sr_warn("STRATA_KERNELS=%s: unknown value (exact|int8); using exact", env);
    if (want == SR_MATMUL_INT8 && !sr_matmul_int8_available())
        sr_warn("STRATA_KERNELS=int8: this CPU has no AVX-512 VNNI; using the exact kernels");
    return (sr_matmul_mode)want;
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 9 || defined(__clang__))
#include <immintrin.h>

#define TARGET \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
/* GCC must unroll the register-array loops completely, or they live in memory. */
#define UNROLL _Pragma("GCC unroll 16")

int sr_matmul_int8_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}

/* ---- activation quantization ------------------------------------------- */

static inline __mmask16 mask16(int len)
{
    return len >= 16 ? (__mmask16)0xFFFF : len <= 0 ? 0 : (__mmask16)((1u << len) - 1);
}

/* One activation block: the first len (<= 32, may be <= 0) floats at x, the
 * rest zero -> int32 codes q[0] (elements 0..15), q[1] (16..31).  Returns
 * max|x| (NaN if a value is not finite; codes 0 then) and *sum = Σ codes. */
INLINE float xblock_quant(const float *x, int len, __m512i q[2], int32_t *sum)
{
    __m512 a = _mm512_maskz_loadu_ps(mask16(len), x);
    __m512 b = _mm512_maskz_loadu_ps(mask16(len - 16), x + 16);
    q[0] = q[1] = _mm512_setzero_si512();
    *sum = 0;
    /* QNaN, SNaN, +Inf, -Inf */
    if (_mm512_fpclass_ps_mask(a, 0x99) | _mm512_fpclass_ps_mask(b, 0x99)) return NAN;
    float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    if (m == 0) return 0;
    const __m512 inv = _mm512_set1_ps(127.0f / m);
    q[0] = _mm512_cvt_roundps_epi32(_mm512_mul_ps(a, inv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q[1] = _mm512_cvt_roundps_epi32(_mm512_mul_ps(b, inv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
    return m;
}

static TARGET void quantize_x_avx512(const float *x, int64_t len, int8_t *q, float *absmax,
                                     int32_t *sum)
{
    for (int64_t b = 0; b * SR_INT8_XBLOCK < len; b++) {
        __m512i v[2];
        int64_t left = len - b * SR_INT8_XBLOCK;
        absmax[b] = xblock_quant(x + b * SR_INT8_XBLOCK, left < 32 ? (int)left : 32, v, &sum[b]);
        _mm_storeu_si128((__m128i *)(q + b * SR_INT8_XBLOCK), _mm512_cvtepi32_epi8(v[0]));
        _mm_storeu_si128((__m128i *)(q + b * SR_INT8_XBLOCK + 16), _mm512_cvtepi32_epi8(v[1]));
    }
}

void sr_int8_quantize_x(const float *x, int64_t len, int8_t *q, float *absmax, int32_t *sum)
{
    if (sr_matmul_int8_available()) {
        quantize_x_avx512(x, len, q, absmax, sum);
        return;
    }
    for (int64_t b = 0; b * SR_INT8_XBLOCK < len; b++) {
        int64_t left = len - b * SR_INT8_XBLOCK;
        absmax[b] = quantize_block_scalar(x + b * SR_INT8_XBLOCK, left < 32 ? (int)left : 32,
                                          q + b * SR_INT8_XBLOCK, &sum[b]);
    }
}

/* The f32 factor of an activation block's int32 sums: d = max|x| / 127 times
 * the weight codes' 1/a (4-bit) or 1/127 (LLM.int8), in one rounding. */
static float code_divisor(sr_wformat f)
{
    return f == SR_W_INT8 ? 127.0f * 127.0f : 127.0f * sr_int8_q4_scale(f);
}

/* ---- decode: activation groups ------------------------------------------

 * 4-bit: a group is 128 elements = one 64-byte load of nibbles.  lo holds
 * the low nibbles' elements (odd: 2i+1), hi the high nibbles' (even: 2i),
 * so vpdpbusd lane l sums elements 8l..8l+7 of the group, and activation
 * block k (32 elements) is lanes 4k..4k+3.  corr[4k] = -128 · Σq of block
 * k (other lanes 0); dv[l] = its scale d / a.
 * LLM.int8: a group is 64 elements in natural order; block k is lanes
 * 8k..8k+7, corr[8k] = -128 · Σq, dv[l] = d / 127. */
typedef struct xgroup_q4 {
    int8_t lo[64], hi[64];
    int32_t corr[16];
    float dv[16];
} xgroup_q4;

typedef struct xgroup_i8 {
    int8_t q[64];
    int32_t corr[16];
    float dv[16];
} xgroup_i8;

enum { Q4_GROUP = 128, I8_GROUP = 64 };

/* Columns c < n of x -> xp[g * n + c], groups g < ngroups (zero-padded). */
static TARGET void pack_x_q4(const float *x, int64_t n, int64_t ldx, int64_t cols,
                             int64_t ngroups, float div, xgroup_q4 *xp)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t g = 0; g < ngroups; g++)
        for (int64_t c = 0; c < n; c++) {
            xgroup_q4 *xg = xp + g * n + c;
            memset(xg->corr, 0, sizeof xg->corr);
            for (int k = 0; k < 4; k++) {
                int64_t e = g * Q4_GROUP + 32 * k, left = cols - e;
                __m512i q[2];
                int32_t sum;
                float m = xblock_quant(x + c * ldx + e, left < 0 ? 0 : left < 32 ? (int)left : 32,
                                       q, &sum);
                __m512i ev = _mm512_permutex2var_epi32(q[0], even, q[1]);
                __m512i od = _mm512_permutex2var_epi32(q[0], odd, q[1]);
                _mm_storeu_si128((__m128i *)(xg->hi + 16 * k), _mm512_cvtepi32_epi8(ev));
                _mm_storeu_si128((__m128i *)(xg->lo + 16 * k), _mm512_cvtepi32_epi8(od));
                xg->corr[4 * k] = -128 * sum;
                for (int l = 0; l < 4; l++) xg->dv[4 * k + l] = m / div;
            }
        }
}

static TARGET void pack_x_i8(const float *x, int64_t n, int64_t ldx, int64_t cols,
                             int64_t ngroups, xgroup_i8 *xp)
{
    const float div = code_divisor(SR_W_INT8);
    for (int64_t g = 0; g < ngroups; g++)
        for (int64_t c = 0; c < n; c++) {
            xgroup_i8 *xg = xp + g * n + c;
            memset(xg->corr, 0, sizeof xg->corr);
            for (int k = 0; k < 2; k++) {
                int64_t e = g * I8_GROUP + 32 * k, left = cols - e;
                __m512i q[2];
                int32_t sum;
                float m = xblock_quant(x + c * ldx + e, left < 0 ? 0 : left < 32 ? (int)left : 32,
                                       q, &sum);
                _mm_storeu_si128((__m128i *)(xg->q + 32 * k), _mm512_cvtepi32_epi8(q[0]));
                _mm_storeu_si128((__m128i *)(xg->q + 32 * k + 16), _mm512_cvtepi32_epi8(q[1]));
                xg->corr[8 * k] = -128 * sum;
                for (int l = 0; l < 8; l++) xg->dv[8 * k + l] = m / div;
            }
        }
}

/* ---- decode kernels ------------------------------------------------------ */

/* The 4-bit codes + 128 (vpdpbusd's unsigned side) for vpshufb, in every
 * 128-bit lane. */
INLINE __m512i q4_code_table(sr_wformat f)
{
    uint8_t t[16];
    const int8_t *codes = sr_int8_q4_table(f);
    for (int i = 0; i < 16; i++) t[i] = (uint8_t)(codes[i] + 128);
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
}

/* Rows computed together: every activation load serves R rows.  R * n f32
 * accumulators plus 2R weight vectors must fit the 32 registers. */
#define ROWS(n) ((n) <= 2 ? 4 : 2)

typedef struct q4_mat {
    const uint8_t *data;
    const float *scales;
    int64_t cols, nblocks;
    int shift; /* log2(blocksize) */
    __m512i tab; /* code + 128 for the 16 nibbles, in every 128-bit lane */
    /* cols % 128 == 0: groups start on multiples of 128, so a group holds
     * nblk = max(1, 128 / blocksize) whole blocks; lane l is in block
     * lane_blk[l] of them. */
    int nblk;
    __m512i lane_blk;
} q4_mat;

static TARGET q4_mat q4_mat_of(const sr_qmatrix *w)
{
    q4_mat m;
    m.data = w->data;
    m.scales = w->scales;
    m.cols = w->cols;
    m.nblocks = (w->rows * w->cols + w->blocksize - 1) / w->blocksize;
    m.shift = __builtin_ctz((unsigned)w->blocksize);
    m.tab = q4_code_table(w->fmt);
    m.nblk = w->blocksize >= Q4_GROUP ? 1 : Q4_GROUP >> m.shift;
    m.lane_blk = _mm512_srlv_epi32(
        _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),
        _mm512_set1_epi32(m.shift));
    return m;
}

/* Per-lane weight scales of the group starting at flat element e.  aligned:
 * the layout of q4_mat; otherwise e is only a multiple of 32 and the group
 * may be the partial last one of its row (masked to `lanes` lanes). */
INLINE __m512 q4_scales(const q4_mat *m, int64_t e, const int aligned, __mmask16 lanes)
{
    const float *s = m->scales + (e >> m->shift);
    if (aligned) {
        __m512 v;
        switch (m->nblk) { /* load exactly the group's scales */
        case 1: return _mm512_set1_ps(*s);
        case 2: v = _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_load_sd((const double *)s))); break;
        default: v = _mm512_castps128_ps512(_mm_loadu_ps(s)); break;
        }
        return _mm512_permutexvar_ps(m->lane_blk, v);
    }
    const int64_t first = e >> m->shift;
    const int off = (int)(e & ((INT64_C(1) << m->shift) - 1));
    int64_t cnt = ((off + Q4_GROUP - 1) >> m->shift) + 1;
    if (cnt > m->nblocks - first) cnt = m->nblocks - first;
    __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1), s);
    __m512i idx = _mm512_srlv_epi32(
        _mm512_add_epi32(_mm512_set1_epi32(off),
                         _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96,
                                           104, 112, 120)),
        _mm512_set1_epi32(m->shift));
    return _mm512_maskz_permutexvar_ps(lanes, idx, v);
}

/* One group (g) of rows [r, r+R) against n columns.  tail: the partial
 * last group of a row (bytes masked, lanes beyond the row get scale 0). */
INLINE void q4_group(const q4_mat *m, const xgroup_q4 *xg, int64_t g, int64_t r, const int R,
                     const int n, const int aligned, const int tail, __mmask64 bytes,
                     __mmask16 lanes, __m512 acc[4][8])
{
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const int64_t row_bytes = m->cols / 2;
    __m512i lo[4], hi[4];
    __m512 sv[4];
    UNROLL for (int i = 0; i < R; i++) {
        const uint8_t *src = m->data + (r + i) * row_bytes + g * (Q4_GROUP / 2);
        sr_prefetch_stream(src, g * (Q4_GROUP / 2), row_bytes, R);
        __m512i v = tail ? _mm512_maskz_loadu_epi8(bytes, src) : _mm512_loadu_si512(src);
        lo[i] = _mm512_shuffle_epi8(m->tab, _mm512_and_si512(v, nib));
        hi[i] = _mm512_shuffle_epi8(m->tab, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
        sv[i] = q4_scales(m, (r + i) * m->cols + g * Q4_GROUP, aligned, lanes);
    }
    UNROLL for (int c = 0; c < n; c++) {
        const __m512i xl = _mm512_load_si512(xg[c].lo), xh = _mm512_load_si512(xg[c].hi);
        const __m512i corr = _mm512_load_si512(xg[c].corr);
        const __m512 dv = _mm512_load_ps(xg[c].dv);
        UNROLL for (int i = 0; i < R; i++) {
            __m512i s = _mm512_dpbusd_epi32(corr, lo[i], xl);
            s = _mm512_dpbusd_epi32(s, hi[i], xh);
            acc[i][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sv[i], dv),
                                        acc[i][c]);
        }
    }
}

INLINE void q4_block(const q4_mat *m, const xgroup_q4 *xp, float *y, int64_t ldy, int64_t r,
                     const int R, const int n, const int aligned)
{
    const int64_t full = m->cols / Q4_GROUP, rest = m->cols % Q4_GROUP;
    __m512 acc[4][8];
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < full; g++)
        q4_group(m, xp + g * n, g, r, R, n, aligned, 0, 0, 0xFFFF, acc);
    if (!aligned && rest) /* rest is 32, 64 or 96 elements */
        q4_group(m, xp + full * n, full, r, R, n, 0, 1,
                 (__mmask64)((UINT64_C(1) << (rest / 2)) - 1), (__mmask16)((1u << (rest / 8)) - 1),
                 acc);
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) y[c * ldy + r + i] = _mm512_reduce_add_ps(acc[i][c]);
}

INLINE void q4_rows(const q4_mat *m, const xgroup_q4 *xp, float *y, int64_t ldy, int64_t r0,
                    int64_t r1, const int n, const int aligned)
{
    int64_t r = r0;
    for (; r + ROWS(n) <= r1; r += ROWS(n)) q4_block(m, xp, y, ldy, r, ROWS(n), n, aligned);
    for (; r < r1; r++) q4_block(m, xp, y, ldy, r, 1, n, aligned);
}

/* LLM.int8: one group (g) of rows [r, r+R) against n columns; tail: the
 * partial last group of a row (bytes masked). */
INLINE void i8_group(const sr_qmatrix *w, const xgroup_i8 *xg, int64_t g, int64_t r, const int R,
                     const int n, const int tail, __mmask64 bytes, __m512 acc[4][8])
{
    const int64_t cols = w->cols;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i u[4];
    UNROLL for (int i = 0; i < R; i++) {
        const uint8_t *src = (const uint8_t *)w->data + (r + i) * cols + g * I8_GROUP;
        sr_prefetch_stream(src, g * I8_GROUP, cols, R);
        __m512i v = tail ? _mm512_maskz_loadu_epi8(bytes, src) : _mm512_loadu_si512(src);
        u[i] = _mm512_xor_si512(v, flip); /* code + 128 */
    }
    UNROLL for (int c = 0; c < n; c++) {
        const __m512i xq = _mm512_load_si512(xg[c].q), corr = _mm512_load_si512(xg[c].corr);
        const __m512 dv = _mm512_load_ps(xg[c].dv);
        UNROLL for (int i = 0; i < R; i++)
            acc[i][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, u[i], xq)),
                                        dv, acc[i][c]);
    }
}

/* Rows [r, r+R), all groups; the row scale SCB at the end. */
INLINE void i8_block(const sr_qmatrix *w, const xgroup_i8 *xp, float *y, int64_t ldy, int64_t r,
                     const int R, const int n)
{
    const int64_t full = w->cols / I8_GROUP, rest = w->cols % I8_GROUP;
    __m512 acc[4][8];
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < full; g++) i8_group(w, xp + g * n, g, r, R, n, 0, 0, acc);
    if (rest)
        i8_group(w, xp + full * n, full, r, R, n, 1, (__mmask64)((UINT64_C(1) << rest) - 1), acc);
    UNROLL for (int i = 0; i < R; i++)
        UNROLL for (int c = 0; c < n; c++)
            y[c * ldy + r + i] = _mm512_reduce_add_ps(acc[i][c]) * w->scb[r + i];
}

INLINE void i8_rows(const sr_qmatrix *w, const xgroup_i8 *xp, float *y, int64_t ldy, int64_t r0,
                    int64_t r1, const int n)
{
    int64_t r = r0;
    for (; r + ROWS(n) <= r1; r += ROWS(n)) i8_block(w, xp, y, ldy, r, ROWS(n), n);
    for (; r < r1; r++) i8_block(w, xp, y, ldy, r, 1, n);
}

#define Q4_ALIGNED(N) q4_rows(m, xp, y, ldy, r0, r1, N, 1)
#define Q4_GENERIC(N) q4_rows(m, xp, y, ldy, r0, r1, N, 0)
#define I8_CALL(N) i8_rows(w, xp, y, ldy, r0, r1, N)

static TARGET void q4_decode_rows(const q4_mat *m, const xgroup_q4 *xp, int64_t n, float *y,
                                  int64_t ldy, int64_t r0, int64_t r1)
{
    if (m->cols % Q4_GROUP == 0) {
        FOR_N(Q4_ALIGNED)
    } else {
        FOR_N(Q4_GENERIC)
    }
}

static TARGET void i8_decode_rows(const sr_qmatrix *w, const xgroup_i8 *xp, int64_t n, float *y,
                                  int64_t ldy, int64_t r0, int64_t r1)
{
    FOR_N(I8_CALL)
}

/* Rows per unit of OpenMP work (a multiple of 16: threads stay off each
 * other's cache lines of y) and the size below which one thread does it. */
#define ROW_CHUNK 16
#define PARALLEL_MIN_ELEMS (1 << 16)

/* n <= 8 columns.  Returns -1 if the activation buffer cannot be had. */
static TARGET int decode_int8(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
                              float *y, int64_t ldy)
{
    const int64_t rows = w->rows, cols = w->cols;
    const int q4 = sr_wformat_is_4bit(w->fmt);
    const int64_t group = q4 ? Q4_GROUP : I8_GROUP;
    const int64_t ngroups = (cols + group - 1) / group;
    const size_t gbytes = q4 ? sizeof(xgroup_q4) : sizeof(xgroup_i8);
    void *xp = sr_malloc_aligned((size_t)(ngroups * n) * gbytes);
    if (!xp) return -1;
    q4_mat m;
    memset(&m, 0, sizeof m);
    if (q4) {
        m = q4_mat_of(w);
        pack_x_q4(x, n, ldx, cols, ngroups, code_divisor(w->fmt), xp);
    } else {
        pack_x_i8(x, n, ldx, cols, ngroups, xp);
    }
    const int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
    /* guided: a thread that loses its core mid-call leaves its remaining
     * chunks to the others (static split: the step waits for it).  Measured
     * with one core taken by another process: mean call -10%; the same on a
     * quiet machine.  Chunks of >= 4 x 16 rows keep the prefetch that runs
     * past a chunk's end a small share of the bytes read. */
#pragma omp parallel for schedule(guided, 4) if (rows * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t r0 = ch * ROW_CHUNK, r1 = r0 + ROW_CHUNK < rows ? r0 + ROW_CHUNK : rows;
        if (q4) q4_decode_rows(&m, xp, n, y, ldy, r0, r1);
        else i8_decode_rows(w, xp, n, y, ldy, r0, r1);
    }
    sr_free_aligned(xp);
    return 0;
}

/* ---- prefill --------------------------------------------------------------
 *
 * Activations: row-major int8 codes (rows padded with zeros to kp, a
 * multiple of 32), and per row and 32-block the f32 factor xd = d / a (or
 * d / 127) and the int32 start value xc = -128 · Σq.
 * Weights: a strip of 16 rows over a slice of PF_KC columns is repacked per
 * thread into packed[k/4][16 rows][4 bytes] (code + 128) with the scales
 * ps[k/32][16 rows] (block scale, or SCB for LLM.int8). */
enum {
    PF_MR = 12,     /* activation rows per micro-kernel call: 2 * 12 + 2 registers */
    PF_KC = 512,    /* columns per repacked slice: a strip is 8 KiB, stays in L1 */
    PF_TILE = 256,  /* weight rows per unit of OpenMP work */
};

typedef struct xquant {
    const int8_t *q;
    const float *d;
    const int32_t *corr;
    int64_t kp, nkb; /* row strides of q and of d / corr */
} xquant;

/* y[m][0..16) (+)= strip against activation rows m < M over one slice of
 * kk columns starting at block kb0.  first: the slice is the row's first,
 * y is written, not accumulated. */
INLINE void pf_kernel(const uint8_t *packed, const float *ps, const xquant *xq, int64_t m0,
                      int64_t kb0, int64_t kk, float *y, int64_t ldy, __mmask16 mask, int first,
                      const int M)
{
    __m512 acc[PF_MR];
    UNROLL for (int m = 0; m < M; m++)
        acc[m] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + m * ldy);
    const int8_t *xrow = xq->q + m0 * xq->kp + kb0 * SR_INT8_XBLOCK;
    for (int64_t kb = 0; kb < kk / SR_INT8_XBLOCK; kb++) {
        __m512i s[PF_MR];
        UNROLL for (int m = 0; m < M; m++)
            s[m] = _mm512_set1_epi32(xq->corr[(m0 + m) * xq->nkb + kb0 + kb]);
        UNROLL for (int k4 = 0; k4 < SR_INT8_XBLOCK / 4; k4++) {
            const __m512i b = _mm512_load_si512(packed + (kb * 8 + k4) * 64);
            UNROLL for (int m = 0; m < M; m++) {
                int32_t a;
                memcpy(&a, xrow + m * xq->kp + kb * SR_INT8_XBLOCK + k4 * 4, 4);
                s[m] = _mm512_dpbusd_epi32(s[m], b, _mm512_set1_epi32(a));
            }
        }
        const __m512 sc = _mm512_load_ps(ps + kb * 16);
        UNROLL for (int m = 0; m < M; m++) {
            __m512 d = _mm512_set1_ps(xq->d[(m0 + m) * xq->nkb + kb0 + kb]);
            acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[m]), d), sc, acc[m]);
        }
    }
    UNROLL for (int m = 0; m < M; m++) _mm512_mask_storeu_ps(y + m * ldy, mask, acc[m]);
}

#define PF_CALL(M_)                                                                          \
    case M_:                                                                               \
        pf_kernel(packed, ps, xq, m0, kb0, kk, y + m0 * ldy, ldy, mask, first, M_);         \
        break;

static TARGET void pf_strip(const uint8_t *packed, const float *ps, const xquant *xq, int64_t n,
                            int64_t kb0, int64_t kk, float *y, int64_t ldy, __mmask16 mask,
                            int first)
{
    for (int64_t m0 = 0; m0 < n; m0 += PF_MR) {
        switch (n - m0 < PF_MR ? n - m0 : PF_MR) {
            PF_CALL(1) PF_CALL(2) PF_CALL(3) PF_CALL(4) PF_CALL(5) PF_CALL(6)
            PF_CALL(7) PF_CALL(8) PF_CALL(9) PF_CALL(10) PF_CALL(11) PF_CALL(12)
        default: break;
        }
    }
}

/* Codes + 128 of columns [k0, k0 + kk) of rows rs..rs+15 (rows past the
 * matrix and columns past cols: 0) into packed, scales into ps.  tmp holds
 * the 16 rows in natural order first (16 * PF_KC bytes). */
static TARGET void pf_pack_strip(const sr_qmatrix *w, int64_t rs, int64_t k0, int64_t kk,
                                 uint8_t *tmp, uint8_t *packed, float *ps)
{
    if (w->tiles && w->fmt == SR_W_INT8) { /* chunks of 4 columns: packed's layout */
        const int64_t t = rs / SR_QTILE_ROWS;
        memcpy(packed, w->tiles + t * sr_qtile_tile_bytes(w) + k0 / 4 * 64, (size_t)(kk / 4 * 64));
        for (int64_t kb = 0; kb < kk / SR_INT8_XBLOCK; kb++)
            memcpy(ps + kb * 16, w->tile_row_scale + t * SR_QTILE_ROWS, 16 * sizeof(float));
        return;
    }
    if (w->tiles) { /* rs is a multiple of 16: tile rs / 16, already in this layout */
        const int64_t t = rs / SR_QTILE_ROWS;
        const int shift = __builtin_ctz((unsigned)w->blocksize);
        const __m512i tab = q4_code_table(w->fmt);
        const __m512i nib = _mm512_set1_epi8(0x0F);
        const int64_t per_group = w->blocksize / 4; /* chunks of a full group */
        const uint8_t *src = NULL;
        for (int64_t c = 0; c < kk / 8; c++, src += 64) { /* kk <= cols - k0: cols % 32 == 0 */
            const int64_t cc = k0 / 8 + c;
            if (c == 0 || cc % per_group == 0) src = sr_qtile_chunk(w, t, cc); /* past the scales */
            const __m512i v = _mm512_load_si512(src);
            _mm512_store_si512(packed + 128 * c, _mm512_shuffle_epi8(tab, _mm512_and_si512(v, nib)));
            _mm512_store_si512(packed + 128 * c + 64,
                               _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib)));
        }
        const __m512 rsc = _mm512_load_ps(w->tile_row_scale + t * SR_QTILE_ROWS);
        for (int64_t kb = 0; kb < kk / SR_INT8_XBLOCK; kb++) {
            const int64_t b = (k0 + kb * SR_INT8_XBLOCK) >> shift;
            const __m256i h = _mm256_loadu_si256(
                (const __m256i *)(sr_qtile_group_scales(w, t, b / 2) + 16 * (b & 1)));
            _mm512_storeu_ps(ps + kb * 16, _mm512_mul_ps(rsc, _mm512_cvtph_ps(h)));
        }
        return;
    }
    const int64_t rows = w->rows, cols = w->cols, nkb = kk / SR_INT8_XBLOCK;
    const int64_t valid = cols - k0 < kk ? cols - k0 : kk;
    const int q4 = sr_wformat_is_4bit(w->fmt);
    __m128i tab = _mm_setzero_si128();
    int shift = 0;
    if (q4) {
        uint8_t t[16];
        const int8_t *codes = sr_int8_q4_table(w->fmt);
        for (int i = 0; i < 16; i++) t[i] = (uint8_t)(codes[i] + 128);
        tab = _mm_loadu_si128((const __m128i *)t);
        shift = __builtin_ctz((unsigned)w->blocksize);
    }
    const __m128i nib = _mm_set1_epi8(0x0F);
    for (int j = 0; j < 16; j++) {
        const int64_t r = rs + j;
        uint8_t *row = tmp + j * PF_KC;
        if (r >= rows) {
            memset(row, 0, (size_t)kk);
            for (int64_t kb = 0; kb < nkb; kb++) ps[kb * 16 + j] = 0;
            continue;
        }
        if (q4) { /* valid is a multiple of 32 (cols % 32 == 0) */
            const uint8_t *src = (const uint8_t *)w->data + (r * cols + k0) / 2;
            for (int64_t e = 0; e < valid; e += 32) {
                __m128i b = _mm_loadu_si128((const __m128i *)(src + e / 2));
                __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), nib), lo = _mm_and_si128(b, nib);
                _mm_storeu_si128((__m128i *)(row + e),
                                 _mm_shuffle_epi8(tab, _mm_unpacklo_epi8(hi, lo)));
                _mm_storeu_si128((__m128i *)(row + e + 16),
                                 _mm_shuffle_epi8(tab, _mm_unpackhi_epi8(hi, lo)));
            }
            for (int64_t kb = 0; kb < nkb; kb++)
                ps[kb * 16 + j] = kb * SR_INT8_XBLOCK < valid
                                      ? w->scales[(r * cols + k0 + kb * SR_INT8_XBLOCK) >> shift]
                                      : 0.0f;
        } else {
            const int8_t *src = (const int8_t *)w->data + r * cols + k0;
            const __m512i flip = _mm512_set1_epi8((char)0x80);
            for (int64_t e = 0; e < kk; e += 64) {
                int64_t left = valid - e;
                __mmask64 mk = left >= 64  ? ~(__mmask64)0
                               : left <= 0 ? 0
                                           : (__mmask64)((UINT64_C(1) << left) - 1);
                __m512i v = _mm512_maskz_loadu_epi8(mk, src + e);
                /* Columns past cols get 0 ^ 0x80: harmless, their activations are 0. */
                _mm512_mask_storeu_epi8(row + e,
                                        kk - e >= 64 ? ~(__mmask64)0
                                                     : (__mmask64)((UINT64_C(1) << (kk - e)) - 1),
                                        _mm512_xor_si512(v, flip));
            }
            for (int64_t kb = 0; kb < nkb; kb++) ps[kb * 16 + j] = w->scb[r];
        }
    }
    /* 16 rows x 4 bytes per k/4: the vpdpbusd layout. */
    for (int64_t k4 = 0; k4 < kk / 4; k4++)
        for (int j = 0; j < 16; j++) memcpy(packed + k4 * 64 + j * 4, tmp + j * PF_KC + k4 * 4, 4);
}

/* One activation row: codes (padded with zeros to kp) and per 32-block the
 * f32 factor and the int32 start value. */
static TARGET void quantize_row(const float *x, int64_t cols, float div, int8_t *q, float *d,
                                int32_t *corr, int64_t kp)
{
    for (int64_t kb = 0; kb < kp / SR_INT8_XBLOCK; kb++) {
        __m512i v[2];
        int32_t sum;
        int64_t left = cols - kb * SR_INT8_XBLOCK;
        float mx = xblock_quant(x + kb * SR_INT8_XBLOCK, left < 32 ? (int)left : 32, v, &sum);
        int8_t *dst = q + kb * SR_INT8_XBLOCK;
        _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(v[0]));
        _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtepi32_epi8(v[1]));
        d[kb] = mx / div;
        corr[kb] = -128 * sum;
    }
}

/* n activation rows quantized for weights of format f into xq (buffers of
 * its own; xquant_free).  Returns -1 if the buffers cannot be had. */
static int xquant_make(const float *x, int64_t n, int64_t ldx, int64_t cols, sr_wformat f,
                       xquant *xq)
{
    const int64_t kp = (cols + SR_INT8_XBLOCK - 1) / SR_INT8_XBLOCK * SR_INT8_XBLOCK;
    const int64_t nkb = kp / SR_INT8_XBLOCK;
    int8_t *q = sr_malloc_aligned((size_t)(n * kp));
    float *d = sr_malloc_aligned((size_t)(n * nkb) * sizeof(float));
    int32_t *corr = sr_malloc_aligned((size_t)(n * nkb) * sizeof(int32_t));
    *xq = (xquant){q, d, corr, kp, nkb};
    if (!q || !d || !corr) return -1;
    const float div = code_divisor(f);
#pragma omp parallel for schedule(static) if (n * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t m = 0; m < n; m++)
        quantize_row(x + m * ldx, cols, div, q + m * kp, d + m * nkb, corr + m * nkb, kp);
    return 0;
}

static void xquant_free(xquant *xq)
{
    sr_free_aligned((void *)xq->q);
    sr_free_aligned((void *)xq->d);
    sr_free_aligned((void *)xq->corr);
}

/* Returns -1 if the buffers cannot be had. */
static TARGET int prefill_int8(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
                               float *y, int64_t ldy)
{
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t kp = (cols + SR_INT8_XBLOCK - 1) / SR_INT8_XBLOCK * SR_INT8_XBLOCK;
    int nt = omp_get_max_threads();
    if (rows * cols < PARALLEL_MIN_ELEMS) nt = 1;
    /* Tile rows: PF_TILE, or fewer (a multiple of 16) so every thread gets one. */
    int64_t tr = ((rows + nt - 1) / nt + 15) & ~(int64_t)15;
    if (tr > PF_TILE) tr = PF_TILE;
    const int64_t ntiles = (rows + tr - 1) / tr;
    const size_t thread_bytes = 2 * 16 * PF_KC + PF_KC / SR_INT8_XBLOCK * 16 * sizeof(float);
    uint8_t *scratch = sr_malloc_aligned((size_t)nt * thread_bytes);
    xquant xq;
    if (xquant_make(x, n, ldx, cols, w->fmt, &xq) || !scratch) {
        xquant_free(&xq);
        sr_free_aligned(scratch);
        return -1;
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t t = 0; t < ntiles; t++) {
        uint8_t *mine = scratch + (size_t)omp_get_thread_num() * thread_bytes;
        uint8_t *packed = mine, *tmp = mine + 16 * PF_KC;
        float *ps = (float *)(mine + 2 * 16 * PF_KC);
        const int64_t r0 = t * tr, r1 = r0 + tr < rows ? r0 + tr : rows;
        for (int64_t k0 = 0; k0 < kp; k0 += PF_KC) {
            const int64_t kk = kp - k0 < PF_KC ? kp - k0 : PF_KC;
            for (int64_t rs = r0; rs < r1; rs += 16) {
                const __mmask16 mask = mask16((int)(r1 - rs));
                pf_pack_strip(w, rs, k0, kk, tmp, packed, ps);
                pf_strip(packed, ps, &xq, n, k0 / SR_INT8_XBLOCK, kk, y + rs, ldy, mask, k0 == 0);
            }
        }
    }
    xquant_free(&xq);
    sr_free_aligned(scratch);
    return 0;
}

/* ---- decode over 16-row tiles (quant/qtile.h) -----------------------------
 *
 * One int32 lane per row: for each 32-column activation block, 4 chunks of
 * 64 bytes give 2 vpdpbusd each per column (low nibbles against the
 * broadcast activation quad of columns 8c..8c+3, high nibbles against
 * 8c+4..8c+7), two chains per column (the latency of vpdpbusd), then one
 * convert and one FMA with the 16 rows' block scales (from the group's f16
 * line) times the block's factor; the row scales once at the end. */
/* The two int32 chains of activation block kb for N columns: a starts at
 * the block's offset correction (-128 x sum of its codes), b at 0. */
INLINE void tile_sums_init(__m512i a[8], __m512i b[8], const xquant *xq, int64_t kb, const int N)
{
    UNROLL for (int c = 0; c < N; c++) {
        a[c] = _mm512_set1_epi32(xq->corr[c * xq->nkb + kb]);
        b[c] = _mm512_setzero_si512();
    }
}

/* a += v0 . the activation quad at byte off, b += v1 . the next quad, for
 * each of the N columns (one int32 lane per row). */
INLINE void tile_dot2(__m512i a[8], __m512i b[8], __m512i v0, __m512i v1, const xquant *xq,
                      int64_t off, const int N)
{
    UNROLL for (int c = 0; c < N; c++) {
        const int8_t *xc = xq->q + c * xq->kp + off;
        int32_t x0, x1;
        memcpy(&x0, xc, 4);
        memcpy(&x1, xc + 4, 4);
        a[c] = _mm512_dpbusd_epi32(a[c], v0, _mm512_set1_epi32(x0));
        b[c] = _mm512_dpbusd_epi32(b[c], v1, _mm512_set1_epi32(x1));
    }
}

/* Band `band` of a 4-bit matrix (qtile.h): panel by panel, the run of each
 * of its tiles, so the stream goes straight through the band while a
 * panel's activations stay in L1.  Each tile's sums wait in `part` between
 * its runs. */
INLINE void tile_band(const sr_qmatrix *w, const __m512i tab, const xquant *xq, int64_t band,
                      float *y, int64_t ldy, const int N)
{
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const int64_t nkb = xq->nkb, nbr = w->cols / w->blocksize;
    const int64_t kpb = w->blocksize / SR_INT8_XBLOCK; /* activation blocks per block */
    const int64_t t0 = band * SR_QTILE_BAND, left = sr_qtile_count(w) - t0;
    const int nt = left < SR_QTILE_BAND ? (int)left : SR_QTILE_BAND;
    const int64_t ng = sr_qtile_groups(w);
    const uint8_t *p = w->tiles + t0 * sr_qtile_tile_bytes(w);
    __m512 part[SR_QTILE_BAND][8];
    for (int k = 0; k < nt; k++)
        UNROLL for (int c = 0; c < N; c++) part[k][c] = _mm512_setzero_ps();
    for (int64_t g0 = 0, g1; g0 < ng; g0 = g1) {
        sr_qtile_panel(w, g0, &g0, &g1);
        for (int k = 0; k < nt; k++) {
            __m512 acc[8];
            UNROLL for (int c = 0; c < N; c++) acc[c] = part[k][c];
            for (int64_t b0 = 2 * g0; b0 < 2 * g1 && b0 < nbr; b0 += 2) {
                const __m512i h = _mm512_load_si512(p);
                const __m512 sg[2] = {_mm512_cvtph_ps(_mm512_castsi512_si256(h)),
                                      _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1))};
                p += 64;
                for (int i = 0; i < 2 && b0 + i < nbr; i++)
                    for (int64_t kb = (b0 + i) * kpb; kb < (b0 + i + 1) * kpb; kb++, p += 256) {
                        _mm_prefetch((const char *)p + SR_PREFETCH_AHEAD, _MM_HINT_T1);
                        __m512i a[8], b[8];
                        tile_sums_init(a, b, xq, kb, N);
                        UNROLL for (int q = 0; q < 4; q++) {
                            const __m512i v = _mm512_load_si512(p + 64 * q);
                            const __m512i lo = _mm512_shuffle_epi8(tab, _mm512_and_si512(v, nib));
                            const __m512i hi = _mm512_shuffle_epi8(
                                tab, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
                            tile_dot2(a, b, lo, hi, xq, kb * SR_INT8_XBLOCK + 8 * q, N);
                        }
                        UNROLL for (int c = 0; c < N; c++)
                            acc[c] = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(_mm512_add_epi32(a[c], b[c])),
                                _mm512_mul_ps(sg[i], _mm512_set1_ps(xq->d[c * nkb + kb])), acc[c]);
                    }
            }
            UNROLL for (int c = 0; c < N; c++) part[k][c] = acc[c];
        }
    }
    for (int k = 0; k < nt; k++) {
        const int64_t t = t0 + k;
        const __mmask16 mask = mask16((int)(w->rows - t * SR_QTILE_ROWS));
        const __m512 rs = _mm512_load_ps(w->tile_row_scale + t * SR_QTILE_ROWS);
        UNROLL for (int c = 0; c < N; c++)
            _mm512_mask_storeu_ps(y + c * ldy + t * SR_QTILE_ROWS, mask,
                                  _mm512_mul_ps(part[k][c], rs));
    }
}

/* LLM.int8 tiles: no lookup (the chunks hold code + 128), 8 chunks per
 * activation block, the row's SCB once at the end. */
INLINE void tile_block_i8(const sr_qmatrix *w, const xquant *xq, int64_t t, float *y,
                          int64_t ldy, __mmask16 mask, const int N)
{
    const int64_t nkb = xq->nkb;
    const uint8_t *p = w->tiles + t * sr_qtile_tile_bytes(w);
    __m512 acc[8];
    UNROLL for (int c = 0; c < N; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t kb = 0; kb < nkb; kb++, p += 512) {
        _mm_prefetch((const char *)p + SR_PREFETCH_AHEAD, _MM_HINT_T1);
        _mm_prefetch((const char *)p + SR_PREFETCH_AHEAD + 256, _MM_HINT_T1);
        __m512i a[8], b[8];
        tile_sums_init(a, b, xq, kb, N);
        UNROLL for (int k = 0; k < 8; k += 2)
            tile_dot2(a, b, _mm512_load_si512(p + 64 * k), _mm512_load_si512(p + 64 * k + 64), xq,
                      kb * SR_INT8_XBLOCK + 4 * k, N);
        UNROLL for (int c = 0; c < N; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a[c], b[c])),
                                     _mm512_set1_ps(xq->d[c * nkb + kb]), acc[c]);
    }
    const __m512 rs = _mm512_load_ps(w->tile_row_scale + t * SR_QTILE_ROWS);
    UNROLL for (int c = 0; c < N; c++)
        _mm512_mask_storeu_ps(y + c * ldy + t * SR_QTILE_ROWS, mask, _mm512_mul_ps(acc[c], rs));
}

#define TILE_CALL(N) tile_band(w, tab, xq, band, y, ldy, N)
#define TILE_I8_CALL(N) tile_block_i8(w, xq, t, y, ldy, mask, N)

/* Band `band` (SR_QTILE_BAND tiles, fewer at the end) against n columns.
 * A function of its own with the target attribute: OpenMP's outlined loop
 * body has none, so it may not hold or pass AVX-512 values itself. */
static TARGET void band_decode_one(const sr_qmatrix *w, const xquant *xq, int64_t n, int64_t band,
                                   float *y, int64_t ldy)
{
    if (w->fmt == SR_W_INT8) { /* whole tiles, one after another */
        const int64_t ntiles = sr_qtile_count(w);
        for (int64_t t = band * SR_QTILE_BAND; t < (band + 1) * SR_QTILE_BAND && t < ntiles; t++) {
            const __mmask16 mask = mask16((int)(w->rows - t * SR_QTILE_ROWS));
            FOR_N(TILE_I8_CALL)
        }
        return;
    }
    const __m512i tab = q4_code_table(w->fmt);
    FOR_N(TILE_CALL)
}

/* n <= 8 columns over the tiles of one matrix, or of several of one format
 * and width against the same columns (q/k/v or gate/up stored apart): the
 * activations quantized once and one parallel loop over all their tiles, so
 * the parts cost one start and one end of a parallel region instead of one
 * each.  Returns -1 if the buffers cannot be had. */
static TARGET int decode_tiles(const sr_qmatrix *w, int parts, const float *x, int64_t n,
                               int64_t ldx, float *const *y, int64_t ldy)
{
    xquant xq;
    if (xquant_make(x, n, ldx, w[0].cols, w[0].fmt, &xq)) {
        xquant_free(&xq);
        return -1;
    }
    const int64_t band_rows = SR_QTILE_BAND * SR_QTILE_ROWS;
    int64_t first[SR_MATMUL_MAX_PARTS + 1] = {0}, elems = 0; /* first band of each part */
    for (int i = 0; i < parts; i++) {
        first[i + 1] = first[i] + (w[i].rows + band_rows - 1) / band_rows;
        elems += w[i].rows * w[i].cols;
    }
#pragma omp parallel for schedule(guided, 1) if (elems >= PARALLEL_MIN_ELEMS)
    for (int64_t b = 0; b < first[parts]; b++) {
        int i = 0;
        while (b >= first[i + 1]) i++;
        band_decode_one(&w[i], &xq, n, b - first[i], y[i], ldy);
    }
    xquant_free(&xq);
    return 0;
}

/* ---- entry ---------------------------------------------------------------- */

int sr_matmul_int8_fits(const sr_qmatrix *w)
{
    if (w->fmt == SR_W_INT8) return w->scb != NULL;
    if (!sr_wformat_is_4bit(w->fmt)) return 0;
    int bs = w->blocksize;
    return w->scales != NULL && w->cols % SR_INT8_XBLOCK == 0 && bs >= SR_INT8_XBLOCK &&
           (bs & (bs - 1)) == 0;
}

int sr_matmul_int8(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy)
{
    if (!sr_matmul_int8_available() || !sr_matmul_int8_fits(w) || w->cols <= 0) return -1;
    if (n <= 0 || w->rows <= 0) return 0;
    if (n <= 8) return w->tiles ? decode_tiles(w, 1, x, n, ldx, &y, ldy)
                                : decode_int8(w, x, n, ldx, y, ldy);
    return prefill_int8(w, x, n, ldx, y, ldy);
}

int sr_matmul_int8_parts(const sr_qmatrix *w, int parts, const float *x, int64_t n, int64_t ldx,
                         float *const *y, int64_t ldy)
{
    if (parts < 1 || parts > SR_MATMUL_MAX_PARTS || n < 1 || n > 8 ||
        !sr_matmul_int8_available())
        return -1;
    for (int i = 0; i < parts; i++)
        if (!w[i].tiles || !sr_matmul_int8_fits(&w[i]) || w[i].fmt != w[0].fmt ||
            w[i].cols != w[0].cols || w[i].rows <= 0 || w[i].cols <= 0)
            return -1;
    return decode_tiles(w, parts, x, n, ldx, y, ldy);
}

#else /* no AVX-512 VNNI kernels in this build: the exact path runs */

int sr_matmul_int8_available(void) { return 0; }

void sr_int8_quantize_x(const float *x, int64_t len, int8_t *q, float *absmax, int32_t *sum)
{
    for (int64_t b = 0; b * SR_INT8_XBLOCK < len; b++) {
        int64_t left = len - b * SR_INT8_XBLOCK;
        absmax[b] = quantize_block_scalar(x + b * SR_INT8_XBLOCK, left < 32 ? (int)left : 32,
                                          q + b * SR_INT8_XBLOCK, &sum[b]);
    }
}

int sr_matmul_int8_fits(const sr_qmatrix *w)
{
    (void)w;
    return 0;
}

int sr_matmul_int8(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy)
{
    (void)w, (void)x, (void)n, (void)ldx, (void)y, (void)ldy;
    return -1;
}

int sr_matmul_int8_parts(const sr_qmatrix *w, int parts, const float *x, int64_t n, int64_t ldx,
                         float *const *y, int64_t ldy)
{
    (void)w, (void)parts, (void)x, (void)n, (void)ldx, (void)y, (void)ldy;
    return -1;
}
#endif
