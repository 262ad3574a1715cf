/* config.json -> a typed model configuration.
 *
 * Covers model_type "granite" (GraniteForCausalLM), "granitemoehybrid" with
 * all-attention layers (Granite 4.0 micro) and "granite_switch" (every field
 * of spec granite-switch.md §1.2-§1.4, with the reference defaults), the
 * validation of §1.6 (errors name the field), the generation detection of
 * §1.5, and the bnb `quantization_config` block (bnb-format.md §5.1). */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

#define SR_MAX_GROUPS 32        /* hiding groups fit a 32-bit membership mask */

typedef enum sr_arch {
    SR_ARCH_GRANITE,            /* model_type "granite" */
    SR_ARCH_GRANITEMOEHYBRID,   /* model_type "granitemoehybrid", attention only */
    SR_ARCH_GRANITE_SWITCH,     /* model_type "granite_switch" */
} sr_arch;

typedef enum sr_switch_gen {
    SR_GEN_NONE,                /* no adapters: plain Granite */
    SR_GEN_A,                   /* SingleSwitch + KV hiding + position correction */
    SR_GEN_B,                   /* SingleSwitch + token exchange */
    SR_GEN_C,                   /* MultiSwitch + token exchange */
} sr_switch_gen;

/* lora_target_modules bits */
enum {
    SR_LORA_QKV = 1u << 0,      /* "qkv_proj" */
    SR_LORA_O = 1u << 1,        /* "o_proj" */
    SR_LORA_IN = 1u << 2,       /* "shared_input_linear" */
    SR_LORA_OUT = 1u << 3,      /* "shared_output_linear" */
};

typedef enum sr_bnb_mode { SR_BNB_NONE, SR_BNB_4BIT, SR_BNB_8BIT } sr_bnb_mode;

typedef struct sr_bnb_config {
    sr_bnb_mode mode;
    bool nf4;                   /* 4-bit: true = nf4, false = fp4 */
    bool double_quant;          /* bnb_4bit_use_double_quant */
    int blocksize;              /* 64 (not in the JSON; per-tensor quant_state wins) */
    sr_dtype compute_dtype;     /* bnb_4bit_compute_dtype */
    sr_dtype quant_storage;     /* bnb_4bit_quant_storage */
    bool has_fp16_weight;       /* llm_int8_has_fp16_weight */
    bool fp32_cpu_offload;      /* llm_int8_enable_fp32_cpu_offload */
    double int8_threshold;      /* llm_int8_threshold */
    bool skip_modules_null;     /* llm_int8_skip_modules == null */
    int n_skip_modules;
    char **skip_modules;
} sr_bnb_config;

typedef struct sr_hiding_group {
    char *name;
    int n_members;
    char **members;             /* adapter names as written (unknown ones kept) */
} sr_hiding_group;

typedef struct sr_hiding_rule {
    char *adapter;              /* adapter name or "base" */
    int n_groups;
    char **groups;              /* group names as written */
} sr_hiding_rule;

typedef struct sr_config {
    char *source;               /* path of config.json, for messages */
    char *model_type;
    sr_arch arch;
    sr_switch_gen gen;

    /* base fields (§1.2) */
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t shared_intermediate_size;   /* -1 when absent (derive from weights) */
    int64_t num_hidden_layers;          /* as in the file (switch slots included) */
    int64_t n_layers;                   /* L = decoder layers */
    int n_switch_slots;                 /* S */
    int64_t num_attention_heads;
    int64_t num_key_value_heads;
    int64_t head_dim;                   /* hd (derived if absent) */
    bool head_dim_given;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    char rope_type[32];                 /* "default" or "linear" */
    double rope_factor;                 /* linear scaling factor (1 = none) */
    bool use_rope;                      /* position_embedding_type == "rope" */
    bool attention_bias;
    bool qk_norm;
    double embedding_multiplier;
    double residual_multiplier;
    double attention_multiplier;
    double logits_scaling;
    bool tie_word_embeddings;
    int64_t num_local_experts;
    int64_t num_experts_per_tok;
    int64_t bos_token_id, eos_token_id, pad_token_id;   /* -1 when absent */
    sr_dtype dtype;                     /* torch_dtype / dtype; F32 if absent */

    /* switch fields (§1.3) */
    int num_adapters;                   /* N */
    int n_adapter_token_ids;            /* N, or N+1 (Gen C base-reset layout) */
    int64_t *adapter_token_ids;
    char **adapter_names;               /* N entries or NULL */
    int *adapter_ranks;                 /* N entries or NULL */
    int max_lora_rank;                  /* R */
    unsigned lora_targets;              /* SR_LORA_* bits */
    double control_token_gain;
    int control_dims;                   /* C (Gen A) */
    int n_hiding_groups;                /* GRP; groups in JSON order */
    sr_hiding_group *hiding_groups;
    bool hiding_policy_null;
    int n_hiding_rules;
    sr_hiding_rule *hiding_rules;
    int n_third_party;
    char **adapter_third_party;
    int n_substitute_ids;
    int64_t *adapter_substitute_token_ids;
    int ms_code_m;                      /* Gen C; 0 if absent */
    char ms_code_type[16];
    double ms_memory_gain;
    int ms_counting_head_dim;

    /* quantization (bnb-format §5) */
    sr_bnb_config quant;

    /* defaults the loader fell back to (for `inspect` and logging) */
    int n_defaulted;
    char **defaulted;
} sr_config;

/* Reads and validates `path` (a config.json).  On failure cfg is left
 * zeroed and err names the file and the field. */
int sr_config_load(const char *path, sr_config *cfg, sr_error *err);
/* Same from memory; `source` names it in messages. */
int sr_config_parse(const char *json, size_t len, const char *source, sr_config *cfg,
                    sr_error *err);
/* Safe on a zeroed or already freed cfg (it is zeroed again). */
void sr_config_free(sr_config *cfg);

/* Only the `quantization_config` block (mode SR_BNB_NONE when absent) and
 * the model dtype (`dtype` / `torch_dtype`, F32 if absent; `dtype` may be
 * NULL) of a config.json, for files whose model part is not a Granite config
 * (e.g. the bnb golden toys, which have no model_type). */
int sr_quant_config_load(const char *path, sr_bnb_config *q, sr_dtype *dtype, sr_error *err);
int sr_quant_config_parse(const char *json, size_t len, const char *source, sr_bnb_config *q,
                          sr_dtype *dtype, sr_error *err);
void sr_bnb_config_free(sr_bnb_config *q);

const char *sr_gen_name(sr_switch_gen g);      /* "none", "A (KV hiding)", ... */
const char *sr_arch_name(sr_arch a);

/* Adapter index (1..N, or 0 for a Gen C base-reset token) for token id t, or
 * -1 if t is not a control token. */
int sr_config_control_index(const sr_config *cfg, int64_t t);

#endif
