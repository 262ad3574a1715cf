/* Same-process memory read-bandwidth probe.
 *
 * The kernel benchmarks report their speed as a fraction of what this
 * machine can read from DRAM right now, measured in the same process (so
 * other load on the machine affects both alike): `threads` OpenMP threads
 * sum disjoint parts of one buffer of at least 4x the last-level cache, best
 * of `runs` passes. */
#ifndef SR_BANDWIDTH_H
#define SR_BANDWIDTH_H

#include <stddef.h>
#include <stdint.h>

typedef struct bw_result {
    double gbps;           /* best pass, 1e9 bytes per second */
    uint64_t buffer_bytes;
    uint64_t llc_bytes;    /* last-level cache size the buffer was sized from */
    int threads, runs;
} bw_result;

/* Size of the last-level cache in bytes (32 MiB if the system won't say). */
uint64_t bw_llc_bytes(void);

/* Returns 0, or -1 if the buffer could not be allocated. */
int bw_measure(int threads, int runs, bw_result *out);

/* The probe in pieces, for benchmarks that interleave probe passes with
 * their own rounds (both then see the same load on the machine). */
typedef struct bw_probe {
    uint64_t *buf;
    size_t words_per_thread;
    int threads;
    uint64_t buffer_bytes, llc_bytes;
    uint64_t checksum; /* sum of the last pass: the reads have a consumer */
    size_t next_word;  /* per-thread offset of the next bw_probe_read */
} bw_probe;

int bw_probe_open(bw_probe *p, int threads); /* 0, or -1 out of memory */
double bw_probe_pass(bw_probe *p);           /* one pass: GB/s */
/* Reads about `bytes` (split over the threads) starting at the part after
 * the previous read, wrapping around: GB/s.  For pairing with kernel calls
 * of the same size; the rest of the buffer keeps the part out of cache. */
double bw_probe_read(bw_probe *p, uint64_t bytes);
void bw_probe_close(bw_probe *p);

/* A plain read of memory the caller owns: regions (e.g. a model's weights
 * in the order a decode step reads them), each split between `threads`
 * OpenMP threads, the threads going through the regions without waiting
 * for each other.  Returns GB/s of the bytes read; *checksum gets their sum.
 * On a VM the rate of the same code can depend on which buffer it reads
 * (BENCHMARKS.md, "Decode, tenth pass"): this is the rate of these bytes,
 * next to the probe's rate of its own buffer. */
typedef struct bw_region {
    const void *p;
    uint64_t bytes;
} bw_region;
double bw_read_regions(const bw_region *r, size_t n, int threads, uint64_t *checksum);

/* Quantile q (0..1, nearest rank) of n ratios of kernel rate to the probe
 * read just before each kernel call ("paired"): sorts v in place; 0 if
 * n == 0. */
double bw_paired_quantile(double *v, size_t n, double q);

#endif
