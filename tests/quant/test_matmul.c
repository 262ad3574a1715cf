/* The matmul kernels over every weight format (quant/matmul.h):
 *   - exact dequantization: every ISA's dequantizer is bit-identical to the
 *     scalar one, and sr_qmatrix_dequant_rows reproduces the bnb golden
 *     outputs (tests/data/bnb) bit for bit (sign of zero ignored);
 *   - every fast path (decode and prefill, each ISA this CPU has) against
 *     the scalar reference and against an independent dequantize-then-f64
 *     product, on random shapes with odd sizes, blocks crossing rows,
 *     partial last blocks, odd element counts, n = 1,2,3,8,9,33 and strides
 *     wider than the data;
 *   - fallbacks (allocation failure), ISA capping, and `strata bench quant` (its JSON,
 *     the probe-paired and own-read ratios included).
 *
 * Tolerance of a fast path: f32 accumulation in a different order (and for
 * 4-bit the block scale applied to a partial sum instead of to each weight)
 * gives |delta| <= a few ulp * sum_j |w_j x_j|; we allow
 *     |y - y_ref| <= 1e-5 * sum_j |w_j x_j|
 * plus half an ulp of the result for the final rounding to f32 (and 1e-30
 * for all-zero sums).  The reference itself (f64 accumulation) must match
 * the independent f64 product to 1e-12 * sum_j |w_j x_j| + half an ulp.
 * The opt-in bf16 prefill rounds weights and activations to bf16 (2^-9
 * relative each): |delta| <= 1e-2 * sum_j |w_j x_j|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>
#include <jansson.h>

#include "quant/bf16_tiles.h"
#include "quant/decode_bf16dot.h"
#include "quant/matmul.h"
#include "quant/matmul_kernels.h"
#include "quant/qmatrix.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "test_util.h"

#define TOL_F32 1e-5
#define TOL_BF16 1e-2

/* ---- random test matrices ---------------------------------------------- */

#define RANDOM_MATRIX_SEED 0x9e3779b97f4a7c15ull
#include "random_matrix.h"

static const sr_wformat all_formats[] = {SR_W_F32, SR_W_BF16, SR_W_F16,
                                         SR_W_NF4, SR_W_FP4,  SR_W_INT8};

static int same_value(float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua == ub || (a == 0 && b == 0);
}

/* ---- independent expectation: dequantize, then f64 products ------------ */

typedef struct expectation {
    double *y;   /* n x rows, exact f64 sums of f32 products */
    double *mag; /* sum |w x| per output */
} expectation;

static expectation expect_product(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx)
{
    expectation e;
    float *wd = malloc((size_t)(w->rows * w->cols) * sizeof(float) + 4);
    sr_dequant_flat_scalar(w, 0, w->rows * w->cols, wd);
    e.y = calloc((size_t)(n * w->rows) + 1, sizeof(double));
    e.mag = calloc((size_t)(n * w->rows) + 1, sizeof(double));
    for (int64_t c = 0; c < n; c++)
        for (int64_t r = 0; r < w->rows; r++) {
            double s = 0, m = 0;
            for (int64_t j = 0; j < w->cols; j++) {
                double p = (double)wd[r * w->cols + j] * (double)x[c * ldx + j];
                s += p;
                m += fabs(p);
            }
            e.y[c * w->rows + r] = s;
            e.mag[c * w->rows + r] = m;
        }
    free(wd);
    return e;
}

static void free_expectation(expectation *e)
{
    free(e->y);
    free(e->mag);
}

#define SENTINEL 12345.0f

/* Checks y (n x rows, stride ldy) against e within tol * mag and that the
 * padding between rows and ldy is untouched. */
