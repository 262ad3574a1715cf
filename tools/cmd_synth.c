/* `strata synth --like granite-4.1-3b|granite-4.1-8b|small|tiny [--adapters N --rank R] OUT_DIR`
 *
 * Writes a random-weight checkpoint with a real model's exact shapes (spec
 * granite-switch.md §1.7): config.json + sharded bf16 safetensors, so the
 * benchmarks run on realistic sizes without downloads.  With --adapters the
 * model is a Granite Switch (generation A, as the published previews: one
 * hiding group of all control tokens, control_dims 32, LoRA on all four
 * groups); without, a plain GraniteForCausalLM. */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/shard_writer.h"

typedef struct shape_preset {
    const char *name;
    int64_t hidden, layers, heads, kv_heads, mlp, vocab, ctx;
    double rope_theta, attn_mult, emb_mult, res_mult, logits_scaling;
} shape_preset;

static const shape_preset presets[] = {
    {"granite-4.1-3b", 2560, 40, 40, 8, 8192, 100352, 131072, 1e7, 0.015625, 12, 0.22, 10},
    {"granite-4.1-8b", 4096, 40, 32, 8, 12800, 100352, 131072, 1e7, 0.0078125, 12, 0.22, 16},
    {"tiny", 64, 3, 4, 2, 96, 256, 512, 1e4, 0.0625, 12, 0.22, 8},
    {"small", 512, 8, 8, 4, 1536, 4096, 4096, 1e4, 0.015625, 12, 0.22, 8},
};

/* splitmix64 + a sum of uniforms: a cheap, deterministic near-normal. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_bf16(uint16_t *d, int64_t n, float std, uint64_t seed)
{
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < (n + 4095) / 4096; blk++) {
        uint64_t s = seed ^ (uint64_t)blk * 0x2545f4914f6cdd1dull;
        for (int64_t i = blk * 4096; i < n && i < (blk + 1) * 4096; i++) {
            uint64_t r = rng_next(&s);
            /* four 16-bit uniforms summed: mean 2, var 4/12 */
            double u = ((double)(r & 0xffff) + (double)((r >> 16) & 0xffff) +
                        (double)((r >> 32) & 0xffff) + (double)(r >> 48)) / 65536.0;
            d[i] = sr_f32_to_bf16((float)((u - 2.0) * 1.7320508 * std));
        }
    }
}

typedef struct synth {
    const char *dir;
    uint64_t shard_size, cur_bytes, total;
    uint64_t header_reserve;    /* room for every tensor's header entry */
    int shard, n_shards;
    sw_shard *w;
    json_t *map;
    uint64_t seed;
    char shard_name[128];
} synth;

/* Tensor sizes are known up front, so shards are numbered on the fly and
 * renamed at the end once their count is known. */
static int emit(synth *s, const char *name, int ndim, const int64_t *shape, float std, float fill,
                sr_error *err)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    uint64_t bytes = (uint64_t)n * 2;
    if (s->w && s->cur_bytes + bytes > s->shard_size && s->cur_bytes) {
        if (sw_finish(s->w, NULL, err)) { s->w = NULL; return -1; }
        s->w = NULL;
    }
    if (!s->w) {
        char path[4096];
        snprintf(s->shard_name, sizeof s->shard_name, "shard-%05d.tmp", ++s->shard);
        snprintf(path, sizeof path, "%s/%s", s->dir, s->shard_name);
        if (sw_open(path, s->header_reserve, &s->w, err)) return -1;
        s->cur_bytes = 0;
    }
    uint16_t *d = sr_malloc((size_t)bytes);
    if (!d) return sr_fail(err, "out of memory for %s", name);
    if (std > 0) fill_bf16(d, n, std, s->seed++);
    else for (int64_t i = 0; i < n; i++) d[i] = sr_f32_to_bf16(fill);
    int rc = sw_add(s->w, name, SR_BF16, ndim, shape, d, bytes, err);
    sr_free(d);
    if (rc) return -1;
    s->cur_bytes += bytes;
    s->total += bytes;
    json_object_set_new(s->map, name, json_integer(s->shard));
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: strata synth --like granite-4.1-3b|granite-4.1-8b|small|tiny [--adapters N] "
               "[--rank R] [--layers L] [--seed S] [--shard-size SIZE] [--force] OUT_DIR\n");
}

