/* Stacked LoRA deltas of one switched linear (spec granite-switch.md §2.4,
 * §4.5.2): for a token with adapter a >= 1, every slice s of the output gets
 * y[slice s] += B_s[a-1] · (A_s[a-1] · u); adapter 0 gets no work at all.
 * B is pre-scaled in the checkpoint; no alpha/rank factor is applied.
 *
 * Tokens are grouped per adapter: gather, one GEMM against all slices' A
 * stacked, one GEMM per slice with the adapter's true rank, scatter-add. */
#ifndef SR_LORA_H
#define SR_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/error.h"

#define SR_LORA_MAX_SLICES 3

typedef struct sr_lora {
    int n_adapters;             /* N */
    int rank;                   /* R (padded rank of the stacks) */
    int *ranks;                 /* [N] rank used per adapter (<= R) */
    int64_t in;                 /* input features */
    int n_slices;
    int64_t slice_off[SR_LORA_MAX_SLICES], slice_rows[SR_LORA_MAX_SLICES];
    float *A;                   /* [N][n_slices * R][in]: all slices' A of an adapter stacked */
    float *B[SR_LORA_MAX_SLICES];   /* [N][slice_rows][R] */
    bool *live;                 /* [N * n_slices]: false where B (or A) is all zero */
} sr_lora;

/* Allocates the stacks (zeroed) for the given geometry; ranks may be NULL (= R). */
int sr_lora_alloc(sr_lora *l, int n_adapters, int rank, const int *ranks, int64_t in,
                  int n_slices, const int64_t *slice_rows, sr_error *err);
void sr_lora_free(sr_lora *l);
/* Recomputes `live` from the stacks (call after filling A and B). */
void sr_lora_update_live(sr_lora *l);

static inline float *sr_lora_a(const sr_lora *l, int adapter0, int slice)
{
    return l->A + ((int64_t)adapter0 * l->n_slices + slice) * l->rank * l->in;
}
static inline float *sr_lora_b(const sr_lora *l, int adapter0, int slice)
{
    return l->B[slice] + (int64_t)adapter0 * l->slice_rows[slice] * l->rank;
}

/* Floats of scratch sr_lora_apply needs for T tokens. */
int64_t sr_lora_scratch_floats(const sr_lora *l, int64_t T);

/* y[t][slice rows] += delta for every token t with a[t] >= 1. */
void sr_lora_apply(const sr_lora *l, const float *u, int64_t T, int64_t ldu, const int32_t *a,
                   float *y, int64_t ldy, float *scratch);

#endif