static void check_product(const char *what, const sr_qmatrix *w, const float *y, int64_t n,
                          int64_t ldy, const expectation *e, double tol)
{
    for (int64_t c = 0; c < n; c++) {
        for (int64_t r = 0; r < w->rows; r++) {
            double want = e->y[c * w->rows + r], got = y[c * ldy + r];
            /* + rounding the result to f32 (half an ulp). */
            double bound = tol * e->mag[c * w->rows + r] + 0x1p-24 * fabs(want) + 1e-30;
            if (!(fabs(got - want) <= bound))
                fail_msg("%s: fmt %s %lldx%lld bs %d n=%lld: y[%lld][%lld] = %.9g, want %.9g "
                         "(|d| %.3g > %.3g)",
                         what, sr_wformat_name(w->fmt), (long long)w->rows, (long long)w->cols,
                         w->blocksize, (long long)n, (long long)c, (long long)r, got, want,
                         fabs(got - want), bound);
        }
        for (int64_t r = w->rows; r < ldy; r++)
            if (y[c * ldy + r] != SENTINEL)
                fail_msg("%s: fmt %s: wrote padding y[%lld][%lld]", what,
                         sr_wformat_name(w->fmt), (long long)c, (long long)r);
    }
}

static float *sentinel_y(int64_t n, int64_t ldy)
{
    float *y = malloc((size_t)(n * ldy) * sizeof(float) + 4);
    for (int64_t i = 0; i < n * ldy; i++) y[i] = SENTINEL;
    return y;
}

static sr_isa best_isa(void)
{
    unsetenv("STRATA_ISA");
    return sr_isa_detect();
}

/* ---- shapes -------------------------------------------------------------- */

typedef struct shape {
    int64_t rows, cols;
    int bs;
} shape;

static const shape shapes[] = {
    {1, 1, 64},      /* one element: odd count, partial block */
    {3, 7, 32},      /* odd cols, blocks cross rows */
    {5, 33, 64},     /* odd element count (165) */
    {17, 96, 64},    /* cols a multiple of 16 but not of the blocksize (bnb's AVX-512 bug) */
    {16, 128, 64},   /* whole groups, two blocks per AVX-512 group */
    {9, 256, 32},    /* four blocks per AVX-512 group */
    {7, 384, 256},   /* blocks of two rows' groups */
    {13, 1000, 4096}, /* a single partial block */
    {4, 64, 128},    /* AVX2 group, AVX-512 generic path */
    {6, 130, 48},    /* blocksize not a power of two */
    {11, 512, 1024}, /* large blocks crossing rows */
    {5, 256, 16},    /* 8 blocks per AVX-512 group (not a bnb blocksize, but legal here) */
    {3, 384, 8},     /* 16 blocks per AVX-512 group */
    {300, 512, 64},  /* big enough for several threads */
    {6, 4100, 64},   /* dense n = 1: past ROW1_MAX_COLS, 4 rows at once, a tail of 4 cols */
    {15, 4100, 64},  /* the same: 8 rows at once, then 4, then 3 one by one */
    {5, 80, 16},     /* bf16: two split groups of 32, then 16 in order */
    {3, 48, 16},     /* bf16: one split group, then 16 in order */
};

static const int64_t ns[] = {1, 2, 3, 8, 9, 33};

static void run_paths(const test_matrix *m, int64_t n, sr_isa top)
{
    const sr_qmatrix *w = &m->w;
    int64_t ldx = w->cols + 3, ldy = w->rows + 5;
    float *x = random_floats(n * ldx);
    expectation e = expect_product(w, x, n, ldx);

    float *y = sentinel_y(n, ldy);
    sr_matmul_ref(w, x, n, ldx, y, ldy);
    check_product("ref", w, y, n, ldy, &e, 1e-12);
    free(y);

    for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
        char what[64];
        y = sentinel_y(n, ldy);
        sr_matmul_decode(w, x, n, ldx, y, ldy, (sr_isa)isa);
        snprintf(what, sizeof what, "decode/%s", sr_isa_name((sr_isa)isa));
        check_product(what, w, y, n, ldy, &e, TOL_F32);
        free(y);

        y = sentinel_y(n, ldy);
        sr_matmul_prefill(w, x, n, ldx, y, ldy, (sr_isa)isa);
        snprintf(what, sizeof what, "prefill/%s", sr_isa_name((sr_isa)isa));
        check_product(what, w, y, n, ldy, &e, TOL_F32);
        free(y);
    }
    y = sentinel_y(n, ldy);
    sr_matmul(w, x, n, ldx, y, ldy);
    check_product("sr_matmul", w, y, n, ldy, &e, TOL_F32);
    free(y);

    free_expectation(&e);
    free(x);
}

