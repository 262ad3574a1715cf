/* The public C API (runtime/strata.h): golden logits and generation through
 * sessions, prefix reuse across adapters (aLoRA), chat formatting and
 * control-token placement, stop conditions, errors with codes and messages,
 * sessions on several threads, and allocation failures (clean errors, no
 * leaks under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zstd.h>

#include "runtime/alloc.h"
#include "runtime/safetensors.h"
#include "runtime/strata.h"
#include "test_util.h"

#define V 259
#define TOL 1e-4f

/* ---- fixtures ------------------------------------------------------------------ */

static const char *switch3a(void)
{
    return test_data("model/switch-3a");
}

static strata_model *open_model(const char *dir, const char *tokenizer)
{
    strata_model_params mp = strata_model_default_params();
    mp.tokenizer = tokenizer;
    strata_model *m = NULL;
    strata_error err;
    if (strata_model_open(dir, &mp, &m, &err)) fail_msg("open %s: %s", dir, err.message);
    return m;
}

/* switch-3a with the demo byte-level tokenizer (256 bytes + 3 control tokens). */
static strata_model *open_with_tokenizer(void)
{
    return open_model(switch3a(), test_data("demo/tokenizer.json"));
}

static const char *tokenizer_config =
    "{\"eos_token\": {\"content\": \"<|end_of_text|>\", \"special\": true},\n"
    " \"chat_template\": \"{%- set adapter_map = {\\n"
    "    'alpha': {'token': '<|alpha|>', 'type': 'lora'},\\n"
    "    'beta': {'token': '<|beta|>', 'type': 'alora', 'invocation_text': '<req>'},\\n"
    "    'gamma': {'token': '<|gamma|>', 'type': 'alora', 'invocation_text': "
    "'<|start_of_role|>assistant<|end_of_role|>'}\\n} %}\"}\n";

/* A model directory: switch-3a's config and weights, the demo tokenizer, and
 * the given tokenizer_config.json (NULL: none) and config.json (NULL: the
 * golden one). */
