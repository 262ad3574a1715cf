/* The whole forward pass on CUDA (runtime/cuda/forward_cuda.h) on every
 * golden model and case (tests/data/model, produced by the upstream Python
 * implementation), and on 4-bit / 8-bit conversions of the switch model:
 *
 *   forward cases   all logits of a full forward, and prefill(k) + one-token
 *                   decode steps: against the golden logits (float models)
 *                   and against the CPU (sr_forward) on the same weights;
 *                   adapter indices and RoPE positions equal the CPU's;
 *   generate cases  greedy decoding: the step logits against the CPU's and
 *                   the golden ones, the tokens chosen by the device argmax
 *                   (sr_cuda_greedy_step) equal to the golden tokens.
 *
 * Tolerance |Δlogit| <= 1e-4, as the CPU golden test: f32 throughout
 * (STRATA_CUDA_PREFILL unset), only summation order and expf/sinf/cosf
 * ulps differ.  The quantized models (strata convert, run through
 * $STRATA_EXE) have no golden data: CUDA vs CPU on identical weights, and
 * greedy tokens compared while the CPU's top-2 margin exceeds 2e-4. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>

#include "cuda_test.h"
#include "runtime/cuda/forward_cuda.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/safetensors.h"
#include "runtime/sampling.h"
#include "golden_case.h"
#include "test_util.h"

#define LOGIT_TOL 1e-4

static int64_t i64(const sr_tensor *t, int64_t i) { return ((const int64_t *)t->data)[i]; }

static double diff_vs(const float *got, const float *ref, int64_t n)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= worst)) worst = d;   /* NaN counts as worst */
    }
    return worst;
}

static double diff_golden(const float *got, const sr_tensor *ref, int64_t off, int64_t n)
{
    return diff_vs(got, (const float *)ref->data + off, n);
}

static void expect_close(double d, const char *model, const char *what, const char *name, int64_t b)
{
    if (!(d <= LOGIT_TOL))
        fail_msg("%s/%s row %lld: %s logits differ by %g", model, name, (long long)b, what, d);
}

typedef struct model_run {
    const char *label;          /* for messages */
    const char *cases;          /* golden model whose cases supply the inputs */
    bool golden;                /* compare with the golden logits too */
    sr_model *m;
    sr_cuda_model *dm;
    double worst;
} model_run;

static void forward_row(model_run *r, const char *name, const case_file *c, int64_t b, int64_t prefill_k)
{
    const int64_t L = c->ids->shape[1], V = r->m->V;
    int64_t pad = 0;
    if (c->mask)
        while (pad < L && i64(c->mask, b * L + pad) == 0) pad++;
    const int64_t T = L - pad;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    int32_t *ad = malloc(sizeof(int32_t) * (size_t)T), *pos = malloc(sizeof(int32_t) * (size_t)T);
    int32_t *ad_c = malloc(sizeof(int32_t) * (size_t)T), *pos_c = malloc(sizeof(int32_t) * (size_t)T);
    float *gpu = malloc(sizeof(float) * (size_t)(T * V)), *cpu = malloc(sizeof(float) * (size_t)(T * V));
    for (int64_t i = 0; i < T; i++) tok[i] = (int32_t)i64(c->ids, b * L + pad + i);
    sr_error err = {{0}};
    sr_seq *hs;
    sr_cuda_seq *gs;
    assert_int_equal(sr_seq_create(r->m, T, &hs, &err), 0);
    if (sr_cuda_seq_create(r->dm, T, &gs, &err)) fail_msg("%s", err.msg);

    /* full forward */
    if (sr_cuda_forward(gs, tok, T, gpu, true, ad, pos, &err)) fail_msg("%s: %s", r->label, err.msg);
    assert_int_equal(sr_forward(hs, tok, T, cpu, true, ad_c, pos_c, &err), 0);
    assert_memory_equal(ad, ad_c, sizeof(int32_t) * (size_t)T);
    assert_memory_equal(pos, pos_c, sizeof(int32_t) * (size_t)T);
    double d = diff_vs(gpu, cpu, T * V);
    expect_close(d, r->label, "full (vs CPU)", name, b);
    if (d > r->worst) r->worst = d;
    if (r->golden) {
        d = diff_golden(gpu, c->logits, (b * L + pad) * V, T * V);
        expect_close(d, r->label, "full (vs golden)", name, b);
        if (d > r->worst) r->worst = d;
    }

    /* prefill the real tokens of [0, k), then one token per call */
    sr_cuda_seq_reset(gs);
    sr_seq_reset(hs);
    int64_t kp = prefill_k - pad;
    if (kp > 0) {
        if (sr_cuda_forward(gs, tok, kp, gpu, true, NULL, NULL, &err)) fail_msg("%s", err.msg);
        assert_int_equal(sr_forward(hs, tok, kp, cpu, true, NULL, NULL, &err), 0);
    } else {
        kp = 0;
    }
    for (int64_t i = kp; i < T; i++) {
        if (sr_cuda_forward(gs, tok + i, 1, gpu + i * V, false, NULL, NULL, &err)) fail_msg("%s", err.msg);
        assert_int_equal(sr_forward(hs, tok + i, 1, cpu + i * V, false, NULL, NULL, &err), 0);
    }
    d = diff_vs(gpu, cpu, T * V);
    expect_close(d, r->label, "incremental (vs CPU)", name, b);
    if (r->golden) {
        d = diff_golden(gpu, c->logits_inc ? c->logits_inc : c->logits, (b * L + pad) * V, T * V);
        expect_close(d, r->label, "incremental (vs golden)", name, b);
        if (d > r->worst) r->worst = d;
    }
    assert_int_equal(sr_cuda_seq_host(gs)->len, T);
    sr_cuda_seq_free(gs);
    sr_seq_free(hs);
    free(tok);
    free(ad);
    free(pos);
    free(ad_c);
    free(pos_c);
    free(gpu);
    free(cpu);
}

