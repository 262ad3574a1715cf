/* AVX-512 streaming decode attention kernels (head dim a multiple of 16).
 *
 * Scores: tiles of 16 keys.  For the first row the tile (4 KiB at head dim
 * 64) streams in from memory key by key, in address order; the other rows
 * find it in L1.  Each row accumulates one vector per key and reduces the 16
 * vectors to 16 scores with one transposing add tree.  Weighted sum:
 * register blocks of up to 6 rows x whole value rows (up to 8 vectors): each
 * value row is loaded once per block and feeds all its rows (broadcast
 * weight, FMA).  Both passes read K and V sequentially, which the hardware
 * prefetcher follows: software prefetch of these streams made them slower
 * on Zen 4 (K 4-64 KiB ahead: 20-50 % slower at 8192 keys); only partial
 * value rows (head dim > 128) get it.
 *
 * Over a bf16 cache the same code widens each element as it is loaded
 * (ld(); one zero-extension and a shift per vector).
 *
 * Every function carries a target attribute; attention.c calls them only
 * after cpuid reported AVX-512. */
#include "runtime/attention_stream.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define UNROLL _Pragma("GCC unroll 16")

enum {
    VL = 16,        /* floats per vector */
    TILE = 16,      /* keys per score tile: one vector of scores */
    ACC_REGS = 24,  /* accumulators of a weighted-sum block (of 32 registers) */
    RB_MAX = 6,     /* rows of a weighted-sum block */
    CW_MAX = 8,     /* vectors (columns) of a weighted-sum block */
    WSUM_TILE = 32, /* keys per weighted-sum tile when several blocks share it */
};

/* Element i of a cache row as f32 vector lanes [i, i + VL): f32 loaded,
 * bf16 widened exactly (zero-extended into the upper half of each lane). */
INLINE __m512 ld(const void *base, int64_t i, const int bf)
{
    if (bf) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)base + i);
}

/* Prefetch `bytes` from `p` + SR_ATTN_PREFETCH_BYTES into L2, one per line.
 * The target is computed in integers: it may lie past the end of the
 * cache (prefetches never fault). */
INLINE void prefetch_ahead(const void *p, int64_t bytes)
{
    const uintptr_t a = (uintptr_t)p + SR_ATTN_PREFETCH_BYTES;
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(a + (uintptr_t)o), _MM_HINT_T1);
}

/* Lane i of the result = sum of the lanes of a[i], i < 16.  Three levels:
 * 256-bit halves, then 128-bit quarters (both with shuffle_f32x4), then a
 * 4 x 4 transpose-add inside the 128-bit lanes.  The quarters come out in the
 * order slot, slot+8, slot+4, slot+12, so slots are filled in the order
 * `key_of_slot` to give the scores in key order. */
INLINE __m512 hsum16x16(const __m512 *a)
{
    static const int key_of_slot[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};
    __m512 b[8], c[4];
    UNROLL for (int i = 0; i < 8; i++) {
        const __m512 x = a[key_of_slot[i]], y = a[key_of_slot[i + 8]];
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
    }
    UNROLL for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88),
                             _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
    const __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
    const __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
    const __m512d d01 = _mm512_castps_pd(s01), d23 = _mm512_castps_pd(s23);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(d01, d23)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(d01, d23)));
}

/* scores with nc = hd / 16 vectors per row (a constant where inlined). */
INLINE void scores_body(const float *q, int64_t ldq, int rows, const void *k, const int nc,
                        int64_t n, float scale, float *s, int64_t lds, const int bf)
{
    const int hd = nc * VL;
    const __m512 vscale = _mm512_set1_ps(scale);
    int64_t j = 0;
    for (; j + TILE <= n; j += TILE) {
        const int64_t kt = j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            __m512 acc[TILE];
            /* Key by key, not unrolled: the loads then issue in address
             * order.  Unrolled, GCC interleaves the keys and the stream
             * from DRAM gets 25-70 % slower (Zen 4, 8192 keys). */
            _Pragma("GCC unroll 1")
            for (int t = 0; t < TILE; t++) {
                const int64_t kk = kt + t * hd;
                acc[t] = _mm512_mul_ps(_mm512_loadu_ps(qr), ld(k, kk, bf));
                for (int c = 1; c < nc; c++)
                    acc[t] = _mm512_fmadd_ps(_mm512_loadu_ps(qr + c * VL), ld(k, kk + c * VL, bf),
                                             acc[t]);
            }
            _mm512_storeu_ps(s + r * lds + j, _mm512_mul_ps(vscale, hsum16x16(acc)));
        }
    }
    for (; j < n; j++) {                        /* the last n % 16 keys */
        const int64_t kj = j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            __m512 acc = _mm512_setzero_ps();
            for (int c = 0; c < nc; c++)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + c * VL), ld(k, kj + c * VL, bf), acc);
            s[r * lds + j] = scale * _mm512_reduce_add_ps(acc);
        }
    }
}

