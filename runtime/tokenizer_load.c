/* tokenizer.json -> sr_tokenizer.  Every field that is read is type-checked;
 * a message names the file and the field (e.g. "model.merges[12]").  What
 * the tokenizer cannot reproduce exactly (normalizers, byte_fallback,
 * dropout, ...) is refused rather than ignored. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer_internal.h"
#include "runtime/tokenizer_unicode.h"

/* Ids above this are refused (a corrupt file must not make us allocate
 * gigabytes of entries). */
#define TOK_MAX_ID (1 << 22)

/* The regex ByteLevel applies when use_regex is true (GPT-2's). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Growable byte arena; strings are referred to by offset. */
typedef struct arena {
    char *p;
    size_t n, cap;
} arena;

static int arena_add(arena *a, const void *s, size_t n, uint32_t *off, sr_error *err)
{
    if (a->n + n + 1 > UINT32_MAX) return sr_fail(err, "strings exceed 4 GiB");
    if (a->n + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (cap < a->n + n + 1) cap *= 2;
        char *p = sr_realloc(a->p, cap);
        if (!p) return sr_fail(err, "out of memory");
        a->p = p;
        a->cap = cap;
    }
    *off = (uint32_t)a->n;
    if (n) memcpy(a->p + a->n, s, n);
    a->p[a->n + n] = 0;
    a->n += n + 1;
    return 0;
}

static void *pcre_alloc(PCRE2_SIZE n, void *user)
{
    (void)user;
    return sr_malloc(n);
}

static void pcre_release(void *p, void *user)
{
    (void)user;
    sr_free(p);
}

/* ---- small JSON accessors ------------------------------------------------ */

/* Optional boolean: absent or null gives def. */
static int get_bool(json_t *o, const char *key, int def, int *out, const char *field,
                    sr_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) *out = def;
    else if (json_is_boolean(v)) *out = json_is_true(v);
    else return sr_fail(err, "%s.%s: expected true or false", field, key);
    return 0;
}

/* Optional string: absent or null gives NULL. */
static int get_str(json_t *o, const char *key, const char **out, size_t *len, const char *field,
                   sr_error *err)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return sr_fail(err, "%s.%s: expected a string", field, key);
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return 0;
}

static int get_id(json_t *v, int32_t *out, const char *field, sr_error *err)
{
    if (!json_is_integer(v)) return sr_fail(err, "%s: expected an integer id", field);
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= TOK_MAX_ID)
        return sr_fail(err, "%s: id %lld is out of range [0, %d)", field, (long long)x,
                       TOK_MAX_ID);
    *out = (int32_t)x;
    return 0;
}

/* ---- model ---------------------------------------------------------------------- */

static int insert_vocab_slot(sr_tokenizer *tok, int32_t id)
{
    const tok_entry *e = &tok->entries[id];
    size_t i = tok_hash(tok->strings + e->str_off, e->str_len) & tok->vocab_mask;
    while (tok->vocab_slots[i] >= 0) i = (i + 1) & tok->vocab_mask;
    tok->vocab_slots[i] = id;
    return 0;
}

/* A token string as the file spells it -> a merge operand id (model.vocab only). */
static int merge_operand(const sr_tokenizer *tok, const char *s, size_t n, int32_t *id,
                         size_t rank, sr_error *err)
{
    *id = tok_vocab_find(tok, s, n);
    if (*id < 0 || !(tok->entries[*id].flags & TOK_IN_VOCAB))
        return sr_fail(err, "model.merges[%zu]: token '%.*s' is not in model.vocab", rank,
                       (int)(n > 200 ? 200 : n), s);
    return 0;
}

