/* A model under the opt-in int8 kernels (STRATA_KERNELS=int8) with the
 * 16-row tiles (quant/qtile.h) that sr_model_load makes for a model that
 * runs on the CPU (sr_model_opts.runs_on_cpu):
 *   - the tiles exist where the shapes allow them and nowhere else (not for
 *     a model loaded for a placement, not for cols % blocksize != 0), and
 *     the public API reports their bytes (strata_model_info);
 *   - logits with the tiles equal those of the untiled int8 kernels (same
 *     int32 sums; the tiles' f16 block scales are exact here, as every
 *     tiled matrix has one block per row (scale / row scale = 1); only the
 *     f32 order of the block partial sums differs, so
 *     |Δ| <= 1e-5 · (1 + max |logit|)), for a prefill of more than 8 tokens
 *     (the prefill kernel reads strips from the tiles) and token by token
 *     (the decode kernel);
 *   - the exact kernels never read the tiles: in exact mode the tiled model
 *     gives the untiled model's logits bit for bit;
 *   - all tiles lie in one buffer of the model (so huge pages cover them),
 *     in layer order, and a load whose allocations fail one by one either
 *     fails with an error or gives a model whose tiles are consistent.
 * The model: the golden switch-3a converted to NF4 by `strata convert`
 * (STRATA_EXE); hidden 64, MLP 96, so down_proj (96 columns, blocks of 64)
 * cannot be tiled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "quant/matmul.h"
#include "quant/qtile.h"
#include "runtime/forward.h"
#include "runtime/strata.h"
#include "runtime/alloc.h"
#include "runtime/model.h"
#include "test_util.h"

static char model_dir[512];

static int convert_once(void **state)
{
    (void)state;
    const char *exe = getenv("STRATA_EXE");
    assert_non_null(exe);
    snprintf(model_dir, sizeof model_dir, "%s/switch-3a-nf4", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --quant nf4 --force --quiet", exe,
             test_data("model/switch-3a"), model_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static sr_model *load(bool runs_on_cpu)
{
    sr_model *m = NULL;
    sr_error err;
    const sr_model_opts o = {.runs_on_cpu = runs_on_cpu};
    if (sr_model_load(model_dir, &o, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

enum { T = 12 };
static const int32_t tokens[T] = {1, 2, 256, 3, 17, 40, 99, 5, 257, 8, 11, 200};

/* Logits of every position: one prefill of T tokens (stepwise = false) or
 * T single-token steps. */
static float *logits(const sr_model *m, bool stepwise)
{
    sr_seq *s;
    sr_error err;
    if (sr_seq_create(m, 64, &s, &err)) fail_msg("%s", err.msg);
    float *lg = malloc(sizeof(float) * (size_t)(T * m->V));
    if (stepwise) {
        for (int t = 0; t < T; t++)
            if (sr_forward(s, tokens + t, 1, lg + t * m->V, false, NULL, NULL, &err))
                fail_msg("%s", err.msg);
    } else if (sr_forward(s, tokens, T, lg, true, NULL, NULL, &err)) {
        fail_msg("%s", err.msg);
    }
    sr_seq_free(s);
    return lg;
}

static int count_tiled(const sr_model *m, int *untiled_4bit)
{
    int n = 0;
    uint64_t bytes = 0;
    *untiled_4bit = 0;
    for (int l = 0; l < m->L; l++) {
        const sr_proj *ps[4] = {&m->layers[l].qkv, &m->layers[l].o, &m->layers[l].mlp_in,
                                &m->layers[l].mlp_out};
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < ps[p]->n_parts; i++) {
                const sr_qmatrix *w = &ps[p]->w[i];
                if (w->tiles) n++, bytes += sr_qtile_bytes(w);
                else if (w->fmt == SR_W_NF4) (*untiled_4bit)++;
                if (w->tiles) assert_int_equal(w->cols % w->blocksize, 0);
            }
    }
    if (m->head.tiles) bytes += sr_qtile_bytes(&m->head);
    assert_true(m->tile_bytes == bytes); /* what the API reports */
    return n;
}

/* With the arena every tiled matrix's tiles lie in it, one after another in
 * layer order (the head last), and no matrix owns a tile buffer. */
static void check_arena(const sr_model *m)
{
    if (!m->tile_arena) return;
    const uint8_t *at = m->tile_arena;
    const sr_qmatrix *ws[64];
    int n = 0;
    for (int l = 0; l < m->L; l++) {
        const sr_proj *ps[4] = {&m->layers[l].qkv, &m->layers[l].o, &m->layers[l].mlp_in,
                                &m->layers[l].mlp_out};
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < ps[p]->n_parts; i++)
                if (ps[p]->w[i].tiles) ws[n++] = &ps[p]->w[i];
    }
    if (m->head.tiles) ws[n++] = &m->head;
    assert_true(n > 0 && n <= 64);
    for (int i = 0; i < n; i++) {
        assert_ptr_equal(ws[i]->tiles, at);
        assert_null(ws[i]->tile_buf);
        assert_int_equal((uintptr_t)at % 64, 0);
        at += sr_qtile_bytes(ws[i]);
    }
    assert_ptr_equal(at, (const uint8_t *)m->tile_arena + m->tile_bytes);
}

