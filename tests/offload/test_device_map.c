/* accelerate's device-map JSON: parsing, resolution onto units (prefixes,
 * the most specific key, splits refused, a head split across devices placed
 * with lm_head), "disk" refused, upstream's switch buffers written on the
 * embedding's device and ignored when read, and the round trip through
 * --save-device-map. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/device_map.h"
#include "offload/planner.h"
#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
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

/* Captures info lines (the head-split notice). */
static char logged[4096];

static void capture(sr_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level != SR_LOG_INFO) return;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", msg);
}

static void expect_tiers_logged(const char *json, const int *want, const char *line)
{
    logged[0] = 0;
    sr_log_set_sink(capture, NULL);
    expect_tiers(json, want);
    sr_log_set_sink(NULL, NULL);
    if (!line && logged[0]) fail_msg("%s: unexpected notice '%s'", json, logged);
    if (line && !strstr(logged, line)) fail_msg("%s: notice '%s' lacks '%s'", json, logged, line);
    if (line && strchr(logged, '\n') != logged + strlen(logged) - 1)
        fail_msg("%s: more than one line: '%s'", json, logged);
}

/* accelerate puts model.norm and lm_head where they fit; strata keeps its
 * head unit whole, where lm_head is, and says so once naming both devices */
static void test_head_split_follows_lm_head(void **state)
{
    (void)state;
    expect_tiers_logged("{\"model.embed_tokens\": 0, \"lm_head\": 0, \"model.layers.0\": 1,"
                        " \"model.layers.1\": \"cpu\", \"model.layers.2\": \"cpu\","
                        " \"model.layers.3\": \"cpu\", \"model.norm\": \"cpu\"}",
                        (int[]){0, 1, 2, 2, 2, 0},
                        "m.json: model.norm is on cpu but lm_head on 0: strata keeps the final "
                        "norm with lm_head (one unit, the head) and places both on 0");
    expect_tiers_logged("{\"model\": 0, \"lm_head\": 1}", (int[]){0, 0, 0, 0, 0, 1},
                        "model.norm is on 0 but lm_head on 1");
    expect_tiers_logged("{\"model\": 1, \"model.norm\": 1, \"lm_head\": \"cpu\"}",
                        (int[]){1, 1, 1, 1, 1, 2}, "model.norm is on 1 but lm_head on cpu");
    /* agreeing head: no notice */
    expect_tiers_logged("{\"model\": 0, \"lm_head\": 0}", (int[]){0, 0, 0, 0, 0, 0}, NULL);
    /* tied, lm_head on its own device: still lm_head's */
    units[L + 1].shared_bytes = 1000;
    expect_tiers_logged("{\"model\": 0, \"lm_head\": \"cpu\"}", (int[]){0, 0, 0, 0, 0, 2},
                        "model.norm is on 0 but lm_head on cpu");
    units[L + 1].shared_bytes = 0;
    /* what is still refused: an accelerator that does not exist (named by
     * lm_head's key), a head module split below itself, a missing norm */
    expect_error("{\"model\": 0, \"lm_head\": 2}", "\"lm_head\" places lm_head on accelerator 2");
    expect_error("{\"model\": 0, \"lm_head\": 0, \"model.norm.weight\": 1}", "never splits");
    expect_error("{\"model.embed_tokens\": 0, \"model.layers\": 0, \"lm_head\": 0}",
                 "no entry places model.norm");
}

/* Maps accelerate writes for upstream switch models carry the derived
 * buffers: accepted, ignored (they place no unit), whatever device they name */
