/* Per-sequence KV cache (spec granite-switch.md §5.1).
 *
 * One block per decoder layer (so a layer's cache can live on the tier that
 * runs the layer), K and V post-RoPE, head-major [nkv][ctx][hd] so the keys
 * of one head are contiguous.  Per position (shared by all layers) the Gen A
 * hiding-group bits Mem(t_j); control dims are never materialised.  Memory
 * is sized for `ctx` positions up front.
 *
 * Elements are f32 (the default: what the f32 reference computes) or bf16
 * (half the memory; what transformers keeps for a bf16 model).  A bf16 cache
 * holds each value rounded to nearest even once, when it is written; every
 * reader (decode and prefill attention) widens exactly those stored values,
 * so decode step t still equals a full recompute (§5). */
#ifndef SR_KV_CACHE_H
#define SR_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

typedef enum sr_kv_type {
    SR_KV_F32 = 0,
    SR_KV_BF16,
} sr_kv_type;

/* "f32", "bf16" */
const char *sr_kv_type_name(sr_kv_type t);
/* Parses a name of sr_kv_type_name; 0, or -1 if unknown. */
int sr_kv_type_parse(const char *s, sr_kv_type *out);
static inline size_t sr_kv_elem_bytes(sr_kv_type t) { return t == SR_KV_BF16 ? 2 : 4; }

typedef struct sr_kv_cache {
    int n_layers, nkv, hd;
    int64_t ctx;            /* positions the cache holds */
    sr_kv_type type;
    void **k, **v;          /* [n_layers] -> [nkv][ctx][hd] elements of `type` */
    uint32_t *mem;          /* [ctx] Mem(t_j) of each cached position */
} sr_kv_cache;

/* Bytes of a cache for these dimensions (what sr_kv_cache_init allocates). */
uint64_t sr_kv_cache_bytes(int n_layers, int nkv, int hd, int64_t ctx, sr_kv_type type);

int sr_kv_cache_init(sr_kv_cache *kv, int n_layers, int nkv, int hd, int64_t ctx,
                     sr_kv_type type, sr_error *err);
void sr_kv_cache_free(sr_kv_cache *kv);

/* Start of head g's keys / values in layer l. */
static inline size_t sr_kv_head_bytes(const sr_kv_cache *kv)
{
    return (size_t)kv->ctx * (size_t)kv->hd * sr_kv_elem_bytes(kv->type);
}
static inline void *sr_kv_k(const sr_kv_cache *kv, int l, int g)
{
    return (char *)kv->k[l] + (size_t)g * sr_kv_head_bytes(kv);
}
static inline void *sr_kv_v(const sr_kv_cache *kv, int l, int g)
{
    return (char *)kv->v[l] + (size_t)g * sr_kv_head_bytes(kv);
}

/* Stores the key and value of head g of layer l at position pos (hd floats
 * each), converted to the cache's type. */
void sr_kv_write(const sr_kv_cache *kv, int l, int g, int64_t pos, const float *k, const float *v);

/* dst[0..n) = the stored elements src[0..n) of `type`, widened to f32
 * (exact). */
void sr_kv_widen(float *dst, const void *src, int64_t n, sr_kv_type type);

#endif
