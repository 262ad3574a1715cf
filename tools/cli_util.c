#include "tools/cli_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "runtime/alloc.h"
#include "runtime/kv_cache.h"
#include "runtime/tokenizer.h"

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return -1;     /* "nan", "inf" */
    while (*end == ' ') end++;
    static const struct { const char *suf; double mul; } sufs[] = {
        {"", 1}, {"B", 1},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
        {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof sufs / sizeof *sufs; i++)
        if (!strcasecmp(end, sufs[i].suf) && (sufs[i].suf[0] || !*end)) {
            double b = v * sufs[i].mul;
            if (b > 1.8e19) return -1;
            *out = (uint64_t)(b + 0.5);
            return 0;
        }
    return -1;
}

int64_t cli_parse_int_list(const char *s, int64_t **out)
{
    int64_t n = 0, cap = 16;
    int64_t *v = sr_malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno) { sr_free(v); return -1; }
        if (n == cap) {
            int64_t *nv = sr_realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) { sr_free(v); return -1; }
            v = nv;
        }
        v[n++] = x;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',' && p[1]) p++;
        else if (*p) { sr_free(v); return -1; }   /* junk, or a trailing comma */
    }
    *out = v;
    return n;
}

const char *cli_fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 4) { v /= 1024; i++; }
    if (i == 0) snprintf(buf, len, "%llu B", (unsigned long long)n);
    else snprintf(buf, len, "%.2f %s", v, u[i]);
    return buf;
}

void cli_json_str(FILE *f, const char *s)
{
    char *u = sr_utf8_lossy(s, strlen(s), NULL);    /* a path can hold any bytes */
    const char *t = u ? u : "";
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
    sr_free(u);
}

FILE *cli_out_open(cli_out *o, const char *cmd, const char *path)
{
    struct stat st;
    o->path = path;
    o->direct = !stat(path, &st) && !S_ISREG(st.st_mode);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    const char *name = o->direct ? path : o->tmp;
    FILE *f = fopen(name, "wb");
    if (!f) fprintf(stderr, "%s: %s: %s\n", cmd, name, strerror(errno));
    return f;
}

int cli_out_commit(cli_out *o, const char *cmd)
{
    if (o->direct || !rename(o->tmp, o->path)) return 0;
    fprintf(stderr, "%s: %s: %s\n", cmd, o->path, strerror(errno));
    remove(o->tmp);
    return -1;
}

void cli_out_discard(cli_out *o)
{
    if (!o->direct) remove(o->tmp);
}

int cli_flag_in(const char *flag, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(flag, *names)) return 1;
    return 0;
}

int cli_check_kv_type(const char *cmd, const char *value)
{
    sr_kv_type t;
    if (!sr_kv_type_parse(value, &t)) return 0;
    fprintf(stderr, "%s: --kv-type '%s': expected f32 or bf16\n", cmd, value);
    return -1;
}
