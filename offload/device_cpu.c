/* The host tier: plain aligned host memory, budget accounting only. */
#include <stdio.h>
#include <string.h>

#include "offload/device.h"
#include "runtime/alloc.h"
#include "runtime/host_memory.h"

static void *cpu_alloc(sr_device *d, size_t n)
{
    (void)d;
    return sr_malloc_aligned(n);
}

static void cpu_free(sr_device *d, void *p)
{
    (void)d;
    sr_free_aligned(p);
}

static const sr_device_ops cpu_ops = {cpu_alloc, cpu_free};

void sr_device_init_cpu(sr_device *d)
{
    memset(d, 0, sizeof *d);
    d->kind = SR_DEV_CPU;
    d->gpu = -1;
    snprintf(d->name, sizeof d->name, "cpu");
    sr_host_memory(&d->total, &d->free_bytes);
    d->budget = UINT64_MAX;     /* the planner's budget is applied by the caller */
    d->ops = &cpu_ops;
}
