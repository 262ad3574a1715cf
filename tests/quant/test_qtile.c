/* quant/qtile.c: the 16-row tile layout of the int8 kernels, element by
 * element as qtile.h documents it (codes, scales, padded rows), which
 * matrices it takes, and that copies (sr_qmatrix_borrow) and frees leave no
 * tile behind.  The kernels over the tiles are checked against the exact
 * product in test_matmul_int8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "quant/qmatrix.h"
#include "quant/qtile.h"
#include "test_util.h"

#define RANDOM_MATRIX_SEED 0x13198a2e03707344ull
#include "random_matrix.h"

static int bnb_code(const sr_qmatrix *w, int64_t r, int64_t c)
{
    const int64_t f = r * w->cols + c;
    const uint8_t b = ((const uint8_t *)w->data)[f >> 1];
    return (f & 1) ? (b & 0xF) : (b >> 4); /* high nibble first */
}

static void check_layout(sr_wformat fmt, int64_t rows, int64_t cols, int bs)
{
    test_matrix m;
    make_matrix(&m, fmt, rows, cols, bs);
    sr_qmatrix *w = &m.w;
    assert_true(sr_qtile_fits(w));
    assert_int_equal(sr_qtile_make(w), 0);
    assert_non_null(w->tiles);
    assert_non_null(w->tile_scales);
    const int64_t ntiles = (rows + 15) / 16, nchunk = cols / 8, nbr = cols / bs;
    assert_true(sr_qtile_bytes(w) ==
                (uint64_t)(ntiles * nchunk * 64) + (uint64_t)(ntiles * nbr * 16) * sizeof(float));
    for (int64_t t = 0; t < ntiles; t++)
        for (int r = 0; r < 16; r++) {
            const int64_t row = t * 16 + r;
            for (int64_t c = 0; c < nchunk; c++)
                for (int j = 0; j < 4; j++) {
                    const uint8_t b = w->tiles[(t * nchunk + c) * 64 + 4 * r + j];
                    int lo = row < rows ? bnb_code(w, row, 8 * c + j) : 0;
                    int hi = row < rows ? bnb_code(w, row, 8 * c + 4 + j) : 0;
                    if ((b & 0xF) != lo || (b >> 4) != hi)
                        fail_msg("%lldx%lld bs %d: tile %lld row %d chunk %lld byte %d = 0x%02x, "
                                 "expected lo %d hi %d", (long long)rows, (long long)cols, bs,
                                 (long long)t, r, (long long)c, j, b, lo, hi);
                }
            for (int64_t k = 0; k < nbr; k++) {
                float want = row < rows ? w->scales[row * nbr + k] : 0.0f;
                assert_true(w->tile_scales[(t * nbr + k) * 16 + r] == want);
            }
        }
    /* A copy for another tier carries the bnb bytes only. */
    sr_qmatrix b = sr_qmatrix_borrow(w);
    assert_null(b.tiles);
    assert_null(b.tile_scales);
    assert_null(b.tile_buf);
    assert_ptr_equal(b.data, w->data);
    /* Making them again replaces them (ASan: the first buffer is freed). */
    assert_int_equal(sr_qtile_make(w), 0);
    void *data = m.data;
    float *scales = m.scales;
    sr_qmatrix_free(w); /* frees the tiles; data and scales are the test's */
    assert_null(w->tiles);
    free(data);
    free(scales);
}

static void test_layout_as_documented(void **state)
{
    (void)state;
    check_layout(SR_W_NF4, 16, 32, 32);     /* one tile, one chunk quad */
    check_layout(SR_W_NF4, 17, 128, 64);    /* a padded second tile */
    check_layout(SR_W_FP4, 40, 256, 128);
    check_layout(SR_W_NF4, 5, 512, 256);    /* one padded tile, blocks of 2 rows' halves */
    check_layout(SR_W_FP4, 33, 1024, 1024); /* one block per row */
}

static void test_which_matrices(void **state)
{
    (void)state;
    static const struct { sr_wformat fmt; int64_t rows, cols; int bs, fits; } cases[] = {
        {SR_W_NF4, 3, 64, 64, 1},
        {SR_W_NF4, 3, 96, 64, 0},    /* a block spans two rows */
        {SR_W_NF4, 3, 48, 16, 0},    /* blocksize < 32 */
        {SR_W_FP4, 3, 40, 32, 0},    /* cols % 32 */
        {SR_W_NF4, 2, 64, 128, 0},   /* blocksize > cols: blocks span rows */
        {SR_W_INT8, 3, 64, 0, 0},    /* not 4-bit */
        {SR_W_BF16, 3, 64, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        test_matrix m;
        make_matrix(&m, cases[i].fmt, cases[i].rows, cases[i].cols, cases[i].bs);
        assert_int_equal(sr_qtile_fits(&m.w), cases[i].fits);
        if (!cases[i].fits) {
            assert_true(sr_qtile_bytes(&m.w) == 0);
            assert_int_equal(sr_qtile_make(&m.w), 0); /* nothing done */
            assert_null(m.w.tiles);
        }
        free_matrix(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_as_documented),
        cmocka_unit_test(test_which_matrices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
