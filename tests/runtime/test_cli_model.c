/* `strata logits` and `strata run` end to end (STRATA_EXE) against golden
 * cases, and their refusals of bad input: non-zero exit, a message naming the
 * problem, no output file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/safetensors.h"
#include "synth_model.h"
#include "test_util.h"

/* Runs `strata ARGS` with stderr folded into the captured output; returns
 * the exit status. */
static int strata(char *out, size_t out_len, const char *fmt, ...)
{
    const char *exe = getenv("STRATA_EXE");
    assert_non_null(exe);
    char args[8192], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static const sr_tensor *tensor(sr_st_file *f, const char *name)
{
    const sr_tensor *t = sr_st_find(f, name);
    assert_non_null(t);
    return t;
}

static void test_logits_golden(void **state)
{
    (void)state;
    sr_st_file *f;
    sr_error err;
    assert_int_equal(sr_st_open(test_data("model/switch-3a/cases/ctrl_alpha_mid.safetensors"), &f, &err), 0);
    const sr_tensor *ids = tensor(f, "input_ids"), *inc = tensor(f, "logits_incremental");
    const sr_tensor *ai = tensor(f, "adapter_indices");
    const int64_t T = ids->shape[1], V = 259;
    char list[1024] = "";
    for (int64_t i = 0; i < T; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? "," : "",
                 (long long)((const int64_t *)ids->data)[i]);
    char out[4096], lpath[512], ipath[512];
    snprintf(lpath, sizeof lpath, "%s/logits.bin", test_tmpdir());
    snprintf(ipath, sizeof ipath, "%s/indices.bin", test_tmpdir());
    int rc = strata(out, sizeof out, "logits --model '%s' --tokens %s --prefill 6 --out '%s' --indices '%s'",
                    test_data("model/switch-3a"), list, lpath, ipath);
    if (rc) fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    size_t n;
    float *lg = (float *)test_read_file(lpath, &n);
    assert_int_equal(n, sizeof(float) * (size_t)(T * V));
    for (int64_t i = 0; i < T * V; i++)
        assert_true(fabsf(lg[i] - ((const float *)inc->data)[i]) <= 1e-4f);
    int32_t *ad = (int32_t *)test_read_file(ipath, &n);
    assert_int_equal(n, sizeof(int32_t) * (size_t)T);
    for (int64_t i = 0; i < T; i++) assert_int_equal(ad[i], ((const int64_t *)ai->data)[i]);
    free(lg);
    free(ad);
    sr_st_close(f);
}

static void test_run_golden(void **state)
{
    (void)state;
    sr_st_file *f;
    sr_error err;
    assert_int_equal(sr_st_open(test_data("model/switch-3a/cases/generate_beta.safetensors"), &f, &err), 0);
    const sr_tensor *ids = tensor(f, "input_ids"), *gen = tensor(f, "generated_ids");
    char list[1024] = "", want[1024] = "";
    for (int64_t i = 0; i < ids->shape[1]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? "," : "",
                 (long long)((const int64_t *)ids->data)[i]);
    for (int64_t i = 0; i < gen->shape[1]; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "",
                 (long long)((const int64_t *)gen->data)[i]);
    strcat(want, "\n");
    char out[4096];
    int rc = strata(out, sizeof out, "run --model '%s' --tokens %s -n 8 --ignore-eos 2>/dev/null",
                    test_data("model/switch-3a"), list);
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
    rc = strata(out, sizeof out, "run --model '%s' --tokens %s -n 8 --ignore-eos --json 2>/dev/null",
                test_data("model/switch-3a"), list);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"generated\": ["));
    assert_non_null(strstr(out, "\"adapter_indices\": [0,0,0,0,0,2,2,2,2,2,2,2,2,2,2,2]"));
    /* seeded sampling is reproducible */
    char a[4096], b[4096];
    assert_int_equal(strata(a, sizeof a, "run --model '%s' --tokens %s -n 6 --temp 1.5 --top-k 40 --top-p 0.9 --seed 7 --ignore-eos 2>/dev/null",
                            test_data("model/switch-3a"), list), 0);
    assert_int_equal(strata(b, sizeof b, "run --model '%s' --tokens %s -n 6 --temp 1.5 --top-k 40 --top-p 0.9 --seed 7 --ignore-eos 2>/dev/null",
                            test_data("model/switch-3a"), list), 0);
    assert_string_equal(a, b);
    sr_st_close(f);
}

static void expect_refusal(const char *what, const char *needle, const char *fmt, const char *a1,
                           const char *a2)
{
    char out[4096], lpath[512];
    snprintf(lpath, sizeof lpath, "%s/refused.bin", test_tmpdir());
    char args[4096];
    snprintf(args, sizeof args, fmt, a1, a2, lpath);
    int rc = strata(out, sizeof out, "%s", args);
    if (!strstr(out, needle)) fprintf(stderr, "%s: output was: %s\n", what, out);
    assert_true(rc != 0);
    assert_non_null(strstr(out, needle));
    assert_false(exists(lpath));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", lpath);
    assert_false(exists(tmp));
}

