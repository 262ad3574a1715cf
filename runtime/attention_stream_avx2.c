/* AVX2 + FMA streaming decode attention kernels (head dim a multiple of 8),
 * for x86-64 CPUs without AVX-512: the scheme of attention_stream_avx512.c
 * in 16 registers, score tiles of 8 keys, weighted-sum blocks of up to 12
 * accumulators (head dim 64: one row x the whole value row; 128: half
 * rows, whose strided stream is prefetched: 4.4 -> 3.0 ms per layer at 8192
 * keys on Zen 4).
 *
 * Over a bf16 cache the same code widens each element as it is loaded
 * (ld(); one zero-extension and a shift per vector).
 *
 * Every function carries a target attribute; attention.c calls them only
 * after cpuid reported AVX2 + FMA. */
#include "runtime/attention_stream.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define UNROLL _Pragma("GCC unroll 8")

enum {
    VL = 8,         /* floats per vector */
    TILE = 8,       /* keys per score tile: one vector of scores */
    ACC_REGS = 12,  /* accumulators of a weighted-sum block (of 16 registers) */
    RB_MAX = 5,     /* rows of a weighted-sum block */
    CW_MAX = 8,     /* vectors (columns) of a weighted-sum block */
    WSUM_TILE = 32, /* keys per weighted-sum tile when several blocks share it */
};

/* ld() and prefetch_ahead(): see attention_stream_avx512.c. */
INLINE __m256 ld(const void *base, int64_t i, const int bf)
{
    if (bf) {
        const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)base + i);
}

INLINE void prefetch_ahead(const void *p, int64_t bytes)
{
    const uintptr_t a = (uintptr_t)p + SR_ATTN_PREFETCH_BYTES;
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(a + (uintptr_t)o), _MM_HINT_T1);
}

/* Lane i of the result = sum of the lanes of a[i], i < 8: 128-bit halves of
 * a[i] and a[i+4] added, then a 4 x 4 transpose-add inside the 128-bit
 * lanes (lane L, element e = a[e + 4L]: key order). */
INLINE __m256 hsum8x8(const __m256 *a)
{
    __m256 b[4];
    UNROLL for (int i = 0; i < 4; i++)
        b[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[i], a[i + 4], 0x20),
                             _mm256_permute2f128_ps(a[i], a[i + 4], 0x31));
    const __m256 s01 = _mm256_add_ps(_mm256_unpacklo_ps(b[0], b[1]), _mm256_unpackhi_ps(b[0], b[1]));
    const __m256 s23 = _mm256_add_ps(_mm256_unpacklo_ps(b[2], b[3]), _mm256_unpackhi_ps(b[2], b[3]));
    const __m256d d01 = _mm256_castps_pd(s01), d23 = _mm256_castps_pd(s23);
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(d01, d23)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(d01, d23)));
}

INLINE float hsum8(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

INLINE void scores_body(const float *q, int64_t ldq, int rows, const void *k, const int nc,
                        int64_t n, float scale, float *s, int64_t lds, const int bf)
{
    const int hd = nc * VL;
    const __m256 vscale = _mm256_set1_ps(scale);
    int64_t j = 0;
    for (; j + TILE <= n; j += TILE) {
        const int64_t kt = j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            __m256 acc[TILE];
            /* Key by key, not unrolled: the loads then issue in address
             * order.  Unrolled, GCC interleaves the keys and the stream
             * from DRAM gets 25-70 % slower (Zen 4, 8192 keys). */
            _Pragma("GCC unroll 1")
            for (int t = 0; t < TILE; t++) {
                const int64_t kk = kt + t * hd;
                acc[t] = _mm256_mul_ps(_mm256_loadu_ps(qr), ld(k, kk, bf));
                for (int c = 1; c < nc; c++)
                    acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c * VL), ld(k, kk + c * VL, bf),
                                             acc[t]);
            }
            _mm256_storeu_ps(s + r * lds + j, _mm256_mul_ps(vscale, hsum8x8(acc)));
        }
    }
    for (; j < n; j++) {                        /* the last n % 8 keys */
        const int64_t kj = j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            __m256 acc = _mm256_setzero_ps();
            for (int c = 0; c < nc; c++)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c * VL), ld(k, kj + c * VL, bf), acc);
            s[r * lds + j] = scale * hsum8(acc);
        }
    }
}

INLINE void scores_any(const float *q, int64_t ldq, int rows, const void *k, int hd,
                       int64_t n, float scale, float *s, int64_t lds, const int bf)
{
    switch (hd / VL) {
    case 8: scores_body(q, ldq, rows, k, 8, n, scale, s, lds, bf); break;     /* hd 64 */
    case 16: scores_body(q, ldq, rows, k, 16, n, scale, s, lds, bf); break;   /* hd 128 */
    default: scores_body(q, ldq, rows, k, hd / VL, n, scale, s, lds, bf); break;
    }
}

