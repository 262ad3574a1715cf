/* Y = X · Wᵀ over every weight format: ISA dispatch, the scalar reference,
 * and the decode / prefill drivers that split work over OpenMP threads and
 * hand it to the per-ISA kernels (quant/matmul_kernels.h). */
#include "quant/matmul.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bf16_tiles.h"
#include "quant/decode_bf16dot.h"
#include "quant/gemm_bf16.h"
#include "quant/matmul_kernels.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "runtime/log.h"

/* ---- ISA selection --------------------------------------------------- */

static sr_isa cpu_isa(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return SR_ISA_AVX512;
    /* F16C has no __builtin_cpu_supports name in every compiler; every AVX2
     * CPU shipped has it. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SR_ISA_AVX2;
#endif
    return SR_ISA_SCALAR;
}

sr_isa sr_isa_detect(void)
{
    sr_isa isa = cpu_isa();
    const char *cap = getenv("STRATA_ISA");
    if (cap) {
        sr_isa want = isa;
        if (!strcmp(cap, "scalar")) want = SR_ISA_SCALAR;
        else if (!strcmp(cap, "avx2")) want = SR_ISA_AVX2;
        else if (!strcmp(cap, "avx512")) want = SR_ISA_AVX512;
        if (want < isa) isa = want;
    }
    return isa;
}

const char *sr_isa_name(sr_isa isa)
{
    switch (isa) {
    case SR_ISA_SCALAR: return "scalar";
    case SR_ISA_AVX2: return "avx2";
    case SR_ISA_AVX512: return "avx512";
    }
    return "?";
}

const sr_kernels *sr_kernels_for(sr_isa isa)
{
    sr_isa have = cpu_isa();
    if (isa > have) isa = have;
    switch (isa) {
    case SR_ISA_AVX512: return &sr_kernels_avx512;
    case SR_ISA_AVX2: return &sr_kernels_avx2;
    default: return &sr_kernels_scalar;
    }
}

/* ---- scalar reference ------------------------------------------------- */

static float ref_element(const sr_qmatrix *w, int64_t r, int64_t j)
{
    float v;
    sr_dequant_flat_scalar(w, r * w->cols + j, r * w->cols + j + 1, &v);
    return v;
}

void sr_matmul_ref(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                   int64_t ldy)
{
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t c = 0; c < n; c++) {
            double s = 0;
            for (int64_t j = 0; j < w->cols; j++)
                s += (double)ref_element(w, r, j) * (double)x[c * ldx + j];
            y[c * ldy + r] = (float)s;
        }
}

/* ---- helpers shared by the drivers ------------------------------------ */

int sr_q4_decode_fits(const sr_qmatrix *w, int group)
{
    int bs = w->blocksize;
    return group > 0 && w->cols % group == 0 && bs >= 8 && (bs & (bs - 1)) == 0 &&
           w->scales != NULL;
}

void sr_q4_permute_x(const float *x, int64_t n, int64_t ldx, int64_t cols, int group, float *xp)
{
    int lanes = group / 8;
    for (int64_t g = 0; g < cols; g += group)
        for (int k = 0; k < 8; k++)
            for (int64_t c = 0; c < n; c++) {
                const float *src = x + c * ldx + g;
                float *dst = xp + g * n + (k * n + c) * lanes;
                for (int d = 0; d < lanes; d++) dst[d] = src[8 * d + (k ^ 1)];
            }
}

void sr_bf16_split_x(const float *x, int64_t n, int64_t ldx, int64_t cols, int group, float *xp)
{
    const int64_t whole = cols / group * group;
    for (int64_t c = 0; c < n; c++) {
        const float *src = x + c * ldx;
        float *dst = xp + c * cols;
        for (int64_t g = 0; g < whole; g += group)
            for (int i = 0; i < group / 2; i++) {
                dst[g + i] = src[g + 2 * i];
                dst[g + group / 2 + i] = src[g + 2 * i + 1];
            }
        for (int64_t j = whole; j < cols; j++) dst[j] = src[j];
    }
}

