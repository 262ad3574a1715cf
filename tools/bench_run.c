/* `strata bench run`: the whole CPU forward pass on a real model directory.
 *
 * Prefill of --prompt tokens (one sr_forward call, logits of the last token
 * only, as generation does), then --gen decode steps, each feeding back the
 * greedy token.  Reported: prefill tokens/s, decode tokens/s, time to first
 * token (prefill + choosing the first token), load time, peak RSS.
 *
 * Decode is bound by memory reads: every step reads every weight byte once
 * (+ the KV cache so far).  A bandwidth probe (tools/bandwidth.h) runs in
 * the same process, one pass right before every decode step, so the probe
 * and the steps see the same load on the machine.  The bandwidth-bound
 * ceiling is bytes read per mean decode step / best probe GB/s; decode is
 * reported as a fraction of it: for the whole decode phase (`ratio`) and for
 * the single fastest step (`best_step_ratio`: best against best, what the
 * code achieves while the cores are not taken by others), and step by step
 * against the probe pass just before it (`paired_ratio_*`: median and
 * quartiles; on a host whose bandwidth moves within a run, the best probe
 * can come from a faster minute than most steps).  On the CPU path each step
 * is also held to a plain read of its own weight bytes (bw_read_regions, in
 * the step's order) right before the probe pass (`own_read_*`): on a VM the
 * probe's buffer can read faster than the memory the weights sit in, and
 * this ratio separates what the kernels lose from what their memory does.
 * CPU time of the
 * process is shown next to wall time: on a loaded machine their gap says
 * how much of the wall time others took.  Each of --runs repetitions starts a fresh sequence;
 * the best run is reported.  Tokens are fixed pseudo-random ids that are not
 * control tokens.  The kernels' numerics follow the environment
 * (STRATA_PREFILL=bf16, STRATA_KERNELS=int8, quant/matmul.h) and are named
 * in the output.
 *
 * Placement: with --devices other than cpu (and the other flags of
 * tools/placement_args.h) the model is placed as strata_model_open does for
 * devices (offload/placement.h: plan, then every unit copied onto its tier)
 * and every pass runs on the placement's executor.  The report then adds
 * each tier's memory (used, peak, planned, budget), the weight bytes
 * streamed per decode step (planned; counted by the executor and, on sim,
 * by the devices, which count every byte copied in or out), the copy time
 * and whether copies overlap compute.  Without placement flags the passes
 * are the plain sr_forward ones, as before. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "offload/placement.h"
#include "quant/matmul.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"
#include "tools/bandwidth.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/placement_args.h"
#include "tools/weight_regions.h"

typedef struct options {
    const char *model;
    int threads, prompt, gen, runs;
    int ctx;                    /* 0: prompt + gen */
    bool json;
    const char *kv_type;
    placement_args place;
} options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: strata bench run --model DIR [--threads N] [--prompt N] [--gen N] [--runs N] "
            "[--ctx N] [--kv-type T] [--json] [placement]\n"
            "  -m, --model DIR   model directory (config.json + safetensors)\n"
            "  -t, --threads N   OpenMP threads for the model and the bandwidth probe\n"
            "                    (default: all)\n"
            "  -p, --prompt N    prompt tokens to prefill (default 512)\n"
            "  -n, --gen N       decode steps (default 128)\n"
            "  -r, --runs N      repetitions, each on a fresh sequence; the best is reported "
            "(default 1)\n"
            "  -c, --ctx N       context positions of the sequence (default prompt + gen); a\n"
            "                    placement plans its KV cache for them\n"
            "  --kv-type T       KV cache elements: f32 (default) or bf16 (half the memory)\n"
            "  --json            one JSON object on stdout instead of text\n"
            "  (-p/-n/-t/-r as llama-bench)\n");
    placement_args_usage(f);
    fprintf(f,
            "  placed, every pass runs on the placement's executor (as in `strata run`); the\n"
            "  report adds each tier's memory used against its budget, the weight bytes streamed\n"
            "  per decode step (planned and counted), the copy time and whether copies overlap\n"
            "  compute, next to the tokens/s of prefill and decode for that placement\n"
            "Thread placement and waiting follow OpenMP's environment (e.g. OMP_PROC_BIND=close,\n"
            "OMP_WAIT_POLICY).\n" CLI_KERNEL_ENV_USAGE);
}