TARGET static void scores_avx2(const float *q, int64_t ldq, int rows, const float *k, int hd,
                             int64_t n, float scale, float *s, int64_t lds)
{
    scores_any(q, ldq, rows, k, hd, n, scale, s, lds, 0);
}

TARGET static void scores_bf16_avx2(const float *q, int64_t ldq, int rows, const uint16_t *k,
                                  int hd, int64_t n, float scale, float *s, int64_t lds)
{
    scores_any(q, ldq, rows, k, hd, n, scale, s, lds, 1);
}

/* Keys [j0, j1), columns [c0, c0 + CW) vectors, rows [0, RB): adds to o
 * unless `first` (then it sets o). */
INLINE void wsum_block(const float *s, int64_t lds, const void *v, int hd, int64_t j0, int64_t j1,
                       float *o, int64_t ldo, int c0, int first, const int RB, const int CW,
                       const int bf)
{
    __m256 acc[RB_MAX][CW_MAX];
    UNROLL for (int r = 0; r < RB; r++)
        UNROLL for (int c = 0; c < CW; c++)
            acc[r][c] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(o + r * ldo + (c0 + c) * VL);
    for (int64_t j = j0; j < j1; j++) {
        const int64_t vj = j * hd + c0 * VL;
        if (c0 == 0 && hd > CW * VL)
            prefetch_ahead((const char *)v + vj * (bf ? 2 : 4), (int64_t)(bf ? 2 : 4) * hd);
        __m256 p[RB_MAX];
        UNROLL for (int r = 0; r < RB; r++) p[r] = _mm256_set1_ps(s[r * lds + j]);
        UNROLL for (int c = 0; c < CW; c++) {
            const __m256 vc = ld(v, vj + c * VL, bf);
            UNROLL for (int r = 0; r < RB; r++) acc[r][c] = _mm256_fmadd_ps(p[r], vc, acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < RB; r++)
        UNROLL for (int c = 0; c < CW; c++) _mm256_storeu_ps(o + r * ldo + (c0 + c) * VL, acc[r][c]);
}

#define WSUM_CASE(RB, CW)                                                                   \
    case (CW) * 16 + (RB):                                                                  \
        wsum_block(s + r0 * lds, lds, v, hd, j0, j1, o + r0 * ldo, ldo, c0, j0 == 0, RB, CW, bf); \
        break;
#define WSUM_CASES_5(CW)                                                                    \
    WSUM_CASE(1, CW) WSUM_CASE(2, CW) WSUM_CASE(3, CW) WSUM_CASE(4, CW) WSUM_CASE(5, CW)

/* Blocks read whole value rows where the head dim fits CW_MAX vectors, so
 * the stream over V is sequential; rows per block as many as ACC_REGS
 * allows.  Partial rows (more columns) are prefetched by the first block.
 * One block covering all rows: a single pass over the keys.  Several: the
 * keys go in tiles of WSUM_TILE (8 KiB at head dim 64), each read from
 * memory by the first block and from L1 by the others. */
INLINE void wsum_any(const float *s, int64_t lds, int rows, const void *v, int hd,
                     int64_t n, float *o, int64_t ldo, const int bf)
{
    const int nc = hd / VL;
    const int cw = nc % 8 == 0 ? 8 : nc % 4 == 0 ? 4 : nc % 2 == 0 ? 2 : 1;
    const int rb_max = ACC_REGS / cw < RB_MAX ? ACC_REGS / cw : RB_MAX;
    const int64_t tile = nc == cw && rows <= rb_max ? n : WSUM_TILE;
    for (int64_t j0 = 0; j0 < n; j0 += tile) {
        const int64_t j1 = n - j0 < tile ? n : j0 + tile;
        for (int r0 = 0; r0 < rows; r0 += rb_max) {
            const int rb = rows - r0 < rb_max ? rows - r0 : rb_max;
            for (int c0 = 0; c0 < nc; c0 += cw) {
                switch (cw * 16 + rb) {
                WSUM_CASES_5(1)
                WSUM_CASES_5(2)
                WSUM_CASE(1, 4) WSUM_CASE(2, 4) WSUM_CASE(3, 4)
                WSUM_CASE(1, 8)
                default: break;
                }
            }
        }
    }
}

TARGET static void wsum_avx2(const float *s, int64_t lds, int rows, const float *v, int hd,
                           int64_t n, float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 0);
}

TARGET static void wsum_bf16_avx2(const float *s, int64_t lds, int rows, const uint16_t *v,
                                int hd, int64_t n, float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 1);
}

const sr_attn_stream_kernels sr_attn_stream_avx2 = {
    .scores = scores_avx2, .wsum = wsum_avx2,
    .scores_bf16 = scores_bf16_avx2, .wsum_bf16 = wsum_bf16_avx2};

#else  /* not x86: never selected (sr_attn_kernel_usable says no) */
const sr_attn_stream_kernels sr_attn_stream_avx2 = {0};
#endif
