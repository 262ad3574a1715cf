/* The placement planner: units + tiers + strategy -> plan, before anything
 * is loaded.
 *
 * Units are never split: the embedding, each decoder layer (its weights,
 * LoRA stacks included, plus its KV cache for the context and batch), and the
 * head (final norm + lm_head).  What the model derives from a unit's tensors
 * at load (derived_bytes) is held where the unit runs and counted there with
 * its KV cache, so a run never needs memory its plan did not count.  Sizes are the STORED bytes: for bitsandbytes
 * checkpoints the packed codes plus absmax, quant maps, nested statistics and
 * quant_state, never the float size.
 *
 * Tied embeddings: the head unit of a tied model holds only the final norm
 * and multiplies with the embedding matrix (`shared_bytes`).  On the
 * embedding's tier it shares that storage (no extra bytes); on any other tier
 * it needs its own copy, which the plan counts there.  Every strategy first
 * tries the embedding's tier for a tied head.
 *
 * Tiers are the accelerators 0..n-1 in order, then the host (last).  Each
 * has a budget with a reserve inside it (offload/budget.h); units fill
 * budget - reserve.
 *
 * Strategies (accelerate's names):
 *   balanced, auto   even bytes across the accelerators (each within about one
 *                    unit of its share; shares follow the budgets when these
 *                    differ), in execution order; the rest to the host.  Then
 *                    units move along chains of accelerators while that
 *                    narrows the spread: on equal accelerators the loads end
 *                    within one decoder layer of each other (spec scenario 1).
 *   balanced_low_0   the same over accelerators 1..n-1; accelerator 0 takes only
 *                    what the others cannot hold (before the host).
 *   sequential       fill accelerator 0, spill to the next exactly when the next
 *                    unit would exceed the budget, then the host.
 *   map              an explicit tier per unit (offload/device_map.h).
 * A unit larger than an accelerator's whole budget (or its balanced share)
 * goes to the first accelerator that can hold it without moving the fill
 * position, so no accelerator is skipped when later units fit it; units
 * that end up on the host are then offered to any accelerator with room.
 *
 * Host-tier decoder layers run either
 *   cpu      on the host with the quantized CPU kernels (their KV on the host);
 *   stream   on an accelerator: each token their stored bytes are copied into
 *            staging slots there (copy of layer i+d overlapping the compute of
 *            layer i, d = prefetch distance, d+1 slots sized for the largest
 *            streamed layer) and their KV cache stays resident there;
 *   auto     whichever the time model below predicts faster.
 * The embedding and the head run where they are placed.
 *
 * Time model (per decode step of `batch` sequences), from each tier's stated
 * or measured parameters: a unit takes max(bytes read / mem_bw,
 * 2 * macs * batch / flops) on its execution tier; a hop between tiers takes
 * latency + hop_bytes * batch / link_bw; streamed copies take bytes / link_bw
 * and overlap all compute when prefetch >= 1:
 *   step = max(compute + hops, copies + one streamed layer's compute),
 * or compute + hops + copies without prefetch. */
#ifndef SR_OFFLOAD_PLANNER_H
#define SR_OFFLOAD_PLANNER_H

#include <stdbool.h>
#include <stdint.h>

#include "offload/device.h"
#include "runtime/catalog.h"
#include "runtime/error.h"

/* Largest streaming prefetch distance (the executor holds distance + 1
 * staging slots). */
#define SR_MAX_PREFETCH 64

typedef struct sr_plan_unit {
    int unit;                   /* layer index >= 0, SR_UNIT_EMBED or SR_UNIT_HEAD */
    char name[40];              /* accelerate's module name: "model.layers.3" */
    uint64_t weight_bytes;      /* stored bytes of its tensors */
    uint64_t kv_bytes;          /* KV cache (decoder layers) */
    uint64_t shared_bytes;      /* tied head: the embedding bytes it reads */
    uint64_t read_bytes;        /* bytes its kernels read per token; 0: weight +
                                   shared bytes (the embedding reads one row) */
    uint64_t macs;              /* multiply-adds per token */
    uint64_t derived_bytes;     /* what the model builds from its tensors at load (f32 norms,
                                   biases and LoRA stacks, block scales): held on the tier
                                   that runs the unit, like its KV cache */
} sr_plan_unit;

typedef struct sr_tier_perf {
    double mem_bw;              /* bytes/s the kernels stream weights at */
    double flops;               /* FLOP/s of those kernels */
    double link_bw;             /* bytes/s host <-> accelerator (pinned) */
    double latency;             /* seconds per transfer */
} sr_tier_perf;

