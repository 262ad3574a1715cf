/* The blocked attention (runtime/attention.c) against a double reference on
 * shapes that reach every block kind: head blocks (T <= 4, one query and
 * all heads of a KV group), query blocks (T > 4, 16 queries of one head)
 * with a partial last block, cached keys before the queries (p0 > 0), a
 * group of 5 query heads per KV head (Granite 3b/8b-like GQA), and random
 * Gen A hiding.  Tolerance: f32 sums in another order,
 *     |o - o_ref| <= 1e-5 · max_j |v_j|   (values in [-3, 3]: 3e-5).
 * Also: a chunked prefill (T tokens at once) equals feeding the same tokens
 * in smaller steps within that tolerance.
 *
 * The decode kernels (runtime/attention_stream.h: plain C, AVX2, AVX-512,
 * each where this CPU and the head dim allow) against the same double
 * reference and against the sgemm path, on random data: head dims 64 and
 * 128 (Granite 4.1 3b / 8b), 16 and 8 (the tiny and test models), odd ones
 * (7, 24, 48: the fallbacks and the AVX-512 narrow blocks) and 256 (partial
 * value rows); 1, 2, 4, 5 and 16 query heads per KV head and 7 (more rows
 * than one register block); key counts around the tile sizes and odd ones;
 * with and without hiding.  Same tolerance, scaled by max |v|, and why it
 * holds: the scores are hd-term f32 dot products (relative error a few u =
 * 6e-8 times sqrt(hd) in a random-sign sum, |scores| <= ~15 here), the
 * softmax turns an absolute score error d into a relative weight error d,
 * so |o - o_ref| stays near 1e-6 · max|v| (measured worst case printed
 * by the test: ~1e-6), and 1e-5 leaves a 10x margin without hiding a wrong
 * key, row or scale (those give errors of order max|v|).
 *
 * A bf16 cache: every kernel against the f32 path over the widened values
 * (test_bf16_cache_matches_widened). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/attention.h"
#include "runtime/attention_stream.h"
#include "runtime/dtype.h"

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
    f->scratch = malloc(sizeof(float) * (size_t)sr_attention_scratch_floats(CTX, HD, SR_KV_F32));
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

/* ---- decode kernels ---------------------------------------------------- */

typedef struct shape {
    int nh, nkv, hd;
    int64_t ctx;
    float *q, *k, *v, *out, *ref, *scratch;
    uint32_t *mem, *qsup;
} shape;

static shape make_shape(int nh, int nkv, int hd, int64_t ctx)
{
    shape sh = {.nh = nh, .nkv = nkv, .hd = hd, .ctx = ctx};
    const size_t kv = (size_t)nkv * ctx * hd, qo = (size_t)ctx * nh * hd;
    sh.q = malloc(sizeof(float) * qo);
    sh.k = malloc(sizeof(float) * kv);
    sh.v = malloc(sizeof(float) * kv);
    sh.out = malloc(sizeof(float) * qo);
    sh.ref = malloc(sizeof(float) * qo);
    sh.scratch = malloc(sizeof(float) * (size_t)sr_attention_scratch_floats(ctx, hd, SR_KV_F32));
    sh.mem = calloc((size_t)ctx, sizeof(uint32_t));
    sh.qsup = calloc((size_t)ctx, sizeof(uint32_t));
    /* q·k/sqrt(hd) * 6: scores with a spread of about +-2 sigma = 4 */
    for (size_t i = 0; i < qo; i++) sh.q[i] = rnd() * 6.0f;
    for (size_t i = 0; i < kv; i++) {
        sh.k[i] = rnd();
        sh.v[i] = rnd() * 3.0f;
    }
    for (int64_t i = 0; i < ctx; i++) {
        sh.mem[i] = (rnd() > 0.6f) ? 1u + (rnd() > 0.0f) : 0;
        sh.qsup[i] = sh.mem[i] ? 0 : (rnd() > 0.0f ? 3 : 1);
    }
    return sh;
}

static void free_shape(shape *sh)
{
    free(sh->q), free(sh->k), free(sh->v), free(sh->out), free(sh->ref), free(sh->scratch);
    free(sh->mem), free(sh->qsup);
}

