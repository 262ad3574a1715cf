/* BPE on one pre-token: its bytes start as single-byte symbols, then the
 * lowest-ranked adjacent pair (leftmost on ties) is merged until none is
 * left, with a doubly linked symbol list and a binary heap of candidate
 * pairs (O(n log n)).  Results are kept in a bounded cache shared by all
 * threads, striped over TOK_CACHE_SHARDS mutexes. */
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer_internal.h"

/* ---- hashing and the two lookup tables ----------------------------------- */

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001B3ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0x9FB21C651E98DF25ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    /* the last 0..7 bytes without a byte-wise copy (store forwarding) */
    uint64_t v = 0;
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + n - 4, 4);
        v = (uint64_t)hi << 32 | lo;
    } else if (n) {
        v = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
    }
    return mix64(h ^ v);
}

int32_t tok_vocab_find(const sr_tokenizer *tok, const char *s, size_t n)
{
    if (!tok->vocab_slots) return -1;
    for (size_t i = tok_hash(s, n) & tok->vocab_mask;; i = (i + 1) & tok->vocab_mask) {
        int32_t id = tok->vocab_slots[i];
        if (id < 0) return -1;
        const tok_entry *e = &tok->entries[id];
        if (e->str_len == n && !memcmp(tok->strings + e->str_off, s, n)) return id;
    }
}

static inline size_t pair_slot(uint64_t key, size_t mask) { return mix64(key) & mask; }

int tok_merges_put(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = pair_slot(key, m->mask);; i = (i + 1) & m->mask) {
        if (m->keys[i] == UINT64_MAX || m->keys[i] == key) {
            /* a repeated pair keeps its last rank, as the reference's map does */
            m->keys[i] = key;
            m->vals[i] = (uint64_t)rank << 32 | (uint32_t)id;
            return 0;
        }
    }
}

int tok_merges_get(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = pair_slot(key, m->mask);; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *rank = (uint32_t)(m->vals[i] >> 32);
            *id = (int32_t)(uint32_t)m->vals[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX) return 0;
    }
}

/* ---- output ------------------------------------------------------------------ */

int tok_work_push(tok_work *w, const int32_t *ids, size_t n)
{
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->n + n) cap *= 2;
        int32_t *p = sr_realloc(w->ids, cap * sizeof *p);
        if (!p) {
            w->failed = 1;
            return sr_fail(w->err, "tokenizer %s: out of memory for %zu ids", w->tok->name,
                           w->n + n);
        }
        w->ids = p;
        w->cap = cap;
    }
    memcpy(w->ids + w->n, ids, n * sizeof *ids);
    w->n += n;
    return 0;
}

/* ---- cache ------------------------------------------------------------------- */

/* Words longer than this are rare enough not to be worth caching. */
#define CACHE_KEY_MAX 64
#define CACHE_SLOTS 4096 /* per shard, power of two */
#define CACHE_ARENA (128u * 1024u)

struct tok_cache_slot {
    uint32_t hash; /* low bits of the word's hash */
    uint32_t off;  /* record in the arena; 0 = empty */
};
/* record: uint16 key length, uint16 id count, key bytes, padding, int32 ids */

void tok_cache_init(sr_tokenizer *tok)
{
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) pthread_mutex_init(&tok->cache[i].lock, NULL);
}

void tok_cache_free(sr_tokenizer *tok)
{
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        pthread_mutex_destroy(&tok->cache[i].lock);
        sr_free(tok->cache[i].slots);
        sr_free(tok->cache[i].arena);
    }
}

static inline tok_cache_shard *shard_of(const sr_tokenizer *tok, uint64_t h)
{
    /* the cache is the tokenizer's only mutable state, guarded by its locks */
    return (tok_cache_shard *)&tok->cache[(h >> 59) & (TOK_CACHE_SHARDS - 1)];
}

