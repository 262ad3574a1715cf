/* bitsandbytes NF4 / FP4 quantization and dequantization (bnb-format.md §1).
 *
 * Every float operation here is a single IEEE f32 operation: the project
 * builds with -ffp-contract=off, so no multiply-add is fused. */
#include "quant/bnb4.h"

#include <math.h>
#include <string.h>

#include "quant/codec_simd.h"

/* Tables as f32 bit patterns (spec §1.1 / §1.5), viewed as floats through a
 * union so the exact values are visible in hex. */
typedef union { uint32_t u[16]; float f[16]; } f32x16_bits;

static const f32x16_bits nf4_table = {{
    0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
    0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
}};

/* Entry 8 is +0.0 as in bnb's quant_map (the sign of that zero is not
 * significant, spec §1.1). */
static const f32x16_bits fp4_table = {{
    0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
    0x00000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
}};

/* CPU rule: f32 midpoints of neighbours in sorted-value order. */
static const f32x16_bits nf4_cpu_bounds = {{
    0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
    0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da, 0,
}};
static const f32x16_bits fp4_cpu_bounds = {{
    0xbf555556, 0xbf155556, 0xbed55556, 0xbe955556, 0xbe555556, 0xbdb00000, 0xbb2aaaab, 0x00000000,
    0x3b2aaaab, 0x3db00000, 0x3e555556, 0x3e955556, 0x3ed55556, 0x3f155556, 0x3f555556, 0,
}};
/* Codes in ascending value order (stable: +0 code 0 before code 8). */
static const uint8_t fp4_cpu_sorted_codes[16] = {11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3};

/* CUDA rule: the f32 values of the literals in dQuantizeNF4 (sorted) and
 * the magnitude thresholds of dQuantizeFP4 (on |y|, sorted). */
static const f32x16_bits nf4_cuda_bounds = {{
    0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
    0x3df64863, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf, 0x3f5c89d9, 0,
}};
static const f32x16_bits fp4_cuda_abs_bounds = {{
    0x3b2aaab9, 0x3db00000, 0x3e555555, 0x3e955555, 0x3ed55556, 0x3f155550, 0x3f555555, 0,
}};

/* 1e-38 as torch's clamp(min=1e-38) sees it: the double, rounded to f32. */
#define CPU_ABSMAX_FLOOR ((float)1e-38)

static const uint8_t identity16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
/* CUDA FP4: the intermediate value is count | sign << 3, where the count of
 * thresholds below |y| selects the magnitude code 0, 1, 6, 7, 4, 5, 2, 3
 * (0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1) and the sign adds 8. */
static const uint8_t fp4_cuda_codes16[16] = {0, 1, 6, 7, 4, 5, 2, 3, 8, 9, 14, 15, 12, 13, 10, 11};

const char *sr_q4type_name(sr_q4type t) { return t == SR_Q4_FP4 ? "fp4" : "nf4"; }

int sr_q4type_parse(const char *s, sr_q4type *out)
{
    if (!strcmp(s, "nf4")) { *out = SR_Q4_NF4; return 0; }
    if (!strcmp(s, "fp4")) { *out = SR_Q4_FP4; return 0; }
    return -1;
}

const char *sr_bnb_rules_name(sr_bnb_rules r) { return r == SR_RULES_CPU ? "cpu" : "cuda"; }

int sr_bnb_rules_parse(const char *s, sr_bnb_rules *out)
{
    if (!strcmp(s, "cuda")) { *out = SR_RULES_CUDA; return 0; }
    if (!strcmp(s, "cpu")) { *out = SR_RULES_CPU; return 0; }
    return -1;
}

const float *sr_bnb4_table(sr_q4type t) { return t == SR_Q4_FP4 ? fp4_table.f : nf4_table.f; }

int sr_bnb4_blocksize_ok(int64_t bs)
{
    return bs >= SR_BNB4_MIN_BLOCKSIZE && bs <= SR_BNB4_MAX_BLOCKSIZE && (bs & (bs - 1)) == 0;
}

