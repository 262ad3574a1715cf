#include "tools/bandwidth.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/alloc.h"

/* sysfs first: in VMs sysconf (cpuid leaf 4) can be far off (320 MiB
 * reported for a 32 MiB L3 here). */
uint64_t bw_llc_bytes(void)
{
    uint64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long v;
        char unit = 0;
        if (fscanf(f, "%lu%c", &v, &unit) >= 1) {
            uint64_t b = unit == 'K' ? (uint64_t)v << 10 : unit == 'M' ? (uint64_t)v << 20 : v;
            if (b > best) best = b;
        }
        fclose(f);
    }
    if (best) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) return (uint64_t)v;
#endif
    return (uint64_t)32 << 20;
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

int bw_probe_open(bw_probe *p, int threads)
{
    memset(p, 0, sizeof *p);
    uint64_t llc = bw_llc_bytes(), bytes = 4 * llc;
    if (bytes < ((uint64_t)64 << 20)) bytes = (uint64_t)64 << 20;
    if (threads < 1) threads = 1;
    size_t per = (size_t)(bytes / sizeof(uint64_t) / (uint64_t)threads) & ~(size_t)4095;
    p->buf = sr_malloc_aligned(per * (size_t)threads * sizeof(uint64_t));
    if (!p->buf) return -1;
    p->words_per_thread = per;
    p->threads = threads;
    p->buffer_bytes = per * (size_t)threads * sizeof(uint64_t);
    p->llc_bytes = llc;
    /* First touch by the threads that read it (page placement), non-zero so
     * no page is the shared zero page. */
    uint64_t *buf = p->buf;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        uint64_t *q = buf + (size_t)t * per;
        for (size_t i = 0; i < per; i++) q[i] = i * 0x9e3779b97f4a7c15ull + (uint64_t)t;
    }
    return 0;
}

/* Each thread sums `count` words from `first` in its own part. */
static double probe_read_words(bw_probe *p, size_t first, size_t count)
{
    uint64_t total = 0;
    const uint64_t *buf = p->buf;
    size_t per = p->words_per_thread;
    double t0 = now_s();
    /* One part per loop iteration, not per thread id: correct even if the
     * runtime grants fewer threads. */
#pragma omp parallel for schedule(static) num_threads(p->threads) reduction(+ : total)
    for (int t = 0; t < p->threads; t++) total += sum_words(buf + (size_t)t * per + first, count);
    double dt = now_s() - t0;
    p->checksum = total;
    return (double)(count * (size_t)p->threads * sizeof(uint64_t)) / dt * 1e-9;
}

double bw_probe_pass(bw_probe *p) { return probe_read_words(p, 0, p->words_per_thread); }

double bw_probe_read(bw_probe *p, uint64_t bytes)
{
    size_t per = p->words_per_thread;
    size_t count = (size_t)(bytes / sizeof(uint64_t) / (uint64_t)p->threads + 3) & ~(size_t)3;
    if (count < 4) count = 4;
    if (count > per) count = per;
    if (p->next_word + count > per) p->next_word = 0;
    double g = probe_read_words(p, p->next_word, count);
    p->next_word += count;
    return g;
}

/* Bytes [from, to) of a region: whole words summed, the ragged ends byte
 * by byte (regions need not be aligned). */
static uint64_t sum_bytes(const uint8_t *p, uint64_t from, uint64_t to)
{
    uint64_t s = 0;
    while (from < to && ((uintptr_t)(p + from) & 7)) s += p[from++];
    uint64_t words = (to - from) / 8;
    s += sum_words((const uint64_t *)(const void *)(p + from), (size_t)(words & ~(uint64_t)3));
    for (from += (words & ~(uint64_t)3) * 8; from < to; from++) s += p[from];
    return s;
}

double bw_read_regions(const bw_region *r, size_t n, int threads, uint64_t *checksum)
{
    if (threads < 1) threads = 1;
    uint64_t total = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += r[i].bytes;
    double t0 = now_s();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        const uint64_t nt = (uint64_t)omp_get_num_threads(), t = (uint64_t)omp_get_thread_num();
        for (size_t i = 0; i < n; i++) {
            const uint64_t b = r[i].bytes;
            total += sum_bytes(r[i].p, b * t / nt, b * (t + 1) / nt);
        }
    }
    double dt = now_s() - t0;
    if (checksum) *checksum = total;
    return dt > 0 ? (double)bytes / dt * 1e-9 : 0;
}

void bw_probe_close(bw_probe *p)
{
    sr_free_aligned(p->buf);
    memset(p, 0, sizeof *p);
}

int bw_measure(int threads, int runs, bw_result *out)
{
    memset(out, 0, sizeof *out);
    bw_probe p;
    if (bw_probe_open(&p, threads)) return -1;
    if (runs < 1) runs = 1;
    for (int r = 0; r < runs; r++) {
        double g = bw_probe_pass(&p);
        if (g > out->gbps) out->gbps = g;
    }
    out->buffer_bytes = p.buffer_bytes;
    out->llc_bytes = p.llc_bytes;
    out->threads = p.threads;
    out->runs = runs;
    bw_probe_close(&p);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bw_paired_quantile(double *v, size_t n, double q)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}
