/* 16-row tiles: the layout the CPU decode kernels read a matrix from, a
 * derived copy made at load.  4-bit and LLM.int8 get them for the opt-in
 * int8 kernels; bf16 gets them for the exact kernels (quant/bf16_tiles.h).
 *
 * 4-bit (the int8 kernels' layout):
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
 * Tile t covers rows 16t .. 16t+15 (rows past the matrix: code 0, scale 0),
 * a group per two blocks of the row (2 x blocksize columns; the last group
 * of a row with an odd block count has one):
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
 * Bands and panels (4-bit): tiles 4b .. 4b+3 form band b (the last band may
 * have fewer), and a band is stored panel by panel: the groups of a panel
 * of the band's first tile, then of its second tile, ..., then the next
 * panel.  A panel has p = SR_QTILE_PANEL_COLS / (2 x blocksize) groups (at
 * least one); a remainder of fewer than p/2 groups joins the last panel.
 * A thread reads a band as one stream while the activations of one panel
 * (2.5 KiB for one column) stay in L1: with whole tiles in a row, a
 * 2560 x 8192 tile (68 KiB) pushed the 10 KiB of activations out of L1
 * before the next tile came back to them, and at the fast-memory minutes
 * of the dev VM the decode read 2560 x 8192 at 0.83-0.84 of a same-size
 * probe read against 0.86-0.90 with bands (1280 x 16384: 0.79 against
 * 0.84-0.87; BENCHMARKS.md).  Group g of tile t (band b, k = t - 4b, n
 * tiles in the band, g0 = the first group of g's panel, g1 past its last,
 * G groups a row):
 *
 *     offset = 4b x tile_bytes + n x g0 x group_bytes + k x run
 *              + (g - g0) x group_bytes
 *     run    = (g1 - g0) x group_bytes, less 8 x blocksize if g1 = G and the
 *              block count is odd (the last group is half)
 *
 * LLM.int8 (8-bit codes, SCB per row): chunk c holds columns 4c .. 4c+3,
 * byte 4r + j = code of row r, column 4c + j, plus 128 (the sign bit
 * flipped: vpdpbusd's unsigned operand); the chunks follow each other with
 * no scale lines, and row_scale is the row's SCB (0 for padded rows); its
 * tiles are whole, tile t at t x tile_bytes (no bands).
 *
 * bf16: chunk c holds columns 2c, 2c+1 of the tile's 16 rows, bytes 4r ..
 * 4r+3 = row r's two bf16 elements as stored (column 2c in the low half of
 * the 32-bit lane); tiles whole, tile t at t x tile_bytes; no row scales
 * (tile_row_scale NULL).  cols must be even.
 *
 * The stored bytes stay as they are (every other path and every copy to
 * another tier reads them); the tiles are a derived copy, made at load for
 * a model that runs on the CPU: 4-bit and LLM.int8 under
 * STRATA_KERNELS=int8, bf16 wherever the AVX-512 kernels run.  Such a model
 * then lets its checkpoint's pages of the stored bytes go (runtime/model.c):
 * its kernels read the tiles only. */
#ifndef SR_QTILE_H
#define SR_QTILE_H

#include <stdint.h>

#include "quant/qmatrix.h"

#define SR_QTILE_ROWS 16
#define SR_QTILE_BAND 4           /* tiles per band (4-bit) */
#define SR_QTILE_PANEL_COLS 2048  /* columns per panel (4-bit; at least one group) */

/* Can w be tiled?  4-bit with scales, cols a multiple of 32 and of the
 * blocksize (no block spans two rows), blocksize a power of two >= 32;
 * LLM.int8 with SCB, cols a multiple of 32; or bf16 with cols even. */
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

/* How many of w[0..n) (in order) get tiles within `budget` bytes, i.e. the
 * largest k with the tiles of w[0..k) summing to at most budget; *bytes is
 * that sum. */
int sr_qtile_within(sr_qmatrix *const *w, int n, uint64_t budget, uint64_t *bytes);

/* Rows [r0, r0+nr) of a tiled bf16 matrix as f32, read from the tiles
 * (a model releases the stored bytes once tiled): bit-identical to
 * sr_qmatrix_dequant_rows on the stored bytes. */
void sr_qtile_bf16_rows(const sr_qmatrix *w, int64_t r0, int64_t nr, float *out);

