#include "offload/exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "offload/tier_exec.h"
#include "runtime/alloc.h"
#include "sr_build_config.h"
#if SR_HAVE_CUDA
#include "offload/device_cuda.h"
#endif

/* ---- a unit's stored tensors in one buffer ---------------------------------- */

typedef struct stored_set {
    int n;
    const sr_tensor **t;
    size_t *off;
    uint64_t bytes;
} stored_set;

static void stored_set_free(stored_set *s)
{
    sr_free(s->t);
    sr_free(s->off);
    memset(s, 0, sizeof *s);
}

static size_t elem_size(const sr_tensor *t)
{
    size_t e = sr_dtype_size(t->dtype);
    return e ? e : 1;
}

/* The tensors of unit u (plus `extra`), largest element size first: each
 * one then starts aligned to its element with no padding, so the buffer
 * holds exactly the stored bytes. */
static int stored_layout(const sr_unit_list *ul, int u, const sr_tensor *extra, stored_set *s,
                         sr_error *err)
{
    memset(s, 0, sizeof *s);
    int n = extra ? 1 : 0;
    for (size_t i = 0; i < ul->n_tensors; i++) n += ul->tensor_unit[i] == u;
    s->t = sr_calloc((size_t)n + 1, sizeof *s->t);
    s->off = sr_calloc((size_t)n + 1, sizeof *s->off);
    if (!s->t || !s->off) {
        stored_set_free(s);
        return sr_fail(err, "offload: out of memory");
    }
    for (size_t e = 8; e >= 1; e /= 2)
        for (size_t i = 0; i <= ul->n_tensors; i++) {
            const sr_tensor *t = i < ul->n_tensors ? (ul->tensor_unit[i] == u ? ul->tensors[i]
                                                                                : NULL)
                                                   : extra;
            if (!t || elem_size(t) != e) continue;
            s->t[s->n] = t;
            s->off[s->n++] = s->bytes;
            s->bytes += t->nbytes;
        }
    return 0;
}

/* ---- relocation of weight descriptors onto a tier ------------------------- */

/* Pointers into stored tensors move to the tier's copy of those bytes;
 * anything else (load-time conversions) is copied into the tier's derived
 * buffer.  A dry pass only sizes the derived buffer. */
typedef struct reloc {
    const stored_set *set[2];
    const char *base[2];
    bool dry;
    bool host_meta;             /* LoRA ranks / live stay host arrays (CUDA tiers) */
    uint64_t size;
    const sr_dbuf *derived;
    sr_error *err;
    int failed;
} reloc;

static void *rl(reloc *r, const void *p, size_t n)
{
    if (!p) return NULL;
    const uintptr_t a = (uintptr_t)p;
    for (int k = 0; k < 2; k++) {
        const stored_set *s = r->set[k];
        for (int i = 0; s && i < s->n; i++) {
            const uintptr_t d = (uintptr_t)s->t[i]->data;
            if (a >= d && a < d + s->t[i]->nbytes)
                return r->dry ? (void *)p : (void *)(r->base[k] + s->off[i] + (a - d));
        }
    }
    /* every buffer padded to the alignment: the total is what
     * sr_unit_derived_bytes counted for the plan */
    const uint64_t at = r->size;
    r->size = at + (n + SR_DERIVED_ALIGN - 1) / SR_DERIVED_ALIGN * SR_DERIVED_ALIGN;
    if (r->dry) return (void *)p;
    if (!r->failed && sr_dev_upload(r->derived, (size_t)at, p, n, r->err)) r->failed = 1;
    return (char *)r->derived->ptr + at;
}

static void rl_qmatrix(reloc *r, const sr_qmatrix *src, sr_qmatrix *dst)
{
    *dst = sr_qmatrix_borrow(src);
    dst->data = rl(r, src->data, (size_t)sr_qmatrix_data_bytes(src));
    if (src->scales && src->blocksize > 0) {
        uint64_t n = (uint64_t)src->rows * (uint64_t)src->cols;
        dst->scales = rl(r, src->scales, sizeof(float) * (size_t)((n + (uint64_t)src->blocksize - 1) /
                                                                  (uint64_t)src->blocksize));
    }
    if (src->scb) dst->scb = rl(r, src->scb, sizeof(float) * (size_t)src->rows);
}

