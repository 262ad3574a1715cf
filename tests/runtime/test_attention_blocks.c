/* The blocked attention (runtime/attention.c) against a double reference on
 * shapes that reach every block kind: head blocks (T <= 4, one query and
 * all heads of a KV group), query blocks (T > 4, 16 queries of one head)
 * with a partial last block, cached keys before the queries (p0 > 0), a
 * group of 5 query heads per KV head (Granite 3b/8b-like GQA), and random
 * Gen A hiding.  Tolerance: f32 sums in another order,
 *     |o - o_ref| <= 1e-5 · max_j |v_j|   (values in [-3, 3]: 3e-5).
 * Also: a chunked prefill (T tokens at once) equals feeding the same tokens
 * in smaller steps within that tolerance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/attention.h"

enum { NH = 10, NKV = 2, HD = 16, CTX = 80 };

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1p-53 * 2.0 - 1.0);
}

typedef struct fixture {
    float k[NKV * CTX * HD], v[NKV * CTX * HD], q[CTX * NH * HD];
    uint32_t mem[CTX], qsup[CTX];
    float *scratch;
} fixture;

static fixture *make_fixture(int hiding)
{
    fixture *f = calloc(1, sizeof *f);
    for (int i = 0; i < NKV * CTX * HD; i++) {
        f->k[i] = rnd();
        f->v[i] = rnd() * 3.0f;
    }
    for (int i = 0; i < CTX * NH * HD; i++) f->q[i] = rnd() * 4.0f;
    for (int i = 0; i < CTX && hiding; i++) {
        f->mem[i] = (rnd() > 0.7f) ? 1u + (rnd() > 0.0f) : 0;
        f->qsup[i] = f->mem[i] ? 0 : 3;
    }
    f->scratch = malloc(sizeof(float) * (size_t)sr_attention_scratch_floats(CTX));
    return f;
}

static void run(fixture *f, int64_t p0, int T, int hiding, float *out)
{
    sr_attn_args a = {.nh = NH, .nkv = NKV, .hd = HD, .scale = 0.25f, .p0 = p0, .T = T,
                      .q = f->q + p0 * NH * HD, .ldq = NH * HD, .k = f->k, .v = f->v,
                      .head_stride = CTX * HD, .key_mem = hiding ? f->mem : NULL,
                      .qsup = hiding ? f->qsup + p0 : NULL, .out = out, .ldo = NH * HD,
                      .scratch = f->scratch};
    sr_attention(&a);
}

static void reference(const fixture *f, int64_t i, int h, int hiding, double *o)
{
    const int g = h / (NH / NKV);
    double s[CTX], mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j <= i; j++) {
        if (hiding && (f->mem[j] & f->qsup[i])) {
            s[j] = -INFINITY;
            continue;
        }
        double d = 0;
        for (int e = 0; e < HD; e++)
            d += (double)f->q[i * NH * HD + h * HD + e] * f->k[(g * CTX + j) * HD + e];
        s[j] = 0.25 * d;
        if (s[j] > mx) mx = s[j];
    }
    for (int64_t j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
    for (int e = 0; e < HD; e++) {
        o[e] = 0;
        for (int64_t j = 0; j <= i; j++) o[e] += s[j] / sum * f->v[(g * CTX + j) * HD + e];
    }
}

static void check(const fixture *f, int64_t p0, int T, int hiding, const float *out)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) {
            double o[HD];
            reference(f, p0 + t, h, hiding, o);
            for (int e = 0; e < HD; e++) {
                double d = fabs(out[(t * NH + h) * HD + e] - o[e]);
                if (!(d <= 3e-5))
                    fail_msg("p0 %lld T %d hiding %d: query %d head %d dim %d: %.9g vs %.9g",
                             (long long)p0, T, hiding, t, h, e, out[(t * NH + h) * HD + e], o[e]);
            }
        }
}

static void test_blocks_match_reference(void **state)
{
    (void)state;
    const int64_t p0s[] = {0, 7, 40};
    const int Ts[] = {1, 2, 3, 4, 5, 16, 17, 33};
    for (int hiding = 0; hiding < 2; hiding++) {
        fixture *f = make_fixture(hiding);
        float *out = malloc(sizeof(float) * CTX * NH * HD);
        for (size_t a = 0; a < sizeof p0s / sizeof *p0s; a++)
            for (size_t b = 0; b < sizeof Ts / sizeof *Ts; b++) {
                if (p0s[a] + Ts[b] > CTX) continue;
                memset(out, 0xff, sizeof(float) * CTX * NH * HD);  /* NaN sentinel */
                run(f, p0s[a], Ts[b], hiding, out);
                check(f, p0s[a], Ts[b], hiding, out);
            }
        free(out);
        free(f->scratch);
        free(f);
    }
}

/* The whole sequence at once vs in steps of 1, 3 and 17 queries. */
static void test_chunking_invariance(void **state)
{
    (void)state;
    fixture *f = make_fixture(1);
    float *whole = malloc(sizeof(float) * CTX * NH * HD), *steps = malloc(sizeof(float) * CTX * NH * HD);
    run(f, 0, CTX, 1, whole);
    const int sizes[] = {1, 3, 17};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int p = 0; p < CTX; p += sizes[s]) {
            int T = CTX - p < sizes[s] ? CTX - p : sizes[s];
            run(f, p, T, 1, steps + p * NH * HD);
        }
        for (int i = 0; i < CTX * NH * HD; i++) assert_true(fabsf(whole[i] - steps[i]) <= 1e-5f);
    }
    free(whole);
    free(steps);
    free(f->scratch);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_match_reference),
        cmocka_unit_test(test_chunking_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
