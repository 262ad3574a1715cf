/* The opt-in int8 kernels' layout of a 4-bit matrix: 16-row tiles.
 *
 * bnb stores a row's nibbles contiguously, so a decode kernel that reads it
 * in order holds one row per vector and must scale and sum every int32 lane
 * separately.  In a tile, one 64-byte vector (a chunk) holds 8 consecutive
 * columns of 16 rows: byte 4r + j of chunk c (columns 8c .. 8c+7) has
 *
 *     low nibble  = code of row r, column 8c + j
 *     high nibble = code of row r, column 8c + 4 + j        (j = 0..3)
 *
 * so after the table lookup each int32 lane of `vpdpbusd` is one row, the
 * activations come as broadcast quads, each 32-column activation block is
 * scaled once for 16 rows, and a thread reads one contiguous stream.
 *
 * Tile t covers rows 16t .. 16t+15 (rows past the matrix: code 0, scale 0)
 * and is one run of bytes, a group per two blocks of the row (2 x blocksize
 * columns; the last group of a row with an odd block count has one):
 *
 *     64 bytes   the group's block scales, f16: element 16i + r is row r's
 *                scale of the group's block i (i = 0, 1; zeros if absent)
 *     then       the group's chunks, 64 bytes each, in column order
 *
 * The scales come first and in the same stream: a separate scale array (the
 * first tile layout), or scales after their codes, held the stream back.
 * On the Zen 4 dev VM, in the minutes its memory read ~65-68 GB/s, the
 * decode kernel went from 71-76 % of that to 92-96 % (BENCHMARKS.md; one
 * core: 28-30 -> 38-40 GB/s).  The scales are f16 relative to
 * the row's largest finite block scale (row_scale, f32, 16 per tile beside
 * the tiles; 1 for a row without a nonzero finite scale), so the stream
 * carries 2 bytes of scale per block instead of 4: a block scale s becomes
 * row_scale * f16(s / row_scale), relative error <= 2^-11 where
 * s / row_scale >= 2^-14 (f16 subnormals below: absolute error <=
 * 2^-25 row_scale).  The int8 kernels' own error (activations in int8, the
 * codes in an int8 table) is an order of magnitude larger (matmul_kernels.h).
 *
 * LLM.int8 (8-bit codes, SCB per row): chunk c holds columns 4c .. 4c+3,
 * byte 4r + j = code of row r, column 4c + j, plus 128 (the sign bit
 * flipped: vpdpbusd's unsigned operand); the chunks follow each other with
 * no scale lines, and row_scale is the row's SCB (0 for padded rows).
 *
 * The bnb bytes stay as they are (every other path and every copy to another
 * tier reads them); the tiles are a derived copy, made at load for a model
 * that runs on the CPU under STRATA_KERNELS=int8. */
#ifndef SR_QTILE_H
#define SR_QTILE_H

#include <stdint.h>

#include "quant/qmatrix.h"

#define SR_QTILE_ROWS 16

/* Can w be tiled?  4-bit with scales, cols a multiple of 32 and of the
 * blocksize (no block spans two rows), blocksize a power of two >= 32; or
 * LLM.int8 with SCB, cols a multiple of 32. */
int sr_qtile_fits(const sr_qmatrix *w);
/* Bytes the tiles of w take, row scales included (0 if it does not fit). */
uint64_t sr_qtile_bytes(const sr_qmatrix *w);
/* Builds w's tiles (replacing any it had).  0 on success or when w does not
 * fit (nothing done); -1 out of memory (w unchanged). */
int sr_qtile_make(sr_qmatrix *w);
/* The same into dst, sr_qtile_bytes(w) bytes aligned to 64 that the caller
 * owns and keeps until w is freed (w->tile_buf stays NULL): a model puts all
 * its tiles in one buffer so that huge pages cover every byte. */
void sr_qtile_make_in(sr_qmatrix *w, void *dst);

/* The scale the tiles give row r of tile t for block b of its row
 * (row_scale times the stored f16): what the kernels multiply by.  4-bit
 * only. */
float sr_qtile_scale(const sr_qmatrix *w, int64_t t, int r, int64_t b);

/* Bytes of one tile: a 64-byte scale line per group, 64 per chunk (LLM.int8:
 * 64 per chunk of 4 columns). */
static inline int64_t sr_qtile_tile_bytes(const sr_qmatrix *w)
{
    if (w->fmt == SR_W_INT8) return 16 * w->cols;
    const int64_t nbr = w->cols / w->blocksize;
    return 64 * ((nbr + 1) / 2 + w->cols / 8);
}

/* Bytes of a full group (two blocks). */
static inline int64_t sr_qtile_group_bytes(const sr_qmatrix *w)
{
    return 64 + 16 * (int64_t)w->blocksize;
}

/* Chunk c (columns 8c .. 8c+7) of tile t.  4-bit only. */
static inline const uint8_t *sr_qtile_chunk(const sr_qmatrix *w, int64_t t, int64_t c)
{
    const int64_t per_group = w->blocksize / 4; /* chunks in a full group */
    const int64_t g = c / per_group;
    return w->tiles + t * sr_qtile_tile_bytes(w) + g * sr_qtile_group_bytes(w) + 64 +
           (c - g * per_group) * 64;
}

/* The f16 scales of group g (blocks 2g, 2g+1) of tile t. */
static inline const uint16_t *sr_qtile_group_scales(const sr_qmatrix *w, int64_t t, int64_t g)
{
    return (const uint16_t *)(w->tiles + t * sr_qtile_tile_bytes(w) +
                              g * sr_qtile_group_bytes(w));
}

#endif