/* A whole number in [lo, hi] for option `a`; 0, or -1 after a message. */
static int number(const char *a, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "strata synth: %s '%s': expected a whole number in %lld..%lld\n", a, v,
                lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* --force: the weight files of an earlier checkpoint in `dir` go first, or a
 * single model.safetensors would win over new shards (and the reverse). */
static void remove_weights(const char *dir)
{
    static const char *const patterns[] = {"model.safetensors", "model.safetensors.zst",
                                           "model-*-of-*.safetensors",
                                           "model-*-of-*.safetensors.zst",
                                           "model.safetensors.index.json", "shard-*.tmp"};
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        for (size_t i = 0; i < sizeof patterns / sizeof *patterns; i++)
            if (!fnmatch(patterns[i], e->d_name, 0)) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
                break;
            }
    closedir(d);
}

int cmd_synth(int argc, char **argv)
{
    const char *like = NULL, *out = NULL;
    int force = 0;
    long long adapters = 0, rank = 16, layers = -1, seed_in = 1;
    uint64_t shard_size = 5000000000ull;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--like") && v) { like = v; i++; }
        else if (!strcmp(a, "--adapters") && v) { if (number(a, v, 0, 64, &adapters)) return 2; i++; }
        else if (!strcmp(a, "--rank") && v) { if (number(a, v, 1, 256, &rank)) return 2; i++; }
        else if (!strcmp(a, "--layers") && v) { if (number(a, v, 1, 1024, &layers)) return 2; i++; }
        else if (!strcmp(a, "--seed") && v) {
            if (number(a, v, 0, INT64_MAX, &seed_in)) return 2;
            i++;
        }
        else if (!strcmp(a, "--shard-size") && v) {
            if (cli_parse_size(v, &shard_size) || !shard_size) { usage(stderr); return 2; }
            i++;
        } else if (!strcmp(a, "--force")) force = 1;
        else if (a[0] != '-' && !out) out = a;
        else { usage(stderr); return 2; }
    }
    const shape_preset *p = NULL;
    for (size_t i = 0; like && i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(like, presets[i].name)) p = &presets[i];
    const uint64_t seed = (uint64_t)seed_in;
    if (layers > 0 && adapters && layers > 1023) {    /* + the switch's cache slot: 1024 */
        fprintf(stderr, "strata synth: --layers %lld: at most 1023 with adapters (config.json "
                "counts the switch's cache slot, up to 1024)\n", layers);
        return 2;
    }
    if (!p || !out) {
        if (like && !p) fprintf(stderr, "strata synth: unknown --like '%s'\n", like);
        usage(stderr);
        return 2;
    }
    struct stat st;
    if (!stat(out, &st) && !force) {
        fprintf(stderr, "strata synth: %s exists (use --force)\n", out);
        return 1;
    }
    if (mkdir(out, 0755) && errno != EEXIST) {
        fprintf(stderr, "strata synth: %s: %s\n", out, strerror(errno));
        return 1;
    }
    if (force) remove_weights(out);
    int64_t L = layers > 0 ? layers : p->layers, H = p->hidden, hd = p->hidden / p->heads;
    int64_t qd = p->heads * hd, kvd = p->kv_heads * hd, I = p->mlp, V = p->vocab + adapters;
    float wstd = 0.02f, lstd = 0.01f;
    synth s = {.dir = out, .shard_size = shard_size, .map = json_object(), .seed = seed};
    sr_error err;
    char name[256];
    /* Any shard may hold every tensor: reserve an entry for each of them, at
     * the length of the longest name. */
    snprintf(name, sizeof name, "model.layers.%" PRId64 ".shared_mlp.input_linear.lora_B_slices.1",
             L);
    s.header_reserve = (uint64_t)(2 + L * (adapters ? 20 : 9)) * sw_entry_bound(name, 4);
    int rc = 1;
