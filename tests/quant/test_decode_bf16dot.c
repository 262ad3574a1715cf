/* The bf16 decode of the opt-in approximate kernels (quant/decode_bf16dot.h):
 *   - against its scalar reference (the same bf16 products in f64, summed in
 *     order) on random shapes: rows of 1..1000, cols around the 32- and
 *     128-element steps and up to the widest it takes (4096);
 *   - against the exact f32 product within the bound x's rounding allows;
 *   - refusals (y untouched), sr_matmul's dispatch by mode and n, and the
 *     same output for 1 and 2 threads.
 *
 * Tolerances.  The products of two bf16 are exact in f32; vdpbf16ps sums
 * them in f32 into four partial sums of at most cols / 128 + 2 steps, so
 * against the f64 reference |y - ref| <= gamma * S with S = Σ_j |w_j xb_j|
 * and gamma = (cols / 64 + 8) * 2^-24; we allow 1e-5 * S (cols <= 4096:
 * gamma <= 5e-6).  Against the exact product Σ w_j x_j, each xb_j is within
 * 2^-8 |x_j| of x_j (bf16 keeps 8 significant bits, round to nearest), so
 * |y - exact| <= 2^-8 Σ |w_j x_j| + 1e-5 * S. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <cmocka.h>

#include "quant/decode_bf16dot.h"
#include "quant/matmul.h"
#include "quant/qmatrix.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float unit(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2 - 1);
}

typedef struct mat {
    uint16_t *w;
    float *x, *y, *ref;
    int64_t rows, cols;
} mat;

static void mat_make(mat *m, int64_t rows, int64_t cols)
{
    m->rows = rows;
    m->cols = cols;
    m->w = sr_malloc_aligned((size_t)(rows * cols) * 2 + 64);
    m->x = sr_malloc_aligned((size_t)cols * 4 + 64);
    m->y = sr_malloc_aligned((size_t)rows * 4 + 64);
    m->ref = sr_malloc_aligned((size_t)rows * 4 + 64);
    assert_non_null(m->w);
    assert_non_null(m->x);
    for (int64_t i = 0; i < rows * cols; i++) m->w[i] = sr_f32_to_bf16(unit());
    for (int64_t j = 0; j < cols; j++) m->x[j] = unit() * 3;
}

static void mat_free(mat *m)
{
    sr_free_aligned(m->w);
    sr_free_aligned(m->x);
    sr_free_aligned(m->y);
    sr_free_aligned(m->ref);
}

/* Σ_j |w_j xb_j| (b = 1) or Σ_j |w_j x_j| (b = 0) of row r, in f64. */
static double abs_sum(const mat *m, int64_t r, int b)
{
    double s = 0;
    for (int64_t j = 0; j < m->cols; j++) {
        const float xj = b ? sr_bf16_to_f32(sr_f32_to_bf16(m->x[j])) : m->x[j];
        s += fabs((double)sr_bf16_to_f32(m->w[r * m->cols + j]) * (double)xj);
    }
    return s;
}

static void skip_without_bf16(void)
{
    if (!sr_bf16dot_available()) {
        print_message("skipped: no AVX512_BF16 on this CPU\n");
        skip();
    }
}

