/* Next-token selection from one row of logits: greedy (argmax, first index
 * wins ties, like torch.argmax) or sampling with temperature, then top-k,
 * then top-p (nucleus), in that order (as HF's default processors), drawn
 * from a seeded xoshiro256** generator so a seed reproduces a run. */
#ifndef SR_SAMPLING_H
#define SR_SAMPLING_H

#include <stdint.h>

#include "runtime/error.h"

typedef struct sr_sampling_params {
    float temperature;      /* <= 0: greedy */
    int top_k;              /* <= 0: off; ties with the k-th logit are kept, as HF */
    float top_p;            /* >= 1 or <= 0: off */
    uint64_t seed;
} sr_sampling_params;

typedef struct sr_sampler {
    sr_sampling_params p;
    uint64_t s[4];          /* xoshiro256** state */
    int64_t vocab;
    int32_t *idx;           /* [vocab] work buffers */
    float *prob;
} sr_sampler;

int sr_sampler_init(sr_sampler *s, const sr_sampling_params *p, int64_t vocab, sr_error *err);
void sr_sampler_free(sr_sampler *s);

/* Returns the chosen token id, or -1 (with err) when no logit is finite. */
int64_t sr_sample(sr_sampler *s, const float *logits, sr_error *err);

/* argmax over finite values, first index on ties; -1 if none is finite. */
int64_t sr_argmax(const float *logits, int64_t n);

/* Uniform double in [0, 1) from the sampler's generator (tests). */
double sr_sampler_uniform(sr_sampler *s);

#endif