#define EMIT(nd, std, fill, ...) do { int64_t sh_[] = {__VA_ARGS__}; \
        if (emit(&s, name, nd, sh_, std, fill, &err)) goto fail; } while (0)
    snprintf(name, sizeof name, "model.embed_tokens.weight");
    EMIT(2, wstd, 0, V, H);
    for (int64_t l = 0; l < L; l++) {
        const char *bl = adapters ? ".base_layer" : "";
#define N(fmt) snprintf(name, sizeof name, "model.layers.%" PRId64 "." fmt, l)
        N("input_layernorm.weight"); EMIT(1, 0, 1.0f, H);
        N("post_attention_layernorm.weight"); EMIT(1, 0, 1.0f, H);
        if (adapters) {
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.qkv_proj%s.weight", l, bl);
            EMIT(2, wstd, 0, qd + 2 * kvd, H);
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.o_proj%s.weight", l, bl);
            EMIT(2, wstd, 0, H, qd);
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".shared_mlp.input_linear%s.weight", l, bl);
            EMIT(2, wstd, 0, 2 * I, H);
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".shared_mlp.output_linear%s.weight", l, bl);
            EMIT(2, wstd, 0, H, I);
            int64_t outs[3] = {qd, kvd, kvd};
            for (int sl = 0; sl < 3; sl++) {
                snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.qkv_proj.lora_A_slices.%d", l, sl);
                EMIT(4, lstd, 0, adapters, 1, rank, H);
                snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.qkv_proj.lora_B_slices.%d", l, sl);
                EMIT(4, lstd, 0, adapters, 1, outs[sl], rank);
            }
            N("self_attn.o_proj.lora_A"); EMIT(4, lstd, 0, adapters, 1, rank, qd);
            N("self_attn.o_proj.lora_B"); EMIT(4, lstd, 0, adapters, 1, H, rank);
            for (int sl = 0; sl < 2; sl++) {
                snprintf(name, sizeof name, "model.layers.%" PRId64 ".shared_mlp.input_linear.lora_A_slices.%d", l, sl);
                EMIT(4, lstd, 0, adapters, 1, rank, H);
                snprintf(name, sizeof name, "model.layers.%" PRId64 ".shared_mlp.input_linear.lora_B_slices.%d", l, sl);
                EMIT(4, lstd, 0, adapters, 1, I, rank);
            }
            N("shared_mlp.output_linear.lora_A"); EMIT(4, lstd, 0, adapters, 1, rank, I);
            N("shared_mlp.output_linear.lora_B"); EMIT(4, lstd, 0, adapters, 1, H, rank);
        } else {
            N("self_attn.q_proj.weight"); EMIT(2, wstd, 0, qd, H);
            N("self_attn.k_proj.weight"); EMIT(2, wstd, 0, kvd, H);
            N("self_attn.v_proj.weight"); EMIT(2, wstd, 0, kvd, H);
            N("self_attn.o_proj.weight"); EMIT(2, wstd, 0, H, qd);
            N("mlp.gate_proj.weight"); EMIT(2, wstd, 0, I, H);
            N("mlp.up_proj.weight"); EMIT(2, wstd, 0, I, H);
            N("mlp.down_proj.weight"); EMIT(2, wstd, 0, H, I);
        }
#undef N
    }
    snprintf(name, sizeof name, "model.norm.weight");
    EMIT(1, 0, 1.0f, H);
