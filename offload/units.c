#include "offload/units.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

/* Multiply-adds per token of one tensor: packed 4-bit bytes hold two
 * weights; a LoRA stack holds every adapter, of which one is active. */
static uint64_t tensor_macs(const sr_tensor *t, sr_part part, int n_adapters)
{
    int64_t n = sr_tensor_numel(t);
    if (n < 0) return 0;
    if (part == SR_PART_WEIGHT || part == SR_PART_BIAS)
        return (uint64_t)n * (t->dtype == SR_U8 ? 2 : 1);
    if (part == SR_PART_LORA_A || part == SR_PART_LORA_B)
        return (uint64_t)n / (uint64_t)(n_adapters > 0 ? n_adapters : 1);
    return 0;
}

/* ---- what the model derives from a unit's tensors at load ----------------- */

static uint64_t up_derived(uint64_t n) { return (n + SR_DERIVED_ALIGN - 1) / SR_DERIVED_ALIGN * SR_DERIVED_ALIGN; }

static bool is_float(sr_dtype d) { return d == SR_F32 || d == SR_BF16 || d == SR_F16; }

static bool is_matrix_role(sr_role r)
{
    switch (r) {
    case SR_ROLE_EMBED: case SR_ROLE_LM_HEAD: case SR_ROLE_Q: case SR_ROLE_K: case SR_ROLE_V:
    case SR_ROLE_QKV: case SR_ROLE_O: case SR_ROLE_GATE: case SR_ROLE_UP: case SR_ROLE_DOWN:
    case SR_ROLE_MLP_IN: case SR_ROLE_MLP_OUT:
        return true;
    default:
        return false;
    }
}

/* The buffers quant/qload.c builds for one matrix: f32 block scales of a
 * 4-bit weight (one per absmax entry), int8 row scales, an aligned copy of a
 * float weight stored at an odd offset. */
static uint64_t matrix_derived(const sr_catalog_entry *e)
{
    const int64_t n = sr_tensor_numel(e->t);
    if (n < 0) return 0;
    if (e->part == SR_PART_ABSMAX || e->part == SR_PART_SCB)
        return up_derived((uint64_t)n * sizeof(float));
    if (e->part == SR_PART_WEIGHT && is_float(e->t->dtype) &&
        (uintptr_t)e->t->data % sr_dtype_size(e->t->dtype))
        return up_derived(e->t->nbytes);
    return 0;
}

uint64_t sr_unit_derived_bytes(const sr_catalog *cat, const sr_config *cfg, int unit)
{
    uint64_t total = 0, bias_qkv = 0, bias_o = 0;
    /* per LoRA group: slices, adapters, rank, in features, B elements */
    int slices[4] = {0}, n_ad[4] = {0};
    int64_t rank[4] = {0}, in[4] = {0};
    const bool lora = cfg->arch == SR_ARCH_GRANITE_SWITCH && cfg->num_adapters > 0;
    for (size_t i = 0; i < cat->n; i++) {
        const sr_catalog_entry *e = &cat->entries[i];
        /* a tied head is a second descriptor over the embedding's tensors */
        const bool mine = e->unit == unit ||
                          (unit == SR_UNIT_HEAD && cat->head_tied && e->unit == SR_UNIT_EMBED);
        if (!mine) continue;
        const int64_t n = sr_tensor_numel(e->t);
        if (n < 0) continue;
        switch (e->role) {
        case SR_ROLE_FINAL_NORM: case SR_ROLE_INPUT_NORM: case SR_ROLE_POST_NORM:
        case SR_ROLE_Q_NORM: case SR_ROLE_K_NORM:
            if (e->part == SR_PART_WEIGHT && (e->role != SR_ROLE_Q_NORM || cfg->qk_norm) &&
                (e->role != SR_ROLE_K_NORM || cfg->qk_norm))
                total += up_derived((uint64_t)n * sizeof(float));
            continue;
        default:
            break;
        }
        if (!is_matrix_role(e->role)) continue;
        total += matrix_derived(e);
        if (e->part == SR_PART_BIAS && cfg->attention_bias) {
            if (e->role == SR_ROLE_O) bias_o += (uint64_t)n;
            else if (e->role == SR_ROLE_Q || e->role == SR_ROLE_K || e->role == SR_ROLE_V ||
                     e->role == SR_ROLE_QKV)
                bias_qkv += (uint64_t)n;
        }
        const unsigned tgt = sr_role_lora_group(e->role);
        if (!lora || !tgt || !(cfg->lora_targets & tgt)) continue;
        const int g = tgt == SR_LORA_QKV ? 0 : tgt == SR_LORA_O ? 1 : tgt == SR_LORA_IN ? 2 : 3;
        if (e->part == SR_PART_LORA_A && e->t->ndim == 4) {
            /* [N, 1, R, in] */
            slices[g]++;
            n_ad[g] = (int)e->t->shape[0];
            rank[g] = e->t->shape[2];
            in[g] = e->t->shape[3];
        } else if (e->part == SR_PART_LORA_B) {
            total += up_derived((uint64_t)n * sizeof(float));     /* B of one slice */
        }
    }
    if (bias_qkv) total += up_derived(bias_qkv * sizeof(float));
    if (bias_o) total += up_derived(bias_o * sizeof(float));
    for (int g = 0; g < 4; g++) {
        if (!slices[g]) continue;
        const uint64_t N = (uint64_t)n_ad[g], S = (uint64_t)slices[g];
        total += up_derived(N * sizeof(int));                                   /* ranks */
        total += up_derived(N * S * (uint64_t)rank[g] * (uint64_t)in[g] * sizeof(float)); /* A */
        total += up_derived(N * S * sizeof(bool));                              /* live */
    }
    return total;
}

