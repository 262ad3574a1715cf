/* Running one unit (embedding, decoder layer, head) on the tier a plan put
 * it on: the CPU kernels of runtime/forward.h on cpu and sim tiers, the
 * CUDA units of runtime/cuda/forward_cuda.h on cuda tiers.  The executor
 * (offload/exec.c) decides what runs where and moves the bytes; this file
 * only turns "unit u on tier t" into the calls of that tier's backend.
 *
 * Every pointer handed in is in the tier's own memory (device pointers on
 * cuda), except the host step `sth`: its adapter indices are what the CUDA
 * LoRA kernels plan their GEMMs from.  CUDA work is enqueued on the tier's
 * stream; sr_tier_exec_sync waits for it. */
#ifndef SR_OFFLOAD_TIER_EXEC_H
#define SR_OFFLOAD_TIER_EXEC_H

#include "offload/device.h"
#include "runtime/forward.h"

typedef struct sr_tier_exec {
    sr_device *dev;
    sr_stream stream;           /* cuda: the compute stream; cpu / sim: a no-op handle */
    void *cuda;                 /* cuda: the kernels' context (sr_cuda_ctx) on that stream */
    int prefill;                /* cuda: the prefill GEMMs' inputs (sr_cuda_dtype), read once */
} sr_tier_exec;

/* A tier that runs units of m.  Fails naming the device where its backend
 * cannot run m (a cuda tier in a build without CUDA, a bf16 KV cache on
 * cuda). */
int sr_tier_exec_init(sr_tier_exec *t, sr_device *dev, const sr_model *m, sr_error *err);
void sr_tier_exec_free(sr_tier_exec *t);
/* Does the tier compute on the host (cpu, sim)? */
bool sr_tier_exec_on_host(const sr_tier_exec *t);

/* The units.  view: the model as seen from the tier (its RoPE table,
 * embedding / head); st: the step data in the tier's memory; sth: the same
 * step on the host; mem: the tier's Mem bits per position; x: [T][H]. */
int sr_tier_embed(sr_tier_exec *t, const sr_model *view, const sr_step *st, float *x,
                  sr_error *err);
int sr_tier_layer(sr_tier_exec *t, const sr_model *view, const sr_layer_weights *w, int l,
                  sr_kv_cache *kv, const sr_step *st, const sr_step *sth, float *x,
                  sr_workspace *ws, sr_error *err);
/* logits[rows][V] of x rows [T-rows, T). */
int sr_tier_head(sr_tier_exec *t, const sr_model *view, const sr_step *st, const float *x,
                 int rows, float *logits, sr_workspace *ws, sr_error *err);

/* Waits until the tier's enqueued work has finished (cpu / sim: at once). */
int sr_tier_exec_sync(sr_tier_exec *t, sr_error *err);

#endif