/* Stated parameters of a tier kind until measured (printed by the plan):
 * sim and cuda: 600 GB/s, 30 TFLOP/s, 24 GB/s PCIe 4.0 x16 pinned copies,
 * 10 us per transfer; cpu: 10 GB/s, 50 GFLOP/s. */
void sr_tier_perf_default(sr_dev_kind kind, sr_tier_perf *p);

typedef struct sr_tier {
    char name[32];              /* "sim:0", "cuda:1", "cpu" */
    int gpu;                    /* accelerator index, -1 for the host */
    uint64_t budget;            /* most bytes the plan may use there */
    uint64_t reserve;           /* run scratch, inside the budget */
    char budget_src[64];        /* where the budget came from, for the report */
    sr_tier_perf perf;
} sr_tier;

typedef enum sr_strategy {
    SR_STRATEGY_AUTO,
    SR_STRATEGY_BALANCED,
    SR_STRATEGY_BALANCED_LOW_0,
    SR_STRATEGY_SEQUENTIAL,
    SR_STRATEGY_MAP,
} sr_strategy;

typedef enum sr_exec {
    SR_EXEC_AUTO,               /* request only: let the time model decide */
    SR_EXEC_RESIDENT,           /* runs where its weights are */
    SR_EXEC_STREAM,             /* host weights copied to an accelerator per token */
    SR_EXEC_CPU,                /* host weights, run on the host */
} sr_exec;

typedef struct sr_plan_request {
    const sr_plan_unit *units;  /* execution order: embedding, layers, head */
    int n_units;
    const sr_tier *tiers;       /* accelerators in order, then the host */
    int n_tiers;
    sr_strategy strategy;
    const int *map_tier;        /* SR_STRATEGY_MAP: a tier index per unit */
    sr_exec host_exec;          /* AUTO, STREAM or CPU */
    int batch;                  /* sequences per decode step (>= 1) */
    int prefetch;               /* streaming distance; < 0: default (2, or 1 if tight);
                                 * at most SR_MAX_PREFETCH */
    uint64_t hop_bytes;         /* activation bytes per token at a tier change */
} sr_plan_request;

typedef struct sr_plan_entry {
    int tier;                   /* where its weights live */
    int exec_tier;              /* where it runs */
    sr_exec exec;               /* RESIDENT, STREAM or CPU */
    uint64_t weight_bytes;      /* on `tier`, a tied head's copy included */
    uint64_t kv_bytes;          /* on `exec_tier` */
    uint64_t derived_bytes;     /* on `exec_tier` */
    double seconds;             /* its share of a decode step */
    char reason[192];
} sr_plan_entry;

typedef struct sr_tier_usage {
    uint64_t weights, kv, staging, reserve;
    uint64_t derived;           /* load-time conversions of the units that run here */
    uint64_t total;             /* the five above; <= the tier's budget */
    int n_units;
} sr_tier_usage;

typedef struct sr_stream_schedule {
    int tier;                   /* accelerator with the staging slots, -1: none */
    int n_layers;               /* layers streamed per token */
    int prefetch;               /* copy of layer i+prefetch during compute of i */
    int slots;                  /* staging buffers */
    uint64_t slot_bytes;        /* the largest streamed layer */
    uint64_t bytes_per_token;   /* host -> accelerator per decode step */
    double copy_seconds, compute_seconds;
} sr_stream_schedule;

typedef struct sr_plan {
    int n_units, n_tiers;
    sr_plan_entry *units;       /* [n_units], in the request's order */
    sr_tier_usage *tiers;       /* [n_tiers] */
    sr_strategy strategy;
    sr_exec host_exec;          /* what host-tier layers do (CPU if none) */
    char exec_reason[256];
    sr_stream_schedule stream;
    double seconds_per_step;    /* one decode step of the batch */
    double tokens_per_s;        /* batch / seconds_per_step */
} sr_plan;

/* Pure: reads only the request.  Fails (plan zeroed) when the request is
 * malformed or nothing fits, naming the unit, what each tier has left and
 * what to change. */
int sr_plan_make(const sr_plan_request *rq, sr_plan *plan, sr_error *err);
void sr_plan_free(sr_plan *plan);

const char *sr_strategy_name(sr_strategy s);
int sr_strategy_parse(const char *s, sr_strategy *out);     /* 0 or -1 */
const char *sr_exec_name(sr_exec e);
int sr_exec_parse(const char *s, sr_exec *out);             /* auto|stream|cpu */

/* Index in `units` of a catalogue unit (layer i / SR_UNIT_EMBED /
 * SR_UNIT_HEAD), -1 if absent (SR_UNIT_NONE: derived metadata is never
 * placed). */
int sr_plan_unit_index(const sr_plan_unit *units, int n, int unit);

#endif
