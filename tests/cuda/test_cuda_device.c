/* The CUDA backend of the offload device interface (offload/device_cuda.h):
 * device sets (whole GPUs and --logical-gpus slices), budgets, allocation
 * accounting, copies in every direction (synchronous and on streams) with
 * exact byte counters, events ordering two streams, GPU-to-GPU copies
 * (slices of one GPU; peer or host hop between physical GPUs when there are
 * two), the pinned host tier and pool, staging slots for streamed layers,
 * and refused ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "offload/device.h"
#include "offload/device_cuda.h"

static void expect_ok(int rc, const sr_error *e, const char *what)
{
    if (rc) fail_msg("%s: %s", what, e->msg);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
    return p;
}

static void test_device_set(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 1, true, &e), &e, "device set");
    assert_true(set.n_gpu >= 1);
    assert_int_equal(set.gpu[0].kind, SR_DEV_CUDA);
    assert_string_equal(set.gpu[0].name, "cuda:0");
    assert_int_equal(sr_cuda_device_physical(&set.gpu[0]), 0);
    assert_true(set.gpu[0].budget > 0 && set.gpu[0].budget <= set.gpu[0].total);
    assert_int_equal(set.host.kind, SR_DEV_CPU);
    assert_int_equal(sr_cuda_device_physical(&set.host), -1);
    const int n_phys = set.n_gpu;

    sr_device_set two;
    expect_ok(sr_device_set_cuda(&two, 2, false, &e), &e, "logical gpus");
    assert_int_equal(two.n_gpu, 2 * n_phys);
    assert_string_equal(two.gpu[0].name, "cuda:0.0");
    assert_string_equal(two.gpu[1].name, "cuda:0.1");
    assert_int_equal(sr_cuda_device_physical(&two.gpu[1]), 0);
    assert_int_equal(two.gpu[1].gpu, 1);
    assert_int_equal(two.gpu[0].total, set.gpu[0].total / 2);
    assert_true(two.gpu[0].budget <= two.gpu[0].total);

    assert_int_equal(sr_device_set_cuda(&two, 0, false, &e), -1);
    assert_non_null(strstr(e.msg, "--logical-gpus"));
    assert_int_equal(sr_device_set_cuda(&two, SR_MAX_DEVICES + 1, false, &e), -1);
}

static void test_alloc_budget(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 1, false, &e), &e, "device set");
    sr_device *g = &set.gpu[0];
    g->budget = 3u << 20;   /* a small budget to run into */
    sr_dbuf a, b, c;
    expect_ok(sr_dev_alloc(g, 2u << 20, &a, &e), &e, "alloc");
    assert_int_equal(g->used, 2u << 20);
    assert_int_equal(g->n_allocs, 1);
    assert_int_equal(sr_dev_alloc(g, 2u << 20, &b, &e), -1);
    assert_non_null(strstr(e.msg, "cuda:0"));
    assert_null(b.ptr);
    expect_ok(sr_dev_alloc(g, 1u << 20, &c, &e), &e, "alloc to the limit");
    assert_int_equal(g->peak, 3u << 20);
    sr_dev_free(&a);
    sr_dev_free(&c);
    assert_int_equal(g->used, 0);
    assert_int_equal(g->n_allocs, 0);
}

static void test_copies(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 1, true, &e), &e, "device set");
    sr_device *g = &set.gpu[0], *h = &set.host;
    const size_t n = (5u << 20) + 123;
    uint8_t *src = pattern(n, 1), *back = malloc(n);
    sr_dbuf gb, hb;
    expect_ok(sr_dev_alloc(g, n, &gb, &e), &e, "gpu alloc");
    expect_ok(sr_dev_alloc(h, n, &hb, &e), &e, "pinned host alloc");
    sr_dev_reset_stats(g);

    /* synchronous: upload, download */
    expect_ok(sr_cuda_dev_upload(&gb, 0, src, n, NULL, &e), &e, "upload");
    memset(back, 0, n);
    expect_ok(sr_cuda_dev_download(back, &gb, 0, n, NULL, &e), &e, "download");
    assert_memory_equal(back, src, n);
    assert_int_equal(g->moved.h2d, n);
    assert_int_equal(g->moved.d2h, n);

    /* on a stream, with offsets, through the pinned host buffer */
    sr_stream s;
    expect_ok(sr_cuda_stream_create(g, &s, &e), &e, "stream");
    assert_non_null(s.impl);
    memcpy(hb.ptr, src, n);
    expect_ok(sr_cuda_dev_copy(&gb, 100, &hb, 0, n - 100, &s, &e), &e, "host -> gpu");
    memset(hb.ptr, 0, n);
    expect_ok(sr_cuda_dev_copy(&hb, 7, &gb, 100, n - 100, &s, &e), &e, "gpu -> host");
    expect_ok(sr_cuda_stream_sync(&s, &e), &e, "sync");
    assert_memory_equal((uint8_t *)hb.ptr + 7, src, n - 100);
    assert_int_equal(g->moved.h2d, n + (n - 100));
    assert_int_equal(g->moved.d2h, n + (n - 100));

    /* within one GPU buffer (overlap-free halves): no boundary crossed */
    const uint64_t copies = g->moved.n_copies;
    expect_ok(sr_cuda_dev_copy(&gb, 0, &gb, n / 2, n / 2, &s, &e), &e, "gpu -> same gpu");
    expect_ok(sr_cuda_stream_sync(&s, &e), &e, "sync");
    assert_int_equal(g->moved.n_copies, copies);

    /* out of range: refused, naming the device */
    assert_int_equal(sr_cuda_dev_copy(&gb, n - 10, &hb, 0, 11, &s, &e), -1);
    assert_non_null(strstr(e.msg, "cuda:0"));
    assert_int_equal(sr_cuda_dev_download(back, &gb, 1, n, NULL, &e), -1);

    sr_cuda_stream_destroy(&s);
    sr_dev_free(&gb);
    sr_dev_free(&hb);
    free(src);
    free(back);
}

