/* bf16 GEMM on AVX512_BF16: see gemm_bf16.h.
 *
 * Micro-kernel: MR rows of A by one packed strip of SR_BF16_NR = 32 rows of
 * B, 2·MR zmm accumulators.  Per K pair it loads the strip's two 64-byte
 * vectors (16 B rows x 2 k each) and, for every A row, broadcasts that
 * row's (k, k+1) pair as one 32-bit value: vdpbf16ps then adds
 * a[k]·b[j][k] + a[k+1]·b[j][k+1] to lane j.  MR = 14 leaves registers for
 * the two B vectors and the broadcast.  Loop order: strips outside, A row
 * blocks inside, so a strip (32 x K bf16, 32 KiB at K = 512) stays in
 * L1/L2 while A streams from L2. */
#include "quant/gemm_bf16.h"

#include <string.h>

#include "runtime/dtype.h"

enum { MR = 14, NR = SR_BF16_NR };

int64_t sr_bf16_packed_elems(int64_t n, int64_t k)
{
    return (n + NR - 1) / NR * NR * ((k + 1) / 2) * 2;
}

/* Pairs [p0, kp) of rows [j0, j1) of strip s: the portable packing, for
 * what the vector path leaves (and the CPUs without it). */
static void pack_scalar(const float *b, int64_t ldb, int64_t n, int64_t k, int64_t s, int j0,
                        int j1, int64_t p0, uint16_t *packed)
{
    const int64_t kp = (k + 1) / 2;
    uint16_t *dst = packed + s * kp * 2 * NR;
    for (int j = j0; j < j1; j++) {
        const int64_t r = s * NR + j;
        if (r >= n) {           /* padding rows: zeros */
            for (int64_t p = p0; p < kp; p++) dst[p * 2 * NR + 2 * j] = dst[p * 2 * NR + 2 * j + 1] = 0;
            continue;
        }
        const float *row = b + r * ldb;
        for (int64_t p = p0; p < kp; p++) {
            dst[p * 2 * NR + 2 * j] = sr_f32_to_bf16(row[2 * p]);
            dst[p * 2 * NR + 2 * j + 1] = 2 * p + 1 < k ? sr_f32_to_bf16(row[2 * p + 1]) : 0;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define UNROLL _Pragma("GCC unroll 14")

int sr_gemm_bf16_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

/* r[i] lane q -> r[q] lane i. */
INLINE void transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4b + m], 128-bit lane L: column 4L + m of rows 4b..4b+3 */
    for (int b = 0; b < 16; b += 4) {
        u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
        u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
        u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    for (int m = 0; m < 4; m++) {
        __m512i v = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88);    /* lanes 0, 2 */
        __m512i w = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xDD);    /* lanes 1, 3 */
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x88);
        __m512i w2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xDD);
        r[m] = _mm512_shuffle_i32x4(v, v2, 0x88);
        r[8 + m] = _mm512_shuffle_i32x4(v, v2, 0xDD);
        r[4 + m] = _mm512_shuffle_i32x4(w, w2, 0x88);
        r[12 + m] = _mm512_shuffle_i32x4(w, w2, 0xDD);
    }
}
/* Blocks of 16 rows x 16 pairs: 32 floats per row rounded at once
 * (vcvtne2ps2bf16, nearest even; it flushes subnormals to zero, unlike the
 * scalar tail, a difference below 1e-38), transposed in registers so that
 * each pair's 16 rows are one 64-byte store.  Returns the first pair it
 * left for the scalar path. */
static TARGET int64_t pack_half_avx512(const float *b, int64_t ldb, int64_t k, int64_t s,
                                       int half, uint16_t *packed)
{
    const int64_t kp = (k + 1) / 2;
    uint16_t *dst = packed + s * kp * 2 * NR + half * 16 * 2;
    const float *rows = b + (s * NR + half * 16) * ldb;
    int64_t p0 = 0;
    for (; 2 * (p0 + 16) <= k; p0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) {
            const float *src = rows + i * ldb + 2 * p0;
            r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src));
        }
        transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_storeu_si512((void *)(dst + (p0 + q) * 2 * NR), r[q]);
    }
    return p0;
}

/* The (k, k+1) pair of a row as one 32-bit value; `last_odd`: k + 1 is past
 * the end of the row, whose element is never read (0 instead). */
