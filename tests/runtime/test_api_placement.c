/* The public C API with placement (strata_model_params.devices and the
 * options of `strata plan`): sessions of a model placed on simulated
 * accelerators give logits bit-identical to the CPU fast path (prefill,
 * decode, prefix reuse, truncation) for every golden model; the placement
 * report matches what the run holds; the bytes streamed per token are the
 * plan's; one session at a time; errors with their codes; allocation
 * failures while placing leave nothing behind (ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime/alloc.h"
#include "runtime/strata.h"
#include "test_util.h"

#define CTX 64
#define MAX_T 32

static const char *models[] = {"switch-3a", "switch-3a-with-buffers", "switch-3a-bf16",
                               "granite-dense"};

/* every layer but the first on the host (streamed or run on the CPU) */
static const char *host_layers_map(void)
{
    static char path[512];
    if (!path[0]) {
        static const char map[] = "{\"model\": \"cpu\", \"model.embed_tokens\": 0, "
                                  "\"model.layers.0\": 1, \"model.norm\": 0, \"lm_head\": 0}";
        snprintf(path, sizeof path, "%s/map.json", test_tmpdir());
        assert_int_equal(test_write_file(path, map, sizeof map - 1), 0);
    }
    return path;
}

typedef struct placement_case {
    const char *name, *devices, *strategy, *host_exec;
    bool map, streams;
} placement_case;

static const placement_case placements[] = {
    {"balanced", "sim:2x8MiB", NULL, NULL, false, false},
    {"sequential", "sim:3x8MiB", "sequential", NULL, false, false},
    {"map + stream", "sim:2x8MiB", NULL, "stream", true, true},
    {"map + cpu", "sim:2x8MiB", NULL, "cpu", true, false},
};

static const char *g_kv_type;     /* strata_model_params.kv_type of every open */

static strata_model *open_placed(const char *dir, const placement_case *pc)
{
    strata_model_params mp = strata_model_default_params();
    mp.n_ctx = CTX;
    mp.kv_type = g_kv_type;
    mp.devices = pc->devices;
    mp.strategy = pc->strategy;
    mp.host_exec = pc->host_exec;
    mp.device_map = pc->map ? host_layers_map() : NULL;
    strata_model *m = NULL;
    strata_error err;
    if (strata_model_open(dir, &mp, &m, &err))
        fail_msg("open %s (%s): %s", dir, pc->name, err.message);
    return m;
}

static strata_model *open_cpu(const char *dir)
{
    strata_model_params mp = strata_model_default_params();
    mp.n_ctx = CTX;
    mp.kv_type = g_kv_type;
    strata_model *m = NULL;
    strata_error err;
    if (strata_model_open(dir, &mp, &m, &err)) fail_msg("open %s: %s", dir, err.message);
    return m;
}

static strata_session *session(const strata_model *m)
{
    strata_session *s = NULL;
    strata_error err;
    if (strata_session_create(m, NULL, &s, &err)) fail_msg("session: %s", err.message);
    return s;
}

/* Token ids of the first golden case of `model` with a control token in the
 * middle (or the first). */
static int case_tokens(const char *model, int32_t *toks)
{
    char rel[256];
    snprintf(rel, sizeof rel, "model/%s/cases/manifest.json", model);
    json_error_t je;
    json_t *man = json_load_file(test_data(rel), 0, &je);
    if (!man) fail_msg("%s: %s", rel, je.text);
    json_t *cases = json_object_get(man, "cases"), *pick = json_array_get(cases, 0), *c;
    size_t i;
    json_array_foreach(cases, i, c)
        if (strstr(json_string_value(json_object_get(c, "name")), "mid")) {
            pick = c;
            break;
        }
    json_t *ids = json_array_get(json_object_get(pick, "input_ids"), 0);
    int n = (int)json_array_size(ids);
    if (n > MAX_T) n = MAX_T;
    for (int j = 0; j < n; j++) toks[j] = (int32_t)json_integer_value(json_array_get(ids, (size_t)j));
    json_decref(man);
    return n;
}

static void same_logits(const strata_session *a, const strata_session *b, size_t V,
                        const char *what)
{
    const float *la = strata_session_logits(a), *lb = strata_session_logits(b);
    assert_non_null(la);
    assert_non_null(lb);
    if (memcmp(la, lb, sizeof(float) * V)) fail_msg("%s: logits differ", what);
}