static int parse_merges(sr_tokenizer *tok, json_t *merges, sr_error *err)
{
    size_t count = json_array_size(merges), cap = 16;
    while (cap < 2 * count + 16) cap *= 2;
    tok->merges.keys = sr_malloc(cap * sizeof(uint64_t));
    tok->merges.vals = sr_malloc(cap * sizeof(uint64_t));
    if (!tok->merges.keys || !tok->merges.vals) return sr_fail(err, "model.merges: out of memory");
    memset(tok->merges.keys, 0xFF, cap * sizeof(uint64_t));
    tok->merges.mask = cap - 1;

    char *cat = NULL;
    size_t cat_cap = 0, rank = 0;
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t na, nb;
        if (json_is_string(m)) {
            /* legacy "a b": exactly one space; "#version" lines are comments */
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            if (n >= 8 && !memcmp(s, "#version", 8)) continue;
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                rc = sr_fail(err, "model.merges[%zu]: expected \"a b\" with exactly one space", i);
                break;
            }
            a = s, na = (size_t)(sp - s), b = sp + 1, nb = n - na - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            nb = json_string_length(json_array_get(m, 1));
        } else {
            rc = sr_fail(err, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        int32_t ia, ib, inew;
        if (merge_operand(tok, a, na, &ia, i, err) || merge_operand(tok, b, nb, &ib, i, err)) {
            rc = -1;
            break;
        }
        if (na + nb > cat_cap) {
            cat_cap = (na + nb) * 2;
            char *p = sr_realloc(cat, cat_cap);
            if (!p) { rc = sr_fail(err, "model.merges: out of memory"); break; }
            cat = p;
        }
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        if (merge_operand(tok, cat, na + nb, &inew, i, err)) { rc = -1; break; }
        tok_merges_put(&tok->merges, ia, ib, (uint32_t)rank++, inew);
    }
    sr_free(cat);
    return rc;
}

static int parse_model(sr_tokenizer *tok, json_t *model, sr_error *err)
{
    const char *type, *s;
    if (get_str(model, "type", &type, NULL, "model", err)) return -1;
    if (type && strcmp(type, "BPE"))
        return sr_fail(err, "model.type: '%s' is not supported (only BPE)", type);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return sr_fail(err, "model.dropout: only null or 0 is supported");
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "end_of_word_suffix" : "continuing_subword_prefix";
        if (get_str(model, key, &s, NULL, "model", err)) return -1;
        if (s && *s) return sr_fail(err, "model.%s: '%s' is not supported (only \"\")", key, s);
    }
    int byte_fallback = 0;
    if (get_bool(model, "byte_fallback", 0, &byte_fallback, "model", err) ||
        get_bool(model, "fuse_unk", 0, &tok->fuse_unk, "model", err) ||
        get_bool(model, "ignore_merges", 0, &tok->ignore_merges, "model", err))
        return -1;
    if (byte_fallback) return sr_fail(err, "model.byte_fallback: true is not supported");
    if (!json_is_array(json_object_get(model, "merges")))
        return sr_fail(err, "model.merges: missing or not an array");
    return 0;
}

/* ---- vocabulary and added tokens ---------------------------------------------------------- */

static int fill_vocab(sr_tokenizer *tok, json_t *vocab, arena *strings, sr_error *err)
{
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v) {
        char field[320];
        snprintf(field, sizeof field, "model.vocab['%.256s']", key);
        int32_t id = 0;
        if (get_id(v, &id, field, err)) return -1;
        tok_entry *e = &tok->entries[id];
        if (e->flags)
            return sr_fail(err, "%s: id %d is also used by '%.256s'", field, id,
                           tok->strings ? strings->p + e->str_off : "?");
        if (!klen) return sr_fail(err, "model.vocab: empty token string");
        if (arena_add(strings, key, klen, &e->str_off, err)) return -1;
        tok->strings = strings->p;
        e->str_len = (uint32_t)klen;
        e->flags = TOK_IN_VOCAB;
        insert_vocab_slot(tok, id);
    }
    return 0;
}

