/* `strata run`: generate text (or token ids) with a model, through the public
 * API of runtime/strata.h only.
 *
 *   strata run -m DIR -p TEXT [-n N] [--system TEXT | --raw] [--adapter NAME] ...
 *   strata run -m DIR --chat [--system TEXT] [--adapter NAME]     (turns on stdin)
 *   strata run -m DIR --tokens 1,2,3 -n N [--json]                (ids in, ids out)
 *
 * Text is tokenized as HF does by default (added and special tokens written
 * in it are matched) and, unless --raw, wrapped in the Granite chat format
 * with the generation prompt.  Generated text streams to stdout; a one-line
 * summary (tokens/s of prefill and decode, memory) goes to stderr.  With
 * --tokens the generated ids are printed comma-separated on one line and no
 * summary is printed unless --stats.  Generation stops at the config's
 * eos_token_id (unless --ignore-eos), at --stop-token ID, once the text
 * contains --stop STRING, after -n tokens (-1: no limit, as llama.cpp), or when
 * the context is full.
 *
 * Placement (--devices, --max-memory, --strategy, --device-map, --host-exec,
 * --prefetch; as `strata plan`) puts the units on accelerators through the
 * API; the summary then also reports what each tier holds against its plan,
 * the bytes streamed per generated token against the plan's prediction and
 * the overlap of copies with compute.  --logits FILE writes the logits that
 * chose each generated token (f32 rows of vocab_size), to compare runs. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "runtime/strata.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/placement_args.h"
#include "tools/token_args.h"
#include "tools/utf8_stream.h"

#define DEFAULT_MAX_NEW 128

static void usage(FILE *f)
{
    fprintf(f,
        "usage: strata run -m DIR (-p TEXT | -f FILE | --chat | --tokens ID,ID,...) [options]\n"
        "  -m, --model DIR     model directory (config.json, safetensors, tokenizer.json)\n"
        "  -p, --prompt TEXT   the user's message (`-` reads stdin)\n"
        "  -f, --file FILE     the user's message: the whole file\n"
        "  --chat              interactive: one user turn per stdin line, the KV cache is kept\n"
        "                      across turns (only what changed is recomputed)\n"
        "  --tokens IDS        prompt as token ids; prints the generated ids\n"
        "  -n, --max-new N     tokens to generate (default %d; -1: until the stop token\n"
        "                      or text, or until the context is full)\n"
        "  --system TEXT       system message of the chat format\n"
        "  --raw               the prompt as is, without the chat template\n"
        "  --no-special        with --raw: special tokens written in the prompt are plain\n"
        "                      text\n"
        "  --adapter NAME      activate a Granite Switch adapter (see `strata adapters`)\n"
        "  --adapter-kind K    lora | alora: where its control token goes (default: the model's)\n"
        "  --show-adapter      report the adapter index of every generated token\n"
        "  --temp T            sampling temperature (default 0: greedy)\n"
        "  --top-k K           keep the K most likely tokens (0: off)\n"
        "  --top-p P           nucleus sampling mass (1: off)\n"
        "  -s, --seed S        random seed (default 0)\n"
        "  --stop STRING       stop once the generated text contains STRING\n"
        "  --stop-token ID     stop after generating ID (instead of eos_token_id)\n"
        "  --ignore-eos        do not stop at the config's eos_token_id\n"
        "  -c, --ctx N         context positions (default: what prompt + N need, at least\n"
        "                      4096, at most max_position_embeddings)\n"
        CLI_KV_TYPE_USAGE
        "  -t, --threads N     compute threads (default: OpenMP's)\n"
        "  --tokenizer FILE    tokenizer.json to use instead of DIR/tokenizer.json\n"
        "  --json              print one JSON object (ids, text, adapter indices, timings)\n"
        "  --stats / --quiet   force / suppress the summary line on stderr\n"
        "  --check             refuse weights holding NaN or Inf\n"
        "  --logits FILE       write the logits that chose each generated token (raw f32,\n"
        "                      one row of vocab_size per token)\n", DEFAULT_MAX_NEW);
    placement_args_usage(f);
    fprintf(f,
        "  the context (--ctx, default min(max_position_embeddings, 4096)) is planned at\n"
        "  load: a longer prompt + -n needs a larger --ctx\n" CLI_KERNEL_ENV_USAGE);
}

typedef struct run_opts {
    const char *model, *prompt, *tokens, *system, *adapter, *adapter_kind, *stop, *tokenizer;
    const char *logits, *kv_type, *prompt_file;
    char *file_text;            /* -f FILE's contents (owned), then also `prompt` */
    placement_args place;
    long long n_new, ctx, top_k, stop_token, threads;
    bool n_set;                 /* -n given (-1: no limit but the context) */
    unsigned long long seed;
    double temp, top_p;
    bool chat, raw, no_special, show_adapter, ignore_eos, json, stats, quiet, check;
} run_opts;

