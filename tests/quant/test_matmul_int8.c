/* The opt-in int8 kernels (quant/matmul_vnni.c, STRATA_KERNELS=int8):
 *   - the activation quantizer and the int8 code tables are exactly as
 *     documented in quant/matmul_kernels.h (per element);
 *   - decode and prefill against the exact product on random shapes (odd
 *     row counts, cols not a multiple of the 128-element group, blocks
 *     crossing rows, partial last blocks, several K slices), n = 1, 2, 3, 8,
 *     9, 64, strides wider than the data; shapes the kernels do not take are
 *     refused (-1, y untouched); every shape that can be tiled (4-bit, LLM.int8)
 *     (quant/qtile.h) again from its tiles, against the same bounds for the
 *     matrix the tiles hold (its scales in f16: tile_scaled below, test_qtile);
 *   - sr_matmul dispatch by mode (and the mode's bf16 prefill of bf16
 *     weights), the STRATA_ISA cap, determinism across
 *     thread counts, allocation failure, non-finite activations.
 *
 * Tolerance, from the quantization error.  Output y = Σ_j s_j t_j x_j
 * (s_j: block scale or SCB/127, t_j: code value).  The kernels compute
 * Σ_j s_j (T_j / a)(d_k q_j) with |x_j - d_k q_j| <= d_k / 2 (activation
 * block k, d_k = max|x| / 127) and |t_j - T_j / a| <= eps_t (the table's
 * documented maximum error; 0 for LLM.int8), so
 *     |y - y_exact| <= B = Σ_j s_j d_k (|t_j| / 2 + eps_t |q_j|)
 * plus f32 rounding, which we allow as 1e-5 * (Σ_j |w_j x_j| + B).  For
 * x uniform in [-1, 1] (E|x| = 1/2, d_k <= 1/127) B is about
 * 1/127 + eps_t / E|t| ~ 1.5 % of Σ_j |w_j x_j| for NF4 (0.8 % for
 * LLM.int8); the errors are a random walk, so observed ones are far below.
 * Every output must satisfy the bound B, and |y - y_exact| <= 2e-2 *
 * Σ_j |w_j x_j| is checked as well.
 *
 * B is a worst case, loose enough to hide a kernel that is slightly off
 * (a wrong offset correction, a scale off by 1 %).  So every output is also
 * compared with an emulation of the documented arithmetic in f64,
 *     y_emu = Σ_k Σ_{j in k} S_j T_j q_j · m_k / (127 a)
 * (T_j: int8 code, S_j: block scale or SCB, a: table scale or 127), which
 * the kernels reproduce up to f32 rounding of the scale products and the
 * accumulation: |y - y_emu| <= 1e-5 * Σ_j |S_j T_j q_j| m_k / (127 a). */
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

#include "quant/bnb4.h"
#include "quant/matmul.h"
#include "quant/matmul_kernels.h"
#include "quant/qmatrix.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "test_util.h"

#define REL_TOL 2e-2
#define F32_SLACK 1e-5
#define EMU_TOL 1e-5
/* Documented maximum |value - table / a| (matmul_kernels.h). */
#define NF4_EPS 0.00286
#define FP4_EPS 0.003125

/* ---- random test matrices ---------------------------------------------- */

#define RANDOM_MATRIX_SEED 0x243f6a8885a308d3ull
#include "random_matrix.h"

static const sr_wformat int8_formats[] = {SR_W_NF4, SR_W_FP4, SR_W_INT8};

#define SENTINEL 12345.0f