static int fill_added(sr_tokenizer *tok, json_t *added, arena *strings, sr_error *err)
{
    size_t n = json_array_size(added);
    tok->added = sr_calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added) return sr_fail(err, "added_tokens: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(added, i);
        char field[64];
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        if (!json_is_object(o)) return sr_fail(err, "%s: expected an object", field);
        tok_added *a = &tok->added[i];
        const char *content;
        size_t len;
        int lstrip = 0, rstrip = 0, single_word = 0, special = 0, normalized = 0;
        if (get_str(o, "content", &content, &len, field, err)) return -1;
        if (!content || !len) return sr_fail(err, "%s.content: missing or empty", field);
        char idfield[80];
        snprintf(idfield, sizeof idfield, "%s.id", field);
        if (get_id(json_object_get(o, "id"), &a->id, idfield, err) ||
            get_bool(o, "lstrip", 0, &lstrip, field, err) ||
            get_bool(o, "rstrip", 0, &rstrip, field, err) ||
            get_bool(o, "single_word", 0, &single_word, field, err) ||
            get_bool(o, "special", 0, &special, field, err))
            return -1;
        if (get_bool(o, "normalized", !special, &normalized, field, err)) return -1;
        a->lstrip = (uint8_t)lstrip;
        a->rstrip = (uint8_t)rstrip;
        a->single_word = (uint8_t)single_word;
        a->special = (uint8_t)special;
        a->len = (uint32_t)len;

        int32_t known = tok_vocab_find(tok, content, len);
        tok_entry *e = &tok->entries[a->id];
        if (known >= 0 && known != a->id)
            return sr_fail(err, "%s: '%.256s' has id %d but is token %d already", field, content,
                           a->id, known);
        if (known >= 0 && (e->flags & TOK_ADDED))
            return sr_fail(err, "%s: '%.256s' is listed twice", field, content);
        if (known < 0 && e->flags)
            return sr_fail(err, "%s: id %d of '%.256s' is already used by '%.256s'", field, a->id,
                           content, tok->strings + e->str_off);
        if (known < 0) {
            if (arena_add(strings, content, len, &e->str_off, err)) return -1;
            tok->strings = strings->p;
            e->str_len = (uint32_t)len;
            insert_vocab_slot(tok, a->id);
        }
        a->off = e->str_off;
        e->flags |= TOK_ADDED | (special ? TOK_SPECIAL : 0);
        a->normalized = (uint8_t)normalized;
        tok->n_added++;
        if (single_word && !tok->word_re) {
            int ec;
            PCRE2_SIZE eo;
            pcre2_compile_context *cc = pcre2_compile_context_create(tok->gctx);
            if (!cc) return sr_fail(err, "%s: out of memory", field);
            /* a word character as the reference's single_word check sees it
             * (Rust regex \w: Alphabetic, marks, decimal digits, connector
             * punctuation, ZWNJ/ZWJ), not PCRE2's \w (letters, all numbers
             * and _): they differ on combining marks, circled letters, ½, ² */
            tok->word_re = pcre2_compile(
                (PCRE2_SPTR) "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &eo, cc);
            pcre2_compile_context_free(cc);
            if (!tok->word_re) return sr_fail(err, "%s: out of memory", field);
        }
    }
    return 0;
}