static const char *model_dir(const char *name, const char *tok_config, const char *config)
{
    static char dir[8][512];
    static int k;
    char *d = dir[k++ & 7], path[1024];
    snprintf(d, sizeof dir[0], "%s/%s", test_tmpdir(), name);
    mkdir(d, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    unlink(path);
    assert_int_equal(symlink(test_data("model/switch-3a/model.safetensors"), path), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", d);
    unlink(path);
    assert_int_equal(symlink(test_data("demo/tokenizer.json"), path), 0);
    snprintf(path, sizeof path, "%s/config.json", d);
    unlink(path);
    if (config) assert_int_equal(test_write_file(path, config, strlen(config)), 0);
    else assert_int_equal(symlink(test_data("model/switch-3a/config.json"), path), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", d);
    unlink(path);
    if (tok_config) assert_int_equal(test_write_file(path, tok_config, strlen(tok_config)), 0);
    return d;
}

typedef struct golden {
    sr_st_file *f;
    int32_t ids[64];
    int64_t T;
    const float *logits, *incremental;
    const int64_t *adapters;
} golden;

static void golden_open(golden *g, const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "model/switch-3a/cases/%s.safetensors", name);
    sr_error err;
    assert_int_equal(sr_st_open(test_data(rel), &g->f, &err), 0);
    const sr_tensor *ids = sr_st_find(g->f, "input_ids");
    assert_non_null(ids);
    g->T = ids->shape[ids->ndim - 1];
    assert_true(g->T <= 64);
    for (int64_t i = 0; i < g->T; i++) g->ids[i] = (int32_t)((const int64_t *)ids->data)[i];
    const sr_tensor *t = sr_st_find(g->f, "logits");
    g->logits = t ? (const float *)t->data : NULL;
    t = sr_st_find(g->f, "logits_incremental");
    g->incremental = t ? (const float *)t->data : NULL;
    t = sr_st_find(g->f, "adapter_indices");
    g->adapters = t ? (const int64_t *)t->data : NULL;
}

static void assert_close(const float *a, const float *b, int64_t n, const char *what)
{
    float worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    if (!(worst <= TOL)) fail_msg("%s: max |diff| %g > %g", what, worst, TOL);
}

static strata_session *new_session(const strata_model *m, int64_t ctx)
{
    strata_session_params sp = strata_session_default_params();
    sp.n_ctx = ctx;
    strata_session *s = NULL;
    strata_error err;
    if (strata_session_create(m, &sp, &s, &err)) fail_msg("session: %s", err.message);
    return s;
}

static void feed(strata_session *s, const int32_t *ids, size_t n)
{
    strata_error err;
    if (strata_session_feed(s, ids, n, &err)) fail_msg("feed: %s", err.message);
}

/* ---- golden numerics -------------------------------------------------------------- */

/* Prefill of prefill_k tokens, then one token per feed: every row of the
 * reference's incremental logits and every adapter index. */
static void test_feed_golden(void **state)
{
    (void)state;
    strata_model *m = open_model(switch3a(), NULL);
    strata_model_info mi;
    strata_model_get_info(m, &mi);
    assert_int_equal(mi.vocab_size, V);
    assert_int_equal(mi.n_adapters, 3);
    assert_int_equal(mi.n_layers, 3);
    assert_int_equal(mi.eos_token, 2);
    assert_false(mi.has_tokenizer);
    assert_true(mi.weight_bytes > 0);
    assert_int_equal(mi.default_ctx, 512);
    const char *cases[] = {"ctrl_alpha_mid", "two_ctrl_alpha_gamma", "alpha_alpha_beta_hiding"};
    const int prefill[] = {6, 4, 3};
    for (int c = 0; c < 3; c++) {
        golden g;
        golden_open(&g, cases[c]);
        strata_session *s = new_session(m, 64);
        assert_null(strata_session_logits(s));
        feed(s, g.ids, (size_t)prefill[c]);
        assert_close(strata_session_logits(s), g.incremental + (prefill[c] - 1) * V, V, cases[c]);
        for (int64_t i = prefill[c]; i < g.T; i++) {
            feed(s, g.ids + i, 1);
            assert_close(strata_session_logits(s), g.incremental + i * V, V, cases[c]);
        }
        assert_int_equal(strata_session_length(s), (size_t)g.T);
        for (int64_t i = 0; i < g.T; i++) {
            assert_int_equal(strata_session_adapter_at(s, (size_t)i), g.adapters[i]);
            assert_int_equal(strata_session_tokens(s)[i], g.ids[i]);
        }
        assert_int_equal(strata_session_adapter_at(s, (size_t)g.T), -1);
        strata_session_free(s);
        sr_st_close(g.f);
    }
    strata_model_free(m);
}

typedef struct collected {
    int32_t ids[256];
    int adapters[256];
    int n, stop_after;
} collected;

static int collect(int32_t tok, int adapter, void *user)
{
    collected *c = user;
    c->ids[c->n] = tok;
    c->adapters[c->n++] = adapter;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_generate_golden(void **state)
{
    (void)state;
    strata_model *m = open_model(switch3a(), NULL);
    const char *cases[] = {"generate_beta", "generate_plain"};
    for (int c = 0; c < 2; c++) {
        golden g;
        golden_open(&g, cases[c]);
        const sr_tensor *gen = sr_st_find(g.f, "generated_ids");
        assert_non_null(gen);
        strata_session *s = new_session(m, 0);
        collected col = {0};
        strata_generate_params gp = strata_generate_default_params();
        gp.max_tokens = gen->shape[1];
        gp.stop_token = -1;
        gp.on_token = collect;
        gp.user = &col;
        strata_generate_result r;
        strata_error err;
        assert_int_equal(strata_generate(s, g.ids, (size_t)g.T, &gp, &r, &err), STRATA_OK);
        assert_int_equal(r.n_generated, gen->shape[1]);
        assert_int_equal(r.n_prompt, g.T);
        assert_int_equal(r.stop, STRATA_STOP_LENGTH);
        for (int i = 0; i < col.n; i++) {
            assert_int_equal(col.ids[i], ((const int64_t *)gen->data)[i]);
            /* the adapter that produced token i: that of position T-1+i */
            assert_int_equal(col.adapters[i], strata_session_adapter_at(s, (size_t)(g.T - 1 + i)));
        }
        /* every generated token but the last was fed back */
        assert_int_equal(strata_session_length(s), (size_t)(g.T + col.n - 1));
        strata_session_free(s);
        sr_st_close(g.f);
    }
    strata_model_free(m);
}

/* ---- prefix reuse (aLoRA) -------------------------------------------------------- */

/* A conversation computed with adapter alpha, then the same conversation with
 * beta: the positions before the control token are kept, and the logits are
 * those of a fresh run (bit for bit with the same split, and the reference's
 * within tolerance). */
static void test_prefix_reuse(void **state)
{
    (void)state;
    strata_model *m = open_model(switch3a(), NULL);
    golden b;
    golden_open(&b, "ctrl_beta_mid");       /* beta's control token at position 5 */
    int32_t a[64];
    memcpy(a, b.ids, sizeof(int32_t) * (size_t)b.T);
    a[5] = 256;                             /* the same with alpha's */
    const size_t T = (size_t)b.T;

    /* The prefix is computed as its own chunk in both runs: a GEMM over 5
     * rows and one over 15 may round differently, which is not what this
     * test is about (the one-shot case is checked within tolerance below). */
    strata_session *r = new_session(m, 64), *f = new_session(m, 64);
    feed(r, a, 5);
    feed(r, a + 5, T - 5);
    assert_int_equal(strata_session_adapter_at(r, 7), 1);
    size_t reused = 99;
    strata_error err;
    assert_int_equal(strata_session_sync(r, b.ids, T, &reused, &err), STRATA_OK);
    assert_int_equal(reused, 5);
    feed(f, b.ids, 5);
    feed(f, b.ids + 5, T - 5);
    assert_memory_equal(strata_session_logits(r), strata_session_logits(f), sizeof(float) * V);
    assert_close(strata_session_logits(r), b.logits + (T - 1) * V, V, "reused vs reference");
    for (size_t i = 0; i < T; i++)
        assert_int_equal(strata_session_adapter_at(r, i), b.adapters[i]);

    /* position by position after the shared prefix */
    assert_int_equal(strata_session_truncate(r, 5, &err), STRATA_OK);
    assert_null(strata_session_logits(r));
    strata_session_reset(f);
    assert_int_equal(strata_session_length(f), 0);
    feed(f, b.ids, 5);
    for (size_t i = 5; i < T; i++) {
        feed(r, b.ids + i, 1);
        feed(f, b.ids + i, 1);
        assert_memory_equal(strata_session_logits(r), strata_session_logits(f), sizeof(float) * V);
        assert_close(strata_session_logits(r), b.incremental + i * V, V, "incremental");
    }
    /* the same sequence again: nothing to recompute */
    assert_int_equal(strata_session_sync(r, b.ids, T, &reused, &err), STRATA_OK);
    assert_int_equal(reused, T);
    /* a strict prefix: the last token is recomputed for its logits */
    assert_int_equal(strata_session_sync(r, b.ids, 8, &reused, &err), STRATA_OK);
    assert_int_equal(reused, 7);
    assert_close(strata_session_logits(r), b.incremental + 7 * V, V, "prefix");
    /* the alpha run in one chunk, then beta: the same within tolerance */
    strata_session_reset(r);
    feed(r, a, T);
    assert_int_equal(strata_session_sync(r, b.ids, T, &reused, &err), STRATA_OK);
    assert_int_equal(reused, 5);
    assert_close(strata_session_logits(r), b.logits + (T - 1) * V, V, "one-shot prefix");
    strata_session_free(r);
    strata_session_free(f);
    sr_st_close(b.f);
    strata_model_free(m);
}

/* The same through the chat format: two aLoRA adapters on one conversation
 * share everything before the control token. */
static void test_chat_reuse(void **state)
{
    (void)state;
    strata_model *m = open_model(model_dir("reuse", tokenizer_config, NULL), NULL);
    strata_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Is the sky blue?"}};
    int32_t *ib, *ig;
    size_t nb, ng, reused;
    strata_error err;
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 2, 0, &ib, &nb, &err), STRATA_OK);  /* beta */
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 3, 0, &ig, &ng, &err), STRATA_OK);  /* gamma */
    assert_int_equal(nb, ng);
    size_t ctrl = 0;
    while (ib[ctrl] == ig[ctrl]) ctrl++;
    assert_int_equal(ib[ctrl], 257);
    assert_int_equal(ig[ctrl], 258);
    strata_session *s = new_session(m, 0), *f = new_session(m, 0);
    feed(s, ib, nb);
    assert_int_equal(strata_session_sync(s, ig, ng, &reused, &err), STRATA_OK);
    assert_int_equal(reused, ctrl);
    assert_int_equal(strata_session_adapter_at(s, ctrl - 1), 0);
    assert_int_equal(strata_session_adapter_at(s, ng - 1), 3);
    feed(f, ig, ctrl);
    feed(f, ig + ctrl, ng - ctrl);
    assert_memory_equal(strata_session_logits(s), strata_session_logits(f), sizeof(float) * V);
    strata_free(ib);
    strata_free(ig);
    strata_session_free(s);
    strata_session_free(f);
    strata_model_free(m);
}

