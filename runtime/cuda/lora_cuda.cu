// Per-token LoRA on the device (see lora_cuda.h).
//
// cuBLAS is column-major; with row-major U[n][in], A_all[zr][in], Z[n][zr]:
//   Zᵀ (zr × n) = op_T(A_all as in × zr) · Uᵀ (in × n)       -> Sgemm(T, N, zr, n, in)
//   Dᵀ (rows_s × n) = op_T(B_s as R × rows_s, first r rows) · Z_sᵀ (r × n, ld zr)
//                                                            -> Sgemm(T, N, rows_s, n, r)
#include <string.h>

#include "runtime/cuda/cuda_check.cuh"
#include "runtime/cuda/lora_cuda.h"

extern "C" {
#include "runtime/alloc.h"
}

namespace {

constexpr int kThreads = 256;

__global__ void gather_kernel(const float *__restrict__ u, int64_t ldu, int64_t in,
                              const int32_t *__restrict__ rows, int n, float *__restrict__ U)
{
    const int64_t total = (int64_t)n * in;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / in, c = i % in;
        U[i] = u[(int64_t)rows[r] * ldu + c];
    }
}

// Tokens within one adapter's list are distinct: no two threads add to the
// same element.
__global__ void scatter_add_kernel(const float *__restrict__ D, int64_t width,
                                   const int32_t *__restrict__ rows, int n, float *__restrict__ y,
                                   int64_t ldy, int64_t col0)
{
    const int64_t total = (int64_t)n * width;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / width, c = i % width;
        float *dst = y + (int64_t)rows[r] * ldy + col0 + c;
        *dst = __fadd_rn(*dst, D[i]);
    }
}

int64_t max_slice_rows(const sr_lora *l)
{
    int64_t m = 0;
    for (int s = 0; s < l->n_slices; s++)
        if (l->slice_rows[s] > m) m = l->slice_rows[s];
    return m;
}

size_t a_floats(const sr_lora *l)
{
    return (size_t)l->n_adapters * (size_t)l->n_slices * (size_t)l->rank * (size_t)l->in;
}

size_t b_floats(const sr_lora *l, int s)
{
    return (size_t)l->n_adapters * (size_t)l->slice_rows[s] * (size_t)l->rank;
}

}  // namespace

extern "C" void sr_cuda_lora_free(sr_lora *dev)
{
    if (!dev) return;
    sr_cuda_free(dev->A);
    for (int s = 0; s < SR_LORA_MAX_SLICES; s++) sr_cuda_free(dev->B[s]);
    sr_free(dev->ranks);
    sr_free(dev->live);
    memset(dev, 0, sizeof *dev);
}

extern "C" int sr_cuda_lora_upload(const sr_lora *host, sr_lora *dev, sr_error *err)
{
    memset(dev, 0, sizeof *dev);
    if (!host || host->n_adapters <= 0 || host->rank <= 0 || host->in <= 0 ||
        host->n_slices < 1 || host->n_slices > SR_LORA_MAX_SLICES)
        return sr_fail(err, "cuda: lora upload: invalid geometry");
    sr_lora d = *host;
    d.A = NULL;
    for (int s = 0; s < SR_LORA_MAX_SLICES; s++) d.B[s] = NULL;
    d.ranks = (int *)sr_malloc(sizeof(int) * (size_t)host->n_adapters);
    d.live = (bool *)sr_malloc(sizeof(bool) * (size_t)host->n_adapters * (size_t)host->n_slices);
    if (!d.ranks || !d.live) {
        sr_cuda_lora_free(&d);
        return sr_fail(err, "cuda: lora upload: out of memory");
    }
    memcpy(d.ranks, host->ranks, sizeof(int) * (size_t)host->n_adapters);
    memcpy(d.live, host->live, sizeof(bool) * (size_t)host->n_adapters * (size_t)host->n_slices);
    d.A = (float *)sr_cuda_dup(host->A, a_floats(host) * sizeof(float), err);
    if (!d.A) goto fail;
    for (int s = 0; s < host->n_slices; s++) {
        d.B[s] = (float *)sr_cuda_dup(host->B[s], b_floats(host, s) * sizeof(float), err);
        if (!d.B[s]) goto fail;
    }
    *dev = d;
    return 0;
fail:
    sr_cuda_lora_free(&d);
    return sr_fail_prefix(err, "cuda: lora upload (%d adapters, rank %d, in %lld)",
                          host->n_adapters, host->rank, (long long)host->in);
}

