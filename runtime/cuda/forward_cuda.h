/* The whole forward pass on one GPU: the CUDA twin of runtime/forward.h
 * (spec granite-switch.md §4), built from the kernels of quant/cuda and
 * runtime/cuda, for checking every kernel together against the CPU on the
 * golden models and as the single-GPU reference for multi-tier runs.
 *
 *   sr_cuda_model   device copies of every weight of a loaded sr_model (base
 *                   projections in their stored format, norms, biases, LoRA
 *                   stacks, RoPE frequencies); a tied head shares the
 *                   embedding's device bytes.
 *   sr_cuda_seq     one sequence: the KV cache of every layer and the
 *                   activations on the device; the per-token step data
 *                   (switch state, adapter indices, corrected RoPE positions,
 *                   hiding bits) is computed on the host exactly as on the
 *                   CPU (sr_step_begin of a host sr_seq) and sent each call.
 *
 * Prefill GEMMs compute in f32 by default (results then differ from the CPU
 * only by summation order); STRATA_CUDA_PREFILL=bf16 or f16 selects 16-bit
 * tiles (faster, not for golden comparisons). */
#ifndef SR_FORWARD_CUDA_H
#define SR_FORWARD_CUDA_H

#include <stdbool.h>
#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"
#include "runtime/forward.h"
#include "runtime/model.h"

/* ---- units over explicit device buffers -----------------------------------
 * The embedding, one decoder layer and the head, each enqueued on the
 * context's stream: what sr_cuda_forward strings together for a whole model
 * on one GPU, and what the offload executor (offload/exec.c) calls for the
 * units a plan puts on a CUDA tier, over weights it placed there itself. */

/* One call's buffers and step data as seen from one device. */
typedef struct sr_cuda_unit_io {
    const sr_model *m;              /* dims and scalars (host struct) */
    int T;                          /* tokens of the call */
    int64_t p0;                     /* raw position of the first */
    float *x;                       /* [T][H] activations, updated in place */
    /* workspace for up to T tokens: [T][H], [T][(nh+2nkv)hd], [T][nh hd],
     * [T][H], [T][2I], [T][I] */
    float *u, *qkv, *attn, *proj, *gu, *act;
    const int32_t *ids;             /* [T] ids the embedding reads */
    const int32_t *pos;             /* [T] RoPE positions */
    const uint32_t *qsup;           /* [T] hidden groups per query (NULL: no hiding) */
    const uint32_t *key_mem;        /* [ctx] Mem bits per cached position */
    const int32_t *adapter_host;    /* [T] adapter index per token, HOST memory */
    const float *inv_freq;          /* [hd/2] RoPE frequencies (NULL without RoPE) */
    sr_cuda_dtype compute;          /* prefill GEMM inputs (sr_cuda_prefill_compute) */
} sr_cuda_unit_io;

/* STRATA_CUDA_PREFILL: f32 (default), bf16 or f16. */
sr_cuda_dtype sr_cuda_prefill_compute(void);

/* x = E[ids] · embedding_multiplier. */
int sr_cuda_embed_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io, const sr_qmatrix *embed,
                       sr_error *err);
/* Decoder layer l (w: device weights) on x; the K/V of the new tokens go
 * to kc / vc ([nkv][kv_ctx][hd] f32) at positions p0..p0+T-1. */
int sr_cuda_layer_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io, const sr_layer_weights *w,
                       float *kc, float *vc, int64_t kv_ctx, sr_error *err);
/* logits[rows][V] (device) of x rows [T-rows, T): final norm, head,
 * / logits_scaling.  Uses io->u as scratch. */
int sr_cuda_head_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io, const float *final_norm,
                      const sr_qmatrix *head, int rows, float *logits, sr_error *err);

/* ---- the whole model on one GPU ------------------------------------------ */

typedef struct sr_cuda_model sr_cuda_model;
typedef struct sr_cuda_seq sr_cuda_seq;

/* Uploads m's weights to the context's device.  m must outlive the result. */
int sr_cuda_model_upload(const sr_model *m, sr_cuda_ctx *c, sr_cuda_model **out, sr_error *err);
void sr_cuda_model_free(sr_cuda_model *dm);
/* Device bytes the model's weights took. */
uint64_t sr_cuda_model_bytes(const sr_cuda_model *dm);

/* ctx as sr_seq_create (<= 0: max_position_embeddings). */
int sr_cuda_seq_create(const sr_cuda_model *dm, int64_t ctx, sr_cuda_seq **out, sr_error *err);
void sr_cuda_seq_free(sr_cuda_seq *s);
void sr_cuda_seq_reset(sr_cuda_seq *s);
/* The host-side sequence state (switch state, tokens, adapters, positions). */
const sr_seq *sr_cuda_seq_host(const sr_cuda_seq *s);

/* As sr_forward: T new tokens; logits (host memory) NULL, [V] of the last
 * token, or [T][V] with all_logits.  adapter_out / pos_out optional [T].
 * On failure nothing of this call becomes part of the sequence. */
int sr_cuda_forward(sr_cuda_seq *s, const int32_t *tokens, int64_t T, float *logits,
                    bool all_logits, int32_t *adapter_out, int32_t *pos_out, sr_error *err);

/* One greedy step on the device: feeds `token`, returns the argmax of the
 * new logits (device argmax; only the id crosses to the host) in *next. */
int sr_cuda_greedy_step(sr_cuda_seq *s, int32_t token, int32_t *next, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