static void test_fast_paths_match_reference(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    for (size_t f = 0; f < sizeof all_formats / sizeof *all_formats; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
                /* The big shape only with the column counts of both paths. */
                if (shapes[s].rows * shapes[s].cols > 100000 && ns[k] != 1 && ns[k] != 9)
                    continue;
                test_matrix m;
                make_matrix(&m, all_formats[f], shapes[s].rows, shapes[s].cols, shapes[s].bs);
                run_paths(&m, ns[k], top);
                free_matrix(&m);
            }
}

/* The opt-in bf16 prefill: bf16-rounded operands, looser bound. */
static void test_prefill_bf16_opt_in(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    setenv("STRATA_PREFILL", "bf16", 1);
    for (size_t f = 0; f < sizeof all_formats / sizeof *all_formats; f++) {
        test_matrix m;
        make_matrix(&m, all_formats[f], 37, 200, 64);
        int64_t n = 33, ldx = 203, ldy = 40;
        float *x = random_floats(n * ldx);
        expectation e = expect_product(&m.w, x, n, ldx);
        for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
            float *y = sentinel_y(n, ldy);
            sr_matmul_prefill(&m.w, x, n, ldx, y, ldy, (sr_isa)isa);
            check_product("prefill/bf16", &m.w, y, n, ldy, &e, TOL_BF16);
            free(y);
        }
        free_expectation(&e);
        free(x);
        free_matrix(&m);
    }
    unsetenv("STRATA_PREFILL");
}

/* ---- exact dequantization ------------------------------------------------ */

static void test_dequant_kernels_bit_exact(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    for (size_t f = 0; f < sizeof all_formats / sizeof *all_formats; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            test_matrix m;
            make_matrix(&m, all_formats[f], shapes[s].rows, shapes[s].cols, shapes[s].bs);
            int64_t n = m.w.rows * m.w.cols;
            float *want = malloc((size_t)n * 4 + 4), *got = malloc((size_t)n * 4 + 4);
            sr_dequant_flat_scalar(&m.w, 0, n, want);
            for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
                const sr_kernels *k = sr_kernels_for((sr_isa)isa);
                /* Whole matrix, then ranges starting and ending off alignment. */
                for (int t = 0; t < 8; t++) {
                    int64_t e0 = t ? (int64_t)(rng_next() % (uint64_t)n) : 0;
                    int64_t e1 = t ? e0 + (int64_t)(rng_next() % (uint64_t)(n - e0 + 1)) : n;
                    k->dequant(&m.w, e0, e1, got);
                    for (int64_t j = e0; j < e1; j++)
                        if (!same_value(got[j - e0], want[j]))
                            fail_msg("dequant/%s fmt %s %lldx%lld bs %d: element %lld = %.9g, "
                                     "want %.9g",
                                     sr_isa_name((sr_isa)isa), sr_wformat_name(m.w.fmt),
                                     (long long)m.w.rows, (long long)m.w.cols, m.w.blocksize,
                                     (long long)j, got[j - e0], want[j]);
                }
            }
            if (m.w.rows > 2) {
                sr_qmatrix_dequant_rows(&m.w, 1, m.w.rows - 2, got);
                for (int64_t j = 0; j < (m.w.rows - 2) * m.w.cols; j++)
                    assert_true(same_value(got[j], want[m.w.cols + j]));
            }
            free(want);
            free(got);
            free_matrix(&m);
        }
}

