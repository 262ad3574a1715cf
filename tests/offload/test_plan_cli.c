/* `strata plan` end to end on the golden models with simulated devices:
 * the table, the JSON, --save-device-map / --device-map round trip, the
 * derived adapter keys never placed (but named in saved maps, as upstream's
 * buffers), accelerate maps that split the head, and the failures with their
 * messages. */
#include <jansson.h>
#include <setjmp.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/devices.h"
#include "test_util.h"

typedef struct run_result {
    int rc;
    char *out, *err;
} run_result;

/* Runs `strata plan ARGS`; stdout and stderr captured separately. */
static run_result plan(const char *fmt, ...)
{
    char args[2048], cmd[4096], out_path[512], err_path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(out_path, sizeof out_path, "%s/out.txt", test_tmpdir());
    snprintf(err_path, sizeof err_path, "%s/err.txt", test_tmpdir());
    const char *exe = getenv("STRATA_EXE");
    assert_non_null(exe);
    snprintf(cmd, sizeof cmd, "'%s' plan %s >'%s' 2>'%s'", exe, args, out_path, err_path);
    int st = system(cmd);
    run_result r = {.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1};
    r.out = test_read_file(out_path, NULL);
    r.err = test_read_file(err_path, NULL);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void done(run_result *r)
{
    free(r->out);
    free(r->err);
}

static void expect_in(const char *text, const char *what)
{
    if (!strstr(text, what)) fail_msg("output lacks '%s':\n%s", what, text);
}

static void test_table(void **state)
{
    (void)state;
    run_result r = plan("--model '%s' --devices sim:2x4MiB --max-memory cpu=64MiB --ctx 64",
                        test_data("model/switch-3a"));
    if (r.rc) fail_msg("rc %d: %s", r.rc, r.err);
    static const char *want[] = {"model.embed_tokens", "model.layers.2", "lm_head", "sim:1",
                                 "reserve", "workspace", "budget from", "per tier", "streaming",
                                 "predicted", "tokens/s", "ctx 64, batch 1", "shares the embedding",
                                 "time model", "balanced: in sim:0's share"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) expect_in(r.out, want[i]);
    done(&r);
}

static json_t *plan_json(const char *args_fmt, const char *model, const char *extra)
{
    char args[1024];
    snprintf(args, sizeof args, args_fmt, model);
    run_result r = plan("%s %s --json", args, extra ? extra : "");
    if (r.rc) fail_msg("rc %d: %s", r.rc, r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    if (!j) fail_msg("bad JSON (%s): %s", je.text, r.out);
    done(&r);
    return j;
}

static void check_json_plan(json_t *j, int n_units)
{
    json_t *units = json_object_get(j, "units"), *tiers = json_object_get(j, "tiers");
    assert_int_equal(json_array_size(units), n_units);
    size_t i;
    json_t *t;
    long long weights = 0, unit_weights = 0;
    json_array_foreach(tiers, i, t) {
        long long total = json_integer_value(json_object_get(t, "total"));
        long long budget = json_integer_value(json_object_get(t, "budget"));
        assert_true(total <= budget);
        weights += json_integer_value(json_object_get(t, "weights"));
    }
    json_t *u;
    json_array_foreach(units, i, u) {
        const char *tier = json_string_value(json_object_get(u, "tier"));
        bool found = false;
        size_t k;
        json_array_foreach(tiers, k, t)
            found |= !strcmp(tier, json_string_value(json_object_get(t, "name")));
        assert_true(found);
        unit_weights += json_integer_value(json_object_get(u, "weight_bytes"));
        assert_true(strlen(json_string_value(json_object_get(u, "reason"))) > 0);
    }
    assert_true(weights == unit_weights);
    assert_true(json_real_value(json_object_get(j, "tokens_per_s")) > 0);
    assert_int_equal(json_integer_value(json_object_get(j, "derived_keys_placed")), 0);
}

static void test_json_and_round_trip(void **state)
{
    (void)state;
    char map[512];
    snprintf(map, sizeof map, "--save-device-map '%s/map.json'", test_tmpdir());
    json_t *a = plan_json("--model '%s' --devices sim:3x1MiB --strategy sequential --ctx 32",
                          test_data("model/granite-dense"), map);
    check_json_plan(a, 5);
    assert_string_equal(json_string_value(json_object_get(a, "strategy")), "sequential");
    snprintf(map, sizeof map, "--device-map '%s/map.json'", test_tmpdir());
    json_t *b = plan_json("--model '%s' --devices sim:3x1MiB --ctx 32",
                          test_data("model/granite-dense"), map);
    check_json_plan(b, 5);
    assert_string_equal(json_string_value(json_object_get(b, "strategy")), "map");
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(json_object_get(a, "units"), i), "tier")),
            json_string_value(json_object_get(json_array_get(json_object_get(b, "units"), i), "tier")));
    json_decref(a);
    json_decref(b);
}

