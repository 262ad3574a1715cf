/* The CUDA weight kernels (quant/cuda/qmatmul_cuda.h) against the CPU.
 *
 *   dequant   bit-identical to sr_qmatrix_dequant_rows (f32), and to its
 *             round-to-nearest-even into bf16 / f16, for every format, on
 *             shapes with odd column counts (4-bit rows starting mid-byte),
 *             blocks spanning rows, partial last blocks, a blocksize that is
 *             not a multiple of 32, and sub-ranges of rows;
 *   decode    the fused GEMV for n = 1..8, with aligned and unaligned
 *             activation strides (vector and element-wise paths), against
 *             sr_matmul_ref; output slices of a wider Y stay untouched;
 *   prefill   cuBLAS over dequantized tiles (one tile and many) for f32,
 *             bf16 and f16 compute;
 *   errors    bad arguments fail with a message naming the operation.
 *
 * Tolerances.  The GEMV accumulates in f32 in its own order: as the CPU
 * kernels' test, |y - ref| <= 1e-5 * sum_j |w_j x_j| + half an ulp.  cuBLAS
 * may split k differently and its tensor cores accumulate in f32 with
 * truncation, so a k-term sum is bounded by (1e-5 + k * 2^-24) * sum_j
 * |w_j x_j|; the 16-bit paths are compared with the exact product of the
 * rounded operands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "quant/cuda/qmatmul_cuda.h"
#include "quant/matmul.h"

static const sr_wformat kFormats[] = {SR_W_F32, SR_W_BF16, SR_W_F16,
                                      SR_W_NF4, SR_W_FP4,  SR_W_INT8};
#define N_FORMATS (int)(sizeof kFormats / sizeof kFormats[0])

typedef struct shape { int64_t rows, cols; int bs; } shape;
static const shape kShapes[] = {
    {1, 32, 64},    {7, 64, 64},     {33, 96, 32},  {5, 37, 64},   {3, 100, 64},
    {130, 512, 64}, {9, 4096, 4096}, {11, 200, 48}, {64, 1024, 256}, {257, 33, 32},
};
#define N_SHAPES (int)(sizeof kShapes / sizeof kShapes[0])

static sr_qmatrix upload(const host_matrix *h)
{
    sr_error e;
    sr_qmatrix d;
    if (sr_cuda_qmatrix_upload(&h->w, &d, &e)) cuda_test_die("upload", &e);
    return d;
}

static float *dequant_host(const sr_qmatrix *w)
{
    float *ref = malloc(sizeof(float) * (size_t)(w->rows * w->cols));
    sr_qmatrix_dequant_rows(w, 0, w->rows, ref);
    return ref;
}

/* ---- dequantization ------------------------------------------------------- */

static void check_dequant(const host_matrix *h, const sr_qmatrix *d, const float *ref, int64_t r0,
                          int64_t nr)
{
    const int64_t cols = h->w.cols, n = nr * cols;
    void *out = dev_alloc(sizeof(float) * (size_t)(n ? n : 1));
    float *got = malloc(sizeof(float) * (size_t)(n ? n : 1));
    uint16_t *got16 = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    sr_error e;
    assert_int_equal(sr_cuda_dequant_rows(ctx, d, r0, nr, SR_CUDA_F32, out, &e), 0);
    ctx_sync(ctx);
    dev_get(got, out, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &ref[r0 * cols + i], 4);
        if (a != b)
            fail_msg("%s [%lld x %lld] bs %d: element %lld: gpu %a cpu %a",
                     sr_wformat_name(h->w.fmt), (long long)h->w.rows, (long long)cols,
                     h->w.blocksize, (long long)(r0 * cols + i), got[i], ref[r0 * cols + i]);
    }
    for (int t = 0; t < 2; t++) {
        sr_cuda_dtype dt = t ? SR_CUDA_F16 : SR_CUDA_BF16;
        assert_int_equal(sr_cuda_dequant_rows(ctx, d, r0, nr, dt, out, &e), 0);
        ctx_sync(ctx);
        dev_get(got16, out, sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            float v = ref[r0 * cols + i];
            uint16_t want = t ? sr_f32_to_f16(v) : sr_f32_to_bf16(v);
            if (got16[i] != want)
                fail_msg("%s -> %s: element %lld: gpu 0x%04x cpu 0x%04x (%a)",
                         sr_wformat_name(h->w.fmt), sr_cuda_dtype_name(dt),
                         (long long)(r0 * cols + i), got16[i], want, v);
        }
    }
    free(got);
    free(got16);
    sr_cuda_free(out);
}

