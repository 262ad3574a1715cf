/* sr_qmatrix_from_ckpt on the three tiny bnb checkpoints of tests/data/bnb
 * (dequantized weights equal the manifest's tiny_model outputs), on
 * checkpoints written by the quantizer + safetensors writer, and on broken
 * checkpoints (every error names the tensor and the field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <unistd.h>

#include "bnb_golden.h"
#include "quant/bnb4.h"
#include "quant/llm_int8.h"
#include "quant/qload.h"
#include "quant/qwrite.h"
#include "runtime/alloc.h"
#include "runtime/checkpoint.h"
#include "runtime/safetensors_write.h"

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

/* Exact f32 dequantization of a loaded matrix with the codecs of quant/
 * (independent of the matmul kernels). */
static float *dequant_all(const sr_qmatrix *m)
{
    int64_t n = m->rows * m->cols;
    float *out = malloc((size_t)n * sizeof *out);
    assert_non_null(out);
    switch (m->fmt) {
    case SR_W_NF4:
    case SR_W_FP4:
        sr_bnb4_dequantize(m->data, m->scales, n, m->blocksize, m->fmt == SR_W_NF4 ? SR_Q4_NF4 : SR_Q4_FP4, out);
        break;
    case SR_W_INT8:
        sr_int8_dequantize(m->data, m->scb, 0, m->rows, m->cols, out);
        break;
    default:
        sr_load_f32(m->data, m->fmt == SR_W_F32 ? SR_F32 : m->fmt == SR_W_BF16 ? SR_BF16 : SR_F16, n, out);
        break;
    }
    return out;
}

static void test_tiny_models(void **state)
{
    (void)state;
    size_t i, seen = 0;
    json_t *c;
    json_array_foreach(G.cases, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "tiny_model")) continue;
        const char *dir = json_string_value(json_object_get(c, "dir"));
        char rel[256];
        snprintf(rel, sizeof rel, "bnb/%s", dir);
        sr_checkpoint *ck;
        sr_error err;
        if (sr_ckpt_open(test_data(rel), &ck, &err)) {
            fprintf(stderr, "%s: %s\n", rel, err.msg);
            fail();
        }
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(c, "outputs"), key, v) {
            size_t len = strlen(key);
            if (len < 7 || strcmp(key + len - 7, ".weight")) continue;      /* skip *.source_weight */
            sr_qmatrix m;
            if (sr_qmatrix_from_ckpt(ck, key, &m, &err)) {
                fprintf(stderr, "%s: %s: %s\n", dir, key, err.msg);
                fail();
            }
            const char *dt = NULL;
            size_t nbytes = 0;
            const void *want = golden_array(&G, json_string_value(v), &nbytes, &dt);
            assert_non_null(want);
            assert_non_null(dt);
            int64_t n = m.rows * m.cols;
            float *got = dequant_all(&m);
            size_t bad;
            /* 4-bit outputs are in the model dtype, int8 in f32. */
            if (!strcmp(dt, "float32")) {
                assert_int_equal(nbytes, (size_t)n * 4);
                bad = golden_cmp_f32(key, got, want, (size_t)n);
            } else {
                assert_int_equal(nbytes, (size_t)n * 2);
                uint16_t *h = malloc((size_t)n * 2);
                for (int64_t j = 0; j < n; j++)
                    h[j] = !strcmp(dt, "bfloat16") ? sr_f32_to_bf16(got[j]) : sr_f32_to_f16(got[j]);
                bad = golden_cmp_u16(key, h, want, (size_t)n);
                free(h);
            }
            if (bad) fprintf(stderr, "%s %s: %zu mismatches\n", dir, key, bad);
            assert_int_equal(bad, 0);
            free(got);
            sr_qmatrix_free(&m);
            seen++;
        }
        /* Unquantized tensors load as float weights. */
        sr_qmatrix m;
        assert_int_equal(sr_qmatrix_from_ckpt(ck, "lm_head.weight", &m, &err), 0);
        assert_true(m.fmt == SR_W_BF16 || m.fmt == SR_W_F16);
        assert_int_equal(m.rows, 32);
        assert_int_equal(m.cols, 64);
        sr_qmatrix_free(&m);
        assert_int_equal(sr_qmatrix_from_ckpt(ck, "model.norm.weight", &m, &err), -1);
        assert_non_null(strstr(err.msg, "tensor model.norm.weight"));
        assert_int_equal(sr_qmatrix_from_ckpt(ck, "nope.weight", &m, &err), -1);
        assert_non_null(strstr(err.msg, "tensor nope.weight: not found"));
        sr_ckpt_close(ck);
    }
    assert_int_equal(seen, 6);
}

/* ---- synthetic checkpoints ------------------------------------------------ */

#define MAXE 16

typedef struct ckbuild {
    sr_st_entry e[MAXE];
    size_t n;
    sr_qtensors q;
} ckbuild;

