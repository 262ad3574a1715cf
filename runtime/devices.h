/* GPU devices visible to this process (CUDA), for `strata inspect --devices`
 * and the planner's default budgets.  Without a CUDA build, or without a
 * device, the list is empty and `why` says which. */
#ifndef SR_DEVICES_H
#define SR_DEVICES_H

#include <stdint.h>

#define SR_MAX_DEVICES 16

typedef struct sr_device_info {
    int index;
    char name[256];
    uint64_t free_bytes, total_bytes;
    int cc_major, cc_minor;
} sr_device_info;

/* Returns the number of devices written (0..max).  If 0, `why` gets a reason
 * ("strata was built without CUDA", "no CUDA device: <driver message>"). */
int sr_list_devices(sr_device_info *out, int max, char *why, int why_len);
/* 1 if the build includes the CUDA backend. */
int sr_have_cuda_build(void);

#endif
