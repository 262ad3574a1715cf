/* Budgets: accelerate's size and --max-memory vocabulary, the reserve, the
 * tiers built from a device set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/budget.h"
#include "test_util.h"

static void test_sizes(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } ok[] = {
        {"3GiB", 3ull << 30}, {"512MiB", 512ull << 20}, {"10KiB", 10240}, {"1TiB", 1ull << 40},
        {"5GB", 5000000000ull}, {"300MB", 300000000ull}, {"10KB", 10000}, {"1024", 1024},
        {"1.5GiB", 3ull << 29}, {"3gib", 3ull << 30}, {" 2 MiB", 2ull << 20}, {"0", 0},
        {"7B", 7},
        /* exact to the last byte up to 2^64 - 1 (a double would round them) */
        {"18446744073709551615", UINT64_MAX}, {"18000000000000000000", 18000000000000000000ull},
        {"9007199254740993", 9007199254740993ull}, {"10000000TiB", 10000000ull << 40},
        {"16777215.5TiB", 16777215ull * (1ull << 40) + (1ull << 39)},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        uint64_t v = 1;
        assert_int_equal(sr_parse_size(ok[i].s, &v), 0);
        assert_true(v == ok[i].v);
    }
    static const char *bad[] = {"", "GiB", "-1GiB", "3 GiBs", "1e30GiB", "abc", "3Q", "nan",
                                "inf", "1.5", "0x10", "18446744073709551616",
                                "99999999999999999999", "16777216TiB", "16777216.0TiB"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v;
        if (sr_parse_size(bad[i], &v) == 0) fail_msg("accepted '%s'", bad[i]);
    }
}

