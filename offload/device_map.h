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
 * never split.  The head is "model.norm" + "lm_head", one unit: a map that
 * puts them on different devices (accelerate does) places the head where
 * "lm_head" is (the norm is a few KB) and says so in one info line.  Keys that
 * cover no unit (e.g. "model.rotary_emb", "model.switch", the derived adapter
 * buffers of maps written for upstream models) are accepted and ignored:
 * derived data has no placement in strata.
 *
 * Written maps name every unit and, for a Granite Switch model, the
 * persistent buffers upstream's model of that generation registers
 * (sr_switch_buffer_names): transformers' from_pretrained(device_map=...)
 * refuses a map that gives any of them no device.  They go on the
 * embedding's device, where upstream computes the switch. */
#ifndef SR_OFFLOAD_DEVICE_MAP_H
#define SR_OFFLOAD_DEVICE_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "offload/planner.h"
#include "runtime/config.h"
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

#define SR_MAX_SWITCH_BUFFERS 4

/* The persistent buffers upstream's model of generation `gen` registers
 * (spec granite-switch.md §2.5) into names[SR_MAX_SWITCH_BUFFERS]; returns
 * how many (0 for a plain model).  Gen B has two layouts: `b_legacy` selects
 * @19b633a2's (model.adapter_substitute_token_ids +
 * model.control_to_substitute_lut; its config.json carries control_dims),
 * otherwise @b0df50b1's model.switch.control_to_substitute_lut. */
int sr_switch_buffer_names(sr_switch_gen gen, bool b_legacy,
                           const char *names[SR_MAX_SWITCH_BUFFERS]);

/* The plan as accelerate JSON (sr_free the string); NULL when out of memory.
 * `buffers` (n_buffers names, may be NULL) are written on the embedding
 * unit's device, right after it. */
char *sr_device_map_dump(const sr_plan *plan, const sr_plan_unit *units);
char *sr_device_map_dump_buffers(const sr_plan *plan, const sr_plan_unit *units,
                                 const char *const *buffers, int n_buffers);
int sr_device_map_save(const char *path, const sr_plan *plan, const sr_plan_unit *units,
                       const char *const *buffers, int n_buffers, sr_error *err);

#endif
