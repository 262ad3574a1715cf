#include "runtime/hugepages.h"

#include <stdint.h>
#include <sys/mman.h>

void sr_hugepages_advise(const void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    if (!p || len < SR_HUGEPAGE_MIN) return;
    /* madvise wants page-aligned ranges: advise the whole 2 MiB pages
     * inside the region (the region may come from malloc). */
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + len) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p, (void)len;
#endif
}
