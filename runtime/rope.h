/* Rotary position embedding (spec granite-switch.md §4.4): default RoPE with
 * optional linear scaling, "rotate half" pairs (d, d + hd/2), fp32 tables
 * computed the way the reference computes them (fp32 exponent, fp32 power,
 * fp32 reciprocal, one fp32 product for the angle). */
#ifndef SR_ROPE_H
#define SR_ROPE_H

#include <stdint.h>

#include "runtime/error.h"

typedef struct sr_rope {
    int hd;             /* head dim (even) */
    float *inv_freq;    /* [hd/2] */
} sr_rope;

/* theta = rope base, factor = linear scaling factor (1 = none). */
int sr_rope_init(sr_rope *r, int hd, double theta, double factor, sr_error *err);
void sr_rope_free(sr_rope *r);

/* Rotates n_heads head vectors of one token in place: x[h*stride + d]. */
void sr_rope_apply(const sr_rope *r, float *x, int n_heads, int64_t stride, int64_t pos);

/* cos/sin of position `pos` for the half dims k = 0..hd/2-1 (tests). */
void sr_rope_angles(const sr_rope *r, int64_t pos, float *cos_out, float *sin_out);

#endif