static void run_shape(shape *sh, int64_t p0, int T, int hiding, sr_attn_kernel kern, float *out)
{
    sr_attn_args a = {.nh = sh->nh, .nkv = sh->nkv, .hd = sh->hd, .scale = 1.0f / sqrtf((float)sh->hd),
                      .p0 = p0, .T = T, .q = sh->q + p0 * sh->nh * sh->hd,
                      .ldq = (int64_t)sh->nh * sh->hd, .k = sh->k, .v = sh->v,
                      .head_stride = sh->ctx * sh->hd, .key_mem = hiding ? sh->mem : NULL,
                      .qsup = hiding ? sh->qsup + p0 : NULL, .out = out,
                      .ldo = (int64_t)sh->nh * sh->hd, .scratch = sh->scratch};
    sr_attention_with(&a, kern);
}

/* Query i (absolute position), head h, in double. */
static void reference_shape(const shape *sh, int64_t i, int h, int hiding, double *o)
{
    const int hd = sh->hd, g = h / (sh->nh / sh->nkv);
    const float scale = 1.0f / sqrtf((float)hd);
    const float *q = sh->q + (i * sh->nh + h) * hd;
    double *s = malloc(sizeof(double) * (size_t)(i + 1)), mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j <= i; j++) {
        s[j] = -INFINITY;
        if (hiding && (sh->mem[j] & sh->qsup[i])) continue;
        const float *kj = sh->k + (g * sh->ctx + j) * hd;
        double d = 0;
        for (int e = 0; e < hd; e++) d += (double)q[e] * kj[e];
        s[j] = scale * d;
        if (s[j] > mx) mx = s[j];
    }
    for (int64_t j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
    for (int e = 0; e < hd; e++) o[e] = 0;
    for (int64_t j = 0; j <= i; j++) {
        const float *vj = sh->v + (g * sh->ctx + j) * hd;
        for (int e = 0; e < hd; e++) o[e] += s[j] / sum * vj[e];
    }
    free(s);
}

static const char *kernel_name(sr_attn_kernel k)
{
    switch (k) {
    case SR_ATTN_SGEMM: return "sgemm";
    case SR_ATTN_STREAM_C: return "plain C";
    case SR_ATTN_STREAM_AVX2: return "avx2";
    case SR_ATTN_STREAM_AVX512: return "avx512";
    }
    return "?";
}

static double worst_vs_ref = 0, worst_vs_sgemm = 0;

/* Every usable decode kernel on queries p0..p0+T-1 (T <= 4) of this shape. */
static void check_kernels(shape *sh, int64_t p0, int T, int hiding)
{
    const int64_t row = (int64_t)sh->nh * sh->hd;
    const double tol = 1e-5 * 3.0;             /* 1e-5 · max|v| */
    double *o = malloc(sizeof(double) * (size_t)sh->hd);
    float *ref = sh->ref + p0 * row;
    memset(ref, 0xff, sizeof(float) * (size_t)(T * row));
    run_shape(sh, p0, T, hiding, SR_ATTN_SGEMM, ref);
    const sr_attn_kernel kernels[] = {SR_ATTN_STREAM_C, SR_ATTN_STREAM_AVX2, SR_ATTN_STREAM_AVX512};
    for (size_t kk = 0; kk < sizeof kernels / sizeof *kernels; kk++) {
        if (!sr_attn_kernel_usable(kernels[kk], sh->hd)) continue;
        float *out = sh->out + p0 * row;
        memset(out, 0xff, sizeof(float) * (size_t)(T * row));     /* NaN sentinel */
        run_shape(sh, p0, T, hiding, kernels[kk], out);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < sh->nh; h++) {
                reference_shape(sh, p0 + t, h, hiding, o);
                for (int e = 0; e < sh->hd; e++) {
                    const int64_t x = t * row + h * sh->hd + e;
                    const double dr = fabs(out[x] - o[e]), ds = fabs(out[x] - ref[x]);
                    if (dr > worst_vs_ref) worst_vs_ref = dr;
                    if (ds > worst_vs_sgemm) worst_vs_sgemm = ds;
                    if (!(dr <= tol && ds <= tol))
                        fail_msg("%s: nh %d nkv %d hd %d, keys %lld, hiding %d: query %d head %d "
                                 "dim %d: %.9g vs double %.9g, sgemm %.9g",
                                 kernel_name(kernels[kk]), sh->nh, sh->nkv, sh->hd,
                                 (long long)(p0 + t + 1), hiding, t, h, e, out[x], o[e], ref[x]);
                }
            }
    }
    free(o);
}

