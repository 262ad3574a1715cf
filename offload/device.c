#include "offload/device.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "offload/budget.h"
#include "sr_build_config.h"
#if SR_HAVE_CUDA
#include "offload/device_cuda.h"
#endif
#include "runtime/alloc.h"

int sr_dev_alloc(sr_device *d, size_t n, sr_dbuf *out, sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (!d->ops)
        return sr_fail(err, "%s: this build cannot allocate on it (planning only)", d->name);
    if (n > d->budget || d->used > d->budget - n)
        return sr_fail(err, "%s: allocating %zu bytes would exceed its budget (%llu of %llu bytes "
                       "in use)", d->name, n, (unsigned long long)d->used,
                       (unsigned long long)d->budget);
    void *p = d->ops->alloc(d, n ? n : 1);
    if (!p) return sr_fail(err, "%s: out of memory allocating %zu bytes", d->name, n);
    d->used += n;
    if (d->used > d->peak) d->peak = d->used;
    d->n_allocs++;
    *out = (sr_dbuf){d, p, n};
    return 0;
}

void sr_dev_free(sr_dbuf *b)
{
    if (!b || !b->dev || !b->ptr) return;
    sr_device *d = b->dev;
    d->ops->free(d, b->ptr);
    d->used -= b->size;
    d->n_allocs--;
    memset(b, 0, sizeof *b);
}

void sr_dev_count_copy(sr_device *dst, sr_device *src, size_t n)
{
    bool dst_acc = dst && !sr_dev_is_host(dst), src_acc = src && !sr_dev_is_host(src);
    if (dst_acc && src_acc) {
        if (dst == src) return;
        src->moved.d2d_out += n;
        dst->moved.d2d_in += n;
    } else if (dst_acc) {
        dst->moved.h2d += n;
    } else if (src_acc) {
        src->moved.d2h += n;
    } else {
        return;
    }
    if (dst_acc) dst->moved.n_copies++;
    if (src_acc && src != dst) src->moved.n_copies++;
}

int sr_dbuf_check_range(const sr_dbuf *b, size_t off, size_t n, const char *what, sr_error *err)
{
    if (!b || !b->ptr || !b->dev) return sr_fail(err, "copy: %s buffer is not allocated", what);
    if (off > b->size || n > b->size - off)
        return sr_fail(err, "copy: %s range [%zu, +%zu) outside its %zu-byte buffer on %s", what,
                       off, n, b->size, b->dev->name);
    return 0;
}

#if SR_HAVE_CUDA
/* A copy that a CUDA device takes part in goes through device_cuda.cu. */
static bool on_cuda(const sr_device *d) { return d && d->kind == SR_DEV_CUDA && d->ops; }
#endif

int sr_dev_copy_on(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src, size_t src_off,
                   size_t n, sr_stream *s, sr_error *err)
{
    if (sr_dbuf_check_range(dst, dst_off, n, "destination", err) ||
        sr_dbuf_check_range(src, src_off, n, "source", err))
        return -1;
#if SR_HAVE_CUDA
    if (on_cuda(dst->dev) || on_cuda(src->dev))
        return sr_cuda_dev_copy(dst, dst_off, src, src_off, n, s, err);
#endif
    (void)s;
    memmove((char *)dst->ptr + dst_off, (const char *)src->ptr + src_off, n);
    sr_dev_count_copy(dst->dev, src->dev, n);
    return 0;
}

int sr_dev_upload_on(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n,
                     sr_stream *s, sr_error *err)
{
    if (sr_dbuf_check_range(dst, dst_off, n, "destination", err)) return -1;
#if SR_HAVE_CUDA
    if (on_cuda(dst->dev)) return sr_cuda_dev_upload(dst, dst_off, host, n, s, err);
#endif
    (void)s;
    if (n) memcpy((char *)dst->ptr + dst_off, host, n);
    sr_dev_count_copy(dst->dev, NULL, n);
    return 0;
}

int sr_dev_download_on(void *host, const sr_dbuf *src, size_t src_off, size_t n, sr_stream *s,
                       sr_error *err)
{
    if (sr_dbuf_check_range(src, src_off, n, "source", err)) return -1;
#if SR_HAVE_CUDA
    if (on_cuda(src->dev)) return sr_cuda_dev_download(host, src, src_off, n, s, err);
#endif
    (void)s;
    if (n) memcpy(host, (const char *)src->ptr + src_off, n);
    sr_dev_count_copy(NULL, src->dev, n);
    return 0;
}

int sr_dev_copy(const sr_dbuf *dst, size_t dst_off, const sr_dbuf *src, size_t src_off, size_t n,
                sr_error *err)
{
    return sr_dev_copy_on(dst, dst_off, src, src_off, n, NULL, err);
}

