// The forward pass on one GPU (see forward_cuda.h): the same sequence of
// operations as sr_layer_forward_w / sr_head_forward, each by its CUDA
// kernel, all on the context's stream.
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cuda_check.cuh"

extern "C" {
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/alloc.h"
#include "runtime/cuda/attention_cuda.h"
#include "runtime/cuda/forward_cuda.h"
#include "runtime/cuda/lora_cuda.h"
#include "runtime/cuda/ops_cuda.h"
}

struct sr_cuda_model {
    const sr_model *m;
    sr_cuda_ctx *c;
    sr_qmatrix embed, head;     // head.data == embed.data when tied
    bool tied;
    float *final_norm;
    float *inv_freq;            // NULL without RoPE
    sr_layer_weights *layers;   // [L], device pointers
    uint64_t bytes;
};

struct sr_cuda_seq {
    const sr_cuda_model *dm;
    sr_seq *host;               // step bookkeeping, as on the CPU
    int64_t ctx;
    int chunk;
    float **k, **v;             // [L] -> [nkv][ctx][hd]
    uint32_t *key_mem;          // [ctx] Mem bits per position
    float *x, *u, *qkv, *attn, *proj, *gu, *act, *logits;
    int32_t *ids, *pos;         // [chunk]
    uint32_t *qsup;             // [chunk]
    int64_t *argmax;            // [1]
};

