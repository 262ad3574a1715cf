/* Portable kernels (no SIMD intrinsics): the fallback for CPUs without AVX2
 * and the STRATA_ISA=scalar path.  f32 accumulation, like the SIMD kernels. */
#include "quant/matmul_kernels.h"
#include "runtime/dtype.h"

static void dot_f32_scalar(const float *w, int64_t ldw, int64_t cols, const float *x, int64_t n,
                           int64_t ldx, float *y, int64_t ldy, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *wr = w + r * ldw;
        for (int64_t c = 0; c < n; c++) {
            const float *xc = x + c * ldx;
            /* Four partial sums: shorter dependency chains, better accuracy. */
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t j = 0;
            for (; j + 4 <= cols; j += 4) {
                s0 += wr[j] * xc[j];
                s1 += wr[j + 1] * xc[j + 1];
                s2 += wr[j + 2] * xc[j + 2];
                s3 += wr[j + 3] * xc[j + 3];
            }
            for (; j < cols; j++) s0 += wr[j] * xc[j];
            y[c * ldy + r] = (s0 + s1) + (s2 + s3);
        }
    }
}

/* Dequantizes each row in stack-sized chunks, so no allocation is needed. */
static void decode_scalar(const sr_qmatrix *w, const float *x, int64_t n, int64_t ldx, float *y,
                          int64_t ldy, int64_t r0, int64_t r1)
{
    enum { CHUNK = 256 };
    float buf[CHUNK];
    int64_t cols = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        float acc[8] = {0};
        for (int64_t j0 = 0; j0 < cols; j0 += CHUNK) {
            int64_t m = cols - j0 < CHUNK ? cols - j0 : CHUNK;
            sr_dequant_flat_scalar(w, r * cols + j0, r * cols + j0 + m, buf);
            for (int64_t c = 0; c < n; c++) {
                float part;
                dot_f32_scalar(buf, 0, m, x + c * ldx + j0, 1, 0, &part, 0, 0, 1);
                acc[c] += part;
            }
        }
        for (int64_t c = 0; c < n; c++) y[c * ldy + r] = acc[c];
    }
}

static void to_bf16_scalar(const float *in, int64_t count, uint16_t *out)
{
    for (int64_t i = 0; i < count; i++) out[i] = sr_f32_to_bf16(in[i]);
}

const sr_kernels sr_kernels_scalar = {
    .isa = SR_ISA_SCALAR,
    .q4_group = 0,
    .decode = decode_scalar,
    .dot_f32 = dot_f32_scalar,
    .dequant = sr_dequant_flat_scalar,
    .to_bf16 = to_bf16_scalar,
};
