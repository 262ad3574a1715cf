/* safetensors reader: the golden checkpoints open with the right tensors, and
 * every malformed header is refused with a message naming file, tensor and
 * rule (files are written programmatically into the test's tmpdir). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/safetensors.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Builds an in-memory file: 8-byte LE length, header, then data_len bytes
 * (value i & 0xff at data byte i).  `hlen_override` != 0 replaces the
 * length field.  Returns malloc'd bytes. */
static uint8_t *make_image(const char *header, size_t data_len, uint64_t hlen_override,
                           size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    uint64_t v = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static const char *write_image(const char *name, const uint8_t *b, size_t len)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ & 7];
    snprintf(p, sizeof path[0], "%s/%s", test_tmpdir(), name);
    assert_int_equal(test_write_file(p, b, len), 0);
    return p;
}

static const char *write_st(const char *name, const char *header, size_t data_len)
{
    size_t len = 0;
    uint8_t *b = make_image(header, data_len, 0, &len);
    const char *p = write_image(name, b, len);
    free(b);
    return p;
}

static void assert_contains(const char *msg, const char *sub)
{
    if (!strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
}

/* Opens `path`, expects failure; the message must name the file and contain
 * each of the NULL-terminated substrings. */
static void expect_fail(const char *path, ...)
{
    sr_st_file *f = (sr_st_file *)1;
    sr_error err;
    sr_error_clear(&err);
    assert_int_equal(sr_st_open(path, &f, &err), -1);
    assert_null(f);
    assert_contains(err.msg, path);
    va_list ap;
    va_start(ap, path);
    for (const char *s; (s = va_arg(ap, const char *));) assert_contains(err.msg, s);
    va_end(ap);
}

static void expect_header_fail(const char *header, size_t data_len, const char *sub1,
                               const char *sub2)
{
    const char *p = write_st("bad.safetensors", header, data_len);
    expect_fail(p, sub1, sub2, NULL);
}

static sr_st_file *open_ok(const char *path)
{
    sr_st_file *f = NULL;
    sr_error err;
    sr_error_clear(&err);
    if (sr_st_open(path, &f, &err)) fail_msg("%s", err.msg);
    assert_non_null(f);
    return f;
}

/* ---- golden files ----------------------------------------------------------------- */

/* Every tensor's bytes lie inside the file and agree with its shape. */
static void check_consistent(const sr_st_file *f)
{
    const uint8_t *lo = NULL, *hi = NULL;
    for (size_t i = 0; i < sr_st_count(f); i++) {
        const sr_tensor *t = sr_st_get(f, i);
        assert_ptr_equal(t->file, f);
        assert_ptr_equal(sr_st_find(f, t->name), t);
        assert_int_equal(t->nbytes, (uint64_t)sr_tensor_numel(t) * sr_dtype_size(t->dtype));
        if (!lo || (const uint8_t *)t->data < lo) lo = t->data;
        if (!hi || (const uint8_t *)t->data + t->nbytes > hi) hi = (const uint8_t *)t->data + t->nbytes;
    }
    assert_null(sr_st_get(f, sr_st_count(f)));
    assert_null(sr_st_find(f, "no.such.tensor"));
    assert_true(hi - lo <= (ptrdiff_t)sr_st_file_size(f));
}

static void assert_shape(const sr_tensor *t, sr_dtype dt, int ndim, int64_t d0, int64_t d1)
{
    assert_non_null(t);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->ndim, ndim);
    assert_int_equal(t->shape[0], d0);
    if (ndim > 1) assert_int_equal(t->shape[1], d1);
}