/* Rows per unit of OpenMP work: a multiple of 16 keeps threads off each
 * other's cache lines of y. */
#define ROW_CHUNK 16
/* Below this many weight elements a matmul runs on the calling thread. */
#define PARALLEL_MIN_ELEMS (1 << 16)

static void zero_y(int64_t rows, int64_t n, float *y, int64_t ldy)
{
    for (int64_t c = 0; c < n; c++) memset(y + c * ldy, 0, (size_t)rows * sizeof(float));
}

/* Generic 4-bit decode: dequantize a few rows at a time into a per-thread
 * buffer, then a dense dot.  Handles blocks crossing rows, odd element
 * counts and partial blocks.  Returns -1 if the buffers cannot be had. */
static int decode_rowwise(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                          int64_t ldx, float *y, int64_t ldy)
{
    int nt = omp_get_max_threads();
    int64_t rows = w->rows, cols = w->cols;
    int parallel = rows * cols >= PARALLEL_MIN_ELEMS && nt > 1;
    if (!parallel) nt = 1;
    enum { TILE = 4 }; /* rows per dequantized tile: the dot kernels block rows */
    int64_t stride = TILE * cols;
    float *buf = sr_malloc_aligned((size_t)nt * (size_t)stride * sizeof(float));
    if (!buf) return -1;
    int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        float *tile = buf + (int64_t)omp_get_thread_num() * stride;
        int64_t r1 = (ch + 1) * ROW_CHUNK < rows ? (ch + 1) * ROW_CHUNK : rows;
        for (int64_t r = ch * ROW_CHUNK; r < r1; r += TILE) {
            int64_t nr = r1 - r < TILE ? r1 - r : TILE;
            k->dequant(w, r * cols, (r + nr) * cols, tile);
            k->dot_f32(tile, cols, cols, x, n, ldx, y + r, ldy, 0, nr);
        }
    }
    sr_free_aligned(buf);
    return 0;
}

/* One block of at most 8 columns. */
static void decode_block(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                         int64_t ldx, float *y, int64_t ldy)
{
    int64_t rows = w->rows, cols = w->cols;
    /* x in the order the kernel reads it (matmul_kernels.h).  Kernels
     * without a permuted 4-bit path (scalar) take every format as is. */
    const int q4 = sr_wformat_is_4bit(w->fmt) && k->q4_group;
    const int split = w->fmt == SR_W_BF16 && k->bf16_group;
    if (q4 && !sr_q4_decode_fits(w, k->q4_group)) {
        if (decode_rowwise(k, w, x, n, ldx, y, ldy)) sr_matmul_ref(w, x, n, ldx, y, ldy);
        return;
    }
    float *xp = NULL;
    if (q4 || split) {
        xp = sr_malloc_aligned((size_t)(n * cols) * sizeof(float));
        if (!xp) { /* out of memory: slow but allocation-free */
            sr_matmul_ref(w, x, n, ldx, y, ldy);
            return;
        }
        if (q4) sr_q4_permute_x(x, n, ldx, cols, k->q4_group, xp);
        else sr_bf16_split_x(x, n, ldx, cols, k->bf16_group, xp);
        x = xp;
        ldx = cols;
    }
    int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
    /* guided: a thread that loses its core mid-call leaves its remaining
     * chunks to the others (static split: the step waits for it).  Measured
     * with one core taken by another process: mean call -10%; the same on a
     * quiet machine.  Chunks of >= 4 x 16 rows keep the prefetch that runs
     * past a chunk's end a small share of the bytes read. */
#pragma omp parallel for schedule(guided, 4) if (rows * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t r1 = (ch + 1) * ROW_CHUNK < rows ? (ch + 1) * ROW_CHUNK : rows;
        k->decode(w, x, n, ldx, y, ldy, ch * ROW_CHUNK, r1);
    }
    sr_free_aligned(xp);
}

