/* Spec granite-switch.md §7 acceptance tests on tiny random models written
 * by the test (tests/runtime/synth_model.h): T_eq_1, T_eq_2, T_gap, T_inv,
 * T_nan, T_kv_1, T_kv_2, token exchange (Gen B/C), and the load / input
 * errors (shape mismatch, NaN weights with --check, bad token ids, context
 * overflow, allocation failures).  T_sw_* are in test_switch.c, T_lora_* in
 * test_kernels.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "synth_model.h"
#include "test_util.h"

#define N_AD 3
#define CTRL0 250           /* control ids 250, 251, 252 -> adapters 1..3 */

static const synth_dims DIMS = {.vocab = 256, .hidden = 32, .layers = 2, .heads = 4,
                                .kv_heads = 2, .inter = 48, .n_adapters = N_AD, .rank = 4,
                                .first_ctrl = CTRL0, .tie = false};

/* Gen A with the previews' hiding layout: one group holding every adapter,
 * hidden by every adapter and by base. */
static const char *GEN_A =
    "\"control_dims\": 8, \"hiding_groups\": {\"all_controls\": [\"ad1\", \"ad2\", \"ad3\"]},"
    " \"hiding_policy\": {\"base\": [\"all_controls\"], \"ad1\": [\"all_controls\"],"
    " \"ad2\": [\"all_controls\"], \"ad3\": [\"all_controls\"]}";
static const char *GEN_B = "\"control_dims\": 0, \"adapter_substitute_token_ids\": [40, 41, 42]";
static const char *GEN_C = "\"ms_code_m\": 6, \"ms_code_type\": \"kerdock\","
                           " \"adapter_substitute_token_ids\": [40, 41, 42]";

static sr_model *write_and_load(const char *name, const synth_weights *w, synth_layout layout,
                                int slots, const char *json, const sr_model_opts *opts)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    assert_int_equal(synth_write(dir, w, layout, slots, json), 0);
    sr_model *m = NULL;
    sr_error err = {{0}};
    int rc = sr_model_load(dir, opts, &m, &err);
    if (rc) fprintf(stderr, "%s: %s\n", name, err.msg);
    assert_int_equal(rc, 0);
    return m;
}

static synth_weights weights(uint64_t seed, int n_adapters, double lora_scale)
{
    synth_dims d = DIMS;
    d.n_adapters = n_adapters;
    synth_weights w;
    synth_init(&w, &d, seed, lora_scale);
    return w;
}

/* All logits [T][V] of one full forward; adapter / RoPE positions optional. */
static float *logits_of(sr_model *m, const int32_t *tok, int64_t T, int32_t *ad, int32_t *pos)
{
    sr_seq *s;
    sr_error err = {{0}};
    assert_int_equal(sr_seq_create(m, T, &s, &err), 0);
    float *lg = malloc(sizeof(float) * (size_t)(T * m->V));
    int rc = sr_forward(s, tok, T, lg, true, ad, pos, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    sr_seq_free(s);
    return lg;
}

/* Hidden states after the embedding and every layer: [L+1][T][H]. */
static float *hidden_of(sr_model *m, const int32_t *tok, int T)
{
    sr_seq *s;
    sr_error err = {{0}};
    assert_int_equal(sr_seq_create(m, T, &s, &err), 0);
    sr_step st;
    assert_int_equal(sr_step_begin(s, tok, T, &st, &err), 0);
    float *hs = malloc(sizeof(float) * (size_t)((m->L + 1) * T * m->H));
    sr_embed_forward(m, &st, s->x);
    memcpy(hs, s->x, sizeof(float) * (size_t)(T * m->H));
    for (int l = 0; l < m->L; l++) {
        sr_layer_forward(m, l, &s->kv, &st, s->x, &s->ws);
        memcpy(hs + (l + 1) * T * m->H, s->x, sizeof(float) * (size_t)(T * m->H));
    }
    sr_seq_free(s);
    return hs;
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= w)) w = d;
    }
    return w;
}

static void random_tokens(int32_t *t, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = 3 + (int32_t)((seed >> 33) % 240);      /* ordinary ids 3..242 */
    }
}

/* T_eq_1: a switch checkpoint with num_adapters = 0 equals plain Granite with
 * the same weights (fused q/k/v and gate/up vs separate matrices). */