static void test_dequant(void **state)
{
    (void)state;
    for (int f = 0; f < N_FORMATS; f++) {
        for (int s = 0; s < N_SHAPES; s++) {
            host_matrix h = host_matrix_rand(kFormats[f], kShapes[s].rows, kShapes[s].cols,
                                             kShapes[s].bs);
            sr_qmatrix d = upload(&h);
            float *ref = dequant_host(&h.w);
            check_dequant(&h, &d, ref, 0, h.w.rows);
            int64_t r0 = h.w.rows / 3, nr = h.w.rows - r0 - (h.w.rows > 2);
            check_dequant(&h, &d, ref, r0, nr);
            free(ref);
            sr_cuda_qmatrix_free(&d);
            host_matrix_free(&h);
        }
    }
}

/* ---- products --------------------------------------------------------------- */

/* sum_j |w_rj x_cj| for every (c, r), from the dequantized matrix. */
static double *abs_sums(const float *W, int64_t rows, int64_t cols, const float *x, int64_t n,
                        int64_t ldx)
{
    double *s = malloc(sizeof(double) * (size_t)(n * rows));
    for (int64_t c = 0; c < n; c++)
        for (int64_t r = 0; r < rows; r++) {
            double a = 0;
            for (int64_t j = 0; j < cols; j++) a += fabs((double)W[r * cols + j] * x[c * ldx + j]);
            s[c * rows + r] = a;
        }
    return s;
}

/* Runs decode (n <= 8, compute ignored) or prefill and checks Y against
 * yref with tolerance rel * sums + half an ulp; the columns of the wider Y
 * beyond `rows` must keep their 0xff fill. */
static void run_and_check(const host_matrix *h, const sr_qmatrix *d, const float *x, int64_t n,
                          int64_t ldx, bool decode, sr_cuda_dtype compute, const double *yref,
                          const double *sums, double rel, const char *what)
{
    const int64_t rows = h->w.rows, ldy = rows + 5;
    float *xd = dev_dup(x, sizeof(float) * (size_t)(n * ldx));
    float *yd = dev_alloc(sizeof(float) * (size_t)(n * ldy));
    float *y = malloc(sizeof(float) * (size_t)(n * ldy));
    sr_error e;
    assert_int_equal(sr_cuda_memset(yd, 0xff, sizeof(float) * (size_t)(n * ldy), &e), 0);
    int rc = decode ? sr_cuda_matmul_decode(ctx, d, xd, n, ldx, yd, ldy, &e)
                    : sr_cuda_matmul_prefill(ctx, d, xd, n, ldx, yd, ldy, compute, &e);
    if (rc) fail_msg("%s: %s", what, e.msg);
    ctx_sync(ctx);
    dev_get(y, yd, sizeof(float) * (size_t)(n * ldy));
    for (int64_t c = 0; c < n; c++) {
        for (int64_t r = 0; r < ldy; r++) {
            const float got = y[c * ldy + r];
            if (r >= rows) {
                uint32_t bits;
                memcpy(&bits, &got, 4);
                if (bits != 0xffffffffu)
                    fail_msg("%s: wrote column %lld beyond the %lld rows", what, (long long)r,
                             (long long)rows);
                continue;
            }
            const double want = yref[c * rows + r];
            const double tol = rel * sums[c * rows + r] + half_ulp(want) + 1e-30;
            if (!(fabs((double)got - want) <= tol))
                fail_msg("%s [%lld x %lld] bs %d n %lld ldx %lld: y[%lld][%lld] = %.9g, want "
                         "%.9g (tol %.3g)", what, (long long)rows, (long long)h->w.cols,
                         h->w.blocksize, (long long)n, (long long)ldx, (long long)c, (long long)r,
                         got, want, tol);
        }
    }
    free(y);
    sr_cuda_free(xd);
    sr_cuda_free(yd);
}

