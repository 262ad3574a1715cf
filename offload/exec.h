/* Execution of a plan: every unit runs on its tier through the device
 * interface, with the activations hopping at unit boundaries.
 *
 * At creation each unit's STORED tensor bytes are copied onto the tier the
 * plan gave it (packed by element size, so the buffer is exactly the planned
 * bytes), and its weight descriptors are rebuilt to point there.  What the
 * model derived from them at load (f32 norms, biases and LoRA stacks,
 * reconstructed double-quant scales) is copied onto the tier that runs the
 * unit: the plan counted it there (sr_plan_unit.derived_bytes), and a unit
 * that derives more than its plan counted is refused.  A tied head on the
 * embedding's tier reads the embedding's buffer; elsewhere it has its own
 * copy (as planned).
 *
 * Per tier that runs units, inside its planned reserve: the layer workspace,
 * the RoPE table, the activations, the per-token step data (adapter index,
 * RoPE position, hiding bits, token ids) and the per-position hiding bits,
 * sent from the host every step: the adapter metadata always lives where the
 * unit runs (derived checkpoint buffers are never used).  Plus the KV blocks
 * of its layers.  The host keeps only the sequence state (no KV cache).
 *
 * Streamed layers: their stored bytes sit in host memory; each step they are
 * copied into the staging slots of the streaming accelerator (layer j of the
 * streamed sequence always uses slot j % slots, the copy of layer j+prefetch
 * issued before layer j runs), so the bytes copied per step equal the plan's
 * stream.bytes_per_token.  On cpu and sim every copy completes in its call.
 *
 * CUDA tiers (offload/tier_exec.h): a tier's units run as CUDA kernels on
 * its own stream; step data goes ahead of them on that stream; a hop waits
 * for the source tier's stream, then copies on the destination's (or, to a
 * tier that computes on the host, waits for the copy too).  Streamed layers
 * go into the slots by a copy stream (offload/device_cuda.h staging): the
 * copy of layer j+prefetch is issued before layer j runs and waits until
 * its slot's previous layer has released it; the layer waits for its copy.
 * A call returns with every tier's work finished.
 *
 * With the same kernels on the same bytes (cpu, sim), logits are
 * bit-identical to the single-tier CPU run (sr_forward); on CUDA tiers they
 * are within the CUDA kernels' tolerance of it. */
#ifndef SR_OFFLOAD_EXEC_H
#define SR_OFFLOAD_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#include "offload/device.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/forward.h"

typedef struct sr_offload sr_offload;

typedef struct sr_offload_stats {
    /* bytes held per tier (index = plan tier) */
    uint64_t stored[SR_MAX_DEVICES + 1];    /* unit weights as stored (= plan weights) */
    uint64_t kv[SR_MAX_DEVICES + 1];        /* KV blocks (= plan kv) */
    uint64_t staging[SR_MAX_DEVICES + 1];   /* streaming slots (= plan staging) */
    uint64_t derived[SR_MAX_DEVICES + 1];   /* load-time conversions (= plan derived) */
    uint64_t scratch[SR_MAX_DEVICES + 1];   /* workspace, RoPE table, activations, step
                                               data, logits (within the plan's reserve) */
    /* bytes moved since the last reset */
    uint64_t streamed;                      /* weights copied into staging slots */
    uint64_t activations;                   /* hops between tiers */
    uint64_t metadata;                      /* step data + hiding bits sent to tiers */
    uint64_t logits;                        /* logits brought back to the caller */
    uint64_t steps;                         /* forward passes (chunks) run */
    uint64_t tokens;                        /* tokens processed */
    double step_s;                          /* wall time in sr_offload_forward */
    double copy_s;                          /* of which the host thread spent issuing
                                               (cpu, sim: performing) streamed copies */
    bool async_copies;                      /* copies overlap compute (CUDA streams); on
                                               cpu and sim they complete in their call */
} sr_offload_stats;

/* `ul` must be the units of m's own catalogue (sr_units_from_catalog on
 * m->cat) in the plan's order; `devs` supplies a device per plan tier
 * (accelerator t = devs->gpu[t], the host = devs->host); their budgets are
 * enforced (a sim device holds at most its stated memory).  ctx: positions
 * per sequence. */
int sr_offload_create(const sr_model *m, const sr_plan *plan, const sr_unit_list *ul,
                      sr_device_set *devs, int64_t ctx, sr_offload **out, sr_error *err);
void sr_offload_free(sr_offload *o);

/* As sr_forward: T new tokens, logits of the last ([V]) or of all ([T][V]).
 * All logits (for tests and scoring) take a [chunk][V] buffer on the head's
 * tier at first use, within its budget but beyond the plan, which counts
 * the last token's logits only (what generation needs). */
int sr_offload_forward(sr_offload *o, const int32_t *tokens, int64_t T, float *logits,
                       bool all_logits, sr_error *err);
/* Forgets the sequence (keeps every allocation). */
void sr_offload_reset(sr_offload *o);
/* The host sequence state (positions, tokens, adapter indices): read it, or
 * sr_seq_truncate it to keep a prefix (the K/V of kept positions on the
 * tiers stay valid).  It has no KV cache: never pass it to sr_forward. */
sr_seq *sr_offload_seq(sr_offload *o);

const sr_offload_stats *sr_offload_get_stats(const sr_offload *o);
/* Zeroes the moved-byte counters (and the devices' own). */
void sr_offload_reset_moved(sr_offload *o);

#endif
