/* quant/qtile.c: the 16-row tile layout of the int8 kernels, element by
 * element as qtile.h documents it (codes, f16 scales in front of each
 * group, row scales, padded rows, special values), which
 * matrices it takes, how many fit a memory budget, and that copies (sr_qmatrix_borrow) and frees leave no
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
#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "test_util.h"

#define RANDOM_MATRIX_SEED 0x13198a2e03707344ull
#include "random_matrix.h"

static int bnb_code(const sr_qmatrix *w, int64_t r, int64_t c)
{
    const int64_t f = r * w->cols + c;
    const uint8_t b = ((const uint8_t *)w->data)[f >> 1];
    return (f & 1) ? (b & 0xF) : (b >> 4); /* high nibble first */
}

/* Byte offset of group g's scale line / of chunk c of tile t in the tiles,
 * from the band and panel layout as qtile.h writes it (not from its
 * helpers): bands of 4 tiles, panels of 2048 columns (at least a group). */
static int64_t doc_group_offset(int64_t rows, int64_t cols, int bs, int64_t t, int64_t g)
{
    const int64_t gb = 64 + 16 * (int64_t)bs, nbr = cols / bs, ng = (nbr + 1) / 2;
    const int64_t tb = 64 * (ng + cols / 8), ntiles = (rows + 15) / 16;
    const int64_t pg = 2048 / (2 * bs) > 0 ? 2048 / (2 * bs) : 1;
    const int64_t first = t / 4 * 4, n = ntiles - first < 4 ? ntiles - first : 4;
    /* full panels; a remainder of fewer than pg / 2 groups joins the last */
    int64_t np = ng / pg + (ng % pg >= (pg + 1) / 2), i = g / pg;
    if (np < 1) np = 1;
    if (i > np - 1) i = np - 1;
    const int64_t g0 = i * pg, g1 = i == np - 1 ? ng : g0 + pg;
    int64_t run = (g1 - g0) * gb;
    if (g1 == ng && nbr % 2) run -= 8 * bs; /* the last group is half */
    return first * tb + n * g0 * gb + (t - first) * run + (g - g0) * gb;
}
static int64_t doc_chunk_offset(int64_t rows, int64_t cols, int bs, int64_t t, int64_t c)
{
    const int64_t per_group = 2 * bs / 8;
    return doc_group_offset(rows, cols, bs, t, c / per_group) + 64 + (c % per_group) * 64;
}

static float doc_row_scale(const float *s, int64_t n)
{
    float m = 0;
    for (int64_t b = 0; b < n; b++)
        if (isfinite(s[b]) && fabsf(s[b]) > m) m = fabsf(s[b]);
    return m > 0 ? m : 1.0f;
}