static int parse_count(const char *opt, const char *v, int lo, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > (1 << 24)) {
        fprintf(stderr, "strata bench run: %s: '%s' is not a count >= %d\n", opt, v, lo);
        return -1;
    }
    *out = (int)n;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->prompt = 512;
    o->gen = 128;
    o->runs = 1;
    placement_args_init(&o->place);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (i + 1 == argc) {
            static const char *const valued[] = {
                "--model", "-m", "--threads", "-t", "--prompt", "-p", "--gen", "-n",
                "--runs",  "-r", "--ctx",     "-c", "--kv-type", NULL};
            if (placement_args_is_flag(a) || cli_flag_in(a, valued)) {
                fprintf(stderr, "strata bench run: %s needs a value\n", a);
            } else {
                fprintf(stderr, "strata bench run: unknown option '%s'\n", a);
                usage(stderr);
            }
            return 2;
        }
        const char *v = argv[++i];
        int taken = placement_args_take(&o->place, "strata bench run", a, v);
        if (taken < 0) return 2;
        if (taken) continue;
        int rc = 0;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t"))
            rc = parse_count(a, v, 1, &o->threads);
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p"))
            rc = parse_count(a, v, 1, &o->prompt);
        else if (!strcmp(a, "--gen") || !strcmp(a, "-n")) rc = parse_count(a, v, 0, &o->gen);
        else if (!strcmp(a, "--runs") || !strcmp(a, "-r")) rc = parse_count(a, v, 1, &o->runs);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = parse_count(a, v, 1, &o->ctx);
        else if (!strcmp(a, "--kv-type")) {
            rc = cli_check_kv_type("strata bench run", v);
            o->kv_type = v;
        } else {
            fprintf(stderr, "strata bench run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (rc) return 2;
    }
    if (!o->model) {
        fprintf(stderr, "strata bench run: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (placement_args_check(&o->place, "strata bench run")) return 2;
    if (o->ctx && o->ctx < o->prompt + o->gen) {
        fprintf(stderr, "strata bench run: --ctx %d: --prompt %d + --gen %d need %d positions\n",
                o->ctx, o->prompt, o->gen, o->prompt + o->gen);
        return 2;
    }
    return 0;
}

/* ---- bytes a decode step reads ------------------------------------------ */

/* What the kernels read of w: its 16-row tiles where the int8 kernels have
 * them (quant/qtile.h: f16 block scales, so fewer bytes than the f32 ones
 * of sr_qmatrix_bytes), else the stored weights and scales. */
static uint64_t matrix_read_bytes(const sr_qmatrix *w)
{
    if (w->tiles && sr_matmul_get_mode() == SR_MATMUL_INT8) return sr_qtile_bytes(w);
    return sr_qmatrix_bytes(w);
}

static uint64_t proj_bytes(const sr_proj *p)
{
    uint64_t b = 0;
    for (int i = 0; i < p->n_parts; i++) b += matrix_read_bytes(&p->w[i]);
    if (p->bias) b += (uint64_t)p->rows * sizeof(float);
    return b;
}

/* Weights one token reads: every projection, the norms, one embedding row
 * and the LM head.  LoRA stacks are left out: a token reads them only while
 * an adapter is active, and the benchmark's tokens activate none. */
static uint64_t weight_bytes_per_token(const sr_model *m)
{
    uint64_t b = matrix_read_bytes(&m->head) + (uint64_t)m->H * sizeof(float);
    b += m->embed.rows ? sr_qmatrix_bytes(&m->embed) / (uint64_t)m->embed.rows : 0;
    for (int l = 0; l < m->L; l++) {
        const sr_layer_weights *w = &m->layers[l];
        b += proj_bytes(&w->qkv) + proj_bytes(&w->o) + proj_bytes(&w->mlp_in) +
             proj_bytes(&w->mlp_out) + 2 * (uint64_t)m->H * sizeof(float);
        if (w->q_norm) b += 2 * (uint64_t)m->hd * sizeof(float);
    }
    return b;
}

/* K and V of every layer for `n` cached positions (what attention reads). */
static uint64_t kv_bytes_read(const sr_model *m, int64_t n)
{
    return 2 * (uint64_t)m->L * (uint64_t)(m->nkv * m->hd) * sr_kv_elem_bytes(m->kv_type) *
           (uint64_t)n;
}

/* The weight matrices of a decode step in the order it reads them (each
 * layer's projections, then the head), for a plain read of the same bytes
 * (bw_read_regions).  NULL if out of memory. */
static bw_region *weight_regions(const sr_model *m, size_t *n)
{
    const int tiles = 1; /* a model's tiles are what its decode reads (bf16; int8 mode: 4/8-bit) */
    size_t cap = SR_WEIGHT_REGIONS_MAX, k = 0;
    for (int l = 0; l < m->L; l++) {
        const sr_layer_weights *w = &m->layers[l];
        cap += SR_WEIGHT_REGIONS_MAX * (size_t)(w->qkv.n_parts + w->o.n_parts + w->mlp_in.n_parts +
                            w->mlp_out.n_parts);
    }
    bw_region *r = malloc(cap * sizeof *r);
    if (!r) return NULL;
    for (int l = 0; l < m->L; l++) {
        const sr_layer_weights *w = &m->layers[l];
        const sr_proj *p[4] = {&w->qkv, &w->o, &w->mlp_in, &w->mlp_out};
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < p[i]->n_parts; j++)
                k += (size_t)sr_weight_regions(&p[i]->w[j], tiles, r + k);
    }
    k += (size_t)sr_weight_regions(&m->head, tiles, r + k);
    *n = k;
    return r;
}

/* ---- what runs the passes ------------------------------------------------ */

/* The CPU forward pass on the benchmark's own sequence, or a placement's
 * executor (what strata_model_open builds for devices other than "cpu"; the
 * sequence is then the executor's). */
typedef struct runner {
    sr_seq *seq;
    sr_placement *pl;           /* NULL: the CPU path */
} runner;

static int runner_forward(runner *rn, const int32_t *ids, int64_t T, float *logits, sr_error *err)
{
    return rn->pl ? sr_offload_forward(rn->pl->exec, ids, T, logits, false, err)
                  : sr_forward(rn->seq, ids, T, logits, false, NULL, NULL, err);
}

static void runner_reset(runner *rn)
{
    if (rn->pl) sr_offload_reset(rn->pl->exec);
    else sr_seq_reset(rn->seq);
}

/* Plans the model over the placement flags for `ctx` positions and copies
 * every unit onto its tier, as the API does (runtime/strata_api.c). */
static int runner_place(runner *rn, const sr_model *m, const options *o, int64_t ctx,
                        int threads, sr_error *err)
{
    sr_placement_opts po = {.ctx = ctx, .threads = threads};
    placement_args_to_opts(&o->place, &po);
    if (sr_placement_create(m, &po, &rn->pl, NULL, err)) return -1;
    rn->seq = sr_offload_seq(rn->pl->exec);
    return 0;
}

/* What a placed run's decode steps moved: the executor's counts and the
 * accelerators' own (a sim device counts every byte copied in or out). */
typedef struct transfer_counts {
    sr_offload_stats exec;
    uint64_t dev_in, dev_out;   /* into / out of the accelerators, summed */
} transfer_counts;

static void collect_transfers(const sr_placement *pl, transfer_counts *x)
{
    x->exec = *sr_offload_get_stats(pl->exec);
    x->dev_in = x->dev_out = 0;
    for (int g = 0; g < pl->devs.n_gpu; g++) {
        const sr_xfer_stats *d = &pl->devs.gpu[g].moved;
        x->dev_in += d->h2d + d->d2d_in;
        x->dev_out += d->d2h + d->d2d_out;
    }
}

/* ---- the measurement ---------------------------------------------------- */

typedef struct run_result {
    double prefill_s, ttft_s, decode_s;
    double prefill_cpu_s, decode_cpu_s; /* CPU time of the process (all threads) */
    double best_step_s;         /* fastest single decode step */
    double *paired;             /* in: room for --gen values; out: each step's
                                 * GB/s over the probe pass right before it */
    double *own;                /* the same over a plain read of the step's weight
                                 * bytes right before it; NULL: not measured */
    double *probe;              /* in: room for --gen values; out: the GB/s of the
                                 * probe pass right before each step */
    double best_own_gbps;       /* fastest such read */
    transfer_counts xfer;       /* placed: what the decode steps moved */
} run_result;

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Fixed pseudo-random prompt of ids that are not control tokens (a control
 * token would switch adapters and make the runs differ from plain decode). */
static void make_prompt(const sr_model *m, int32_t *ids, int n)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        int32_t t;
        do {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            t = (int32_t)(s % (uint64_t)m->V);
        } while (m->cfg.gen != SR_GEN_NONE && sr_config_control_index(&m->cfg, t) >= 0);
        ids[i] = t;
    }
}

