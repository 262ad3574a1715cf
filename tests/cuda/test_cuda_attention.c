/* The CUDA attention (runtime/cuda/attention_cuda.h) against sr_attention:
 * prefill (T queries after p0 cached keys) and decode (T = 1), grouped-query
 * layouts, head dims that are not multiples of 32, long contexts, and the
 * Gen A hiding rule with random group bits.
 *
 * Both compute softmax-weighted means of V in f32, in different orders (the
 * CPU in two passes, the GPU online over interleaved key streams).  A score
 * q·k summed in another order moves by at most hd * 2^-24 * S, S = the
 * largest scale * sum_d |q_d k_d| of the query's keys; that moves the output
 * by at most twice that times max|v|.  Beyond that the weights and the mean
 * differ by a few ulp:
 *     |out - ref| <= (2 * hd * 2^-24 * S + 1e-5) * max|v| + 1e-6 * |ref|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "runtime/attention.h"
#include "runtime/cuda/attention_cuda.h"

typedef struct attn_case {
    int nh, nkv, hd;
    int64_t p0;
    int T;
    bool hiding;
    float qscale;       /* magnitude of q (sharper softmax when larger) */
} attn_case;

static void run_case(const attn_case *c)
{
    const int nh = c->nh, nkv = c->nkv, hd = c->hd, T = c->T;
    const int64_t n_keys = c->p0 + T, ctxn = n_keys + 3;     /* cache larger than used */
    const int64_t ldq = (int64_t)nh * hd + 2 * (int64_t)nkv * hd, ldo = (int64_t)nh * hd + 5;
    float *q = rand_floats(T * ldq, c->qscale);
    float *k = rand_floats(nkv * ctxn * hd, 1.0f), *v = rand_floats(nkv * ctxn * hd, 2.0f);
    uint32_t *mem = NULL, *qsup = NULL;
    if (c->hiding) {
        mem = malloc(sizeof(uint32_t) * (size_t)n_keys);
        qsup = malloc(sizeof(uint32_t) * (size_t)T);
        for (int64_t j = 0; j < n_keys; j++) mem[j] = rng_int(4) == 0 ? (uint32_t)(1u << rng_int(3)) : 0;
        for (int i = 0; i < T; i++) {
            uint32_t sup = (uint32_t)rng_int(8);
            qsup[i] = sup & ~mem[c->p0 + i];    /* Sup(a_i) & ~Mem(t_i): own key visible */
        }
    }
    float *ref = malloc(sizeof(float) * (size_t)(T * ldo)), *got = malloc(sizeof(float) * (size_t)(T * ldo));
    for (int64_t i = 0; i < T * ldo; i++) ref[i] = got[i] = 0.0f;
    float *scratch =
        malloc(sizeof(float) * (size_t)sr_attention_scratch_floats(n_keys, hd, SR_KV_F32));
    const float scale = 1.0f / sqrtf((float)hd);
    sr_attn_args a = {
        .nh = nh, .nkv = nkv, .hd = hd, .scale = scale, .p0 = c->p0, .T = T, .q = q, .ldq = ldq,
        .k = k, .v = v, .head_stride = ctxn * hd, .key_mem = mem, .qsup = qsup, .out = ref,
        .ldo = ldo, .scratch = scratch,
    };
    sr_attention(&a);

    float *qd = dev_dup(q, sizeof(float) * (size_t)(T * ldq));
    float *kd = dev_dup(k, sizeof(float) * (size_t)(nkv * ctxn * hd));
    float *vd = dev_dup(v, sizeof(float) * (size_t)(nkv * ctxn * hd));
    uint32_t *md = mem ? dev_dup(mem, sizeof(uint32_t) * (size_t)n_keys) : NULL;
    uint32_t *sd = qsup ? dev_dup(qsup, sizeof(uint32_t) * (size_t)T) : NULL;
    float *od = dev_dup(got, sizeof(float) * (size_t)(T * ldo));
    sr_attn_args g = a;
    g.q = qd;
    g.k = kd;
    g.v = vd;
    g.key_mem = md;
    g.qsup = sd;
    g.out = od;
    g.scratch = NULL;
    sr_error e;
    if (sr_cuda_attention(ctx, &g, &e)) fail_msg("attention: %s", e.msg);
    ctx_sync(ctx);
    dev_get(got, od, sizeof(float) * (size_t)(T * ldo));

    float vmax = 0;
    for (int64_t i = 0; i < nkv * ctxn * hd; i++) vmax = fmaxf(vmax, fabsf(v[i]));
    for (int i = 0; i < T; i++) {
        for (int h = 0; h < nh; h++) {
            const int grp = h / (nh / nkv);
            double S = 0;   /* largest |score| bound of this query and head */
            for (int64_t j = 0; j <= c->p0 + i; j++) {
                double sj = 0;
                for (int dd = 0; dd < hd; dd++)
                    sj += fabs((double)q[i * ldq + (int64_t)h * hd + dd] * k[grp * ctxn * hd + j * hd + dd]);
                if (sj * scale > S) S = sj * scale;
            }
            for (int d = 0; d < hd; d++) {
                const float r = ref[i * ldo + (int64_t)h * hd + d], x = got[i * ldo + (int64_t)h * hd + d];
                const double tol = (2.0 * hd * 0x1p-24 * S + 1e-5) * vmax + 1e-6 * fabs(r);
                if (!(fabs((double)x - r) <= tol))
                    fail_msg("attention nh %d nkv %d hd %d p0 %lld T %d%s: query %d head %d dim %d: "
                             "gpu %.9g cpu %.9g (tol %.3g)", nh, nkv, hd, (long long)c->p0, T,
                             c->hiding ? " hiding" : "", i, h, d, x, r, tol);
            }
        }
        for (int64_t d = (int64_t)nh * hd; d < ldo; d++)
            if (got[i * ldo + d] != 0.0f)
                fail_msg("attention wrote beyond the heads (column %lld)", (long long)d);
    }
    free(q);
    free(k);
    free(v);
    free(mem);
    free(qsup);
    free(ref);
    free(got);
    free(scratch);
    sr_cuda_free(qd);
    sr_cuda_free(kd);
    sr_cuda_free(vd);
    sr_cuda_free(md);
    sr_cuda_free(sd);
    sr_cuda_free(od);
}