static void test_against_reference(void **state)
{
    (void)state;
    skip_without_bf16();
    const int64_t shapes[][2] = {{1, 1},    {3, 31},   {17, 32},   {5, 33},   {40, 127},
                                 {16, 128}, {33, 129}, {1000, 96}, {7, 2560}, {64, 2561},
                                 {9, 4095}, {3, 4096}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        mat m;
        mat_make(&m, shapes[s][0], shapes[s][1]);
        assert_int_equal(sr_bf16dot_decode(m.w, m.rows, m.cols, m.x, m.y), 0);
        sr_bf16dot_ref(m.w, m.rows, m.cols, m.x, m.ref);
        for (int64_t r = 0; r < m.rows; r++) {
            const double S = abs_sum(&m, r, 1);
            if (fabs((double)m.y[r] - (double)m.ref[r]) > 1e-5 * S + 1e-30)
                fail_msg("%lldx%lld row %lld: %.9g vs reference %.9g (S %.6g)",
                         (long long)m.rows, (long long)m.cols, (long long)r, m.y[r], m.ref[r], S);
            /* the exact f32-weights product, x unrounded */
            double exact = 0;
            for (int64_t j = 0; j < m.cols; j++)
                exact += (double)sr_bf16_to_f32(m.w[r * m.cols + j]) * (double)m.x[j];
            const double bound = ldexp(abs_sum(&m, r, 0), -8) + 1e-5 * S;
            if (fabs((double)m.y[r] - exact) > bound)
                fail_msg("%lldx%lld row %lld: %.9g vs exact %.9g (bound %.6g)", (long long)m.rows,
                         (long long)m.cols, (long long)r, m.y[r], exact, bound);
        }
        mat_free(&m);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    mat m;
    mat_make(&m, 4, SR_BF16DOT_MAX_COLS + 32);
    for (int i = 0; i < 4; i++) m.y[i] = 12345.0f;
    assert_int_equal(sr_bf16dot_decode(m.w, 4, SR_BF16DOT_MAX_COLS + 1, m.x, m.y), -1);
    assert_int_equal(sr_bf16dot_decode(m.w, 4, 0, m.x, m.y), -1);
    for (int i = 0; i < 4; i++) assert_true(m.y[i] == 12345.0f);
    mat_free(&m);
}

/* sr_matmul takes the kernel in int8 mode for bf16 and n = 1 only; the exact
 * mode and n > 1 keep the exact f32 kernels. */
static void test_dispatch(void **state)
{
    (void)state;
    skip_without_bf16();
    if (sr_isa_detect() != SR_ISA_AVX512) skip();
    mat m;
    mat_make(&m, 300, 2560);
    sr_qmatrix w = {.fmt = SR_W_BF16, .rows = m.rows, .cols = m.cols, .data = m.w};
    float *y2 = sr_malloc_aligned(2 * (size_t)m.rows * 4), *x2 = sr_malloc_aligned(2 * 2560 * 4);
    assert_non_null(y2);
    assert_non_null(x2);
    memcpy(x2, m.x, 2560 * 4);
    memcpy(x2 + 2560, m.x, 2560 * 4);
    assert_int_equal(sr_bf16dot_decode(m.w, m.rows, m.cols, m.x, m.ref), 0);

    sr_matmul_set_mode(SR_MATMUL_INT8);
    sr_matmul(&w, m.x, 1, m.cols, m.y, m.rows);
    assert_memory_equal(m.y, m.ref, (size_t)m.rows * 4);
    sr_matmul(&w, x2, 2, 2560, y2, m.rows); /* n = 2: the exact kernel */
    float *ex = sr_malloc_aligned(2 * (size_t)m.rows * 4);
    sr_matmul_decode(&w, x2, 2, 2560, ex, m.rows, SR_ISA_AVX512);
    assert_memory_equal(y2, ex, 2 * (size_t)m.rows * 4);
    sr_matmul_decode(&w, m.x, 1, m.cols, ex, m.rows, SR_ISA_AVX512);

    sr_matmul_set_mode(SR_MATMUL_EXACT);
    sr_matmul(&w, m.x, 1, m.cols, m.y, m.rows);
    assert_memory_equal(m.y, ex, (size_t)m.rows * 4);
    assert_true(memcmp(m.y, m.ref, (size_t)m.rows * 4) != 0); /* the two paths differ */
    sr_free_aligned(ex);
    sr_free_aligned(y2);
    sr_free_aligned(x2);
    mat_free(&m);
}

static void test_threads(void **state)
{
    (void)state;
    skip_without_bf16();
    mat m;
    mat_make(&m, 777, 2560);
    omp_set_num_threads(1);
    assert_int_equal(sr_bf16dot_decode(m.w, m.rows, m.cols, m.x, m.ref), 0);
    omp_set_num_threads(2);
    assert_int_equal(sr_bf16dot_decode(m.w, m.rows, m.cols, m.x, m.y), 0);
    assert_memory_equal(m.y, m.ref, (size_t)m.rows * 4);
    mat_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