/* Decode feeds back greedy tokens; a control token among them is replaced
 * by the next id that is none, so every step is a plain decode step. */
static int32_t plain_token(const sr_model *m, int32_t t)
{
    while (m->cfg.gen != SR_GEN_NONE && sr_config_control_index(&m->cfg, t) >= 0)
        t = (int32_t)((t + 1) % m->V);
    return t;
}

/* CPU seconds of the process so far, every thread. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int one_run(runner *rn, const sr_model *m, const int32_t *prompt, const options *o,
                   float *logits, bw_probe *probe, const bw_region *regions, size_t nregions,
                   double *best_gbps, run_result *r, sr_error *err)
{
    double *paired = r->paired, *own = r->own, *probe_gbps = r->probe;
    memset(r, 0, sizeof *r);
    r->paired = paired;
    r->own = own;
    r->probe = probe_gbps;
    r->best_step_s = INFINITY;
    const double w_bytes = (double)weight_bytes_per_token(m), kv_per_key = (double)kv_bytes_read(m, 1);
    runner_reset(rn);
    double g = bw_probe_pass(probe);
    if (g > *best_gbps) *best_gbps = g;
    double t0 = now_s(), c0 = cpu_s();
    if (runner_forward(rn, prompt, o->prompt, logits, err)) return -1;
    r->prefill_s = now_s() - t0;
    r->prefill_cpu_s = cpu_s() - c0;
    int32_t tok = plain_token(m, argmax(logits, m->V));
    r->ttft_s = now_s() - t0;
    if (rn->pl) sr_offload_reset_moved(rn->pl->exec);   /* count the decode steps only */
    for (int i = 0; i < o->gen; i++) {
        double own_gbps = 0;
        if (r->own) { /* in the step's order: no byte the step needs first is left in cache */
            uint64_t sum;
            own_gbps = bw_read_regions(regions, nregions, probe->threads, &sum);
            probe->checksum += sum;
            if (own_gbps > r->best_own_gbps) r->best_own_gbps = own_gbps;
        }
        g = bw_probe_pass(probe);
        if (g > *best_gbps) *best_gbps = g;
        double t1 = now_s(), c1 = cpu_s();
        if (runner_forward(rn, &tok, 1, logits, err)) return -1;
        tok = plain_token(m, argmax(logits, m->V));
        double dt = now_s() - t1;
        r->decode_s += dt;
        r->decode_cpu_s += cpu_s() - c1;
        if (dt < r->best_step_s) r->best_step_s = dt;
        /* Step i reads the weights and the keys 0..prompt+i. */
        const double bytes = w_bytes + kv_per_key * (double)(o->prompt + i + 1);
        r->paired[i] = bytes / dt * 1e-9 / g;
        r->probe[i] = g;
        if (r->own) r->own[i] = own_gbps > 0 ? bytes / dt * 1e-9 / own_gbps : 0;
    }
    if (rn->pl) collect_transfers(rn->pl, &r->xfer);
    return 0;
}

