// The CUDA execution context: device, stream, cuBLAS handle, scratch.
#include <stdio.h>
#include <string.h>

#include "runtime/cuda/cuda_check.cuh"
#include "runtime/cuda/cuda_ctx.h"

extern "C" {
#include "runtime/alloc.h"
}

struct sr_cuda_ctx {
    int device;
    cudaStream_t stream;
    bool own_stream;
    cublasHandle_t blas;
    void *scratch[SR_CUDA_SCRATCH_COUNT];
    size_t scratch_size[SR_CUDA_SCRATCH_COUNT];
    void *host;
    size_t host_size;
};

extern "C" int sr_cuda_device_count(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        if (why && why_len)
            snprintf(why, why_len, "no CUDA device: %s",
                     e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void sr_cuda_ctx_free(sr_cuda_ctx *c)
{
    if (!c) return;
    // Teardown: errors here have no one to go to; the state is cleared after.
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < SR_CUDA_SCRATCH_COUNT; i++) cudaFree(c->scratch[i]);
    if (c->blas) cublasDestroy(c->blas);
    if (c->own_stream && c->stream) cudaStreamDestroy(c->stream);
    sr_free(c->host);
    (void)cudaGetLastError();
    sr_free(c);
}

static int ctx_init(sr_cuda_ctx *c, int device, void *stream, sr_error *err)
{
    int n = 0;
    SR_CUDA_TRY(err, cudaGetDeviceCount(&n));
    if (device < 0 || device >= n)
        return sr_fail(err, "cuda: device %d does not exist (%d visible)", device, n);
    c->device = device;
    SR_CUDA_TRY(err, cudaSetDevice(device));
    if (stream) {
        c->stream = (cudaStream_t)stream;
    } else {
        SR_CUDA_TRY(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        c->own_stream = true;
    }
    SR_CUBLAS_TRY(err, cublasCreate(&c->blas));
    SR_CUBLAS_TRY(err, cublasSetStream(c->blas, c->stream));
    // Default math: f32 compute stays f32 (no TF32); 16-bit inputs may use
    // tensor cores with f32 accumulation.
    SR_CUBLAS_TRY(err, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    return 0;
}

extern "C" int sr_cuda_ctx_create(int device, void *stream, sr_cuda_ctx **out, sr_error *err)
{
    *out = NULL;
    sr_cuda_ctx *c = (sr_cuda_ctx *)sr_calloc(1, sizeof *c);
    if (!c) return sr_fail(err, "cuda: context: out of memory");
    if (ctx_init(c, device, stream, err)) {
        sr_cuda_ctx_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

extern "C" int sr_cuda_ctx_device(const sr_cuda_ctx *c) { return c->device; }
extern "C" void *sr_cuda_ctx_stream(const sr_cuda_ctx *c) { return (void *)c->stream; }
extern "C" void *sr_cuda_ctx_enter(sr_cuda_ctx *c)
{
    // Fails only for a device that vanished; the launch after it reports that.
    if (cudaSetDevice(c->device) != cudaSuccess) (void)cudaGetLastError();
    return (void *)c->stream;
}

extern "C" void *sr_cuda_ctx_cublas(const sr_cuda_ctx *c) { return (void *)c->blas; }

extern "C" int sr_cuda_ctx_sync(sr_cuda_ctx *c, sr_error *err)
{
    sr_cuda_ctx_enter(c);
    SR_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
    SR_CUDA_TRY(err, cudaGetLastError());
    return 0;
}

extern "C" int sr_cuda_ctx_scratch(sr_cuda_ctx *c, sr_cuda_scratch_slot slot, size_t n,
                                   void **out, sr_error *err)
{
    *out = NULL;
    if ((int)slot < 0 || slot >= SR_CUDA_SCRATCH_COUNT)
        return sr_fail(err, "cuda: scratch slot %d does not exist", (int)slot);
    if (n == 0) n = 1;
    if (c->scratch_size[slot] < n) {
        SR_CUDA_TRY(err, cudaSetDevice(c->device));
        // Work already enqueued may still read the old buffer.
        SR_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
        SR_CUDA_TRY(err, cudaFree(c->scratch[slot]));
        c->scratch[slot] = NULL;
        c->scratch_size[slot] = 0;
        size_t want = n + n / 4;    // some headroom: fewer regrowths
        cudaError_t e = cudaMalloc(&c->scratch[slot], want);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            c->scratch[slot] = NULL;
            return sr_fail(err, "cuda: device %d: scratch slot %d: cannot allocate %zu bytes: %s",
                           c->device, (int)slot, want, cudaGetErrorString(e));
        }
        c->scratch_size[slot] = want;
    }
    *out = c->scratch[slot];
    return 0;
}

extern "C" int sr_cuda_ctx_host_scratch(sr_cuda_ctx *c, size_t n, void **out, sr_error *err)
{
    *out = NULL;
    if (n == 0) n = 1;
    if (c->host_size < n) {
        void *p = sr_realloc(c->host, n);
        if (!p) return sr_fail(err, "cuda: host scratch: out of memory (%zu bytes)", n);
        c->host = p;
        c->host_size = n;
    }
    *out = c->host;
    return 0;
}

extern "C" int sr_cuda_malloc(void **p, size_t n, sr_error *err)
{
    *p = NULL;
    cudaError_t e = cudaMalloc(p, n ? n : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = NULL;
        return sr_fail(err, "cuda: cannot allocate %zu bytes of device memory: %s", n,
                       cudaGetErrorString(e));
    }
    return 0;
}

extern "C" void sr_cuda_free(void *p)
{
    if (p) cudaFree(p);
}

// cudaMemcpy from pageable memory and cudaMemset may return before the
// device has finished (they run on the legacy stream, which our non-blocking
// streams do not wait for): wait for the legacy stream so that "complete on
// return" holds for every later stream.
extern "C" int sr_cuda_upload(void *dst_dev, const void *src_host, size_t n, sr_error *err)
{
    if (!n) return 0;
    SR_CUDA_TRY(err, cudaMemcpyAsync(dst_dev, src_host, n, cudaMemcpyHostToDevice, cudaStreamLegacy));
    SR_CUDA_TRY(err, cudaStreamSynchronize(cudaStreamLegacy));
    return 0;
}

extern "C" int sr_cuda_download(void *dst_host, const void *src_dev, size_t n, sr_error *err)
{
    if (!n) return 0;
    SR_CUDA_TRY(err, cudaMemcpyAsync(dst_host, src_dev, n, cudaMemcpyDeviceToHost, cudaStreamLegacy));
    SR_CUDA_TRY(err, cudaStreamSynchronize(cudaStreamLegacy));
    return 0;
}

extern "C" int sr_cuda_memset(void *dst_dev, int byte, size_t n, sr_error *err)
{
    if (!n) return 0;
    SR_CUDA_TRY(err, cudaMemsetAsync(dst_dev, byte, n, cudaStreamLegacy));
    SR_CUDA_TRY(err, cudaStreamSynchronize(cudaStreamLegacy));
    return 0;
}

extern "C" void *sr_cuda_dup(const void *src_host, size_t n, sr_error *err)
{
    void *p = NULL;
    if (sr_cuda_malloc(&p, n, err)) return NULL;
    if (sr_cuda_upload(p, src_host, n, err)) {
        cudaFree(p);
        return NULL;
    }
    return p;
}
