/* The element-wise and row-wise forward kernels (runtime/cuda/ops_cuda.h)
 * against their CPU twins.
 *
 * Bit-identical: residual add, bias add, logits scaling, KV append, the
 * embedding gather (every format), argmax (ties, NaN, inf, no finite
 * value).  RMSNorm within 2 ulp: its double sum of squares is exact per
 * term and only its order differs, which the conversion to float almost
 * always absorbs; when it does not, 1/rms moves by an ulp and the output by
 * at most 2.  Within a few ulp: RoPE
 * (sinf / cosf of CUDA and glibc differ by up to 2 ulp; the rotation is
 * exact otherwise) and SwiGLU (expf). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/ops_cuda.h"
#include "runtime/rope.h"
#include "runtime/sampling.h"

static void expect_ok(int rc, const sr_error *e, const char *what)
{
    if (rc) fail_msg("%s: %s", what, e->msg);
}

static void assert_bits_equal(const float *got, const float *want, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b) fail_msg("%s: element %lld: gpu %a cpu %a", what, (long long)i, got[i], want[i]);
    }
}

/* |got - want| <= ulps * ulp(want) (+ the smallest subnormal scale). */
static void assert_ulps(const float *got, const float *want, int64_t n, double ulps, double abs_tol,
                        const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        const double tol = ulps * 2.0 * half_ulp(want[i]) + abs_tol;
        if (!(fabs((double)got[i] - want[i]) <= tol))
            fail_msg("%s: element %lld: gpu %.9g cpu %.9g (tol %.3g)", what, (long long)i, got[i],
                     want[i], tol);
    }
}

/* The CPU RMSNorm of runtime/forward.c (static there), operation for operation. */
static void rmsnorm_row_cpu(const float *x, const float *w, int64_t n, float eps, float *out)
{
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t j = 0; j < n; j++) out[j] = w[j] * (x[j] * r);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    /* (T, heads, n, hstride, ldx): hidden norms and per-head qk-norm */
    static const int64_t cases[][5] = {
        {1, 1, 37, 0, 37}, {5, 1, 4096, 0, 4096}, {3, 1, 100, 0, 131},
        {4, 8, 64, 64, 8 * 64 + 2 * 2 * 64}, {2, 3, 40, 40, 3 * 40}, {7, 2, 128, 128, 300},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int T = (int)cases[k][0], heads = (int)cases[k][1];
        const int64_t n = cases[k][2], hs = cases[k][3], ld = cases[k][4];
        const int64_t total = T * ld;
        float *x = rand_floats(total, 3.0f), *w = rand_floats(n, 1.5f);
        float *want = malloc(sizeof(float) * (size_t)total), *got = malloc(sizeof(float) * (size_t)total);
        memcpy(want, x, sizeof(float) * (size_t)total);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < heads; h++)
                rmsnorm_row_cpu(x + t * ld + h * hs, w, n, 1e-6f, want + t * ld + h * hs);
        float *xd = dev_dup(x, sizeof(float) * (size_t)total), *wd = dev_dup(w, sizeof(float) * (size_t)n);
        sr_error e;
        /* in place, as the forward pass does for qk-norm */
        expect_ok(sr_cuda_rmsnorm(ctx, xd, ld, T, heads, hs, n, wd, 1e-6f, xd, ld, &e), &e, "rmsnorm");
        ctx_sync(ctx);
        dev_get(got, xd, sizeof(float) * (size_t)total);
        assert_ulps(got, want, total, 2.0, 0.0, "rmsnorm");
        /* out of place into a packed buffer */
        if (heads == 1) {
            float *od = dev_alloc(sizeof(float) * (size_t)(T * n));
            dev_put(xd, x, sizeof(float) * (size_t)total);
            expect_ok(sr_cuda_rmsnorm(ctx, xd, ld, T, 1, 0, n, wd, 1e-5f, od, n, &e), &e, "rmsnorm");
            ctx_sync(ctx);
            dev_get(got, od, sizeof(float) * (size_t)(T * n));
            for (int t = 0; t < T; t++) rmsnorm_row_cpu(x + t * ld, w, n, 1e-5f, want + t * n);
            assert_ulps(got, want, T * n, 2.0, 0.0, "rmsnorm out of place");
            sr_cuda_free(od);
        }
        free(x);
        free(w);
        free(want);
        free(got);
        sr_cuda_free(xd);
        sr_cuda_free(wd);
    }
}