static double peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss * 1024.0; /* Linux: KiB */
}

static const char *cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(buf, len, "%s", v);
        buf[strcspn(buf, "\n")] = 0;
        break;
    }
    fclose(f);
    return buf;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* ---- the placement report --------------------------------------------------- */

static uint64_t per_step(uint64_t bytes, uint64_t steps)
{
    return steps ? bytes / steps : 0;
}

static const sr_device *tier_device(const sr_placement *pl, int t)
{
    return t < pl->devs.n_gpu ? &pl->devs.gpu[t] : &pl->devs.host;
}

/* Streamed weight bytes per second of decode wall time (what a streaming
 * placement gets from the host link; compare with its copy bandwidth). */
static double stream_gbps(const transfer_counts *x)
{
    return x->exec.step_s > 0 ? (double)x->exec.streamed / x->exec.step_s * 1e-9 : 0;
}

/* Whether copies overlap compute, in words (cpu and sim copy synchronously). */
static const char *overlap_words(const sr_placement *pl)
{
    if (!pl->plan.stream.n_layers) return "nothing streamed";
    if (sr_offload_get_stats(pl->exec)->async_copies)
        return "asynchronous copies (overlap not measured)";
    return "synchronous copies: no overlap with compute";
}

static void placement_text(const sr_placement *pl, const options *o, const transfer_counts *x,
                           double place_s)
{
    const sr_plan *p = &pl->plan;
    char b[9][32];
    printf("placement  %s, strategy %s, ctx %lld, placed in %.2f s; %s\n", o->place.devices,
           sr_strategy_name(p->strategy), (long long)pl->shape.ctx, place_s, p->exec_reason);
    printf("  %-8s %11s %11s %11s %11s  = weights + KV + staging + derived + reserve\n", "tier",
           "used", "peak", "planned", "budget");
    for (int t = 0; t < p->n_tiers; t++) {
        const sr_tier_usage *u = &p->tiers[t];
        const sr_device *d = tier_device(pl, t);
        printf("  %-8s %11s %11s %11s %11s  = %s + %s + %s + %s + %s\n", pl->tiers[t].name,
               cli_fmt_bytes(d->used, b[0], 32), cli_fmt_bytes(d->peak, b[1], 32),
               cli_fmt_bytes(u->total, b[2], 32), cli_fmt_bytes(pl->tiers[t].budget, b[3], 32),
               cli_fmt_bytes(u->weights, b[4], 32), cli_fmt_bytes(u->kv, b[5], 32),
               cli_fmt_bytes(u->staging, b[6], 32), cli_fmt_bytes(u->derived, b[7], 32),
               cli_fmt_bytes(u->reserve, b[8], 32));
    }
    const uint64_t n = x->exec.steps;
    if (!n) {
        printf("streamed   no decode step ran (--gen 0): nothing to count per token\n");
        return;
    }
    if (p->stream.n_layers)
        printf("streamed   %d layer%s to %s (prefetch %d, %d slot%s): %s per decode step "
               "(plan %s), %.2f GB/s over the decode steps' wall time\n", p->stream.n_layers,
               p->stream.n_layers == 1 ? "" : "s", pl->tiers[p->stream.tier].name,
               p->stream.prefetch, p->stream.slots, p->stream.slots == 1 ? "" : "s",
               cli_fmt_bytes(per_step(x->exec.streamed, n), b[0], 32),
               cli_fmt_bytes(p->stream.bytes_per_token, b[1], 32), stream_gbps(x));
    else
        printf("streamed   nothing: no layer is streamed\n");
    printf("moved      per decode step: %s into the accelerators, %s out (activations %s, step "
           "data %s, logits %s)\n", cli_fmt_bytes(per_step(x->dev_in, n), b[0], 32),
           cli_fmt_bytes(per_step(x->dev_out, n), b[1], 32),
           cli_fmt_bytes(per_step(x->exec.activations, n), b[2], 32),
           cli_fmt_bytes(per_step(x->exec.metadata, n), b[3], 32),
           cli_fmt_bytes(per_step(x->exec.logits, n), b[4], 32));
    printf("copies     %.3f ms of %.3f ms per decode step; %s; plan predicted %.2f tok/s\n",
           x->exec.copy_s * 1e3 / (double)n, x->exec.step_s * 1e3 / (double)n,
           overlap_words(pl), p->tokens_per_s);
}

