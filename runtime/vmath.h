/* Elementwise math for the hot loops of the forward pass (softmax, SiLU),
 * written so that the compiler vectorizes it: no libm call, no branch.
 *
 * sr_vexpf is the Cephes single-precision exp (range reduction by ln 2 in
 * two parts, degree-6 polynomial): within 2 ulp of expf over the normal
 * range; below -87.3 it returns 0 (expf would return a subnormal) and above
 * 88.38 it saturates at about 2.4e38 instead of +inf.  Callers feed it
 * max-shifted softmax scores (<= 0) or -|x| (SiLU), where neither edge
 * changes a result beyond the tolerance of an fp32 forward pass.  NaN
 * propagates. */
#ifndef SR_VMATH_H
#define SR_VMATH_H

#include <stdint.h>
#include <string.h>

/* Row loops compiled for AVX-512, AVX2 and the baseline, chosen at load
 * time (ifunc): the build does not assume the host CPU.  Plain f32 code
 * built with -ffp-contract=off gives the same results in every clone up to
 * the order of the reductions they vectorize. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define SR_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SR_VEC_CLONES
#endif

static inline float sr_vexpf(float x)
{
    const float hi = 88.3762626647949f, lo = -87.3365478515625f;
    float xc = x > hi ? hi : x;
    xc = xc >= lo ? xc : lo;                    /* NaN too: keeps the cast below defined */
    /* n = round(x / ln 2) by the 1.5·2^23 trick (round to nearest, no libm) */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;  /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = x < lo ? 0.0f : p * scale;
    return x == x ? y : x;                      /* NaN in, NaN out */
}

#endif
