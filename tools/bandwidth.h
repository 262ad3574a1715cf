/* Same-process memory read-bandwidth probe.
 *
 * The kernel benchmarks report their speed as a fraction of what this
 * machine can read from DRAM right now, measured in the same process (so
 * other load on the machine affects both alike): `threads` OpenMP threads
 * sum disjoint parts of one buffer of at least 4x the last-level cache, best
 * of `runs` passes. */
#ifndef SR_BANDWIDTH_H
#define SR_BANDWIDTH_H

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

#endif