static int alloc_list(sr_unit_list *l, int n_units, size_t n_tensors, sr_error *err)
{
    memset(l, 0, sizeof *l);
    l->units = sr_calloc((size_t)n_units, sizeof *l->units);
    l->tensors = sr_calloc(n_tensors ? n_tensors : 1, sizeof *l->tensors);
    l->tensor_unit = sr_calloc(n_tensors ? n_tensors : 1, sizeof *l->tensor_unit);
    if (!l->units || !l->tensors || !l->tensor_unit) {
        sr_unit_list_free(l);
        return sr_fail(err, "units: out of memory");
    }
    l->n = n_units;
    l->n_tensors = n_tensors;
    return 0;
}

static void name_units(sr_unit_list *l, int n_layers)
{
    l->units[0].unit = SR_UNIT_EMBED;
    snprintf(l->units[0].name, sizeof l->units[0].name, "model.embed_tokens");
    for (int i = 0; i < n_layers; i++) {
        l->units[1 + i].unit = i;
        snprintf(l->units[1 + i].name, sizeof l->units[1 + i].name, "model.layers.%d", i);
    }
    l->units[n_layers + 1].unit = SR_UNIT_HEAD;
    snprintf(l->units[n_layers + 1].name, sizeof l->units[n_layers + 1].name, "lm_head");
}

/* Index in l->units of catalogue unit `unit`. */
static int unit_slot(int unit, int n_layers)
{
    if (unit == SR_UNIT_EMBED) return 0;
    if (unit == SR_UNIT_HEAD) return n_layers + 1;
    if (unit >= 0 && unit < n_layers) return 1 + unit;
    return -1;
}

int sr_units_from_catalog(const sr_catalog *cat, const sr_config *cfg, const sr_run_shape *shape,
                          sr_unit_list *out, sr_error *err)
{
    const int L = cat->n_layers;
    if (alloc_list(out, L + 2, cat->n, err)) return -1;
    name_units(out, L);
    sr_model_dims dims;
    sr_model_dims_from_config(cfg, &dims);
    const uint64_t kv = sr_kv_layer_bytes(&dims, shape);
    const uint64_t batch = (uint64_t)(shape->batch > 0 ? shape->batch : 1);
    const sr_tensor *embed = NULL;
    for (size_t i = 0; i < cat->n; i++) {
        const sr_catalog_entry *e = &cat->entries[i];
        out->tensors[i] = e->t;
        int slot = unit_slot(e->unit, L);
        out->tensor_unit[i] = slot;
        if (slot < 0) continue;
        sr_plan_unit *u = &out->units[slot];
        u->weight_bytes += e->t->nbytes;
        if (e->unit >= 0) u->macs += tensor_macs(e->t, e->part, cfg->num_adapters);
        if (e->role == SR_ROLE_EMBED && e->part == SR_PART_WEIGHT) embed = e->t;
    }
    if (cat->embed_bytes != out->units[0].weight_bytes ||
        cat->head_bytes != out->units[L + 1].weight_bytes) {
        sr_unit_list_free(out);
        return sr_fail(err, "units: catalogue byte totals disagree with its entries");
    }
    for (int i = 0; i < L; i++) out->units[1 + i].kv_bytes = kv;
    for (int u = 0; u < L + 2; u++)
        out->units[u].derived_bytes = sr_unit_derived_bytes(cat, cfg, out->units[u].unit);
    /* the embedding reads one row per sequence; the head multiplies with
     * the whole [vocab, hidden] matrix (its own, or the embedding's) */
    sr_plan_unit *eu = &out->units[0], *hu = &out->units[L + 1];
    if (embed && embed->shape[0] > 0)
        eu->read_bytes = embed->nbytes / (uint64_t)embed->shape[0] * batch;
    hu->macs = (uint64_t)cfg->vocab_size * (uint64_t)cfg->hidden_size;
    if (cat->head_tied && embed) hu->shared_bytes = embed->nbytes;
    return 0;
}