void sr_matmul_decode(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                      int64_t ldy, sr_isa isa)
{
    if (n <= 0 || w->rows <= 0) return;
    if (w->cols <= 0) {
        zero_y(w->rows, n, y, ldy);
        return;
    }
    const sr_kernels *k = sr_kernels_for(isa);
    for (int64_t c0 = 0; c0 < n; c0 += 8)
        decode_block(k, w, x + c0 * ldx, n - c0 < 8 ? n - c0 : 8, ldx, y + c0 * ldy, ldy);
}

/* ---- prefill ----------------------------------------------------------
 *
 * Each thread takes whole tiles of TILE_ROWS output rows; for every
 * TILE_COLS-wide slice of the inner dimension it dequantizes the weights into
 * its own f32 buffer (512 KiB: stays in L2) and calls sgemm, which OpenBLAS
 * runs single-threaded inside an OpenMP region.  Measured on the 2-core
 * Zen 4 dev VM (nf4, n = 512, 2560x8192 and 8192x2560): 98-102% of a
 * threaded sgemm on f32 weights, where dequantizing a whole panel and letting
 * OpenBLAS thread one big sgemm per panel reached only 67-70%. */
enum { TILE_ROWS = 256, TILE_COLS = 512 };

/* Rows per tile: TILE_ROWS, or fewer so that every thread gets a tile. */
static int64_t tile_rows(int64_t rows, int nt)
{
    int64_t per = (rows + nt - 1) / nt;
    per = (per + 15) & ~(int64_t)15;
    return per < TILE_ROWS ? per : TILE_ROWS;
}

/* cblas.h declares cblas_sbgemm, but OpenBLAS has it only when built with
 * BUILD_BFLOAT16 (Debian's 0.3.21 is not).  A weak reference keeps strata
 * linkable everywhere and lets the bf16 path run where the symbol exists;
 * on CPUs with AVX512_BF16 strata's own kernel (quant/gemm_bf16.h) runs
 * instead (measured at 2.2x a single-threaded sgemm on Zen 4). */
#pragma weak cblas_sbgemm

int sr_matmul_bf16_available(void) { return sr_gemm_bf16_available() || cblas_sbgemm != NULL; }

/* One slab of a tiled bf16 matrix (quant/bf16_tiles.h): the tiles give
 * the strip transposed, so the GEMM takes it as Wᵀ untransposed, or for
 * strata's bf16 GEMM already packed.  The stored bytes are not read. */
static void prefill_bf16_tiles(const sr_kernels *k, const sr_qmatrix *w, const float *x,
                               int64_t n, int64_t ldx, float *y, int64_t ldy, int64_t r0,
                               int64_t nr, int64_t k0, int64_t kk, int own_bf16, int bf16,
                               const uint16_t *x16, float *tile, uint16_t *tile16, float beta)
{
    const int64_t cols = w->cols, ldb = (nr + 15) & ~(int64_t)15;
    if (own_bf16) {
        sr_bf16tiles_strip_packed(w, r0, nr, k0, kk, tile16);
        sr_gemm_bf16(n, nr, kk, x16 + k0, cols, tile16, beta, y + r0, ldy);
        return;
    }
    sr_bf16tiles_strip_f32t(w, r0, nr, k0, kk, tile, ldb);
    if (bf16) {
        k->to_bf16(tile, kk * ldb, tile16);
        cblas_sbgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)nr,
                     (blasint)kk, 1.0f, x16 + k0, (blasint)cols, tile16, (blasint)ldb, beta,
                     y + r0, (blasint)ldy);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)nr,
                    (blasint)kk, 1.0f, x + k0, (blasint)ldx, tile, (blasint)ldb, beta, y + r0,
                    (blasint)ldy);
    }
}

/* bf16 != 0: the opt-in path (weights and activations rounded to bf16,
 * sbgemm).  Returns -1 if the buffers cannot be had. */