static void rl_lora(reloc *r, const sr_lora *src, sr_lora *dst)
{
    *dst = *src;
    const size_t N = (size_t)src->n_adapters, S = (size_t)src->n_slices, R = (size_t)src->rank;
    /* the CUDA LoRA kernels choose their GEMMs on the host from these */
    dst->ranks = r->host_meta ? src->ranks : rl(r, src->ranks, sizeof(int) * N);
    dst->A = rl(r, src->A, sizeof(float) * N * S * R * (size_t)src->in);
    for (size_t s = 0; s < S; s++)
        dst->B[s] = rl(r, src->B[s], sizeof(float) * N * (size_t)src->slice_rows[s] * R);
    dst->live = r->host_meta ? src->live : rl(r, src->live, sizeof(bool) * N * S);
}

static void rl_proj(reloc *r, const sr_proj *src, sr_proj *dst)
{
    *dst = *src;
    for (int i = 0; i < src->n_parts; i++) rl_qmatrix(r, &src->w[i], &dst->w[i]);
    dst->bias = rl(r, src->bias, sizeof(float) * (size_t)src->rows);
    if (src->has_lora) rl_lora(r, &src->lora, &dst->lora);
}

static void rl_layer(reloc *r, const sr_model *m, const sr_layer_weights *src,
                     sr_layer_weights *dst)
{
    *dst = *src;
    const size_t H = sizeof(float) * (size_t)m->H, hd = sizeof(float) * (size_t)m->hd;
    dst->in_norm = rl(r, src->in_norm, H);
    dst->post_norm = rl(r, src->post_norm, H);
    dst->q_norm = rl(r, src->q_norm, hd);
    dst->k_norm = rl(r, src->k_norm, hd);
    rl_proj(r, &src->qkv, &dst->qkv);
    rl_proj(r, &src->o, &dst->o);
    rl_proj(r, &src->mlp_in, &dst->mlp_in);
    rl_proj(r, &src->mlp_out, &dst->mlp_out);
}

/* ---- runtime state ----------------------------------------------------------- */

typedef struct unit_rt {
    stored_set set;
    sr_dbuf stored;             /* on the unit's tier (host for streamed layers) */
    sr_dbuf derived;            /* on the tier that runs it */
    sr_layer_weights w;         /* decoder layers */
    sr_qmatrix q;               /* embedding / head */
    float *final_norm;          /* head */
    int slot;                   /* streamed: its staging slot, else -1 */
} unit_rt;

typedef struct tier_rt {
    sr_device *dev;
    bool runs;                  /* executes at least one unit */
    sr_tier_exec ex;            /* its backend (CPU kernels or CUDA), when it runs units */
    sr_dbuf scratch;            /* activations, step data, hiding bits, logits */
    float *x;
    int32_t *tokens, *embed_ids, *adapter, *rope_pos;
    uint32_t *qsup, *mem;
    float *logits;              /* [V] */
    sr_dbuf all_logits;         /* [chunk][V], allocated on first use */
    sr_dbuf derived;            /* RoPE frequencies */
    sr_model view;              /* the model as seen from this tier */
    sr_kv_cache kv;             /* K/V blocks of the layers that run here */
    sr_dbuf *kv_blocks;         /* [2 * L] */
    sr_dbuf ws_buf;             /* the layer workspace, on this tier */
    sr_workspace ws;            /* over ws_buf (never sr_workspace_free) */
} tier_rt;

struct sr_offload {
    const sr_model *m;
    int n_units, n_tiers, host;
    int *unit_tier, *exec_tier;
    sr_exec *exec;
    unit_rt *u;
    tier_rt t[SR_MAX_DEVICES + 1];
    int stream_tier, n_slots, prefetch;
    sr_dbuf slots[SR_MAX_PREFETCH + 1];
#if SR_HAVE_CUDA
    sr_cuda_staging staging;    /* the slots on a cuda stream tier (slots[] alias them);
                                   staging.dev is set once they exist */
#endif
    int n_streamed;
    int *streamed;              /* unit indices of streamed layers, in order */
    /* host: switch state, positions, hiding bits (no KV: the tiers hold it) */
    sr_seq *seq;
    sr_offload_stats stats;
};

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sr_device *tier_dev(sr_device_set *devs, int t, int host)
{
    return t == host ? &devs->host : &devs->gpu[t];
}