static void feed(strata_session *s, const int32_t *t, size_t n)
{
    strata_error err;
    if (strata_session_feed(s, t, n, &err)) fail_msg("feed: %s", err.message);
}

/* What the model reports against what the plan counted. */
static void check_placement(const strata_model *m, const placement_case *pc)
{
    strata_placement pl;
    strata_error err;
    assert_int_equal(strata_model_placement(m, &pl, &err), STRATA_OK);
    assert_true(pl.n_tiers >= 3);
    assert_string_equal(pl.tiers[pl.n_tiers - 1].name, "cpu");
    assert_int_equal(pl.ctx, CTX);
    assert_int_equal(pl.async_copies, 0);
    int units = 0;
    for (int t = 0; t < pl.n_tiers; t++) {
        const strata_tier_usage *u = &pl.tiers[t];
        assert_true(u->planned == u->weights + u->kv + u->staging + u->derived + u->reserve);
        assert_true(u->used <= u->planned);
        assert_true(u->planned <= u->budget);
        units += u->n_units;
    }
    strata_model_info mi;
    strata_model_get_info(m, &mi);
    assert_int_equal(units, mi.n_layers + 2);
    if (pc->streams) {
        assert_true(pl.n_streamed > 0);
        assert_non_null(pl.stream_tier);
        assert_string_equal(pl.host_exec, "stream");
        assert_true(pl.stream_bytes_per_token > 0);
    } else {
        assert_int_equal(pl.n_streamed, 0);
        assert_true(pl.stream_bytes_per_token == 0);
    }
    if (pc->strategy) assert_string_equal(pl.strategy, pc->strategy);
    if (pc->map) assert_string_equal(pl.strategy, "map");
}

/* Prefill, greedy decode, prefix reuse and truncation on the placed model
 * against the CPU fast path. */
static void compare(const char *model, const placement_case *pc)
{
    char rel[256];
    snprintf(rel, sizeof rel, "model/%s", model);
    const char *dir = test_data(rel);
    strata_model *cpu = open_cpu(dir), *pm = open_placed(dir, pc);
    check_placement(pm, pc);
    strata_model_info mi;
    strata_model_get_info(cpu, &mi);
    const size_t V = (size_t)mi.vocab_size;
    strata_session *a = session(cpu), *b = session(pm);
    int32_t toks[MAX_T + 8];
    int n = case_tokens(model, toks);
    char what[256];
    snprintf(what, sizeof what, "%s / %s: prefill", model, pc->name);
    feed(a, toks, (size_t)n);
    feed(b, toks, (size_t)n);
    same_logits(a, b, V, what);
    strata_error err;
    for (int i = 0; i < 5; i++) {
        int32_t ta, tb;
        assert_int_equal(strata_session_sample(a, &ta, &err), STRATA_OK);
        assert_int_equal(strata_session_sample(b, &tb, &err), STRATA_OK);
        assert_int_equal(ta, tb);
        strata_session_reset_transfers(b);
        feed(a, &ta, 1);
        feed(b, &tb, 1);
        snprintf(what, sizeof what, "%s / %s: decode step %d", model, pc->name, i);
        same_logits(a, b, V, what);
        /* one pass per token, exactly the planned bytes streamed */
        strata_transfer_stats tr;
        strata_placement pl;
        assert_int_equal(strata_session_transfers(b, &tr, &err), STRATA_OK);
        assert_int_equal(strata_model_placement(pm, &pl, &err), STRATA_OK);
        assert_true(tr.passes == 1 && tr.tokens == 1);
        assert_true(tr.streamed == pl.stream_bytes_per_token);
        assert_true(tr.overlap == 0.0);
        assert_true(tr.copy_s <= tr.run_s);
        toks[n + i] = ta;
    }
    assert_int_equal(strata_session_length(b), (size_t)n + 5);
    for (size_t p = 0; p < (size_t)n + 5; p++)
        assert_int_equal(strata_session_adapter_at(a, p), strata_session_adapter_at(b, p));
    /* a shorter sequence sharing a prefix: the cached positions are kept */
    size_t ra, rb;
    assert_int_equal(strata_session_sync(a, toks, (size_t)n - 1, &ra, &err), STRATA_OK);
    assert_int_equal(strata_session_sync(b, toks, (size_t)n - 1, &rb, &err), STRATA_OK);
    assert_true(ra == rb && rb == (size_t)n - 2);
    snprintf(what, sizeof what, "%s / %s: after sync", model, pc->name);
    same_logits(a, b, V, what);
    strata_session_reset(a);
    strata_session_reset(b);
    feed(a, toks + 1, 3);
    feed(b, toks + 1, 3);
    snprintf(what, sizeof what, "%s / %s: after reset", model, pc->name);
    same_logits(a, b, V, what);
    strata_session_free(a);
    strata_session_free(b);
    /* nothing beyond the model's own placement is left on the devices */
    strata_placement pl;
    assert_int_equal(strata_model_placement(pm, &pl, &err), STRATA_OK);
    for (int t = 0; t < pl.n_tiers; t++) assert_true(pl.tiers[t].used <= pl.tiers[t].planned);
    strata_model_free(cpu);
    strata_model_free(pm);
}