/* Two streams on two devices: the second waits for the first through an event. */
static void test_streams_events_slices(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 2, true, &e), &e, "logical gpus");
    sr_device *g0 = &set.gpu[0], *g1 = &set.gpu[1];
    const size_t n = 8u << 20;
    uint8_t *src = pattern(n, 2), *back = malloc(n);
    sr_dbuf a, b;
    expect_ok(sr_dev_alloc(g0, n, &a, &e), &e, "alloc 0");
    expect_ok(sr_dev_alloc(g1, n, &b, &e), &e, "alloc 1");
    sr_stream s0, s1;
    expect_ok(sr_cuda_stream_create(g0, &s0, &e), &e, "stream 0");
    expect_ok(sr_cuda_stream_create(g1, &s1, &e), &e, "stream 1");
    sr_event ev = {NULL, NULL};
    for (int round = 0; round < 3; round++) {
        uint8_t *p = pattern(n, 10 + (unsigned)round);
        expect_ok(sr_cuda_dev_upload(&a, 0, p, n, &s0, &e), &e, "upload");
        expect_ok(sr_cuda_event_record(&ev, &s0, &e), &e, "record");
        expect_ok(sr_cuda_event_wait(&s1, &ev, &e), &e, "wait");
        expect_ok(sr_cuda_dev_copy(&b, 0, &a, 0, n, &s1, &e), &e, "slice -> slice");
        expect_ok(sr_cuda_dev_download(back, &b, 0, n, &s1, &e), &e, "download");
        expect_ok(sr_cuda_stream_sync(&s1, &e), &e, "sync");
        assert_memory_equal(back, p, n);
        expect_ok(sr_cuda_stream_sync(&s0, &e), &e, "sync");   /* p stays valid until here */
        free(p);
    }
    expect_ok(sr_cuda_event_sync(&ev, &e), &e, "event sync");
    assert_int_equal(g0->moved.d2d_out, 3 * n);
    assert_int_equal(g1->moved.d2d_in, 3 * n);
    sr_cuda_event_destroy(&ev);
    sr_cuda_stream_destroy(&s0);
    sr_cuda_stream_destroy(&s1);
    sr_dev_free(&a);
    sr_dev_free(&b);
    free(src);
    free(back);
}

/* Between physical GPUs (only on a machine with two): a peer copy, or the
 * pinned host hop where the pair has no peer access; 40 MiB, so the hop
 * runs in several bounce-buffer chunks. */
static void test_two_gpus(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 1, true, &e), &e, "device set");
    if (set.n_gpu < 2) {
        printf("two physical GPUs: skipped (this machine has %d)\n", set.n_gpu);
        return;
    }
    const size_t n = (40u << 20) + 5;   /* more than the 16 MiB bounce buffer */
    uint8_t *src = pattern(n, 3), *back = malloc(n);
    sr_dbuf a, b;
    expect_ok(sr_dev_alloc(&set.gpu[0], n, &a, &e), &e, "alloc 0");
    expect_ok(sr_dev_alloc(&set.gpu[1], n, &b, &e), &e, "alloc 1");
    expect_ok(sr_cuda_dev_upload(&a, 0, src, n, NULL, &e), &e, "upload");
    printf("peer access 0 <-> 1: %s\n", sr_cuda_peer_enable(0, 1) ? "yes" : "no (host hop)");
    expect_ok(sr_cuda_dev_copy(&b, 0, &a, 0, n, NULL, &e), &e, "gpu 0 -> gpu 1");
    expect_ok(sr_cuda_dev_download(back, &b, 0, n, NULL, &e), &e, "download");
    assert_memory_equal(back, src, n);
    assert_int_equal(set.gpu[1].moved.d2d_in, n);
    sr_dev_free(&a);
    sr_dev_free(&b);
    free(src);
    free(back);
}

