/* Internal interface of the decode attention kernels (runtime/attention.c
 * and its tests only).
 *
 * A decode block is up to 16 (query, head) rows of ONE query that share a KV
 * head, so every row sees the same n keys.  The streaming kernels read each
 * key row once for all rows of the block (scores) and each value row once
 * (weighted sum), instead of the packing passes OpenBLAS's sgemm makes over
 * K and V on every call; at long context decode attention is a stream over
 * K/V and this is what bounds it.  The softmax between the two stays in
 * attention.c, shared by every kernel.
 *
 * Kernels: a plain C reference, AVX2 + FMA (head dim a multiple of 8) and
 * AVX-512 (a multiple of 16), each function compiled with a target
 * attribute (the build stays baseline x86-64) and chosen at run time. */
#ifndef SR_ATTENTION_STREAM_H
#define SR_ATTENTION_STREAM_H

#include <stdint.h>

#include "runtime/attention.h"

typedef enum sr_attn_kernel {
    SR_ATTN_SGEMM,              /* two cblas_sgemm calls per block (prefill always) */
    SR_ATTN_STREAM_C,           /* plain C reference of the streaming kernels */
    SR_ATTN_STREAM_AVX2,
    SR_ATTN_STREAM_AVX512,
} sr_attn_kernel;

typedef struct sr_attn_stream_kernels {
    /* s[r*lds + j] = scale * (q_r · k_j) for r < rows, j < n; q_r at
     * q + r*ldq, k_j at k + j*hd. */
    void (*scores)(const float *q, int64_t ldq, int rows, const float *k, int hd, int64_t n,
                   float scale, float *s, int64_t lds);
    /* o_r[0..hd) = Σ_j s[r*lds + j] · v_j for r < rows; o_r at o + r*ldo,
     * v_j at v + j*hd. */
    void (*wsum)(const float *s, int64_t lds, int rows, const float *v, int hd, int64_t n,
                 float *o, int64_t ldo);
    /* The same over a bf16 cache: each element widened exactly to f32 as
     * it is loaded, then the same arithmetic. */
    void (*scores_bf16)(const float *q, int64_t ldq, int rows, const uint16_t *k, int hd,
                        int64_t n, float scale, float *s, int64_t lds);
    void (*wsum_bf16)(const float *s, int64_t lds, int rows, const uint16_t *v, int hd,
                      int64_t n, float *o, int64_t ldo);
} sr_attn_stream_kernels;

extern const sr_attn_stream_kernels sr_attn_stream_c;
extern const sr_attn_stream_kernels sr_attn_stream_avx2;
extern const sr_attn_stream_kernels sr_attn_stream_avx512;

/* Distance of the software prefetch along a strided V stream (blocks of
 * partial value rows), into L2: 32 rows of head dim 128 (measured on Zen 4:
 * 16 and 32 KiB equal, 4 KiB or none 1.5x slower). */
enum { SR_ATTN_PREFETCH_BYTES = 16384 };

/* The decode kernel sr_attention uses for head dim hd on this CPU (honours
 * STRATA_ISA like the matmul kernels): AVX-512 or AVX2 where hd fits, else
 * sgemm. */
sr_attn_kernel sr_attn_decode_kernel(int hd);

/* True if `k` can run head dim hd on this CPU. */
int sr_attn_kernel_usable(sr_attn_kernel k, int hd);

/* sr_attention with decode blocks (T <= 4) computed by `k` (which must be
 * usable); prefill blocks always use sgemm. */
void sr_attention_with(const sr_attn_args *a, sr_attn_kernel k);

#endif
