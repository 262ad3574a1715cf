#include "runtime/forward.h"

#include <inttypes.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "quant/matmul.h"
#include "runtime/alloc.h"
#include "runtime/attention.h"
#include "runtime/log.h"
#include "runtime/vmath.h"

/* Prefill tokens per pass (sr_seq_chunk): bounds every per-chunk buffer. */
#define DEFAULT_CHUNK 256
/* Each buffer of a workspace over caller memory starts on this boundary. */
#define WS_ALIGN 64
/* below this many floats per row-wise pass, threads cost more than they save */
#define PAR_MIN 16384

/* ---- workspace ------------------------------------------------------------ */

static int64_t qkv_width(const sr_model *m) { return (m->nh + 2 * m->nkv) * m->hd; }

static int64_t lora_scratch(const sr_model *m, int max_t)
{
    int64_t best = 0;
    for (int l = 0; l < m->L; l++) {
        const sr_proj *p[4] = {&m->layers[l].qkv, &m->layers[l].o, &m->layers[l].mlp_in,
                               &m->layers[l].mlp_out};
        for (int i = 0; i < 4; i++) {
            if (!p[i]->has_lora) continue;
            int64_t n = sr_lora_scratch_floats(&p[i]->lora, max_t);
            if (n > best) best = n;
        }
    }
    return best;
}

int sr_seq_chunk(int64_t ctx)
{
    return ctx < DEFAULT_CHUNK ? (int)(ctx > 0 ? ctx : 1) : DEFAULT_CHUNK;
}

/* Float counts of each buffer, in struct order. */
static void workspace_sizes(const sr_model *m, int max_t, int64_t ctx, int64_t n[8])
{
    const int64_t T = max_t, H = m->H;
    n[0] = T * H;                                   /* u: normed input */
    n[1] = T * qkv_width(m);                        /* qkv */
    n[2] = T * m->nh * m->hd;                       /* attn */
    n[3] = T * H;                                   /* proj: o / down output */
    n[4] = T * 2 * m->I;                            /* gu */
    n[5] = T * m->I;                                /* act */
    n[6] = lora_scratch(m, max_t);                  /* lora */
    n[7] = sr_attention_scratch_floats(ctx, (int)m->hd, m->kv_type);   /* scores */
}

uint64_t sr_workspace_bytes(const sr_model *m, int max_t, int64_t ctx)
{
    int64_t n[8];
    workspace_sizes(m, max_t, ctx, n);
    uint64_t total = 0;
    for (int i = 0; i < 8; i++) total += (uint64_t)n[i] * sizeof(float);
    return total;
}

/* The buffers of ws in struct order (workspace_sizes' order). */
static void workspace_fields(sr_workspace *ws, float **b[8])
{
    float **f[8] = {&ws->u, &ws->qkv, &ws->attn, &ws->proj, &ws->gu, &ws->act, &ws->lora,
                    &ws->scores};
    memcpy(b, f, sizeof f);
}

void sr_workspace_free(sr_workspace *ws)
{
    float **b[8];
    workspace_fields(ws, b);
    for (int i = 0; i < 8; i++) sr_free_aligned(*b[i]);
    memset(ws, 0, sizeof *ws);
}

int sr_workspace_init(sr_workspace *ws, const sr_model *m, int max_t, int64_t ctx, sr_error *err)
{
    memset(ws, 0, sizeof *ws);
    int64_t n[8];
    workspace_sizes(m, max_t, ctx, n);
    float **b[8];
    workspace_fields(ws, b);
    for (int i = 0; i < 8; i++) {
        *b[i] = sr_malloc_aligned(sizeof(float) * (size_t)(n[i] ? n[i] : 1));
        if (!*b[i]) {
            sr_workspace_free(ws);
            return sr_fail(err, "workspace: out of memory (%llu bytes for %d tokens, ctx %lld)",
                           (unsigned long long)sr_workspace_bytes(m, max_t, ctx), max_t,
                           (long long)ctx);
        }
    }
    ws->max_t = max_t;
    ws->ctx = ctx;
    ws->threads = omp_get_max_threads();   /* what workspace_sizes sized the scores for */
    return 0;
}