static void test_golden_models(void **state)
{
    (void)state;
    static const struct { const char *path; size_t n; } files[] = {
        {"model/granite-dense/model.safetensors", 30},
        {"model/switch-3a/model.safetensors", 62},
        {"model/switch-3a-bf16/model.safetensors", 62},
        {"model/switch-3a-with-buffers/model.safetensors", 65},
        {"bnb/tiny_fp4_nodq_fp16/model.safetensors", 12},
        {"bnb/tiny_int8_fp16/model.safetensors", 10},
        {"bnb/tiny_nf4_dq_bf16/model.safetensors", 16},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        sr_st_file *f = open_ok(test_data(files[i].path));
        assert_int_equal(sr_st_count(f), files[i].n);
        assert_string_equal(sr_st_metadata_get(f, "format"), "pt");
        assert_int_equal(sr_st_metadata_count(f), 1);
        assert_string_equal(sr_st_metadata_key(f, 0), "format");
        check_consistent(f);
        sr_st_close(f);
    }

    sr_st_file *f = open_ok(test_data("model/granite-dense/model.safetensors"));
    assert_shape(sr_st_find(f, "lm_head.weight"), SR_F32, 2, 256, 64);
    assert_shape(sr_st_find(f, "model.embed_tokens.weight"), SR_F32, 2, 256, 64);
    assert_string_equal(sr_st_get(f, 0)->name, "lm_head.weight");   /* header order */
    sr_st_close(f);

    f = open_ok(test_data("model/switch-3a-bf16/model.safetensors"));
    assert_shape(sr_st_find(f, "model.embed_tokens.weight"), SR_BF16, 2, 259, 64);
    assert_shape(sr_st_find(f, "model.layers.0.input_layernorm.weight"), SR_BF16, 1, 64, 0);
    sr_st_close(f);

    f = open_ok(test_data("model/switch-3a-with-buffers/model.safetensors"));
    const sr_tensor *ids = sr_st_find(f, "model.adapter_token_ids");
    assert_shape(ids, SR_I64, 1, 3, 0);
    int64_t v[3];
    memcpy(v, ids->data, sizeof v);
    assert_int_equal(v[0], 256);
    assert_int_equal(v[1], 257);
    assert_int_equal(v[2], 258);
    const sr_tensor *hm = sr_st_find(f, "model.adapter_hiding_matrix");
    assert_shape(hm, SR_BOOL, 2, 4, 2);
    assert_memory_equal(hm->data, "\0\1\1\0\0\0\1\1", 8);
    assert_shape(sr_st_find(f, "model.token_to_group_mask"), SR_BOOL, 2, 259, 2);
    sr_st_close(f);

    f = open_ok(test_data("bnb/tiny_nf4_dq_bf16/model.safetensors"));
    assert_shape(sr_st_find(f, "model.layers.0.mlp.down_proj.weight"), SR_U8, 2, 4096, 1);
    assert_shape(sr_st_find(f, "model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"),
                 SR_U8, 1, 169, 0);
    assert_shape(sr_st_find(f, "lm_head.weight"), SR_BF16, 2, 32, 64);
    sr_st_close(f);

    f = open_ok(test_data("bnb/tiny_int8_fp16/model.safetensors"));
    assert_shape(sr_st_find(f, "model.layers.0.mlp.down_proj.SCB"), SR_F32, 1, 64, 0);
    sr_st_close(f);
}

static void test_open_memory(void **state)
{
    (void)state;
    size_t len = 0;
    char *buf = test_read_file(test_data("bnb/tiny_int8_fp16/model.safetensors"), &len);
    assert_non_null(buf);
    sr_st_file *f = NULL;
    sr_error err;
    assert_int_equal(sr_st_open_memory(buf, len, "mem.safetensors", 0, &f, &err), 0);
    assert_int_equal(sr_st_count(f), 10);
    assert_string_equal(sr_st_path(f), "mem.safetensors");
    assert_int_equal(sr_st_file_size(f), len);
    const sr_tensor *t = sr_st_get(f, 0);
    assert_true((const char *)t->data >= buf && (const char *)t->data < buf + len);
    sr_st_close(f);
    free(buf);

    /* owned buffer: freed on close, and on a failed open too (ASan checks) */
    uint8_t *own = sr_malloc(len);
    buf = test_read_file(test_data("bnb/tiny_int8_fp16/model.safetensors"), &len);
    memcpy(own, buf, len);
    free(buf);
    assert_int_equal(sr_st_open_memory(own, len, "own", 1, &f, &err), 0);
    sr_st_close(f);
    own = sr_malloc(4);
    memcpy(own, "abcd", 4);
    assert_int_equal(sr_st_open_memory(own, 4, "own-bad", 1, &f, &err), -1);
    assert_null(f);
    assert_contains(err.msg, "own-bad: header:");
}