static void test_prefill(void **state)
{
    (void)state;
    static const attn_case cases[] = {
        {4, 4, 64, 0, 7, false, 1.0f},    {8, 2, 128, 5, 16, true, 1.0f},
        {6, 3, 40, 0, 9, false, 3.0f},    {2, 1, 256, 0, 33, true, 1.0f},
        {3, 1, 8, 2, 5, true, 0.5f},      {12, 4, 96, 60, 40, false, 2.0f},
        {4, 2, 1, 0, 3, false, 1.0f},     {16, 16, 64, 0, 64, true, 4.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static void test_decode(void **state)
{
    (void)state;
    static const attn_case cases[] = {
        {32, 8, 128, 300, 1, true, 1.0f},  {32, 8, 128, 4095, 1, false, 1.0f},
        {6, 3, 40, 0, 1, false, 1.0f},     {4, 1, 64, 17, 1, true, 6.0f},
        {8, 8, 256, 1000, 1, true, 1.0f},  {2, 2, 33, 9, 1, false, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

static void test_errors(void **state)
{
    (void)state;
    sr_attn_args a;
    memset(&a, 0, sizeof a);
    a.nh = 6;
    a.nkv = 4;      /* not a divisor */
    a.hd = 64;
    a.T = 1;
    sr_error e;
    assert_int_equal(sr_cuda_attention(ctx, &a, &e), -1);
    assert_non_null(strstr(e.msg, "attention"));
    a.nkv = 3;
    a.hd = SR_CUDA_ATTN_MAX_HD + 2;
    assert_int_equal(sr_cuda_attention(ctx, &a, &e), -1);
    a.hd = 64;      /* buffers missing */
    assert_int_equal(sr_cuda_attention(ctx, &a, &e), -1);
    assert_non_null(strstr(e.msg, "buffers"));
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, ctx_setup, ctx_teardown);
}
