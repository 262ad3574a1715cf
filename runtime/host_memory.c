/* Host memory from /proc/meminfo and the cgroup memory controller (v2 or v1). */
#include "runtime/host_memory.h"

#include <stdio.h>
#include <string.h>

/* A number from the first line of dir/name: 0 if absent or not a number
 * ("max": no limit). */
static uint64_t read_number(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    const int ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    return ok ? (uint64_t)v : 0;
}

/* The cgroup's limit: memory.max (v2) or memory.limit_in_bytes (v1, where
 * "no limit" is a number near 2^63, above any machine's memory). */
static uint64_t cgroup_limit(const char *dir)
{
    const uint64_t v2 = read_number(dir, "memory.max");
    return v2 ? v2 : read_number(dir, "memory.limit_in_bytes");
}

/* The cgroup's anonymous memory from memory.stat: "anon" (v2) or
 * "total_rss" (v1, this cgroup and its children); 0 if absent. */
static uint64_t cgroup_anon(const char *dir)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "anon %llu", &v) == 1 || sscanf(line, "total_rss %llu", &v) == 1) break;
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

/* The process's memory cgroup directory: the v2 one ("0::/path" in
 * /proc/self/cgroup) where it has a memory controller, else the v1 memory
 * controller's ("N:memory:/path"); NULL if neither. */
static const char *own_cgroup(char *buf, size_t n)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return NULL;
    char line[2048], v1[2048] = "";
    const char *dir = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        const char *p = strchr(line, ':');
        if (!p) continue;
        if (!strncmp(p, "::", 2)) {
            snprintf(buf, n, "/sys/fs/cgroup%s", strcmp(p + 2, "/") ? p + 2 : "");
            if (read_number(buf, "memory.max") || cgroup_anon(buf)) dir = buf;
        } else if (!strncmp(p, ":memory:", 8)) {
            snprintf(v1, sizeof v1, "/sys/fs/cgroup/memory%s", strcmp(p + 8, "/") ? p + 8 : "");
        }
    }
    fclose(f);
    if (!dir && v1[0]) {
        snprintf(buf, n, "%s", v1);
        dir = buf;
    }
    return dir;
}

void sr_host_memory(uint64_t *total, uint64_t *available)
{
    char cg[4096];
    sr_host_memory_from("/proc/meminfo", own_cgroup(cg, sizeof cg), total, available);
}