static void test_eq_1(void **state)
{
    (void)state;
    synth_weights w = weights(1, 0, 0);
    sr_model *g = write_and_load("eq1_granite", &w, SYN_GRANITE, 0, NULL, NULL);
    sr_model *s = write_and_load("eq1_switch", &w, SYN_SWITCH, 0, NULL, NULL);
    assert_int_equal(s->cfg.gen, SR_GEN_NONE);
    int32_t tok[20];
    random_tokens(tok, 20, 7);
    float *a = logits_of(g, tok, 20, NULL, NULL), *b = logits_of(s, tok, 20, NULL, NULL);
    double d = max_abs_diff(a, b, 20 * g->V);
    fprintf(stderr, "T_eq_1: max |dlogit| %.3g\n", d);
    assert_true(d <= 1e-5);
    free(a);
    free(b);
    sr_model_free(g);
    sr_model_free(s);
    synth_free(&w);
}

/* T_eq_2: full adapter infrastructure with all-zero LoRA and no control token
 * is the base model: bit-identical to the N = 0 switch layout. */
static void test_eq_2(void **state)
{
    (void)state;
    synth_weights w0 = weights(2, 0, 0), wa = weights(2, N_AD, 0.5);
    synth_zero_lora(&wa);
    sr_model *base = write_and_load("eq2_base", &w0, SYN_SWITCH, 0, NULL, NULL);
    sr_model *sw = write_and_load("eq2_switch", &wa, SYN_SWITCH, 1, GEN_A, NULL);
    assert_int_equal(sw->cfg.gen, SR_GEN_A);
    int32_t tok[24];
    random_tokens(tok, 24, 11);
    int32_t ad[24];
    float *a = logits_of(base, tok, 24, NULL, NULL), *b = logits_of(sw, tok, 24, ad, NULL);
    assert_memory_equal(a, b, sizeof(float) * 24 * (size_t)base->V);
    for (int i = 0; i < 24; i++) assert_int_equal(ad[i], 0);
    free(a);
    free(b);
    sr_model_free(base);
    sr_model_free(sw);
    synth_free(&w0);
    synth_free(&wa);
}

/* T_gap: inserting one hidden control token (zero LoRA, Gen A) changes no
 * visible logit: |Δ| <= 5e-7, positions before it bit-exact; a = 0 before the
 * control token and 1 from it on; RoPE positions close the gap. */
static void test_gap(void **state)
{
    (void)state;
    synth_weights w = weights(3, N_AD, 0.5);
    synth_zero_lora(&w);
    sr_model *m = write_and_load("gap", &w, SYN_SWITCH, 1, GEN_A, NULL);
    static const struct { int len, pos; } cases[] = {
        {16, 0}, {16, 1}, {16, 2}, {16, 4}, {16, 8}, {16, 14}, {64, 8},
    };
    double worst = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int n = cases[c].len, p = cases[c].pos;
        int32_t S[64], S2[65], ad[65], pos[65];
        random_tokens(S, n, 100 + c);
        for (int i = 0, j = 0; i <= n; i++) S2[i] = i == p ? CTRL0 : S[j++];
        float *a = logits_of(m, S, n, NULL, NULL), *b = logits_of(m, S2, n + 1, ad, pos);
        for (int i = 0; i <= n; i++) {
            assert_int_equal(ad[i], i < p ? 0 : 1);
            int want = i < p ? i : (i == 0 ? 0 : i - 1);
            assert_int_equal(pos[i], want);
        }
        if (p > 0) assert_memory_equal(a, b, sizeof(float) * (size_t)(p * m->V));
        for (int i = p + 1; i <= n; i++) {
            double d = max_abs_diff(a + (i - 1) * m->V, b + i * m->V, m->V);
            if (d > worst) worst = d;
        }
        free(a);
        free(b);
    }
    fprintf(stderr, "T_gap: max |dlogit| %.3g\n", worst);
    assert_true(worst <= 5e-7);
    sr_model_free(m);
    synth_free(&w);
}

/* T_inv: the control token's own embedding cannot reach any other position
 * (hidden states of every layer unchanged before and after it); its own
 * position changes. */
