/* Checkpoint reader: golden directories and bare files, sharded checkpoints
 * whose index and shards must agree, and zstd-compressed shards (good,
 * corrupt, truncated, without checksum).  Malformed checkpoints are built in
 * the test's tmpdir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <zstd.h>

#include "runtime/alloc.h"
#include "runtime/checkpoint.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------ */

static void assert_contains(const char *msg, const char *sub)
{
    if (!strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
}

static const char *path_in(const char *dir, const char *name)
{
    static char buf[16][512];
    static int k;
    char *p = buf[k++ & 15];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* A fresh checkpoint directory (with config.json) under the tmpdir. */
static const char *make_dir(const char *name)
{
    static char buf[8][512];
    static int k;
    char *d = buf[k++ & 7];
    snprintf(d, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    assert_int_equal(mkdir(d, 0755), 0);
    const char *cfg = "{\"model_type\": \"granite\"}";
    assert_int_equal(test_write_file(path_in(d, "config.json"), cfg, strlen(cfg)), 0);
    return d;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    assert_int_equal(test_write_file(path_in(dir, name), text, strlen(text)), 0);
}

/* A safetensors image of U8 tensors named in `names` (comma separated),
 * 4 bytes each, byte j of tensor i = 16 * i + j. */
static uint8_t *st_image(const char *names, size_t *len)
{
    char header[4096], list[1024];
    size_t hp = 0, n = 0;
    snprintf(list, sizeof list, "%s", names);
    hp += (size_t)snprintf(header + hp, sizeof header - hp, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save), n++)
        hp += (size_t)snprintf(header + hp, sizeof header - hp,
                               ",\"%s\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[%zu,%zu]}",
                               t, 4 * n, 4 * n + 4);
    hp += (size_t)snprintf(header + hp, sizeof header - hp, "}");
    while (hp % 8) header[hp++] = ' ';
    *len = 8 + hp + 4 * n;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, header, hp);
    for (size_t i = 0; i < 4 * n; i++) b[8 + hp + i] = (uint8_t)(16 * (i / 4) + i % 4);
    return b;
}

static void write_shard(const char *dir, const char *file, const char *names)
{
    size_t len = 0;
    uint8_t *b = st_image(names, &len);
    assert_int_equal(test_write_file(path_in(dir, file), b, len), 0);
    free(b);
}

/* zstd-compresses src; `checksum` / `content_size` set the frame flags. */
static uint8_t *zst(const void *src, size_t len, int checksum, int content_size, size_t *zlen)
{
    size_t cap = ZSTD_compressBound(len);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(z);
    assert_non_null(c);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, content_size);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
    *zlen = ZSTD_compress2(c, z, cap, src, len);
    assert_false(ZSTD_isError(*zlen));
    ZSTD_freeCCtx(c);
    return z;
}

static void write_zst_shard(const char *dir, const char *file, const char *names)
{
    size_t len = 0, zlen = 0;
    uint8_t *b = st_image(names, &len);
    uint8_t *z = zst(b, len, 1, 1, &zlen);
    assert_int_equal(test_write_file(path_in(dir, file), z, zlen), 0);
    free(b);
    free(z);
}

static sr_checkpoint *open_ok(const char *path)
{
    sr_checkpoint *ck = NULL;
    sr_error err;
    sr_error_clear(&err);
    if (sr_ckpt_open(path, &ck, &err)) fail_msg("%s", err.msg);
    assert_non_null(ck);
    return ck;
}

/* Opening must fail with a message holding every NULL-terminated substring. */
static void expect_fail(const char *path, ...)
{
    sr_checkpoint *ck = (sr_checkpoint *)1;
    sr_error err;
    sr_error_clear(&err);
    assert_int_equal(sr_ckpt_open(path, &ck, &err), -1);
    assert_null(ck);
    va_list ap;
    va_start(ap, path);
    for (const char *s; (s = va_arg(ap, const char *));) assert_contains(err.msg, s);
    va_end(ap);
}

static void assert_u8_tensor(const sr_checkpoint *ck, const char *name, int index_in_shard)
{
    const sr_tensor *t = sr_ckpt_find(ck, name);
    if (!t) fail_msg("tensor %s not found", name);
    assert_string_equal(t->name, name);
    assert_int_equal(t->dtype, SR_U8);
    assert_int_equal(t->shape[0], 4);
    const uint8_t *d = t->data;
    for (int j = 0; j < 4; j++) assert_int_equal(d[j], 16 * index_in_shard + j);
}