static void test_refusals(void **state)
{
    (void)state;
    const char *m = test_data("model/switch-3a");
    expect_refusal("vocab", "token id 259", "logits --model '%s' --tokens 1,%s --out '%s'", m, "259");
    expect_refusal("empty", "empty prompt", "logits --model '%s' --tokens '%s' --out '%s'", m, "");
    expect_refusal("ctx", "longer than the context", "logits --model '%s' --tokens 1,2,3%s --ctx 2 --out '%s'", m, "");
    expect_refusal("no model", "nonexistent", "logits --model '%s/nonexistent' --tokens 1%s --out '%s'", test_tmpdir(), "");
    expect_refusal("prefill", "--prefill", "logits --model '%s' --tokens 1,2%s --prefill 5 --out '%s'", m, "");
    /* a failed --indices leaves an earlier --out as it was */
    char lpath[600], cmd[2000], out2[4096];
    snprintf(lpath, sizeof lpath, "%s/earlier.bin", test_tmpdir());
    assert_int_equal(test_write_file(lpath, "old", 3), 0);
    snprintf(cmd, sizeof cmd, "logits --model '%s' --tokens 1,2 --out '%s' --indices '%s/no/dir/i.bin'",
             m, lpath, test_tmpdir());
    assert_int_equal(strata(out2, sizeof out2, "%s", cmd), 1);
    size_t n;
    char *kept = test_read_file(lpath, &n);
    assert_non_null(kept);
    assert_int_equal(n, 3);
    assert_memory_equal(kept, "old", 3);
    free(kept);
    char out[4096];
    assert_true(strata(out, sizeof out, "run --model '%s' --tokens '' -n 3", m) != 0);
    assert_non_null(strstr(out, "empty prompt"));
    assert_true(strata(out, sizeof out, "run --model '%s' --tokens 1,2,3 -n 3 --ctx 4", m) != 0);
    assert_non_null(strstr(out, "context"));
    assert_true(strata(out, sizeof out, "run --model '%s' --tokens 1,999 -n 3", m) != 0);
    assert_non_null(strstr(out, "token id 999"));
    assert_int_equal(strata(out, sizeof out, "run --model '%s' --tokens 1,x -n 3", m), 2);

    /* --check: a NaN weight is refused naming the tensor */
    synth_dims d = {.vocab = 64, .hidden = 16, .layers = 1, .heads = 2, .kv_heads = 1, .inter = 24};
    synth_weights w;
    synth_init(&w, &d, 3, 0);
    w.final_norm[3] = NAN;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/nanmodel", test_tmpdir());
    assert_int_equal(synth_write(dir, &w, SYN_GRANITE, 0, NULL), 0);
    synth_free(&w);
    expect_refusal("check", "model.norm.weight", "logits --model '%s' --tokens 1,2%s --check --out '%s'", dir, "");
    assert_true(strata(out, sizeof out, "run --model '%s' --tokens 1,2 -n 2 --check", dir) != 0);
    assert_non_null(strstr(out, "NaN"));
}

/* Replaces the first `from` in the file at path with `to`. */
static void edit_file(const char *path, const char *from, const char *to)
{
    char buf[16384];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *at = strstr(buf, from);
    assert_non_null(at);
    f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    assert_int_equal(fclose(f), 0);
}

/* A model whose tensors do not match its config.json is refused at load,
 * naming the file, the tensor, its shape and the one the config implies. */
static void test_config_mismatch(void **state)
{
    (void)state;
    synth_dims d = {.vocab = 64, .hidden = 16, .layers = 1, .heads = 2, .kv_heads = 1, .inter = 24};
    synth_weights w;
    synth_init(&w, &d, 5, 0);
    char dir[512], cfg[600];
    snprintf(dir, sizeof dir, "%s/mismatch", test_tmpdir());
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    assert_int_equal(synth_write(dir, &w, SYN_GRANITE, 0, NULL), 0);
    synth_free(&w);
    char out[4096];
    assert_int_equal(strata(out, sizeof out, "logits --model '%s' --tokens 1,2 --out /dev/null", dir), 0);

    /* 2 KV heads of head_dim 8: k_proj should have 16 rows, it has 8 */
    edit_file(cfg, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": 2");
    expect_refusal("kv heads", "model.safetensors: tensor model.layers.0.self_attn.k_proj.weight: "
                   "shape [8, 16] does not match the config (expected [16, 16])",
                   "logits --model '%s' --tokens 1,2%s --out '%s'", dir, "");
    assert_int_not_equal(strata(out, sizeof out, "run --model '%s' --tokens 1,2 -n 2", dir), 0);
    assert_non_null(strstr(out, "k_proj.weight: shape [8, 16] does not match the config"));
    edit_file(cfg, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1");

    /* the MLP width comes from the tensor and must equal intermediate_size */
    edit_file(cfg, "\"intermediate_size\": 24", "\"intermediate_size\": 32");
    expect_refusal("mlp", "tensor model.layers.0.mlp.gate_proj.weight: MLP width 24 does not match "
                   "config field intermediate_size = 32",
                   "logits --model '%s' --tokens 1,2%s --out '%s'", dir, "");
    edit_file(cfg, "\"intermediate_size\": 32", "\"intermediate_size\": 24");

    /* the vocabulary: the embedding table has 64 rows */
    edit_file(cfg, "\"vocab_size\": 64", "\"vocab_size\": 80");
    expect_refusal("vocab", "tensor model.embed_tokens.weight: shape [64, 16] does not match the "
                   "config (expected [80, 16])", "logits --model '%s' --tokens 1,2%s --out '%s'",
                   dir, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_golden),
        cmocka_unit_test(test_run_golden),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_config_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