static bool placed(const run_opts *o)
{
    return placement_args_placed(&o->place);
}

static int check_placement_args(const run_opts *o)
{
    if (placement_args_check(&o->place, "strata run")) return 2;
    if (o->logits && o->chat) {
        fprintf(stderr, "strata run: --logits works with -p or --tokens, not --chat\n");
        return 2;
    }
    return 0;
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_new = -1;
    o->stop_token = -2;
    o->top_p = 1;
    placement_args_init(&o->place);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 1; }
        bool *flag = !strcmp(a, "--chat") ? &o->chat : !strcmp(a, "--raw") ? &o->raw
                   : !strcmp(a, "--no-special") ? &o->no_special
                   : !strcmp(a, "--show-adapter") ? &o->show_adapter
                   : !strcmp(a, "--ignore-eos") ? &o->ignore_eos : !strcmp(a, "--json") ? &o->json
                   : !strcmp(a, "--stats") ? &o->stats : !strcmp(a, "--quiet") ? &o->quiet
                   : !strcmp(a, "--check") ? &o->check : NULL;
        if (flag) { *flag = true; continue; }
        if (i + 1 == argc) {
            static const char *const valued[] = {
                "-m", "--model", "-p", "--prompt", "-f", "--file", "--tokens", "--system",
                "--adapter", "--adapter-kind", "--stop", "--tokenizer", "--logits", "-n",
                "--max-new", "-c", "--ctx", "--kv-type", "--top-k", "--stop-token", "-t",
                "--threads", "-s", "--seed", "--temp", "--top-p",
                NULL};
            if (placement_args_is_flag(a) || cli_flag_in(a, valued)) {
                fprintf(stderr, "strata run: %s needs a value\n", a);
            } else {
                fprintf(stderr, "strata run: unknown option '%s'\n", a);
                usage(stderr);
            }
            return 2;
        }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        int taken = placement_args_take(&o->place, "strata run", a, v);
        if (taken < 0) return 2;
        if (taken) continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->prompt_file = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--adapter")) o->adapter = v;
        else if (!strcmp(a, "--adapter-kind")) o->adapter_kind = v;
        else if (!strcmp(a, "--stop")) o->stop = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(a, "--logits")) o->logits = v;
        else if (!strcmp(a, "--kv-type")) {
            if (cli_check_kv_type("strata run", v)) return 2;
            o->kv_type = v;
        }
        else if (!strcmp(a, "-n") || !strcmp(a, "--max-new")) {
            o->n_new = strtoll(v, &end, 10);
            o->n_set = true;
        }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) o->ctx = strtoll(v, &end, 10);
        else if (!strcmp(a, "--top-k")) o->top_k = strtoll(v, &end, 10);
        else if (!strcmp(a, "--stop-token")) o->stop_token = strtoll(v, &end, 10);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = strtoll(v, &end, 10);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) o->seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--temp")) o->temp = strtod(v, &end);
        else if (!strcmp(a, "--top-p")) o->top_p = strtod(v, &end);
        else {
            fprintf(stderr, "strata run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "strata run: %s: '%s' is not a number\n", a, v);
            return 2;
        }
        if (end && errno == ERANGE) {
            fprintf(stderr, "strata run: %s: '%s' is out of range\n", a, v);
            return 2;
        }
    }
    int modes = !!o->prompt + !!o->prompt_file + !!o->tokens;
    if (!o->model || (modes == 0 && !o->chat) || modes > 1 || (o->chat && o->tokens)) {
        fprintf(stderr, "strata run: need --model and exactly one of -p TEXT, -f FILE, "
                "--tokens IDS (or --chat)\n");
        usage(stderr);
        return 2;
    }
    if (o->n_set && o->n_new < -1) {
        fprintf(stderr, "strata run: -n %lld: expected N >= 0, or -1 (until the stop token or "
                "text, or until the context is full)\n", o->n_new);
        return 2;
    }
    if (o->tokens && !o->n_set) {
        fprintf(stderr, "strata run: --tokens needs -n N\n");
        return 2;
    }
    if (!o->n_set) o->n_new = DEFAULT_MAX_NEW;
    if (!(o->temp >= 0) || !(o->top_p > 0 && o->top_p <= 1) || o->top_k < 0 || o->top_k > INT32_MAX ||
        o->ctx < 0 || o->threads < 0 || o->threads > 4096 || o->stop_token < -2 ||
        o->stop_token > INT32_MAX) {
        fprintf(stderr, "strata run: need --temp >= 0, 0 < --top-p <= 1, --top-k >= 0, --ctx >= 0, "
                "--threads >= 0, --stop-token >= 0\n");
        return 2;
    }
    /* options that would otherwise be ignored without a word */
    if (o->no_special && !o->raw) {
        fprintf(stderr, "strata run: --no-special needs --raw (the chat format's own markers are "
                "special tokens, so the formatted prompt is tokenized with them)\n");
        return 2;
    }
    if (o->chat && (o->json || o->raw)) {
        fprintf(stderr, "strata run: --chat streams each reply as text in the chat format: "
                "--%s does not apply\n", o->json ? "json" : "raw");
        return 2;
    }
    if (o->chat && o->prompt && !strcmp(o->prompt, "-")) {
        fprintf(stderr, "strata run: --chat reads its turns from stdin: give the first message "
                "as -p TEXT or -f FILE, not -p -\n");
        return 2;
    }
    if (o->adapter_kind && strcmp(o->adapter_kind, "lora") && strcmp(o->adapter_kind, "alora")) {
        fprintf(stderr, "strata run: --adapter-kind must be lora or alora\n");
        return 2;
    }
    if (o->stop && !*o->stop) {
        fprintf(stderr, "strata run: --stop needs a non-empty string\n");
        return 2;
    }
    return check_placement_args(o);
}

