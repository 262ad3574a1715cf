#include "runtime/catalog.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/log.h"

static const char *role_names[SR_ROLE_COUNT] = {
    [SR_ROLE_EMBED] = "embedding", [SR_ROLE_LM_HEAD] = "lm_head",
    [SR_ROLE_FINAL_NORM] = "final_norm", [SR_ROLE_INPUT_NORM] = "input_norm",
    [SR_ROLE_POST_NORM] = "post_attention_norm", [SR_ROLE_Q_NORM] = "q_norm",
    [SR_ROLE_K_NORM] = "k_norm", [SR_ROLE_Q] = "q_proj", [SR_ROLE_K] = "k_proj",
    [SR_ROLE_V] = "v_proj", [SR_ROLE_QKV] = "qkv_proj", [SR_ROLE_O] = "o_proj",
    [SR_ROLE_GATE] = "gate_proj", [SR_ROLE_UP] = "up_proj", [SR_ROLE_DOWN] = "down_proj",
    [SR_ROLE_MLP_IN] = "input_linear", [SR_ROLE_MLP_OUT] = "output_linear",
    [SR_ROLE_DERIVED] = "derived",
};

static const char *part_names[SR_PART_COUNT] = {
    [SR_PART_WEIGHT] = "weight", [SR_PART_BIAS] = "bias", [SR_PART_ABSMAX] = "absmax",
    [SR_PART_QUANT_MAP] = "quant_map", [SR_PART_NESTED_ABSMAX] = "nested_absmax",
    [SR_PART_NESTED_QUANT_MAP] = "nested_quant_map", [SR_PART_QUANT_STATE] = "quant_state",
    [SR_PART_SCB] = "SCB", [SR_PART_WEIGHT_FORMAT] = "weight_format",
    [SR_PART_LORA_A] = "lora_A", [SR_PART_LORA_B] = "lora_B", [SR_PART_DERIVED] = "derived",
};

const char *sr_role_name(sr_role r) { return (unsigned)r < SR_ROLE_COUNT ? role_names[r] : "?"; }
const char *sr_part_name(sr_part p) { return (unsigned)p < SR_PART_COUNT ? part_names[p] : "?"; }

/* Modules inside a decoder layer.  `lora` is the lora_target_modules bit of
 * the group a LoRA stack here belongs to (0: never LoRA-wrapped). */
static const struct layer_module {
    const char *prefix;
    sr_role role;
    unsigned lora;
    int n_slices;       /* LoRA slices (lora_A_slices.{s}); 0 = plain lora_A/lora_B */
} layer_modules[] = {
    {"input_layernorm.", SR_ROLE_INPUT_NORM, 0, 0},
    {"post_attention_layernorm.", SR_ROLE_POST_NORM, 0, 0},
    {"self_attn.q_norm.", SR_ROLE_Q_NORM, 0, 0},
    {"self_attn.k_norm.", SR_ROLE_K_NORM, 0, 0},
    {"self_attn.q_proj.", SR_ROLE_Q, 0, 0},
    {"self_attn.k_proj.", SR_ROLE_K, 0, 0},
    {"self_attn.v_proj.", SR_ROLE_V, 0, 0},
    {"self_attn.qkv_proj.", SR_ROLE_QKV, SR_LORA_QKV, 3},
    {"self_attn.o_proj.", SR_ROLE_O, SR_LORA_O, 0},
    {"mlp.gate_proj.", SR_ROLE_GATE, 0, 0},
    {"mlp.up_proj.", SR_ROLE_UP, 0, 0},
    {"mlp.down_proj.", SR_ROLE_DOWN, 0, 0},
    {"shared_mlp.input_linear.", SR_ROLE_MLP_IN, SR_LORA_IN, 2},
    {"shared_mlp.output_linear.", SR_ROLE_MLP_OUT, SR_LORA_OUT, 0},
};

