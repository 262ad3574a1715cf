#include "runtime/kv_cache.h"

#include <string.h>

#include "runtime/alloc.h"

static uint64_t layer_bytes(int nkv, int hd, int64_t ctx)
{
    return (uint64_t)nkv * (uint64_t)hd * (uint64_t)ctx * sizeof(float);
}

uint64_t sr_kv_cache_bytes(int n_layers, int nkv, int hd, int64_t ctx)
{
    return 2 * (uint64_t)n_layers * layer_bytes(nkv, hd, ctx) + (uint64_t)ctx * sizeof(uint32_t);
}

void sr_kv_cache_free(sr_kv_cache *kv)
{
    for (int l = 0; kv->k && l < kv->n_layers; l++) sr_free_aligned(kv->k[l]);
    for (int l = 0; kv->v && l < kv->n_layers; l++) sr_free_aligned(kv->v[l]);
    sr_free(kv->k);
    sr_free(kv->v);
    sr_free(kv->mem);
    memset(kv, 0, sizeof *kv);
}

int sr_kv_cache_init(sr_kv_cache *kv, int n_layers, int nkv, int hd, int64_t ctx, sr_error *err)
{
    memset(kv, 0, sizeof *kv);
    if (n_layers <= 0 || nkv <= 0 || hd <= 0 || ctx <= 0)
        return sr_fail(err, "kv cache: invalid dimensions (layers %d, kv heads %d, head dim %d, "
                       "ctx %lld)", n_layers, nkv, hd, (long long)ctx);
    kv->n_layers = n_layers;
    kv->nkv = nkv;
    kv->hd = hd;
    kv->ctx = ctx;
    uint64_t lb = layer_bytes(nkv, hd, ctx);
    if (lb / (uint64_t)ctx != (uint64_t)nkv * (uint64_t)hd * sizeof(float) || lb > SIZE_MAX / 2)
        return sr_fail(err, "kv cache: ctx %lld is too large", (long long)ctx);
    kv->k = sr_calloc((size_t)n_layers, sizeof *kv->k);
    kv->v = sr_calloc((size_t)n_layers, sizeof *kv->v);
    kv->mem = sr_calloc((size_t)ctx, sizeof *kv->mem);
    if (!kv->k || !kv->v || !kv->mem) goto oom;
    for (int l = 0; l < n_layers; l++) {
        kv->k[l] = sr_malloc_aligned((size_t)lb);
        kv->v[l] = sr_malloc_aligned((size_t)lb);
        if (!kv->k[l] || !kv->v[l]) goto oom;
    }
    return 0;
oom:
    sr_kv_cache_free(kv);
    return sr_fail(err, "kv cache: out of memory for %llu bytes (ctx %lld)",
                   (unsigned long long)sr_kv_cache_bytes(n_layers, nkv, hd, ctx), (long long)ctx);
}
