/* Internals shared by the tokenizer's files (not part of the public API):
 *   tokenizer_load.c     tokenizer.json -> sr_tokenizer
 *   tokenizer.c          encode (added tokens, post-processor), decode, queries
 *   tokenizer_pretok.c   pre-tokenizer pipeline (Split / ByteLevel regex steps)
 *   tokenizer_bpe.c      BPE merge loop and the shared per-pre-token cache */
#ifndef SR_TOKENIZER_INTERNAL_H
#define SR_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>

#include "runtime/tokenizer.h"

/* tok_entry.flags */
enum {
    TOK_IN_VOCAB = 1, /* in model.vocab (usable by BPE and merges) */
    TOK_ADDED = 2,    /* in added_tokens */
    TOK_SPECIAL = 4,  /* added token with "special": true */
};

typedef struct tok_entry {
    uint32_t str_off, str_len;     /* token string in tok->strings */
    uint32_t bytes_off, bytes_len; /* what the decoder turns it into, in tok->bytes */
    uint8_t flags;                 /* 0: no token has this id */
} tok_entry;

typedef struct tok_added {
    int32_t id;
    uint32_t off, len; /* content in tok->strings */
    uint8_t lstrip, rstrip, single_word, special;
    uint8_t normalized; /* matched in the second pass, after the (null) normalizer */
} tok_added;

/* Added tokens of one matching pass, bucketed by first byte:
 * idx[start[b] .. start[b+1]) are the indices into tok->added. */
typedef struct tok_added_set {
    uint32_t *idx;
    uint32_t start[257];
    int only_first; /* the one byte every token starts with (memchr), or -1 */
} tok_added_set;

enum tok_split_kind { TOK_SPLIT_NONE, TOK_SPLIT_REGEX, TOK_SPLIT_LITERAL };
enum tok_behavior {
    TOK_REMOVED,
    TOK_ISOLATED,
    TOK_MERGED_WITH_PREVIOUS,
    TOK_MERGED_WITH_NEXT,
    TOK_CONTIGUOUS,
};

/* One pre-tokenizer step: optional prefix space, then a split. */
typedef struct tok_step {
    int kind;     /* tok_split_kind */
    pcre2_code *re;
    int jit; /* re was JIT-compiled: pcre2_jit_match() may be used */
    char *literal;
    size_t literal_len;
    int behavior; /* tok_behavior */
    int invert;
    int prefix_space;
} tok_step;

#define TOK_MAX_STEPS 8

/* pair (a, b) -> (rank, new id), open addressing on 64-bit keys. */
typedef struct tok_merges {
    uint64_t *keys; /* (a << 32 | b), UINT64_MAX = empty */
    uint64_t *vals; /* (rank << 32 | new id) */
    size_t mask;
} tok_merges;

#define TOK_CACHE_SHARDS 16
typedef struct tok_cache_shard {
    pthread_mutex_t lock;
    struct tok_cache_slot *slots; /* NULL until first use */
    unsigned char *arena;
    uint32_t used_slots, arena_used;
} tok_cache_shard;

struct sr_tokenizer {
    char *name; /* file name, for messages */
    tok_entry *entries;
    int32_t n_entries; /* max id + 1 */
    char *strings;
    char *bytes;
    int32_t *vocab_slots; /* string -> id hash (any token), -1 empty */
    size_t vocab_mask;
    int32_t byte_id[256]; /* id of the single-byte token, -1 if absent */
    tok_merges merges;
    int32_t unk_id; /* -1: missing bytes are dropped */
    int fuse_unk, ignore_merges;

    tok_added *added;
    size_t n_added;
    tok_added_set sets[2]; /* [0]: normalized=false, [1]: normalized=true */
    pcre2_code *word_re;   /* \w, only when a token is single_word */

    tok_step steps[TOK_MAX_STEPS];
    int n_steps;

    int decoder_byte_level; /* else tokens are joined with spaces */
    int32_t *pp_ids;        /* post-processor: prefix ids then suffix ids */
    size_t pp_prefix, pp_suffix;
    int32_t *special_ids;
    size_t n_special;

    pcre2_general_context *gctx;
    tok_cache_shard cache[TOK_CACHE_SHARDS];
};

/* Per-call state of one sr_tokenize(): output, scratch, regex match data. */
typedef struct tok_work {
    const sr_tokenizer *tok;
    sr_error *err;
    int failed;
    unsigned flags;
    int32_t *ids;
    size_t n, cap;
    /* BPE scratch, grown on demand */
    struct tok_sym *syms;
    struct tok_heap_item *heap;
    size_t syms_cap, heap_cap;
    char *scratch;
    size_t scratch_cap;
    /* per pipeline level: the piece with its prefix space */
    char *prefix_buf[TOK_MAX_STEPS];
    size_t prefix_cap[TOK_MAX_STEPS];
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} tok_work;

/* tokenizer_bpe.c */
uint64_t tok_hash(const void *p, size_t n);
int32_t tok_vocab_find(const sr_tokenizer *tok, const char *s, size_t n);
int tok_merges_put(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
int tok_merges_get(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);
void tok_cache_init(sr_tokenizer *tok);
void tok_cache_free(sr_tokenizer *tok);
/* Encodes one pre-token (raw bytes) and appends its ids to w. */
void tok_bpe(tok_work *w, const unsigned char *s, size_t n);
int tok_work_push(tok_work *w, const int32_t *ids, size_t n);

/* tokenizer_pretok.c */
void tok_pretokenize(tok_work *w, int level, const char *s, size_t n);
/* Creates w's regex match data on first use; 0 or -1. */
int tok_work_regex_setup(tok_work *w);
/* Length of the valid UTF-8 prefix of s[0..n). */
size_t tok_utf8_valid_prefix(const unsigned char *s, size_t n);
/* Length of the ill-formed sequence at s (Unicode "maximal subpart"), >= 1. */
size_t tok_utf8_invalid_len(const unsigned char *s, size_t n);

/* GPT-2 byte <-> unicode code point map. */
uint32_t tok_byte_to_cp(unsigned char b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the byte alphabet */

#endif
