/* sr_qmatrix_from_ckpt: detect and validate a stored weight format and fill
 * the matrix descriptor (bnb-format.md §3.3, §4.1). */
#include "quant/qload.h"

#include <stdio.h>
#include <string.h>

#include "quant/blockwise8.h"
#include "quant/bnb4.h"
#include "quant/quant_state.h"
#include "runtime/alloc.h"

#define NAME_MAX_LEN 1024

static const sr_tensor *find_suffix(const sr_checkpoint *ck, const char *base, const char *suffix)
{
    char name[NAME_MAX_LEN + 64];
    if (strlen(base) > NAME_MAX_LEN) return NULL;
    snprintf(name, sizeof name, "%s%s", base, suffix);
    return sr_ckpt_find(ck, name);
}

/* A tensor that must exist with a given dtype and element count. */
static int need(const sr_checkpoint *ck, const char *w, const char *suffix, sr_dtype dtype,
                int64_t numel, const sr_tensor **out, sr_error *err)
{
    const sr_tensor *t = find_suffix(ck, w, suffix);
    if (!t) return sr_fail(err, "tensor %s%s: missing", w, suffix);
    if (t->dtype != dtype)
        return sr_fail(err, "tensor %s%s: dtype %s, expected %s", w, suffix, sr_dtype_name(t->dtype),
                       sr_dtype_name(dtype));
    if (sr_tensor_numel(t) != numel)
        return sr_fail(err, "tensor %s%s: %lld elements, expected %lld", w, suffix,
                       (long long)sr_tensor_numel(t), (long long)numel);
    *out = t;
    return 0;
}

/* Copies n f32 values (mapping data may be unaligned) into a new buffer. */
static float *copy_f32(const void *src, int64_t n)
{
    float *p = sr_malloc_aligned((size_t)(n ? n : 1) * sizeof *p);
    if (p) memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}

static int load_bnb4(const sr_checkpoint *ck, const char *w, const sr_tensor *qst, sr_q4type qt,
                     sr_qmatrix *m, sr_error *err)
{
    const char *qsname = qst->name;
    if (qst->dtype != SR_U8 || qst->ndim != 1)
        return sr_fail(err, "tensor %s: dtype %s rank %d, expected 1-D U8 JSON bytes", qsname,
                       sr_dtype_name(qst->dtype), qst->ndim);
    sr_quant_state qs;
    if (sr_quant_state_parse(qst->data, (size_t)qst->nbytes, &qs, err))
        return sr_fail_prefix(err, "tensor %s", qsname);
    if (qs.quant_type != qt)
        return sr_fail(err, "tensor %s: field quant_type \"%s\" does not match the key suffix \"%s\"",
                       qsname, sr_q4type_name(qs.quant_type), sr_q4type_name(qt));
    if (!sr_bnb4_blocksize_ok(qs.blocksize))
        return sr_fail(err, "tensor %s: field blocksize %lld is not a bnb 4-bit blocksize (32..4096)",
                       qsname, (long long)qs.blocksize);
    if (qs.ndim != 2 || qs.shape[0] <= 0 || qs.shape[1] <= 0 || qs.shape[0] > INT64_MAX / 2 / qs.shape[1])
        return sr_fail(err, "tensor %s: field shape must be a non-empty 2-D [out, in] (rank %d)",
                       qsname, qs.ndim);

    const int64_t n = qs.shape[0] * qs.shape[1], nb = sr_bnb_nblocks(n, qs.blocksize);
    const sr_tensor *wt = sr_ckpt_find(ck, w);
    if (!wt) return sr_fail(err, "tensor %s: missing (its quant_state %s exists)", w, qsname);
    if ((int64_t)wt->nbytes < sr_bnb4_packed_bytes(n))
        return sr_fail(err, "tensor %s: %llu bytes of packed codes, shape [%lld, %lld] needs %lld", w,
                       (unsigned long long)wt->nbytes, (long long)qs.shape[0], (long long)qs.shape[1],
                       (long long)sr_bnb4_packed_bytes(n));
    const sr_tensor *qmap;
    if (need(ck, w, ".quant_map", SR_F32, 16, &qmap, err)) return -1;

    const sr_tensor *absmax, *nabs = find_suffix(ck, w, ".nested_absmax"), *nmap;
    if (!!nabs != qs.nested)
        return sr_fail(err, "tensor %s: %s", qs.nested ? qsname : w,
                       qs.nested ? "JSON has nested_* fields but the .nested_absmax tensor is missing"
                                 : "a .nested_absmax tensor exists but the JSON has no nested_* fields");
    float *scales;
    if (qs.nested) {
        int64_t nnb = sr_bnb_nblocks(nb, qs.nested_blocksize);
        if (need(ck, w, ".absmax", SR_U8, nb, &absmax, err) ||
            need(ck, w, ".nested_absmax", SR_F32, nnb, &nabs, err) ||
            need(ck, w, ".nested_quant_map", SR_F32, 256, &nmap, err))
            return -1;
        float *na = copy_f32(nabs->data, nnb), *map = copy_f32(nmap->data, 256);
        scales = sr_malloc_aligned((size_t)nb * sizeof *scales);
        if (na && map && scales)
            sr_dq_scales(absmax->data, nb, na, qs.nested_blocksize, map, qs.nested_offset, scales);
        sr_free_aligned(na);
        sr_free_aligned(map);
        if (!na || !map) {
            sr_free_aligned(scales);
            scales = NULL;
        }
    } else {
        if (need(ck, w, ".absmax", SR_F32, nb, &absmax, err)) return -1;
        scales = copy_f32(absmax->data, nb);
    }
    if (!scales) return sr_fail(err, "tensor %s: out of memory for %lld block scales", w, (long long)nb);

    m->fmt = qt == SR_Q4_NF4 ? SR_W_NF4 : SR_W_FP4;
    m->rows = qs.shape[0];
    m->cols = qs.shape[1];
    m->data = wt->data;
    m->blocksize = (int)qs.blocksize;
    m->scales = scales;
    m->owned[0] = scales;
    return 0;
}

