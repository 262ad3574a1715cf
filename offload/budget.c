#include "offload/budget.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/alloc.h"
#include "runtime/attention.h"

/* runtime/seq_state.c aligns each of the 8 workspace buffers to 64 bytes */
#define WORKSPACE_PADDING (8u * 64u)

int sr_parse_size(const char *s, uint64_t *out)
{
    if (!s) return -1;
    while (isspace((unsigned char)*s)) s++;
    if (!isdigit((unsigned char)*s) && *s != '.') return -1;   /* no sign, no "inf" */
    const char *num_end = s;
    bool integer = true;
    while (isdigit((unsigned char)*num_end) || *num_end == '.') integer &= *num_end++ != '.';
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != num_end) return -1;      /* hex, exponents */
    if (end == s || errno || !isfinite(v) || v < 0) return -1;
    /* whole numbers exactly (a double holds 53 bits) */
    errno = 0;
    unsigned long long n = integer ? strtoull(s, NULL, 10) : 0;
    if (errno) return -1;
    while (isspace((unsigned char)*end)) end++;
    static const struct { const char *suffix; uint64_t mul; } units[] = {
        {"", 1}, {"B", 1},
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
        {"KB", 1000ull}, {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull},
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcasecmp(end, units[i].suffix)) continue;
        if (integer) {
            uint64_t b;
            if (__builtin_mul_overflow((uint64_t)n, units[i].mul, &b)) return -1;
            *out = b;
            return 0;
        }
        double b = v * (double)units[i].mul;
        if (b >= 18446744073709551616.0) return -1;     /* 2^64 */
        if (units[i].mul == 1 && v != floor(v)) return -1; /* fractional bytes */
        *out = (uint64_t)nearbyint(b);
        return 0;
    }
    return -1;
}

/* "cuda:1", "1", "sim:1", "gpu:1" -> 1; "cpu"/"host" -> -1; else -2 with why. */
static int parse_tier_key(const char *key, const char **why)
{
    if (!strcasecmp(key, "cpu") || !strcasecmp(key, "host")) return -1;
    if (!strcasecmp(key, "disk")) {
        *why = "strata does not offload to disk: weights live on an accelerator or in host "
               "memory (use cpu=SIZE)";
        return -2;
    }
    const char *num = key;
    static const char *prefixes[] = {"cuda:", "sim:", "gpu:"};
    for (size_t i = 0; i < 3; i++)
        if (!strncasecmp(key, prefixes[i], strlen(prefixes[i]))) num = key + strlen(prefixes[i]);
    if (!isdigit((unsigned char)*num)) {
        *why = "unknown tier (expected N, cuda:N, sim:N, cpu or host)";
        return -2;
    }
    char *end;
    errno = 0;
    long g = strtol(num, &end, 10);
    if (*end || errno || g < 0 || g >= SR_MAX_DEVICES) {
        *why = "accelerator index out of range (0..15)";
        return -2;
    }
    return (int)g;
}

int sr_max_memory_parse(const char *spec, sr_max_memory *mm, sr_error *err)
{
    memset(mm, 0, sizeof *mm);
    char *copy = sr_strdup(spec ? spec : "");
    if (!copy) return sr_fail(err, "--max-memory: out of memory");
    int rc = 0, n = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) item++;
        char *eq = strchr(item, '=');
        if (!eq) {
            rc = sr_fail(err, "--max-memory: '%s': expected TIER=SIZE (e.g. cuda:0=3GiB)", item);
            break;
        }
        *eq = 0;
        char *key = item, *val = eq + 1;
        for (char *e = eq - 1; e >= key && isspace((unsigned char)*e); e--) *e = 0;
        const char *why = NULL;
        int g = parse_tier_key(key, &why);
        if (g == -2) {
            rc = sr_fail(err, "--max-memory: '%s': %s", key, why);
            break;
        }
        uint64_t bytes;
        if (sr_parse_size(val, &bytes)) {
            rc = sr_fail(err, "--max-memory: '%s=%s': bad size (expected e.g. 3GiB, 512MiB, 5GB)",
                         key, val);
            break;
        }
        bool *set = g < 0 ? &mm->host_set : &mm->gpu_set[g];
        if (*set) {
            rc = sr_fail(err, "--max-memory: '%s' given twice", key);
            break;
        }
        *set = true;
        if (g < 0) mm->host = bytes;
        else mm->gpu[g] = bytes;
        n++;
    }
    if (!rc && !n) rc = sr_fail(err, "--max-memory: empty (expected e.g. cuda:0=3GiB,cpu=20GiB)");
    sr_free(copy);
    if (rc) memset(mm, 0, sizeof *mm);
    return rc;
}

void sr_model_dims_from_config(const sr_config *cfg, sr_model_dims *d)
{
    memset(d, 0, sizeof *d);
    d->vocab = cfg->vocab_size;
    d->hidden = cfg->hidden_size;
    d->intermediate = cfg->shared_intermediate_size > 0 ? cfg->shared_intermediate_size
                                                        : cfg->intermediate_size;
    d->n_heads = cfg->num_attention_heads;
    d->n_kv_heads = cfg->num_key_value_heads;
    d->head_dim = cfg->head_dim;
    d->n_layers = (int)cfg->n_layers;
    d->n_adapters = cfg->num_adapters;
    d->max_lora_rank = cfg->max_lora_rank;
}

