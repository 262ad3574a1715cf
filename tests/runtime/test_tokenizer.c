/* The byte-level BPE tokenizer against the reference (HF `tokenizers`)
 * golden cases of tests/data/tokenizer/, plus hand-made tokenizers for the
 * features the three real files do not use, malformed files, allocation
 * failures, concurrent use, and the `strata tokenize` / `detokenize`
 * commands. */
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer.h"
#include "test_util.h"

static const char *const names[] = {"gpt2", "granite-3", "granite-4-reconstructed"};
enum { GPT2, GRANITE3, GRANITE4, N_TOK };
static sr_tokenizer *toks[N_TOK];
static char tok_paths[N_TOK][4096];

/* tokenizer.json is stored zstd-compressed; the loader reads plain JSON. */
static int unpack(const char *rel, const char *dst)
{
    size_t n = 0;
    char *z = test_read_file(test_data(rel), &n);
    if (!z) return -1;
    unsigned long long size = ZSTD_getFrameContentSize(z, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) { free(z); return -1; }
    char *plain = malloc(size ? size : 1);
    size_t got = ZSTD_decompress(plain, size, z, n);
    int rc = (ZSTD_isError(got) || got != size) ? -1 : test_write_file(dst, plain, got);
    free(z);
    free(plain);
    return rc;
}