namespace {

int64_t qkv_width(const sr_model *m) { return (m->nh + 2 * m->nkv) * m->hd; }

// Device copy of n floats (NULL stays NULL).
int dup_floats(const float *h, int64_t n, float **out, uint64_t *bytes, sr_error *err)
{
    *out = NULL;
    if (!h) return 0;
    *out = (float *)sr_cuda_dup(h, sizeof(float) * (size_t)n, err);
    if (!*out) return -1;
    *bytes += sizeof(float) * (uint64_t)n;
    return 0;
}

void free_proj(sr_proj *d)
{
    for (int i = 0; i < SR_PROJ_MAX_PARTS; i++) sr_cuda_qmatrix_free(&d->w[i]);
    sr_cuda_free(d->bias);
    if (d->has_lora) sr_cuda_lora_free(&d->lora);
    memset(d, 0, sizeof *d);
}

int upload_proj(const sr_proj *h, sr_proj *d, uint64_t *bytes, sr_error *err)
{
    memset(d, 0, sizeof *d);
    d->n_parts = h->n_parts;
    d->rows = h->rows;
    d->cols = h->cols;
    for (int i = 0; i < h->n_parts; i++) {
        d->part_off[i] = h->part_off[i];
        if (sr_cuda_qmatrix_upload(&h->w[i], &d->w[i], err)) return -1;
        *bytes += sr_qmatrix_bytes(&h->w[i]);
    }
    if (dup_floats(h->bias, h->rows, &d->bias, bytes, err)) return -1;
    if (h->has_lora) {
        if (sr_cuda_lora_upload(&h->lora, &d->lora, err)) return -1;
        d->has_lora = true;
        const sr_lora *l = &h->lora;
        uint64_t n = (uint64_t)l->n_adapters * (uint64_t)l->n_slices * (uint64_t)l->rank * (uint64_t)l->in;
        for (int s = 0; s < l->n_slices; s++)
            n += (uint64_t)l->n_adapters * (uint64_t)l->slice_rows[s] * (uint64_t)l->rank;
        *bytes += sizeof(float) * n;
    }
    return 0;
}

void free_layer(sr_layer_weights *d)
{
    sr_cuda_free(d->in_norm);
    sr_cuda_free(d->post_norm);
    sr_cuda_free(d->q_norm);
    sr_cuda_free(d->k_norm);
    free_proj(&d->qkv);
    free_proj(&d->o);
    free_proj(&d->mlp_in);
    free_proj(&d->mlp_out);
    memset(d, 0, sizeof *d);
}

int upload_layer(const sr_model *m, int l, sr_layer_weights *d, uint64_t *bytes, sr_error *err)
{
    const sr_layer_weights *h = &m->layers[l];
    memset(d, 0, sizeof *d);
    if (dup_floats(h->in_norm, m->H, &d->in_norm, bytes, err) ||
        dup_floats(h->post_norm, m->H, &d->post_norm, bytes, err) ||
        dup_floats(h->q_norm, m->hd, &d->q_norm, bytes, err) ||
        dup_floats(h->k_norm, m->hd, &d->k_norm, bytes, err))
        return sr_fail_prefix(err, "layer %d norms", l);
    const sr_proj *hp[4] = {&h->qkv, &h->o, &h->mlp_in, &h->mlp_out};
    sr_proj *dp[4] = {&d->qkv, &d->o, &d->mlp_in, &d->mlp_out};
    static const char *names[4] = {"qkv", "o", "mlp in", "mlp out"};
    for (int i = 0; i < 4; i++)
        if (upload_proj(hp[i], dp[i], bytes, err))
            return sr_fail_prefix(err, "layer %d %s projection", l, names[i]);
    return 0;
}

// y[T][ldy] = u · Wᵀ (+ bias) (+ LoRA of each token's adapter), as proj_forward.
int proj_forward(sr_cuda_ctx *c, const sr_proj *p, const float *u, int T, int64_t ldu,
                 const int32_t *a_host, float *y, int64_t ldy, sr_cuda_dtype compute, sr_error *err)
{
    for (int i = 0; i < p->n_parts; i++)
        if (sr_cuda_matmul(c, &p->w[i], u, T, ldu, y + p->part_off[i], ldy, compute, err))
            return -1;
    if (p->bias && sr_cuda_bias_add(c, y, ldy, T, p->rows, p->bias, err)) return -1;
    if (p->has_lora && sr_cuda_lora_apply(c, &p->lora, u, T, ldu, a_host, y, ldy, err)) return -1;
    return 0;
}

enum out_mode { OUT_NONE, OUT_ALL, OUT_LAST, OUT_ARGMAX };

// Embedding, every layer and the requested head output of one step.
int run_step(sr_cuda_seq *s, const sr_step *st, out_mode mode, float *logits, int32_t *next,
             sr_error *err)
{
    const sr_model *m = s->dm->m;
    sr_cuda_ctx *c = s->dm->c;
    cudaStream_t cs = (cudaStream_t)sr_cuda_ctx_enter(c);
    const int T = st->T;
    // Step data: staged from pageable memory when enqueued, ordered on the stream.
    SR_CUDA_TRY(err, cudaMemcpyAsync(s->ids, st->embed_ids, sizeof(int32_t) * (size_t)T,
                                     cudaMemcpyHostToDevice, cs));
    SR_CUDA_TRY(err, cudaMemcpyAsync(s->pos, st->rope_pos, sizeof(int32_t) * (size_t)T,
                                     cudaMemcpyHostToDevice, cs));
    if (m->hiding) {
        SR_CUDA_TRY(err, cudaMemcpyAsync(s->qsup, st->qsup, sizeof(uint32_t) * (size_t)T,
                                         cudaMemcpyHostToDevice, cs));
        SR_CUDA_TRY(err, cudaMemcpyAsync(s->key_mem + st->p0, s->host->kv.mem + st->p0,
                                         sizeof(uint32_t) * (size_t)T, cudaMemcpyHostToDevice, cs));
    }
    sr_cuda_unit_io io;
    memset(&io, 0, sizeof io);
    io.m = m;
    io.T = T;
    io.p0 = st->p0;
    io.x = s->x;
    io.u = s->u;
    io.qkv = s->qkv;
    io.attn = s->attn;
    io.proj = s->proj;
    io.gu = s->gu;
    io.act = s->act;
    io.ids = s->ids;
    io.pos = s->pos;
    io.qsup = s->qsup;
    io.key_mem = s->key_mem;
    io.adapter_host = st->adapter;
    io.inv_freq = s->dm->inv_freq;
    io.compute = sr_cuda_prefill_compute();
    if (sr_cuda_embed_unit(c, &io, &s->dm->embed, err)) return -1;
    for (int l = 0; l < m->L; l++)
        if (sr_cuda_layer_unit(c, &io, &s->dm->layers[l], s->k[l], s->v[l], s->ctx, err))
            return sr_fail_prefix(err, "layer %d", l);
    if (mode == OUT_NONE) return sr_cuda_ctx_sync(c, err);
    const int rows = mode == OUT_ALL ? T : 1;
    if (sr_cuda_head_unit(c, &io, s->dm->final_norm, &s->dm->head, rows, s->logits, err))
        return sr_fail_prefix(err, "head");
    if (mode == OUT_ARGMAX) {
        if (sr_cuda_argmax(c, s->logits, m->V, 1, m->V, s->argmax, err)) return -1;
        int64_t id = -1;
        SR_CUDA_TRY(err, cudaMemcpyAsync(&id, s->argmax, sizeof id, cudaMemcpyDeviceToHost, cs));
        if (sr_cuda_ctx_sync(c, err)) return -1;
        if (id < 0) return sr_fail(err, "greedy step: no finite logit");
        *next = (int32_t)id;
        return 0;
    }
    SR_CUDA_TRY(err, cudaMemcpyAsync(logits, s->logits, sizeof(float) * (size_t)(rows * m->V),
                                     cudaMemcpyDeviceToHost, cs));
    return sr_cuda_ctx_sync(c, err);
}

int forward(sr_cuda_seq *s, const int32_t *tokens, int64_t T, out_mode last_mode, float *logits,
            bool all_logits, int32_t *next, int32_t *adapter_out, int32_t *pos_out, sr_error *err)
{
    sr_seq *h = s->host;
    const sr_model *m = s->dm->m;
    if (T <= 0) return sr_fail(err, "empty input: no token to process");
    if (h->len + T > h->ctx)
        return sr_fail(err, "sequence of %lld tokens exceeds the context of %lld positions",
                       (long long)(h->len + T), (long long)h->ctx);
    const int64_t len0 = h->len;
    const sr_switch_state sw0 = h->sw;
    for (int64_t off = 0; off < T; off += h->chunk) {
        const int n = (int)(T - off < h->chunk ? T - off : h->chunk);
        const bool last = off + n == T;
        sr_step st;
        out_mode mode = OUT_NONE;
        float *dst = NULL;
        if (logits && all_logits) {
            mode = OUT_ALL;
            dst = logits + off * m->V;
        } else if (last) {
            mode = last_mode;
            dst = logits;
        }
        if (sr_step_begin(h, tokens + off, n, &st, err) || run_step(s, &st, mode, dst, next, err)) {
            h->len = len0;  // nothing of this call becomes part of the sequence
            h->sw = sw0;
            return -1;
        }
        if (adapter_out) memcpy(adapter_out + off, st.adapter, sizeof(int32_t) * (size_t)n);
        if (pos_out) memcpy(pos_out + off, st.rope_pos, sizeof(int32_t) * (size_t)n);
        sr_step_commit(h, &st);
    }
    return 0;
}

}  // namespace

