/* `strata logits --model DIR --tokens 1,2,3 --out FILE [--prefill K]
 *                [--indices FILE] [--ctx N] [--kv-type T] [--check]`
 *
 * Runs the tokens through the model as one sequence and writes the raw f32
 * logits [T, V] (little-endian, already divided by logits_scaling).  With
 * --prefill K the first K tokens go in one call and the rest one at a time
 * through the KV cache.  --indices writes the adapter index of every position
 * as int32.  Files are written to FILE.tmp and renamed: an error leaves no
 * partial output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/token_args.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata logits -m|--model DIR --tokens ID,ID,... --out FILE [options]\n"
               "  Writes the logits of every position as raw f32 [T, vocab].\n"
               "  --prefill K      prefill K tokens, then decode one token at a time (KV cache)\n"
               "  --indices FILE   also write the adapter index of every position (int32)\n"
               "  --ctx N          context limit (default and cap: max_position_embeddings)\n"
               "  --kv-type T      KV cache elements: f32 (default) or bf16 (half the memory)\n"
               "  --check          refuse weights holding NaN or Inf\n" CLI_KERNEL_ENV_USAGE);
}

/* Writes n bytes for path (cli_out_commit publishes them). */
static int write_out(cli_out *o, const char *path, const void *data, size_t n)
{
    FILE *f = cli_out_open(o, "strata logits", path);
    if (!f) return -1;
    errno = 0;
    size_t w = fwrite(data, 1, n, f);
    if (fclose(f) == 0 && w == n) return 0;
    fprintf(stderr, "strata logits: %s: %s\n", path, strerror(errno ? errno : EIO));
    cli_out_discard(o);
    return -1;
}

int cmd_logits(int argc, char **argv)
{
    const char *model = NULL, *tokens_s = NULL, *out = NULL, *indices = NULL, *kv_type = NULL;
    long long prefill = -1, ctx = 0;
    bool ctx_given = false;
    sr_model_opts mo = {.runs_on_cpu = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--check")) { mo.check_finite = true; continue; }
        if (i + 1 == argc) { usage(stderr); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--tokens")) tokens_s = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--indices")) indices = v;
        else if (!strcmp(a, "--prefill")) prefill = strtoll(v, &end, 10);
        else if (!strcmp(a, "--ctx")) ctx = strtoll(v, &end, 10), ctx_given = true;
        else if (!strcmp(a, "--kv-type")) {
            if (cli_check_kv_type("strata logits", v)) return 2;
            kv_type = v;
        } else {
            fprintf(stderr, "strata logits: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (end && (*end || end == v || errno == ERANGE)) {
            fprintf(stderr, "strata logits: %s: '%s' is not a number in range\n", a, v);
            return 2;
        }
    }
    if (!model || !tokens_s || !out) { usage(stderr); return 2; }
    if (indices && !strcmp(indices, out)) {
        fprintf(stderr, "strata logits: --out and --indices name the same file '%s'\n", out);
        return 2;
    }

    int32_t *tok = NULL;
    int64_t T = parse_token_list("logits", tokens_s, &tok);
    if (T < 0) return 2;
    int rc = 1;
    sr_model *m = NULL;
    sr_seq *s = NULL;
    float *lg = NULL;
    int32_t *ad = NULL;
    sr_error err = {{0}};
    if (T == 0) {
        fprintf(stderr, "strata logits: empty prompt: --tokens holds no token\n");
        goto done;
    }
    if (prefill != -1 && (prefill < 1 || prefill > T)) {
        fprintf(stderr, "strata logits: --prefill %lld is not in 1..%lld\n", prefill, (long long)T);
        goto done;
    }
    if (ctx_given && ctx <= 0) {
        fprintf(stderr, "strata logits: --ctx %lld must be positive\n", ctx);
        goto done;
    }
    if (sr_model_load(model, &mo, &m, &err)) {
        fprintf(stderr, "strata logits: %s\n", err.msg);
        goto done;
    }
    if (kv_type) sr_kv_type_parse(kv_type, &m->kv_type);    /* checked above */
    /* the context: the config's max_position_embeddings, capped by --ctx */
    int64_t limit = m->cfg.max_position_embeddings;
    if (ctx > 0 && (limit <= 0 || ctx < limit)) limit = ctx;
    if (limit > 0 && T > limit) {
        fprintf(stderr, "strata logits: prompt of %lld tokens is longer than the context of %lld "
                "positions%s\n", (long long)T, (long long)limit,
                limit == ctx ? " (--ctx)" : " (max_position_embeddings)");
        goto done;
    }
    if (sr_seq_create(m, T, &s, &err)) {
        fprintf(stderr, "strata logits: %s\n", err.msg);
        goto done;
    }
    lg = sr_malloc(sizeof(float) * (size_t)(T * m->V));
    ad = sr_malloc(sizeof(int32_t) * (size_t)T);
    if (!lg || !ad) {
        fprintf(stderr, "strata logits: out of memory for %lld x %lld logits\n", (long long)T,
                (long long)m->V);
        goto done;
    }
    int64_t k = prefill > 0 ? prefill : T;   /* no --prefill: one full forward */
    if (sr_forward(s, tok, k, lg, true, ad, NULL, &err)) {
        fprintf(stderr, "strata logits: %s\n", err.msg);
        goto done;
    }
    for (int64_t i = k; i < T; i++) {
        if (sr_forward(s, tok + i, 1, lg + i * m->V, false, ad + i, NULL, &err)) {
            fprintf(stderr, "strata logits: %s\n", err.msg);
            goto done;
        }
    }
    /* both files written before either replaces anything: a failure leaves
     * an earlier --out as it was */
    cli_out lo, io;
    if (write_out(&lo, out, lg, sizeof(float) * (size_t)(T * m->V))) goto done;
    if (indices && write_out(&io, indices, ad, sizeof(int32_t) * (size_t)T)) {
        cli_out_discard(&lo);
        goto done;
    }
    if (cli_out_commit(&lo, "strata logits") ||
        (indices && cli_out_commit(&io, "strata logits"))) {
        if (indices) cli_out_discard(&io);
        goto done;
    }
    fprintf(stderr, "strata logits: %lld positions x %lld logits -> %s\n", (long long)T,
            (long long)m->V, out);
    rc = 0;
done:
    sr_free(lg);
    sr_free(ad);
    sr_free(tok);
    sr_seq_free(s);
    sr_model_free(m);
    return rc;
}
