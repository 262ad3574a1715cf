/* Plain C reference of the streaming decode attention kernels
 * (runtime/attention_stream.h): the same key-outer order as the SIMD
 * kernels, each dot product summed in element order.  Over a bf16 cache
 * each element is widened exactly as it is read. */
#include <string.h>

#include "runtime/attention_stream.h"
#include "runtime/dtype.h"

/* Element i of a cache row as f32. */
static inline float elem(const void *base, int64_t i, int bf)
{
    return bf ? sr_bf16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static void scores_any(const float *q, int64_t ldq, int rows, const void *k, int hd, int64_t n,
                       float scale, float *s, int64_t lds, int bf)
{
    for (int64_t j = 0; j < n; j++)
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            float d = 0.0f;
            for (int e = 0; e < hd; e++) d += qr[e] * elem(k, j * hd + e, bf);
            s[r * lds + j] = scale * d;
        }
}

static void wsum_any(const float *s, int64_t lds, int rows, const void *v, int hd, int64_t n,
                     float *o, int64_t ldo, int bf)
{
    for (int r = 0; r < rows; r++) memset(o + r * ldo, 0, sizeof(float) * (size_t)hd);
    for (int64_t j = 0; j < n; j++)
        for (int r = 0; r < rows; r++) {
            const float p = s[r * lds + j];
            float *orow = o + r * ldo;
            for (int e = 0; e < hd; e++) orow[e] += p * elem(v, j * hd + e, bf);
        }
}

static void scores_c(const float *q, int64_t ldq, int rows, const float *k, int hd, int64_t n,
                     float scale, float *s, int64_t lds)
{
    scores_any(q, ldq, rows, k, hd, n, scale, s, lds, 0);
}

static void wsum_c(const float *s, int64_t lds, int rows, const float *v, int hd, int64_t n,
                   float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 0);
}

static void scores_bf16_c(const float *q, int64_t ldq, int rows, const uint16_t *k, int hd,
                          int64_t n, float scale, float *s, int64_t lds)
{
    scores_any(q, ldq, rows, k, hd, n, scale, s, lds, 1);
}

static void wsum_bf16_c(const float *s, int64_t lds, int rows, const uint16_t *v, int hd,
                        int64_t n, float *o, int64_t ldo)
{
    wsum_any(s, lds, rows, v, hd, n, o, ldo, 1);
}

const sr_attn_stream_kernels sr_attn_stream_c = {.scores = scores_c, .wsum = wsum_c,
                                                 .scores_bf16 = scores_bf16_c,
                                                 .wsum_bf16 = wsum_bf16_c};