static uint64_t ws_up(uint64_t n) { return (n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

uint64_t sr_workspace_buffer_bytes(const sr_model *m, int max_t, int64_t ctx)
{
    int64_t n[8];
    workspace_sizes(m, max_t, ctx, n);
    uint64_t total = 0;
    for (int i = 0; i < 8; i++) total += ws_up((uint64_t)(n[i] ? n[i] : 1) * sizeof(float));
    return total;
}

int sr_workspace_init_in(sr_workspace *ws, const sr_model *m, int max_t, int64_t ctx, void *buf,
                         size_t size, sr_error *err)
{
    memset(ws, 0, sizeof *ws);
    int64_t n[8];
    workspace_sizes(m, max_t, ctx, n);
    const uint64_t need = sr_workspace_buffer_bytes(m, max_t, ctx);
    if (!buf || (uintptr_t)buf % WS_ALIGN || size < need)
        return sr_fail(err, "workspace: a buffer of %zu bytes at %p is too small or not %d-byte "
                       "aligned (%llu bytes needed for %d tokens, ctx %lld)", size, buf, WS_ALIGN,
                       (unsigned long long)need, max_t, (long long)ctx);
    float **b[8];
    workspace_fields(ws, b);
    char *p = buf;
    for (int i = 0; i < 8; i++) {
        *b[i] = (float *)p;
        p += ws_up((uint64_t)(n[i] ? n[i] : 1) * sizeof(float));
    }
    ws->max_t = max_t;
    ws->ctx = ctx;
    ws->threads = omp_get_max_threads();   /* what workspace_sizes sized the scores for */
    return 0;
}

/* ---- sequence ------------------------------------------------------------- */

void sr_seq_free(sr_seq *s)
{
    if (!s) return;
    sr_kv_cache_free(&s->kv);
    sr_workspace_free(&s->ws);
    sr_free(s->tokens);
    sr_free(s->adapter);
    sr_free(s->rope_pos);
    sr_free_aligned(s->x);
    sr_free(s->step_buf);
    sr_free(s->qsup_buf);
    sr_free(s);
}

void sr_seq_reset(sr_seq *s)
{
    s->len = 0;
    sr_switch_reset(&s->sw);
}

int sr_seq_create(const sr_model *m, int64_t ctx, sr_seq **out, sr_error *err)
{
    *out = NULL;
    if (ctx <= 0) ctx = m->cfg.max_position_embeddings;
    if (ctx <= 0 || ctx > INT32_MAX)
        return sr_fail(err, "context of %lld positions is not supported", (long long)ctx);
    if (m->cfg.max_position_embeddings > 0 && ctx > m->cfg.max_position_embeddings)
        sr_warn("context of %lld positions exceeds max_position_embeddings %lld of %s",
                (long long)ctx, (long long)m->cfg.max_position_embeddings,
                m->cfg.source ? m->cfg.source : "the config");
    sr_seq *s = sr_calloc(1, sizeof *s);
    if (!s) return sr_fail(err, "sequence: out of memory");
    s->m = m;
    s->ctx = ctx;
    s->chunk = sr_seq_chunk(ctx);
    sr_switch_reset(&s->sw);
    if (sr_kv_cache_init(&s->kv, m->L, (int)m->nkv, (int)m->hd, ctx, m->kv_type, err)) goto fail;
    if (sr_workspace_init(&s->ws, m, s->chunk, ctx, err)) goto fail;
    s->tokens = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->adapter = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->rope_pos = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->x = sr_malloc_aligned(sizeof(float) * (size_t)(s->chunk * m->H));
    s->step_buf = sr_malloc(sizeof(int32_t) * 3 * (size_t)s->chunk);
    s->qsup_buf = sr_malloc(sizeof(uint32_t) * (size_t)s->chunk);
    if (!s->tokens || !s->adapter || !s->rope_pos || !s->x || !s->step_buf || !s->qsup_buf) {
        sr_fail(err, "sequence: out of memory (ctx %lld)", (long long)ctx);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sr_seq_free(s);
    return -1;
}

int sr_step_begin(sr_seq *s, const int32_t *tokens, int T, sr_step *st, sr_error *err)
{
    const sr_model *m = s->m;
    const sr_config *c = &m->cfg;
    if (T <= 0) return sr_fail(err, "empty input: no token to process");
    if (T > s->chunk) return sr_fail(err, "step of %d tokens exceeds the chunk size %d", T, s->chunk);
    if (s->len + T > s->ctx)
        return sr_fail(err, "sequence of %lld tokens exceeds the context of %lld positions",
                       (long long)(s->len + T), (long long)s->ctx);
    memset(st, 0, sizeof *st);
    st->T = T;
    st->p0 = s->len;
    st->tokens = tokens;
    st->embed_ids = s->step_buf;
    st->adapter = s->step_buf + s->chunk;
    st->rope_pos = s->step_buf + 2 * s->chunk;
    st->qsup = s->qsup_buf;
    sr_switch_state sw = s->sw;
    const bool exchange = (c->gen == SR_GEN_B || c->gen == SR_GEN_C) && m->meta.lut;
    for (int i = 0; i < T; i++) {
        const int32_t t = tokens[i];
        const int64_t p = st->p0 + i;
        if (t < 0 || t >= m->V)
            return sr_fail(err, "token id %d at position %lld is out of range (vocab_size %lld)",
                           t, (long long)p, (long long)m->V);
        int idx = c->gen == SR_GEN_NONE ? -1 : sr_config_control_index(c, t);
        bool overflow = false;
        int a = sr_switch_step(&m->sw, &sw, idx, &overflow);
        if (overflow)
            return sr_fail(err, "position %lld: more than %lld control tokens in one sequence "
                           "exceed the MultiSwitch address capacity", (long long)p,
                           (long long)(m->sw.ms_capacity - 1));
        uint32_t mem = m->hiding ? sr_adapter_meta_mem(&m->meta, t) : 0;
        st->adapter[i] = a;
        st->rope_pos[i] = (int32_t)(c->gen == SR_GEN_A && a > 0 && p > 0 ? p - 1 : p);
        st->qsup[i] = m->hiding ? m->meta.sup[a] & ~mem : 0;
        st->embed_ids[i] = exchange && t < m->meta.lut_size && m->meta.lut[t] >= 0
                               ? (int32_t)m->meta.lut[t] : t;
        s->kv.mem[p] = mem;
        s->tokens[p] = t;
        s->adapter[p] = a;
        s->rope_pos[p] = st->rope_pos[i];
    }
    st->sw_after = sw;
    return 0;
}

void sr_step_commit(sr_seq *s, const sr_step *st)
{
    s->len = st->p0 + st->T;
    s->sw = st->sw_after;
}

/* ---- units ----------------------------------------------------------------- */

void sr_embed_forward(const sr_model *m, const sr_step *st, float *x)
{
    const int64_t H = m->H;
    for (int i = 0; i < st->T; i++) {
        float *row = x + i * H;
        sr_qmatrix_dequant_rows(&m->embed, st->embed_ids[i], 1, row);
        for (int64_t j = 0; j < H; j++) row[j] *= m->emb_mult;
    }
}

/* out = w ⊙ (x · rsqrt(mean(x²) + eps)), as the reference's fp32 RMSNorm. */
SR_VEC_CLONES static void rmsnorm_row(const float *x, const float *w, int64_t n, float eps, float *out)
{
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
#pragma omp simd
    for (int64_t j = 0; j < n; j++) out[j] = w[j] * (x[j] * r);
}

/* out = silu(gate) ⊙ up */
SR_VEC_CLONES static void silu_mul_row(const float *gate, const float *up, int64_t n, float *out)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) out[j] = gate[j] / (1.0f + sr_vexpf(-gate[j])) * up[j];
}

/* x += y · mult */
SR_VEC_CLONES static void add_scaled_row(float *x, const float *y, int64_t n, float mult)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) x[j] = x[j] + y[j] * mult;
}