static void test_switch_buffer_keys_ignored(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "model.adapter_token_ids", "model.token_to_group_mask", "model.adapter_hiding_matrix",
        "model.adapter_substitute_token_ids", "model.control_to_substitute_lut",
        "model.switch.control_to_substitute_lut", "model.switch.codebook", "model.switch"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        char json[512];
        snprintf(json, sizeof json, "{\"model.embed_tokens\": 1, \"%s\": \"cpu\", "
                 "\"model.layers\": 0, \"model.norm\": 1, \"lm_head\": 1}", keys[k]);
        expect_tiers_logged(json, (int[]){1, 0, 0, 0, 0, 1}, NULL);
    }
    /* all of Gen A's at once, on a device that does not place anything else */
    expect_tiers("{\"model.embed_tokens\": 0, \"model.adapter_token_ids\": 1,"
                 " \"model.token_to_group_mask\": 1, \"model.adapter_hiding_matrix\": 1,"
                 " \"model.layers\": \"cpu\", \"model.norm\": 0, \"lm_head\": 0}",
                 (int[]){0, 2, 2, 2, 2, 0});
    /* an unknown device is still refused, naming the key */
    expect_error("{\"model\": 0, \"lm_head\": 0, \"model.adapter_token_ids\": \"disk\"}",
                 "\"model.adapter_token_ids\": strata does not offload to disk");
}

static void test_switch_buffer_names(void **state)
{
    (void)state;
    const char *n[SR_MAX_SWITCH_BUFFERS];
    assert_int_equal(sr_switch_buffer_names(SR_GEN_NONE, false, n), 0);
    assert_int_equal(sr_switch_buffer_names(SR_GEN_A, false, n), 3);
    assert_string_equal(n[0], "model.adapter_token_ids");
    assert_string_equal(n[1], "model.token_to_group_mask");
    assert_string_equal(n[2], "model.adapter_hiding_matrix");
    assert_int_equal(sr_switch_buffer_names(SR_GEN_B, true, n), 3);
    assert_string_equal(n[0], "model.adapter_token_ids");
    assert_string_equal(n[1], "model.adapter_substitute_token_ids");
    assert_string_equal(n[2], "model.control_to_substitute_lut");
    assert_int_equal(sr_switch_buffer_names(SR_GEN_B, false, n), 2);
    assert_string_equal(n[1], "model.switch.control_to_substitute_lut");
    assert_int_equal(sr_switch_buffer_names(SR_GEN_C, false, n), 3);
    assert_string_equal(n[0], "model.adapter_token_ids");
    assert_string_equal(n[1], "model.switch.codebook");
    assert_string_equal(n[2], "model.switch.control_to_substitute_lut");
    /* every name is a key strata derives and never places */
    for (int g = SR_GEN_A; g <= SR_GEN_C; g++)
        for (int legacy = 0; legacy < 2; legacy++) {
            int k = sr_switch_buffer_names((sr_switch_gen)g, legacy, n);
            for (int i = 0; i < k; i++) assert_true(sr_is_derived_key(n[i]));
        }
}

/* Two sim accelerators of 2500 bytes and the host. */
static void make_tiers(sr_tier t[3])
{
    for (int g = 0; g < 2; g++) {
        memset(&t[g], 0, sizeof t[g]);
        snprintf(t[g].name, sizeof t[g].name, "sim:%d", g);
        t[g].gpu = g;
        t[g].budget = 2500;
        sr_tier_perf_default(SR_DEV_SIM, &t[g].perf);
    }
    memset(&t[2], 0, sizeof t[2]);
    snprintf(t[2].name, sizeof t[2].name, "cpu");
    t[2].gpu = -1;
    t[2].budget = 1 << 20;
    sr_tier_perf_default(SR_DEV_CPU, &t[2].perf);
}

/* --save-device-map of a switch model: upstream's buffers on the embedding's
 * device, right after it; reading the map back places exactly the plan */