/* --kv-type bf16: every layer's KV bytes halve, named in the output; a bad
 * type is a usage error naming the flag. */
static void test_kv_type(void **state)
{
    (void)state;
    const char *args = "--model '%s' --devices sim:2x4MiB --ctx 64";
    json_t *a = plan_json(args, test_data("model/switch-3a"), NULL);
    json_t *b = plan_json(args, test_data("model/switch-3a"), "--kv-type bf16");
    assert_string_equal(json_string_value(json_object_get(a, "kv_type")), "f32");
    assert_string_equal(json_string_value(json_object_get(b, "kv_type")), "bf16");
    json_t *ua = json_object_get(a, "units"), *ub = json_object_get(b, "units");
    assert_int_equal(json_array_size(ua), json_array_size(ub));
    long long layers = 0;
    for (size_t i = 0; i < json_array_size(ua); i++) {
        long long ka = json_integer_value(json_object_get(json_array_get(ua, i), "kv_bytes"));
        long long kb = json_integer_value(json_object_get(json_array_get(ub, i), "kv_bytes"));
        assert_true(kb * 2 == ka);
        layers += ka > 0;
    }
    assert_int_equal(layers, 3);
    json_decref(a);
    json_decref(b);
    run_result r = plan("--model '%s' --ctx 64 --kv-type f16", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--kv-type 'f16'");
    done(&r);
}

static void test_derived_keys_never_placed(void **state)
{
    (void)state;
    json_t *j = plan_json("--model '%s' --devices sim:2x2MiB --ctx 32",
                          test_data("model/switch-3a-with-buffers"), NULL);
    check_json_plan(j, 5);
    assert_int_equal(json_integer_value(json_object_get(j, "derived_keys_ignored")), 3);
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "adapter_token_ids"));
    assert_null(strstr(dump, "token_to_group_mask"));
    free(dump);
    json_decref(j);
    run_result r = plan("--model '%s' --devices sim:2x2MiB --ctx 32",
                        test_data("model/switch-3a-with-buffers"));
    assert_int_equal(r.rc, 0);
    expect_in(r.out, "3 derived adapter keys in the checkpoint: never placed");
    done(&r);
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s: %s", path, je.text);
    return j;
}

static const char *device_of(json_t *map, const char *key)
{
    static char buf[4][16];
    static int k;
    char *b = buf[k++ & 3];
    json_t *v = json_object_get(map, key);
    if (json_is_integer(v)) snprintf(b, sizeof buf[0], "%lld", (long long)json_integer_value(v));
    else snprintf(b, sizeof buf[0], "%s", json_is_string(v) ? json_string_value(v) : "(none)");
    return b;
}

/* A copy of switch-3a whose config.json is another generation's (same
 * weights: only the config says which switch it is). */
static const char *switch_variant(const char *name, const char *set_json, const char *drop)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    mkdir(dir, 0700);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    assert_int_equal(symlink(test_data("model/switch-3a/model.safetensors"), path), 0);
    json_t *cfg = load_json(test_data("model/switch-3a/config.json"));
    json_t *set = json_loads(set_json, 0, NULL);
    assert_non_null(set);
    assert_int_equal(json_object_update(cfg, set), 0);
    json_decref(set);
    char keys[256];
    snprintf(keys, sizeof keys, "%s", drop ? drop : "");
    for (char *save, *k = strtok_r(keys, ",", &save); k; k = strtok_r(NULL, ",", &save))
        json_object_del(cfg, k);
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(json_dump_file(cfg, path, 0), 0);
    json_decref(cfg);
    return dir;
}

