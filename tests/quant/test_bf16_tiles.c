/* bf16 weights in 16-row tiles and the exact kernels over them
 * (quant/bf16_tiles.h; layout: quant/qtile.h):
 *   - the layout: every element of every tile where qtile.h puts it, rows
 *     past the matrix zero, no row scales; rows read back from the tiles
 *     (sr_qmatrix_dequant_rows) bit-identical to the stored bytes';
 *   - decode (n = 1..8, strides wider than the data) against the scalar
 *     reference on the stored bytes, on rows of 1..300 (partial last tiles)
 *     and even cols from 2 to 2562 (odd chunk counts included);
 *   - prefill from the tiles (sr_matmul_prefill reads them): f32 against
 *     the reference; the opt-in bf16 prefill bit-identical to the untiled
 *     one (the tiles are the packed bytes);
 *   - sr_matmul takes the tiles in both kernel modes; 1 and 2 threads give
 *     the same bits; refusals leave y untouched.
 *
 * Tolerance (as test_matmul.c): the tile kernels sum f32 products of the
 * widened weights and x (exact in f32 up to one rounding per FMA) in
 * partial sums of at most cols / 2 terms, so |y - ref| <= (cols / 2 + 4) *
 * 2^-24 * S with S = Σ_j |w_j x_j|; cols <= 2562 keeps that under the
 * 1e-5 * S that test_matmul.c allows every fast path, which we use (plus
 * 1e-30 for all-zero sums).  Prefill through sgemm: the same 1e-5 * S. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <omp.h>
#include <cmocka.h>

#include "quant/bf16_tiles.h"
#include "quant/matmul.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"

#define RANDOM_MATRIX_SEED 0x6b1f16a7e5ull
#include "random_matrix.h"

#define TOL 1e-5

static int skip_without_kernel(void)
{
    if (sr_bf16tiles_available()) return 0;
    printf("skipped: this CPU has no AVX-512 (the bf16 tile decode kernel)\n");
    return 1;
}

/* x: n columns with row stride ldx (the gaps hold values too). */
static float *make_x(int64_t n, int64_t ldx)
{
    float *x = sr_malloc_aligned((size_t)(n * ldx) * sizeof(float) + 64);
    assert_non_null(x);
    for (int64_t i = 0; i < n * ldx; i++) x[i] = rng_unit() * 2;
    return x;
}

static void check_close(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx,
                        const float *y, const float *ref, int64_t ldy, const char *what)
{
    for (int64_t c = 0; c < n; c++)
        for (int64_t r = 0; r < w->rows; r++) {
            double s = 0;
            for (int64_t j = 0; j < w->cols; j++)
                s += fabs((double)sr_bf16_to_f32(((const uint16_t *)w->data)[r * w->cols + j]) *
                          (double)x[c * ldx + j]);
            const double d = fabs((double)y[c * ldy + r] - (double)ref[c * ldy + r]);
            if (d > TOL * s + 1e-30)
                fail_msg("%s: %lldx%lld n=%lld: y[%lld][%lld] = %.9g, reference %.9g", what,
                         (long long)w->rows, (long long)w->cols, (long long)n, (long long)c,
                         (long long)r, (double)y[c * ldy + r], (double)ref[c * ldy + r]);
        }
}