/* ---- loading ----------------------------------------------------------------- */

static void progress_bar(double f, void *user)
{
    (void)user;
    int w = 30, k = (int)(f * w + 0.5);
    fprintf(stderr, "\rloading [%.*s%*s] %3d%%", k, "##############################", w - k, "",
            (int)(f * 100 + 0.5));
    if (f >= 1) fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

/* ---- generation callback ---------------------------------------------------- */

typedef struct gen_out {
    const strata_model *m;
    strata_session *s;
    FILE *logits;               /* --logits: the logits that chose each token */
    bool io_error;
    int32_t stop_id;            /* not printed */
    bool stream;                /* print pieces as they come */
    utf8_stream u;
    int32_t *ids;
    int *adapters;
    size_t n, cap;
    bool oom;
} gen_out;

static int on_token(int32_t tok, int adapter, void *user)
{
    gen_out *g = user;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 256;
        int32_t *ni = realloc(g->ids, cap * sizeof *ni);
        if (ni) g->ids = ni;
        int *na = ni ? realloc(g->adapters, cap * sizeof *na) : NULL;
        if (na) g->adapters = na;
        if (!ni || !na) {
            g->oom = true;
            return 1;
        }
        g->cap = cap;
    }
    g->ids[g->n] = tok;
    g->adapters[g->n++] = adapter;
    if (g->s && g->n == 1) strata_session_reset_transfers(g->s);   /* decode only from here */
    if (g->logits) {
        strata_model_info mi;
        strata_model_get_info(g->m, &mi);
        const float *lg = strata_session_logits(g->s);
        if (!lg || fwrite(lg, sizeof *lg, (size_t)mi.vocab_size, g->logits) !=
                       (size_t)mi.vocab_size) {
            g->io_error = true;
            return 1;
        }
    }
    if (g->stream && tok != g->stop_id && !strata_token_is_special(g->m, tok)) {
        size_t len;
        const char *piece = strata_token_piece(g->m, tok, &len);
        if (piece) utf8_stream_write(&g->u, piece, len);
        fflush(stdout);
    }
    return 0;
}

static const char *stop_name(strata_stop_reason r)
{
    switch (r) {
    case STRATA_STOP_TOKEN: return "stop_token";
    case STRATA_STOP_TEXT: return "stop_text";
    case STRATA_STOP_CALLBACK: return "callback";
    case STRATA_STOP_CONTEXT: return "context";
    default: return "length";
    }
}

static void print_ids(FILE *f, const int32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", v[i]);
}

static void print_ints(FILE *f, const int *v, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", v[i]);
}

static double rate(double n, double s)
{
    return s > 0 ? n / s : 0.0;
}

/* ---- placement report ------------------------------------------------------- */

/* Bytes per decode step: the counters restart at the first generated token,
 * so they cover the steps that fed the generated tokens back. */
static uint64_t per_pass(uint64_t bytes, uint64_t passes)
{
    return passes ? bytes / passes : 0;
}

/* What the copies overlapped, in words (sim and cpu copy synchronously). */
static const char *overlap_words(const strata_placement *pl)
{
    if (!pl->n_streamed) return "nothing streamed";
    if (pl->async_copies) return "asynchronous copies (overlap not measured)";
    return pl->stream_tier && !strncmp(pl->stream_tier, "sim:", 4)
               ? "copies on sim are synchronous: no overlap with compute"
               : "copies are synchronous: no overlap with compute";
}

