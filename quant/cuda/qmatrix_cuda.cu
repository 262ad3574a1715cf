// Device sr_qmatrix: validation, upload from the host, free.
#include <string.h>

#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/cuda/cuda_check.cuh"

extern "C" {
#include "quant/matmul_kernels.h"
}

extern "C" const char *sr_cuda_dtype_name(sr_cuda_dtype t)
{
    switch (t) {
    case SR_CUDA_F32: return "f32";
    case SR_CUDA_BF16: return "bf16";
    case SR_CUDA_F16: return "f16";
    default: return "?";
    }
}

extern "C" int sr_cuda_qmatrix_check(const sr_qmatrix *w, const char *what, sr_error *err)
{
    if (!what) what = "weight";
    if (!w) return sr_fail(err, "cuda: %s: no matrix", what);
    if ((int)w->fmt < 0 || w->fmt >= SR_W_FORMAT_COUNT)
        return sr_fail(err, "cuda: %s: unknown weight format %d", what, (int)w->fmt);
    if (w->rows <= 0 || w->cols <= 0)
        return sr_fail(err, "cuda: %s: empty %s matrix [%lld, %lld]", what,
                       sr_wformat_name(w->fmt), (long long)w->rows, (long long)w->cols);
    if (w->rows > INT32_MAX || w->cols > INT32_MAX)
        return sr_fail(err, "cuda: %s: %s matrix [%lld, %lld] exceeds the 2^31 rows/columns "
                       "cuBLAS takes", what, sr_wformat_name(w->fmt), (long long)w->rows,
                       (long long)w->cols);
    if (!w->data) return sr_fail(err, "cuda: %s: %s matrix has no data", what, sr_wformat_name(w->fmt));
    if (sr_wformat_is_4bit(w->fmt) && (w->blocksize <= 0 || !w->scales))
        return sr_fail(err, "cuda: %s: %s matrix needs a positive blocksize (%d) and scales", what,
                       sr_wformat_name(w->fmt), w->blocksize);
    if (w->fmt == SR_W_INT8 && !w->scb)
        return sr_fail(err, "cuda: %s: int8 matrix has no SCB", what);
    return 0;
}

extern "C" void sr_cuda_qmatrix_free(sr_qmatrix *dev)
{
    if (!dev) return;
    sr_cuda_free((void *)dev->data);
    sr_cuda_free((void *)dev->scales);
    sr_cuda_free((void *)dev->scb);
    memset(dev, 0, sizeof *dev);
}

extern "C" int sr_cuda_qmatrix_upload(const sr_qmatrix *host, sr_qmatrix *dev, sr_error *err)
{
    memset(dev, 0, sizeof *dev);
    if (sr_cuda_qmatrix_check(host, "upload", err)) return -1;
    sr_qmatrix d = sr_qmatrix_borrow(host);
    d.data = NULL;
    d.scales = NULL;
    d.scb = NULL;
    const uint64_t n = (uint64_t)host->rows * (uint64_t)host->cols;
    d.data = sr_cuda_dup(host->data, (size_t)sr_qmatrix_data_bytes(host), err);
    if (!d.data) goto fail;
    if (sr_wformat_is_4bit(host->fmt)) {
        uint64_t nb = (n + (uint64_t)host->blocksize - 1) / (uint64_t)host->blocksize;
        d.scales = (const float *)sr_cuda_dup(host->scales, (size_t)nb * sizeof(float), err);
        if (!d.scales) goto fail;
    } else {
        d.blocksize = host->blocksize;
    }
    if (host->fmt == SR_W_INT8) {
        d.scb = (const float *)sr_cuda_dup(host->scb, (size_t)host->rows * sizeof(float), err);
        if (!d.scb) goto fail;
    }
    *dev = d;
    return 0;
fail:
    sr_cuda_qmatrix_free(&d);
    return sr_fail_prefix(err, "uploading a %s matrix [%lld, %lld]", sr_wformat_name(host->fmt),
                          (long long)host->rows, (long long)host->cols);
}
