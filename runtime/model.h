/* A loaded Granite / Granite Switch model: config, adapter metadata and the
 * weights of every unit (embedding, decoder layers, head).
 *
 * Base projections stay in their stored format as sr_qmatrix pointing into
 * the checkpoint mapping (float or bnb 4/8-bit); plain Granite keeps q/k/v and
 * gate/up as separate matrices that write slices of one output row (no copy,
 * and the decode path reads each weight byte once either way).  The
 * embedding stays in stored precision (rows are converted when gathered); a
 * tied LM head is a second sr_qmatrix over the embedding's bytes.  Norms and
 * LoRA stacks are converted to f32 at load (they are small).
 *
 * Everything is checked against the config: a tensor with the wrong shape or
 * dtype fails the load naming the file and the tensor; a failed load frees
 * everything it took. */
#ifndef SR_MODEL_H
#define SR_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/qmatrix.h"
#include "runtime/adapter_meta.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/kv_cache.h"
#include "runtime/lora.h"
#include "runtime/rope.h"
#include "runtime/switch.h"

#define SR_PROJ_MAX_PARTS 3

/* One (switched) linear: base weight(s) writing consecutive output slices,
 * optional bias, optional LoRA stacks. */
typedef struct sr_proj {
    int n_parts;                        /* 1 (fused) or 2..3 (separate gate/up, q/k/v) */
    sr_qmatrix w[SR_PROJ_MAX_PARTS];
    int64_t part_off[SR_PROJ_MAX_PARTS];   /* first output column of each part */
    int64_t rows, cols;                 /* out features (all parts), in features */
    float *bias;                        /* [rows] or NULL */
    bool has_lora;
    sr_lora lora;
} sr_proj;

typedef struct sr_layer_weights {
    float *in_norm, *post_norm;         /* [H] */
    float *q_norm, *k_norm;             /* [hd] (qk_norm only) or NULL */
    sr_proj qkv;                        /* [nh*hd + 2*nkv*hd, H] */
    sr_proj o;                          /* [H, nh*hd] */
    sr_proj mlp_in;                     /* [2I, H]: gate rows, then up rows */
    sr_proj mlp_out;                    /* [H, I] */
} sr_layer_weights;

typedef struct sr_model_opts {
    bool check_finite;                  /* scan every weight for NaN/Inf at load */
    /* The model runs on the CPU from these descriptors (not through a
     * placement, which copies the stored bytes to its tiers): its bf16
     * projections and head get the exact kernels' 16-row tiles where the
     * AVX-512 kernels run, and under STRATA_KERNELS=int8 its 4-bit and
     * LLM.int8 projections the int8 kernels' (quant/qtile.h): a derived copy
     * about their size (4-bit: codes + 2 bytes of scale per block). */
    bool runs_on_cpu;
} sr_model_opts;

typedef struct sr_model {
    sr_config cfg;
    sr_adapter_meta meta;
    sr_catalog cat;
    sr_switch sw;
    sr_checkpoint *ck;

    int64_t V, H, nh, nkv, hd, I;       /* vocab, hidden, heads, kv heads, head dim, MLP width */
    int L;                              /* decoder layers */
    float emb_mult, res_mult, attn_scale, logit_scale, eps;
    bool use_rope;
    sr_rope rope;
    bool hiding;                        /* Gen A with at least one hiding group */
    sr_kv_type kv_type;                 /* KV cache elements of its sequences (a run
                                           option, f32 unless set before any sequence) */
    uint64_t tile_bytes;                /* kernels' tiles made at load (runs_on_cpu) */
    void *tile_arena;                   /* all those tiles, when one buffer could hold them */

    sr_qmatrix embed;                   /* [V, H] stored precision */
    sr_qmatrix head;                    /* [V, H]: lm_head, or the embedding's bytes when tied */
    float *final_norm;                  /* [H] */
    sr_layer_weights *layers;           /* [L] */
} sr_model;

/* `path`: a model directory (config.json + safetensors).  opts may be NULL. */
int sr_model_load(const char *path, const sr_model_opts *opts, sr_model **out, sr_error *err);
void sr_model_free(sr_model *m);

/* Bytes of the per-sequence state for `ctx` positions: the KV cache of every
 * layer plus the per-position records (what sr_seq_create allocates besides
 * its workspace). */
uint64_t sr_kv_bytes(const sr_model *m, int64_t ctx);

#endif
