/* --logical-gpus without a GPU: device sets built from fabricated CUDA
 * device listings (planning-only devices), split into logical devices
 * (names, sizes, budgets, indices), the refusals naming the flag, and the
 * planner spreading a model over the logical devices within their budgets,
 * and strata_model_params.logical_gpus reaching the placement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/budget.h"
#include "offload/device.h"
#include "offload/planner.h"
#include "runtime/devices.h"
#include "runtime/strata.h"
#include "test_util.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* A set of n fabricated GPUs (index i, total[i] / free[i] bytes) as
 * "--devices cuda" would list them. */
static void fake_cuda_set(sr_device_set *set, int n, const uint64_t *total, const uint64_t *free_b)
{
    memset(set, 0, sizeof *set);
    sr_device_init_cpu(&set->host);
    for (int i = 0; i < n; i++) {
        sr_device_info info = {.index = i, .total_bytes = total[i], .free_bytes = free_b[i]};
        snprintf(info.name, sizeof info.name, "Fake GPU %d", i);
        sr_device_init_cuda_info(&set->gpu[set->n_gpu++], &info);
    }
}

static void test_one_gpu_in_two(void **state)
{
    (void)state;
    const uint64_t total[] = {24 * GiB + 1}, free_b[] = {20 * GiB + 1};
    sr_device_set set;
    fake_cuda_set(&set, 1, total, free_b);
    assert_string_equal(set.gpu[0].name, "cuda:0");
    sr_error err;
    assert_int_equal(sr_device_set_split_gpus(&set, 2, &err), 0);
    assert_int_equal(set.n_gpu, 2);
    for (int g = 0; g < 2; g++) {
        const sr_device *d = &set.gpu[g];
        char want[32];
        snprintf(want, sizeof want, "cuda:0.%d", g);
        assert_string_equal(d->name, want);
        assert_int_equal(d->kind, SR_DEV_CUDA);
        assert_int_equal(d->gpu, g);
        assert_true(d->total == 12 * GiB);          /* rounded down */
        assert_true(d->free_bytes == 10 * GiB);
        assert_true(d->budget == 10 * GiB);
        assert_null(d->ops);                        /* still planning only */
        assert_true(d->used == 0 && d->n_allocs == 0);
    }
    assert_int_equal(set.host.kind, SR_DEV_CPU);
    assert_string_equal(set.host.name, "cpu");

    /* a split set is not split again; 1 keeps a whole-GPU set */
    assert_int_equal(sr_device_set_split_gpus(&set, 2, &err), -1);
    assert_non_null(strstr(err.msg, "--logical-gpus"));
    assert_non_null(strstr(err.msg, "cuda:0.0"));
    assert_int_equal(set.n_gpu, 2);
    fake_cuda_set(&set, 1, total, free_b);
    assert_int_equal(sr_device_set_split_gpus(&set, 1, &err), 0);
    assert_int_equal(set.n_gpu, 1);
    assert_string_equal(set.gpu[0].name, "cuda:0");
    assert_true(set.gpu[0].budget == free_b[0]);
}

static void test_two_gpus_in_three(void **state)
{
    (void)state;
    const uint64_t total[] = {12 * GiB, 48 * GiB}, free_b[] = {9 * GiB, 30 * GiB};
    sr_device_set set;
    fake_cuda_set(&set, 2, total, free_b);
    set.gpu[1].budget = 3 * GiB;    /* a budget below the free memory is divided too */
    sr_error err;
    assert_int_equal(sr_device_set_split_gpus(&set, 3, &err), 0);
    assert_int_equal(set.n_gpu, 6);
    static const char *names[] = {"cuda:0.0", "cuda:0.1", "cuda:0.2",
                                  "cuda:1.0", "cuda:1.1", "cuda:1.2"};
    for (int g = 0; g < 6; g++) {
        const sr_device *d = &set.gpu[g];
        const int phys = g / 3;
        assert_string_equal(d->name, names[g]);
        assert_int_equal(d->gpu, g);
        assert_int_equal(d->kind, SR_DEV_CUDA);
        assert_true(d->total == total[phys] / 3);
        assert_true(d->free_bytes == free_b[phys] / 3);
        assert_true(d->budget == (phys ? 1 * GiB : 3 * GiB));
    }
}