/* ---- element conversion ------------------------------------------------ */

static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Exact binary16 -> binary32 without branches: move exponent and mantissa
 * into place and rebias by multiplying with 2^112 (exact, also for
 * subnormal halves); inf/NaN get the all-ones exponent. */
static inline float f16_to_f32_fast(uint16_t h)
{
    uint32_t mag = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t u = f32_bits(bits_f32(mag) * 0x1p112f);
    u = mag >= (0x7c00u << 13) ? (mag | 0x7f800000u) : u;
    return bits_f32(u | ((uint32_t)(h & 0x8000u) << 16));
}

SR_CODEC_CLONES
void sr_load_f32(const void *src, sr_dtype dtype, int64_t n, float *dst)
{
    const unsigned char *s = src;
    if (dtype == SR_F32) {
        memcpy(dst, s, (size_t)n * 4);
    } else if (dtype == SR_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = bits_f32((uint32_t)h << 16);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = f16_to_f32_fast(h);
        }
    }
}

/* ---- code selection ---------------------------------------------------- */

/* How a rule set turns normalised values into codes: count the thresholds
 * strictly below y (or |y|), then map the count to a code.  Counting is
 * branch-free and vectorises; the map is a 16-entry table. */
typedef struct q4_rule {
    const float *bounds;    /* sorted thresholds */
    int nbounds;            /* 15, or 7 for CUDA FP4 (thresholds on |y|) */
    int sign_magnitude;     /* CUDA FP4: count on |y|, bit 3 = (y < 0) */
    int cpu;                /* clamp to [-1, 1], 1e-38 floor, division in the partial block */
    const uint8_t *map;     /* count (| sign << 3) -> code */
} q4_rule;

static q4_rule q4_rule_get(sr_q4type t, sr_bnb_rules rules)
{
    q4_rule r;
    r.cpu = rules == SR_RULES_CPU;
    r.sign_magnitude = 0;
    r.nbounds = 15;
    r.map = identity16;
    if (t == SR_Q4_NF4) {
        r.bounds = r.cpu ? nf4_cpu_bounds.f : nf4_cuda_bounds.f;
    } else if (r.cpu) {
        r.bounds = fp4_cpu_bounds.f;
        r.map = fp4_cpu_sorted_codes;
    } else {
        r.bounds = fp4_cuda_abs_bounds.f;
        r.nbounds = 7;
        r.sign_magnitude = 1;
        r.map = fp4_cuda_codes16;
    }
    return r;
}

static inline unsigned count_below(const float *bounds, int nb, float y)
{
    unsigned k = 0;
    for (int i = 0; i < nb; i++) k += y > bounds[i];
    return k;
}

uint8_t sr_bnb4_code(sr_q4type t, sr_bnb_rules rules, float y)
{
    q4_rule r = q4_rule_get(t, rules);
    if (r.sign_magnitude)
        return r.map[count_below(r.bounds, r.nbounds, fabsf(y)) | (y < 0.0f ? 8u : 0u)];
    return r.map[count_below(r.bounds, r.nbounds, y)];
}

/* Intermediate counts (see q4_rule) of len normalised values. */
static void counts_signed15(const float *restrict y, int64_t len, const float *restrict b,
                            uint8_t *restrict c)
{
    float t[15];
    memcpy(t, b, sizeof t);
    for (int64_t i = 0; i < len; i++) {
        unsigned k = 0;
        for (int j = 0; j < 15; j++) k += y[i] > t[j];
        c[i] = (uint8_t)k;
    }
}

static void counts_sign_magnitude7(const float *restrict y, int64_t len, const float *restrict b,
                                   uint8_t *restrict c)
{
    float t[7];
    memcpy(t, b, sizeof t);
    for (int64_t i = 0; i < len; i++) {
        float a = fabsf(y[i]);
        unsigned k = y[i] < 0.0f ? 8u : 0u;
        for (int j = 0; j < 7; j++) k += a > t[j];
        c[i] = (uint8_t)k;
    }
}