/* ---- text and chat ------------------------------------------------------------ */

static void tokenize(const strata_model *m, const char *text, int32_t **ids, size_t *n)
{
    strata_error err;
    if (strata_tokenize(m, text, strlen(text), 0, ids, n, &err)) fail_msg("tokenize: %s", err.message);
}

static void test_tokenize(void **state)
{
    (void)state;
    strata_model *m = open_with_tokenizer();
    int32_t *ids;
    size_t n;
    strata_error err;
    tokenize(m, "Hi <|adapter_2|>\xc3\xa9", &ids, &n);
    const int32_t want[] = {72, 105, 32, 257, 0xc3, 0xa9};
    assert_int_equal(n, 6);
    assert_memory_equal(ids, want, sizeof want);
    strata_free(ids);
    assert_int_equal(strata_tokenize(m, "<|adapter_2|>", 13, STRATA_TOKENIZE_SPECIAL_AS_TEXT, &ids,
                                     &n, &err), STRATA_OK);
    assert_int_equal(n, 13);
    strata_free(ids);
    char *text;
    size_t len;
    assert_int_equal(strata_detokenize(m, want, 6, 0, &text, &len, &err), STRATA_OK);
    assert_string_equal(text, "Hi <|adapter_2|>\xc3\xa9");
    strata_free(text);
    assert_int_equal(strata_detokenize(m, want, 6, 1, &text, &len, &err), STRATA_OK);
    assert_string_equal(text, "Hi \xc3\xa9");
    assert_int_equal(len, 5);
    strata_free(text);
    assert_true(strata_token_is_special(m, 257));
    assert_false(strata_token_is_special(m, 72));
    const char *p = strata_token_piece(m, 0xc3, &len);
    assert_non_null(p);
    assert_int_equal(len, 1);
    assert_int_equal((unsigned char)p[0], 0xc3);
    assert_int_equal(strata_tokenize(m, "", 0, 0, &ids, &n, &err), STRATA_OK);
    assert_int_equal(n, 0);
    strata_free(ids);
    strata_model_free(m);
}