/* The "placement" object of the JSON report (NULL: out of memory).  Keys
 * follow `strata run --json` where they mean the same. */
static json_t *placement_json(const sr_placement *pl, const options *o, const transfer_counts *x,
                              double place_s)
{
    const sr_plan *p = &pl->plan;
    const uint64_t n = x->exec.steps;
    const bool async = sr_offload_get_stats(pl->exec)->async_copies;
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:f, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:f, s:f, s:f, s:f, s:f, s:b}",
        "devices", o->place.devices, "strategy", sr_strategy_name(p->strategy), "host_exec",
        sr_exec_name(p->host_exec), "host_exec_reason", p->exec_reason, "ctx",
        (json_int_t)pl->shape.ctx, "place_s", place_s, "streamed_layers", p->stream.n_layers,
        "prefetch", p->stream.prefetch, "slots", p->stream.slots,
        "planned_stream_bytes_per_token", (json_int_t)p->stream.bytes_per_token,
        "decode_passes", (json_int_t)n,
        "stream_bytes_per_token", (json_int_t)per_step(x->exec.streamed, n),
        "activation_bytes_per_token", (json_int_t)per_step(x->exec.activations, n),
        "metadata_bytes_per_token", (json_int_t)per_step(x->exec.metadata, n),
        "logit_bytes_per_token", (json_int_t)per_step(x->exec.logits, n),
        "device_in_bytes_per_token", (json_int_t)per_step(x->dev_in, n),
        "device_out_bytes_per_token", (json_int_t)per_step(x->dev_out, n),
        "predicted_s_per_token", p->seconds_per_step, "predicted_tok_s", p->tokens_per_s,
        "copy_s_per_token", n ? x->exec.copy_s / (double)n : 0.0,
        "step_s_per_token", n ? x->exec.step_s / (double)n : 0.0,
        "stream_gb_s", stream_gbps(x), "async_copies", async);
    json_t *tiers = json_array();
    if (!j || !tiers) goto fail;
    for (int t = 0; t < p->n_tiers; t++) {
        const sr_tier_usage *u = &p->tiers[t];
        const sr_device *d = tier_device(pl, t);
        if (json_array_append_new(
                tiers, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}", "name",
                                 pl->tiers[t].name, "used", (json_int_t)d->used, "peak",
                                 (json_int_t)d->peak, "planned", (json_int_t)u->total, "budget",
                                 (json_int_t)pl->tiers[t].budget, "weights",
                                 (json_int_t)u->weights, "kv", (json_int_t)u->kv, "staging",
                                 (json_int_t)u->staging, "derived", (json_int_t)u->derived,
                                 "reserve", (json_int_t)u->reserve, "units", u->n_units)))
            goto fail;
    }
    /* overlap: the fraction of the copy time hidden behind compute; null
     * where copies are asynchronous (not measured) */
    if (json_object_set_new(j, "tiers", tiers) ||
        json_object_set_new(j, "stream_tier", p->stream.tier >= 0
                                                  ? json_string(pl->tiers[p->stream.tier].name)
                                                  : json_null()) ||
        json_object_set_new(j, "overlap", async ? json_null() : json_real(0.0))) {
        json_decref(j);
        return NULL;
    }
    return j;
