/* Sequence state without a KV cache: what the offload executor needs from
 * runtime/forward.h when the KV blocks, activations and scratch live on the
 * tiers that run the layers (the workspace over their memory is
 * sr_workspace_init_in, runtime/forward.c). */
#include <stdint.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/forward.h"

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
    s->kv = (sr_kv_cache){.n_layers = m->L, .nkv = (int)m->nkv, .hd = (int)m->hd, .ctx = ctx,
                          .type = m->kv_type};
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
