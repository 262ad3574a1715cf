#include "runtime/generate.h"

#include <string.h>
#include <time.h>

#include "runtime/alloc.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sr_generate(sr_seq *s, const int32_t *prompt, int64_t n_prompt, const sr_gen_opts *opts,
                int32_t *out, int64_t *n_out, sr_gen_stats *stats, sr_error *err)
{
    const int64_t V = s->m->V;
    *n_out = 0;
    if (stats) memset(stats, 0, sizeof *stats);
    if (n_prompt <= 0) return sr_fail(err, "empty prompt: generation needs at least one token");
    if (opts->max_new < 0) return sr_fail(err, "number of tokens to generate must be >= 0");
    if (s->len + n_prompt + (opts->max_new > 0 ? opts->max_new - 1 : 0) > s->ctx)
        return sr_fail(err, "prompt of %lld tokens + %lld new tokens exceeds the context of %lld "
                       "positions", (long long)n_prompt, (long long)opts->max_new,
                       (long long)s->ctx);
    sr_sampler smp;
    if (sr_sampler_init(&smp, &opts->sampling, V, err)) return -1;
    float *logits = sr_malloc(sizeof(float) * (size_t)V);
    if (!logits) {
        sr_sampler_free(&smp);
        return sr_fail(err, "generate: out of memory");
    }
    int rc = 0;
    double t0 = now_s(), t1 = t0;
    if (sr_forward(s, prompt, n_prompt, logits, false, NULL, NULL, err)) {
        rc = -1;
        goto done;
    }
    t1 = now_s();
    for (int64_t i = 0; i < opts->max_new; i++) {
        if (opts->step_logits) memcpy(opts->step_logits + i * V, logits, sizeof(float) * (size_t)V);
        int64_t tok = sr_sample(&smp, logits, err);
        if (tok < 0) {
            rc = sr_fail_prefix(err, "generated token %lld", (long long)i);
            goto done;
        }
        out[(*n_out)++] = (int32_t)tok;
        if (i == 0 && stats) stats->ttft_s = now_s() - t0;
        if (opts->on_token) opts->on_token((int32_t)tok, opts->user);
        if (tok == opts->stop_token || i + 1 == opts->max_new) break;
        int32_t t32 = (int32_t)tok;
        if (sr_forward(s, &t32, 1, logits, false, NULL, NULL, err)) {
            rc = -1;
            goto done;
        }
    }
done:
    if (stats) {
        stats->n_prompt = n_prompt;
        stats->n_generated = *n_out;
        stats->prefill_s = t1 - t0;
        stats->decode_s = now_s() - t1;
    }
    sr_free(logits);
    sr_sampler_free(&smp);
    return rc;
}

int sr_seq_truncate(sr_seq *s, int64_t len, sr_error *err)
{
    if (len < 0 || len > s->len)
        return sr_fail(err, "cannot keep %lld positions of a sequence of %lld", (long long)len,
                       (long long)s->len);
    const sr_config *c = &s->m->cfg;
    sr_switch_state sw;
    sr_switch_reset(&sw);
    for (int64_t p = 0; p < len; p++) {
        int idx = c->gen == SR_GEN_NONE ? -1 : sr_config_control_index(c, s->tokens[p]);
        bool overflow = false;
        (void)sr_switch_step(&s->m->sw, &sw, idx, &overflow);   /* overflow was refused at feed */
    }
    s->sw = sw;
    s->len = len;
    return 0;
}
