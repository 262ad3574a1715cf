/* Every golden case of tests/data/bnb (produced by the real bitsandbytes
 * code, see its README.md) reproduced bit for bit by quant/: tables, the
 * dynamic map, 4-bit quantization under both rule sets, double
 * quantization, quant_state JSON bytes, dequantization, 8-bit blockwise and
 * LLM.int8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "bnb_golden.h"
#include "quant/blockwise8.h"
#include "quant/bnb4.h"
#include "quant/dynamic_map.h"
#include "quant/llm_int8.h"
#include "quant/quant_state.h"
#include "quant/qwrite.h"
#include "runtime/dtype.h"

static golden G;

static int setup(void **state)
{
    (void)state;
    return golden_open(&G);
}

static int teardown(void **state)
{
    (void)state;
    golden_close(&G);
    return 0;
}

static const void *arr(const char *name, size_t *nbytes)
{
    const void *p = golden_array(&G, name, nbytes, NULL);
    if (!p) fprintf(stderr, "golden array %s missing\n", name);
    assert_non_null(p);
    return p;
}

static sr_dtype manifest_dtype(const char *s)
{
    sr_dtype t;
    assert_int_equal(sr_dtype_from_torch(s, &t), 0);
    return t;
}

static float f32_at(const void *p, size_t i)
{
    float f;
    memcpy(&f, (const unsigned char *)p + 4 * i, 4);
    return f;
}

/* Nibble j of packed 4-bit codes (even element = high nibble). */
static unsigned nibble(const uint8_t *p, int64_t j) { return (p[j >> 1] >> ((j & 1) ? 0 : 4)) & 15; }

/* ---- tables -------------------------------------------------------------- */

static void test_tables(void **state)
{
    (void)state;
    size_t nb;
    assert_int_equal(golden_cmp_f32("nf4_code", sr_bnb4_table(SR_Q4_NF4), arr("tables/nf4_code", &nb), 16), 0);
    assert_int_equal(golden_cmp_f32("fp4_code", sr_bnb4_table(SR_Q4_FP4), arr("tables/fp4_code", &nb), 16), 0);

    /* The kernels' dequantization of each code at scale 1. */
    uint8_t packed[8];
    for (int i = 0; i < 8; i++) packed[i] = (uint8_t)((2 * i) << 4 | (2 * i + 1));
    float one = 1.0f, out[16];
    sr_bnb4_dequantize(packed, &one, 16, 64, SR_Q4_NF4, out);
    assert_int_equal(golden_cmp_f32("nf4_kernel_lut", out, arr("tables/nf4_kernel_lut", &nb), 16), 0);
    sr_bnb4_dequantize(packed, &one, 16, 64, SR_Q4_FP4, out);
    assert_int_equal(golden_cmp_f32("fp4_kernel_lut", out, arr("tables/fp4_kernel_lut", &nb), 16), 0);
}

/* A threshold t separates codes lo/hi exactly when y = t still gives lo and
 * the next float above gives hi (decisions are "y > t"). */
static void check_boundary(sr_q4type qt, sr_bnb_rules r, float t, unsigned lo, unsigned hi)
{
    unsigned a = sr_bnb4_code(qt, r, t), b = sr_bnb4_code(qt, r, nextafterf(t, INFINITY));
    if (a != lo || b != hi)
        fprintf(stderr, "%s/%s boundary %.9g: codes %u/%u, want %u/%u\n", sr_q4type_name(qt),
                sr_bnb_rules_name(r), (double)t, a, b, lo, hi);
    assert_int_equal(a, lo);
    assert_int_equal(b, hi);
}

