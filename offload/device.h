/* The device interface of the offload manager: memory tiers that hold unit
 * weights, KV caches and staging buffers, and the copies between them.
 *
 * Backends:
 *   cpu   the host: plain aligned host memory.
 *   sim   a simulated accelerator (`--devices sim:2x512MiB`): host memory
 *         with its own accounting; it refuses any allocation beyond its
 *         budget and counts every byte copied into or out of it, so tests
 *         can check placement and streaming without a GPU.
 *   cuda  real GPUs: in a CUDA build they allocate with cudaMalloc and the
 *         host tier is pinned (offload/device_cuda.h); without CUDA they are
 *         listed for planning only.
 *
 * Every copy goes through sr_dev_copy / sr_dev_upload / sr_dev_download so
 * the byte counters are exact.  Streams and events are no-ops on cpu and sim
 * (copies complete before the call returns) and CUDA streams and events on
 * cuda devices. */
#ifndef SR_OFFLOAD_DEVICE_H
#define SR_OFFLOAD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/devices.h"
#include "runtime/error.h"

typedef enum sr_dev_kind { SR_DEV_CPU, SR_DEV_SIM, SR_DEV_CUDA } sr_dev_kind;

typedef struct sr_device sr_device;

/* Bytes that crossed a tier boundary, seen from one device. */
typedef struct sr_xfer_stats {
    uint64_t h2d;           /* host -> this device */
    uint64_t d2h;           /* this device -> host */
    uint64_t d2d_in;        /* another accelerator -> this device */
    uint64_t d2d_out;       /* this device -> another accelerator */
    uint64_t n_copies;      /* copies that crossed a boundary */
} sr_xfer_stats;

typedef struct sr_device_ops {
    /* Raw memory of n bytes (accounting is done by the caller). */
    void *(*alloc)(sr_device *d, size_t n);
    void (*free)(sr_device *d, void *p);
} sr_device_ops;

struct sr_device {
    sr_dev_kind kind;
    int gpu;                /* accelerator index 0.. ; -1 for the host */
    char name[32];          /* "cpu", "sim:0", "cuda:0" */
    uint64_t total;         /* memory of the device (sim: as stated) */
    uint64_t free_bytes;    /* free when listed (sim: = total) */
    uint64_t budget;        /* most bytes it may hold; UINT64_MAX = no limit */
    uint64_t used, peak;
    uint64_t n_allocs;      /* live allocations */
    sr_xfer_stats moved;
    const sr_device_ops *ops;   /* NULL: a planning-only device (cuda without CUDA) */
};

/* A buffer on a device. */
typedef struct sr_dbuf {
    sr_device *dev;
    void *ptr;
    size_t size;
} sr_dbuf;

/* Host-addressable memory?  (cpu and sim: yes) */
static inline bool sr_dev_is_host(const sr_device *d) { return d->kind == SR_DEV_CPU; }

void sr_device_init_cpu(sr_device *d);
void sr_device_init_sim(sr_device *d, int gpu, uint64_t bytes);
/* A CUDA device known from sr_list_devices, for planning only. */
void sr_device_init_cuda_info(sr_device *d, const sr_device_info *info);

/* Makes d, which describes the whole physical GPU `phys`, its logical slice
 * `slice` of `n_slices` (>= 1) and accelerator `gpu` of a set: named
 * "cuda:P" when n_slices is 1, else "cuda:P.S"; total, free_bytes and a
 * limited budget become 1/n_slices of the GPU's (rounded down).  The one
 * place for the naming and sizes of slices (sr_device_set_split_gpus here,
 * sr_device_init_cuda in device_cuda.cu). */
void sr_device_cuda_slice(sr_device *d, int gpu, int phys, int slice, int n_slices);

/* Allocation within the device's budget.  Fails naming the device, the
 * request and the room left; *out is zeroed on failure. */
int sr_dev_alloc(sr_device *d, size_t n, sr_dbuf *out, sr_error *err);
void sr_dev_free(sr_dbuf *b);