static int setup_all(void **state)
{
    (void)state;
    for (int t = 0; t < N_TOK; t++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizer/%s/tokenizer.json.zst", names[t]);
        snprintf(tok_paths[t], sizeof tok_paths[t], "%s/%s.json", test_tmpdir(), names[t]);
        if (unpack(rel, tok_paths[t])) {
            fprintf(stderr, "cannot unpack %s\n", rel);
            return -1;
        }
        sr_error err;
        if (sr_tokenizer_load(tok_paths[t], &toks[t], &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    for (int t = 0; t < N_TOK; t++) {
        sr_tokenizer_free(toks[t]);
        remove(tok_paths[t]);
    }
    return 0;
}

/* ---- golden cases ------------------------------------------------------------------- */

/* Calls fn on each JSON line of tests/data/<rel>. */
static void each_line(const char *rel, void (*fn)(json_t *, void *), void *user)
{
    size_t n = 0;
    char *data = test_read_file(test_data(rel), &n);
    assert_non_null(data);
    for (char *line = data, *nl; line < data + n; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(data + n - line));
        if (!nl) nl = data + n;
        if (nl == line) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, &je);
        if (!o) fail_msg("%s: %s", rel, je.text);
        fn(o, user);
        json_decref(o);
    }
    free(data);
}

static int ids_equal(json_t *want, const int32_t *ids, size_t n)
{
    if (json_array_size(want) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return 0;
    return 1;
}

static int str_equal(json_t *want, const char *s, size_t n)
{
    return json_string_length(want) == n && !memcmp(json_string_value(want), s, n);
}

typedef struct tally {
    int tok;
    int total, failed;
    char failed_ids[4096];
} tally;

static void tally_fail(tally *t, const char *id, const char *what)
{
    if (t->failed++ < 8) fprintf(stderr, "  %s %s: %s differs\n", names[t->tok], id, what);
    size_t l = strlen(t->failed_ids);
    if (l < sizeof t->failed_ids - 64)
        snprintf(t->failed_ids + l, sizeof t->failed_ids - l, "%s%s", l ? " " : "", id);
}

static void check_case(json_t *c, void *user)
{
    tally *t = user;
    const sr_tokenizer *tok = toks[t->tok];
    const char *id = json_string_value(json_object_get(c, "id"));
    json_t *text = json_object_get(c, "text");
    sr_error err;
    int32_t *ids = NULL, *ids2 = NULL;
    size_t n = 0, n2 = 0;
    t->total++;
    if (sr_tokenize(tok, json_string_value(text), json_string_length(text), 0, &ids, &n, &err) ||
        sr_tokenize(tok, json_string_value(text), json_string_length(text), SR_TOKENIZE_ADD_SPECIAL,
                    &ids2, &n2, &err)) {
        fprintf(stderr, "  %s %s: %s\n", names[t->tok], id, err.msg);
        tally_fail(t, id, "encode error");
        goto out;
    }
    if (!ids_equal(json_object_get(c, "ids"), ids, n)) { tally_fail(t, id, "ids"); goto out; }
    if (!ids_equal(json_object_get(c, "ids_add_special"), ids2, n2)) {
        tally_fail(t, id, "ids_add_special");
        goto out;
    }
    json_t *tokens = json_object_get(c, "tokens");
    for (size_t i = 0; i < n; i++) {
        const char *s = sr_tokenizer_id_to_token(tok, ids[i]);
        if (!s || strcmp(s, json_string_value(json_array_get(tokens, i)))) {
            tally_fail(t, id, "tokens");
            goto out;
        }
    }
    for (int skip = 0; skip < 2; skip++) {
        char *out;
        size_t len;
        if (sr_detokenize(tok, ids, n, skip, &out, &len, &err)) {
            tally_fail(t, id, err.msg);
            goto out;
        }
        int ok = str_equal(json_object_get(c, skip ? "decoded_skip_special" : "decoded"), out, len);
        sr_free(out);
        if (!ok) { tally_fail(t, id, skip ? "decoded_skip_special" : "decoded"); goto out; }
    }
out:
    sr_free(ids);
    sr_free(ids2);
}

static void check_decode_case(json_t *c, void *user)
{
    tally *t = user;
    const char *id = json_string_value(json_object_get(c, "id"));
    json_t *jids = json_object_get(c, "ids");
    size_t n = json_array_size(jids);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        json_int_t v = json_integer_value(json_array_get(jids, i));
        ids[i] = v > INT32_MAX ? INT32_MAX : (int32_t)v;
    }
    char *out = NULL;
    size_t len;
    sr_error err;
    t->total++;
    if (sr_detokenize(toks[t->tok], ids, n, json_is_true(json_object_get(c, "skip_special_tokens")),
                      &out, &len, &err))
        tally_fail(t, id, err.msg);
    else if (!str_equal(json_object_get(c, "decoded"), out, len))
        tally_fail(t, id, "decoded");
    sr_free(out);
    free(ids);
}

static void run_golden(int tok, const char *file, void (*fn)(json_t *, void *))
{
    tally t = {.tok = tok};
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/%s/%s", names[tok], file);
    each_line(rel, fn, &t);
    fprintf(stderr, "%s %s: %d/%d match\n", names[tok], file, t.total - t.failed, t.total);
    assert_true(t.total > 0);
    if (t.failed) fail_msg("%s %s: %d failing cases: %s", names[tok], file, t.failed, t.failed_ids);
}

static void test_gpt2_cases(void **s) { (void)s; run_golden(GPT2, "cases.jsonl", check_case); }
static void test_granite3_cases(void **s) { (void)s; run_golden(GRANITE3, "cases.jsonl", check_case); }
static void test_granite4_cases(void **s) { (void)s; run_golden(GRANITE4, "cases.jsonl", check_case); }
static void test_gpt2_decode(void **s) { (void)s; run_golden(GPT2, "decode_cases.jsonl", check_decode_case); }
static void test_granite3_decode(void **s)
{
    (void)s;
    run_golden(GRANITE3, "decode_cases.jsonl", check_decode_case);
}
static void test_granite4_decode(void **s)
{
    (void)s;
    run_golden(GRANITE4, "decode_cases.jsonl", check_decode_case);
}

/* ---- API queries ------------------------------------------------------------------------ */

static void test_queries(void **state)
{
    (void)state;
    const sr_tokenizer *g4 = toks[GRANITE4], *g3 = toks[GRANITE3], *g2 = toks[GPT2];
    assert_int_equal(sr_tokenizer_token_to_id(g4, "<|start_of_role|>"), 100264);
    assert_int_equal(sr_tokenizer_token_to_id(g4, "<|end_of_text|>"), 100257);
    assert_int_equal(sr_tokenizer_token_to_id(g3, "<|end_of_text|>"), 0);
    assert_int_equal(sr_tokenizer_token_to_id(g2, "Ġworld"), 995);
    assert_int_equal(sr_tokenizer_token_to_id(g4, "<|answerability|>"), -1);
    assert_string_equal(sr_tokenizer_id_to_token(g4, 100265), "<|end_of_role|>");
    assert_string_equal(sr_tokenizer_id_to_token(g2, 220), "Ġ");
    assert_null(sr_tokenizer_id_to_token(g4, 100284));
    assert_null(sr_tokenizer_id_to_token(g4, -1));
    assert_int_equal(sr_tokenizer_vocab_size(g4), 100284);
    assert_int_equal(sr_tokenizer_vocab_size(g3), 49156);
    assert_int_equal(sr_tokenizer_vocab_size(g2), 50257);
    assert_true(sr_tokenizer_is_special(g4, 100264));
    assert_false(sr_tokenizer_is_special(g4, 100270)); /* <tool_call> is special:false */
    assert_false(sr_tokenizer_is_special(g4, 1000));
    const int32_t *sp;
    assert_int_equal(sr_tokenizer_special_ids(g4, &sp), 16);
    assert_int_equal(sp[0], 100256);
    assert_int_equal(sr_tokenizer_special_ids(g3, &sp), 23);
    assert_int_equal(sr_tokenizer_special_ids(g2, &sp), 1);
    assert_int_equal(sp[0], 50256);
    size_t len;
    const char *b = sr_tokenizer_token_bytes(g2, 220, &len);
    assert_int_equal(len, 1);
    assert_int_equal(b[0], ' ');
}

/* Special tokens written in the text are ordinary text on request;
 * non-special added tokens are still matched. */
static void test_special_as_text(void **state)
{
    (void)state;
    const char *text = "<|start_of_role|>user<tool_call>";
    int32_t *ids;
    size_t n;
    sr_error err;
    assert_int_equal(sr_tokenize(toks[GRANITE4], text, strlen(text), SR_TOKENIZE_SPECIAL_AS_TEXT,
                                 &ids, &n, &err), 0);
    assert_true(n > 3);
    assert_int_equal(ids[0], 27); /* '<' */
    assert_int_equal(ids[n - 1], 100270);
    for (size_t i = 0; i + 1 < n; i++) assert_true(ids[i] < 100256);
    sr_free(ids);
}

/* Ill-formed UTF-8 is encoded byte by byte, losing nothing (gpt2 and
 * cl100k hold all 256 bytes). */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "a\x80 b", "\xF0\x9F\x98", "x \xC0\x80 y", "\xED\xA0\x80!", "\xF4\x90\x80\x80", "\xFF",
        /* split so "\x80" does not swallow the digits after it */
        ("ok \xE2\x82 then \xE2\x82\xAC and 123\x80" "456   \x80\n\n"),
        "<|end_of_text|>\x80<|end_of_role|>",
    };
    for (int t = 0; t < N_TOK; t++) {
        for (size_t k = 0; k < sizeof inputs / sizeof *inputs; k++) {
            const char *in = inputs[k];
            int32_t *ids;
            size_t n;
            sr_error err;
            assert_int_equal(sr_tokenize(toks[t], in, strlen(in), 0, &ids, &n, &err), 0);
            char back[256];
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                size_t len;
                const char *b = sr_tokenizer_token_bytes(toks[t], ids[i], &len);
                assert_non_null(b);
                assert_true(m + len < sizeof back);
                memcpy(back + m, b, len);
                m += len;
            }
            if (t != GRANITE3) { /* granite-3 lacks the bytes C0 C1 F1 F5..FF */
                assert_int_equal(m, strlen(in));
                assert_memory_equal(back, in, m);
            }
            char *dec;
            size_t dlen;
            assert_int_equal(sr_detokenize(toks[t], ids, n, 0, &dec, &dlen, &err), 0);
            sr_free(dec);
            sr_free(ids);
        }
    }
}