static float *sentinel_y(int64_t n, int64_t ldy)
{
    float *y = malloc((size_t)(n * ldy) * sizeof(float) + 4);
    for (int64_t i = 0; i < n * ldy; i++) y[i] = SENTINEL;
    return y;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- the documented quantizer, written out again ------------------------ */

/* Block of up to 32 values: codes q (zero-padded to 32), returns m. */
static float doc_quantize_block(const float *x, int len, int8_t q[32], int32_t *sum)
{
    float m = 0;
    int finite = 1;
    for (int i = 0; i < len; i++) {
        if (!isfinite(x[i])) finite = 0;
        else if (fabsf(x[i]) > m) m = fabsf(x[i]);
    }
    memset(q, 0, 32);
    *sum = 0;
    if (!finite) return NAN;
    if (m == 0) return 0;
    float inv = 127.0f / m;
    for (int i = 0; i < len; i++) {
        float v = nearbyintf(x[i] * inv); /* default rounding: to nearest even */
        q[i] = (int8_t)v;
        *sum += q[i];
    }
    return m;
}

/* ---- exact product and the quantization bound ---------------------------- */

typedef struct expectation {
    double *y, *mag, *bound; /* n x rows each */
    double *emu, *emu_mag;
} expectation;

static double table_eps(sr_wformat f)
{
    return f == SR_W_NF4 ? NF4_EPS : f == SR_W_FP4 ? FP4_EPS : 0;
}

static expectation expect_product(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx)
{
    expectation e;
    int64_t rows = w->rows, cols = w->cols, nkb = (cols + 31) / 32;
    float *wd = malloc((size_t)(rows * cols) * sizeof(float) + 4);
    sr_dequant_flat_scalar(w, 0, rows * cols, wd);
    /* Per element: s_j (scale) and |t_j| (code value), from the format. */
    float *s = malloc((size_t)(rows * cols) * sizeof(float) + 4);
    float *t = malloc((size_t)(rows * cols) * sizeof(float) + 4);
    /* Emulation: the int8 code and the scale it is multiplied with. */
    int8_t *code = malloc((size_t)(rows * cols) + 1);
    float *cs = malloc((size_t)(rows * cols) * sizeof(float) + 4);
    double a = w->fmt == SR_W_INT8 ? 127.0 : (double)sr_int8_q4_scale(w->fmt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t f = r * cols + j;
            if (w->fmt == SR_W_INT8) {
                s[f] = w->scb[r] / 127.0f;
                t[f] = fabsf((float)((const int8_t *)w->data)[f]);
                code[f] = ((const int8_t *)w->data)[f];
                cs[f] = w->scb[r];
            } else {
                uint8_t b = ((const uint8_t *)w->data)[f >> 1];
                int nib = (f & 1) ? (b & 0xF) : (b >> 4);
                s[f] = w->scales[f / w->blocksize];
                t[f] = fabsf(sr_q4_table(w->fmt)[nib]);
                code[f] = sr_int8_q4_table(w->fmt)[nib];
                cs[f] = s[f];
            }
        }
    int8_t *q = malloc((size_t)(nkb * 32));
    float *d = malloc((size_t)nkb * sizeof(float));
    double *md = malloc((size_t)nkb * sizeof(double));
    e.y = calloc((size_t)(n * rows) + 1, sizeof(double));
    e.mag = calloc((size_t)(n * rows) + 1, sizeof(double));
    e.bound = calloc((size_t)(n * rows) + 1, sizeof(double));
    e.emu = calloc((size_t)(n * rows) + 1, sizeof(double));
    e.emu_mag = calloc((size_t)(n * rows) + 1, sizeof(double));
    double eps = table_eps(w->fmt);
    for (int64_t c = 0; c < n; c++) {
        const float *xc = x + c * ldx;
        for (int64_t k = 0; k < nkb; k++) {
            int32_t sum;
            int len = cols - 32 * k < 32 ? (int)(cols - 32 * k) : 32;
            float m = doc_quantize_block(xc + 32 * k, len, q + 32 * k, &sum);
            d[k] = m / 127.0f;
            md[k] = (double)m / (127.0 * a);
        }
        for (int64_t r = 0; r < rows; r++) {
            double sy = 0, sm = 0, sb = 0, se = 0, sem = 0;
            for (int64_t j = 0; j < cols; j++) {
                int64_t f = r * cols + j;
                double p = (double)wd[f] * (double)xc[j];
                sy += p;
                sm += fabs(p);
                /* d/2 with slack for fl(127/m) and fl(x * 127/m) */
                sb += (double)s[f] * d[j / 32] *
                      ((double)t[f] * 0.5 * (1 + 0x1p-20) + eps * abs(q[j]));
                double pe = (double)cs[f] * code[f] * q[j] * md[j / 32];
                se += pe;
                sem += fabs(pe);
            }
            e.emu[c * rows + r] = se;
            e.emu_mag[c * rows + r] = sem;
            e.y[c * rows + r] = sy;
            e.mag[c * rows + r] = sm;
            e.bound[c * rows + r] = sb;
        }
    }
    free(wd);
    free(s);
    free(t);
    free(q);
    free(d);
    free(md);
    free(code);
    free(cs);
    return e;
}

static void free_expectation(expectation *e)
{
    free(e->y);
    free(e->mag);
    free(e->bound);
    free(e->emu);
    free(e->emu_mag);
}

/* Worst observed |error| / B and |error| / Σ|w x| per format (reported). */
static double worst_of_bound[SR_W_FORMAT_COUNT], worst_rel[SR_W_FORMAT_COUNT];

static void check_int8(const char *what, const sr_qmatrix *w, const float *y, int64_t n,
                       int64_t ldy, const expectation *e)
{
    for (int64_t c = 0; c < n; c++) {
        for (int64_t r = 0; r < w->rows; r++) {
            int64_t i = c * w->rows + r;
            double got = y[c * ldy + r], err = fabs(got - e->y[i]);
            double bound = e->bound[i] + F32_SLACK * (e->mag[i] + e->bound[i]) + 1e-30;
            if (!(err <= bound) || !(err <= REL_TOL * e->mag[i] + 1e-30))
                fail_msg("%s: fmt %s %lldx%lld bs %d n=%lld: y[%lld][%lld] = %.9g, exact %.9g "
                         "(|d| %.3g, bound %.3g, sum|wx| %.3g)",
                         what, sr_wformat_name(w->fmt), (long long)w->rows, (long long)w->cols,
                         w->blocksize, (long long)n, (long long)c, (long long)r, got, e->y[i],
                         err, bound, e->mag[i]);
            double emu_err = fabs(got - e->emu[i]);
            if (!(emu_err <= EMU_TOL * e->emu_mag[i] + 1e-30))
                fail_msg("%s: fmt %s %lldx%lld bs %d n=%lld: y[%lld][%lld] = %.9g, emulated "
                         "int8 arithmetic %.9g (|d| %.3g > %.3g)",
                         what, sr_wformat_name(w->fmt), (long long)w->rows, (long long)w->cols,
                         w->blocksize, (long long)n, (long long)c, (long long)r, got, e->emu[i],
                         emu_err, EMU_TOL * e->emu_mag[i]);
            if (e->bound[i] > 0 && err / e->bound[i] > worst_of_bound[w->fmt])
                worst_of_bound[w->fmt] = err / e->bound[i];
            if (e->mag[i] > 0 && err / e->mag[i] > worst_rel[w->fmt])
                worst_rel[w->fmt] = err / e->mag[i];
        }
        for (int64_t r = w->rows; r < ldy; r++)
            if (y[c * ldy + r] != SENTINEL)
                fail_msg("%s: fmt %s: wrote padding y[%lld][%lld]", what,
                         sr_wformat_name(w->fmt), (long long)c, (long long)r);
    }
}

/* ---- the documented numerics ---------------------------------------------- */

static void test_tables_as_documented(void **state)
{
    (void)state;
    const struct {
        sr_wformat fmt;
        sr_q4type type;
        float a;
        double eps;
    } cases[] = {{SR_W_NF4, SR_Q4_NF4, 123.25f, NF4_EPS}, {SR_W_FP4, SR_Q4_FP4, 120.0f, FP4_EPS}};
    for (size_t k = 0; k < 2; k++) {
        const float *values = sr_bnb4_table(cases[k].type);
        const int8_t *codes = sr_int8_q4_table(cases[k].fmt);
        assert_true(sr_int8_q4_scale(cases[k].fmt) == cases[k].a);
        double worst = 0;
        for (int i = 0; i < 16; i++) {
            double want = nearbyint((double)cases[k].a * values[i]);
            if (codes[i] != want)
                fail_msg("%s code %d: %d, want rint(%g * %.9g) = %g",
                         sr_wformat_name(cases[k].fmt), i, codes[i], cases[k].a, values[i], want);
            double err = fabs(values[i] - codes[i] / (double)cases[k].a);
            if (err > worst) worst = err;
        }
        /* The documented maximum error, to its 3 significant digits. */
        assert_true(worst <= cases[k].eps);
        assert_true(worst > cases[k].eps - 1e-5);
    }
}

static void check_quantizer(const float *x, int64_t len)
{
    int64_t nb = (len + 31) / 32;
    int8_t *q = malloc((size_t)(nb * 32)), want_q[32];
    float *m = malloc((size_t)nb * sizeof(float));
    int32_t *sum = malloc((size_t)nb * sizeof(int32_t)), want_sum;
    memset(q, 0x55, (size_t)(nb * 32));
    sr_int8_quantize_x(x, len, q, m, sum);
    for (int64_t b = 0; b < nb; b++) {
        int bl = len - 32 * b < 32 ? (int)(len - 32 * b) : 32;
        float want_m = doc_quantize_block(x + 32 * b, bl, want_q, &want_sum);
        if (!same_bits(m[b], want_m) && !(isnan(m[b]) && isnan(want_m)))
            fail_msg("len %lld block %lld: absmax %.9g, want %.9g", (long long)len, (long long)b,
                     m[b], want_m);
        assert_int_equal(sum[b], want_sum);
        float d = want_m / 127.0f;
        for (int i = 0; i < 32; i++) {
            if (q[32 * b + i] != want_q[i])
                fail_msg("len %lld element %lld: code %d, want %d (x = %.9g, m = %.9g)",
                         (long long)len, (long long)(32 * b + i), q[32 * b + i], want_q[i],
                         i < bl ? x[32 * b + i] : 0.0f, want_m);
            assert_true(q[32 * b + i] >= -127 && q[32 * b + i] <= 127);
            if (i < bl && isfinite(want_m))
                assert_true(fabs(x[32 * b + i] - (double)d * q[32 * b + i]) <=
                            0.5 * d * (1 + 0x1p-20));
        }
    }
    free(q);
    free(m);
    free(sum);
}

static void test_quantizer_as_documented(void **state)
{
    (void)state;
    for (int64_t len = 1; len <= 100; len++) {
        float *x = random_floats(len);
        check_quantizer(x, len);
        /* Ties: with max|x| = 127 the codes are rint(x), and x = k + 1/2
         * shows rounding to even. */
        for (int64_t i = 0; i < len; i++) x[i] = (float)((int)(rng_next() % 254) - 127) + 0.5f;
        for (int64_t i = 0; i < len; i += 32) x[i] = i & 32 ? -127.0f : 127.0f;
        check_quantizer(x, len);
        free(x);
    }
    enum { N = 160 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = rng_unit() * 1e-3f;
    for (int i = 32; i < 64; i++) x[i] = 0;          /* an all-zero block */
    for (int i = 64; i < 96; i++) x[i] *= 1e30f;     /* huge values */
    x[100] = NAN;                                    /* a non-finite block */
    x[140] = -INFINITY;
    x[10] = 0x1p-140f;                               /* a subnormal among normals */
    check_quantizer(x, N);
}

/* ---- kernels against the exact product --------------------------------- */

typedef struct shape {
    int64_t rows, cols;
    int bs;
} shape;

static const shape shapes[] = {
    {1, 32, 32},      /* one activation block */
    {3, 96, 64},      /* blocks cross rows, cols not a multiple of the group */
    {5, 160, 32},     /* 4-bit group tail of 32 */
    {17, 128, 64},    /* whole groups, a partial strip of rows */
    {9, 256, 128},
    {7, 384, 256},    /* blocks of two rows' groups */
    {13, 1024, 4096}, /* a partial last block */
    {11, 512, 1024},  /* large blocks crossing rows */
    {4, 224, 64},     /* 4-bit group tail of 96 */
    {2, 352, 32},     /* tail of 96, 4 blocks per group */
    {33, 1056, 64},   /* prefill: three K slices, the last of 32 */
    {300, 512, 64},   /* big enough for several threads */
    {7, 4160, 64},    /* tiles: panels of 16 and 17 groups, the last half (65 blocks) */
    {3, 5120, 32},    /* tiles: panels of 32, 32 and 16 groups */
    {70, 4160, 64},   /* tiles: bands of 4 and 1 tiles, the last one partial */
    {40, 6144, 2048}, /* tiles: a panel per group, the last half */
    {37, 200, 64},    /* cols % 32 != 0: 4-bit refused, LLM.int8 partial block */
    {19, 1000, 64},   /* LLM.int8: partial group and K slice */
    {6, 130, 48},     /* 4-bit refused: cols and blocksize */
    {5, 64, 16},      /* 4-bit refused: blocksize < 32 */
};

static const int64_t ns[] = {1, 2, 3, 8, 9, 64};

static int expect_fits(const sr_qmatrix *w)
{
    if (w->fmt == SR_W_INT8) return 1;
    int bs = w->blocksize;
    return w->cols % 32 == 0 && bs >= 32 && (bs & (bs - 1)) == 0;
}

/* The matrix the tiles of t hold: t's codes with the scales the tiles give
 * (f16 relative to the row scale, quant/qtile.h; how close those are to
 * t's own scales is test_qtile's business).  Its expectation is what the
 * kernels over the tiles must meet.  *scales is the caller's to free. */
static sr_qmatrix tile_scaled(const sr_qmatrix *t, float **scales)
{
    const int64_t nbr = t->cols / t->blocksize;
    float *s = malloc((size_t)(t->rows * nbr) * sizeof(float));
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t b = 0; b < nbr; b++)
            s[r * nbr + b] = sr_qtile_scale(t, r / SR_QTILE_ROWS, (int)(r % SR_QTILE_ROWS), b);
    sr_qmatrix c = sr_qmatrix_borrow(t);
    c.scales = s;
    *scales = s;
    return c;
}

static void run_int8(const test_matrix *m, int64_t n)
{
    const sr_qmatrix *w = &m->w;
    int64_t ldx = w->cols + 3, ldy = w->rows + 5;
    float *x = random_floats(n * ldx);
    float *y = sentinel_y(n, ldy);
    int rc = sr_matmul_int8(w, x, n, ldx, y, ldy);
    if (!expect_fits(w)) {
        assert_int_equal(rc, -1);
        for (int64_t i = 0; i < n * ldy; i++) assert_true(y[i] == SENTINEL);
    } else {
        assert_int_equal(rc, 0);
        expectation e = expect_product(w, x, n, ldx);
        check_int8(n <= 8 ? "int8 decode" : "int8 prefill", w, y, n, ldy, &e);
        if (sr_qtile_fits(w)) { /* the same numerics over 16-row tiles */
            sr_qmatrix t = sr_qmatrix_borrow(w);
            assert_int_equal(sr_qtile_make(&t), 0);
            assert_non_null(t.tiles);
            float *yt = sentinel_y(n, ldy), *ts;
            assert_int_equal(sr_matmul_int8(&t, x, n, ldx, yt, ldy), 0);
            /* LLM.int8 tiles hold the codes and SCB exactly */
            sr_qmatrix held = w->fmt == SR_W_INT8 ? (ts = NULL, sr_qmatrix_borrow(&t))
                                                  : tile_scaled(&t, &ts);
            expectation et = expect_product(&held, x, n, ldx);
            check_int8(n <= 8 ? "int8 decode, tiles" : "int8 prefill, tiles", &held, yt, n, ldy,
                       &et);
            free_expectation(&et);
            free(ts);
            free(yt);
            sr_qmatrix_free(&t);
        }
        free_expectation(&e);
    }
    free(y);
    free(x);
}

static void test_int8_matches_exact(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
                /* The big shapes only with one column count of each path. */
                if (shapes[s].rows * shapes[s].cols > 30000 && ns[k] != 1 && ns[k] != 64)
                    continue;
                test_matrix m;
                make_matrix(&m, int8_formats[f], shapes[s].rows, shapes[s].cols, shapes[s].bs);
                run_int8(&m, ns[k]);
                free_matrix(&m);
            }
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++) {
        sr_wformat fmt = int8_formats[f];
        print_message("int8 %s: worst |error| = %.3f of the bound, %.2e of sum|w x|\n",
                      sr_wformat_name(fmt), worst_of_bound[fmt], worst_rel[fmt]);
    }
}

