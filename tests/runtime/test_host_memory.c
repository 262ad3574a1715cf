/* runtime/host_memory.c: MemTotal / MemAvailable from a meminfo file, and a
 * cgroup memory limit (v2 or v1) lowering both (files written into the
 * test's tmpdir). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "runtime/host_memory.h"
#include "test_util.h"

static const char *put(const char *name, const char *text)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ & 7];
    snprintf(p, sizeof path[0], "%s/%s", test_tmpdir(), name);
    assert_int_equal(test_write_file(p, text, strlen(text)), 0);
    return p;
}

/* A cgroup directory: `limit` goes to memory.max, or to v1's
 * memory.limit_in_bytes for a name starting with "v1". */
static const char *cgroup(const char *name, const char *max, const char *stat)
{
    static char dir[4][512];
    static int k;
    char *d = dir[k++ & 3];
    snprintf(d, sizeof dir[0], "%s/%s", test_tmpdir(), name);
    mkdir(d, 0700);
    char rel[600];
    if (max) {
        snprintf(rel, sizeof rel, "%s/%s", name,
                 strncmp(name, "v1", 2) ? "memory.max" : "memory.limit_in_bytes");
        put(rel, max);
    }
    if (stat) {
        snprintf(rel, sizeof rel, "%s/memory.stat", name);
        put(rel, stat);
    }
    return d;
}

#define GiB (1ull << 30)

static void test_meminfo(void **state)
{
    (void)state;
    const char *mi = put("meminfo", "MemTotal:       25165824 kB\n"
                                    "MemFree:         1048576 kB\n"
                                    "MemAvailable:   20971520 kB\n"
                                    "Buffers:            1024 kB\n");
    uint64_t total = 1, avail = 1;
    sr_host_memory_from(mi, NULL, &total, &avail);
    assert_true(total == 24 * GiB);
    assert_true(avail == 20 * GiB);

    /* no such file: unknown */
    sr_host_memory_from("/nonexistent/meminfo", NULL, &total, &avail);
    assert_true(total == 0 && avail == 0);

    /* the live numbers exist on Linux and make sense */
    sr_host_memory(&total, &avail);
    assert_true(total > 0 && avail > 0 && avail <= total);
}

static void test_cgroup(void **state)
{
    (void)state;
    char mi[512]; /* put()'s buffers rotate */
    snprintf(mi, sizeof mi, "%s", put("meminfo2", "MemTotal: 25165824 kB\nMemAvailable: 20971520 kB\n"));
    uint64_t total, avail;

    /* an 8 GiB limit with 3 GiB of anonymous memory: 5 GiB left (the page
     * cache charged to the cgroup is reclaimable) */
    const char *cg = cgroup("cg8", "8589934592\n", "anon 3221225472\nfile 4294967296\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 8 * GiB);
    assert_true(avail == 5 * GiB);

    /* "max": no limit */
    cg = cgroup("cgmax", "max\n", "anon 3221225472\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 24 * GiB && avail == 20 * GiB);

    /* a limit above the machine's memory changes nothing */
    cg = cgroup("cgbig", "68719476736\n", "anon 1073741824\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 24 * GiB && avail == 20 * GiB);

    /* anonymous memory past the limit: nothing available; no memory.stat: all of it */
    cg = cgroup("cgfull", "1073741824\n", "anon 2147483648\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == GiB && avail == 0);
    cg = cgroup("cgnostat", "1073741824\n", NULL);
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == GiB && avail == GiB);

    /* cgroup v1: memory.limit_in_bytes, "total_rss" for the anonymous memory
     * (its "no limit" is a number near 2^63) */
    cg = cgroup("v1cg", "4294967296\n", "cache 1073741824\nrss 536870912\ntotal_cache 1\n"
                                        "total_rss 1073741824\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 4 * GiB && avail == 3 * GiB);
    cg = cgroup("v1unlimited", "9223372036854771712\n", "total_rss 1073741824\n");
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 24 * GiB && avail == 20 * GiB);

    /* no controller files at all */
    cg = cgroup("cgnone", NULL, NULL);
    sr_host_memory_from(mi, cg, &total, &avail);
    assert_true(total == 24 * GiB && avail == 20 * GiB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_cgroup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
