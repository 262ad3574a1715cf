/* Host memory from /proc/meminfo and the cgroup v2 memory controller. */
#include "runtime/host_memory.h"

#include <stdio.h>
#include <string.h>

/* memory.max of a cgroup directory: 0 if absent, "max" or unreadable. */
static uint64_t cgroup_limit(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/memory.max", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    const int ok = fscanf(f, "%llu", &v) == 1; /* "max" does not scan */
    fclose(f);
    return ok ? (uint64_t)v : 0;
}

/* The "anon" line of a cgroup's memory.stat (bytes), 0 if absent. */
static uint64_t cgroup_anon(const char *dir)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "anon %llu", &v) == 1) break;
    fclose(f);
    return (uint64_t)v;
}

void sr_host_memory_from(const char *meminfo, const char *cgroup_dir, uint64_t *total,
                         uint64_t *available)
{
    *total = *available = 0;
    FILE *f = fopen(meminfo, "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) *total = kb * 1024ull;
            else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) *available = kb * 1024ull;
        }
        fclose(f);
    }
    const uint64_t limit = cgroup_dir ? cgroup_limit(cgroup_dir) : 0;
    if (!limit) return;
    const uint64_t anon = cgroup_anon(cgroup_dir);
    const uint64_t left = limit > anon ? limit - anon : 0;
    if (!*total || limit < *total) *total = limit;
    if (!*available || left < *available) *available = left;
}

/* The process's cgroup v2 directory ("0::/path" in /proc/self/cgroup). */
static const char *own_cgroup(char *buf, size_t n)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return NULL;
    char line[2048];
    const char *dir = NULL;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(buf, n, "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
            dir = buf;
            break;
        }
    fclose(f);
    return dir;
}

void sr_host_memory(uint64_t *total, uint64_t *available)
{
    char cg[4096];
    sr_host_memory_from("/proc/meminfo", own_cgroup(cg, sizeof cg), total, available);
}
