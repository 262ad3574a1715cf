#include "runtime/kv_cache.h"

#include <string.h>

#include "runtime/alloc.h"
#include "runtime/dtype.h"

const char *sr_kv_type_name(sr_kv_type t)
{
    return t == SR_KV_BF16 ? "bf16" : "f32";
}

int sr_kv_type_parse(const char *s, sr_kv_type *out)
{
    if (!s) return -1;
    if (!strcmp(s, "f32")) *out = SR_KV_F32;
    else if (!strcmp(s, "bf16")) *out = SR_KV_BF16;
    else return -1;
    return 0;
}

static uint64_t layer_bytes(int nkv, int hd, int64_t ctx, sr_kv_type type)
{
    return (uint64_t)nkv * (uint64_t)hd * (uint64_t)ctx * sr_kv_elem_bytes(type);
}

uint64_t sr_kv_cache_bytes(int n_layers, int nkv, int hd, int64_t ctx, sr_kv_type type)
{
    return 2 * (uint64_t)n_layers * layer_bytes(nkv, hd, ctx, type) +
           (uint64_t)ctx * sizeof(uint32_t);
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

int sr_kv_cache_init(sr_kv_cache *kv, int n_layers, int nkv, int hd, int64_t ctx,
                     sr_kv_type type, sr_error *err)
{
    memset(kv, 0, sizeof *kv);
    if (n_layers <= 0 || nkv <= 0 || hd <= 0 || ctx <= 0)
        return sr_fail(err, "kv cache: invalid dimensions (layers %d, kv heads %d, head dim %d, "
                       "ctx %lld)", n_layers, nkv, hd, (long long)ctx);
    if (type != SR_KV_F32 && type != SR_KV_BF16)
        return sr_fail(err, "kv cache: unknown element type %d", (int)type);
    kv->n_layers = n_layers;
    kv->nkv = nkv;
    kv->hd = hd;
    kv->ctx = ctx;
    kv->type = type;
    uint64_t lb = layer_bytes(nkv, hd, ctx, type);
    if (lb / (uint64_t)ctx != (uint64_t)nkv * (uint64_t)hd * sr_kv_elem_bytes(type) ||
        lb > SIZE_MAX / 2)
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
    return sr_fail(err, "kv cache: out of memory for %llu bytes (ctx %lld, %s)",
                   (unsigned long long)sr_kv_cache_bytes(n_layers, nkv, hd, ctx, type),
                   (long long)ctx, sr_kv_type_name(type));
}

static void store(void *dst, const float *src, int hd, sr_kv_type type)
{
    if (type == SR_KV_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)hd);
        return;
    }
    uint16_t *d = dst;
    for (int e = 0; e < hd; e++) d[e] = sr_f32_to_bf16(src[e]);
}

void sr_kv_write(const sr_kv_cache *kv, int l, int g, int64_t pos, const float *k, const float *v)
{
    const size_t off = (size_t)pos * (size_t)kv->hd * sr_kv_elem_bytes(kv->type);
    store((char *)sr_kv_k(kv, l, g) + off, k, kv->hd, kv->type);
    store((char *)sr_kv_v(kv, l, g) + off, v, kv->hd, kv->type);
}

void sr_kv_widen(float *dst, const void *src, int64_t n, sr_kv_type type)
{
    if (type == SR_KV_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sr_bf16_to_f32(s[i]);
}