static void test_to_bf16_matches_scalar(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    enum { N = 1000 };
    float in[N];
    for (int i = 0; i < N; i++) in[i] = rng_unit() * 1e3f;
    uint32_t specials[] = {0x7f800000u, 0xff800000u, 0x7fc00001u, 0xffa00000u, 0x00000001u,
                           0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0x80000000u};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++)
        memcpy(&in[i], &specials[i], 4);
    for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
        uint16_t out[N];
        sr_kernels_for((sr_isa)isa)->to_bf16(in, N - 3, out);
        for (int i = 0; i < N - 3; i++) assert_int_equal(out[i], sr_f32_to_bf16(in[i]));
    }
}

/* ---- golden bnb data ------------------------------------------------------ */

typedef struct golden {
    json_t *manifest;
    uint8_t *blob;
    size_t blob_len;
} golden;

static int golden_open(golden *g)
{
    json_error_t jerr;
    g->manifest = json_load_file(test_data("bnb/manifest.json"), 0, &jerr);
    g->blob = (uint8_t *)test_read_file(test_data("bnb/data.bin"), &g->blob_len);
    return g->manifest && g->blob ? 0 : -1;
}

static void golden_close(golden *g)
{
    json_decref(g->manifest);
    free(g->blob);
}

/* Pointer to an array of data.bin (checked against dtype); count of elements. */
static const void *golden_array(const golden *g, const char *name, const char *dtype,
                                int64_t *count)
{
    json_t *a = json_object_get(json_object_get(g->manifest, "arrays"), name);
    if (!a) fail_msg("golden array %s missing", name);
    assert_string_equal(json_string_value(json_object_get(a, "dtype")), dtype);
    size_t off = (size_t)json_integer_value(json_object_get(a, "offset"));
    size_t nbytes = (size_t)json_integer_value(json_object_get(a, "nbytes"));
    assert_true(off + nbytes <= g->blob_len);
    if (count) {
        size_t item = !strcmp(dtype, "float32") ? 4 : strstr(dtype, "int8") ? 1 : 2;
        *count = (int64_t)(nbytes / item);
    }
    return g->blob + off;
}

static void test_golden_tables(void **state)
{
    (void)state;
    golden g;
    assert_int_equal(golden_open(&g), 0);
    const float *nf4 = golden_array(&g, "tables/nf4_code", "float32", NULL);
    const float *fp4 = golden_array(&g, "tables/fp4_code", "float32", NULL);
    for (int i = 0; i < 16; i++) {
        assert_true(same_value(sr_q4_table(SR_W_NF4)[i], nf4[i]));
        assert_true(same_value(sr_q4_table(SR_W_FP4)[i], fp4[i]));
    }
    golden_close(&g);
}

/* Every 4-bit case: packed bytes + f32 block scales (absmax, or the
 * reconstructed block_scales_f32 for double quantization) dequantize to the
 * golden f32 output, through every ISA and through the matmul reference. */
