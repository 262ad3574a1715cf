/* Causal grouped-query attention of T new queries over one layer's KV cache
 * (spec granite-switch.md §4.5.3 step 7), with the Gen A KV hiding rule as a
 * boolean visibility test (§4.5.4): key j is excluded for query i iff
 * Mem(t_j) & (Sup(a_i) & ~Mem(t_i)) != 0.  Never extra head dims.
 *
 * Scores = scale · q·k (scale = attention_multiplier), fp32 softmax over the
 * visible keys, output = Σ p_j v_j.  Computed per block of (query, head)
 * rows sharing a KV head: two sgemm calls for prefill, streaming SIMD
 * kernels over K and V for decode (attention.c, attention_stream.h);
 * threads: OpenMP over the blocks. */
#ifndef SR_ATTENTION_H
#define SR_ATTENTION_H

#include <stdint.h>

#include "runtime/kv_cache.h"

typedef struct sr_attn_args {
    int nh, nkv, hd;            /* query heads, KV heads (nh % nkv == 0), head dim */
    float scale;
    int64_t p0;                 /* keys already cached before these queries */
    int T;                      /* queries; their keys are at positions p0..p0+T-1 */
    const float *q;             /* [T][ldq], head h at q + h*hd (post-RoPE) */
    int64_t ldq;
    const void *k, *v;          /* key j of KV head g at element g*head_stride + j*hd */
    int64_t head_stride;        /* in elements */
    sr_kv_type kv_type;         /* element type of k and v (f32 or bf16) */
    const uint32_t *key_mem;    /* [p0+T] Mem bits per key, or NULL (no hiding) */
    const uint32_t *qsup;       /* [T] Sup(a_i) & ~Mem(t_i), or NULL */
    float *out;                 /* [T][ldo], head h at out + h*hd */
    int64_t ldo;
    float *scratch;             /* sr_attention_scratch_floats(p0+T, hd, kv_type) floats */
    int scratch_threads;        /* threads that scratch was sized for (at most this many
                                 * run); 0: OpenMP's count now */
} sr_attn_args;

/* Floats of scratch one thread of sr_attention needs for up to `n_keys`
 * keys: 16 score rows of n_keys, and with a bf16 cache a chunk of key or
 * value rows widened to f32 for sgemm. */
int64_t sr_attention_thread_floats(int64_t n_keys, int hd, sr_kv_type kv_type);
/* The same for all OpenMP threads together. */
int64_t sr_attention_scratch_floats(int64_t n_keys, int hd, sr_kv_type kv_type);

void sr_attention(const sr_attn_args *a);

#endif