/* Activations with a larger dynamic range (a few outliers per row): the
 * bound still holds, block by block. */
static void test_int8_outliers(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++) {
        test_matrix m;
        make_matrix(&m, int8_formats[f], 40, 640, 64);
        for (int64_t n = 1; n <= 16; n += 15) {
            int64_t ldx = 640;
            float *x = random_floats(n * ldx);
            for (int64_t i = 0; i < n * ldx; i += 97) x[i] *= 50.0f;
            float *y = sentinel_y(n, 40);
            assert_int_equal(sr_matmul_int8(&m.w, x, n, ldx, y, 40), 0);
            expectation e = expect_product(&m.w, x, n, ldx);
            for (int64_t i = 0; i < n * 40; i++) {
                double err = fabs(y[i] - e.y[i]);
                assert_true(err <= e.bound[i] + F32_SLACK * (e.mag[i] + e.bound[i]));
                assert_true(fabs(y[i] - e.emu[i]) <= EMU_TOL * e.emu_mag[i]);
            }
            free_expectation(&e);
            free(y);
            free(x);
        }
        free_matrix(&m);
    }
}

/* ---- dispatch, determinism, failures ------------------------------------ */

static void test_mode_dispatch(void **state)
{
    (void)state;
    unsetenv("STRATA_ISA");
    const sr_wformat fmts[] = {SR_W_NF4, SR_W_INT8, SR_W_F32};
    for (size_t f = 0; f < 3; f++)
        for (int64_t n = 1; n <= 20; n += 19) {
            test_matrix m;
            if (fmts[f] == SR_W_F32) {
                memset(&m, 0, sizeof m);
                m.w.fmt = SR_W_F32;
                m.w.rows = 24;
                m.w.cols = 256;
                m.data = random_floats(24 * 256);
                m.w.data = m.data;
            } else {
                make_matrix(&m, fmts[f], 24, 256, 64);
            }
            float *x = random_floats(n * 256);
            float *y_int8 = sentinel_y(n, 24), *y_exact = sentinel_y(n, 24),
                  *y = sentinel_y(n, 24);
            int took = sr_matmul_int8(&m.w, x, n, 256, y_int8, 24) == 0;
            assert_int_equal(took, fmts[f] != SR_W_F32);
            if (n <= 8) sr_matmul_decode(&m.w, x, n, 256, y_exact, 24, sr_isa_detect());
            else sr_matmul_prefill(&m.w, x, n, 256, y_exact, 24, sr_isa_detect());

            sr_matmul_set_mode(SR_MATMUL_INT8);
            assert_int_equal(sr_matmul_get_mode(), SR_MATMUL_INT8);
            sr_matmul(&m.w, x, n, 256, y, 24);
            for (int64_t i = 0; i < n * 24; i++)
                assert_true(same_bits(y[i], took ? y_int8[i] : y_exact[i]));

            /* STRATA_ISA below avx512 keeps the exact kernels. */
            setenv("STRATA_ISA", "avx2", 1);
            sr_matmul(&m.w, x, n, 256, y, 24);
            unsetenv("STRATA_ISA");
            float *y_avx2 = sentinel_y(n, 24);
            if (n <= 8) sr_matmul_decode(&m.w, x, n, 256, y_avx2, 24, SR_ISA_AVX2);
            else sr_matmul_prefill(&m.w, x, n, 256, y_avx2, 24, SR_ISA_AVX2);
            for (int64_t i = 0; i < n * 24; i++) assert_true(same_bits(y[i], y_avx2[i]));
            free(y_avx2);

            sr_matmul_set_mode(SR_MATMUL_EXACT);
            assert_int_equal(sr_matmul_get_mode(), SR_MATMUL_EXACT);
            sr_matmul(&m.w, x, n, 256, y, 24);
            for (int64_t i = 0; i < n * 24; i++) assert_true(same_bits(y[i], y_exact[i]));
            free(x);
            free(y);
            free(y_int8);
            free(y_exact);
            free_matrix(&m);
        }
}

