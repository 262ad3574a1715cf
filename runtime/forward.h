/* The forward pass on CPU as separately callable units (embedding, decoder
 * layer, head) over explicit buffers, so the offload manager can run each
 * unit on a different tier, plus the per-sequence state that makes decode
 * step t equal to a full recompute (spec granite-switch.md §4, §5).
 *
 * One call processes T new tokens of one sequence:
 *   sr_step_begin   switch (a_i), RoPE positions, Mem bits, token exchange
 *   sr_embed_forward  x = E[t'] · m_emb
 *   sr_layer_forward  for each layer: appends K/V at positions p0..p0+T-1
 *   sr_head_forward   final norm, LM head, / logits_scaling
 *   sr_step_commit    the tokens become part of the sequence
 * sr_forward does all of it (in chunks for long prompts).  Activations are
 * f32 token-major [T][H]. */
#ifndef SR_FORWARD_H
#define SR_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/switch.h"

/* Scratch buffers of the layer and head units for up to `max_t` tokens and
 * `ctx` cached positions. */
typedef struct sr_workspace {
    int max_t;
    int64_t ctx;
    int threads;                /* per-thread slices in `scores` (OpenMP's count when sized) */
    float *u, *qkv, *attn, *proj, *gu, *act, *lora, *scores;
} sr_workspace;

int sr_workspace_init(sr_workspace *ws, const sr_model *m, int max_t, int64_t ctx, sr_error *err);
void sr_workspace_free(sr_workspace *ws);
uint64_t sr_workspace_bytes(const sr_model *m, int max_t, int64_t ctx);

/* The same workspace over caller memory (e.g. a buffer on the tier that runs
 * the layers): buf, 64-byte aligned, of at least sr_workspace_buffer_bytes()
 * bytes (each buffer starts on a 64-byte boundary).  The buffer stays the
 * caller's: never pass such a workspace to sr_workspace_free. */
uint64_t sr_workspace_buffer_bytes(const sr_model *m, int max_t, int64_t ctx);
int sr_workspace_init_in(sr_workspace *ws, const sr_model *m, int max_t, int64_t ctx, void *buf,
                         size_t size, sr_error *err);

/* Per-token data of one call, shared by every unit. */
typedef struct sr_step {
    int T;                      /* tokens in this call */
    int64_t p0;                 /* raw position of the first (tokens already cached) */
    const int32_t *tokens;      /* original ids [T] */
    int32_t *embed_ids;         /* ids the embedding reads (Gen B/C token exchange) */
    int32_t *adapter;           /* a_i */
    int32_t *rope_pos;          /* position fed to RoPE (Gen A: corrected) */
    uint32_t *qsup;             /* Sup(a_i) & ~Mem(t_i): groups the query hides (Gen A) */
    sr_switch_state sw_after;   /* switch state once these tokens are committed */
} sr_step;

/* Per-sequence state. */
typedef struct sr_seq {
    const sr_model *m;
    int64_t ctx;                /* capacity in positions */
    int64_t len;                /* positions cached (the next raw position) */
    sr_kv_cache kv;             /* K/V per layer + Mem bits per position */
    sr_switch_state sw;
    int32_t *tokens, *adapter, *rope_pos;   /* [ctx] per cached position */
    int chunk;                  /* tokens per sr_forward pass */
    sr_workspace ws;
    float *x;                   /* [chunk][H] activations */
    int32_t *step_buf;          /* [3][chunk] step arrays */
    uint32_t *qsup_buf;         /* [chunk] */
} sr_seq;

/* ctx: positions to hold; <= 0 means the config's max_position_embeddings.
 * A ctx above max_position_embeddings is allowed (HF does not enforce it). */
int sr_seq_create(const sr_model *m, int64_t ctx, sr_seq **out, sr_error *err);
void sr_seq_free(sr_seq *s);
/* Prefill tokens per pass (sr_seq.chunk) for a context of ctx positions. */
int sr_seq_chunk(int64_t ctx);
/* The sequence state alone, for callers whose layers keep K/V and
 * activations elsewhere (offload/exec.c: on the tiers that run them):
 * positions, switch state, Mem bits and step arrays, no KV blocks (kv.k and
 * kv.v are NULL), no workspace, no activations.  sr_step_begin /
 * sr_step_commit / sr_seq_reset / sr_seq_truncate / sr_seq_free work on it;
 * sr_forward does not.  sr_seq_state_bytes: what it allocates. */
int sr_seq_create_state(const sr_model *m, int64_t ctx, sr_seq **out, sr_error *err);
uint64_t sr_seq_state_bytes(int64_t ctx);
/* Forget every token (keeps the allocations). */
void sr_seq_reset(sr_seq *s);

/* Validates the tokens (id < vocab, room in ctx) and fills `st` for them;
 * the arrays come from the sequence (T <= s->chunk).  Records Mem bits and
 * per-position data at p0.. (not yet part of the sequence). */
int sr_step_begin(sr_seq *s, const int32_t *tokens, int T, sr_step *st, sr_error *err);
void sr_step_commit(sr_seq *s, const sr_step *st);

void sr_embed_forward(const sr_model *m, const sr_step *st, float *x);
/* Layer l on x[T][H] in place; K/V of the new tokens go to kv (layer l). */
void sr_layer_forward(const sr_model *m, int l, sr_kv_cache *kv, const sr_step *st, float *x,
                      sr_workspace *ws);
/* Same with explicit weights (a tier holding its own copy of layer l). */
void sr_layer_forward_w(const sr_model *m, const sr_layer_weights *w, int l, sr_kv_cache *kv,
                        const sr_step *st, float *x, sr_workspace *ws);
/* logits[T][ldl] from the last layer's output x[T][H] (x is not modified). */
void sr_head_forward(const sr_model *m, const float *x, int T, float *logits, int64_t ldl,
                     sr_workspace *ws);

/* Runs T tokens through the model.  logits: NULL, [V] for the last token only
 * (all_logits false), or [T][V] (all_logits true).  adapter_out / pos_out
 * (optional, [T]) receive a_i and the RoPE positions. */
int sr_forward(sr_seq *s, const int32_t *tokens, int64_t T, float *logits, bool all_logits,
               int32_t *adapter_out, int32_t *pos_out, sr_error *err);

#endif
