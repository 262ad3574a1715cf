/* The planner's units from a checkpoint, and which unit every tensor
 * belongs to (so a plan places each stored tensor exactly once).
 *
 * From the catalogue (the normal path): embedding, decoder layers (LoRA
 * stacks included, KV cache for the run shape), head; derived adapter
 * metadata and an lm_head ignored because tied belong to no unit.
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

int sr_units_from_catalog(const sr_catalog *cat, const sr_config *cfg, const sr_run_shape *shape,
                          sr_unit_list *out, sr_error *err);
int sr_units_from_names(const sr_checkpoint *ck, uint64_t kv_per_layer, sr_unit_list *out,
                        sr_error *err);
void sr_unit_list_free(sr_unit_list *l);

#endif