static void test_pinned_pool(void **state)
{
    (void)state;
    sr_cuda_pinned_pool p;
    sr_error e;
    expect_ok(sr_cuda_pinned_pool_init(&p, 4096, &e), &e, "pool");
    void *a = sr_cuda_pinned_pool_take(&p, 1000), *b = sr_cuda_pinned_pool_take(&p, 1000);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal((uintptr_t)b % 256, 0);
    assert_true((uint8_t *)b >= (uint8_t *)a + 1000);
    assert_non_null(sr_cuda_pinned_pool_take(&p, 1000));
    assert_null(sr_cuda_pinned_pool_take(&p, 1000));      /* 3 * 1024 + 1000 > 4096 */
    sr_cuda_pinned_pool_reset(&p);
    assert_ptr_equal(sr_cuda_pinned_pool_take(&p, 4096), a);
    assert_null(sr_cuda_pinned_pool_take(&p, 1));
    /* pool memory is pinned: an async upload from it works */
    sr_device_set set;
    expect_ok(sr_device_set_cuda(&set, 1, false, &e), &e, "device set");
    sr_dbuf g;
    expect_ok(sr_dev_alloc(&set.gpu[0], 4096, &g, &e), &e, "alloc");
    sr_stream s;
    expect_ok(sr_cuda_stream_create(&set.gpu[0], &s, &e), &e, "stream");
    memset(a, 0x5a, 4096);
    expect_ok(sr_cuda_dev_upload(&g, 0, a, 4096, &s, &e), &e, "upload");
    uint8_t back[4096];
    expect_ok(sr_cuda_dev_download(back, &g, 0, 4096, &s, &e), &e, "download");
    expect_ok(sr_cuda_stream_sync(&s, &e), &e, "sync");
    for (int i = 0; i < 4096; i++) assert_int_equal(back[i], 0x5a);
    sr_cuda_stream_destroy(&s);
    sr_dev_free(&g);
    sr_cuda_pinned_pool_free(&p);
}

/* Streamed layers through 2 staging slots: 7 "layers" of different bytes,
 * filled ahead (prefetch 1) on the copy stream while the "compute" stream
 * downloads the previous slot; every layer arrives intact and the bytes
 * copied equal the layers' total. */
static void test_staging(void **state)
{
    (void)state;
    sr_device_set set;
    sr_error e;
    expect_ok(sr_device_set_cuda(&set, 1, true, &e), &e, "device set");
    sr_device *g = &set.gpu[0];
    const int layers = 7, slots = 2;
    const size_t bytes = (3u << 20) + 17;
    sr_dbuf host[7];
    for (int j = 0; j < layers; j++) {
        expect_ok(sr_dev_alloc(&set.host, bytes, &host[j], &e), &e, "pinned layer");
        uint8_t *p = pattern(bytes, 100 + (unsigned)j);
        memcpy(host[j].ptr, p, bytes);
        free(p);
    }
    sr_cuda_staging st;
    expect_ok(sr_cuda_staging_init(&st, g, slots, bytes, &e), &e, "staging");
    sr_dev_reset_stats(g);
    sr_stream compute;
    expect_ok(sr_cuda_stream_create(g, &compute, &e), &e, "compute stream");
    uint8_t *seen = malloc(bytes * (size_t)layers);
    expect_ok(sr_cuda_staging_fill(&st, 0, host[0].ptr, bytes, &e), &e, "fill 0");
    for (int j = 0; j < layers; j++) {
        if (j + 1 < layers)
            expect_ok(sr_cuda_staging_fill(&st, (j + 1) % slots, host[j + 1].ptr, bytes, &e), &e, "fill");
        expect_ok(sr_cuda_staging_acquire(&st, j % slots, &compute, &e), &e, "acquire");
        expect_ok(sr_cuda_dev_download(seen + (size_t)j * bytes, &st.slot[j % slots], 0, bytes, &compute, &e),
                  &e, "read slot");
        expect_ok(sr_cuda_staging_release(&st, j % slots, &compute, &e), &e, "release");
    }
    expect_ok(sr_cuda_stream_sync(&compute, &e), &e, "sync");
    for (int j = 0; j < layers; j++)
        if (memcmp(seen + (size_t)j * bytes, host[j].ptr, bytes))
            fail_msg("staging: layer %d arrived corrupted (slot reused too early?)", j);
    assert_int_equal(g->moved.h2d, (uint64_t)layers * bytes);
    assert_int_equal(sr_cuda_staging_fill(&st, slots, host[0].ptr, bytes, &e), -1);
    assert_non_null(strstr(e.msg, "slot"));
    sr_cuda_stream_destroy(&compute);
    sr_cuda_staging_free(&st);
    assert_int_equal(g->used, 0);
    for (int j = 0; j < layers; j++) sr_dev_free(&host[j]);
    free(seen);
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_set),
        cmocka_unit_test(test_alloc_budget),
        cmocka_unit_test(test_copies),
        cmocka_unit_test(test_streams_events_slices),
        cmocka_unit_test(test_two_gpus),
        cmocka_unit_test(test_pinned_pool),
        cmocka_unit_test(test_staging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