static int alloc_tier_scratch(sr_offload *o, tier_rt *tr, int64_t ctx, sr_error *err)
{
    const sr_model *m = o->m;
    const size_t chunk = (size_t)o->seq->chunk;
    size_t x = up64(sizeof(float) * chunk * (size_t)m->H), ints = up64(sizeof(int32_t) * chunk);
    size_t mem = up64(sizeof(uint32_t) * (size_t)ctx), lg = up64(sizeof(float) * (size_t)m->V);
    if (sr_dev_alloc(tr->dev, x + 5 * ints + mem + lg, &tr->scratch, err)) return -1;
    char *p = tr->scratch.ptr;
    tr->x = (float *)p;
    p += x;
    tr->tokens = (int32_t *)p;
    tr->embed_ids = (int32_t *)(p + ints);
    tr->adapter = (int32_t *)(p + 2 * ints);
    tr->rope_pos = (int32_t *)(p + 3 * ints);
    tr->qsup = (uint32_t *)(p + 4 * ints);
    p += 5 * ints;
    tr->mem = (uint32_t *)p;
    tr->logits = (float *)(p + mem);
    return 0;
}

/* The model view of a tier: its own RoPE table; embedding / head set when
 * those units run there. */
static int init_tier_view(sr_offload *o, tier_rt *tr, sr_error *err)
{
    const sr_model *m = o->m;
    tr->view = *m;
    tr->view.layers = NULL;     /* layers run from their relocated weights */
    size_t n = sizeof(float) * (size_t)(m->rope.hd / 2);
    if (!m->rope.inv_freq || !n) return 0;
    if (sr_dev_alloc(tr->dev, n, &tr->derived, err) ||
        sr_dev_upload(&tr->derived, 0, m->rope.inv_freq, n, err))
        return -1;
    tr->view.rope.inv_freq = tr->derived.ptr;
    return 0;
}

static int alloc_tier_kv(sr_offload *o, tier_rt *tr, int ti, int64_t ctx, sr_error *err)
{
    const sr_model *m = o->m;
    tr->kv = (sr_kv_cache){.n_layers = m->L, .nkv = (int)m->nkv, .hd = (int)m->hd, .ctx = ctx,
                           .type = m->kv_type, .mem = tr->mem};
    tr->kv.k = sr_calloc((size_t)m->L, sizeof *tr->kv.k);
    tr->kv.v = sr_calloc((size_t)m->L, sizeof *tr->kv.v);
    tr->kv_blocks = sr_calloc(2 * (size_t)m->L, sizeof *tr->kv_blocks);
    if (!tr->kv.k || !tr->kv.v || !tr->kv_blocks) return sr_fail(err, "offload: out of memory");
    const size_t block = sr_kv_elem_bytes(m->kv_type) * (size_t)m->nkv * (size_t)ctx *
                         (size_t)m->hd;
    for (int u = 0; u < o->n_units; u++) {
        const int l = u - 1;    /* units: embedding, layers 0..L-1, head */
        if (o->exec_tier[u] != ti || l < 0 || l >= m->L) continue;
        for (int kv = 0; kv < 2; kv++) {
            sr_dbuf *b = &tr->kv_blocks[2 * l + kv];
            if (sr_dev_alloc(tr->dev, block, b, err) || sr_dev_zero(b, err)) return -1;
            (kv ? tr->kv.v : tr->kv.k)[l] = b->ptr;
            o->stats.kv[ti] += block;
        }
    }
    return 0;
}

static void relocate_unit(const sr_offload *o, reloc *r, int kind, unit_rt *ur)
{
    const sr_model *m = o->m;
    if (kind >= 0) {
        rl_layer(r, m, &m->layers[kind], &ur->w);
    } else if (kind == SR_UNIT_EMBED) {
        rl_qmatrix(r, &m->embed, &ur->q);
    } else {
        rl_qmatrix(r, &m->head, &ur->q);
        ur->final_norm = rl(r, m->final_norm, sizeof(float) * (size_t)m->H);
    }
}