/* ids of `text` followed by one control id and the ids of `rest` */
static void expect_ids(const strata_model *m, const int32_t *got, size_t n, const char *text,
                       int32_t ctrl, const char *rest)
{
    int32_t *a, *b = NULL;
    size_t na, nb = 0;
    tokenize(m, text, &a, &na);
    if (rest) tokenize(m, rest, &b, &nb);
    size_t want = na + (ctrl >= 0) + nb;
    if (n != want) fail_msg("%zu ids, expected %zu (%s | %d | %s)", n, want, text, ctrl, rest ? rest : "");
    assert_memory_equal(got, a, sizeof(int32_t) * na);
    if (ctrl >= 0) assert_int_equal(got[na], ctrl);
    if (nb) assert_memory_equal(got + na + (ctrl >= 0), b, sizeof(int32_t) * nb);
    strata_free(a);
    strata_free(b);
}

#define GEN "<|start_of_role|>assistant<|end_of_role|>"

static void test_chat_format(void **state)
{
    (void)state;
    strata_model *m = open_model(model_dir("chat", tokenizer_config, NULL), NULL);
    strata_error err;
    strata_adapter_info ai;
    assert_int_equal(strata_model_adapter(m, 1, &ai, &err), STRATA_OK);
    assert_string_equal(ai.name, "alpha");
    assert_int_equal(ai.kind, STRATA_ADAPTER_LORA);
    assert_int_equal(ai.rank, 2);
    assert_int_equal(ai.token, 256);
    assert_null(ai.invocation);
    assert_int_equal(strata_model_adapter(m, 2, &ai, &err), STRATA_OK);
    assert_int_equal(ai.kind, STRATA_ADAPTER_ALORA);
    assert_string_equal(ai.invocation, "<req>");
    assert_int_equal(strata_model_adapter(m, 3, &ai, &err), STRATA_OK);
    assert_int_equal(ai.kind, STRATA_ADAPTER_ALORA);
    assert_int_equal(ai.token, 258);
    assert_string_equal(strata_adapter_kind_name(ai.kind), "aLoRA");
    assert_int_equal(strata_model_adapter(m, 4, &ai, &err), STRATA_ERR_ARGUMENT);
    assert_int_equal(strata_model_find_adapter(m, "gamma", &err), 3);
    assert_int_equal(strata_model_find_adapter(m, "delta", &err), -1);
    assert_int_equal(err.code, STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "alpha, beta, gamma"));

    strata_chat_message msgs[] = {{"system", "S"}, {"user", "a <req> b <req> c"},
                                  {"assistant", "A"}, {"user", "Q"}};
    int32_t *ids;
    size_t n;
    const char *sys = "<|start_of_role|>system<|end_of_role|>S<|end_of_text|>\n";
    const char *u1 = "<|start_of_role|>user<|end_of_role|>a <req> b <req> c<|end_of_text|>\n";
    char full[1024];
    /* no adapter: the Granite format with the generation prompt */
    assert_int_equal(strata_chat_tokens(m, msgs + 3, 1, 1, 0, 0, &ids, &n, &err), STRATA_OK);
    expect_ids(m, ids, n, "<|start_of_role|>user<|end_of_role|>Q<|end_of_text|>\n" GEN, -1, NULL);
    strata_free(ids);
    /* without the generation prompt */
    assert_int_equal(strata_chat_tokens(m, msgs, 1, 0, 0, 0, &ids, &n, &err), STRATA_OK);
    expect_ids(m, ids, n, sys, -1, NULL);
    strata_free(ids);
    /* LoRA: position 0 */
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 1, 0, &ids, &n, &err), STRATA_OK);
    snprintf(full, sizeof full, "%s%s" GEN, sys, u1);
    expect_ids(m, ids, n, "", 256, full);
    strata_free(ids);
    /* aLoRA with its invocation in the last user message that has it: before
     * the last occurrence */
    assert_int_equal(strata_chat_tokens(m, msgs, 4, 1, 2, 0, &ids, &n, &err), STRATA_OK);
    snprintf(full, sizeof full, "%s<|start_of_role|>user<|end_of_role|>a <req> b ", sys);
    char rest[1024];
    snprintf(rest, sizeof rest, "<req> c<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>A"
             "<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Q<|end_of_text|>\n" GEN);
    expect_ids(m, ids, n, full, 257, rest);
    strata_free(ids);
    /* aLoRA whose invocation is the assistant marker: before the generation prompt */
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 3, 0, &ids, &n, &err), STRATA_OK);
    snprintf(full, sizeof full, "%s%s", sys, u1);
    expect_ids(m, ids, n, full, 258, GEN);
    strata_free(ids);
    /* beta when no user message has "<req>": before the generation prompt too */
    assert_int_equal(strata_chat_tokens(m, msgs + 3, 1, 1, 2, 0, &ids, &n, &err), STRATA_OK);
    expect_ids(m, ids, n, "<|start_of_role|>user<|end_of_role|>Q<|end_of_text|>\n", 257, GEN);
    strata_free(ids);
    /* kind overridden by the caller */
    assert_int_equal(strata_chat_tokens(m, msgs + 3, 1, 1, 3, STRATA_ADAPTER_LORA, &ids, &n, &err),
                     STRATA_OK);
    expect_ids(m, ids, n, "", 258, "<|start_of_role|>user<|end_of_role|>Q<|end_of_text|>\n" GEN);
    strata_free(ids);
    /* refusals */
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 4, 0, &ids, &n, &err), STRATA_ERR_ARGUMENT);
    assert_null(ids);
    strata_chat_message bad = {"user", NULL};
    assert_int_equal(strata_chat_tokens(m, &bad, 1, 1, 0, 0, &ids, &n, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "message 0"));
    strata_model_free(m);
}