extern "C" sr_cuda_dtype sr_cuda_prefill_compute(void)
{
    const char *s = getenv("STRATA_CUDA_PREFILL");
    if (s && !strcmp(s, "bf16")) return SR_CUDA_BF16;
    if (s && !strcmp(s, "f16")) return SR_CUDA_F16;
    return SR_CUDA_F32;
}

extern "C" int sr_cuda_embed_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io,
                                  const sr_qmatrix *embed, sr_error *err)
{
    return sr_cuda_embed(c, embed, io->ids, io->T, io->m->emb_mult, io->x, err);
}

extern "C" int sr_cuda_layer_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io,
                                  const sr_layer_weights *w, float *kc, float *vc, int64_t kv_ctx,
                                  sr_error *err)
{
    const sr_model *m = io->m;
    const int T = io->T;
    const int64_t H = m->H, hd = m->hd, qd = m->nh * hd, kvd = m->nkv * hd, D = qkv_width(m);
    const int64_t I = m->I;
    const int32_t *a = io->adapter_host;
    const sr_cuda_dtype compute = io->compute;

    // attention block
    if (sr_cuda_rmsnorm(c, io->x, H, T, 1, 0, H, w->in_norm, m->eps, io->u, H, err) ||
        proj_forward(c, &w->qkv, io->u, T, H, a, io->qkv, D, compute, err))
        return -1;
    float *q = io->qkv, *k = io->qkv + qd;
    if (w->q_norm &&
        (sr_cuda_rmsnorm(c, q, D, T, (int)m->nh, hd, hd, w->q_norm, m->eps, q, D, err) ||
         sr_cuda_rmsnorm(c, k, D, T, (int)m->nkv, hd, hd, w->k_norm, m->eps, k, D, err)))
        return -1;
    if (m->use_rope &&
        (sr_cuda_rope(c, q, D, T, (int)m->nh, hd, (int)hd, io->inv_freq, io->pos, err) ||
         sr_cuda_rope(c, k, D, T, (int)m->nkv, hd, (int)hd, io->inv_freq, io->pos, err)))
        return -1;
    if (sr_cuda_kv_append(c, k, k + kvd, D, T, (int)m->nkv, (int)hd, kc, vc, kv_ctx, io->p0,
                          err))
        return -1;
    sr_attn_args aa;
    memset(&aa, 0, sizeof aa);
    aa.nh = (int)m->nh;
    aa.nkv = (int)m->nkv;
    aa.hd = (int)hd;
    aa.scale = m->attn_scale;
    aa.p0 = io->p0;
    aa.T = T;
    aa.q = io->qkv;
    aa.ldq = D;
    aa.k = kc;
    aa.v = vc;
    aa.head_stride = kv_ctx * hd;
    aa.key_mem = m->hiding ? io->key_mem : NULL;
    aa.qsup = m->hiding ? io->qsup : NULL;
    aa.out = io->attn;
    aa.ldo = qd;
    if (sr_cuda_attention(c, &aa, err) ||
        proj_forward(c, &w->o, io->attn, T, qd, a, io->proj, H, compute, err) ||
        sr_cuda_residual_add(c, io->x, io->proj, T, H, m->res_mult, err))
        return -1;

    // MLP block
    if (sr_cuda_rmsnorm(c, io->x, H, T, 1, 0, H, w->post_norm, m->eps, io->u, H, err) ||
        proj_forward(c, &w->mlp_in, io->u, T, H, a, io->gu, 2 * I, compute, err) ||
        sr_cuda_swiglu(c, io->gu, 2 * I, T, I, io->act, I, err) ||
        proj_forward(c, &w->mlp_out, io->act, T, I, a, io->proj, H, compute, err) ||
        sr_cuda_residual_add(c, io->x, io->proj, T, H, m->res_mult, err))
        return -1;
    return 0;
}

