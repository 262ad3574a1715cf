/* Decode (one column) of bf16 weights against bf16-rounded activations,
 * for the opt-in approximate kernels (STRATA_KERNELS=int8, quant/matmul.h).
 *
 * The exact bf16 decode kernel (matmul_avx512.c) widens every weight to
 * f32 and needs, per 64 weight bytes, two widening operations, two x loads
 * and two FMAs.  Row by row over the 100352 x 2560 LM head that is about
 * 1.2x what one core must turn over when the host's memory reads ~65 GB/s,
 * and the head read 0.88-0.95 of a same-size probe read there.  With x
 * rounded to bf16 once per call, vdpbf16ps takes 32 weights and 32
 * activations per operation: 0.95-1.00 in the same minutes, and a 3B NF4
 * decode step 1-2 points closer to the bandwidth ceiling (BENCHMARKS.md,
 * forward-pass section, "Tenth pass").  Products of two bf16 are exact in
 * f32; x is rounded to 8 significant bits (relative error <= 2^-8 per
 * element, no more than the int8 activations of this mode's other kernels
 * lose: half a step of 1/127 of their block's largest); sums are f32 in
 * four interleaved partial sums (DAZ/FTZ as vdpbf16ps does them).
 *
 * Rows go one by one, so a thread reads one stream; x as bf16 (2 bytes a
 * column, 8 KiB at SR_BF16DOT_MAX_COLS) stays in L1.
 *
 * Since then a model on an AVX-512 CPU keeps its bf16 weights, the head
 * included, in 16-row tiles, which the exact tile kernel reads faster
 * still (quant/bf16_tiles.h: 1.01 of the probe against 0.93 for this
 * kernel at the fast minutes); this one serves untiled bf16 matrices. */
#include "quant/decode_bf16dot.h"


#include "runtime/alloc.h"
#include "runtime/dtype.h"

/* Same chunking as the exact decode (quant/matmul.c): guided chunks of 16
 * rows, so a descheduled thread leaves its rest to the other. */
#define ROW_CHUNK 16
#define PARALLEL_MIN_ELEMS (1 << 16)
#define PREFETCH_AHEAD 1024

void sr_bf16dot_round_x(const float *x, int64_t cols, uint16_t *xb)
{
    for (int64_t j = 0; j < cols; j++) xb[j] = sr_f32_to_bf16(x[j]);
}

void sr_bf16dot_ref(const uint16_t *w, int64_t rows, int64_t cols, const float *x, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += (double)sr_bf16_to_f32(w[r * cols + j]) *
                 (double)sr_bf16_to_f32(sr_f32_to_bf16(x[j]));
        y[r] = (float)s;
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10)
#include <immintrin.h>

#include "quant/gemm_bf16.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

static TARGET float row_dot(const uint16_t *row, const uint16_t *xb, int64_t cols)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 128 <= cols; j += 128) {
        const char *ahead = (const char *)(row + j) + PREFETCH_AHEAD;
        for (int l = 0; l < 256; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T1);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + j),
                              (__m512bh)_mm512_loadu_si512(xb + j));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(row + j + 32),
                              (__m512bh)_mm512_loadu_si512(xb + j + 32));
        a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(row + j + 64),
                              (__m512bh)_mm512_loadu_si512(xb + j + 64));
        a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(row + j + 96),
                              (__m512bh)_mm512_loadu_si512(xb + j + 96));
    }
    for (; j + 32 <= cols; j += 32)
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + j),
                              (__m512bh)_mm512_loadu_si512(xb + j));
    if (j < cols) { /* masked: the zeros add nothing */
        const __mmask32 m = (__mmask32)((1ull << (cols - j)) - 1);
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(m, row + j),
                              (__m512bh)_mm512_maskz_loadu_epi16(m, xb + j));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

int sr_bf16dot_available(void) { return sr_gemm_bf16_available(); }

int sr_bf16dot_decode(const uint16_t *w, int64_t rows, int64_t cols, const float *x, float *y)
{
    if (rows < 0 || cols < 1 || cols > SR_BF16DOT_MAX_COLS || !sr_bf16dot_available()) return -1;
    uint16_t *xb = sr_malloc_aligned((size_t)cols * sizeof *xb);
    if (!xb) return -1;
    sr_bf16dot_round_x(x, cols, xb);
    const int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(guided, 4) if (rows * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t r1 = (ch + 1) * ROW_CHUNK < rows ? (ch + 1) * ROW_CHUNK : rows;
        for (int64_t r = ch * ROW_CHUNK; r < r1; r++) y[r] = row_dot(w + r * cols, xb, cols);
    }
    sr_free_aligned(xb);
    return 0;
}

#else /* no AVX512_BF16 compiler support: never taken */

int sr_bf16dot_available(void) { return 0; }

int sr_bf16dot_decode(const uint16_t *w, int64_t rows, int64_t cols, const float *x, float *y)
{
    (void)w, (void)rows, (void)cols, (void)x, (void)y;
    return -1;
}

#endif
