#include "tools/weight_regions.h"

#include <stdbool.h>

#include "quant/qtile.h"

int sr_weight_regions(const sr_qmatrix *w, int tiles, bw_region *r)
{
    const bool q4 = w->fmt == SR_W_NF4 || w->fmt == SR_W_FP4;
    int n = 0;
    if (tiles && w->tiles) {
        const int64_t nt = sr_qtile_count(w);
        r[n++] = (bw_region){w->tiles, (uint64_t)(nt * sr_qtile_tile_bytes(w))};
        if (w->tile_row_scale) /* none for bf16 */
            r[n++] = (bw_region){w->tile_row_scale, (uint64_t)nt * SR_QTILE_ROWS * sizeof(float)};
        return n;
    }
    const uint64_t elems = (uint64_t)w->rows * (uint64_t)w->cols;
    uint64_t data = elems * (w->fmt == SR_W_F32 ? 4 : w->fmt == SR_W_INT8 ? 1 : 2);
    if (q4) data = (elems + 1) / 2;
    r[n++] = (bw_region){w->data, data};
    if (q4 && w->scales && w->blocksize > 0)
        r[n++] = (bw_region){w->scales,
                             (elems + (uint64_t)w->blocksize - 1) / (uint64_t)w->blocksize *
                                 sizeof(float)};
    if (w->fmt == SR_W_INT8 && w->scb) r[n++] = (bw_region){w->scb, (uint64_t)w->rows * 4};
    return n;
}
