/* The parameter-free adapter switch in closed form (spec granite-switch.md
 * §4.2.2 for the SingleSwitch of Gen A/B, §6.2.4 for the MultiSwitch of
 * Gen C).
 *
 * The reference computes the adapter index a_i with a tiny fp32 attention
 * head; here it is integer counters per sequence, updated one token at a time
 * (a token's own key is visible to its query, so the counters are updated
 * before a_i is read).  Decode step t therefore equals a full recompute. */
#ifndef SR_SWITCH_H
#define SR_SWITCH_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/config.h"

typedef struct sr_switch_state {
    /* SingleSwitch (Gen A/B) */
    int64_t c;          /* control tokens seen */
    int64_t n;          /* ordinary tokens seen */
    int64_t sigma;      /* sum of the adapter indices of the control tokens */
    /* MultiSwitch (Gen C) */
    int64_t n_ms;       /* control tokens at raw positions >= 1 (write addresses) */
    int latest;         /* adapter index of the latest control token, -1 if none */
    int64_t seen;       /* tokens seen (the next raw position) */
} sr_switch_state;

/* What the switch needs from the config, copied so the unit tests can build
 * one without a config.json. */
typedef struct sr_switch {
    sr_switch_gen gen;
    int n_adapters;         /* N: indices are clamped to [0, N] */
    double gain;            /* control_token_gain g (Gen A/B) */
    int64_t ms_capacity;    /* Gen C address capacity (2048 for kerdock m=6) */
} sr_switch;

/* Fills sw from a config; fails on an unknown Gen C code (ms_code_m/type). */
int sr_switch_init(sr_switch *sw, const sr_config *cfg, sr_error *err);

static inline void sr_switch_reset(sr_switch_state *s)
{
    s->c = s->n = s->sigma = s->n_ms = s->seen = 0;
    s->latest = -1;
}

/* Feeds one token; `idx` is its adapter index (sr_config_control_index:
 * 1..N, 0 for a Gen C base-reset token, -1 for an ordinary token).  Returns
 * the adapter index a_i of that position.  Gen C beyond capacity-1 control
 * tokens sets *overflow (the reference's addresses collide there). */
int sr_switch_step(const sr_switch *sw, sr_switch_state *s, int idx, bool *overflow);

/* Gen A/B read-out: clamp(rhe(o), 0, N) with o the reference's switch output
 * for counters (c, n, sigma).  Exact rational Σ/c with round half to even
 * while n·e^{-2g} is below half an fp32 ulp of c (the reference's fp32
 * softmax then gives every control key exactly weight fl(1/c)); the full
 * formula Σ/(c + n·e^{-2g}) beyond (visible only for small gains or ~10^6
 * tokens). */
int sr_switch_single_index(int64_t c, int64_t n, int64_t sigma, double gain, int n_adapters);

/* Round half to even of the non-negative rational num/den (den > 0). */
int64_t sr_round_half_even_ratio(int64_t num, int64_t den);

#endif