static void test_decision_thresholds(void **state)
{
    (void)state;
    size_t nb;
    const void *nf4_cpu = arr("tables/nf4_cpu_midpoints", &nb);
    const void *nf4_cuda = arr("tables/nf4_cuda_thresholds", &nb);
    const void *fp4_cpu = arr("tables/fp4_cpu_midpoints_sorted", &nb);
    const void *fp4_order = arr("tables/fp4_sorted_order", &nb);
    const void *fp4_cuda = arr("tables/fp4_cuda_thresholds_abs", &nb);

    /* The CUDA literals come in decision-tree order: sort them. */
    float cuda_sorted[15];
    for (unsigned k = 0; k < 15; k++) cuda_sorted[k] = f32_at(nf4_cuda, k);
    for (unsigned k = 1; k < 15; k++)
        for (unsigned j = k; j > 0 && cuda_sorted[j - 1] > cuda_sorted[j]; j--) {
            float t = cuda_sorted[j];
            cuda_sorted[j] = cuda_sorted[j - 1];
            cuda_sorted[j - 1] = t;
        }
    for (unsigned k = 0; k < 15; k++) {
        check_boundary(SR_Q4_NF4, SR_RULES_CPU, f32_at(nf4_cpu, k), k, k + 1);
        check_boundary(SR_Q4_NF4, SR_RULES_CUDA, cuda_sorted[k], k, k + 1);
    }
    int64_t order[16];
    memcpy(order, fp4_order, sizeof order);
    for (unsigned k = 0; k < 15; k++)
        check_boundary(SR_Q4_FP4, SR_RULES_CPU, f32_at(fp4_cpu, k), (unsigned)order[k],
                       (unsigned)order[k + 1]);
    /* CUDA FP4 thresholds are on |y| (source order, not necessarily sorted):
     * on the threshold the smaller magnitude wins on both signs. */
    for (unsigned k = 0; k < 7; k++) {
        float t = f32_at(fp4_cuda, k);
        unsigned lo = sr_bnb4_code(SR_Q4_FP4, SR_RULES_CUDA, t);
        unsigned hi = sr_bnb4_code(SR_Q4_FP4, SR_RULES_CUDA, nextafterf(t, INFINITY));
        assert_true(sr_bnb4_table(SR_Q4_FP4)[hi] > sr_bnb4_table(SR_Q4_FP4)[lo]);
        assert_int_equal(sr_bnb4_code(SR_Q4_FP4, SR_RULES_CUDA, -t), lo | 8);
        assert_int_equal(sr_bnb4_code(SR_Q4_FP4, SR_RULES_CUDA, -nextafterf(t, INFINITY)), hi | 8);
    }
    /* NaN goes to code 0 in both CUDA decision functions. */
    assert_int_equal(sr_bnb4_code(SR_Q4_NF4, SR_RULES_CUDA, NAN), 0);
    assert_int_equal(sr_bnb4_code(SR_Q4_FP4, SR_RULES_CUDA, NAN), 0);
}

static void test_dynamic_map(void **state)
{
    (void)state;
    float map[256];
    size_t nb;
    sr_dynamic_map(map);
    assert_int_equal(golden_cmp_f32("dynamic_map", map, arr("tables/dynamic_map", &nb), 256), 0);
    /* And the spec's reference values at a few places. */
    assert_int_equal(golden_f32_bits(map[0]), 0xbf7e3333u);
    assert_int_equal(golden_f32_bits(map[127]), 0u);
    assert_int_equal(golden_f32_bits(map[200]), 0x3e6f3333u);
    assert_int_equal(golden_f32_bits(map[255]), 0x3f800000u);
}

/* ---- quantize_4bit cases -------------------------------------------------- */

typedef struct q4case {
    const char *id;
    sr_q4type qt;
    int bs, dq;
    sr_dtype in_dtype, storage;
    int64_t shape[2];
    int ndim;
    int64_t n, nb;
    const void *x;
    float offset;       /* DQ: the stored offset (nested_offset_f32_hex) */
} q4case;

static void load_q4case(json_t *c, q4case *k)
{
    memset(k, 0, sizeof *k);
    json_t *p = json_object_get(c, "params");
    k->id = json_string_value(json_object_get(c, "id"));
    assert_int_equal(sr_q4type_parse(json_string_value(json_object_get(p, "quant_type")), &k->qt), 0);
    k->bs = (int)json_integer_value(json_object_get(p, "blocksize"));
    k->dq = json_is_true(json_object_get(p, "compress_statistics"));
    k->in_dtype = manifest_dtype(json_string_value(json_object_get(p, "input_dtype")));
    k->storage = manifest_dtype(json_string_value(json_object_get(p, "quant_storage")));
    json_t *shape = json_object_get(p, "shape");
    k->ndim = (int)json_array_size(shape);
    assert_int_equal(k->ndim, 2);
    k->n = 1;
    for (int i = 0; i < k->ndim; i++) k->n *= (k->shape[i] = json_integer_value(json_array_get(shape, (size_t)i)));
    k->nb = sr_bnb_nblocks(k->n, k->bs);
    size_t nbytes;
    k->x = arr(json_string_value(json_object_get(c, "input")), &nbytes);
    assert_int_equal(nbytes, (size_t)k->n * sr_dtype_size(k->in_dtype));
    if (k->dq) {
        unsigned long u = strtoul(json_string_value(json_object_get(c, "nested_offset_f32_hex")), NULL, 16);
        uint32_t bits = (uint32_t)u;
        memcpy(&k->offset, &bits, 4);
    }
}

