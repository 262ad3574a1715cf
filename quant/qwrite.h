/* Quantizing one weight into the checkpoint tensors bnb + transformers
 * expect (bnb-format.md §3.1 / §4.1): the converter's building block.
 *
 * Usage (converter):
 *
 *     sr_bnb4_options o = sr_bnb4_defaults();      // nf4, blocksize 64, CUDA rules
 *     o.double_quant = 1;
 *     sr_qtensors q;
 *     if (sr_bnb4_quantize_tensor("model.layers.0.mlp.up_proj.weight", t->data, t->dtype,
 *                                 t->ndim, t->shape, &o, &q, &err)) ...fail...
 *     for (size_t i = 0; i < q.count; i++) {
 *         sr_st_entry e = {.name = q.t[i].name, .dtype = q.t[i].dtype, .ndim = q.t[i].ndim,
 *                          .data = q.t[i].data};
 *         memcpy(e.shape, q.t[i].shape, sizeof e.shape);
 *         ...add e to the entries given to sr_st_write (runtime/safetensors_write.h)...
 *     }
 *     ...after writing: sr_qtensors_free(&q);
 *
 * 4-bit output for weight W (in this order; DQ = double quantization):
 *   t[0] W                                       packed codes, dtype opt.storage
 *                                                (U8 [(N+1)/2, 1]; another storage
 *                                                dtype: same bytes, [bytes/itemsize, 1])
 *   t[1] W.absmax                                F32 [nb]     (DQ: U8 [nb] codes)
 *   t[2] W.quant_map                             F32 [16]
 *   t[3] W.nested_absmax                         F32 [ceil(nb/256)]   (DQ only)
 *   t[4] W.nested_quant_map                      F32 [256]            (DQ only)
 *   t[last] W.quant_state.bitsandbytes__nf4|fp4  U8 [len]: the JSON bytes (= json)
 * Int8 output for weight P.weight (the name must end in ".weight"):
 *   t[0] P.weight I8 [out, in]; t[1] P.SCB F32 [out]; t[2] P.weight_format U8 [] = 0.
 * A bias is not touched: the caller copies P.bias (model dtype) itself.
 *
 * The source tensor may be F32, F16 or BF16, at any alignment.  4-bit takes
 * any rank >= 1 (the JSON records the shape); int8 needs rank 2.  Errors
 * (bad shape, NaN/inf values, out of memory) name the tensor; on failure
 * nothing is left allocated in *out. */
#ifndef SR_QWRITE_H
#define SR_QWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "quant/bnb4.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

#define SR_QTENSORS_MAX 6

typedef struct sr_qtensor {
    char *name;                 /* full checkpoint key, owned */
    sr_dtype dtype;
    int ndim;
    int64_t shape[SR_MAX_DIMS];
    void *data;                 /* owned, nbytes long, little-endian */
    uint64_t nbytes;
} sr_qtensor;

typedef struct sr_qtensors {
    size_t count;
    sr_qtensor t[SR_QTENSORS_MAX];
    /* 4-bit: the quant_state JSON, NUL-terminated (the same bytes as the
     * last tensor); NULL for int8.  Owned. */
    char *json;
} sr_qtensors;

typedef struct sr_bnb4_options {
    sr_q4type quant_type;       /* default NF4 */
    int blocksize;              /* default 64 (what transformers always uses) */
    int double_quant;           /* bnb_4bit_use_double_quant */
    sr_bnb_rules rules;         /* default SR_RULES_CUDA (what Hub checkpoints hold) */
    sr_dtype storage;           /* bnb_4bit_quant_storage: default U8; also I8, F16, BF16, F32, F64 */
    /* Double quantization offset: by default the mean of the absmax (in
     * double, rounded to f32).  Set use_offset to impose `offset`, e.g. to
     * reproduce an existing checkpoint bit for bit. */
    int use_offset;
    float offset;
} sr_bnb4_options;

sr_bnb4_options sr_bnb4_defaults(void);

int sr_bnb4_quantize_tensor(const char *weight_name, const void *data, sr_dtype dtype, int ndim,
                            const int64_t *shape, const sr_bnb4_options *opt, sr_qtensors *out,
                            sr_error *err);

int sr_int8_quantize_tensor(const char *weight_name, const void *data, sr_dtype dtype, int ndim,
                            const int64_t *shape, sr_qtensors *out, sr_error *err);

/* Frees everything in q and zeroes it (safe on a zeroed struct). */
void sr_qtensors_free(sr_qtensors *q);

/* The tensor of q with this full name (e.g. "<W>.absmax"), or NULL. */
const sr_qtensor *sr_qtensors_find(const sr_qtensors *q, const char *name);

#endif