static void test_switch_buffers_written(void **state)
{
    (void)state;
    sr_tier t[3];
    make_tiers(t);
    int want[L + 2] = {2, 0, 0, 1, 2, 1};  /* embedding on the host */
    sr_plan_request rq = {.units = units, .n_units = L + 2, .tiers = t, .n_tiers = 3,
                          .strategy = SR_STRATEGY_MAP, .map_tier = want,
                          .host_exec = SR_EXEC_CPU, .batch = 1, .prefetch = -1};
    sr_plan p;
    sr_error err;
    if (sr_plan_make(&rq, &p, &err)) fail_msg("%s", err.msg);
    for (int g = SR_GEN_A; g <= SR_GEN_C; g++) {
        const char *names[SR_MAX_SWITCH_BUFFERS];
        int n = sr_switch_buffer_names((sr_switch_gen)g, g == SR_GEN_B, names);
        char *text = sr_device_map_dump_buffers(&p, units, names, n);
        assert_non_null(text);
        json_error_t je;
        json_t *o = json_loads(text, 0, &je);
        if (!o) fail_msg("%s: %s", je.text, text);
        assert_int_equal(json_object_size(o), L + 3 + n);
        for (int i = 0; i < n; i++) {
            json_t *v = json_object_get(o, names[i]);
            if (!json_is_string(v) || strcmp(json_string_value(v), "cpu"))
                fail_msg("%s not on the embedding's device: %s", names[i], text);
            /* in the embedding's place, before the layers */
            assert_true(strstr(text, "model.embed_tokens") < strstr(text, names[i]));
            assert_true(strstr(text, names[i]) < strstr(text, "model.layers.0"));
        }
        json_decref(o);
        sr_device_map map;
        assert_int_equal(sr_device_map_parse(text, strlen(text), "saved.json", &map, &err), 0);
        sr_free(text);
        int tier[L + 2];
        if (sr_device_map_resolve(&map, units, L + 2, 2, tier, &err)) fail_msg("%s", err.msg);
        sr_device_map_free(&map);
        for (int u = 0; u < L + 2; u++) assert_int_equal(tier[u], want[u]);
    }
    /* a plain model's map has no buffer keys; the embedding on an accelerator */
    want[0] = 1;
    want[L + 1] = 2;
    sr_plan q;
    if (sr_plan_make(&rq, &q, &err)) fail_msg("%s", err.msg);
    const char *names[SR_MAX_SWITCH_BUFFERS];
    int n = sr_switch_buffer_names(SR_GEN_A, false, names);
    char *text = sr_device_map_dump_buffers(&q, units, names, n);
    assert_non_null(strstr(text, "\"model.adapter_hiding_matrix\": 1"));
    sr_free(text);
    text = sr_device_map_dump(&q, units);
    assert_null(strstr(text, "adapter"));
    sr_free(text);
    /* out of memory: NULL, nothing leaks (the ASan pass checks) */
    for (long k = 0;; k++) {
        sr_alloc_fail_after(k);
        text = sr_device_map_dump_buffers(&q, units, names, n);
        sr_alloc_fail_after(-1);
        if (text) {
            sr_free(text);
            break;
        }
    }
    sr_plan_free(&q);
    sr_plan_free(&p);
}

static void test_round_trip(void **state)
{
    (void)state;
    sr_tier t[3];
    make_tiers(t);
    sr_plan_request rq = {.units = units, .n_units = L + 2, .tiers = t, .n_tiers = 3,
                          .strategy = SR_STRATEGY_SEQUENTIAL, .host_exec = SR_EXEC_CPU,
                          .batch = 1, .prefetch = -1};
    sr_plan p;
    sr_error err;
    if (sr_plan_make(&rq, &p, &err)) fail_msg("%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/map.json", test_tmpdir());
    assert_int_equal(sr_device_map_save(path, &p, units, NULL, 0, &err), 0);
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
    assert_int_equal(sr_device_map_save("/nonexistent/dir/x.json", &p, units, NULL, 0, &err), -1);
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
        cmocka_unit_test(test_head_split_follows_lm_head),
        cmocka_unit_test(test_switch_buffer_keys_ignored),
        cmocka_unit_test(test_switch_buffer_names),
        cmocka_unit_test(test_switch_buffers_written),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
