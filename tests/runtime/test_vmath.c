/* runtime/vmath.h: the vectorizable exp of softmax and SiLU.
 * Within 2 ulp (2.4e-7 relative) of exp over [-87.3, 88.3] (checked on
 * every 97th float there), exactly 0 below -87.34 and for -inf (hidden
 * keys), exp(0) = 1 exactly, NaN in -> NaN out, finite (not inf) above
 * 88.38. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/vmath.h"

static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t to_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static void test_accuracy(void **state)
{
    (void)state;
    double worst = 0;
    float at = 0;
    /* negative floats from -87.3 up to -0, then +0 up to 88.3 (bit patterns) */
    const uint32_t ranges[2][2] = {{0x80000000u, to_bits(-87.3f)}, {0, to_bits(88.3f)}};
    for (int r = 0; r < 2; r++)
        for (uint32_t u = ranges[r][0]; u <= ranges[r][1]; u += 97) {
            const float x = from_bits(u);
            const double want = exp((double)x), rel = fabs((double)sr_vexpf(x) - want) / want;
            if (rel > worst) {
                worst = rel;
                at = x;
            }
        }
    if (!(worst <= 2.4e-7)) fail_msg("relative error %.3g at x = %.9g", worst, at);
}

static void test_edges(void **state)
{
    (void)state;
    assert_true(sr_vexpf(0.0f) == 1.0f);
    assert_true(sr_vexpf(-INFINITY) == 0.0f);
    assert_true(sr_vexpf(-88.0f) == 0.0f);
    assert_true(sr_vexpf(-1000.0f) == 0.0f);
    assert_true(isnan(sr_vexpf(NAN)));
    assert_true(isfinite(sr_vexpf(100.0f)) && sr_vexpf(100.0f) > 1e38f);
    assert_true(isfinite(sr_vexpf(INFINITY)));
    assert_true(fabsf(sr_vexpf(1.0f) - 2.7182817f) <= 3e-7f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
