/* `strata plan`: where every unit of a model would go, before anything is
 * loaded (only the checkpoint headers and config.json are read). */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "offload/budget.h"
#include "offload/device.h"
#include "offload/device_map.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/log.h"
#include "runtime/tokenizer.h"
#include "tools/bandwidth.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

#define DEFAULT_CTX_CAP 4096
#define PREFILL_CHUNK 256       /* runtime/forward.c's chunk */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: strata plan -m|--model DIR [options]\n"
        "  --max-memory SPEC       budgets, accelerate's vocabulary: cuda:0=3GiB,1=6GiB,cpu=20GiB\n"
        "                          (default: free memory of each accelerator, available RAM - 1 GiB)\n"
        "  --devices SPEC          sim:2x512MiB,sim:1x1GiB (simulated), cuda, or cpu\n"
        "                          (default: the CUDA devices present)\n"
        "  --logical-gpus N        split each GPU into N devices cuda:P.0.. with 1/N of its\n"
        "                          memory each (--devices cuda or the default); --max-memory\n"
        "                          indices then count them (0=cuda:0.0,1=cuda:0.1)\n"
        "  --strategy S            auto | balanced | balanced_low_0 | sequential (default auto)\n"
        "  --device-map FILE       explicit placement (accelerate JSON); replaces --strategy\n"
        "  --save-device-map FILE  write the plan as accelerate JSON\n"
        "  --ctx N                 context positions (default: max_position_embeddings, at most %d)\n"
        "  --batch N               sequences decoded together (default 1)\n"
        "  --kv-type T             KV cache elements: f32 (default) or bf16 (half the memory)\n"
        "  --host-exec P           host-tier layers: auto | stream | cpu (default auto)\n"
        "  --prefetch N            streaming prefetch distance (default 2, 1 when tight)\n"
        "  --perf K=V,...          time-model parameters instead of the stated ones:\n"
        "                          gpu_bw=600G gpu_flops=30T link=24G latency=10us\n"
        "                          cpu_bw=10G cpu_flops=50G (bytes or FLOP per second)\n"
        "  --measure-host          measure the host's memory read bandwidth for cpu_bw\n"
        "  --json                  machine-readable output\n", DEFAULT_CTX_CAP);
}

typedef struct opts {
    const char *model, *max_memory, *devices, *strategy, *device_map, *save_map, *host_exec;
    const char *perf;
    int64_t ctx;
    sr_kv_type kv_type;
    int batch, prefetch, json, measure, logical_gpus;
} opts;

static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"max-memory", required_argument, 0, 'M'},
        {"devices", required_argument, 0, 'd'}, {"strategy", required_argument, 0, 's'},
        {"device-map", required_argument, 0, 'D'}, {"save-device-map", required_argument, 0, 'S'},
        {"ctx", required_argument, 0, 'c'}, {"batch", required_argument, 0, 'b'},
        {"host-exec", required_argument, 0, 'x'}, {"prefetch", required_argument, 0, 'p'},
        {"perf", required_argument, 0, 'P'}, {"measure-host", no_argument, 0, 'H'},
        {"logical-gpus", required_argument, 0, 'L'}, {"kv-type", required_argument, 0, 'K'},
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->batch = 1;
    o->prefetch = -1;
    optind = 1;
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'M': o->max_memory = optarg; break;
        case 'd': o->devices = optarg; break;
        case 's': o->strategy = optarg; break;
        case 'D': o->device_map = optarg; break;
        case 'S': o->save_map = optarg; break;
        case 'x': o->host_exec = optarg; break;
        case 'j': o->json = 1; break;
        case 'P': o->perf = optarg; break;
        case 'H': o->measure = 1; break;
        case 'c':
            if (parse_int(optarg, 1, INT64_C(1) << 32, &v)) {
                fprintf(stderr, "strata plan: --ctx %s: expected a positive integer\n", optarg);
                return 2;
            }
            o->ctx = v;
            break;
        case 'b':
            if (parse_int(optarg, 1, 65536, &v)) {
                fprintf(stderr, "strata plan: --batch %s: expected 1..65536\n", optarg);
                return 2;
            }
            o->batch = (int)v;
            break;
        case 'p':
            if (parse_int(optarg, 0, SR_MAX_PREFETCH, &v)) {
                fprintf(stderr, "strata plan: --prefetch %s: expected 0..%d\n", optarg,
                        SR_MAX_PREFETCH);
                return 2;
            }
            o->prefetch = (int)v;
            break;
        case 'L':
            if (parse_int(optarg, 1, SR_MAX_DEVICES, &v)) {
                fprintf(stderr, "strata plan: --logical-gpus %s: expected 1..%d\n", optarg,
                        SR_MAX_DEVICES);
                return 2;
            }
            o->logical_gpus = (int)v;
            break;
        case 'K':
            if (cli_check_kv_type("strata plan", optarg)) return 2;
            sr_kv_type_parse(optarg, &o->kv_type);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "strata plan: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->model) {
        fprintf(stderr, "strata plan: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (o->device_map && o->strategy) {
        fprintf(stderr, "strata plan: --device-map and --strategy exclude each other\n");
        return 2;
    }
    if (o->logical_gpus && o->devices && strcasecmp(o->devices, "cuda")) {
        fprintf(stderr, "strata plan: --logical-gpus applies to --devices cuda (splits each GPU "
                "into N devices), not --devices %s\n", o->devices);
        return 2;
    }
    return -1;  /* go on */
}