static void test_layout(void **state)
{
    (void)state;
    static const int64_t shapes[][2] = {{1, 2}, {16, 6}, {17, 64}, {40, 130}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        test_matrix m;
        make_matrix(&m, SR_W_BF16, shapes[i][0], shapes[i][1], 0);
        const sr_qmatrix *w = &m.w;
        assert_true(sr_qtile_fits(w));
        assert_int_equal(sr_qtile_make(&m.w), 0);
        assert_non_null(w->tiles);
        assert_null(w->tile_row_scale);
        assert_true(sr_qtile_bytes(w) == (uint64_t)(sr_qtile_count(w) * 32 * w->cols));
        const uint16_t *src = w->data;
        for (int64_t t = 0; t < sr_qtile_count(w); t++)
            for (int64_t c = 0; c < w->cols / 2; c++)
                for (int r = 0; r < 16; r++) {
                    const int64_t row = t * 16 + r;
                    uint16_t got[2];
                    memcpy(got, w->tiles + t * sr_qtile_tile_bytes(w) + 64 * c + 4 * r, 4);
                    for (int k = 0; k < 2; k++)
                        assert_int_equal(got[k], row < w->rows ? src[row * w->cols + 2 * c + k] : 0);
                }
        /* Rows read back from the tiles (a tied embedding's lookups once the
         * stored bytes are released) bit for bit as from the stored bytes. */
        const int64_t cols = w->cols;
        float *a = malloc(sizeof(float) * (size_t)(w->rows * cols));
        float *b = malloc(sizeof(float) * (size_t)(w->rows * cols));
        assert_non_null(a);
        assert_non_null(b);
        uint16_t *zeros = calloc((size_t)(w->rows * cols), 2);
        assert_non_null(zeros);
        sr_qmatrix gone = *w; /* the tiles, over stored bytes that no longer hold the weights */
        gone.data = zeros;
        for (int64_t r0 = 0; r0 < w->rows; r0 += 7) {
            const int64_t nr = w->rows - r0 < 9 ? w->rows - r0 : 9;
            sr_qmatrix plain = sr_qmatrix_borrow(w); /* no tiles: the stored bytes */
            sr_qmatrix_dequant_rows(&plain, r0, nr, b);
            sr_qmatrix_dequant_rows(&gone, r0, nr, a); /* must take the tiles */
            assert_memory_equal(a, b, sizeof(float) * (size_t)(nr * cols));
            sr_qtile_bf16_rows(w, r0, nr, a);
            assert_memory_equal(a, b, sizeof(float) * (size_t)(nr * cols));
        }
        free(zeros);
        free(a);
        free(b);
        sr_qmatrix_free(&m.w); /* the tiles */
        free_matrix(&m);
    }
}

static void test_decode(void **state)
{
    (void)state;
    if (skip_without_kernel()) return;
    static const int64_t rows[] = {1, 15, 16, 33, 300};
    static const int64_t cols[] = {2, 4, 34, 130, 2562};
    for (size_t a = 0; a < sizeof rows / sizeof *rows; a++)
        for (size_t b = 0; b < sizeof cols / sizeof *cols; b++) {
            test_matrix m;
            make_matrix(&m, SR_W_BF16, rows[a], cols[b], 0);
            assert_int_equal(sr_qtile_make(&m.w), 0);
            for (int64_t n = 1; n <= 8; n++) {
                const int64_t ldx = cols[b] + 3, ldy = rows[a] + 5;
                float *x = make_x(n, ldx);
                float *y = sr_malloc_aligned((size_t)(n * ldy) * sizeof(float));
                float *ref = sr_malloc_aligned((size_t)(n * ldy) * sizeof(float));
                for (int64_t i = 0; i < n * ldy; i++) y[i] = ref[i] = -7.0f; /* gaps stay */
                assert_int_equal(sr_bf16tiles_decode(&m.w, x, n, ldx, y, ldy), 0);
                sr_matmul_ref(&m.w, x, n, ldx, ref, ldy);
                check_close(&m.w, x, n, ldx, y, ref, ldy, "tile decode");
                for (int64_t c = 0; c < n; c++)
                    for (int64_t r = rows[a]; r < ldy; r++) assert_true(y[c * ldy + r] == -7.0f);
                sr_free_aligned(x);
                sr_free_aligned(y);
                sr_free_aligned(ref);
            }
            sr_qmatrix_free(&m.w); /* the tiles */
        free_matrix(&m);
        }
}

