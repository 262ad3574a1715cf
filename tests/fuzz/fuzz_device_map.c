/* libFuzzer target: accelerate device-map JSON, resolved onto a small model's
 * units and, when it resolves, planned over two sim tiers and written back.
 * Seeds: tests/fuzz/corpus/device_map/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "offload/device_map.h"
#include "offload/planner.h"
#include "runtime/alloc.h"

#define L 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_plan_unit units[L + 2];
    memset(units, 0, sizeof units);
    units[0].unit = SR_UNIT_EMBED;
    snprintf(units[0].name, sizeof units[0].name, "model.embed_tokens");
    for (int i = 0; i < L; i++) {
        units[1 + i].unit = i;
        snprintf(units[1 + i].name, sizeof units[1 + i].name, "model.layers.%d", i);
        units[1 + i].kv_bytes = 100;
    }
    units[L + 1].unit = SR_UNIT_HEAD;
    snprintf(units[L + 1].name, sizeof units[L + 1].name, "lm_head");
    units[L + 1].shared_bytes = size & 1 ? 1000 : 0;   /* tied or not */
    for (int u = 0; u < L + 2; u++) units[u].weight_bytes = 1000 + 10 * (uint64_t)u;

    sr_error err;
    sr_device_map map;
    if (sr_device_map_parse((const char *)data, size, "fuzz", &map, &err)) return 0;
    int tier[L + 2];
    if (sr_device_map_resolve(&map, units, L + 2, 2, tier, &err) == 0) {
        sr_tier t[3];
        memset(t, 0, sizeof t);
        for (int g = 0; g < 3; g++) {
            snprintf(t[g].name, sizeof t[g].name, g < 2 ? "sim:%d" : "cpu", g);
            t[g].gpu = g < 2 ? g : -1;
            t[g].budget = g < 2 ? 3000 : 100000;
            sr_tier_perf_default(g < 2 ? SR_DEV_SIM : SR_DEV_CPU, &t[g].perf);
        }
        sr_plan_request rq = {.units = units, .n_units = L + 2, .tiers = t, .n_tiers = 3,
                              .strategy = SR_STRATEGY_MAP, .map_tier = tier,
                              .host_exec = SR_EXEC_AUTO, .batch = 1, .prefetch = -1,
                              .hop_bytes = 64};
        sr_plan p;
        if (sr_plan_make(&rq, &p, &err) == 0) {
            char *s = sr_device_map_dump(&p, units);
            sr_free(s);
            sr_plan_free(&p);
        }
    }
    sr_device_map_free(&map);
    return 0;
}