/* CPU rules: packed codes, absmax, nested tensors, exactly as bnb. */
static size_t check_q4_cpu(json_t *c, const q4case *k)
{
    size_t bad = 0, nbytes;
    char what[256];
    uint8_t *packed = malloc((size_t)sr_bnb4_packed_bytes(k->n));
    float *absmax = malloc((size_t)k->nb * 4);
    sr_error err;
    assert_int_equal(sr_bnb4_quantize(k->x, k->in_dtype, k->n, k->bs, k->qt, SR_RULES_CPU, packed,
                                      absmax, &err), 0);
    snprintf(what, sizeof what, "%s cpu weight", k->id);
    const void *w = arr(golden_output(c, "weight"), &nbytes);
    assert_int_equal(nbytes, (size_t)sr_bnb4_packed_bytes(k->n));
    bad += golden_cmp_bytes(what, packed, w, nbytes);

    const void *ga = arr(golden_output(c, "weight.absmax"), &nbytes);
    if (!k->dq) {
        snprintf(what, sizeof what, "%s cpu absmax", k->id);
        bad += golden_cmp_f32(what, absmax, ga, (size_t)k->nb);
    } else {
        /* The offset is the STORED one (spec §2.1 step 2 and §9: bnb's
         * torch mean on the CPU may differ from a double-precision mean by
         * 1-2 ulp, so the golden codes can only be reproduced from the
         * stored value), fed through
         * sr_dq_quantize; everything downstream must then match exactly. */
        float map[256];
        sr_dynamic_map(map);
        int64_t nnb = sr_bnb_nblocks(k->nb, 256);
        uint8_t *qabs = malloc((size_t)k->nb);
        float *nabs = malloc((size_t)nnb * 4);
        assert_int_equal(sr_dq_quantize(absmax, k->nb, k->offset, map, SR_RULES_CPU, qabs, nabs, &err), 0);
        snprintf(what, sizeof what, "%s cpu qabs", k->id);
        bad += golden_cmp_bytes(what, qabs, ga, (size_t)k->nb);
        snprintf(what, sizeof what, "%s nested_absmax", k->id);
        bad += golden_cmp_f32(what, nabs, arr(golden_output(c, "weight.nested_absmax"), &nbytes), (size_t)nnb);
        snprintf(what, sizeof what, "%s nested_quant_map", k->id);
        bad += golden_cmp_f32(what, map, arr(golden_output(c, "weight.nested_quant_map"), &nbytes), 256);
        /* Our own offset (double mean) stays within 2 ulp of bnb's. */
        float own = sr_dq_offset(absmax, k->nb);
        int64_t d = (int64_t)golden_f32_bits(own) - (int64_t)golden_f32_bits(k->offset);
        if (d < -2 || d > 2) {
            fprintf(stderr, "%s: offset %.9g vs stored %.9g\n", k->id, (double)own, (double)k->offset);
            bad++;
        }
        free(qabs);
        free(nabs);
    }
    snprintf(what, sizeof what, "%s quant_map", k->id);
    bad += golden_cmp_f32(what, sr_bnb4_table(k->qt), arr(golden_output(c, "weight.quant_map"), &nbytes), 16);
    free(packed);
    free(absmax);
    return bad;
}

/* The writer helper: every checkpoint tensor (name, dtype, shape, bytes)
 * and the quant_state JSON bytes. */
