/* `strata run --model DIR --tokens 1,2,3 -n N [--temp T --top-k K --top-p P
 *             --seed S] [--ctx N] [--json] [--ignore-eos | --stop ID] [--check]`
 *
 * Generates up to N tokens after the prompt (greedy unless --temp > 0) and
 * prints the generated ids, comma-separated, on one line; with --json an
 * object with the ids, the adapter index of every position fed to the model
 * and the timings.  Generation stops early at the config's eos_token_id
 * unless --ignore-eos (or at --stop ID). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "tools/commands.h"
#include "tools/token_args.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata run --model DIR --tokens ID,ID,... -n N [options]\n"
               "  Generates N tokens and prints their ids.\n"
               "  --temp T         sampling temperature (default 0: greedy)\n"
               "  --top-k K        keep the K most likely tokens (0: off)\n"
               "  --top-p P        nucleus sampling mass (1: off)\n"
               "  --seed S         random seed (default 0)\n"
               "  --ctx N          context limit (default and cap: max_position_embeddings)\n"
               "  --ignore-eos     do not stop at the config's eos_token_id\n"
               "  --stop ID        stop after generating ID instead\n"
               "  --json           print a JSON object (ids, adapter indices, timings)\n"
               "  --check          refuse weights holding NaN or Inf\n");
}

static void print_ids(const int32_t *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", v[i]);
}

static void print_json(const sr_seq *s, const int32_t *prompt, int64_t n_prompt,
                       const int32_t *gen, int64_t n_gen, const sr_gen_stats *st, bool stopped)
{
    printf("{\"prompt\": [");
    print_ids(prompt, n_prompt);
    printf("], \"generated\": [");
    print_ids(gen, n_gen);
    printf("], \"adapter_indices\": [");
    print_ids(s->adapter, s->len);
    printf("], \"stop\": \"%s\", \"n_prompt\": %lld, \"n_generated\": %lld,", stopped ? "stop_token" : "length",
           (long long)n_prompt, (long long)n_gen);
    printf(" \"prefill_s\": %.6f, \"decode_s\": %.6f, \"ttft_s\": %.6f,", st->prefill_s, st->decode_s,
           st->ttft_s);
    printf(" \"prefill_tok_s\": %.3f, \"decode_tok_s\": %.3f}\n",
           st->prefill_s > 0 ? (double)n_prompt / st->prefill_s : 0.0,
           st->decode_s > 0 && n_gen > 1 ? (double)(n_gen - 1) / st->decode_s : 0.0);
}

int cmd_run(int argc, char **argv)
{
    const char *model = NULL, *tokens_s = NULL;
    long long n_new = -1, ctx = 0, top_k = 0, stop = -2;
    unsigned long long seed = 0;
    double temp = 0, top_p = 1;
    bool json = false, ignore_eos = false;
    sr_model_opts mo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--check")) { mo.check_finite = true; continue; }
        if (!strcmp(a, "--json")) { json = true; continue; }
        if (!strcmp(a, "--ignore-eos")) { ignore_eos = true; continue; }
        if (i + 1 == argc) { usage(stderr); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--tokens")) tokens_s = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--max-new")) n_new = strtoll(v, &end, 10);
        else if (!strcmp(a, "--ctx")) ctx = strtoll(v, &end, 10);
        else if (!strcmp(a, "--top-k")) top_k = strtoll(v, &end, 10);
        else if (!strcmp(a, "--stop")) stop = strtoll(v, &end, 10);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--temp")) temp = strtod(v, &end);
        else if (!strcmp(a, "--top-p")) top_p = strtod(v, &end);
        else {
            fprintf(stderr, "strata run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "strata run: %s: '%s' is not a number\n", a, v);
            return 2;
        }
    }
    if (!model || !tokens_s || n_new < 0) { usage(stderr); return 2; }
    if (!(temp >= 0) || !(top_p > 0 && top_p <= 1) || top_k < 0 || top_k > INT32_MAX || ctx < 0) {
        fprintf(stderr, "strata run: need --temp >= 0, 0 < --top-p <= 1, --top-k >= 0, --ctx >= 0\n");
        return 2;
    }

    int32_t *tok = NULL, *gen = NULL;
    int64_t T = parse_token_list("run", tokens_s, &tok);
    if (T < 0) return 2;
    int rc = 1;
    sr_model *m = NULL;
    sr_seq *s = NULL;
    sr_error err = {{0}};
    if (T == 0) {
        fprintf(stderr, "strata run: empty prompt: --tokens holds no token\n");
        goto done;
    }
    if (sr_model_load(model, &mo, &m, &err)) {
        fprintf(stderr, "strata run: %s\n", err.msg);
        goto done;
    }
    /* the context: the config's max_position_embeddings, capped by --ctx */
    int64_t limit = m->cfg.max_position_embeddings, need = T + (n_new > 0 ? n_new - 1 : 0);
    if (ctx > 0 && (limit <= 0 || ctx < limit)) limit = ctx;
    const char *why = limit == ctx ? "--ctx" : "max_position_embeddings";
    if (limit > 0 && T > limit) {
        fprintf(stderr, "strata run: prompt of %lld tokens is longer than the context of %lld "
                "positions (%s)\n", (long long)T, (long long)limit, why);
        goto done;
    }
    if (limit > 0 && need > limit) {
        fprintf(stderr, "strata run: prompt of %lld tokens + %lld new tokens exceeds the context "
                "of %lld positions (%s)\n", (long long)T, n_new, (long long)limit, why);
        goto done;
    }
    if (sr_seq_create(m, need, &s, &err)) {
        fprintf(stderr, "strata run: %s\n", err.msg);
        goto done;
    }
    gen = sr_malloc(sizeof(int32_t) * (size_t)(n_new ? n_new : 1));
    if (!gen) {
        fprintf(stderr, "strata run: out of memory\n");
        goto done;
    }
    sr_gen_opts go = {
        .max_new = n_new,
        .sampling = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p,
                     .seed = seed},
        .stop_token = stop != -2 ? stop : ignore_eos ? -1 : m->cfg.eos_token_id,
    };
    sr_gen_stats st;
    int64_t n_gen = 0;
    if (sr_generate(s, tok, T, &go, gen, &n_gen, &st, &err)) {
        fprintf(stderr, "strata run: %s\n", err.msg);
        goto done;
    }
    bool stopped = n_gen > 0 && go.stop_token >= 0 && gen[n_gen - 1] == go.stop_token;
    if (json) {
        print_json(s, tok, T, gen, n_gen, &st, stopped);
    } else {
        print_ids(gen, n_gen);
        printf("\n");
    }
    rc = 0;
done:
    sr_free(tok);
    sr_free(gen);
    sr_seq_free(s);
    sr_model_free(m);
    return rc;
}