/* Long runs exercise the regex (JIT stack) and the heap merge loop. */
static void test_long_runs(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *text = malloc(n);
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < n; i++)
            text[i] = kind == 0 ? ' ' : kind == 1 ? (char)('0' + i % 10) : (char)('a' + (i * 7) % 26);
        for (int t = 0; t < N_TOK; t++) {
            int32_t *ids;
            size_t m, dlen;
            char *dec;
            sr_error err;
            assert_int_equal(sr_tokenize(toks[t], text, n, 0, &ids, &m, &err), 0);
            assert_true(m > 0 && m <= n);
            assert_int_equal(sr_detokenize(toks[t], ids, m, 0, &dec, &dlen, &err), 0);
            assert_int_equal(dlen, n);
            assert_memory_equal(dec, text, n);
            sr_free(dec);
            sr_free(ids);
        }
    }
    free(text);
}

/* ---- concurrent use -------------------------------------------------------------------------- */

typedef struct job {
    char **texts;
    size_t *lens;
    int32_t **want;
    size_t *nwant;
    size_t count;
    int bad;
} job;

static void collect_text(json_t *c, void *user)
{
    job *j = user;
    json_t *t = json_object_get(c, "text"), *ids = json_object_get(c, "ids");
    j->texts = realloc(j->texts, (j->count + 1) * sizeof *j->texts);
    j->lens = realloc(j->lens, (j->count + 1) * sizeof *j->lens);
    j->want = realloc(j->want, (j->count + 1) * sizeof *j->want);
    j->nwant = realloc(j->nwant, (j->count + 1) * sizeof *j->nwant);
    j->lens[j->count] = json_string_length(t);
    j->texts[j->count] = malloc(j->lens[j->count] + 1);
    memcpy(j->texts[j->count], json_string_value(t), j->lens[j->count] + 1);
    j->nwant[j->count] = json_array_size(ids);
    j->want[j->count] = malloc((json_array_size(ids) + 1) * sizeof(int32_t));
    for (size_t i = 0; i < json_array_size(ids); i++)
        j->want[j->count][i] = (int32_t)json_integer_value(json_array_get(ids, i));
    j->count++;
}