/* "600G", "24GB/s", "30T", "10us" -> a number (decimal prefixes; times in
 * seconds).  Returns 0 or -1. */
static int parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 1e18) return -1;
    static const struct { const char *suffix; double mul; } units[] = {
        {"", 1}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"KB/s", 1e3}, {"MB/s", 1e6},
        {"GB/s", 1e9}, {"TB/s", 1e12}, {"B/s", 1}, {"s", 1}, {"ms", 1e-3}, {"us", 1e-6},
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcmp(end, units[i].suffix)) {
            *out = v * units[i].mul;
            return 0;
        }
    return -1;
}

/* Applies --perf to the tiers (accelerators and host). */
static int apply_perf(const char *spec, sr_tier *tiers, int n_tiers)
{
    char *copy = sr_strdup(spec), *save = NULL;
    if (!copy) return -1;
    int rc = 0;
    for (char *kv = strtok_r(copy, ",", &save); kv && !rc; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        double v;
        if (!eq || parse_rate(eq + 1, &v)) {
            fprintf(stderr, "strata plan: --perf '%s': expected KEY=VALUE (e.g. link=24G)\n", kv);
            rc = -1;
            break;
        }
        *eq = 0;
        static const char *keys[] = {"gpu_bw", "gpu_flops", "link", "latency", "cpu_bw",
                                     "cpu_flops"};
        int k = -1;
        for (int i = 0; i < 6; i++)
            if (!strcmp(kv, keys[i])) k = i;
        if (k < 0 || (k != 3 && v <= 0)) {
            fprintf(stderr, "strata plan: --perf: unknown key or zero value '%s' (keys: gpu_bw, "
                    "gpu_flops, link, latency, cpu_bw, cpu_flops)\n", kv);
            rc = -1;
            break;
        }
        for (int t = 0; t < n_tiers; t++) {
            sr_tier_perf *p = &tiers[t].perf;
            bool host = tiers[t].gpu < 0;
            if (k == 0 && !host) p->mem_bw = v;
            if (k == 1 && !host) p->flops = v;
            if (k == 2 && !host) p->link_bw = v;
            if (k == 3 && !host) p->latency = v;
            if (k == 4 && host) p->mem_bw = v;
            if (k == 5 && host) p->flops = v;
        }
    }
    sr_free(copy);
    return rc;
}

/* Everything the command holds, freed in one place. */
typedef struct ctx {
    sr_checkpoint *ck;
    sr_config cfg;
    sr_adapter_meta meta;
    sr_catalog cat;
    sr_unit_list ul;
    sr_device_map map;
    int *map_tier;
    sr_plan plan;
} ctx;

static void ctx_free(ctx *c)
{
    sr_plan_free(&c->plan);
    sr_free(c->map_tier);
    sr_device_map_free(&c->map);
    sr_unit_list_free(&c->ul);
    sr_catalog_free(&c->cat);
    sr_adapter_meta_free(&c->meta);
    sr_config_free(&c->cfg);
    sr_ckpt_close(c->ck);
}