/* Counts a copy of n bytes from device `src` to device `dst` in their
 * `moved` statistics (NULL = host memory that belongs to no device).  Every
 * copy path calls it: sr_dev_copy* and the CUDA copies (device_cuda.cu). */
void sr_dev_count_copy(sr_device *dst, sr_device *src, size_t n);

/* 0 if [off, off + n) lies inside the allocated buffer b, else an error
 * naming `what` ("source", "destination"), the range and the device. */
int sr_dbuf_check_range(const sr_dbuf *b, size_t off, size_t n, const char *what, sr_error *err);

/* Copies between buffers (any devices) and between a buffer and host memory
 * that belongs to no device (e.g. the checkpoint mapping).  Out-of-range
 * offsets fail.  Complete on return; on cuda they are NOT ordered after
 * work still enqueued on the devices' streams (use the _on variants below,
 * or sync those streams first). */
int sr_dev_copy(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src, size_t src_off, size_t n,
                sr_error *err);
int sr_dev_upload(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n, sr_error *err);
int sr_dev_download(void *host, const sr_dbuf *src, size_t src_off, size_t n, sr_error *err);
/* Fills the whole buffer with zero bytes. */
int sr_dev_zero(const sr_dbuf *b, sr_error *err);

/* Streams and events: ordering handles for asynchronous copies and kernels.
 * On cpu and sim every operation is complete when its call returns, so these
 * only exist to keep the execution code backend-independent. */
typedef struct sr_stream { sr_device *dev; void *impl; } sr_stream;
typedef struct sr_event { sr_device *dev; void *impl; } sr_event;
int sr_stream_create(sr_device *d, sr_stream *s, sr_error *err);
void sr_stream_destroy(sr_stream *s);
int sr_stream_sync(sr_stream *s, sr_error *err);
int sr_event_record(sr_event *e, sr_stream *s, sr_error *err);
int sr_event_wait(sr_stream *s, const sr_event *e, sr_error *err);

/* The copies above, ordered on a stream of a device taking part: on cuda
 * enqueued there (s NULL: complete on return; a download into pageable host
 * memory also completes on return, into pinned memory once s reaches it);
 * on cpu and sim complete on return. */
int sr_dev_copy_on(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src, size_t src_off,
                   size_t n, sr_stream *s, sr_error *err);
int sr_dev_upload_on(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n,
                     sr_stream *s, sr_error *err);
int sr_dev_download_on(void *host, const sr_dbuf *src, size_t src_off, size_t n, sr_stream *s,
                       sr_error *err);

void sr_dev_reset_stats(sr_device *d);

/* The tiers one process plans over: accelerators 0..n_gpu-1, then the host. */
typedef struct sr_device_set {
    int n_gpu;
    sr_device gpu[SR_MAX_DEVICES];
    sr_device host;
} sr_device_set;

/* "--devices" value: comma-separated groups "sim:NxSIZE" or "sim:SIZE"
 * (simulated accelerators, numbered in order), "cuda" (the real GPUs) or
 * "cpu" (no accelerator).  Kinds may not be mixed.  The host is always
 * present. */
int sr_device_set_parse(const char *spec, sr_device_set *set, sr_error *err);
/* The real accelerators (none without a CUDA build) plus the host. */
void sr_device_set_detect(sr_device_set *set, char *why, size_t why_len);

/* --logical-gpus n: splits every CUDA device of a set (whole GPUs, as
 * "--devices cuda" lists them) into n logical devices cuda:P.0 .. cuda:P.n-1
 * with 1/n of its memory and budget each, renumbered 0.. in order, so the
 * multi-device paths run on one GPU.  n = 1 keeps the set.  Fails naming
 * the flag, leaving the set unchanged, for n outside 1..SR_MAX_DEVICES, for
 * more than SR_MAX_DEVICES resulting devices, for a set without CUDA devices
 * (or with other accelerators), and for devices already split or in use. */
int sr_device_set_split_gpus(sr_device_set *set, int n, sr_error *err);

#endif