static void test_decode_kernels_match_reference(void **state)
{
    (void)state;
    static const struct { int nh, nkv, hd; } shapes[] = {
        {40, 8, 64},    /* Granite 4.1 3b: 5 heads per group */
        {32, 8, 128},   /* Granite 4.1 8b: 4 */
        {4, 2, 16},     /* tiny models */
        {2, 1, 8},      /* test models */
        {16, 1, 64},    /* a full 16-row block */
        {14, 2, 128},   /* 7 rows: more than one register block */
        {3, 3, 48},     /* AVX-512 narrow blocks, AVX2 */
        {4, 2, 24},     /* AVX2 only */
        {6, 2, 7},      /* odd: sgemm and plain C only */
        {2, 1, 256},    /* partial value rows */
    };
    /* keys seen by the last query: around the tiles (8, 16, 32) and odd */
    static const int64_t keys[] = {1, 7, 15, 16, 17, 33, 100, 257};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        shape sh = make_shape(shapes[si].nh, shapes[si].nkv, shapes[si].hd, 257);
        for (size_t ki = 0; ki < sizeof keys / sizeof *keys; ki++)
            for (int hiding = 0; hiding < 2; hiding++) {
                check_kernels(&sh, keys[ki] - 1, 1, hiding);        /* one decode query */
                if (keys[ki] >= 4 && ki % 3 == 1)
                    check_kernels(&sh, keys[ki] - 4, 4, hiding);    /* four at once */
            }
        free_shape(&sh);
    }
    print_message("decode kernels: worst |o - o_ref| %.3g, |o - o_sgemm| %.3g (max|v| = 3)\n",
                  worst_vs_ref, worst_vs_sgemm);
}

/* Prefill (T > 4) ignores the decode kernel: bit-identical to sgemm. */
static void test_prefill_keeps_sgemm(void **state)
{
    (void)state;
    shape sh = make_shape(10, 2, 64, 40);
    run_shape(&sh, 3, 37, 1, SR_ATTN_SGEMM, sh.ref);
    run_shape(&sh, 3, 37, 1, sr_attn_decode_kernel(64), sh.out);
    assert_memory_equal(sh.ref, sh.out, sizeof(float) * 37 * 10 * 64);
    free_shape(&sh);
}

/* A kernel the CPU or head dim cannot run falls back instead of crashing. */
static void test_unusable_kernel_falls_back(void **state)
{
    (void)state;
    shape sh = make_shape(6, 2, 7, 20);
    assert_false(sr_attn_kernel_usable(SR_ATTN_STREAM_AVX2, 7));
    assert_false(sr_attn_kernel_usable(SR_ATTN_STREAM_AVX512, 7));
    run_shape(&sh, 19, 1, 0, SR_ATTN_SGEMM, sh.ref);
    run_shape(&sh, 19, 1, 0, SR_ATTN_STREAM_AVX512, sh.out);
    assert_memory_equal(sh.ref, sh.out, sizeof(float) * 6 * 7);
    assert_int_equal(sr_attn_decode_kernel(7), SR_ATTN_SGEMM);
    free_shape(&sh);
}

/* ---- a bf16 cache ---------------------------------------------------------- */

/* Attention over a bf16 cache computes what the f32 path computes over the
 * widened values: the streaming kernels bit for bit (the same arithmetic in
 * the same order, only the loads widen), sgemm within the tolerance above
 * (its keys and values go in chunks of 512 widened rows, so the sums split
 * differently).  1100 keys: two full chunks and a partial one. */