int sr_dev_upload(const sr_dbuf *dst, size_t dst_off, const void *host, size_t n, sr_error *err)
{
    return sr_dev_upload_on(dst, dst_off, host, n, NULL, err);
}

int sr_dev_download(void *host, const sr_dbuf *src, size_t src_off, size_t n, sr_error *err)
{
    return sr_dev_download_on(host, src, src_off, n, NULL, err);
}

int sr_dev_zero(const sr_dbuf *b, sr_error *err)
{
    if (sr_dbuf_check_range(b, 0, b ? b->size : 0, "destination", err)) return -1;
#if SR_HAVE_CUDA
    if (on_cuda(b->dev)) return sr_cuda_dev_zero(b, err);
#endif
    memset(b->ptr, 0, b->size);
    return 0;
}

int sr_stream_create(sr_device *d, sr_stream *s, sr_error *err)
{
#if SR_HAVE_CUDA
    if (on_cuda(d)) return sr_cuda_stream_create(d, s, err);
#endif
    (void)err;
    *s = (sr_stream){d, NULL};
    return 0;
}

void sr_stream_destroy(sr_stream *s)
{
#if SR_HAVE_CUDA
    if (s && s->impl) {
        sr_cuda_stream_destroy(s);
        return;
    }
#endif
    if (s) s->dev = NULL;
}

int sr_stream_sync(sr_stream *s, sr_error *err)
{
#if SR_HAVE_CUDA
    if (s && s->impl) return sr_cuda_stream_sync(s, err);
#endif
    (void)s;
    (void)err;
    return 0;   /* cpu/sim: every operation completed in its call */
}

int sr_event_record(sr_event *e, sr_stream *s, sr_error *err)
{
#if SR_HAVE_CUDA
    if (s && s->impl) return sr_cuda_event_record(e, s, err);
#endif
    (void)err;
    *e = (sr_event){s ? s->dev : NULL, NULL};
    return 0;
}

int sr_event_wait(sr_stream *s, const sr_event *e, sr_error *err)
{
#if SR_HAVE_CUDA
    if (s && s->impl) return sr_cuda_event_wait(s, e, err);
#endif
    (void)s;
    (void)e;
    (void)err;
    return 0;
}

void sr_dev_reset_stats(sr_device *d)
{
    memset(&d->moved, 0, sizeof d->moved);
    d->peak = d->used;
}

void sr_device_init_cuda_info(sr_device *d, const sr_device_info *info)
{
    memset(d, 0, sizeof *d);
    d->kind = SR_DEV_CUDA;
    d->total = info->total_bytes;
    d->free_bytes = info->free_bytes;
    d->budget = info->free_bytes;
    d->ops = NULL;
    sr_device_cuda_slice(d, info->index, info->index, 0, 1);
}

void sr_device_cuda_slice(sr_device *d, int gpu, int phys, int slice, int n_slices)
{
    d->gpu = gpu;
    if (n_slices <= 1) {
        snprintf(d->name, sizeof d->name, "cuda:%d", phys);
        return;
    }
    snprintf(d->name, sizeof d->name, "cuda:%d.%d", phys, slice);
    d->total /= (uint64_t)n_slices;
    d->free_bytes /= (uint64_t)n_slices;
    if (d->budget != UINT64_MAX) d->budget /= (uint64_t)n_slices;
}

/* Physical GPU index of a whole CUDA device named "cuda:P", else -1 (a
 * slice "cuda:P.S" or another kind). */
static int whole_gpu_index(const sr_device *d)
{
    int p = -1, end = 0;
    if (d->kind != SR_DEV_CUDA || sscanf(d->name, "cuda:%d%n", &p, &end) != 1 || d->name[end] ||
        p < 0)
        return -1;
    return p;
}

int sr_device_set_split_gpus(sr_device_set *set, int n, sr_error *err)
{
    if (n < 1 || n > SR_MAX_DEVICES)
        return sr_fail(err, "--logical-gpus %d: expected 1..%d", n, SR_MAX_DEVICES);
    if (!set->n_gpu)
        return sr_fail(err, "--logical-gpus applies to --devices cuda (this set has no "
                       "accelerator)");
    for (int g = 0; g < set->n_gpu; g++) {
        const sr_device *d = &set->gpu[g];
        if (d->kind != SR_DEV_CUDA)
            return sr_fail(err, "--logical-gpus applies to --devices cuda, not %s", d->name);
        if (whole_gpu_index(d) < 0)
            return sr_fail(err, "--logical-gpus: %s is already a logical device", d->name);
        if (d->n_allocs || d->used)
            return sr_fail(err, "--logical-gpus: %s holds allocations; split it before use",
                           d->name);
    }
    if (set->n_gpu * n > SR_MAX_DEVICES)
        return sr_fail(err, "--logical-gpus %d: %d GPUs would make %d devices (at most %d)", n,
                       set->n_gpu, set->n_gpu * n, SR_MAX_DEVICES);
    if (n == 1) return 0;
    /* from the last GPU down, so each whole device is read before any slice
     * of an earlier one overwrites its slot */
    for (int g = set->n_gpu - 1; g >= 0; g--) {
        const sr_device whole = set->gpu[g];
        const int phys = whole_gpu_index(&whole);
        for (int s = 0; s < n; s++) {
            sr_device *d = &set->gpu[g * n + s];
            *d = whole;
            sr_device_cuda_slice(d, g * n + s, phys, s, n);
        }
    }
    set->n_gpu *= n;
    return 0;
}

