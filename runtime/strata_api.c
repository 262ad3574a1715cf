/* The public C API (runtime/strata.h) over the model, forward pass, sampler,
 * tokenizer and chat formatter. */
#include "runtime/strata.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "offload/placement.h"
#include "runtime/alloc.h"
#include "runtime/chat.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/sampling.h"
#include "runtime/tokenizer.h"

#define DEFAULT_CTX_CAP 4096

struct strata_model {
    sr_model *m;
    sr_tokenizer *tok;              /* NULL without tokenizer.json */
    sr_chat chat;
    char **names;                   /* [N] adapter names (config's or "adapter_K") */
    int n_threads;                  /* fixed at open: workspaces are sized for it */
    int64_t default_ctx;
    uint64_t weight_bytes;
    struct placed *placed;          /* NULL: every unit on the CPU (the fast path) */
};

/* A model placed on devices: the plan and its executor.  The plan holds the
 * KV cache of one sequence on the tiers, so one session at a time runs. */
typedef struct placed {
    sr_placement *pl;
    atomic_bool busy;
} placed;

struct strata_session {
    const strata_model *model;
    sr_seq *seq;                    /* own (CPU), or the placement's state */
    sr_offload *exec;               /* placed model: runs every pass; NULL on the CPU */
    int64_t ctx;                    /* positions this session may hold */
    float *logits;                  /* [V] of the last fed token */
    bool logits_valid;
    sr_sampler smp;
};

/* ---- errors ----------------------------------------------------------------- */