static void print_placement(const strata_model *m, const strata_session *s)
{
    strata_placement pl;
    strata_transfer_stats tr;
    if (strata_model_placement(m, &pl, NULL) || !pl.n_tiers ||
        strata_session_transfers(s, &tr, NULL))
        return;
    char b[8][32];
    fprintf(stderr, "strata: placement %s, ctx %lld; %s\n", pl.strategy, (long long)pl.ctx,
            pl.host_exec_reason);
    fprintf(stderr, "strata:   %-7s %11s %11s %11s  = weights + KV + staging + derived + reserve\n",
            "tier", "used", "planned", "budget");
    for (int t = 0; t < pl.n_tiers; t++) {
        const strata_tier_usage *u = &pl.tiers[t];
        fprintf(stderr, "strata:   %-7s %11s %11s %11s  = %s + %s + %s + %s + %s\n", u->name,
                cli_fmt_bytes(u->used, b[0], 32), cli_fmt_bytes(u->planned, b[1], 32),
                cli_fmt_bytes(u->budget, b[2], 32), cli_fmt_bytes(u->weights, b[3], 32),
                cli_fmt_bytes(u->kv, b[4], 32), cli_fmt_bytes(u->staging, b[5], 32),
                cli_fmt_bytes(u->derived, b[6], 32), cli_fmt_bytes(u->reserve, b[7], 32));
    }
    if (!tr.passes) {
        fprintf(stderr, "strata: no decode step ran (-n 1): nothing to report per token\n");
        return;
    }
    fprintf(stderr, "strata: per generated token (%llu decode steps): streamed %s (plan: %s), "
            "activations %s, step data %s, logits %s\n", (unsigned long long)tr.passes,
            cli_fmt_bytes(per_pass(tr.streamed, tr.passes), b[0], 32),
            cli_fmt_bytes(pl.stream_bytes_per_token, b[1], 32),
            cli_fmt_bytes(per_pass(tr.activations, tr.passes), b[2], 32),
            cli_fmt_bytes(per_pass(tr.metadata, tr.passes), b[3], 32),
            cli_fmt_bytes(per_pass(tr.logits, tr.passes), b[4], 32));
    fprintf(stderr, "strata: %s; copies %.3f ms of %.3f ms per token (plan predicted %.3f ms "
            "per token)\n", overlap_words(&pl), tr.copy_s * 1e3 / (double)tr.passes,
            tr.run_s * 1e3 / (double)tr.passes, pl.predicted_s_per_token * 1e3);
}

static void placement_json(const strata_model *m, const strata_session *s)
{
    strata_placement pl;
    strata_transfer_stats tr;
    if (strata_model_placement(m, &pl, NULL) || !pl.n_tiers ||
        strata_session_transfers(s, &tr, NULL))
        return;
    printf(", \"placement\": {\"strategy\": \"%s\", \"host_exec\": \"%s\", \"ctx\": %lld, "
           "\"tiers\": [", pl.strategy, pl.host_exec, (long long)pl.ctx);
    for (int t = 0; t < pl.n_tiers; t++) {
        const strata_tier_usage *u = &pl.tiers[t];
        printf("%s{\"name\": \"%s\", \"used\": %llu, \"peak\": %llu, \"planned\": %llu, "
               "\"budget\": %llu, \"weights\": %llu, \"kv\": %llu, \"staging\": %llu, "
               "\"derived\": %llu, \"reserve\": %llu, \"units\": %d}", t ? ", " : "", u->name,
               (unsigned long long)u->used, (unsigned long long)u->peak,
               (unsigned long long)u->planned, (unsigned long long)u->budget,
               (unsigned long long)u->weights, (unsigned long long)u->kv,
               (unsigned long long)u->staging, (unsigned long long)u->derived,
               (unsigned long long)u->reserve, u->n_units);
    }
    printf("], \"streamed_layers\": %d, \"stream_tier\": ", pl.n_streamed);
    if (pl.stream_tier) printf("\"%s\"", pl.stream_tier);
    else printf("null");
    printf(", \"prefetch\": %d, \"slots\": %d, \"planned_stream_bytes_per_token\": %llu, "
           "\"predicted_s_per_token\": %.9f, \"decode_passes\": %llu, "
           "\"stream_bytes_per_token\": %llu, \"activation_bytes_per_token\": %llu, "
           "\"metadata_bytes_per_token\": %llu, \"logit_bytes_per_token\": %llu, "
           "\"decode_s\": %.6f, \"copy_s\": %.6f, \"async_copies\": %s, \"overlap\": %.3f}",
           pl.prefetch, pl.slots, (unsigned long long)pl.stream_bytes_per_token,
           pl.predicted_s_per_token, (unsigned long long)tr.passes,
           (unsigned long long)per_pass(tr.streamed, tr.passes),
           (unsigned long long)per_pass(tr.activations, tr.passes),
           (unsigned long long)per_pass(tr.metadata, tr.passes),
           (unsigned long long)per_pass(tr.logits, tr.passes), tr.run_s, tr.copy_s,
           pl.async_copies ? "true" : "false", tr.overlap);
}