extern "C" int sr_cuda_lora_apply(sr_cuda_ctx *c, const sr_lora *l, const float *u, int64_t T,
                                  int64_t ldu, const int32_t *a_host, float *y, int64_t ldy,
                                  sr_error *err)
{
    if (T <= 0) return 0;
    if (!l || !l->A || !l->ranks || !l->live || !u || !y || !a_host || T > INT32_MAX)
        return sr_fail(err, "cuda: lora: bad arguments (T %lld)", (long long)T);
    const int N = l->n_adapters, S = l->n_slices, R = l->rank;
    const int64_t in = l->in, zr = (int64_t)S * R, maxr = max_slice_rows(l);

    // Host: tokens grouped by adapter (counting sort), only adapters with a live slice.
    void *hs;
    if (sr_cuda_ctx_host_scratch(c, sizeof(int32_t) * (size_t)(T + N + 2), &hs, err))
        return sr_fail_prefix(err, "cuda: lora");
    int32_t *start = (int32_t *)hs, *list = start + N + 2;  // start[k]..start[k+1]: adapter k
    memset(start, 0, sizeof(int32_t) * (size_t)(N + 2));
    for (int64_t t = 0; t < T; t++)
        if (a_host[t] >= 1 && a_host[t] <= N) start[a_host[t] + 1]++;
    for (int k = 1; k <= N; k++) {
        bool any_live = false;
        for (int s = 0; s < S; s++) any_live |= l->live[(k - 1) * S + s];
        if (!any_live) start[k + 1] = 0;
    }
    for (int k = 1; k <= N + 1; k++) start[k] += start[k - 1];
    const int32_t total = start[N + 1];
    if (!total) return 0;
    // Stable fill: position within each adapter's range in token order.
    for (int k = 1; k <= N; k++) {
        int32_t pos = start[k];
        if (start[k + 1] == start[k]) continue;
        for (int64_t t = 0; t < T; t++)
            if (a_host[t] == k) list[pos++] = (int32_t)t;
    }

    // Device scratch: U [total][in], Z [total][zr], D [total][maxr], token list [total].
    const size_t nU = (size_t)total * (size_t)in, nZ = (size_t)total * (size_t)zr,
                 nD = (size_t)total * (size_t)maxr;
    void *ds;
    if (sr_cuda_ctx_scratch(c, SR_CUDA_SCRATCH_LORA, sizeof(float) * (nU + nZ + nD) +
                                                         sizeof(int32_t) * (size_t)total,
                            &ds, err))
        return sr_fail_prefix(err, "cuda: lora");
    float *U = (float *)ds, *Z = U + nU, *D = Z + nZ;
    int32_t *rows = (int32_t *)(D + nD);
    cudaStream_t st = (cudaStream_t)sr_cuda_ctx_enter(c);
    cublasHandle_t h = (cublasHandle_t)sr_cuda_ctx_cublas(c);
    // Pageable source: the call returns once the list is staged, so the host
    // scratch may be reused by the next call.
    SR_CUDA_TRY(err, cudaMemcpyAsync(rows, list, sizeof(int32_t) * (size_t)total,
                                     cudaMemcpyHostToDevice, st));

    const float one = 1.0f, zero = 0.0f;
    for (int k = 1; k <= N; k++) {
        const int n = start[k + 1] - start[k];
        if (!n) continue;
        const int32_t *rk = rows + start[k];
        float *Uk = U + (size_t)start[k] * in, *Zk = Z + (size_t)start[k] * zr;
        gather_kernel<<<sr_cuda_blocks((int64_t)n * in, kThreads), kThreads, 0, st>>>(
            u, ldu, in, rk, n, Uk);
        SR_CUDA_LAUNCHED(err, "lora gather_kernel");
        SR_CUBLAS_TRY(err, cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)zr, n, (int)in, &one,
                                       sr_lora_a(l, k - 1, 0), (int)in, Uk, (int)in, &zero, Zk,
                                       (int)zr));
        const int r = l->ranks[k - 1];
        for (int s = 0; s < S; s++) {
            if (!l->live[(k - 1) * S + s]) continue;
            const int64_t rows_s = l->slice_rows[s];
            float *Dk = D + (size_t)start[k] * maxr;
            SR_CUBLAS_TRY(err, cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows_s, n, r, &one,
                                           sr_lora_b(l, k - 1, s), R, Zk + (int64_t)s * R,
                                           (int)zr, &zero, Dk, (int)rows_s));
            scatter_add_kernel<<<sr_cuda_blocks((int64_t)n * rows_s, kThreads), kThreads, 0,
                                 st>>>(Dk, rows_s, rk, n, y, ldy, l->slice_off[s]);
            SR_CUDA_LAUNCHED(err, "lora scatter_add_kernel");
        }
    }
    return 0;
}