INLINE __m512i pair_of(const uint16_t *row, int64_t k, int last_odd)
{
    uint32_t v;
    if (last_odd) v = row[k];
    else memcpy(&v, row + k, sizeof v);
    return _mm512_set1_epi32((int)v);
}

/* Rows [0, mr) of a (a row block) times strip bp; ncols <= NR valid columns. */
INLINE void kernel(const int mr, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *bp,
                   float beta, float *c, int64_t ldc, int ncols)
{
    __m512 acc[MR][2];
    UNROLL for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const int64_t full = k / 2;
    for (int64_t p = 0; p < full; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(bp + p * 2 * NR));
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + p * 2 * NR + NR));
        UNROLL for (int i = 0; i < mr; i++) {
            const __m512bh av = (__m512bh)pair_of(a + i * lda, 2 * p, 0);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    if (k & 1) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(bp + full * 2 * NR));
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + full * 2 * NR + NR));
        UNROLL for (int i = 0; i < mr; i++) {
            const __m512bh av = (__m512bh)pair_of(a + i * lda, 2 * full, 1);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    const __mmask16 m0 = ncols >= 16 ? 0xFFFF : (__mmask16)((1u << ncols) - 1);
    const __mmask16 m1 = ncols >= 32 ? 0xFFFF : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    const __m512 vb = _mm512_set1_ps(beta);
    UNROLL for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        __m512 r0 = acc[i][0], r1 = acc[i][1];
        if (beta != 0.0f) {
            r0 = _mm512_add_ps(r0, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, ci)));
            r1 = _mm512_add_ps(r1, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16)));
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

#define KERNEL_CASE(R)                                                    \
    case R: kernel(R, k, a, lda, bp, beta, c, ldc, ncols); break;

/* Instantiates the kernel for every row count 1..MR. */
static TARGET void kernel_rows(int mr, int64_t k, const uint16_t *a, int64_t lda,
                               const uint16_t *bp, float beta, float *c, int64_t ldc, int ncols)
{
    switch (mr) {
    KERNEL_CASE(1) KERNEL_CASE(2) KERNEL_CASE(3) KERNEL_CASE(4) KERNEL_CASE(5)
    KERNEL_CASE(6) KERNEL_CASE(7) KERNEL_CASE(8) KERNEL_CASE(9) KERNEL_CASE(10)
    KERNEL_CASE(11) KERNEL_CASE(12) KERNEL_CASE(13) KERNEL_CASE(14)
    default: break;
    }
}

void sr_gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                  const uint16_t *packed_b, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    const int64_t kp = (k + 1) / 2;
    for (int64_t s = 0; s * NR < n; s++) {
        const uint16_t *bp = packed_b + s * kp * 2 * NR;
        const int ncols = n - s * NR < NR ? (int)(n - s * NR) : NR;
        for (int64_t i0 = 0; i0 < m; i0 += MR) {
            const int mr = m - i0 < MR ? (int)(m - i0) : MR;
            kernel_rows(mr, k, a + i0 * lda, lda, bp, beta, c + i0 * ldc + s * NR, ldc, ncols);
        }
    }
}

void sr_bf16_pack_b(const float *b, int64_t ldb, int64_t n, int64_t k, uint16_t *packed)
{
    static int vec = -1;
    if (vec < 0) vec = sr_gemm_bf16_available();
    for (int64_t s = 0; s * NR < n; s++)
        for (int half = 0; half < 2; half++) {
            const int j0 = half * 16;
            int64_t p0 = 0;
            if (vec && s * NR + j0 + 16 <= n) p0 = pack_half_avx512(b, ldb, k, s, half, packed);
            pack_scalar(b, ldb, n, k, s, j0, j0 + 16, p0, packed);
        }
}

#else /* no AVX512_BF16 compiler support: never available */

int sr_gemm_bf16_available(void) { return 0; }

void sr_bf16_pack_b(const float *b, int64_t ldb, int64_t n, int64_t k, uint16_t *packed)
{
    for (int64_t s = 0; s * NR < n; s++) pack_scalar(b, ldb, n, k, s, 0, NR, 0, packed);
}

void sr_gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                  const uint16_t *packed_b, float beta, float *c, int64_t ldc)
{
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed_b; (void)beta; (void)c; (void)ldc;
}

#endif