static void print_json(const strata_model *m, const strata_session *s, const int32_t *prompt,
                       size_t n_prompt, const gen_out *g, const strata_generate_result *r,
                       size_t reused)
{
    printf("{\"prompt\": [");
    print_ids(stdout, prompt, n_prompt);
    printf("], \"generated\": [");
    print_ids(stdout, g->ids, g->n);
    printf("], \"adapter_indices\": [");
    for (size_t i = 0; i < strata_session_length(s); i++)
        printf("%s%d", i ? "," : "", strata_session_adapter_at(s, i));
    printf("], \"generated_adapters\": [");
    print_ints(stdout, g->adapters, g->n);
    printf("]");
    char *text = NULL;
    if (strata_detokenize(m, g->ids, g->n, 1, &text, NULL, NULL) == STRATA_OK) {
        printf(", \"text\": ");
        cli_json_str(stdout, text);
        strata_free(text);
    }
    printf(", \"stop\": \"%s\", \"n_prompt\": %zu, \"n_reused\": %zu, \"n_generated\": %zu,",
           stop_name(r->stop), n_prompt, reused, g->n);
    printf(" \"prefill_s\": %.6f, \"decode_s\": %.6f, \"ttft_s\": %.6f,", r->prefill_s, r->decode_s,
           r->ttft_s);
    printf(" \"prefill_tok_s\": %.3f, \"decode_tok_s\": %.3f",
           rate((double)r->n_prompt, r->prefill_s),
           g->n > 1 ? rate((double)(g->n - 1), r->decode_s) : 0.0);
    placement_json(m, s);
    printf("}\n");
}

static void print_summary(const strata_model *m, const strata_session *s,
                          const strata_generate_result *r, size_t reused)
{
    strata_model_info mi;
    strata_model_get_info(m, &mi);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char w[80], kv[32], rss[32];
    cli_fmt_bytes(mi.weight_bytes, w, sizeof w);
    if (mi.kernel_layout_bytes) { /* the kernels' tiled copy (bf16; int8 mode: 4/8-bit) */
        char t[32];
        cli_fmt_bytes(mi.kernel_layout_bytes, t, sizeof t);
        snprintf(w + strlen(w), sizeof w - strlen(w), " (+%s tiles)", t);
    }
    cli_fmt_bytes(strata_model_session_bytes(m, strata_session_ctx(s)), kv, sizeof kv);
    cli_fmt_bytes((uint64_t)ru.ru_maxrss * 1024, rss, sizeof rss);
    fprintf(stderr, "strata: %lld prompt tokens", (long long)r->n_prompt);
    if (reused) fprintf(stderr, " (+%zu cached)", reused);
    fprintf(stderr, " at %.1f tok/s, %lld generated at %.1f tok/s (%s); weights %s, KV %s, "
            "peak RSS %s\n", rate((double)r->n_prompt, r->prefill_s), (long long)r->n_generated,
            r->n_generated > 1 ? rate((double)(r->n_generated - 1), r->decode_s) : 0.0,
            stop_name(r->stop), w, kv, rss);
    print_placement(m, s);
}

static void print_adapters(const strata_model *m, const gen_out *g)
{
    fprintf(stderr, "strata: adapter per generated token: ");
    print_ints(stderr, g->adapters, g->n);
    int last = -1;
    for (size_t i = 0; i < g->n; i++)
        if (g->adapters[i] != last) {
            last = g->adapters[i];
            strata_adapter_info ai;
            fprintf(stderr, "%s%d=%s", i ? ", " : " (", last,
                    last == 0 ? "base"
                    : strata_model_adapter(m, last, &ai, NULL) == STRATA_OK ? ai.name : "?");
        }
    fprintf(stderr, "%s\n", g->n ? ")" : "");
}

/* ---- prompts ------------------------------------------------------------------ */

/* Raw text or ids with an adapter: LoRA's control token first, otherwise
 * (aLoRA) last, where the generation starts. */
static int insert_control(const strata_model *m, int adapter, strata_adapter_kind kind,
                          int32_t **ids, size_t *n)
{
    strata_adapter_info ai;
    if (!adapter || strata_model_adapter(m, adapter, &ai, NULL)) return 0;
    if (kind == STRATA_ADAPTER_UNKNOWN) kind = ai.kind;
    int32_t *v = realloc(*ids, (*n + 1) * sizeof *v);
    if (!v) return -1;
    if (kind == STRATA_ADAPTER_LORA) {
        memmove(v + 1, v, *n * sizeof *v);
        v[0] = ai.token;
    } else {
        v[*n] = ai.token;
    }
    *ids = v;
    (*n)++;
    return 0;
}