static void test_bit_identical_to_cpu(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        for (size_t p = 0; p < sizeof placements / sizeof *placements; p++)
            compare(models[i], &placements[p]);
}

/* A bf16 KV cache: the same bit-identity, and the tiers hold half the KV
 * bytes of an f32 cache. */
static void test_bf16_cache_bit_identical_to_cpu(void **state)
{
    (void)state;
    g_kv_type = "bf16";
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        for (size_t p = 0; p < sizeof placements / sizeof *placements; p++)
            compare(models[i], &placements[p]);
    const char *dir = test_data("model/switch-3a");
    uint64_t kv[2] = {0, 0};
    for (int b = 0; b < 2; b++) {
        g_kv_type = b ? "bf16" : NULL;
        strata_model *m = open_placed(dir, &placements[0]);
        strata_model_info mi;
        strata_model_get_info(m, &mi);
        assert_string_equal(mi.kv_type, b ? "bf16" : "f32");
        strata_placement pl;
        strata_error err;
        assert_int_equal(strata_model_placement(m, &pl, &err), STRATA_OK);
        for (int t = 0; t < pl.n_tiers; t++) kv[b] += pl.tiers[t].kv;
        strata_model_free(m);
    }
    g_kv_type = NULL;
    assert_true(kv[0] > 0 && kv[1] * 2 == kv[0]);
}

static void test_cpu_path_reports_no_placement(void **state)
{
    (void)state;
    strata_model *m = open_cpu(test_data("model/switch-3a"));
    strata_placement pl;
    strata_error err;
    assert_int_equal(strata_model_placement(m, &pl, &err), STRATA_OK);
    assert_int_equal(pl.n_tiers, 0);
    strata_session *s = session(m);
    int32_t t[2] = {1, 256};
    feed(s, t, 2);
    strata_transfer_stats tr;
    assert_int_equal(strata_session_transfers(s, &tr, &err), STRATA_OK);
    assert_true(tr.passes == 0 && tr.streamed == 0);
    strata_session_free(s);
    strata_model_free(m);
}

