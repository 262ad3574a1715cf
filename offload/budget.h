/* Memory budgets of the tiers: the --max-memory option (accelerate's
 * vocabulary), the reserve each tier keeps for the run itself, and the KV
 * cache size of a decoder layer.
 *
 * A budget is the most strata may allocate on a tier: unit weights, KV
 * caches, streaming slots and the reserve below all fit inside it.
 *   explicit  --max-memory cuda:0=3GiB,1=6GiB,cpu=20GiB (keys: N, cuda:N,
 *             sim:N, gpu:N, cpu, host; values: 3GiB, 512MiB, 5GB, bytes)
 *   default   accelerator: its free memory, with the runtime overhead (CUDA
 *             context + cuBLAS workspace, none for sim) in the reserve;
 *             host: available RAM - 1 GiB left to the operating system.
 * The reserve (always inside the budget) is the scratch memory of running
 * units there, computed from the context length, the batch and the prefill
 * chunk: layer workspace (mirrors runtime/forward.c), activations and the
 * hop buffer, the logits, on the host the per-position records, and on a
 * CUDA device the kernels' own scratch (sr_cuda_kernel_scratch).  The
 * planner prints it, so nothing is held back by an unstated rule. */
#ifndef SR_OFFLOAD_BUDGET_H
#define SR_OFFLOAD_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include "offload/device.h"
#include "offload/planner.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/kv_cache.h"

#define SR_CUDA_RUNTIME_OVERHEAD (512ull << 20)  /* context + cuBLAS workspace */
/* The CUDA kernels' own dequantized prefill tile (quant/cuda/gemm.cu, 64 MiB
 * unless STRATA_CUDA_TILE_BYTES says otherwise) */
#define SR_CUDA_PREFILL_TILE (64ull << 20)
#define SR_HOST_OS_HEADROOM (1ull << 30)

/* Sizes in accelerate's notation: "3GiB" "512MiB" "10KiB" (binary), "5GB"
 * "300MB" "10KB" (decimal), "1.5GiB", or a plain byte count.  Case does not
 * matter.  Returns 0, or -1 on anything else (including overflow). */
int sr_parse_size(const char *s, uint64_t *out);

typedef struct sr_max_memory {
    bool gpu_set[SR_MAX_DEVICES];
    uint64_t gpu[SR_MAX_DEVICES];
    bool host_set;
    uint64_t host;
} sr_max_memory;

/* Parses "--max-memory".  "disk" and other tiers strata does not have are
 * refused naming the key. */
int sr_max_memory_parse(const char *spec, sr_max_memory *mm, sr_error *err);

/* What the reserve and the KV cache depend on. */
typedef struct sr_model_dims {
    int64_t vocab, hidden, intermediate, n_heads, n_kv_heads, head_dim;
    int n_layers;
    int n_adapters, max_lora_rank;
} sr_model_dims;

void sr_model_dims_from_config(const sr_config *cfg, sr_model_dims *d);

typedef struct sr_run_shape {
    int64_t ctx;        /* positions per sequence */
    int batch;          /* sequences decoded together */
    int chunk;          /* prefill tokens per pass (<= ctx) */
    int threads;        /* CPU threads (attention scratch per thread) */
    sr_kv_type kv_type; /* KV cache elements */
} sr_run_shape;

typedef struct sr_reserve {
    uint64_t runtime;       /* cuda: the kernels' scratch (sr_cuda_kernel_scratch), plus the
                               driver context and cuBLAS workspace with default budgets */
    uint64_t workspace;     /* layer scratch for `chunk` tokens + the RoPE table */
    uint64_t activations;   /* activations, the hop buffer, per-token step data */
    uint64_t logits;
    uint64_t positions;     /* per-position records (hiding bits; host: + ids) */
    uint64_t total;         /* sum of the above */
} sr_reserve;

/* Device memory the CUDA kernels of one tier allocate for themselves
 * (runtime/cuda/cuda_ctx.h scratch slots, each with its 1/4 headroom): the
 * prefill tile, a chunk of activations rounded to 16 bits, the LoRA
 * buffers of a chunk.  What strata itself allocates, so it is counted
 * under an explicit budget too. */
uint64_t sr_cuda_kernel_scratch(const sr_model_dims *d, const sr_run_shape *s);

void sr_reserve_compute(const sr_model_dims *d, const sr_run_shape *s, sr_dev_kind kind,
                        bool default_budget, sr_reserve *r);

/* K and V of one decoder layer for s->ctx positions and s->batch sequences
 * (elements of s->kv_type, as runtime/kv_cache.c allocates them). */
uint64_t sr_kv_layer_bytes(const sr_model_dims *d, const sr_run_shape *s);

/* The planner's tiers for a device set: budgets from mm (NULL: defaults),
 * reserves for the run shape, the stated time-model parameters.  An
 * explicit budget above an accelerator's memory is capped there (and says
 * so); a --max-memory key for an accelerator that does not exist fails. */
int sr_tiers_build(const sr_device_set *set, const sr_max_memory *mm, const sr_model_dims *d,
                   const sr_run_shape *s, sr_tier *tiers, int *n_tiers, sr_error *err);

#endif