static int load_int8(const sr_checkpoint *ck, const char *w, const sr_tensor *wt, sr_qmatrix *m,
                     sr_error *err)
{
    size_t len = strlen(w);
    if (len <= 7 || strcmp(w + len - 7, ".weight"))
        return sr_fail(err, "tensor %s: int8 weight whose name does not end in \".weight\"", w);
    if (wt->ndim != 2 || wt->shape[0] <= 0 || wt->shape[1] <= 0)
        return sr_fail(err, "tensor %s: int8 weight must be a non-empty 2-D [out, in]", w);
    char prefix[NAME_MAX_LEN];
    if (len - 7 >= sizeof prefix) return sr_fail(err, "tensor %s: name too long", w);
    memcpy(prefix, w, len - 7);
    prefix[len - 7] = 0;

    const sr_tensor *scb = find_suffix(ck, prefix, ".SCB");
    if (!scb)
        return sr_fail(err, "tensor %s: int8 weight without %s.SCB (LLM.int8 needs the row scales; "
                       "llm_int8_has_fp16_weight checkpoints store float weights)", w, prefix);
    if (scb->dtype != SR_F32 || sr_tensor_numel(scb) != wt->shape[0])
        return sr_fail(err, "tensor %s.SCB: dtype %s with %lld elements, expected F32 with %lld", prefix,
                       sr_dtype_name(scb->dtype), (long long)sr_tensor_numel(scb),
                       (long long)wt->shape[0]);
    const sr_tensor *wf = find_suffix(ck, prefix, ".weight_format");
    if (wf) {
        int64_t v = -1;
        if (sr_tensor_numel(wf) != 1 ||
            (wf->dtype != SR_U8 && wf->dtype != SR_I8 && wf->dtype != SR_I32 && wf->dtype != SR_I64))
            return sr_fail(err, "tensor %s.weight_format: expected one integer, got %s with %lld elements",
                           prefix, sr_dtype_name(wf->dtype), (long long)sr_tensor_numel(wf));
        if (wf->dtype == SR_U8) v = *(const uint8_t *)wf->data;
        else if (wf->dtype == SR_I8) v = *(const int8_t *)wf->data;
        else if (wf->dtype == SR_I32) { int32_t x; memcpy(&x, wf->data, 4); v = x; }
        else memcpy(&v, wf->data, 8);
        if (v != 0)
            return sr_fail(err, "tensor %s.weight_format: value %lld (%s) is a legacy tiled layout; "
                           "only 0 (row) is supported", prefix, (long long)v,
                           v == 1 ? "col32" : v == 2 ? "col_turing" : v == 3 ? "col_ampere" : "unknown");
    }
    float *s = copy_f32(scb->data, wt->shape[0]);
    if (!s) return sr_fail(err, "tensor %s.SCB: out of memory", prefix);
    m->fmt = SR_W_INT8;
    m->rows = wt->shape[0];
    m->cols = wt->shape[1];
    m->data = wt->data;
    m->scb = s;
    m->owned[0] = s;
    return 0;
}