INLINE void scores_any(const float *q, int64_t ldq, int rows, const void *k, int hd,
                       int64_t n, float scale, float *s, int64_t lds, const int bf)
{
    switch (hd / VL) {
    case 4: scores_body(q, ldq, rows, k, 4, n, scale, s, lds, bf); break;     /* hd 64 */
    case 8: scores_body(q, ldq, rows, k, 8, n, scale, s, lds, bf); break;     /* hd 128 */
    default: scores_body(q, ldq, rows, k, hd / VL, n, scale, s, lds, bf); break;
    }
}

TARGET static void scores_avx512(const float *q, int64_t ldq, int rows, const float *k, int hd,
                             int64_t n, float scale, float *s, int64_t lds)
{
    scores_any(q, ldq, rows, k, hd, n, scale, s, lds, 0);
}

TARGET static void scores_bf16_avx512(const float *q, int64_t ldq, int rows, const uint16_t *k,
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
    __m512 acc[RB_MAX][CW_MAX];
    UNROLL for (int r = 0; r < RB; r++)
        UNROLL for (int c = 0; c < CW; c++)
            acc[r][c] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(o + r * ldo + (c0 + c) * VL);
    for (int64_t j = j0; j < j1; j++) {
        const int64_t vj = j * hd + c0 * VL;
        if (c0 == 0 && hd > CW * VL)
            prefetch_ahead((const char *)v + vj * (bf ? 2 : 4), (int64_t)(bf ? 2 : 4) * hd);
        __m512 p[RB_MAX];
        UNROLL for (int r = 0; r < RB; r++) p[r] = _mm512_set1_ps(s[r * lds + j]);
        UNROLL for (int c = 0; c < CW; c++) {
            const __m512 vc = ld(v, vj + c * VL, bf);
            UNROLL for (int r = 0; r < RB; r++) acc[r][c] = _mm512_fmadd_ps(p[r], vc, acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < RB; r++)
        UNROLL for (int c = 0; c < CW; c++) _mm512_storeu_ps(o + r * ldo + (c0 + c) * VL, acc[r][c]);
}

#define WSUM_CASE(RB, CW)                                                                   \
    case (CW) * 16 + (RB):                                                                  \
        wsum_block(s + r0 * lds, lds, v, hd, j0, j1, o + r0 * ldo, ldo, c0, j0 == 0, RB, CW, bf); \
        break;
#define WSUM_CASES_6(CW)                                                                    \
    WSUM_CASE(1, CW) WSUM_CASE(2, CW) WSUM_CASE(3, CW) WSUM_CASE(4, CW) WSUM_CASE(5, CW)     \
    WSUM_CASE(6, CW)

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
                WSUM_CASES_6(1)
                WSUM_CASES_6(2)
                WSUM_CASES_6(4)
                WSUM_CASE(1, 8) WSUM_CASE(2, 8) WSUM_CASE(3, 8)
                default: break;
                }
            }
        }
    }
}

TARGET static void wsum_avx512(const float *s, int64_t lds, int rows, const float *v, int hd,
                           int64_t n, float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 0);
}

TARGET static void wsum_bf16_avx512(const float *s, int64_t lds, int rows, const uint16_t *v,
                                int hd, int64_t n, float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 1);
}

const sr_attn_stream_kernels sr_attn_stream_avx512 = {
    .scores = scores_avx512, .wsum = wsum_avx512,
    .scores_bf16 = scores_bf16_avx512, .wsum_bf16 = wsum_bf16_avx512};

#else  /* not x86: never selected (sr_attn_kernel_usable says no) */
const sr_attn_stream_kernels sr_attn_stream_avx512 = {0};
#endif