static strata_status fail(strata_error *e, strata_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static strata_status fail(strata_error *e, strata_status code, const char *fmt, ...)
{
    if (e) {
        e->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* An internal error message with its code; out-of-memory anywhere inside is
 * reported as such whatever the caller expected. */
static strata_status fail_sr(strata_error *e, strata_status code, const sr_error *se)
{
    if (strstr(se->msg, "out of memory")) code = STRATA_ERR_MEMORY;
    else if (code == STRATA_ERR_FORMAT &&
             (strstr(se->msg, strerror(ENOENT)) || strstr(se->msg, strerror(EACCES))))
        code = STRATA_ERR_IO;
    return fail(e, code, "%s", se->msg);
}

static strata_status ok(strata_error *e)
{
    if (e) {
        e->code = STRATA_OK;
        e->message[0] = 0;
    }
    return STRATA_OK;
}

const char *strata_error_message(const strata_error *e)
{
    return e ? e->message : "";
}

const char *strata_status_string(strata_status code)
{
    switch (code) {
    case STRATA_OK: return "ok";
    case STRATA_ERR_ARGUMENT: return "bad argument";
    case STRATA_ERR_IO: return "i/o error";
    case STRATA_ERR_FORMAT: return "bad or unsupported file";
    case STRATA_ERR_MEMORY: return "out of memory";
    case STRATA_ERR_CONTEXT: return "context full";
    case STRATA_ERR_NO_TOKENIZER: return "no tokenizer";
    case STRATA_ERR_STATE: return "wrong state";
    case STRATA_ERR_NUMERIC: return "no finite logit";
    case STRATA_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

void strata_free(void *p)
{
    sr_free(p);
}

/* OpenMP's thread count is per calling thread: every call that computes uses
 * the model's count (the attention scratch was sized for it) and restores
 * the caller's afterwards. */
static int threads_enter(const strata_model *m)
{
    int saved = omp_get_max_threads();
    omp_set_num_threads(m->n_threads);
    return saved;
}

static void threads_leave(int saved)
{
    omp_set_num_threads(saved);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- models ----------------------------------------------------------------- */

strata_model_params strata_model_default_params(void)
{
    strata_model_params p;
    memset(&p, 0, sizeof p);
    p.logical_gpus = 0;     /* no split */
    return p;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Reads every safetensors file of dir once, reporting progress, so that the
 * load that follows finds the weights in the page cache (the checkpoint is
 * mapped, so this is where the disk time goes). */
static void read_ahead(const char *dir, const strata_model_params *p)
{
    DIR *d = opendir(dir);
    if (!d) return;
    uint64_t total = 0, done = 0;
    struct dirent *e;
    char path[4096];
    for (int pass = 0; pass < 2; pass++) {
        rewinddir(d);
        while ((e = readdir(d))) {
            if (!has_suffix(e->d_name, ".safetensors")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            struct stat sb;
            if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
            if (pass == 0) {
                total += (uint64_t)sb.st_size;
                continue;
            }
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            enum { CHUNK = 8 << 20 };
            char *buf = sr_malloc(CHUNK);
            ssize_t r;
            while (buf && (r = read(fd, buf, CHUNK)) > 0) {
                done += (uint64_t)r;
                p->progress(total ? (double)done / (double)total * 0.99 : 0.0, p->progress_user);
            }
            sr_free(buf);
            close(fd);
        }
    }
    closedir(d);
}

static void model_free(strata_model *sm)
{
    if (!sm) return;
    if (sm->names)
        for (int k = 0; sm->m && k < sm->m->cfg.num_adapters; k++) sr_free(sm->names[k]);
    sr_free(sm->names);
    sr_chat_free(&sm->chat);
    sr_tokenizer_free(sm->tok);
    if (sm->placed) sr_placement_free(sm->placed->pl);
    sr_free(sm->placed);
    sr_model_free(sm->m);
    sr_free(sm);
}

void strata_model_free(strata_model *m)
{
    model_free(m);
}

static strata_status open_tokenizer(strata_model *sm, const char *dir, const char *file,
                                    strata_error *err)
{
    char path[4096];
    if (file) {
        snprintf(path, sizeof path, "%s", file);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (access(path, F_OK)) return STRATA_OK;      /* optional */
    }
    if (access(path, R_OK))
        return fail(err, STRATA_ERR_IO, "tokenizer %s: %s", path, strerror(errno));
    sr_error e;
    if (sr_tokenizer_load(path, &sm->tok, &e)) return fail_sr(err, STRATA_ERR_FORMAT, &e);
    return STRATA_OK;
}

static strata_status adapter_names(strata_model *sm, strata_error *err)
{
    const sr_config *c = &sm->m->cfg;
    if (c->num_adapters == 0) return STRATA_OK;
    sm->names = sr_calloc((size_t)c->num_adapters, sizeof *sm->names);
    if (!sm->names) return fail(err, STRATA_ERR_MEMORY, "model: out of memory");
    for (int k = 0; k < c->num_adapters; k++) {
        char buf[32];
        snprintf(buf, sizeof buf, "adapter_%d", k + 1);
        sm->names[k] = sr_strdup(c->adapter_names && c->adapter_names[k] ? c->adapter_names[k] : buf);
        if (!sm->names[k]) return fail(err, STRATA_ERR_MEMORY, "model: out of memory");
    }
    return STRATA_OK;
}

static strata_status placement_status(sr_placement_failure why)
{
    switch (why) {
    case SR_PLACEMENT_IO: return STRATA_ERR_IO;
    case SR_PLACEMENT_NO_FIT: return STRATA_ERR_MEMORY;
    case SR_PLACEMENT_UNSUPPORTED: return STRATA_ERR_UNSUPPORTED;
    case SR_PLACEMENT_RUN: return STRATA_ERR_MEMORY;
    default: return STRATA_ERR_ARGUMENT;
    }
}

/* Plans the loaded model over p->devices and copies every unit onto its
 * tier (the executor of every session). */
static strata_status place(strata_model *sm, const char *dir, const strata_model_params *p,
                           strata_error *err)
{
    sm->placed = sr_calloc(1, sizeof *sm->placed);
    if (!sm->placed) return fail(err, STRATA_ERR_MEMORY, "model %s: out of memory", dir);
    atomic_init(&sm->placed->busy, false);
    sr_placement_opts po = {.devices = p->devices, .logical_gpus = p->logical_gpus,
                            .max_memory = p->max_memory,
                            .strategy = p->strategy, .device_map = p->device_map,
                            .host_exec = p->host_exec,
                            .prefetch = p->prefetch == 0 ? -1 : p->prefetch < 0 ? 0 : p->prefetch,
                            .ctx = sm->default_ctx, .threads = sm->n_threads};
    sr_placement_failure why;
    sr_error e;
    int saved = threads_enter(sm);
    int rc = sr_placement_create(sm->m, &po, &sm->placed->pl, &why, &e);
    threads_leave(saved);
    if (rc) {
        strata_status st = placement_status(why);
        fail(err, st, "model %s: devices \"%s\": %s", dir, p->devices, e.msg);
        return st;
    }
    return STRATA_OK;
}

strata_status strata_model_open(const char *dir, const strata_model_params *params,
                                strata_model **out, strata_error *err)
{
    if (!out) return fail(err, STRATA_ERR_ARGUMENT, "strata_model_open: out is NULL");
    *out = NULL;
    if (!dir) return fail(err, STRATA_ERR_ARGUMENT, "strata_model_open: dir is NULL");
    strata_model_params p = params ? *params : strata_model_default_params();
    if (p.n_threads < 0 || p.n_ctx < 0)
        return fail(err, STRATA_ERR_ARGUMENT, "model %s: n_threads and n_ctx must be >= 0 "
                    "(got %d, %lld)", dir, p.n_threads, (long long)p.n_ctx);
    const bool on_cpu = !p.devices || !strcmp(p.devices, "cpu");
    if (on_cpu && (p.max_memory || p.strategy || p.device_map || p.host_exec || p.prefetch ||
                   p.logical_gpus > 1))
        return fail(err, STRATA_ERR_ARGUMENT, "model %s: max_memory, strategy, device_map, "
                    "host_exec, prefetch and logical_gpus place units on devices: they need "
                    "devices (e.g. "
                    "\"sim:2x512MiB\" or \"cuda\"), not %s", dir,
                    p.devices ? "\"cpu\"" : "NULL");
    sr_kv_type kv_type = SR_KV_F32;
    if (p.kv_type && sr_kv_type_parse(p.kv_type, &kv_type))
        return fail(err, STRATA_ERR_ARGUMENT, "model %s: kv_type \"%s\": expected \"f32\" or "
                    "\"bf16\"", dir, p.kv_type);
    if (p.prefetch < -1 || p.prefetch > SR_MAX_PREFETCH)
        return fail(err, STRATA_ERR_ARGUMENT, "model %s: prefetch %d: expected -1 (none), 0 (the "
                    "default) or a distance up to %d", dir, p.prefetch, SR_MAX_PREFETCH);
    struct stat sb;
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    if (stat(dir, &sb)) return fail(err, STRATA_ERR_IO, "model %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return fail(err, STRATA_ERR_IO, "model %s: not a directory", dir);
    if (stat(cfg_path, &sb))
        return fail(err, STRATA_ERR_IO, "model %s: not a model directory (no config.json)", dir);

    strata_model *sm = sr_calloc(1, sizeof *sm);
    if (!sm) return fail(err, STRATA_ERR_MEMORY, "model %s: out of memory", dir);
    sm->n_threads = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
    if (p.progress) read_ahead(dir, &p);
    sr_model_opts mo = {.check_finite = p.check_finite != 0, .runs_on_cpu = on_cpu};
    sr_error e;
    strata_status st;
    if (sr_model_load(dir, &mo, &sm->m, &e)) {
        st = fail_sr(err, STRATA_ERR_FORMAT, &e);
        goto fail;
    }
    sm->m->kv_type = kv_type;   /* before any session or plan sizes a cache */
    if ((st = open_tokenizer(sm, dir, p.tokenizer, err))) goto fail;
    if (sr_chat_load(dir, &sm->m->cfg, &sm->chat, &e)) {
        st = fail_sr(err, STRATA_ERR_FORMAT, &e);
        goto fail;
    }
    if ((st = adapter_names(sm, err))) goto fail;
    const sr_config *c = &sm->m->cfg;
    sm->default_ctx = p.n_ctx;
    if (!sm->default_ctx)
        sm->default_ctx = c->max_position_embeddings > 0 && c->max_position_embeddings < DEFAULT_CTX_CAP
                              ? c->max_position_embeddings : DEFAULT_CTX_CAP;
    const sr_catalog *cat = &sm->m->cat;
    sm->weight_bytes = cat->embed_bytes + (cat->head_tied ? 0 : cat->head_bytes);
    for (int l = 0; l < cat->n_layers; l++) sm->weight_bytes += cat->layer_bytes[l];
    if (!on_cpu && (st = place(sm, dir, &p, err))) goto fail;
    if (p.progress) p.progress(1.0, p.progress_user);
    *out = sm;
    return ok(err);
fail:
    model_free(sm);
    return st;
}

void strata_model_get_info(const strata_model *sm, strata_model_info *info)
{
    memset(info, 0, sizeof *info);
    if (!sm) return;
    const sr_config *c = &sm->m->cfg;
    info->vocab_size = (int32_t)sm->m->V;
    info->n_layers = sm->m->L;
    info->n_adapters = c->num_adapters;
    info->max_position_embeddings = c->max_position_embeddings;
    info->default_ctx = sm->default_ctx;
    info->eos_token = c->eos_token_id >= 0 && c->eos_token_id < sm->m->V ? (int32_t)c->eos_token_id : -1;
    info->bos_token = c->bos_token_id >= 0 && c->bos_token_id < sm->m->V ? (int32_t)c->bos_token_id : -1;
    info->has_tokenizer = sm->tok != NULL;
    info->architecture = c->model_type ? c->model_type : sr_arch_name(c->arch);
    info->generation = sr_gen_name(c->gen);
    info->weight_bytes = sm->weight_bytes;
    info->kernel_layout_bytes = sm->m->tile_bytes;
    info->kv_type = sr_kv_type_name(sm->m->kv_type);
}

uint64_t strata_model_session_bytes(const strata_model *m, int64_t n_ctx)
{
    if (!m) return 0;
    return sr_kv_bytes(m->m, n_ctx > 0 ? n_ctx : m->default_ctx);
}

/* ---- placement ------------------------------------------------------------------ */

strata_status strata_model_placement(const strata_model *m, strata_placement *out,
                                     strata_error *err)
{
    if (!m || !out) return fail(err, STRATA_ERR_ARGUMENT, "strata_model_placement: NULL argument");
    memset(out, 0, sizeof *out);
    if (!m->placed) return ok(err);
    const sr_placement *pl = m->placed->pl;
    const sr_plan *p = &pl->plan;
    const sr_offload_stats *st = sr_offload_get_stats(pl->exec);
    out->n_tiers = p->n_tiers;
    for (int t = 0; t < p->n_tiers && t < STRATA_MAX_TIERS; t++) {
        strata_tier_usage *u = &out->tiers[t];
        const sr_tier_usage *w = &p->tiers[t];
        const sr_device *d = t < pl->devs.n_gpu ? &pl->devs.gpu[t] : &pl->devs.host;
        snprintf(u->name, sizeof u->name, "%s", pl->tiers[t].name);
        u->budget = pl->tiers[t].budget;
        u->planned = w->total;
        u->weights = w->weights;
        u->kv = w->kv;
        u->staging = w->staging;
        u->derived = w->derived;
        u->reserve = w->reserve;
        u->n_units = w->n_units;
        /* the devices count what the executor allocated there (not the
         * model's own mapping and load-time buffers on the host) */
        u->used = d->used;
        u->peak = d->peak;
    }
    out->strategy = sr_strategy_name(p->strategy);
    out->host_exec = sr_exec_name(p->host_exec);
    out->host_exec_reason = p->exec_reason;
    out->n_streamed = p->stream.n_layers;
    out->stream_tier = p->stream.tier >= 0 ? pl->tiers[p->stream.tier].name : NULL;
    out->prefetch = p->stream.prefetch;
    out->slots = p->stream.slots;
    out->stream_bytes_per_token = p->stream.bytes_per_token;
    out->predicted_s_per_token = p->seconds_per_step;
    out->ctx = pl->shape.ctx;
    out->async_copies = st->async_copies;
    return ok(err);
}

/* ---- adapters ----------------------------------------------------------------- */

/* The control token of adapter k (1..N), or -1. */
static int32_t adapter_token(const sr_config *c, int k)
{
    for (int j = 0; j < c->n_adapter_token_ids; j++)
        if (sr_config_control_index(c, c->adapter_token_ids[j]) == k)
            return (int32_t)c->adapter_token_ids[j];
    return -1;
}

strata_status strata_model_adapter(const strata_model *m, int index, strata_adapter_info *info,
                                   strata_error *err)
{
    if (!m || !info) return fail(err, STRATA_ERR_ARGUMENT, "strata_model_adapter: NULL argument");
    const sr_config *c = &m->m->cfg;
    if (index < 1 || index > c->num_adapters)
        return fail(err, STRATA_ERR_ARGUMENT, "adapter index %d is not in 1..%d", index,
                    c->num_adapters);
    memset(info, 0, sizeof *info);
    info->index = index;
    info->name = m->names[index - 1];
    info->kind = (strata_adapter_kind)m->chat.adapters[index - 1].kind;
    info->rank = c->adapter_ranks ? c->adapter_ranks[index - 1] : c->max_lora_rank;
    info->token = adapter_token(c, index);
    info->invocation = m->chat.adapters[index - 1].invocation;
    return ok(err);
}

int strata_model_find_adapter(const strata_model *m, const char *name, strata_error *err)
{
    if (!m || !name) {
        fail(err, STRATA_ERR_ARGUMENT, "strata_model_find_adapter: NULL argument");
        return -1;
    }
    const int n = m->m->cfg.num_adapters;
    for (int k = 0; k < n; k++)
        if (!strcmp(m->names[k], name)) {
            ok(err);
            return k + 1;
        }
    char known[512] = "";
    for (int k = 0; k < n; k++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "",
                 m->names[k]);
    if (n == 0)
        fail(err, STRATA_ERR_ARGUMENT, "adapter \"%s\": the model has no adapters (%s)", name,
             m->m->cfg.source ? m->m->cfg.source : "config.json");
    else
        fail(err, STRATA_ERR_ARGUMENT, "adapter \"%s\": no such adapter; the model has: %s", name,
             known);
    return -1;
}

const char *strata_adapter_kind_name(strata_adapter_kind kind)
{
    return sr_adapter_kind_name((sr_adapter_kind)kind);
}

/* ---- text --------------------------------------------------------------------- */

static strata_status need_tokenizer(const strata_model *m, strata_error *err)
{
    if (!m) return fail(err, STRATA_ERR_ARGUMENT, "model is NULL");
    if (!m->tok)
        return fail(err, STRATA_ERR_NO_TOKENIZER, "model %s has no tokenizer.json",
                    m->m->ck ? sr_ckpt_dir(m->m->ck) : "");
    return STRATA_OK;
}

strata_status strata_tokenize(const strata_model *m, const char *text, size_t len, unsigned flags,
                              int32_t **ids, size_t *n, strata_error *err)
{
    if (!ids || !n || (!text && len))
        return fail(err, STRATA_ERR_ARGUMENT, "strata_tokenize: NULL argument");
    *ids = NULL;
    *n = 0;
    strata_status st = need_tokenizer(m, err);
    if (st) return st;
    unsigned f = (flags & STRATA_TOKENIZE_SPECIAL_AS_TEXT ? SR_TOKENIZE_SPECIAL_AS_TEXT : 0) |
                 (flags & STRATA_TOKENIZE_ADD_SPECIAL ? SR_TOKENIZE_ADD_SPECIAL : 0);
    sr_error e;
    if (sr_tokenize(m->tok, text ? text : "", len, f, ids, n, &e))
        return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    return ok(err);
}

strata_status strata_detokenize(const strata_model *m, const int32_t *ids, size_t n,
                                int skip_special, char **text, size_t *len, strata_error *err)
{
    if (!text || (!ids && n)) return fail(err, STRATA_ERR_ARGUMENT, "strata_detokenize: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    strata_status st = need_tokenizer(m, err);
    if (st) return st;
    sr_error e;
    size_t l = 0;
    if (sr_detokenize(m->tok, ids, n, skip_special, text, &l, &e))
        return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    if (len) *len = l;
    return ok(err);
}

const char *strata_token_piece(const strata_model *m, int32_t token, size_t *len)
{
    if (len) *len = 0;
    if (!m || !m->tok) return NULL;
    size_t l = 0;
    const char *p = sr_tokenizer_token_bytes(m->tok, token, &l);
    if (p && len) *len = l;
    return p;
}

int strata_token_is_special(const strata_model *m, int32_t token)
{
    return m && m->tok ? sr_tokenizer_is_special(m->tok, token) : 0;
}

/* ---- chat --------------------------------------------------------------------- */

/* Appends the ids of text[0..len) to *ids (capacity grows). */
static strata_status append_text(const strata_model *m, const char *text, size_t len, int32_t **ids,
                                 size_t *n, strata_error *err)
{
    if (len == 0) return STRATA_OK;
    int32_t *part;
    size_t k;
    sr_error e;
    if (sr_tokenize(m->tok, text, len, 0, &part, &k, &e)) return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    int32_t *grown = sr_realloc(*ids, sizeof(int32_t) * (*n + k + 1));
    if (!grown) {
        sr_free(part);
        return fail(err, STRATA_ERR_MEMORY, "chat: out of memory");
    }
    memcpy(grown + *n, part, sizeof(int32_t) * k);
    *ids = grown;
    *n += k;
    sr_free(part);
    return STRATA_OK;
}

strata_status strata_chat_tokens(const strata_model *m, const strata_chat_message *msgs, size_t n,
                                 int add_generation_prompt, int adapter, strata_adapter_kind kind,
                                 int32_t **ids, size_t *n_ids, strata_error *err)
{
    if (!ids || !n_ids || (!msgs && n)) return fail(err, STRATA_ERR_ARGUMENT, "strata_chat_tokens: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    strata_status st = need_tokenizer(m, err);
    if (st) return st;
    if (adapter < 0 || adapter > m->m->cfg.num_adapters)
        return fail(err, STRATA_ERR_ARGUMENT, "adapter index %d is not in 0..%d", adapter,
                    m->m->cfg.num_adapters);
    int32_t ctrl = adapter ? adapter_token(&m->m->cfg, adapter) : -1;
    if (adapter && ctrl < 0)
        return fail(err, STRATA_ERR_FORMAT, "adapter %d has no control token in adapter_token_ids",
                    adapter);
    char *text;
    size_t len;
    int64_t at;
    sr_error e;
    if (sr_chat_render(&m->chat, (const sr_chat_msg *)msgs, n, add_generation_prompt != 0, adapter,
                       (sr_adapter_kind)kind, &text, &len, &at, &e))
        return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    int32_t *out = NULL;
    size_t k = 0;
    size_t split = at >= 0 ? (size_t)at : len;
    st = append_text(m, text, split, &out, &k, err);
    if (!st && at >= 0) {
        int32_t *grown = sr_realloc(out, sizeof(int32_t) * (k + 1));
        if (!grown) st = fail(err, STRATA_ERR_MEMORY, "chat: out of memory");
        else (out = grown)[k++] = ctrl;
    }
    if (!st) st = append_text(m, text + split, len - split, &out, &k, err);
    sr_free(text);
    if (st) {
        sr_free(out);
        return st;
    }
    *ids = out;
    *n_ids = k;
    return ok(err);
}

/* ---- sessions ----------------------------------------------------------------- */

strata_session_params strata_session_default_params(void)
{
    strata_session_params p;
    memset(&p, 0, sizeof p);
    p.sampling.top_p = 1.0f;
    return p;
}

static strata_status check_sampling(const strata_sampling *sp, strata_error *err)
{
    if (!(sp->temperature == sp->temperature) || !(sp->top_p == sp->top_p))
        return fail(err, STRATA_ERR_ARGUMENT, "sampling: temperature and top_p must be numbers");
    return STRATA_OK;
}

static strata_status init_sampler(strata_session *s, const strata_sampling *sp, strata_error *err)
{
    strata_status st = check_sampling(sp, err);
    if (st) return st;
    sr_sampling_params p = {.temperature = sp->temperature, .top_k = sp->top_k,
                            .top_p = sp->top_p, .seed = sp->seed};
    sr_sampler fresh;
    sr_error e;
    if (sr_sampler_init(&fresh, &p, s->model->m->V, &e)) return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    sr_sampler_free(&s->smp);
    s->smp = fresh;
    return STRATA_OK;
}

void strata_session_free(strata_session *s)
{
    if (!s) return;
    sr_sampler_free(&s->smp);
    sr_free(s->logits);
    if (s->exec) atomic_store(&s->model->placed->busy, false);     /* the state is the model's */
    else sr_seq_free(s->seq);
    sr_free(s);
}

/* A session of a placed model: the placement's executor and sequence
 * state, if no other session holds them. */
static strata_status attach_placed(strata_session *s, const strata_model *m, int64_t ctx,
                                   strata_error *err)
{
    sr_placement *pl = m->placed->pl;
    if (ctx > pl->shape.ctx)
        return fail(err, STRATA_ERR_CONTEXT, "session: n_ctx %lld exceeds the %lld positions the "
                    "model's placement was planned for (open the model with a larger n_ctx)",
                    (long long)ctx, (long long)pl->shape.ctx);
    if (atomic_exchange(&m->placed->busy, true))
        return fail(err, STRATA_ERR_STATE, "session: the model is placed on devices and runs "
                    "one session at a time (its plan holds one sequence's KV cache): free the "
                    "other session first");
    s->exec = pl->exec;
    s->seq = sr_offload_seq(pl->exec);
    sr_offload_reset(pl->exec);
    sr_offload_reset_moved(pl->exec);
    return STRATA_OK;
}

strata_status strata_session_create(const strata_model *m, const strata_session_params *params,
                                    strata_session **out, strata_error *err)
{
    if (!out) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_create: out is NULL");
    *out = NULL;
    if (!m) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_create: model is NULL");
    strata_session_params p = params ? *params : strata_session_default_params();
    if (p.n_ctx < 0)
        return fail(err, STRATA_ERR_ARGUMENT, "session: n_ctx must be >= 0 (got %lld)",
                    (long long)p.n_ctx);
    int64_t ctx = p.n_ctx ? p.n_ctx : m->default_ctx;
    strata_session *s = sr_calloc(1, sizeof *s);
    if (!s) return fail(err, STRATA_ERR_MEMORY, "session: out of memory");
    s->model = m;
    strata_status st;
    if (m->placed) {
        if ((st = attach_placed(s, m, ctx, err))) goto fail;
    } else {
        sr_error e;
        int saved = threads_enter(m);
        int rc = sr_seq_create(m->m, ctx, &s->seq, &e);
        threads_leave(saved);
        if (rc) {
            st = fail_sr(err, STRATA_ERR_ARGUMENT, &e);
            goto fail;
        }
    }
    s->ctx = s->seq->ctx < ctx ? s->seq->ctx : ctx;
    s->logits = sr_malloc(sizeof(float) * (size_t)m->m->V);
    if (!s->logits) {
        st = fail(err, STRATA_ERR_MEMORY, "session: out of memory (logits)");
        goto fail;
    }
    if ((st = init_sampler(s, &p.sampling, err))) goto fail;
    *out = s;
    return ok(err);
fail:
    strata_session_free(s);
    return st;
}

size_t strata_session_length(const strata_session *s)
{
    return s ? (size_t)s->seq->len : 0;
}

int64_t strata_session_ctx(const strata_session *s)
{
    return s ? s->ctx : 0;
}

const int32_t *strata_session_tokens(const strata_session *s)
{
    return s ? s->seq->tokens : NULL;
}

int strata_session_adapter_at(const strata_session *s, size_t pos)
{
    if (!s || pos >= (size_t)s->seq->len) return -1;
    return s->seq->adapter[pos];
}

const float *strata_session_logits(const strata_session *s)
{
    return s && s->logits_valid ? s->logits : NULL;
}

void strata_session_reset(strata_session *s)
{
    if (!s) return;
    sr_seq_reset(s->seq);
    s->logits_valid = false;
}

strata_status strata_session_truncate(strata_session *s, size_t n, strata_error *err)
{
    if (!s) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_truncate: session is NULL");
    if (n > (size_t)s->seq->len)
        return fail(err, STRATA_ERR_ARGUMENT, "truncate: cannot keep %zu positions of a sequence "
                    "of %lld", n, (long long)s->seq->len);
    if (n < (size_t)s->seq->len) {
        sr_error e;
        if (sr_seq_truncate(s->seq, (int64_t)n, &e)) return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
        s->logits_valid = false;
    }
    return ok(err);
}

strata_status strata_session_feed(strata_session *s, const int32_t *tokens, size_t n,
                                  strata_error *err)
{
    if (!s || (!tokens && n)) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_feed: NULL argument");
    if (n == 0) return fail(err, STRATA_ERR_ARGUMENT, "feed: no tokens");
    sr_seq *q = s->seq;
    const int64_t V = s->model->m->V;
    if (q->len > s->ctx || n > (size_t)(s->ctx - q->len))   /* unsigned: n may exceed INT64_MAX */
        return fail(err, STRATA_ERR_CONTEXT, "feed: %zu tokens after %lld cached exceed the "
                    "context of %lld positions", n, (long long)q->len, (long long)s->ctx);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fail(err, STRATA_ERR_ARGUMENT, "feed: token id %d at position %lld is out of "
                        "range (vocab_size %lld)", tokens[i], (long long)(q->len + (int64_t)i),
                        (long long)V);
    const int64_t before = q->len;
    sr_error e;
    int saved = threads_enter(s->model);
    int rc = s->exec ? sr_offload_forward(s->exec, tokens, (int64_t)n, s->logits, false, &e)
                     : sr_forward(q, tokens, (int64_t)n, s->logits, false, NULL, NULL, &e);
    threads_leave(saved);
    if (rc) {
        /* chunks already committed are dropped again */
        sr_seq_truncate(q, before < q->len ? before : q->len, NULL);
        s->logits_valid = false;
        return fail_sr(err, STRATA_ERR_ARGUMENT, &e);
    }
    s->logits_valid = true;
    return ok(err);
}

strata_status strata_session_sync(strata_session *s, const int32_t *tokens, size_t n,
                                  size_t *reused, strata_error *err)
{
    if (reused) *reused = 0;
    if (!s || (!tokens && n)) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_sync: NULL argument");
    if (n == 0) return fail(err, STRATA_ERR_ARGUMENT, "sync: no tokens");
    if (n > (size_t)s->ctx)     /* before the cached positions are dropped */
        return fail(err, STRATA_ERR_CONTEXT, "sync: %zu tokens exceed the context of %lld "
                    "positions", n, (long long)s->ctx);
    sr_seq *q = s->seq;
    size_t common = 0, len = (size_t)q->len;
    while (common < len && common < n && q->tokens[common] == tokens[common]) common++;
    if (common == n && len == n && s->logits_valid) {       /* nothing new */
        if (reused) *reused = n;
        return ok(err);
    }
    if (common > n - 1) common = n - 1;
    const size_t old_len = len;
    strata_status st = strata_session_truncate(s, common, err);
    if (st) return st;
    st = strata_session_feed(s, tokens + common, n - common, err);
    if (st) {
        /* the cached tokens past `common` are gone; say so rather than pretend */
        if (old_len > common && err)
            snprintf(err->message + strlen(err->message), sizeof err->message - strlen(err->message),
                     " (the session now holds the %zu shared positions)", common);
        return st;
    }
    if (reused) *reused = common;
    return ok(err);
}

strata_status strata_session_set_sampling(strata_session *s, const strata_sampling *sp,
                                          strata_error *err)
{
    if (!s || !sp) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_set_sampling: NULL argument");
    strata_status st = init_sampler(s, sp, err);
    return st ? st : ok(err);
}

strata_status strata_session_sample(strata_session *s, int32_t *token, strata_error *err)
{
    if (!s || !token) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_sample: NULL argument");
    *token = -1;
    if (!s->logits_valid)
        return fail(err, STRATA_ERR_STATE, "sample: no logits yet (feed tokens first)");
    sr_error e;
    int64_t t = sr_sample(&s->smp, s->logits, &e);
    if (t < 0) return fail_sr(err, STRATA_ERR_NUMERIC, &e);
    *token = (int32_t)t;
    return ok(err);
}

strata_status strata_session_transfers(const strata_session *s, strata_transfer_stats *out,
                                       strata_error *err)
{
    if (!s || !out) return fail(err, STRATA_ERR_ARGUMENT, "strata_session_transfers: NULL argument");
    memset(out, 0, sizeof *out);
    if (!s->exec) return ok(err);
    const sr_offload_stats *st = sr_offload_get_stats(s->exec);
    out->passes = st->steps;
    out->tokens = st->tokens;
    out->streamed = st->streamed;
    out->activations = st->activations;
    out->metadata = st->metadata;
    out->logits = st->logits;
    out->run_s = st->step_s;
    out->copy_s = st->copy_s;
    /* synchronous copies add to the step: nothing overlaps */
    out->overlap = st->async_copies ? -1.0 : 0.0;
    return ok(err);
}

void strata_session_reset_transfers(strata_session *s)
{
    if (s && s->exec) sr_offload_reset_moved(s->exec);
}

/* ---- generation --------------------------------------------------------------- */

strata_generate_params strata_generate_default_params(void)
{
    strata_generate_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 128;
    p.stop_token = STRATA_STOP_EOS;
    return p;
}

/* Sliding window over the generated bytes, long enough to see a stop text
 * that straddles token boundaries. */
typedef struct stop_window {
    const char *text;
    size_t tlen, n, cap;
    char *buf;
} stop_window;

/* Appends a piece; returns 1 when the stop text is now in the window, -1 on
 * out of memory. */
static int stop_window_push(stop_window *w, const char *piece, size_t len)
{
    if (w->n + len > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->n + len) cap *= 2;
        char *nb = sr_realloc(w->buf, cap);
        if (!nb) return -1;
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->n, piece, len);
    w->n += len;
    if (w->n >= w->tlen && memmem(w->buf, w->n, w->text, w->tlen)) return 1;
    if (w->n >= w->tlen) {      /* keep the last tlen-1 bytes */
        size_t keep = w->tlen - 1;
        memmove(w->buf, w->buf + w->n - keep, keep);
        w->n = keep;
    }
    return 0;
}

strata_status strata_generate(strata_session *s, const int32_t *prompt, size_t n_prompt,
                              const strata_generate_params *params, strata_generate_result *result,
                              strata_error *err)
{
    strata_generate_result res;
    memset(&res, 0, sizeof res);
    if (result) *result = res;
    if (!s || (!prompt && n_prompt)) return fail(err, STRATA_ERR_ARGUMENT, "strata_generate: NULL argument");
    strata_generate_params p = params ? *params : strata_generate_default_params();
    if (p.max_tokens < 0)
        return fail(err, STRATA_ERR_ARGUMENT, "generate: max_tokens must be >= 0 (got %lld)",
                    (long long)p.max_tokens);
    const strata_model *m = s->model;
    const int64_t V = m->m->V;
    int64_t stop = p.stop_token;
    if (stop == STRATA_STOP_EOS) stop = m->m->cfg.eos_token_id;     /* -1 when the config has none */
    else if (stop < -1 || stop >= V)
        return fail(err, STRATA_ERR_ARGUMENT, "generate: stop_token %d is not a token id of the "
                    "vocabulary (0..%lld) nor -1/STRATA_STOP_EOS", p.stop_token, (long long)V - 1);
    stop_window w = {.text = p.stop_text, .tlen = p.stop_text ? strlen(p.stop_text) : 0};
    if (w.tlen && !m->tok)
        return fail(err, STRATA_ERR_NO_TOKENIZER, "generate: a stop text needs the tokenizer, and "
                    "the model has no tokenizer.json");
    const double t0 = now_s();
    strata_status st;
    if (n_prompt > 0 && (st = strata_session_feed(s, prompt, n_prompt, err))) return st;
    if (!s->logits_valid)
        return fail(err, STRATA_ERR_STATE, "generate: empty prompt and no logits yet (feed tokens first)");
    res.n_prompt = (int64_t)n_prompt;
    res.prefill_s = now_s() - t0;
    res.stop = STRATA_STOP_LENGTH;
    double t1 = 0;
    st = STRATA_OK;
    for (int64_t i = 0; i < p.max_tokens; i++) {
        const int adapter = s->seq->adapter[s->seq->len - 1];
        int32_t tok;
        if ((st = strata_session_sample(s, &tok, err))) break;
        res.n_generated++;
        if (i == 0) {
            t1 = now_s();
            res.ttft_s = t1 - t0;
        }
        int cb = p.on_token ? p.on_token(tok, adapter, p.user) : 0;
        if (tok == stop) { res.stop = STRATA_STOP_TOKEN; break; }
        if (w.tlen) {
            size_t len;
            const char *piece = sr_tokenizer_token_bytes(m->tok, tok, &len);
            int hit = piece ? stop_window_push(&w, piece, len) : 0;
            if (hit < 0) { st = fail(err, STRATA_ERR_MEMORY, "generate: out of memory"); break; }
            if (hit) { res.stop = STRATA_STOP_TEXT; break; }
        }
        if (cb) { res.stop = STRATA_STOP_CALLBACK; break; }
        if (i + 1 == p.max_tokens) break;
        if (s->seq->len >= s->ctx) { res.stop = STRATA_STOP_CONTEXT; break; }
        if ((st = strata_session_feed(s, &tok, 1, err))) break;
    }
    sr_free(w.buf);
    res.decode_s = t1 > 0 ? now_s() - t1 : 0;
    if (result) *result = res;
    return st ? st : ok(err);
}