static int prefill_tiles(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                         int64_t ldx, float *y, int64_t ldy, int bf16)
{
    int64_t rows = w->rows, cols = w->cols;
    int nt = omp_get_max_threads();
    int64_t tr = tile_rows(rows, nt), ntiles = (rows + tr - 1) / tr;
    size_t tile_elems = (size_t)(tr * TILE_COLS);
    const int own_bf16 = bf16 && sr_gemm_bf16_available();
    size_t tile16_elems = own_bf16 ? (size_t)sr_bf16_packed_elems(tr, TILE_COLS) : tile_elems;
    float *tiles = sr_malloc_aligned((size_t)nt * tile_elems * sizeof(float));
    uint16_t *tiles16 = bf16 ? sr_malloc_aligned((size_t)nt * tile16_elems * sizeof(uint16_t)) : NULL;
    uint16_t *x16 = bf16 ? sr_malloc_aligned((size_t)(n * cols) * sizeof(uint16_t)) : NULL;
    if (!tiles || (bf16 && (!tiles16 || !x16))) {
        sr_free_aligned(tiles);
        sr_free_aligned(tiles16);
        sr_free_aligned(x16);
        return -1;
    }
    if (bf16) {
#pragma omp parallel for schedule(static) if (n * cols >= PARALLEL_MIN_ELEMS)
        for (int64_t c = 0; c < n; c++) k->to_bf16(x + c * ldx, cols, x16 + c * cols);
    }
#pragma omp parallel for schedule(static) if (rows * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t t = 0; t < ntiles; t++) {
        float *tile = tiles + (size_t)omp_get_thread_num() * tile_elems;
        uint16_t *tile16 = bf16 ? tiles16 + (size_t)omp_get_thread_num() * tile16_elems : NULL;
        int64_t r0 = t * tr, nr = rows - r0 < tr ? rows - r0 : tr;
        for (int64_t k0 = 0; k0 < cols; k0 += TILE_COLS) {
            int64_t kk = cols - k0 < TILE_COLS ? cols - k0 : TILE_COLS;
            float beta = k0 ? 1.0f : 0.0f;
            if (w->tiles && w->fmt == SR_W_BF16) { /* the strip from the tiles, as Wᵀ */
                prefill_bf16_tiles(k, w, x, n, ldx, y, ldy, r0, nr, k0, kk, own_bf16, bf16,
                                   x16, tile, tile16, beta);
                continue;
            }
            for (int64_t r = 0; r < nr; r++)
                k->dequant(w, (r0 + r) * cols + k0, (r0 + r) * cols + k0 + kk, tile + r * kk);
            if (own_bf16) {
                sr_bf16_pack_b(tile, kk, nr, kk, tile16);
                sr_gemm_bf16(n, nr, kk, x16 + k0, cols, tile16, beta, y + r0, ldy);
            } else if (bf16) {
                k->to_bf16(tile, nr * kk, tile16);
                cblas_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)nr,
                             (blasint)kk, 1.0f, x16 + k0, (blasint)cols, tile16, (blasint)kk,
                             beta, y + r0, (blasint)ldy);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)nr,
                            (blasint)kk, 1.0f, x + k0, (blasint)ldx, tile, (blasint)kk, beta,
                            y + r0, (blasint)ldy);
            }
        }
    }
    sr_free_aligned(tiles);
    sr_free_aligned(tiles16);
    sr_free_aligned(x16);
    return 0;
}