/* Suffixes of a (possibly bnb-quantized) Linear or a norm, after the module. */
static const struct { const char *suffix; sr_part part; } parts[] = {
    {"weight", SR_PART_WEIGHT},
    {"bias", SR_PART_BIAS},
    {"weight.absmax", SR_PART_ABSMAX},
    {"weight.quant_map", SR_PART_QUANT_MAP},
    {"weight.nested_absmax", SR_PART_NESTED_ABSMAX},
    {"weight.nested_quant_map", SR_PART_NESTED_QUANT_MAP},
    {"weight.quant_state.bitsandbytes__nf4", SR_PART_QUANT_STATE},
    {"weight.quant_state.bitsandbytes__fp4", SR_PART_QUANT_STATE},
    {"SCB", SR_PART_SCB},
    {"weight_format", SR_PART_WEIGHT_FORMAT},
};

static int match_part(const char *rest, sr_part *part)
{
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (!strcmp(rest, parts[i].suffix)) { *part = parts[i].part; return 1; }
    return 0;
}

/* Parses "lora_A_slices.<s>", "lora_B_slices.<s>", "lora_A", "lora_B". */
static int match_lora(const char *rest, int n_slices, sr_part *part, int *slice)
{
    char ab;
    if (n_slices) {
        if (strncmp(rest, "lora_", 5) || (rest[5] != 'A' && rest[5] != 'B') ||
            strncmp(rest + 6, "_slices.", 8))
            return 0;
        ab = rest[5];
        const char *d = rest + 14;
        char *end;
        long s = strtol(d, &end, 10);
        if (end == d || *end || s < 0 || s >= n_slices || (d[0] == '0' && d[1])) return 0;
        *slice = (int)s;
    } else {
        if (strcmp(rest, "lora_A") && strcmp(rest, "lora_B")) return 0;
        ab = rest[5];
        *slice = 0;
    }
    *part = ab == 'A' ? SR_PART_LORA_A : SR_PART_LORA_B;
    return 1;
}

unsigned sr_role_lora_group(sr_role r)
{
    switch (r) {
    case SR_ROLE_QKV: return SR_LORA_QKV;
    case SR_ROLE_O: return SR_LORA_O;
    case SR_ROLE_MLP_IN: return SR_LORA_IN;
    case SR_ROLE_MLP_OUT: return SR_LORA_OUT;
    default: return 0;
    }
}

/* Classifies one name; returns 0 (entry filled) or -1 with err set. */
static int classify(const sr_tensor *t, const sr_config *cfg, sr_catalog_entry *e, sr_error *err)
{
    const char *name = t->name;
    e->t = t;
    e->slice = -1;
    if (sr_is_derived_key(name)) {
        e->role = SR_ROLE_DERIVED;
        e->part = SR_PART_DERIVED;
        e->unit = SR_UNIT_NONE;
        return 0;
    }
    static const struct { const char *module; sr_role role; int unit; } globals[] = {
        {"model.embed_tokens.", SR_ROLE_EMBED, SR_UNIT_EMBED},
        {"model.norm.", SR_ROLE_FINAL_NORM, SR_UNIT_HEAD},
        {"lm_head.", SR_ROLE_LM_HEAD, SR_UNIT_HEAD},
    };
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++) {
        size_t l = strlen(globals[i].module);
        if (!strncmp(name, globals[i].module, l) && match_part(name + l, &e->part)) {
            e->role = globals[i].role;
            e->unit = globals[i].unit;
            return 0;
        }
    }
    static const char lp[] = "model.layers.";
    if (!strncmp(name, lp, sizeof lp - 1)) {
        const char *d = name + sizeof lp - 1;
        char *end;
        long li = strtol(d, &end, 10);
        if (end != d && *end == '.' && !(d[0] == '0' && end - d > 1)) {
            if (li < 0 || li >= cfg->n_layers)
                return sr_fail(err, "tensor '%s': layer %ld out of range (config.json has %" PRId64
                               " decoder layers)", name, li, cfg->n_layers);
            const char *rest = end + 1;
            for (size_t i = 0; i < sizeof layer_modules / sizeof *layer_modules; i++) {
                const struct layer_module *m = &layer_modules[i];
                size_t l = strlen(m->prefix);
                if (strncmp(rest, m->prefix, l)) continue;
                const char *r = rest + l;
                e->role = m->role;
                e->unit = (int)li;
                if (m->lora && !strncmp(r, "base_layer.", 11) && match_part(r + 11, &e->part))
                    return 0;
                if (match_part(r, &e->part)) return 0;
                if (m->lora && match_lora(r, m->n_slices, &e->part, &e->slice)) {
                    if (!(cfg->lora_targets & m->lora) || cfg->num_adapters == 0)
                        return sr_fail(err, "tensor '%s': LoRA stack for a module that config.json's "
                                       "lora_target_modules/num_adapters do not enable; refusing to "
                                       "ignore a weight", name);
                    return 0;
                }
                break;
            }
        }
    }
    return sr_fail(err, "tensor '%s' has no role in a %s checkpoint; refusing to drop a weight "
                   "silently", name, sr_arch_name(cfg->arch));
}

