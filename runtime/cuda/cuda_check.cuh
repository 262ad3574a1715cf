// Error checking shared by every CUDA source (C++ only, never included from C).
//
// Every CUDA runtime and cuBLAS call goes through one of these macros: a
// failure becomes an sr_error naming the call, where it was made and the
// driver's message, and the function returns -1.  `err` may be NULL.
#ifndef SR_CUDA_CHECK_CUH
#define SR_CUDA_CHECK_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "runtime/error.h"
}

#define SR_CUDA_TRY(err, call)                                                              \
    do {                                                                                    \
        cudaError_t sr_e_ = (call);                                                         \
        if (sr_e_ != cudaSuccess) {                                                         \
            (void)cudaGetLastError(); /* clear a non-sticky error for the next call */      \
            return sr_fail((err), "cuda: %s (%s:%d): %s", #call, __FILE__, __LINE__,       \
                           cudaGetErrorString(sr_e_));                                      \
        }                                                                                   \
    } while (0)

#define SR_CUBLAS_TRY(err, call)                                                            \
    do {                                                                                    \
        cublasStatus_t sr_s_ = (call);                                                      \
        if (sr_s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return sr_fail((err), "cublas: %s (%s:%d): %s", #call, __FILE__, __LINE__,     \
                           cublasGetStatusString(sr_s_));                                   \
    } while (0)

// After a kernel launch: a bad configuration or an earlier asynchronous fault
// shows up here, named by the kernel.
#define SR_CUDA_LAUNCHED(err, kernel_name)                                                  \
    do {                                                                                    \
        cudaError_t sr_e_ = cudaGetLastError();                                             \
        if (sr_e_ != cudaSuccess)                                                           \
            return sr_fail((err), "cuda: kernel %s (%s:%d): %s", (kernel_name), __FILE__,  \
                           __LINE__, cudaGetErrorString(sr_e_));                            \
    } while (0)

// Grid size for a grid-stride loop over n items with `threads` per block.
static inline unsigned sr_cuda_blocks(long long n, int threads)
{
    long long b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535LL * 16) b = 65535LL * 16;   // grid-stride loops cover the rest
    return (unsigned)b;
}

#endif