static void test_refusals(void **state)
{
    (void)state;
    const uint64_t total[] = {8 * GiB, 8 * GiB, 8 * GiB}, free_b[] = {6 * GiB, 6 * GiB, 6 * GiB};
    sr_device_set set;
    sr_error err;
    const int bad_n[] = {0, -1, SR_MAX_DEVICES + 1};
    for (size_t i = 0; i < sizeof bad_n / sizeof *bad_n; i++) {
        fake_cuda_set(&set, 1, total, free_b);
        assert_int_equal(sr_device_set_split_gpus(&set, bad_n[i], &err), -1);
        assert_non_null(strstr(err.msg, "--logical-gpus"));
        assert_non_null(strstr(err.msg, "expected 1.."));
        assert_int_equal(set.n_gpu, 1);
        assert_string_equal(set.gpu[0].name, "cuda:0");
    }

    /* 3 GPUs x 6 = 18 devices > SR_MAX_DEVICES (16): set unchanged */
    fake_cuda_set(&set, 3, total, free_b);
    assert_int_equal(sr_device_set_split_gpus(&set, 6, &err), -1);
    assert_non_null(strstr(err.msg, "--logical-gpus 6"));
    assert_non_null(strstr(err.msg, "18 devices"));
    assert_int_equal(set.n_gpu, 3);
    assert_string_equal(set.gpu[2].name, "cuda:2");
    assert_true(set.gpu[2].budget == 6 * GiB);
    /* exactly SR_MAX_DEVICES is fine */
    fake_cuda_set(&set, 1, total, free_b);
    assert_int_equal(sr_device_set_split_gpus(&set, SR_MAX_DEVICES, &err), 0);
    assert_int_equal(set.n_gpu, SR_MAX_DEVICES);
    assert_string_equal(set.gpu[SR_MAX_DEVICES - 1].name, "cuda:0.15");

    /* sets without CUDA devices */
    assert_int_equal(sr_device_set_parse("cpu", &set, &err), 0);
    assert_int_equal(sr_device_set_split_gpus(&set, 2, &err), -1);
    assert_non_null(strstr(err.msg, "--logical-gpus applies to --devices cuda"));
    assert_int_equal(sr_device_set_parse("sim:2x4MiB", &set, &err), 0);
    assert_int_equal(sr_device_set_split_gpus(&set, 2, &err), -1);
    assert_non_null(strstr(err.msg, "--logical-gpus applies to --devices cuda"));
    assert_non_null(strstr(err.msg, "sim:0"));
    assert_int_equal(set.n_gpu, 2);
}

/* Units of a model: embedding, n_layers layers of `layer` bytes, head. */
static int make_units(sr_plan_unit *u, int n_layers, uint64_t layer)
{
    int n = 0;
    u[n] = (sr_plan_unit){.unit = SR_UNIT_EMBED, .weight_bytes = 256 * MiB, .read_bytes = 4096};
    snprintf(u[n++].name, sizeof u[0].name, "model.embed_tokens");
    for (int i = 0; i < n_layers; i++) {
        u[n] = (sr_plan_unit){.unit = i, .weight_bytes = layer, .kv_bytes = 4 * MiB,
                              .macs = layer * 2};
        snprintf(u[n++].name, sizeof u[0].name, "model.layers.%d", i);
    }
    u[n] = (sr_plan_unit){.unit = SR_UNIT_HEAD, .weight_bytes = 256 * MiB, .macs = 128 * MiB};
    snprintf(u[n++].name, sizeof u[0].name, "lm_head");
    return n;
}

/* Plans `n_units` over a split set with default budgets (free memory) and a
 * small host, and checks the units are spread over every logical device,
 * none beyond its budget, and nothing left on the host. */