/* Which weights a layer needs, as a bit set over roles. */
static int check_layer_complete(const sr_catalog *cat, const sr_config *cfg, int layer,
                                const uint32_t *have, sr_error *err)
{
    uint32_t h = have[layer];
#define HAS(r) (h & (1u << (r)))
    const char *missing = NULL;
    if (!HAS(SR_ROLE_INPUT_NORM)) missing = "input_layernorm.weight";
    else if (!HAS(SR_ROLE_POST_NORM)) missing = "post_attention_layernorm.weight";
    else if (!HAS(SR_ROLE_QKV) && !(HAS(SR_ROLE_Q) && HAS(SR_ROLE_K) && HAS(SR_ROLE_V)))
        missing = "self_attn.qkv_proj (or q_proj/k_proj/v_proj) weight";
    else if (!HAS(SR_ROLE_O)) missing = "self_attn.o_proj weight";
    else if (!HAS(SR_ROLE_MLP_IN) && !(HAS(SR_ROLE_GATE) && HAS(SR_ROLE_UP)))
        missing = "shared_mlp.input_linear (or mlp.gate_proj/up_proj) weight";
    else if (!HAS(SR_ROLE_MLP_OUT) && !HAS(SR_ROLE_DOWN))
        missing = "shared_mlp.output_linear (or mlp.down_proj) weight";
    else if (cfg->qk_norm && !(HAS(SR_ROLE_Q_NORM) && HAS(SR_ROLE_K_NORM)))
        missing = "self_attn.q_norm/k_norm weight (config.json sets qk_norm)";
#undef HAS
    (void)cat;
    if (missing)
        return sr_fail(err, "layer %d: missing tensor model.layers.%d.%s", layer, layer, missing);
    return 0;
}

