/* The placements the executor tests run every golden model through, on sim
 * devices (tests/offload/test_offload_exec.c) and on logical slices of a
 * GPU (tests/cuda/test_cuda_offload.c): the layout, its plan over a device
 * set the caller made with layout_gpus(lay) accelerators, the reference run
 * (sr_forward, prefill then decode), the same run through the executor, and
 * the check that every tier holds what its plan counted. */
#ifndef SR_TEST_OFFLOAD_LAYOUTS_H
#define SR_TEST_OFFLOAD_LAYOUTS_H

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/budget.h"
#include "offload/exec.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "test_util.h"

#define CTX 64
#define MAX_T 32

static const char *layout_models[] = {"granite-dense", "switch-3a", "switch-3a-bf16",
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

typedef enum { ALL_HOST, ONE_DEVICE, NEIGHBOURS_APART, NEIGHBOURS_STREAM, SEQUENTIAL_SPILL,
               TIED_APART, N_LAYOUTS } layout;
static const char *layout_names[] = {"all on the host", "all on one device",
                                     "neighbours on different tiers",
                                     "neighbours apart, host layers streamed",
                                     "sequential spill + streaming", "head away from embedding"};

/* Accelerators the layout places over. */
static int layout_gpus(layout lay)
{
    return lay == ALL_HOST ? 0 : lay == ONE_DEVICE ? 1 : lay == SEQUENTIAL_SPILL ? 2 : 3;
}

/* Bytes of the model's units (weights, KV, shared storage). */
static uint64_t layout_model_bytes(const sr_unit_list *ul)
{
    uint64_t total = 0;
    for (int u = 0; u < ul->n; u++)
        total += ul->units[u].weight_bytes + ul->units[u].kv_bytes + ul->units[u].shared_bytes;
    return total;
}

/* The model at `path` and its units for the layouts' run shape. */
static sr_model *layout_load(const char *path, sr_unit_list *ul)
{
    sr_model *m;
    sr_error err;
    if (sr_model_load(path, NULL, &m, &err)) fail_msg("%s", err.msg);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    if (sr_units_from_catalog(&m->cat, &m->cfg, &shape, ul, &err)) fail_msg("%s", err.msg);
    return m;
}

/* The plan of `lay` over devs (layout_gpus(lay) accelerators, host 1 GiB). */
static int layout_plan(const sr_model *m, const sr_unit_list *ul, layout lay, sr_device_set *devs,
                       sr_plan *plan, sr_error *err)
{
    const int n_gpu = layout_gpus(lay);
    if (devs->n_gpu != n_gpu)
        return sr_fail(err, "layout %s wants %d accelerators, the set has %d", layout_names[lay],
                       n_gpu, devs->n_gpu);
    sr_model_dims dims;
    sr_model_dims_from_config(&m->cfg, &dims);
    sr_run_shape shape = {.ctx = CTX, .batch = 1, .chunk = CTX, .threads = 2};
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int nt;
    sr_max_memory mm = {.host_set = true, .host = 1ull << 30};
    if (sr_tiers_build(devs, &mm, &dims, &shape, tiers, &nt, err)) return -1;
    if (lay == SEQUENTIAL_SPILL) {
        /* the first device holds about a quarter of the model; the second
         * two staging slots, the KV blocks and load-time conversions of the
         * layers and little else: layers spill to the host */
        uint64_t kv = ul->units[1].kv_bytes * (uint64_t)m->L, max_layer = 0, derived = 0;
        for (int u = 1; u < ul->n - 1; u++) {
            if (ul->units[u].weight_bytes > max_layer) max_layer = ul->units[u].weight_bytes;
            derived += ul->units[u].derived_bytes;
        }
        tiers[0].budget = tiers[0].reserve + layout_model_bytes(ul) / 4;
        tiers[1].budget = tiers[1].reserve + 2 * max_layer + kv + derived + max_layer / 2;
        for (int g = 0; g < n_gpu; g++) {
            devs->gpu[g].budget = tiers[g].budget;
            if (devs->gpu[g].kind == SR_DEV_SIM) devs->gpu[g].total = tiers[g].budget;
        }
    }
    static int map[1024];
    if (ul->n > 1024) return sr_fail(err, "%d units: too many for this test", ul->n);
    sr_plan_request rq = {.units = ul->units, .n_units = ul->n, .tiers = tiers, .n_tiers = nt,
                          .strategy = SR_STRATEGY_AUTO, .host_exec = SR_EXEC_CPU, .batch = 1,
                          .prefetch = -1, .hop_bytes = (uint64_t)m->H * 4};
    switch (lay) {
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
    default: break;     /* auto: everything on the host, or on the one device */
    }
    return sr_plan_make(&rq, plan, err);
}

/* Prefill the first k tokens (all logits), then decode the rest one by one. */
static void layout_run_ref(const sr_model *m, const int32_t *tok, int T, int k, float *out)
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

static void layout_run_offload(sr_offload *o, const sr_model *m, const int32_t *tok, int T,
                               int k, float *out)
{
    sr_error err;
    sr_offload_reset(o);
    if (sr_offload_forward(o, tok, k, out, true, &err)) fail_msg("%s", err.msg);
    for (int i = k; i < T; i++)
        if (sr_offload_forward(o, tok + i, 1, out + (size_t)i * m->V, false, &err))
            fail_msg("%s", err.msg);
}

/* Every tier holds its plan's bytes: weights, KV and staging exactly,
 * scratch within the reserve, load-time conversions exactly
 * (exact_derived) or at most as planned (CUDA tiers keep the LoRA ranks
 * and live flags on the host). */
static void layout_check_holdings(const sr_offload *o, const sr_plan *p, const sr_device_set *devs,
                                  bool exact_derived)
{
    const sr_offload_stats *st = sr_offload_get_stats(o);
    for (int t = 0; t < p->n_tiers; t++) {
        assert_true(st->stored[t] == p->tiers[t].weights);
        assert_true(st->kv[t] == p->tiers[t].kv);
        assert_true(st->staging[t] == p->tiers[t].staging);
        if (exact_derived) assert_true(st->derived[t] == p->tiers[t].derived);
        else assert_true(st->derived[t] <= p->tiers[t].derived);
        assert_true(st->scratch[t] <= p->tiers[t].reserve);
        const sr_device *d = t < devs->n_gpu ? &devs->gpu[t] : &devs->host;
        assert_true(d->used <= d->budget);
        assert_true(d->used == st->stored[t] + st->kv[t] + st->staging[t] + st->derived[t] +
                               st->scratch[t]);
        assert_true(d->used <= p->tiers[t].total);
    }
}

/* Makes the device set for a layout and its plan (the test's devices). */
typedef int (*layout_planner)(const sr_model *m, const sr_unit_list *ul, layout lay,
                              sr_device_set *devs, sr_plan *plan, sr_error *err);

/* Every layout from `first` on over the model at `path`, against sr_forward
 * on the cases of golden model `cases`: |Δlogit| <= tol everywhere (tol 0:
 * bit-identical), every tier holding its plan's bytes, nothing left on any
 * device after. */
static void layout_check_model(const char *path, const char *cases, layout first,
                               layout_planner make_plan, double tol, bool exact_derived)
{
    sr_error err;
    sr_unit_list ul;
    sr_model *m = layout_load(path, &ul);
    int32_t toks[12][MAX_T];
    int len[12];
    const int nc = case_tokens(cases, toks, len, 12);
    assert_true(nc > 0);
    float *ref = malloc(sizeof(float) * MAX_T * (size_t)m->V);
    float *got = malloc(sizeof(float) * MAX_T * (size_t)m->V);
    for (int lay = first; lay < N_LAYOUTS; lay++) {
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
        layout_check_holdings(o, &plan, &devs, exact_derived);
        double worst = 0;
        for (int c = 0; c < nc; c++) {
            const int T = len[c], k = T > 3 ? T - 3 : 1;
            const size_t n = (size_t)T * (size_t)m->V;
            memset(ref, 0, sizeof(float) * n);
            memset(got, 0x55, sizeof(float) * n);
            layout_run_ref(m, toks[c], T, k, ref);
            layout_run_offload(o, m, toks[c], T, k, got);
            for (size_t i = 0; i < n; i++) {
                const double d = tol > 0 ? fabs((double)got[i] - ref[i])
                                         : memcmp(got + i, ref + i, sizeof(float)) ? 1 : 0;
                if (!(d <= tol))    /* NaN fails too */
                    fail_msg("%s / %s / case %d: logit %zu of position %zu differs by %g", path,
                             layout_names[lay], c, i % (size_t)m->V, i / (size_t)m->V, d);
                if (d > worst) worst = d;
            }
        }
        if (tol > 0) printf("%s / %s: max |Δlogit| %.3g\n", path, layout_names[lay], worst);
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

/* layout_check_model on every golden model, then on 4-bit and 8-bit
 * conversions of them (`strata convert` through $STRATA_EXE). */
static void layout_check_golden(layout first, layout_planner make_plan, double tol,
                                bool exact_derived)
{
    for (size_t mi = 0; mi < sizeof layout_models / sizeof *layout_models; mi++) {
        char rel[128];
        snprintf(rel, sizeof rel, "model/%s", layout_models[mi]);
        layout_check_model(test_data(rel), layout_models[mi], first, make_plan, tol,
                           exact_derived);
    }
}

static void layout_check_quantized(layout first, layout_planner make_plan, double tol,
                                   bool exact_derived)
{
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
        layout_check_model(out, q[i].model, first, make_plan, tol, exact_derived);
    }
}

/* Each decode step of the switch model under `lay` copies exactly the plan's
 * streamed bytes into the staging slots, and every byte that crossed a
 * boundary is accounted for. */
static void layout_check_stream_bytes(layout lay, layout_planner make_plan)
{
    sr_error err;
    sr_unit_list ul;
    sr_model *m = layout_load(test_data("model/switch-3a"), &ul);
    sr_device_set devs;
    sr_plan plan;
    if (make_plan(m, &ul, lay, &devs, &plan, &err)) fail_msg("%s", err.msg);
    assert_true(plan.stream.n_layers > 0);
    sr_offload *o;
    if (sr_offload_create(m, &plan, &ul, &devs, CTX, &o, &err)) fail_msg("%s", err.msg);
    /* copies overlap compute exactly when they stream into a GPU */
    assert_true(sr_offload_get_stats(o)->async_copies ==
                (devs.gpu[plan.stream.tier].kind == SR_DEV_CUDA));
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
        uint64_t dev = 0;
        for (int t = 0; t < devs.n_gpu; t++)
            dev += devs.gpu[t].moved.h2d + devs.gpu[t].moved.d2d_in + devs.gpu[t].moved.d2h;
        assert_true(dev == st->streamed + st->activations + st->metadata + st->logits);
        assert_true(devs.gpu[plan.stream.tier].moved.h2d >= plan.stream.bytes_per_token);
    }
    free(logits);
    sr_offload_free(o);
    sr_plan_free(&plan);
    sr_unit_list_free(&ul);
    sr_model_free(m);
}

#endif
