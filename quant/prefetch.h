/* Software prefetch for the decode kernels' row streams.
 *
 * A decode kernel computes R rows at once, so it reads R streams that
 * restart at every row block; the hardware prefetcher follows such streams
 * late and stops at every 4 KiB page.  Each kernel therefore asks for the
 * line `ahead` bytes further along each stream, into L2 (the L1 is too small
 * to hold 2 x R x `ahead` bytes in flight).  Measured on the Zen 4 dev VM,
 * NF4 int8-kernel decode from DRAM: 512 bytes into L1 (the old setting)
 * 17-19 GB/s on one core, 2-4 KiB into L2 25-26 GB/s; two cores went from
 * 72-86 % to 92-100 % of the same-run read bandwidth (BENCHMARKS.md). */
#ifndef STRATA_QUANT_PREFETCH_H
#define STRATA_QUANT_PREFETCH_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

/* Bytes ahead along a stream. */
enum { SR_PREFETCH_AHEAD = 2048 };

/* pos: the bytes being read now, `off` bytes into a row of `row_bytes`;
 * the stream continues in the same row of the next block (row + R).  The
 * target is computed in integers (it may lie past the end of the matrix:
 * prefetches never fault). */
static inline void sr_prefetch_stream(const void *pos, int64_t off, int64_t row_bytes, int R)
{
#if defined(__x86_64__) || defined(__i386__)
    uintptr_t p = (uintptr_t)pos + SR_PREFETCH_AHEAD;
    for (int64_t o = off + SR_PREFETCH_AHEAD; o >= row_bytes; o -= row_bytes)
        p += (uintptr_t)((R - 1) * row_bytes);
    _mm_prefetch((const char *)p, _MM_HINT_T1);
#else
    (void)pos, (void)off, (void)row_bytes, (void)R;
#endif
}

#endif