int sr_catalog_build(const sr_checkpoint *ck, const sr_config *cfg, const sr_adapter_meta *meta,
                     sr_catalog *cat, sr_error *err)
{
    memset(cat, 0, sizeof *cat);
    size_t n = sr_ckpt_count(ck);
    int nl = (int)cfg->n_layers;
    uint32_t *have = NULL, *lora_have = NULL;
    cat->entries = sr_calloc(n ? n : 1, sizeof *cat->entries);
    cat->layer_bytes = sr_calloc((size_t)nl, sizeof *cat->layer_bytes);
    have = sr_calloc((size_t)nl, sizeof *have);
    lora_have = sr_calloc((size_t)nl, sizeof *lora_have);
    if (!cat->entries || !cat->layer_bytes || !have || !lora_have) {
        sr_fail(err, "out of memory building the tensor catalogue");
        goto fail;
    }
    cat->n = n;
    cat->n_layers = nl;
    cat->head_tied = cfg->tie_word_embeddings;
    bool have_embed = false, have_norm = false, have_head = false;
    const sr_tensor *embed = NULL, *head = NULL;
    for (size_t i = 0; i < n; i++) {
        sr_catalog_entry *e = &cat->entries[i];
        const sr_tensor *t = sr_ckpt_get(ck, i);
        if (classify(t, cfg, e, err)) goto fail;
        if (e->part == SR_PART_QUANT_STATE) cat->quantized_4bit = true;
        if (e->part == SR_PART_SCB) cat->quantized_8bit = true;
        if (e->role == SR_ROLE_DERIVED) {
            cat->n_derived++;
            if (meta) {
                char why[256] = "";
                if (sr_adapter_meta_compare(meta, t, why, sizeof why) == 0)
                    sr_warn("%s: stored '%s' differs from the table rebuilt from config.json (%s); "
                            "config.json wins", sr_ckpt_dir(ck), t->name, why);
            }
            continue;
        }
        if (e->role == SR_ROLE_EMBED && e->part == SR_PART_WEIGHT) { have_embed = true; embed = t; }
        if (e->role == SR_ROLE_FINAL_NORM && e->part == SR_PART_WEIGHT) have_norm = true;
        if (e->role == SR_ROLE_LM_HEAD && e->part == SR_PART_WEIGHT) { have_head = true; head = t; }
        if (e->role == SR_ROLE_LM_HEAD && cat->head_tied) {
            /* transformers re-ties a stored head to the embedding after loading */
            e->unit = SR_UNIT_NONE;
            cat->lm_head_ignored = true;
            continue;
        }
        if (e->unit >= 0) {
            cat->layer_bytes[e->unit] += t->nbytes;
            if (e->part == SR_PART_WEIGHT) have[e->unit] |= 1u << e->role;
            if (e->part == SR_PART_LORA_A) lora_have[e->unit] |= sr_role_lora_group(e->role);
            if (e->part == SR_PART_LORA_B) lora_have[e->unit] |= sr_role_lora_group(e->role) << 4;
        } else if (e->unit == SR_UNIT_EMBED) {
            cat->embed_bytes += t->nbytes;
        } else if (e->unit == SR_UNIT_HEAD) {
            cat->head_bytes += t->nbytes;
        }
    }
    if (!have_embed) { sr_fail(err, "missing tensor model.embed_tokens.weight"); goto fail; }
    if (!have_norm) { sr_fail(err, "missing tensor model.norm.weight"); goto fail; }
    if (!cat->head_tied && !have_head) {
        sr_fail(err, "missing tensor lm_head.weight (config.json has tie_word_embeddings false)");
        goto fail;
    }
    if (cat->lm_head_ignored && head && embed &&
        (head->nbytes != embed->nbytes || memcmp(head->data, embed->data, head->nbytes)))
        sr_warn("%s: lm_head.weight differs from model.embed_tokens.weight but config.json ties "
                "them; using the embedding, as transformers does", sr_ckpt_dir(ck));
    for (int l = 0; l < nl; l++) {
        if (check_layer_complete(cat, cfg, l, have, err)) goto fail;
        unsigned want = cfg->num_adapters > 0 ? cfg->lora_targets : 0;
        unsigned got = lora_have[l] & (lora_have[l] >> 4) & 0xf;
        if ((want & got) != want) {
            unsigned miss = want & ~got;
            sr_fail(err, "layer %d: missing LoRA stacks (lora_A/lora_B) for %s, which config.json's "
                    "lora_target_modules enables", l,
                    miss & SR_LORA_QKV ? "qkv_proj" : miss & SR_LORA_O ? "o_proj"
                    : miss & SR_LORA_IN ? "shared_mlp.input_linear" : "shared_mlp.output_linear");
            goto fail;
        }
    }
    sr_free(have);
    sr_free(lora_have);
    return 0;
fail:
    sr_free(have);
    sr_free(lora_have);
    sr_catalog_free(cat);
    return -1;
}

void sr_catalog_free(sr_catalog *cat)
{
    if (!cat) return;
    sr_free(cat->entries);
    sr_free(cat->layer_bytes);
    memset(cat, 0, sizeof *cat);
}
