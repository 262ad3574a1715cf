/* bnb quant_state JSON: strict parser (jansson) and byte-exact writer. */
#include "quant/quant_state.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sr_format_pyfloat(double v, char *buf, size_t cap)
{
    if (isnan(v)) { snprintf(buf, cap, "NaN"); return; }
    if (isinf(v)) { snprintf(buf, cap, "%s", v < 0 ? "-Infinity" : "Infinity"); return; }
    if (v == 0.0) { snprintf(buf, cap, "%s", signbit(v) ? "-0.0" : "0.0"); return; }

    /* Shortest digit count that converts back to the same double. */
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = [-]d[.ddd]e(+|-)XX: collect the digits and the exponent. */
    char dig[24];
    int nd = 0, neg = e[0] == '-';
    const char *s = e + neg;
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s)) dig[nd++] = *s;
    int exp10 = atoi(s + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    int decpt = exp10 + 1;      /* v = 0.DIGITS * 10^decpt */

    char out[64];
    size_t k = 0;
    if (neg) out[k++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -decpt; i++) out[k++] = '0';
            for (int i = 0; i < nd; i++) out[k++] = dig[i];
        } else if (decpt >= nd) {
            for (int i = 0; i < nd; i++) out[k++] = dig[i];
            for (int i = nd; i < decpt; i++) out[k++] = '0';
            out[k++] = '.';
            out[k++] = '0';
        } else {
            for (int i = 0; i < nd; i++) {
                if (i == decpt) out[k++] = '.';
                out[k++] = dig[i];
            }
        }
        out[k] = 0;
    } else {
        out[k++] = dig[0];
        if (nd > 1) {
            out[k++] = '.';
            for (int i = 1; i < nd; i++) out[k++] = dig[i];
        }
        snprintf(out + k, sizeof out - k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, cap, "%s", out);
}

/* Float dtypes by the torch attribute names getattr(torch, name) accepts. */
static int parse_float_dtype(const char *s, sr_dtype *out)
{
    static const struct { const char *name; sr_dtype t; } names[] = {
        {"float32", SR_F32}, {"float", SR_F32}, {"float16", SR_F16}, {"half", SR_F16},
        {"bfloat16", SR_BF16},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i].name)) { *out = names[i].t; return 0; }
    return -1;
}

/* Far above any real blocksize; keeps block counts free of overflow. */
#define SR_QS_MAX_BLOCKSIZE ((json_int_t)1 << 30)

static const char *const known_keys[] = {
    "quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset",
};

static int parse_fields(json_t *root, sr_quant_state *qs, sr_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        size_t i = 0;
        while (i < sizeof known_keys / sizeof *known_keys && strcmp(key, known_keys[i])) i++;
        if (i == sizeof known_keys / sizeof *known_keys)
            return sr_fail(err, "unknown key \"%s\" (bnb accepts quant_type, blocksize, dtype, shape, "
                           "nested_blocksize, nested_dtype, nested_offset)", key);
    }
    static const char *const required[] = {"quant_type", "blocksize", "dtype", "shape"};
    for (size_t i = 0; i < 4; i++)
        if (!json_object_get(root, required[i]))
            return sr_fail(err, "missing key \"%s\"", required[i]);

    v = json_object_get(root, "quant_type");
    if (!json_is_string(v) || sr_q4type_parse(json_string_value(v), &qs->quant_type))
        return sr_fail(err, "key \"quant_type\": expected \"nf4\" or \"fp4\"");
    v = json_object_get(root, "blocksize");
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > SR_QS_MAX_BLOCKSIZE)
        return sr_fail(err, "key \"blocksize\": expected a positive integer (at most 2^30)");
    qs->blocksize = json_integer_value(v);
    v = json_object_get(root, "dtype");
    if (!json_is_string(v) || parse_float_dtype(json_string_value(v), &qs->dtype))
        return sr_fail(err, "key \"dtype\": expected \"float32\", \"float16\" or \"bfloat16\"");
    v = json_object_get(root, "shape");
    if (!json_is_array(v) || json_array_size(v) > SR_MAX_DIMS)
        return sr_fail(err, "key \"shape\": expected a list of at most %d integers", SR_MAX_DIMS);
    qs->ndim = (int)json_array_size(v);
    for (int i = 0; i < qs->ndim; i++) {
        json_t *d = json_array_get(v, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sr_fail(err, "key \"shape\": dimension %d is not a non-negative integer", i);
        qs->shape[i] = json_integer_value(d);
    }

    static const char *const nested[] = {"nested_blocksize", "nested_dtype", "nested_offset"};
    int present = 0;
    for (int i = 0; i < 3; i++) present += json_object_get(root, nested[i]) != NULL;
    if (present == 0) return 0;
    for (int i = 0; i < 3; i++)
        if (!json_object_get(root, nested[i]))
            return sr_fail(err, "missing key \"%s\" (double quantization needs nested_blocksize, "
                           "nested_dtype and nested_offset)", nested[i]);
    qs->nested = 1;
    v = json_object_get(root, "nested_blocksize");
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > SR_QS_MAX_BLOCKSIZE)
        return sr_fail(err, "key \"nested_blocksize\": expected a positive integer (at most 2^30)");
    qs->nested_blocksize = json_integer_value(v);
    v = json_object_get(root, "nested_dtype");
    if (!json_is_string(v) || parse_float_dtype(json_string_value(v), &qs->nested_dtype) ||
        qs->nested_dtype != SR_F32)
        return sr_fail(err, "key \"nested_dtype\": expected \"float32\"");
    v = json_object_get(root, "nested_offset");
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return sr_fail(err, "key \"nested_offset\": expected a finite number");
    qs->nested_offset = (float)json_number_value(v);
    if (!isfinite(qs->nested_offset))
        return sr_fail(err, "key \"nested_offset\": %g overflows float32", json_number_value(v));
    return 0;
}

