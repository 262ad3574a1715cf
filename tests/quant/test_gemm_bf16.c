/* The AVX512_BF16 GEMM of the opt-in bf16 prefill (quant/gemm_bf16.h).
 *
 * Inputs are bf16 values (A directly, B as f32 holding bf16 values, so
 * packing is exact): products of bf16 are exact in f32 and only the f32
 * summation order differs from an f64 reference, so
 *     |c - c_ref| <= 1e-5 * (sum_k |a_k b_k| + |beta c0|) + 1e-30.
 * Packing is also checked element by element against the layout (bf16 of
 * arbitrary f32, nearest even), and the kernel against every row count of
 * its register block (m = 1..30), column tails, odd K and wide strides.
 * Skipped on CPUs without AVX512_BF16. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quant/gemm_bf16.h"
#include "runtime/dtype.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1p-53 * 2.0 - 1.0);
}

/* Element (row r, column k) of a packed B: the documented layout. */
static uint16_t packed_at(const uint16_t *p, int64_t k_total, int64_t r, int64_t k)
{
    const int64_t kp = (k_total + 1) / 2, s = r / SR_BF16_NR, j = r % SR_BF16_NR;
    return p[(s * kp + k / 2) * 2 * SR_BF16_NR + 2 * j + (k & 1)];
}

static void test_pack_layout(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {16, 32, 32}, {32, 33, 40},
                                 {45, 64, 64}, {70, 129, 150}, {256, 512, 512}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        const int64_t n = shapes[t][0], k = shapes[t][1], ldb = shapes[t][2];
        float *b = malloc(sizeof(float) * (size_t)(n * ldb));
        for (int64_t i = 0; i < n * ldb; i++) b[i] = rnd() * 3.0f;
        const int64_t e = sr_bf16_packed_elems(n, k);
        assert_true(e >= ((n + SR_BF16_NR - 1) / SR_BF16_NR) * SR_BF16_NR * k);
        uint16_t *p = malloc(sizeof(uint16_t) * (size_t)e);
        memset(p, 0xA5, sizeof(uint16_t) * (size_t)e);
        sr_bf16_pack_b(b, ldb, n, k, p);
        const int64_t rows = (n + SR_BF16_NR - 1) / SR_BF16_NR * SR_BF16_NR, kk = (k + 1) / 2 * 2;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < kk; c++) {
                uint16_t want = r < n && c < k ? sr_f32_to_bf16(b[r * ldb + c]) : 0;
                assert_int_equal(packed_at(p, k, r, c), want);
            }
        free(p);
        free(b);
    }
}

static void check_gemm(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldc, float beta)
{
    uint16_t *a = malloc(sizeof(uint16_t) * (size_t)(m * lda));
    float *b = malloc(sizeof(float) * (size_t)(n * k));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc)), *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
    uint16_t *p = malloc(sizeof(uint16_t) * (size_t)sr_bf16_packed_elems(n, k));
    for (int64_t i = 0; i < m * lda; i++) a[i] = sr_f32_to_bf16(rnd());
    /* NaN beyond each row's K: must never be read */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = k; j < lda; j++) a[i * lda + j] = 0x7fc0;
    for (int64_t i = 0; i < n * k; i++) b[i] = sr_bf16_to_f32(sr_f32_to_bf16(rnd()));
    for (int64_t i = 0; i < m * ldc; i++) c[i] = c0[i] = beta != 0.0f ? rnd() : NAN;
    sr_bf16_pack_b(b, k, n, k, p);
    sr_gemm_bf16(m, n, k, a, lda, p, beta, c, ldc);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int64_t q = 0; q < k; q++) {
                double t = (double)sr_bf16_to_f32(a[i * lda + q]) * b[j * k + q];
                s += t;
                mag += fabs(t);
            }
            if (beta != 0.0f) {
                s += (double)beta * c0[i * ldc + j];
                mag += fabs((double)beta * c0[i * ldc + j]);
            }
            double d = fabs((double)c[i * ldc + j] - s);
            if (!(d <= 1e-5 * mag + 1e-30))
                fail_msg("m %lld n %lld k %lld beta %g: c[%lld][%lld] = %.9g, expected %.9g",
                         (long long)m, (long long)n, (long long)k, beta, (long long)i,
                         (long long)j, c[i * ldc + j], s);
        }
        for (int64_t j = n; j < ldc; j++)   /* columns past n untouched */
            if (memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(float)))
                fail_msg("m %lld n %lld k %lld: c[%lld][%lld] beyond n was written", (long long)m,
                         (long long)n, (long long)k, (long long)i, (long long)j);
    }
    free(p);
    free(c0);
    free(c);
    free(b);
    free(a);
}

static void test_gemm_shapes(void **state)
{
    (void)state;
    if (!sr_gemm_bf16_available()) skip();
    for (int64_t m = 1; m <= 30; m++) check_gemm(m, 37, 20, 23, 40, 0.0f);
    const int64_t shapes[][3] = {{1, 1, 1}, {5, 16, 2}, {14, 32, 64}, {15, 33, 65},
                                 {29, 70, 131}, {33, 64, 512}, {64, 100, 77}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        const int64_t m = shapes[t][0], n = shapes[t][1], k = shapes[t][2];
        check_gemm(m, n, k, k, n, 0.0f);
        check_gemm(m, n, k, k + 3, n + 5, 1.0f);
        check_gemm(m, n, k, k + 1, n + 1, 0.5f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_gemm_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