/* Buckets the added tokens of each pass by first byte. */
static int build_sets(sr_tokenizer *tok, sr_error *err)
{
    for (int pass = 0; pass < 2; pass++) {
        tok_added_set *set = &tok->sets[pass];
        set->idx = sr_malloc((tok->n_added ? tok->n_added : 1) * sizeof *set->idx);
        if (!set->idx) return sr_fail(err, "added_tokens: out of memory");
        uint32_t count[257] = {0};
        for (size_t i = 0; i < tok->n_added; i++)
            if (tok->added[i].normalized == pass)
                count[(unsigned char)tok->strings[tok->added[i].off] + 1]++;
        set->only_first = -1;
        for (int b = 0, kinds = 0; b < 256; b++)
            if (count[b + 1] && kinds++ == 0) set->only_first = b;
            else if (count[b + 1]) set->only_first = -1;
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        memcpy(set->start, count, sizeof count);
        for (size_t i = 0; i < tok->n_added; i++)
            if (tok->added[i].normalized == pass)
                set->idx[count[(unsigned char)tok->strings[tok->added[i].off]]++] = (uint32_t)i;
    }
    return 0;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------------- */

/* Unicode White_Space, which is what \s means to the reference's regex engine
 * (Oniguruma).  PCRE2's \s also takes U+180E, which left White_Space in
 * Unicode 6.3. */
static const char white_space_class[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

/* Letter and number property escapes this rewrite widens: \p{L}, \pL, \p{N},
 * \pN (and \P.. outside a class).  *len: how many pattern bytes the escape
 * takes from its backslash; NULL if the text there is none of them. */
static const char *added_ranges(const char *p, size_t left, size_t *len, int *negated)
{
    if (left < 3 || p[0] != '\\' || (p[1] != 'p' && p[1] != 'P')) return NULL;
    char k = 0;
    if (left >= 5 && p[2] == '{' && p[4] == '}') k = p[3], *len = 5;
    else if (p[2] != '{') k = p[2], *len = 3;
    *negated = p[1] == 'P';
    return k == 'L' ? sr_unicode_added_L : k == 'N' ? sr_unicode_added_N : NULL;
}

/* The pattern as the reference's engine (Oniguruma) reads it, for PCRE2:
 * \s and \S spelled out as white_space_class, and \p{L} / \p{N} widened by
 * the letters and numbers of the reference's newer Unicode tables
 * (runtime/tokenizer_unicode.h), each inside a character class (one of its
 * own outside a class).  Returns the pattern unchanged (a copy) when it holds
 * constructs this does not follow: \Q..\E quoting, \S or \P{L} / \P{N}
 * inside a class, [ inside a class. */
static char *spell_out_classes(const char *pat, size_t len, size_t *out_len)
{
    size_t wl = sizeof white_space_class - 1, cap = len + 1, k = 0;
    size_t xl = sizeof sr_unicode_added_L > sizeof sr_unicode_added_N ? sizeof sr_unicode_added_L
                                                                        : sizeof sr_unicode_added_N;
    for (size_t i = 0; i + 1 < len; i++)
        if (pat[i] == '\\') cap += (wl > xl ? wl : xl) + 12, i++;
    char *out = sr_malloc(cap);
    if (!out) return NULL;
    int in_class = 0, plain = 0;
    for (size_t i = 0; i < len && !plain; i++) {
        char c = pat[i];
        size_t el;
        int neg;
        const char *extra = c == '\\' ? added_ranges(pat + i, len - i, &el, &neg) : NULL;
        if (extra) {
            if (in_class && neg) {
                plain = 1;
                break;
            }
            if (!in_class) out[k++] = '[';
            if (!in_class && neg) out[k++] = '^';
            out[k++] = '\\', out[k++] = 'p';
            memcpy(out + k, pat + i + 2, el - 2);
            k += el - 2;
            memcpy(out + k, extra, strlen(extra));
            k += strlen(extra);
            if (!in_class) out[k++] = ']';
            i += el - 1;
            continue;
        }
        if (c == '\\' && i + 1 < len) {
            char e = pat[++i];
            if (e == 'Q' || (e == 'S' && in_class)) plain = 1;
            else if (e == 's' || e == 'S') {
                if (!in_class) out[k++] = '[';
                if (e == 'S') out[k++] = '^';
                memcpy(out + k, white_space_class, wl);
                k += wl;
                if (!in_class) out[k++] = ']';
            } else {
                out[k++] = c;
                out[k++] = e;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            out[k++] = c;
            if (i + 1 < len && pat[i + 1] == '^') out[k++] = pat[++i];
            if (i + 1 < len && pat[i + 1] == ']') out[k++] = pat[++i]; /* a literal ] */
            continue;
        }
        if (in_class && c == '[') plain = 1; /* POSIX [:name:] or nesting: not followed */
        if (in_class && c == ']') in_class = 0;
        out[k++] = c;
    }
    if (plain) {
        memcpy(out, pat, len);
        k = len;
    }
    out[k] = 0;
    *out_len = k;
    return out;
}

static int compile_step_regex(sr_tokenizer *tok, tok_step *st, const char *pat, size_t len,
                              const char *field, sr_error *err)
{
    int ec;
    PCRE2_SIZE eo;
    size_t plen;
    char *spelled = spell_out_classes(pat, len, &plen);
    pcre2_compile_context *cc = spelled ? pcre2_compile_context_create(tok->gctx) : NULL;
    if (!cc) {
        sr_free(spelled);
        return sr_fail(err, "%s: out of memory", field);
    }
    st->re = pcre2_compile((PCRE2_SPTR)spelled, plen, PCRE2_UTF | PCRE2_UCP, &ec, &eo, cc);
    if (!st->re) /* report (or, should the rewrite be at fault, use) the file's own pattern */
        st->re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    sr_free(spelled);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return sr_fail(err, "%s: regex does not compile at offset %zu: %s", field, (size_t)eo,
                       (const char *)msg);
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0; /* else the interpreter */
    st->kind = TOK_SPLIT_REGEX;
    return 0;
}

static int parse_split(sr_tokenizer *tok, tok_step *st, json_t *o, const char *field,
                       sr_error *err)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *beh;
    if (get_str(o, "behavior", &beh, NULL, field, err) ||
        get_bool(o, "invert", 0, &st->invert, field, err))
        return -1;
    if (!beh) return sr_fail(err, "%s.behavior: missing", field);
    st->behavior = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(beh, names[i])) st->behavior = i;
    if (st->behavior < 0) return sr_fail(err, "%s.behavior: '%s' is not a split behavior", field, beh);

    json_t *pat = json_object_get(o, "pattern");
    char pfield[300];
    snprintf(pfield, sizeof pfield, "%s.pattern", field);
    if (!json_is_object(pat)) return sr_fail(err, "%s: expected {\"Regex\": ...} or {\"String\": ...}", pfield);
    const char *re, *lit;
    size_t re_len, lit_len;
    if (get_str(pat, "Regex", &re, &re_len, pfield, err) ||
        get_str(pat, "String", &lit, &lit_len, pfield, err))
        return -1;
    if (re) {
        char rfield[320];
        snprintf(rfield, sizeof rfield, "%s.Regex", pfield);
        return compile_step_regex(tok, st, re, re_len, rfield, err);
    }
    if (!lit) return sr_fail(err, "%s: expected {\"Regex\": ...} or {\"String\": ...}", pfield);
    if (!lit_len) return sr_fail(err, "%s.String: empty", pfield);
    st->literal = sr_malloc(lit_len);
    if (!st->literal) return sr_fail(err, "%s: out of memory", pfield);
    memcpy(st->literal, lit, lit_len);
    st->literal_len = lit_len;
    st->kind = TOK_SPLIT_LITERAL;
    return 0;
}

static int parse_pretok_step(sr_tokenizer *tok, json_t *o, const char *field, int last,
                             sr_error *err)
{
    if (!json_is_object(o)) return sr_fail(err, "%s: expected an object", field);
    const char *type;
    if (get_str(o, "type", &type, NULL, field, err)) return -1;
    if (!type) return sr_fail(err, "%s.type: missing", field);
    if (tok->n_steps == TOK_MAX_STEPS) return sr_fail(err, "%s: more than %d steps", field, TOK_MAX_STEPS);
    tok_step *st = &tok->steps[tok->n_steps];
    memset(st, 0, sizeof *st);
    if (!strcmp(type, "ByteLevel")) {
        int use_regex = 1, trim_offsets = 1;
        if (get_bool(o, "add_prefix_space", 1, &st->prefix_space, field, err) ||
            get_bool(o, "use_regex", 1, &use_regex, field, err) ||
            get_bool(o, "trim_offsets", 1, &trim_offsets, field, err)) /* offsets only */
            return -1;
        if (!last) return sr_fail(err, "%s: ByteLevel must be the last pre-tokenizer step", field);
        st->behavior = TOK_ISOLATED;
        st->kind = TOK_SPLIT_NONE;
        if (use_regex && compile_step_regex(tok, st, gpt2_pattern, sizeof gpt2_pattern - 1, field, err))
            return -1;
    } else if (!strcmp(type, "Split")) {
        if (last)
            return sr_fail(err, "%s: the pre-tokenizer must end with a ByteLevel step (byte-level BPE)",
                           field);
        if (parse_split(tok, st, o, field, err)) return -1;
    } else {
        return sr_fail(err, "%s.type: '%s' is not supported (ByteLevel, Split, Sequence)", field, type);
    }
    tok->n_steps++;
    return 0;
}

static int parse_pretokenizer(sr_tokenizer *tok, json_t *pt, sr_error *err)
{
    if (!pt || json_is_null(pt))
        return sr_fail(err, "pre_tokenizer: null is not supported (byte-level BPE needs ByteLevel)");
    if (!json_is_object(pt)) return sr_fail(err, "pre_tokenizer: expected an object");
    const char *type;
    if (get_str(pt, "type", &type, NULL, "pre_tokenizer", err)) return -1;
    if (type && !strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list) || !json_array_size(list))
            return sr_fail(err, "pre_tokenizer.pretokenizers: missing or not a non-empty array");
        for (size_t i = 0; i < json_array_size(list); i++) {
            char field[64];
            snprintf(field, sizeof field, "pre_tokenizer.pretokenizers[%zu]", i);
            if (parse_pretok_step(tok, json_array_get(list, i), field,
                                  i + 1 == json_array_size(list), err))
                return -1;
        }
        return 0;
    }
    return parse_pretok_step(tok, pt, "pre_tokenizer", 1, err);
}