/* Copies unit u's stored bytes onto its tier and relocates its descriptors
 * for the tier that runs it (a streamed layer reads its staging slot). */
static int place_unit(sr_offload *o, const sr_unit_list *ul, int u, uint64_t planned,
                      sr_error *err)
{
    const sr_model *m = o->m;
    unit_rt *ur = &o->u[u];
    const int kind = ul->units[u].unit;
    const int embed = sr_plan_unit_index(ul->units, ul->n, SR_UNIT_EMBED);
    /* a tied head reads the embedding's buffer on the same tier, or carries
     * its own copy of the embedding elsewhere (as planned) */
    const sr_tensor *extra = NULL;
    bool share = false;
    if (kind == SR_UNIT_HEAD && ul->units[u].shared_bytes && embed >= 0) {
        if (o->unit_tier[embed] == o->unit_tier[u]) share = true;
        else
            for (size_t i = 0; i < ul->n_tensors; i++)
                if (ul->tensor_unit[i] == embed && ul->tensors[i]->data == m->head.data)
                    extra = ul->tensors[i];
    }
    if (stored_layout(ul, u, extra, &ur->set, err)) return -1;
    const int ti = o->unit_tier[u], te = o->exec_tier[u];
    if (sr_dev_alloc(o->t[ti].dev, (size_t)ur->set.bytes, &ur->stored, err)) return -1;
    for (int i = 0; i < ur->set.n; i++)
        if (sr_dev_upload(&ur->stored, ur->set.off[i], ur->set.t[i]->data,
                          (size_t)ur->set.t[i]->nbytes, err))
            return -1;
    o->stats.stored[ti] += ur->set.bytes;

    reloc r = {.set = {&ur->set, share ? &o->u[embed].set : NULL},
               .base = {ur->slot >= 0 ? o->slots[ur->slot].ptr : ur->stored.ptr,
                        share ? o->u[embed].stored.ptr : NULL},
               .dry = true, .host_meta = !sr_tier_exec_on_host(&o->t[te].ex), .err = err};
    relocate_unit(o, &r, kind, ur);
    const uint64_t derived = r.size;
    if (derived > planned)      /* a bug, never a silent overcommit */
        return sr_fail(err, "offload: %s: the model derived %llu bytes from it at load, its plan "
                       "counted %llu (offload/units.c undercounts)", ul->units[u].name,
                       (unsigned long long)derived, (unsigned long long)planned);
    if (derived && sr_dev_alloc(o->t[te].dev, (size_t)derived, &ur->derived, err)) return -1;
    r.dry = false;
    r.size = 0;
    r.derived = &ur->derived;
    relocate_unit(o, &r, kind, ur);
    if (r.failed) return -1;
    o->stats.derived[te] += derived;
    if (kind == SR_UNIT_EMBED) {
        o->t[te].view.embed = ur->q;
    } else if (kind == SR_UNIT_HEAD) {
        o->t[te].view.head = ur->q;
        o->t[te].view.final_norm = ur->final_norm;
    }
    return 0;
}

/* Waits for everything enqueued on any tier or copy stream (errors are
 * dropped: it runs on the way out of a failure and before freeing), so no
 * kernel or copy still reads a buffer that is freed or reused after. */
static void drain(sr_offload *o)
{
    sr_error ignored;
    for (int t = 0; t < o->n_tiers; t++)
        if (o->t[t].ex.dev) (void)sr_tier_exec_sync(&o->t[t].ex, &ignored);
#if SR_HAVE_CUDA
    if (o->staging.dev) (void)sr_cuda_stream_sync(&o->staging.copy, &ignored);
#endif
}

