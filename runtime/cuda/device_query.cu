// CUDA device enumeration for `strata inspect --devices` and the planner.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "runtime/devices.h"

int sr_cuda_list_devices(sr_device_info *out, int max, char *why, int why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(why, (size_t)why_len, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
        cudaGetLastError(); // clear the sticky error
        return 0;
    }
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        size_t fr = 0, tot = 0;
        if (cudaSetDevice(i) != cudaSuccess || cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
            fr = 0;
            tot = p.totalGlobalMem;
        }
        sr_device_info *d = &out[k++];
        d->index = i;
        snprintf(d->name, sizeof d->name, "%s", p.name);
        d->free_bytes = fr;
        d->total_bytes = tot;
        d->cc_major = p.major;
        d->cc_minor = p.minor;
    }
    return k;
}
}