static void test_max_memory(void **state)
{
    (void)state;
    sr_max_memory mm;
    sr_error err;
    assert_int_equal(sr_max_memory_parse("cuda:0=3GiB,cuda:1=6GiB,host=20GiB", &mm, &err), 0);
    assert_true(mm.gpu_set[0] && mm.gpu[0] == 3ull << 30);
    assert_true(mm.gpu_set[1] && mm.gpu[1] == 6ull << 30);
    assert_false(mm.gpu_set[2]);
    assert_true(mm.host_set && mm.host == 20ull << 30);
    assert_int_equal(sr_max_memory_parse("0=3GiB, 1 = 512MiB,cpu=1GB", &mm, &err), 0);
    assert_true(mm.gpu[0] == 3ull << 30 && mm.gpu[1] == 512ull << 20 && mm.host == 1000000000ull);
    assert_int_equal(sr_max_memory_parse("sim:2=1MiB", &mm, &err), 0);
    assert_true(mm.gpu_set[2] && !mm.gpu_set[0]);

    assert_int_equal(sr_max_memory_parse("0=3GiB,disk=100GiB", &mm, &err), -1);
    assert_non_null(strstr(err.msg, "'disk'"));
    assert_non_null(strstr(err.msg, "does not offload to disk"));
    assert_false(mm.gpu_set[0]);     /* zeroed on failure */
    assert_int_equal(sr_max_memory_parse("mps=3GiB", &mm, &err), -1);
    assert_non_null(strstr(err.msg, "'mps'"));
    assert_int_equal(sr_max_memory_parse("0=3GiB,cuda:0=1GiB", &mm, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(sr_max_memory_parse("0=lots", &mm, &err), -1);
    assert_non_null(strstr(err.msg, "bad size"));
    assert_int_equal(sr_max_memory_parse("0", &mm, &err), -1);
    assert_non_null(strstr(err.msg, "TIER=SIZE"));
    assert_int_equal(sr_max_memory_parse("16=1GiB", &mm, &err), -1);
    assert_int_equal(sr_max_memory_parse("", &mm, &err), -1);
}

static const sr_model_dims dims = {.vocab = 1000, .hidden = 64, .intermediate = 96, .n_heads = 4,
                                   .n_kv_heads = 2, .head_dim = 16, .n_layers = 3};

static void test_reserve_and_kv(void **state)
{
    (void)state;
    sr_run_shape s = {.ctx = 512, .batch = 1, .chunk = 256, .threads = 2};
    assert_true(sr_kv_layer_bytes(&dims, &s) == 2ull * 2 * 16 * 512 * 4);
    s.batch = 3;
    assert_true(sr_kv_layer_bytes(&dims, &s) == 3ull * 2 * 2 * 16 * 512 * 4);
    s.batch = 1;
    sr_reserve cpu, sim, cuda_default, cuda_given;
    sr_reserve_compute(&dims, &s, SR_DEV_CPU, true, &cpu);
    sr_reserve_compute(&dims, &s, SR_DEV_SIM, true, &sim);
    sr_reserve_compute(&dims, &s, SR_DEV_CUDA, true, &cuda_default);
    sr_reserve_compute(&dims, &s, SR_DEV_CUDA, false, &cuda_given);
    /* every part stated and summed */
    assert_true(cpu.total == cpu.runtime + cpu.workspace + cpu.activations + cpu.logits +
                             cpu.positions);
    assert_true(cpu.logits == 1000 * 4);
    assert_true(cpu.activations == 2ull * 256 * 64 * 4 + 5ull * 256 * 4);
    assert_true(cpu.positions == 512ull * 16);
    assert_true(sim.runtime == 0 && sim.positions == 512ull * 4);
    /* an explicit budget is what strata itself allocates: the CUDA kernels'
     * scratch, not the driver's context */
    const uint64_t ks = sr_cuda_kernel_scratch(&dims, &s);
    assert_true(ks >= SR_CUDA_PREFILL_TILE / 4 * 5 + 256ull * 64 * 2);
    assert_true(cuda_default.runtime == SR_CUDA_RUNTIME_OVERHEAD + ks);
    assert_true(cuda_given.runtime == ks);
    /* more context, more reserve; more batch, more reserve */
    sr_reserve big;
    s.ctx = 4096;
    sr_reserve_compute(&dims, &s, SR_DEV_SIM, true, &big);
    assert_true(big.workspace > sim.workspace);
    s.ctx = 512;
    s.batch = 4;
    sr_reserve_compute(&dims, &s, SR_DEV_SIM, true, &big);
    /* everything per sequence, but the tier's one RoPE table (head_dim / 2 floats) */
    const uint64_t rope = 16 / 2 * 4;
    assert_true(big.total - rope == 4 * (sim.total - rope));
    /* a bf16 cache: half the KV bytes; the CPU's workspace grows by the chunk
     * of widened rows each thread's attention needs (runtime/attention.c) */
    s.batch = 1;
    s.kv_type = SR_KV_BF16;
    assert_true(sr_kv_layer_bytes(&dims, &s) == 2ull * 2 * 16 * 512 * 2);
    sr_reserve cpu_bf16;
    sr_reserve_compute(&dims, &s, SR_DEV_CPU, true, &cpu_bf16);
    assert_true(cpu_bf16.workspace == cpu.workspace + 2ull * 512 * 16 * 4);
}

static void test_tiers_build(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error err;
    assert_int_equal(sr_device_set_parse("sim:2x512MiB,sim:1GiB", &set, &err), 0);
    sr_run_shape s = {.ctx = 128, .batch = 1, .chunk = 128, .threads = 2};
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int n;
    assert_int_equal(sr_tiers_build(&set, NULL, &dims, &s, tiers, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(tiers[0].name, "sim:0");
    assert_string_equal(tiers[2].name, "sim:2");
    assert_string_equal(tiers[3].name, "cpu");
    assert_true(tiers[0].budget == 512ull << 20 && tiers[2].budget == 1ull << 30);
    assert_int_equal(tiers[3].gpu, -1);
    assert_true(tiers[0].reserve > 0 && tiers[0].reserve < tiers[0].budget);
    assert_string_equal(tiers[0].budget_src, "free memory");

    sr_max_memory mm;
    assert_int_equal(sr_max_memory_parse("0=100MiB,2=2GiB,cpu=3GiB", &mm, &err), 0);
    assert_int_equal(sr_tiers_build(&set, &mm, &dims, &s, tiers, &n, &err), 0);
    assert_true(tiers[0].budget == 100ull << 20);
    assert_true(tiers[1].budget == 512ull << 20);
    assert_true(tiers[2].budget == 1ull << 30);     /* capped at the device */
    assert_non_null(strstr(tiers[2].budget_src, "capped"));
    assert_true(tiers[3].budget == 3ull << 30);

    assert_int_equal(sr_max_memory_parse("3=1GiB", &mm, &err), 0);
    assert_int_equal(sr_tiers_build(&set, &mm, &dims, &s, tiers, &n, &err), -1);
    assert_non_null(strstr(err.msg, "accelerator 3 does not exist"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_max_memory),
        cmocka_unit_test(test_reserve_and_kv),
        cmocka_unit_test(test_tiers_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
