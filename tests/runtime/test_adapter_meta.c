/* Adapter metadata rebuilt from config.json (spec granite-switch.md §3,
 * §6.2.5; §7 T_cfg_2, T_load_2) and its comparison with stored copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "test_util.h"

static void parse_text(const char *txt, sr_config *cfg)
{
    sr_error err = {{0}};
    if (sr_config_parse(txt, strlen(txt), "test", cfg, &err)) fail_msg("parse: %s", err.msg);
}

static void build(const sr_config *cfg, sr_adapter_meta *m)
{
    sr_error err = {{0}};
    if (sr_adapter_meta_build(cfg, m, &err)) fail_msg("build: %s", err.msg);
}

static void load_switch3a(sr_config *cfg)
{
    sr_error err = {{0}};
    if (sr_config_load(test_data("model/switch-3a/config.json"), cfg, &err))
        fail_msg("load: %s", err.msg);
}

/* switch-3a: groups grp_ab = {alpha, beta}, grp_c = {gamma}; policy alpha
 * hides grp_ab, gamma both, base grp_c, beta nothing. */
static void test_switch3a_tables(void **state)
{
    (void)state;
    sr_config cfg;
    sr_adapter_meta m;
    load_switch3a(&cfg);
    build(&cfg, &m);
    assert_int_equal(m.n_adapters, 3);
    assert_int_equal(m.n_ctrl, 3);
    assert_int_equal(m.n_groups, 2);
    assert_int_equal(m.table_size, 259);
    assert_int_equal(m.gen, SR_GEN_A);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(m.ctrl_ids[k], 256 + k);
        assert_int_equal(m.ctrl_index[k], k + 1);
    }
    /* Mem: alpha, beta -> group 0; gamma -> group 1 */
    assert_int_equal(m.ctrl_mem[0], 0x1);
    assert_int_equal(m.ctrl_mem[1], 0x1);
    assert_int_equal(m.ctrl_mem[2], 0x2);
    assert_int_equal(sr_adapter_meta_mem(&m, 256), 0x1);
    assert_int_equal(sr_adapter_meta_mem(&m, 258), 0x2);
    assert_int_equal(sr_adapter_meta_mem(&m, 0), 0);
    assert_int_equal(sr_adapter_meta_mem(&m, 255), 0);
    /* hiding matrix [[F,T],[T,F],[F,F],[T,T]], row 0 = base */
    assert_int_equal(m.sup[0], 0x2);
    assert_int_equal(m.sup[1], 0x1);
    assert_int_equal(m.sup[2], 0x0);
    assert_int_equal(m.sup[3], 0x3);
    assert_int_equal(m.lut_size, 0);
    assert_null(m.lut);
    sr_adapter_meta_free(&m);
    sr_adapter_meta_free(&m);       /* idempotent */
    sr_config_free(&cfg);
}

/* T_cfg_2: members resolved by name (unknown skipped), policy rows in
 * ["base"] + adapter_names order, unknown policy groups ignored, missing
 * policy keys hide nothing, table size rule. */