static void test_golden_dequant_4bit(void **state)
{
    (void)state;
    golden g;
    assert_int_equal(golden_open(&g), 0);
    sr_isa top = best_isa();
    int checked = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(g.manifest, "cases"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "quantize_4bit")) continue;
        json_t *params = json_object_get(c, "params"), *out = json_object_get(c, "outputs");
        json_t *shp = json_object_get(params, "shape");
        int64_t cols = json_integer_value(json_array_get(shp, json_array_size(shp) - 1)), rows = 1;
        for (size_t d = 0; d + 1 < json_array_size(shp); d++)
            rows *= json_integer_value(json_array_get(shp, d));
        int dq = json_is_true(json_object_get(params, "compress_statistics"));
        const char *deq_name = json_string_value(json_object_get(out, "dequant_f32"));
        if (!deq_name) deq_name = json_string_value(json_object_get(out, "dequant"));
        json_t *deq_meta = json_object_get(json_object_get(g.manifest, "arrays"), deq_name);
        if (strcmp(json_string_value(json_object_get(deq_meta, "dtype")), "float32")) continue;

        sr_qmatrix w = {0};
        w.fmt = strcmp(json_string_value(json_object_get(params, "quant_type")), "fp4") ? SR_W_NF4
                                                                                         : SR_W_FP4;
        w.rows = rows;
        w.cols = cols;
        w.blocksize = (int)json_integer_value(json_object_get(params, "blocksize"));
        /* Packed bytes whatever the storage dtype label (spec §1.3). */
        json_t *wmeta = json_object_get(json_object_get(g.manifest, "arrays"),
                                        json_string_value(json_object_get(out, "weight")));
        w.data = g.blob + json_integer_value(json_object_get(wmeta, "offset"));
        assert_true(json_integer_value(json_object_get(wmeta, "nbytes")) >= (rows * cols + 1) / 2);
        int64_t nscales;
        w.scales = golden_array(&g,
                                json_string_value(json_object_get(
                                    out, dq ? "block_scales_f32" : "weight.absmax")),
                                "float32", &nscales);
        assert_int_equal(nscales, (rows * cols + w.blocksize - 1) / w.blocksize);
        int64_t count;
        const float *want = golden_array(&g, deq_name, "float32", &count);
        assert_int_equal(count, rows * cols);

        float *got = malloc((size_t)count * 4);
        for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
            sr_kernels_for((sr_isa)isa)->dequant(&w, 0, count, got);
            for (int64_t j = 0; j < count; j++)
                if (!same_value(got[j], want[j]))
                    fail_msg("golden %s (%s): element %lld = %.9g, want %.9g",
                             json_string_value(json_object_get(c, "id")),
                             sr_isa_name((sr_isa)isa), (long long)j, got[j], want[j]);
        }
        sr_qmatrix_dequant_rows(&w, 0, rows, got);
        for (int64_t j = 0; j < count; j++) assert_true(same_value(got[j], want[j]));
        free(got);
        checked++;
    }
    assert_true(checked >= 60);
    golden_close(&g);
}

static void test_golden_dequant_int8(void **state)
{
    (void)state;
    golden g;
    assert_int_equal(golden_open(&g), 0);
    int64_t count, nscb;
    sr_qmatrix w = {0};
    w.fmt = SR_W_INT8;
    w.rows = 16;
    w.cols = 64;
    w.data = golden_array(&g, "int8/w_16x64/weight", "int8", &count);
    w.scb = golden_array(&g, "int8/w_16x64/SCB", "float32", &nscb);
    assert_int_equal(nscb, 16);
    const float *want = golden_array(&g, "int8/w_16x64/dequant_f32", "float32", &count);
    assert_int_equal(count, 16 * 64);
    float got[16 * 64];
    sr_isa top = best_isa();
    for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
        sr_kernels_for((sr_isa)isa)->dequant(&w, 0, count, got);
        for (int64_t j = 0; j < count; j++) assert_true(same_value(got[j], want[j]));
    }
    golden_close(&g);
}

/* ---- descriptors, dispatch, fallbacks ------------------------------------ */

static void test_bytes_and_names(void **state)
{
    (void)state;
    sr_qmatrix w = {.fmt = SR_W_NF4, .rows = 3, .cols = 7, .blocksize = 4};
    assert_int_equal(sr_qmatrix_bytes(&w), 11 + 6 * 4); /* 21 nibbles, 6 blocks */
    w.fmt = SR_W_INT8;
    assert_int_equal(sr_qmatrix_bytes(&w), 21 + 3 * 4);
    w.fmt = SR_W_BF16;
    assert_int_equal(sr_qmatrix_bytes(&w), 42);
    w.fmt = SR_W_F32;
    assert_int_equal(sr_qmatrix_bytes(&w), 84);
    assert_string_equal(sr_wformat_name(SR_W_NF4), "nf4");
    assert_string_equal(sr_wformat_name(SR_W_INT8), "int8");
    assert_string_equal(sr_isa_name(SR_ISA_AVX512), "avx512");

    w.owned[0] = sr_malloc(16);
    w.owned[1] = sr_malloc(16);
    sr_qmatrix_free(&w);
    assert_null(w.owned[0]);
    assert_null(w.owned[1]);
    sr_qmatrix_free(&w); /* freeing twice is harmless */
}