static int same_float(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

static void check_tiles(const sr_qmatrix *w)
{
    const int64_t rows = w->rows, cols = w->cols;
    const int bs = w->blocksize;
    const int64_t ntiles = (rows + 15) / 16, nchunk = cols / 8, nbr = cols / bs;
    const int64_t tb = 64 * ((nbr + 1) / 2 + nchunk);
    assert_true(sr_qtile_tile_bytes(w) == tb);
    assert_true(sr_qtile_bytes(w) == (uint64_t)(ntiles * tb) + (uint64_t)ntiles * 16 * sizeof(float));
    for (int64_t t = 0; t < ntiles; t++)
        for (int r = 0; r < 16; r++) {
            const int64_t row = t * 16 + r;
            for (int64_t c = 0; c < nchunk; c++) {
                const int64_t off = doc_chunk_offset(rows, cols, bs, t, c);
                assert_ptr_equal(sr_qtile_chunk(w, t, c), w->tiles + off);
                for (int j = 0; j < 4; j++) {
                    const uint8_t b = w->tiles[off + 4 * r + j];
                    int lo = row < rows ? bnb_code(w, row, 8 * c + j) : 0;
                    int hi = row < rows ? bnb_code(w, row, 8 * c + 4 + j) : 0;
                    if ((b & 0xF) != lo || (b >> 4) != hi)
                        fail_msg("%lldx%lld bs %d: tile %lld row %d chunk %lld byte %d = 0x%02x, "
                                 "expected lo %d hi %d", (long long)rows, (long long)cols, bs,
                                 (long long)t, r, (long long)c, j, b, lo, hi);
                }
            }
            const float *sc = row < rows ? w->scales + row * nbr : NULL;
            const float m = sc ? doc_row_scale(sc, nbr) : 1.0f;
            assert_true(w->tile_row_scale[t * 16 + r] == m);
            for (int64_t g = 0; g < (nbr + 1) / 2; g++)
                for (int i = 0; i < 2; i++) {
                    const int64_t k = 2 * g + i;
                    uint16_t h;
                    const int64_t off = doc_group_offset(rows, cols, bs, t, g);
                    memcpy(&h, w->tiles + off + 2 * (16 * i + r), 2);
                    const uint16_t want = sc && k < nbr ? sr_f32_to_f16(sc[k] / m) : 0;
                    if (h != want)
                        fail_msg("%lldx%lld bs %d: tile %lld row %d block %lld: f16 0x%04x, "
                                 "expected 0x%04x", (long long)rows, (long long)cols, bs,
                                 (long long)t, r, (long long)k, h, want);
                    if (k >= nbr) continue;
                    /* what the kernels multiply by, and its documented error */
                    const float got = sr_qtile_scale(w, t, r, k), s = sc ? sc[k] : 0.0f;
                    assert_true(same_float(got, m * sr_f16_to_f32(want)));
                    if (isfinite(s) && fabsf(s) >= 0x1p-14f * m)
                        assert_true(fabsf(got - s) <= 0x1p-11f * fabsf(s) * (1 + 0x1p-20f));
                    else if (isfinite(s))
                        assert_true(fabsf(got - s) <= 0x1p-25f * m * (1 + 0x1p-20f));
                }
        }
}

static void check_layout(sr_wformat fmt, int64_t rows, int64_t cols, int bs)
{
    test_matrix m;
    make_matrix(&m, fmt, rows, cols, bs);
    sr_qmatrix *w = &m.w;
    assert_true(sr_qtile_fits(w));
    assert_int_equal(sr_qtile_make(w), 0);
    assert_non_null(w->tiles);
    assert_non_null(w->tile_row_scale);
    check_tiles(w);
    /* A copy for another tier carries the bnb bytes only. */
    sr_qmatrix b = sr_qmatrix_borrow(w);
    assert_null(b.tiles);
    assert_null(b.tile_row_scale);
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
    check_layout(SR_W_NF4, 19, 320, 64);    /* 5 blocks per row: a last group of one */
    check_layout(SR_W_FP4, 7, 96, 32);
    /* bands and panels */
    check_layout(SR_W_NF4, 150, 4224, 64);  /* bands of 4, 4, 2 tiles; panels of 16 and 17 groups */
    check_layout(SR_W_FP4, 70, 2080, 32);   /* 65 blocks: the half group joins the one panel */
    check_layout(SR_W_NF4, 21, 5120, 64);   /* panels of 16, 16 and 8 groups (8 = pg / 2 stays) */
    check_layout(SR_W_NF4, 20, 8192, 4096); /* a panel per group */
    check_layout(SR_W_NF4, 100, 6144, 2048); /* 3 blocks: panels of one group, the last half */
}

/* LLM.int8: chunk c = columns 4c .. 4c+3 of 16 rows, code + 128; row
 * scale SCB, 0 for padded rows; no scale lines. */
static void check_int8_layout(int64_t rows, int64_t cols)
{
    test_matrix m;
    make_matrix(&m, SR_W_INT8, rows, cols, 0);
    sr_qmatrix *w = &m.w;
    assert_true(sr_qtile_fits(w));
    assert_int_equal(sr_qtile_make(w), 0);
    const int64_t ntiles = (rows + 15) / 16, tb = 16 * cols;
    assert_true(sr_qtile_tile_bytes(w) == tb);
    assert_true(sr_qtile_bytes(w) == (uint64_t)(ntiles * tb) + (uint64_t)ntiles * 16 * sizeof(float));
    for (int64_t t = 0; t < ntiles; t++)
        for (int r = 0; r < 16; r++) {
            const int64_t row = t * 16 + r;
            assert_true(w->tile_row_scale[t * 16 + r] == (row < rows ? w->scb[row] : 0.0f));
            for (int64_t c = 0; c < cols / 4; c++)
                for (int j = 0; j < 4; j++) {
                    const int8_t code = row < rows ? ((const int8_t *)w->data)[row * cols + 4 * c + j] : 0;
                    const uint8_t b = w->tiles[t * tb + c * 64 + 4 * r + j];
                    if (b != (uint8_t)(code + 128))
                        fail_msg("int8 %lldx%lld: tile %lld row %d chunk %lld byte %d = 0x%02x, "
                                 "code %d", (long long)rows, (long long)cols, (long long)t, r,
                                 (long long)c, j, b, code);
                }
        }
    sr_free_aligned(w->tile_buf);
    free_matrix(&m);
}

static void test_int8_layout(void **state)
{
    (void)state;
    check_int8_layout(16, 32);
    check_int8_layout(21, 96); /* a padded second tile */
    check_int8_layout(3, 320);
}

/* Row scales: the largest finite block scale, 1 for a row without a nonzero
 * finite one; a tiny scale next to a large one (f16 subnormal), zero, NaN
 * and infinity are kept as documented. */
static void test_row_scales(void **state)
{
    (void)state;
    test_matrix m;
    make_matrix(&m, SR_W_NF4, 4, 256, 64); /* 4 blocks per row */
    float *s = m.scales;
    const float rows[4][4] = {
        {0.5f, 3.0f, 1e-7f, 0.0f}, /* 1e-7 / 3: below f16's normal range */
        {0.0f, 0.0f, 0.0f, 0.0f},  /* row scale 1 */
        {NAN, 0.25f, INFINITY, 2.0f},
        {1e-30f, 2e-30f, 65504.0f * 4, 1.0f},
    };
    memcpy(s, rows, sizeof rows);
    sr_qmatrix *w = &m.w;
    assert_int_equal(sr_qtile_make(w), 0);
    check_tiles(w);
    assert_true(w->tile_row_scale[0] == 3.0f);
    assert_true(w->tile_row_scale[1] == 1.0f);
    assert_true(w->tile_row_scale[2] == 2.0f);
    assert_true(w->tile_row_scale[3] == 65504.0f * 4);
    assert_true(isnan(sr_qtile_scale(w, 0, 2, 0)));
    assert_true(isinf(sr_qtile_scale(w, 0, 2, 2)));
    assert_true(sr_qtile_scale(w, 0, 3, 2) == 65504.0f * 4); /* no f16 overflow */
    sr_free_aligned(w->tile_buf); /* free_matrix frees the test's buffers only */
    free_matrix(&m);
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
        {SR_W_INT8, 3, 64, 0, 1},    /* LLM.int8 */
        {SR_W_INT8, 3, 80, 0, 0},    /* LLM.int8, cols % 32 */
        {SR_W_BF16, 3, 64, 0, 1},    /* bf16 (the exact kernels' tiles) */
        {SR_W_BF16, 3, 65, 0, 0},    /* bf16, odd cols: no column pairs */
        {SR_W_F16, 3, 64, 0, 0},
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

/* sr_qtile_within: the longest prefix whose tiles fit the budget (what a
 * model short of memory tiles, runtime/model.c). */
static void test_within_budget(void **state)
{
    (void)state;
    test_matrix m[3];
    sr_qmatrix *w[3];
    static const int64_t rows[3] = {16, 40, 5};
    for (int i = 0; i < 3; i++) {
        make_matrix(&m[i], SR_W_BF16, rows[i], 64, 0);
        w[i] = &m[i].w;
    }
    const uint64_t b0 = sr_qtile_bytes(w[0]), b1 = sr_qtile_bytes(w[1]), b2 = sr_qtile_bytes(w[2]);
    assert_true(b0 == 32 * 64 && b1 == 3 * 32 * 64 && b2 == 32 * 64);
    uint64_t bytes = 1;
    assert_int_equal(sr_qtile_within(w, 3, 0, &bytes), 0);
    assert_true(bytes == 0);
    assert_int_equal(sr_qtile_within(w, 3, b0 - 1, &bytes), 0);
    assert_int_equal(sr_qtile_within(w, 3, b0, &bytes), 1);
    assert_true(bytes == b0);
    assert_int_equal(sr_qtile_within(w, 3, b0 + b1 - 1, &bytes), 1); /* w[2] would fit, but in order */
    assert_int_equal(sr_qtile_within(w, 3, b0 + b1 + b2 - 1, &bytes), 2);
    assert_true(bytes == b0 + b1);
    assert_int_equal(sr_qtile_within(w, 3, b0 + b1 + b2, &bytes), 3);
    assert_int_equal(sr_qtile_within(w, 3, UINT64_MAX, &bytes), 3);
    assert_true(bytes == b0 + b1 + b2);
    assert_int_equal(sr_qtile_within(w, 0, UINT64_MAX, &bytes), 0);
    for (int i = 0; i < 3; i++) free_matrix(&m[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_budget),
        cmocka_unit_test(test_layout_as_documented),
        cmocka_unit_test(test_which_matrices),
        cmocka_unit_test(test_row_scales),
        cmocka_unit_test(test_int8_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
