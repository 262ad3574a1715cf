/* accelerate's device-map JSON: parsing, resolution onto units (prefixes,
 * the most specific key, splits refused), "disk" refused, and the round trip
 * through --save-device-map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/device_map.h"
#include "offload/planner.h"
#include "runtime/alloc.h"
#include "test_util.h"

#define L 4
static sr_plan_unit units[L + 2];

static int setup(void **state)
{
    (void)state;
    memset(units, 0, sizeof units);
    units[0].unit = SR_UNIT_EMBED;
    snprintf(units[0].name, sizeof units[0].name, "model.embed_tokens");
    for (int i = 0; i < L; i++) {
        units[1 + i].unit = i;
        snprintf(units[1 + i].name, sizeof units[1 + i].name, "model.layers.%d", i);
    }
    units[L + 1].unit = SR_UNIT_HEAD;
    snprintf(units[L + 1].name, sizeof units[L + 1].name, "lm_head");
    for (int u = 0; u < L + 2; u++) units[u].weight_bytes = 1000;
    return 0;
}

/* Resolves json over 2 accelerators; returns 0 and tier[], or -1 with err. */
static int resolve(const char *json, int *tier, sr_error *err)
{
    sr_device_map map;
    if (sr_device_map_parse(json, strlen(json), "m.json", &map, err)) return -1;
    int rc = sr_device_map_resolve(&map, units, L + 2, 2, tier, err);
    sr_device_map_free(&map);
    return rc;
}

static void expect_tiers(const char *json, const int *want)
{
    int tier[L + 2];
    sr_error err;
    if (resolve(json, tier, &err)) fail_msg("%s: %s", json, err.msg);
    for (int u = 0; u < L + 2; u++)
        if (tier[u] != want[u]) fail_msg("%s: unit %d on %d, want %d", json, u, tier[u], want[u]);
}

static void expect_error(const char *json, const char *msg)
{
    int tier[L + 2];
    sr_error err;
    if (resolve(json, tier, &err) == 0) fail_msg("accepted %s", json);
    if (!strstr(err.msg, msg)) fail_msg("%s: message '%s' lacks '%s'", json, err.msg, msg);
    assert_non_null(strstr(err.msg, "m.json"));
}

static void test_accelerate_maps(void **state)
{
    (void)state;
    /* what accelerate writes: every module spelled out; host = tier 2 */
    expect_tiers("{\"model.embed_tokens\": 0, \"model.layers.0\": 0, \"model.layers.1\": 0,"
                 " \"model.layers.2\": 1, \"model.layers.3\": \"cpu\", \"model.norm\": \"cpu\","
                 " \"lm_head\": \"cpu\"}", (int[]){0, 0, 0, 1, 2, 2});
    /* whole model, prefixes, the most specific key wins */
    expect_tiers("{\"\": 1}", (int[]){1, 1, 1, 1, 1, 1});
    expect_tiers("{\"model\": 0, \"lm_head\": \"cuda:1\", \"model.norm\": 1}",
                 (int[]){0, 0, 0, 0, 0, 1});
    expect_tiers("{\"model\": \"cpu\", \"model.layers\": 1, \"model.layers.3\": 0, \"lm_head\": "
                 "\"cpu\"}", (int[]){2, 1, 1, 1, 0, 2});
    /* "model.layers.1" does not cover "model.layers.10" (module boundaries) */
    expect_tiers("{\"model.layers.1\": 1, \"model\": 0, \"lm_head\": 0}",
                 (int[]){0, 0, 1, 0, 0, 0});
    /* keys below a unit that agree are fine; keys of no unit are ignored */
    expect_tiers("{\"model\": 0, \"model.layers.2.self_attn\": 0, \"model.layers.2.mlp\": 0,"
                 " \"model.rotary_emb\": 1, \"model.adapter_token_ids\": \"cpu\", \"lm_head\": 0}",
                 (int[]){0, 0, 0, 0, 0, 0});
    expect_tiers("{\"model.layers.0.mlp\": 1, \"model.layers.0\": 1, \"model\": 0,"
                 " \"lm_head\": 0}", (int[]){0, 1, 0, 0, 0, 0});
    /* spellings of one accelerator */
    expect_tiers("{\"model\": \"cuda\", \"lm_head\": \"sim:0\"}", (int[]){0, 0, 0, 0, 0, 0});
}

