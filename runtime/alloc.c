#include "runtime/alloc.h"

#include "runtime/hugepages.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide test hook; off (-1) unless a test turns it on. */
static _Atomic long fail_after = -1;
static _Atomic long n_allocs = 0;

void sr_alloc_fail_after(long n)
{
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_after, n);
}

long sr_alloc_count(void) { return atomic_load(&n_allocs); }

static int should_fail(void)
{
    long k = atomic_fetch_add(&n_allocs, 1);
    long f = atomic_load(&fail_after);
    return f >= 0 && k >= f;
}

void *sr_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *sr_calloc(size_t count, size_t size)
{
    if (should_fail()) return NULL;
    if (!count || !size) count = size = 1;
    return calloc(count, size);
}

void *sr_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

char *sr_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *r = sr_malloc(len + 1);
    if (!r) return NULL;
    memcpy(r, s, len);
    r[len] = 0;
    return r;
}

char *sr_strdup(const char *s) { return sr_strndup(s, (size_t)-1); }

void sr_free(void *p) { free(p); }

void *sr_malloc_aligned(size_t n)
{
    if (should_fail()) return NULL;
    void *p = NULL;
    /* Big buffers (weights, KV caches) start on a 2 MiB boundary and ask
     * for huge pages (runtime/hugepages.h). */
    const int big = n >= SR_HUGEPAGE_MIN;
    if (posix_memalign(&p, big ? (size_t)2 << 20 : 64, n ? n : 64)) return NULL;
    if (big) sr_hugepages_advise(p, n);
    return p;
}

void sr_free_aligned(void *p) { free(p); }