static void test_rope(void **state)
{
    (void)state;
    static const struct { int hd, T, heads; double theta, factor; int64_t maxpos; } cases[] = {
        {64, 5, 4, 10000.0, 1.0, 100}, {128, 3, 8, 10000000.0, 1.0, 131072},
        {40, 7, 3, 10000.0, 4.0, 4096}, {2, 2, 1, 500.0, 1.0, 10},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int hd = cases[k].hd, T = cases[k].T, heads = cases[k].heads;
        sr_rope r;
        sr_error e;
        assert_int_equal(sr_rope_init(&r, hd, cases[k].theta, cases[k].factor, &e), 0);
        const int64_t ld = (int64_t)heads * hd + 16, total = T * ld;
        float *x = rand_floats(total, 2.0f), *want = malloc(sizeof(float) * (size_t)total);
        float *got = malloc(sizeof(float) * (size_t)total);
        int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
        for (int t = 0; t < T; t++) pos[t] = t == 0 ? 0 : (int32_t)(rng_next() % (uint64_t)cases[k].maxpos);
        memcpy(want, x, sizeof(float) * (size_t)total);
        for (int t = 0; t < T; t++) sr_rope_apply(&r, want + t * ld, heads, hd, pos[t]);
        float *xd = dev_dup(x, sizeof(float) * (size_t)total);
        float *fd = dev_dup(r.inv_freq, sizeof(float) * (size_t)(hd / 2));
        int32_t *pd = dev_dup(pos, sizeof(int32_t) * (size_t)T);
        expect_ok(sr_cuda_rope(ctx, xd, ld, T, heads, hd, hd, fd, pd, &e), &e, "rope");
        ctx_sync(ctx);
        dev_get(got, xd, sizeof(float) * (size_t)total);
        /* |a cos + b sin| error <= 2 ulp(sin/cos) * (|a| + |b|) + rounding */
        for (int t = 0; t < T; t++)
            for (int h = 0; h < heads; h++)
                for (int d = 0; d < hd; d++) {
                    const int64_t i = t * ld + (int64_t)h * hd + d;
                    const float a = x[t * ld + (int64_t)h * hd + d % (hd / 2)];
                    const float b = x[t * ld + (int64_t)h * hd + d % (hd / 2) + hd / 2];
                    const double tol = 4 * 0x1p-24 * (fabs(a) + fabs(b)) + 4 * half_ulp(want[i]);
                    if (!(fabs((double)got[i] - want[i]) <= tol))
                        fail_msg("rope hd %d pos %d head %d dim %d: gpu %.9g cpu %.9g", hd, pos[t],
                                 h, d, got[i], want[i]);
                }
        /* the 16 padding floats of each row are untouched */
        for (int t = 0; t < T; t++)
            assert_bits_equal(got + t * ld + heads * hd, x + t * ld + heads * hd, 16, "rope padding");
        sr_rope_free(&r);
        free(x);
        free(want);
        free(got);
        free(pos);
        sr_cuda_free(xd);
        sr_cuda_free(fd);
        sr_cuda_free(pd);
    }
}

static void test_kv_append(void **state)
{
    (void)state;
    const int T = 5, nkv = 3, hd = 24, nh = 6;
    const int64_t ctxn = 20, p0 = 9, qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    const int64_t D = qd + 2 * kvd;
    float *qkv = rand_floats(T * D, 1.0f);
    float *kc = rand_floats(nkv * ctxn * hd, 1.0f), *vc = rand_floats(nkv * ctxn * hd, 1.0f);
    float *kw = malloc(sizeof(float) * (size_t)(nkv * ctxn * hd)), *vw = malloc(sizeof(float) * (size_t)(nkv * ctxn * hd));
    memcpy(kw, kc, sizeof(float) * (size_t)(nkv * ctxn * hd));
    memcpy(vw, vc, sizeof(float) * (size_t)(nkv * ctxn * hd));
    for (int t = 0; t < T; t++)
        for (int g = 0; g < nkv; g++) {
            memcpy(kw + (g * ctxn + p0 + t) * hd, qkv + t * D + qd + g * hd, sizeof(float) * hd);
            memcpy(vw + (g * ctxn + p0 + t) * hd, qkv + t * D + qd + kvd + g * hd, sizeof(float) * hd);
        }
    float *qd_ = dev_dup(qkv, sizeof(float) * (size_t)(T * D));
    float *kd = dev_dup(kc, sizeof(float) * (size_t)(nkv * ctxn * hd));
    float *vd = dev_dup(vc, sizeof(float) * (size_t)(nkv * ctxn * hd));
    sr_error e;
    expect_ok(sr_cuda_kv_append(ctx, qd_ + qd, qd_ + qd + kvd, D, T, nkv, hd, kd, vd, ctxn, p0, &e),
              &e, "kv append");
    ctx_sync(ctx);
    dev_get(kc, kd, sizeof(float) * (size_t)(nkv * ctxn * hd));
    dev_get(vc, vd, sizeof(float) * (size_t)(nkv * ctxn * hd));
    assert_bits_equal(kc, kw, nkv * ctxn * hd, "kv append K");
    assert_bits_equal(vc, vw, nkv * ctxn * hd, "kv append V");
    /* beyond the cache: refused */
    assert_int_equal(sr_cuda_kv_append(ctx, qd_ + qd, qd_ + qd + kvd, D, T, nkv, hd, kd, vd, ctxn,
                                       ctxn - 2, &e), -1);
    assert_non_null(strstr(e.msg, "kv append"));
    free(qkv);
    free(kc);
    free(vc);
    free(kw);
    free(vw);
    sr_cuda_free(qd_);
    sr_cuda_free(kd);
    sr_cuda_free(vd);
}

