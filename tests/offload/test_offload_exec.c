/* Running a plan on sim tiers: every golden model gives logits bit-identical
 * to the single-tier CPU run (prefill and decode), whatever the placement
 * (neighbours on different tiers, sequential spill, streamed host layers,
 * a tied head away from its embedding); the bytes held per tier are the
 * plan's, and streaming copies exactly the planned bytes per step. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/budget.h"
#include "offload/exec.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "test_util.h"

#define CTX 64
#define MAX_T 32

static const char *models[] = {"granite-dense", "switch-3a", "switch-3a-bf16",
                               "switch-3a-with-buffers"};

/* Token sequences of a model's golden cases (first row of each). */
static int case_tokens(const char *model, int32_t toks[][MAX_T], int *len, int max)
{
    char rel[256];
    snprintf(rel, sizeof rel, "model/%s/cases/manifest.json", model);
    json_error_t je;
    json_t *man = json_load_file(test_data(rel), 0, &je);
    if (!man) fail_msg("%s: %s", rel, je.text);
    size_t i;
    json_t *cs;
    int n = 0;
    json_array_foreach(json_object_get(man, "cases"), i, cs) {
        if (n == max) break;
        json_t *ids = json_array_get(json_object_get(cs, "input_ids"), 0);
        len[n] = (int)json_array_size(ids);
        if (len[n] > MAX_T) continue;
        for (int j = 0; j < len[n]; j++)
            toks[n][j] = (int32_t)json_integer_value(json_array_get(ids, (size_t)j));
        n++;
    }
    json_decref(man);
    return n;
}

typedef enum { ALL_HOST, NEIGHBOURS_APART, NEIGHBOURS_STREAM, SEQUENTIAL_SPILL, TIED_APART,
               N_LAYOUTS } layout;
static const char *layout_names[] = {"all on the host", "neighbours on different tiers",
                                     "neighbours apart, host layers streamed",
                                     "sequential spill + streaming", "head away from embedding"};

/* Builds a plan for `lay` over sim devices sized for the model. */
static int make_plan(const sr_model *m, const sr_unit_list *ul, layout lay, sr_device_set *devs,
                     sr_plan *plan, sr_error *err)
{
    uint64_t total = 0, max_unit = 0;
    for (int u = 0; u < ul->n; u++) {
        uint64_t s = ul->units[u].weight_bytes + ul->units[u].kv_bytes + ul->units[u].shared_bytes;
        total += s;
        if (s > max_unit) max_unit = s;
    }
    char spec[128];
    int n_gpu = lay == ALL_HOST ? 0 : lay == SEQUENTIAL_SPILL ? 2 : 3;
    if (n_gpu) snprintf(spec, sizeof spec, "sim:%dx%llu", n_gpu, 2 * (unsigned long long)total +
                                                                  (64u << 20));
    else snprintf(spec, sizeof spec, "cpu");
    if (sr_device_set_parse(spec, devs, err)) return -1;
    sr_model_dims dims;
    sr_model_dims_from_config(&m->cfg, &dims);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int nt;
    sr_max_memory mm = {.host_set = true, .host = 1ull << 30};
    if (sr_tiers_build(devs, &mm, &dims, &shape, tiers, &nt, err)) return -1;
    if (lay == SEQUENTIAL_SPILL) {
        /* sim:0 holds about a quarter of the model; sim:1 two staging slots,
         * the KV blocks and load-time conversions of the layers and little
         * else: layers spill to the host */
        uint64_t kv = ul->units[1].kv_bytes * (uint64_t)m->L, max_layer = 0, derived = 0;
        for (int u = 1; u < ul->n - 1; u++) {
            if (ul->units[u].weight_bytes > max_layer) max_layer = ul->units[u].weight_bytes;
            derived += ul->units[u].derived_bytes;
        }
        tiers[0].budget = tiers[0].reserve + total / 4;
        tiers[1].budget = tiers[1].reserve + 2 * max_layer + kv + derived + max_layer / 2;
        for (int g = 0; g < n_gpu; g++) devs->gpu[g].budget = devs->gpu[g].total = tiers[g].budget;
    }
    int map[16];
    sr_plan_request rq = {.units = ul->units, .n_units = ul->n, .tiers = tiers, .n_tiers = nt,
                          .strategy = SR_STRATEGY_AUTO, .host_exec = SR_EXEC_CPU, .batch = 1,
                          .prefetch = -1, .hop_bytes = (uint64_t)m->H * 4};
    switch (lay) {
    case ALL_HOST: break;
    case NEIGHBOURS_APART:
    case NEIGHBOURS_STREAM:
        for (int u = 0; u < ul->n; u++) map[u] = (u + 1) % nt;  /* no neighbours together */
        rq.strategy = SR_STRATEGY_MAP;
        rq.map_tier = map;
        rq.host_exec = lay == NEIGHBOURS_STREAM ? SR_EXEC_STREAM : SR_EXEC_CPU;
        break;
    case SEQUENTIAL_SPILL:
        rq.strategy = SR_STRATEGY_SEQUENTIAL;
        rq.host_exec = SR_EXEC_STREAM;
        rq.prefetch = 1;
        break;
    case TIED_APART:
        for (int u = 0; u < ul->n; u++) map[u] = u == ul->n - 1 ? 2 : u % 2;
        rq.strategy = SR_STRATEGY_MAP;
        rq.map_tier = map;
        break;
    default: break;
    }
    return sr_plan_make(&rq, plan, err);
}

