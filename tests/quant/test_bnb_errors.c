/* Bad input to the bnb codecs: clear errors, never a crash, nothing leaked
 * (the ASan pass checks the latter), plus behaviour at the edges that bnb
 * defines (all-zero blocks, odd sizes, subnormal absmax) and the
 * multi-threaded paths (inputs large enough for OpenMP) against a serial
 * element-by-element reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blockwise8.h"
#include "quant/bnb4.h"
#include "quant/dynamic_map.h"
#include "quant/llm_int8.h"
#include "quant/quant_state.h"
#include "quant/qwrite.h"
#include "runtime/alloc.h"

static void assert_msg(const sr_error *e, const char *needle)
{
    if (!strstr(e->msg, needle)) fprintf(stderr, "message \"%s\" lacks \"%s\"\n", e->msg, needle);
    assert_non_null(strstr(e->msg, needle));
}

static void test_nonfinite_4bit(void **state)
{
    (void)state;
    float x[200];
    for (int i = 0; i < 200; i++) x[i] = (float)(i % 7) - 3.0f;
    uint8_t packed[100];
    float absmax[4];
    sr_error err;
    for (int r = 0; r < 2; r++) {
        x[133] = NAN;
        assert_int_equal(sr_bnb4_quantize(x, SR_F32, 200, 64, SR_Q4_NF4, (sr_bnb_rules)r, packed, absmax, &err), -1);
        assert_msg(&err, "element 133 is NaN");
        x[133] = -INFINITY;
        assert_int_equal(sr_bnb4_quantize(x, SR_F32, 200, 64, SR_Q4_FP4, (sr_bnb_rules)r, packed, absmax, &err), -1);
        assert_msg(&err, "element 133 is infinite");
        x[133] = 0.0f;
    }
    /* bf16 / f16 NaN and inf patterns. */
    uint16_t h[64];
    memset(h, 0, sizeof h);
    h[5] = 0x7fc0;   /* bf16 NaN */
    assert_int_equal(sr_bnb4_quantize(h, SR_BF16, 64, 64, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), -1);
    assert_msg(&err, "element 5 is NaN");
    h[5] = 0;
    h[9] = 0xfc00;   /* f16 -inf */
    assert_int_equal(sr_bnb4_quantize(h, SR_F16, 64, 64, SR_Q4_NF4, SR_RULES_CPU, packed, absmax, &err), -1);
    assert_msg(&err, "element 9 is infinite");

    /* Through the writer: the tensor is named, nothing is returned. */
    sr_qtensors q;
    int64_t shape[2] = {2, 100};
    x[7] = NAN;
    assert_int_equal(sr_bnb4_quantize_tensor("m.w.weight", x, SR_F32, 2, shape, NULL, &q, &err), -1);
    assert_msg(&err, "tensor m.w.weight: element 7 is NaN");
    assert_int_equal(q.count, 0);
    assert_null(q.json);
}

static void test_bad_arguments_4bit(void **state)
{
    (void)state;
    float x[64] = {1.0f};
    uint8_t packed[32];
    float absmax[2];
    sr_error err;
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 48, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), -1);
    assert_msg(&err, "blocksize 48");
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 8192, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), -1);
    assert_int_equal(sr_bnb4_quantize(x, SR_I32, 64, 64, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), -1);
    assert_msg(&err, "I32");

    sr_qtensors q;
    sr_bnb4_options o = sr_bnb4_defaults();
    int64_t shape[2] = {4, 16};
    o.storage = SR_I64;
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, shape, &o, &q, &err), -1);
    assert_msg(&err, "tensor w: quant storage I64");
    o = sr_bnb4_defaults();
    o.storage = SR_F64;     /* 32 packed bytes = 4 float64 elements: fine */
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, shape, &o, &q, &err), 0);
    assert_int_equal(q.t[0].dtype, SR_F64);
    assert_int_equal(q.t[0].shape[0], 4);
    sr_qtensors_free(&q);
    int64_t odd[2] = {3, 3};     /* 5 packed bytes: not a whole number of float64 */
    o.storage = SR_F64;
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, odd, &o, &q, &err), -1);
    assert_msg(&err, "not a whole number");
    int64_t neg[2] = {-1, 5};
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, neg, NULL, &q, &err), -1);
    assert_msg(&err, "invalid shape");
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_I8, 2, shape, NULL, &q, &err), -1);
    assert_msg(&err, "dtype I8 cannot be quantized");
}

