/* Allocation wrappers used by every loader, converter and planner path.
 *
 * They exist for fault injection (issue: hardening): a test can make the
 * n-th allocation fail and check that every caller reports a clean error and
 * frees what it took.  Use these instead of malloc/calloc/realloc/strdup in
 * library code.  Freeing NULL is allowed. */
#ifndef SR_ALLOC_H
#define SR_ALLOC_H

#include <stddef.h>

void *sr_malloc(size_t n);
void *sr_calloc(size_t count, size_t size);
void *sr_realloc(void *p, size_t n);
char *sr_strdup(const char *s);
char *sr_strndup(const char *s, size_t n);
void sr_free(void *p);

/* 64-byte aligned allocation for SIMD buffers; free with sr_free_aligned. */
void *sr_malloc_aligned(size_t n);
void sr_free_aligned(void *p);

/* Fault injection: after `n` more successful allocations every further one
 * fails (returns NULL).  n < 0 switches injection off (the default).
 * sr_alloc_count() is the number of allocations made since the last call to
 * sr_alloc_fail_after(), so a test can first count the sites of a path and
 * then fail each of them in turn. */
void sr_alloc_fail_after(long n);
long sr_alloc_count(void);

#endif