static void test_cfg2_hiding_tables(void **state)
{
    (void)state;
    const char *txt =
        "{\"model_type\":\"granite_switch\",\"vocab_size\":1000,\"hidden_size\":64,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":3,\"num_adapters\":3,"
        "\"adapter_token_ids\":[997,998,999],\"adapter_names\":[\"c\",\"a\",\"b\"],"
        "\"adapter_ranks\":[4,2,1],\"max_lora_rank\":4,\"control_dims\":32,"
        "\"hiding_groups\":{\"g_b\":[\"b\",\"ghost\"],\"g_ac\":[\"a\",\"c\"],\"g_none\":[\"ghost\"]},"
        "\"hiding_policy\":{\"b\":[\"g_ac\",\"no_such_group\"],\"base\":[\"g_b\",\"g_none\"],"
        "\"ghost\":[\"g_b\"],\"c\":[]}}";
    sr_config cfg;
    sr_adapter_meta m;
    parse_text(txt, &cfg);
    build(&cfg, &m);
    assert_int_equal(m.n_groups, 3);
    assert_int_equal(m.table_size, 1000);       /* max(vocab, 1 + max id) */
    /* ids follow adapter_names: c = 997 (adapter 1), a = 998, b = 999 */
    assert_int_equal(sr_adapter_meta_mem(&m, 997), 0x2);    /* c in g_ac */
    assert_int_equal(sr_adapter_meta_mem(&m, 998), 0x2);    /* a in g_ac */
    assert_int_equal(sr_adapter_meta_mem(&m, 999), 0x1);    /* b in g_b */
    assert_int_equal(m.sup[0], 0x5);    /* base: g_b, g_none */
    assert_int_equal(m.sup[1], 0x0);    /* c: empty list */
    assert_int_equal(m.sup[2], 0x0);    /* a: no policy key */
    assert_int_equal(m.sup[3], 0x2);    /* b: g_ac, unknown group ignored */
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);

    /* no hiding groups, no policy: Gen A with empty tables */
    txt = "{\"model_type\":\"granite_switch\",\"vocab_size\":50,\"hidden_size\":64,"
          "\"num_attention_heads\":4,\"num_hidden_layers\":3,\"num_adapters\":1,"
          "\"adapter_token_ids\":[49],\"adapter_ranks\":[8],\"control_dims\":32}";
    parse_text(txt, &cfg);
    build(&cfg, &m);
    assert_int_equal(m.gen, SR_GEN_A);
    assert_int_equal(m.n_groups, 0);
    assert_int_equal(m.table_size, 50);
    assert_int_equal(m.sup[0], 0);
    assert_int_equal(m.sup[1], 0);
    assert_int_equal(sr_adapter_meta_mem(&m, 49), 0);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

static const char *gen_b_txt =
    "{\"model_type\":\"granite_switch\",\"vocab_size\":200,\"hidden_size\":64,"
    "\"num_attention_heads\":4,\"num_hidden_layers\":3,\"num_adapters\":3,"
    "\"adapter_token_ids\":[101,102,103],\"adapter_substitute_token_ids\":[11,12,13],"
    "\"adapter_ranks\":[8,8,8],\"max_lora_rank\":8}";