/* Rss in kB of the mapping that holds p (/proc/self/smaps), -1 if unknown. */
static long mapping_rss_kb(const void *p)
{
    FILE *fp = fopen("/proc/self/smaps", "r");
    if (!fp) return -1;
    char line[512];
    long rss = -1;
    int inside = 0;
    while (fgets(line, sizeof line, fp)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) { /* a mapping's first line */
            inside = (uintptr_t)p >= a && (uintptr_t)p < b;
            continue;
        }
        if (inside && sscanf(line, "Rss: %ld kB", &rss) == 1) break;
    }
    fclose(fp);
    return rss;
}

/* sr_st_release: a mapped file's tensor bytes read back the same after they
 * were released (faulted in again from the file), a file in memory is left
 * alone, and a range outside the file is not its. */
static void test_release(void **state)
{
    (void)state;
    size_t len = 0;
    /* two pages and a bit of data: the release has whole pages to drop */
    char hdr[128];
    snprintf(hdr, sizeof hdr, "{\"t\":{\"dtype\":\"U8\",\"shape\":[9000],"
             "\"data_offsets\":[0,9000]}}");
    uint8_t *img = make_image(hdr, 9000, 0, &len);
    const char *p = write_image("release.safetensors", img, len);
    sr_st_file *f = open_ok(p);
    const sr_tensor *t = sr_st_find(f, "t");
    assert_non_null(t);
    assert_memory_equal(t->data, img + len - 9000, 9000);
    const long before = mapping_rss_kb(t->data);
    assert_int_equal(sr_st_release(f, t->data, t->nbytes), 1);
    const long after = mapping_rss_kb(t->data);
    if (before >= 0 && after >= 0) assert_true(after < before); /* whole pages left the process */
    assert_memory_equal(t->data, img + len - 9000, 9000);
    assert_int_equal(sr_st_release(f, t->data, t->nbytes), 1); /* twice: harmless */
    assert_memory_equal(t->data, img + len - 9000, 9000);
    assert_int_equal(sr_st_release(f, img, 16), 0);              /* not f's bytes */
    assert_int_equal(sr_st_release(f, t->data, (size_t)len + 1), 0); /* runs past it */
    assert_int_equal(sr_st_release(f, NULL, 0), 0);
    sr_st_close(f);

    /* in memory (as a .zst shard is): the bytes stay */
    uint8_t *own = sr_malloc(len);
    assert_non_null(own);
    memcpy(own, img, len);
    sr_error err;
    assert_int_equal(sr_st_open_memory(own, len, "mem", 1, &f, &err), 0);
    t = sr_st_find(f, "t");
    assert_int_equal(sr_st_release(f, t->data, t->nbytes), 1);
    assert_memory_equal(t->data, img + len - 9000, 9000);
    sr_st_close(f);
    free(img);
}

/* ---- valid edge cases ----------------------------------------------------------------- */