static size_t check_q4_tensors(json_t *c, const q4case *k)
{
    sr_bnb4_options o = sr_bnb4_defaults();
    o.quant_type = k->qt;
    o.blocksize = k->bs;
    o.double_quant = k->dq;
    o.rules = SR_RULES_CPU;
    o.storage = k->storage;
    o.use_offset = k->dq;       /* the stored offset, see check_q4_cpu */
    o.offset = k->offset;
    sr_qtensors q;
    sr_error err;
    if (sr_bnb4_quantize_tensor("weight", k->x, k->in_dtype, k->ndim, k->shape, &o, &q, &err)) {
        fprintf(stderr, "%s: %s\n", k->id, err.msg);
        fail();
    }
    size_t bad = 0;
    const char *keys[] = {"weight", "weight.absmax", "weight.quant_map", "weight.nested_absmax",
                          "weight.nested_quant_map"};
    size_t expected = 0;
    for (size_t i = 0; i < 5; i++) {
        const char *an = golden_output(c, keys[i]);
        if (!an) continue;
        expected++;
        const sr_qtensor *t = sr_qtensors_find(&q, keys[i]);
        json_t *meta = json_object_get(G.arrays, an);
        size_t nbytes;
        const void *want = arr(an, &nbytes);
        if (!t) {
            fprintf(stderr, "%s: tensor %s not produced\n", k->id, keys[i]);
            bad++;
            continue;
        }
        json_t *shape = json_object_get(meta, "shape");
        int shape_ok = t->ndim == (int)json_array_size(shape);
        for (int d = 0; shape_ok && d < t->ndim; d++)
            shape_ok = t->shape[d] == json_integer_value(json_array_get(shape, (size_t)d));
        if (t->dtype != manifest_dtype(json_string_value(json_object_get(meta, "dtype"))) || !shape_ok ||
            t->nbytes != nbytes || memcmp(t->data, want, nbytes)) {
            fprintf(stderr, "%s: tensor %s differs (dtype %s, %llu bytes)\n", k->id, keys[i],
                    sr_dtype_name(t->dtype), (unsigned long long)t->nbytes);
            bad++;
        }
    }
    const char *json = json_string_value(json_object_get(c, "quant_state_json"));
    const sr_qtensor *js = sr_qtensors_find(&q, json_string_value(json_object_get(c, "quant_state_key")));
    if (!js || js->dtype != SR_U8 || js->nbytes != strlen(json) || memcmp(js->data, json, js->nbytes) ||
        strcmp(q.json, json)) {
        fprintf(stderr, "%s: quant_state JSON\n  got  %s\n  want %s\n", k->id, q.json, json);
        bad++;
    }
    assert_int_equal(q.count, expected + 1);
    sr_qtensors_free(&q);
    return bad;
}

/* CUDA rules against bnb's CUDA decision functions (host-compiled). */
static size_t check_q4_cuda(json_t *c, const q4case *k)
{
    const char *an = golden_output(c, "weight_cuda_rule_emulated");
    if (!an) return 0;
    size_t nbytes;
    const void *want = arr(an, &nbytes);
    uint8_t *packed = malloc((size_t)sr_bnb4_packed_bytes(k->n));
    float *absmax = malloc((size_t)k->nb * 4);
    sr_error err;
    assert_int_equal(sr_bnb4_quantize(k->x, k->in_dtype, k->n, k->bs, k->qt, SR_RULES_CUDA, packed,
                                      absmax, &err), 0);
    char what[256];
    snprintf(what, sizeof what, "%s cuda weight", k->id);
    size_t bad = golden_cmp_bytes(what, packed, want, nbytes);
    free(packed);
    free(absmax);
    return bad;
}

/* Dequantization from the stored tensors: scales (§2.4 with the stored map
 * and the offset parsed from the JSON) and values, bit-exact. */
