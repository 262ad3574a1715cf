/* LLM.int8 row-wise quantization, exactly as bnb's CPU path (§4.2). */
#include "quant/llm_int8.h"

#include <math.h>
#include <string.h>

#include "quant/bnb4.h"
#include "quant/codec_simd.h"
#include "runtime/alloc.h"

static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* x rounded to binary16 precision (nearest even) and back, without
 * branches: mantissa rounding on the bits in the normal range, and in the
 * subnormal range (|x| < 2^-14, quantum 2^-24) an add/subtract of 0.5,
 * whose ulp is 2^-24.  Equal to sr_f16_to_f32(sr_f32_to_f16(x)) for every
 * finite |x| < 65520 (checked exhaustively); larger values give >= 65536. */
static inline float round_to_f16(float x)
{
    uint32_t u = f32_bits(x), a = u & 0x7fffffffu;
    float normal = bits_f32((a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu);
    float subnormal = (bits_f32(a) + 0.5f) - 0.5f;
    float m = a < 0x38800000u ? subnormal : normal;
    return bits_f32(f32_bits(m) | (u & 0x80000000u));
}

/* Round half to even for |v| < 2^22 (the codes are within +-127.5). */
static inline float rint_small(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }

/* One row: cast to f16 precision, absmax, codes.  Returns 0, or -1 if some
 * element is not finite as a float16. */
SR_CODEC_CLONES
static int quantize_row(const float *restrict x, int64_t cols, float *restrict h,
                        int8_t *restrict q, float *scb)
{
    float m = 0.0f;
    uint32_t worst = 0;
    for (int64_t j = 0; j < cols; j++) {
        uint32_t a = f32_bits(x[j]) & 0x7fffffffu;
        worst = a > worst ? a : worst;
        h[j] = round_to_f16(x[j]);
        float v = fabsf(h[j]);
        m = v > m ? v : m;
    }
    if (worst >= 0x7f800000u || m > 65504.0f) return -1;
    *scb = m;
    if (m == 0.0f) {
        memset(q, 0, (size_t)cols);
        return 0;
    }
    /* torch evaluates bnb's 127.0 / row_stats as row_stats.reciprocal() * 127:
     * two roundings, which decide the code of a product near k + 0.5 */
    float s = (1.0f / m) * 127.0f;
    for (int64_t j = 0; j < cols; j++) q[j] = (int8_t)(int)rint_small(h[j] * s);
    return 0;
}

int sr_int8_quantize(const void *w, sr_dtype dtype, int64_t rows, int64_t cols, int8_t *q,
                     float *scb, sr_error *err)
{
    if (dtype != SR_F32 && dtype != SR_F16 && dtype != SR_BF16)
        return sr_fail(err, "cannot quantize dtype %s to int8 (F32, F16 or BF16 only)",
                       sr_dtype_name(dtype));
    if (rows < 0 || cols <= 0)
        return sr_fail(err, "invalid int8 weight shape [%lld, %lld]", (long long)rows, (long long)cols);
    const size_t isz = sr_dtype_size(dtype);
    int64_t bad_row = rows, bad_col = 0;
    int oom = 0;
#pragma omp parallel if (rows * cols >= (1 << 16))
    {
        float *buf = sr_malloc((size_t)cols * 2 * sizeof *buf);
        if (!buf) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(static) reduction(min : bad_row)
        for (int64_t r = 0; r < rows; r++) {
            if (!buf) continue;
            sr_load_f32((const unsigned char *)w + (size_t)(r * cols) * isz, dtype, cols, buf);
            if (quantize_row(buf, cols, buf + cols, q + r * cols, &scb[r]) && r < bad_row) bad_row = r;
        }
        sr_free(buf);
    }
    if (oom) return sr_fail(err, "out of memory for an int8 row buffer of %lld values", (long long)cols);
    if (bad_row < rows) {
        float v[1];
        for (int64_t j = 0; j < cols; j++) {
            sr_load_f32((const unsigned char *)w + (size_t)(bad_row * cols + j) * isz, dtype, 1, v);
            float hv = sr_f16_to_f32(sr_f32_to_f16(v[0]));
            if (!(fabsf(hv) <= 65504.0f)) {
                bad_col = j;
                break;
            }
        }
        sr_load_f32((const unsigned char *)w + (size_t)(bad_row * cols + bad_col) * isz, dtype, 1, v);
        return sr_fail(err, "element [%lld, %lld] = %g is %s: LLM.int8 casts weights to float16",
                       (long long)bad_row, (long long)bad_col, (double)v[0],
                       isnan(v[0]) ? "NaN" : isinf(v[0]) ? "infinite" : "outside the float16 range");
    }
    return 0;
}

void sr_int8_dequantize(const int8_t *q, const float *scb, int64_t r0, int64_t nr, int64_t cols,
                        float *out)
{
    for (int64_t r = 0; r < nr; r++) {
        float s = scb[r0 + r];
        const int8_t *qr = q + (r0 + r) * cols;
        float *o = out + r * cols;
        for (int64_t j = 0; j < cols; j++) o[j] = ((float)qr[j] * s) * SR_INT8_DEQUANT_SCALE;
    }
}
