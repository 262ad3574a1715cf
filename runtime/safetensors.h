/* safetensors reader: mmap the file (or take a memory buffer, e.g. a
 * decompressed .zst shard) and validate the whole header before anything is
 * used.  Every violation is an error naming the file, the tensor and the
 * rule; nothing here can crash on a malformed file. */
#ifndef SR_SAFETENSORS_H
#define SR_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

#define SR_MAX_DIMS 8
#define SR_ST_MAX_HEADER (100u << 20)   /* 100 MiB, the format's own cap */
#define SR_ST_MAX_TENSORS 1000000

typedef struct sr_st_file sr_st_file;

typedef struct sr_tensor {
    const char *name;          /* owned by the file */
    sr_dtype dtype;
    int ndim;
    int64_t shape[SR_MAX_DIMS];
    uint64_t nbytes;
    const void *data;          /* inside the mapping; valid while the file is open */
    const sr_st_file *file;    /* file it lives in */
} sr_tensor;

/* Opens and validates `path`.  On failure *out is NULL and nothing leaks. */
int sr_st_open(const char *path, sr_st_file **out, sr_error *err);
/* Same over a caller-owned buffer; `name` is used in messages.  If
 * `take_ownership` the buffer (allocated with sr_malloc) is freed on close,
 * or before returning when the open fails.  Tensor data is not copied: its
 * alignment is that of buf + 8 + header length (HF writers pad the header to
 * a multiple of 8). */
int sr_st_open_memory(const void *buf, size_t len, const char *name, int take_ownership,
                      sr_st_file **out, sr_error *err);
void sr_st_close(sr_st_file *f);

/* The caller no longer reads the bytes [p, p+len) of f's tensors (a re-laid
 * copy replaced them).  Where f is a file mapping, the whole pages inside
 * the range leave this process (MADV_DONTNEED): out of its RSS, still in the
 * page cache for the next run, and a later read faults them back in from
 * the file with the same bytes.  A file held in memory (.zst shards, a
 * caller's buffer) is left as it is: dropping anonymous pages would lose
 * them.  Returns 1 if the range lies in f, else 0 (nothing done). */
int sr_st_release(const sr_st_file *f, const void *p, size_t len);

const char *sr_st_path(const sr_st_file *f);
size_t sr_st_file_size(const sr_st_file *f);
/* The file's bytes (its mapping, or the buffer), sr_st_file_size long. */
const void *sr_st_bytes(const sr_st_file *f);
size_t sr_st_count(const sr_st_file *f);
const sr_tensor *sr_st_get(const sr_st_file *f, size_t i);     /* in header order */
const sr_tensor *sr_st_find(const sr_st_file *f, const char *name);
/* __metadata__ entries (all strings). */
size_t sr_st_metadata_count(const sr_st_file *f);
const char *sr_st_metadata_key(const sr_st_file *f, size_t i);
const char *sr_st_metadata_get(const sr_st_file *f, const char *key);

int64_t sr_tensor_numel(const sr_tensor *t);

#endif
