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
 * allow. */
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

int64_t sr_attention_scratch_floats(int64_t n_keys)
{
    return (int64_t)omp_get_max_threads() * ATTN_ROWS * n_keys;
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

static void attend_block_sgemm(const sr_attn_args *a, const attn_block *b, float *s)
{
    const int hd = a->hd;
    const int64_t width = a->p0 + b->i0 + (int64_t)(b->rows - 1) * b->di + 1;
    const float *k = a->k + b->g * a->head_stride, *v = a->v + b->g * a->head_stride;
    const float *q = a->q + (int64_t)b->i0 * a->ldq + (int64_t)b->h0 * hd;
    float *o = a->out + (int64_t)b->i0 * a->ldo + (int64_t)b->h0 * hd;
    /* both strides are uniform: one of di, dh is 0 */
    const int64_t ldq = b->di * a->ldq + b->dh * hd, ldo = b->di * a->ldo + b->dh * hd;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->rows, (int)width, hd, a->scale, q,
                (int)ldq, k, hd, 0.0f, s, (int)width);
    for (int r = 0; r < b->rows; r++) {
        const int i = b->i0 + r * b->di;
        const uint32_t sup = a->qsup && a->key_mem ? a->qsup[i] : 0;
        softmax_row(s + (int64_t)r * width, a->p0 + i + 1, width, a->key_mem, sup);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->rows, hd, (int)width, 1.0f, s,
                (int)width, v, hd, 0.0f, o, (int)ldo);
}

/* A decode block (one query, so every row has the same n keys) with the
 * streaming kernels: scores, the shared softmax, weighted sum. */
static void attend_block_stream(const sr_attn_args *a, const attn_block *b, float *s,
                                const sr_attn_stream_kernels *kern)
{
    const int hd = a->hd;
    const int64_t n = a->p0 + b->i0 + 1;
    const float *k = a->k + b->g * a->head_stride, *v = a->v + b->g * a->head_stride;
    const float *q = a->q + (int64_t)b->i0 * a->ldq + (int64_t)b->h0 * hd;
    float *o = a->out + (int64_t)b->i0 * a->ldo + (int64_t)b->h0 * hd;
    const uint32_t sup = a->qsup && a->key_mem ? a->qsup[b->i0] : 0;

    kern->scores(q, hd, b->rows, k, hd, n, a->scale, s, n);
    for (int r = 0; r < b->rows; r++) softmax_row(s + (int64_t)r * n, n, n, a->key_mem, sup);
    kern->wsum(s, n, b->rows, v, hd, n, o, hd);
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
#pragma omp parallel for schedule(dynamic, 1) if (work > 32768 && n_blocks > 1)
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
        float *s = a->scratch + (int64_t)omp_get_thread_num() * ATTN_ROWS * (a->p0 + T);
        if (stream) attend_block_stream(a, &b, s, stream);
        else attend_block_sgemm(a, &b, s);
    }
}