static size_t check_q4_dequant(json_t *c, const q4case *k)
{
    size_t bad = 0, nbytes;
    char what[256];
    const char *json = json_string_value(json_object_get(c, "quant_state_json"));
    sr_quant_state qs;
    sr_error err;
    assert_int_equal(sr_quant_state_parse(json, strlen(json), &qs, &err), 0);
    assert_int_equal(qs.quant_type, k->qt);
    assert_int_equal(qs.blocksize, k->bs);
    assert_int_equal(qs.dtype, k->in_dtype);
    assert_int_equal(qs.nested, k->dq);
    char again[512];
    assert_int_equal(sr_quant_state_format(&qs, again, sizeof again, &err), (int)strlen(json));
    assert_string_equal(again, json);

    float *scales = malloc((size_t)k->nb * 4);
    const void *ga = arr(golden_output(c, "weight.absmax"), &nbytes);
    if (k->dq) {
        assert_int_equal(golden_f32_bits(qs.nested_offset), golden_f32_bits(k->offset));
        int64_t nnb = sr_bnb_nblocks(k->nb, qs.nested_blocksize);
        float *nabs = malloc((size_t)nnb * 4), map[256];
        memcpy(nabs, arr(golden_output(c, "weight.nested_absmax"), &nbytes), (size_t)nnb * 4);
        memcpy(map, arr(golden_output(c, "weight.nested_quant_map"), &nbytes), sizeof map);
        sr_dq_scales(ga, k->nb, nabs, qs.nested_blocksize, map, qs.nested_offset, scales);
        snprintf(what, sizeof what, "%s block_scales_f32", k->id);
        bad += golden_cmp_f32(what, scales, arr(golden_output(c, "block_scales_f32"), &nbytes), (size_t)k->nb);
        free(nabs);
    } else {
        memcpy(scales, ga, (size_t)k->nb * 4);
    }
    const uint8_t *w = arr(golden_output(c, "weight"), &nbytes);
    float *out = malloc((size_t)k->n * 4);
    sr_bnb4_dequantize(w, scales, k->n, k->bs, k->qt, out);
    const char *f32name = golden_output(c, "dequant_f32");
    snprintf(what, sizeof what, "%s dequant_f32", k->id);
    bad += golden_cmp_f32(what, out, arr(f32name ? f32name : golden_output(c, "dequant"), &nbytes), (size_t)k->n);
    if (k->in_dtype != SR_F32) {
        uint16_t *o16 = malloc((size_t)k->n * 2);
        assert_int_equal(sr_bnb4_dequantize_to(w, scales, k->n, k->bs, k->qt, k->in_dtype, o16, &err), 0);
        snprintf(what, sizeof what, "%s dequant", k->id);
        bad += golden_cmp_u16(what, o16, arr(golden_output(c, "dequant"), &nbytes), (size_t)k->n);
        free(o16);
    }
    free(out);
    free(scales);
    return bad;
}

static void test_quantize_4bit_cases(void **state)
{
    (void)state;
    size_t i, ncases = 0, bad = 0;
    json_t *c;
    json_array_foreach(G.cases, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "quantize_4bit")) continue;
        q4case k;
        load_q4case(c, &k);
        size_t b = check_q4_cpu(c, &k) + check_q4_tensors(c, &k) + check_q4_cuda(c, &k) +
                   check_q4_dequant(c, &k);
        if (b) fprintf(stderr, "case %s: %zu mismatches\n", k.id, b);
        bad += b;
        ncases++;
    }
    assert_int_equal(ncases, 90);
    assert_int_equal(bad, 0);
}

/* ---- decision-rule probes ------------------------------------------------- */

static void test_decision_rules(void **state)
{
    (void)state;
    size_t i, nbytes, bad = 0, seen = 0;
    json_t *c;
    float map[256];
    sr_dynamic_map(map);
    json_array_foreach(G.cases, i, c) {
        const char *kind = json_string_value(json_object_get(c, "kind"));
        const char *id = json_string_value(json_object_get(c, "id"));
        if (strncmp(kind, "decision_rule_", 14)) continue;
        const float *x = arr(golden_output(c, "x"), &nbytes);
        size_t n = nbytes / 4;
        const uint8_t *cpu = arr(golden_output(c, "code_cpu_bnb"), &nbytes);
        const uint8_t *cuda = arr(golden_output(c, "code_cuda_kernel_fn"), &nbytes);
        if (!strcmp(kind, "decision_rule_4bit")) {
            sr_q4type qt;
            assert_int_equal(sr_q4type_parse(json_string_value(json_object_get(
                json_object_get(c, "params"), "quant_type")), &qt), 0);
            /* Through the full quantizer (blocks of 64 with absmax 1) and the
             * scalar decision function. */
            uint8_t *packed = malloc((n + 1) / 2);
            float absmax[64];
            sr_error err;
            for (int r = 0; r < 2; r++) {
                sr_bnb_rules rules = r ? SR_RULES_CUDA : SR_RULES_CPU;
                const uint8_t *want = r ? cuda : cpu;
                assert_int_equal(sr_bnb4_quantize(x, SR_F32, (int64_t)n, 64, qt, rules, packed, absmax, &err), 0);
                for (size_t j = 0; j < n; j++) {
                    unsigned a = nibble(packed, (int64_t)j), s = sr_bnb4_code(qt, rules, x[j]);
                    if ((a != want[j] || s != want[j]) && !bad++)
                        fprintf(stderr, "%s %s: x[%zu] = %.9g: quantize %u, code %u, want %u\n", id,
                                sr_bnb_rules_name(rules), j, (double)x[j], a, s, want[j]);
                }
            }
            free(packed);
            seen++;
        } else if (!strcmp(kind, "decision_rule_8bit")) {
            uint8_t *codes = malloc(n);
            float absmax[16];
            sr_error err;
            for (int r = 0; r < 2; r++) {
                sr_bnb_rules rules = r ? SR_RULES_CUDA : SR_RULES_CPU;
                assert_int_equal(sr_q8_quantize(x, (int64_t)n, 256, map, rules, codes, absmax, &err), 0);
                char what[128];
                snprintf(what, sizeof what, "%s %s", id, sr_bnb_rules_name(rules));
                bad += golden_cmp_bytes(what, codes, r ? cuda : cpu, n);
            }
            for (size_t j = 0; j < n; j++)
                if (sr_q8_code_cuda(map, x[j]) != cuda[j] && !bad++)
                    fprintf(stderr, "%s: sr_q8_code_cuda(%.9g) != %u\n", id, (double)x[j], cuda[j]);
            free(codes);
            seen++;
        }
    }
    assert_int_equal(seen, 3);
    assert_int_equal(bad, 0);
}

