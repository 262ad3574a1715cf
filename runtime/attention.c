/* Attention as small matrix products: a block of up to ATTN_ROWS (query,
 * head) rows that share one KV head gets its scores (S = scale · Q Kᵀ), a
 * softmax per row, and its output (O = P V).  Every key and value row is read
 * once per block instead of once per (query, head).
 *
 * Blocks: with few queries (decode) one query and the heads of one KV group
 * (rows hd apart); with many (prefill) one head and consecutive queries
 * (rows ldq apart).  A block spans the keys of its last query; the keys
 * beyond a row's own causal limit get weight exactly 0, as do hidden keys.
 *
 * Prefill blocks are compute-bound: two sgemm calls.  Decode blocks are a
 * stream over K and V, which sgemm would pack (copy) on every call: they use
 * the streaming kernels of attention_stream.h where the CPU and head dim
 * allow.  A bf16 cache is widened exactly to f32 as it is read: by the
 * streaming kernels' loads, and for sgemm in chunks of KV_CHUNK rows. */
#include "runtime/attention.h"
#include "runtime/attention_stream.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>

#include "quant/matmul.h"
#include "runtime/vmath.h"

/* Rows of one block: S is ATTN_ROWS x n_keys per thread. */
#define ATTN_ROWS 16
/* Up to this many queries the blocks are (query, all heads of a group). */
#define HEAD_BLOCKS_MAX_T 4

/* Keys (or values) of a bf16 cache widened per sgemm call: a chunk of
 * 512 rows (128 KiB at head dim 64) stays in L2 while sgemm reads it. */
#define KV_CHUNK 512

int64_t sr_attention_thread_floats(int64_t n_keys, int hd, sr_kv_type kv_type)
{
    return ATTN_ROWS * n_keys + (kv_type == SR_KV_F32 ? 0 : (int64_t)KV_CHUNK * hd);
}

int64_t sr_attention_scratch_floats(int64_t n_keys, int hd, sr_kv_type kv_type)
{
    return (int64_t)omp_get_max_threads() * sr_attention_thread_floats(n_keys, hd, kv_type);
}

/* One block: `rows` rows, row r is query i0 + r*di of head h0 + r*dh. */
typedef struct attn_block {
    int g;              /* KV head */
    int i0, di;         /* first query, query step per row */
    int h0, dh;         /* first head, head step per row */
    int rows;
} attn_block;

/* s[0..n) := softmax of the visible scores s[0..n) in place; keys
 * n..width-1 (beyond this query's causal limit) get 0. */
SR_VEC_CLONES static void softmax_row(float *s, int64_t n, int64_t width, const uint32_t *key_mem,
                                      uint32_t sup)
{
    if (sup)
        for (int64_t j = 0; j < n; j++)
            if (key_mem[j] & sup) s[j] = -INFINITY;     /* hidden: weight exactly 0 */
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    /* the query's own key is never hidden, so mx is finite for finite input */
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float e = sr_vexpf(s[j] - mx);         /* exp(-inf) = 0 exactly */
        s[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) s[j] *= inv;
    for (int64_t j = n; j < width; j++) s[j] = 0.0f;
}

/* Head g's keys / values: element offset g * head_stride. */
static const void *kv_head(const sr_attn_args *a, const void *base, int g)
{
    return (const char *)base + (size_t)g * (size_t)a->head_stride * sr_kv_elem_bytes(a->kv_type);
}

/* Rows [j0, j0 + c) of a head's keys or values as f32: the f32 cache
 * itself, or a bf16 cache's rows widened into buf. */
static const float *rows_f32(const sr_attn_args *a, const void *head, int64_t j0, int64_t c,
                             float *buf)
{
    if (a->kv_type == SR_KV_F32) return (const float *)head + j0 * a->hd;
    sr_kv_widen(buf, (const char *)head + (size_t)(j0 * a->hd) * sr_kv_elem_bytes(a->kv_type),
                c * a->hd, a->kv_type);
    return buf;
}

/* `s` holds the block's score rows; a bf16 cache also uses the KV_CHUNK x
 * hd floats after them (sr_attention_thread_floats). */
static void attend_block_sgemm(const sr_attn_args *a, const attn_block *b, float *s)
{
    const int hd = a->hd;
    const int64_t width = a->p0 + b->i0 + (int64_t)(b->rows - 1) * b->di + 1;
    const void *k = kv_head(a, a->k, b->g), *v = kv_head(a, a->v, b->g);
    const float *q = a->q + (int64_t)b->i0 * a->ldq + (int64_t)b->h0 * hd;
    float *o = a->out + (int64_t)b->i0 * a->ldo + (int64_t)b->h0 * hd;
    /* both strides are uniform: one of di, dh is 0 */
    const int64_t ldq = b->di * a->ldq + b->dh * hd, ldo = b->di * a->ldo + b->dh * hd;
    /* an f32 cache in one call, a bf16 one in chunks of widened rows */
    const int64_t step = a->kv_type == SR_KV_F32 ? width : KV_CHUNK;
    float *buf = s + ATTN_ROWS * width;

    /* S = scale Q K^T */
    for (int64_t j0 = 0; j0 < width; j0 += step) {
        const int64_t c = width - j0 < step ? width - j0 : step;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->rows, (int)c, hd, a->scale, q,
                    (int)ldq, rows_f32(a, k, j0, c, buf), hd, 0.0f, s + j0, (int)width);
    }
    for (int r = 0; r < b->rows; r++) {
        const int i = b->i0 + r * b->di;
        const uint32_t sup = a->qsup && a->key_mem ? a->qsup[i] : 0;
        softmax_row(s + (int64_t)r * width, a->p0 + i + 1, width, a->key_mem, sup);
    }
    /* O = P V, accumulated over the same chunks */
    for (int64_t j0 = 0; j0 < width; j0 += step) {
        const int64_t c = width - j0 < step ? width - j0 : step;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->rows, hd, (int)c, 1.0f, s + j0,
                    (int)width, rows_f32(a, v, j0, c, buf), hd, j0 ? 1.0f : 0.0f, o, (int)ldo);
    }
}