extern "C" int sr_cuda_head_unit(sr_cuda_ctx *c, const sr_cuda_unit_io *io,
                                 const float *final_norm, const sr_qmatrix *head, int rows,
                                 float *logits, sr_error *err)
{
    const sr_model *m = io->m;
    const float *x = io->x + (int64_t)(io->T - rows) * m->H;
    if (sr_cuda_rmsnorm(c, x, m->H, rows, 1, 0, m->H, final_norm, m->eps, io->u, m->H, err) ||
        sr_cuda_matmul(c, head, io->u, rows, m->H, logits, m->V, io->compute, err) ||
        sr_cuda_scale_div(c, logits, m->V, rows, m->V, m->logit_scale, err))
        return -1;
    return 0;
}

extern "C" void sr_cuda_model_free(sr_cuda_model *dm)
{
    if (!dm) return;
    if (dm->layers)
        for (int l = 0; l < dm->m->L; l++) free_layer(&dm->layers[l]);
    sr_free(dm->layers);
    if (!dm->tied) sr_cuda_qmatrix_free(&dm->head);
    sr_cuda_qmatrix_free(&dm->embed);
    sr_cuda_free(dm->final_norm);
    sr_cuda_free(dm->inv_freq);
    sr_free(dm);
}

extern "C" uint64_t sr_cuda_model_bytes(const sr_cuda_model *dm) { return dm->bytes; }

extern "C" int sr_cuda_model_upload(const sr_model *m, sr_cuda_ctx *c, sr_cuda_model **out,
                                    sr_error *err)
{
    *out = NULL;
    sr_cuda_model *dm = (sr_cuda_model *)sr_calloc(1, sizeof *dm);
    if (!dm) return sr_fail(err, "cuda model: out of memory");
    dm->m = m;
    dm->c = c;
    sr_cuda_ctx_enter(c);
    dm->layers = (sr_layer_weights *)sr_calloc((size_t)m->L, sizeof *dm->layers);
    if (!dm->layers) {
        sr_cuda_model_free(dm);
        return sr_fail(err, "cuda model: out of memory");
    }
    int rc = 0;
    if (sr_cuda_qmatrix_upload(&m->embed, &dm->embed, err)) {
        rc = sr_fail_prefix(err, "embedding");
    } else {
        dm->bytes += sr_qmatrix_bytes(&m->embed);
        dm->tied = m->head.data == m->embed.data;
        if (dm->tied) {
            dm->head = dm->embed;
        } else if (sr_cuda_qmatrix_upload(&m->head, &dm->head, err)) {
            rc = sr_fail_prefix(err, "lm head");
        } else {
            dm->bytes += sr_qmatrix_bytes(&m->head);
        }
    }
    if (!rc && dup_floats(m->final_norm, m->H, &dm->final_norm, &dm->bytes, err))
        rc = sr_fail_prefix(err, "final norm");
    if (!rc && m->use_rope && dup_floats(m->rope.inv_freq, m->rope.hd / 2, &dm->inv_freq, &dm->bytes, err))
        rc = sr_fail_prefix(err, "rope");
    for (int l = 0; !rc && l < m->L; l++) rc = upload_layer(m, l, &dm->layers[l], &dm->bytes, err);
    if (rc) {
        sr_cuda_model_free(dm);
        return sr_fail_prefix(err, "cuda: uploading %s", m->cfg.source ? m->cfg.source : "the model");
    }
    *out = dm;
    return 0;
}