static void *encode_all(void *arg)
{
    job *j = arg;
    for (int rep = 0; rep < 20; rep++)
        for (size_t k = 0; k < j->count; k++) {
            int32_t *ids;
            size_t n;
            if (sr_tokenize(toks[GRANITE4], j->texts[k], j->lens[k], 0, &ids, &n, NULL) ||
                n != j->nwant[k] || (n && memcmp(ids, j->want[k], n * sizeof *ids)))
                j->bad++;
            sr_free(ids);
        }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    job j = {0};
    each_line("tokenizer/granite-4-reconstructed/cases.jsonl", collect_text, &j);
    job per[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        per[i] = j;
        per[i].bad = 0;
        assert_int_equal(pthread_create(&th[i], NULL, encode_all, &per[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += per[i].bad;
    }
    assert_int_equal(bad, 0);
    for (size_t k = 0; k < j.count; k++) {
        free(j.texts[k]);
        free(j.want[k]);
    }
    free(j.texts);
    free(j.lens);
    free(j.want);
    free(j.nwant);
}

/* ---- hand-made tokenizers ------------------------------------------------------------------------ */

/* GPT-2's byte -> character map, written out independently of the library. */
static unsigned byte_cp(int b)
{
    static int table[256], ready;
    if (!ready) {
        int n = 0;
        for (int i = 0; i < 256; i++) table[i] = -1;
        for (int i = '!'; i <= '~'; i++) table[i] = i;
        for (int i = 0xA1; i <= 0xAC; i++) table[i] = i;
        for (int i = 0xAE; i <= 0xFF; i++) table[i] = i;
        for (int i = 0; i < 256; i++)
            if (table[i] < 0) table[i] = 256 + n++;
        ready = 1;
    }
    return (unsigned)table[b];
}

/* Appends the JSON-escaped UTF-8 spelling of byte b. */
static void put_byte_key(char **p, int b)
{
    unsigned cp = byte_cp(b);
    if (cp == '"' || cp == '\\') *(*p)++ = '\\', *(*p)++ = (char)cp;
    else if (cp < 0x80) *(*p)++ = (char)cp;
    else *(*p)++ = (char)(0xC0 | (cp >> 6)), *(*p)++ = (char)(0x80 | (cp & 0x3F));
}

/* A tokenizer.json whose vocabulary holds every byte (except those in
 * `drop`) at id = byte, then extra_vocab; merges, added tokens,
 * pre-tokenizer, post-processor and model flags as given. */
static char *mini_json(const char *drop, const char *extra_vocab, const char *merges,
                       const char *added, const char *pre, const char *post, const char *decoder,
                       const char *model_extra)
{
    size_t cap = 1 << 16;
    char *buf = malloc(cap), *p = buf;
    p += sprintf(p, "{\"added_tokens\": [%s], \"normalizer\": null, \"pre_tokenizer\": %s, "
                    "\"post_processor\": %s, \"decoder\": %s, \"model\": {\"type\": \"BPE\"%s%s, "
                    "\"vocab\": {",
                 added ? added : "", pre, post ? post : "null",
                 decoder ? decoder : "{\"type\": \"ByteLevel\"}", model_extra ? ", " : "",
                 model_extra ? model_extra : "");
    int first = 1;
    for (int b = 0; b < 256; b++) {
        if (drop && strchr(drop, b) && b) continue;
        if (!first) *p++ = ',';
        first = 0;
        *p++ = '"';
        put_byte_key(&p, b);
        p += sprintf(p, "\": %d", b);
    }
    p += sprintf(p, "%s%s}, \"merges\": [%s]}}", extra_vocab ? ", " : "", extra_vocab ? extra_vocab : "",
                 merges ? merges : "");
    assert_true((size_t)(p - buf) < cap);
    return buf;
}

static sr_tokenizer *mini_load(const char *json)
{
    sr_tokenizer *tok;
    sr_error err;
    if (sr_tokenizer_load_json(json, strlen(json), "mini.json", &tok, &err))
        fail_msg("mini tokenizer: %s\n%s", err.msg, json);
    return tok;
}

/* Encodes and compares with the expected ids (terminated by -1). */
static void expect_ids(const sr_tokenizer *tok, const char *text, unsigned flags, ...)
{
    int32_t want[64];
    size_t nw = 0;
    va_list ap;
    va_start(ap, flags);
    for (int v; (v = va_arg(ap, int)) != -1;) want[nw++] = v;
    va_end(ap);
    int32_t *ids;
    size_t n;
    sr_error err;
    if (sr_tokenize(tok, text, strlen(text), flags, &ids, &n, &err)) fail_msg("%s", err.msg);
    int ok = n == nw && (!n || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        char got[512] = "";
        for (size_t i = 0; i < n && strlen(got) < 480; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
        sr_free(ids);
        fail_msg("'%s': got [ %s] (%zu ids, want %zu)", text, got, n, nw);
    }
    sr_free(ids);
}

#define SPLIT_PRE(pattern, behavior, invert)                                                        \
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": " pattern      \
    ", \"behavior\": \"" behavior "\", \"invert\": " invert "}, {\"type\": \"ByteLevel\", "          \
    "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}"

/* Merges that glue '-' to its neighbours show where the pieces were cut. */
static const char dash_vocab[] = "\"a-\": 256, \"-b\": 257, \"--\": 258, \"-c\": 259, \"b-\": 260";
static const char dash_merges[] =
    "[\"a\", \"-\"], [\"-\", \"b\"], [\"-\", \"-\"], [\"-\", \"c\"], [\"b\", \"-\"]";

static void check_split(const char *pre, const char *text, ...)
{
    char *json = mini_json(NULL, dash_vocab, dash_merges, NULL, pre, NULL, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    int32_t want[64];
    size_t nw = 0;
    va_list ap;
    va_start(ap, text);
    for (int v; (v = va_arg(ap, int)) != -1;) want[nw++] = v;
    va_end(ap);
    int32_t *ids;
    size_t n;
    sr_error err;
    assert_int_equal(sr_tokenize(tok, text, strlen(text), 0, &ids, &n, &err), 0);
    if (n != nw || memcmp(ids, want, n * sizeof *ids)) {
        char got[256] = "";
        for (size_t i = 0; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
        fail_msg("%s on '%s': got [ %s]", pre, text, got);
    }
    sr_free(ids);
    sr_tokenizer_free(tok);
    free(json);
}

static void test_split_behaviors(void **state)
{
    (void)state;
    const int a = 'a', b = 'b', c = 'c', d = '-';
    /* "a-b--c": gaps a, b, c; delimiters -, -, - */
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "Removed", "false"), "a-b--c", a, b, c, -1);
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "Isolated", "false"), "a-b--c", a, d, b, d, d, c, -1);
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "MergedWithPrevious", "false"), "a-b--c", 256, 260,
                d, c, -1);
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "MergedWithNext", "false"), "a-b--c", a, 257, d,
                259, -1);
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "Contiguous", "false"), "a-b--c", a, d, b, 258, c, -1);
    check_split(SPLIT_PRE("{\"String\": \"-\"}", "Removed", "true"), "a-b--c", d, d, d, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"-+\"}", "Isolated", "false"), "a-b--c", a, d, b, 258, c, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"[^-]+\"}", "Removed", "true"), "a-b--c", a, b, c, -1);
    /* \s and \S in and out of classes (spelled out as White_Space), and the
     * forms left to PCRE2 as written */
    check_split(SPLIT_PRE("{\"Regex\": \"[\\\\s]+\"}", "Isolated", "false"), "a- b", 256, ' ', b, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"\\\\S+\"}", "Removed", "true"), "a- b", 256, b, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"[^\\\\S]+\"}", "Isolated", "false"), "a- b", 256, ' ', b, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"[[:space:]]+\"}", "Isolated", "false"), "a- b", 256, ' ', b, -1);
    check_split(SPLIT_PRE("{\"Regex\": \"\\\\Q \\\\E\"}", "Isolated", "false"), "a- b", 256, ' ', b, -1);
    /* no split at all: one piece, merged left to right by rank */
    check_split(SPLIT_PRE("{\"String\": \"x\"}", "Isolated", "false"), "a-b", 256, b, -1);
}

static void test_byte_level_options(void **state)
{
    (void)state;
    const char *pre_prefix =
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}";
    char *json = mini_json(NULL, "\"ab\": 256, \"Ġab\": 257", "\"a b\", \"Ġ ab\"", NULL, pre_prefix,
                           NULL, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    expect_ids(tok, "ab", 0, 257, -1);           /* prefix space added */
    expect_ids(tok, " ab", 0, 257, -1);          /* not doubled */
    expect_ids(tok, "ab ab", 0, 257, 257, -1);   /* GPT-2 regex split */
    expect_ids(tok, "", 0, -1);
    sr_tokenizer_free(tok);
    free(json);

    const char *pre_plain =
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";
    json = mini_json(NULL, "\"ab\": 256, \"Ġab\": 257", "\"a b\", \"Ġ ab\"", NULL, pre_plain, NULL,
                     NULL, NULL);
    tok = mini_load(json);
    expect_ids(tok, "ab", 0, 256, -1);
    expect_ids(tok, "ab ab", 0, 256, 257, -1); /* no regex: one piece */
    sr_tokenizer_free(tok);
    free(json);
}

/* \s means Unicode White_Space, as in the reference's regex engine: U+180E
 * (no longer White_Space) is punctuation-like, so GPT-2's regex keeps
 * "<180E>!" in one piece and a merge of its last byte with '!' applies. */