/* Prefill the first k tokens (all logits), then decode the rest one by one. */
static void run_ref(const sr_model *m, const int32_t *tok, int T, int k, float *out)
{
    sr_seq *s;
    sr_error err;
    if (sr_seq_create(m, CTX, &s, &err)) fail_msg("%s", err.msg);
    if (sr_forward(s, tok, k, out, true, NULL, NULL, &err)) fail_msg("%s", err.msg);
    for (int i = k; i < T; i++)
        if (sr_forward(s, tok + i, 1, out + (size_t)i * m->V, false, NULL, NULL, &err))
            fail_msg("%s", err.msg);
    sr_seq_free(s);
}

static void run_offload(sr_offload *o, const sr_model *m, const int32_t *tok, int T, int k,
                        float *out)
{
    sr_error err;
    sr_offload_reset(o);
    if (sr_offload_forward(o, tok, k, out, true, &err)) fail_msg("%s", err.msg);
    for (int i = k; i < T; i++)
        if (sr_offload_forward(o, tok + i, 1, out + (size_t)i * m->V, false, &err))
            fail_msg("%s", err.msg);
}

static void check_holdings(const sr_offload *o, const sr_plan *p, const sr_device_set *devs)
{
    const sr_offload_stats *st = sr_offload_get_stats(o);
    for (int t = 0; t < p->n_tiers; t++) {
        assert_true(st->stored[t] == p->tiers[t].weights);
        assert_true(st->kv[t] == p->tiers[t].kv);
        assert_true(st->staging[t] == p->tiers[t].staging);
        /* load-time conversions exactly as planned, scratch within the reserve:
         * the run holds no byte its plan did not count */
        assert_true(st->derived[t] == p->tiers[t].derived);
        assert_true(st->scratch[t] <= p->tiers[t].reserve);
        const sr_device *d = t < devs->n_gpu ? &devs->gpu[t] : &devs->host;
        assert_true(d->used <= d->budget);
        assert_true(d->used == st->stored[t] + st->kv[t] + st->staging[t] + st->derived[t] +
                               st->scratch[t]);
        assert_true(d->used <= p->tiers[t].total);
    }
}

/* Every layout over the model at `path`, against sr_forward on the cases of
 * golden model `cases`. */
