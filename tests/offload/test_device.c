/* The device layer: sim budgets enforced to the byte, every byte moved
 * between tiers counted, --devices parsing, failed allocations clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/device.h"
#include "runtime/alloc.h"
#include "test_util.h"

static void test_sim_budget_exact(void **state)
{
    (void)state;
    sr_device d;
    sr_device_init_sim(&d, 0, 1000);
    sr_error err;
    sr_dbuf a, b, c;
    assert_int_equal(sr_dev_alloc(&d, 600, &a, &err), 0);
    assert_int_equal(sr_dev_alloc(&d, 400, &b, &err), 0);   /* exactly full */
    assert_true(d.used == 1000 && d.peak == 1000);
    assert_int_equal(sr_dev_alloc(&d, 1, &c, &err), -1);
    assert_non_null(strstr(err.msg, "sim:0"));
    assert_non_null(strstr(err.msg, "budget"));
    assert_null(c.ptr);
    sr_dev_free(&a);
    assert_true(d.used == 400);
    assert_int_equal(sr_dev_alloc(&d, 601, &c, &err), -1);
    assert_int_equal(sr_dev_alloc(&d, 600, &c, &err), 0);
    sr_dev_free(&b);
    sr_dev_free(&c);
    assert_true(d.used == 0 && d.n_allocs == 0 && d.peak == 1000);
    assert_int_equal(sr_dev_alloc(&d, SIZE_MAX, &c, &err), -1);   /* no overflow */
}

static void test_bytes_moved(void **state)
{
    (void)state;
    sr_device host, g0, g1;
    sr_device_init_cpu(&host);
    sr_device_init_sim(&g0, 0, 1 << 20);
    sr_device_init_sim(&g1, 1, 1 << 20);
    sr_error err;
    sr_dbuf h, a, a2, b;
    assert_int_equal(sr_dev_alloc(&host, 4096, &h, &err), 0);
    assert_int_equal(sr_dev_alloc(&g0, 4096, &a, &err), 0);
    assert_int_equal(sr_dev_alloc(&g0, 4096, &a2, &err), 0);
    assert_int_equal(sr_dev_alloc(&g1, 4096, &b, &err), 0);
    for (int i = 0; i < 4096; i++) ((unsigned char *)h.ptr)[i] = (unsigned char)i;
    assert_int_equal(sr_dev_copy(&a, 0, &h, 0, 4096, &err), 0);        /* h2d */
    assert_int_equal(sr_dev_copy(&b, 100, &a, 0, 1000, &err), 0);      /* d2d */
    assert_int_equal(sr_dev_copy(&a2, 0, &a, 0, 4096, &err), 0);       /* local: free */
    unsigned char back[1000];
    assert_int_equal(sr_dev_download(back, &b, 100, 1000, &err), 0);   /* d2h */
    assert_memory_equal(back, h.ptr, 1000);
    unsigned char raw[64] = {1, 2, 3};
    assert_int_equal(sr_dev_upload(&b, 0, raw, 64, &err), 0);         /* h2d from no device */
    assert_true(g0.moved.h2d == 4096 && g0.moved.d2d_out == 1000 && g0.moved.d2h == 0);
    assert_true(g1.moved.d2d_in == 1000 && g1.moved.d2h == 1000 && g1.moved.h2d == 64);
    assert_true(host.moved.h2d == 0 && host.moved.d2h == 0);
    assert_memory_equal(a2.ptr, h.ptr, 4096);
    /* out of range fails without copying */
    assert_int_equal(sr_dev_copy(&b, 4000, &a, 0, 200, &err), -1);
    assert_non_null(strstr(err.msg, "outside"));
    assert_int_equal(sr_dev_download(back, &b, 4095, 2, &err), -1);
    assert_true(g1.moved.d2h == 1000);
    sr_dev_reset_stats(&g0);
    assert_true(g0.moved.h2d == 0);
    /* streams and events are no-ops that succeed */
    sr_stream s;
    sr_event e;
    assert_int_equal(sr_stream_create(&g0, &s, &err), 0);
    assert_int_equal(sr_event_record(&e, &s, &err), 0);
    assert_int_equal(sr_event_wait(&s, &e, &err), 0);
    assert_int_equal(sr_stream_sync(&s, &err), 0);
    sr_stream_destroy(&s);
    sr_dev_free(&h);
    sr_dev_free(&a);
    sr_dev_free(&a2);
    sr_dev_free(&b);
}

static void test_device_set_parse(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error err;
    assert_int_equal(sr_device_set_parse("sim:2x512MiB,sim:1x1GiB", &set, &err), 0);
    assert_int_equal(set.n_gpu, 3);
    assert_string_equal(set.gpu[2].name, "sim:2");
    assert_true(set.gpu[0].budget == 512ull << 20 && set.gpu[2].budget == 1ull << 30);
    assert_int_equal(set.gpu[1].gpu, 1);
    assert_string_equal(set.host.name, "cpu");
    assert_int_equal(sr_device_set_parse("cpu", &set, &err), 0);
    assert_int_equal(set.n_gpu, 0);
    assert_int_equal(sr_device_set_parse("sim:4MiB", &set, &err), 0);
    assert_int_equal(set.n_gpu, 1);
    static const char *bad[] = {"sim:0x1GiB", "sim:2xlots", "sim:17x1MiB", "gpu", "disk", "",
                                "sim:1MiB,cpu", "sim:0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (sr_device_set_parse(bad[i], &set, &err) == 0) fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(set.n_gpu, 0);
    }
    assert_int_equal(sr_device_set_parse("sim:9x1MiB,sim:8x1MiB", &set, &err), -1);
    assert_non_null(strstr(err.msg, "more than 16"));
}

static void test_alloc_failure_is_clean(void **state)
{
    (void)state;
    sr_device d;
    sr_device_init_sim(&d, 0, 1 << 20);
    sr_error err;
    sr_dbuf b;
    sr_alloc_fail_after(0);
    int rc = sr_dev_alloc(&d, 100, &b, &err);
    sr_alloc_fail_after(-1);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_true(d.used == 0 && d.n_allocs == 0);
    sr_device_set set;
    for (long n = 0; n < 3; n++) {
        sr_alloc_fail_after(n);
        rc = sr_device_set_parse("sim:2x1MiB", &set, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) break;
        assert_non_null(strstr(err.msg, "out of memory"));
    }
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_budget_exact),
        cmocka_unit_test(test_bytes_moved),
        cmocka_unit_test(test_device_set_parse),
        cmocka_unit_test(test_alloc_failure_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
