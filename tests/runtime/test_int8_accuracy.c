/* How much the int8 kernels (STRATA_KERNELS=int8, quant/matmul_vnni.c) move
 * a quantized model's logits, next to what the weight format already costs.
 *
 * Every golden model (dense, switch f32, switch bf16) is converted by
 * `strata convert` (STRATA_EXE) to NF4 with double quantization, FP4 and
 * LLM.int8.  For every single-sequence forward case, as one prefill and
 * token by token, three logit sets are compared:
 *   g   the upstream f32 logits of the unquantized model (the golden case),
 *   ex  the converted model under the exact kernels (they add no error: the
 *       dequantized f32 model gives the same logits, tests/tools/test_convert),
 *   i8  the converted model under the int8 kernels.
 * The int8 kernels' change |i8 - ex| is checked against the format's error
 * |ex - g|, by RMS over all logits of the case and by maximum:
 *   4-bit:    rms(i8 - ex) <= 1/4 rms(ex - g), max likewise.  Per element
 *             the activation rounding (int8 per block of 32: error <= max|x|
 *             / 254, RMS ~0.5 % of a normal x) is an order of magnitude
 *             below the 4-bit code spacing (RMS ~10 % of a normal weight),
 *             so the expected ratio is ~0.05-0.1; observed 0.06-0.14.
 *   LLM.int8: rms and max <= 2 x the format's.  Row-wise 8-bit weights
 *             (RMS ~0.6 % of a weight) err about as much as the 8-bit
 *             activations, so the two are of one size; observed 0.8-1.25.
 * (Observed on the Zen 4 dev VM, 2026-11-25; the bounds leave 1.6-2.4x.)
 * The int8 mode also rounds x to bf16 against bf16 weights (the head at
 * decode, every bf16 projection at prefill): the bf16 golden model as stored
 * runs with every projection's input rounded to bf16 (2^-9 relative), the
 * numerics of a bf16 model upstream; |i8 - ex| <= 0.02 (1 + max|ex|) over
 * each case, observed 0.004.
 * This bounds what the int8 arithmetic costs a model; it is not where a
 * kernel's arithmetic is checked (a scale off by 1 % passes the 4-bit bounds
 * here, at 0.10-0.15): test_matmul_int8 holds the kernels to an f64
 * emulation of their documented arithmetic at 1e-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "quant/matmul.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "golden_case.h"
#include "test_util.h"

typedef struct format {
    const char *name, *args; /* for `strata convert` */
    double bound;            /* on rms and max of |i8 - ex| / |ex - g| */
} format;

static const format formats[] = {
    {"nf4-dq", "--quant nf4 --double-quant", 0.25},
    {"fp4", "--quant fp4", 0.25},
    {"int8", "--quant int8", 2.0},
};

static void convert(const char *model, const format *f, char *dir, size_t n)
{
    const char *exe = getenv("STRATA_EXE");
    assert_non_null(exe);
    snprintf(dir, n, "%s/acc-%s-%s", test_tmpdir(), model, f->name);
    char rel[256], cmd[2048];
    snprintf(rel, sizeof rel, "model/%s", model);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' %s --force --quiet", exe, test_data(rel), dir,
             f->args);
    assert_int_equal(system(cmd), 0);
}

/* Logits of every position: one prefill, or one token at a time. */
static float *logits(const sr_model *m, const int32_t *tok, int64_t T, bool stepwise)
{
    sr_seq *s;
    sr_error err;
    if (sr_seq_create(m, T, &s, &err)) fail_msg("%s", err.msg);
    float *lg = malloc(sizeof(float) * (size_t)(T * m->V));
    assert_non_null(lg);
    if (stepwise) {
        for (int64_t t = 0; t < T; t++)
            if (sr_forward(s, tok + t, 1, lg + t * m->V, false, NULL, NULL, &err))
                fail_msg("%s", err.msg);
    } else if (sr_forward(s, tok, T, lg, true, NULL, NULL, &err)) {
        fail_msg("%s", err.msg);
    }
    sr_seq_free(s);
    return lg;
}

typedef struct stats { double rms, max; } stats;

static stats diff(const float *a, const float *b, int64_t n)
{
    double ss = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        ss += d * d;
        mx = fmax(mx, fabs(d));
    }
    return (stats){sqrt(ss / (double)n), mx};
}

/* The case's logits under the exact kernels and under the int8 mode, as one
 * prefill or token by token; the mode is exact again on return. */
static void both_modes(const sr_model *m, const case_file *c, bool stepwise, float **ex,
                       float **i8)
{
    const int64_t T = c->ids->shape[1];
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    assert_non_null(tok);
    for (int64_t i = 0; i < T; i++) tok[i] = (int32_t)((const int64_t *)c->ids->data)[i];
    sr_matmul_set_mode(SR_MATMUL_EXACT);
    *ex = logits(m, tok, T, stepwise);
    sr_matmul_set_mode(SR_MATMUL_INT8);
    *i8 = logits(m, tok, T, stepwise);
    sr_matmul_set_mode(SR_MATMUL_EXACT);
    free(tok);
}