/* Copies an API array into malloc'd memory the CLI owns. */
static int32_t *own_ids(int32_t *api, size_t n)
{
    int32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (v && n) memcpy(v, api, n * sizeof *v);
    strata_free(api);
    return v;
}

static char *read_all(FILE *f)
{
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    if (b) b[n] = 0;
    return b;
}

/* ---- the command ---------------------------------------------------------------- */

typedef struct run_ctx {
    run_opts o;
    strata_model *m;
    strata_model_info mi;
    int adapter;
    strata_adapter_kind kind;
    strata_generate_params gp;
} run_ctx;

static int open_model(run_ctx *c)
{
    strata_model_params mp = strata_model_default_params();
    mp.check_finite = c->o.check;
    mp.n_threads = (int)c->o.threads;
    mp.tokenizer = c->o.tokenizer;
    mp.kv_type = c->o.kv_type;
    if (placed(&c->o)) {
        /* the context is planned at load (KV caches on the tiers) */
        mp.n_ctx = c->o.ctx;
        placement_args_to_params(&c->o.place, &mp);
    }
    if (!c->o.quiet && isatty(STDERR_FILENO)) mp.progress = progress_bar;
    strata_error err;
    if (strata_model_open(c->o.model, &mp, &c->m, &err)) {
        fprintf(stderr, "strata run: %s\n", err.message);
        return 1;
    }
    strata_model_get_info(c->m, &c->mi);
    if (c->o.adapter && (c->adapter = strata_model_find_adapter(c->m, c->o.adapter, &err)) < 0) {
        fprintf(stderr, "strata run: %s\n", err.message);
        return 1;
    }
    c->kind = !c->o.adapter_kind ? STRATA_ADAPTER_UNKNOWN
              : !strcmp(c->o.adapter_kind, "lora") ? STRATA_ADAPTER_LORA : STRATA_ADAPTER_ALORA;
    if ((c->o.prompt || c->o.chat || c->o.stop) && !c->mi.has_tokenizer) {
        fprintf(stderr, "strata run: model %s has no tokenizer.json (text needs one; use --tokens "
                "or --tokenizer FILE)\n", c->o.model);
        return 1;
    }
    c->gp = strata_generate_default_params();
    c->gp.max_tokens = c->o.n_new < 0 ? INT64_MAX : c->o.n_new; /* -1: the context ends it */
    c->gp.stop_token = c->o.stop_token >= 0 ? (int32_t)c->o.stop_token
                       : c->o.ignore_eos ? -1 : STRATA_STOP_EOS;
    c->gp.stop_text = c->o.stop;
    return 0;
}

/* Positions a prompt of n tokens and n_new new ones take (the last new
 * token is not fed back); saturates instead of overflowing. */
static int64_t positions(size_t n, long long n_new)
{
    int64_t extra = n_new > 0 ? n_new - 1 : 0;
    return extra > INT64_MAX - (int64_t)n ? INT64_MAX : (int64_t)n + extra;
}

/* The context of the session: --ctx, else enough for prompt + N new tokens
 * and at least the model's default, within max_position_embeddings. */
static int64_t choose_ctx(const run_ctx *c, size_t n_prompt)
{
    if (c->o.ctx) return c->o.ctx;
    int64_t need = positions(n_prompt, c->o.n_new);
    int64_t ctx = need > c->mi.default_ctx ? need : c->mi.default_ctx;
    if (c->mi.max_position_embeddings > 0 && ctx > c->mi.max_position_embeddings)
        ctx = c->mi.max_position_embeddings;
    return ctx;
}

static int create_session(const run_ctx *c, int64_t ctx, strata_session **s)
{
    strata_session_params sp = strata_session_default_params();
    sp.n_ctx = ctx;
    sp.sampling = (strata_sampling){.temperature = (float)c->o.temp, .top_k = (int)c->o.top_k,
                                    .top_p = (float)c->o.top_p, .seed = c->o.seed};
    strata_error err;
    if (strata_session_create(c->m, &sp, s, &err)) {
        fprintf(stderr, "strata run: %s\n", err.message);
        return 1;
    }
    return 0;
}

static int32_t resolved_stop(const run_ctx *c)
{
    return c->gp.stop_token == STRATA_STOP_EOS ? c->mi.eos_token : c->gp.stop_token;
}