/* ---- 8-bit blockwise ------------------------------------------------------ */

static void test_blockwise8_cases(void **state)
{
    (void)state;
    size_t i, nbytes, bad = 0, seen = 0;
    json_t *c;
    json_array_foreach(G.cases, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "quantize_blockwise_8bit")) continue;
        const char *id = json_string_value(json_object_get(c, "id"));
        json_t *p = json_object_get(c, "params");
        int64_t bs = json_integer_value(json_object_get(p, "blocksize"));
        const float *map = arr(json_string_value(json_object_get(p, "code")), &nbytes);
        const float *x = arr(json_string_value(json_object_get(c, "input")), &nbytes);
        int64_t n = (int64_t)nbytes / 4, nb = sr_bnb_nblocks(n, bs);
        uint8_t *codes = malloc((size_t)n);
        float *absmax = malloc((size_t)nb * 4), *out = malloc((size_t)n * 4);
        sr_error err;
        char what[128];

        assert_int_equal(sr_q8_quantize(x, n, bs, map, SR_RULES_CPU, codes, absmax, &err), 0);
        snprintf(what, sizeof what, "%s cpu codes", id);
        bad += golden_cmp_bytes(what, codes, arr(golden_output(c, "codes"), &nbytes), (size_t)n);
        snprintf(what, sizeof what, "%s absmax", id);
        bad += golden_cmp_f32(what, absmax, arr(golden_output(c, "absmax"), &nbytes), (size_t)nb);

        assert_int_equal(sr_q8_quantize(x, n, bs, map, SR_RULES_CUDA, codes, absmax, &err), 0);
        snprintf(what, sizeof what, "%s cuda codes", id);
        bad += golden_cmp_bytes(what, codes, arr(golden_output(c, "codes_cuda_rule_emulated"), &nbytes), (size_t)n);

        float gabs[4096];
        memcpy(gabs, arr(golden_output(c, "absmax"), &nbytes), (size_t)nb * 4);
        sr_q8_dequantize(arr(golden_output(c, "codes"), &nbytes), gabs, n, bs, map, out);
        snprintf(what, sizeof what, "%s dequant", id);
        bad += golden_cmp_f32(what, out, arr(golden_output(c, "dequant"), &nbytes), (size_t)n);
        free(codes);
        free(absmax);
        free(out);
        seen++;
    }
    assert_int_equal(seen, 13);
    assert_int_equal(bad, 0);
}

/* ---- LLM.int8 ------------------------------------------------------------- */