static void bit_identical(const char *path, const char *cases)
{
    sr_model *m;
    sr_error err;
    if (sr_model_load(path, NULL, &m, &err)) fail_msg("%s", err.msg);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_unit_list ul;
    if (sr_units_from_catalog(&m->cat, &m->cfg, &shape, &ul, &err)) fail_msg("%s", err.msg);
    int32_t toks[12][MAX_T];
    int len[12];
    int nc = case_tokens(cases, toks, len, 12);
    assert_true(nc > 0);
    float *ref = malloc(sizeof(float) * MAX_T * (size_t)m->V);
    float *got = malloc(sizeof(float) * MAX_T * (size_t)m->V);
    for (int lay = 0; lay < N_LAYOUTS; lay++) {
        if (lay == TIED_APART && !m->cat.head_tied) continue;
        sr_device_set devs;
        sr_plan plan;
        if (make_plan(m, &ul, (layout)lay, &devs, &plan, &err))
            fail_msg("%s / %s: %s", path, layout_names[lay], err.msg);
        if ((lay == NEIGHBOURS_STREAM || lay == SEQUENTIAL_SPILL) && !plan.stream.n_layers)
            fail_msg("%s / %s: nothing streamed: %s", path, layout_names[lay],
                     plan.exec_reason);
        if (lay == SEQUENTIAL_SPILL) assert_true(plan.tiers[0].n_units > 0);
        if (lay == NEIGHBOURS_APART || lay == NEIGHBOURS_STREAM)
            for (int t = 0; t < plan.n_tiers; t++) assert_true(plan.tiers[t].n_units > 0);
        sr_offload *o;
        if (sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err))
            fail_msg("%s / %s: %s", path, layout_names[lay], err.msg);
        check_holdings(o, &plan, &devs);
        for (int c = 0; c < nc; c++) {
            int T = len[c], k = T > 3 ? T - 3 : 1;
            memset(ref, 0, sizeof(float) * (size_t)T * m->V);
            memset(got, 0x55, sizeof(float) * (size_t)T * m->V);
            run_ref(m, toks[c], T, k, ref);
            run_offload(o, m, toks[c], T, k, got);
            for (int i = 0; i < T; i++)
                if (memcmp(ref + (size_t)i * m->V, got + (size_t)i * m->V,
                           sizeof(float) * (size_t)m->V))
                    fail_msg("%s / %s / case %d: logits of position %d differ", path,
                             layout_names[lay], c, i);
        }
        sr_offload_free(o);
        for (int t = 0; t < devs.n_gpu; t++) assert_true(devs.gpu[t].used == 0);
        assert_true(devs.host.used == 0);
        sr_plan_free(&plan);
    }
    free(ref);
    free(got);
    sr_unit_list_free(&ul);
    sr_model_free(m);
}

static void test_bit_identical_everywhere(void **state)
{
    (void)state;
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        char rel[128];
        snprintf(rel, sizeof rel, "model/%s", models[mi]);
        bit_identical(test_data(rel), models[mi]);
    }
}

/* Scenario 5 and 7: 4-bit and 8-bit layers on every tier, streamed or run
 * on the CPU in their stored form (checkpoints made by `strata convert`). */
static void test_quantized_on_every_tier(void **state)
{
    (void)state;
    static const struct { const char *model, *quant; } q[] = {
        {"switch-3a", "nf4 --double-quant"}, {"granite-dense", "int8"},
        {"switch-3a", "fp4"}};
    const char *exe = getenv("STRATA_EXE");
    assert_non_null(exe);
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        char out[512], cmd[2048];
        snprintf(out, sizeof out, "%s/q%zu", test_tmpdir(), i);
        snprintf(cmd, sizeof cmd, "'%s' convert '%s/model/%s' '%s' --quant %s --quiet --force",
                 exe, getenv("STRATA_TEST_DATA"), q[i].model, out, q[i].quant);
        if (system(cmd) != 0) fail_msg("failed: %s", cmd);
        bit_identical(out, q[i].model);
    }
}

