/* Building an sr_qmatrix from checkpoint tensors (bnb-format.md §3.3).
 *
 * Given the name of a Linear weight (e.g. "model.layers.0.mlp.up_proj.weight")
 * it detects the stored format from the tensors themselves:
 *   - `W.quant_state.bitsandbytes__nf4|fp4` present -> 4-bit (with
 *     `W.absmax`, optional double quantization), validated against the JSON;
 *   - int8 `W` with a sibling `P.SCB` -> LLM.int8 (weight_format must be 0);
 *   - F32/BF16/F16 2-D tensor -> float weight.
 * Shapes, absmax counts and JSON fields are checked; errors name the tensor
 * and the field.  The weight bytes are not copied (the matrix points into the
 * checkpoint mapping); reconstructed scales are owned by the matrix. */
#ifndef SR_QLOAD_H
#define SR_QLOAD_H

#include "quant/qmatrix.h"
#include "runtime/checkpoint.h"

int sr_qmatrix_from_ckpt(const sr_checkpoint *ck, const char *weight_name, sr_qmatrix *out,
                         sr_error *err);

#endif
