#include "runtime/switch.h"

#include <float.h>
#include <math.h>
#include <string.h>

int sr_switch_init(sr_switch *sw, const sr_config *cfg, sr_error *err)
{
    memset(sw, 0, sizeof *sw);
    sw->gen = cfg->gen;
    sw->n_adapters = cfg->num_adapters;
    sw->gain = cfg->control_token_gain;
    if (cfg->gen != SR_GEN_C) return 0;
    /* Gen C address capacity of the code (§6.2.6): kerdock 2^(2m-1), dg1 2^(3m-2). */
    int m = cfg->ms_code_m ? cfg->ms_code_m : 6;
    const char *type = cfg->ms_code_type[0] ? cfg->ms_code_type : "kerdock";
    if (!strcmp(type, "kerdock") && (m == 6 || m == 8))
        sw->ms_capacity = (int64_t)1 << (2 * m - 1);
    else if (!strcmp(type, "dg1") && m == 6)
        sw->ms_capacity = (int64_t)1 << (3 * m - 2);
    else
        return sr_fail(err, "%s: field ms_code_m/ms_code_type: unsupported MultiSwitch code %s m=%d",
                       cfg->source ? cfg->source : "config", type, m);
    return 0;
}

int64_t sr_round_half_even_ratio(int64_t num, int64_t den)
{
    int64_t q = num / den, r = num % den;
    /* compare the remainder r/den with 1/2 as 2r vs den (exact, no division) */
    if (2 * r < den) return q;
    if (2 * r > den) return q + 1;
    return (q % 2 == 0) ? q : q + 1;
}

static int clamp_index(int64_t v, int n)
{
    if (v < 0) return 0;
    if (v > n) return n;
    return (int)v;
}

int sr_switch_single_index(int64_t c, int64_t n, int64_t sigma, double gain, int n_adapters)
{
    if (c == 0) return 0;
    double leak = (double)n * exp(-2.0 * gain);
    /* half an fp32 ulp of c: below it the fp32 denominator rounds to c */
    int e;
    frexp((double)c, &e);
    double half_ulp = ldexp(1.0, e - 1 - 24);
    if (leak < half_ulp) return clamp_index(sr_round_half_even_ratio(sigma, c), n_adapters);
    double o = (double)sigma / ((double)c + leak);
    return clamp_index((int64_t)nearbyint(o), n_adapters);
}

int sr_switch_step(const sr_switch *sw, sr_switch_state *s, int idx, bool *overflow)
{
    int64_t pos = s->seen++;
    if (sw->gen == SR_GEN_C) {
        if (idx >= 0) {
            /* a control token at position 0 is the counting head's anchor */
            if (pos >= 1) {
                s->n_ms++;
                if (s->n_ms > sw->ms_capacity - 1 && overflow) *overflow = true;
            }
            s->latest = idx;
        }
        return s->latest < 0 ? 0 : clamp_index(s->latest, sw->n_adapters);
    }
    if (idx >= 0) {
        s->c++;
        s->sigma += idx;
    } else {
        s->n++;
    }
    if (sw->gen == SR_GEN_NONE) return 0;
    return sr_switch_single_index(s->c, s->n, s->sigma, sw->gain, sw->n_adapters);
}