static void add_q(ckbuild *b, const sr_qtensors *q)
{
    for (size_t i = 0; i < q->count; i++) {
        sr_st_entry *e = &b->e[b->n++];
        memset(e, 0, sizeof *e);
        e->name = q->t[i].name;
        e->dtype = q->t[i].dtype;
        e->ndim = q->t[i].ndim;
        memcpy(e->shape, q->t[i].shape, sizeof e->shape);
        e->data = q->t[i].data;
    }
}

static sr_st_entry *find_e(ckbuild *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->e[i].name, name)) return &b->e[i];
    fprintf(stderr, "no entry %s\n", name);
    fail();
    return NULL;
}

static void drop_e(ckbuild *b, const char *name)
{
    sr_st_entry *e = find_e(b, name);
    *e = b->e[--b->n];
}

static float W[24 * 80];

static void make_weight(void)
{
    for (int i = 0; i < 24 * 80; i++) W[i] = sinf((float)i * 0.37f) * (1.0f + (float)(i % 80) / 40.0f);
}

/* A 4-bit (or int8) checkpoint of weight "l.weight" [24, 80], the packed
 * codes stored as `storage` (bnb_4bit_quant_storage). */
static void build_storage(ckbuild *b, int int8, sr_q4type qt, int dq, sr_dtype storage)
{
    memset(b, 0, sizeof *b);
    make_weight();
    int64_t shape[2] = {24, 80};
    sr_error err;
    int rc;
    if (int8) {
        rc = sr_int8_quantize_tensor("l.weight", W, SR_F32, 2, shape, &b->q, &err);
    } else {
        sr_bnb4_options o = sr_bnb4_defaults();
        o.quant_type = qt;
        o.double_quant = dq;
        o.storage = storage;
        rc = sr_bnb4_quantize_tensor("l.weight", W, SR_F32, 2, shape, &o, &b->q, &err);
    }
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    add_q(b, &b->q);
}

static void build(ckbuild *b, int int8, sr_q4type qt, int dq) { build_storage(b, int8, qt, dq, SR_U8); }

/* Writes b, loads "l.weight"; returns the loader's result, message in err. */
static int write_and_load(ckbuild *b, sr_qmatrix *m, sr_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/q.safetensors", test_tmpdir());
    sr_error werr;
    if (sr_st_write(path, b->e, b->n, &werr)) {
        fprintf(stderr, "%s\n", werr.msg);
        fail();
    }
    sr_checkpoint *ck;
    if (sr_ckpt_open(path, &ck, &werr)) {
        fprintf(stderr, "%s\n", werr.msg);
        fail();
    }
    int rc = sr_qmatrix_from_ckpt(ck, "l.weight", m, err);
    if (!rc) {
        /* Copy what the mapping holds so the matrix survives closing. */
        int64_t n = m->rows * m->cols;
        float *d = dequant_all(m);
        sr_qmatrix_free(m);
        m->rows = n;
        m->data = d;
    } else {
        assert_null(m->owned[0]);
    }
    sr_ckpt_close(ck);
    unlink(path);
    return rc;
}

static void test_roundtrip(void **state)
{
    (void)state;
    /* nf4, fp4, nf4+DQ, fp4+DQ, int8, fp4+DQ in bf16 storage, nf4 in f32 storage. */
    static const sr_dtype storage[7] = {SR_U8, SR_U8, SR_U8, SR_U8, SR_U8, SR_BF16, SR_F32};
    for (int v = 0; v < 7; v++) {
        ckbuild b;
        build_storage(&b, v == 4, v & 1 ? SR_Q4_FP4 : SR_Q4_NF4, v >= 2 && v != 6, storage[v]);
        if (v >= 5) assert_int_equal(find_e(&b, "l.weight")->dtype, storage[v]);
        sr_qmatrix m;
        sr_error err;
        int rc = write_and_load(&b, &m, &err);
        if (rc) fprintf(stderr, "variant %d: %s\n", v, err.msg);
        assert_int_equal(rc, 0);
        const float *got = m.data;
        /* Error bound of the format: half a quantization step of the block. */
        for (int i = 0; i < 24 * 80; i++) assert_true(fabsf(got[i] - W[i]) <= (v == 4 ? 0.02f : 0.52f));
        free((void *)m.data);
        sr_qtensors_free(&b.q);
    }
}

static void expect_load_error(ckbuild *b, const char *needle)
{
    sr_qmatrix m;
    sr_error err;
    int rc = write_and_load(b, &m, &err);
    if (rc == 0) {
        fprintf(stderr, "expected an error containing \"%s\"\n", needle);
        free((void *)m.data);
        fail();
    }
    if (!strstr(err.msg, needle)) fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
    sr_qtensors_free(&b->q);
}

static void set_json(ckbuild *b, const char *key, const char *json)
{
    sr_st_entry *e = find_e(b, key);
    e->data = json;
    e->shape[0] = (int64_t)strlen(json);
}

