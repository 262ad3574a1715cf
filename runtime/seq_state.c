/* Sequence state without a KV cache, and a workspace over caller memory:
 * what the offload executor needs from runtime/forward.h when the KV blocks,
 * activations and scratch live on the tiers that run the layers.
 *
 * The workspace layout and the prefill chunk mirror runtime/forward.c
 * (workspace_sizes, DEFAULT_CHUNK); the layout is checked against
 * sr_workspace_bytes on every call, so a change there is refused here
 * rather than overrunning a buffer (tests/runtime/test_seq_state.c also
 * compares the chunk). */
#include <stdint.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/attention.h"
#include "runtime/forward.h"
#include "runtime/lora.h"

#define SEQ_CHUNK 256           /* runtime/forward.c's DEFAULT_CHUNK */
#define WS_ALIGN 64
#define WS_BUFFERS 8

int sr_seq_chunk(int64_t ctx)
{
    return ctx < SEQ_CHUNK ? (int)(ctx > 0 ? ctx : 1) : SEQ_CHUNK;
}

/* ---- workspace over caller memory ------------------------------------------ */

static int64_t lora_scratch(const sr_model *m, int max_t)
{
    int64_t best = 0;
    for (int l = 0; m->layers && l < m->L; l++) {
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

/* Float counts of the buffers, in sr_workspace's field order (u, qkv, attn,
 * proj, gu, act, lora, scores). */
static void sizes(const sr_model *m, int max_t, int64_t ctx, int64_t n[WS_BUFFERS])
{
    const int64_t T = max_t, H = m->H;
    n[0] = T * H;
    n[1] = T * (m->nh + 2 * m->nkv) * m->hd;
    n[2] = T * m->nh * m->hd;
    n[3] = T * H;
    n[4] = T * 2 * m->I;
    n[5] = T * m->I;
    n[6] = lora_scratch(m, max_t);
    n[7] = sr_attention_scratch_floats(ctx);
}

static uint64_t up(uint64_t n) { return (n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

uint64_t sr_workspace_buffer_bytes(const sr_model *m, int max_t, int64_t ctx)
{
    int64_t n[WS_BUFFERS];
    sizes(m, max_t, ctx, n);
    uint64_t total = 0;
    for (int i = 0; i < WS_BUFFERS; i++) total += up((uint64_t)(n[i] ? n[i] : 1) * sizeof(float));
    return total;
}

int sr_workspace_init_in(sr_workspace *ws, const sr_model *m, int max_t, int64_t ctx, void *buf,
                         size_t size, sr_error *err)
{
    memset(ws, 0, sizeof *ws);
    int64_t n[WS_BUFFERS];
    sizes(m, max_t, ctx, n);
    uint64_t floats = 0;
    for (int i = 0; i < WS_BUFFERS; i++) floats += (uint64_t)n[i];
    if (floats * sizeof(float) != sr_workspace_bytes(m, max_t, ctx))
        return sr_fail(err, "workspace: the layout of runtime/forward.c changed (%llu bytes "
                       "there, %llu here): update runtime/seq_state.c",
                       (unsigned long long)sr_workspace_bytes(m, max_t, ctx),
                       (unsigned long long)(floats * sizeof(float)));
    const uint64_t need = sr_workspace_buffer_bytes(m, max_t, ctx);
    if (!buf || (uintptr_t)buf % WS_ALIGN || size < need)
        return sr_fail(err, "workspace: a buffer of %zu bytes at %p is too small or not %d-byte "
                       "aligned (%llu bytes needed for %d tokens, ctx %lld)", size, buf, WS_ALIGN,
                       (unsigned long long)need, max_t, (long long)ctx);
    float **b[WS_BUFFERS] = {&ws->u, &ws->qkv, &ws->attn, &ws->proj, &ws->gu, &ws->act,
                             &ws->lora, &ws->scores};
    char *p = buf;
    for (int i = 0; i < WS_BUFFERS; i++) {
        *b[i] = (float *)p;
        p += up((uint64_t)(n[i] ? n[i] : 1) * sizeof(float));
    }
    ws->max_t = max_t;
    ws->ctx = ctx;
    return 0;
}

/* ---- sequence state without a KV cache ------------------------------------- */

uint64_t sr_seq_state_bytes(int64_t ctx)
{
    const uint64_t c = (uint64_t)(ctx > 0 ? ctx : 0), chunk = (uint64_t)sr_seq_chunk(ctx);
    /* tokens, adapter, rope_pos, Mem bits per position; step arrays + qsup */
    return c * 4 * sizeof(int32_t) + chunk * 4 * sizeof(int32_t);
}

int sr_seq_create_state(const sr_model *m, int64_t ctx, sr_seq **out, sr_error *err)
{
    *out = NULL;
    if (ctx <= 0) ctx = m->cfg.max_position_embeddings;
    if (ctx <= 0 || ctx > INT32_MAX)
        return sr_fail(err, "context of %lld positions is not supported", (long long)ctx);
    sr_seq *s = sr_calloc(1, sizeof *s);
    if (!s) return sr_fail(err, "sequence: out of memory");
    s->m = m;
    s->ctx = ctx;
    s->chunk = sr_seq_chunk(ctx);
    sr_switch_reset(&s->sw);
    s->kv = (sr_kv_cache){.n_layers = m->L, .nkv = (int)m->nkv, .hd = (int)m->hd, .ctx = ctx};
    s->kv.mem = sr_calloc((size_t)ctx, sizeof *s->kv.mem);
    s->tokens = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->adapter = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->rope_pos = sr_malloc(sizeof(int32_t) * (size_t)ctx);
    s->step_buf = sr_malloc(sizeof(int32_t) * 3 * (size_t)s->chunk);
    s->qsup_buf = sr_malloc(sizeof(uint32_t) * (size_t)s->chunk);
    if (!s->kv.mem || !s->tokens || !s->adapter || !s->rope_pos || !s->step_buf || !s->qsup_buf) {
        sr_seq_free(s);
        return sr_fail(err, "sequence: out of memory (ctx %lld)", (long long)ctx);
    }
    *out = s;
    return 0;
}
