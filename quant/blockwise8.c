/* bitsandbytes 8-bit blockwise codec and double quantization (§2.1-2.4).
 * All arithmetic is single f32 operations (-ffp-contract=off). */
#include "quant/blockwise8.h"

#include <math.h>
#include <string.h>

#include "runtime/alloc.h"

#define LUT_SIZE 65536

static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* f32 midpoints between neighbouring map entries, as both bnb paths
 * compute them: fl(fl(c[k] + c[k+1]) * 0.5). */
static void midpoints(const float map[256], float mid[255])
{
    for (int k = 0; k < 255; k++) mid[k] = (map[k] + map[k + 1]) * 0.5f;
}

/* Nearest entry; exactly on a midpoint -> the even index; NaN -> 0.  The
 * count of midpoints strictly below y is the nearest code with ties to the
 * lower index; a tie at an odd lower index moves up to the even one. */
static inline uint8_t code_cuda(const float mid[255], float y)
{
    /* lo = number of midpoints strictly below y (NaN: 0), by binary lifting
     * without data-dependent branches (the searched values are random, so a
     * branchy search mispredicts on every level). */
    int lo = 0;
    for (int step = 128; step > 0; step >>= 1) lo += mid[lo + step - 1] < y ? step : 0;
    if (lo < 255 && (lo & 1) && mid[lo] == y) lo++;
    return (uint8_t)lo;
}

uint8_t sr_q8_code_cuda(const float map[256], float y)
{
    float mid[255];
    midpoints(map, mid);
    return code_cuda(mid, y);
}

/* bnb's CPU lookup table: entry i = number of midpoints strictly below the
 * grid value fl(-1 + fl(fl(2 * i) / 65535)). */
static void build_cpu_lut(const float mid[255], uint8_t *lut)
{
    int k = 0;
    for (int i = 0; i < LUT_SIZE; i++) {
        float v = -1.0f + (2.0f * (float)i) / (float)(LUT_SIZE - 1);
        while (k < 255 && mid[k] < v) k++;
        lut[i] = (uint8_t)k;
    }
}

/* Grid index of a normalised value: clamp, then truncate
 * fl(fl(fl(fl(y + 1) * 0.5) * 65535) + 0.5).  NaN (0 * inf for a subnormal
 * absmax) maps to index 0, which is what bnb's x86 build produces. */
static inline uint16_t cpu_grid_index(float y)
{
    y = y > 1.0f ? 1.0f : y;
    y = y < -1.0f ? -1.0f : y;
    float g = (y + 1.0f) * 0.5f * (float)(LUT_SIZE - 1) + 0.5f;
    return g >= 0.0f ? (uint16_t)g : 0;
}

int sr_q8_quantize(const float *x, int64_t n, int64_t blocksize, const float map[256],
                   sr_bnb_rules rules, uint8_t *codes, float *absmax, sr_error *err)
{
    if (blocksize <= 0) return sr_fail(err, "invalid 8-bit blocksize %lld", (long long)blocksize);
    if (n < 0) return sr_fail(err, "negative element count %lld", (long long)n);
    float mid[255];
    midpoints(map, mid);
    uint8_t *lut = NULL;
    if (rules == SR_RULES_CPU) {
        lut = sr_malloc(LUT_SIZE);
        if (!lut) return sr_fail(err, "out of memory for the 8-bit lookup table");
        build_cpu_lut(mid, lut);
    }
    const int64_t nb = sr_bnb_nblocks(n, blocksize);
    int64_t bad = nb;
#pragma omp parallel for schedule(static) reduction(min : bad) if (n >= (1 << 16))
    for (int64_t b = 0; b < nb; b++) {
        int64_t j0 = b * blocksize, j1 = n - j0 < blocksize ? n : j0 + blocksize;
        uint32_t m = 0;
        for (int64_t j = j0; j < j1; j++) {
            uint32_t u = f32_bits(x[j]) & 0x7fffffffu;
            m = u > m ? u : m;
        }
        if (m >= 0x7f800000u) {
            if (b < bad) bad = b;
            continue;
        }
        float a = bits_f32(m);
        absmax[b] = a;
        if (lut) {
            if (a == 0.0f) {
                memset(codes + j0, 0, (size_t)(j1 - j0));
                continue;
            }
            float r = 1.0f / a;
            for (int64_t j = j0; j < j1; j++) codes[j] = lut[cpu_grid_index(x[j] * r)];
        } else {
            float r = 1.0f / a;
            for (int64_t j = j0; j < j1; j++) codes[j] = code_cuda(mid, x[j] * r);
        }
    }
    sr_free(lut);
    if (bad < nb) {
        for (int64_t j = bad * blocksize; j < n; j++)
            if (!isfinite(x[j]))
                return sr_fail(err, "element %lld is %s: bitsandbytes cannot quantize non-finite values",
                               (long long)j, isnan(x[j]) ? "NaN" : "infinite");
    }
    return 0;
}

void sr_q8_dequantize(const uint8_t *codes, const float *absmax, int64_t n, int64_t blocksize,
                      const float map[256], float *out)
{
    for (int64_t j = 0; j < n; j++) out[j] = map[codes[j]] * absmax[j / blocksize];
}

float sr_dq_offset(const float *absmax, int64_t nb)
{
    if (nb <= 0) return 0.0f;
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += absmax[b];
    return (float)(s / (double)nb);
}

int sr_dq_quantize(const float *absmax, int64_t nb, float offset, const float map[256],
                   sr_bnb_rules rules, uint8_t *qabs, float *nested_absmax, sr_error *err)
{
    if (!isfinite(offset)) return sr_fail(err, "double quantization offset is not finite");
    float *d = sr_malloc((size_t)(nb > 0 ? nb : 1) * sizeof *d);
    if (!d) return sr_fail(err, "out of memory for %lld block scales", (long long)nb);
    for (int64_t b = 0; b < nb; b++) d[b] = absmax[b] - offset;
    int rc = sr_q8_quantize(d, nb, SR_DQ_BLOCKSIZE, map, rules, qabs, nested_absmax, err);
    sr_free(d);
    if (rc) sr_fail_prefix(err, "double quantization of the absmax");
    return rc;
}

void sr_dq_scales(const uint8_t *qabs, int64_t nb, const float *nested_absmax,
                  int64_t nested_blocksize, const float map[256], float offset, float *scales)
{
    for (int64_t b = 0; b < nb; b++) {
        float v = map[qabs[b]] * nested_absmax[b / nested_blocksize];
        scales[b] = v + offset;
    }
}
