/* Simulated accelerators: host memory with separate accounting, so plans,
 * budgets and streaming can be tested on any machine.  A sim device holds
 * exactly its stated bytes (no driver overhead) and the generic layer
 * (device.c) refuses allocations beyond its budget and counts every byte
 * that crosses its boundary.  Its memory is poisoned when allocated so a
 * unit that reads a buffer before the copy into it shows up in the logits. */
#include <stdio.h>
#include <string.h>

#include "offload/device.h"
#include "runtime/alloc.h"

static void *sim_alloc(sr_device *d, size_t n)
{
    (void)d;
    void *p = sr_malloc_aligned(n);
    if (p) memset(p, 0xff, n);  /* NaN pattern for floats */
    return p;
}

static void sim_free(sr_device *d, void *p)
{
    (void)d;
    sr_free_aligned(p);
}

static const sr_device_ops sim_ops = {sim_alloc, sim_free};

void sr_device_init_sim(sr_device *d, int gpu, uint64_t bytes)
{
    memset(d, 0, sizeof *d);
    d->kind = SR_DEV_SIM;
    d->gpu = gpu;
    snprintf(d->name, sizeof d->name, "sim:%d", gpu);
    d->total = d->free_bytes = d->budget = bytes;
    d->ops = &sim_ops;
}
