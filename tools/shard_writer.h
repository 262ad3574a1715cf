/* Streaming safetensors shard writer for the converter.
 *
 * Tensors are appended one at a time (bounded memory: nothing but the
 * tensor in hand is held).  Because some sizes are only known once a tensor
 * has been quantized (the quant_state JSON), the header is written LAST into
 * a region reserved at the start of the file: the caller reserves an upper
 * bound, and the unused part is filled with spaces (valid JSON whitespace;
 * the total stays a multiple of 8 as safetensors writers do).
 * Data is written to the final path's temporary sibling by the caller's
 * choice of path; sw_finish fsyncs. */
#ifndef SR_SHARD_WRITER_H
#define SR_SHARD_WRITER_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

typedef struct sw_shard sw_shard;

/* Bytes one header entry can take at most (name + dtype + shape + offsets),
 * for computing the reservation. */
uint64_t sw_entry_bound(const char *name, int ndim);

int sw_open(const char *path, uint64_t header_reserve, sw_shard **out, sr_error *err);
int sw_add(sw_shard *w, const char *name, sr_dtype dtype, int ndim, const int64_t *shape,
           const void *data, uint64_t nbytes, sr_error *err);
/* Writes the header into the reserved region, fsyncs and closes; frees w. */
int sw_finish(sw_shard *w, uint64_t *total_bytes, sr_error *err);
/* Closes and deletes the file; frees w. */
void sw_abort(sw_shard *w);

/* Compresses `src` into `dst` as one zstd frame with a content checksum,
 * using `threads` compression workers; fsyncs dst. */
int sw_zstd_file(const char *src, const char *dst, int level, int threads, uint64_t *out_bytes,
                 sr_error *err);

#endif
