#include "runtime/devices.h"

#include <stdio.h>

#include "sr_build_config.h"

#if SR_HAVE_CUDA
int sr_cuda_list_devices(sr_device_info *out, int max, char *why, int why_len);
#endif

int sr_have_cuda_build(void) { return SR_HAVE_CUDA; }

int sr_list_devices(sr_device_info *out, int max, char *why, int why_len)
{
#if SR_HAVE_CUDA
    return sr_cuda_list_devices(out, max, why, why_len);
#else
    (void)out;
    (void)max;
    snprintf(why, (size_t)why_len, "strata was built without CUDA");
    return 0;
#endif
}
