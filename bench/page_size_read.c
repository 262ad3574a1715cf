/* The read rate of memory on 2 MiB pages against 4 KiB pages, alternated.
 *
 *   cc -O3 -march=native -fopenmp bench/page_size_read.c -o /tmp/page_size_read
 *   OMP_NUM_THREADS=2 /tmp/page_size_read [MiB per buffer, default 1024] [rounds, default 20]
 *
 * Two anonymous buffers, one advised MADV_HUGEPAGE and one MADV_NOHUGEPAGE,
 * are read in turn by every OpenMP thread (each a contiguous slice), as
 * decode reads its weights.  Each round prints huge, 4k, huge again (GB/s)
 * and 4k against the mean of the two huge reads, so a change of the host's
 * bandwidth between reads shows up rather than biasing the ratio.  Why
 * strata puts every weight that decode streams on huge pages: BENCHMARKS.md,
 * "Sixth pass". */
#define _GNU_SOURCE
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static char *buffer(size_t n, int huge)
{
    const size_t align = (size_t)2 << 20;
    char *p = mmap(NULL, n + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    char *a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (madvise(a, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) perror("madvise");
    memset(a, 1, n);
    return a;
}

static volatile uint64_t sink;

static double read_gbs(const char *a, size_t n)
{
    const double t0 = omp_get_wtime();
    uint64_t acc = 0;
#pragma omp parallel reduction(^ : acc)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const uint64_t *p = (const uint64_t *)(a + n / nt * t);
        const size_t words = n / nt / 8;
        uint64_t x = 0;
        for (size_t i = 0; i < words; i++) x ^= p[i]; /* vectorized at -O3 */
        acc ^= x;
    }
    const double dt = omp_get_wtime() - t0;
    sink = acc;
    return (double)n / dt / 1e9;
}

int main(int argc, char **argv)
{
    const size_t n = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
    const int rounds = argc > 2 ? atoi(argv[2]) : 20;
    char *huge = buffer(n, 1), *small = buffer(n, 0);
    printf("%zu MiB per buffer, %d threads\n", n >> 20, omp_get_max_threads());
    for (int r = 0; r < rounds; r++) {
        const double a = read_gbs(huge, n), b = read_gbs(small, n), c = read_gbs(huge, n);
        printf("huge %5.1f  4k %5.1f  huge %5.1f GB/s   4k / huge %.2f\n", a, b, c, 2 * b / (a + c));
    }
    return 0;
}