/* ---- post-processor and decoder -------------------------------------------------------------- */

typedef struct idlist {
    int32_t *v;
    size_t n, cap;
} idlist;

static int idlist_add(idlist *l, int32_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        int32_t *p = sr_realloc(l->v, cap * sizeof *p);
        if (!p) return -1;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return 0;
}

static int parse_template(sr_tokenizer *tok, json_t *o, const char *field, idlist *pre,
                          idlist *post, int *seen_a, sr_error *err)
{
    json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single)) return sr_fail(err, "%s.single: missing or not an array", field);
    if (specials && !json_is_object(specials) && !json_is_null(specials))
        return sr_fail(err, "%s.special_tokens: expected an object", field);
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *item = json_array_get(single, i), *v;
        if ((v = json_object_get(item, "Sequence"))) {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (!id || strcmp(id, "A"))
                return sr_fail(err, "%s.single[%zu].Sequence.id: expected \"A\"", field, i);
            if ((*seen_a)++) return sr_fail(err, "%s.single: more than one $A", field);
            continue;
        }
        if (!(v = json_object_get(item, "SpecialToken")))
            return sr_fail(err, "%s.single[%zu]: expected Sequence or SpecialToken", field, i);
        const char *name = json_string_value(json_object_get(v, "id"));
        if (!name) return sr_fail(err, "%s.single[%zu].SpecialToken.id: expected a string", field, i);
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids))
            return sr_fail(err, "%s.special_tokens['%.200s'].ids: missing or not an array", field, name);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            char f[400];
            snprintf(f, sizeof f, "%s.special_tokens['%.200s'].ids[%zu]", field, name, k);
            int32_t id = 0;
            if (get_id(json_array_get(ids, k), &id, f, err)) return -1;
            if (id >= tok->n_entries || !tok->entries[id].flags)
                return sr_fail(err, "%s: id %d is not in the vocabulary", f, id);
            if (idlist_add(*seen_a ? post : pre, id)) return sr_fail(err, "%s: out of memory", f);
        }
    }
    if (!*seen_a) return sr_fail(err, "%s.single: no $A", field);
    return 0;
}