static void test_regex_white_space(void **state)
{
    (void)state;
    char vocab[64], merges[64], *p = vocab;
    *p++ = '"';
    put_byte_key(&p, 0x8E);
    p += sprintf(p, "!\": 256");
    p = merges;
    *p++ = '"';
    put_byte_key(&p, 0x8E);
    sprintf(p, " !\"");
    char *json = mini_json(NULL, vocab, merges, NULL,
                           "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
                           NULL, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    expect_ids(tok, "\xE1\xA0\x8E!", 0, 0xE1, 0xA0, 256, -1);
    expect_ids(tok, "\xE2\x80\x83!", 0, 0xE2, 0x80, 0x83, '!', -1); /* U+2003 is white space */
    sr_tokenizer_free(tok);
    free(json);
}

/* \p{L} and \p{N} as the reference's Unicode 16 tables have them, although
 * Debian 12's PCRE2 knows Unicode 14 (runtime/tokenizer_unicode.h): U+13575
 * (an Egyptian hieroglyph of Unicode 16) is a letter, U+10D40 (a Garay digit,
 * Unicode 16) a number.  Splits that remove a class leave only the bytes of
 * what is outside it.  (tests/interop checks every code point against HF.) */
static void test_regex_unicode_classes(void **state)
{
    (void)state;
    static const struct {
        const char *pre, *text;
        int want[8];
    } cases[] = {
        {SPLIT_PRE("{\"Regex\": \"\\\\p{L}\"}", "Removed", "false"), "a\xF0\x93\x95\xB5!",
         {'!', -1}},
        {SPLIT_PRE("{\"Regex\": \"\\\\pL+\"}", "Removed", "false"), "\xF0\x93\x95\xB5!",
         {'!', -1}},
        {SPLIT_PRE("{\"Regex\": \"\\\\P{L}\"}", "Removed", "false"), "a\xF0\x93\x95\xB5!",
         {'a', 0xF0, 0x93, 0x95, 0xB5, -1}},
        {SPLIT_PRE("{\"Regex\": \"\\\\p{N}\"}", "Removed", "false"), "1\xF0\x90\xB5\x80!",
         {'!', -1}},
        {SPLIT_PRE("{\"Regex\": \"[^\\\\s\\\\p{L}\\\\p{N}]\"}", "Removed", "false"),
         "!\xF0\x93\x95\xB5\xF0\x90\xB5\x80?", {0xF0, 0x93, 0x95, 0xB5, 0xF0, 0x90, 0xB5, 0x80}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *json = mini_json(NULL, NULL, NULL, NULL, cases[i].pre, NULL, NULL, NULL);
        sr_tokenizer *tok = mini_load(json);
        int32_t *ids;
        size_t n, nw = 0;
        sr_error err;
        while (nw < 8 && cases[i].want[nw] != -1) nw++;
        assert_int_equal(sr_tokenize(tok, cases[i].text, strlen(cases[i].text), 0, &ids, &n, &err), 0);
        if (n != nw || memcmp(ids, cases[i].want, n * sizeof *ids))
            fail_msg("case %zu (%s): %zu ids, want %zu", i, cases[i].pre, n, nw);
        sr_free(ids);
        sr_tokenizer_free(tok);
        free(json);
    }
}

static const char plain_pre[] =
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";

static void test_added_token_flags(void **state)
{
    (void)state;
    const char *added =
        "{\"id\": 300, \"content\": \"<s>\", \"special\": true},"
        "{\"id\": 301, \"content\": \"<s>x\", \"special\": false, \"normalized\": false},"
        "{\"id\": 302, \"content\": \"[L]\", \"lstrip\": true, \"special\": true},"
        "{\"id\": 303, \"content\": \"[R]\", \"rstrip\": true, \"special\": true},"
        "{\"id\": 304, \"content\": \"[W]\", \"single_word\": true, \"special\": true},"
        "{\"id\": 305, \"content\": \"</s>\", \"special\": true, \"normalized\": true},"
        "{\"id\": 306, \"content\": \"==>\", \"special\": false, \"normalized\": true},"
        "{\"id\": 307, \"content\": \"==\", \"special\": false, \"normalized\": false}";
    const char *post =
        "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "
        "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": "
        "{\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": "
        "\"<s>\", \"ids\": [300], \"tokens\": [\"<s>\"]}, \"</s>\": {\"id\": \"</s>\", \"ids\": [305], "
        "\"tokens\": [\"</s>\"]}}}";
    char *json = mini_json(NULL, NULL, NULL, added, plain_pre, post, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    expect_ids(tok, "<s>x", 0, 301, -1);             /* longest match */
    expect_ids(tok, "<s>y", 0, 300, 'y', -1);
    expect_ids(tok, "a  [L]b", 0, 'a', 302, 'b', -1); /* lstrip eats the spaces */
    expect_ids(tok, "a[R] \t b", 0, 'a', 303, 'b', -1);
    expect_ids(tok, "a[W]", 0, 'a', '[', 'W', ']', -1); /* single_word: not inside a word */
    expect_ids(tok, "_[W]", 0, '_', '[', 'W', ']', -1);
    expect_ids(tok, "a [W] b", 0, 'a', ' ', 304, ' ', 'b', -1);
    expect_ids(tok, "x</s>", 0, 'x', 305, -1);
    /* normalized tokens are looked for only in what the others left */
    expect_ids(tok, "</s>x", 0, 305, 'x', -1);
    expect_ids(tok, "==>", 0, 307, '>', -1);
    expect_ids(tok, "<s>x<s>", SR_TOKENIZE_SPECIAL_AS_TEXT, 301, '<', 's', '>', -1);
    expect_ids(tok, "hi", SR_TOKENIZE_ADD_SPECIAL, 300, 'h', 'i', 305, -1);
    expect_ids(tok, "", SR_TOKENIZE_ADD_SPECIAL, 300, 305, -1);

    int32_t ids[] = {300, 'h', 301, 999, -5, 305};
    char *out;
    size_t len;
    sr_error err;
    assert_int_equal(sr_detokenize(tok, ids, 6, 1, &out, &len, &err), 0);
    assert_string_equal(out, "h<s>x");
    sr_free(out);
    assert_int_equal(sr_detokenize(tok, ids, 6, 0, &out, &len, &err), 0);
    assert_string_equal(out, "<s>h<s>x</s>");
    sr_free(out);
    sr_tokenizer_free(tok);
    free(json);
}

static void test_model_options(void **state)
{
    (void)state;
    /* a byte missing from the vocabulary is dropped and its neighbours can merge */
    char *json = mini_json("z", "\"ab\": 256", "\"a b\"", NULL, plain_pre, NULL, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    expect_ids(tok, "azb", 0, 256, -1);
    sr_tokenizer_free(tok);
    free(json);

    /* ... or becomes unk, fused or not */
    json = mini_json("z", "\"<unk>\": 256", NULL, NULL, plain_pre, NULL, NULL,
                     "\"unk_token\": \"<unk>\", \"fuse_unk\": true");
    tok = mini_load(json);
    expect_ids(tok, "azzb", 0, 'a', 256, 'b', -1);
    sr_tokenizer_free(tok);
    free(json);
    json = mini_json("z", "\"<unk>\": 256", NULL, NULL, plain_pre, NULL, NULL,
                     "\"unk_token\": \"<unk>\", \"fuse_unk\": false");
    tok = mini_load(json);
    expect_ids(tok, "azzb", 0, 'a', 256, 256, 'b', -1);
    sr_tokenizer_free(tok);
    free(json);

    /* ignore_merges: a whole-word vocabulary hit wins over the merges */
    json = mini_json(NULL, "\"xyz\": 256", NULL, NULL, plain_pre, NULL, NULL, "\"ignore_merges\": true");
    tok = mini_load(json);
    expect_ids(tok, "xyz", 0, 256, -1);
    sr_tokenizer_free(tok);
    free(json);
    json = mini_json(NULL, "\"xyz\": 256", NULL, NULL, plain_pre, NULL, NULL, "\"ignore_merges\": false");
    tok = mini_load(json);
    expect_ids(tok, "xyz", 0, 'x', 'y', 'z', -1);
    sr_tokenizer_free(tok);
    free(json);

    /* equal ranks never happen; lower rank first even when it is to the right */
    json = mini_json(NULL, "\"bc\": 256, \"ab\": 257", "\"b c\", \"a b\"", NULL, plain_pre, NULL,
                     NULL, NULL);
    tok = mini_load(json);
    expect_ids(tok, "abc", 0, 'a', 256, -1);
    expect_ids(tok, "abab", 0, 257, 257, -1);
    sr_tokenizer_free(tok);
    free(json);

    /* no decoder: the reference joins the token strings with spaces */
    json = mini_json(NULL, NULL, NULL, NULL, plain_pre, NULL, "null", NULL);
    tok = mini_load(json);
    int32_t ids[] = {'a', ' ', 'b'};
    char *out;
    size_t len;
    sr_error err;
    assert_int_equal(sr_detokenize(tok, ids, 3, 0, &out, &len, &err), 0);
    assert_string_equal(out, "a \xC4\xA0 b");
    sr_free(out);
    sr_tokenizer_free(tok);
    free(json);
}

/* ---- malformed files ---------------------------------------------------------------------------- */

static void expect_load_error(const char *json, const char *needle)
{
    sr_tokenizer *tok = (sr_tokenizer *)1;
    sr_error err;
    int rc = sr_tokenizer_load_json(json, strlen(json), "bad.json", &tok, &err);
    if (rc == 0) fail_msg("loaded, expected an error naming '%s':\n%s", needle, json);
    assert_null(tok);
    if (!strstr(err.msg, needle) || strncmp(err.msg, "file bad.json", 13))
        fail_msg("error '%s' does not name '%s'", err.msg, needle);
}

/* A Split regex that can match empty: like the reference's regex engine
 * (Rust regex find_iter), no empty match is taken where the previous match
 * ended, so `a*` on "ab" finds "a" and the empty match at the end, and
 * MergedWithNext makes one piece "ab".  Ids from HF tokenizers 0.22 on this
 * same tokenizer.json (written out with STRATA_TEST_DUMP=FILE; HF also wants
 * the ByteLevel decoder's three fields, which do not change encoding). */
static void test_split_empty_after_match(void **state)
{
    (void)state;
    char *json = mini_json(NULL, "\"ab\": 256", "\"a b\"", NULL,
                           SPLIT_PRE("{\"Regex\": \"a*\"}", "MergedWithNext", "false"), NULL,
                           NULL, NULL);
    if (getenv("STRATA_TEST_DUMP")) {
        FILE *f = fopen(getenv("STRATA_TEST_DUMP"), "w");
        if (f) { fputs(json, f); fclose(f); }
    }
    sr_tokenizer *tok = mini_load(json);
    expect_ids(tok, "ab", 0, 256, -1);
    expect_ids(tok, "aab", 0, 97, 256, -1);
    expect_ids(tok, "bab", 0, 98, 256, -1);
    expect_ids(tok, "abab", 0, 256, 256, -1);
    sr_tokenizer_free(tok);
    free(json);
}

/* single_word: the added token counts only where no word character touches
 * it, with "word character" as the reference has it (Rust regex \w:
 * Alphabetic, marks, decimal digits, connector punctuation, ZWNJ/ZWJ), not
 * PCRE2's \w (letters, every number, _).  Whether HF tokenizers 0.22 matched
 * the token was checked on granite-3's vocabulary with the same token. */
static void test_single_word_chars(void **state)
{
    (void)state;
    const char *added = "{\"id\": 256, \"content\": \"wordz\", \"single_word\": true, "
                        "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                        "\"special\": false}";
    char *json = mini_json(NULL, NULL, NULL, added,
                           SPLIT_PRE("{\"Regex\": \"x\"}", "Isolated", "false"), NULL, NULL,
                           NULL);
    sr_tokenizer *tok = mini_load(json);
    static const struct { const char *text; int matched; } cases[] = {
        {"wordz", 1}, {"a wordz b", 1}, {"awordz", 0}, {"wordz5", 0},
        {"\xcc\x81wordz", 0},          /* U+0301 combining acute: a mark */
        {"wordz\xe2\x80\x8d", 0},     /* U+200D ZWJ */
        {"\xe2\x80\xbfwordz", 0},     /* U+203F undertie: connector punctuation */
        {"\xe2\x92\xb6wordz", 0},     /* U+24B6 circled A: Alphabetic, not a letter */
        {"\xc2\xbdwordz", 1},          /* U+00BD one half: a number, not a digit */
        {"wordz\xc2\xb2", 1},          /* U+00B2 superscript two */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t *ids;
        size_t n;
        sr_error err;
        assert_int_equal(sr_tokenize(tok, cases[i].text, strlen(cases[i].text), 0, &ids, &n,
                                     &err), 0);
        int found = 0;
        for (size_t k = 0; k < n; k++) found |= ids[k] == 256;
        if (found != cases[i].matched)
            fail_msg("case %zu: the single_word token %s", i, found ? "matched" : "did not match");
        sr_free(ids);
    }
    sr_tokenizer_free(tok);
    free(json);
}

/* A vocabulary token of more than 1024 bytes decodes byte-level like any
 * other (600 x "Ġ" is 600 spaces, as HF's ByteLevel decoder gives); it was
 * once returned in its byte-level spelling. */
static void test_decode_long_token(void **state)
{
    (void)state;
    char extra[4096], *p = extra;
    p += sprintf(p, "\"");
    for (int i = 0; i < 600; i++) p += sprintf(p, "\xc4\xa0");   /* "Ġ" (U+0120) */
    p += sprintf(p, "\": 256, \"");
    for (int i = 0; i < 300; i++) p += sprintf(p, "\xc4\x8a");   /* "Ċ" (U+010A): \n */
    for (int i = 0; i < 500; i++) *p++ = 'x';
    sprintf(p, "\": 257");
    char *json = mini_json(NULL, extra, NULL, NULL, SPLIT_PRE("{\"Regex\": \"x\"}", "Isolated", "false"),
                           NULL, NULL, NULL);
    sr_tokenizer *tok = mini_load(json);
    const int32_t ids[2] = {256, 257};
    char *text;
    size_t len;
    sr_error err;
    assert_int_equal(sr_detokenize(tok, ids, 2, 0, &text, &len, &err), 0);
    assert_int_equal(len, 600 + 300 + 500);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(text[i], i < 600 ? ' ' : i < 900 ? '\n' : 'x');
    sr_free(text);
    sr_tokenizer_free(tok);
    free(json);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_load_error("{\"model\": ", "invalid JSON");
    expect_load_error("[]", "top level");
    expect_load_error("{}", "model");
    expect_load_error("{\"model\": {\"vocab\": [], \"merges\": []}}", "model.vocab");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}}", "model.merges");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}", "model.type");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}", "model.vocab['a']");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "model.vocab['a']");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "id 0");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "model.merges[0]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}", "model.merges[0]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", "model.merges[0]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"a\"]]}}", "'aa'");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": true}}",
                      "model.byte_fallback");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}",
                      "model.dropout");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"?\"}}",
                      "model.unk_token");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"fuse_unk\": 3}}",
                      "model.fuse_unk");
    expect_load_error("{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {\"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}", "normalizer.type");
    expect_load_error("{\"added_tokens\": {}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "added_tokens");
    expect_load_error("{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}", "added_tokens[0].id");
    expect_load_error("{\"added_tokens\": [{\"id\": 1, \"content\": \"a\"}], \"model\": {\"vocab\": "
                      "{\"a\": 0}, \"merges\": []}}", "added_tokens[0]");
    expect_load_error("{\"added_tokens\": [{\"id\": 1, \"content\": \"\"}], \"model\": {\"vocab\": "
                      "{\"a\": 0}, \"merges\": []}}", "added_tokens[0].content");
    expect_load_error("{\"added_tokens\": [{\"id\": 1, \"content\": \"x\", \"special\": 1}], \"model\": "
                      "{\"vocab\": {\"a\": 0}, \"merges\": []}}", "added_tokens[0].special");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}", "pre_tokenizer");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"vocab\": {\"a\": 0}, "
                      "\"merges\": []}}", "pre_tokenizer.type");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"x\"}, "
                      "\"behavior\": \"Isolated\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "ByteLevel");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                      "\"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, "
                      "{\"type\": \"ByteLevel\"}]}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "pre_tokenizer.pretokenizers[0].pattern.Regex");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                      "\"Split\", \"pattern\": {\"Regex\": \"x\"}, \"behavior\": \"Sideways\"}, "
                      "{\"type\": \"ByteLevel\"}]}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "pre_tokenizer.pretokenizers[0].behavior");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": \"yes\"}, \"model\": "
                      "{\"vocab\": {\"a\": 0}, \"merges\": []}}", "pre_tokenizer.use_regex");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"post_processor\": {\"type\": "
                      "\"BertProcessing\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "post_processor.type");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"post_processor\": {\"type\": "
                      "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, "
                      "{\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {}}, \"model\": {\"vocab\": "
                      "{\"a\": 0}, \"merges\": []}}", "post_processor.special_tokens['<s>']");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": "
                      "\"WordPiece\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}", "decoder.type");

    sr_tokenizer *tok;
    sr_error err;
    assert_int_equal(sr_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err), -1);
    assert_null(tok);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
}

