/* 16-row tiles of a matrix for the CPU kernels (layout: qtile.h): 4-bit and
 * LLM.int8 for the int8 kernels, bf16 for the exact ones. */
#include "quant/qtile.h"

#include <math.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/dtype.h"

int sr_qtile_fits(const sr_qmatrix *w)
{
    if (w->fmt == SR_W_BF16) return w->data && w->rows > 0 && w->cols > 0 && w->cols % 2 == 0;
    if (w->fmt == SR_W_INT8)
        return w->scb && w->data && w->rows > 0 && w->cols > 0 && w->cols % 32 == 0;
    const int bs = w->blocksize;
    return (w->fmt == SR_W_NF4 || w->fmt == SR_W_FP4) && w->scales && w->data && w->rows > 0 &&
           w->cols > 0 && bs >= 32 && (bs & (bs - 1)) == 0 && w->cols % 32 == 0 &&
           w->cols % bs == 0;
}

uint64_t sr_qtile_bytes(const sr_qmatrix *w)
{
    if (!sr_qtile_fits(w)) return 0;
    const uint64_t row_scales = w->fmt == SR_W_BF16 ? 0 : SR_QTILE_ROWS * sizeof(float);
    return (uint64_t)sr_qtile_count(w) * ((uint64_t)sr_qtile_tile_bytes(w) + row_scales);
}

float sr_qtile_scale(const sr_qmatrix *w, int64_t t, int r, int64_t b)
{
    const uint16_t h = sr_qtile_group_scales(w, t, b / 2)[16 * (b & 1) + r];
    return w->tile_row_scale[t * SR_QTILE_ROWS + r] * sr_f16_to_f32(h);
}

/* Chunk c of a row (4 bnb bytes b0..b3 = columns 8c .. 8c+7, high nibble
 * first) as the tile's 4 bytes: columns 8c+j and 8c+4+j pair up. */
static uint32_t tile_word(const uint8_t *s)
{
    uint32_t x; /* little-endian: x = b0 | b1 << 8 | b2 << 16 | b3 << 24 */
    memcpy(&x, s, 4);
    const uint32_t lo = x & 0xFFFF, hi = x >> 16;
    const uint32_t a = ((lo >> 4) & 0x0F0F) | (hi & 0xF0F0); /* o0, o2 */
    const uint32_t b = (lo & 0x0F0F) | ((hi << 4) & 0xF0F0); /* o1, o3 */
    return (a & 0xFF) | (b & 0xFF) << 8 | (a & 0xFF00) << 8 | (b & 0xFF00) << 16;
}

/* The largest finite block scale of a row; 1 when none is nonzero. */
static float row_scale(const float *s, int64_t n)
{
    float m = 0;
    for (int64_t b = 0; b < n; b++)
        if (isfinite(s[b]) && fabsf(s[b]) > m) m = fabsf(s[b]);
    return m > 0 ? m : 1.0f;
}

/* bf16: columns 2c, 2c+1 of 16 rows per chunk, each row one 32-bit lane.
 * Chunk by chunk (16 row streams in, whole lines out): row by row wrote
 * every line of a tile 16 times, a tile being larger than L1. */
static void make_bf16(const sr_qmatrix *w, uint8_t *buf, int64_t ntiles, int64_t tb)
{
    const int64_t rows = w->rows, cols = w->cols, npair = cols / 2;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
    for (int64_t t = 0; t < ntiles; t++) {
        const uint8_t *s[SR_QTILE_ROWS];
        for (int r = 0; r < SR_QTILE_ROWS; r++) {
            const int64_t row = t * SR_QTILE_ROWS + r;
            s[r] = row < rows ? (const uint8_t *)w->data + row * cols * 2 : NULL;
        }
        uint8_t *dst = buf + t * tb;
        for (int64_t c = 0; c < npair; c++, dst += 64)
            for (int r = 0; r < SR_QTILE_ROWS; r++) {
                if (s[r]) memcpy(dst + 4 * r, s[r] + 4 * c, 4);
                else memset(dst + 4 * r, 0, 4);
            }
    }
}

/* LLM.int8: 4 codes of each of 16 rows per chunk, + 128; row scale SCB. */
static void make_int8(const sr_qmatrix *w, uint8_t *buf, float *rs, int64_t ntiles, int64_t tb)
{
    const int64_t rows = w->rows, cols = w->cols, nchunk = cols / 4;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
    for (int64_t t = 0; t < ntiles; t++)
        for (int r = 0; r < SR_QTILE_ROWS; r++) {
            const int64_t row = t * SR_QTILE_ROWS + r;
            const uint8_t *s = row < rows ? (const uint8_t *)w->data + row * cols : NULL;
            rs[t * SR_QTILE_ROWS + r] = s ? w->scb[row] : 0.0f;
            uint8_t *dst = buf + t * tb + 4 * r;
            for (int64_t c = 0; c < nchunk; c++, dst += 64) {
                uint32_t v = 0;
                if (s) memcpy(&v, s + 4 * c, 4);
                v ^= 0x80808080u;
                memcpy(dst, &v, 4);
            }
        }
}

