/* Pre-tokenizer pipeline: each step optionally prepends a space, then splits
 * its piece with a regex (PCRE2, JIT) or a literal, and hands the resulting
 * pieces to the next step; the last step's pieces go to BPE.  Pieces are
 * streamed depth-first, so no list of a long text's pieces is ever built.
 *
 * The split behaviours follow HF tokenizers' SplitDelimiterBehavior: the
 * piece is cut into alternating (match / gap) segments, `invert` swaps the
 * roles, and the behaviour decides which segments are kept and how
 * delimiters attach to their neighbours. */
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer_internal.h"

/* ---- GPT-2 byte <-> unicode map ----------------------------------------- */

/* Printable Latin-1 bytes map to themselves; the 68 others, in byte order,
 * to U+0100.. */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(unsigned char b)
{
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++) k += !byte_is_printable(i);
    return 0x100 + k;
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t k = cp - 0x100;
    for (unsigned b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0) return (int)b;
    return -1;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length of the well-formed sequence at s (1..4), or 0 if ill-formed
 * (Unicode Table 3-7). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) need = 3, lo = 0xA0;
    else if (c == 0xED) need = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) need = 3;
    else if (c == 0xF0) need = 4, lo = 0x90;
    else if (c == 0xF4) need = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else return 0;
    if (n < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

size_t tok_utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_seq_len(s + i, n - i);
        if (!k) break;
        i += k;
    }
    return i;
}

size_t tok_utf8_invalid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) need = 3, lo = 0xA0;
    else if (c == 0xED) need = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) need = 3;
    else if (c == 0xF0) need = 4, lo = 0x90;
    else if (c == 0xF4) need = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else return 1;
    /* the lead byte plus the continuation bytes that were still acceptable */
    size_t i = 1;
    if (i < n && i < need && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < n && i < need && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    }
    return i;
}

/* ---- split behaviours (streaming fold) ----------------------------------- */

typedef struct fold {
    tok_work *w;
    int level;
    int behavior;
    const char *pend; /* pending piece */
    size_t pend_n;
    int has_pend, pend_match, prev_match;
} fold;

static void fold_emit(fold *f, const char *s, size_t n)
{
    if (n) tok_pretokenize(f->w, f->level + 1, s, n);
}

static void fold_flush(fold *f)
{
    if (f->has_pend) fold_emit(f, f->pend, f->pend_n);
    f->has_pend = 0;
}

static void fold_set_pending(fold *f, const char *s, size_t n, int match)
{
    f->pend = s;
    f->pend_n = n;
    f->pend_match = match;
    f->has_pend = 1;
}

/* One segment s[0..n) of the piece, in order; `delim` is true when it is a
 * delimiter (a regex match, or a gap when inverted). */
static void fold_feed(fold *f, const char *s, size_t n, int delim)
{
    switch (f->behavior) {
    case TOK_REMOVED:
        if (!delim) fold_emit(f, s, n);
        break;
    case TOK_ISOLATED:
        fold_emit(f, s, n);
        break;
    case TOK_CONTIGUOUS:
        if (f->has_pend && delim == f->prev_match) f->pend_n = (size_t)(s + n - f->pend);
        else { fold_flush(f); fold_set_pending(f, s, n, delim); }
        break;
    case TOK_MERGED_WITH_PREVIOUS:
        if (delim && !f->prev_match && f->has_pend) f->pend_n = (size_t)(s + n - f->pend);
        else { fold_flush(f); fold_set_pending(f, s, n, delim); }
        break;
    case TOK_MERGED_WITH_NEXT:
        /* a delimiter glues to the following gap; consecutive delimiters
         * stay apart except for the last one */
        if (f->has_pend && f->pend_match && !delim) {
            fold_emit(f, f->pend, (size_t)(s + n - f->pend));
            f->has_pend = 0;
        } else {
            fold_flush(f);
            if (delim) fold_set_pending(f, s, n, 1);
            else fold_emit(f, s, n);
        }
        break;
    }
    f->prev_match = delim;
}

static void fold_start(fold *f, tok_work *w, int level, int behavior)
{
    memset(f, 0, sizeof *f);
    f->w = w;
    f->level = level;
    f->behavior = behavior;
}

/* ---- matching -------------------------------------------------------------- */

int tok_work_regex_setup(tok_work *w)
{
    if (w->md) return 0;
    const sr_tokenizer *tok = w->tok;
    w->md = pcre2_match_data_create(4, tok->gctx);
    w->mctx = pcre2_match_context_create(tok->gctx);
    if (!w->md || !w->mctx) return sr_fail(w->err, "tokenizer %s: out of memory", tok->name);
    return 0;
}