int sr_quant_state_parse(const void *json, size_t len, sr_quant_state *out, sr_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return sr_fail(err, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
    int rc;
    if (!json_is_object(root)) rc = sr_fail(err, "expected a JSON object");
    else rc = parse_fields(root, out, err);
    json_decref(root);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

int sr_quant_state_format(const sr_quant_state *qs, char *buf, size_t cap, sr_error *err)
{
    if ((unsigned)qs->quant_type > SR_Q4_FP4) return sr_fail(err, "invalid quant_type");
    if (qs->dtype != SR_F32 && qs->dtype != SR_F16 && qs->dtype != SR_BF16)
        return sr_fail(err, "dtype %s is not a 4-bit source dtype", sr_dtype_name(qs->dtype));
    if (qs->ndim < 0 || qs->ndim > SR_MAX_DIMS) return sr_fail(err, "invalid rank %d", qs->ndim);
    if (qs->nested && !isfinite(qs->nested_offset)) return sr_fail(err, "nested_offset is not finite");
    if (qs->nested && qs->nested_dtype != SR_F32)
        return sr_fail(err, "nested_dtype %s is not float32", sr_dtype_name(qs->nested_dtype));

    char tmp[512];
    int k = snprintf(tmp, sizeof tmp, "{\"quant_type\": \"%s\", \"blocksize\": %lld, \"dtype\": \"%s\", "
                     "\"shape\": [", sr_q4type_name(qs->quant_type), (long long)qs->blocksize,
                     sr_dtype_torch_name(qs->dtype));
    for (int i = 0; i < qs->ndim; i++)
        k += snprintf(tmp + k, sizeof tmp - (size_t)k, "%s%lld", i ? ", " : "", (long long)qs->shape[i]);
    k += snprintf(tmp + k, sizeof tmp - (size_t)k, "]");
    if (qs->nested) {
        char off[40];
        sr_format_pyfloat((double)qs->nested_offset, off, sizeof off);
        k += snprintf(tmp + k, sizeof tmp - (size_t)k,
                      ", \"nested_blocksize\": %lld, \"nested_dtype\": \"%s\", \"nested_offset\": %s",
                      (long long)qs->nested_blocksize, sr_dtype_torch_name(qs->nested_dtype), off);
    }
    k += snprintf(tmp + k, sizeof tmp - (size_t)k, "}");
    if ((size_t)k >= cap) return sr_fail(err, "quant_state JSON of %d bytes does not fit", k);
    memcpy(buf, tmp, (size_t)k + 1);
    return k;
}