/* One prompt, one generation (-p or --tokens). */
static int run_once(run_ctx *c)
{
    const run_opts *o = &c->o;
    int32_t *ids = NULL;
    size_t n = 0;
    strata_error err;
    int rc = 1;
    strata_session *s = NULL;
    gen_out g = {.m = c->m, .stop_id = resolved_stop(c), .stream = o->prompt && !o->json};
    utf8_stream_init(&g.u, stdout);
    char *stdin_text = NULL;
    if (o->tokens) {
        int64_t T = parse_token_list("run", o->tokens, &ids);
        if (T < 0) return 2;
        n = (size_t)T;
        ids = own_ids(ids, n);
        if (!ids || insert_control(c->m, c->adapter, c->kind, &ids, &n)) goto oom;
    } else {
        const char *text = o->prompt;
        if (!o->file_text && !strcmp(text, "-") && !(text = stdin_text = read_all(stdin)))
            goto oom;
        int32_t *api;
        strata_status st;
        if (o->raw) {
            st = strata_tokenize(c->m, text, strlen(text),
                                 o->no_special ? STRATA_TOKENIZE_SPECIAL_AS_TEXT : 0, &api, &n, &err);
        } else {
            strata_chat_message msgs[2] = {{"system", o->system}, {"user", text}};
            int k = o->system ? 0 : 1;
            st = strata_chat_tokens(c->m, msgs + k, 2 - (size_t)k, 1, c->adapter, c->kind, &api, &n,
                                    &err);
        }
        if (st) {
            fprintf(stderr, "strata run: %s\n", err.message);
            goto done;
        }
        if (!(ids = own_ids(api, n))) goto oom;
        if (o->raw && insert_control(c->m, c->adapter, c->kind, &ids, &n)) goto oom;
    }
    if (n == 0) {
        fprintf(stderr, "strata run: empty prompt: %s holds no token\n", o->tokens   ? "--tokens"
                                                               : o->file_text ? "-f" : "-p");
        goto done;
    }
    int64_t ctx = choose_ctx(c, n);
    const char *why = o->ctx ? "--ctx" : "max_position_embeddings";
    if ((int64_t)n > ctx) {
        fprintf(stderr, "strata run: prompt of %zu tokens is longer than the context of %lld "
                "positions (%s)\n", n, (long long)ctx, why);
        goto done;
    }
    if (o->tokens && positions(n, o->n_new) > ctx) {
        fprintf(stderr, "strata run: prompt of %zu tokens + %lld new tokens exceeds the context "
                "of %lld positions (%s)\n", n, o->n_new, (long long)ctx, why);
        goto done;
    }
    if (placed(o) && !o->ctx && ctx > c->mi.default_ctx) {
        fprintf(stderr, "strata run: prompt of %zu tokens + %lld new tokens need %lld positions; "
                "the placement was planned for %lld: pass --ctx %lld\n", n,
                o->n_new > 0 ? o->n_new : 0, (long long)ctx, (long long)c->mi.default_ctx,
                (long long)ctx);
        goto done;
    }
    if (create_session(c, ctx, &s)) goto done;
    if (o->logits && !(g.logits = fopen(o->logits, "wb"))) {
        fprintf(stderr, "strata run: --logits %s: %s\n", o->logits, strerror(errno));
        goto done;
    }
    g.s = s;
    c->gp.on_token = on_token;
    c->gp.user = &g;
    strata_generate_result r;
    if (strata_generate(s, ids, n, &c->gp, &r, &err)) {
        if (g.stream) utf8_stream_flush(&g.u);
        fprintf(stderr, "%sstrata run: %s\n", g.stream && g.n ? "\n" : "", err.message);
        goto done;
    }
    if (g.oom) goto oom;
    if (g.io_error || (g.logits && fclose(g.logits))) {
        g.logits = NULL;
        fprintf(stderr, "strata run: --logits %s: write failed: %s\n", o->logits, strerror(errno));
        goto done;
    }
    g.logits = NULL;
    if (o->json) {
        print_json(c->m, s, ids, n, &g, &r, 0);
    } else if (o->tokens) {
        print_ids(stdout, g.ids, g.n);
        printf("\n");
    } else {
        utf8_stream_flush(&g.u);
        printf("\n");
    }
    fflush(stdout);
    if (o->show_adapter && !o->json) print_adapters(c->m, &g);
    if (!o->quiet && !o->json && (o->stats || !o->tokens)) print_summary(c->m, s, &r, 0);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "strata run: out of memory\n");
done:
    if (g.logits) fclose(g.logits);
    free(stdin_text);
    free(ids);
    free(g.ids);
    free(g.adapters);
    strata_session_free(s);
    return rc;
}

/* Conversation kept as messages; each turn is re-rendered (as HF's template
 * would) and only what differs from the cached tokens is recomputed. */
typedef struct convo {
    strata_chat_message *msgs;
    char **owned;               /* contents this command allocated */
    size_t n, cap;
} convo;