static void test_edge_cases_valid(void **state)
{
    (void)state;
    /* empty header, scalar, zero-size tensors anywhere, gaps, extra fields */
    const char *p = write_st("empty.safetensors", "{}", 0);
    sr_st_file *f = open_ok(p);
    assert_int_equal(sr_st_count(f), 0);
    assert_int_equal(sr_st_metadata_count(f), 0);
    assert_null(sr_st_metadata_get(f, "format"));
    sr_st_close(f);

    p = write_st("edge.safetensors",
                 "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]},"
                 " \"z\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[5,5]},"
                 " \"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[10,13],\"extra\":1},"
                 " \"__metadata__\":{\"zeta\":\"1\",\"alpha\":\"two\"}}      ",
                 16);
    f = open_ok(p);
    assert_int_equal(sr_st_count(f), 3);
    const sr_tensor *s = sr_st_find(f, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(sr_tensor_numel(s), 1);
    assert_int_equal(s->nbytes, 4);
    assert_int_equal(((const uint8_t *)s->data)[0], 4);
    assert_int_equal(sr_tensor_numel(sr_st_find(f, "z")), 0);
    assert_int_equal(((const uint8_t *)sr_st_find(f, "b")->data)[2], 12);
    assert_string_equal(sr_st_get(f, 1)->name, "z");
    assert_int_equal(sr_st_metadata_count(f), 2);
    assert_string_equal(sr_st_metadata_get(f, "alpha"), "two");
    assert_string_equal(sr_st_metadata_get(f, "zeta"), "1");
    assert_null(sr_st_metadata_get(f, "beta"));
    sr_st_close(f);
}

/* ---- malformed files ----------------------------------------------------------------- */

static void test_truncated(void **state)
{
    (void)state;
    expect_fail(write_image("zero.safetensors", (const uint8_t *)"", 0), "header:", "too short",
                NULL);
    expect_fail(write_image("five.safetensors", (const uint8_t *)"\x10\0\0\0\0", 5), "too short",
                NULL);
    /* a valid file cut inside its data section */
    size_t len = 0;
    char *buf = test_read_file(test_data("bnb/tiny_fp4_nodq_fp16/model.safetensors"), &len);
    const char *p = write_image("cut.safetensors", (const uint8_t *)buf, len - 100);
    free(buf);
    expect_fail(p, "tensor '", "outside the data section", NULL);
}

static void test_header_length(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *b = make_image("{}", 0, 1000, &len);
    expect_fail(write_image("long.safetensors", b, len), "header:", "length 1000",
                "past the end of the file", NULL);
    free(b);
    b = make_image("{}", 0, 200ull << 20, &len);
    expect_fail(write_image("huge.safetensors", b, len), "header:", "exceeds", "limit", NULL);
    free(b);
    b = make_image("{}", 0, UINT64_MAX, &len);
    expect_fail(write_image("max.safetensors", b, len), "header:", "exceeds", NULL);
    free(b);
    /* a JSON file where the weights should be: its first 8 bytes as a length */
    const char *json = "{\n  \"architectures\": [\"GraniteForCausalLM\"]\n}\n";
    expect_fail(write_image("config.safetensors", (const uint8_t *)json, strlen(json)), "header:",
                "not a safetensors file: it starts with text", NULL);
}

static void test_header_not_object(void **state)
{
    (void)state;
    expect_header_fail("[1, 2]", 0, "header:", "not a JSON object");
    expect_header_fail("\"x\"", 0, "header:", "invalid JSON");   /* jansson: not a container */
    expect_header_fail("{\"a\": ", 0, "header:", "invalid JSON");
    expect_header_fail("{} trailing", 0, "header:", "invalid JSON");
    expect_header_fail("{\"a\\u0000b\": 1}", 0, "header:", "invalid JSON");
}

static void test_entry_types(void **state)
{
    (void)state;
    expect_header_fail("{\"t\": 5}", 0, "tensor 't'", "not a JSON object");
    expect_header_fail("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 't'",
                       "missing \"dtype\"");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 't'",
                       "missing \"shape\"");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 't'",
                       "missing \"data_offsets\"");
    expect_header_fail("{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       "tensor 't'", "\"dtype\" is not a string");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
                       "tensor 't'", "\"shape\" is not an array");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                       "tensor 't'", "shape[0] is not a non-negative integer");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                       "tensor 't'", "shape[0]");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                       "\"data_offsets\":[0,4]}}", 4, "tensor 't'", "more than 8");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                       "tensor 't'", "not an array of 2 integers");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 8,
                       "tensor 't'", "not an array of 2 integers");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                       "tensor 't'", "not non-negative integers");
    expect_header_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                       "tensor 't'", "begin 8 > end 4");
}