/* --save-device-map names upstream's buffers of the model's generation, on
 * the embedding's device, so transformers' from_pretrained accepts the map;
 * strata's own plan output still never places them. */
static void test_saved_map_names_switch_buffers(void **state)
{
    (void)state;
    static const struct {
        const char *name, *set, *drop, *buffers[4];
    } cases[] = {
        {"gen-a", "{}", NULL, {"model.adapter_token_ids", "model.token_to_group_mask",
                               "model.adapter_hiding_matrix"}},
        {"gen-b-19b633a2", "{\"control_dims\": 0, \"hiding_groups\": null, \"hiding_policy\": "
         "null, \"adapter_substitute_token_ids\": [5, 6, 7]}", NULL,
         {"model.adapter_token_ids", "model.adapter_substitute_token_ids",
          "model.control_to_substitute_lut"}},
        {"gen-b-b0df50b1", "{\"adapter_substitute_token_ids\": [5, 6, 7]}",
         "control_dims,hiding_groups,hiding_policy",
         {"model.adapter_token_ids", "model.switch.control_to_substitute_lut"}},
        {"gen-c", "{\"ms_code_m\": 6, \"num_hidden_layers\": 5, "
         "\"adapter_substitute_token_ids\": [5, 6, 7]}",
         "control_dims,hiding_groups,hiding_policy,layer_types",
         {"model.adapter_token_ids", "model.switch.codebook",
          "model.switch.control_to_substitute_lut"}},
    };
    static const char *all[] = {"model.adapter_token_ids", "model.token_to_group_mask",
                                "model.adapter_hiding_matrix", "model.adapter_substitute_token_ids",
                                "model.control_to_substitute_lut",
                                "model.switch.control_to_substitute_lut", "model.switch.codebook"};
    char map[512], in[512];
    snprintf(map, sizeof map, "%s/switch-map.json", test_tmpdir());
    snprintf(in, sizeof in, "%s/embed-on-1.json", test_tmpdir());
    /* the embedding (and the tied head) on accelerator 1, the layers on 0 */
    static const char embed_on_1[] = "{\"model.embed_tokens\": 1, \"model.layers\": 0, "
                                     "\"model.norm\": 1, \"lm_head\": 1}";
    assert_int_equal(test_write_file(in, embed_on_1, sizeof embed_on_1 - 1), 0);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *model = switch_variant(cases[c].name, cases[c].set, cases[c].drop);
        for (int explicit = 0; explicit < 2; explicit++) {
            run_result r = plan("--model '%s' --devices sim:2x4MiB --ctx 32 %s%s%s "
                                "--save-device-map '%s'", model, explicit ? "--device-map '" : "",
                                explicit ? in : "", explicit ? "'" : "", map);
            if (r.rc) fail_msg("%s: rc %d: %s", cases[c].name, r.rc, r.err);
            done(&r);
            json_t *m = load_json(map);
            const char *embed = device_of(m, "model.embed_tokens");
            assert_string_equal(embed, explicit ? "1" : "0");
            for (size_t n = 0; n < 4 && cases[c].buffers[n]; n++)
                if (strcmp(device_of(m, cases[c].buffers[n]), embed))
                    fail_msg("%s: %s on %s, the embedding on %s", cases[c].name,
                             cases[c].buffers[n], device_of(m, cases[c].buffers[n]), embed);
            json_decref(m);
        }
        json_t *m = load_json(map);
        size_t n = 0;
        while (n < 4 && cases[c].buffers[n]) n++;
        size_t named = 0;
        for (size_t k = 0; k < sizeof all / sizeof *all; k++) named += !!json_object_get(m, all[k]);
        if (named != n)
            fail_msg("%s: %zu derived keys in the map, want %zu", cases[c].name, named, n);
        json_decref(m);
        /* the saved map reads back (its buffer keys ignored), and --json
         * lists no derived key among the units */
        char args[1200];
        snprintf(args, sizeof args, "--model '%%s' --devices sim:2x4MiB --ctx 32 --device-map '%s'",
                 map);
        json_t *j = plan_json(args, model, NULL);
        char *dump = json_dumps(json_object_get(j, "units"), 0);
        for (size_t k = 0; k < sizeof all / sizeof *all; k++) assert_null(strstr(dump, all[k]));
        free(dump);
        assert_int_equal(json_integer_value(json_object_get(j, "derived_keys_placed")), 0);
        json_decref(j);
    }
    /* a plain model: no switch keys */
    run_result r = plan("--model '%s' --devices sim:2x1MiB --ctx 32 --save-device-map '%s'",
                        test_data("model/granite-dense"), map);
    assert_int_equal(r.rc, 0);
    done(&r);
    char *text = test_read_file(map, NULL);
    assert_null(strstr(text, "adapter"));
    assert_null(strstr(text, "switch"));
    free(text);
}

