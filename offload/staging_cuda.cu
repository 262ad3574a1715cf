// Staging slots for streamed layers on one GPU (see device_cuda.h): a copy
// stream fills slots while the compute stream runs earlier layers; an event
// per slot in each direction keeps a slot from being overwritten while
// compute still reads it, and compute from reading it before it is filled.
#include <string.h>

#include "runtime/cuda/cuda_check.cuh"

extern "C" {
#include "offload/device_cuda.h"
}

static int slot_ok(const sr_cuda_staging *st, int k, sr_error *err)
{
    if (!st || !st->dev || k < 0 || k >= st->n_slots)
        return sr_fail(err, "staging: slot %d does not exist (%d slots)", k, st ? st->n_slots : 0);
    return 0;
}

extern "C" void sr_cuda_staging_free(sr_cuda_staging *st)
{
    if (!st) return;
    sr_cuda_stream_destroy(&st->copy);     // waits for its copies
    for (int k = 0; k < SR_CUDA_MAX_STAGING; k++) {
        sr_cuda_event_destroy(&st->filled[k]);
        sr_cuda_event_destroy(&st->released[k]);
        sr_dev_free(&st->slot[k]);
    }
    memset(st, 0, sizeof *st);
}

extern "C" int sr_cuda_staging_init(sr_cuda_staging *st, sr_device *dev, int n_slots,
                                    size_t slot_bytes, sr_error *err)
{
    memset(st, 0, sizeof *st);
    if (!dev || n_slots < 1 || n_slots > SR_CUDA_MAX_STAGING)
        return sr_fail(err, "staging: %d slots (1..%d)", n_slots, SR_CUDA_MAX_STAGING);
    st->dev = dev;
    st->n_slots = n_slots;
    st->slot_bytes = slot_bytes;
    for (int k = 0; k < n_slots; k++) {
        if (sr_dev_alloc(dev, slot_bytes, &st->slot[k], err)) {
            sr_fail_prefix(err, "staging slot %d of %d", k, n_slots);
            sr_cuda_staging_free(st);
            return -1;
        }
    }
    if (sr_cuda_stream_create(dev, &st->copy, err)) {
        sr_fail_prefix(err, "staging: copy stream");
        sr_cuda_staging_free(st);
        return -1;
    }
    return 0;
}

extern "C" int sr_cuda_staging_fill(sr_cuda_staging *st, int k, const void *host, size_t n,
                                    sr_error *err)
{
    if (slot_ok(st, k, err)) return -1;
    // The slot's previous layer must be done before it is overwritten.
    if (st->ever_released[k] && sr_cuda_event_wait(&st->copy, &st->released[k], err)) return -1;
    if (sr_cuda_dev_upload(&st->slot[k], 0, host, n, &st->copy, err))
        return sr_fail_prefix(err, "staging slot %d", k);
    return sr_cuda_event_record(&st->filled[k], &st->copy, err);
}

extern "C" int sr_cuda_staging_acquire(sr_cuda_staging *st, int k, sr_stream *compute,
                                       sr_error *err)
{
    if (slot_ok(st, k, err)) return -1;
    return sr_cuda_event_wait(compute, &st->filled[k], err);
}

extern "C" int sr_cuda_staging_release(sr_cuda_staging *st, int k, sr_stream *compute,
                                       sr_error *err)
{
    if (slot_ok(st, k, err)) return -1;
    if (sr_cuda_event_record(&st->released[k], compute, err)) return -1;
    st->ever_released[k] = true;
    return 0;
}
