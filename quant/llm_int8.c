/* LLM.int8 row-wise quantization, exactly as bnb's CPU path (§4.2). */
#include "quant/llm_int8.h"

#include <math.h>
#include <string.h>

#include "quant/bnb4.h"
#include "runtime/alloc.h"

/* One row: cast to f16 and back (exact), absmax, codes.  Returns the
 * index of the first element that is not finite as a float16, or -1. */
static int64_t quantize_row(const float *restrict x, int64_t cols, float *restrict h,
                            int8_t *restrict q, float *scb)
{
    float m = 0.0f;
    int bad = 0;
    for (int64_t j = 0; j < cols; j++) {
        h[j] = sr_f16_to_f32(sr_f32_to_f16(x[j]));
        float a = fabsf(h[j]);
        bad |= !(a <= 65504.0f);
        m = a > m ? a : m;
    }
    if (bad) {
        for (int64_t j = 0; j < cols; j++)
            if (!(fabsf(h[j]) <= 65504.0f)) return j;
    }
    *scb = m;
    if (m == 0.0f) {
        memset(q, 0, (size_t)cols);
        return -1;
    }
    float s = 127.0f / m;
    for (int64_t j = 0; j < cols; j++) q[j] = (int8_t)nearbyintf(h[j] * s);
    return -1;
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
            int64_t j = quantize_row(buf, cols, buf + cols, q + r * cols, &scb[r]);
            if (j >= 0 && r < bad_row) bad_row = r;
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