static void test_refusals(void **state)
{
    (void)state;
    expect_error("{\"model\": 0, \"lm_head\": \"disk\"}", "does not offload to disk");
    expect_error("{\"model\": 0, \"lm_head\": \"mps\"}", "unknown device");
    expect_error("{\"model\": 0, \"lm_head\": -1}", "out of range");
    expect_error("{\"model\": 0, \"lm_head\": 1.5}", "expected an accelerator index");
    expect_error("{\"model\": 0, \"model.norm\": 2, \"lm_head\": 2}", "only 2");
    /* the rest of a layer stays under "model": sub-keys alone would split it */
    expect_error("{\"model.layers.0.mlp\": 1, \"model.layers.0.self_attn\": 1, \"model\": 0,"
                 " \"lm_head\": 0}", "never splits");
    expect_error("{\"model\": 0, \"model.layers.2.mlp\": 1, \"lm_head\": 0}",
                 "never splits a unit");
    expect_error("{\"model.layers.2.mlp\": 1, \"model.layers.2.self_attn\": 0, \"model\": 0,"
                 " \"lm_head\": 0}", "never splits");
    expect_error("{\"model.embed_tokens\": 0, \"model.layers.0\": 0, \"model.layers.1\": 0,"
                 " \"model.layers.3\": 0, \"model.norm\": 0, \"lm_head\": 0}",
                 "no entry places model.layers.2");
    expect_error("{\"model\": 0, \"lm_head\": 1}", "form one unit");
    expect_error("{\"model\": 0}", "no entry places lm_head");
    expect_error("[0, 1]", "expected a JSON object");
    expect_error("{\"model\": 0,", "line 1");
    expect_error("{\"model\": 0, \"model\": 1, \"lm_head\": 0}", "duplicate");
}

static void test_tied_head_norm_decides(void **state)
{
    (void)state;
    units[L + 1].shared_bytes = 1000;   /* tied: a map may omit lm_head */
    expect_tiers("{\"model\": 1}", (int[]){1, 1, 1, 1, 1, 1});
    units[L + 1].shared_bytes = 0;
}

static void test_round_trip(void **state)
{
    (void)state;
    sr_tier t[3];
    uint64_t budgets[2] = {2500, 2500};
    for (int g = 0; g < 2; g++) {
        memset(&t[g], 0, sizeof t[g]);
        snprintf(t[g].name, sizeof t[g].name, "sim:%d", g);
        t[g].gpu = g;
        t[g].budget = budgets[g];
        sr_tier_perf_default(SR_DEV_SIM, &t[g].perf);
    }
    memset(&t[2], 0, sizeof t[2]);
    snprintf(t[2].name, sizeof t[2].name, "cpu");
    t[2].gpu = -1;
    t[2].budget = 1 << 20;
    sr_tier_perf_default(SR_DEV_CPU, &t[2].perf);
    sr_plan_request rq = {.units = units, .n_units = L + 2, .tiers = t, .n_tiers = 3,
                          .strategy = SR_STRATEGY_SEQUENTIAL, .host_exec = SR_EXEC_CPU,
                          .batch = 1, .prefetch = -1};
    sr_plan p;
    sr_error err;
    if (sr_plan_make(&rq, &p, &err)) fail_msg("%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/map.json", test_tmpdir());
    assert_int_equal(sr_device_map_save(path, &p, units, &err), 0);
    char *text = test_read_file(path, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"model.embed_tokens\": 0"));
    assert_non_null(strstr(text, "\"lm_head\": \"cpu\""));
    assert_non_null(strstr(text, "\"model.norm\": \"cpu\""));
    /* in execution order */
    assert_true(strstr(text, "model.layers.0") < strstr(text, "model.layers.1"));
    free(text);
    sr_device_map map;
    assert_int_equal(sr_device_map_load(path, &map, &err), 0);
    int tier[L + 2];
    assert_int_equal(sr_device_map_resolve(&map, units, L + 2, 2, tier, &err), 0);
    for (int u = 0; u < L + 2; u++) assert_int_equal(tier[u], p.units[u].tier);
    sr_device_map_free(&map);
    /* and the map reproduces the plan */
    rq.strategy = SR_STRATEGY_MAP;
    rq.map_tier = tier;
    sr_plan q;
    assert_int_equal(sr_plan_make(&rq, &q, &err), 0);
    for (int u = 0; u < L + 2; u++) assert_int_equal(q.units[u].tier, p.units[u].tier);
    sr_plan_free(&q);
    sr_plan_free(&p);
    assert_int_equal(sr_device_map_load("/nonexistent/map.json", &map, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/map.json"));
    assert_int_equal(sr_device_map_save("/nonexistent/dir/x.json", &p, units, &err), -1);
}

static void test_parse_alloc_failures(void **state)
{
    (void)state;
    static const char json[] = "{\"model\": 0, \"lm_head\": \"cpu\"}";
    for (long n = 0;; n++) {
        sr_device_map map;
        sr_error err;
        sr_alloc_fail_after(n);
        int rc = sr_device_map_parse(json, sizeof json - 1, "m.json", &map, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) {
            assert_int_equal(map.n, 2);
            sr_device_map_free(&map);
            break;
        }
        if (!strstr(err.msg, "out of memory")) fail_msg("allocation %ld: %s", n, err.msg);
        assert_null(map.e);
        assert_int_equal(map.n, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accelerate_maps),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_tied_head_norm_decides),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
