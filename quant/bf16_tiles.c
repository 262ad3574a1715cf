/* Exact f32 matmul over bf16 tiles (see bf16_tiles.h; layout: qtile.h). */
#include "quant/bf16_tiles.h"

#include <string.h>

#include "quant/qtile.h"

/* Below this many weight elements a call runs on the calling thread (as
 * the other decode kernels, quant/matmul.c). */
#define PARALLEL_MIN_ELEMS (1 << 16)

/* ---- strips for prefill (portable: the GEMM dominates) ------------------- */

void sr_bf16tiles_strip_f32t(const sr_qmatrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kk,
                             float *bt, int64_t ldb)
{
    const int64_t tb = sr_qtile_tile_bytes(w), t0 = r0 / SR_QTILE_ROWS;
    const int64_t nt = (nr + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS;
    for (int64_t t = 0; t < nt; t++) {
        const uint8_t *chunk = w->tiles + (t0 + t) * tb + k0 / 2 * 64;
        for (int64_t j = 0; j < kk; j += 2, chunk += 64) {
            uint32_t v[SR_QTILE_ROWS];
            memcpy(v, chunk, sizeof v);
            float *even = bt + j * ldb + t * SR_QTILE_ROWS, *odd = even + ldb;
            for (int r = 0; r < SR_QTILE_ROWS; r++) {
                const uint32_t lo = v[r] << 16, hi = v[r] & 0xFFFF0000u;
                memcpy(&even[r], &lo, 4);
                memcpy(&odd[r], &hi, 4);
            }
        }
    }
}

void sr_bf16tiles_strip_packed(const sr_qmatrix *w, int64_t r0, int64_t nr, int64_t k0,
                               int64_t kk, uint16_t *packed)
{
    const int64_t tb = sr_qtile_tile_bytes(w), t0 = r0 / SR_QTILE_ROWS;
    const int64_t nt = (nr + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS, kp = kk / 2;
    /* gemm_bf16's strips of 32 rows: per column pair the chunk of the
     * strip's first tile, then of its second (zeros past nr) */
    for (int64_t s = 0; 2 * s < nt; s++) {
        uint8_t *dst = (uint8_t *)(packed + s * kp * 64);
        for (int half = 0; half < 2; half++) {
            const int64_t t = 2 * s + half;
            const uint8_t *src = t < nt ? w->tiles + (t0 + t) * tb + k0 / 2 * 64 : NULL;
            for (int64_t p = 0; p < kp; p++) {
                if (src) memcpy(dst + p * 128 + half * 64, src + p * 64, 64);
                else memset(dst + p * 128 + half * 64, 0, 64);
            }
        }
    }
}

/* ---- decode (AVX-512) ---------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define UNROLL _Pragma("GCC unroll 8")

/* Each chunk's line is also asked for into L2 this far ahead: the tiles
 * of a thread follow each other, so past a tile's end is the next one. */
#define AHEAD 2048

/* cpuid once: sr_bf16tiles_decode asks on every call. */
int sr_bf16tiles_available(void)
{
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
    }
    return have;
}

/* One tile (npair chunks at p) against one column: four partial sums (the
 * FMA latency), two chunks per step. */
INLINE __m512 tile_n1(const uint8_t *p, int64_t npair, const float *x)
{
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 2 <= npair; c += 2) {
        const uint8_t *q = p + c * 64;
        _mm_prefetch((const char *)q + AHEAD, _MM_HINT_T1);
        _mm_prefetch((const char *)q + AHEAD + 64, _MM_HINT_T1);
        const __m512i v0 = _mm512_load_si512(q), v1 = _mm512_load_si512(q + 64);
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)),
                             _mm512_set1_ps(x[2 * c]), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi)),
                             _mm512_set1_ps(x[2 * c + 1]), a1);
        a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)),
                             _mm512_set1_ps(x[2 * c + 2]), a2);
        a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, hi)),
                             _mm512_set1_ps(x[2 * c + 3]), a3);
    }
    if (c < npair) {
        const __m512i v0 = _mm512_load_si512(p + c * 64);
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)),
                             _mm512_set1_ps(x[2 * c]), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi)),
                             _mm512_set1_ps(x[2 * c + 1]), a1);
    }
    return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
}

/* One tile against N = 2..8 columns: an even and an odd partial sum per
 * column (2N >= 4 chains). */
INLINE void tile_cols(const uint8_t *p, int64_t npair, const float *x, int64_t ldx, float *y,
                      int64_t ldy, __mmask16 m, const int N)
{
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 ae[8], ao[8];
    UNROLL for (int c = 0; c < N; c++) ae[c] = ao[c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < npair; j++) {
        const uint8_t *q = p + j * 64;
        _mm_prefetch((const char *)q + AHEAD, _MM_HINT_T1);
        const __m512i v = _mm512_load_si512(q);
        const __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        const __m512 o = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        UNROLL for (int c = 0; c < N; c++) {
            ae[c] = _mm512_fmadd_ps(e, _mm512_set1_ps(x[c * ldx + 2 * j]), ae[c]);
            ao[c] = _mm512_fmadd_ps(o, _mm512_set1_ps(x[c * ldx + 2 * j + 1]), ao[c]);
        }
    }
    UNROLL for (int c = 0; c < N; c++) _mm512_mask_storeu_ps(y + c * ldy, m, _mm512_add_ps(ae[c], ao[c]));
}

#define TILE_CASE(N)                                                                       \
    case N:                                                                                \
        tile_cols(p, npair, x, ldx, y + r, ldy, m, N);                                     \
        break;

/* Tile t against n columns.  Not inlined into the parallel loop: the
 * compiler's outlined OpenMP body carries no target attribute, so no
 * vector value may cross into it. */
static TARGET __attribute__((noinline)) void one_tile(const sr_qmatrix *w, const float *x,
                                                      int64_t n, int64_t ldx, float *y,
                                                      int64_t ldy, int64_t t)
{
    const int64_t rows = w->rows, npair = w->cols / 2;
    const uint8_t *p = w->tiles + t * sr_qtile_tile_bytes(w);
    const int64_t r = t * SR_QTILE_ROWS;
    const __mmask16 m = rows - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (rows - r)) - 1);
    switch (n) {
    case 1: _mm512_mask_storeu_ps(y + r, m, tile_n1(p, npair, x)); break;
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
        TILE_CASE(5)
        TILE_CASE(6)
        TILE_CASE(7)
        TILE_CASE(8)
    default: break;
    }
}

static void decode_tiles(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                         int64_t ldy)
{
    const int64_t ntiles = sr_qtile_count(w);
    /* guided: a thread that loses its core leaves its rest to the other;
     * the first chunks are large, so each thread still reads long runs */
#pragma omp parallel for schedule(guided, 2) if (w->rows * w->cols >= PARALLEL_MIN_ELEMS)
    for (int64_t t = 0; t < ntiles; t++) one_tile(w, x, n, ldx, y, ldy, t);
}

int sr_bf16tiles_decode(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                        int64_t ldy)
{
    if (w->fmt != SR_W_BF16 || !w->tiles || n < 1 || n > 8 || w->cols % 2 ||
        !sr_bf16tiles_available())
        return -1;
    decode_tiles(w, x, n, ldx, y, ldy);
    return 0;
}

#else /* not x86-64 GCC/clang: the row-major kernels run */

int sr_bf16tiles_available(void) { return 0; }

int sr_bf16tiles_decode(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                        int64_t ldy)
{
    (void)w, (void)x, (void)n, (void)ldx, (void)y, (void)ldy;
    return -1;
}

#endif