static void test_gen_b_lut(void **state)
{
    (void)state;
    sr_config cfg;
    sr_adapter_meta m;
    parse_text(gen_b_txt, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_B);
    build(&cfg, &m);
    assert_int_equal(m.lut_size, 200);
    for (int64_t t = 0; t < 200; t++) {
        int64_t want = t >= 101 && t <= 103 ? t - 90 : -1;
        assert_int_equal(m.lut[t], want);
    }
    assert_int_equal(m.ctrl_index[0], 1);
    assert_int_equal(m.ctrl_index[2], 3);
    assert_int_equal(m.n_groups, 0);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

/* Gen C base-reset layout (§6.2.4 trace: ids 100..103, 100 = reset,
 * substitutes 10..13); the reset pair is in the LUT too (§8 item 7). */
static void test_gen_c_base_reset(void **state)
{
    (void)state;
    const char *txt =
        "{\"model_type\":\"granite_switch\",\"vocab_size\":200,\"hidden_size\":64,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":4,\"num_adapters\":3,"
        "\"adapter_token_ids\":[100,101,102,103],\"adapter_substitute_token_ids\":[10,11,12,13],"
        "\"adapter_ranks\":[8,8,8],\"max_lora_rank\":8,\"ms_code_m\":6,\"ms_code_type\":\"kerdock\"}";
    sr_config cfg;
    sr_adapter_meta m;
    parse_text(txt, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_C);
    assert_int_equal(cfg.n_layers, 2);
    build(&cfg, &m);
    assert_int_equal(m.n_ctrl, 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(m.ctrl_ids[k], 100 + k);
        assert_int_equal(m.ctrl_index[k], k);       /* 100 -> 0 = base */
        assert_int_equal(m.lut[100 + k], 10 + k);
    }
    assert_int_equal(m.lut[99], -1);
    assert_int_equal(m.lut[104], -1);
    assert_int_equal(m.codebook_rows, 2048);
    assert_int_equal(m.codebook_cols, 64);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

static void test_plain_model(void **state)
{
    (void)state;
    sr_config cfg;
    sr_adapter_meta m;
    sr_error err = {{0}};
    assert_int_equal(sr_config_load(test_data("model/granite-dense/config.json"), &cfg, &err), 0);
    build(&cfg, &m);
    assert_int_equal(m.n_adapters, 0);
    assert_int_equal(m.n_ctrl, 0);
    assert_int_equal(m.table_size, 256);
    assert_int_equal(m.sup[0], 0);
    assert_int_equal(sr_adapter_meta_mem(&m, 5), 0);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

static void test_derived_keys(void **state)
{
    (void)state;
    assert_true(sr_is_derived_key("model.adapter_token_ids"));
    assert_true(sr_is_derived_key("model.token_to_group_mask"));
    assert_true(sr_is_derived_key("model.adapter_hiding_matrix"));
    assert_true(sr_is_derived_key("model.adapter_substitute_token_ids"));
    assert_true(sr_is_derived_key("model.control_to_substitute_lut"));
    assert_true(sr_is_derived_key("model.switch.control_to_substitute_lut"));
    assert_true(sr_is_derived_key("model.switch.codebook"));
    assert_false(sr_is_derived_key("model.embed_tokens.weight"));
    assert_false(sr_is_derived_key("model.adapter_token_ids.weight"));
    assert_false(sr_is_derived_key(""));
}

/* A tensor over caller memory, for hand-made stored copies. */
static sr_tensor mk(const char *name, sr_dtype dt, int ndim, int64_t d0, int64_t d1, const void *data,
                    uint64_t nbytes)
{
    sr_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = dt;
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.data = data;
    t.nbytes = nbytes;
    return t;
}

static void test_compare_synthetic(void **state)
{
    (void)state;
    sr_config cfg;
    sr_adapter_meta m;
    char why[256];
    load_switch3a(&cfg);
    build(&cfg, &m);

    int64_t ids[3] = {256, 257, 258};
    sr_tensor t = mk("model.adapter_token_ids", SR_I64, 1, 3, 0, ids, sizeof ids);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    ids[1] = 300;
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "element 1"));
    t = mk("model.adapter_token_ids", SR_I32, 1, 3, 0, ids, sizeof ids);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "dtype"));
    t = mk("model.adapter_token_ids", SR_I64, 1, 2, 0, ids, 16);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "shape"));
    /* shape right but too few bytes (a malformed tensor must not be read) */
    t = mk("model.adapter_token_ids", SR_I64, 1, 3, 0, ids, 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);

    uint8_t hm[8] = {0, 1, 1, 0, 0, 0, 1, 1};
    t = mk("model.adapter_hiding_matrix", SR_BOOL, 2, 4, 2, hm, 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    hm[4] = 1;      /* beta now hides grp_ab */
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "[2, 0]"));

    uint8_t *mask = calloc(259 * 2, 1);
    mask[256 * 2 + 0] = mask[257 * 2 + 0] = mask[258 * 2 + 1] = 1;
    t = mk("model.token_to_group_mask", SR_BOOL, 2, 259, 2, mask, 259 * 2);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    mask[10 * 2 + 1] = 1;           /* an ordinary token in a group */
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "[10, 1]"));
    mask[10 * 2 + 1] = 0;
    mask[257 * 2 + 0] = 0;          /* a member missing */
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "[257, 0]"));
    free(mask);

    /* keys this generation does not use, and non-derived keys */
    t = mk("model.switch.control_to_substitute_lut", SR_I64, 1, 259, 0, ids, 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), -1);
    t = mk("model.switch.codebook", SR_F32, 2, 2048, 64, ids, 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), -1);
    t = mk("model.norm.weight", SR_F32, 1, 64, 0, ids, 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), -1);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);

    /* Gen B: LUT and substitute copies */
    parse_text(gen_b_txt, &cfg);
    build(&cfg, &m);
    int64_t *lut = malloc(200 * sizeof *lut);
    memcpy(lut, m.lut, 200 * sizeof *lut);
    t = mk("model.control_to_substitute_lut", SR_I64, 1, 200, 0, lut, 200 * 8);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    t.name = "model.switch.control_to_substitute_lut";
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    lut[5] = 7;
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 0);
    assert_non_null(strstr(why, "element 5"));
    free(lut);
    int64_t subs[3] = {11, 12, 13};
    t = mk("model.adapter_substitute_token_ids", SR_I64, 1, 3, 0, subs, sizeof subs);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), 1);
    t = mk("model.adapter_hiding_matrix", SR_BOOL, 2, 4, 0, subs, 0);
    assert_int_equal(sr_adapter_meta_compare(&m, &t, why, sizeof why), -1);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