/* bnb's defined edge behaviour (spec §1.3, §1.5 table "all-zero block"). */
static void test_edges_4bit(void **state)
{
    (void)state;
    float x[65];
    memset(x, 0, sizeof x);
    uint8_t packed[33];
    float absmax[2];
    sr_error err;
    /* All zero, odd count: CPU NF4 code 7 everywhere (0x77), padding 7;
     * CUDA NF4 code 0 (0 * inf = NaN), FP4 code 0 in both. */
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 65, 64, SR_Q4_NF4, SR_RULES_CPU, packed, absmax, &err), 0);
    for (int i = 0; i < 33; i++) assert_int_equal(packed[i], 0x77);
    assert_true(absmax[0] == 0.0f);
    assert_true(absmax[1] == (float)1e-38);    /* bnb stores the clamped absmax of the partial block */
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 65, 64, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), 0);
    for (int i = 0; i < 33; i++) assert_int_equal(packed[i], 0x00);
    assert_true(absmax[1] == 0.0f);
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 65, 64, SR_Q4_FP4, SR_RULES_CPU, packed, absmax, &err), 0);
    for (int i = 0; i < 33; i++) assert_int_equal(packed[i], 0x00);

    /* Tiny values around zero in FP4: CPU gives code 8 to tiny positives,
     * CUDA to tiny negatives (spec §1.5). */
    x[0] = 1.0f;
    x[1] = 1e-4f;
    x[2] = -1e-4f;
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 64, SR_Q4_FP4, SR_RULES_CPU, packed, absmax, &err), 0);
    assert_int_equal(packed[0], 0x38);
    assert_int_equal(packed[1] >> 4, 0x0);
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 64, SR_Q4_FP4, SR_RULES_CUDA, packed, absmax, &err), 0);
    assert_int_equal(packed[0], 0x30);
    assert_int_equal(packed[1] >> 4, 0x8);

    /* Subnormal absmax: CPU clamps to 1e-38 for normalisation, so values
     * stay small; nothing crashes, dequantization gives zeros and tiny values. */
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) * 1e-41f;
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 64, SR_Q4_NF4, SR_RULES_CPU, packed, absmax, &err), 0);
    assert_int_equal(sr_bnb4_quantize(x, SR_F32, 64, 64, SR_Q4_NF4, SR_RULES_CUDA, packed, absmax, &err), 0);
    float out[64];
    sr_bnb4_dequantize(packed, absmax, 64, 64, SR_Q4_NF4, out);
    for (int i = 0; i < 64; i++) assert_true(fabsf(out[i]) <= absmax[0]);
}

static void test_nonfinite_8bit_and_int8(void **state)
{
    (void)state;
    float map[256], x[300];
    sr_dynamic_map(map);
    for (int i = 0; i < 300; i++) x[i] = (float)i;
    x[260] = NAN;
    uint8_t codes[300];
    float absmax[2];
    sr_error err;
    assert_int_equal(sr_q8_quantize(x, 300, 256, map, SR_RULES_CPU, codes, absmax, &err), -1);
    assert_msg(&err, "element 260 is NaN");
    assert_int_equal(sr_q8_quantize(x, 300, 0, map, SR_RULES_CPU, codes, absmax, &err), -1);
    assert_int_equal(sr_dq_quantize(x, 10, INFINITY, map, SR_RULES_CUDA, codes, absmax, &err), -1);
    assert_msg(&err, "offset");

    int8_t q[2 * 150];
    float scb[2];
    x[260] = 70000.0f;      /* rounds to inf in float16 */
    assert_int_equal(sr_int8_quantize(x, SR_F32, 2, 150, q, scb, &err), -1);
    assert_msg(&err, "element [1, 110]");
    assert_msg(&err, "float16 range");
    x[260] = -INFINITY;
    assert_int_equal(sr_int8_quantize(x, SR_F32, 2, 150, q, scb, &err), -1);
    assert_msg(&err, "infinite");
    x[260] = 0.0f;
    assert_int_equal(sr_int8_quantize(x, SR_F32, 2, 150, q, scb, &err), 0);

    /* All-zero row: SCB 0, codes 0. */
    memset(x, 0, 150 * sizeof *x);
    assert_int_equal(sr_int8_quantize(x, SR_F32, 2, 150, q, scb, &err), 0);
    assert_true(scb[0] == 0.0f);
    for (int j = 0; j < 150; j++) assert_int_equal(q[j], 0);

    sr_qtensors t;
    int64_t shape[2] = {2, 150}, bad3[3] = {1, 2, 150};
    assert_int_equal(sr_int8_quantize_tensor("proj", x, SR_F32, 2, shape, &t, &err), -1);
    assert_msg(&err, "end in \".weight\"");
    assert_int_equal(sr_int8_quantize_tensor("p.weight", x, SR_F32, 3, bad3, &t, &err), -1);
    assert_msg(&err, "tensor p.weight: LLM.int8 needs a non-empty 2-D weight");
    assert_int_equal(t.count, 0);
}

