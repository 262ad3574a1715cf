#include "tools/bandwidth.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/alloc.h"

uint64_t bw_llc_bytes(void)
{
    long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v <= 0) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (v <= 0) { /* e.g. a libc without the sysconf extension */
        FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
        unsigned long kib;
        if (f) {
            if (fscanf(f, "%luK", &kib) == 1) v = (long)(kib * 1024);
            fclose(f);
        }
    }
    return v > 0 ? (uint64_t)v : (uint64_t)32 << 20;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Four independent sums: enough loads in flight to saturate DRAM, and the
 * compiler vectorises the loop. */
static uint64_t sum_words(const uint64_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

int bw_measure(int threads, int runs, bw_result *out)
{
    memset(out, 0, sizeof *out);
    uint64_t llc = bw_llc_bytes(), bytes = 4 * llc;
    if (bytes < ((uint64_t)64 << 20)) bytes = (uint64_t)64 << 20;
    size_t words = (size_t)(bytes / sizeof(uint64_t)) & ~(size_t)4095;
    bytes = words * sizeof(uint64_t);
    uint64_t *buf = sr_malloc_aligned(bytes);
    if (!buf) return -1;
    if (threads < 1) threads = 1;
    if (runs < 1) runs = 1;
    size_t per = words / (size_t)threads & ~(size_t)3;

    /* First touch by the threads that read it (page placement), non-zero so
     * no page is the shared zero page. */
#pragma omp parallel num_threads(threads)
    {
        size_t t = (size_t)omp_get_thread_num();
        uint64_t *p = buf + t * per;
        for (size_t i = 0; i < per; i++) p[i] = i * 0x9e3779b97f4a7c15ull + t;
    }
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int r = 0; r < runs; r++) {
        uint64_t total = 0;
        double t0 = now_s();
#pragma omp parallel num_threads(threads) reduction(+ : total)
        total += sum_words(buf + (size_t)omp_get_thread_num() * per, per);
        double dt = now_s() - t0;
        sink += total;
        if (dt < best) best = dt;
    }
    (void)sink;
    sr_free_aligned(buf);
    out->gbps = (double)(per * (size_t)threads * sizeof(uint64_t)) / best * 1e-9;
    out->buffer_bytes = bytes;
    out->llc_bytes = llc;
    out->threads = threads;
    out->runs = runs;
    return 0;
}
