/* Transparent huge pages for the big read-mostly regions (weights).
 *
 * Decode streams every weight byte once per token.  With 4 KiB pages the
 * hardware prefetcher stops at every page and each page costs a TLB miss;
 * with 2 MiB pages neither happens.  Debian's default THP mode is
 * "madvise", so a region only gets huge pages when asked.  For a file
 * mapping the advice also makes the kernel read the file into 2 MiB page
 * cache folios.  Advice only: the call never fails the caller, and it does
 * nothing where THP is off or the region is small. */
#ifndef SR_HUGEPAGES_H
#define SR_HUGEPAGES_H

#include <stddef.h>

/* Regions below this are not worth a huge page. */
#define SR_HUGEPAGE_MIN ((size_t)4 << 20)

void sr_hugepages_advise(const void *p, size_t len);

#endif
