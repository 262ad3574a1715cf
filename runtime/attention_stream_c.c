/* Plain C reference of the streaming decode attention kernels
 * (runtime/attention_stream.h): the same key-outer order as the SIMD
 * kernels, each dot product summed in element order. */
#include <string.h>

#include "runtime/attention_stream.h"
#include "runtime/dtype.h"

static void scores_c(const float *q, int64_t ldq, int rows, const float *k, int hd, int64_t n,
                     float scale, float *s, int64_t lds)
{
    for (int64_t j = 0; j < n; j++) {
        const float *kj = k + j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            float d = 0.0f;
            for (int e = 0; e < hd; e++) d += qr[e] * kj[e];
            s[r * lds + j] = scale * d;
        }
    }
}

static void wsum_c(const float *s, int64_t lds, int rows, const float *v, int hd, int64_t n,
                   float *o, int64_t ldo)
{
    for (int r = 0; r < rows; r++) memset(o + r * ldo, 0, sizeof(float) * (size_t)hd);
    for (int64_t j = 0; j < n; j++) {
        const float *vj = v + j * hd;
        for (int r = 0; r < rows; r++) {
            const float p = s[r * lds + j];
            float *orow = o + r * ldo;
            for (int e = 0; e < hd; e++) orow[e] += p * vj[e];
        }
    }
}

static void scores_bf16_c(const float *q, int64_t ldq, int rows, const uint16_t *k, int hd,
                          int64_t n, float scale, float *s, int64_t lds)
{
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *kj = k + j * hd;
        for (int r = 0; r < rows; r++) {
            const float *qr = q + r * ldq;
            float d = 0.0f;
            for (int e = 0; e < hd; e++) d += qr[e] * sr_bf16_to_f32(kj[e]);
            s[r * lds + j] = scale * d;
        }
    }
}

static void wsum_bf16_c(const float *s, int64_t lds, int rows, const uint16_t *v, int hd,
                        int64_t n, float *o, int64_t ldo)
{
    for (int r = 0; r < rows; r++) memset(o + r * ldo, 0, sizeof(float) * (size_t)hd);
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *vj = v + j * hd;
        for (int r = 0; r < rows; r++) {
            const float p = s[r * lds + j];
            float *orow = o + r * ldo;
            for (int e = 0; e < hd; e++) orow[e] += p * sr_bf16_to_f32(vj[e]);
        }
    }
}

const sr_attn_stream_kernels sr_attn_stream_c = {.scores = scores_c, .wsum = wsum_c,
                                                 .scores_bf16 = scores_bf16_c,
                                                 .wsum_bf16 = wsum_bf16_c};