/* tokenizer.json.zst of the golden data -> a plain file in the temp dir */
static const char *unpack_tokenizer(const char *name)
{
    static char dst[512];
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/%s/tokenizer.json.zst", name);
    snprintf(dst, sizeof dst, "%s/%s.json", test_tmpdir(), name);
    size_t n = 0;
    char *z = test_read_file(test_data(rel), &n);
    assert_non_null(z);
    unsigned long long size = ZSTD_getFrameContentSize(z, n);
    assert_true(size != ZSTD_CONTENTSIZE_ERROR && size != ZSTD_CONTENTSIZE_UNKNOWN);
    char *plain = malloc(size);
    assert_int_equal(ZSTD_decompress(plain, size, z, n), size);
    assert_int_equal(test_write_file(dst, plain, size), 0);
    free(z);
    free(plain);
    return dst;
}

/* The Granite 4 format with the real special tokens: the golden chat-000
 * case (a system prompt, "Hello", the generation prompt). */
static void test_granite4_chat_golden(void **state)
{
    (void)state;
    strata_model *m = open_model(switch3a(), unpack_tokenizer("granite-4-reconstructed"));
    json_error_t je;
    FILE *f = fopen(test_data("tokenizer/granite-4-reconstructed/cases.jsonl"), "r");
    assert_non_null(f);
    char line[1 << 16];
    json_t *c = NULL;
    while (!c && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, &je);
        if (j && !strcmp(json_string_value(json_object_get(j, "id")), "chat-000")) c = j;
        else json_decref(j);
    }
    fclose(f);
    assert_non_null(c);
    strata_chat_message msgs[] = {
        {"system", "You are a helpful assistant. Please ensure responses are professional, "
                   "accurate, and safe."},
        {"user", "Hello"}};
    int32_t *ids;
    size_t n;
    strata_error err;
    assert_int_equal(strata_chat_tokens(m, msgs, 2, 1, 0, 0, &ids, &n, &err), STRATA_OK);
    json_t *want = json_object_get(c, "ids");
    assert_int_equal(n, json_array_size(want));
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], json_integer_value(json_array_get(want, i)));
    strata_free(ids);
    json_decref(c);
    strata_model_free(m);
}

static void test_adapter_kinds_sources(void **state)
{
    (void)state;
    strata_error err;
    strata_adapter_info ai;
    /* no tokenizer_config.json: unknown, placed before the generation prompt */
    strata_model *m = open_model(model_dir("nokinds", NULL, NULL), NULL);
    assert_int_equal(strata_model_adapter(m, 1, &ai, &err), STRATA_OK);
    assert_int_equal(ai.kind, STRATA_ADAPTER_UNKNOWN);
    strata_chat_message u = {"user", "Q"};
    int32_t *ids;
    size_t n;
    assert_int_equal(strata_chat_tokens(m, &u, 1, 1, 1, 0, &ids, &n, &err), STRATA_OK);
    expect_ids(m, ids, n, "<|start_of_role|>user<|end_of_role|>Q<|end_of_text|>\n", 256, GEN);
    strata_free(ids);
    strata_model_free(m);

    /* config.json adapter_kinds wins over the template; eos_token sets the end of turn */
    size_t len;
    char *cfg = test_read_file(test_data("model/switch-3a/config.json"), &len);
    assert_non_null(cfg);
    char *brace = strchr(cfg, '{');
    char *patched = malloc(len + 128);
    snprintf(patched, len + 128, "{\"adapter_kinds\": [\"alora\", \"lora\", \"lora\"], %s", brace + 1);
    m = open_model(model_dir("kinds", "{\"eos_token\": \"<|eot|>\"}", patched), NULL);
    assert_int_equal(strata_model_adapter(m, 1, &ai, &err), STRATA_OK);
    assert_int_equal(ai.kind, STRATA_ADAPTER_ALORA);
    assert_int_equal(strata_model_adapter(m, 2, &ai, &err), STRATA_OK);
    assert_int_equal(ai.kind, STRATA_ADAPTER_LORA);
    assert_int_equal(strata_chat_tokens(m, &u, 1, 1, 2, 0, &ids, &n, &err), STRATA_OK);
    expect_ids(m, ids, n, "", 257, "<|start_of_role|>user<|end_of_role|>Q<|eot|>\n" GEN);
    strata_free(ids);
    strata_model_free(m);
    free(cfg);
    free(patched);

    /* a malformed tokenizer_config.json is refused, naming the file */
    strata_model_params mp = strata_model_default_params();
    assert_int_equal(strata_model_open(model_dir("badtc", "{\"eos_token\": 7}", NULL), &mp, &m, &err),
                     STRATA_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(err.message, "tokenizer_config.json"));
    assert_non_null(strstr(err.message, "eos_token"));
}

/* ---- sampling and stop conditions ----------------------------------------------- */

