/* Per-token LoRA on CUDA (spec granite-switch.md §2.4, §4.5.2): the device
 * twin of sr_lora_apply.  The tokens of each adapter a >= 1 are gathered
 * (their list is built on the host from the host copy of the adapter
 * indices and sent with one copy), then Z = U·A_allᵀ and per live slice
 * D = Z_s·B_sᵀ at the adapter's true rank (cuBLAS, f32), then D is
 * scatter-added into y.  Tokens of adapter 0 cost nothing.
 *
 * A device sr_lora is the host struct with A and B[] in device memory;
 * `ranks` and `live` stay host arrays (copies owned by the device struct):
 * the host decides which GEMMs to run. */
#ifndef SR_LORA_CUDA_H
#define SR_LORA_CUDA_H

#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"
#include "runtime/lora.h"

int sr_cuda_lora_upload(const sr_lora *host, sr_lora *dev, sr_error *err);
void sr_cuda_lora_free(sr_lora *dev);

/* y[t][slice rows] += delta for every token t with 1 <= a_host[t] <= N.
 * u, y: device; a_host: host array [T]. */
int sr_cuda_lora_apply(sr_cuda_ctx *c, const sr_lora *l, const float *u, int64_t T, int64_t ldu,
                       const int32_t *a_host, float *y, int64_t ldy, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