static const char *bytes(uint64_t n, char *buf, size_t len) { return cli_fmt_bytes(n, buf, len); }

static void print_perf(const char *kind, const sr_tier_perf *p)
{
    if (p->link_bw > 0)
        printf("  %-5s %.0f GB/s weights, %.1f TFLOP/s, %.1f GB/s host link, %.0f us per "
               "transfer\n", kind, p->mem_bw / 1e9, p->flops / 1e12, p->link_bw / 1e9,
               p->latency * 1e6);
    else
        printf("  %-5s %.0f GB/s weights, %.0f GFLOP/s\n", kind, p->mem_bw / 1e9, p->flops / 1e9);
}

static void print_text(const opts *o, const ctx *c, const sr_run_shape *shape,
                       const sr_device_set *set, const sr_tier *tiers, int n_tiers, bool measured)
{
    const sr_plan *p = &c->plan;
    const sr_unit_list *ul = &c->ul;
    char b[7][32];
    sr_model_dims dims;
    sr_model_dims_from_config(&c->cfg, &dims);
    printf("model     %s (%s, %" PRId64 " decoder layers%s)\n", o->model, c->cfg.model_type,
           c->cfg.n_layers, c->cat.head_tied ? ", lm_head tied to the embedding" : "");
    printf("run       ctx %" PRId64 ", batch %d, prefill chunk %d; KV cache %s per layer (%s)\n",
           shape->ctx, shape->batch, shape->chunk,
           bytes(sr_kv_layer_bytes(&dims, shape), b[0], sizeof b[0]),
           sr_kv_type_name(shape->kv_type));
    printf("strategy  %s\n", o->device_map ? "map (from --device-map)" : sr_strategy_name(p->strategy));
    printf("\ntiers     budget = the most strata uses there; the reserve (run scratch) is inside it\n");
    printf("  %-7s %12s  %-36s %12s  %s\n", "tier", "budget", "budget from", "reserve",
           "reserve = runtime + workspace + activations + logits + positions");
    for (int t = 0; t < n_tiers; t++) {
        const sr_device *dev = t < set->n_gpu ? &set->gpu[t] : &set->host;
        sr_reserve r;
        bool given = strstr(tiers[t].budget_src, "--max-memory") != NULL;
        sr_reserve_compute(&dims, shape, dev->kind, !given, &r);
        printf("  %-7s %12s  %-36s %12s  %s + %s + %s + %s + %s\n", tiers[t].name,
               bytes(tiers[t].budget, b[0], sizeof b[0]), tiers[t].budget_src,
               bytes(tiers[t].reserve, b[1], sizeof b[1]), bytes(r.runtime, b[2], sizeof b[2]),
               bytes(r.workspace, b[3], sizeof b[3]), bytes(r.activations, b[4], sizeof b[4]),
               bytes(r.logits, b[5], sizeof b[5]), bytes(r.positions, b[6], sizeof b[6]));
        if (tiers[t].budget < tiers[t].reserve)
            printf("  %-7s unusable: its budget is below its reserve\n", "");
    }
    printf("\nunits\n  %-20s %-7s %-9s %12s %12s  %s\n", "unit", "tier", "runs", "weights", "KV",
           "why");
    for (int u = 0; u < p->n_units; u++) {
        const sr_plan_entry *e = &p->units[u];
        char runs[48];
        if (e->exec == SR_EXEC_STREAM) snprintf(runs, sizeof runs, "stream>%s", tiers[e->exec_tier].name);
        else snprintf(runs, sizeof runs, "%s", e->exec == SR_EXEC_CPU ? "cpu" : "here");
        printf("  %-20s %-7s %-9s %12s %12s  %s\n", ul->units[u].name, tiers[e->tier].name, runs,
               bytes(e->weight_bytes, b[0], sizeof b[0]),
               e->kv_bytes ? bytes(e->kv_bytes, b[1], sizeof b[1]) : "-", e->reason);
    }
    /* derived = what the model builds from its tensors at load (f32 norms,
     * LoRA stacks, block scales) on the tier that runs each unit */
    printf("\nper tier\n  %-7s %12s %12s %12s %12s %12s %12s %12s %6s\n", "tier", "weights",
           "derived", "KV", "staging", "reserve", "total", "budget", "units");
    for (int t = 0; t < n_tiers; t++) {
        const sr_tier_usage *w = &p->tiers[t];
        char d[32];
        printf("  %-7s %12s %12s %12s %12s %12s %12s %12s %6d\n", tiers[t].name,
               bytes(w->weights, b[0], sizeof b[0]), bytes(w->derived, d, sizeof d),
               bytes(w->kv, b[1], sizeof b[1]), bytes(w->staging, b[2], sizeof b[2]),
               bytes(w->reserve, b[3], sizeof b[3]), bytes(w->total, b[4], sizeof b[4]),
               bytes(tiers[t].budget, b[5], sizeof b[5]), w->n_units);
    }
    const sr_stream_schedule *ss = &p->stream;
    if (ss->n_layers)
        printf("\nstreaming %d layers through %s: %d staging slots of %s, prefetch distance %d, "
               "%s copied per step (%.3f ms copy, %.3f ms compute)\n", ss->n_layers,
               tiers[ss->tier].name, ss->slots, bytes(ss->slot_bytes, b[0], sizeof b[0]),
               ss->prefetch, bytes(ss->bytes_per_token, b[1], sizeof b[1]),
               ss->copy_seconds * 1e3, ss->compute_seconds * 1e3);
    else
        printf("\nstreaming none\n");
    printf("host      %s\n", p->exec_reason);
    if (c->cat.n_derived)
        printf("adapters  %d derived adapter keys in the checkpoint: never placed; the tables are "
               "rebuilt from config.json on every executing tier\n", c->cat.n_derived);
    else if (c->cfg.num_adapters)
        printf("adapters  adapter tables are rebuilt from config.json on every executing tier "
               "(never placed)\n");
    if (c->cat.lm_head_ignored)
        printf("note      the stored lm_head.weight is ignored (tied): never placed\n");
    printf("time model (%s%s)\n", measured ? "host bandwidth measured; " : "",
           o->perf ? "--perf applied, the rest stated" : "stated parameters; see --perf");
    bool sim = set->n_gpu && set->gpu[0].kind == SR_DEV_SIM;
    if (set->n_gpu) print_perf(sim ? "sim" : "cuda", &tiers[0].perf);
    print_perf("cpu", &tiers[n_tiers - 1].perf);
    printf("predicted %.3f ms per decode step, %.1f tokens/s (batch %d)\n",
           p->seconds_per_step * 1e3, p->tokens_per_s, shape->batch);
}

