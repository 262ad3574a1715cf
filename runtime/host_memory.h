/* How much host memory this process may still use: what the planner gives
 * the host tier and what a model run on the CPU may spend on its kernels'
 * tiles. */
#ifndef SR_HOST_MEMORY_H
#define SR_HOST_MEMORY_H

#include <stdint.h>

/* total: MemTotal, or the memory limit of the process's cgroup when lower
 * (v2 memory.max, v1 memory.limit_in_bytes).  available: MemAvailable (free
 * memory plus what the kernel can reclaim, the page cache among it), or,
 * under a cgroup limit, that limit less the cgroup's anonymous memory when
 * lower (the cgroup's page cache is reclaimable too).  Each 0 when unknown
 * (no /proc). */
void sr_host_memory(uint64_t *total, uint64_t *available);

/* The same from the files given: a meminfo file and a cgroup directory (v2:
 * memory.max, memory.stat "anon"; v1: memory.limit_in_bytes, memory.stat
 * "total_rss") or NULL for none.  For tests. */
void sr_host_memory_from(const char *meminfo, const char *cgroup_dir, uint64_t *total,
                         uint64_t *available);

#endif