static void rmsnorm_rows(const float *x, const float *w, int T, int64_t n, float eps, float *out)
{
#pragma omp parallel for if ((int64_t)T * n > PAR_MIN)
    for (int i = 0; i < T; i++) rmsnorm_row(x + i * n, w, n, eps, out + i * n);
}

/* y[T][ldy] = u · Wᵀ (+ bias) (+ LoRA of each token's adapter). */
/* Every proj's parts fit one sr_matmul_parts call. */
_Static_assert(SR_PROJ_MAX_PARTS <= SR_MATMUL_MAX_PARTS, "proj parts beyond sr_matmul_parts");

static void proj_forward(const sr_proj *p, const float *u, int T, int64_t ldu, const int32_t *a,
                         float *y, int64_t ldy, float *lora_scratch)
{
    float *yp[SR_PROJ_MAX_PARTS];
    for (int i = 0; i < p->n_parts; i++) yp[i] = y + p->part_off[i];
    sr_matmul_parts(p->w, p->n_parts, u, T, ldu, yp, ldy);
    if (p->bias)
        for (int t = 0; t < T; t++)
            for (int64_t j = 0; j < p->rows; j++) y[t * ldy + j] += p->bias[j];
    if (p->has_lora) sr_lora_apply(&p->lora, u, T, ldu, a, y, ldy, lora_scratch);
}