/* T_load_2: the stored copies of switch-3a-with-buffers equal the tables
 * rebuilt from its config.json; a modified copy differs. */
static void test_compare_checkpoint(void **state)
{
    (void)state;
    sr_config cfg;
    sr_adapter_meta m;
    sr_error err = {{0}};
    sr_st_file *f = NULL;
    char why[256];
    assert_int_equal(sr_config_load(test_data("model/switch-3a-with-buffers/config.json"), &cfg, &err), 0);
    build(&cfg, &m);
    if (sr_st_open(test_data("model/switch-3a-with-buffers/model.safetensors"), &f, &err))
        fail_msg("open: %s", err.msg);
    static const char *const keys[] = {"model.adapter_token_ids", "model.token_to_group_mask",
                                       "model.adapter_hiding_matrix"};
    int found = 0;
    for (size_t i = 0; i < sr_st_count(f); i++) {
        const sr_tensor *t = sr_st_get(f, i);
        if (!sr_is_derived_key(t->name)) continue;
        found++;
        int r = sr_adapter_meta_compare(&m, t, why, sizeof why);
        if (r != 1) fail_msg("%s: %d (%s)", t->name, r, why);
    }
    assert_int_equal(found, 3);

    /* modified copies: one flipped entry in each */
    for (int k = 0; k < 3; k++) {
        const sr_tensor *t = sr_st_find(f, keys[k]);
        assert_non_null(t);
        uint8_t *copy = malloc(t->nbytes);
        memcpy(copy, t->data, t->nbytes);
        sr_tensor mod = *t;
        mod.data = copy;
        if (k == 0) copy[8] ^= 1;               /* element 1: 257 -> 256 */
        else if (k == 1) copy[2 * 3 + 1] ^= 1;  /* token 3 joins group 1 */
        else copy[0] ^= 1;                      /* base now hides grp_ab */
        assert_int_equal(sr_adapter_meta_compare(&m, &mod, why, sizeof why), 0);
        assert_true(why[0] != 0);
        free(copy);
    }
    sr_st_close(f);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);

    /* the config without buffers describes the same tables */
    assert_int_equal(sr_config_load(test_data("model/switch-3a/config.json"), &cfg, &err), 0);
    build(&cfg, &m);
    assert_int_equal(m.sup[3], 0x3);
    sr_adapter_meta_free(&m);
    sr_config_free(&cfg);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *texts[2] = {gen_b_txt, NULL};
    sr_config cfgs[2];
    load_switch3a(&cfgs[1]);
    parse_text(texts[0], &cfgs[0]);
    for (int c = 0; c < 2; c++) {
        sr_adapter_meta m;
        sr_error err = {{0}};
        sr_alloc_fail_after(1000000);
        build(&cfgs[c], &m);
        long sites = sr_alloc_count();
        sr_adapter_meta_free(&m);
        for (long k = 0; k < sites; k++) {
            sr_alloc_fail_after(k);
            int rc = sr_adapter_meta_build(&cfgs[c], &m, &err);
            sr_alloc_fail_after(-1);
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err.msg, "out of memory"));
            assert_null(m.ctrl_ids);
            sr_adapter_meta_free(&m);
        }
        sr_config_free(&cfgs[c]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch3a_tables),
        cmocka_unit_test(test_cfg2_hiding_tables),
        cmocka_unit_test(test_gen_b_lut),
        cmocka_unit_test(test_gen_c_base_reset),
        cmocka_unit_test(test_plain_model),
        cmocka_unit_test(test_derived_keys),
        cmocka_unit_test(test_compare_synthetic),
        cmocka_unit_test(test_compare_checkpoint),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