static int parse_post(sr_tokenizer *tok, json_t *pp, const char *field, idlist *pre, idlist *post,
                      int *seen_a, sr_error *err)
{
    if (!pp || json_is_null(pp)) return 0;
    if (!json_is_object(pp)) return sr_fail(err, "%s: expected an object", field);
    const char *type;
    if (get_str(pp, "type", &type, NULL, field, err)) return -1;
    if (!type) return sr_fail(err, "%s.type: missing", field);
    if (!strcmp(type, "ByteLevel")) return 0; /* only moves offsets */
    if (!strcmp(type, "TemplateProcessing")) {
        if (*seen_a) return sr_fail(err, "%s: only one TemplateProcessing is supported", field);
        return parse_template(tok, pp, field, pre, post, seen_a, err);
    }
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pp, "processors");
        if (!json_is_array(list)) return sr_fail(err, "%s.processors: missing or not an array", field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char f[128];
            snprintf(f, sizeof f, "%.100s.processors[%zu]", field, i);
            if (parse_post(tok, json_array_get(list, i), f, pre, post, seen_a, err)) return -1;
        }
        return 0;
    }
    return sr_fail(err, "%s.type: '%s' is not supported (ByteLevel, TemplateProcessing, Sequence)",
                   field, type);
}

static int parse_post_processor(sr_tokenizer *tok, json_t *pp, sr_error *err)
{
    idlist pre = {0}, post = {0};
    int seen_a = 0;
    int rc = parse_post(tok, pp, "post_processor", &pre, &post, &seen_a, err);
    if (!rc && pre.n + post.n) {
        tok->pp_ids = sr_malloc((pre.n + post.n) * sizeof *tok->pp_ids);
        if (!tok->pp_ids) rc = sr_fail(err, "post_processor: out of memory");
        else {
            if (pre.n) memcpy(tok->pp_ids, pre.v, pre.n * sizeof *pre.v);
            if (post.n) memcpy(tok->pp_ids + pre.n, post.v, post.n * sizeof *post.v);
            tok->pp_prefix = pre.n;
            tok->pp_suffix = post.n;
        }
    }
    sr_free(pre.v);
    sr_free(post.v);
    return rc;
}

