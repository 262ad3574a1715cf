#include "runtime/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(sr_sampler *s)
{
    uint64_t *st = s->s;
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

double sr_sampler_uniform(sr_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

int sr_sampler_init(sr_sampler *s, const sr_sampling_params *p, int64_t vocab, sr_error *err)
{
    memset(s, 0, sizeof *s);
    if (vocab <= 0 || vocab > INT32_MAX) return sr_fail(err, "sampler: invalid vocab %lld", (long long)vocab);
    if (isnan(p->temperature) || isnan(p->top_p))
        return sr_fail(err, "sampler: temperature / top_p must be numbers");
    s->p = *p;
    s->vocab = vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&x);
    if (p->temperature > 0) {
        s->idx = sr_malloc(sizeof(int32_t) * (size_t)vocab);
        s->prob = sr_malloc(sizeof(float) * (size_t)vocab);
        if (!s->idx || !s->prob) {
            sr_sampler_free(s);
            return sr_fail(err, "sampler: out of memory");
        }
    }
    return 0;
}

void sr_sampler_free(sr_sampler *s)
{
    sr_free(s->idx);
    sr_free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

int64_t sr_argmax(const float *logits, int64_t n)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    return best;
}

/* Descending by logit, ascending id on ties (deterministic). */
static int by_logit_desc(const void *pa, const void *pb, void *ctx)
{
    const float *lg = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    float la = lg[a], lb = lg[b];
    if (la > lb) return -1;
    if (la < lb) return 1;
    return (a > b) - (a < b);
}

int64_t sr_sample(sr_sampler *s, const float *logits, sr_error *err)
{
    const int64_t V = s->vocab;
    if (s->p.temperature <= 0) {
        int64_t t = sr_argmax(logits, V);
        if (t < 0) sr_fail(err, "sampler: no finite logit");
        return t;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (isfinite(logits[i])) s->idx[n++] = (int32_t)i;
    if (!n) {
        sr_fail(err, "sampler: no finite logit");
        return -1;
    }
    qsort_r(s->idx, (size_t)n, sizeof *s->idx, by_logit_desc, (void *)logits);
    if (s->p.top_k > 0 && s->p.top_k < n) {
        /* HF's TopKLogitsWarper removes only what is below the k-th value */
        const float kth = logits[s->idx[s->p.top_k - 1]];
        int64_t keep = s->p.top_k;
        while (keep < n && logits[s->idx[keep]] == kth) keep++;
        n = keep;
    }
    /* softmax of logits / T over the kept candidates, in double for the sums */
    const double inv_t = 1.0 / s->p.temperature, top = logits[s->idx[0]] * inv_t;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = (float)exp(logits[s->idx[i]] * inv_t - top);
        sum += s->prob[i];
    }
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        /* smallest prefix whose mass reaches top_p (at least one token) */
        double cum = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        sum = 0;
        for (int64_t i = 0; i < keep; i++) sum += s->prob[i];
        n = keep;
    }
    double r = sr_sampler_uniform(s) * sum, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += s->prob[i];
        if (r < acc) return s->idx[i];
    }
    return s->idx[n - 1];
}
