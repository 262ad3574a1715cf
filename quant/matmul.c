/* Y = X · Wᵀ over every weight format: ISA dispatch, the scalar reference,
 * and the decode / prefill drivers that split work over OpenMP threads and
 * hand it to the per-ISA kernels (quant/matmul_kernels.h). */
#include "quant/matmul.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

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
    for (int64_t c = 0; c < n; c++)
        for (int64_t g = 0; g < cols; g += group) {
            const float *src = x + c * ldx + g;
            float *dst = xp + c * cols + g;
            for (int k = 0; k < 8; k++)
                for (int d = 0; d < lanes; d++) dst[k * lanes + d] = src[8 * d + (k ^ 1)];
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

/* Generic 4-bit decode: dequantize one row at a time into a per-thread
 * buffer, then a dense dot.  Handles blocks crossing rows, odd element
 * counts and partial blocks.  Returns -1 if the buffers cannot be had. */
static int decode_rowwise(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                          int64_t ldx, float *y, int64_t ldy)
{
    int nt = omp_get_max_threads();
    int64_t rows = w->rows, cols = w->cols;
    int parallel = rows * cols >= PARALLEL_MIN_ELEMS && nt > 1;
    if (!parallel) nt = 1;
    int64_t stride = (cols + 15) & ~(int64_t)15;
    float *buf = sr_malloc_aligned((size_t)nt * (size_t)stride * sizeof(float));
    if (!buf) return -1;
    int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        float *row = buf + (int64_t)omp_get_thread_num() * stride;
        int64_t r1 = (ch + 1) * ROW_CHUNK < rows ? (ch + 1) * ROW_CHUNK : rows;
        for (int64_t r = ch * ROW_CHUNK; r < r1; r++) {
            k->dequant(w, r * cols, (r + 1) * cols, row);
            k->dot_f32(row, cols, cols, x, n, ldx, y + r, ldy, 0, 1);
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
    float *xp = NULL;
    /* Kernels without a permuted 4-bit path (scalar) take every format. */
    if (sr_wformat_is_4bit(w->fmt) && k->q4_group) {
        if (!sr_q4_decode_fits(w, k->q4_group)) {
            if (decode_rowwise(k, w, x, n, ldx, y, ldy)) sr_matmul_ref(w, x, n, ldx, y, ldy);
            return;
        }
        xp = sr_malloc_aligned((size_t)(n * cols) * sizeof(float));
        if (!xp) { /* out of memory: slow but allocation-free */
            sr_matmul_ref(w, x, n, ldx, y, ldy);
            return;
        }
        sr_q4_permute_x(x, n, ldx, cols, k->q4_group, xp);
        x = xp;
        ldx = cols;
    }
    int64_t nchunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(static) if (rows * cols >= PARALLEL_MIN_ELEMS)
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

/* ---- prefill ---------------------------------------------------------- */

/* Elements of dequantized weight per panel: big enough that sgemm's own
 * packing dominates the call overhead, small enough to stay in L3. */
#define PANEL_ELEMS ((int64_t)2 << 20)

static int64_t panel_cols(int64_t rows, int64_t cols)
{
    int64_t tk = PANEL_ELEMS / rows;
    tk = tk < 256 ? 256 : tk & ~(int64_t)63;
    return tk < cols ? tk : cols;
}

/* Dequantize columns [k0, k0+kk) of every row into panel (rows x kk). */
static void dequant_panel(const sr_kernels *k, const sr_qmatrix *w, int64_t k0, int64_t kk,
                          float *panel)
{
    int64_t rows = w->rows, cols = w->cols;
#pragma omp parallel for schedule(static) if (rows * kk >= PARALLEL_MIN_ELEMS)
    for (int64_t r = 0; r < rows; r++)
        k->dequant(w, r * cols + k0, r * cols + k0 + kk, panel + r * kk);
}

static void dequant_panel_bf16(const sr_kernels *k, const sr_qmatrix *w, int64_t k0, int64_t kk,
                               float *scratch, int64_t scratch_stride, uint16_t *panel)
{
    int64_t rows = w->rows, cols = w->cols;
#pragma omp parallel for schedule(static) if (rows * kk >= PARALLEL_MIN_ELEMS)
    for (int64_t r = 0; r < rows; r++) {
        float *tmp = scratch + (int64_t)omp_get_thread_num() * scratch_stride;
        k->dequant(w, r * cols + k0, r * cols + k0 + kk, tmp);
        k->to_bf16(tmp, kk, panel + r * kk);
    }
}

/* cblas.h declares cblas_sbgemm, but OpenBLAS has it only when built with
 * BUILD_BFLOAT16 (Debian's 0.3.21 is not).  A weak reference keeps strata
 * linkable everywhere and lets the bf16 path run where the symbol exists. */
#pragma weak cblas_sbgemm

int sr_matmul_bf16_available(void) { return cblas_sbgemm != NULL; }

/* Opt-in (STRATA_PREFILL=bf16): weights and activations rounded to bf16,
 * products accumulated in f32 by OpenBLAS sbgemm.  Returns -1 on OOM. */
static int prefill_bf16(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                        int64_t ldx, float *y, int64_t ldy)
{
    int64_t rows = w->rows, cols = w->cols, tk = panel_cols(rows, cols);
    int nt = omp_get_max_threads();
    int64_t sstride = (tk + 15) & ~(int64_t)15;
    uint16_t *xb = sr_malloc_aligned((size_t)(n * cols) * sizeof(uint16_t));
    uint16_t *panel = sr_malloc_aligned((size_t)(rows * tk) * sizeof(uint16_t));
    float *scratch = sr_malloc_aligned((size_t)nt * (size_t)sstride * sizeof(float));
    if (!xb || !panel || !scratch) {
        sr_free_aligned(xb);
        sr_free_aligned(panel);
        sr_free_aligned(scratch);
        return -1;
    }
#pragma omp parallel for schedule(static) if (n * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t c = 0; c < n; c++) k->to_bf16(x + c * ldx, cols, xb + c * cols);
    for (int64_t k0 = 0; k0 < cols; k0 += tk) {
        int64_t kk = cols - k0 < tk ? cols - k0 : tk;
        dequant_panel_bf16(k, w, k0, kk, scratch, sstride, panel);
        cblas_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)rows,
                     (blasint)kk, 1.0f, xb + k0, (blasint)cols, panel, (blasint)kk,
                     k0 ? 1.0f : 0.0f, y, (blasint)ldy);
    }
    sr_free_aligned(xb);
    sr_free_aligned(panel);
    sr_free_aligned(scratch);
    return 0;
}

/* Default f32 path: dequantize a panel of all rows x tk columns (threads
 * over rows), then one sgemm that OpenBLAS threads itself.  Returns -1 on
 * OOM. */
static int prefill_f32(const sr_kernels *k, const sr_qmatrix *w, const float *x, int64_t n,
                       int64_t ldx, float *y, int64_t ldy)
{
    int64_t rows = w->rows, cols = w->cols;
    if (w->fmt == SR_W_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)rows,
                    (blasint)cols, 1.0f, x, (blasint)ldx, w->data, (blasint)cols, 0.0f, y,
                    (blasint)ldy);
        return 0;
    }
    int64_t tk = panel_cols(rows, cols);
    float *panel = sr_malloc_aligned((size_t)(rows * tk) * sizeof(float));
    if (!panel) return -1;
    for (int64_t k0 = 0; k0 < cols; k0 += tk) {
        int64_t kk = cols - k0 < tk ? cols - k0 : tk;
        dequant_panel(k, w, k0, kk, panel);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)rows,
                    (blasint)kk, 1.0f, x + k0, (blasint)ldx, panel, (blasint)kk,
                    k0 ? 1.0f : 0.0f, y, (blasint)ldy);
    }
    sr_free_aligned(panel);
    return 0;
}

static int fits_blasint(int64_t v) { return v >= 0 && v <= INT_MAX; }

void sr_matmul_prefill(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                       int64_t ldy, sr_isa isa)
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
    const char *mode = getenv("STRATA_PREFILL");
    int bf16 = mode && !strcmp(mode, "bf16");
    if (bf16 && !sr_matmul_bf16_available()) {
        static int warned;
        if (!warned) {
            warned = 1;
            sr_warn("STRATA_PREFILL=bf16: this OpenBLAS has no cblas_sbgemm (built without "
                    "BUILD_BFLOAT16); prefill stays f32");
        }
        bf16 = 0;
    }
    int rc = bf16 ? prefill_bf16(k, w, x, n, ldx, y, ldy) : prefill_f32(k, w, x, n, ldx, y, ldy);
    if (rc) sr_matmul_decode(w, x, n, ldx, y, ldy, isa); /* OOM: needs less memory */
}

void sr_matmul(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
               int64_t ldy)
{
    sr_isa isa = sr_isa_detect();
    if (n <= 8) sr_matmul_decode(w, x, n, ldx, y, ldy, isa);
    else sr_matmul_prefill(w, x, n, ldx, y, ldy, isa);
}