static void test_isa_cap(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    setenv("STRATA_ISA", "scalar", 1);
    assert_int_equal(sr_isa_detect(), SR_ISA_SCALAR);
    setenv("STRATA_ISA", "avx2", 1);
    assert_int_equal(sr_isa_detect(), top < SR_ISA_AVX2 ? top : SR_ISA_AVX2);
    setenv("STRATA_ISA", "avx512", 1); /* a cap never raises the ISA */
    assert_int_equal(sr_isa_detect(), top);
    unsetenv("STRATA_ISA");
    assert_int_equal(sr_kernels_for(SR_ISA_AVX512)->isa, top);
}

/* With every allocation failing the kernels still produce the product (the
 * allocation-free reference path). */
static void test_allocation_failure_falls_back(void **state)
{
    (void)state;
    sr_isa top = best_isa();
    sr_wformat fmts[] = {SR_W_NF4, SR_W_INT8, SR_W_BF16}; /* bf16: the split x */
    for (int f = 0; f < 3; f++) {
        test_matrix m;
        make_matrix(&m, fmts[f], 40, 256, 64);
        for (int k = 0; k < 2; k++) {
            int64_t n = k ? 12 : 2, ldx = 256, ldy = 40;
            float *x = random_floats(n * ldx);
            expectation e = expect_product(&m.w, x, n, ldx);
            for (int isa = SR_ISA_SCALAR; isa <= (int)top; isa++) {
                float *y = sentinel_y(n, ldy);
                sr_alloc_fail_after(0);
                sr_matmul_decode(&m.w, x, n, ldx, y, ldy, (sr_isa)isa);
                sr_alloc_fail_after(-1);
                check_product("decode/oom", &m.w, y, n, ldy, &e, TOL_F32);
                sr_alloc_fail_after(0);
                sr_matmul_prefill(&m.w, x, n, ldx, y, ldy, (sr_isa)isa);
                sr_alloc_fail_after(-1);
                check_product("prefill/oom", &m.w, y, n, ldy, &e, TOL_F32);
                free(y);
            }
            free_expectation(&e);
            free(x);
        }
        free_matrix(&m);
    }
}

static void test_empty_shapes(void **state)
{
    (void)state;
    test_matrix m;
    make_matrix(&m, SR_W_F32, 3, 0, 64);
    float y[3] = {1, 2, 3}, x[1] = {0};
    sr_matmul(&m.w, x, 1, 1, y, 3);
    for (int i = 0; i < 3; i++) assert_true(y[i] == 0.0f);
    sr_matmul(&m.w, x, 0, 1, y, 3); /* no columns: nothing to do */
    free_matrix(&m);
}

/* ---- strata bench quant --------------------------------------------------- */