static int fits_blasint(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* Prefill with bf16 operands (want_bf16: 1 asked by STRATA_PREFILL=bf16,
 * 2 implied by the int8 mode; 0: f32). */
static void prefill(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                    int64_t ldy, sr_isa isa, int want_bf16);

void sr_matmul_prefill(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                       int64_t ldy, sr_isa isa)
{
    const char *mode = getenv("STRATA_PREFILL");
    prefill(w, x, n, ldx, y, ldy, isa, mode && !strcmp(mode, "bf16"));
}

static void prefill(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                    int64_t ldy, sr_isa isa, int want_bf16)
{
    if (n <= 0 || w->rows <= 0) return;
    if (w->cols <= 0) {
        zero_y(w->rows, n, y, ldy);
        return;
    }
    const sr_kernels *k = sr_kernels_for(isa);
    if (!fits_blasint(n) || !fits_blasint(w->rows) || !fits_blasint(w->cols) ||
        !fits_blasint(ldx) || !fits_blasint(ldy) || !fits_blasint(n * w->cols)) {
        sr_matmul_decode(w, x, n, ldx, y, ldy, isa);
        return;
    }
    int bf16 = want_bf16 != 0;
    if (bf16 && !sr_matmul_bf16_available()) {
        static atomic_int warned;
        if (want_bf16 == 1 && !atomic_exchange(&warned, 1)) {
            sr_warn("STRATA_PREFILL=bf16: this CPU has no AVX512_BF16 and this OpenBLAS no "
                    "cblas_sbgemm (built without BUILD_BFLOAT16); prefill stays f32");
        }
        bf16 = 0;
    }
    if (w->fmt == SR_W_F32 && !bf16) { /* nothing to dequantize: OpenBLAS threads it */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)w->rows,
                    (blasint)w->cols, 1.0f, x, (blasint)ldx, w->data, (blasint)w->cols, 0.0f, y,
                    (blasint)ldy);
        return;
    }
    if (prefill_tiles(k, w, x, n, ldx, y, ldy, bf16))
        sr_matmul_decode(w, x, n, ldx, y, ldy, isa); /* out of memory: needs less */
}

void sr_matmul(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
               int64_t ldy)
{
    sr_isa isa = sr_isa_detect();
    /* bf16 with tiles (a model on the CPU, quant/bf16_tiles.h): decode
     * reads the tiles, exactly in either mode (prefill reads them too) */
    if (isa == SR_ISA_AVX512 && n <= 8 && w->fmt == SR_W_BF16 && w->tiles &&
        !sr_bf16tiles_decode(w, x, n, ldx, y, ldy))
        return;
    /* Opt-in int8 kernels (quant/matmul_vnni.c), and with them untiled bf16
     * weights against bf16-rounded x at decode (quant/decode_bf16dot.h);
     * -1: not for this call. */
    if (isa == SR_ISA_AVX512 && sr_matmul_get_mode() == SR_MATMUL_INT8) {
        if (!sr_matmul_int8(w, x, n, ldx, y, ldy)) return;
        if (w->fmt == SR_W_BF16 && n == 1 &&
            !sr_bf16dot_decode(w->data, w->rows, w->cols, x, y))
            return;
    }
    if (n <= 8) {
        sr_matmul_decode(w, x, n, ldx, y, ldy, isa);
        return;
    }
    /* The int8 mode's prefill of bf16 weights: x rounded to bf16 as well, the
     * numerics of a bf16 model upstream (the weights lose nothing). */
    const int int8_bf16 = w->fmt == SR_W_BF16 && isa == SR_ISA_AVX512 &&
                          sr_matmul_get_mode() == SR_MATMUL_INT8;
    if (int8_bf16) prefill(w, x, n, ldx, y, ldy, isa, 2);
    else sr_matmul_prefill(w, x, n, ldx, y, ldy, isa);
}

void sr_matmul_parts(const sr_qmatrix *w, int parts, const float *x, int64_t n, int64_t ldx,
                     float *const *y, int64_t ldy)
{
    if (parts > 1 && sr_isa_detect() == SR_ISA_AVX512 &&
        sr_matmul_get_mode() == SR_MATMUL_INT8 &&
        !sr_matmul_int8_parts(w, parts, x, n, ldx, y, ldy))
        return;
    for (int i = 0; i < parts; i++) sr_matmul(&w[i], x, n, ldx, y[i], ldy);
}
