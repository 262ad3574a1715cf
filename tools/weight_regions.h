/* The memory a decode kernel reads of a weight matrix, as regions for a
 * plain read of the same bytes (tools/bandwidth.h, bw_read_regions): what
 * the benchmarks compare a kernel with besides the probe's own buffer. */
#ifndef SR_WEIGHT_REGIONS_H
#define SR_WEIGHT_REGIONS_H

#include "quant/qmatrix.h"
#include "tools/bandwidth.h"

/* At most this many regions per matrix. */
#define SR_WEIGHT_REGIONS_MAX 3

/* w's tiles and row scales when `tiles` is set and w has tiles (what the
 * kernels read from such a matrix, quant/qtile.h), else its stored weights
 * and scales.
 * Fills r (room for SR_WEIGHT_REGIONS_MAX) and returns how many. */
int sr_weight_regions(const sr_qmatrix *w, int tiles, bw_region *r);

#endif