/* accelerate puts model.norm and lm_head on different devices; strata keeps
 * its head unit whole where lm_head is, says so on stderr, and saves the
 * head's actual placement */
static void test_head_split_by_accelerate(void **state)
{
    (void)state;
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/accelerate.json", test_tmpdir());
    snprintf(out, sizeof out, "%s/back.json", test_tmpdir());
    static const char map[] = "{\"model.embed_tokens\": 0, \"lm_head\": 0, \"model.switch\": 0, "
        "\"model.layers.0\": 1, \"model.layers.1\": \"cpu\", \"model.layers.2\": \"cpu\", "
        "\"model.norm\": \"cpu\", \"model.rotary_emb\": \"cpu\"}";
    assert_int_equal(test_write_file(in, map, sizeof map - 1), 0);
    run_result r = plan("--model '%s' --devices sim:2x4MiB --ctx 32 --device-map '%s' "
                        "--save-device-map '%s'", test_data("model/switch-3a-with-buffers"), in,
                        out);
    if (r.rc) fail_msg("rc %d: %s", r.rc, r.err);
    expect_in(r.err, "model.norm is on cpu but lm_head on 0: strata keeps the final norm with "
                     "lm_head (one unit, the head) and places both on 0");
    assert_non_null(strchr(r.err, '\n'));
    assert_null(strchr(strchr(r.err, '\n') + 1, '\n'));      /* one line */
    done(&r);
    json_t *back = load_json(out);
    assert_string_equal(device_of(back, "model.norm"), "0");
    assert_string_equal(device_of(back, "lm_head"), "0");
    assert_string_equal(device_of(back, "model.embed_tokens"), "0");
    assert_string_equal(device_of(back, "model.layers.0"), "1");
    assert_string_equal(device_of(back, "model.layers.1"), "cpu");
    assert_string_equal(device_of(back, "model.layers.2"), "cpu");
    assert_string_equal(device_of(back, "model.adapter_hiding_matrix"), "0");
    json_decref(back);
    /* an agreeing head prints nothing */
    static const char agree[] = "{\"model\": 1, \"lm_head\": 1}";
    assert_int_equal(test_write_file(in, agree, sizeof agree - 1), 0);
    r = plan("--model '%s' --devices sim:2x4MiB --ctx 32 --device-map '%s'",
             test_data("model/switch-3a-with-buffers"), in);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.err[0], 0);
    done(&r);
}

/* sim:0 holds two staging slots plus the streamed layers' KV caches and
 * their f32 norms and LoRA stacks (counted where they run) */
static void test_streaming_plan(void **state)
{
    (void)state;
    run_result r = plan("--model '%s' --devices sim:1x800KiB --max-memory cpu=64MiB --ctx 16 "
                        "--host-exec stream", test_data("model/switch-3a"));
    if (r.rc) fail_msg("rc %d: %s", r.rc, r.err);
    expect_in(r.out, "streaming 3 layers through sim:0");
    expect_in(r.out, "stream>sim:0");
    expect_in(r.out, "requested: host layers stream through sim:0");
    done(&r);
    r = plan("--model '%s' --devices sim:1x800KiB --max-memory cpu=64MiB --ctx 16 "
             "--host-exec cpu", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 0);
    expect_in(r.out, "streaming none");
    done(&r);
    /* the time model decides auto, and its parameters can be given */
    r = plan("--model '%s' --devices sim:1x800KiB --max-memory cpu=64MiB --ctx 16",
             test_data("model/switch-3a"));
    assert_int_equal(r.rc, 0);
    expect_in(r.out, "auto: host layers stream through sim:0");
    done(&r);
    r = plan("--model '%s' --devices sim:1x800KiB --max-memory cpu=64MiB --ctx 16 "
             "--perf link=1G,cpu_bw=50GB/s,latency=5us", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 0);
    expect_in(r.out, "auto: host layers run on the CPU");
    expect_in(r.out, "1.0 GB/s host link, 5 us");
    expect_in(r.out, "--perf applied");
    done(&r);
    r = plan("--model '%s' --perf warp=9", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "unknown key");
    done(&r);
}

