/* Helpers shared by the C tests. */
#ifndef SR_TEST_UTIL_H
#define SR_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Absolute path of a file under tests/data (STRATA_TEST_DATA, set by meson). */
static inline const char *test_data(const char *rel)
{
    static char buf[8][4096];
    static int k;
    const char *root = getenv("STRATA_TEST_DATA");
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root ? root : "tests/data", rel);
    return b;
}

/* Temporary directory unique to this test process (created on first use). */
static inline const char *test_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/strata-test-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    return dir;
}

/* Reads a whole file (malloc'd, NUL-terminated); NULL on error. */
static inline char *test_read_file(const char *path, size_t *len)
{
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}

static inline int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

#endif