static double *ref_product(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx)
{
    float *y = malloc(sizeof(float) * (size_t)(n * w->rows));
    sr_matmul_ref(w, x, n, ldx, y, w->rows);
    double *yd = malloc(sizeof(double) * (size_t)(n * w->rows));
    for (int64_t i = 0; i < n * w->rows; i++) yd[i] = y[i];
    free(y);
    return yd;
}

static void test_decode(void **state)
{
    (void)state;
    static const int64_t ns[] = {1, 2, 3, 5, 8};
    static const int64_t pads[] = {0, 4, 3};   /* 3: unaligned rows of X, element-wise path */
    for (int f = 0; f < N_FORMATS; f++) {
        for (int s = 0; s < N_SHAPES; s++) {
            host_matrix h = host_matrix_rand(kFormats[f], kShapes[s].rows, kShapes[s].cols,
                                             kShapes[s].bs);
            sr_qmatrix d = upload(&h);
            float *W = dequant_host(&h.w);
            for (int p = 0; p < 3; p++) {
                for (int k = 0; k < 5; k++) {
                    const int64_t n = ns[k], ldx = h.w.cols + pads[p];
                    float *x = rand_floats(n * ldx, 1.0f);
                    double *yref = ref_product(&h.w, x, n, ldx);
                    double *sums = abs_sums(W, h.w.rows, h.w.cols, x, n, ldx);
                    char what[64];
                    snprintf(what, sizeof what, "decode %s", sr_wformat_name(h.w.fmt));
                    run_and_check(&h, &d, x, n, ldx, true, SR_CUDA_F32, yref, sums, 1e-5, what);
                    free(x);
                    free(yref);
                    free(sums);
                }
            }
            free(W);
            sr_cuda_qmatrix_free(&d);
            host_matrix_free(&h);
        }
    }
}

static float round16(float v, sr_cuda_dtype t)
{
    return t == SR_CUDA_BF16 ? sr_bf16_to_f32(sr_f32_to_bf16(v)) : sr_f16_to_f32(sr_f32_to_f16(v));
}

static void prefill_case(const host_matrix *h, const sr_qmatrix *d, const float *W, int64_t n,
                         int64_t ldx, sr_cuda_dtype compute)
{
    const int64_t rows = h->w.rows, cols = h->w.cols;
    float *x = rand_floats(n * ldx, 1.0f);
    double *yref, *sums;
    if (compute == SR_CUDA_F32) {
        yref = ref_product(&h->w, x, n, ldx);
        sums = abs_sums(W, rows, cols, x, n, ldx);
    } else {
        /* exact product of the 16-bit operands */
        float *W16 = malloc(sizeof(float) * (size_t)(rows * cols));
        float *x16 = malloc(sizeof(float) * (size_t)(n * ldx));
        for (int64_t i = 0; i < rows * cols; i++) W16[i] = round16(W[i], compute);
        for (int64_t i = 0; i < n * ldx; i++) x16[i] = round16(x[i], compute);
        yref = malloc(sizeof(double) * (size_t)(n * rows));
        for (int64_t c = 0; c < n; c++)
            for (int64_t r = 0; r < rows; r++) {
                double a = 0;
                for (int64_t j = 0; j < cols; j++) a += (double)W16[r * cols + j] * x16[c * ldx + j];
                yref[c * rows + r] = a;
            }
        sums = abs_sums(W16, rows, cols, x16, n, ldx);
        free(W16);
        free(x16);
    }
    char what[64];
    snprintf(what, sizeof what, "prefill %s / %s", sr_wformat_name(h->w.fmt),
             sr_cuda_dtype_name(compute));
    run_and_check(h, d, x, n, ldx, false, compute, yref, sums, 1e-5 + (double)cols * 0x1p-24,
                  what);
    free(x);
    free(yref);
    free(sums);
}

