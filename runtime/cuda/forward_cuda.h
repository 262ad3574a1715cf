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

#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"
#include "runtime/forward.h"
#include "runtime/model.h"

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