/* The int8 mode's prefill of untiled bf16 weights is the bf16 GEMM
 * (STRATA_PREFILL=bf16: x rounded to bf16, f32 accumulation), bit for bit;
 * the exact mode's, and the int8 mode's below AVX-512, the f32 prefill. */
static void test_bf16_prefill_dispatch(void **state)
{
    (void)state;
    unsetenv("STRATA_ISA");
    unsetenv("STRATA_PREFILL");
    const int64_t rows = 40, cols = 320, n = 21;
    uint16_t *wb = malloc(sizeof *wb * (size_t)(rows * cols));
    float *wf = random_floats(rows * cols);
    assert_non_null(wb);
    for (int64_t i = 0; i < rows * cols; i++) {
        uint32_t u;
        memcpy(&u, &wf[i], 4);
        wb[i] = (uint16_t)(u >> 16);
    }
    sr_qmatrix w = {.fmt = SR_W_BF16, .rows = rows, .cols = cols, .data = wb};
    float *x = random_floats(n * cols);
    float *y = sentinel_y(n, rows), *y_f32 = sentinel_y(n, rows), *y_bf16 = sentinel_y(n, rows);
    sr_matmul_prefill(&w, x, n, cols, y_f32, rows, sr_isa_detect());
    setenv("STRATA_PREFILL", "bf16", 1);
    sr_matmul_prefill(&w, x, n, cols, y_bf16, rows, sr_isa_detect());
    unsetenv("STRATA_PREFILL");
    const int bf16 = sr_isa_detect() == SR_ISA_AVX512 && sr_matmul_bf16_available();

    sr_matmul_set_mode(SR_MATMUL_INT8);
    sr_matmul(&w, x, n, cols, y, rows);
    for (int64_t i = 0; i < n * rows; i++)
        assert_true(same_bits(y[i], bf16 ? y_bf16[i] : y_f32[i]));
    setenv("STRATA_ISA", "avx2", 1);
    float *y_avx2 = sentinel_y(n, rows);
    sr_matmul_prefill(&w, x, n, cols, y_avx2, rows, SR_ISA_AVX2);
    sr_matmul(&w, x, n, cols, y, rows);
    unsetenv("STRATA_ISA");
    for (int64_t i = 0; i < n * rows; i++) assert_true(same_bits(y[i], y_avx2[i]));

    sr_matmul_set_mode(SR_MATMUL_EXACT);
    sr_matmul(&w, x, n, cols, y, rows);
    for (int64_t i = 0; i < n * rows; i++) assert_true(same_bits(y[i], y_f32[i]));
    if (bf16) { /* the two prefills differ: the test tells them apart */
        int differ = 0;
        for (int64_t i = 0; i < n * rows; i++) differ |= !same_bits(y_f32[i], y_bf16[i]);
        assert_true(differ);
    }
    free(y_avx2);
    free(y);
    free(y_f32);
    free(y_bf16);
    free(x);
    free(wf);
    free(wb);
}