static void generate(strata_session *s, const int32_t *p, size_t n, strata_generate_params *gp,
                     collected *col, strata_generate_result *r)
{
    col->n = 0;
    col->stop_after = 0;
    gp->on_token = collect;
    gp->user = col;
    strata_error err;
    if (strata_generate(s, p, n, gp, r, &err)) fail_msg("generate: %s", err.message);
}

static void test_stops(void **state)
{
    (void)state;
    strata_model *m = open_with_tokenizer();
    const int32_t prompt[] = {75, 25, 32, 50, 5, 257, 142, 157, 169};
    const size_t P = 9;
    strata_session *s = new_session(m, 128);
    strata_generate_params gp = strata_generate_default_params();
    gp.max_tokens = 24;
    gp.stop_token = -1;
    collected all, col;
    strata_generate_result r;
    generate(s, prompt, P, &gp, &all, &r);
    assert_int_equal(all.n, 24);

    /* stop token: the first occurrence of the 4th generated id */
    int first = 0;
    while (all.ids[first] != all.ids[3]) first++;
    strata_session_reset(s);
    gp.stop_token = all.ids[3];
    generate(s, prompt, P, &gp, &col, &r);
    assert_int_equal(r.stop, STRATA_STOP_TOKEN);
    assert_int_equal(col.n, first + 1);

    /* stop text: the bytes of generated tokens 4..5 (it may straddle them) */
    char want[8];
    size_t wl = 0, len;
    for (int i = 4; i < 6; i++) {
        const char *p = strata_token_piece(m, all.ids[i], &len);
        memcpy(want + wl, p, len);
        wl += len;
    }
    want[wl] = 0;
    if (strlen(want) == wl) {       /* no NUL byte inside */
        char bytes[64];
        size_t bl = 0;
        int expect = 0;
        for (; expect < 24; expect++) {
            const char *p = strata_token_piece(m, all.ids[expect], &len);
            memcpy(bytes + bl, p, len);
            bl += len;
            if (memmem(bytes, bl, want, wl)) break;
        }
        strata_session_reset(s);
        gp.stop_token = -1;
        gp.stop_text = want;
        generate(s, prompt, P, &gp, &col, &r);
        assert_int_equal(r.stop, STRATA_STOP_TEXT);
        assert_int_equal(col.n, expect + 1);
        gp.stop_text = NULL;
    }

    /* the callback */
    strata_session_reset(s);
    gp.stop_token = -1;
    col.stop_after = 2;
    gp.on_token = collect;
    gp.user = &col;
    col.n = 0;
    strata_error err;
    assert_int_equal(strata_generate(s, prompt, P, &gp, &r, &err), STRATA_OK);
    assert_int_equal(r.stop, STRATA_STOP_CALLBACK);
    assert_int_equal(col.n, 2);
    col.stop_after = 0;

    /* the context: ctx - prompt + 1 tokens (the last one is not fed) */
    strata_session *small = new_session(m, P + 3);
    generate(small, prompt, P, &gp, &col, &r);
    assert_int_equal(r.stop, STRATA_STOP_CONTEXT);
    assert_int_equal(col.n, 4);
    assert_memory_equal(col.ids, all.ids, sizeof(int32_t) * 4);
    strata_session_free(small);

    /* continuing a session: generate with no prompt after syncing the last token */
    strata_session_reset(s);
    gp.max_tokens = 5;
    generate(s, prompt, P, &gp, &col, &r);
    int32_t seq[64];
    memcpy(seq, prompt, sizeof(int32_t) * P);
    memcpy(seq + P, col.ids, sizeof(int32_t) * 5);
    size_t reused;
    assert_int_equal(strata_session_sync(s, seq, P + 5, &reused, &err), STRATA_OK);
    assert_int_equal(reused, P + 4);
    generate(s, NULL, 0, &gp, &col, &r);
    assert_memory_equal(col.ids, all.ids + 5, sizeof(int32_t) * 5);
    assert_int_equal(r.n_prompt, 0);

    /* max_tokens 0 */
    gp.max_tokens = 0;
    generate(s, NULL, 0, &gp, &col, &r);
    assert_int_equal(col.n, 0);
    assert_int_equal(r.stop, STRATA_STOP_LENGTH);
    strata_session_free(s);
    strata_model_free(m);
}