/* ---- quantization ------------------------------------------------------ */

/* Largest |x| as f32 bits: an integer max over the sign-cleared bit
 * patterns (exact, branch-free); >= 0x7f800000 means inf or NaN present. */
static uint32_t absmax_bits(const float *x, int64_t len)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < len; i++) {
        uint32_t u = f32_bits(x[i]) & 0x7fffffffu;
        m = u > m ? u : m;
    }
    return m;
}

/* Quantizes one block already converted to f32 (xb, overwritten with the
 * normalised values).  Returns the absmax to store.  is_last_partial:
 * this is the trailing partial block.  pad: n is odd and this block holds
 * the last element, whose byte gets the code of 0.0 in its low nibble. */
SR_CODEC_CLONES
static float quantize_block(const q4_rule *R, float *restrict xb, int64_t len, int is_last_partial,
                            int pad, uint8_t *restrict cb, uint8_t *restrict out)
{
    float am = bits_f32(absmax_bits(xb, len)), stored = am, r, zero_y;
    if (R->cpu) {
        float a = am < CPU_ABSMAX_FLOOR ? CPU_ABSMAX_FLOOR : am;
        if (is_last_partial) {
            stored = a;     /* bnb clamps the stored absmax of the partial block */
            for (int64_t i = 0; i < len; i++) xb[i] = xb[i] / a;
        } else {
            r = 1.0f / a;
            for (int64_t i = 0; i < len; i++) xb[i] = xb[i] * r;
        }
        for (int64_t i = 0; i < len; i++) {
            float y = xb[i] > 1.0f ? 1.0f : xb[i];
            xb[i] = y < -1.0f ? -1.0f : y;
        }
        zero_y = 0.0f;      /* bnb pads the normalised values with 0 */
    } else {
        r = 1.0f / am;      /* +inf for an all-zero block: 0 * inf = NaN -> code 0 */
        for (int64_t i = 0; i < len; i++) xb[i] = xb[i] * r;
        zero_y = 0.0f * r;  /* the kernel loads 0.0 beyond n and scales it */
    }
    if (R->sign_magnitude) counts_sign_magnitude7(xb, len, R->bounds, cb);
    else counts_signed15(xb, len, R->bounds, cb);

    const uint8_t *map = R->map;
    int64_t pairs = len / 2;
    for (int64_t i = 0; i < pairs; i++)
        out[i] = (uint8_t)(map[cb[2 * i]] << 4 | map[cb[2 * i + 1]]);
    if (len & 1) {
        uint8_t lo = 0;
        if (pad) {
            uint8_t zc;
            if (R->sign_magnitude)
                zc = (uint8_t)(count_below(R->bounds, R->nbounds, fabsf(zero_y)) |
                               (zero_y < 0.0f ? 8u : 0u));
            else
                zc = (uint8_t)count_below(R->bounds, R->nbounds, zero_y);
            lo = map[zc];
        }
        out[pairs] = (uint8_t)(map[cb[len - 1]] << 4 | lo);
    }
    return stored;
}

static int report_nonfinite(const void *x, sr_dtype dtype, int64_t off, int64_t len, sr_error *err)
{
    float v[64];
    for (int64_t i = 0; i < len; i += 64) {
        int64_t k = len - i < 64 ? len - i : 64;
        sr_load_f32((const unsigned char *)x + (off + i) * (int64_t)sr_dtype_size(dtype), dtype, k, v);
        for (int64_t j = 0; j < k; j++)
            if (!isfinite(v[j]))
                return sr_fail(err, "element %lld is %s: bitsandbytes cannot quantize non-finite values",
                               (long long)(off + i + j), isnan(v[j]) ? "NaN" : "infinite");
    }
    return sr_fail(err, "non-finite input in block at element %lld", (long long)off);
}