static void test_bench_quant_json(void **state)
{
    (void)state;
    const char *exe = getenv("STRATA_EXE");
    if (!exe) skip();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' bench quant --quick --threads 2 --json", exe);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t jerr;
    json_t *j = json_loadf(p, 0, &jerr);
    int rc = pclose(p);
    if (!j) fail_msg("bench quant --json: not JSON (%s, line %d)", jerr.text, jerr.line);
    assert_int_equal(rc, 0);
    assert_true(json_real_value(json_object_get(json_object_get(j, "bandwidth"), "gbps")) > 0);
    json_t *dec = json_object_get(j, "decode"), *pre = json_object_get(j, "prefill");
    /* 7 formats x 2 shapes, and bf16 over its tiles where AVX-512 runs */
    const int bf16_tiles = sr_isa_detect() == SR_ISA_AVX512 && sr_bf16tiles_available();
    assert_true(json_array_size(dec) == (bf16_tiles ? 16 : 14));
    size_t i;
    json_t *row;
    json_array_foreach(dec, i, row) {
        assert_true(json_real_value(json_object_get(row, "weight_gbps")) > 0);
        assert_true(json_real_value(json_object_get(row, "ratio_to_bandwidth")) > 0);
        assert_true(json_real_value(json_object_get(row, "paired_read_ratio_median")) > 0);
        /* against a plain read of each copy's own bytes (--quick: 2 copies) */
        assert_true(json_real_value(json_object_get(row, "own_read_ratio_median")) > 0);
    }
    assert_true(json_array_size(pre) >= 14);
    json_array_foreach(pre, i, row) {
        assert_true(json_real_value(json_object_get(row, "gflops")) > 0);
        assert_true(json_real_value(json_object_get(row, "sgemm_gflops")) > 0);
    }
    json_t *i8 = json_object_get(j, "int8");
    if (sr_matmul_int8_available()) {
        /* nf4, fp4, int8 (and decode: bf16 through the bf16-dot head kernel),
         * then the same over tiles, x 2 shapes */
        json_t *d8 = json_object_get(i8, "decode"), *p8 = json_object_get(i8, "prefill");
        assert_true(json_array_size(d8) == (sr_bf16dot_available() ? 14 : 12));
        assert_true(json_array_size(p8) == 12);
        int tiled = 0;
        json_array_foreach(d8, i, row) {
            assert_true(json_real_value(json_object_get(row, "weight_gbps")) > 0);
            const int is_tiles = strstr(json_string_value(json_object_get(row, "format")),
                                        " tiles") != NULL;
            tiled += !strcmp(json_string_value(json_object_get(row, "format")), "nf4 tiles");
            /* what the kernel reads: the tiles' f16 scales take half the
             * bytes of the stored f32 ones; otherwise the stored bytes */
            const json_int_t bytes = json_integer_value(json_object_get(row, "bytes"));
            const json_int_t read = json_integer_value(json_object_get(row, "read_bytes"));
            if (strcmp(json_string_value(json_object_get(row, "format")), "int8 tiles") == 0)
                assert_true(read >= bytes); /* codes + one f32 per row, rows padded to 16 */
            else
                assert_true(is_tiles ? read > 0 && read < bytes : read == bytes);
            assert_true(json_real_value(json_object_get(row, "read_ratio_to_bandwidth")) > 0);
            assert_true(json_real_value(json_object_get(row, "own_read_ratio_median")) > 0);
        }
        assert_int_equal(tiled, 2);
    } else {
        assert_true(json_is_null(i8));
    }
    json_t *qz = json_object_get(j, "quantize");
    assert_true(json_array_size(qz) == 8); /* nf4, nf4+dq, fp4, int8 x 2 shapes */
    json_array_foreach(qz, i, row) assert_true(json_real_value(json_object_get(row, "input_gbps")) > 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_and_names),
        cmocka_unit_test(test_isa_cap),
        cmocka_unit_test(test_golden_tables),
        cmocka_unit_test(test_golden_dequant_4bit),
        cmocka_unit_test(test_golden_dequant_int8),
        cmocka_unit_test(test_dequant_kernels_bit_exact),
        cmocka_unit_test(test_to_bf16_matches_scalar),
        cmocka_unit_test(test_fast_paths_match_reference),
        cmocka_unit_test(test_prefill_bf16_opt_in),
        cmocka_unit_test(test_allocation_failure_falls_back),
        cmocka_unit_test(test_empty_shapes),
        cmocka_unit_test(test_bench_quant_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