static int parse_decoder(sr_tokenizer *tok, json_t *d, sr_error *err)
{
    if (!d || json_is_null(d)) return 0;
    if (!json_is_object(d)) return sr_fail(err, "decoder: expected an object");
    const char *type;
    if (get_str(d, "type", &type, NULL, "decoder", err)) return -1;
    if (!type || strcmp(type, "ByteLevel"))
        return sr_fail(err, "decoder.type: '%s' is not supported (ByteLevel or null)",
                       type ? type : "(missing)");
    tok->decoder_byte_level = 1;
    return 0;
}

/* What the decoder makes of each token: its byte-level characters mapped
 * back to bytes, or the string itself when a character is outside the
 * byte alphabet (as the reference's ByteLevel decoder does). */
static int build_token_bytes(sr_tokenizer *tok, sr_error *err)
{
    arena bytes = {0};
    for (int32_t id = 0; id < tok->n_entries; id++) {
        tok_entry *e = &tok->entries[id];
        if (!e->flags) continue;
        const unsigned char *s = (const unsigned char *)tok->strings + e->str_off;
        /* one byte per character: never longer than the string */
        unsigned char tmp[1024], *big = NULL, *out = tmp;
        size_t k = 0, n = e->str_len;
        if (n > sizeof tmp && tok->decoder_byte_level && !(out = big = sr_malloc(n))) {
            sr_free(bytes.p);
            return sr_fail(err, "out of memory");
        }
        int mapped = tok->decoder_byte_level;
        for (size_t i = 0; i < n && mapped;) {
            uint32_t cp;
            if (s[i] < 0x80) cp = s[i++];
            else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n) cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F), i += 2;
            else { mapped = 0; break; }
            int b = tok_cp_to_byte(cp);
            if (b < 0) mapped = 0;
            else out[k++] = (unsigned char)b;
        }
        if (!mapped) out = (unsigned char *)s, k = n;
        int rc = arena_add(&bytes, out, k, &e->bytes_off, err);
        sr_free(big);
        if (rc) {
            sr_free(bytes.p);
            return -1;
        }
        e->bytes_len = (uint32_t)k;
    }
    tok->bytes = bytes.p;
    return 0;
}

static int collect_specials(sr_tokenizer *tok, sr_error *err)
{
    size_t n = 0;
    for (int32_t id = 0; id < tok->n_entries; id++) n += (tok->entries[id].flags & TOK_SPECIAL) != 0;
    tok->special_ids = sr_malloc((n ? n : 1) * sizeof *tok->special_ids);
    if (!tok->special_ids) return sr_fail(err, "added_tokens: out of memory");
    for (int32_t id = 0; id < tok->n_entries; id++)
        if (tok->entries[id].flags & TOK_SPECIAL) tok->special_ids[tok->n_special++] = id;
    return 0;
}

/* ---- top level ------------------------------------------------------------------------------------ */