static void test_bad_dtype(void **state)
{
    (void)state;
    expect_header_fail("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                       "tensor 'w'", "unknown dtype \"Q4\"");
    expect_header_fail("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       "tensor 'w'", "unknown dtype");
    expect_header_fail("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                       "tensor 'w'", "F8 tensors are not supported");
    expect_header_fail("{\"w\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                       "tensor 'w'", "F8 tensors are not supported");
}

static void test_shape_size(void **state)
{
    (void)state;
    expect_header_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                       "\"data_offsets\":[0,0]}}", 0, "tensor 'w'", "overflows");
    /* numel fits in 64 bits, times the dtype size does not */
    expect_header_fail("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                       "\"data_offsets\":[0,0]}}", 0, "tensor 'w'", "overflows");
    /* overflow hidden behind a zero is still refused (numel would be UB) */
    expect_header_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807,4,0],"
                       "\"data_offsets\":[0,0]}}", 0, "tensor 'w'", "overflows");
    expect_header_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                       "tensor 'w'", "shape/size mismatch: F32 shape needs 24 bytes, "
                       "data_offsets give 20");
    expect_header_fail("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                       "tensor 'w'", "shape/size mismatch");
}

static void test_ranges(void **state)
{
    (void)state;
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 16,
                       "tensor 'b'", "overlap tensor 'a'");
    /* nested inside a larger one, listed first */
    expect_header_fail("{\"in\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
                       "\"out\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]}}", 16,
                       "overlap", "'out'");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                       "overlap", "[0, 4]");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[14,18]}}", 16,
                       "tensor 'a'", "[14, 18] outside the data section (16 bytes)");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                       "\"data_offsets\":[9223372036854775807,9223372036854775807]}}", 16,
                       "tensor 'a'", "outside the data section");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                       "\"data_offsets\":[18446744073709551615,18446744073709551615]}}", 16,
                       "header:", "too big integer");
}

static void test_metadata_and_duplicates(void **state)
{
    (void)state;
    expect_header_fail("{\"__metadata__\":{\"format\":1}}", 0, "header:",
                       "__metadata__ entry 'format' is not a string");
    expect_header_fail("{\"__metadata__\":[\"pt\"]}", 0, "header:",
                       "__metadata__ is not a JSON object");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                       "header: duplicate key 'a'", "tensor name");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
                       "\"data_offsets\":[0,1]}}", 1, "header: duplicate key 'dtype'", NULL);
    expect_fail("/nonexistent/dir/x.safetensors", "cannot open", NULL);
    expect_fail(test_tmpdir(), "not a regular file", NULL);
}

/* 100k tensors: parse and look every one up quickly. */
static void test_many_tensors(void **state)
{
    (void)state;
    enum { N = 100000 };
    size_t cap = (size_t)N * 80 + 64, pos = 0;
    char *h = malloc(cap);
    assert_non_null(h);
    h[pos++] = '{';
    for (int i = 0; i < N; i++)
        pos += (size_t)snprintf(h + pos, cap - pos,
                                "%s\"layer.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],"
                                "\"data_offsets\":[%d,%d]}",
                                i ? "," : "", (i * 7919) % N, i, i + 1);
    h[pos++] = '}';
    h[pos] = 0;
    const char *p = write_st("many.safetensors", h, N);
    free(h);
    clock_t t0 = clock();
    sr_st_file *f = open_ok(p);
    assert_int_equal(sr_st_count(f), N);
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "layer.%d.w", i);
        const sr_tensor *t = sr_st_find(f, name);
        assert_non_null(t);
        assert_string_equal(t->name, name);
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    sr_st_close(f);
    /* generous: sanitizer builds are slow; a linear search would take minutes */
    assert_true(secs < 20.0);
}

/* Every allocation failure gives a clean error and leaks nothing. */
static void test_alloc_failures(void **state)
{
    (void)state;
    const char *path = test_data("bnb/tiny_nf4_dq_bf16/model.safetensors");
    sr_alloc_fail_after(-1);
    sr_alloc_fail_after(1000000);
    sr_st_file *f = open_ok(path);
    long sites = sr_alloc_count();
    sr_st_close(f);
    for (long k = 0; k < sites; k++) {
        sr_error err;
        sr_alloc_fail_after(k);
        int rc = sr_st_open(path, &f, &err);
        sr_alloc_fail_after(-1);
        assert_int_equal(rc, -1);
        assert_null(f);
        assert_contains(err.msg, "out of memory");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_models),
        cmocka_unit_test(test_open_memory),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_edge_cases_valid),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_entry_types),
        cmocka_unit_test(test_bad_dtype),
        cmocka_unit_test(test_shape_size),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_metadata_and_duplicates),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
