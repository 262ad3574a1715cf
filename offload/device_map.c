#include "offload/device_map.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/alloc.h"
#include "runtime/log.h"

#define MAX_KEY 512
#define NOT_PLACED 1

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

/* Tier of one module of `unit` into *t (and the deciding key into *from).
 * Returns 0, NOT_PLACED when no key covers the module, or -1 (err set) when
 * keys split it. */
static int place_module(const sr_device_map *map, const sr_plan_unit *unit, const char *module,
                        int *t, const char **from, sr_error *err)
{
    int st = 0;
    const char *split = NULL;
    int r = module_target(map, module, t, &split, &st, from);
    if (r == -2) {
        char b[2][16];
        return sr_fail(err, "%s: \"%s\" puts part of %s on %s but \"%s\" puts it on %s: "
                       "strata never splits a unit; put all of %s on one device", map->source,
                       split, unit->name, target_name(st, b[0], sizeof b[0]), *from,
                       target_name(*t, b[1], sizeof b[1]), unit->name);
    }
    return r == -1 ? NOT_PLACED : 0;
}

/* The head: final norm + lm_head, one unit.  lm_head (the big part) decides;
 * a tied head may leave lm_head out, and then the norm decides. */
static int place_head(const sr_device_map *map, const sr_plan_unit *unit, int *t,
                      const char **from, sr_error *err)
{
    int t_norm = 0, t_head = 0;
    const char *from_norm = NULL, *from_head = NULL;
    int r = place_module(map, unit, "model.norm", &t_norm, &from_norm, err);
    if (r < 0) return -1;
    if (r) return sr_fail(err, "%s: no entry places model.norm (add \"model.norm\": 0 or \"cpu\")",
                          map->source);
    r = place_module(map, unit, "lm_head", &t_head, &from_head, err);
    if (r < 0) return -1;
    if (r) {
        if (!unit->shared_bytes)
            return sr_fail(err, "%s: no entry places lm_head (add \"lm_head\": 0 or \"cpu\")",
                           map->source);
        *t = t_norm;    /* tied: lm_head is the embedding, the norm decides */
        *from = from_norm;
        return 0;
    }
    if (t_norm != t_head) {
        char b[3][16];
        sr_info("%s: model.norm is on %s but lm_head on %s: strata keeps the final norm with "
                "lm_head (one unit, the head) and places both on %s", map->source,
                target_name(t_norm, b[0], sizeof b[0]), target_name(t_head, b[1], sizeof b[1]),
                target_name(t_head, b[2], sizeof b[2]));
    }
    *t = t_head;
    *from = from_head;
    return 0;
}

int sr_device_map_resolve(const sr_device_map *map, const sr_plan_unit *units, int n_units,
                          int n_gpu, int *tier, sr_error *err)
{
    for (int u = 0; u < n_units; u++) {
        int t = 0;
        const char *from = NULL;
        if (units[u].unit == SR_UNIT_HEAD) {
            if (place_head(map, &units[u], &t, &from, err)) return -1;
        } else {
            int r = place_module(map, &units[u], units[u].name, &t, &from, err);
            if (r < 0) return -1;
            if (r)
                return sr_fail(err, "%s: no entry places %s (add \"%s\": 0 or \"cpu\")",
                               map->source, units[u].name, units[u].name);
        }
        if (t >= n_gpu)
            return sr_fail(err, "%s: \"%s\" places %s on accelerator %d, but there are only %d",
                           map->source, from, units[u].name, t, n_gpu);
        tier[u] = t == SR_MAP_HOST ? n_gpu : t;
    }
    return 0;
}

int sr_switch_buffer_names(sr_switch_gen gen, bool b_legacy,
                           const char *names[SR_MAX_SWITCH_BUFFERS])
{
    int n = 0;
    if (gen == SR_GEN_NONE) return 0;
    names[n++] = "model.adapter_token_ids";    /* every generation */
    if (gen == SR_GEN_A) {
        names[n++] = "model.token_to_group_mask";
        names[n++] = "model.adapter_hiding_matrix";
    } else if (gen == SR_GEN_B && b_legacy) {
        names[n++] = "model.adapter_substitute_token_ids";
        names[n++] = "model.control_to_substitute_lut";
    } else if (gen == SR_GEN_B) {
        names[n++] = "model.switch.control_to_substitute_lut";
    } else {
        names[n++] = "model.switch.codebook";
        names[n++] = "model.switch.control_to_substitute_lut";
    }
    return n;
}

static json_t *target_json(const sr_plan *plan, int tier)
{
    return tier == plan->n_tiers - 1 ? json_string("cpu") : json_integer(tier);
}

char *sr_device_map_dump_buffers(const sr_plan *plan, const sr_plan_unit *units,
                                 const char *const *buffers, int n_buffers)
{
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    for (int u = 0; u < plan->n_units; u++) {
        int t = plan->units[u].tier;
        const char *keys[2] = {units[u].name, NULL};
        if (units[u].unit == SR_UNIT_HEAD) {
            keys[0] = "model.norm";
            keys[1] = "lm_head";
        }
        for (int k = 0; k < 2 && keys[k]; k++)
            bad |= json_object_set_new(o, keys[k], target_json(plan, t));
        if (units[u].unit == SR_UNIT_EMBED)
            for (int b = 0; b < n_buffers; b++)
                bad |= json_object_set_new(o, buffers[b], target_json(plan, t));
    }
    char *s = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return NULL;
    char *copy = sr_strdup(s);  /* jansson allocates with the C allocator */
    free(s);
    return copy;
}

char *sr_device_map_dump(const sr_plan *plan, const sr_plan_unit *units)
{
    return sr_device_map_dump_buffers(plan, units, NULL, 0);
}

int sr_device_map_save(const char *path, const sr_plan *plan, const sr_plan_unit *units,
                       const char *const *buffers, int n_buffers, sr_error *err)
{
    char *s = sr_device_map_dump_buffers(plan, units, buffers, n_buffers);
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
