#include "offload/device_map.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/alloc.h"

#define MAX_KEY 512

void sr_device_map_free(sr_device_map *map)
{
    if (!map) return;
    for (int i = 0; i < map->n; i++) sr_free(map->e[i].module);
    sr_free(map->e);
    sr_free(map->source);
    memset(map, 0, sizeof *map);
}

/* A value -> accelerator index or SR_MAP_HOST; -2 with *why on refusal. */
static int parse_target(json_t *v, const char **why)
{
    if (json_is_integer(v)) {
        json_int_t g = json_integer_value(v);
        if (g < 0 || g >= SR_MAX_DEVICES) {
            *why = "accelerator index out of range";
            return -2;
        }
        return (int)g;
    }
    if (!json_is_string(v)) {
        *why = "expected an accelerator index or \"cpu\"";
        return -2;
    }
    const char *s = json_string_value(v);
    if (!strcasecmp(s, "cpu")) return SR_MAP_HOST;
    if (!strcasecmp(s, "disk")) {
        *why = "strata does not offload to disk; place it on \"cpu\" (host memory) or an "
               "accelerator";
        return -2;
    }
    if (!strcasecmp(s, "cuda")) return 0;
    const char *num = NULL;
    if (!strncasecmp(s, "cuda:", 5)) num = s + 5;
    else if (!strncasecmp(s, "sim:", 4)) num = s + 4;
    if (num && isdigit((unsigned char)*num)) {
        char *end;
        errno = 0;
        long g = strtol(num, &end, 10);
        if (!*end && !errno && g >= 0 && g < SR_MAX_DEVICES) return (int)g;
    }
    *why = "unknown device (expected an index, \"cuda:N\" or \"cpu\")";
    return -2;
}

int sr_device_map_parse(const char *json, size_t len, const char *source, sr_device_map *map,
                        sr_error *err)
{
    memset(map, 0, sizeof *map);
    const char *src = source ? source : "device map";
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)  /* jansson leaves the text empty when it ran out of memory */
        return je.text[0] ? sr_fail(err, "%s: line %d: %s", src, je.line, je.text)
                          : sr_fail(err, "%s: out of memory parsing the JSON", src);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = sr_fail(err, "%s: expected a JSON object {\"module\": device, ...}", src);
        goto done;
    }
    size_t n = json_object_size(root);
    map->source = sr_strdup(src);
    map->e = sr_calloc(n ? n : 1, sizeof *map->e);
    if (!map->source || !map->e) {
        rc = sr_fail(err, "%s: out of memory", src);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        const char *why = NULL;
        int target = parse_target(val, &why);
        if (target == -2) {
            rc = sr_fail(err, "%s: \"%.*s\": %s", src, MAX_KEY, key, why);
            goto done;
        }
        if (strlen(key) > MAX_KEY) {
            rc = sr_fail(err, "%s: module name of %zu bytes is too long", src, strlen(key));
            goto done;
        }
        map->e[map->n].module = sr_strdup(key);
        if (!map->e[map->n].module) {
            rc = sr_fail(err, "%s: out of memory", src);
            goto done;
        }
        map->e[map->n++].target = target;
    }
done:
    json_decref(root);
    if (rc) sr_device_map_free(map);
    return rc;
}

int sr_device_map_load(const char *path, sr_device_map *map, sr_error *err)
{
    memset(map, 0, sizeof *map);
    FILE *f = fopen(path, "rb");
    if (!f) return sr_fail(err, "device map %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= (64u << 20)) {
                rc = sr_fail(err, "device map %s: larger than 64 MiB", path);
                break;
            }
            char *nb = sr_realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!nb) {
                rc = sr_fail(err, "device map %s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) rc = sr_fail(err, "device map %s: read error", path);
            break;
        }
    }
    fclose(f);
    if (!rc) rc = sr_device_map_parse(buf, len, path, map, err);
    sr_free(buf);
    return rc;
}

/* Does key cover module (the module itself or one of its parents)? */
static bool covers(const char *key, const char *module)
{
    size_t n = strlen(key);
    if (!n) return true;
    return !strncmp(key, module, n) && (module[n] == 0 || module[n] == '.');
}

/* Tier of one module: the most specific covering key, and every key below
 * it must agree.  Returns the tier, -1 if nothing covers it, -2 on a split
 * (with *split_key set). */