static void test_swiglu_residual_bias_scale(void **state)
{
    (void)state;
    const int T = 6;
    const int64_t I = 333, ldgu = 2 * I + 7, H = 129;
    sr_error e;
    /* SwiGLU */
    float *gu = rand_floats(T * ldgu, 8.0f);
    float *want = malloc(sizeof(float) * (size_t)(T * I)), *got = malloc(sizeof(float) * (size_t)(T * I));
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < I; j++) {
            const float g = gu[t * ldgu + j], u = gu[t * ldgu + I + j];
            want[t * I + j] = g / (1.0f + expf(-g)) * u;
        }
    float *gud = dev_dup(gu, sizeof(float) * (size_t)(T * ldgu)), *ad = dev_alloc(sizeof(float) * (size_t)(T * I));
    expect_ok(sr_cuda_swiglu(ctx, gud, ldgu, T, I, ad, I, &e), &e, "swiglu");
    ctx_sync(ctx);
    dev_get(got, ad, sizeof(float) * (size_t)(T * I));
    assert_ulps(got, want, T * I, 6.0, 1e-37, "swiglu");

    /* residual: x + y * mult */
    float *x = rand_floats(T * H, 4.0f), *y = rand_floats(T * H, 4.0f);
    float *xw = malloc(sizeof(float) * (size_t)(T * H)), *xg = malloc(sizeof(float) * (size_t)(T * H));
    const float mult = 0.22f;
    for (int64_t i = 0; i < T * H; i++) xw[i] = x[i] + y[i] * mult;
    float *xd = dev_dup(x, sizeof(float) * (size_t)(T * H)), *yd = dev_dup(y, sizeof(float) * (size_t)(T * H));
    expect_ok(sr_cuda_residual_add(ctx, xd, yd, T, H, mult, &e), &e, "residual");
    ctx_sync(ctx);
    dev_get(xg, xd, sizeof(float) * (size_t)(T * H));
    assert_bits_equal(xg, xw, T * H, "residual");

    /* bias on a slice of a wider row */
    const int64_t ldy = H + 10;
    float *yy = rand_floats(T * ldy, 1.0f), *b = rand_floats(H, 1.0f);
    float *yw = malloc(sizeof(float) * (size_t)(T * ldy)), *yg = malloc(sizeof(float) * (size_t)(T * ldy));
    memcpy(yw, yy, sizeof(float) * (size_t)(T * ldy));
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < H; j++) yw[t * ldy + j] += b[j];
    float *yyd = dev_dup(yy, sizeof(float) * (size_t)(T * ldy)), *bd = dev_dup(b, sizeof(float) * (size_t)H);
    expect_ok(sr_cuda_bias_add(ctx, yyd, ldy, T, H, bd, &e), &e, "bias");
    ctx_sync(ctx);
    dev_get(yg, yyd, sizeof(float) * (size_t)(T * ldy));
    assert_bits_equal(yg, yw, T * ldy, "bias");

    /* logits scaling */
    memcpy(yw, yy, sizeof(float) * (size_t)(T * ldy));
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < H; j++) yw[t * ldy + j] /= 8.0f / 3.0f;
    dev_put(yyd, yy, sizeof(float) * (size_t)(T * ldy));
    expect_ok(sr_cuda_scale_div(ctx, yyd, ldy, T, H, 8.0f / 3.0f, &e), &e, "scale");
    ctx_sync(ctx);
    dev_get(yg, yyd, sizeof(float) * (size_t)(T * ldy));
    assert_bits_equal(yg, yw, T * ldy, "logits scaling");

    free(gu);
    free(want);
    free(got);
    free(x);
    free(y);
    free(xw);
    free(xg);
    free(yy);
    free(b);
    free(yw);
    free(yg);
    sr_cuda_free(gud);
    sr_cuda_free(ad);
    sr_cuda_free(xd);
    sr_cuda_free(yd);
    sr_cuda_free(yyd);
    sr_cuda_free(bd);
}