static void test_inv(void **state)
{
    (void)state;
    synth_weights w = weights(4, N_AD, 0.5);
    sr_model *m = write_and_load("inv_a", &w, SYN_SWITCH, 1, GEN_A, NULL);
    uint64_t seed = 5;
    for (int j = 0; j < DIMS.hidden; j++) w.embed[(CTRL0 + 1) * DIMS.hidden + j] += (float)(10 * syn_rand(&seed));
    sr_model *m2 = write_and_load("inv_b", &w, SYN_SWITCH, 1, GEN_A, NULL);
    const int T = 12, p = 5;
    int32_t tok[12];
    random_tokens(tok, T, 9);
    tok[p] = CTRL0 + 1;
    float *a = hidden_of(m, tok, T), *b = hidden_of(m2, tok, T);
    const int64_t H = m->H;
    for (int l = 0; l <= m->L; l++)
        for (int i = 0; i < T; i++) {
            const float *x = a + (l * T + i) * H, *y = b + (l * T + i) * H;
            if (i == p) assert_true(memcmp(x, y, sizeof(float) * (size_t)H) != 0);
            else assert_memory_equal(x, y, sizeof(float) * (size_t)H);
        }
    free(a);
    free(b);
    sr_model_free(m);
    sr_model_free(m2);
    synth_free(&w);
}

/* T_nan: a control token at position 0 (and 1, 2, 4, 8, 14) keeps every logit
 * finite; the query-side suppression bit is 0 for the group member itself and
 * 1 for the later adapter tokens. */
static void test_nan(void **state)
{
    (void)state;
    synth_weights w = weights(5, N_AD, 0.5);
    sr_model *m = write_and_load("nan", &w, SYN_SWITCH, 1, GEN_A, NULL);
    static const int lens[2] = {8, 16}, poss[6] = {0, 1, 2, 4, 8, 14};
    for (int li = 0; li < 2; li++)
        for (int pi = 0; pi < 6; pi++) {
            int n = lens[li], p = poss[pi];
            if (p >= n) continue;
            int32_t tok[16];
            random_tokens(tok, n, 31 + pi);
            tok[p] = CTRL0 + 2;
            float *lg = logits_of(m, tok, n, NULL, NULL);
            for (int64_t i = 0; i < n * m->V; i++) assert_true(isfinite(lg[i]));
            free(lg);
            sr_seq *s;
            sr_error err;
            sr_step st;
            assert_int_equal(sr_seq_create(m, n, &s, &err), 0);
            assert_int_equal(sr_step_begin(s, tok, n, &st, &err), 0);
            for (int i = 0; i < n; i++) {
                assert_int_equal(s->kv.mem[i], i == p ? 1u : 0u);
                assert_int_equal(st.qsup[i], i == p ? 0u : 1u);  /* base hides the group too */
            }
            sr_seq_free(s);
        }
    sr_model_free(m);
    synth_free(&w);
}

/* T_kv_1: prefill vs token-by-token decode, with and without a control token
 * at position 2: atol 1e-5, rtol 1e-4. */
static void test_kv_1(void **state)
{
    (void)state;
    synth_weights w = weights(6, N_AD, 0.5);
    sr_model *m = write_and_load("kv1", &w, SYN_SWITCH, 1, GEN_A, NULL);
    int32_t with[8] = {10, 20, CTRL0, 30, 40, 50, 60, 70}, without[7] = {10, 20, 30, 40, 50, 60, 70};
    const int32_t *seqs[2] = {with, without};
    const int lens[2] = {8, 7};
    for (int c = 0; c < 2; c++) {
        const int n = lens[c];
        float *full = logits_of(m, seqs[c], n, NULL, NULL);
        for (int k = 1; k <= n; k++) {
            sr_seq *s;
            sr_error err;
            assert_int_equal(sr_seq_create(m, n, &s, &err), 0);
            float *inc = malloc(sizeof(float) * (size_t)(n * m->V));
            assert_int_equal(sr_forward(s, seqs[c], k, inc, true, NULL, NULL, &err), 0);
            for (int i = k; i < n; i++)
                assert_int_equal(sr_forward(s, seqs[c] + i, 1, inc + i * m->V, false, NULL, NULL, &err), 0);
            for (int64_t i = 0; i < n * m->V; i++)
                assert_true(fabsf(inc[i] - full[i]) <= 1e-5f + 1e-4f * fabsf(full[i]));
            free(inc);
            sr_seq_free(s);
        }
        free(full);
    }
    sr_model_free(m);
    synth_free(&w);
}

/* T_kv_2: with non-zero LoRA, greedy generation differs with and without the
 * control token in the prompt. */
