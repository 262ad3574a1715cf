/* The CUDA backend of the offload device interface (offload/device.h).
 *
 * device.c knows CUDA devices only for planning (ops = NULL).  This header
 * adds allocating CUDA devices and everything that moves bytes to, from and
 * between them, as separate functions (the naming and sizes of slices are
 * device.c's sr_device_cuda_slice, shared with planning-only devices):
 *
 *   devices    sr_device_init_cuda: a GPU, or a logical slice of one
 *              (`--logical-gpus N` splits each physical GPU into N devices
 *              with 1/N of its memory each, e.g. to test multi-GPU placement
 *              on one card); its name is "cuda:P" or "cuda:P.S" (physical
 *              GPU P, slice S).  Memory comes from cudaMalloc (never managed
 *              memory).
 *   host       sr_device_init_cuda_pinned_host: the host tier in page-locked
 *              memory (cudaHostAlloc), so copies to GPUs are real async DMA.
 *   copies     between any two buffers of cpu / pinned host / sim / cuda
 *              devices, counted exactly as sr_dev_copy counts them;
 *              enqueued on a stream, or complete on return with s = NULL.
 *              GPU to GPU: a peer copy when peer access is available, else
 *              through a pinned host bounce buffer; slices of one GPU copy
 *              device to device.
 *   streams    per-device CUDA streams (non-blocking) and events, for
 *              ordering copies against kernels and across devices.
 *   pools      a pinned host pool (one cudaHostAlloc, bump allocation).
 *   staging    slots on a GPU for streamed layers: a copy stream fills slot
 *              j % slots while compute runs, with events both ways.
 *
 * Every function fails with an sr_error naming the device and the CUDA call.
 * Only in CUDA builds (SR_HAVE_CUDA); plain C11. */
#ifndef SR_OFFLOAD_DEVICE_CUDA_H
#define SR_OFFLOAD_DEVICE_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "offload/device.h"
#include "runtime/error.h"

/* Physical GPU behind a cuda device ("cuda:P" or "cuda:P.S"), -1 if none. */
int sr_cuda_device_physical(const sr_device *d);

/* An allocating CUDA device: accelerator index `gpu` of the set, physical
 * GPU `phys`, slice `slice` of `n_slices` (1 = the whole GPU), budget in
 * bytes (total / free as listed, divided by n_slices). */
int sr_device_init_cuda(sr_device *d, int gpu, const sr_device_info *phys, int slice,
                        int n_slices, sr_error *err);

/* The host tier in pinned memory (kind SR_DEV_CPU, name "cpu"). */
void sr_device_init_cuda_pinned_host(sr_device *d);

/* Makes a set's planning-only CUDA devices (sr_device_set_parse "cuda")
 * allocating ones and its host tier pinned. */
void sr_device_set_cuda_runnable(sr_device_set *set);

/* Every physical GPU, each split into `logical_gpus` (>= 1) devices, plus
 * the host (pinned if pinned_host).  Enables peer access between physical
 * GPUs where possible.  Fails if there is no GPU or more than
 * SR_MAX_DEVICES devices would result. */
int sr_device_set_cuda(sr_device_set *set, int logical_gpus, bool pinned_host, sr_error *err);

/* Can physical GPU a read / write b's memory directly (enabled here once)? */
bool sr_cuda_peer_enable(int a, int b);

/* Streams and events of cuda devices (on cpu / sim these behave as the
 * no-op versions in device.c: impl stays NULL). */
int sr_cuda_stream_create(sr_device *d, sr_stream *s, sr_error *err);
void sr_cuda_stream_destroy(sr_stream *s);
int sr_cuda_stream_sync(sr_stream *s, sr_error *err);
/* Records the work enqueued on s so far; the event is created on first use
 * (e->impl NULL) on s's device and reused after. */
int sr_cuda_event_record(sr_event *e, sr_stream *s, sr_error *err);
/* Work enqueued on s after this call waits for e (across devices too). */
int sr_cuda_event_wait(sr_stream *s, const sr_event *e, sr_error *err);
/* The host waits for e. */
int sr_cuda_event_sync(const sr_event *e, sr_error *err);
void sr_cuda_event_destroy(sr_event *e);

/* Copies, byte-counted like sr_dev_copy / sr_dev_upload / sr_dev_download.
 * s: the stream to enqueue on (of either device taking part), or NULL for a
 * copy that is complete when the call returns.  A host pointer passed to an
 * asynchronous upload/download must stay valid until the stream reaches the
 * copy (pinned memory gives real overlap; pageable memory is staged). */
int sr_cuda_dev_copy(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src, size_t src_off,
                     size_t n, sr_stream *s, sr_error *err);
int sr_cuda_dev_upload(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n,
                       sr_stream *s, sr_error *err);
int sr_cuda_dev_download(void *host, const sr_dbuf *src, size_t src_off, size_t n, sr_stream *s,
                         sr_error *err);
/* Zero bytes over the whole buffer, complete on return. */
int sr_cuda_dev_zero(const sr_dbuf *b, sr_error *err);

/* Pinned host pool: one page-locked block, handed out in 256-byte aligned
 * pieces; reset frees them all at once. */
typedef struct sr_cuda_pinned_pool {
    uint8_t *base;
    size_t size, used;
} sr_cuda_pinned_pool;

int sr_cuda_pinned_pool_init(sr_cuda_pinned_pool *p, size_t bytes, sr_error *err);
/* NULL when the pool has no room for n more bytes. */
void *sr_cuda_pinned_pool_take(sr_cuda_pinned_pool *p, size_t n);
void sr_cuda_pinned_pool_reset(sr_cuda_pinned_pool *p);
void sr_cuda_pinned_pool_free(sr_cuda_pinned_pool *p);

/* Staging slots for streamed layers on one GPU.  For streamed layer j:
 *   sr_cuda_staging_fill(st, j % n, bytes of layer j)  (copy stream; waits
 *       until compute released the slot, then records "filled")
 *   sr_cuda_staging_acquire(st, j % n, compute)       (compute waits "filled")
 *   ... kernels of layer j read slot j % n on the compute stream ...
 *   sr_cuda_staging_release(st, j % n, compute)       (records "released")
 * Issuing the fill of layer j + prefetch before layer j runs overlaps the
 * copies with compute. */
/* As many slots as the planner may ask for: prefetch distance 64 + 1 (SR_MAX_PREFETCH). */
#define SR_CUDA_MAX_STAGING 65

typedef struct sr_cuda_staging {
    sr_device *dev;
    int n_slots;
    size_t slot_bytes;
    sr_dbuf slot[SR_CUDA_MAX_STAGING];
    sr_stream copy;
    sr_event filled[SR_CUDA_MAX_STAGING], released[SR_CUDA_MAX_STAGING];
    bool ever_released[SR_CUDA_MAX_STAGING];
} sr_cuda_staging;

int sr_cuda_staging_init(sr_cuda_staging *st, sr_device *dev, int n_slots, size_t slot_bytes,
                         sr_error *err);
void sr_cuda_staging_free(sr_cuda_staging *st);
/* Copies n bytes of host memory into slot k (asynchronous on the copy stream). */
int sr_cuda_staging_fill(sr_cuda_staging *st, int k, const void *host, size_t n, sr_error *err);
int sr_cuda_staging_acquire(sr_cuda_staging *st, int k, sr_stream *compute, sr_error *err);
int sr_cuda_staging_release(sr_cuda_staging *st, int k, sr_stream *compute, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