#undef EMIT
    if (sw_finish(s.w, NULL, &err)) { s.w = NULL; goto fail; }
    s.w = NULL;

    /* Final shard names and the index. */
    int n = s.shard;
    json_t *wm = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(s.map, key, v) {
        char fn[128];
        if (n == 1) snprintf(fn, sizeof fn, "model.safetensors");
        else snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", (int)json_integer_value(v), n);
        json_object_set_new(wm, key, json_string(fn));
    }
    for (int i = 1; i <= n; i++) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/shard-%05d.tmp", out, i);
        if (n == 1) snprintf(b, sizeof b, "%s/model.safetensors", out);
        else snprintf(b, sizeof b, "%s/model-%05d-of-%05d.safetensors", out, i, n);
        if (rename(a, b)) { sr_fail(&err, "rename %s: %s", a, strerror(errno)); json_decref(wm); goto fail; }
    }
    char path[4096];
    if (n > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
        json_t *ix = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)s.total,
                               "weight_map", wm);
        int bad = !ix || json_dump_file(ix, path, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(ix);
        if (bad) { sr_fail(&err, "%s: cannot write", path); goto fail; }
    } else {
        json_decref(wm);
    }
    json_t *cfg = json_pack("{s:s,s:[s],s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,"
                            "s:b,s:s,s:s,s:b,s:I,s:I,s:I}",
        "model_type", adapters ? "granite_switch" : "granite",
        "architectures", adapters ? "GraniteSwitchForCausalLM" : "GraniteForCausalLM",
        "vocab_size", (json_int_t)V, "hidden_size", (json_int_t)H,
        "intermediate_size", (json_int_t)I, "num_hidden_layers", (json_int_t)(L + (adapters ? 1 : 0)),
        "num_attention_heads", (json_int_t)p->heads, "num_key_value_heads", (json_int_t)p->kv_heads,
        "max_position_embeddings", (json_int_t)p->ctx, "rope_theta", p->rope_theta,
        "rms_norm_eps", 1e-5, "attention_multiplier", p->attn_mult,
        "embedding_multiplier", p->emb_mult, "residual_multiplier", p->res_mult,
        "logits_scaling", p->logits_scaling, "attention_dropout", 0.0,
        "tie_word_embeddings", 1, "hidden_act", "silu", "torch_dtype", "bfloat16",
        "attention_bias", 0, "bos_token_id", (json_int_t)(p->vocab > 100257 ? 100257 : 1),
        "eos_token_id", (json_int_t)(p->vocab > 100257 ? 100257 : 2),
        "pad_token_id", (json_int_t)(p->vocab > 100256 ? 100256 : 0));
    if (adapters) {
        json_t *ids = json_array(), *names = json_array(), *ranks = json_array(),
               *types = json_array(), *policy = json_object();
        for (int k = 0; k < adapters; k++) {
            char an[32];
            snprintf(an, sizeof an, "adapter_%d", k + 1);
            json_array_append_new(ids, json_integer((json_int_t)(p->vocab + k)));
            json_array_append_new(names, json_string(an));
            json_array_append_new(ranks, json_integer(rank));
            json_object_set_new(policy, an, json_pack("[s]", "all_controls"));
        }
        json_object_set_new(policy, "base", json_pack("[s]", "all_controls"));
        for (int64_t l = 0; l < L + 1; l++) json_array_append_new(types, json_string("attention"));
        json_object_set_new(cfg, "num_adapters", json_integer(adapters));
        json_object_set_new(cfg, "adapter_token_ids", ids);
        json_object_set_new(cfg, "adapter_names", names);
        json_object_set_new(cfg, "adapter_ranks", ranks);
        json_object_set_new(cfg, "max_lora_rank", json_integer(rank));
        json_object_set_new(cfg, "lora_target_modules", json_pack("[s,s,s,s]", "o_proj", "qkv_proj",
            "shared_input_linear", "shared_output_linear"));
        json_object_set_new(cfg, "control_dims", json_integer(32));
        json_object_set_new(cfg, "control_token_gain", json_real(15.0));
        json_object_set_new(cfg, "hiding_groups", json_pack("{s:O}", "all_controls", names));
        json_object_set_new(cfg, "hiding_policy", policy);
        json_object_set_new(cfg, "layer_types", types);
        json_object_set_new(cfg, "shared_intermediate_size", json_integer((json_int_t)I));
        json_object_set_new(cfg, "num_local_experts", json_integer(0));
        json_object_set_new(cfg, "position_embedding_type", json_string("rope"));
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    if (!cfg || json_dump_file(cfg, path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
        json_decref(cfg);
        sr_fail(&err, "%s: cannot write", path);
        goto fail;
    }
    json_decref(cfg);
    char b1[32];
    fprintf(stderr, "strata synth: %s: %s-shaped%s, %" PRId64 " layers, %s bf16 in %d shard%s\n", out,
            p->name, adapters ? " Granite Switch" : "", L, cli_fmt_bytes(s.total, b1, sizeof b1), n,
            n == 1 ? "" : "s");
    rc = 0;
fail:
    if (rc) fprintf(stderr, "strata synth: %s\n", err.msg);
    if (s.w) sw_abort(s.w);
    json_decref(s.map);
    return rc;
}