static void test_sampling(void **state)
{
    (void)state;
    strata_model *m = open_model(switch3a(), NULL);
    const int32_t prompt[] = {66, 181, 13, 220, 106, 186, 209, 109};
    strata_session_params sp = strata_session_default_params();
    sp.sampling = (strata_sampling){.temperature = 1.5f, .top_k = 40, .top_p = 0.9f, .seed = 7};
    strata_session *a, *b;
    strata_error err;
    assert_int_equal(strata_session_create(m, &sp, &a, &err), STRATA_OK);
    assert_int_equal(strata_session_create(m, &sp, &b, &err), STRATA_OK);
    strata_generate_params gp = strata_generate_default_params();
    gp.max_tokens = 12;
    gp.stop_token = -1;
    collected ca, cb;
    strata_generate_result r;
    generate(a, prompt, 8, &gp, &ca, &r);
    generate(b, prompt, 8, &gp, &cb, &r);
    assert_int_equal(ca.n, 12);
    assert_memory_equal(ca.ids, cb.ids, sizeof(int32_t) * 12);
    /* set_sampling restarts the stream */
    strata_session_reset(b);
    assert_int_equal(strata_session_set_sampling(b, &sp.sampling, &err), STRATA_OK);
    generate(b, prompt, 8, &gp, &cb, &r);
    assert_memory_equal(ca.ids, cb.ids, sizeof(int32_t) * 12);
    /* single samples agree with generate's first token */
    strata_session_reset(b);
    strata_session_set_sampling(b, &sp.sampling, &err);
    feed(b, prompt, 8);
    int32_t t;
    assert_int_equal(strata_session_sample(b, &t, &err), STRATA_OK);
    assert_int_equal(t, ca.ids[0]);
    strata_sampling nan = {.temperature = NAN, .top_p = 1};
    assert_int_equal(strata_session_set_sampling(b, &nan, &err), STRATA_ERR_ARGUMENT);
    strata_session_free(a);
    strata_session_free(b);
    strata_model_free(m);
}

