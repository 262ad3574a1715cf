/* Fault injection over a whole conversion (hardening): fail the n-th
 * allocation for every n, then the n-th file read/write (ENOSPC on write, EIO
 * on read), and check each time for a clean error, no OUT_DIR, no partial
 * directory left behind, and (under the sanitizer pass) no leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include "runtime/alloc.h"
#include "runtime/iofault.h"
#include "runtime/log.h"
#include "test_util.h"
#include "tools/convert.h"

static char in_dir[4096], out_dir[4096];

static void quiet_sink(sr_log_level l, const char *m, void *u) { (void)l; (void)m; (void)u; }

static void copy(const char *src, const char *dst)
{
    size_t n;
    char *b = test_read_file(src, &n);
    assert_non_null(b);
    assert_int_equal(test_write_file(dst, b, n), 0);
    free(b);
}

static int group_setup(void **state)
{
    (void)state;
    char p[4096];
    snprintf(in_dir, sizeof in_dir, "%s/in", test_tmpdir());
    snprintf(out_dir, sizeof out_dir, "%s/out", test_tmpdir());
    mkdir(in_dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", in_dir);
    copy(test_data("model/switch-3a-with-buffers/config.json"), p);
    snprintf(p, sizeof p, "%s/model.safetensors", in_dir);
    copy(test_data("model/switch-3a-with-buffers/model.safetensors"), p);
    snprintf(p, sizeof p, "%s/README.md", in_dir);
    assert_int_equal(test_write_file(p, "a model card\n", 13), 0);
    sr_log_set_sink(quiet_sink, NULL);
    setenv("STRATA_UNSAFE_NO_FSYNC", "1", 1); /* thousands of conversions: skip the syncs */
    return 0;
}

static int leftovers(void)
{
    DIR *d = opendir(test_tmpdir());
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "out", 3)) n++;
    closedir(d);
    return n;
}

static void remove_out(void)
{
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
    assert_int_equal(system(cmd), 0);
}

static void opts(convert_opts *o, int variant)
{
    convert_defaults(o);
    o->in_dir = in_dir;
    o->out_dir = out_dir;
    o->quiet = true;
    o->threads = 1;
    o->double_quant = variant != 1;
    if (variant == 1) { o->shard_size = 100000; o->zstd_level = 1; }
    if (variant == 2) o->quant = CQ_INT8;
}

/* Runs one conversion with injection armed by `arm`; checks the outcome. */
static int run_one(int variant, int *failed)
{
    convert_opts o;
    convert_report r;
    sr_error err;
    opts(&o, variant);
    err.msg[0] = 0;
    int rc = convert_run(&o, &r, &err);
    sr_alloc_fail_after(-1);
    sr_io_fail_after(-1, ENOSPC, EIO);
    struct stat st;
    if (rc) {
        if (!err.msg[0]) fail_msg("failed without a message");
        if (!stat(out_dir, &st)) fail_msg("OUT_DIR exists after a failed conversion: %s", err.msg);
        if (leftovers()) fail_msg("partial output left behind after: %s", err.msg);
        (*failed)++;
    } else {
        if (stat(out_dir, &st)) fail_msg("success without OUT_DIR");
        remove_out();
    }
    return rc;
}

static void count_then_fail_each(int variant, int io)
{
    /* a clean run first: how many steps are there? */
    int failed = 0;
    if (io) sr_io_fail_after(1L << 40, ENOSPC, EIO); else sr_alloc_fail_after(1L << 40);
    long total = 0;
    {
        convert_opts o;
        convert_report r;
        sr_error err;
        opts(&o, variant);
        assert_int_equal(convert_run(&o, &r, &err), 0);
        total = io ? sr_io_count() : sr_alloc_count();
        sr_alloc_fail_after(-1);
        sr_io_fail_after(-1, ENOSPC, EIO);
        remove_out();
    }
    assert_true(total > 0);
    /* Every step of the set-up (config, catalogue, headers) and of the
     * finish (re-read, index, config, rename); in between, the per-tensor
     * loop repeats the same sites, so a stride reaches each of them many
     * times while keeping the test short. */
    long head = 700, tail = 400, mid_runs = 400;
    long step = total > head + tail + mid_runs ? (total - head - tail) / mid_runs : 1;
    for (long n = 0; n < total; n += (n < head || n >= total - tail) ? 1 : step) {
        if (io) sr_io_fail_after(n, ENOSPC, EIO); else sr_alloc_fail_after(n);
        run_one(variant, &failed);
    }
    print_message("variant %d, %s: %ld steps, %d injected failures reported cleanly\n", variant,
                  io ? "I/O" : "allocations", total, failed);
    assert_true(failed > 0);
}

/* An OUT_DIR that appears while a conversion runs (a user's directory, a
 * second converter) is never replaced without --force: the last rename
 * refuses it and both directories stay as they are. */
static void test_publish_never_replaces(void **state)
{
    (void)state;
    char partial[4200], mine[4200], p[4300];
    snprintf(partial, sizeof partial, "%s.partial-test", out_dir);
    assert_int_equal(mkdir(partial, 0755), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", partial);
    assert_int_equal(test_write_file(p, "x", 1), 0);
    for (int empty = 0; empty <= 1; empty++) {     /* rename(2) replaces an empty directory */
        assert_int_equal(mkdir(out_dir, 0755), 0);
        snprintf(mine, sizeof mine, "%s/notes.txt", out_dir);
        if (!empty) assert_int_equal(test_write_file(mine, "precious", 8), 0);
        sr_error err;
        assert_int_equal(convert_publish(partial, out_dir, &err), -1);
        assert_non_null(strstr(err.msg, "appeared while converting"));
        struct stat st;
        assert_int_equal(stat(mine, &st) == 0, !empty);
        assert_int_equal(stat(p, &st), 0);
        remove_out();
    }
    sr_error err;
    assert_int_equal(convert_publish(partial, out_dir, &err), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", out_dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    remove_out();
}

/* OUT_DIR given with a trailing slash: the partial directory is its
 * sibling, as without the slash. */
static void test_trailing_slash(void **state)
{
    (void)state;
    char slashed[4200];
    snprintf(slashed, sizeof slashed, "%s//", out_dir);
    convert_opts o;
    opts(&o, 0);
    o.out_dir = slashed;
    convert_report r;
    sr_error err;
    if (convert_run(&o, &r, &err)) fail_msg("%s", err.msg);
    char p[4300];
    snprintf(p, sizeof p, "%s/model.safetensors", out_dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(leftovers(), 1);   /* out itself, nothing beside it */
    o.force = true;                      /* replacing it works the same way */
    if (convert_run(&o, &r, &err)) fail_msg("%s", err.msg);
    assert_int_equal(leftovers(), 1);
    remove_out();
}

static void test_alloc_nf4_dq(void **s) { (void)s; count_then_fail_each(0, 0); }
static void test_alloc_sharded_zstd(void **s) { (void)s; count_then_fail_each(1, 0); }
static void test_alloc_int8(void **s) { (void)s; count_then_fail_each(2, 0); }
static void test_io_nf4_dq(void **s) { (void)s; count_then_fail_each(0, 1); }
static void test_io_sharded_zstd(void **s) { (void)s; count_then_fail_each(1, 1); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_never_replaces),
        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_alloc_nf4_dq),
        cmocka_unit_test(test_alloc_sharded_zstd),
        cmocka_unit_test(test_alloc_int8),
        cmocka_unit_test(test_io_nf4_dq),
        cmocka_unit_test(test_io_sharded_zstd),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