static void test_broken_4bit(void **state)
{
    (void)state;
    ckbuild b;
    const char *QS = "l.weight.quant_state.bitsandbytes__nf4";

    build(&b, 0, SR_Q4_NF4, 0);
    drop_e(&b, "l.weight.absmax");
    expect_load_error(&b, "tensor l.weight.absmax: missing");

    build(&b, 0, SR_Q4_NF4, 0);
    find_e(&b, "l.weight.absmax")->shape[0] = 29;         /* 30 blocks of 64 */
    expect_load_error(&b, "tensor l.weight.absmax: 29 elements, expected 30");

    build(&b, 0, SR_Q4_NF4, 0);
    find_e(&b, "l.weight.absmax")->dtype = SR_U8;         /* no DQ: absmax must be F32 */
    expect_load_error(&b, "tensor l.weight.absmax: dtype U8, expected F32");

    build(&b, 0, SR_Q4_NF4, 0);
    find_e(&b, "l.weight")->shape[0] = 959;               /* 960 bytes needed */
    expect_load_error(&b, "tensor l.weight: 959 bytes of packed codes");

    build(&b, 0, SR_Q4_NF4, 0);
    drop_e(&b, "l.weight");
    expect_load_error(&b, "tensor l.weight: missing");

    build(&b, 0, SR_Q4_NF4, 0);
    drop_e(&b, "l.weight.quant_map");
    expect_load_error(&b, "tensor l.weight.quant_map: missing");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [24, 80]}");
    expect_load_error(&b, "field quant_type \"fp4\" does not match the key suffix \"nf4\"");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf5\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [24, 80]}");
    expect_load_error(&b, "tensor l.weight.quant_state.bitsandbytes__nf4: key \"quant_type\"");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [24, 80], \"x\": 0}");
    expect_load_error(&b, "tensor l.weight.quant_state.bitsandbytes__nf4: unknown key \"x\"");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf4\", \"dtype\": \"float32\", \"shape\": [24, 80]}");
    expect_load_error(&b, "tensor l.weight.quant_state.bitsandbytes__nf4: missing key \"blocksize\"");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float32\", \"shape\": [24, 80]}");
    expect_load_error(&b, "field blocksize 48");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [1920]}");
    expect_load_error(&b, "field shape must be a non-empty 2-D");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [24, 80], "
                     "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5}");
    expect_load_error(&b, "nested_absmax tensor is missing");

    build(&b, 0, SR_Q4_NF4, 0);
    set_json(&b, QS, "not json");
    expect_load_error(&b, "tensor l.weight.quant_state.bitsandbytes__nf4: invalid JSON");

    build(&b, 0, SR_Q4_FP4, 1);
    drop_e(&b, "l.weight.nested_quant_map");
    expect_load_error(&b, "tensor l.weight.nested_quant_map: missing");

    build(&b, 0, SR_Q4_FP4, 1);
    find_e(&b, "l.weight.nested_absmax")->shape[0] = 0;
    expect_load_error(&b, "tensor l.weight.nested_absmax: 0 elements, expected 1");

    build(&b, 0, SR_Q4_FP4, 1);
    set_json(&b, "l.weight.quant_state.bitsandbytes__fp4",
             "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [24, 80]}");
    expect_load_error(&b, "tensor l.weight: a .nested_absmax tensor exists but the JSON has no nested_* fields");

    /* Both nf4 and fp4 quant states. */
    build(&b, 0, SR_Q4_NF4, 0);
    b.e[b.n] = *find_e(&b, QS);
    b.e[b.n++].name = "l.weight.quant_state.bitsandbytes__fp4";
    expect_load_error(&b, "both an nf4 and an fp4 quant_state");

    /* Packed bytes without their quant_state. */
    build(&b, 0, SR_Q4_NF4, 0);
    drop_e(&b, QS);
    expect_load_error(&b, "packed 4-bit weight without a .quant_state");
}

static void test_broken_int8(void **state)
{
    (void)state;
    ckbuild b;
    uint8_t one = 1;

    build(&b, 1, SR_Q4_NF4, 0);
    drop_e(&b, "l.SCB");
    expect_load_error(&b, "tensor l.weight: int8 weight without l.SCB");

    build(&b, 1, SR_Q4_NF4, 0);
    find_e(&b, "l.SCB")->shape[0] = 23;
    expect_load_error(&b, "tensor l.SCB: dtype F32 with 23 elements, expected F32 with 24");

    build(&b, 1, SR_Q4_NF4, 0);
    find_e(&b, "l.weight_format")->data = &one;
    expect_load_error(&b, "tensor l.weight_format: value 1 (col32)");

    /* weight_format is optional. */
    build(&b, 1, SR_Q4_NF4, 0);
    drop_e(&b, "l.weight_format");
    sr_qmatrix m;
    sr_error err;
    assert_int_equal(write_and_load(&b, &m, &err), 0);
    free((void *)m.data);
    sr_qtensors_free(&b.q);

    build(&b, 1, SR_Q4_NF4, 0);
    sr_st_entry *w = find_e(&b, "l.weight");
    w->ndim = 3;
    w->shape[2] = 1;
    expect_load_error(&b, "tensor l.weight: int8 weight must be a non-empty 2-D");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_models),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_broken_4bit),
        cmocka_unit_test(test_broken_int8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