/* A decode block (one query, so every row has the same n keys) with the
 * streaming kernels: scores, the shared softmax, weighted sum. */
static void attend_block_stream(const sr_attn_args *a, const attn_block *b, float *s,
                                const sr_attn_stream_kernels *kern)
{
    const int hd = a->hd;
    const int64_t n = a->p0 + b->i0 + 1;
    const void *k = kv_head(a, a->k, b->g), *v = kv_head(a, a->v, b->g);
    const float *q = a->q + (int64_t)b->i0 * a->ldq + (int64_t)b->h0 * hd;
    float *o = a->out + (int64_t)b->i0 * a->ldo + (int64_t)b->h0 * hd;
    const uint32_t sup = a->qsup && a->key_mem ? a->qsup[b->i0] : 0;
    const bool bf16 = a->kv_type == SR_KV_BF16;

    if (bf16) kern->scores_bf16(q, hd, b->rows, k, hd, n, a->scale, s, n);
    else kern->scores(q, hd, b->rows, k, hd, n, a->scale, s, n);
    for (int r = 0; r < b->rows; r++) softmax_row(s + (int64_t)r * n, n, n, a->key_mem, sup);
    if (bf16) kern->wsum_bf16(s, n, b->rows, v, hd, n, o, hd);
    else kern->wsum(s, n, b->rows, v, hd, n, o, hd);
}

static const sr_attn_stream_kernels *stream_kernels(sr_attn_kernel k)
{
    switch (k) {
    case SR_ATTN_STREAM_C: return &sr_attn_stream_c;
    case SR_ATTN_STREAM_AVX2: return &sr_attn_stream_avx2;
    case SR_ATTN_STREAM_AVX512: return &sr_attn_stream_avx512;
    default: return NULL;
    }
}

int sr_attn_kernel_usable(sr_attn_kernel k, int hd)
{
    switch (k) {
    case SR_ATTN_SGEMM:
    case SR_ATTN_STREAM_C: return 1;
    case SR_ATTN_STREAM_AVX2: return hd % 8 == 0 && sr_isa_detect() >= SR_ISA_AVX2;
    case SR_ATTN_STREAM_AVX512: return hd % 16 == 0 && sr_isa_detect() >= SR_ISA_AVX512;
    }
    return 0;
}

sr_attn_kernel sr_attn_decode_kernel(int hd)
{
    if (sr_attn_kernel_usable(SR_ATTN_STREAM_AVX512, hd)) return SR_ATTN_STREAM_AVX512;
    if (sr_attn_kernel_usable(SR_ATTN_STREAM_AVX2, hd)) return SR_ATTN_STREAM_AVX2;
    /* no SIMD kernel for this head dim: sgemm beats the plain C loops */
    return SR_ATTN_SGEMM;
}

void sr_attention(const sr_attn_args *a)
{
    sr_attention_with(a, sr_attn_decode_kernel(a->hd));
}

void sr_attention_with(const sr_attn_args *a, sr_attn_kernel kern)
{
    const int T = a->T, G = a->nh / a->nkv;
    const bool head_blocks = T <= HEAD_BLOCKS_MAX_T;
    /* head blocks: per KV head, ceil(G / ATTN_ROWS) head chunks per query;
     * query blocks: per head, ceil(T / ATTN_ROWS) query chunks */
    const int per_unit = head_blocks ? (G + ATTN_ROWS - 1) / ATTN_ROWS
                                     : (T + ATTN_ROWS - 1) / ATTN_ROWS;
    const int units = head_blocks ? a->nkv * T : a->nh;
    const int64_t n_blocks = (int64_t)units * per_unit;
    if (!sr_attn_kernel_usable(kern, a->hd)) kern = SR_ATTN_SGEMM;
    const sr_attn_stream_kernels *stream = head_blocks ? stream_kernels(kern) : NULL;
    const int64_t work = (int64_t)a->nh * T * (a->p0 + T) * a->hd;
    /* no more threads than the scratch has slices: OpenMP's count may have
     * grown since it was sized */
    int threads = omp_get_max_threads();
    if (a->scratch_threads > 0 && threads > a->scratch_threads) threads = a->scratch_threads;
#pragma omp parallel for schedule(dynamic, 1) if (work > 32768 && n_blocks > 1) \
    num_threads(threads)
    for (int64_t bi = 0; bi < n_blocks; bi++) {
        const int u = (int)(bi / per_unit), c = (int)(bi % per_unit);
        attn_block b;
        if (head_blocks) {
            b.g = u / T;
            b.i0 = u % T;
            b.di = 0;
            b.h0 = b.g * G + c * ATTN_ROWS;
            b.dh = 1;
            b.rows = G - c * ATTN_ROWS < ATTN_ROWS ? G - c * ATTN_ROWS : ATTN_ROWS;
        } else {
            b.g = u / G;
            b.h0 = u;
            b.dh = 0;
            b.i0 = c * ATTN_ROWS;
            b.di = 1;
            b.rows = T - b.i0 < ATTN_ROWS ? T - b.i0 : ATTN_ROWS;
        }
        float *s = a->scratch + (int64_t)omp_get_thread_num() *
                                    sr_attention_thread_floats(a->p0 + T, a->hd, a->kv_type);
        if (stream) attend_block_stream(a, &b, s, stream);
        else attend_block_sgemm(a, &b, s);
    }
}