void sr_offload_free(sr_offload *o)
{
    if (!o) return;
    drain(o);
    for (int u = 0; o->u && u < o->n_units; u++) {
        sr_dev_free(&o->u[u].stored);
        sr_dev_free(&o->u[u].derived);
        stored_set_free(&o->u[u].set);
    }
    for (int t = 0; t < o->n_tiers; t++) {
        tier_rt *tr = &o->t[t];
        for (int i = 0; tr->kv_blocks && i < 2 * o->m->L; i++) sr_dev_free(&tr->kv_blocks[i]);
        sr_free(tr->kv_blocks);
        sr_free(tr->kv.k);
        sr_free(tr->kv.v);
        sr_dev_free(&tr->scratch);
        sr_dev_free(&tr->all_logits);
        sr_dev_free(&tr->derived);
        sr_dev_free(&tr->ws_buf);
        sr_tier_exec_free(&tr->ex);
    }
#if SR_HAVE_CUDA
    if (o->staging.dev) sr_cuda_staging_free(&o->staging);
    else
#endif
        for (int s = 0; s < o->n_slots; s++) sr_dev_free(&o->slots[s]);
    sr_seq_free(o->seq);
    sr_free(o->u);
    sr_free(o->unit_tier);
    sr_free(o->exec_tier);
    sr_free(o->exec);
    sr_free(o->streamed);
    sr_free(o);
}

static int check_units(const sr_model *m, const sr_plan *plan, const sr_unit_list *ul,
                       const sr_device_set *devs, sr_error *err)
{
    if (plan->n_units != ul->n || ul->n != m->L + 2)
        return sr_fail(err, "offload: the plan has %d units, the model %d (embedding, %d layers, "
                       "head)", plan->n_units, m->L + 2, m->L);
    if (plan->n_tiers != devs->n_gpu + 1)
        return sr_fail(err, "offload: the plan has %d tiers but %d devices are given",
                       plan->n_tiers, devs->n_gpu + 1);
    for (int u = 0; u < ul->n; u++) {
        int want = u == 0 ? SR_UNIT_EMBED : u == ul->n - 1 ? SR_UNIT_HEAD : u - 1;
        if (ul->units[u].unit != want)
            return sr_fail(err, "offload: unit %d is %s, expected the execution order "
                           "embedding, layers, head", u, ul->units[u].name);
    }
    for (int t = 0; t < devs->n_gpu; t++)
        if (!devs->gpu[t].ops)
            return sr_fail(err, "offload: %s cannot run units in this build", devs->gpu[t].name);
    return 0;
}

/* The staging slots on the streaming tier: CUDA slots with a copy stream
 * and events, or plain buffers (cpu, sim). */
static int alloc_slots(sr_offload *o, uint64_t slot_bytes, sr_error *err)
{
    sr_device *d = o->t[o->stream_tier].dev;
#if SR_HAVE_CUDA
    if (d->kind == SR_DEV_CUDA) {
        if (sr_cuda_staging_init(&o->staging, d, o->n_slots, (size_t)slot_bytes, err)) return -1;
        for (int s = 0; s < o->n_slots; s++) o->slots[s] = o->staging.slot[s];
        o->stats.staging[o->stream_tier] += slot_bytes * (uint64_t)o->n_slots;
        return 0;
    }
#endif
    for (int s = 0; s < o->n_slots; s++) {
        if (sr_dev_alloc(d, (size_t)slot_bytes, &o->slots[s], err)) return -1;
        o->stats.staging[o->stream_tier] += slot_bytes;
    }
    return 0;
}