/* The scale the tiles give row r of tile t for block b of its row
 * (row_scale times the stored f16): what the kernels multiply by.  4-bit
 * only. */
float sr_qtile_scale(const sr_qmatrix *w, int64_t t, int r, int64_t b);

/* Bytes of one tile: a 64-byte scale line per group, 64 per chunk (LLM.int8:
 * 64 per chunk of 4 columns; bf16: 64 per pair of columns). */
static inline int64_t sr_qtile_tile_bytes(const sr_qmatrix *w)
{
    if (w->fmt == SR_W_INT8) return 16 * w->cols;
    if (w->fmt == SR_W_BF16) return 32 * w->cols;
    const int64_t nbr = w->cols / w->blocksize;
    return 64 * ((nbr + 1) / 2 + w->cols / 8);
}

/* Bytes of a full group (two blocks). */
static inline int64_t sr_qtile_group_bytes(const sr_qmatrix *w)
{
    return 64 + 16 * (int64_t)w->blocksize;
}

/* Tiles of w. */
static inline int64_t sr_qtile_count(const sr_qmatrix *w)
{
    return (w->rows + SR_QTILE_ROWS - 1) / SR_QTILE_ROWS;
}

/* Groups per row and per panel.  4-bit only. */
static inline int64_t sr_qtile_groups(const sr_qmatrix *w)
{
    return (w->cols / w->blocksize + 1) / 2;
}
static inline int64_t sr_qtile_panel_groups(const sr_qmatrix *w)
{
    const int64_t pg = SR_QTILE_PANEL_COLS / (2 * (int64_t)w->blocksize);
    return pg > 0 ? pg : 1;
}

/* The panel that holds group g: groups [*g0, *g1).  Panels of p groups;
 * a remainder of fewer than p/2 groups joins the last one (a 2560-column
 * row stays one panel). */
static inline void sr_qtile_panel(const sr_qmatrix *w, int64_t g, int64_t *g0, int64_t *g1)
{
    const int64_t pg = sr_qtile_panel_groups(w), ng = sr_qtile_groups(w);
    int64_t np = ng / pg + (2 * (ng % pg) >= pg ? 1 : 0);
    if (np < 1) np = 1;
    const int64_t i = g / pg < np - 1 ? g / pg : np - 1;
    *g0 = i * pg;
    *g1 = i == np - 1 ? ng : *g0 + pg;
}

/* Bytes of the run of panel groups [g0, g1) of one tile. */
static inline int64_t sr_qtile_run_bytes(const sr_qmatrix *w, int64_t g0, int64_t g1)
{
    const int half = g1 == sr_qtile_groups(w) && (w->cols / w->blocksize) % 2;
    return (g1 - g0) * sr_qtile_group_bytes(w) - (half ? 8 * (int64_t)w->blocksize : 0);
}

/* Byte offset of group g (its scale line) of tile t: the band/panel order
 * above.  4-bit only. */
static inline int64_t sr_qtile_group_offset(const sr_qmatrix *w, int64_t t, int64_t g)
{
    const int64_t first = t / SR_QTILE_BAND * SR_QTILE_BAND, left = sr_qtile_count(w) - first;
    const int64_t n = left < SR_QTILE_BAND ? left : SR_QTILE_BAND;
    int64_t g0, g1;
    sr_qtile_panel(w, g, &g0, &g1);
    const int64_t gb = sr_qtile_group_bytes(w);
    return first * sr_qtile_tile_bytes(w) + n * g0 * gb +
           (t - first) * sr_qtile_run_bytes(w, g0, g1) + (g - g0) * gb;
}

/* Chunk c (columns 8c .. 8c+7) of tile t.  4-bit only.  The chunks of one
 * group follow each other. */
static inline const uint8_t *sr_qtile_chunk(const sr_qmatrix *w, int64_t t, int64_t c)
{
    const int64_t per_group = w->blocksize / 4; /* chunks in a full group */
    const int64_t g = c / per_group;
    return w->tiles + sr_qtile_group_offset(w, t, g) + 64 + (c - g * per_group) * 64;
}

/* The f16 scales of group g (blocks 2g, 2g+1) of tile t. */
static inline const uint16_t *sr_qtile_group_scales(const sr_qmatrix *w, int64_t t, int64_t g)
{
    return (const uint16_t *)(w->tiles + sr_qtile_group_offset(w, t, g));
}

#endif
