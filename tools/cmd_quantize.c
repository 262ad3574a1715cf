/* `strata quantize IN.safetensors OUT.safetensors --type nf4|fp4|int8
 *  [--double-quant] [--blocksize N] [--rules cuda|cpu] [--storage DTYPE]`
 *
 * Quantizes every 2-D float tensor of one safetensors file into the bnb
 * tensors of bnb-format.md §3.1 / §4.1 and copies every other tensor
 * unchanged.  A tool for single files and tests; whole model directories
 * go through `strata convert`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qwrite.h"
#include "runtime/alloc.h"
#include "runtime/safetensors.h"
#include "runtime/safetensors_write.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: strata quantize IN.safetensors OUT.safetensors --type nf4|fp4|int8\n"
            "                       [--double-quant] [--blocksize N] [--rules cuda|cpu]\n"
            "                       [--storage uint8|int8|float16|bfloat16|float32|float64]\n"
            "  Quantizes every 2-D F32/F16/BF16 tensor the way bitsandbytes stores it\n"
            "  (4-bit: blocksize 64 by default; --rules cuda, the default, matches\n"
            "  GPU-quantized checkpoints, --rules cpu matches bnb >= 0.50 on a CPU).\n"
            "  int8 (LLM.int8) quantizes only tensors named *.weight.  Other tensors\n"
            "  are copied unchanged.\n");
}

static int is_candidate(const sr_tensor *t)
{
    return t->ndim == 2 && (t->dtype == SR_F32 || t->dtype == SR_F16 || t->dtype == SR_BF16);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static sr_st_entry entry_of(const char *name, sr_dtype dtype, int ndim, const int64_t *shape,
                            const void *data)
{
    sr_st_entry e;
    memset(&e, 0, sizeof e);
    e.name = name;
    e.dtype = dtype;
    e.ndim = ndim;
    for (int i = 0; i < ndim; i++) e.shape[i] = shape[i];
    e.data = data;
    return e;
}

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL;
    sr_bnb4_options o = sr_bnb4_defaults();
    const char *four_bit_only = NULL;   /* the last option LLM.int8 has no use for */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--double-quant")) { o.double_quant = 1; four_bit_only = a; continue; }
        if (!strcmp(a, "--type") || !strcmp(a, "--blocksize") || !strcmp(a, "--rules") ||
            !strcmp(a, "--storage")) {
            if (++i == argc) {
                fprintf(stderr, "strata quantize: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[i];
            char *end;
            if (strcmp(a, "--type")) four_bit_only = a;
            if (!strcmp(a, "--type")) {
                type = v;
            } else if (!strcmp(a, "--blocksize")) {
                long bs = strtol(v, &end, 10);
                if (*end || !sr_bnb4_blocksize_ok(bs)) {
                    fprintf(stderr, "strata quantize: --blocksize %s: expected 32, 64, ..., 4096\n", v);
                    return 2;
                }
                o.blocksize = (int)bs;
            } else if (!strcmp(a, "--rules")) {
                if (sr_bnb_rules_parse(v, &o.rules)) {
                    fprintf(stderr, "strata quantize: --rules %s: expected cuda or cpu\n", v);
                    return 2;
                }
            } else if (sr_dtype_from_torch(v, &o.storage)) {
                fprintf(stderr, "strata quantize: --storage %s: unknown dtype\n", v);
                return 2;
            }
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "strata quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!in) in = a;
        else if (!out) out = a;
        else { usage(stderr); return 2; }
    }
    int int8 = type && !strcmp(type, "int8");
    if (!in || !out || !type || (!int8 && sr_q4type_parse(type, &o.quant_type))) {
        if (type && !int8) fprintf(stderr, "strata quantize: --type %s: expected nf4, fp4 or int8\n", type);
        usage(stderr);
        return 2;
    }
    if (int8 && four_bit_only) {
        fprintf(stderr, "strata quantize: %s applies to nf4/fp4 only\n", four_bit_only);
        return 2;
    }

    sr_error err;
    sr_st_file *f = NULL;
    if (sr_st_open(in, &f, &err)) {
        fprintf(stderr, "strata quantize: %s\n", err.msg);
        return 1;
    }
    size_t n = sr_st_count(f), nq = 0, ne = 0;
    sr_qtensors *q = sr_calloc(n ? n : 1, sizeof *q);
    sr_st_entry *e = sr_calloc((n ? n : 1) * SR_QTENSORS_MAX, sizeof *e);
    int rc = 1;
    uint64_t bytes_in = 0, bytes_out = 0;
    if (!q || !e) {
        fprintf(stderr, "strata quantize: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const sr_tensor *t = sr_st_get(f, i);
        int quantize = is_candidate(t) && (!int8 || ends_with(t->name, ".weight"));
        if (!quantize) {
            if (int8 && is_candidate(t))
                fprintf(stderr, "strata quantize: %s: not a *.weight tensor, copied as is\n", t->name);
            e[ne++] = entry_of(t->name, t->dtype, t->ndim, t->shape, t->data);
            continue;
        }
        int r = int8 ? sr_int8_quantize_tensor(t->name, t->data, t->dtype, t->ndim, t->shape, &q[nq], &err)
                     : sr_bnb4_quantize_tensor(t->name, t->data, t->dtype, t->ndim, t->shape, &o,
                                               &q[nq], &err);
        if (r) {
            fprintf(stderr, "strata quantize: %s: %s\n", in, err.msg);
            goto out;
        }
        bytes_in += t->nbytes;
        for (size_t k = 0; k < q[nq].count; k++) {
            const sr_qtensor *qt = &q[nq].t[k];
            e[ne++] = entry_of(qt->name, qt->dtype, qt->ndim, qt->shape, qt->data);
            bytes_out += qt->nbytes;
        }
        nq++;
    }
    if (sr_st_write(out, e, ne, &err)) {
        fprintf(stderr, "strata quantize: %s\n", err.msg);
        goto out;
    }
    char a[32], b[32];
    printf("%s: quantized %zu of %zu tensors to %s (%s -> %s), wrote %s\n", in, nq, n,
           int8 ? "int8" : sr_q4type_name(o.quant_type), cli_fmt_bytes(bytes_in, a, sizeof a),
           cli_fmt_bytes(bytes_out, b, sizeof b), out);
    rc = 0;
out:
    for (size_t i = 0; q && i < nq; i++) sr_qtensors_free(&q[i]);
    sr_free(q);
    sr_free(e);
    sr_st_close(f);
    return rc;
}
