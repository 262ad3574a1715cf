/* The planner's units from a checkpoint, and which unit every tensor
 * belongs to (so a plan places each stored tensor exactly once).
 *
 * From the catalogue (the normal path): embedding, decoder layers (LoRA
 * stacks included, KV cache for the run shape, load-time conversions),
 * head; derived adapter metadata and an lm_head ignored because tied belong
 * to no unit.
 * From tensor names alone (checkpoints that are not a whole model, e.g. the
 * bnb test modules): "model.embed_tokens.*", "model.layers.N.*",
 * "model.norm.*" + "lm_head.*"; any other tensor is refused by name. */
#ifndef SR_OFFLOAD_UNITS_H
#define SR_OFFLOAD_UNITS_H

#include <stddef.h>

#include "offload/budget.h"
#include "offload/planner.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"

typedef struct sr_unit_list {
    int n;
    sr_plan_unit *units;            /* embedding, layers 0.., head */
    size_t n_tensors;
    const sr_tensor **tensors;      /* every tensor, in checkpoint order */
    int *tensor_unit;               /* [n_tensors] index in units, -1: never placed */
} sr_unit_list;

/* Bytes of what runtime/model.c builds from unit `unit`'s tensors at load
 * (SR_UNIT_EMBED, SR_UNIT_HEAD or a layer): f32 norms, biases and LoRA
 * stacks, 4-bit block scales (reconstructed for double quantization), int8
 * row scales, aligned copies of float weights stored at odd offsets.  Each
 * buffer counts padded to SR_DERIVED_ALIGN, as offload/exec.c lays them out
 * on the tier that runs the unit.  sr_units_from_catalog fills
 * derived_bytes with it; sr_units_from_names leaves 0 (no model). */
#define SR_DERIVED_ALIGN 64
uint64_t sr_unit_derived_bytes(const sr_catalog *cat, const sr_config *cfg, int unit);

int sr_units_from_catalog(const sr_catalog *cat, const sr_config *cfg, const sr_run_shape *shape,
                          sr_unit_list *out, sr_error *err);
int sr_units_from_names(const sr_checkpoint *ck, uint64_t kv_per_layer, sr_unit_list *out,
                        sr_error *err);
void sr_unit_list_free(sr_unit_list *l);

#endif
