/* The opt-in int8 kernels' layout of a 4-bit matrix: 16-row tiles.
 *
 * bnb stores a row's nibbles contiguously, so a decode kernel that reads it
 * in order holds one row per vector and must scale and sum every int32 lane
 * separately.  In a tile, one 64-byte vector holds 8 consecutive columns of
 * 16 rows: byte 4r + j of chunk c (columns 8c .. 8c+7) has
 *
 *     low nibble  = code of row r, column 8c + j
 *     high nibble = code of row r, column 8c + 4 + j        (j = 0..3)
 *
 * so after the table lookup each int32 lane of `vpdpbusd` is one row, the
 * activations come as broadcast quads, each 32-column activation block is
 * scaled once for 16 rows, and a thread reads one contiguous stream.  Tile t
 * covers rows 16t .. 16t+15 (the rows past the matrix: code 0, scale 0);
 * its chunks follow each other (cols / 8 of them, 64 bytes each).
 * tile_scales holds, per tile and per block of the row (cols / blocksize of
 * them), the 16 rows' block scales.
 *
 * The bnb bytes stay as they are (every other path and every copy to another
 * tier reads them); the tiles are a derived copy of the same size, made at
 * load for a model that runs on the CPU under STRATA_KERNELS=int8. */
#ifndef SR_QTILE_H
#define SR_QTILE_H

#include <stdint.h>

#include "quant/qmatrix.h"

#define SR_QTILE_ROWS 16

/* Can w be tiled?  4-bit with scales, cols a multiple of 32 and of the
 * blocksize (no block spans two rows), blocksize a power of two >= 32. */
int sr_qtile_fits(const sr_qmatrix *w);
/* Bytes the tiles of w take (0 if it does not fit). */
uint64_t sr_qtile_bytes(const sr_qmatrix *w);
/* Builds w's tiles (replacing any it had).  0 on success or when w does not
 * fit (nothing done); -1 out of memory (w unchanged). */
int sr_qtile_make(sr_qmatrix *w);

#endif