/* Every allocation of load, encode and decode may fail: a clean error each
 * time and nothing leaked (checked by the ASan pass). */
static void test_alloc_failures(void **state)
{
    (void)state;
    const char *added = "{\"id\": 300, \"content\": \"<s>\", \"special\": true}";
    const char *pre = SPLIT_PRE("{\"Regex\": \"\\\\p{L}+|\\\\s+\"}", "Isolated", "false");
    char *json = mini_json(NULL, dash_vocab, dash_merges, added, pre, NULL, NULL, NULL);
    const char *text = "a-b <s> --c \x80 a-b";
    sr_alloc_fail_after(-1);
    sr_alloc_fail_after(1 << 30);
    {
        sr_tokenizer *tok = mini_load(json);
        int32_t *ids;
        size_t n, len;
        char *out;
        assert_int_equal(sr_tokenize(tok, text, strlen(text), 0, &ids, &n, NULL), 0);
        assert_int_equal(sr_detokenize(tok, ids, n, 0, &out, &len, NULL), 0);
        sr_free(ids);
        sr_free(out);
        sr_tokenizer_free(tok);
    }
    long sites = sr_alloc_count();
    assert_true(sites > 5);
    for (long k = 0; k < sites; k++) {
        sr_alloc_fail_after(k);
        sr_tokenizer *tok;
        sr_error err;
        err.msg[0] = 0;
        if (sr_tokenizer_load_json(json, strlen(json), "mini.json", &tok, &err)) {
            assert_null(tok);
            assert_true(err.msg[0] != 0);
            continue;
        }
        int32_t *ids;
        size_t n, len;
        char *out;
        if (sr_tokenize(tok, text, strlen(text), 0, &ids, &n, &err) == 0) {
            if (sr_detokenize(tok, ids, n, 0, &out, &len, &err) == 0) sr_free(out);
            else assert_true(err.msg[0] != 0);
            sr_free(ids);
        } else {
            assert_null(ids);
            assert_true(err.msg[0] != 0);
        }
        sr_tokenizer_free(tok);
    }
    sr_alloc_fail_after(-1);
    free(json);
}