/* "model.layers.12.mlp..." -> 12; -1 if not a layer tensor, -2 if malformed. */
static long layer_of(const char *name)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || *end != '.' || errno || v < 0 || v > 100000 || (*p == '0' && end - p > 1))
        return -2;
    return v;
}

static bool has_prefix(const char *name, const char *module)
{
    size_t n = strlen(module);
    return !strncmp(name, module, n) && name[n] == '.';
}

int sr_units_from_names(const sr_checkpoint *ck, uint64_t kv_per_layer, sr_unit_list *out,
                        sr_error *err)
{
    const size_t n = sr_ckpt_count(ck);
    long max_layer = -1;
    for (size_t i = 0; i < n; i++) {
        const sr_tensor *t = sr_ckpt_get(ck, i);
        long l = layer_of(t->name);
        if (l == -2)
            return sr_fail(err, "%s: tensor %s: malformed layer index", sr_ckpt_dir(ck), t->name);
        if (l > max_layer) max_layer = l;
    }
    const int L = (int)(max_layer + 1);
    if (alloc_list(out, L + 2, n, err)) return -1;
    name_units(out, L);
    bool *seen = sr_calloc((size_t)L + 2, sizeof *seen);
    if (!seen) {
        sr_unit_list_free(out);
        return sr_fail(err, "units: out of memory");
    }
    const sr_tensor *embed_w = NULL;
    bool head_w = false;
    for (size_t i = 0; i < n; i++) {
        const sr_tensor *t = sr_ckpt_get(ck, i);
        long l = layer_of(t->name);
        int slot = l >= 0 ? 1 + (int)l
                   : has_prefix(t->name, "model.embed_tokens") ? 0
                   : has_prefix(t->name, "model.norm") || has_prefix(t->name, "lm_head") ? L + 1
                                                                                        : -1;
        if (slot < 0) {
            sr_free(seen);
            sr_unit_list_free(out);
            return sr_fail(err, "%s: tensor %s belongs to no unit (embedding, layer, head)",
                           sr_ckpt_dir(ck), t->name);
        }
        out->tensors[i] = t;
        out->tensor_unit[i] = slot;
        seen[slot] = true;
        out->units[slot].weight_bytes += t->nbytes;
        size_t nl = strlen(t->name);
        if (slot != 0 && nl > 7 && !strcmp(t->name + nl - 7, ".weight"))
            out->units[slot].macs += tensor_macs(t, SR_PART_WEIGHT, 1);
        if (!strcmp(t->name, "model.embed_tokens.weight")) embed_w = t;
        if (!strcmp(t->name, "lm_head.weight")) head_w = true;
    }
    for (int i = 0; i < L; i++) {
        if (!seen[1 + i]) {
            sr_free(seen);
            sr_unit_list_free(out);
            return sr_fail(err, "%s: no tensor of model.layers.%d (layers 0..%d present)",
                           sr_ckpt_dir(ck), i, L - 1);
        }
        out->units[1 + i].kv_bytes = kv_per_layer;
    }
    sr_free(seen);
    if (embed_w && !head_w) out->units[L + 1].shared_bytes = embed_w->nbytes;
    if (embed_w && embed_w->shape[0] > 0) out->units[0].read_bytes = embed_w->nbytes /
                                                                     (uint64_t)embed_w->shape[0];
    return 0;
}

void sr_unit_list_free(sr_unit_list *l)
{
    if (!l) return;
    sr_free(l->units);
    sr_free(l->tensors);
    sr_free(l->tensor_unit);
    memset(l, 0, sizeof *l);
}