static void test_bf16_cache_matches_widened(void **state)
{
    (void)state;
    static const struct { int nh, nkv, hd; } shapes[] = {
        {40, 8, 64}, {32, 8, 128}, {4, 2, 16}, {4, 2, 24}, {6, 2, 7}, {2, 1, 256},
    };
    const int64_t ctx = 1100;
    static const struct { int64_t p0; int T; } calls[] = {
        {0, 1}, {510, 1}, {511, 1}, {1099, 1}, {700, 4}, {0, 37}, {480, 64}, {1000, 100},
    };
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int hd = shapes[si].hd;
        shape sh = make_shape(shapes[si].nh, shapes[si].nkv, hd, ctx);
        const size_t n = (size_t)sh.nkv * (size_t)ctx * (size_t)hd, row = (size_t)sh.nh * hd;
        uint16_t *kb = malloc(2 * n), *vb = malloc(2 * n);
        for (size_t i = 0; i < n; i++) {
            kb[i] = sr_f32_to_bf16(sh.k[i]);
            vb[i] = sr_f32_to_bf16(sh.v[i]);
            sh.k[i] = sr_bf16_to_f32(kb[i]);      /* the f32 path reads the stored values */
            sh.v[i] = sr_bf16_to_f32(vb[i]);
        }
        float *scratch = malloc(sizeof(float) *
                                (size_t)sr_attention_scratch_floats(ctx, hd, SR_KV_BF16));
        const sr_attn_kernel kernels[] = {SR_ATTN_SGEMM, SR_ATTN_STREAM_C, SR_ATTN_STREAM_AVX2,
                                          SR_ATTN_STREAM_AVX512};
        for (size_t ci = 0; ci < sizeof calls / sizeof *calls; ci++)
            for (size_t kk = 0; kk < sizeof kernels / sizeof *kernels; kk++) {
                if (!sr_attn_kernel_usable(kernels[kk], hd)) continue;
                const int64_t p0 = calls[ci].p0;
                const int T = calls[ci].T;
                const int hiding = (int)(ci % 2);
                const size_t bytes = sizeof(float) * (size_t)T * row;
                memset(sh.ref, 0xff, bytes);
                memset(sh.out, 0xff, bytes);
                run_shape(&sh, p0, T, hiding, kernels[kk], sh.ref);
                sr_attn_args a = {.nh = sh.nh, .nkv = sh.nkv, .hd = hd,
                                  .scale = 1.0f / sqrtf((float)hd), .p0 = p0, .T = T,
                                  .q = sh.q + p0 * (int64_t)row, .ldq = (int64_t)row,
                                  .k = kb, .v = vb, .head_stride = ctx * hd,
                                  .kv_type = SR_KV_BF16, .key_mem = hiding ? sh.mem : NULL,
                                  .qsup = hiding ? sh.qsup + p0 : NULL, .out = sh.out,
                                  .ldo = (int64_t)row, .scratch = scratch};
                sr_attention_with(&a, kernels[kk]);
                const bool streamed = T <= 4 && kernels[kk] != SR_ATTN_SGEMM;
                for (size_t i = 0; i < (size_t)T * row; i++) {
                    const bool ok = streamed ? !memcmp(&sh.out[i], &sh.ref[i], sizeof(float))
                                             : fabsf(sh.out[i] - sh.ref[i]) <= 1e-5f * 3.0f;
                    if (!ok)
                        fail_msg("bf16 cache, %s: nh %d nkv %d hd %d, p0 %lld T %d hiding %d: "
                                 "element %zu: %.9g vs %.9g over the widened f32 values",
                                 kernel_name(kernels[kk]), sh.nh, sh.nkv, hd, (long long)p0, T,
                                 hiding, i, sh.out[i], sh.ref[i]);
                }
            }
        free(scratch);
        free(kb);
        free(vb);
        free_shape(&sh);
    }
}

/* A bf16 cache needs a widened chunk per thread beside the score rows. */
static void test_bf16_scratch_size(void **state)
{
    (void)state;
    assert_true(sr_attention_thread_floats(100, 64, SR_KV_F32) == 16 * 100);
    assert_true(sr_attention_thread_floats(100, 64, SR_KV_BF16) == 16 * 100 + 512 * 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_match_reference),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_decode_kernels_match_reference),
        cmocka_unit_test(test_prefill_keeps_sgemm),
        cmocka_unit_test(test_unusable_kernel_falls_back),
        cmocka_unit_test(test_bf16_cache_matches_widened),
        cmocka_unit_test(test_bf16_scratch_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