uint64_t sr_kv_layer_bytes(const sr_model_dims *d, const sr_run_shape *s)
{
    return 2ull * (uint64_t)d->n_kv_heads * (uint64_t)d->head_dim * (uint64_t)s->ctx *
           (uint64_t)(s->batch > 0 ? s->batch : 1) * sr_kv_elem_bytes(s->kv_type);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

uint64_t sr_cuda_kernel_scratch(const sr_model_dims *d, const sr_run_shape *s)
{
    const int64_t T = s->chunk > 0 ? s->chunk : 1, H = d->hidden, I = d->intermediate;
    const int64_t qkvw = (d->n_heads + 2 * d->n_kv_heads) * d->head_dim;
    const uint64_t tile = SR_CUDA_PREFILL_TILE;
    const uint64_t xconv = (uint64_t)(T * max64(H, I)) * 2;
    uint64_t lora = 0;
    if (d->n_adapters > 0)      /* gathered inputs, z, deltas, token list */
        lora = (uint64_t)(T * (max64(H, I) + 3 * (int64_t)d->max_lora_rank +
                               max64(qkvw, 2 * I) + 1)) * sizeof(float);
    const uint64_t b = (uint64_t)(s->batch > 0 ? s->batch : 1);
    return (tile + (xconv + lora) * b) / 4 * 5;
}

void sr_reserve_compute(const sr_model_dims *d, const sr_run_shape *s, sr_dev_kind kind,
                        bool default_budget, sr_reserve *r)
{
    memset(r, 0, sizeof *r);
    const uint64_t b = (uint64_t)(s->batch > 0 ? s->batch : 1);
    const int64_t T = s->chunk > 0 ? s->chunk : 1, H = d->hidden, I = d->intermediate;
    const int64_t qkvw = (d->n_heads + 2 * d->n_kv_heads) * d->head_dim;
    /* the buffers of runtime/forward.c's workspace, per sequence */
    int64_t floats = T * (H + qkvw + d->n_heads * d->head_dim + H + 2 * I + I);
    if (d->n_adapters > 0)
        floats += T * (max64(H, I) + 3 * (int64_t)d->max_lora_rank + max64(qkvw, 2 * I) + 1);
    /* attention scores: runtime/attention.c's block of rows per thread on
     * the CPU (sim tiers run the same kernels; with a bf16 cache + a chunk
     * of widened rows); all heads of the chunk at once on an accelerator */
    const int64_t threads = s->threads > 0 ? s->threads : 1;
    const int64_t cpu = threads * sr_attention_thread_floats(s->ctx, (int)d->head_dim, s->kv_type);
    floats += kind == SR_DEV_CPU ? cpu : max64(d->n_heads * T * s->ctx, cpu);
    /* + the RoPE frequency table the layers read, and the 64-byte alignment
     * of each workspace buffer */
    r->workspace = ((uint64_t)floats * sizeof(float) + WORKSPACE_PADDING) * b +
                   (uint64_t)(d->head_dim / 2) * sizeof(float);
    /* activations, the hop buffer and the per-token step data (token, id
     * read by the embedding, adapter index, RoPE position, hiding bits) */
    r->activations = (2ull * (uint64_t)(T * H) * sizeof(float) + 5ull * (uint64_t)T * 4) * b;
    r->logits = (uint64_t)d->vocab * sizeof(float) * b;
    /* per position: the hiding bits on every tier; the host also keeps the
     * token, adapter index and RoPE position */
    r->positions = (uint64_t)s->ctx * (kind == SR_DEV_CPU ? 4 : 1) * sizeof(int32_t) * b;
    if (kind == SR_DEV_CUDA)
        r->runtime = sr_cuda_kernel_scratch(d, s) + (default_budget ? SR_CUDA_RUNTIME_OVERHEAD : 0);
    r->total = r->runtime + r->workspace + r->activations + r->logits + r->positions;
}

static void tier_from_device(const sr_device *dev, const sr_max_memory *mm,
                             const sr_model_dims *d, const sr_run_shape *s, sr_tier *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", dev->name);
    t->gpu = dev->gpu;
    bool host = dev->gpu < 0;
    bool given = host ? mm && mm->host_set : mm && mm->gpu_set[dev->gpu];
    uint64_t want = !given ? 0 : host ? mm->host : mm->gpu[dev->gpu];
    if (given && !host && want > dev->total) {
        t->budget = dev->total;
        snprintf(t->budget_src, sizeof t->budget_src, "--max-memory, capped at its memory");
    } else if (given) {
        t->budget = want;
        snprintf(t->budget_src, sizeof t->budget_src, "--max-memory");
    } else if (host) {
        t->budget = dev->free_bytes > SR_HOST_OS_HEADROOM ? dev->free_bytes - SR_HOST_OS_HEADROOM
                                                          : 0;
        snprintf(t->budget_src, sizeof t->budget_src, "available RAM - 1 GiB for the OS");
    } else {
        t->budget = dev->free_bytes;
        snprintf(t->budget_src, sizeof t->budget_src, "free memory");
    }
    sr_reserve r;
    sr_reserve_compute(d, s, dev->kind, !given, &r);
    t->reserve = r.total;
    sr_tier_perf_default(dev->kind, &t->perf);
}

int sr_tiers_build(const sr_device_set *set, const sr_max_memory *mm, const sr_model_dims *d,
                   const sr_run_shape *s, sr_tier *tiers, int *n_tiers, sr_error *err)
{
    for (int g = set->n_gpu; mm && g < SR_MAX_DEVICES; g++)
        if (mm->gpu_set[g])
            return sr_fail(err, "--max-memory: accelerator %d does not exist (%d present%s)", g,
                           set->n_gpu, set->n_gpu ? "" : "; use --devices sim:... to simulate");
    for (int g = 0; g < set->n_gpu; g++) tier_from_device(&set->gpu[g], mm, d, s, &tiers[g]);
    tier_from_device(&set->host, mm, d, s, &tiers[set->n_gpu]);
    *n_tiers = set->n_gpu + 1;
    return 0;
}
