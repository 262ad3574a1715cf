/* Checkpoint tensors of a quantized weight (the writer side of qload.c). */
#include "quant/qwrite.h"

#include <stdio.h>
#include <string.h>

#include "quant/blockwise8.h"
#include "quant/dynamic_map.h"
#include "quant/llm_int8.h"
#include "quant/quant_state.h"
#include "runtime/alloc.h"

sr_bnb4_options sr_bnb4_defaults(void)
{
    sr_bnb4_options o;
    memset(&o, 0, sizeof o);
    o.quant_type = SR_Q4_NF4;
    o.blocksize = 64;
    o.rules = SR_RULES_CUDA;
    o.storage = SR_U8;
    return o;
}

void sr_qtensors_free(sr_qtensors *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->count; i++) {
        sr_free(q->t[i].name);
        sr_free(q->t[i].data);
    }
    sr_free(q->json);
    memset(q, 0, sizeof *q);
}

const sr_qtensor *sr_qtensors_find(const sr_qtensors *q, const char *name)
{
    for (size_t i = 0; i < q->count; i++)
        if (!strcmp(q->t[i].name, name)) return &q->t[i];
    return NULL;
}

/* Appends a tensor named base+suffix with a zeroed buffer of nbytes; the
 * buffer is returned (NULL on out of memory). */
static void *add_tensor(sr_qtensors *q, const char *base, const char *suffix, sr_dtype dtype,
                        int ndim, const int64_t *shape, uint64_t nbytes)
{
    sr_qtensor *t = &q->t[q->count];
    size_t lb = strlen(base), ls = strlen(suffix);
    memset(t, 0, sizeof *t);
    t->name = sr_malloc(lb + ls + 1);
    t->data = sr_calloc(1, (size_t)(nbytes ? nbytes : 1));
    if (!t->name || !t->data) {
        sr_free(t->name);
        sr_free(t->data);
        t->name = t->data = NULL;
        return NULL;
    }
    memcpy(t->name, base, lb);
    memcpy(t->name + lb, suffix, ls + 1);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    q->count++;
    return t->data;
}

/* Element count of a shape; -1 on a negative dimension or overflow. */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && n > INT64_MAX / 8 / shape[i])) return -1;
        n *= shape[i];
    }
    return n;
}

static int is_float_dtype(sr_dtype t) { return t == SR_F32 || t == SR_F16 || t == SR_BF16; }

static int bnb4_fill(const char *w, const void *data, sr_dtype dtype, int ndim, const int64_t *shape,
                     int64_t n, const sr_bnb4_options *o, sr_qtensors *q, sr_error *err)
{
    const int64_t nb = sr_bnb_nblocks(n, o->blocksize), nbytes = sr_bnb4_packed_bytes(n);
    const int64_t isz = (int64_t)sr_dtype_size(o->storage);
    if (nbytes % isz)
        return sr_fail(err, "%lld packed bytes are not a whole number of %s storage elements",
                       (long long)nbytes, sr_dtype_name(o->storage));

    float *absmax = sr_malloc((size_t)(nb ? nb : 1) * sizeof *absmax);
    if (!absmax) return sr_fail(err, "out of memory for %lld block absmax", (long long)nb);
    int64_t wshape[2] = {nbytes / isz, 1};
    uint8_t *packed = add_tensor(q, w, "", o->storage, 2, wshape, (uint64_t)nbytes);
    int rc = packed ? 0 : sr_fail(err, "out of memory for %lld packed bytes", (long long)nbytes);
    if (!rc) rc = sr_bnb4_quantize(data, dtype, n, o->blocksize, o->quant_type, o->rules, packed,
                                   absmax, err);

    sr_quant_state qs;
    memset(&qs, 0, sizeof qs);
    qs.quant_type = o->quant_type;
    qs.blocksize = o->blocksize;
    qs.dtype = dtype;
    qs.ndim = ndim;
    for (int i = 0; i < ndim; i++) qs.shape[i] = shape[i];

    int64_t one[1] = {nb}, sixteen[1] = {16};
    if (!rc && !o->double_quant) {
        void *a = add_tensor(q, w, ".absmax", SR_F32, 1, one, (uint64_t)nb * 4);
        if (a) memcpy(a, absmax, (size_t)nb * 4);
        else rc = sr_fail(err, "out of memory");
    }
    if (!rc && o->double_quant) {
        const int64_t nnb = sr_bnb_nblocks(nb, SR_DQ_BLOCKSIZE);
        int64_t nshape[1] = {nnb}, mshape[1] = {256};
        float map[256];
        sr_dynamic_map(map);
        qs.nested = 1;
        qs.nested_blocksize = SR_DQ_BLOCKSIZE;
        qs.nested_dtype = SR_F32;
        qs.nested_offset = o->use_offset ? o->offset : sr_dq_offset(absmax, nb);
        /* Keys in bnb's state-dict order: absmax, quant_map, nested_*. */
        uint8_t *qabs = add_tensor(q, w, ".absmax", SR_U8, 1, one, (uint64_t)nb);
        void *qm = qabs ? add_tensor(q, w, ".quant_map", SR_F32, 1, sixteen, 64) : NULL;
        float *nabs = qm ? add_tensor(q, w, ".nested_absmax", SR_F32, 1, nshape, (uint64_t)nnb * 4) : NULL;
        float *nmap = nabs ? add_tensor(q, w, ".nested_quant_map", SR_F32, 1, mshape, 1024) : NULL;
        if (!nmap) rc = sr_fail(err, "out of memory");
        else {
            memcpy(qm, sr_bnb4_table(o->quant_type), 64);
            memcpy(nmap, map, sizeof map);
            rc = sr_dq_quantize(absmax, nb, qs.nested_offset, map, o->rules, qabs, nabs, err);
        }
    } else if (!rc) {
        void *qm = add_tensor(q, w, ".quant_map", SR_F32, 1, sixteen, 64);
        if (qm) memcpy(qm, sr_bnb4_table(o->quant_type), 64);
        else rc = sr_fail(err, "out of memory");
    }
    sr_free(absmax);
    if (rc) return rc;

    char json[1024];
    int len = sr_quant_state_format(&qs, json, sizeof json, err);
    if (len < 0) return -1;
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".quant_state.bitsandbytes__%s", sr_q4type_name(o->quant_type));
    int64_t jshape[1] = {len};
    void *js = add_tensor(q, w, suffix, SR_U8, 1, jshape, (uint64_t)len);
    q->json = sr_strdup(json);
    if (!js || !q->json) return sr_fail(err, "out of memory");
    memcpy(js, json, (size_t)len);
    return 0;
}

