/* The tensor catalogue: every tensor of a checkpoint gets a role and a unit
 * (embedding, decoder layer i, head), or the checkpoint is refused naming the
 * tensor.  This is how strata can never silently drop a weight.
 *
 * Derived adapter metadata (model.adapter_token_ids, model.token_to_group_mask,
 * model.adapter_hiding_matrix and the Gen B/C tables) is flagged DERIVED: it
 * belongs to no unit, is never placed, never computed with, and is compared
 * with the config-rebuilt tables (see adapter_meta.h). */
#ifndef SR_CATALOG_H
#define SR_CATALOG_H

#include <stdint.h>

#include "runtime/adapter_meta.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"

typedef enum sr_role {
    SR_ROLE_EMBED,          /* model.embed_tokens.weight */
    SR_ROLE_LM_HEAD,        /* lm_head.weight (ignored when tied) */
    SR_ROLE_FINAL_NORM,     /* model.norm.weight */
    SR_ROLE_INPUT_NORM,     /* layers.i.input_layernorm.weight */
    SR_ROLE_POST_NORM,      /* layers.i.post_attention_layernorm.weight */
    SR_ROLE_Q_NORM, SR_ROLE_K_NORM,
    SR_ROLE_Q, SR_ROLE_K, SR_ROLE_V,     /* separate projections (granite) */
    SR_ROLE_QKV,            /* fused qkv_proj (switch) */
    SR_ROLE_O,
    SR_ROLE_GATE, SR_ROLE_UP, SR_ROLE_DOWN,
    SR_ROLE_MLP_IN,         /* shared_mlp.input_linear (gate rows, then up) */
    SR_ROLE_MLP_OUT,        /* shared_mlp.output_linear */
    SR_ROLE_DERIVED,        /* derived adapter metadata: ignored */
    SR_ROLE_COUNT
} sr_role;

/* What a tensor is within its module. */
typedef enum sr_part {
    SR_PART_WEIGHT,             /* the weight (float, packed 4-bit or int8) */
    SR_PART_BIAS,
    SR_PART_ABSMAX,             /* bnb companions (bnb-format §3.1, §4.1) */
    SR_PART_QUANT_MAP,
    SR_PART_NESTED_ABSMAX,
    SR_PART_NESTED_QUANT_MAP,
    SR_PART_QUANT_STATE,
    SR_PART_SCB,
    SR_PART_WEIGHT_FORMAT,
    SR_PART_LORA_A,             /* LoRA stacks; `slice` says which */
    SR_PART_LORA_B,
    SR_PART_DERIVED,
    SR_PART_COUNT
} sr_part;

/* Placement unit: the planner never splits one. */
#define SR_UNIT_EMBED (-1)
#define SR_UNIT_HEAD (-2)
#define SR_UNIT_NONE (-3)       /* derived metadata */

typedef struct sr_catalog_entry {
    const sr_tensor *t;
    sr_role role;
    sr_part part;
    int unit;                   /* layer index >= 0, or SR_UNIT_* */
    int slice;                  /* LoRA slice index, -1 otherwise */
} sr_catalog_entry;

typedef struct sr_catalog {
    size_t n;
    sr_catalog_entry *entries;  /* in checkpoint order */
    int n_layers;
    uint64_t *layer_bytes;      /* [n_layers] bytes of each layer unit */
    uint64_t embed_bytes, head_bytes;
    bool head_tied;             /* lm_head is the embedding (shares its storage) */
    bool lm_head_ignored;       /* a stored lm_head.weight ignored because tied */
    int n_derived;              /* derived keys found (and ignored) */
    bool quantized_4bit, quantized_8bit;
} sr_catalog;

/* Classifies every tensor.  Fails naming the first tensor that has no role,
 * a layer index out of range, or a required tensor that is missing.  Derived
 * keys are compared with `meta` (if non-NULL): a difference logs one warning
 * naming the key; equality is silent. */
int sr_catalog_build(const sr_checkpoint *ck, const sr_config *cfg, const sr_adapter_meta *meta,
                     sr_catalog *cat, sr_error *err);
void sr_catalog_free(sr_catalog *cat);

const char *sr_role_name(sr_role r);
/* The lora_target_modules group (SR_LORA_* of config.h) a projection role
 * belongs to; 0 for roles that take no LoRA. */
unsigned sr_role_lora_group(sr_role r);
const char *sr_part_name(sr_part p);

#endif