static void test_embed(void **state)
{
    (void)state;
    static const sr_wformat fmts[] = {SR_W_F32, SR_W_BF16, SR_W_F16, SR_W_NF4, SR_W_FP4, SR_W_INT8};
    const int T = 9;
    const int64_t V = 50, H = 77;
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        host_matrix h = host_matrix_rand(fmts[f], V, H, 64);
        sr_qmatrix d;
        sr_error e;
        assert_int_equal(sr_cuda_qmatrix_upload(&h.w, &d, &e), 0);
        int32_t ids[9] = {0, 49, 3, 3, 17, 25, 1, 48, 7};
        float *want = malloc(sizeof(float) * (size_t)(T * H)), *got = malloc(sizeof(float) * (size_t)(T * H));
        const float mult = 12.0f;
        for (int t = 0; t < T; t++) {
            sr_qmatrix_dequant_rows(&h.w, ids[t], 1, want + t * H);
            for (int64_t j = 0; j < H; j++) want[t * H + j] *= mult;
        }
        int32_t *idd = dev_dup(ids, sizeof ids);
        float *xd = dev_alloc(sizeof(float) * (size_t)(T * H));
        expect_ok(sr_cuda_embed(ctx, &d, idd, T, mult, xd, &e), &e, "embed");
        ctx_sync(ctx);
        dev_get(got, xd, sizeof(float) * (size_t)(T * H));
        assert_bits_equal(got, want, T * H, sr_wformat_name(fmts[f]));
        /* an id outside the matrix gives NaN, never a read out of bounds */
        int32_t bad[2] = {-1, (int32_t)V};
        dev_put(idd, bad, sizeof bad);
        expect_ok(sr_cuda_embed(ctx, &d, idd, 2, mult, xd, &e), &e, "embed");
        ctx_sync(ctx);
        dev_get(got, xd, sizeof(float) * (size_t)(2 * H));
        for (int64_t j = 0; j < 2 * H; j++) assert_true(isnan(got[j]));
        free(want);
        free(got);
        sr_cuda_free(idd);
        sr_cuda_free(xd);
        sr_cuda_qmatrix_free(&d);
        host_matrix_free(&h);
    }
}

static void test_argmax(void **state)
{
    (void)state;
    const int T = 8;
    const int64_t n = 5003, ld = 5010;
    float *lg = rand_floats(T * ld, 10.0f);
    /* row 1: a tie of the maximum at 100 and 4000 -> 100 */
    lg[1 * ld + 100] = lg[1 * ld + 4000] = 50.0f;
    /* row 2: +inf and NaN are ignored */
    lg[2 * ld + 7] = INFINITY;
    lg[2 * ld + 8] = NAN;
    lg[2 * ld + 9] = 30.0f;
    /* row 3: nothing finite -> -1 */
    for (int64_t j = 0; j < n; j++) lg[3 * ld + j] = j % 2 ? NAN : -INFINITY;
    /* row 4: maximum in the last element; row 5: in the first */
    lg[4 * ld + n - 1] = 99.0f;
    lg[5 * ld + 0] = 99.0f;
    /* row 6: all equal -> 0 */
    for (int64_t j = 0; j < n; j++) lg[6 * ld + j] = -3.0f;
    /* beyond n in row 7: ignored */
    lg[7 * ld + n + 2] = 1000.0f;
    float *ld_ = dev_dup(lg, sizeof(float) * (size_t)(T * ld));
    int64_t *od = dev_alloc(sizeof(int64_t) * T), got[8];
    sr_error e;
    expect_ok(sr_cuda_argmax(ctx, ld_, ld, T, n, od, &e), &e, "argmax");
    ctx_sync(ctx);
    dev_get(got, od, sizeof got);
    for (int t = 0; t < T; t++) {
        const int64_t want = sr_argmax(lg + t * ld, n);
        if (got[t] != want) fail_msg("argmax row %d: gpu %lld cpu %lld", t, (long long)got[t], (long long)want);
    }
    assert_int_equal(got[1], 100);
    assert_int_equal(got[3], -1);
    assert_int_equal(got[6], 0);
    free(lg);
    sr_cuda_free(ld_);
    sr_cuda_free(od);
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_kv_append),
        cmocka_unit_test(test_swiglu_residual_bias_scale),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_argmax),
    };
    return cmocka_run_group_tests(tests, ctx_setup, ctx_teardown);
}