/* x += y · m_res */
static void residual_add(float *x, const float *y, int T, int64_t n, float mult)
{
#pragma omp parallel for if ((int64_t)T * n > PAR_MIN)
    for (int i = 0; i < T; i++) add_scaled_row(x + i * n, y + i * n, n, mult);
}

void sr_layer_forward_w(const sr_model *m, const sr_layer_weights *w, int l, sr_kv_cache *kv,
                        const sr_step *st, float *x, sr_workspace *ws)
{
    const int T = st->T;
    const int64_t H = m->H, hd = m->hd, qd = m->nh * hd, kvd = m->nkv * hd, D = qkv_width(m);
    const int64_t I = m->I;

    /* attention block */
    rmsnorm_rows(x, w->in_norm, T, H, m->eps, ws->u);
    proj_forward(&w->qkv, ws->u, T, H, st->adapter, ws->qkv, D, ws->lora);
#pragma omp parallel for if ((int64_t)T * D > PAR_MIN)
    for (int i = 0; i < T; i++) {
        float *q = ws->qkv + i * D, *k = q + qd;
        if (w->q_norm) {
            for (int64_t h = 0; h < m->nh; h++) rmsnorm_row(q + h * hd, w->q_norm, hd, m->eps, q + h * hd);
            for (int64_t h = 0; h < m->nkv; h++) rmsnorm_row(k + h * hd, w->k_norm, hd, m->eps, k + h * hd);
        }
        if (m->use_rope) {
            sr_rope_apply(&m->rope, q, (int)m->nh, hd, st->rope_pos[i]);
            sr_rope_apply(&m->rope, k, (int)m->nkv, hd, st->rope_pos[i]);
        }
        for (int64_t g = 0; g < m->nkv; g++)
            sr_kv_write(kv, l, (int)g, st->p0 + i, k + g * hd, k + kvd + g * hd);
    }
    sr_attn_args aa = {
        .nh = (int)m->nh, .nkv = (int)m->nkv, .hd = (int)hd, .scale = m->attn_scale,
        .p0 = st->p0, .T = T, .q = ws->qkv, .ldq = D,
        .k = kv->k[l], .v = kv->v[l], .head_stride = kv->ctx * hd, .kv_type = kv->type,
        .key_mem = m->hiding ? kv->mem : NULL, .qsup = m->hiding ? st->qsup : NULL,
        .out = ws->attn, .ldo = qd, .scratch = ws->scores, .scratch_threads = ws->threads,
    };
    sr_attention(&aa);
    proj_forward(&w->o, ws->attn, T, qd, st->adapter, ws->proj, H, ws->lora);
    residual_add(x, ws->proj, T, H, m->res_mult);

    /* MLP block */
    rmsnorm_rows(x, w->post_norm, T, H, m->eps, ws->u);
    proj_forward(&w->mlp_in, ws->u, T, H, st->adapter, ws->gu, 2 * I, ws->lora);
#pragma omp parallel for if ((int64_t)T * I > PAR_MIN)
    for (int i = 0; i < T; i++)
        silu_mul_row(ws->gu + i * 2 * I, ws->gu + i * 2 * I + I, I, ws->act + i * I);
    proj_forward(&w->mlp_out, ws->act, T, I, st->adapter, ws->proj, H, ws->lora);
    residual_add(x, ws->proj, T, H, m->res_mult);
}

