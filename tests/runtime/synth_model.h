/* Test helper: tiny random Granite / Granite Switch checkpoints written as
 * config.json + model.safetensors (F32) into a directory, for the spec §7
 * acceptance tests.  The weights live in memory (synth_weights) so a test can
 * change them (zero the LoRA, perturb an embedding row) and write the same
 * model in the plain Granite or the switch layout. */
#ifndef SR_TEST_SYNTH_MODEL_H
#define SR_TEST_SYNTH_MODEL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct synth_dims {
    int vocab, hidden, layers, heads, kv_heads, inter;
    int n_adapters, rank;       /* LoRA stacks: N x R (0 adapters = none) */
    int first_ctrl;             /* control ids first_ctrl .. first_ctrl+N-1 */
    bool tie;
} synth_dims;

enum { SYN_QKV, SYN_O, SYN_IN, SYN_OUT, SYN_SITES };

typedef struct synth_layer {
    float *in_norm, *post_norm, *q, *k, *v, *o, *gate, *up, *down;
    float *lA[SYN_SITES][3], *lB[SYN_SITES][3];   /* A [N][R][in], B [N][rows][R] */
} synth_layer;

typedef struct synth_weights {
    synth_dims d;
    float *embed, *lm_head, *final_norm;
    synth_layer *layer;
} synth_weights;

static inline int syn_nslices(int site) { return site == SYN_QKV ? 3 : site == SYN_IN ? 2 : 1; }
static inline int64_t syn_in(const synth_dims *d, int site)
{
    return site == SYN_O ? (int64_t)d->hidden : site == SYN_OUT ? d->inter : d->hidden;
}
static inline int64_t syn_rows(const synth_dims *d, int site, int s)
{
    int hd = d->hidden / d->heads;
    switch (site) {
    case SYN_QKV: return s == 0 ? (int64_t)d->heads * hd : (int64_t)d->kv_heads * hd;
    case SYN_IN: return d->inter;
    default: return d->hidden;
    }
}

static inline double syn_rand(uint64_t *s)     /* uniform in [-1, 1) */
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1.0p-52 - 1.0;
}

static inline float *syn_fill(uint64_t *seed, int64_t n, double scale, double offset)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(offset + scale * syn_rand(seed));
    return x;
}

/* Random weights; lora_scale 0 gives all-zero LoRA stacks. */
static inline void synth_init(synth_weights *w, const synth_dims *d, uint64_t seed,
                              double lora_scale)
{
    memset(w, 0, sizeof *w);
    w->d = *d;
    const int64_t H = d->hidden, V = d->vocab, I = d->inter, hd = d->hidden / d->heads;
    const int64_t qd = d->heads * hd, kvd = d->kv_heads * hd;
    uint64_t s = seed * 2654435761u + 17;
    w->embed = syn_fill(&s, V * H, 0.1, 0);
    w->lm_head = syn_fill(&s, V * H, 0.15, 0);
    w->final_norm = syn_fill(&s, H, 0.2, 1.0);
    w->layer = calloc((size_t)d->layers, sizeof *w->layer);
    for (int l = 0; l < d->layers; l++) {
        synth_layer *L = &w->layer[l];
        L->in_norm = syn_fill(&s, H, 0.2, 1.0);
        L->post_norm = syn_fill(&s, H, 0.2, 1.0);
        double sh = 1.0 / sqrt((double)H) * 1.7, si = 1.0 / sqrt((double)I) * 1.7;
        L->q = syn_fill(&s, qd * H, sh, 0);
        L->k = syn_fill(&s, kvd * H, sh, 0);
        L->v = syn_fill(&s, kvd * H, sh, 0);
        L->o = syn_fill(&s, H * qd, sh, 0);
        L->gate = syn_fill(&s, I * H, sh, 0);
        L->up = syn_fill(&s, I * H, sh, 0);
        L->down = syn_fill(&s, H * I, si, 0);
    }
    /* LoRA last, so the base weights do not depend on the adapter count */
    for (int l = 0; l < d->layers && d->n_adapters; l++) {
        synth_layer *L = &w->layer[l];
        for (int site = 0; site < SYN_SITES; site++) {
            for (int sl = 0; sl < syn_nslices(site); sl++) {
                int64_t in = syn_in(d, site), rows = syn_rows(d, site, sl);
                L->lA[site][sl] = syn_fill(&s, (int64_t)d->n_adapters * d->rank * in,
                                           lora_scale / sqrt((double)in), 0);
                L->lB[site][sl] = syn_fill(&s, (int64_t)d->n_adapters * rows * d->rank,
                                           lora_scale, 0);
            }
        }
    }
}