int sr_bnb4_quantize(const void *x, sr_dtype dtype, int64_t n, int blocksize, sr_q4type t,
                     sr_bnb_rules rules, uint8_t *packed, float *absmax, sr_error *err)
{
    if (dtype != SR_F32 && dtype != SR_F16 && dtype != SR_BF16)
        return sr_fail(err, "cannot quantize dtype %s to 4 bit (F32, F16 or BF16 only)",
                       sr_dtype_name(dtype));
    if (!sr_bnb4_blocksize_ok(blocksize))
        return sr_fail(err, "invalid 4-bit blocksize %d (32, 64, ..., 4096)", blocksize);
    if ((unsigned)t > SR_Q4_FP4 || (unsigned)rules > SR_RULES_CPU)
        return sr_fail(err, "invalid quant_type or rule set");
    if (n < 0) return sr_fail(err, "negative element count %lld", (long long)n);

    const q4_rule R = q4_rule_get(t, rules);
    const int64_t nb = sr_bnb_nblocks(n, blocksize), isz = (int64_t)sr_dtype_size(dtype);
    const int64_t half = blocksize / 2;
    const int partial = n % blocksize != 0;
    int64_t bad = nb;

#pragma omp parallel if (n >= (1 << 16))
    {
        float xb[SR_BNB4_MAX_BLOCKSIZE];
        uint8_t cb[SR_BNB4_MAX_BLOCKSIZE];
#pragma omp for schedule(static) reduction(min : bad)
        for (int64_t b = 0; b < nb; b++) {
            int64_t off = b * blocksize, len = n - off < blocksize ? n - off : blocksize;
            sr_load_f32((const unsigned char *)x + off * isz, dtype, len, xb);
            if (absmax_bits(xb, len) >= 0x7f800000u) {
                if (b < bad) bad = b;
                continue;
            }
            absmax[b] = quantize_block(&R, xb, len, partial && b == nb - 1, (n & 1) && b == nb - 1,
                                       cb, packed + b * half);
        }
    }
    if (bad < nb) {
        int64_t off = bad * blocksize;
        return report_nonfinite(x, dtype, off, n - off < blocksize ? n - off : blocksize, err);
    }
    return 0;
}

/* ---- dequantization ---------------------------------------------------- */

void sr_bnb4_dequantize(const uint8_t *packed, const float *scales, int64_t n, int64_t blocksize,
                        sr_q4type t, float *out)
{
    const float *T = sr_bnb4_table(t);
    const int64_t nb = sr_bnb_nblocks(n, blocksize);
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t b = 0; b < nb; b++) {
        int64_t j0 = b * blocksize, j1 = n - j0 < blocksize ? n : j0 + blocksize;
        float s = scales[b];
        for (int64_t j = j0; j < j1; j++) {
            unsigned shift = (unsigned)((j & 1) ^ 1) << 2;   /* even element: high nibble */
            out[j] = T[(packed[j >> 1] >> shift) & 15] * s;
        }
    }
}

int sr_bnb4_dequantize_to(const uint8_t *packed, const float *scales, int64_t n,
                          int64_t blocksize, sr_q4type t, sr_dtype dtype, void *out,
                          sr_error *err)
{
    if (dtype == SR_F32) {
        sr_bnb4_dequantize(packed, scales, n, blocksize, t, out);
        return 0;
    }
    if (dtype != SR_F16 && dtype != SR_BF16)
        return sr_fail(err, "cannot dequantize 4 bit to dtype %s", sr_dtype_name(dtype));
    const float *T = sr_bnb4_table(t);
    uint16_t *o = out;
    for (int64_t j = 0; j < n; j++) {
        unsigned shift = (unsigned)((j & 1) ^ 1) << 2;
        float v = T[(packed[j >> 1] >> shift) & 15] * scales[j / blocksize];
        o[j] = dtype == SR_BF16 ? sr_f32_to_bf16(v) : sr_f32_to_f16(v);
    }
    return 0;
}