/* ---- golden checkpoints ----------------------------------------------------------- */

static void test_golden_dirs(void **state)
{
    (void)state;
    static const struct { const char *dir; size_t n; } dirs[] = {
        {"model/granite-dense", 30}, {"model/switch-3a", 62}, {"model/switch-3a-bf16", 62},
        {"model/switch-3a-with-buffers", 65}, {"bnb/tiny_fp4_nodq_fp16", 12},
        {"bnb/tiny_int8_fp16", 10}, {"bnb/tiny_nf4_dq_bf16", 16},
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        sr_checkpoint *ck = open_ok(test_data(dirs[i].dir));
        assert_int_equal(sr_ckpt_count(ck), dirs[i].n);
        assert_true(sr_ckpt_has_config(ck));
        assert_string_equal(sr_ckpt_dir(ck), test_data(dirs[i].dir));
        assert_int_equal(sr_ckpt_shard_count(ck), 1);
        assert_string_equal(sr_ckpt_shard_path(ck, 0), path_in(test_data(dirs[i].dir),
                                                                "model.safetensors"));
        assert_int_equal(sr_ckpt_shard_disk_bytes(ck, 0), sr_ckpt_shard_bytes(ck, 0));
        for (size_t j = 0; j < sr_ckpt_count(ck); j++) {
            const sr_tensor *t = sr_ckpt_get(ck, j);
            assert_ptr_equal(sr_ckpt_find(ck, t->name), t);
        }
        assert_null(sr_ckpt_get(ck, dirs[i].n));
        assert_null(sr_ckpt_find(ck, "nope"));
        sr_ckpt_close(ck);
    }
    /* trailing slash, and a bare file (its directory, no config) */
    char slash[512];
    snprintf(slash, sizeof slash, "%s/", test_data("model/granite-dense"));
    sr_checkpoint *ck = open_ok(slash);
    assert_string_equal(sr_ckpt_dir(ck), test_data("model/granite-dense"));
    sr_ckpt_close(ck);
    ck = open_ok(test_data("model/granite-dense/model.safetensors"));
    assert_false(sr_ckpt_has_config(ck));
    assert_string_equal(sr_ckpt_dir(ck), test_data("model/granite-dense"));
    const sr_tensor *t = sr_ckpt_find(ck, "lm_head.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 256);
    assert_int_equal(t->shape[1], 64);
    sr_ckpt_close(ck);
}

static void test_not_a_checkpoint(void **state)
{
    (void)state;
    const char *d = make_dir("empty");
    expect_fail(d, d, "no model.safetensors", "model.safetensors.index.json", NULL);
    expect_fail(path_in(d, "missing.safetensors"), "missing.safetensors", "cannot open", NULL);
    expect_fail(path_in(d, "config.json"), "config.json", "header:", NULL);
    /* a pre-safetensors Hub checkpoint: said so */
    d = make_dir("pickled");
    write_text(d, "pytorch_model.bin", "PK");
    expect_fail(d, d, "no model.safetensors", "pytorch_model.bin", "safetensors only", NULL);
    d = make_dir("pickled-sharded");
    write_text(d, "pytorch_model.bin.index.json", "{}");
    expect_fail(d, d, "pytorch_model.bin", "safetensors only", NULL);
}

/* ---- sharded checkpoints ------------------------------------------------------------ */

static const char *INDEX_OK =
    "{\"metadata\": {\"total_size\": 999999},"
    " \"weight_map\": {\"a.w\": \"model-00001-of-00002.safetensors\","
    "                  \"b.w\": \"model-00001-of-00002.safetensors\","
    "                  \"c.w\": \"model-00001-of-00002.safetensors\","
    "                  \"d.w\": \"model-00002-of-00002.safetensors\","
    "                  \"e.w\": \"model-00002-of-00002.safetensors\"}}";

static void test_sharded(void **state)
{
    (void)state;
    const char *d = make_dir("sharded");
    write_shard(d, "model-00002-of-00002.safetensors", "e.w,d.w");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w,c.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    sr_checkpoint *ck = open_ok(d);
    assert_true(sr_ckpt_has_config(ck));
    assert_int_equal(sr_ckpt_count(ck), 5);
    assert_int_equal(sr_ckpt_shard_count(ck), 2);
    assert_string_equal(sr_ckpt_shard_path(ck, 0), path_in(d, "model-00001-of-00002.safetensors"));
    assert_string_equal(sr_ckpt_shard_path(ck, 1), path_in(d, "model-00002-of-00002.safetensors"));
    assert_u8_tensor(ck, "a.w", 0);
    assert_u8_tensor(ck, "c.w", 2);
    assert_u8_tensor(ck, "e.w", 0);
    assert_u8_tensor(ck, "d.w", 1);
    assert_string_equal(sr_ckpt_get(ck, 3)->name, "e.w");   /* shard order, header order */
    assert_string_equal(sr_st_path(sr_ckpt_find(ck, "d.w")->file),
                        path_in(d, "model-00002-of-00002.safetensors"));
    sr_ckpt_close(ck);
    /* the index file itself can be given */
    ck = open_ok(path_in(d, "model.safetensors.index.json"));
    assert_int_equal(sr_ckpt_count(ck), 5);
    sr_ckpt_close(ck);
}

static void test_missing_shard(void **state)
{
    (void)state;
    const char *d = make_dir("missing_shard");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w,c.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    expect_fail(d, "model.safetensors.index.json", "shard 'model-00002-of-00002.safetensors'",
                "missing", NULL);
}

static void test_tensor_in_two_shards(void **state)
{
    (void)state;
    const char *d = make_dir("two_shards");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w,c.w");
    write_shard(d, "model-00002-of-00002.safetensors", "d.w,e.w,b.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    expect_fail(d, "tensor 'b.w'", "present in two shards", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors", NULL);
}

static void test_index_disagrees(void **state)
{
    (void)state;
    /* listed in the index, absent from its shard */
    const char *d = make_dir("index_extra");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w");
    write_shard(d, "model-00002-of-00002.safetensors", "d.w,e.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    expect_fail(d, "model.safetensors.index.json", "tensor 'c.w'",
                "listed for shard model-00001-of-00002.safetensors but missing", NULL);

    /* in a shard, absent from the index */
    d = make_dir("index_short");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w,c.w,x.w");
    write_shard(d, "model-00002-of-00002.safetensors", "d.w,e.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    expect_fail(d, "model.safetensors.index.json", "tensor 'x.w'",
                "model-00001-of-00002.safetensors", "not listed in weight_map", NULL);

    /* listed for one shard, stored in the other */
    d = make_dir("index_wrong_shard");
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w");
    write_shard(d, "model-00002-of-00002.safetensors", "c.w,d.w,e.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    expect_fail(d, "tensor 'c.w'", "listed for shard model-00001-of-00002.safetensors",
                "is in shard model-00002-of-00002.safetensors", NULL);
}

static void test_bad_index(void **state)
{
    (void)state;
    const char *d = make_dir("bad_index");
    write_shard(d, "s.safetensors", "a.w");
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": ");
    expect_fail(d, "model.safetensors.index.json", "invalid JSON", NULL);
    write_text(d, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_fail(d, "model.safetensors.index.json", "weight_map", NULL);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {}}");
    expect_fail(d, "weight_map: empty", NULL);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a.w\": 3}}");
    expect_fail(d, "tensor 'a.w'", "shard is not a relative file name", NULL);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a.w\": \"../s.safetensors\"}}");
    expect_fail(d, "tensor 'a.w'", "shard is not a relative file name", NULL);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a.w\": \"/etc/passwd\"}}");
    expect_fail(d, "tensor 'a.w'", "shard is not a relative file name", NULL);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\": {\"a.w\": \"s.safetensors\", \"a.w\": \"s.safetensors\"}}");
    expect_fail(d, "model.safetensors.index.json", "duplicate", NULL);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"a.w\": \"s.safetensors\"}}");
    sr_checkpoint *ck = open_ok(d);
    assert_int_equal(sr_ckpt_count(ck), 1);
    sr_ckpt_close(ck);
    /* a broken shard: its own message, with the index named in front */
    write_text(d, "s.safetensors", "garbage");
    expect_fail(d, "model.safetensors.index.json", "s.safetensors: header:", NULL);
}

