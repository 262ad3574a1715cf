/* The CUDA execution context of the kernels in quant/cuda and runtime/cuda:
 * one device, one stream, one cuBLAS handle bound to that stream, and a few
 * device scratch buffers that grow on demand.  Every kernel entry point
 * takes a context and enqueues its work on the context's stream (nothing
 * waits unless the call says so); pointers passed to them are device
 * pointers unless the name says `host`.
 *
 * Plain C11 (no CUDA types): the stream is handed out as an opaque pointer
 * (a cudaStream_t).  Compiled only in a CUDA build (SR_HAVE_CUDA). */
#ifndef SR_CUDA_CTX_H
#define SR_CUDA_CTX_H

#include <stddef.h>
#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "runtime/error.h"

typedef struct sr_cuda_ctx sr_cuda_ctx;

/* Scratch slots: each is an independent buffer, so one operation can use
 * several at once.  Contents do not survive a call that grows the slot. */
typedef enum sr_cuda_scratch_slot {
    SR_CUDA_SCRATCH_TILE,       /* prefill: dequantized weight tile */
    SR_CUDA_SCRATCH_XCONV,      /* prefill: activations converted to 16 bits */
    SR_CUDA_SCRATCH_LORA,       /* LoRA: gathered inputs, z, deltas, token list */
    SR_CUDA_SCRATCH_COUNT
} sr_cuda_scratch_slot;

/* CUDA devices this process can use; 0 (with the reason in `why`) if none:
 * no driver, no device, or a driver older than the runtime. */
int sr_cuda_device_count(char *why, size_t why_len);

/* A context on `device`.  stream: a cudaStream_t to enqueue on, or NULL for a
 * stream of its own (non-blocking, destroyed with the context). */
int sr_cuda_ctx_create(int device, void *stream, sr_cuda_ctx **out, sr_error *err);
void sr_cuda_ctx_free(sr_cuda_ctx *c);

int sr_cuda_ctx_device(const sr_cuda_ctx *c);
void *sr_cuda_ctx_stream(const sr_cuda_ctx *c);     /* cudaStream_t */
/* Makes the context's device current and returns its stream: every kernel
 * entry point calls it first, so contexts on several GPUs can be used from
 * one thread in any order. */
void *sr_cuda_ctx_enter(sr_cuda_ctx *c);
void *sr_cuda_ctx_cublas(const sr_cuda_ctx *c);     /* cublasHandle_t */

/* Waits until everything enqueued on the context's stream has finished, and
 * reports any asynchronous error of that work. */
int sr_cuda_ctx_sync(sr_cuda_ctx *c, sr_error *err);

/* Device scratch of at least n bytes in `slot` (256-byte aligned).  Growing
 * waits for the stream first, so work still reading the old buffer is safe. */
int sr_cuda_ctx_scratch(sr_cuda_ctx *c, sr_cuda_scratch_slot slot, size_t n, void **out,
                        sr_error *err);
/* Host staging buffer of at least n bytes (pageable; for small per-call
 * tables such as LoRA token lists). */
int sr_cuda_ctx_host_scratch(sr_cuda_ctx *c, size_t n, void **out, sr_error *err);

/* Plain device memory on the current device (for loaders and tests). */
int sr_cuda_malloc(void **p, size_t n, sr_error *err);
void sr_cuda_free(void *p);
/* Synchronous copies and fill (complete when they return). */
int sr_cuda_upload(void *dst_dev, const void *src_host, size_t n, sr_error *err);
int sr_cuda_download(void *dst_host, const void *src_dev, size_t n, sr_error *err);
int sr_cuda_memset(void *dst_dev, int byte, size_t n, sr_error *err);
/* A device copy of host memory (NULL with an error on failure). */
void *sr_cuda_dup(const void *src_host, size_t n, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