static void test_threads_deterministic(void **state)
{
    (void)state;
    int saved = omp_get_max_threads();
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++)
        for (int64_t n = 1; n <= 33; n += 32) {
            test_matrix m;
            make_matrix(&m, int8_formats[f], 500, 640, 64);
            float *x = random_floats(n * 640);
            float *y1 = sentinel_y(n, 500), *y2 = sentinel_y(n, 500);
            omp_set_num_threads(1);
            assert_int_equal(sr_matmul_int8(&m.w, x, n, 640, y1, 500), 0);
            omp_set_num_threads(saved > 1 ? saved : 2);
            assert_int_equal(sr_matmul_int8(&m.w, x, n, 640, y2, 500), 0);
            for (int64_t i = 0; i < n * 500; i++) assert_true(same_bits(y1[i], y2[i]));
            free(x);
            free(y1);
            free(y2);
            free_matrix(&m);
        }
    omp_set_num_threads(saved);
}

static void test_alloc_failure_falls_back(void **state)
{
    (void)state;
    test_matrix m;
    make_matrix(&m, SR_W_NF4, 20, 256, 64);
    for (int64_t n = 1; n <= 12; n += 11) {
        float *x = random_floats(n * 256), *y = sentinel_y(n, 20);
        sr_alloc_fail_after(0);
        int rc = sr_matmul_int8(&m.w, x, n, 256, y, 20);
        sr_alloc_fail_after(-1);
        assert_int_equal(rc, -1);
        for (int64_t i = 0; i < n * 20; i++) assert_true(y[i] == SENTINEL);
        /* sr_matmul in int8 mode then computes exactly (allocation-free
         * fallbacks of the exact path). */
        sr_matmul_set_mode(SR_MATMUL_INT8);
        sr_alloc_fail_after(0);
        sr_matmul(&m.w, x, n, 256, y, 20);
        sr_alloc_fail_after(-1);
        sr_matmul_set_mode(SR_MATMUL_EXACT);
        float *want = sentinel_y(n, 20);
        sr_matmul_ref(&m.w, x, n, 256, want, 20);
        for (int64_t i = 0; i < n * 20; i++) assert_true(fabsf(y[i] - want[i]) <= 1e-3f);
        free(want);
        free(x);
        free(y);
    }
    free_matrix(&m);
}