void sr_layer_forward(const sr_model *m, int l, sr_kv_cache *kv, const sr_step *st, float *x,
                      sr_workspace *ws)
{
    sr_layer_forward_w(m, &m->layers[l], l, kv, st, x, ws);
}

void sr_head_forward(const sr_model *m, const float *x, int T, float *logits, int64_t ldl,
                     sr_workspace *ws)
{
    rmsnorm_rows(x, m->final_norm, T, m->H, m->eps, ws->u);
    sr_matmul(&m->head, ws->u, T, m->H, logits, ldl);
    const float s = m->logit_scale;
#pragma omp parallel for if ((int64_t)T * m->V > PAR_MIN)
    for (int i = 0; i < T; i++)
        for (int64_t j = 0; j < m->V; j++) logits[i * ldl + j] /= s;
}

/* ---- whole forward ------------------------------------------------------- */

int sr_forward(sr_seq *s, const int32_t *tokens, int64_t T, float *logits, bool all_logits,
               int32_t *adapter_out, int32_t *pos_out, sr_error *err)
{
    const sr_model *m = s->m;
    if (T <= 0) return sr_fail(err, "empty input: no token to process");
    if (s->len + T > s->ctx)
        return sr_fail(err, "sequence of %lld tokens exceeds the context of %lld positions",
                       (long long)(s->len + T), (long long)s->ctx);
    const int64_t len0 = s->len;
    const sr_switch_state sw0 = s->sw;
    for (int64_t off = 0; off < T; off += s->chunk) {
        int n = (int)(T - off < s->chunk ? T - off : s->chunk);
        sr_step st;
        if (sr_step_begin(s, tokens + off, n, &st, err)) {
            /* roll back: nothing of this call becomes part of the sequence */
            s->len = len0;
            s->sw = sw0;
            return -1;
        }
        sr_embed_forward(m, &st, s->x);
        for (int l = 0; l < m->L; l++) sr_layer_forward(m, l, &s->kv, &st, s->x, &s->ws);
        if (logits && all_logits)
            sr_head_forward(m, s->x, n, logits + off * m->V, m->V, &s->ws);
        else if (logits && off + n == T)
            sr_head_forward(m, s->x + (int64_t)(n - 1) * m->H, 1, logits, m->V, &s->ws);
        if (adapter_out) memcpy(adapter_out + off, st.adapter, sizeof(int32_t) * (size_t)n);
        if (pos_out) memcpy(pos_out + off, st.rope_pos, sizeof(int32_t) * (size_t)n);
        sr_step_commit(s, &st);
    }
    return 0;
}