/* One regex match from `pos`; on a JIT stack overflow (the default is 32 KiB
 * on the machine stack) retries once with a private 8 MiB stack. */
static int regex_match(tok_work *w, const tok_step *st, const char *s, size_t n, size_t pos)
{
    for (;;) {
        int rc = st->jit ? pcre2_jit_match(st->re, (PCRE2_SPTR)s, n, pos, 0, w->md, w->mctx)
                         : pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, w->md,
                                       w->mctx);
        if (rc != PCRE2_ERROR_JIT_STACKLIMIT || w->jit) return rc;
        w->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, w->tok->gctx);
        if (!w->jit) return rc;
        pcre2_jit_stack_assign(w->mctx, NULL, w->jit);
    }
}

/* Regex split of a well-formed UTF-8 run. */
static void split_regex_run(fold *f, const tok_step *st, const char *s, size_t n)
{
    tok_work *w = f->w;
    PCRE2_SIZE pos = 0, last = 0, prev_end = PCRE2_UNSET;
    while (pos <= n && !w->failed) {
        int rc = regex_match(w, st, s, n, pos);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            sr_fail(w->err, "tokenizer %s: pre-tokenizer step %d: regex match failed: %s",
                    w->tok->name, f->level, (const char *)msg);
            w->failed = 1;
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        PCRE2_SIZE ms = ov[0], me = ov[1];
        /* the reference's regex engine (Rust regex find_iter) never yields
         * an empty match where the previous match ended: `a*` on "ab" finds
         * "a" and the empty match at 2, not the one at 1 */
        if (!(me == ms && ms == prev_end)) {
            if (ms > last) fold_feed(f, s + last, ms - last, st->invert);
            fold_feed(f, s + ms, me - ms, !st->invert);
            last = prev_end = me;
        }
        if (me > ms) pos = me;
        else if (me >= n) break;
        else { /* empty match: step over one character */
            pos = me + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
        }
    }
    if (last < n && !w->failed) fold_feed(f, s + last, n - last, st->invert);
}

static void split_literal(fold *f, const tok_step *st, const char *s, size_t n)
{
    size_t last = 0;
    while (last <= n) {
        const char *hit = memmem(s + last, n - last, st->literal, st->literal_len);
        if (!hit) break;
        size_t ms = (size_t)(hit - s);
        if (ms > last) fold_feed(f, s + last, ms - last, st->invert);
        fold_feed(f, hit, st->literal_len, !st->invert);
        last = ms + st->literal_len;
    }
    if (last < n) fold_feed(f, s + last, n - last, st->invert);
}

/* ---- the pipeline ---------------------------------------------------------- */

void tok_pretokenize(tok_work *w, int level, const char *s, size_t n)
{
    const sr_tokenizer *tok = w->tok;
    if (w->failed || n == 0) return;
    if (level == tok->n_steps) {
        tok_bpe(w, (const unsigned char *)s, n);
        return;
    }
    const tok_step *st = &tok->steps[level];
    if (st->prefix_space && s[0] != ' ') {
        if (w->prefix_cap[level] < n + 1) {
            size_t cap = (n + 1) * 2;
            char *b = sr_realloc(w->prefix_buf[level], cap);
            if (!b) {
                sr_fail(w->err, "tokenizer %s: out of memory", tok->name);
                w->failed = 1;
                return;
            }
            w->prefix_buf[level] = b;
            w->prefix_cap[level] = cap;
        }
        w->prefix_buf[level][0] = ' ';
        memcpy(w->prefix_buf[level] + 1, s, n);
        s = w->prefix_buf[level];
        n++;
    }
    if (st->kind == TOK_SPLIT_NONE) {
        tok_pretokenize(w, level + 1, s, n);
        return;
    }
    fold f;
    fold_start(&f, w, level, st->behavior);
    if (st->kind == TOK_SPLIT_LITERAL) {
        split_literal(&f, st, s, n);
        fold_flush(&f);
        return;
    }
    if (tok_work_regex_setup(w)) {
        w->failed = 1;
        return;
    }
    /* The regex sees well-formed UTF-8 only; each run of ill-formed bytes
     * is a piece of its own (the reference never receives such input). */
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !w->failed) {
        size_t v = tok_utf8_valid_prefix(u + i, n - i);
        if (v) {
            split_regex_run(&f, st, s + i, v);
            i += v;
            continue;
        }
        size_t j = i;
        while (j < n && !utf8_seq_len(u + j, n - j)) j += tok_utf8_invalid_len(u + j, n - j);
        fold_flush(&f);
        fold_start(&f, w, level, st->behavior);
        tok_pretokenize(w, level + 1, s + i, j - i);
        i = j;
    }
    fold_flush(&f);
}