extern "C" void sr_cuda_seq_free(sr_cuda_seq *s)
{
    if (!s) return;
    if (s->k)
        for (int l = 0; l < s->dm->m->L; l++) sr_cuda_free(s->k[l]);
    if (s->v)
        for (int l = 0; l < s->dm->m->L; l++) sr_cuda_free(s->v[l]);
    sr_free(s->k);
    sr_free(s->v);
    void *bufs[] = {s->key_mem, s->x, s->u, s->qkv, s->attn, s->proj, s->gu,
                    s->act, s->logits, s->ids, s->pos, s->qsup, s->argmax};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) sr_cuda_free(bufs[i]);
    sr_seq_free(s->host);
    sr_free(s);
}

extern "C" int sr_cuda_seq_create(const sr_cuda_model *dm, int64_t ctx, sr_cuda_seq **out,
                                  sr_error *err)
{
    *out = NULL;
    const sr_model *m = dm->m;
    if (m->kv_type != SR_KV_F32)
        return sr_fail(err, "cuda sequence: a %s KV cache is not supported on CUDA (f32 only)",
                       sr_kv_type_name(m->kv_type));
    sr_cuda_seq *s = (sr_cuda_seq *)sr_calloc(1, sizeof *s);
    if (!s) return sr_fail(err, "cuda sequence: out of memory");
    s->dm = dm;
    if (sr_seq_create(m, ctx, &s->host, err)) {
        sr_free(s);
        return -1;
    }
    sr_cuda_ctx_enter(dm->c);
    s->ctx = s->host->ctx;
    s->chunk = s->host->chunk;
    const int64_t ch = s->chunk, H = m->H, kv_floats = m->nkv * s->ctx * m->hd;
    s->k = (float **)sr_calloc((size_t)m->L, sizeof(float *));
    s->v = (float **)sr_calloc((size_t)m->L, sizeof(float *));
    int rc = !s->k || !s->v ? sr_fail(err, "cuda sequence: out of memory") : 0;
    for (int l = 0; !rc && l < m->L; l++)
        rc = sr_cuda_malloc((void **)&s->k[l], sizeof(float) * (size_t)kv_floats, err) ||
             sr_cuda_malloc((void **)&s->v[l], sizeof(float) * (size_t)kv_floats, err);
    struct { void **p; size_t bytes; } want[] = {
        {(void **)&s->key_mem, sizeof(uint32_t) * (size_t)s->ctx},
        {(void **)&s->x, sizeof(float) * (size_t)(ch * H)},
        {(void **)&s->u, sizeof(float) * (size_t)(ch * H)},
        {(void **)&s->qkv, sizeof(float) * (size_t)(ch * qkv_width(m))},
        {(void **)&s->attn, sizeof(float) * (size_t)(ch * m->nh * m->hd)},
        {(void **)&s->proj, sizeof(float) * (size_t)(ch * H)},
        {(void **)&s->gu, sizeof(float) * (size_t)(ch * 2 * m->I)},
        {(void **)&s->act, sizeof(float) * (size_t)(ch * m->I)},
        {(void **)&s->logits, sizeof(float) * (size_t)(ch * m->V)},
        {(void **)&s->ids, sizeof(int32_t) * (size_t)ch},
        {(void **)&s->pos, sizeof(int32_t) * (size_t)ch},
        {(void **)&s->qsup, sizeof(uint32_t) * (size_t)ch},
        {(void **)&s->argmax, sizeof(int64_t)},
    };
    for (size_t i = 0; !rc && i < sizeof want / sizeof want[0]; i++)
        rc = sr_cuda_malloc(want[i].p, want[i].bytes, err);
    if (rc) {
        sr_cuda_seq_free(s);
        return sr_fail_prefix(err, "cuda sequence (ctx %lld)", (long long)ctx);
    }
    *out = s;
    return 0;
}

extern "C" void sr_cuda_seq_reset(sr_cuda_seq *s) { sr_seq_reset(s->host); }

extern "C" const sr_seq *sr_cuda_seq_host(const sr_cuda_seq *s) { return s->host; }

extern "C" int sr_cuda_forward(sr_cuda_seq *s, const int32_t *tokens, int64_t T, float *logits,
                               bool all_logits, int32_t *adapter_out, int32_t *pos_out,
                               sr_error *err)
{
    return forward(s, tokens, T, logits ? OUT_LAST : OUT_NONE, logits, all_logits, NULL,
                   adapter_out, pos_out, err);
}

extern "C" int sr_cuda_greedy_step(sr_cuda_seq *s, int32_t token, int32_t *next, sr_error *err)
{
    return forward(s, &token, 1, OUT_ARGMAX, NULL, false, next, NULL, NULL, err);
}
