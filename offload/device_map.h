/* accelerate's device-map JSON: read it into a tier per unit, and write a
 * plan in it (--device-map / --save-device-map).
 *
 *   {"model.embed_tokens": 0, "model.layers.0": 0, ..., "model.norm": 1,
 *    "lm_head": "cpu"}
 *
 * Values: an accelerator index (0, "cuda:0", "cuda", "sim:0") or "cpu";
 * "disk" and devices strata does not have are refused naming the key.  A
 * key places its module and everything under it ("" or "model" cover many
 * units; the most specific key wins).  Keys below a unit
 * ("model.layers.3.mlp") must agree with the rest of the unit: units are
 * never split.  The head is "model.norm" + "lm_head" (both must agree).
 * Keys that cover no unit (e.g. "model.rotary_emb", the adapter buffers) are
 * accepted and ignored: nothing of theirs is placed. */
#ifndef SR_OFFLOAD_DEVICE_MAP_H
#define SR_OFFLOAD_DEVICE_MAP_H

#include <stddef.h>

#include "offload/planner.h"
#include "runtime/error.h"

#define SR_MAP_HOST (-1)

typedef struct sr_device_map_entry {
    char *module;
    int target;                 /* accelerator index, or SR_MAP_HOST */
} sr_device_map_entry;

typedef struct sr_device_map {
    char *source;               /* file name, for messages */
    int n;
    sr_device_map_entry *e;     /* in file order */
} sr_device_map;

int sr_device_map_parse(const char *json, size_t len, const char *source, sr_device_map *map,
                        sr_error *err);
int sr_device_map_load(const char *path, sr_device_map *map, sr_error *err);
void sr_device_map_free(sr_device_map *map);

/* tier[u] for every unit: accelerators 0..n_gpu-1, the host = n_gpu.  Fails
 * on an uncovered unit, a split unit or an accelerator index >= n_gpu. */
int sr_device_map_resolve(const sr_device_map *map, const sr_plan_unit *units, int n_units,
                          int n_gpu, int *tier, sr_error *err);

/* The plan as accelerate JSON (sr_free the string); NULL when out of memory. */
char *sr_device_map_dump(const sr_plan *plan, const sr_plan_unit *units);
int sr_device_map_save(const char *path, const sr_plan *plan, const sr_plan_unit *units,
                       sr_error *err);

#endif