static void test_stream_bytes_per_token(void **state)
{
    (void)state;
    sr_model *m;
    sr_error err;
    if (sr_model_load(test_data("model/switch-3a"), NULL, &m, &err)) fail_msg("%s", err.msg);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_unit_list ul;
    if (sr_units_from_catalog(&m->cat, &m->cfg, &shape, &ul, &err)) fail_msg("%s", err.msg);
    static const layout lays[] = {NEIGHBOURS_STREAM, SEQUENTIAL_SPILL};
    for (int li = 0; li < 2; li++) {
        sr_device_set devs;
        sr_plan plan;
        if (make_plan(m, &ul, lays[li], &devs, &plan, &err)) fail_msg("%s", err.msg);
        assert_true(plan.stream.n_layers > 0);
        sr_offload *o;
        if (sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err)) fail_msg("%s", err.msg);
        int32_t tok[6] = {1, 256, 5, 7, 9, 11};
        float *logits = malloc(sizeof(float) * (size_t)m->V);
        assert_int_equal(sr_offload_forward(o, tok, 3, logits, false, &err), 0);
        for (int i = 3; i < 6; i++) {
            sr_offload_reset_moved(o);
            assert_int_equal(sr_offload_forward(o, tok + i, 1, logits, false, &err), 0);
            const sr_offload_stats *st = sr_offload_get_stats(o);
            /* the planned bytes, no more, no less */
            assert_true(st->streamed == plan.stream.bytes_per_token);
            assert_true(st->steps == 1);
            /* every byte that crossed a boundary is accounted for */
            uint64_t dev = 0;
            for (int t = 0; t < devs.n_gpu; t++)
                dev += devs.gpu[t].moved.h2d + devs.gpu[t].moved.d2d_in + devs.gpu[t].moved.d2h;
            assert_true(dev == st->streamed + st->activations + st->metadata + st->logits);
            assert_true(devs.gpu[plan.stream.tier].moved.h2d >= plan.stream.bytes_per_token);
        }
        free(logits);
        sr_offload_free(o);
        sr_plan_free(&plan);
    }
    sr_unit_list_free(&ul);
    sr_model_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    sr_model *m;
    sr_error err;
    if (sr_model_load(test_data("model/granite-dense"), NULL, &m, &err)) fail_msg("%s", err.msg);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_unit_list ul;
    if (sr_units_from_catalog(&m->cat, &m->cfg, &shape, &ul, &err)) fail_msg("%s", err.msg);
    sr_device_set devs;
    sr_plan plan;
    if (make_plan(m, &ul, NEIGHBOURS_APART, &devs, &plan, &err)) fail_msg("%s", err.msg);
    /* a device that holds less than the plan: refused naming it, nothing leaks */
    devs.gpu[1].budget = plan.tiers[1].weights / 2;
    sr_offload *o;
    assert_int_equal(sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err), -1);
    assert_non_null(strstr(err.msg, "sim:1"));
    assert_null(o);
    for (int t = 0; t < devs.n_gpu; t++) assert_true(devs.gpu[t].used == 0);
    assert_true(devs.host.used == 0);
    /* the wrong device set */
    sr_device_set two;
    assert_int_equal(sr_device_set_parse("sim:2x1GiB", &two, &err), 0);
    assert_int_equal(sr_offload_create(m, &plan, &ul, &two, CTX, &o, &err), -1);
    assert_non_null(strstr(err.msg, "tiers"));
    /* bad input rolls back */
    devs.gpu[1].budget = devs.gpu[1].total;
    assert_int_equal(sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err), 0);
    int32_t bad[2] = {1, 100000};
    float *logits = malloc(sizeof(float) * (size_t)m->V);
    assert_int_equal(sr_offload_forward(o, bad, 2, logits, false, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    int32_t good[1] = {1};
    assert_int_equal(sr_offload_forward(o, good, 1, logits, false, &err), 0);
    free(logits);
    sr_offload_free(o);
    sr_plan_free(&plan);
    sr_unit_list_free(&ul);
    sr_model_free(m);
}

/* Every allocation of sr_offload_create may fail: a clean error, nothing
 * left on any device (ASan checks the host side). */
static void test_create_alloc_failures(void **state)
{
    (void)state;
    sr_model *m;
    sr_error err;
    if (sr_model_load(test_data("model/switch-3a"), NULL, &m, &err)) fail_msg("%s", err.msg);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_unit_list ul;
    if (sr_units_from_catalog(&m->cat, &m->cfg, &shape, &ul, &err)) fail_msg("%s", err.msg);
    sr_device_set devs;
    sr_plan plan;
    if (make_plan(m, &ul, NEIGHBOURS_STREAM, &devs, &plan, &err)) fail_msg("%s", err.msg);
    for (long n = 0;; n++) {
        sr_offload *o;
        sr_alloc_fail_after(n);
        int rc = sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) {
            sr_offload_free(o);
            assert_true(n > 10);
            break;
        }
        assert_null(o);
        assert_true(err.msg[0] != 0);
        for (int t = 0; t < devs.n_gpu; t++) assert_true(devs.gpu[t].used == 0);
        assert_true(devs.host.used == 0);
    }
    sr_plan_free(&plan);
    sr_unit_list_free(&ul);
    sr_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical_everywhere),
        cmocka_unit_test(test_quantized_on_every_tier),
        cmocka_unit_test(test_stream_bytes_per_token),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_create_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