static void test_tiles_where_they_fit(void **state)
{
    (void)state;
    sr_matmul_set_mode(SR_MATMUL_INT8);
    sr_model *a = load(true), *b = load(false);
    int untiled_a, untiled_b;
    assert_true(count_tiled(a, &untiled_a) > 0);
    assert_int_equal(untiled_a, a->L); /* down_proj of every layer */
    assert_non_null(a->tile_arena);
    check_arena(a);
    assert_null(b->tile_arena);
    assert_int_equal(count_tiled(b, &untiled_b), 0);
    /* The public API opens a model for the CPU with tiles and says how big they are. */
    strata_model *sm;
    strata_error e;
    assert_int_equal(strata_model_open(model_dir, NULL, &sm, &e), STRATA_OK);
    strata_model_info info;
    strata_model_get_info(sm, &info);
    assert_true(info.kernel_layout_bytes == a->tile_bytes && a->tile_bytes > 0);
    strata_model_free(sm);
    sr_model_free(a);
    sr_model_free(b);
    /* exact mode: no tiles even for a CPU model */
    sr_matmul_set_mode(SR_MATMUL_EXACT);
    sr_model *c = load(true);
    assert_int_equal(count_tiled(c, &untiled_b), 0);
    sr_model_free(c);
    assert_int_equal(strata_model_open(model_dir, NULL, &sm, &e), STRATA_OK);
    strata_model_get_info(sm, &info);
    assert_true(info.kernel_layout_bytes == 0);
    strata_model_free(sm);
}

static void compare(const char *what, const float *x, const float *y, int64_t n)
{
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(y[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(x[i] - y[i]) <= 1e-5f * (1 + mx)))
            fail_msg("%s: logit %lld: %.9g with tiles, %.9g without (max |logit| %.3g)", what,
                     (long long)i, x[i], y[i], mx);
}

static void test_tiles_same_logits(void **state)
{
    (void)state;
    sr_matmul_set_mode(SR_MATMUL_INT8);
    sr_model *a = load(true), *b = load(false);
    for (int stepwise = 0; stepwise < 2; stepwise++) {
        float *la = logits(a, stepwise), *lb = logits(b, stepwise);
        compare(stepwise ? "decode, token by token" : "prefill of 12 tokens", la, lb, T * a->V);
        free(la);
        free(lb);
    }
    /* The exact kernels read the bnb bytes, whatever tiles a matrix has. */
    sr_matmul_set_mode(SR_MATMUL_EXACT);
    for (int stepwise = 0; stepwise < 2; stepwise++) {
        float *la = logits(a, stepwise), *lb = logits(b, stepwise);
        assert_memory_equal(la, lb, sizeof(float) * (size_t)(T * a->V));
        free(la);
        free(lb);
    }
    sr_model_free(a);
    sr_model_free(b);
}

/* Every allocation of a CPU model's load failing in turn: the load fails
 * with an error, or succeeds with its tiles in one consistent state (the
 * arena, or no tiles where memory ran out: the untiled kernels run); the
 * sanitizer pass checks that nothing leaks. */
static void test_tiles_out_of_memory(void **state)
{
    (void)state;
    sr_matmul_set_mode(SR_MATMUL_INT8);
    sr_alloc_fail_after(-1); /* and count from here */
    sr_model *m = load(true);
    const long sites = sr_alloc_count();
    sr_model_free(m);
    assert_true(sites > 0);
    int loaded = 0;
    for (long k = 0; k < sites; k++) {
        sr_alloc_fail_after(k);
        sr_model *f = NULL;
        sr_error err;
        const sr_model_opts o = {.runs_on_cpu = true};
        const int rc = sr_model_load(model_dir, &o, &f, &err);
        sr_alloc_fail_after(-1);
        if (rc) {
            assert_null(f);
            assert_true(err.msg[0] != 0);
            continue;
        }
        int untiled;
        loaded++;
        (void)count_tiled(f, &untiled);
        check_arena(f);
        float *lg = logits(f, true);
        free(lg);
        sr_model_free(f);
    }
    assert_true(loaded > 0);
}

int main(void)
{
    if (!sr_matmul_int8_available()) {
        printf("skipped: no AVX-512 VNNI\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiles_where_they_fit),
        cmocka_unit_test(test_tiles_same_logits),
        cmocka_unit_test(test_tiles_out_of_memory),
    };
    return cmocka_run_group_tests(tests, convert_once, NULL);
}