static void test_prefill(void **state)
{
    (void)state;
    static const int64_t ns[] = {9, 16, 40};
    for (int tiles = 0; tiles < 2; tiles++) {
        /* second round: 4 KiB tiles, i.e. a few rows per GEMM */
        if (tiles) setenv("STRATA_CUDA_TILE_BYTES", "4096", 1);
        else unsetenv("STRATA_CUDA_TILE_BYTES");
        for (int f = 0; f < N_FORMATS; f++) {
            for (int s = 0; s < N_SHAPES; s++) {
                host_matrix h = host_matrix_rand(kFormats[f], kShapes[s].rows, kShapes[s].cols,
                                                 kShapes[s].bs);
                sr_qmatrix d = upload(&h);
                float *W = dequant_host(&h.w);
                for (int t = 0; t < 3; t++)
                    prefill_case(&h, &d, W, ns[(s + t) % 3], h.w.cols + (t == 1 ? 3 : 0),
                                 (sr_cuda_dtype)t);
                free(W);
                sr_cuda_qmatrix_free(&d);
                host_matrix_free(&h);
            }
        }
    }
    unsetenv("STRATA_CUDA_TILE_BYTES");
}

/* sr_cuda_matmul picks decode for n <= 8 and prefill beyond. */
static void test_dispatch(void **state)
{
    (void)state;
    host_matrix h = host_matrix_rand(SR_W_NF4, 48, 128, 64);
    sr_qmatrix d = upload(&h);
    float *W = dequant_host(&h.w);
    for (int64_t n = 7; n <= 10; n++) {
        float *x = rand_floats(n * 128, 1.0f);
        float *xd = dev_dup(x, sizeof(float) * (size_t)(n * 128));
        float *yd = dev_alloc(sizeof(float) * (size_t)(n * 48));
        float *y = malloc(sizeof(float) * (size_t)(n * 48));
        sr_error e;
        assert_int_equal(sr_cuda_matmul(ctx, &d, xd, n, 128, yd, 48, SR_CUDA_F32, &e), 0);
        ctx_sync(ctx);
        dev_get(y, yd, sizeof(float) * (size_t)(n * 48));
        double *yref = ref_product(&h.w, x, n, 128);
        double *sums = abs_sums(W, 48, 128, x, n, 128);
        for (int64_t i = 0; i < n * 48; i++)
            assert_true(fabs(y[i] - yref[i]) <= (1e-5 + 128 * 0x1p-24) * sums[i] + half_ulp(yref[i]));
        free(x);
        free(y);
        free(yref);
        free(sums);
        sr_cuda_free(xd);
        sr_cuda_free(yd);
    }
    free(W);
    sr_cuda_qmatrix_free(&d);
    host_matrix_free(&h);
}

static void test_errors(void **state)
{
    (void)state;
    host_matrix h = host_matrix_rand(SR_W_NF4, 8, 64, 64);
    sr_qmatrix d = upload(&h);
    float *xd = dev_alloc(sizeof(float) * 64 * 16), *yd = dev_alloc(sizeof(float) * 8 * 16);
    sr_error e;
    assert_int_equal(sr_cuda_matmul_decode(ctx, &d, xd, 9, 64, yd, 8, &e), -1);
    assert_non_null(strstr(e.msg, "decode"));
    assert_int_equal(sr_cuda_matmul_decode(ctx, &d, xd, 0, 64, yd, 8, &e), -1);
    assert_int_equal(sr_cuda_matmul_decode(ctx, &d, xd, 1, 63, yd, 8, &e), -1);
    assert_int_equal(sr_cuda_matmul_prefill(ctx, &d, xd, 16, 64, yd, 7, SR_CUDA_F32, &e), -1);
    assert_non_null(strstr(e.msg, "prefill"));
    assert_int_equal(sr_cuda_dequant_rows(ctx, &d, 4, 5, SR_CUDA_F32, yd, &e), -1);
    assert_non_null(strstr(e.msg, "rows"));
    sr_qmatrix bad = d;
    bad.scales = NULL;
    assert_int_equal(sr_cuda_matmul_decode(ctx, &bad, xd, 1, 64, yd, 8, &e), -1);
    assert_non_null(strstr(e.msg, "scales"));
    bad = d;
    bad.fmt = SR_W_FORMAT_COUNT;
    assert_int_equal(sr_cuda_dequant_rows(ctx, &bad, 0, 1, SR_CUDA_F32, yd, &e), -1);
    assert_non_null(strstr(e.msg, "format"));
    ctx_sync(ctx);  /* nothing asynchronous went wrong */
    sr_cuda_free(xd);
    sr_cuda_free(yd);
    sr_cuda_qmatrix_free(&d);
    host_matrix_free(&h);
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, ctx_setup, ctx_teardown);
}
