/* tools/bandwidth.c: bw_read_regions reads every byte it is given, once,
 * whatever the alignment and length of each region and the thread count,
 * and reports a rate; the probe's passes and reads report a rate too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "tools/bandwidth.h"

/* One byte set at a time: the checksum counts it once (as a byte, or
 * inside its little-endian word) when a region covers it, never otherwise. */
static void test_read_regions_every_byte_once(void **state)
{
    (void)state;
    enum { N = 400 };
    uint8_t *buf = calloc(1, N);
    assert_non_null(buf);
    /* unaligned starts; lengths below, at and around a word and a 4-word step */
    const size_t spans[][2] = {{1, 1}, {3, 7}, {11, 31}, {48, 32}, {81, 33},
                               {120, 100}, {230, 0}, {233, 165}};
    const size_t nr = sizeof spans / sizeof spans[0];
    bw_region r[sizeof spans / sizeof spans[0]];
    for (size_t i = 0; i < nr; i++) r[i] = (bw_region){buf + spans[i][0], spans[i][1]};
    for (int threads = 1; threads <= 3; threads++)
        for (size_t k = 0; k < N; k++) {
            int covered = 0;
            for (size_t i = 0; i < nr; i++)
                covered += k >= spans[i][0] && k < spans[i][0] + spans[i][1];
            buf[k] = 1;
            uint64_t sum = 0;
            assert_true(bw_read_regions(r, nr, threads, &sum) >= 0);
            buf[k] = 0;
            const uint64_t in_word = (uint64_t)1 << (8 * ((uintptr_t)(buf + k) & 7));
            if (covered) assert_true(sum == 1 || sum == in_word);
            else assert_int_equal(sum, 0);
        }
    free(buf);
}

static void test_probe_rates(void **state)
{
    (void)state;
    bw_probe p;
    assert_int_equal(bw_probe_open(&p, 2), 0);
    assert_true(bw_probe_pass(&p) > 0);
    assert_true(bw_probe_read(&p, 1 << 20) > 0);
    bw_probe_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_regions_every_byte_once),
        cmocka_unit_test(test_probe_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
