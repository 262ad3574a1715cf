/* The closed-form adapter switch (spec granite-switch.md §4.2.2, §6.2.4) and
 * the acceptance cases T_sw_1 .. T_sw_6 of §7 (fork single_switch_cases: 32
 * adapters, control ids 1000..1031, text token 50). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/adapter_meta.h"
#include "runtime/config.h"
#include "runtime/switch.h"

#define TEXT 50
#define CTRL(k) (1000 + (k) - 1)  /* control token of adapter k (1-based) */

typedef struct fixture {
    sr_config cfg;
    sr_switch sw;
} fixture;

/* Gen A/B/C switch configs with 32 adapters (Gen C: 3 adapters, §6.2.4 traces). */
static void make_config(fixture *f, const char *extra, int n, int first_id, int n_ids, double gain)
{
    char json[8192];
    size_t o = (size_t)snprintf(json, sizeof json,
        "{\"model_type\": \"granite_switch\", \"vocab_size\": 1040, \"hidden_size\": 64,"
        " \"intermediate_size\": 96, \"shared_intermediate_size\": 96, \"num_attention_heads\": 4,"
        " \"num_key_value_heads\": 2, \"num_hidden_layers\": %d, \"num_adapters\": %d,"
        " \"control_token_gain\": %g, \"max_lora_rank\": 4, \"adapter_token_ids\": [",
        strstr(extra, "ms_code_m") ? 4 : 3, n, gain);
    for (int k = 0; k < n_ids; k++) o += (size_t)snprintf(json + o, sizeof json - o, "%s%d", k ? "," : "", first_id + k);
    o += (size_t)snprintf(json + o, sizeof json - o, "], \"adapter_names\": [");
    for (int k = 0; k < n; k++) o += (size_t)snprintf(json + o, sizeof json - o, "%s\"a%d\"", k ? "," : "", k);
    o += (size_t)snprintf(json + o, sizeof json - o, "], \"adapter_ranks\": [");
    for (int k = 0; k < n; k++) o += (size_t)snprintf(json + o, sizeof json - o, "%s4", k ? "," : "");
    snprintf(json + o, sizeof json - o, "], %s}", extra);
    sr_error err = {{0}};
    int rc = sr_config_parse(json, strlen(json), "test-config", &f->cfg, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(sr_switch_init(&f->sw, &f->cfg, &err), 0);
}

static int setup_a(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    make_config(f, "\"control_dims\": 32", 32, 1000, 32, 15.0);
    assert_int_equal(f->cfg.gen, SR_GEN_A);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sr_config_free(&f->cfg);
    free(f);
    return 0;
}

/* Adapter index of every position of ids[0..n). */
static void run(const fixture *f, const int64_t *ids, int64_t n, int *a)
{
    sr_switch_state s;
    sr_switch_reset(&s);
    for (int64_t i = 0; i < n; i++) {
        bool ov = false;
        a[i] = sr_switch_step(&f->sw, &s, sr_config_control_index(&f->cfg, ids[i]), &ov);
        assert_false(ov);
    }
}

static void test_round_half_even(void **state)
{
    (void)state;
    assert_int_equal(sr_round_half_even_ratio(5, 2), 2);    /* 2.5 -> 2 */
    assert_int_equal(sr_round_half_even_ratio(7, 2), 4);    /* 3.5 -> 4 */
    assert_int_equal(sr_round_half_even_ratio(3, 2), 2);    /* 1.5 -> 2 */
    assert_int_equal(sr_round_half_even_ratio(1, 2), 0);    /* 0.5 -> 0 */
    assert_int_equal(sr_round_half_even_ratio(4, 3), 1);
    assert_int_equal(sr_round_half_even_ratio(5, 3), 2);
    assert_int_equal(sr_round_half_even_ratio(10, 4), 2);   /* 2.5 with c = 4 */
    assert_int_equal(sr_round_half_even_ratio(14, 4), 4);   /* 3.5 */
    assert_int_equal(sr_round_half_even_ratio(0, 7), 0);
    /* the double evaluation of Σ/(c + n e^-30) lies just below the tie; the
     * closed form must still see the exact tie */
    assert_int_equal(sr_switch_single_index(2, 100, 5, 15.0, 32), 2);
    assert_int_equal(sr_switch_single_index(2, 100, 7, 15.0, 32), 4);
}

/* T_sw_1: index k at and after the control token, 0 before; text -> 0. */
static void test_sw_1(void **state)
{
    fixture *f = *state;
    int64_t ids[1000];
    int a[1000];
    for (int k = 1; k <= 32; k++) {
        for (int p = 0; p < 20; p += 7) {
            for (int i = 0; i < 20; i++) ids[i] = TEXT;
            ids[p] = CTRL(k);
            run(f, ids, 20, a);
            for (int i = 0; i < 20; i++) assert_int_equal(a[i], i < p ? 0 : k);
        }
    }
    for (int i = 0; i < 1000; i++) ids[i] = TEXT;
    run(f, ids, 1000, a);
    for (int i = 0; i < 1000; i++) assert_int_equal(a[i], 0);
    /* ids just outside the control range are ordinary */
    int64_t out[4] = {999, 1032, 0, 1039};
    run(f, out, 4, a);
    for (int i = 0; i < 4; i++) assert_int_equal(a[i], 0);
}

/* T_sw_2: position 0, single tokens, control at the last position. */
static void test_sw_2(void **state)
{
    fixture *f = *state;
    int a[8];
    int64_t t1[1] = {TEXT};
    run(f, t1, 1, a);
    assert_int_equal(a[0], 0);
    int64_t c3[1] = {CTRL(3)};
    run(f, c3, 1, a);
    assert_int_equal(a[0], 3);
    int64_t c2t[2] = {CTRL(2), TEXT};
    run(f, c2t, 2, a);
    assert_int_equal(a[0], 2);
    assert_int_equal(a[1], 2);
    int64_t last[5] = {TEXT, TEXT, TEXT, TEXT, CTRL(7)};
    run(f, last, 5, a);
    for (int i = 0; i < 4; i++) assert_int_equal(a[i], 0);
    assert_int_equal(a[4], 7);
}

/* T_sw_3: repeated / mixed control tokens: rounded mean, in 0..N. */
static void test_sw_3(void **state)
{
    fixture *f = *state;
    int a[8];
    int64_t same[6] = {TEXT, CTRL(5), TEXT, CTRL(5), TEXT, TEXT};
    run(f, same, 6, a);
    for (int i = 1; i < 6; i++) assert_int_equal(a[i], 5);
    struct { int x, y, want; } mix[] = {
        {2, 3, 2}, {1, 2, 2}, {1, 4, 2}, {1, 3, 2}, {3, 4, 4}, {31, 32, 32}, {1, 32, 16},
    };
    for (size_t i = 0; i < sizeof mix / sizeof *mix; i++) {
        int64_t ids[5] = {TEXT, CTRL(mix[i].x), TEXT, CTRL(mix[i].y), TEXT};
        run(f, ids, 5, a);
        assert_int_equal(a[2], mix[i].x);
        assert_int_equal(a[3], mix[i].want);
        assert_int_equal(a[4], mix[i].want);
        assert_true(a[4] >= 0 && a[4] <= 32);
    }
    int64_t aab[4] = {CTRL(1), CTRL(1), CTRL(2), TEXT};     /* 4/3 -> 1 */
    run(f, aab, 4, a);
    assert_int_equal(a[3], 1);
}

/* T_sw_4: long contexts, exact everywhere. */
static void test_sw_4(void **state)
{
    fixture *f = *state;
    static const int64_t lens[] = {100, 1000, 10000};
    for (size_t li = 0; li < 3; li++) {
        int64_t n = lens[li];
        int64_t pos[3] = {1, n / 2, n - 2};
        for (int pi = 0; pi < 3; pi++) {
            sr_switch_state s;
            sr_switch_reset(&s);
            for (int64_t i = 0; i < n; i++) {
                int64_t t = i == pos[pi] ? CTRL(9) : TEXT;
                int a = sr_switch_step(&f->sw, &s, sr_config_control_index(&f->cfg, t), NULL);
                assert_int_equal(a, i < pos[pi] ? 0 : 9);
            }
        }
    }
    static const int64_t longs[] = {32768, 50000, 65536, 100000, 131072};
    static const int ks[] = {1, 16, 32};
    for (size_t li = 0; li < 5; li++) {
        for (int ki = 0; ki < 3; ki++) {
            sr_switch_state s;
            sr_switch_reset(&s);
            int bad = 0;
            for (int64_t i = 0; i < longs[li]; i++) {
                int64_t t = i == 1 ? CTRL(ks[ki]) : TEXT;
                int a = sr_switch_step(&f->sw, &s, sr_config_control_index(&f->cfg, t), NULL);
                bad += a != (i < 1 ? 0 : ks[ki]);
            }
            assert_int_equal(bad, 0);
        }
    }
}

/* T_sw_5: gain 1 loses the signal at 10000 tokens, gain 15 does not. */
static void test_sw_5(void **state)
{
    (void)state;
    for (int g = 0; g < 2; g++) {
        fixture f;
        memset(&f, 0, sizeof f);
        make_config(&f, "\"control_dims\": 32", 32, 1000, 32, g ? 15.0 : 1.0);
        sr_switch_state s;
        sr_switch_reset(&s);
        int wrong = 0;
        for (int64_t i = 0; i < 10000; i++) {
            int64_t t = i == 3 ? CTRL(20) : TEXT;
            int a = sr_switch_step(&f.sw, &s, sr_config_control_index(&f.cfg, t), NULL);
            wrong += i >= 3 && a != 20;
        }
        if (g) assert_int_equal(wrong, 0);
        else assert_true(wrong > 0);
        sr_config_free(&f.cfg);
    }
}

/* Very long contexts: the ordinary-key leak becomes visible only beyond
 * n ≈ 6.4e5 per control token, and even then one control token keeps its
 * index. */
static void test_leak_bound(void **state)
{
    (void)state;
    assert_int_equal(sr_switch_single_index(1, 600000, 3, 15.0, 32), 3);
    assert_int_equal(sr_switch_single_index(1, 10000000, 3, 15.0, 32), 3);
    assert_int_equal(sr_switch_single_index(0, 10000000, 0, 15.0, 32), 0);
    assert_int_equal(sr_switch_single_index(3, 0, 100, 15.0, 32), 32);   /* clamp to N */
}

/* Gen B uses the same SingleSwitch. */
static void test_gen_b(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    char extra[512] = "\"control_dims\": 0, \"adapter_substitute_token_ids\": [";
    for (int k = 0; k < 32; k++)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%s%d", k ? "," : "", 60 + k);
    strcat(extra, "]");
    make_config(&f, extra, 32, 1000, 32, 15.0);
    assert_int_equal(f.cfg.gen, SR_GEN_B);
    int64_t ids[5] = {TEXT, CTRL(2), TEXT, CTRL(3), TEXT};
    int a[5];
    run(&f, ids, 5, a);
    assert_int_equal(a[0], 0);
    assert_int_equal(a[1], 2);
    assert_int_equal(a[3], 2);      /* mean 2.5 -> 2 */
    sr_config_free(&f.cfg);
}

/* T_sw_6: the two Gen C reference traces of §6.2.4 (latest wins, base reset),
 * and the token exchange table. */
static void test_sw_6(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    make_config(&f, "\"ms_code_m\": 6, \"ms_code_type\": \"kerdock\","
                    " \"adapter_substitute_token_ids\": [11, 12, 13]", 3, 101, 3, 15.0);
    assert_int_equal(f.cfg.gen, SR_GEN_C);
    int64_t ids[7] = {50, 101, 60, 61, 102, 70, 71};
    int want[7] = {0, 1, 1, 1, 2, 2, 2}, a[7];
    run(&f, ids, 7, a);
    for (int i = 0; i < 7; i++) assert_int_equal(a[i], want[i]);
    sr_adapter_meta meta;
    sr_error err;
    assert_int_equal(sr_adapter_meta_build(&f.cfg, &meta, &err), 0);
    int64_t exch[7] = {50, 11, 60, 61, 12, 70, 71};
    for (int i = 0; i < 7; i++) {
        int64_t t = ids[i] < meta.lut_size && meta.lut[ids[i]] >= 0 ? meta.lut[ids[i]] : ids[i];
        assert_int_equal(t, exch[i]);
    }
    sr_adapter_meta_free(&meta);
    sr_config_free(&f.cfg);

    memset(&f, 0, sizeof f);
    make_config(&f, "\"ms_code_m\": 6, \"ms_code_type\": \"kerdock\","
                    " \"adapter_substitute_token_ids\": [10, 11, 12, 13]", 3, 100, 4, 15.0);
    int64_t ids2[7] = {50, 101, 60, 100, 70, 102, 80};
    int want2[7] = {0, 1, 1, 0, 0, 2, 2};
    run(&f, ids2, 7, a);
    for (int i = 0; i < 7; i++) assert_int_equal(a[i], want2[i]);
    /* control token at position 0 is the anchor: later control tokens still win */
    int64_t ids3[4] = {103, 50, 101, 50};
    int want3[4] = {3, 3, 1, 1};
    run(&f, ids3, 4, a);
    for (int i = 0; i < 4; i++) assert_int_equal(a[i], want3[i]);
    sr_config_free(&f.cfg);
}

/* Gen C: more control tokens than addresses is reported. */
static void test_gen_c_overflow(void **state)
{
    (void)state;
    sr_switch sw = {.gen = SR_GEN_C, .n_adapters = 3, .ms_capacity = 2048};
    sr_switch_state s;
    sr_switch_reset(&s);
    bool ov = false;
    sr_switch_step(&sw, &s, 1, &ov);        /* position 0: anchor, not counted */
    for (int i = 0; i < 2047; i++) sr_switch_step(&sw, &s, 1 + i % 3, &ov);
    assert_false(ov);
    sr_switch_step(&sw, &s, 2, &ov);
    assert_true(ov);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_half_even),
        cmocka_unit_test(test_leak_bound),
        cmocka_unit_test_setup_teardown(test_sw_1, setup_a, teardown),
        cmocka_unit_test_setup_teardown(test_sw_2, setup_a, teardown),
        cmocka_unit_test_setup_teardown(test_sw_3, setup_a, teardown),
        cmocka_unit_test_setup_teardown(test_sw_4, setup_a, teardown),
        cmocka_unit_test(test_sw_5),
        cmocka_unit_test(test_gen_b),
        cmocka_unit_test(test_sw_6),
        cmocka_unit_test(test_gen_c_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