int sr_offload_create(const sr_model *m, const sr_plan *plan, const sr_unit_list *ul,
                      sr_device_set *devs, int64_t ctx, sr_offload **out, sr_error *err)
{
    *out = NULL;
    if (check_units(m, plan, ul, devs, err)) return -1;
    sr_offload *o = sr_calloc(1, sizeof *o);
    if (!o) return sr_fail(err, "offload: out of memory");
    o->m = m;
    o->n_units = plan->n_units;
    o->n_tiers = plan->n_tiers;
    o->host = plan->n_tiers - 1;
    o->unit_tier = sr_calloc((size_t)o->n_units, sizeof *o->unit_tier);
    o->exec_tier = sr_calloc((size_t)o->n_units, sizeof *o->exec_tier);
    o->exec = sr_calloc((size_t)o->n_units, sizeof *o->exec);
    o->u = sr_calloc((size_t)o->n_units, sizeof *o->u);
    o->streamed = sr_calloc((size_t)o->n_units, sizeof *o->streamed);
    if (!o->unit_tier || !o->exec_tier || !o->exec || !o->u || !o->streamed) {
        sr_fail(err, "offload: out of memory");
        goto fail;
    }
    for (int t = 0; t < o->n_tiers; t++) o->t[t].dev = tier_dev(devs, t, o->host);
    for (int u = 0; u < o->n_units; u++) {
        const sr_plan_entry *e = &plan->units[u];
        o->unit_tier[u] = e->tier;
        o->exec_tier[u] = e->exec_tier;
        o->exec[u] = e->exec;
        o->u[u].slot = -1;
        o->t[e->exec_tier].runs = true;
        if (e->exec == SR_EXEC_STREAM) o->streamed[o->n_streamed++] = u;
    }
    if (sr_seq_create_state(m, ctx, &o->seq, err)) goto fail;

    o->stream_tier = plan->stream.tier;
    o->prefetch = plan->stream.prefetch;
    o->n_slots = plan->stream.slots;
    if (o->n_streamed != plan->stream.n_layers || o->n_slots > SR_MAX_PREFETCH + 1 ||
        (o->n_streamed && o->stream_tier < 0)) {
        sr_fail(err, "offload: inconsistent streaming schedule in the plan");
        goto fail;
    }
    if (o->n_slots && alloc_slots(o, plan->stream.slot_bytes, err)) goto fail;
    for (int j = 0; j < o->n_streamed; j++) o->u[o->streamed[j]].slot = j % o->n_slots;

    for (int t = 0; t < o->n_tiers; t++) {
        tier_rt *tr = &o->t[t];
        if (!tr->runs) continue;
        if (sr_tier_exec_init(&tr->ex, tr->dev, m, err) || alloc_tier_scratch(o, tr, ctx, err) ||
            init_tier_view(o, tr, err) || alloc_tier_kv(o, tr, t, ctx, err) ||
            sr_dev_alloc(tr->dev, (size_t)sr_workspace_buffer_bytes(m, o->seq->chunk, ctx),
                         &tr->ws_buf, err) ||
            sr_workspace_init_in(&tr->ws, m, o->seq->chunk, ctx, tr->ws_buf.ptr, tr->ws_buf.size,
                                 err))
            goto fail;
        o->stats.scratch[t] += tr->scratch.size + tr->derived.size + tr->ws_buf.size;
    }
    /* the embedding first: a tied head on its tier reads its buffer */
    for (int u = 0; u < o->n_units; u++)
        if (place_unit(o, ul, u, plan->units[u].derived_bytes, err)) goto fail;
    o->stats.async_copies = o->n_streamed && o->t[o->stream_tier].dev->kind == SR_DEV_CUDA;
    for (int t = 0; t < o->n_tiers; t++) sr_dev_reset_stats(o->t[t].dev);
    *out = o;
    return 0;
fail:
    sr_offload_free(o);
    return -1;
}

void sr_offload_reset(sr_offload *o) { sr_seq_reset(o->seq); }

sr_seq *sr_offload_seq(sr_offload *o) { return o->seq; }

const sr_offload_stats *sr_offload_get_stats(const sr_offload *o) { return &o->stats; }

void sr_offload_reset_moved(sr_offload *o)
{
    o->stats.streamed = o->stats.activations = o->stats.metadata = o->stats.logits = 0;
    o->stats.steps = o->stats.tokens = 0;
    o->stats.copy_s = o->stats.step_s = 0;
    for (int t = 0; t < o->n_tiers; t++) sr_dev_reset_stats(o->t[t].dev);
}

/* ---- forward ---------------------------------------------------------------- */

/* Sends the step data (and the new positions' hiding bits) to every tier
 * that runs units; st_t[t] is the step as seen there. */