static void plan_spread(const sr_device_set *set, const sr_plan_unit *units, int n_units)
{
    sr_model_dims dims = {.vocab = 1024, .hidden = 256, .intermediate = 512, .n_heads = 4,
                          .n_kv_heads = 4, .head_dim = 64, .n_layers = n_units - 2};
    sr_run_shape shape = {.ctx = 64, .batch = 1, .chunk = 64, .threads = 1};
    sr_max_memory mm = {.host_set = true, .host = 2 * GiB};
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int n_tiers;
    sr_error err;
    if (sr_tiers_build(set, &mm, &dims, &shape, tiers, &n_tiers, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n_tiers, set->n_gpu + 1);
    for (int g = 0; g < set->n_gpu; g++) {
        assert_string_equal(tiers[g].name, set->gpu[g].name);
        assert_int_equal(tiers[g].gpu, g);
        assert_true(tiers[g].budget == set->gpu[g].free_bytes);
    }
    sr_plan_request rq = {.units = units, .n_units = n_units, .tiers = tiers, .n_tiers = n_tiers,
                          .strategy = SR_STRATEGY_BALANCED, .host_exec = SR_EXEC_CPU,
                          .batch = 1, .prefetch = -1, .hop_bytes = 1024};
    sr_plan plan;
    if (sr_plan_make(&rq, &plan, &err)) fail_msg("%s", err.msg);
    int on[SR_MAX_DEVICES + 1] = {0};
    for (int u = 0; u < n_units; u++) {
        assert_in_range(plan.units[u].tier, 0, n_tiers - 1);
        on[plan.units[u].tier]++;
    }
    for (int t = 0; t < n_tiers; t++) {
        assert_true(plan.tiers[t].total <= tiers[t].budget);
        assert_int_equal(plan.tiers[t].n_units, on[t]);
        if (t < set->n_gpu && !on[t]) fail_msg("no unit on %s", tiers[t].name);
    }
    assert_int_equal(on[n_tiers - 1], 0);   /* the GPUs hold it all */
    sr_plan_free(&plan);
}

static void test_planner_over_logical_devices(void **state)
{
    (void)state;
    sr_plan_unit units[40];
    sr_error err;
    sr_device_set set;

    /* one 20 GiB GPU as two 10 GiB devices; 14 GiB of layers fit neither
     * half alone */
    const uint64_t total1[] = {24 * GiB}, free1[] = {20 * GiB};
    fake_cuda_set(&set, 1, total1, free1);
    assert_int_equal(sr_device_set_split_gpus(&set, 2, &err), 0);
    plan_spread(&set, units, make_units(units, 14, 1 * GiB));

    /* two GPUs as six devices of 4 GiB */
    const uint64_t total2[] = {16 * GiB, 16 * GiB}, free2[] = {12 * GiB, 12 * GiB};
    fake_cuda_set(&set, 2, total2, free2);
    assert_int_equal(sr_device_set_split_gpus(&set, 3, &err), 0);
    plan_spread(&set, units, make_units(units, 30, 512 * MiB));
}

static void test_api_passes_it_through(void **state)
{
    (void)state;
    strata_model_params mp = strata_model_default_params();
    assert_int_equal(mp.logical_gpus, 0);
    strata_model *m = NULL;
    strata_error e;
    mp.devices = "sim:2x8MiB";
    mp.n_ctx = 32;
    mp.logical_gpus = 2;    /* sim devices are not split */
    assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &e),
                     STRATA_ERR_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(e.message, "--logical-gpus applies to --devices cuda"));
    mp.logical_gpus = -1;
    assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &e),
                     STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(e.message, "--logical-gpus -1"));
    mp.devices = NULL;      /* the CPU alone: nothing to split */
    mp.logical_gpus = 2;
    assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &e),
                     STRATA_ERR_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(e.message, "logical_gpus"));
    mp.devices = "sim:2x8MiB";
    mp.logical_gpus = 1;    /* no split: places as without it */
    assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &e), STRATA_OK);
    strata_model_free(m);

    sr_device_info info[SR_MAX_DEVICES];
    char why[256];
    if (sr_list_devices(info, SR_MAX_DEVICES, why, (int)sizeof why) == 0) {
        mp.devices = "cuda";
        mp.logical_gpus = 2;
        assert_int_equal(strata_model_open(test_data("model/switch-3a"), &mp, &m, &e),
                         STRATA_ERR_UNSUPPORTED);
        assert_null(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_gpu_in_two),
        cmocka_unit_test(test_two_gpus_in_three),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_planner_over_logical_devices),
        cmocka_unit_test(test_api_passes_it_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
