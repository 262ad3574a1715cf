/* Per-sequence KV cache (spec granite-switch.md §5.1).
 *
 * One block per decoder layer (so a layer's cache can live on the tier that
 * runs the layer), K and V post-RoPE in f32, head-major [nkv][ctx][hd] so the
 * keys of one head are contiguous.  Per position (shared by all layers) the
 * Gen A hiding-group bits Mem(t_j); control dims are never materialised.
 * Memory is sized for `ctx` positions up front. */
#ifndef SR_KV_CACHE_H
#define SR_KV_CACHE_H

#include <stdint.h>

#include "runtime/error.h"

typedef struct sr_kv_cache {
    int n_layers, nkv, hd;
    int64_t ctx;            /* positions the cache holds */
    float **k, **v;         /* [n_layers] -> [nkv][ctx][hd] */
    uint32_t *mem;          /* [ctx] Mem(t_j) of each cached position */
} sr_kv_cache;

/* Bytes of a cache for these dimensions (what sr_kv_cache_init allocates). */
uint64_t sr_kv_cache_bytes(int n_layers, int nkv, int hd, int64_t ctx);

int sr_kv_cache_init(sr_kv_cache *kv, int n_layers, int nkv, int hd, int64_t ctx, sr_error *err);
void sr_kv_cache_free(sr_kv_cache *kv);

/* Start of head g's keys / values in layer l. */
static inline float *sr_kv_k(const sr_kv_cache *kv, int l, int g)
{
    return kv->k[l] + (int64_t)g * kv->ctx * kv->hd;
}
static inline float *sr_kv_v(const sr_kv_cache *kv, int l, int g)
{
    return kv->v[l] + (int64_t)g * kv->ctx * kv->hd;
}

#endif