static int send_step(sr_offload *o, const sr_step *st, sr_step *st_t, sr_error *err)
{
    const int n = st->T;
    const size_t ib = sizeof(int32_t) * (size_t)n;
    const size_t ints = up64(sizeof(int32_t) * (size_t)o->seq->chunk);
    for (int t = 0; t < o->n_tiers; t++) {
        tier_rt *tr = &o->t[t];
        if (!tr->runs) continue;
        const sr_dbuf *b = &tr->scratch;
        const size_t base = (size_t)((char *)tr->tokens - (char *)b->ptr);
        const void *src[5] = {st->tokens, st->embed_ids, st->adapter, st->rope_pos, st->qsup};
        for (int k = 0; k < 5; k++)
            if (sr_dev_upload_on(b, base + (size_t)k * ints, src[k], ib, &tr->ex.stream, err))
                return -1;
        uint64_t moved = 5 * ib;
        if (o->m->hiding) {
            const size_t mb = sizeof(uint32_t) * (size_t)n;
            const size_t at = (size_t)((char *)(tr->mem + st->p0) - (char *)b->ptr);
            if (sr_dev_upload_on(b, at, o->seq->kv.mem + st->p0, mb, &tr->ex.stream, err))
                return -1;
            moved += mb;
        }
        if (t != o->host) o->stats.metadata += moved;
        st_t[t] = *st;
        st_t[t].tokens = tr->tokens;
        st_t[t].embed_ids = tr->embed_ids;
        st_t[t].adapter = tr->adapter;
        st_t[t].rope_pos = tr->rope_pos;
        st_t[t].qsup = tr->qsup;
    }
    return 0;
}

/* Moves the activations x[n][H] from tier a to tier b. */
static int hop(sr_offload *o, int a, int b, int n, sr_error *err)
{
    if (a == b) return 0;
    const size_t bytes = sizeof(float) * (size_t)n * (size_t)o->m->H;
    tier_rt *ta = &o->t[a], *tb = &o->t[b];
    /* a's kernels have written x; the copy runs ahead of b's kernels on b's
     * stream, or (b computes on the host) on a's, waited for */
    const bool b_host = sr_tier_exec_on_host(&tb->ex);
    if (sr_tier_exec_sync(&ta->ex, err) ||
        sr_dev_copy_on(&tb->scratch, (size_t)((char *)tb->x - (char *)tb->scratch.ptr),
                       &ta->scratch, (size_t)((char *)ta->x - (char *)ta->scratch.ptr), bytes,
                       b_host ? &ta->ex.stream : &tb->ex.stream, err) ||
        (b_host && sr_tier_exec_sync(&ta->ex, err)))
        return -1;
    o->stats.activations += bytes;
    return 0;
}

/* Copies streamed layer j (if any) into its staging slot. */
static int stream_in(sr_offload *o, int j, sr_error *err)
{
    if (j >= o->n_streamed) return 0;
    unit_rt *ur = &o->u[o->streamed[j]];
    const double t0 = now_s();
#if SR_HAVE_CUDA
    /* on the copy stream, once the slot's previous layer has released it */
    if (o->staging.dev) {
        if (sr_cuda_staging_fill(&o->staging, ur->slot, ur->stored.ptr, (size_t)ur->set.bytes,
                                 err))
            return -1;
    } else
#endif
        if (sr_dev_copy(&o->slots[ur->slot], 0, &ur->stored, 0, (size_t)ur->set.bytes, err))
            return -1;
    o->stats.copy_s += now_s() - t0;
    o->stats.streamed += ur->set.bytes;
    return 0;
}

/* Decoder layer l (unit u) on its tier; a streamed layer on a CUDA tier
 * waits for its slot's copy and releases the slot after. */
static int run_layer(sr_offload *o, int u, int l, const sr_step *st, const sr_step *sth,
                     sr_error *err)
{
    tier_rt *tr = &o->t[o->exec_tier[u]];
    const int slot = o->exec[u] == SR_EXEC_STREAM ? o->u[u].slot : -1;
#if SR_HAVE_CUDA
    if (slot >= 0 && o->staging.dev &&
        sr_cuda_staging_acquire(&o->staging, slot, &tr->ex.stream, err))
        return -1;
#endif
    if (sr_tier_layer(&tr->ex, &tr->view, &o->u[u].w, l, &tr->kv, st, sth, tr->x, &tr->ws, err))
        return -1;
#if SR_HAVE_CUDA
    if (slot >= 0 && o->staging.dev &&
        sr_cuda_staging_release(&o->staging, slot, &tr->ex.stream, err))
        return -1;
#endif
    (void)slot;
    return 0;
}

