/* 16-row tiles of a 4-bit matrix for the int8 kernels (layout: qtile.h). */
#include "quant/qtile.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/alloc.h"

int sr_qtile_fits(const sr_qmatrix *w)
{
    const int bs = w->blocksize;
    return (w->fmt == SR_W_NF4 || w->fmt == SR_W_FP4) && w->scales && w->data && w->rows > 0 &&
           w->cols > 0 && bs >= 32 && (bs & (bs - 1)) == 0 && w->cols % 32 == 0 &&
           w->cols % bs == 0;
}

static uint64_t code_bytes(const sr_qmatrix *w)
{
    const uint64_t ntiles = ((uint64_t)w->rows + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS;
    return ntiles * (uint64_t)w->cols / 2 * SR_QTILE_ROWS;
}

static uint64_t scale_count(const sr_qmatrix *w)
{
    const uint64_t ntiles = ((uint64_t)w->rows + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS;
    return ntiles * (uint64_t)(w->cols / w->blocksize) * SR_QTILE_ROWS;
}

uint64_t sr_qtile_bytes(const sr_qmatrix *w)
{
    return sr_qtile_fits(w) ? code_bytes(w) + scale_count(w) * sizeof(float) : 0;
}

/* After the tiles are made the kernels no longer read the bnb bytes: let
 * the kernel reclaim those pages first (non-destructive advice: a later
 * reader faults them back in; file pages are clean, anonymous ones stay). */
static void advise_cold(const void *p, size_t len)
{
#ifdef MADV_COLD
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + len) & ~(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_COLD);
#else
    (void)p, (void)len;
#endif
}

int sr_qtile_make(sr_qmatrix *w)
{
    if (!sr_qtile_fits(w)) return 0;
    const uint64_t cb = code_bytes(w), ns = scale_count(w);
    uint8_t *buf = sr_malloc_aligned((size_t)(cb + ns * sizeof(float)));
    if (!buf) return -1;
    uint8_t *tiles = buf;
    float *ts = (float *)(buf + cb); /* cb is a multiple of 64 */
    const int64_t rows = w->rows, cols = w->cols, nchunk = cols / 8;
    const int64_t ntiles = (rows + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS;
    const int64_t nbr = cols / w->blocksize; /* blocks per row */
    const uint8_t *src = w->data;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
    for (int64_t t = 0; t < ntiles; t++) {
        uint8_t *dst = tiles + t * nchunk * 64;
        for (int r = 0; r < SR_QTILE_ROWS; r++) {
            const int64_t row = t * SR_QTILE_ROWS + r;
            if (row >= rows) {
                for (int64_t c = 0; c < nchunk; c++) memset(dst + c * 64 + 4 * r, 0, 4);
                for (int64_t b = 0; b < nbr; b++) ts[(t * nbr + b) * SR_QTILE_ROWS + r] = 0;
                continue;
            }
            /* Chunk c of the row is 4 bnb bytes b0..b3 = columns (2i: high
             * nibble, 2i+1: low nibble); columns 8c+j and 8c+4+j pair up. */
            const uint8_t *s = src + row * cols / 2;
            for (int64_t c = 0; c < nchunk; c++) {
                /* little-endian words: x = b0 | b1 << 8 | b2 << 16 | b3 << 24 */
                uint32_t x;
                memcpy(&x, s + 4 * c, 4);
                const uint32_t lo = x & 0xFFFF, hi = x >> 16;
                const uint32_t a = ((lo >> 4) & 0x0F0F) | (hi & 0xF0F0);        /* o0, o2 */
                const uint32_t b = (lo & 0x0F0F) | ((hi << 4) & 0xF0F0);        /* o1, o3 */
                const uint32_t o = (a & 0xFF) | (b & 0xFF) << 8 | (a & 0xFF00) << 8 |
                                   (b & 0xFF00) << 16;
                memcpy(dst + c * 64 + 4 * r, &o, 4);
            }
            for (int64_t b = 0; b < nbr; b++)
                ts[(t * nbr + b) * SR_QTILE_ROWS + r] = w->scales[row * nbr + b];
        }
    }
    sr_free_aligned(w->tile_buf);
    w->tile_buf = buf;
    w->tiles = tiles;
    w->tile_scales = ts;
    advise_cold(w->data, (size_t)((rows * cols + 1) / 2));
    return 0;
}
