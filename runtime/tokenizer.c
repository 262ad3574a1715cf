/* Encoding and decoding with a loaded tokenizer (see tokenizer.h).
 *
 * Encoding follows the reference's order: added tokens are cut out of the
 * raw text first (non-normalized ones, then normalized ones in what is
 * left), every remaining span goes through the pre-tokenizer pipeline
 * (tokenizer_pretok.c) and each pre-token through BPE (tokenizer_bpe.c);
 * the post-processor's ids frame the result when asked for. */
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer_internal.h"

/* ---- added tokens --------------------------------------------------------------- */

static uint32_t decode_cp(const unsigned char *s, size_t n, size_t *len)
{
    if (s[0] < 0x80 || n < 2) return *len = 1, s[0];
    if ((s[0] & 0xE0) == 0xC0) return *len = 2, (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    if ((s[0] & 0xF0) == 0xE0 && n >= 3)
        return *len = 3, (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    if ((s[0] & 0xF8) == 0xF0 && n >= 4)
        return *len = 4, (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
                         (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return *len = 1, s[0];
}

/* Start of the character that ends at s[n] (exclusive). */
static size_t last_char_start(const unsigned char *s, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && n - i < 4 && (s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Unicode White_Space (what the reference's \s means for lstrip/rstrip). */
static int is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Byte length of the well-formed white-space character s[0..len), or 0. */
static size_t white_space_len(const unsigned char *s, size_t len)
{
    size_t l;
    if (!len || tok_utf8_valid_prefix(s, len) < len) return 0;
    uint32_t c = decode_cp(s, len, &l);
    return l == len && is_white_space(c) ? len : 0;
}

/* Length of the white space that ends at s[n] (exclusive), not before s[lo]. */
static size_t white_space_before(const unsigned char *s, size_t lo, size_t n)
{
    size_t end = n;
    while (end > lo) {
        size_t got = 0;
        for (size_t l = 1; l <= 3 && l <= end - lo && !got; l++) got = white_space_len(s + end - l, l);
        if (!got) break;
        end -= got;
    }
    return n - end;
}

/* Length of the white space that starts at s[0], within s[0..n). */
static size_t white_space_after(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t got = 0;
        for (size_t l = 1; l <= 3 && l <= n - i && !got; l++) got = white_space_len(s + i, l);
        if (!got) break;
        i += got;
    }
    return i;
}

static int is_word_char(tok_work *w, const unsigned char *s, size_t n)
{
    if (tok_work_regex_setup(w)) return 0;
    return pcre2_match(w->tok->word_re, s, n, 0, 0, w->md, w->mctx) >= 0;
}

static void encode_pass(tok_work *w, int pass, const char *s, size_t n);

static void encode_span(tok_work *w, int pass, const char *s, size_t n)
{
    if (!n || w->failed) return;
    if (pass == 0) encode_pass(w, 1, s, n);
    else tok_pretokenize(w, 0, s, n);
}

/* Cuts the added tokens of pass `pass` out of s, leftmost-longest. */
static void encode_pass(tok_work *w, int pass, const char *s, size_t n)
{
    const sr_tokenizer *tok = w->tok;
    const tok_added_set *set = &tok->sets[pass];
    const unsigned char *u = (const unsigned char *)s;
    if (!set->start[256]) {
        encode_span(w, pass, s, n);
        return;
    }
    size_t done = 0, i = 0;
    while (i < n && !w->failed) {
        /* skip to the next byte that can start an added token */
        if (set->only_first >= 0) {
            const char *p = memchr(s + i, set->only_first, n - i);
            if (!p) break;
            i = (size_t)(p - s);
        } else {
            while (i < n && set->start[u[i]] == set->start[u[i] + 1]) i++;
            if (i == n) break;
        }
        uint32_t a = set->start[u[i]], b = set->start[u[i] + 1];
        const tok_added *best = NULL;
        for (uint32_t j = a; j < b; j++) {
            const tok_added *t = &tok->added[set->idx[j]];
            if (t->len <= n - i && (!best || t->len > best->len) &&
                !memcmp(tok->strings + t->off, s + i, t->len))
                best = t;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, stop = i + best->len;
        i = stop; /* matches do not overlap */
        if (start < done) continue;
        if ((w->flags & SR_TOKENIZE_SPECIAL_AS_TEXT) && best->special) continue;
        if (best->single_word) {
            size_t len;
            if (start > 0) {
                size_t k = last_char_start(u, start);
                if (is_word_char(w, u + k, start - k)) continue;
            }
            if (stop < n) {
                decode_cp(u + stop, n - stop, &len);
                if (is_word_char(w, u + stop, len)) continue;
            }
        }
        if (best->lstrip) start -= white_space_before(u, done, start);
        if (best->rstrip) stop += white_space_after(u + stop, n - stop);
        encode_span(w, pass, s + done, start - done);
        tok_work_push(w, &best->id, 1);
        done = stop;
    }
    if (done < n) encode_span(w, pass, s + done, n - done);
}

int sr_tokenize(const sr_tokenizer *tok, const char *text, size_t len, unsigned flags,
                int32_t **ids, size_t *n, sr_error *err)
{
    *ids = NULL;
    *n = 0;
    if (!tok) return sr_fail(err, "tokenize: no tokenizer");
    if (!text && len) return sr_fail(err, "tokenizer %s: NULL text", tok->name);
    tok_work w = {.tok = tok, .err = err, .flags = flags};
    int add_special = (flags & SR_TOKENIZE_ADD_SPECIAL) != 0;
    if (add_special && tok->pp_prefix) tok_work_push(&w, tok->pp_ids, tok->pp_prefix);
    if (len) encode_pass(&w, 0, text, len);
    if (add_special && tok->pp_suffix && !w.failed)
        tok_work_push(&w, tok->pp_ids + tok->pp_prefix, tok->pp_suffix);

    sr_free(w.syms);
    sr_free(w.heap);
    sr_free(w.scratch);
    for (int i = 0; i < TOK_MAX_STEPS; i++) sr_free(w.prefix_buf[i]);
    pcre2_match_data_free(w.md);
    pcre2_match_context_free(w.mctx);
    pcre2_jit_stack_free(w.jit);
    if (w.failed) {
        sr_free(w.ids);
        return -1;
    }
    *ids = w.ids;
    *n = w.n;
    return 0;
}

/* ---- decoding -------------------------------------------------------------------- */

static int id_kept(const sr_tokenizer *tok, int32_t id, int skip_special)
{
    return id >= 0 && id < tok->n_entries && tok->entries[id].flags &&
           !(skip_special && (tok->entries[id].flags & TOK_SPECIAL));
}

int sr_detokenize(const sr_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                  char **text, size_t *len, sr_error *err)
{
    *text = NULL;
    if (len) *len = 0;
    if (!tok) return sr_fail(err, "detokenize: no tokenizer");
    if (!ids && n) return sr_fail(err, "tokenizer %s: NULL ids", tok->name);
    int joined = !tok->decoder_byte_level; /* no decoder: tokens joined by spaces */
    size_t raw_n = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_kept(tok, ids[i], skip_special)) continue;
        const tok_entry *e = &tok->entries[ids[i]];
        raw_n += joined ? e->str_len + (kept > 0) : e->bytes_len;
        kept++;
    }
    char *raw = sr_malloc(raw_n + 1);
    if (!raw) return sr_fail(err, "tokenizer %s: out of memory decoding %zu ids", tok->name, n);
    size_t k = 0;
    for (size_t i = 0, m = 0; i < n; i++) {
        if (!id_kept(tok, ids[i], skip_special)) continue;
        const tok_entry *e = &tok->entries[ids[i]];
        if (joined) {
            if (m++) raw[k++] = ' ';
            memcpy(raw + k, tok->strings + e->str_off, e->str_len);
            k += e->str_len;
        } else {
            memcpy(raw + k, tok->bytes + e->bytes_off, e->bytes_len);
            k += e->bytes_len;
        }
    }
    raw[k] = 0;
    if (tok_utf8_valid_prefix((const unsigned char *)raw, k) == k) {
        *text = raw;
        if (len) *len = k;
        return 0;
    }
    size_t o;
    char *out = sr_utf8_lossy(raw, k, &o);
    sr_free(raw);
    if (!out) return sr_fail(err, "tokenizer %s: out of memory decoding %zu ids", tok->name, n);
    *text = out;
    if (len) *len = o;
    return 0;
}

char *sr_utf8_lossy(const char *s, size_t n, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = sr_malloc(3 * n + 1);   /* U+FFFD takes 3 bytes */
    if (!out) return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t v = tok_utf8_valid_prefix(u + i, n - i);
        memcpy(out + o, u + i, v);
        o += v;
        i += v;
        if (i < n) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += tok_utf8_invalid_len(u + i, n - i);
        }
    }
    out[o] = 0;
    if (len) *len = o;
    return out;
}

/* ---- queries ------------------------------------------------------------------------ */

int32_t sr_tokenizer_token_to_id(const sr_tokenizer *tok, const char *token)
{
    if (!tok || !token) return -1;
    return tok_vocab_find(tok, token, strlen(token));
}

const char *sr_tokenizer_id_to_token(const sr_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->n_entries || !tok->entries[id].flags) return NULL;
    return tok->strings + tok->entries[id].str_off;
}

const char *sr_tokenizer_token_bytes(const sr_tokenizer *tok, int32_t id, size_t *len)
{
    if (!tok || id < 0 || id >= tok->n_entries || !tok->entries[id].flags) return NULL;
    if (len) *len = tok->entries[id].bytes_len;
    return tok->bytes + tok->entries[id].bytes_off;
}

int32_t sr_tokenizer_vocab_size(const sr_tokenizer *tok) { return tok ? tok->n_entries : 0; }

int sr_tokenizer_is_special(const sr_tokenizer *tok, int32_t id)
{
    return tok && id >= 0 && id < tok->n_entries && (tok->entries[id].flags & TOK_SPECIAL) != 0;
}

size_t sr_tokenizer_special_ids(const sr_tokenizer *tok, const int32_t **ids)
{
    if (!tok) {
        if (ids) *ids = NULL;
        return 0;
    }
    if (ids) *ids = tok->special_ids;
    return tok->n_special;
}
