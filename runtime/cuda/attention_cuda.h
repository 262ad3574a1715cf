/* Causal grouped-query attention on CUDA: sr_attention (runtime/attention.h)
 * with device pointers, for prefill (T queries) and decode (T = 1) over one
 * layer's KV cache, with the Gen A hiding rule (key j is skipped for query i
 * iff key_mem[j] & qsup[i]).  `scratch` of the arguments is not used.
 *
 * One block per (query, head); its warps take interleaved keys and keep a
 * running (online) softmax each, merged at the end.  The result equals the
 * CPU's two-pass softmax up to rounding (the order of the sums differs).
 * Head dims up to 256. */
#ifndef SR_ATTENTION_CUDA_H
#define SR_ATTENTION_CUDA_H

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "runtime/attention.h"
#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"

#define SR_CUDA_ATTN_MAX_HD 256

int sr_cuda_attention(sr_cuda_ctx *c, const sr_attn_args *a, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