static void test_nonfinite_activations(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++)
        for (int64_t n = 1; n <= 10; n += 9) {
            test_matrix m;
            make_matrix(&m, int8_formats[f], 8, 128, 64);
            float *x = random_floats(n * 128), *y = sentinel_y(n, 8);
            x[(n - 1) * 128 + 70] = f == 1 ? INFINITY : NAN; /* last column only */
            assert_int_equal(sr_matmul_int8(&m.w, x, n, 128, y, 8), 0);
            for (int64_t c = 0; c < n; c++)
                for (int64_t r = 0; r < 8; r++)
                    assert_true(c == n - 1 ? isnan(y[c * 8 + r]) : isfinite(y[c * 8 + r]));
            if (sr_qtile_fits(&m.w)) { /* the same from the tiles */
                sr_qmatrix t = sr_qmatrix_borrow(&m.w);
                assert_int_equal(sr_qtile_make(&t), 0);
                for (int64_t i = 0; i < n * 8; i++) y[i] = SENTINEL;
                assert_int_equal(sr_matmul_int8(&t, x, n, 128, y, 8), 0);
                for (int64_t c = 0; c < n; c++)
                    for (int64_t r = 0; r < 8; r++)
                        assert_true(c == n - 1 ? isnan(y[c * 8 + r]) : isfinite(y[c * 8 + r]));
                sr_qmatrix_free(&t);
            }
            free(x);
            free(y);
            free_matrix(&m);
        }
}