int sr_bnb4_quantize_tensor(const char *weight_name, const void *data, sr_dtype dtype, int ndim,
                            const int64_t *shape, const sr_bnb4_options *opt, sr_qtensors *out,
                            sr_error *err)
{
    memset(out, 0, sizeof *out);
    sr_bnb4_options o = opt ? *opt : sr_bnb4_defaults();
    int64_t n = shape_numel(ndim, shape);
    int rc = 0;
    if (!is_float_dtype(dtype))
        rc = sr_fail(err, "dtype %s cannot be quantized (F32, F16 or BF16 only)", sr_dtype_name(dtype));
    else if (ndim < 1 || ndim > SR_MAX_DIMS || n < 0)
        rc = sr_fail(err, "invalid shape (rank %d)", ndim);
    else if (n == 0)    /* as LLM.int8: a loader wants a non-empty [out, in] */
        rc = sr_fail(err, "an empty tensor cannot be quantized");
    else if (!sr_bnb4_blocksize_ok(o.blocksize))
        rc = sr_fail(err, "invalid blocksize %d (32, 64, ..., 4096)", o.blocksize);
    else if ((unsigned)o.quant_type > SR_Q4_FP4 || (unsigned)o.rules > SR_RULES_CPU)
        rc = sr_fail(err, "invalid quant_type or rules");
    else if (o.storage != SR_U8 && o.storage != SR_I8 && o.storage != SR_F16 &&
             o.storage != SR_BF16 && o.storage != SR_F32 && o.storage != SR_F64)
        rc = sr_fail(err, "quant storage %s is not one of uint8, int8, float16, bfloat16, float32, float64",
                     sr_dtype_name(o.storage));
    else
        rc = bnb4_fill(weight_name, data, dtype, ndim, shape, n, &o, out, err);
    if (rc) {
        sr_fail_prefix(err, "tensor %s", weight_name);
        sr_qtensors_free(out);
    }
    return rc;
}

int sr_int8_quantize_tensor(const char *weight_name, const void *data, sr_dtype dtype, int ndim,
                            const int64_t *shape, sr_qtensors *out, sr_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(weight_name);
    int rc = 0;
    if (len <= 7 || strcmp(weight_name + len - 7, ".weight"))
        rc = sr_fail(err, "the name must end in \".weight\" (LLM.int8 stores <module>.SCB)");
    else if (!is_float_dtype(dtype))
        rc = sr_fail(err, "dtype %s cannot be quantized (F32, F16 or BF16 only)", sr_dtype_name(dtype));
    else if (ndim != 2 || shape[0] <= 0 || shape[1] <= 0 || shape_numel(2, shape) < 0)
        rc = sr_fail(err, "LLM.int8 needs a non-empty 2-D weight");
    if (!rc) {
        char *prefix = sr_strndup(weight_name, len - 7);
        int8_t *w = prefix ? add_tensor(out, weight_name, "", SR_I8, 2, shape,
                                        (uint64_t)(shape[0] * shape[1])) : NULL;
        float *scb = w ? add_tensor(out, prefix, ".SCB", SR_F32, 1, shape, (uint64_t)shape[0] * 4) : NULL;
        uint8_t *fmt = scb ? add_tensor(out, prefix, ".weight_format", SR_U8, 0, shape, 1) : NULL;
        sr_free(prefix);
        if (!fmt) rc = sr_fail(err, "out of memory");
        else rc = sr_int8_quantize(data, dtype, shape[0], shape[1], w, scb, err);
    }
    if (rc) {
        sr_fail_prefix(err, "tensor %s", weight_name);
        sr_qtensors_free(out);
    }
    return rc;
}
