#include "offload/tier_exec.h"

#include <string.h>

#include "sr_build_config.h"
#if SR_HAVE_CUDA
#include "offload/device_cuda.h"
#include "runtime/cuda/forward_cuda.h"
#endif

bool sr_tier_exec_on_host(const sr_tier_exec *t) { return !t->cuda; }

int sr_tier_exec_init(sr_tier_exec *t, sr_device *dev, const sr_model *m, sr_error *err)
{
    memset(t, 0, sizeof *t);
    t->dev = dev;
    if (dev->kind != SR_DEV_CUDA) return sr_stream_create(dev, &t->stream, err);
#if SR_HAVE_CUDA
    if (m->kv_type != SR_KV_F32)
        return sr_fail(err, "%s: a %s KV cache is not supported on CUDA (use --kv-type f32)",
                       dev->name, sr_kv_type_name(m->kv_type));
    const int phys = sr_cuda_device_physical(dev);
    if (phys < 0) return sr_fail(err, "%s: not a CUDA device", dev->name);
    if (sr_stream_create(dev, &t->stream, err)) return sr_fail_prefix(err, "%s", dev->name);
    sr_cuda_ctx *c = NULL;
    if (sr_cuda_ctx_create(phys, t->stream.impl, &c, err)) {
        sr_stream_destroy(&t->stream);
        return sr_fail_prefix(err, "%s", dev->name);
    }
    t->cuda = c;
    t->prefill = (int)sr_cuda_prefill_compute();
    return 0;
#else
    (void)m;
    return sr_fail(err, "%s: this build has no CUDA: it cannot run units there", dev->name);
#endif
}

void sr_tier_exec_free(sr_tier_exec *t)
{
    if (!t || !t->dev) return;
#if SR_HAVE_CUDA
    if (t->cuda) sr_cuda_ctx_free(t->cuda);     /* does not own the stream */
#endif
    sr_stream_destroy(&t->stream);
    memset(t, 0, sizeof *t);
}

int sr_tier_exec_sync(sr_tier_exec *t, sr_error *err)
{
    return sr_stream_sync(&t->stream, err);
}

#if SR_HAVE_CUDA
/* The CUDA view of one call on the tier. */
static sr_cuda_unit_io cuda_io(const sr_tier_exec *t, const sr_model *view, const sr_step *st,
                               const sr_step *sth, float *x, const sr_workspace *ws,
                               const uint32_t *mem)
{
    sr_cuda_unit_io io;
    memset(&io, 0, sizeof io);
    io.m = view;
    io.T = st->T;
    io.p0 = st->p0;
    io.x = x;
    if (ws) {
        io.u = ws->u;
        io.qkv = ws->qkv;
        io.attn = ws->attn;
        io.proj = ws->proj;
        io.gu = ws->gu;
        io.act = ws->act;
    }
    io.ids = st->embed_ids;
    io.pos = st->rope_pos;
    io.qsup = st->qsup;
    io.key_mem = mem;
    io.adapter_host = sth ? sth->adapter : NULL;
    io.inv_freq = view->rope.inv_freq;
    io.compute = (sr_cuda_dtype)t->prefill;
    return io;
}
#endif

int sr_tier_embed(sr_tier_exec *t, const sr_model *view, const sr_step *st, float *x,
                  sr_error *err)
{
#if SR_HAVE_CUDA
    if (t->cuda) {
        sr_cuda_unit_io io = cuda_io(t, view, st, NULL, x, NULL, NULL);
        return sr_cuda_embed_unit(t->cuda, &io, &view->embed, err) ? sr_fail_prefix(err,
                                                                     "%s: embedding", t->dev->name)
                                                                   : 0;
    }
#endif
    (void)t;
    (void)err;
    sr_embed_forward(view, st, x);
    return 0;
}

int sr_tier_layer(sr_tier_exec *t, const sr_model *view, const sr_layer_weights *w, int l,
                  sr_kv_cache *kv, const sr_step *st, const sr_step *sth, float *x,
                  sr_workspace *ws, sr_error *err)
{
#if SR_HAVE_CUDA
    if (t->cuda) {
        sr_cuda_unit_io io = cuda_io(t, view, st, sth, x, ws, kv->mem);
        if (sr_cuda_layer_unit(t->cuda, &io, w, kv->k[l], kv->v[l], kv->ctx, err))
            return sr_fail_prefix(err, "%s: layer %d", t->dev->name, l);
        return 0;
    }
#endif
    (void)t;
    (void)sth;
    (void)err;
    sr_layer_forward_w(view, w, l, kv, st, x, ws);
    return 0;
}

int sr_tier_head(sr_tier_exec *t, const sr_model *view, const sr_step *st, const float *x,
                 int rows, float *logits, sr_workspace *ws, sr_error *err)
{
#if SR_HAVE_CUDA
    if (t->cuda) {
        sr_cuda_unit_io io = cuda_io(t, view, st, NULL, (float *)x, ws, NULL);
        if (sr_cuda_head_unit(t->cuda, &io, view->final_norm, &view->head, rows, logits, err))
            return sr_fail_prefix(err, "%s: head", t->dev->name);
        return 0;
    }
#endif
    (void)t;
    (void)err;
    sr_head_forward(view, x + (int64_t)(st->T - rows) * view->H, rows, logits, view->V, ws);
    return 0;
}
