#include "runtime/attention.h"

#include <math.h>
#include <omp.h>

int64_t sr_attention_scratch_floats(int64_t n_keys)
{
    return (int64_t)omp_get_max_threads() * n_keys;
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

/* One query head over keys 0..n_keys-1 of its KV head. */
static void attend_one(const sr_attn_args *a, int h, int i, float *p)
{
    const int hd = a->hd, g = h / (a->nh / a->nkv);
    const int64_t n_keys = a->p0 + i + 1;
    const float *q = a->q + (int64_t)i * a->ldq + (int64_t)h * hd;
    const float *k = a->k + g * a->head_stride, *v = a->v + g * a->head_stride;
    const uint32_t sup = a->qsup ? a->qsup[i] : 0;
    float *o = a->out + (int64_t)i * a->ldo + (int64_t)h * hd;

    float mx = -INFINITY;
    for (int64_t j = 0; j < n_keys; j++) {
        if (sup && (a->key_mem[j] & sup)) {
            p[j] = -INFINITY;       /* hidden: exactly zero weight */
            continue;
        }
        p[j] = dot(q, k + j * hd, hd) * a->scale;
        if (p[j] > mx) mx = p[j];
    }
    /* the query's own key is never hidden, so mx is finite for finite input */
    float sum = 0.0f;
    for (int64_t j = 0; j < n_keys; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int64_t j = 0; j < n_keys; j++) {
        float w = p[j] / sum;
        if (w == 0.0f) continue;
        const float *vj = v + j * hd;
#pragma omp simd
        for (int d = 0; d < hd; d++) o[d] += w * vj[d];
    }
}

void sr_attention(const sr_attn_args *a)
{
    const int nh = a->nh, T = a->T;
    const int64_t n_keys_max = a->p0 + T;
    const int64_t work = (int64_t)nh * T * n_keys_max * a->hd;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work > 32768)
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < T; i++)
            attend_one(a, h, i, a->scratch + (int64_t)omp_get_thread_num() * n_keys_max);
}
