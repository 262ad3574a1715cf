/* The sequence state without a KV cache and the workspace over caller
 * memory (runtime/seq_state.c): the same chunk and workspace as
 * runtime/forward.c, a forward pass through explicit units over them gives
 * the logits of sr_forward bit for bit, bad buffers are refused, and
 * allocation failures leave nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "test_util.h"

static sr_model *load(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "model/%s", name);
    sr_model *m;
    sr_error err;
    if (sr_model_load(test_data(rel), NULL, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void test_chunk_and_sizes_match_forward(void **state)
{
    (void)state;
    sr_model *m = load("switch-3a");
    static const int64_t ctxs[] = {1, 7, 255, 256, 300, 4096};
    for (size_t i = 0; i < sizeof ctxs / sizeof *ctxs; i++) {
        sr_seq *s, *st;
        sr_error err;
        assert_int_equal(sr_seq_create(m, ctxs[i], &s, &err), 0);
        assert_int_equal(sr_seq_create_state(m, ctxs[i], &st, &err), 0);
        assert_int_equal(sr_seq_chunk(ctxs[i]), s->chunk);
        assert_int_equal(st->chunk, s->chunk);
        assert_int_equal(st->ctx, s->ctx);
        assert_null(st->kv.k);
        assert_null(st->kv.v);
        assert_null(st->x);
        assert_true(sr_workspace_buffer_bytes(m, s->chunk, ctxs[i]) >=
                    sr_workspace_bytes(m, s->chunk, ctxs[i]));
        assert_true(sr_seq_state_bytes(ctxs[i]) < sr_kv_bytes(m, ctxs[i]) + 64 * 1024);
        sr_seq_free(s);
        sr_seq_free(st);
    }
    sr_model_free(m);
}

/* sr_forward, unit by unit, with the state-only sequence, a KV cache of its
 * own and the workspace in one caller buffer. */
static void forward_by_units(const sr_model *m, sr_seq *s, sr_kv_cache *kv, sr_workspace *ws,
                             float *x, const int32_t *tok, int T, float *logits)
{
    sr_step st;
    sr_error err;
    if (sr_step_begin(s, tok, T, &st, &err)) fail_msg("%s", err.msg);
    kv->mem = s->kv.mem;
    sr_embed_forward(m, &st, x);
    for (int l = 0; l < m->L; l++) sr_layer_forward(m, l, kv, &st, x, ws);
    sr_head_forward(m, x + (int64_t)(T - 1) * m->H, 1, logits, m->V, ws);
    sr_step_commit(s, &st);
}

static void test_units_over_state_and_buffer(void **state)
{
    (void)state;
    static const char *models[] = {"switch-3a", "switch-3a-with-buffers", "granite-dense"};
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        sr_model *m = load(models[mi]);
        const int64_t ctx = 32;
        sr_seq *ref, *s;
        sr_error err;
        assert_int_equal(sr_seq_create(m, ctx, &ref, &err), 0);
        assert_int_equal(sr_seq_create_state(m, ctx, &s, &err), 0);
        sr_kv_cache kv;
        assert_int_equal(
            sr_kv_cache_init(&kv, m->L, (int)m->nkv, (int)m->hd, ctx, SR_KV_F32, &err), 0);
        uint32_t *own_mem = kv.mem;     /* the units read the state's Mem bits */
        const size_t wsb = (size_t)sr_workspace_buffer_bytes(m, s->chunk, ctx);
        void *buf = sr_malloc_aligned(wsb);
        sr_workspace ws;
        assert_int_equal(sr_workspace_init_in(&ws, m, s->chunk, ctx, buf, wsb, &err), 0);
        float *x = sr_malloc_aligned(sizeof(float) * (size_t)(s->chunk * m->H));
        float *a = malloc(sizeof(float) * (size_t)m->V), *b = malloc(sizeof(float) * (size_t)m->V);
        int32_t tok[8] = {1, 256, 5, 7, 257, 9, 11, 13};      /* control tokens of switch-3a */
        for (int i = 0; i < 8; i++) tok[i] %= (int32_t)m->V;
        if (sr_forward(ref, tok, 5, a, false, NULL, NULL, &err))
            fail_msg("%s: %s", models[mi], err.msg);
        forward_by_units(m, s, &kv, &ws, x, tok, 5, b);
        assert_memory_equal(a, b, sizeof(float) * (size_t)m->V);
        for (int i = 5; i < 8; i++) {
            assert_int_equal(sr_forward(ref, tok + i, 1, a, false, NULL, NULL, &err), 0);
            forward_by_units(m, s, &kv, &ws, x, tok + i, 1, b);
            assert_memory_equal(a, b, sizeof(float) * (size_t)m->V);
        }
        assert_memory_equal(ref->adapter, s->adapter, sizeof(int32_t) * 8);
        assert_memory_equal(ref->rope_pos, s->rope_pos, sizeof(int32_t) * 8);
        /* truncation keeps a prefix of the state */
        assert_int_equal(sr_seq_truncate(s, 3, &err), 0);
        assert_int_equal(s->len, 3);
        sr_seq_reset(s);
        assert_int_equal(s->len, 0);
        free(a);
        free(b);
        sr_free_aligned(x);
        sr_free_aligned(buf);
        kv.mem = own_mem;
        sr_kv_cache_free(&kv);
        sr_seq_free(s);
        sr_seq_free(ref);
        sr_model_free(m);
    }
}

static void test_bad_buffers_refused(void **state)
{
    (void)state;
    sr_model *m = load("switch-3a");
    const size_t need = (size_t)sr_workspace_buffer_bytes(m, 16, 32);
    char *buf = sr_malloc_aligned(need + 64);
    sr_workspace ws;
    sr_error err;
    assert_int_equal(sr_workspace_init_in(&ws, m, 16, 32, buf, need - 1, &err), -1);
    assert_non_null(strstr(err.msg, "too small"));
    assert_int_equal(sr_workspace_init_in(&ws, m, 16, 32, buf + 4, need, &err), -1);
    assert_int_equal(sr_workspace_init_in(&ws, m, 16, 32, NULL, need, &err), -1);
    assert_int_equal(sr_workspace_init_in(&ws, m, 16, 32, buf, need, &err), 0);
    assert_true((char *)ws.scores + 4 <= buf + need);
    sr_free_aligned(buf);
    sr_seq *s;
    assert_int_equal(sr_seq_create_state(m, (int64_t)INT32_MAX + 1, &s, &err), -1);
    assert_null(s);
    sr_model_free(m);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    sr_model *m = load("switch-3a");
    for (long k = 0;; k++) {
        sr_seq *s = (sr_seq *)1;
        sr_error err;
        sr_alloc_fail_after(k);
        int rc = sr_seq_create_state(m, 64, &s, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) {
            assert_true(k >= 6);
            sr_seq_free(s);
            break;
        }
        assert_null(s);
        assert_non_null(strstr(err.msg, "out of memory"));
    }
    sr_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_and_sizes_match_forward),
        cmocka_unit_test(test_units_over_state_and_buffer),
        cmocka_unit_test(test_bad_buffers_refused),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