static void test_llm_int8(void **state)
{
    (void)state;
    size_t nbytes;
    const float *x = arr("inputs/int8_w_16x64", &nbytes);
    const uint16_t *w16 = arr("int8/w_16x64/weight_fp16", &nbytes);
    int8_t q[16 * 64];
    float scb[16], out[16 * 64];
    sr_error err;

    uint16_t cast[16 * 64];
    for (int j = 0; j < 16 * 64; j++) cast[j] = sr_f32_to_f16(x[j]);
    assert_int_equal(golden_cmp_u16("weight_fp16", cast, w16, 16 * 64), 0);

    for (int src = 0; src < 2; src++) {
        memset(q, 0x55, sizeof q);
        assert_int_equal(sr_int8_quantize(src ? (const void *)w16 : (const void *)x, src ? SR_F16 : SR_F32,
                                          16, 64, q, scb, &err), 0);
        assert_int_equal(golden_cmp_bytes("int8 weight", q, arr("int8/w_16x64/weight", &nbytes), sizeof q), 0);
        assert_int_equal(golden_cmp_f32("SCB", scb, arr("int8/w_16x64/SCB", &nbytes), 16), 0);
    }
    float gscb[16];
    memcpy(gscb, arr("int8/w_16x64/SCB", &nbytes), sizeof gscb);
    sr_int8_dequantize(arr("int8/w_16x64/weight", &nbytes), gscb, 0, 16, 64, out);
    assert_int_equal(golden_cmp_f32("int8 dequant", out, arr("int8/w_16x64/dequant_f32", &nbytes), 16 * 64), 0);

    /* The writer helper gives bnb's three state-dict tensors. */
    sr_qtensors t;
    int64_t shape[2] = {16, 64};
    assert_int_equal(sr_int8_quantize_tensor("layer.weight", x, SR_F32, 2, shape, &t, &err), 0);
    assert_int_equal(t.count, 3);
    const sr_qtensor *tw = sr_qtensors_find(&t, "layer.weight"), *ts = sr_qtensors_find(&t, "layer.SCB"),
                     *tf = sr_qtensors_find(&t, "layer.weight_format");
    assert_non_null(tw);
    assert_non_null(ts);
    assert_non_null(tf);
    assert_int_equal(tw->dtype, SR_I8);
    assert_int_equal(ts->dtype, SR_F32);
    assert_int_equal(ts->ndim, 1);
    assert_int_equal(ts->shape[0], 16);
    assert_int_equal(tf->dtype, SR_U8);
    assert_int_equal(tf->ndim, 0);
    assert_int_equal(((const uint8_t *)tf->data)[0], 0);
    assert_memory_equal(tw->data, arr("int8/w_16x64/weight", &nbytes), 16 * 64);
    sr_qtensors_free(&t);
}

/* ---- Python repr of nested_offset ---------------------------------------- */

static void test_pyfloat(void **state)
{
    (void)state;
    static const struct { double v; const char *s; } cases[] = {
        {0.2746208608150482, "0.2746208608150482"}, {1e-05, "1e-05"}, {6.0, "6.0"}, {0.0, "0.0"},
        {-0.0, "-0.0"}, {1.0, "1.0"}, {0.1, "0.1"}, {1e+16, "1e+16"},
        {1000000000000000.0, "1000000000000000.0"}, {1.2345678901234568e+17, "1.2345678901234568e+17"},
        {0.0001, "0.0001"}, {0.00012345, "0.00012345"}, {1.5e-07, "1.5e-07"}, {-2.5, "-2.5"},
        {3e+38, "3e+38"}, {1.401298464324817e-45, "1.401298464324817e-45"},
        {9.617594246371437e+28, "9.617594246371437e+28"}, {0.1276143342256546, "0.1276143342256546"},
        {100.0, "100.0"}, {1e+22, "1e+22"}, {5e-324, "5e-324"}, {-1e-05, "-1e-05"}, {0.5, "0.5"},
        {9.5367431640625e-07, "9.5367431640625e-07"}, {2458.033935546875, "2458.033935546875"},
        {590387136.0, "590387136.0"}, {-9419895.0, "-9419895.0"},
        {0.5519171357154846, "0.5519171357154846"}, {0.002979491138830781, "0.002979491138830781"},
        {-77358808.0, "-77358808.0"}, {73689.09375, "73689.09375"},
        {0.08752171695232391, "0.08752171695232391"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sr_format_pyfloat(cases[i].v, buf, sizeof buf);
        assert_string_equal(buf, cases[i].s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_decision_thresholds),
        cmocka_unit_test(test_dynamic_map),
        cmocka_unit_test(test_quantize_4bit_cases),
        cmocka_unit_test(test_decision_rules),
        cmocka_unit_test(test_blockwise8_cases),
        cmocka_unit_test(test_llm_int8),
        cmocka_unit_test(test_pyfloat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