static void test_kv_2(void **state)
{
    (void)state;
    synth_weights w = weights(7, N_AD, 1.0);
    sr_model *m = write_and_load("kv2", &w, SYN_SWITCH, 1, GEN_A, NULL);
    int32_t with[8] = {10, 20, CTRL0, 30, 40, 50, 60, 70}, without[7] = {10, 20, 30, 40, 50, 60, 70};
    int32_t ga[8], gb[8];
    float *la = malloc(sizeof(float) * 8 * (size_t)m->V), *lb = malloc(sizeof(float) * 8 * (size_t)m->V);
    int64_t na, nb;
    sr_error err;
    sr_seq *s;
    sr_gen_opts o = {.max_new = 8, .stop_token = -1, .step_logits = la};
    assert_int_equal(sr_seq_create(m, 16, &s, &err), 0);
    assert_int_equal(sr_generate(s, with, 8, &o, ga, &na, NULL, &err), 0);
    for (int64_t i = 3; i < s->len; i++) assert_int_equal(s->adapter[i], 1);
    sr_seq_reset(s);
    o.step_logits = lb;
    assert_int_equal(sr_generate(s, without, 7, &o, gb, &nb, NULL, &err), 0);
    assert_int_equal(na, 8);
    assert_int_equal(nb, 8);
    assert_true(memcmp(ga, gb, sizeof ga) != 0);
    assert_true(max_abs_diff(la, lb, m->V) > 1e-3);
    sr_seq_free(s);
    free(la);
    free(lb);
    sr_model_free(m);
    synth_free(&w);
}

/* Gen B / Gen C token exchange with zero LoRA: a control token is embedded as
 * its substitute, nothing is hidden, positions are not corrected, so the
 * logits equal those of the sequence holding the substitute. */
static void test_token_exchange(void **state)
{
    (void)state;
    const char *json[2] = {GEN_B, GEN_C};
    const int slots[2] = {1, 2};
    for (int g = 0; g < 2; g++) {
        synth_weights w = weights(8, N_AD, 0.5);
        synth_zero_lora(&w);
        sr_model *m = write_and_load(g ? "exch_c" : "exch_b", &w, SYN_SWITCH, slots[g], json[g], NULL);
        assert_int_equal(m->cfg.gen, g ? SR_GEN_C : SR_GEN_B);
        int32_t a[10] = {5, 6, CTRL0 + 1, 7, 8, CTRL0, 9, 10, 11, 12};
        int32_t b[10] = {5, 6, 41, 7, 8, 40, 9, 10, 11, 12};
        int32_t ad[10], pos[10];
        float *la = logits_of(m, a, 10, ad, pos), *lb = logits_of(m, b, 10, NULL, NULL);
        assert_memory_equal(la, lb, sizeof(float) * 10 * (size_t)m->V);
        /* Gen B: rounded mean (2+1)/2 = 1.5 -> 2; Gen C: latest wins -> 1 */
        const int want_b[10] = {0, 0, 2, 2, 2, 2, 2, 2, 2, 2}, want_c[10] = {0, 0, 2, 2, 2, 1, 1, 1, 1, 1};
        for (int i = 0; i < 10; i++) {
            assert_int_equal(ad[i], g ? want_c[i] : want_b[i]);
            assert_int_equal(pos[i], i);
        }
        free(la);
        free(lb);
        sr_model_free(m);
        synth_free(&w);
    }
}

/* Input errors: clear messages, nothing processed, the sequence stays usable. */
static void test_bad_input(void **state)
{
    (void)state;
    synth_weights w = weights(9, N_AD, 0.5);
    sr_model *m = write_and_load("bad_input", &w, SYN_SWITCH, 1, GEN_A, NULL);
    sr_seq *s;
    sr_error err;
    assert_int_equal(sr_seq_create(m, 6, &s, &err), 0);
    float lg[256];
    int32_t bad[3] = {5, 256, 7};
    assert_int_equal(sr_forward(s, bad, 3, lg, false, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "token id 256"));
    assert_non_null(strstr(err.msg, "vocab"));
    assert_int_equal(s->len, 0);
    assert_int_equal(sr_forward(s, bad, 0, lg, false, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "empty"));
    int32_t many[7] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(sr_forward(s, many, 7, lg, false, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "context"));
    assert_int_equal(sr_forward(s, many, 6, lg, false, NULL, NULL, &err), 0);
    assert_int_equal(s->len, 6);
    assert_int_equal(sr_forward(s, many, 1, lg, false, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "context"));
    sr_seq_free(s);
    sr_model_free(m);
    synth_free(&w);
}