static void check_case(const char *model, const format *f, const char *name, sr_model *m,
                       const case_file *c, double worst[2])
{
    const int64_t n = c->ids->shape[1] * m->V;
    assert_int_equal(c->logits->shape[2], m->V);
    for (int stepwise = 0; stepwise < 2; stepwise++) {
        float *ex, *i8;
        both_modes(m, c, stepwise, &ex, &i8);
        const stats fmt = diff(ex, c->logits->data, n), k = diff(i8, ex, n);
        const double r_rms = k.rms / fmt.rms, r_max = k.max / fmt.max;
        worst[0] = fmax(worst[0], r_rms);
        worst[1] = fmax(worst[1], r_max);
        if (!(r_rms <= f->bound && r_max <= f->bound))
            fail_msg("%s %s, case %s (%s): int8 kernels moved the logits by rms %.3g / max %.3g; "
                     "the format's own error is rms %.3g / max %.3g; bound %.2g of it",
                     model, f->name, name, stepwise ? "token by token" : "prefill", k.rms, k.max,
                     fmt.rms, fmt.max, f->bound);
        free(ex);
        free(i8);
    }
}

typedef struct model_run {
    const char *model;
    const format *f;
    sr_model *m;
    int n;
    double worst[2];
} model_run;

static void visit(const char *name, const char *kind, int64_t prefill_k, const case_file *c,
                  void *ctx)
{
    (void)prefill_k;
    model_run *r = ctx;
    /* One sequence, no padding: the forward cases a user's prompt is. */
    if (strcmp(kind, "forward") || c->ids->shape[0] != 1 || c->mask || !c->logits) return;
    check_case(r->model, r->f, name, r->m, c, r->worst);
    r->n++;
}

static void run_model(const char *model)
{
    for (size_t fi = 0; fi < sizeof formats / sizeof formats[0]; fi++) {
        model_run r = {.model = model, .f = &formats[fi]};
        char dir[512];
        convert(model, r.f, dir, sizeof dir);
        sr_error err;
        const sr_model_opts o = {.runs_on_cpu = true};
        if (sr_model_load(dir, &o, &r.m, &err)) fail_msg("%s", err.msg);
        for_each_case(model, visit, &r);
        fprintf(stderr, "%s %s: %d cases, worst |i8 - ex| / |ex - g|: rms %.3f, max %.3f\n", model,
                r.f->name, r.n, r.worst[0], r.worst[1]);
        assert_true(r.n > 0);
        sr_model_free(r.m);
    }
}

/* The bf16 golden model as stored (no conversion). */
static void visit_bf16(const char *name, const char *kind, int64_t prefill_k, const case_file *c,
                       void *ctx)
{
    (void)prefill_k;
    model_run *r = ctx;
    if (strcmp(kind, "forward") || c->ids->shape[0] != 1 || c->mask) return;
    const int64_t n = c->ids->shape[1] * r->m->V;
    for (int stepwise = 0; stepwise < 2; stepwise++) {
        float *ex, *i8;
        both_modes(r->m, c, stepwise, &ex, &i8);
        double mx = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ex[i]));
        const stats k = diff(i8, ex, n);
        const double rel = k.max / (1 + mx);
        r->worst[0] = fmax(r->worst[0], rel);
        if (!(rel <= 0.02))
            fail_msg("switch-3a-bf16 as stored, case %s (%s): int8 mode moved the logits by %.3g "
                     "(max |logit| %.3g), bound 0.02 (1 + max |logit|)", name,
                     stepwise ? "token by token" : "prefill", k.max, mx);
        free(ex);
        free(i8);
    }
    r->n++;
}

static void test_bf16_as_stored(void **state)
{
    (void)state;
    model_run r = {.model = "switch-3a-bf16"};
    sr_error err;
    const sr_model_opts o = {.runs_on_cpu = true};
    if (sr_model_load(test_data("model/switch-3a-bf16"), &o, &r.m, &err)) fail_msg("%s", err.msg);
    for_each_case(r.model, visit_bf16, &r);
    fprintf(stderr, "switch-3a-bf16 as stored: %d cases, worst |i8 - ex| / (1 + max|logit|) "
            "%.4f\n", r.n, r.worst[0]);
    assert_true(r.n > 0);
    sr_model_free(r.m);
}

static void test_granite_dense(void **state) { (void)state; run_model("granite-dense"); }
static void test_switch_3a(void **state) { (void)state; run_model("switch-3a"); }
static void test_switch_3a_bf16(void **state) { (void)state; run_model("switch-3a-bf16"); }

int main(void)
{
    if (!sr_matmul_int8_available()) {
        printf("skipped: no AVX-512 VNNI\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granite_dense),
        cmocka_unit_test(test_switch_3a),
        cmocka_unit_test(test_switch_3a_bf16),
        cmocka_unit_test(test_bf16_as_stored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