static int run_chunk(sr_offload *o, const sr_step *st, float *logits, bool all_logits,
                     bool last_chunk, int64_t off, sr_error *err)
{
    const sr_model *m = o->m;
    const int n = st->T;
    sr_step st_t[SR_MAX_DEVICES + 1];
    if (send_step(o, st, st_t, err)) return -1;
    int cur = o->exec_tier[0];
    if (sr_tier_embed(&o->t[cur].ex, &o->t[cur].view, &st_t[cur], o->t[cur].x, err)) return -1;
    int j = 0;      /* next streamed layer */
    for (int p = 0; p < o->prefetch && p < o->n_streamed; p++)
        if (stream_in(o, p, err)) return -1;
    for (int l = 0; l < m->L; l++) {
        const int u = 1 + l, t = o->exec_tier[u];
        if (hop(o, cur, t, n, err)) return -1;
        cur = t;
        if (o->exec[u] == SR_EXEC_STREAM) {
            /* the copy of layer j+prefetch goes out before layer j runs
             * (prefetch 0: layer j's own copy) */
            if (stream_in(o, j + o->prefetch, err)) return -1;
            j++;
        }
        if (run_layer(o, u, l, &st_t[t], st, err)) return -1;
    }
    const int hu = o->n_units - 1, ht = o->exec_tier[hu];
    if (hop(o, cur, ht, n, err)) return -1;
    tier_rt *th = &o->t[ht];
    const size_t V = (size_t)m->V;
    if (logits && all_logits) {
        if (!th->all_logits.ptr &&
            sr_dev_alloc(th->dev, sizeof(float) * V * (size_t)o->seq->chunk, &th->all_logits, err))
            return -1;
        if (sr_tier_head(&th->ex, &th->view, &st_t[ht], th->x, n, th->all_logits.ptr, &th->ws,
                         err) ||
            sr_dev_download_on(logits + off * m->V, &th->all_logits, 0, sizeof(float) * V * n,
                               &th->ex.stream, err))
            return -1;
        if (ht != o->host) o->stats.logits += sizeof(float) * V * n;
    } else if (logits && last_chunk) {
        if (sr_tier_head(&th->ex, &th->view, &st_t[ht], th->x, 1, th->logits, &th->ws, err) ||
            sr_dev_download_on(logits, &th->scratch,
                               (size_t)((char *)th->logits - (char *)th->scratch.ptr),
                               sizeof(float) * V, &th->ex.stream, err))
            return -1;
        if (ht != o->host) o->stats.logits += sizeof(float) * V;
    }
    /* the call ends with every tier's work done (and its errors reported) */
    for (int t = 0; t < o->n_tiers; t++)
        if (o->t[t].runs && sr_tier_exec_sync(&o->t[t].ex, err)) return -1;
    o->stats.steps++;
    return 0;
}

int sr_offload_forward(sr_offload *o, const int32_t *tokens, int64_t T, float *logits,
                       bool all_logits, sr_error *err)
{
    sr_seq *s = o->seq;
    if (T <= 0) return sr_fail(err, "empty input: no token to process");
    if (s->len + T > s->ctx)
        return sr_fail(err, "sequence of %lld tokens exceeds the context of %lld positions",
                       (long long)(s->len + T), (long long)s->ctx);
    const int64_t len0 = s->len;
    const sr_switch_state sw0 = s->sw;
    const double t0 = now_s();
    for (int64_t off = 0; off < T; off += s->chunk) {
        int n = (int)(T - off < s->chunk ? T - off : s->chunk);
        sr_step st;
        if (sr_step_begin(s, tokens + off, n, &st, err) ||
            run_chunk(o, &st, logits, all_logits, off + n == T, off, err)) {
            drain(o);           /* a failed chunk may leave work enqueued */
            s->len = len0;      /* nothing of this call becomes part of the sequence */
            s->sw = sw0;
            return -1;
        }
        sr_step_commit(s, &st);
    }
    o->stats.step_s += now_s() - t0;
    o->stats.tokens += (uint64_t)T;
    return 0;
}