static json_t *perf_json(const sr_tier_perf *p)
{
    return json_pack("{s:f,s:f,s:f,s:f}", "weight_bytes_per_s", p->mem_bw, "flops", p->flops,
                     "link_bytes_per_s", p->link_bw, "latency_s", p->latency);
}

static void print_json(const opts *o, const ctx *c, const sr_run_shape *shape,
                       const sr_tier *tiers, int n_tiers)
{
    const sr_plan *p = &c->plan;
    json_t *root = json_object();
    /* a path need not be UTF-8; JSON must */
    char *umodel = sr_utf8_lossy(o->model, strlen(o->model), NULL);
    json_object_set_new(root, "model", json_string(umodel ? umodel : ""));
    sr_free(umodel);
    json_object_set_new(root, "strategy", json_string(sr_strategy_name(p->strategy)));
    json_object_set_new(root, "ctx", json_integer(shape->ctx));
    json_object_set_new(root, "batch", json_integer(shape->batch));
    json_object_set_new(root, "kv_type", json_string(sr_kv_type_name(shape->kv_type)));
    json_t *ta = json_array();
    for (int t = 0; t < n_tiers; t++) {
        const sr_tier_usage *w = &p->tiers[t];
        json_array_append_new(ta, json_pack("{s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:o}",
            "name", tiers[t].name, "budget", (json_int_t)tiers[t].budget, "budget_source",
            tiers[t].budget_src, "reserve", (json_int_t)w->reserve, "weights",
            (json_int_t)w->weights, "derived", (json_int_t)w->derived, "kv", (json_int_t)w->kv,
            "staging", (json_int_t)w->staging,
            "total", (json_int_t)w->total, "units", w->n_units, "perf", perf_json(&tiers[t].perf)));
    }
    json_object_set_new(root, "tiers", ta);
    json_t *ua = json_array();
    for (int u = 0; u < p->n_units; u++) {
        const sr_plan_entry *e = &p->units[u];
        json_array_append_new(ua, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:s}", "unit",
            c->ul.units[u].name, "tier", tiers[e->tier].name, "exec", sr_exec_name(e->exec),
            "exec_tier", tiers[e->exec_tier].name, "weight_bytes", (json_int_t)e->weight_bytes,
            "kv_bytes", (json_int_t)e->kv_bytes, "seconds", e->seconds, "reason", e->reason));
    }
    json_object_set_new(root, "units", ua);
    const sr_stream_schedule *ss = &p->stream;
    json_object_set_new(root, "stream", json_pack("{s:s?,s:i,s:i,s:i,s:I,s:I,s:f,s:f}", "tier",
        ss->tier >= 0 ? tiers[ss->tier].name : NULL, "layers", ss->n_layers, "slots", ss->slots,
        "prefetch", ss->prefetch, "slot_bytes", (json_int_t)ss->slot_bytes, "bytes_per_token",
        (json_int_t)ss->bytes_per_token, "copy_seconds", ss->copy_seconds, "compute_seconds",
        ss->compute_seconds));
    json_object_set_new(root, "host_exec", json_string(sr_exec_name(p->host_exec)));
    json_object_set_new(root, "host_exec_reason", json_string(p->exec_reason));
    json_object_set_new(root, "derived_keys_placed", json_integer(0));
    json_object_set_new(root, "derived_keys_ignored", json_integer(c->cat.n_derived));
    json_object_set_new(root, "seconds_per_step", json_real(p->seconds_per_step));
    json_object_set_new(root, "tokens_per_s", json_real(p->tokens_per_s));
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("\n");
    json_decref(root);
}