static inline void synth_free(synth_weights *w)
{
    free(w->embed);
    free(w->lm_head);
    free(w->final_norm);
    for (int l = 0; w->layer && l < w->d.layers; l++) {
        synth_layer *L = &w->layer[l];
        float *p[] = {L->in_norm, L->post_norm, L->q, L->k, L->v, L->o, L->gate, L->up, L->down};
        for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
        for (int site = 0; site < SYN_SITES; site++)
            for (int sl = 0; sl < 3; sl++) {
                free(L->lA[site][sl]);
                free(L->lB[site][sl]);
            }
    }
    free(w->layer);
    memset(w, 0, sizeof *w);
}

/* Zeroes every LoRA stack (T_eq_2, T_gap). */
static inline void synth_zero_lora(synth_weights *w)
{
    const synth_dims *d = &w->d;
    for (int l = 0; l < d->layers; l++)
        for (int site = 0; site < SYN_SITES; site++)
            for (int sl = 0; sl < syn_nslices(site); sl++) {
                int64_t in = syn_in(d, site), rows = syn_rows(d, site, sl);
                if (w->layer[l].lA[site][sl])
                    memset(w->layer[l].lA[site][sl], 0,
                           sizeof(float) * (size_t)(d->n_adapters * d->rank * in));
                if (w->layer[l].lB[site][sl])
                    memset(w->layer[l].lB[site][sl], 0,
                           sizeof(float) * (size_t)(d->n_adapters * rows * d->rank));
            }
}

/* ---- safetensors writer ---------------------------------------------------- */

typedef struct syn_tensor {
    char name[128];
    int ndim;
    int64_t shape[4];
    const float *data;          /* concatenation of up to 3 parts (fused layouts) */
    const float *parts[3];
    int64_t part_n[3];
} syn_tensor;

typedef struct syn_list {
    int n, cap;
    syn_tensor *t;
} syn_list;

static inline syn_tensor *syn_add(syn_list *l, const char *name, int ndim, const int64_t *shape,
                                  const float *data)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, sizeof *l->t * (size_t)l->cap);
    }
    syn_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (t->shape[i] = shape[i]);
    t->parts[0] = data;
    t->part_n[0] = n;
    return t;
}

static inline int64_t syn_numel(const syn_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline int syn_write_safetensors(const char *path, const syn_list *l)
{
    size_t cap = 4096 + (size_t)l->n * 256, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const syn_tensor *t = &l->t[i];
        uint64_t nb = (uint64_t)syn_numel(t) * 4;
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t->name);
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < l->n; i++)
        for (int p = 0; p < 3 && l->t[i].parts[p]; p++)
            fwrite(l->t[i].parts[p], 4, (size_t)l->t[i].part_n[p], f);
    free(h);
    return fclose(f) ? -1 : 0;
}

/* ---- config + checkpoint ------------------------------------------------- */

typedef enum synth_layout { SYN_GRANITE, SYN_SWITCH } synth_layout;

/* Writes DIR/config.json and DIR/model.safetensors.  `switch_json` is extra
 * JSON members for the switch config (e.g. "\"control_dims\": 8, ..."),
 * without braces, may be NULL.  n_switch_slots: S (0, 1 for Gen A/B, 2 for C). */
