/* sr_qmatrix: format names, byte counts, ownership and exact dequantization
 * (bnb-format.md §1.4 for 4-bit, §4.2 for LLM.int8). */
#include "quant/qmatrix.h"

#include <string.h>

#include "quant/matmul_kernels.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"

const char *sr_wformat_name(sr_wformat f)
{
    switch (f) {
    case SR_W_F32: return "f32";
    case SR_W_BF16: return "bf16";
    case SR_W_F16: return "f16";
    case SR_W_NF4: return "nf4";
    case SR_W_FP4: return "fp4";
    case SR_W_INT8: return "int8";
    default: return "?";
    }
}

uint64_t sr_qmatrix_data_bytes(const sr_qmatrix *w)
{
    uint64_t n = (uint64_t)w->rows * (uint64_t)w->cols;
    switch (w->fmt) {
    case SR_W_F32: return n * 4;
    case SR_W_BF16:
    case SR_W_F16: return n * 2;
    case SR_W_NF4:
    case SR_W_FP4: return (n + 1) / 2;
    case SR_W_INT8: return n;
    default: return 0;
    }
}

uint64_t sr_qmatrix_bytes(const sr_qmatrix *w)
{
    uint64_t n = (uint64_t)w->rows * (uint64_t)w->cols;
    switch (w->fmt) {
    case SR_W_NF4:
    case SR_W_FP4: {
        uint64_t bs = w->blocksize > 0 ? (uint64_t)w->blocksize : 1;
        return sr_qmatrix_data_bytes(w) + (n + bs - 1) / bs * sizeof(float);
    }
    case SR_W_INT8: return n + (uint64_t)w->rows * sizeof(float);
    default: return sr_qmatrix_data_bytes(w);
    }
}

void sr_qmatrix_free(sr_qmatrix *w)
{
    if (!w) return;
    for (size_t i = 0; i < sizeof w->owned / sizeof w->owned[0]; i++) sr_free(w->owned[i]);
    sr_free_aligned(w->tile_buf);
    memset(w, 0, sizeof *w);
}

sr_qmatrix sr_qmatrix_borrow(const sr_qmatrix *w)
{
    sr_qmatrix b = *w;
    memset(b.owned, 0, sizeof b.owned);
    b.tiles = NULL;
    b.tile_row_scale = NULL;
    b.tile_buf = NULL;
    return b;
}

void sr_dequant_flat_scalar(const sr_qmatrix *w, int64_t e0, int64_t e1, float *out)
{
    switch (w->fmt) {
    case SR_W_F32:
        memcpy(out, (const float *)w->data + e0, (size_t)(e1 - e0) * sizeof(float));
        break;
    case SR_W_BF16: {
        const uint16_t *p = w->data;
        for (int64_t j = e0; j < e1; j++) out[j - e0] = sr_bf16_to_f32(p[j]);
        break;
    }
    case SR_W_F16: {
        const uint16_t *p = w->data;
        for (int64_t j = e0; j < e1; j++) out[j - e0] = sr_f16_to_f32(p[j]);
        break;
    }
    case SR_W_NF4:
    case SR_W_FP4: {
        const float *table = sr_q4_table(w->fmt);
        for (int64_t j = e0; j < e1; j++) out[j - e0] = sr_q4_element(w, table, j);
        break;
    }
    case SR_W_INT8:
        for (int64_t j = e0; j < e1; j++)
            out[j - e0] = sr_int8_element(w, j / w->cols, j % w->cols);
        break;
    default:
        memset(out, 0, (size_t)(e1 - e0) * sizeof(float));
        break;
    }
}

void sr_qmatrix_dequant_rows(const sr_qmatrix *w, int64_t r0, int64_t nr, float *out)
{
    if (nr <= 0 || w->cols <= 0) return;
    if (w->fmt == SR_W_BF16 && w->tiles) {
        /* a model releases the stored bytes once tiled (runtime/model.c):
         * reading them would fault every row back in */
        sr_qtile_bf16_rows(w, r0, nr, out);
        return;
    }
    /* The SIMD dequantizers are bit-identical to the scalar one (tested). */
    sr_kernels_for(sr_isa_detect())->dequant(w, r0 * w->cols, (r0 + nr) * w->cols, out);
}