static void expect_json_error(const char *json, const char *needle)
{
    sr_quant_state qs;
    sr_error err;
    assert_int_equal(sr_quant_state_parse(json, strlen(json), &qs, &err), -1);
    assert_msg(&err, needle);
}

static void test_quant_state_json(void **state)
{
    (void)state;
    expect_json_error("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2, 64], "
                      "\"extra\": 1}", "unknown key \"extra\"");
    expect_json_error("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\"}",
                      "missing key \"shape\"");
    expect_json_error("{\"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2]}", "missing key \"quant_type\"");
    expect_json_error("{\"quant_type\": \"int4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2]}",
                      "key \"quant_type\"");
    expect_json_error("{\"quant_type\": \"fp4\", \"blocksize\": \"64\", \"dtype\": \"float32\", \"shape\": [2]}",
                      "key \"blocksize\"");
    expect_json_error("{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"int8\", \"shape\": [2]}",
                      "key \"dtype\"");
    expect_json_error("{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, -1]}",
                      "key \"shape\"");
    expect_json_error("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2, 64], "
                      "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\"}", "missing key \"nested_offset\"");
    expect_json_error("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2, 64], "
                      "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 1e39}",
                      "overflows float32");
    expect_json_error("{\"quant_type\": \"nf4\", \"quant_type\": \"nf4\"}", "invalid JSON");
    expect_json_error("[1, 2]", "expected a JSON object");
    expect_json_error("{\"quant_type\": \"nf4\"", "invalid JSON");
    expect_json_error("", "invalid JSON");

    /* Key order is free when reading; aliases of torch names accepted. */
    const char *ok = "{\"shape\": [3, 5], \"dtype\": \"half\", \"blocksize\": 128, \"quant_type\": \"fp4\"}";
    sr_quant_state qs;
    sr_error err;
    assert_int_equal(sr_quant_state_parse(ok, strlen(ok), &qs, &err), 0);
    assert_int_equal(qs.dtype, SR_F16);
    assert_int_equal(qs.quant_type, SR_Q4_FP4);
    assert_int_equal(qs.blocksize, 128);
    assert_int_equal(qs.ndim, 2);
    char buf[256];
    assert_true(sr_quant_state_format(&qs, buf, sizeof buf, &err) > 0);
    assert_string_equal(buf, "{\"quant_type\": \"fp4\", \"blocksize\": 128, \"dtype\": \"float16\", \"shape\": [3, 5]}");
    assert_int_equal(sr_quant_state_format(&qs, buf, 20, &err), -1);
}

/* Every allocation of the writer helper failing in turn: a clean error and
 * nothing leaked. */
static void test_writer_alloc_failures(void **state)
{
    (void)state;
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = sinf((float)i);
    int64_t shape[2] = {3, 100};
    sr_bnb4_options o = sr_bnb4_defaults();
    o.double_quant = 1;
    sr_qtensors q;
    sr_error err;
    sr_alloc_fail_after(-1);
    sr_alloc_fail_after(1000000);
    assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, shape, &o, &q, &err), 0);
    long sites = sr_alloc_count();
    sr_qtensors_free(&q);
    for (long k = 0; k < sites; k++) {
        sr_alloc_fail_after(k);
        assert_int_equal(sr_bnb4_quantize_tensor("w", x, SR_F32, 2, shape, &o, &q, &err), -1);
        assert_int_equal(q.count, 0);
        assert_null(q.json);
    }
    sr_alloc_fail_after(1000000);
    assert_int_equal(sr_int8_quantize_tensor("a.weight", x, SR_F32, 2, shape, &q, &err), 0);
    sites = sr_alloc_count();
    sr_qtensors_free(&q);
    for (long k = 0; k < sites; k++) {
        sr_alloc_fail_after(k);
        assert_int_equal(sr_int8_quantize_tensor("a.weight", x, SR_F32, 2, shape, &q, &err), -1);
        assert_int_equal(q.count, 0);
    }
    sr_alloc_fail_after(-1);
}

