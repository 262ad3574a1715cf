/* safetensors writer.
 *
 * File layout: 8-byte little-endian header length, the JSON header
 * (`"__metadata__": {"format": "pt"}` first, then one entry per tensor with
 * dtype, shape and data_offsets), padded with spaces so that the data starts
 * at a multiple of 8, then the tensor data back to back with no holes.
 *
 * Tensor order in the data section: by element size, largest first, then by
 * name (bytewise).  This is the order of the reference safetensors library
 * and keeps every tensor naturally aligned in a mapping (the header is
 * padded to 8, and a tensor's byte size is a multiple of its element size),
 * so readers can use F32/BF16 data in place.
 *
 * The file is written to `<path>.tmp-<pid>`, fsync'ed and renamed over
 * `path`: a reader never sees a half-written file, and a failed write
 * leaves nothing behind. */
#ifndef SR_SAFETENSORS_WRITE_H
#define SR_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

typedef struct sr_st_entry {
    const char *name;               /* unique, non-empty, not "__metadata__" */
    sr_dtype dtype;
    int ndim;                       /* 0 (scalar) .. SR_MAX_DIMS */
    int64_t shape[SR_MAX_DIMS];
    /* Either the bytes (nbytes = numel * element size, little-endian)... */
    const void *data;
    /* ...or, if data is NULL, a callback that fills `dst` (nbytes long) when
     * the writer reaches this tensor: lets a converter produce one tensor at
     * a time instead of holding the whole model.  Returns 0 or -1 (err set). */
    int (*fill)(void *ctx, void *dst, uint64_t nbytes, sr_error *err);
    void *ctx;
} sr_st_entry;

/* Bytes of an entry's data: numel * element size, or -1 if a dimension is
 * negative or the product overflows. */
int64_t sr_st_entry_nbytes(const sr_st_entry *e);

/* Writes the n entries (any order in the array) to `path`.  Errors name the
 * file and the tensor; on failure nothing is left at `path` (an existing
 * file there is untouched). */
int sr_st_write(const char *path, const sr_st_entry *entries, size_t n, sr_error *err);

#endif