/* ---- the commands -------------------------------------------------------------------------------- */

/* Runs a shell command, returns its exit status and (up to cap bytes of) stdout. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What the library gives, as the command prints it: "1,2,3\n". */
static void lib_ids_line(int t, const char *text, unsigned flags, char *out, size_t cap)
{
    int32_t *ids;
    size_t n;
    sr_error err;
    assert_int_equal(sr_tokenize(toks[t], text, strlen(text), flags, &ids, &n, &err), 0);
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%d", i ? "," : "", ids[i]);
    snprintf(out + strlen(out), cap - strlen(out), "\n");
    sr_free(ids);
}

static void test_cli(void **state)
{
    (void)state;
    const char *exe = getenv("STRATA_EXE");
    if (!exe) skip();
    const char *g3 = tok_paths[GRANITE3]; /* the quickest to load with role tokens */
    const char *chat = "<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>";
    char out[4096], want[4096];

    assert_int_equal(run(out, sizeof out, "'%s' tokenize --tokenizer '%s' 'Hello world'", exe, g3), 0);
    assert_string_equal(out, "8279,5788\n");
    lib_ids_line(GRANITE3, chat, 0, want, sizeof want);
    assert_int_equal(run(out, sizeof out, "'%s' tokenize --tokenizer '%s' --special '%s'", exe, g3, chat), 0);
    assert_string_equal(out, want);
    assert_non_null(strstr(out, "49152,"));
    lib_ids_line(GRANITE3, chat, SR_TOKENIZE_SPECIAL_AS_TEXT, want, sizeof want);
    assert_int_equal(run(out, sizeof out, "'%s' tokenize --tokenizer '%s' --no-special '%s'", exe, g3, chat), 0);
    assert_string_equal(out, want);
    assert_null(strstr(out, "49152"));

    assert_int_equal(run(out, sizeof out, "printf 'a b\\n' | '%s' tokenize --tokenizer '%s' --json -",
                         exe, g3), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (!o) fail_msg("not JSON: %s", out);
    assert_int_equal(json_array_size(json_object_get(o, "ids")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "tokens"), 2)), "\xC4\x8A");
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "pieces"), 1)), " b");
    json_decref(o);

    assert_int_equal(run(out, sizeof out, "'%s' detokenize --tokenizer '%s' --ids 49152,496,49153,12575,0",
                         exe, g3), 0);
    assert_string_equal(out, "<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n");
    assert_int_equal(run(out, sizeof out,
                         "'%s' detokenize --tokenizer '%s' --skip-special --ids 49152,496,49153,12575,0,99999999999",
                         exe, g3), 0);
    assert_string_equal(out, "userHi\n");

    /* -m DIR reads DIR/tokenizer.json */
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/model", test_tmpdir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(run(out, sizeof out, "cp '%s' '%s'", tok_paths[GPT2], path), 0);
    assert_int_equal(run(out, sizeof out, "'%s' tokenize -m '%s' 'Hello world'", exe, dir), 0);
    assert_string_equal(out, "15496,995\n");
    remove(path);
    rmdir(dir);

    lib_ids_line(GRANITE3, "-x", 0, want, sizeof want);
    assert_int_equal(run(out, sizeof out, "'%s' tokenize --tokenizer '%s' -- -x", exe, g3), 0);
    assert_string_equal(out, want);

    assert_int_equal(run(out, sizeof out, "'%s' tokenize --tokenizer /nonexistent.json x 2>/dev/null", exe), 1);
    assert_int_equal(run(out, sizeof out, "'%s' tokenize x 2>/dev/null", exe), 2);
    assert_int_equal(run(out, sizeof out, "'%s' detokenize --tokenizer '%s' --ids 1,x 2>/dev/null", exe, g3), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_cases),
        cmocka_unit_test(test_granite3_cases),
        cmocka_unit_test(test_granite4_cases),
        cmocka_unit_test(test_gpt2_decode),
        cmocka_unit_test(test_granite3_decode),
        cmocka_unit_test(test_granite4_decode),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_special_as_text),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_long_runs),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_byte_level_options),
        cmocka_unit_test(test_regex_white_space),
        cmocka_unit_test(test_regex_unicode_classes),
        cmocka_unit_test(test_added_token_flags),
        cmocka_unit_test(test_model_options),
        cmocka_unit_test(test_split_empty_after_match),
        cmocka_unit_test(test_single_word_chars),
        cmocka_unit_test(test_decode_long_token),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