/* Top-2 margin of a logits row. */
static double margin(const float *lg, int64_t V)
{
    int64_t best = sr_argmax(lg, V);
    double second = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (i != best && lg[i] > second) second = lg[i];
    return (double)lg[best] - second;
}

static void generate_case(model_run *r, const char *name, const case_file *c)
{
    const int64_t L = c->ids->shape[1], V = r->m->V, n_new = c->gen_ids->shape[1];
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)L), *cpu_ids = malloc(sizeof(int32_t) * (size_t)n_new);
    float *cpu_steps = malloc(sizeof(float) * (size_t)(n_new * V)), *gpu = malloc(sizeof(float) * (size_t)V);
    for (int64_t i = 0; i < L; i++) tok[i] = (int32_t)i64(c->ids, i);
    sr_error err = {{0}};
    sr_seq *hs;
    assert_int_equal(sr_seq_create(r->m, L + n_new, &hs, &err), 0);
    sr_gen_opts o = {.max_new = n_new, .stop_token = -1, .step_logits = cpu_steps};
    int64_t n_out = 0;
    assert_int_equal(sr_generate(hs, tok, L, &o, cpu_ids, &n_out, NULL, &err), 0);
    assert_int_equal(n_out, n_new);

    /* the CPU's tokens fed to the GPU: step logits must agree */
    sr_cuda_seq *gs;
    if (sr_cuda_seq_create(r->dm, L + n_new, &gs, &err)) fail_msg("%s", err.msg);
    for (int64_t i = 0; i < n_new; i++) {
        const int rc = i == 0 ? sr_cuda_forward(gs, tok, L, gpu, false, NULL, NULL, &err)
                              : sr_cuda_forward(gs, &cpu_ids[i - 1], 1, gpu, false, NULL, NULL, &err);
        if (rc) fail_msg("%s", err.msg);
        double d = diff_vs(gpu, cpu_steps + i * V, V);
        expect_close(d, r->label, "generate step (vs CPU)", name, i);
        if (r->golden) {
            d = diff_golden(gpu, c->step_logits, i * V, V);
            expect_close(d, r->label, "generate step (vs golden)", name, i);
        }
        if (d > r->worst) r->worst = d;
    }

    /* greedy on the device: tokens chosen by the device argmax */
    sr_cuda_seq_reset(gs);
    if (sr_cuda_forward(gs, tok, L, gpu, false, NULL, NULL, &err)) fail_msg("%s", err.msg);
    int32_t next = (int32_t)sr_argmax(gpu, V);
    for (int64_t i = 0; i < n_new; i++) {
        if (r->golden) assert_int_equal(next, i64(c->gen_ids, i));
        if (next != cpu_ids[i]) {
            if (r->golden || margin(cpu_steps + i * V, V) > 2 * LOGIT_TOL)
                fail_msg("%s/%s: greedy token %lld: gpu %d cpu %d", r->label, name, (long long)i, next, cpu_ids[i]);
            break;  /* a near tie went the other way: the rest may differ */
        }
        if (i + 1 < n_new && sr_cuda_greedy_step(gs, next, &next, &err)) fail_msg("%s", err.msg);
    }
    sr_cuda_seq_free(gs);
    sr_seq_free(hs);
    free(tok);
    free(cpu_ids);
    free(cpu_steps);
    free(gpu);
}