static int load_float(const char *w, const sr_tensor *wt, sr_qmatrix *m, sr_error *err)
{
    if (wt->ndim != 2 || wt->shape[0] <= 0 || wt->shape[1] <= 0)
        return sr_fail(err, "tensor %s: a weight must be a non-empty 2-D [out, in], got rank %d", w,
                       wt->ndim);
    m->fmt = wt->dtype == SR_F32 ? SR_W_F32 : wt->dtype == SR_BF16 ? SR_W_BF16 : SR_W_F16;
    m->rows = wt->shape[0];
    m->cols = wt->shape[1];
    m->data = wt->data;
    /* The kernels read whole elements: give them an aligned copy if the
     * file placed the tensor at an odd offset. */
    size_t isz = sr_dtype_size(wt->dtype);
    if ((uintptr_t)wt->data % isz) {
        void *c = sr_malloc_aligned((size_t)wt->nbytes);
        if (!c) return sr_fail(err, "tensor %s: out of memory for an aligned copy", w);
        memcpy(c, wt->data, (size_t)wt->nbytes);
        m->data = c;
        m->owned[0] = c;
    }
    return 0;
}

int sr_qmatrix_from_ckpt(const sr_checkpoint *ck, const char *weight_name, sr_qmatrix *out,
                         sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (strlen(weight_name) > NAME_MAX_LEN)
        return sr_fail(err, "tensor name too long (%zu bytes)", strlen(weight_name));
    const sr_tensor *qs_nf4 = find_suffix(ck, weight_name, ".quant_state.bitsandbytes__nf4");
    const sr_tensor *qs_fp4 = find_suffix(ck, weight_name, ".quant_state.bitsandbytes__fp4");
    int rc;
    if (qs_nf4 && qs_fp4) {
        rc = sr_fail(err, "tensor %s: both an nf4 and an fp4 quant_state are present", weight_name);
    } else if (qs_nf4 || qs_fp4) {
        rc = load_bnb4(ck, weight_name, qs_nf4 ? qs_nf4 : qs_fp4, qs_nf4 ? SR_Q4_NF4 : SR_Q4_FP4,
                       out, err);
    } else {
        const sr_tensor *wt = sr_ckpt_find(ck, weight_name);
        if (!wt) rc = sr_fail(err, "tensor %s: not found", weight_name);
        else if (wt->dtype == SR_I8) rc = load_int8(ck, weight_name, wt, out, err);
        else if (wt->dtype == SR_F32 || wt->dtype == SR_BF16 || wt->dtype == SR_F16)
            rc = load_float(weight_name, wt, out, err);
        else if (wt->dtype == SR_U8 && find_suffix(ck, weight_name, ".absmax"))
            rc = sr_fail(err, "tensor %s: packed 4-bit weight without a "
                         ".quant_state.bitsandbytes__nf4|fp4 tensor", weight_name);
        else
            rc = sr_fail(err, "tensor %s: dtype %s is not a weight format (F32, BF16, F16, bnb 4-bit, "
                         "LLM.int8)", weight_name, sr_dtype_name(wt->dtype));
    }
    if (rc) {
        for (int i = 0; i < 2; i++) sr_free(out->owned[i]);
        memset(out, 0, sizeof *out);
    }
    return rc;
}