static int cache_get(tok_work *w, uint64_t h, const unsigned char *key, size_t klen)
{
    tok_cache_shard *sh = shard_of(w->tok, h);
    pthread_mutex_lock(&sh->lock);
    if (sh->slots) {
        for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
            const struct tok_cache_slot *sl = &sh->slots[i];
            if (!sl->off) break;
            if (sl->hash != (uint32_t)h) continue;
            const unsigned char *r = sh->arena + sl->off;
            uint16_t kl, ni;
            memcpy(&kl, r, 2);
            memcpy(&ni, r + 2, 2);
            if (kl != klen || memcmp(r + 4, key, klen)) continue;
            int32_t ids[CACHE_KEY_MAX];
            memcpy(ids, r + 4 + ((klen + 3) & ~(size_t)3), ni * sizeof(int32_t));
            pthread_mutex_unlock(&sh->lock);
            tok_work_push(w, ids, ni);
            return 1;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return 0;
}

static void cache_put(const sr_tokenizer *tok, uint64_t h, const unsigned char *key, size_t klen,
                      const int32_t *ids, size_t n)
{
    if (klen > CACHE_KEY_MAX || n > CACHE_KEY_MAX) return;
    tok_cache_shard *sh = shard_of(tok, h);
    size_t rec = 4 + ((klen + 3) & ~(size_t)3) + n * sizeof(int32_t);
    pthread_mutex_lock(&sh->lock);
    if (!sh->slots) {
        /* allocated on first use; without memory we simply do not cache */
        sh->slots = sr_calloc(CACHE_SLOTS, sizeof *sh->slots);
        sh->arena = sr_malloc(CACHE_ARENA);
        if (!sh->slots || !sh->arena) {
            sr_free(sh->slots);
            sr_free(sh->arena);
            sh->slots = NULL;
            sh->arena = NULL;
            pthread_mutex_unlock(&sh->lock);
            return;
        }
        sh->arena_used = 4; /* offset 0 marks an empty slot */
    }
    if (sh->used_slots >= CACHE_SLOTS * 3 / 4 || sh->arena_used + rec > CACHE_ARENA) {
        /* full: start over (cheap, and keeps memory bounded) */
        memset(sh->slots, 0, CACHE_SLOTS * sizeof *sh->slots);
        sh->used_slots = 0;
        sh->arena_used = 4;
    }
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    for (;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        struct tok_cache_slot *sl = &sh->slots[i];
        if (!sl->off) break;
        if (sl->hash == (uint32_t)h) {
            const unsigned char *r = sh->arena + sl->off;
            uint16_t kl;
            memcpy(&kl, r, 2);
            if (kl == klen && !memcmp(r + 4, key, klen)) { /* another thread was first */
                pthread_mutex_unlock(&sh->lock);
                return;
            }
        }
    }
    unsigned char *r = sh->arena + sh->arena_used;
    uint16_t kl = (uint16_t)klen, ni = (uint16_t)n;
    memcpy(r, &kl, 2);
    memcpy(r + 2, &ni, 2);
    memcpy(r + 4, key, klen);
    memcpy(r + 4 + ((klen + 3) & ~(size_t)3), ids, n * sizeof(int32_t));
    sh->slots[i].hash = (uint32_t)h;
    sh->slots[i].off = sh->arena_used;
    sh->arena_used += (uint32_t)((rec + 3) & ~(size_t)3);
    sh->used_slots++;
    pthread_mutex_unlock(&sh->lock);
}

/* ---- the merge loop ------------------------------------------------------------ */

struct tok_sym {
    int32_t id; /* -1 once merged into its left neighbour */
    int32_t prev, next;
};

struct tok_heap_item {
    uint32_t rank, pos; /* pair (pos, next of pos) */
};

static inline int heap_less(struct tok_heap_item a, struct tok_heap_item b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(struct tok_heap_item *h, size_t *n, struct tok_heap_item it)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_less(it, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct tok_heap_item heap_pop(struct tok_heap_item *h, size_t *n)
{
    struct tok_heap_item top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static void push_pair(const sr_tokenizer *tok, const struct tok_sym *sym, int32_t pos,
                      struct tok_heap_item *heap, size_t *nh)
{
    if (pos < 0) return;
    int32_t nx = sym[pos].next;
    if (nx < 0) return;
    uint32_t rank;
    int32_t id;
    if (tok_merges_get(&tok->merges, sym[pos].id, sym[nx].id, &rank, &id))
        heap_push(heap, nh, (struct tok_heap_item){rank, (uint32_t)pos});
}

static int grow(tok_work *w, void **p, size_t *cap, size_t need, size_t elem)
{
    if (*cap >= need) return 0;
    size_t c = need < 64 ? 64 : need * 2;
    void *q = sr_realloc(*p, c * elem);
    if (!q) {
        w->failed = 1;
        return sr_fail(w->err, "tokenizer %s: out of memory", w->tok->name);
    }
    *p = q;
    *cap = c;
    return 0;
}

/* The byte-level spelling of s (for the vocabulary lookup of ignore_merges). */
static const char *byte_level_spelling(tok_work *w, const unsigned char *s, size_t n, size_t *len)
{
    if (grow(w, (void **)&w->scratch, &w->scratch_cap, 2 * n + 1, 1)) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(s[i]);
        if (cp < 0x80) w->scratch[k++] = (char)cp;
        else {
            w->scratch[k++] = (char)(0xC0 | (cp >> 6));
            w->scratch[k++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    *len = k;
    return w->scratch;
}

void tok_bpe(tok_work *w, const unsigned char *s, size_t n)
{
    const sr_tokenizer *tok = w->tok;
    uint64_t h = 0;
    if (n <= CACHE_KEY_MAX) {
        h = tok_hash(s, n);
        if (cache_get(w, h, s, n)) return;
    }
    if (tok->ignore_merges) {
        size_t sl;
        const char *sp = byte_level_spelling(w, s, n, &sl);
        if (!sp) return;
        int32_t id = tok_vocab_find(tok, sp, sl);
        if (id >= 0 && (tok->entries[id].flags & TOK_IN_VOCAB)) {
            tok_work_push(w, &id, 1);
            return;
        }
    }
    if (grow(w, (void **)&w->syms, &w->syms_cap, n, sizeof *w->syms) ||
        grow(w, (void **)&w->heap, &w->heap_cap, 2 * n, sizeof *w->heap))
        return;
    struct tok_sym *sym = w->syms;
    int32_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[s[i]];
        if (id < 0) {
            /* not in the vocabulary: unk (fused if asked) or dropped */
            if (tok->unk_id < 0 || (tok->fuse_unk && last_unk)) continue;
            id = tok->unk_id;
            last_unk = 1;
        } else {
            last_unk = 0;
        }
        sym[m] = (struct tok_sym){id, m - 1, m + 1};
        m++;
    }
    if (!m) return;
    sym[m - 1].next = -1;

    size_t nh = 0;
    struct tok_heap_item *heap = w->heap;
    for (int32_t i = 0; i + 1 < m; i++) push_pair(tok, sym, i, heap, &nh);
    while (nh) {
        struct tok_heap_item it = heap_pop(heap, &nh);
        int32_t p = (int32_t)it.pos, q = sym[p].next;
        if (sym[p].id < 0 || q < 0) continue;
        uint32_t rank;
        int32_t id;
        if (!tok_merges_get(&tok->merges, sym[p].id, sym[q].id, &rank, &id) || rank != it.rank)
            continue; /* stale: one side was merged since */
        sym[p].id = id;
        sym[p].next = sym[q].next;
        if (sym[q].next >= 0) sym[sym[q].next].prev = p;
        sym[q].id = -1;
        push_pair(tok, sym, sym[p].prev, heap, &nh);
        push_pair(tok, sym, p, heap, &nh);
    }

    /* compact the surviving symbols into ids, in order */
    int32_t *out = (int32_t *)heap; /* heap is free now and holds >= m ints */
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = sym[i].next) out[k++] = sym[i].id;
    if (tok_work_push(w, out, k)) return;
    if (n <= CACHE_KEY_MAX) cache_put(tok, h, s, n, out, k);
}