/* One "sim:NxSIZE" / "sim:SIZE" group. */
static int parse_sim_group(const char *item, sr_device_set *set, sr_error *err)
{
    const char *p = item + 4;
    long count = 1;
    const char *x = strchr(p, 'x');
    if (!x) x = strchr(p, 'X');
    if (x) {
        char *end;
        errno = 0;
        count = strtol(p, &end, 10);
        if (end != x || errno || count < 1 || count > SR_MAX_DEVICES)
            return sr_fail(err, "--devices: '%s': bad device count (1..%d)", item, SR_MAX_DEVICES);
        p = x + 1;
    }
    uint64_t bytes;
    if (sr_parse_size(p, &bytes) || bytes == 0)
        return sr_fail(err, "--devices: '%s': bad memory size (expected e.g. sim:2x512MiB)", item);
    if (set->n_gpu + count > SR_MAX_DEVICES)
        return sr_fail(err, "--devices: more than %d accelerators", SR_MAX_DEVICES);
    for (long i = 0; i < count; i++, set->n_gpu++)
        sr_device_init_sim(&set->gpu[set->n_gpu], set->n_gpu, bytes);
    return 0;
}

int sr_device_set_parse(const char *spec, sr_device_set *set, sr_error *err)
{
    memset(set, 0, sizeof *set);
    sr_device_init_cpu(&set->host);
    char *copy = sr_strdup(spec ? spec : "");
    if (!copy) return sr_fail(err, "--devices: out of memory");
    int rc = 0, kinds = 0;   /* bit 0 sim, bit 1 cuda, bit 2 cpu */
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) item++;
        if (!strncasecmp(item, "sim:", 4)) {
            kinds |= 1;
            rc = parse_sim_group(item, set, err);
        } else if (!strcasecmp(item, "cuda")) {
            kinds |= 2;
            char why[256] = "";
            sr_device_set real;
            sr_device_set_detect(&real, why, sizeof why);
            if (!real.n_gpu) rc = sr_fail(err, "--devices: cuda: %s", why);
            for (int i = 0; i < real.n_gpu && set->n_gpu < SR_MAX_DEVICES; i++)
                set->gpu[set->n_gpu++] = real.gpu[i];
#if SR_HAVE_CUDA
            /* this build runs units on them, with the host tier pinned */
            if (real.n_gpu) sr_device_set_cuda_runnable(set);
#endif
        } else if (!strcasecmp(item, "cpu") || !strcasecmp(item, "host")) {
            kinds |= 4;
        } else if (!strcasecmp(item, "disk")) {
            rc = sr_fail(err, "--devices: 'disk': strata does not offload to disk");
        } else {
            rc = sr_fail(err, "--devices: '%s': expected sim:NxSIZE, sim:SIZE, cuda or cpu", item);
        }
    }
    if (!rc && !kinds) rc = sr_fail(err, "--devices: empty (expected e.g. sim:2x512MiB or cpu)");
    if (!rc && (kinds & 3) == 3)
        rc = sr_fail(err, "--devices: simulated and real accelerators cannot be mixed");
    if (!rc && (kinds & 4) && set->n_gpu)
        rc = sr_fail(err, "--devices: 'cpu' means no accelerator; the host is always a tier");
    sr_free(copy);
    if (rc) {
        memset(set, 0, sizeof *set);
        sr_device_init_cpu(&set->host);
    }
    return rc;
}

void sr_device_set_detect(sr_device_set *set, char *why, size_t why_len)
{
    memset(set, 0, sizeof *set);
    sr_device_init_cpu(&set->host);
    sr_device_info info[SR_MAX_DEVICES];
    int n = sr_list_devices(info, SR_MAX_DEVICES, why, (int)why_len);
    for (int i = 0; i < n; i++) sr_device_init_cuda_info(&set->gpu[set->n_gpu++], &info[i]);
}