static void test_one_session_at_a_time(void **state)
{
    (void)state;
    strata_model *m = open_placed(test_data("model/switch-3a"), &placements[2]);
    strata_session *a = session(m), *b = (strata_session *)1;
    strata_error err;
    assert_int_equal(strata_session_create(m, NULL, &b, &err), STRATA_ERR_STATE);
    assert_null(b);
    assert_non_null(strstr(err.message, "one session at a time"));
    int32_t t[3] = {1, 256, 5};
    feed(a, t, 3);
    strata_session_free(a);
    /* a fresh session starts empty */
    a = session(m);
    assert_int_equal(strata_session_length(a), 0);
    assert_null(strata_session_logits(a));
    strata_session_free(a);
    /* the context is the planned one at most */
    strata_session_params sp = strata_session_default_params();
    sp.n_ctx = CTX + 1;
    assert_int_equal(strata_session_create(m, &sp, &a, &err), STRATA_ERR_CONTEXT);
    assert_non_null(strstr(err.message, "planned"));
    sp.n_ctx = 4;
    assert_int_equal(strata_session_create(m, &sp, &a, &err), STRATA_OK);
    assert_int_equal(strata_session_ctx(a), 4);
    int32_t five[5] = {1, 2, 3, 4, 5};
    assert_int_equal(strata_session_feed(a, five, 5, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(strata_session_length(a), 0);
    assert_int_equal(strata_session_feed(a, five, 4, &err), STRATA_OK);
    strata_session_free(a);
    strata_model_free(m);
}

static strata_status try_open(const char *devices, const char *max_memory, const char *strategy,
                              const char *map, int prefetch, strata_error *err)
{
    strata_model_params mp = strata_model_default_params();
    mp.n_ctx = CTX;
    mp.devices = devices;
    mp.max_memory = max_memory;
    mp.strategy = strategy;
    mp.device_map = map;
    mp.prefetch = prefetch;
    strata_model *m = (strata_model *)1;
    strata_status st = strata_model_open(test_data("model/switch-3a"), &mp, &m, err);
    if (st) assert_null(m);
    strata_model_free(st ? NULL : m);
    return st;
}

static void test_errors(void **state)
{
    (void)state;
    strata_error err;
    /* placement options without devices */
    assert_int_equal(try_open(NULL, "cpu=1GiB", NULL, NULL, 0, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "need devices"));
    assert_int_equal(try_open("cpu", NULL, "sequential", NULL, 0, &err), STRATA_ERR_ARGUMENT);
    assert_int_equal(try_open(NULL, NULL, NULL, NULL, 3, &err), STRATA_ERR_ARGUMENT);
    /* malformed options, named */
    assert_int_equal(try_open("sim:2xlots", NULL, NULL, NULL, 0, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "sim:2xlots"));
    assert_int_equal(try_open("sim:1x4MiB", "disk=1GiB", NULL, NULL, 0, &err),
                     STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "disk"));
    assert_int_equal(try_open("sim:1x4MiB", NULL, "fastest", NULL, 0, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "fastest"));
    assert_int_equal(try_open("sim:1x4MiB", NULL, "balanced", host_layers_map(), 0, &err),
                     STRATA_ERR_ARGUMENT);
    assert_int_equal(try_open("sim:1x4MiB", NULL, NULL, NULL, 65, &err), STRATA_ERR_ARGUMENT);
    /* the map names accelerator 1: there is only one */
    assert_int_equal(try_open("sim:1x4MiB", NULL, NULL, host_layers_map(), 0, &err),
                     STRATA_ERR_ARGUMENT);
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-map.json", test_tmpdir());
    assert_int_equal(try_open("sim:1x4MiB", NULL, NULL, missing, 0, &err), STRATA_ERR_IO);
    assert_non_null(strstr(err.message, "no-such-map.json"));
    /* nothing fits: out of memory, saying what to raise */
    assert_int_equal(try_open("sim:1x64KiB", "cpu=256KiB", NULL, NULL, 0, &err),
                     STRATA_ERR_MEMORY);
    assert_non_null(strstr(err.message, "--max-memory"));
    /* streaming that cannot be had when asked for */
    strata_model_params mp = strata_model_default_params();
    mp.devices = "sim:1x64KiB";
    mp.host_exec = "stream";
    mp.n_ctx = CTX;
    strata_model *m;
    assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &err),
                     STRATA_ERR_MEMORY);
    assert_non_null(strstr(err.message, "stream"));
    /* real GPUs: unsupported where the build or the machine has none */
    strata_status st = try_open("cuda", NULL, NULL, NULL, 0, &err);
    assert_true(st == STRATA_OK || st == STRATA_ERR_UNSUPPORTED);
    if (st) assert_non_null(strstr(err.message, "cuda"));
}

/* Every allocation while placing may fail: a clean error, nothing left
 * behind (ASan reports leaks). */
static void test_alloc_failures(void **state)
{
    (void)state;
    strata_model_params mp = strata_model_default_params();
    mp.n_ctx = 16;
    mp.devices = "sim:2x8MiB";
    mp.device_map = host_layers_map();
    mp.host_exec = "stream";
    for (long k = 0;; k++) {
        strata_model *m = (strata_model *)1;
        strata_error err;
        sr_alloc_fail_after(k);
        strata_status st = strata_model_open(test_data("model/switch-3a"), &mp, &m, &err);
        sr_alloc_fail_after(-1);
        if (st == STRATA_OK) {
            assert_true(k > 20);
            strata_model_free(m);
            break;
        }
        assert_null(m);
        assert_true(err.message[0] != 0);
    }
}

int main(void)
{
    /* The CPU runs compare with the row-major kernels a placement runs: a
     * CPU run's bf16 tiles sum in another order (test_bf16_tiles checks
     * those against the untiled kernels). */
    setenv("STRATA_BF16_TILES", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical_to_cpu),
        cmocka_unit_test(test_bf16_cache_bit_identical_to_cpu),
        cmocka_unit_test(test_cpu_path_reports_no_placement),
        cmocka_unit_test(test_one_session_at_a_time),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