static int build(sr_tokenizer *tok, json_t *root, sr_error *err)
{
    if (!json_is_object(root)) return sr_fail(err, "top level: expected an object");
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *type = json_string_value(json_object_get(norm, "type"));
        return sr_fail(err, "normalizer.type: '%s' is not supported (only null)",
                       type ? type : "(missing)");
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return sr_fail(err, "model: missing or not an object");
    if (parse_model(tok, model, err)) return -1;
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return sr_fail(err, "model.vocab: missing or not an object");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return sr_fail(err, "added_tokens: expected an array");

    /* size the id space first */
    int32_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (json_is_integer(v) && json_integer_value(v) > max_id && json_integer_value(v) < TOK_MAX_ID)
            max_id = (int32_t)json_integer_value(v);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *id = json_object_get(json_array_get(added, i), "id");
        if (json_is_integer(id) && json_integer_value(id) > max_id && json_integer_value(id) < TOK_MAX_ID)
            max_id = (int32_t)json_integer_value(id);
    }
    tok->n_entries = max_id + 1;
    size_t ntok = json_object_size(vocab) + json_array_size(added), cap = 16;
    while (cap < 2 * ntok) cap *= 2;
    tok->entries = sr_calloc((size_t)tok->n_entries + 1, sizeof *tok->entries);
    tok->vocab_slots = sr_malloc(cap * sizeof *tok->vocab_slots);
    if (!tok->entries || !tok->vocab_slots) return sr_fail(err, "model.vocab: out of memory");
    memset(tok->vocab_slots, 0xFF, cap * sizeof *tok->vocab_slots);
    tok->vocab_mask = cap - 1;

    arena strings = {0};
    int rc = fill_vocab(tok, vocab, &strings, err);
    if (!rc) rc = fill_added(tok, added, &strings, err);
    tok->strings = strings.p;
    if (rc) return -1;
    if (!tok->strings) return sr_fail(err, "model.vocab: empty");

    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((unsigned char)b);
        char sp[2];
        size_t n = 1;
        if (cp < 0x80) sp[0] = (char)cp;
        else sp[0] = (char)(0xC0 | (cp >> 6)), sp[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
        int32_t id = tok_vocab_find(tok, sp, n);
        tok->byte_id[b] = id >= 0 && (tok->entries[id].flags & TOK_IN_VOCAB) ? id : -1;
    }
    const char *unk;
    if (get_str(model, "unk_token", &unk, NULL, "model", err)) return -1;
    tok->unk_id = -1;
    if (unk) {
        tok->unk_id = tok_vocab_find(tok, unk, strlen(unk));
        if (tok->unk_id < 0 || !(tok->entries[tok->unk_id].flags & TOK_IN_VOCAB))
            return sr_fail(err, "model.unk_token: '%.200s' is not in model.vocab", unk);
    }
    if (parse_merges(tok, json_object_get(model, "merges"), err) || build_sets(tok, err) ||
        parse_pretokenizer(tok, json_object_get(root, "pre_tokenizer"), err) ||
        parse_post_processor(tok, json_object_get(root, "post_processor"), err) ||
        parse_decoder(tok, json_object_get(root, "decoder"), err) || build_token_bytes(tok, err) ||
        collect_specials(tok, err))
        return -1;
    return 0;
}

int sr_tokenizer_load_json(const char *json, size_t len, const char *name, sr_tokenizer **out,
                           sr_error *err)
{
    *out = NULL;
    if (!name) name = "(memory)";
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root)
        return sr_fail(err, "file %s: invalid JSON at line %d, column %d: %s", name, je.line,
                       je.column, je.text);
    sr_tokenizer *tok = sr_calloc(1, sizeof *tok);
    if (!tok) {
        json_decref(root);
        return sr_fail(err, "file %s: out of memory", name);
    }
    tok_cache_init(tok);
    tok->name = sr_strdup(name);
    tok->gctx = pcre2_general_context_create(pcre_alloc, pcre_release, NULL);
    int rc = (!tok->name || !tok->gctx) ? sr_fail(err, "out of memory") : build(tok, root, err);
    json_decref(root);
    if (rc) {
        sr_fail_prefix(err, "file %s", name);
        sr_tokenizer_free(tok);
        return -1;
    }
    *out = tok;
    return 0;
}

int sr_tokenizer_load(const char *path, sr_tokenizer **out, sr_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sr_fail(err, "file %s: cannot open: %s", path, strerror(errno));
    char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = sr_realloc(data, cap);
            if (!p) {
                sr_free(data);
                fclose(f);
                return sr_fail(err, "file %s: out of memory", path);
            }
            data = p;
        }
        size_t r = fread(data + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sr_free(data);
        return sr_fail(err, "file %s: read error", path);
    }
    int rc = sr_tokenizer_load_json(data, n, path, out, err);
    sr_free(data);
    return rc;
}

void sr_tokenizer_free(sr_tokenizer *tok)
{
    if (!tok) return;
    for (int i = 0; i < TOK_MAX_STEPS; i++) {
        pcre2_code_free(tok->steps[i].re);
        sr_free(tok->steps[i].literal);
    }
    pcre2_code_free(tok->word_re);
    pcre2_general_context_free(tok->gctx);
    tok_cache_free(tok);
    sr_free(tok->name);
    sr_free(tok->entries);
    sr_free(tok->strings);
    sr_free(tok->bytes);
    sr_free(tok->vocab_slots);
    sr_free(tok->merges.keys);
    sr_free(tok->merges.vals);
    sr_free(tok->added);
    sr_free(tok->sets[0].idx);
    sr_free(tok->sets[1].idx);
    sr_free(tok->pp_ids);
    sr_free(tok->special_ids);
    sr_free(tok);
}