static int module_target(const sr_device_map *map, const char *module, int *target,
                         const char **split_key, int *split_target, const char **from_key)
{
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < map->n; i++) {
        size_t n = strlen(map->e[i].module);
        if (covers(map->e[i].module, module) && (best < 0 || n > best_len)) {
            best = i;
            best_len = n;
        }
    }
    int t = best >= 0 ? map->e[best].target : 0;
    bool have = best >= 0;
    *from_key = have ? map->e[best].module : NULL;
    for (int i = 0; i < map->n; i++) {
        if (!covers(module, map->e[i].module) || !strcmp(module, map->e[i].module)) continue;
        if (!have) {
            t = map->e[i].target;
            have = true;
            *from_key = map->e[i].module;
        } else if (map->e[i].target != t) {
            *split_key = map->e[i].module;
            *split_target = map->e[i].target;
            *target = t;
            return -2;
        }
    }
    *target = t;
    return have ? 0 : -1;
}

static const char *target_name(int t, char *buf, size_t len)
{
    if (t == SR_MAP_HOST) snprintf(buf, len, "cpu");
    else snprintf(buf, len, "%d", t);
    return buf;
}

int sr_device_map_resolve(const sr_device_map *map, const sr_plan_unit *units, int n_units,
                          int n_gpu, int *tier, sr_error *err)
{
    for (int u = 0; u < n_units; u++) {
        const char *modules[2] = {units[u].name, NULL};
        if (units[u].unit == SR_UNIT_HEAD) {
            modules[0] = "model.norm";
            modules[1] = "lm_head";
        }
        int unit_target = 0;
        const char *unit_from = NULL;
        for (int m = 0; m < 2 && modules[m]; m++) {
            int t, st = 0;
            const char *split = NULL, *from = NULL;
            int r = module_target(map, modules[m], &t, &split, &st, &from);
            char b[2][16];
            if (r == -2)
                return sr_fail(err, "%s: \"%s\" puts part of %s on %s but \"%s\" puts it on %s: "
                               "strata never splits a unit; put all of %s on one device",
                               map->source, split, units[u].name,
                               target_name(st, b[0], sizeof b[0]), from,
                               target_name(t, b[1], sizeof b[1]), units[u].name);
            if (r == -1) {
                if (m == 1 && units[u].shared_bytes && unit_from) continue; /* tied: norm decides */
                return sr_fail(err, "%s: no entry places %s (add \"%s\": 0 or \"cpu\")",
                               map->source, modules[m], modules[m]);
            }
            if (m == 1 && unit_from && t != unit_target)
                return sr_fail(err, "%s: model.norm is on %s but lm_head on %s: they form one "
                               "unit (the head); put both on one device", map->source,
                               target_name(unit_target, b[0], sizeof b[0]),
                               target_name(t, b[1], sizeof b[1]));
            if (m == 0 || !unit_from) unit_target = t;
            if (!unit_from) unit_from = from;
        }
        if (unit_target >= n_gpu)
            return sr_fail(err, "%s: \"%s\" places %s on accelerator %d, but there are only %d",
                           map->source, unit_from, units[u].name, unit_target, n_gpu);
        tier[u] = unit_target == SR_MAP_HOST ? n_gpu : unit_target;
    }
    return 0;
}

char *sr_device_map_dump(const sr_plan *plan, const sr_plan_unit *units)
{
    json_t *o = json_object();
    if (!o) return NULL;
    const int host = plan->n_tiers - 1;
    int bad = 0;
    for (int u = 0; u < plan->n_units; u++) {
        int t = plan->units[u].tier;
        const char *keys[2] = {units[u].name, NULL};
        if (units[u].unit == SR_UNIT_HEAD) {
            keys[0] = "model.norm";
            keys[1] = "lm_head";
        }
        for (int k = 0; k < 2 && keys[k]; k++)
            bad |= json_object_set_new(o, keys[k], t == host ? json_string("cpu")
                                                             : json_integer(t));
    }
    char *s = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return NULL;
    char *copy = sr_strdup(s);  /* jansson allocates with the C allocator */
    free(s);
    return copy;
}

int sr_device_map_save(const char *path, const sr_plan *plan, const sr_plan_unit *units,
                       sr_error *err)
{
    char *s = sr_device_map_dump(plan, units);
    if (!s) return sr_fail(err, "--save-device-map %s: out of memory", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        sr_free(s);
        return sr_fail(err, "--save-device-map %s: %s", path, strerror(errno));
    }
    size_t n = strlen(s);
    bool ok = fwrite(s, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    sr_free(s);
    return ok ? 0 : sr_fail(err, "--save-device-map %s: write failed", path);
}
