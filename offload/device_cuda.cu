// CUDA devices for the offload manager: allocation, pinned host memory,
// copies, streams, events, peer access (see device_cuda.h).
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cuda/cuda_check.cuh"

extern "C" {
#include "offload/device_cuda.h"
#include "runtime/alloc.h"
}

namespace {

// Makes `dev` current for the calls of one scope and restores the previous
// device after, so callers' own device selection is not disturbed.
struct device_scope {
    int prev = -1;
    cudaError_t set(int dev)
    {
        cudaError_t e = cudaGetDevice(&prev);
        if (e != cudaSuccess) prev = -1;
        return cudaSetDevice(dev);
    }
    ~device_scope()
    {
        if (prev >= 0) cudaSetDevice(prev);
    }
};

int physical_of(const sr_device *d)
{
    if (!d || d->kind != SR_DEV_CUDA) return -1;
    int p = -1;
    if (sscanf(d->name, "cuda:%d", &p) != 1 || p < 0) return -1;
    return p;
}

void *cuda_alloc(sr_device *d, size_t n)
{
    device_scope ds;
    if (ds.set(physical_of(d)) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    void *p = NULL;
    if (cudaMalloc(&p, n) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

void cuda_free(sr_device *d, void *p)
{
    device_scope ds;
    if (ds.set(physical_of(d)) == cudaSuccess) cudaFree(p);
    (void)cudaGetLastError();
}

const sr_device_ops cuda_ops = {cuda_alloc, cuda_free};

void *pinned_alloc(sr_device *d, size_t n)
{
    (void)d;
    void *p = NULL;
    if (cudaHostAlloc(&p, n, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

void pinned_free(sr_device *d, void *p)
{
    (void)d;
    cudaFreeHost(p);
    (void)cudaGetLastError();
}

const sr_device_ops pinned_ops = {pinned_alloc, pinned_free};

// Pinned bounce buffer for GPU -> GPU copies without peer access.
constexpr size_t kBounceBytes = (size_t)16 << 20;
pthread_mutex_t bounce_lock = PTHREAD_MUTEX_INITIALIZER;
void *bounce_buf;

// src (GPU ps) -> host bounce -> dst (GPU pd), chunk by chunk; complete on return.
int copy_via_host(void *dst, int pd, const void *src, int ps, size_t n, const char *dname,
                  const char *sname, sr_error *err)
{
    pthread_mutex_lock(&bounce_lock);
    int rc = 0;
    if (!bounce_buf && cudaHostAlloc(&bounce_buf, kBounceBytes, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        bounce_buf = NULL;
        rc = sr_fail(err, "copy %s -> %s: cannot allocate the %zu-byte pinned bounce buffer",
                     sname, dname, kBounceBytes);
    }
    for (size_t off = 0; !rc && off < n; off += kBounceBytes) {
        const size_t m = n - off < kBounceBytes ? n - off : kBounceBytes;
        // Each hop completes before the bounce buffer is reused.
        cudaError_t e = cudaSetDevice(ps);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(bounce_buf, (const char *)src + off, m, cudaMemcpyDeviceToHost,
                                cudaStreamLegacy);
        if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);
        if (e == cudaSuccess) e = cudaSetDevice(pd);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync((char *)dst + off, bounce_buf, m, cudaMemcpyHostToDevice,
                                cudaStreamLegacy);
        if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            rc = sr_fail(err, "copy %s -> %s via pinned host: %s", sname, dname,
                         cudaGetErrorString(e));
        }
    }
    pthread_mutex_unlock(&bounce_lock);
    return rc;
}

}  // namespace

extern "C" int sr_cuda_device_physical(const sr_device *d) { return physical_of(d); }

extern "C" int sr_device_init_cuda(sr_device *d, int gpu, const sr_device_info *phys, int slice,
                                   int n_slices, sr_error *err)
{
    memset(d, 0, sizeof *d);
    if (!phys || n_slices < 1 || slice < 0 || slice >= n_slices)
        return sr_fail(err, "cuda device: bad slice %d of %d", slice, n_slices);
    sr_device_init_cuda_info(d, phys);     // the whole GPU, budget = its free memory
    sr_device_cuda_slice(d, gpu, phys->index, slice, n_slices);
    d->ops = &cuda_ops;
    return 0;
}

extern "C" void sr_device_init_cuda_pinned_host(sr_device *d)
{
    sr_device_init_cpu(d);
    d->ops = &pinned_ops;
}

extern "C" void sr_device_set_cuda_runnable(sr_device_set *set)
{
    for (int g = 0; g < set->n_gpu; g++)
        if (set->gpu[g].kind == SR_DEV_CUDA) set->gpu[g].ops = &cuda_ops;
    set->host.ops = &pinned_ops;
}

// Enables access from physical GPU a to b's memory, asking the driver.
static bool peer_enable_now(int a, int b)
{
    int ok = 0;
    if (cudaDeviceCanAccessPeer(&ok, a, b) != cudaSuccess || !ok) {
        (void)cudaGetLastError();
        return false;
    }
    device_scope ds;
    if (ds.set(a) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) e = cudaSuccess;
    (void)cudaGetLastError();
    return e == cudaSuccess;
}

// What peer_enable_now found per pair of physical GPUs (0: not asked yet,
// 1: enabled, -1: unavailable), so a copy does not ask the driver again.
static int peer_known[SR_MAX_DEVICES][SR_MAX_DEVICES];
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;

extern "C" bool sr_cuda_peer_enable(int a, int b)
{
    if (a == b) return true;
    if (a < 0 || b < 0 || a >= SR_MAX_DEVICES || b >= SR_MAX_DEVICES) return peer_enable_now(a, b);
    pthread_mutex_lock(&peer_lock);
    if (!peer_known[a][b]) peer_known[a][b] = peer_enable_now(a, b) ? 1 : -1;
    const bool ok = peer_known[a][b] > 0;
    pthread_mutex_unlock(&peer_lock);
    return ok;
}

extern "C" int sr_device_set_cuda(sr_device_set *set, int logical_gpus, bool pinned_host,
                                  sr_error *err)
{
    memset(set, 0, sizeof *set);
    if (pinned_host) sr_device_init_cuda_pinned_host(&set->host);
    else sr_device_init_cpu(&set->host);
    if (logical_gpus < 1 || logical_gpus > SR_MAX_DEVICES)
        return sr_fail(err, "--logical-gpus %d: expected 1..%d", logical_gpus, SR_MAX_DEVICES);
    sr_device_info info[SR_MAX_DEVICES];
    char why[256] = "";
    const int n = sr_list_devices(info, SR_MAX_DEVICES, why, (int)sizeof why);
    if (n <= 0) return sr_fail(err, "cuda: %s", why);
    for (int i = 0; i < n; i++) {
        if (sr_device_init_cuda(&set->gpu[set->n_gpu], set->n_gpu, &info[i], 0, 1, err))
            return -1;
        set->n_gpu++;
    }
    // the slices as --logical-gpus makes them everywhere (device.c)
    if (sr_device_set_split_gpus(set, logical_gpus, err)) {
        memset(set->gpu, 0, sizeof set->gpu);
        set->n_gpu = 0;
        return -1;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j) sr_cuda_peer_enable(info[i].index, info[j].index);
    return 0;
}

extern "C" int sr_cuda_stream_create(sr_device *d, sr_stream *s, sr_error *err)
{
    s->dev = d;
    s->impl = NULL;
    const int p = physical_of(d);
    if (p < 0) return 0;    // cpu / sim: nothing to order
    device_scope ds;
    SR_CUDA_TRY(err, ds.set(p));
    cudaStream_t cs = NULL;
    SR_CUDA_TRY(err, cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
    s->impl = (void *)cs;
    return 0;
}

extern "C" void sr_cuda_stream_destroy(sr_stream *s)
{
    if (!s) return;
    if (s->impl) {
        cudaStreamSynchronize((cudaStream_t)s->impl);
        cudaStreamDestroy((cudaStream_t)s->impl);
        (void)cudaGetLastError();
    }
    s->impl = NULL;
    s->dev = NULL;
}

extern "C" int sr_cuda_stream_sync(sr_stream *s, sr_error *err)
{
    if (!s || !s->impl) return 0;
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)s->impl);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return sr_fail(err, "%s: cudaStreamSynchronize: %s", s->dev ? s->dev->name : "cuda",
                       cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int sr_cuda_event_record(sr_event *e, sr_stream *s, sr_error *err)
{
    if (!s || !s->impl) {   // cpu / sim: complete already
        e->dev = s ? s->dev : NULL;
        return 0;
    }
    device_scope ds;
    SR_CUDA_TRY(err, ds.set(physical_of(s->dev)));
    if (!e->impl) {
        cudaEvent_t ev = NULL;
        SR_CUDA_TRY(err, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        e->impl = (void *)ev;
    }
    e->dev = s->dev;
    SR_CUDA_TRY(err, cudaEventRecord((cudaEvent_t)e->impl, (cudaStream_t)s->impl));
    return 0;
}

extern "C" int sr_cuda_event_wait(sr_stream *s, const sr_event *e, sr_error *err)
{
    if (!s || !s->impl || !e || !e->impl) return 0;
    SR_CUDA_TRY(err, cudaStreamWaitEvent((cudaStream_t)s->impl, (cudaEvent_t)e->impl, 0));
    return 0;
}

extern "C" int sr_cuda_event_sync(const sr_event *e, sr_error *err)
{
    if (!e || !e->impl) return 0;
    SR_CUDA_TRY(err, cudaEventSynchronize((cudaEvent_t)e->impl));
    return 0;
}

extern "C" void sr_cuda_event_destroy(sr_event *e)
{
    if (!e) return;
    if (e->impl) cudaEventDestroy((cudaEvent_t)e->impl);
    (void)cudaGetLastError();
    e->impl = NULL;
    e->dev = NULL;
}

// The copy itself, between raw pointers whose devices are known (NULL: host
// memory of no device).
static int copy_bytes(void *dst, sr_device *dd, const void *src, sr_device *sd, size_t n,
                      sr_stream *s, sr_error *err)
{
    if (!n) return 0;
    const int pd = physical_of(dd), ps = physical_of(sd);
    const char *dname = dd ? dd->name : "host", *sname = sd ? sd->name : "host";
    if (pd < 0 && ps < 0) {     // host-side memory on both ends (cpu, sim)
        memmove(dst, src, n);
        return 0;
    }
    // No stream: the legacy stream, waited for before returning (a plain
    // cudaMemcpy may return before a pageable upload or a device-to-device
    // copy has finished, and our non-blocking streams would not wait for it).
    cudaStream_t cs = s && s->impl ? (cudaStream_t)s->impl : cudaStreamLegacy;
    device_scope ds;
    SR_CUDA_TRY(err, ds.set(pd >= 0 ? pd : ps));
    cudaError_t e;
    if (pd >= 0 && ps >= 0 && pd != ps) {
        // GPU to GPU: direct when peer access works, else a host hop.
        if (!sr_cuda_peer_enable(pd, ps) || !sr_cuda_peer_enable(ps, pd)) {
            SR_CUDA_TRY(err, cudaStreamSynchronize(cs));   // after the work before it
            return copy_via_host(dst, pd, src, ps, n, dname, sname, err);
        }
        e = cudaMemcpyPeerAsync(dst, pd, src, ps, n, cs);
    } else {
        e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, cs);
    }
    if (e == cudaSuccess && cs == cudaStreamLegacy) e = cudaStreamSynchronize(cs);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return sr_fail(err, "copy %s -> %s of %zu bytes: %s", sname, dname, n,
                       cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int sr_cuda_dev_copy(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src,
                                size_t src_off, size_t n, sr_stream *s, sr_error *err)
{
    if (sr_dbuf_check_range(dst, dst_off, n, "destination", err) ||
        sr_dbuf_check_range(src, src_off, n, "source", err))
        return -1;
    if (copy_bytes((char *)dst->ptr + dst_off, dst->dev, (const char *)src->ptr + src_off,
                   src->dev, n, s, err))
        return -1;
    sr_dev_count_copy(dst->dev, src->dev, n);
    return 0;
}

extern "C" int sr_cuda_dev_upload(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n,
                                  sr_stream *s, sr_error *err)
{
    if (sr_dbuf_check_range(dst, dst_off, n, "destination", err)) return -1;
    if (copy_bytes((char *)dst->ptr + dst_off, dst->dev, host, NULL, n, s, err)) return -1;
    sr_dev_count_copy(dst->dev, NULL, n);
    return 0;
}

extern "C" int sr_cuda_dev_download(void *host, const sr_dbuf *src, size_t src_off, size_t n,
                                    sr_stream *s, sr_error *err)
{
    if (sr_dbuf_check_range(src, src_off, n, "source", err)) return -1;
    if (copy_bytes(host, NULL, (const char *)src->ptr + src_off, src->dev, n, s, err)) return -1;
    sr_dev_count_copy(NULL, src->dev, n);
    return 0;
}

extern "C" int sr_cuda_pinned_pool_init(sr_cuda_pinned_pool *p, size_t bytes, sr_error *err)
{
    memset(p, 0, sizeof *p);
    void *b = NULL;
    cudaError_t e = cudaHostAlloc(&b, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return sr_fail(err, "pinned host pool: cudaHostAlloc of %zu bytes: %s", bytes,
                       cudaGetErrorString(e));
    }
    p->base = (uint8_t *)b;
    p->size = bytes;
    return 0;
}

extern "C" void *sr_cuda_pinned_pool_take(sr_cuda_pinned_pool *p, size_t n)
{
    const size_t at = (p->used + 255) & ~(size_t)255;
    if (!p->base || at > p->size || n > p->size - at) return NULL;
    p->used = at + n;
    return p->base + at;
}

extern "C" void sr_cuda_pinned_pool_reset(sr_cuda_pinned_pool *p) { p->used = 0; }

extern "C" void sr_cuda_pinned_pool_free(sr_cuda_pinned_pool *p)
{
    if (p->base) cudaFreeHost(p->base);
    (void)cudaGetLastError();
    memset(p, 0, sizeof *p);
}

extern "C" int sr_cuda_dev_zero(const sr_dbuf *b, sr_error *err)
{
    if (sr_dbuf_check_range(b, 0, b ? b->size : 0, "destination", err)) return -1;
    device_scope ds;
    SR_CUDA_TRY(err, ds.set(physical_of(b->dev)));
    SR_CUDA_TRY(err, cudaMemset(b->ptr, 0, b->size));
    SR_CUDA_TRY(err, cudaDeviceSynchronize());
    return 0;
}