static int load_dir(const char *name, const sr_model_opts *o, sr_error *err)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    sr_model *m = NULL;
    int rc = sr_model_load(dir, o, &m, err);
    sr_model_free(m);
    return rc;
}

/* Tensors that do not match the config, and NaN weights under --check. */
static void test_bad_weights(void **state)
{
    (void)state;
    synth_weights w = weights(10, N_AD, 0.5);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/shape", test_tmpdir());
    assert_int_equal(synth_write(dir, &w, SYN_SWITCH, 1, GEN_A), 0);
    /* claim a wider MLP than the weights have */
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len = 0;
    char *cfg = test_read_file(path, &len);
    char *p = strstr(cfg, "\"shared_intermediate_size\": 48");
    assert_non_null(p);
    memcpy(p, "\"shared_intermediate_size\": 40", 30);
    assert_int_equal(test_write_file(path, cfg, len), 0);
    free(cfg);
    sr_error err = {{0}};
    assert_int_equal(load_dir("shape", NULL, &err), -1);
    fprintf(stderr, "shape error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "input_linear"));

    /* a NaN in one projection: loads without --check, refused with it */
    w.layer[1].down[17] = NAN;
    snprintf(dir, sizeof dir, "%s/nanw", test_tmpdir());
    assert_int_equal(synth_write(dir, &w, SYN_SWITCH, 1, GEN_A), 0);
    assert_int_equal(load_dir("nanw", NULL, &err), 0);
    sr_model_opts check = {.check_finite = true};
    assert_int_equal(load_dir("nanw", &check, &err), -1);
    fprintf(stderr, "check error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "model.layers.1.shared_mlp.output_linear.base_layer.weight"));
    assert_non_null(strstr(err.msg, "NaN"));
    w.layer[1].down[17] = 0;
    w.layer[0].lB[SYN_QKV][1][3] = INFINITY;
    snprintf(dir, sizeof dir, "%s/infl", test_tmpdir());
    assert_int_equal(synth_write(dir, &w, SYN_SWITCH, 1, GEN_A), 0);
    assert_int_equal(load_dir("infl", &check, &err), -1);
    assert_non_null(strstr(err.msg, "lora_B_slices.1"));
    synth_free(&w);
}

/* Every allocation of a load failing in turn: a clean error, nothing leaked
 * (the ASan pass checks the leaks). */
static void test_load_alloc_failures(void **state)
{
    (void)state;
    synth_weights w = weights(11, N_AD, 0.5);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/faults", test_tmpdir());
    assert_int_equal(synth_write(dir, &w, SYN_SWITCH, 1, GEN_A), 0);
    sr_model *m = NULL;
    sr_error err;
    sr_alloc_fail_after(-1);
    sr_alloc_fail_after(1L << 40);
    assert_int_equal(sr_model_load(dir, NULL, &m, &err), 0);
    long total = sr_alloc_count();
    sr_model_free(m);
    int failures = 0;
    for (long n = 0; n < total; n++) {
        sr_alloc_fail_after(n);
        m = NULL;
        int rc = sr_model_load(dir, NULL, &m, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) sr_model_free(m);
        else {
            failures++;
            assert_null(m);
            assert_true(err.msg[0] != 0);
        }
    }
    fprintf(stderr, "load: %ld allocations, %d failed cleanly\n", total, failures);
    assert_true(failures > 0);

    /* the same for a sequence (KV cache, workspace) */
    assert_int_equal(sr_model_load(dir, NULL, &m, &err), 0);
    sr_seq *s = NULL;
    sr_alloc_fail_after(1L << 40);
    assert_int_equal(sr_seq_create(m, 32, &s, &err), 0);
    total = sr_alloc_count();
    sr_alloc_fail_after(-1);
    sr_seq_free(s);
    for (long n = 0; n < total; n++) {
        sr_alloc_fail_after(n);
        s = NULL;
        int rc = sr_seq_create(m, 32, &s, &err);
        sr_alloc_fail_after(-1);
        assert_int_equal(rc, -1);
        assert_null(s);
    }
    sr_model_free(m);
    synth_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq_1),
        cmocka_unit_test(test_eq_2),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_inv),
        cmocka_unit_test(test_nan),
        cmocka_unit_test(test_kv_1),
        cmocka_unit_test(test_kv_2),
        cmocka_unit_test(test_token_exchange),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bad_weights),
        cmocka_unit_test(test_load_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