int sr_qtile_make(sr_qmatrix *w)
{
    if (!sr_qtile_fits(w)) return 0;
    uint8_t *buf = sr_malloc_aligned((size_t)sr_qtile_bytes(w));
    if (!buf) return -1;
    sr_qtile_make_in(w, buf);
    w->tile_buf = buf;
    return 0;
}

int sr_qtile_within(sr_qmatrix *const *w, int n, uint64_t budget, uint64_t *bytes)
{
    uint64_t sum = 0;
    int k = 0;
    for (; k < n; k++) {
        const uint64_t b = sr_qtile_bytes(w[k]);
        if (b > budget - sum) break; /* sum <= budget throughout */
        sum += b;
    }
    *bytes = sum;
    return k;
}

void sr_qtile_bf16_rows(const sr_qmatrix *w, int64_t r0, int64_t nr, float *out)
{
    const int64_t tb = sr_qtile_tile_bytes(w), npair = w->cols / 2;
    for (int64_t r = r0; r < r0 + nr; r++, out += w->cols) {
        const uint8_t *lane = w->tiles + r / SR_QTILE_ROWS * tb + 4 * (r % SR_QTILE_ROWS);
        for (int64_t c = 0; c < npair; c++, lane += 64) {
            uint16_t e[2];
            memcpy(e, lane, 4);
            out[2 * c] = sr_bf16_to_f32(e[0]);
            out[2 * c + 1] = sr_bf16_to_f32(e[1]);
        }
    }
}

void sr_qtile_make_in(sr_qmatrix *w, void *dst_buf)
{
    if (!sr_qtile_fits(w)) return;
    uint8_t *buf = dst_buf;
    const int64_t ntiles = sr_qtile_count(w), tb = sr_qtile_tile_bytes(w);
    float *rs = (float *)(buf + ntiles * tb); /* tb is a multiple of 64 */
    sr_free_aligned(w->tile_buf);
    w->tile_buf = NULL;
    w->tiles = buf;
    if (w->fmt == SR_W_BF16) {
        w->tile_row_scale = NULL;
        make_bf16(w, buf, ntiles, tb);
        return;
    }
    w->tile_row_scale = rs;
    if (w->fmt == SR_W_INT8) {
        make_int8(w, buf, rs, ntiles, tb);
        return;
    }
    const int64_t rows = w->rows, cols = w->cols, nchunk = cols / 8;
    const int64_t nbr = cols / w->blocksize; /* blocks per row */
    const int64_t per_group = w->blocksize / 4; /* chunks of a full group */
    const uint8_t *src = w->data;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 20))
    for (int64_t t = 0; t < ntiles; t++) {
        const float *sc[SR_QTILE_ROWS]; /* a row's block scales, NULL past the matrix */
        for (int r = 0; r < SR_QTILE_ROWS; r++) {
            const int64_t row = t * SR_QTILE_ROWS + r;
            sc[r] = row < rows ? w->scales + row * nbr : NULL;
            rs[t * SR_QTILE_ROWS + r] = sc[r] ? row_scale(sc[r], nbr) : 1.0f;
        }
        for (int64_t g = 0; g < (nbr + 1) / 2; g++) {
            uint8_t *grp = buf + sr_qtile_group_offset(w, t, g); /* band/panel order */
            uint16_t *h = (uint16_t *)grp;
            for (int r = 0; r < SR_QTILE_ROWS; r++) {
                const float m = rs[t * SR_QTILE_ROWS + r];
                for (int i = 0; i < 2; i++) {
                    const int64_t b = 2 * g + i;
                    h[16 * i + r] = sc[r] && b < nbr ? sr_f32_to_f16(sc[r][b] / m) : 0;
                }
                const uint8_t *s = sc[r] ? src + (t * SR_QTILE_ROWS + r) * cols / 2 : NULL;
                uint8_t *dst = grp + 64 + 4 * r; /* the group's first chunk, row r */
                const int64_t c1 = (g + 1) * per_group < nchunk ? (g + 1) * per_group : nchunk;
                for (int64_t c = g * per_group; c < c1; c++, dst += 64) {
                    const uint32_t o = s ? tile_word(s + 4 * c) : 0;
                    memcpy(dst, &o, 4);
                }
            }
        }
    }
}