/* sr_matmul_parts: tiled parts of one format and width (q/k/v of 3B's
 * shape ratio, with a partial last tile) give each part's sr_matmul_int8
 * result bit for bit (the same kernel on the same quantized activations),
 * into an interleaved output as the forward pass lays it out; parts it
 * cannot take as one call (untiled, mixed widths, prefill, exact mode)
 * give each part's sr_matmul. */
static void test_parts(void **state)
{
    (void)state;
    const int64_t cols = 256, rows[3] = {160, 40, 40}, ldy = 160 + 40 + 40;
    for (size_t f = 0; f < sizeof int8_formats / sizeof *int8_formats; f++)
        for (int64_t n = 1; n <= 12; n += 11) {
            test_matrix m[3];
            sr_qmatrix w[3], tiled[3];
            for (int i = 0; i < 3; i++) {
                make_matrix(&m[i], int8_formats[f], rows[i] + (i == 2 ? 3 : 0), cols, 64);
                w[i] = m[i].w;
                tiled[i] = sr_qmatrix_borrow(&m[i].w);
                assert_int_equal(sr_qtile_make(&tiled[i]), 0);
                assert_non_null(tiled[i].tiles);
            }
            w[2].rows = tiled[2].rows = rows[2] - 3; /* 37 rows: a partial tile */
            float *x = random_floats(n * cols);
            for (int mode = 0; mode < 2; mode++) {
                sr_matmul_set_mode(mode ? SR_MATMUL_INT8 : SR_MATMUL_EXACT);
                for (int t = 0; t < 2; t++) {
                    const sr_qmatrix *src = t ? tiled : w;
                    float *want = sentinel_y(n, ldy), *got = sentinel_y(n, ldy);
                    float *yw[3] = {want, want + rows[0], want + rows[0] + rows[1]};
                    float *yg[3] = {got, got + rows[0], got + rows[0] + rows[1]};
                    for (int i = 0; i < 3; i++) sr_matmul(&src[i], x, n, cols, yw[i], ldy);
                    sr_matmul_parts(src, 3, x, n, cols, yg, ldy);
                    for (int64_t i = 0; i < n * ldy; i++) assert_true(same_bits(want[i], got[i]));
                    /* the one-call path takes exactly the tiled decode calls
                     * (whatever the mode: it is the int8 path explicitly) */
                    for (int64_t i = 0; i < n * ldy; i++) got[i] = SENTINEL;
                    const int one = sr_matmul_int8_parts(src, 3, x, n, cols, yg, ldy) == 0;
                    assert_int_equal(one, t == 1 && n <= 8);
                    for (int64_t i = 0; i < n * ldy; i++) {
                        if (!one) assert_true(same_bits(got[i], SENTINEL));
                        else if (mode == 1) assert_true(same_bits(got[i], want[i]));
                    }
                    free(want);
                    free(got);
                }
            }
            /* mixed widths: not one call */
            sr_qmatrix narrow = tiled[1];
            narrow.cols = 128;
            sr_qmatrix mixed[2] = {tiled[0], narrow};
            float *y = sentinel_y(1, ldy), *ym[2] = {y, y + rows[0]};
            assert_int_equal(sr_matmul_int8_parts(mixed, 2, x, 1, cols, ym, ldy), -1);
            assert_true(same_bits(y[0], SENTINEL));
            free(y);
            sr_matmul_set_mode(SR_MATMUL_EXACT);
            free(x);
            for (int i = 0; i < 3; i++) {
                sr_qmatrix_free(&tiled[i]);
                free_matrix(&m[i]);
            }
        }
}

int main(void)
{
    if (!sr_matmul_int8_available()) {
        printf("skipped: no AVX-512 VNNI\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_as_documented),
        cmocka_unit_test(test_quantizer_as_documented),
        cmocka_unit_test(test_int8_matches_exact),
        cmocka_unit_test(test_int8_outliers),
        cmocka_unit_test(test_mode_dispatch),
        cmocka_unit_test(test_bf16_prefill_dispatch),
        cmocka_unit_test(test_threads_deterministic),
        cmocka_unit_test(test_alloc_failure_falls_back),
        cmocka_unit_test(test_nonfinite_activations),
        cmocka_unit_test(test_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
