#include "runtime/rope.h"

#include <math.h>

#include "runtime/alloc.h"

int sr_rope_init(sr_rope *r, int hd, double theta, double factor, sr_error *err)
{
    r->hd = hd;
    r->inv_freq = NULL;
    if (hd <= 0 || hd % 2 || hd > 1024)
        return sr_fail(err, "rope: head_dim %d must be even, in 2..1024", hd);
    if (!(theta > 0) || !(factor > 0))
        return sr_fail(err, "rope: rope_theta %g / factor %g must be positive", theta, factor);
    r->inv_freq = sr_malloc(sizeof(float) * (size_t)(hd / 2));
    if (!r->inv_freq) return sr_fail(err, "rope: out of memory");
    float base = (float)theta;
    for (int k = 0; k < hd / 2; k++) {
        float expo = (float)(2 * k) / (float)hd;
        float f = 1.0f / powf(base, expo);
        r->inv_freq[k] = factor == 1.0 ? f : f / (float)factor;
    }
    return 0;
}

void sr_rope_free(sr_rope *r)
{
    sr_free(r->inv_freq);
    r->inv_freq = NULL;
}

void sr_rope_angles(const sr_rope *r, int64_t pos, float *cos_out, float *sin_out)
{
    float p = (float)pos;
    for (int k = 0; k < r->hd / 2; k++) {
        float phi = p * r->inv_freq[k];
        cos_out[k] = cosf(phi);
        sin_out[k] = sinf(phi);
    }
}

void sr_rope_apply(const sr_rope *r, float *x, int n_heads, int64_t stride, int64_t pos)
{
    int half = r->hd / 2;
    float c[512], s[512];       /* head dims up to 1024 */
    sr_rope_angles(r, pos, c, s);
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * stride;
        for (int k = 0; k < half; k++) {
            float a = v[k], b = v[k + half];
            /* q*cos + rotate_half(q)*sin, rotate_half = (-x2, x1) */
            v[k] = a * c[k] + (-b) * s[k];
            v[k + half] = b * c[k] + a * s[k];
        }
    }
}