static void test_failures(void **state)
{
    (void)state;
    run_result r = plan("--model '%s' --devices sim:1x100KiB --max-memory cpu=600KiB --ctx 16",
                        test_data("model/switch-3a"));
    assert_int_equal(r.rc, 1);
    expect_in(r.err, "fits on no tier");
    expect_in(r.err, "--max-memory");
    assert_int_equal(r.out[0], 0);
    done(&r);

    char path[512];
    snprintf(path, sizeof path, "%s/disk.json", test_tmpdir());
    static const char disk[] = "{\"model\": 0, \"lm_head\": \"disk\"}";
    assert_int_equal(test_write_file(path, disk, sizeof disk - 1), 0);
    r = plan("--model '%s' --devices sim:1x4MiB --device-map '%s'", test_data("model/switch-3a"),
             path);
    assert_int_equal(r.rc, 1);
    expect_in(r.err, "does not offload to disk");
    done(&r);

    r = plan("--model '%s' --max-memory disk=1GiB", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 1);
    expect_in(r.err, "'disk'");
    done(&r);

    r = plan("--model '%s' --devices sim:1x4MiB --max-memory 1=1GiB",
             test_data("model/switch-3a"));
    assert_int_equal(r.rc, 1);
    expect_in(r.err, "accelerator 1 does not exist");
    done(&r);

    r = plan("--model '%s' --strategy fastest", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--strategy fastest");
    done(&r);
    r = plan("--devices sim:1x4MiB");
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--model DIR is required");
    done(&r);
    r = plan("--model '%s' --strategy balanced --device-map x.json", test_data("model/switch-3a"));
    assert_int_equal(r.rc, 2);
    done(&r);
    r = plan("--model /nonexistent/model");
    assert_int_equal(r.rc, 1);
    expect_in(r.err, "/nonexistent/model");
    done(&r);
}

/* --logical-gpus: refused naming the flag without --devices cuda or with a
 * bad count; with --devices cuda the GPUs present are split (without one,
 * the usual no-CUDA failure). */
static void test_logical_gpus(void **state)
{
    (void)state;
    const char *m = test_data("model/switch-3a");
    run_result r = plan("--model '%s' --devices sim:2x4MiB --logical-gpus 2", m);
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--logical-gpus applies to --devices cuda");
    done(&r);
    r = plan("--model '%s' --devices cuda --logical-gpus 0", m);
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--logical-gpus 0");
    done(&r);
    r = plan("--model '%s' --devices cuda --logical-gpus 17", m);
    assert_int_equal(r.rc, 2);
    expect_in(r.err, "--logical-gpus 17");
    done(&r);

    sr_device_info info[SR_MAX_DEVICES];
    char why[256];
    const bool have_gpu = sr_list_devices(info, SR_MAX_DEVICES, why, (int)sizeof why) > 0;
    r = plan("--model '%s' --devices cuda --logical-gpus 2 --ctx 64", m);
    if (have_gpu) {
        assert_int_equal(r.rc, 0);
        expect_in(r.out, "cuda:0.0");
        expect_in(r.out, "cuda:0.1");
    } else {
        assert_int_equal(r.rc, 1);
        expect_in(r.err, "--devices: cuda:");
    }
    done(&r);
    if (!have_gpu) {
        r = plan("--model '%s' --logical-gpus 2", m);
        assert_int_equal(r.rc, 1);
        expect_in(r.err, "--logical-gpus: no CUDA device");
        done(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json_and_round_trip),
        cmocka_unit_test(test_kv_type),
        cmocka_unit_test(test_derived_keys_never_placed),
        cmocka_unit_test(test_saved_map_names_switch_buffers),
        cmocka_unit_test(test_head_split_by_accelerate),
        cmocka_unit_test(test_streaming_plan),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_logical_gpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