static inline int synth_write(const char *dir, const synth_weights *w, synth_layout layout,
                              int n_switch_slots, const char *switch_json)
{
    const synth_dims *d = &w->d;
    const int64_t H = d->hidden, V = d->vocab, I = d->inter, hd = d->hidden / d->heads;
    const int64_t qd = d->heads * hd, kvd = d->kv_heads * hd;
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    bool sw = layout == SYN_SWITCH;
    fprintf(f, "{\n \"model_type\": \"%s\",\n \"architectures\": [\"%s\"],\n",
            sw ? "granite_switch" : "granite", sw ? "GraniteSwitchForCausalLM" : "GraniteForCausalLM");
    fprintf(f, " \"vocab_size\": %lld, \"hidden_size\": %lld, \"intermediate_size\": %lld,\n",
            (long long)V, (long long)H, (long long)I);
    fprintf(f, " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,\n",
            d->layers + (sw ? n_switch_slots : 0), d->heads, d->kv_heads);
    fprintf(f, " \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,\n"
               " \"embedding_multiplier\": 12.0, \"residual_multiplier\": 0.22,\n"
               " \"attention_multiplier\": 0.125, \"logits_scaling\": 4.0, \"hidden_act\": \"silu\",\n"
               " \"attention_bias\": false, \"dtype\": \"float32\", \"pad_token_id\": 0,\n"
               " \"bos_token_id\": 1, \"eos_token_id\": 2, \"tie_word_embeddings\": %s",
            d->tie ? "true" : "false");
    if (sw) {
        fprintf(f, ",\n \"shared_intermediate_size\": %lld, \"position_embedding_type\": \"rope\",\n"
                   " \"num_local_experts\": 0, \"layer_types\": [", (long long)I);
        for (int i = 0; i < d->layers + n_switch_slots; i++) fprintf(f, "%s\"attention\"", i ? ", " : "");
        fprintf(f, "],\n \"num_adapters\": %d", d->n_adapters);
        if (d->n_adapters) {
            fprintf(f, ",\n \"adapter_token_ids\": [");
            for (int k = 0; k < d->n_adapters; k++) fprintf(f, "%s%d", k ? ", " : "", d->first_ctrl + k);
            fprintf(f, "],\n \"adapter_names\": [");
            for (int k = 0; k < d->n_adapters; k++) fprintf(f, "%s\"ad%d\"", k ? ", " : "", k + 1);
            fprintf(f, "],\n \"adapter_ranks\": [");
            for (int k = 0; k < d->n_adapters; k++) fprintf(f, "%s%d", k ? ", " : "", d->rank);
            fprintf(f, "],\n \"max_lora_rank\": %d, \"control_token_gain\": 15.0,\n"
                       " \"lora_target_modules\": [\"qkv_proj\", \"o_proj\", \"shared_input_linear\", "
                       "\"shared_output_linear\"]", d->rank);
        }
        if (switch_json && switch_json[0]) fprintf(f, ",\n %s", switch_json);
    }
    fprintf(f, "\n}\n");
    if (fclose(f)) return -1;

    syn_list l = {0};
    int64_t sh[4];
    char name[128];
    sh[0] = V; sh[1] = H;
    syn_add(&l, "model.embed_tokens.weight", 2, sh, w->embed);
    if (!d->tie) syn_add(&l, "lm_head.weight", 2, sh, w->lm_head);
    sh[0] = H;
    syn_add(&l, "model.norm.weight", 1, sh, w->final_norm);
    bool lora = sw && d->n_adapters > 0;
    const char *base = lora ? ".base_layer" : "";
    for (int i = 0; i < d->layers; i++) {
        const synth_layer *L = &w->layer[i];
        sh[0] = H;
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", i);
        syn_add(&l, name, 1, sh, L->in_norm);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", i);
        syn_add(&l, name, 1, sh, L->post_norm);
        if (sw) {
            sh[0] = qd + 2 * kvd; sh[1] = H;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.qkv_proj%s.weight", i, base);
            syn_tensor *t = syn_add(&l, name, 2, sh, L->q);
            t->part_n[0] = qd * H;
            t->parts[1] = L->k; t->part_n[1] = kvd * H;
            t->parts[2] = L->v; t->part_n[2] = kvd * H;
            sh[0] = H; sh[1] = qd;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj%s.weight", i, base);
            syn_add(&l, name, 2, sh, L->o);
            sh[0] = 2 * I; sh[1] = H;
            snprintf(name, sizeof name, "model.layers.%d.shared_mlp.input_linear%s.weight", i, base);
            t = syn_add(&l, name, 2, sh, L->gate);
            t->part_n[0] = I * H;
            t->parts[1] = L->up; t->part_n[1] = I * H;
            sh[0] = H; sh[1] = I;
            snprintf(name, sizeof name, "model.layers.%d.shared_mlp.output_linear%s.weight", i, base);
            syn_add(&l, name, 2, sh, L->down);
        } else {
            const char *nm[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                 "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
            const float *data[7] = {L->q, L->k, L->v, L->o, L->gate, L->up, L->down};
            int64_t rows[7] = {qd, kvd, kvd, H, I, I, H}, cols[7] = {H, H, H, qd, H, H, I};
            for (int j = 0; j < 7; j++) {
                sh[0] = rows[j]; sh[1] = cols[j];
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", i, nm[j]);
                syn_add(&l, name, 2, sh, data[j]);
            }
        }
        if (!lora) continue;
        const char *mods[SYN_SITES] = {"self_attn.qkv_proj", "self_attn.o_proj",
                                       "shared_mlp.input_linear", "shared_mlp.output_linear"};
        for (int site = 0; site < SYN_SITES; site++) {
            bool sliced = site == SYN_QKV || site == SYN_IN;
            for (int s = 0; s < syn_nslices(site); s++) {
                int64_t a_sh[4] = {d->n_adapters, 1, d->rank, syn_in(d, site)};
                int64_t b_sh[4] = {d->n_adapters, 1, syn_rows(d, site, s), d->rank};
                if (sliced) snprintf(name, sizeof name, "model.layers.%d.%s.lora_A_slices.%d", i, mods[site], s);
                else snprintf(name, sizeof name, "model.layers.%d.%s.lora_A", i, mods[site]);
                syn_add(&l, name, 4, a_sh, L->lA[site][s]);
                if (sliced) snprintf(name, sizeof name, "model.layers.%d.%s.lora_B_slices.%d", i, mods[site], s);
                else snprintf(name, sizeof name, "model.layers.%d.%s.lora_B", i, mods[site]);
                syn_add(&l, name, 4, b_sh, L->lB[site][s]);
            }
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = syn_write_safetensors(path, &l);
    free(l.t);
    return rc;
}

#endif