fail:
    json_decref(tiers);
    json_decref(j);
    return NULL;
}

/* ---- the command ------------------------------------------------------------ */

int bench_run(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    if (o.threads) omp_set_num_threads(o.threads);
    const int threads = omp_get_max_threads();
    const bool placed = placement_args_placed(&o.place);

    sr_error err = {0};
    sr_model *m = NULL;
    runner rn = {0};
    float *logits = NULL;
    int32_t *prompt = NULL;
    bw_probe probe = {0};
    double *paired = NULL, *own = NULL, *probe_gbps = NULL;
    bw_region *regions = NULL;
    size_t nregions = 0;
    bool probe_open = false;
    rc = 1;

    double t0 = now_s();
    const sr_model_opts mo = {.runs_on_cpu = !placed};
    if (sr_model_load(o.model, &mo, &m, &err)) {
        fprintf(stderr, "strata bench run: %s\n", err.msg);
        goto done;
    }
    const double load_s = now_s() - t0;
    if (o.kv_type) sr_kv_type_parse(o.kv_type, &m->kv_type);   /* checked with the options */
    const int64_t ctx = o.ctx ? o.ctx : (int64_t)o.prompt + o.gen;
    double place_s = 0;
    if (placed) {
        t0 = now_s();
        if (runner_place(&rn, m, &o, ctx, threads, &err)) {
            fprintf(stderr, "strata bench run: model %s: devices \"%s\": %s\n", o.model,
                    o.place.devices, err.msg);
            goto done;
        }
        place_s = now_s() - t0;
    } else if (sr_seq_create(m, ctx, &rn.seq, &err)) {
        fprintf(stderr, "strata bench run: %s\n", err.msg);
        goto done;
    }
    logits = sr_malloc(sizeof(float) * (size_t)m->V);
    prompt = sr_malloc(sizeof(int32_t) * (size_t)o.prompt);
    if (!logits || !prompt) {
        fprintf(stderr, "strata bench run: out of memory\n");
        goto done;
    }
    if (bw_probe_open(&probe, threads)) {
        fprintf(stderr, "strata bench run: out of memory for the bandwidth probe\n");
        goto done;
    }
    probe_open = true;
    make_prompt(m, prompt, o.prompt);

    /* Warm-up: maps every weight page in and lets the OpenMP and OpenBLAS
     * thread pools start, outside the timed runs. */
    if (runner_forward(&rn, prompt, o.prompt < 16 ? o.prompt : 16, logits, &err)) {
        fprintf(stderr, "strata bench run: %s\n", err.msg);
        goto done;
    }

    const uint64_t wbytes = weight_bytes_per_token(m);
    double best_gbps = 0;
    run_result best = {0};
    const size_t n_steps = (size_t)(o.gen > 0 ? o.gen : 1) * (size_t)o.runs;
    paired = malloc(sizeof *paired * n_steps);
    probe_gbps = malloc(sizeof *probe_gbps * n_steps);
    /* The plain read of the weights needs them in this process's memory:
     * not with a placement (its copies live on the devices' tiers). */
    if (!placed) {
        regions = weight_regions(m, &nregions);
        own = malloc(sizeof *own * n_steps);
    }
    if (!paired || !probe_gbps || (!placed && (!regions || !own))) {
        fprintf(stderr, "strata bench run: out of memory\n");
        goto done;
    }
    for (int r = 0; r < o.runs; r++) {
        run_result cur = {.paired = paired + (size_t)r * (size_t)o.gen,
                          .probe = probe_gbps + (size_t)r * (size_t)o.gen,
                          .own = own ? own + (size_t)r * (size_t)o.gen : NULL};
        if (one_run(&rn, m, prompt, &o, logits, &probe, regions, nregions, &best_gbps, &cur,
                    &err)) {
            fprintf(stderr, "strata bench run: run %d: %s\n", r + 1, err.msg);
            goto done;
        }
        if (r == 0 || cur.prefill_s < best.prefill_s) {
            best.prefill_s = cur.prefill_s;
            best.prefill_cpu_s = cur.prefill_cpu_s;
            best.ttft_s = cur.ttft_s;
        }
        if (r == 0 || cur.decode_s < best.decode_s) {
            best.decode_s = cur.decode_s;
            best.decode_cpu_s = cur.decode_cpu_s;
            best.xfer = cur.xfer;
        }
        if (r == 0 || cur.best_step_s < best.best_step_s) best.best_step_s = cur.best_step_s;
        if (cur.best_own_gbps > best.best_own_gbps) best.best_own_gbps = cur.best_own_gbps;
    }

    /* Mean bytes of a decode step: weights + the KV cache at its mean length. */
    const double mean_keys = o.prompt + (o.gen + 1) / 2.0;
    const double step_bytes = (double)wbytes + (double)kv_bytes_read(m, 1) * mean_keys;
    const double prefill_tps = o.prompt / best.prefill_s;
    const double decode_tps = o.gen ? o.gen / best.decode_s : 0;
    const double ceiling_tps = best_gbps * 1e9 / step_bytes;
    const double ratio = o.gen ? decode_tps / ceiling_tps : 0;
    const double best_step_ratio = o.gen ? 1.0 / best.best_step_s / ceiling_tps : 0;
    /* The host's bandwidth can move by 2x within a run (BENCHMARKS.md), and
     * `ratio` holds every step to the best probe of the run; the paired
     * ratio holds each step to the probe pass just before it. */
    const size_t n_paired = (size_t)o.gen * (size_t)o.runs;
    const double paired_q1 = bw_paired_quantile(paired, n_paired, 0.25);
    const double paired_med = bw_paired_quantile(paired, n_paired, 0.5);
    const double paired_q3 = bw_paired_quantile(paired, n_paired, 0.75);
    /* How far the probe passes themselves spread: the strict ratio's context. */
    const double probe_min = bw_paired_quantile(probe_gbps, n_paired, 0);
    const double probe_med = bw_paired_quantile(probe_gbps, n_paired, 0.5);
    /* The same against a plain read of the step's own weight bytes: on a VM
     * the probe's buffer can read faster than the weights' memory does
     * (BENCHMARKS.md, "Decode, tenth pass"). */
    const size_t n_own = own ? n_paired : 0;
    const double own_q1 = bw_paired_quantile(own, n_own, 0.25);
    const double own_med = bw_paired_quantile(own, n_own, 0.5);
    const double own_q3 = bw_paired_quantile(own, n_own, 0.75);
    const bool int8 = sr_matmul_get_mode() == SR_MATMUL_INT8 && sr_matmul_int8_available();
    const char *prefill_mode =
        int8 ? "int8" :
        !strcmp(env_or("STRATA_PREFILL", "f32"), "bf16") && sr_matmul_bf16_available() ? "bf16"
                                                                                         : "f32";
    const char *kernels = int8 ? "int8" : "exact";
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 1) load[0] = -1;
    const double rss = peak_rss_bytes();
    const char *fmt = sr_wformat_name(m->layers[0].mlp_in.w[0].fmt);

    if (o.json) {
        /* a path need not be UTF-8; JSON must */
        char *umodel = sr_utf8_lossy(o.model, strlen(o.model), NULL);
        json_t *j = json_pack(
            "{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, "
            "s:f, "
            "s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
            "model", umodel ? umodel : "", "weight_format", fmt, "cpu", cpu, "threads", threads, "isa",
            sr_isa_name(sr_isa_detect()), "kernels", kernels, "prefill_mode", prefill_mode,
            "kv_type", sr_kv_type_name(m->kv_type), "omp_wait_policy",
            env_or("OMP_WAIT_POLICY", "default"), "prompt", o.prompt, "gen", o.gen, "runs",
            o.runs, "load_s", load_s, "prefill_tok_s", prefill_tps, "decode_tok_s", decode_tps,
            "ttft_s", best.ttft_s, "best_step_tok_s", o.gen ? 1.0 / best.best_step_s : 0.0,
            "bandwidth_gbps", best_gbps, "weight_bytes_per_token", (json_int_t)wbytes,
            "step_bytes_mean", step_bytes, "ceiling_tok_s", ceiling_tps, "ratio", ratio,
            "best_step_ratio", best_step_ratio, "paired_ratio_median", paired_med,
            "paired_ratio_q1", paired_q1, "paired_ratio_q3", paired_q3, "peak_rss_bytes", rss, "loadavg_1m",
            load[0], "prefill_ms_per_token", 1e3 * best.prefill_s / o.prompt, "prefill_cpu_s",
            best.prefill_cpu_s, "decode_cpu_s", best.decode_cpu_s);
        sr_free(umodel);
        if (j && (json_object_set_new(j, "bandwidth_gbps_median", json_real(probe_med)) ||
                  json_object_set_new(j, "bandwidth_gbps_min", json_real(probe_min)))) {
            json_decref(j);
            j = NULL;
        }
        if (j && own &&
            (json_object_set_new(j, "own_read_gbps", json_real(best.best_own_gbps)) ||
             json_object_set_new(j, "own_read_ratio_median", json_real(own_med)) ||
             json_object_set_new(j, "own_read_ratio_q1", json_real(own_q1)) ||
             json_object_set_new(j, "own_read_ratio_q3", json_real(own_q3)))) {
            json_decref(j);
            j = NULL;
        }
        if (j && placed &&
            json_object_set_new(j, "placement", placement_json(rn.pl, &o, &best.xfer, place_s))) {
            json_decref(j);
            j = NULL;
        }
        if (!j) {
            fprintf(stderr, "strata bench run: out of memory\n");
            goto done;
        }
        char *txt = json_dumps(j, JSON_INDENT(2));
        json_decref(j);
        if (!txt) goto done;
        printf("%s\n", txt);
        free(txt);
    } else {
        printf("model      %s (%s, %d layers, hidden %lld, vocab %lld)\n", o.model, fmt, m->L,
               (long long)m->H, (long long)m->V);
        printf("machine    %s, %d threads, %s %s kernels, OMP_WAIT_POLICY=%s, load avg %.2f\n",
               cpu, threads, sr_isa_name(sr_isa_detect()), kernels,
               env_or("OMP_WAIT_POLICY", "default"), load[0]);
        printf("load       %.2f s, peak RSS %.2f GiB\n", load_s, rss / (1 << 30));
        printf("prefill    %d tokens: %.2f tok/s (%s), time to first token %.3f s, "
               "CPU %.2f s for %.2f s wall\n", o.prompt, prefill_tps, prefill_mode, best.ttft_s,
               best.prefill_cpu_s, best.prefill_s);
        if (o.gen) {
            printf("decode     %d steps: %.2f tok/s (fastest step %.2f tok/s), "
                   "CPU %.2f s for %.2f s wall\n", o.gen, decode_tps, 1.0 / best.best_step_s,
                   best.decode_cpu_s, best.decode_s);
            printf("bandwidth  %.2f GB/s (best probe pass, same run; before the steps: median "
                   "%.2f, slowest %.2f)\n", best_gbps, probe_med, probe_min);
            printf("bytes      %.3f GB read per step (%.3f GB weights + %s KV)\n",
                   step_bytes * 1e-9, wbytes * 1e-9, sr_kv_type_name(m->kv_type));
            printf("ceiling    %.2f tok/s; decode at %.1f%% of it (fastest step %.1f%%)\n",
                   ceiling_tps, 100 * ratio, 100 * best_step_ratio);
            printf("paired     each step against the probe pass right before it: median "
                   "%.1f%% (quartiles %.1f-%.1f%%)\n", 100 * paired_med, 100 * paired_q1,
                   100 * paired_q3);
            if (own)
                printf("own read   each step against a plain read of its weight bytes right "
                       "before it (best %.2f GB/s): median %.1f%% (quartiles %.1f-%.1f%%)\n",
                       best.best_own_gbps, 100 * own_med, 100 * own_q1, 100 * own_q3);
        }
        if (placed) placement_text(rn.pl, &o, &best.xfer, place_s);
    }
    rc = 0;
done:
    free(paired);
    free(probe_gbps);
    free(own);
    free(regions);
    if (probe_open) bw_probe_close(&probe);
    sr_free(prompt);
    sr_free(logits);
    if (rn.pl) sr_placement_free(rn.pl);    /* the sequence is the executor's */
    else sr_seq_free(rn.seq);
    sr_model_free(m);
    return rc;
}