/* ---- errors ------------------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    strata_error err;
    strata_model *m = (strata_model *)1;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-model", test_tmpdir());
    assert_int_equal(strata_model_open(missing, NULL, &m, &err), STRATA_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(strata_error_message(&err), "no-such-model"));
    assert_int_equal(strata_model_open(test_data("model/switch-3a/cases"), NULL, &m, &err), STRATA_ERR_IO);
    assert_non_null(strstr(err.message, "config.json"));
    assert_int_equal(strata_model_open(NULL, NULL, &m, &err), STRATA_ERR_ARGUMENT);
    strata_model_params mp = strata_model_default_params();
    mp.devices = "cpu";
    mp.max_memory = "cpu=1GiB";     /* placement options need devices (test_api_placement.c) */
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_ERR_ARGUMENT);
    mp = strata_model_default_params();
    mp.n_ctx = -1;
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_ERR_ARGUMENT);
    mp = strata_model_default_params();
    mp.kv_type = "f16";
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "kv_type \"f16\""));
    assert_null(m);
    /* a session's bytes: K and V of 3 decoder layers x 2 KV heads x head dim 16 per
     * position (f32 or bf16), + 16 bytes of per-position records */
    for (int b = 0; b < 2; b++) {
        mp.kv_type = b ? "bf16" : "f32";
        assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_OK);
        strata_model_info mi;
        strata_model_get_info(m, &mi);
        assert_string_equal(mi.kv_type, mp.kv_type);
        assert_int_equal(strata_model_session_bytes(m, 100),
                         100 * (2 * 3 * 2 * 16 * (b ? 2 : 4) + 16));
        strata_session *s = new_session(m, 8);
        strata_session_free(s);
        strata_model_free(m);
    }
    mp = strata_model_default_params();
    mp.tokenizer = missing;
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_ERR_IO);
    assert_non_null(strstr(err.message, "no-such-model"));
    mp.tokenizer = test_data("model/switch-3a/config.json");     /* not a tokenizer */
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_ERR_FORMAT);
    assert_int_equal(strata_model_open(switch3a(), NULL, &m, NULL), STRATA_OK);   /* err may be NULL */
    assert_string_equal(strata_status_string(STRATA_ERR_CONTEXT), "context full");
    assert_string_equal(strata_error_message(NULL), "");

    /* no tokenizer */
    int32_t *ids;
    size_t n;
    assert_int_equal(strata_tokenize(m, "a", 1, 0, &ids, &n, &err), STRATA_ERR_NO_TOKENIZER);
    strata_chat_message u = {"user", "Q"};
    assert_int_equal(strata_chat_tokens(m, &u, 1, 1, 0, 0, &ids, &n, &err), STRATA_ERR_NO_TOKENIZER);
    assert_null(strata_token_piece(m, 5, &n));

    strata_session *s = new_session(m, 8);
    assert_int_equal(strata_session_ctx(s), 8);
    int32_t t;
    assert_int_equal(strata_session_sample(s, &t, &err), STRATA_ERR_STATE);
    assert_int_equal(strata_generate(s, NULL, 0, NULL, NULL, &err), STRATA_ERR_STATE);
    const int32_t bad[] = {1, 259};
    assert_int_equal(strata_session_feed(s, bad, 2, &err), STRATA_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "259"));
    assert_int_equal(strata_session_length(s), 0);
    const int32_t nine[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(strata_session_feed(s, nine, 9, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(strata_session_length(s), 0);
    /* a count past INT64_MAX is a full context too, before any id is read
     * (ASan checks that: `nine` has 9 elements) */
    assert_int_equal(strata_session_feed(s, nine, SIZE_MAX, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(strata_session_feed(s, nine, (size_t)INT64_MAX + 2, &err),
                     STRATA_ERR_CONTEXT);
    feed(s, nine, 8);
    assert_int_equal(strata_session_feed(s, nine, 1, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(strata_session_length(s), 8);
    /* sync refuses more than the context before dropping the cached positions */
    size_t reused = 7;
    assert_int_equal(strata_session_sync(s, nine, SIZE_MAX, &reused, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(strata_session_sync(s, nine, 9, &reused, &err), STRATA_ERR_CONTEXT);
    assert_int_equal(reused, 0);
    assert_int_equal(strata_session_length(s), 8);
    assert_int_equal(strata_session_feed(s, nine, 0, &err), STRATA_ERR_ARGUMENT);
    assert_int_equal(strata_session_truncate(s, 9, &err), STRATA_ERR_ARGUMENT);
    strata_generate_params gp = strata_generate_default_params();
    gp.stop_text = "x";
    assert_int_equal(strata_generate(s, NULL, 0, &gp, NULL, &err), STRATA_ERR_NO_TOKENIZER);
    gp = strata_generate_default_params();
    gp.stop_token = V;
    assert_int_equal(strata_generate(s, NULL, 0, &gp, NULL, &err), STRATA_ERR_ARGUMENT);
    gp.stop_token = -1;
    gp.max_tokens = -1;
    assert_int_equal(strata_generate(s, NULL, 0, &gp, NULL, &err), STRATA_ERR_ARGUMENT);
    strata_session_params sp = strata_session_default_params();
    sp.n_ctx = -5;
    strata_session *s2 = (strata_session *)1;
    assert_int_equal(strata_session_create(m, &sp, &s2, &err), STRATA_ERR_ARGUMENT);
    assert_null(s2);
    assert_int_equal(strata_model_find_adapter(m, NULL, &err), -1);
    strata_session_free(s);
    strata_session_free(NULL);
    strata_model_free(m);
    strata_model_free(NULL);
}

/* ---- threads ------------------------------------------------------------------------ */

typedef struct job {
    const strata_model *m;
    int32_t out[16];
    int n;
    strata_status st;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    const int32_t prompt[] = {75, 25, 32, 50, 5, 257, 142, 157, 169};
    strata_session *s;
    strata_error err;
    j->st = strata_session_create(j->m, NULL, &s, &err);
    if (j->st) return NULL;
    collected col = {0};
    strata_generate_params gp = strata_generate_default_params();
    gp.max_tokens = 16;
    gp.stop_token = -1;
    gp.on_token = collect;
    gp.user = &col;
    j->st = strata_generate(s, prompt, 9, &gp, NULL, &err);
    memcpy(j->out, col.ids, sizeof j->out);
    j->n = col.n;
    strata_session_free(s);
    return NULL;
}

/* Sessions of one model on several threads give what one thread gives. */
static void test_threads(void **state)
{
    (void)state;
    strata_model_params mp = strata_model_default_params();
    mp.n_threads = 2;
    strata_model *m;
    strata_error err;
    assert_int_equal(strata_model_open(switch3a(), &mp, &m, &err), STRATA_OK);
    job ref = {.m = m};
    run_job(&ref);
    assert_int_equal(ref.st, STRATA_OK);
    assert_int_equal(ref.n, 16);
    job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (job){.m = m};
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].st, STRATA_OK);
        assert_memory_equal(jobs[i].out, ref.out, sizeof ref.out);
    }
    strata_model_free(m);
}

/* ---- allocation failures ------------------------------------------------------------ */

/* Open (with tokenizer and chat config), chat tokens, a session, generation:
 * every allocation in turn fails; each failure is a clean error with a
 * message, and ASan sees no leak. */
static strata_status whole_path(const char *dir, strata_error *err)
{
    strata_model *m = NULL;
    strata_session *s = NULL;
    int32_t *ids = NULL;
    size_t n;
    strata_status st;
    strata_chat_message u = {"user", "Is <req> it?"};
    strata_generate_params gp = strata_generate_default_params();
    gp.max_tokens = 3;
    gp.stop_text = "zz";
    if ((st = strata_model_open(dir, NULL, &m, err))) goto done;
    if ((st = strata_chat_tokens(m, &u, 1, 1, 2, 0, &ids, &n, err))) goto done;
    if ((st = strata_session_create(m, NULL, &s, err))) goto done;
    if ((st = strata_generate(s, ids, n, &gp, NULL, err))) goto done;
    st = strata_session_sync(s, ids, n, NULL, err);
done:
    strata_free(ids);
    strata_session_free(s);
    strata_model_free(m);
    return st;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *dir = model_dir("faults", tokenizer_config, NULL);
    strata_error err;
    sr_alloc_fail_after(-1);
    assert_int_equal(whole_path(dir, &err), STRATA_OK);
    long total = sr_alloc_count();
    assert_true(total > 10);
    /* every site near the start and end, a sample in between (the tokenizer
     * alone allocates hundreds of times) */
    long failed = 0;
    for (long k = 0; k < total; k += (k < 400 || k > total - 400) ? 1 : 37) {
        sr_alloc_fail_after(k);
        strata_status st = whole_path(dir, &err);
        sr_alloc_fail_after(-1);
        if (st != STRATA_OK) {
            failed++;
            if (!err.message[0]) fail_msg("allocation %ld: status %d without a message", k, st);
        }
    }
    assert_true(failed > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feed_golden),
        cmocka_unit_test(test_generate_golden),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_chat_reuse),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_chat_format),
        cmocka_unit_test(test_granite4_chat_golden),
        cmocka_unit_test(test_adapter_kinds_sources),
        cmocka_unit_test(test_stops),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