static void visit(const char *name, const char *kind, int64_t prefill_k, const case_file *c,
                  void *ctx)
{
    model_run *r = ctx;
    if (!strcmp(kind, "forward")) {
        for (int64_t b = 0; b < c->ids->shape[0]; b++) forward_row(r, name, c, b, prefill_k);
    } else if (c->ids->shape[0] == 1) {
        generate_case(r, name, c);
    }
}

static void run(model_run *r, const char *dir)
{
    sr_error err = {{0}};
    if (sr_model_load(dir, NULL, &r->m, &err)) fail_msg("load %s: %s", dir, err.msg);
    if (sr_cuda_model_upload(r->m, ctx, &r->dm, &err)) fail_msg("upload %s: %s", dir, err.msg);
    const int n = for_each_case(r->cases, visit, r);
    fprintf(stderr, "%s: %d cases on CUDA, max |dlogit| %.3g (%llu device bytes of weights)\n",
            r->label, n, r->worst, (unsigned long long)sr_cuda_model_bytes(r->dm));
    assert_true(n > 0);
    sr_cuda_model_free(r->dm);
    sr_model_free(r->m);
}

static void golden(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "model/%s", model);
    model_run r = {.label = model, .cases = model, .golden = true};
    run(&r, test_data(rel));
}

static void test_granite_dense(void **state) { (void)state; golden("granite-dense"); }
static void test_switch_3a(void **state) { (void)state; golden("switch-3a"); }
static void test_switch_3a_bf16(void **state) { (void)state; golden("switch-3a-bf16"); }
static void test_switch_3a_buffers(void **state) { (void)state; golden("switch-3a-with-buffers"); }

/* switch-3a converted by `strata convert` (needs $STRATA_EXE). */
static void quantized(const char *quant, const char *extra)
{
    const char *exe = getenv("STRATA_EXE");
    if (!exe) {
        printf("quantized %s: skipped (STRATA_EXE not set)\n", quant);
        return;
    }
    char out[512], cmd[2048];
    snprintf(out, sizeof out, "%s/switch-3a-%s", test_tmpdir(), quant);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --quant %s %s --force --quiet", exe,
             test_data("model/switch-3a"), out, quant, extra);
    assert_int_equal(system(cmd), 0);
    char label[64];
    snprintf(label, sizeof label, "switch-3a %s%s", quant, *extra ? " dq" : "");
    model_run r = {.label = label, .cases = "switch-3a", .golden = false};
    run(&r, out);
}

static void test_nf4(void **state) { (void)state; quantized("nf4", "--double-quant"); }
static void test_fp4(void **state) { (void)state; quantized("fp4", ""); }
static void test_int8(void **state) { (void)state; quantized("int8", ""); }

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granite_dense),
        cmocka_unit_test(test_switch_3a),
        cmocka_unit_test(test_switch_3a_bf16),
        cmocka_unit_test(test_switch_3a_buffers),
        cmocka_unit_test(test_nf4),
        cmocka_unit_test(test_fp4),
        cmocka_unit_test(test_int8),
    };
    return cmocka_run_group_tests(tests, ctx_setup, ctx_teardown);
}