/* Gen B's two layouts of upstream buffers (spec §2.5): @19b633a2 still
 * serialises control_dims (default 0), @b0df50b1 removed the key. */
static bool gen_b_legacy(const char *cfgpath, const sr_config *cfg)
{
    if (cfg->gen != SR_GEN_B) return false;
    json_t *root = json_load_file(cfgpath, 0, NULL);
    bool legacy = root && json_object_get(root, "control_dims");
    json_decref(root);
    return legacy;
}

/* --save-device-map: the plan plus upstream's switch buffers, so that
 * transformers accepts the map for the upstream model. */
static int save_map(const char *path, const char *cfgpath, const ctx *c, sr_error *err)
{
    const char *buffers[SR_MAX_SWITCH_BUFFERS];
    int n = sr_switch_buffer_names(c->cfg.gen, gen_b_legacy(cfgpath, &c->cfg), buffers);
    return sr_device_map_save(path, &c->plan, c->ul.units, buffers, n, err);
}

static int fail(ctx *c, sr_error *err)
{
    fprintf(stderr, "strata plan: %s\n", err->msg);
    ctx_free(c);
    return 1;
}

int cmd_plan(int argc, char **argv)
{
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    ctx c;
    memset(&c, 0, sizeof c);
    sr_error err;
    sr_error_clear(&err);
    char cfgpath[4096];

    if (sr_ckpt_open(o.model, &c.ck, &err)) return fail(&c, &err);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", sr_ckpt_dir(c.ck));
    if (sr_config_load(cfgpath, &c.cfg, &err) || sr_adapter_meta_build(&c.cfg, &c.meta, &err) ||
        sr_catalog_build(c.ck, &c.cfg, &c.meta, &c.cat, &err))
        return fail(&c, &err);

    sr_run_shape shape = {.batch = o.batch, .threads = omp_get_max_threads(),
                          .kv_type = o.kv_type};
    shape.ctx = o.ctx ? o.ctx
                      : c.cfg.max_position_embeddings < DEFAULT_CTX_CAP ? c.cfg.max_position_embeddings
                                                                        : DEFAULT_CTX_CAP;
    shape.chunk = shape.ctx < PREFILL_CHUNK ? (int)shape.ctx : PREFILL_CHUNK;
    if (c.cfg.max_position_embeddings > 0 && shape.ctx > c.cfg.max_position_embeddings)
        sr_warn("context of %lld positions exceeds max_position_embeddings %lld of %s (as "
                "strata run would warn)", (long long)shape.ctx,
                (long long)c.cfg.max_position_embeddings, cfgpath);
    if (sr_units_from_catalog(&c.cat, &c.cfg, &shape, &c.ul, &err)) return fail(&c, &err);

    sr_device_set set;
    char why[256] = "";
    if (o.devices) {
        if (sr_device_set_parse(o.devices, &set, &err)) return fail(&c, &err);
    } else {
        sr_device_set_detect(&set, why, sizeof why);
        if (o.logical_gpus && !set.n_gpu) {
            sr_fail(&err, "--logical-gpus: no CUDA device (%s)", why);
            return fail(&c, &err);
        }
    }
    if (o.logical_gpus && sr_device_set_split_gpus(&set, o.logical_gpus, &err))
        return fail(&c, &err);
    sr_max_memory mm;
    if (o.max_memory && sr_max_memory_parse(o.max_memory, &mm, &err)) return fail(&c, &err);
    sr_model_dims dims;
    sr_model_dims_from_config(&c.cfg, &dims);
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int n_tiers;
    if (sr_tiers_build(&set, o.max_memory ? &mm : NULL, &dims, &shape, tiers, &n_tiers, &err))
        return fail(&c, &err);

    bool measured = false;
    if (o.measure) {
        bw_result bw;
        if (bw_measure(shape.threads, 3, &bw) == 0) {
            tiers[n_tiers - 1].perf.mem_bw = bw.gbps * 1e9;
            measured = true;
        } else {
            fprintf(stderr, "strata plan: --measure-host: could not allocate the probe buffer\n");
        }
    }
    if (o.perf && apply_perf(o.perf, tiers, n_tiers)) {
        ctx_free(&c);
        return 2;
    }
    sr_plan_request rq = {.units = c.ul.units, .n_units = c.ul.n, .tiers = tiers,
                          .n_tiers = n_tiers, .strategy = SR_STRATEGY_AUTO,
                          .host_exec = SR_EXEC_AUTO, .batch = o.batch, .prefetch = o.prefetch,
                          .hop_bytes = (uint64_t)c.cfg.hidden_size * sizeof(float)};
    if (o.strategy && sr_strategy_parse(o.strategy, &rq.strategy)) {
        fprintf(stderr, "strata plan: --strategy %s: expected auto, balanced, balanced_low_0 or "
                "sequential\n", o.strategy);
        ctx_free(&c);
        return 2;
    }
    if (o.host_exec && sr_exec_parse(o.host_exec, &rq.host_exec)) {
        fprintf(stderr, "strata plan: --host-exec %s: expected auto, stream or cpu\n", o.host_exec);
        ctx_free(&c);
        return 2;
    }
    if (o.device_map) {
        c.map_tier = sr_calloc((size_t)c.ul.n, sizeof *c.map_tier);
        if (!c.map_tier) {
            sr_fail(&err, "out of memory");
            return fail(&c, &err);
        }
        if (sr_device_map_load(o.device_map, &c.map, &err) ||
            sr_device_map_resolve(&c.map, c.ul.units, c.ul.n, set.n_gpu, c.map_tier, &err))
            return fail(&c, &err);
        rq.strategy = SR_STRATEGY_MAP;
        rq.map_tier = c.map_tier;
    }
    if (sr_plan_make(&rq, &c.plan, &err)) return fail(&c, &err);
    if (o.save_map && save_map(o.save_map, cfgpath, &c, &err))
        return fail(&c, &err);
    if (!o.devices && !set.n_gpu && !o.json)
        fprintf(stderr, "strata plan: no accelerator (%s); planning for the host alone "
                "(--devices sim:... simulates some)\n", why);
    if (o.json) print_json(&o, &c, &shape, tiers, n_tiers);
    else print_text(&o, &c, &shape, &set, tiers, n_tiers, measured);
    ctx_free(&c);
    return 0;
}
