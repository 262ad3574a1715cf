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

#include "offload_layouts.h"
#include "runtime/alloc.h"

/* The plan of `lay` over sim devices sized for the model. */
static int make_plan(const sr_model *m, const sr_unit_list *ul, layout lay, sr_device_set *devs,
                     sr_plan *plan, sr_error *err)
{
    char spec[128];
    const int n_gpu = layout_gpus(lay);
    if (n_gpu) snprintf(spec, sizeof spec, "sim:%dx%llu", n_gpu,
                        2 * (unsigned long long)layout_model_bytes(ul) + (64u << 20));
    else snprintf(spec, sizeof spec, "cpu");
    if (sr_device_set_parse(spec, devs, err)) return -1;
    return layout_plan(m, ul, lay, devs, plan, err);
}

/* Every layout over every golden model: bit-identical to sr_forward. */
static void test_bit_identical_everywhere(void **state)
{
    (void)state;
    layout_check_golden(ALL_HOST, make_plan, 0, true);
}

/* Scenario 5 and 7: 4-bit and 8-bit layers on every tier, streamed or run
 * on the CPU in their stored form (checkpoints made by `strata convert`). */
static void test_quantized_on_every_tier(void **state)
{
    (void)state;
    layout_check_quantized(ALL_HOST, make_plan, 0, true);
}

static void test_stream_bytes_per_token(void **state)
{
    (void)state;
    layout_check_stream_bytes(NEIGHBOURS_STREAM, make_plan);
    layout_check_stream_bytes(SEQUENTIAL_SPILL, make_plan);
}

static void test_errors(void **state)
{
    (void)state;
    sr_error err;
    sr_unit_list ul;
    sr_model *m = layout_load(test_data("model/granite-dense"), &ul);
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
    sr_error err;
    sr_unit_list ul;
    sr_model *m = layout_load(test_data("model/switch-3a"), &ul);
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
