/* A checkpoint = a HF model directory (config.json + one model.safetensors or
 * shards listed in model.safetensors.index.json, optionally as .zst
 * compressed shards) or a single .safetensors file.  Tensors are looked up by
 * name across all shards. */
#ifndef SR_CHECKPOINT_H
#define SR_CHECKPOINT_H

#include "runtime/safetensors.h"

typedef struct sr_checkpoint sr_checkpoint;

int sr_ckpt_open(const char *path, sr_checkpoint **out, sr_error *err);
void sr_ckpt_close(sr_checkpoint *ck);

/* Directory holding config.json (the file's directory for a bare file). */
const char *sr_ckpt_dir(const sr_checkpoint *ck);
/* 1 if `path` was a directory with config.json. */
int sr_ckpt_has_config(const sr_checkpoint *ck);

size_t sr_ckpt_count(const sr_checkpoint *ck);
const sr_tensor *sr_ckpt_get(const sr_checkpoint *ck, size_t i);
const sr_tensor *sr_ckpt_find(const sr_checkpoint *ck, const char *name);

size_t sr_ckpt_shard_count(const sr_checkpoint *ck);
const char *sr_ckpt_shard_path(const sr_checkpoint *ck, size_t i);
/* Bytes on disk of shard i and bytes once decompressed (equal unless .zst). */
uint64_t sr_ckpt_shard_disk_bytes(const sr_checkpoint *ck, size_t i);
uint64_t sr_ckpt_shard_bytes(const sr_checkpoint *ck, size_t i);

/* sr_st_release for the shard that holds [p, p+len); nothing if none does
 * (e.g. a buffer of the caller's). */
void sr_ckpt_release(const sr_checkpoint *ck, const void *p, size_t len);

/* Decompresses a zstd-compressed safetensors image held in memory (every
 * frame must carry a content checksum) and opens the result, which the file
 * then owns.  At most `max_bytes` are decompressed.  `name` is used in
 * messages.  The buffer is only read during the call.  Used for .zst shards
 * and by the fuzz target. */
int sr_ckpt_zst_open_memory(const void *buf, size_t len, const char *name, uint64_t max_bytes,
                            sr_st_file **out, sr_error *err);

#endif