/* Large inputs take the OpenMP path: every nibble and absmax must equal a
 * serial reference built from sr_bnb4_code on the normalised values. */
static void test_parallel_equals_reference(void **state)
{
    (void)state;
    const int64_t n = 300001;
    uint16_t *x = malloc((size_t)n * 2);
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float f = (float)((int32_t)(s >> 8) - (1 << 23)) / (float)(1 << 23) * 0.03f;
        x[i] = (i % 5000) < 64 ? 0 : sr_f32_to_bf16(f);     /* some all-zero blocks */
    }
    uint8_t *packed = malloc((size_t)(n + 1) / 2);
    float *absmax = malloc((size_t)n / 32 * 4 + 4);
    sr_error err;
    static const int bss[2] = {64, 4096};
    for (int v = 0; v < 8; v++) {
        sr_q4type qt = (sr_q4type)(v & 1);
        sr_bnb_rules rules = (sr_bnb_rules)((v >> 1) & 1);
        int bs = bss[v >> 2];
        assert_int_equal(sr_bnb4_quantize(x, SR_BF16, n, bs, qt, rules, packed, absmax, &err), 0);
        int64_t nb = (n + bs - 1) / bs, bad = 0;
        for (int64_t b = 0; b < nb; b++) {
            int64_t j0 = b * bs, j1 = j0 + bs < n ? j0 + bs : n;
            float am = 0.0f;
            for (int64_t j = j0; j < j1; j++) am = fmaxf(am, fabsf(sr_bf16_to_f32(x[j])));
            int partial = j1 - j0 < bs;
            float a = rules == SR_RULES_CPU && am < (float)1e-38 ? (float)1e-38 : am;
            float want_absmax = rules == SR_RULES_CPU && partial ? a : am;
            if (absmax[b] != want_absmax) bad++;
            float r = 1.0f / a;
            for (int64_t j = j0; j < j1; j++) {
                float y = rules == SR_RULES_CPU && partial ? sr_bf16_to_f32(x[j]) / a : sr_bf16_to_f32(x[j]) * r;
                if (rules == SR_RULES_CPU) y = fminf(fmaxf(y, -1.0f), 1.0f);
                unsigned got = (packed[j >> 1] >> ((j & 1) ? 0 : 4)) & 15;
                if (got != sr_bnb4_code(qt, rules, y)) bad++;
            }
        }
        if (bad) fprintf(stderr, "variant %d: %lld mismatches\n", v, (long long)bad);
        assert_int_equal(bad, 0);
        /* The padding nibble of the odd element count is the code of 0.0. */
        assert_int_equal(packed[n / 2] & 15, sr_bnb4_code(qt, rules, 0.0f));
    }

    /* LLM.int8 over 600 rows of 500: the row-parallel path. */
    const int64_t rows = 600, cols = 500;
    float *w = malloc((size_t)(rows * cols) * 4), scb[600];
    int8_t *q = malloc((size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) w[i] = sr_bf16_to_f32(x[i]) * (float)(1 + i % 7);
    assert_int_equal(sr_int8_quantize(w, SR_F32, rows, cols, q, scb, &err), 0);
    for (int64_t r = 0; r < rows; r++) {
        float m = 0.0f;
        for (int64_t j = 0; j < cols; j++) m = fmaxf(m, fabsf(sr_f16_to_f32(sr_f32_to_f16(w[r * cols + j]))));
        assert_true(scb[r] == m);
        float sc = (1.0f / m) * 127.0f;    /* bnb: torch's 127.0 / row_stats */
        for (int64_t j = 0; j < cols; j++) {
            float h = sr_f16_to_f32(sr_f32_to_f16(w[r * cols + j]));
            int want = m == 0.0f ? 0 : (int)nearbyintf(h * sc);
            assert_int_equal(q[r * cols + j], want);
        }
    }
    free(w);
    free(q);
    free(x);
    free(packed);
    free(absmax);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nonfinite_4bit),
        cmocka_unit_test(test_bad_arguments_4bit),
        cmocka_unit_test(test_edges_4bit),
        cmocka_unit_test(test_nonfinite_8bit_and_int8),
        cmocka_unit_test(test_quant_state_json),
        cmocka_unit_test(test_writer_alloc_failures),
        cmocka_unit_test(test_parallel_equals_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