static void test_prefill(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{300, 130, 9}, {17, 1026, 40}, {600, 64, 12}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int64_t rows = shapes[i][0], cols = shapes[i][1], n = shapes[i][2];
        test_matrix m, plain;
        make_matrix(&m, SR_W_BF16, rows, cols, 0);
        plain = m;
        plain.w = sr_qmatrix_borrow(&m.w); /* the same bytes, no tiles */
        assert_int_equal(sr_qtile_make(&m.w), 0);
        const int64_t ldx = cols + 1, ldy = rows + 2;
        float *x = make_x(n, ldx);
        float *y = sr_malloc_aligned((size_t)(n * ldy) * sizeof(float));
        float *y2 = sr_malloc_aligned((size_t)(n * ldy) * sizeof(float));
        float *ref = sr_malloc_aligned((size_t)(n * ldy) * sizeof(float));
        sr_matmul_ref(&m.w, x, n, ldx, ref, ldy);
        sr_matmul_prefill(&m.w, x, n, ldx, y, ldy, sr_isa_detect());
        check_close(&m.w, x, n, ldx, y, ref, ldy, "prefill from tiles");
        if (sr_matmul_bf16_available()) { /* opt-in bf16: the same packed bytes */
            setenv("STRATA_PREFILL", "bf16", 1);
            sr_matmul_prefill(&m.w, x, n, ldx, y, ldy, sr_isa_detect());
            sr_matmul_prefill(&plain.w, x, n, ldx, y2, ldy, sr_isa_detect());
            unsetenv("STRATA_PREFILL");
            for (int64_t c = 0; c < n; c++)
                assert_memory_equal(y + c * ldy, y2 + c * ldy, (size_t)rows * sizeof(float));
        }
        sr_free_aligned(x);
        sr_free_aligned(y);
        sr_free_aligned(y2);
        sr_free_aligned(ref);
        sr_qmatrix_free(&m.w); /* the tiles */
        free_matrix(&m);
    }
}

static void test_dispatch_threads_refusals(void **state)
{
    (void)state;
    if (skip_without_kernel()) return;
    test_matrix m;
    make_matrix(&m, SR_W_BF16, 1000, 256, 0); /* above the parallel threshold */
    const sr_qmatrix plain = sr_qmatrix_borrow(&m.w);
    float *x = make_x(1, 256);
    float *y[4];
    for (int i = 0; i < 4; i++) y[i] = sr_malloc_aligned(1000 * sizeof(float));
    /* no tiles yet: refused, y untouched */
    for (int j = 0; j < 1000; j++) y[0][j] = 3.0f;
    assert_int_equal(sr_bf16tiles_decode(&m.w, x, 1, 256, y[0], 1000), -1);
    for (int j = 0; j < 1000; j++) assert_true(y[0][j] == 3.0f);
    assert_int_equal(sr_qtile_make(&m.w), 0);
    assert_int_equal(sr_bf16tiles_decode(&m.w, x, 0, 256, y[0], 1000), -1);
    assert_int_equal(sr_bf16tiles_decode(&m.w, x, 9, 256, y[0], 1000), -1);
    for (int j = 0; j < 1000; j++) assert_true(y[0][j] == 3.0f);
    /* 1 and 2 threads: each tile is summed by one thread, in one order */
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(sr_bf16tiles_decode(&m.w, x, 1, 256, y[0], 1000), 0);
    omp_set_num_threads(2);
    assert_int_equal(sr_bf16tiles_decode(&m.w, x, 1, 256, y[1], 1000), 0);
    omp_set_num_threads(nt);
    assert_memory_equal(y[0], y[1], 1000 * sizeof(float));
    /* sr_matmul reads the tiles in both modes (the row-major kernel sums
     * in another order, so the bits tell which ran) */
    if (sr_isa_detect() == SR_ISA_AVX512) {
        const sr_matmul_mode mode = sr_matmul_get_mode();
        sr_matmul_set_mode(SR_MATMUL_EXACT);
        sr_matmul(&m.w, x, 1, 256, y[2], 1000);
        assert_memory_equal(y[0], y[2], 1000 * sizeof(float));
        sr_matmul_set_mode(SR_MATMUL_INT8);
        sr_matmul(&m.w, x, 1, 256, y[2], 1000);
        assert_memory_equal(y[0], y[2], 1000 * sizeof(float));
        sr_matmul_set_mode(mode);
        sr_matmul(&plain, x, 1, 256, y[3], 1000); /* untiled: close, not equal bits */
        check_close(&m.w, x, 1, 256, y[3], y[0], 1000, "row-major against tiles");
    }
    for (int i = 0; i < 4; i++) sr_free_aligned(y[i]);
    sr_free_aligned(x);
    sr_qmatrix_free(&m.w);
    free_matrix(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_dispatch_threads_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