static int convo_add(convo *cv, const char *role, char *content)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? 2 * cv->cap : 16;
        strata_chat_message *nm = realloc(cv->msgs, cap * sizeof *nm);
        if (nm) cv->msgs = nm;
        char **no = nm ? realloc(cv->owned, cap * sizeof *no) : NULL;
        if (no) cv->owned = no;
        if (!nm || !no) return -1;
        cv->cap = cap;
    }
    cv->msgs[cv->n] = (strata_chat_message){role, content};
    cv->owned[cv->n++] = content;
    return 0;
}

static int run_chat(run_ctx *c)
{
    const run_opts *o = &c->o;
    const bool tty = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    convo cv = {0};
    strata_session *s = NULL;
    int rc = 1;
    char *line = NULL;
    size_t line_cap = 0;
    gen_out g = {.m = c->m, .stop_id = resolved_stop(c), .stream = true};
    int64_t ctx = o->ctx ? o->ctx : c->mi.default_ctx;
    if (create_session(c, ctx, &s)) return 1;
    g.s = s;
    if (o->system) {
        char *sys = strdup(o->system);
        if (!sys || convo_add(&cv, "system", sys)) goto oom;
    }
    if (tty)
        fprintf(stderr, "strata chat: one message per line, Ctrl-D to end%s%s\n",
                o->adapter ? "; adapter " : "", o->adapter ? o->adapter : "");
    for (int turn = 0;; turn++) {
        char *user;
        if (turn == 0 && o->prompt) {
            user = strdup(o->prompt);
        } else {
            if (tty) fprintf(stderr, "> ");
            ssize_t len = getline(&line, &line_cap, stdin);
            if (len < 0) break;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) { turn--; continue; }
            user = strdup(line);
        }
        if (!user || convo_add(&cv, "user", user)) goto oom;
        int32_t *ids;
        size_t n, reused = 0;
        strata_error err;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (strata_chat_tokens(c->m, cv.msgs, cv.n, 1, c->adapter, c->kind, &ids, &n, &err) ||
            strata_session_sync(s, ids, n, &reused, &err)) {
            fprintf(stderr, "strata chat: %s\n", err.message);
            strata_free(ids);
            goto done;
        }
        strata_free(ids);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        g.n = 0;
        utf8_stream_init(&g.u, stdout);
        c->gp.on_token = on_token;
        c->gp.user = &g;
        strata_generate_result r;
        strata_status st = strata_generate(s, NULL, 0, &c->gp, &r, &err);
        utf8_stream_flush(&g.u);
        printf("\n");
        fflush(stdout);
        if (st) {
            fprintf(stderr, "strata chat: %s\n", err.message);
            goto done;
        }
        if (g.oom) goto oom;
        r.n_prompt = (int64_t)(n - reused);      /* fed by the sync, not by generate */
        r.prefill_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (o->show_adapter) print_adapters(c->m, &g);
        if (!o->quiet) print_summary(c->m, s, &r, reused);
        /* the reply as the template will render it next turn */
        size_t keep = g.n && g.ids[g.n - 1] == g.stop_id ? g.n - 1 : g.n;
        char *reply = NULL;
        if (strata_detokenize(c->m, g.ids, keep, 1, &reply, NULL, &err)) {
            fprintf(stderr, "strata chat: %s\n", err.message);
            goto done;
        }
        char *mine = strdup(reply);
        strata_free(reply);
        if (!mine || convo_add(&cv, "assistant", mine)) goto oom;
        if (r.stop == STRATA_STOP_CONTEXT) {
            fprintf(stderr, "strata chat: the context of %lld positions is full\n", (long long)ctx);
            break;
        }
    }
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "strata chat: out of memory\n");
done:
    for (size_t i = 0; i < cv.n; i++) free(cv.owned[i]);
    free(cv.msgs);
    free(cv.owned);
    free(line);
    free(g.ids);
    free(g.adapters);
    strata_session_free(s);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    run_ctx c;
    memset(&c, 0, sizeof c);
    int rc = parse_args(argc, argv, &c.o);
    if (rc) return rc == 1 ? 0 : rc;
    if (c.o.prompt_file) {
        FILE *f = fopen(c.o.prompt_file, "rb");
        if (!f) {
            fprintf(stderr, "strata run: -f %s: %s\n", c.o.prompt_file, strerror(errno));
            return 1;
        }
        c.o.prompt = c.o.file_text = read_all(f);
        int bad = ferror(f);
        fclose(f);
        if (!c.o.file_text || bad) {
            fprintf(stderr, "strata run: -f %s: %s\n", c.o.prompt_file,
                    bad ? "read error" : "out of memory");
            free(c.o.file_text);
            return 1;
        }
    }
    if ((rc = open_model(&c)) == 0) rc = c.o.chat ? run_chat(&c) : run_once(&c);
    strata_model_free(c.m);
    free(c.o.file_text);
    return rc;
}
