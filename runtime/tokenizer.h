/* Hugging Face `tokenizer.json` byte-level BPE tokenizer (GPT-2, Granite 3,
 * Granite 4 / cl100k layouts).
 *
 * What a file may contain (anything else is refused with an error naming the
 * field):
 *   normalizer      null
 *   pre_tokenizer   ByteLevel (add_prefix_space, use_regex, trim_offsets), or
 *                   Split (Regex or String pattern; behavior Removed |
 *                   Isolated | MergedWithPrevious | MergedWithNext |
 *                   Contiguous; invert) steps followed by a final ByteLevel,
 *                   as a Sequence.  Regexes run on PCRE2 (UTF, UCP, JIT),
 *                   with \s and \S meaning Unicode White_Space as in the
 *                   reference's Oniguruma (PCRE2 alone also counts U+180E)
 *   model           BPE: vocab, merges as "a b" strings or [a, b] arrays,
 *                   unk_token / fuse_unk, ignore_merges
 *   added_tokens    matched on the raw text before pre-tokenization
 *                   (leftmost-longest; lstrip, rstrip, single_word, special,
 *                   normalized)
 *   post_processor  null, ByteLevel, TemplateProcessing (single), Sequence
 *   decoder         null or ByteLevel
 *
 * Ids are int32_t.  Text is UTF-8 with an explicit length (it may contain NUL).
 * Ill-formed UTF-8 in the input is not rejected: each maximal run of invalid
 * bytes becomes a pre-token of its own (the regex never sees it) and goes
 * through BPE as raw bytes, so the concatenated sr_tokenizer_token_bytes() of
 * the ids give back the input exactly when the vocabulary holds all 256
 * bytes (bytes it lacks are dropped, as the reference drops them).
 * sr_detokenize() itself, like the reference, replaces ill-formed sequences
 * with U+FFFD.
 *
 * Thread safety: a loaded tokenizer is read-only except for its BPE cache,
 * which is shared by all callers and protected by striped mutexes, so any
 * number of threads may encode and decode with one tokenizer at once. */
#ifndef SR_TOKENIZER_H
#define SR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

typedef struct sr_tokenizer sr_tokenizer;

/* Loads a tokenizer.json file.  On failure *out is NULL and err names the
 * file and the offending field. */
int sr_tokenizer_load(const char *path, sr_tokenizer **out, sr_error *err);

/* Same from a JSON text in memory; `name` only labels error messages. */
int sr_tokenizer_load_json(const char *json, size_t len, const char *name, sr_tokenizer **out,
                           sr_error *err);

void sr_tokenizer_free(sr_tokenizer *tok);

/* Flags of sr_tokenize().  Passing 0 gives the reference's default
 * `encode(text, add_special_tokens=False)`. */
enum {
    /* Apply the post-processor (BOS/EOS of a TemplateProcessing). */
    SR_TOKENIZE_ADD_SPECIAL = 1,
    /* Treat special added tokens written in the text as ordinary text
     * (non-special added tokens are still matched). */
    SR_TOKENIZE_SPECIAL_AS_TEXT = 2,
};

/* Encodes text[0..len).  On success *ids is a new array of *n ids (grown as
 * needed; the caller frees it with sr_free; it may be NULL when *n is 0).
 * `flags` is a combination of SR_TOKENIZE_* (so a plain bool add_special
 * works too). */
int sr_tokenize(const sr_tokenizer *tok, const char *text, size_t len, unsigned flags,
                int32_t **ids, size_t *n, sr_error *err);

/* Decodes ids to UTF-8 text (NUL-terminated, *len bytes without the NUL;
 * caller frees with sr_free).  Ids outside the vocabulary are skipped, as
 * are special tokens when skip_special is non-zero. */
/* s[0..n) as valid UTF-8: one U+FFFD per maximal ill-formed subsequence, as
 * Rust's String::from_utf8_lossy (what sr_detokenize applies).  A new
 * NUL-terminated string (sr_free) of *len bytes (len may be NULL); NULL when
 * out of memory. */
char *sr_utf8_lossy(const char *s, size_t n, size_t *len);

int sr_detokenize(const sr_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                  char **text, size_t *len, sr_error *err);

/* Id of a token string (added token or vocabulary entry, in the file's
 * byte-level spelling, e.g. "Ġworld"), or -1. */
int32_t sr_tokenizer_token_to_id(const sr_tokenizer *tok, const char *token);

/* Token string of an id (as in the file; valid until sr_tokenizer_free), or
 * NULL for an id that is not in the vocabulary. */
const char *sr_tokenizer_id_to_token(const sr_tokenizer *tok, int32_t id);

/* Raw bytes the id decodes to before UTF-8 repair (for streaming decoders
 * that must hold back incomplete characters), or NULL. */
const char *sr_tokenizer_token_bytes(const sr_tokenizer *tok, int32_t id, size_t *len);

/* One past the largest id (vocabulary and added tokens): the number of
 * embedding rows the tokenizer addresses. */
int32_t sr_tokenizer_vocab_size(const sr_tokenizer *tok);

/* 1 if id is an added token marked "special": true, else 0. */
int sr_tokenizer_is_special(const sr_tokenizer *tok, int32_t id);

/* The ids of all special added tokens, ascending; returns their count. */
size_t sr_tokenizer_special_ids(const sr_tokenizer *tok, const int32_t **ids);

#endif
