/* runtime/safetensors_write: files the reader accepts with the same
 * tensors, the documented layout (padding, order, alignment, metadata),
 * streaming fill callbacks, and errors that leave nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/safetensors.h"
#include "runtime/safetensors_write.h"
#include "test_util.h"

static sr_st_entry entry(const char *name, sr_dtype dt, int ndim, const int64_t *shape, const void *data)
{
    sr_st_entry e;
    memset(&e, 0, sizeof e);
    e.name = name;
    e.dtype = dt;
    e.ndim = ndim;
    for (int i = 0; i < ndim; i++) e.shape[i] = shape[i];
    e.data = data;
    return e;
}

static const char *path_of(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", test_tmpdir(), name);
    return buf;
}

/* Number of entries in the temporary directory (leftover files). */
static int count_files(void)
{
    DIR *d = opendir(test_tmpdir());
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int fill_iota(void *ctx, void *dst, uint64_t nbytes, sr_error *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    for (uint64_t i = 0; i < nbytes; i++) ((uint8_t *)dst)[i] = (uint8_t)i;
    return 0;
}

static int fill_fail(void *ctx, void *dst, uint64_t nbytes, sr_error *err)
{
    (void)ctx;
    (void)dst;
    (void)nbytes;
    return sr_fail(err, "producer broke");
}

static void test_roundtrip_layout(void **state)
{
    (void)state;
    float f[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3f80, 0x4000, 0x4040};
    uint8_t u[5] = {1, 2, 3, 4, 5}, s = 7;
    double dd[2] = {0.5, -1};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s5[2] = {5, 1}, s2[1] = {2}, s0[1] = {0};
    int calls = 0;
    sr_st_entry e[7] = {
        entry("z.f32", SR_F32, 2, s23, f),
        entry("a.u8", SR_U8, 2, s5, u),
        entry("m.bf16", SR_BF16, 1, s3, h),
        entry("scalar", SR_U8, 0, NULL, &s),
        entry("b.f64", SR_F64, 1, s2, dd),
        entry("empty", SR_F32, 1, s0, f),
        entry("streamed", SR_I16, 1, s3, NULL),
    };
    e[6].fill = fill_iota;
    e[6].ctx = &calls;
    const char *p = path_of("w.safetensors");
    sr_error err;
    int rc = sr_st_write(p, e, 7, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(calls, 1);

    sr_st_file *sf;
    rc = sr_st_open(p, &sf, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(sr_st_count(sf), 7);
    const sr_tensor *t = sr_st_find(sf, "z.f32");
    assert_non_null(t);
    assert_int_equal(t->dtype, SR_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 3);
    assert_memory_equal(t->data, f, sizeof f);
    assert_int_equal((uintptr_t)t->data % 4, 0);
    t = sr_st_find(sf, "m.bf16");
    assert_memory_equal(t->data, h, sizeof h);
    assert_int_equal((uintptr_t)t->data % 2, 0);
    t = sr_st_find(sf, "b.f64");
    assert_memory_equal(t->data, dd, sizeof dd);
    assert_int_equal((uintptr_t)t->data % 8, 0);
    t = sr_st_find(sf, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(*(const uint8_t *)t->data, 7);
    t = sr_st_find(sf, "empty");
    assert_int_equal(t->nbytes, 0);
    t = sr_st_find(sf, "streamed");
    assert_int_equal(t->nbytes, 6);
    assert_memory_equal(t->data, "\0\1\2\3\4\5", 6);
    assert_string_equal(sr_st_metadata_get(sf, "format"), "pt");
    sr_st_close(sf);

    /* Raw layout: 8-byte length, header a multiple of 8, metadata first,
     * data ordered by element size then name. */
    size_t len;
    char *raw = test_read_file(p, &len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(uint8_t)raw[i] << (8 * i);
    assert_int_equal(hl % 8, 0);
    assert_int_equal(strncmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31), 0);
    json_t *hdr = json_loadb(raw + 8, (size_t)hl, 0, NULL);
    assert_non_null(hdr);
    static const char *order[] = {"b.f64", "empty", "z.f32", "m.bf16", "streamed", "a.u8", "scalar"};
    json_int_t prev = 0;
    for (int i = 0; i < 7; i++) {
        json_t *o = json_array_get(json_object_get(json_object_get(hdr, order[i]), "data_offsets"), 0);
        assert_non_null(o);
        assert_true(json_integer_value(o) >= prev);
        prev = json_integer_value(o);
    }
    json_decref(hdr);
    free(raw);
    assert_int_equal(count_files(), 1);
    unlink(p);
}

static void test_errors_leave_nothing(void **state)
{
    (void)state;
    float f[4] = {0};
    int64_t s4[1] = {4}, neg[1] = {-1};
    sr_error err;
    const char *p = path_of("bad.safetensors");

    sr_st_entry dup[2] = {entry("x", SR_F32, 1, s4, f), entry("x", SR_U8, 1, s4, f)};
    assert_int_equal(sr_st_write(p, dup, 2, &err), -1);
    assert_non_null(strstr(err.msg, "tensor x: duplicate name"));
    assert_non_null(strstr(err.msg, "bad.safetensors"));

    sr_st_entry e = entry("", SR_F32, 1, s4, f);
    assert_int_equal(sr_st_write(p, &e, 1, &err), -1);
    e = entry("__metadata__", SR_F32, 1, s4, f);
    assert_int_equal(sr_st_write(p, &e, 1, &err), -1);
    e = entry("n", SR_F32, 1, neg, f);
    assert_int_equal(sr_st_write(p, &e, 1, &err), -1);
    assert_non_null(strstr(err.msg, "tensor n: invalid shape"));
    e = entry("n", SR_F32, 1, s4, NULL);
    assert_int_equal(sr_st_write(p, &e, 1, &err), -1);
    assert_non_null(strstr(err.msg, "tensor n: neither data nor a fill callback"));

    sr_st_entry two[2] = {entry("ok", SR_F32, 1, s4, f), entry("late", SR_F32, 1, s4, NULL)};
    two[1].fill = fill_fail;
    assert_int_equal(sr_st_write(p, two, 2, &err), -1);
    assert_non_null(strstr(err.msg, "tensor late: producer broke"));
    assert_int_equal(count_files(), 0);

    /* A failed write does not touch an existing file. */
    assert_int_equal(sr_st_write(p, two, 1, &err), 0);
    size_t before;
    char *old = test_read_file(p, &before);
    assert_int_equal(sr_st_write(p, two, 2, &err), -1);
    size_t after;
    char *now = test_read_file(p, &after);
    assert_int_equal(before, after);
    assert_memory_equal(old, now, before);
    free(old);
    free(now);
    unlink(p);

    assert_int_equal(sr_st_write("/nonexistent-dir/x.safetensors", two, 1, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.safetensors"));

    /* Allocation failures: clean errors, no leftovers. */
    for (long k = 0; k < 4; k++) {
        sr_alloc_fail_after(k);
        int rc = sr_st_write(p, two, 1, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) unlink(p);
        else assert_int_equal(count_files(), 0);
    }
    assert_int_equal(count_files(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_layout),
        cmocka_unit_test(test_errors_leave_nothing),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(test_tmpdir());
    return rc;
}