/* ---- zstd shards ------------------------------------------------------------------- */

static void test_zst_single(void **state)
{
    (void)state;
    const char *src = test_data("model/switch-3a-with-buffers/model.safetensors");
    size_t len = 0, zlen = 0;
    char *raw = test_read_file(src, &len);
    assert_non_null(raw);
    uint8_t *z = zst(raw, len, 1, 1, &zlen);
    const char *d = make_dir("zst_single");
    assert_int_equal(test_write_file(path_in(d, "model.safetensors.zst"), z, zlen), 0);

    sr_checkpoint *ck = open_ok(d);
    sr_checkpoint *ref = open_ok(src);
    assert_int_equal(sr_ckpt_count(ck), 65);
    assert_string_equal(sr_ckpt_shard_path(ck, 0), path_in(d, "model.safetensors.zst"));
    assert_int_equal(sr_ckpt_shard_disk_bytes(ck, 0), zlen);
    assert_int_equal(sr_ckpt_shard_bytes(ck, 0), len);
    for (size_t i = 0; i < sr_ckpt_count(ref); i++) {
        const sr_tensor *a = sr_ckpt_get(ref, i), *b = sr_ckpt_find(ck, a->name);
        assert_non_null(b);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    assert_string_equal(sr_st_path(sr_ckpt_get(ck, 0)->file), path_in(d, "model.safetensors.zst"));
    sr_ckpt_close(ck);
    sr_ckpt_close(ref);

    /* the bare .zst file, and a frame that does not declare its size */
    ck = open_ok(path_in(d, "model.safetensors.zst"));
    assert_int_equal(sr_ckpt_count(ck), 65);
    assert_false(sr_ckpt_has_config(ck));
    sr_ckpt_close(ck);
    free(z);
    z = zst(raw, len, 1, 0, &zlen);
    assert_int_equal(test_write_file(path_in(d, "model.safetensors.zst"), z, zlen), 0);
    ck = open_ok(d);
    assert_int_equal(sr_ckpt_shard_bytes(ck, 0), len);
    sr_ckpt_close(ck);
    free(z);
    free(raw);
}

static void test_zst_sharded(void **state)
{
    (void)state;
    const char *d = make_dir("zst_sharded");
    write_zst_shard(d, "model-00001-of-00002.safetensors.zst", "a.w,b.w,c.w");
    write_shard(d, "model-00002-of-00002.safetensors", "e.w,d.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    sr_checkpoint *ck = open_ok(d);
    assert_int_equal(sr_ckpt_count(ck), 5);
    assert_u8_tensor(ck, "b.w", 1);
    assert_u8_tensor(ck, "d.w", 1);
    assert_string_equal(sr_ckpt_shard_path(ck, 0),
                        path_in(d, "model-00001-of-00002.safetensors.zst"));
    assert_true(sr_ckpt_shard_disk_bytes(ck, 0) != sr_ckpt_shard_bytes(ck, 0));
    assert_int_equal(sr_ckpt_shard_disk_bytes(ck, 1), sr_ckpt_shard_bytes(ck, 1));
    sr_ckpt_close(ck);
    /* the plain file wins over the .zst when both exist */
    write_shard(d, "model-00001-of-00002.safetensors", "a.w,b.w,c.w");
    ck = open_ok(d);
    assert_string_equal(sr_ckpt_shard_path(ck, 0), path_in(d, "model-00001-of-00002.safetensors"));
    sr_ckpt_close(ck);
}

/* Writes `z` as model.safetensors.zst of a fresh directory; returns the path. */
static const char *zst_dir(const char *name, const uint8_t *z, size_t zlen)
{
    const char *d = make_dir(name);
    const char *p = path_in(d, "model.safetensors.zst");
    assert_int_equal(test_write_file(p, z, zlen), 0);
    return d;
}

static void test_zst_bad(void **state)
{
    (void)state;
    size_t len = 0, zlen = 0;
    char *raw = test_read_file(test_data("model/granite-dense/model.safetensors"), &len);
    uint8_t *z = zst(raw, len, 1, 1, &zlen);

    const char *d = zst_dir("zst_truncated", z, zlen - 50);
    expect_fail(d, "model.safetensors.zst", "truncated zstd data", NULL);
    d = zst_dir("zst_cut_header", z, 3);
    expect_fail(d, "model.safetensors.zst", "truncated", NULL);

    z[zlen - 1] ^= 0x5a;   /* the checksum itself */
    d = zst_dir("zst_checksum", z, zlen);
    expect_fail(d, "model.safetensors.zst", "checksum mismatch", NULL);
    z[zlen - 1] ^= 0x5a;

    /* damage inside the compressed data: caught by the decoder or the checksum */
    uint8_t *bad = malloc(zlen);
    memcpy(bad, z, zlen);
    for (size_t i = zlen / 3; i < zlen / 3 + 16; i++) bad[i] ^= 0xff;
    d = zst_dir("zst_corrupt", bad, zlen);
    expect_fail(d, "model.safetensors.zst", "zstd", NULL);
    free(bad);

    d = zst_dir("zst_garbage", (const uint8_t *)"definitely not zstd", 19);
    expect_fail(d, "model.safetensors.zst", "not a zstd frame", NULL);
    d = zst_dir("zst_empty", (const uint8_t *)"", 0);
    expect_fail(d, "model.safetensors.zst", "empty", NULL);
    free(z);

    z = zst(raw, len, 0, 1, &zlen);
    d = zst_dir("zst_no_checksum", z, zlen);
    expect_fail(d, "model.safetensors.zst", "no content checksum", NULL);
    free(z);

    /* decompresses fine, but the content is not a valid safetensors file */
    z = zst("not safetensors at all", 22, 1, 1, &zlen);
    d = zst_dir("zst_not_st", z, zlen);
    expect_fail(d, "model.safetensors.zst: header:", NULL);
    free(z);
    free(raw);
}

static void test_zst_frames_and_limit(void **state)
{
    (void)state;
    size_t len = 0, z1len = 0, z2len = 0;
    char *raw = test_read_file(test_data("bnb/tiny_int8_fp16/model.safetensors"), &len);
    /* skippable frame + two frames (as pzstd writes) */
    uint8_t *z1 = zst(raw, 1000, 1, 1, &z1len), *z2 = zst(raw + 1000, len - 1000, 1, 0, &z2len);
    static const uint8_t skip[12] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};
    size_t all_len = sizeof skip + z1len + z2len;
    uint8_t *all = malloc(all_len);
    memcpy(all, skip, sizeof skip);
    memcpy(all + sizeof skip, z1, z1len);
    memcpy(all + sizeof skip + z1len, z2, z2len);

    sr_st_file *f = NULL;
    sr_error err;
    assert_int_equal(sr_ckpt_zst_open_memory(all, all_len, "multi.zst", UINT64_MAX, &f, &err), 0);
    assert_int_equal(sr_st_count(f), 10);
    assert_int_equal(sr_st_file_size(f), len);
    sr_st_close(f);

    /* the size limit: declared (first frame) and undeclared (second frame) */
    assert_int_equal(sr_ckpt_zst_open_memory(all, all_len, "multi.zst", 999, &f, &err), -1);
    assert_null(f);
    assert_contains(err.msg, "multi.zst: zstd frame declares 1000 bytes, more than the 999");
    assert_int_equal(sr_ckpt_zst_open_memory(all, all_len, "multi.zst", len - 1, &f, &err), -1);
    assert_contains(err.msg, "multi.zst: decompresses to more than");
    free(all);
    free(z1);
    free(z2);
    free(raw);
}

/* Every allocation failure on a sharded + zst open is a clean error. */
static void test_alloc_failures(void **state)
{
    (void)state;
    const char *d = make_dir("alloc");
    write_zst_shard(d, "model-00001-of-00002.safetensors.zst", "a.w,b.w,c.w");
    write_shard(d, "model-00002-of-00002.safetensors", "e.w,d.w");
    write_text(d, "model.safetensors.index.json", INDEX_OK);
    sr_alloc_fail_after(1000000);
    sr_checkpoint *ck = open_ok(d);
    long sites = sr_alloc_count();
    sr_ckpt_close(ck);
    sr_alloc_fail_after(-1);
    assert_true(sites > 5);
    for (long k = 0; k < sites; k++) {
        sr_error err;
        sr_alloc_fail_after(k);
        int rc = sr_ckpt_open(d, &ck, &err);
        sr_alloc_fail_after(-1);
        assert_int_equal(rc, -1);
        assert_null(ck);
        assert_contains(err.msg, "out of memory");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_dirs),
        cmocka_unit_test(test_not_a_checkpoint),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_tensor_in_two_shards),
        cmocka_unit_test(test_index_disagrees),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_zst_single),
        cmocka_unit_test(test_zst_sharded),
        cmocka_unit_test(test_zst_bad),
        cmocka_unit_test(test_zst_frames_and_limit),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
