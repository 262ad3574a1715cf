/* Token generation: prefill the prompt, then one decode step per new token
 * with the KV cache, choosing each token with the sampler.  A generated
 * control token enters the sequence like a prompt one (spec §5.4). */
#ifndef SR_GENERATE_H
#define SR_GENERATE_H

#include <stdint.h>

#include "runtime/forward.h"
#include "runtime/sampling.h"

typedef struct sr_gen_opts {
    int64_t max_new;                /* tokens to generate */
    sr_sampling_params sampling;
    int64_t stop_token;             /* stop after generating this id; -1: never */
    /* called with every generated token (e.g. to print it); may be NULL */
    void (*on_token)(int32_t token, void *user);
    void *user;
    float *step_logits;             /* optional [max_new][V]: logits that chose each token */
} sr_gen_opts;

typedef struct sr_gen_stats {
    int64_t n_prompt, n_generated;
    double prefill_s, decode_s;     /* wall time of the prefill and of the decode steps */
    double ttft_s;                  /* start to first token */
} sr_gen_stats;

/* Appends the prompt to `s` (usually empty) and generates; out[max_new]
 * receives the generated ids, *n_out how many.  stats may be NULL. */
int sr_generate(sr_seq *s, const int32_t *prompt, int64_t n_prompt, const sr_gen_opts *opts,
                int32_t *out, int64_t *n_out, sr_gen_stats *stats, sr_error *err);

/* Keeps the first `len` cached positions and forgets the rest, so a request
 * that shares a prefix with the cached one (an aLoRA follow-up, the next chat
 * turn) feeds only what differs.  The switch state is replayed from the kept
 * token ids (integer counters, no compute); K/V and Mem bits of kept
 * positions do not depend on later ones.  Fails if len > s->len. */
int sr_seq_truncate(sr_seq *s, int64_t len, sr_error *err);

#endif
