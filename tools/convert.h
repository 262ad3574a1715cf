/* The offline converter: HF safetensors model directory -> bnb-format
 * checkpoint that strata runs and transformers + bitsandbytes loads
 * unchanged (bnb-format.md §3-§5).
 *
 * Streaming with bounded memory: one tensor at a time from the mmapped input
 * (its pages are dropped after use), quantized by OpenMP threads, appended
 * to the current shard.  Crash safety: everything is written into
 * OUT_DIR.partial-<pid>, every shard is re-read and checked, and only then
 * is the directory renamed to OUT_DIR.  An interrupted run (SIGINT/SIGTERM)
 * removes its partial directory; one killed outright leaves it, clearly
 * named, and the next run removes it. */
#ifndef SR_CONVERT_H
#define SR_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/bnb4.h"
#include "runtime/error.h"

typedef enum convert_quant { CQ_NF4, CQ_FP4, CQ_INT8, CQ_NONE } convert_quant;

typedef struct convert_opts {
    const char *in_dir, *out_dir;
    convert_quant quant;
    bool double_quant;
    int blocksize;              /* 64 */
    int compute_dtype;          /* sr_dtype, or -1 = the model dtype */
    sr_bnb_rules rules;
    int n_skip;
    char **skip;                /* extra modules left unquantized (lm_head always is) */
    uint64_t shard_size;        /* bytes */
    int zstd_level;             /* 0 = no .zst */
    bool zstd_only;
    int threads;                /* 0 = OpenMP default */
    bool force, quiet, stats;
    const char *match_offsets;  /* bnb checkpoint whose nested_offsets are imposed */
} convert_opts;

typedef struct convert_class_stats {
    const char *name;           /* "attention", "mlp", ... */
    int n;
    double max_abs, sum_sq;
    uint64_t count;
} convert_class_stats;

typedef struct convert_report {
    int tensors_quantized, tensors_kept, tensors_dropped;
    uint64_t bytes_in, bytes_out, bytes_zstd;
    int shards;
    double seconds;
    long peak_rss_kib;
    convert_class_stats stats[4];
    int n_stats;
} convert_report;

void convert_defaults(convert_opts *o);
int convert_run(const convert_opts *o, convert_report *r, sr_error *err);
/* The last step of convert_run without --force: renames the finished
 * directory `partial` to `out_dir`, refusing (0 or -1 with err) when out_dir
 * exists, also when it appeared after convert_run checked at the start. */
int convert_publish(const char *partial, const char *out_dir, sr_error *err);

/* Set by the signal handler; checked between tensors. */
extern volatile int convert_interrupted;

#endif
