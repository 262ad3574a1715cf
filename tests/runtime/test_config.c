/* config.json parsing, validation and generation detection (spec
 * granite-switch.md §1, §7 T_cfg_1 / T_load_1; bnb-format.md §5.1).
 *
 * Most cases start from the golden switch-3a config, change one field with
 * jansson and check the parse result or the error (which must name the
 * field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime/alloc.h"
#include "runtime/config.h"
#include "runtime/log.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------ */

static json_t *load_golden(const char *rel)
{
    json_error_t je;
    json_t *o = json_load_file(test_data(rel), 0, &je);
    if (!o) fail_msg("%s: %s", rel, je.text);
    return o;
}

static json_t *switch3a(void) { return load_golden("model/switch-3a/config.json"); }

/* Parses `o` (consumed). */
static int parse_obj(json_t *o, sr_config *cfg, sr_error *err)
{
    char *s = json_dumps(o, 0);
    json_decref(o);
    assert_non_null(s);
    int rc = sr_config_parse(s, strlen(s), "config.json", cfg, err);
    free(s);
    return rc;
}

/* The parse of `o` must fail with a message containing every given
 * substring (NULL-terminated list). */
static void expect_fail(json_t *o, ...)
{
    sr_config cfg;
    sr_error err = {{0}};
    int rc = parse_obj(o, &cfg, &err);
    if (rc == 0) {
        sr_config_free(&cfg);
        fail_msg("parse succeeded, expected an error");
    }
    va_list ap;
    va_start(ap, o);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err.msg, s)) fail_msg("error '%s' lacks '%s'", err.msg, s);
    va_end(ap);
    /* a failed parse leaves cfg zeroed, and freeing it is safe */
    assert_null(cfg.source);
    assert_int_equal(cfg.n_defaulted, 0);
    sr_config_free(&cfg);
}

static void expect_ok(json_t *o, sr_config *cfg)
{
    sr_error err = {{0}};
    if (parse_obj(o, cfg, &err)) fail_msg("parse failed: %s", err.msg);
}

static void set(json_t *o, const char *key, json_t *v) { json_object_set_new(o, key, v); }

static json_t *ints(int n, ...)
{
    json_t *a = json_array();
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(va_arg(ap, int)));
    va_end(ap);
    return a;
}

static json_t *strs(int n, ...)
{
    json_t *a = json_array();
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(va_arg(ap, const char *)));
    va_end(ap);
    return a;
}

static int has_default(const sr_config *cfg, const char *prefix)
{
    for (int i = 0; i < cfg->n_defaulted; i++)
        if (!strncmp(cfg->defaulted[i], prefix, strlen(prefix))) return 1;
    return 0;
}

/* Warnings captured from sr_warn. */
static char warned[4096];
static void capture(sr_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level == SR_LOG_WARN) snprintf(warned + strlen(warned), sizeof warned - strlen(warned), "%s\n", msg);
}

/* A Gen B/C-style switch config: no hiding, token exchange. */
static json_t *token_exchange_base(void)
{
    json_t *o = switch3a();
    json_object_del(o, "control_dims");
    json_object_del(o, "hiding_groups");
    json_object_del(o, "hiding_policy");
    json_object_del(o, "adapter_third_party");
    set(o, "vocab_size", json_integer(200));
    set(o, "adapter_token_ids", ints(3, 101, 102, 103));
    set(o, "adapter_substitute_token_ids", ints(3, 11, 12, 13));
    return o;
}

/* ---- golden configs ----------------------------------------------------- */

static void test_golden_switch3a(void **state)
{
    (void)state;
    sr_config cfg;
    sr_error err = {{0}};
    assert_int_equal(sr_config_load(test_data("model/switch-3a/config.json"), &cfg, &err), 0);
    assert_string_equal(cfg.model_type, "granite_switch");
    assert_int_equal(cfg.arch, SR_ARCH_GRANITE_SWITCH);
    assert_int_equal(cfg.gen, SR_GEN_A);
    assert_int_equal(cfg.vocab_size, 259);
    assert_int_equal(cfg.hidden_size, 64);
    assert_int_equal(cfg.intermediate_size, 96);
    assert_int_equal(cfg.shared_intermediate_size, 96);
    assert_int_equal(cfg.num_hidden_layers, 4);
    assert_int_equal(cfg.n_switch_slots, 1);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.num_attention_heads, 4);
    assert_int_equal(cfg.num_key_value_heads, 2);
    assert_int_equal(cfg.head_dim, 16);
    assert_true(cfg.head_dim_given);
    assert_int_equal(cfg.max_position_embeddings, 512);
    assert_true(cfg.rms_norm_eps == 1e-5);
    assert_true(cfg.rope_theta == 10000.0);
    assert_string_equal(cfg.rope_type, "default");
    assert_true(cfg.rope_factor == 1.0);
    assert_true(cfg.use_rope);
    assert_false(cfg.attention_bias);
    assert_false(cfg.qk_norm);
    assert_true(cfg.embedding_multiplier == 12.0);
    assert_true(cfg.residual_multiplier == 0.22);
    assert_true(cfg.attention_multiplier == 0.0625);
    assert_true(cfg.logits_scaling == 8.0);
    assert_true(cfg.tie_word_embeddings);
    assert_int_equal(cfg.num_local_experts, 0);
    assert_int_equal(cfg.bos_token_id, 1);
    assert_int_equal(cfg.eos_token_id, 2);
    assert_int_equal(cfg.pad_token_id, 0);
    assert_int_equal(cfg.dtype, SR_F32);

    assert_int_equal(cfg.num_adapters, 3);
    assert_int_equal(cfg.n_adapter_token_ids, 3);
    assert_int_equal(cfg.adapter_token_ids[0], 256);
    assert_int_equal(cfg.adapter_token_ids[2], 258);
    assert_string_equal(cfg.adapter_names[0], "alpha");
    assert_string_equal(cfg.adapter_names[1], "beta");
    assert_string_equal(cfg.adapter_names[2], "gamma");
    assert_int_equal(cfg.adapter_ranks[0], 2);
    assert_int_equal(cfg.adapter_ranks[1], 4);
    assert_int_equal(cfg.adapter_ranks[2], 8);
    assert_int_equal(cfg.max_lora_rank, 8);
    assert_int_equal(cfg.lora_targets, SR_LORA_QKV | SR_LORA_O | SR_LORA_IN | SR_LORA_OUT);
    assert_true(cfg.control_token_gain == 15.0);
    assert_int_equal(cfg.control_dims, 8);
    assert_int_equal(cfg.n_hiding_groups, 2);
    assert_string_equal(cfg.hiding_groups[0].name, "grp_ab");
    assert_int_equal(cfg.hiding_groups[0].n_members, 2);
    assert_string_equal(cfg.hiding_groups[0].members[1], "beta");
    assert_string_equal(cfg.hiding_groups[1].name, "grp_c");
    assert_false(cfg.hiding_policy_null);
    assert_int_equal(cfg.n_hiding_rules, 3);
    assert_string_equal(cfg.hiding_rules[1].adapter, "base");
    assert_int_equal(cfg.n_third_party, 0);
    assert_int_equal(cfg.n_substitute_ids, 0);
    assert_int_equal(cfg.quant.mode, SR_BNB_NONE);
    assert_int_equal(sr_config_control_index(&cfg, 256), 1);
    assert_int_equal(sr_config_control_index(&cfg, 258), 3);
    assert_int_equal(sr_config_control_index(&cfg, 255), -1);
    assert_int_equal(sr_config_control_index(&cfg, 259), -1);
    assert_string_equal(sr_gen_name(cfg.gen), "A (KV hiding)");
    sr_config_free(&cfg);
    sr_config_free(&cfg);       /* idempotent */
}

static void test_golden_switch3a_bf16(void **state)
{
    (void)state;
    sr_config cfg;
    sr_error err = {{0}};
    assert_int_equal(sr_config_load(test_data("model/switch-3a-bf16/config.json"), &cfg, &err), 0);
    assert_int_equal(cfg.dtype, SR_BF16);
    assert_int_equal(cfg.gen, SR_GEN_A);
    assert_int_equal(cfg.n_layers, 3);
    sr_config_free(&cfg);
    assert_int_equal(sr_config_load(test_data("model/switch-3a-with-buffers/config.json"), &cfg, &err), 0);
    assert_int_equal(cfg.num_adapters, 3);
    sr_config_free(&cfg);
}

static void test_golden_dense(void **state)
{
    (void)state;
    sr_config cfg;
    sr_error err = {{0}};
    assert_int_equal(sr_config_load(test_data("model/granite-dense/config.json"), &cfg, &err), 0);
    assert_int_equal(cfg.arch, SR_ARCH_GRANITE);
    assert_int_equal(cfg.gen, SR_GEN_NONE);
    assert_int_equal(cfg.num_adapters, 0);
    assert_int_equal(cfg.n_switch_slots, 0);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.vocab_size, 256);
    assert_int_equal(cfg.head_dim, 16);
    assert_false(cfg.head_dim_given);
    assert_int_equal(cfg.shared_intermediate_size, 96);   /* granite: I = intermediate_size */
    assert_false(cfg.tie_word_embeddings);
    assert_true(cfg.use_rope);
    assert_true(cfg.logits_scaling == 8.0);
    assert_int_equal(cfg.lora_targets, 0);
    assert_int_equal(cfg.dtype, SR_F32);
    assert_int_equal(sr_config_control_index(&cfg, 0), -1);
    sr_config_free(&cfg);
}

static void test_golden_bnb(void **state)
{
    (void)state;
    sr_bnb_config q;
    sr_dtype dt;
    sr_error err = {{0}};
    assert_int_equal(sr_quant_config_load(test_data("bnb/tiny_nf4_dq_bf16/config.json"), &q, &dt, &err), 0);
    assert_int_equal(q.mode, SR_BNB_4BIT);
    assert_true(q.nf4);
    assert_true(q.double_quant);
    assert_int_equal(q.blocksize, 64);
    assert_int_equal(q.compute_dtype, SR_BF16);
    assert_int_equal(q.quant_storage, SR_U8);
    assert_true(q.skip_modules_null);
    assert_int_equal(dt, SR_BF16);
    sr_bnb_config_free(&q);

    assert_int_equal(sr_quant_config_load(test_data("bnb/tiny_fp4_nodq_fp16/config.json"), &q, &dt, &err), 0);
    assert_int_equal(q.mode, SR_BNB_4BIT);
    assert_false(q.nf4);
    assert_false(q.double_quant);
    assert_int_equal(q.compute_dtype, SR_F16);
    assert_int_equal(dt, SR_F16);
    sr_bnb_config_free(&q);

    assert_int_equal(sr_quant_config_load(test_data("bnb/tiny_int8_fp16/config.json"), &q, &dt, &err), 0);
    assert_int_equal(q.mode, SR_BNB_8BIT);
    assert_true(q.int8_threshold == 6.0);
    assert_false(q.has_fp16_weight);
    assert_false(q.fp32_cpu_offload);
    assert_int_equal(dt, SR_F16);
    sr_bnb_config_free(&q);

    /* the toys have no model_type: the full config reader refuses them by name */
    sr_config cfg;
    assert_int_equal(sr_config_load(test_data("bnb/tiny_int8_fp16/config.json"), &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "model_type"));
    sr_config_free(&cfg);
}

/* ---- model types -------------------------------------------------------- */

static void test_model_type(void **state)
{
    (void)state;
    json_t *o = switch3a();
    set(o, "model_type", json_string("llama"));
    expect_fail(o, "field 'model_type'", "llama", NULL);
    o = switch3a();
    json_object_del(o, "model_type");
    expect_fail(o, "field 'model_type'", "missing", NULL);
    o = switch3a();
    set(o, "model_type", json_integer(3));
    expect_fail(o, "field 'model_type'", NULL);
}

static json_t *hybrid_base(void)
{
    json_t *o = load_golden("model/granite-dense/config.json");
    set(o, "model_type", json_string("granitemoehybrid"));
    set(o, "layer_types", strs(3, "attention", "attention", "attention"));
    set(o, "num_local_experts", json_integer(0));
    set(o, "position_embedding_type", json_string("rope"));
    set(o, "shared_intermediate_size", json_integer(96));
    return o;
}

static void test_granitemoehybrid(void **state)
{
    (void)state;
    sr_config cfg;
    expect_ok(hybrid_base(), &cfg);
    assert_int_equal(cfg.arch, SR_ARCH_GRANITEMOEHYBRID);
    assert_int_equal(cfg.gen, SR_GEN_NONE);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.shared_intermediate_size, 96);
    assert_true(cfg.use_rope);
    sr_config_free(&cfg);

    /* "full_attention" (transformers >= 5.16) equals "attention" */
    json_t *o = hybrid_base();
    set(o, "layer_types", strs(3, "full_attention", "attention", "full_attention"));
    json_object_del(o, "shared_intermediate_size");
    json_object_del(o, "position_embedding_type");
    expect_ok(o, &cfg);
    assert_int_equal(cfg.shared_intermediate_size, -1);     /* from the weights */
    assert_false(cfg.use_rope);                             /* GraniteMoeHybridConfig default None */
    assert_true(has_default(&cfg, "position_embedding_type"));
    sr_config_free(&cfg);

    o = hybrid_base();
    set(o, "layer_types", strs(3, "attention", "mamba", "attention"));
    expect_fail(o, "field 'layer_types'", "mamba", NULL);
    o = hybrid_base();
    set(o, "layer_types", strs(3, "linear_attention", "attention", "attention"));
    expect_fail(o, "field 'layer_types'", "linear_attention", NULL);
    o = hybrid_base();
    json_object_del(o, "layer_types");
    expect_fail(o, "field 'layer_types'", "mamba", NULL);
    o = hybrid_base();
    json_object_del(o, "num_local_experts");      /* defaults to 8 experts */
    expect_fail(o, "field 'num_local_experts'", "8", NULL);
    o = hybrid_base();
    set(o, "layer_types", strs(2, "attention", "attention"));
    expect_fail(o, "field 'layer_types'", "length 2 != num_hidden_layers 3", NULL);
}

/* ---- T_cfg_1 and §1.6 -------------------------------------------------- */

static void test_cfg1_reference_errors(void **state)
{
    (void)state;
    json_t *o = switch3a();
    set(o, "num_adapters", json_integer(-1));
    expect_fail(o, "field 'num_adapters'", "-1", NULL);

    o = switch3a();
    set(o, "adapter_token_ids", ints(2, 256, 257));
    expect_fail(o, "field 'adapter_token_ids'", "length 2 != num_adapters 3", NULL);

    o = switch3a();
    json_object_del(o, "adapter_ranks");
    expect_fail(o, "field 'adapter_ranks'", "missing", NULL);

    o = switch3a();
    set(o, "adapter_ranks", ints(2, 2, 8));
    expect_fail(o, "field 'adapter_ranks'", "length 2 != num_adapters 3", NULL);

    o = switch3a();
    set(o, "max_lora_rank", json_integer(16));
    expect_fail(o, "field 'max_lora_rank'", "16 != max(adapter_ranks) 8", NULL);

    o = switch3a();
    set(o, "control_dims", json_integer(-1));
    expect_fail(o, "field 'control_dims'", "must be >= 0", NULL);

    o = switch3a();
    set(o, "control_dims", json_integer(1));
    expect_fail(o, "field 'hiding_groups'", "2 groups > control_dims 1", NULL);
}

static void test_recommended_checks(void **state)
{
    (void)state;
    json_t *o = switch3a();
    json_object_del(o, "adapter_token_ids");
    expect_fail(o, "field 'adapter_token_ids'", "missing", NULL);

    o = switch3a();
    set(o, "adapter_token_ids", ints(3, 256, 257, 259));
    expect_fail(o, "field 'adapter_token_ids'", "259 >= vocab_size 259", NULL);

    o = switch3a();
    set(o, "adapter_token_ids", ints(3, 256, 257, 256));
    expect_fail(o, "field 'adapter_token_ids'", "256 appears twice", NULL);

    o = switch3a();
    set(o, "adapter_token_ids", ints(3, 256, -4, 258));
    expect_fail(o, "field 'adapter_token_ids[1]'", "-4", NULL);

    o = switch3a();
    set(o, "hiding_policy", json_null());
    expect_fail(o, "field 'hiding_policy'", "null", NULL);

    o = switch3a();
    set(o, "adapter_names", json_null());
    expect_fail(o, "field 'adapter_names'", "null", NULL);

    o = switch3a();
    set(o, "adapter_names", strs(2, "alpha", "beta"));
    expect_fail(o, "field 'adapter_names'", "length 2 != num_adapters 3", NULL);

    o = switch3a();
    set(o, "adapter_names", strs(3, "alpha", "beta", "alpha"));
    expect_fail(o, "field 'adapter_names'", "twice", NULL);

    o = switch3a();
    set(o, "num_key_value_heads", json_integer(3));
    expect_fail(o, "field 'num_key_value_heads'", NULL);

    o = switch3a();
    set(o, "head_dim", json_integer(32));
    expect_fail(o, "field 'head_dim'", "!= hidden_size 64", NULL);

    o = switch3a();
    json_object_del(o, "head_dim");
    set(o, "num_attention_heads", json_integer(5));
    set(o, "num_key_value_heads", json_integer(5));
    expect_fail(o, "field 'num_attention_heads'", "does not divide hidden_size", NULL);

    o = switch3a();
    set(o, "hidden_act", json_string("gelu"));
    expect_fail(o, "field 'hidden_act'", "gelu", NULL);

    o = switch3a();
    set(o, "layer_types", strs(3, "attention", "attention", "attention"));
    expect_fail(o, "field 'layer_types'", "length 3 != num_hidden_layers 4", NULL);

    o = switch3a();
    json_object_set_new(json_object_get(o, "rope_parameters"), "rope_type", json_string("yarn"));
    expect_fail(o, "field 'rope_parameters.rope_type'", "yarn", NULL);

    o = switch3a();
    set(o, "partial_rotary_factor", json_real(0.5));
    expect_fail(o, "field 'partial_rotary_factor'", "0.5", NULL);

    o = switch3a();
    json_object_set_new(json_object_get(o, "rope_parameters"), "partial_rotary_factor", json_real(0.25));
    expect_fail(o, "field 'rope_parameters.partial_rotary_factor'", NULL);

    o = switch3a();
    set(o, "sliding_window", json_integer(4096));
    expect_fail(o, "field 'sliding_window'", NULL);

    o = switch3a();
    set(o, "mlp_bias", json_true());
    expect_fail(o, "field 'mlp_bias'", NULL);

    o = switch3a();
    set(o, "num_local_experts", json_integer(4));
    expect_fail(o, "field 'num_local_experts'", "not supported", NULL);

    o = switch3a();
    set(o, "num_hidden_layers", json_integer(1));
    set(o, "layer_types", strs(1, "attention"));
    expect_fail(o, "field 'num_hidden_layers'", "no decoder layer", NULL);

    o = switch3a();
    set(o, "lora_target_modules", strs(2, "qkv_proj", "gate_proj"));
    expect_fail(o, "field 'lora_target_modules'", "gate_proj", NULL);

    o = switch3a();
    set(o, "adapter_ranks", ints(3, 2, 0, 8));
    expect_fail(o, "field 'adapter_ranks[1]'", NULL);

    o = switch3a();
    set(o, "logits_scaling", json_real(0.0));
    expect_fail(o, "field 'logits_scaling'", NULL);

    o = switch3a();
    set(o, "rms_norm_eps", json_string("1e-5"));
    expect_fail(o, "field 'rms_norm_eps'", "expected a number", NULL);

    o = switch3a();
    set(o, "rms_norm_eps", json_pack("{s:s}", "__float__", "NaN"));
    expect_fail(o, "field 'rms_norm_eps'", "non-finite", NULL);

    o = switch3a();
    set(o, "tie_word_embeddings", json_integer(1));
    expect_fail(o, "field 'tie_word_embeddings'", "true or false", NULL);

    o = switch3a();
    set(o, "dtype", json_string("int8"));
    expect_fail(o, "field 'dtype'", "int8", NULL);

    o = switch3a();
    set(o, "dtype", json_string("float8_e4m3"));
    expect_fail(o, "field 'dtype'", NULL);

    o = switch3a();
    set(o, "hiding_groups", json_pack("{s:s}", "g", "alpha"));
    expect_fail(o, "field 'hiding_groups.g'", "list", NULL);
}

static void test_limits(void **state)
{
    (void)state;
    json_t *o = switch3a();
    set(o, "vocab_size", json_integer((json_int_t)1 << 32));
    expect_fail(o, "field 'vocab_size'", NULL);
    o = switch3a();
    set(o, "hidden_size", json_integer(65537));
    expect_fail(o, "field 'hidden_size'", NULL);
    o = switch3a();
    set(o, "num_hidden_layers", json_integer(1025));
    expect_fail(o, "field 'num_hidden_layers'", NULL);
    o = switch3a();
    set(o, "num_attention_heads", json_integer(2048));
    expect_fail(o, "field 'num_attention_heads'", NULL);
    o = switch3a();
    set(o, "num_adapters", json_integer(1025));
    expect_fail(o, "field 'num_adapters'", NULL);
    o = switch3a();
    set(o, "max_position_embeddings", json_integer(0));
    expect_fail(o, "field 'max_position_embeddings'", NULL);

    /* more groups than a 32-bit membership mask */
    o = switch3a();
    set(o, "control_dims", json_integer(64));
    json_t *g = json_object();
    for (int i = 0; i < 33; i++) {
        char name[16];
        snprintf(name, sizeof name, "g%d", i);
        json_object_set_new(g, name, strs(1, "alpha"));
    }
    set(o, "hiding_groups", g);
    expect_fail(o, "field 'hiding_groups'", "33 groups", "32", NULL);
}

/* ---- §1.5 refusals and generation detection (T_load_1) ------------------ */

static void test_refusals(void **state)
{
    (void)state;
    json_t *o = switch3a();
    set(o, "dual_stream", json_true());
    expect_fail(o, "field 'dual_stream'", NULL);
    o = switch3a();
    set(o, "cross_stream_rank", json_integer(16));
    expect_fail(o, "field 'cross_stream_rank'", NULL);
    o = switch3a();
    set(o, "unfused_qkv", json_true());
    expect_fail(o, "field 'unfused_qkv'", NULL);
    o = switch3a();
    set(o, "adapter_kinds", strs(3, "lora", "classifier", "alora"));
    expect_fail(o, "field 'adapter_kinds'", "classifier", NULL);

    /* the harmless forms are accepted */
    sr_config cfg;
    o = switch3a();
    set(o, "dual_stream", json_false());
    set(o, "cross_stream_rank", json_null());
    set(o, "adapter_kinds", strs(3, "lora", "alora", "lora"));
    expect_ok(o, &cfg);
    sr_config_free(&cfg);
}

static void test_detect_gen_a(void **state)
{
    (void)state;
    sr_config cfg;
    /* control_dims > 0 with substitutes present: Gen A, substitutes ignored */
    json_t *o = switch3a();
    set(o, "adapter_substitute_token_ids", ints(3, 5, 6, 7));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_A);
    assert_int_equal(cfg.n_substitute_ids, 0);
    assert_int_equal(cfg.n_switch_slots, 1);
    sr_config_free(&cfg);

    /* step 8: neither control_dims nor substitutes -> Gen A, C = 32, warning */
    warned[0] = 0;
    sr_log_set_sink(capture, NULL);
    o = switch3a();
    json_object_del(o, "control_dims");
    expect_ok(o, &cfg);
    sr_log_set_sink(NULL, NULL);
    assert_int_equal(cfg.gen, SR_GEN_A);
    assert_int_equal(cfg.control_dims, 32);
    assert_true(has_default(&cfg, "control_dims=32"));
    assert_non_null(strstr(warned, "control_dims 32"));
    sr_config_free(&cfg);

    /* control_dims 0 and no substitutes: refused (official @19b633a2) */
    o = switch3a();
    set(o, "control_dims", json_integer(0));
    json_object_del(o, "hiding_groups");
    expect_fail(o, "field 'control_dims'", "adapter_substitute_token_ids", NULL);
}

static void test_detect_gen_b(void **state)
{
    (void)state;
    sr_config cfg;
    json_t *o = token_exchange_base();
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_B);
    assert_int_equal(cfg.n_switch_slots, 1);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.control_dims, 0);
    assert_int_equal(cfg.n_hiding_groups, 0);
    assert_int_equal(cfg.n_substitute_ids, 3);
    assert_int_equal(cfg.adapter_substitute_token_ids[2], 13);
    assert_int_equal(sr_config_control_index(&cfg, 102), 2);
    sr_config_free(&cfg);

    /* explicit control_dims 0 and a SingleSwitch switch_type: still B */
    o = token_exchange_base();
    set(o, "control_dims", json_integer(0));
    set(o, "switch_type", json_string("single"));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_B);
    sr_config_free(&cfg);

    /* hiding groups without control dims */
    o = token_exchange_base();
    set(o, "hiding_groups", json_pack("{s:[s]}", "g", "alpha"));
    expect_fail(o, "field 'hiding_groups'", "control_dims 0", NULL);

    o = token_exchange_base();
    set(o, "adapter_substitute_token_ids", ints(2, 11, 12));
    expect_fail(o, "field 'adapter_substitute_token_ids'", "length 2", NULL);
    o = token_exchange_base();
    set(o, "adapter_substitute_token_ids", ints(3, 11, -1, 13));
    expect_fail(o, "field 'adapter_substitute_token_ids'", "negative", NULL);
    o = token_exchange_base();
    set(o, "adapter_substitute_token_ids", ints(3, 11, 200, 13));
    expect_fail(o, "field 'adapter_substitute_token_ids'", ">= vocab_size 200", NULL);
    o = token_exchange_base();
    json_object_del(o, "adapter_token_ids");
    expect_fail(o, "field 'adapter_token_ids'", "missing", NULL);
}

static void test_detect_gen_c(void **state)
{
    (void)state;
    sr_config cfg;
    json_t *o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    set(o, "num_hidden_layers", json_integer(5));
    set(o, "layer_types", strs(5, "attention", "attention", "attention", "attention", "attention"));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_C);
    assert_int_equal(cfg.n_switch_slots, 2);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.ms_code_m, 6);
    assert_string_equal(cfg.ms_code_type, "kerdock");
    assert_true(cfg.ms_memory_gain == 28.0);
    assert_int_equal(cfg.ms_counting_head_dim, 32);
    assert_int_equal(sr_config_control_index(&cfg, 101), 1);
    sr_config_free(&cfg);

    /* switch_type "multi" without ms_code_m; N+1 base-reset layout */
    o = token_exchange_base();
    set(o, "switch_type", json_string("multi"));
    set(o, "adapter_token_ids", ints(4, 100, 101, 102, 103));
    set(o, "adapter_substitute_token_ids", ints(4, 10, 11, 12, 13));
    set(o, "ms_counting_head_dim", json_integer(8));
    set(o, "num_hidden_layers", json_integer(5));
    json_object_del(o, "layer_types");
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_C);
    assert_int_equal(cfg.ms_code_m, 6);
    assert_true(has_default(&cfg, "ms_code_m=6"));
    assert_int_equal(cfg.ms_counting_head_dim, 32);      /* floored */
    assert_int_equal(cfg.n_adapter_token_ids, 4);
    assert_int_equal(sr_config_control_index(&cfg, 100), 0);     /* base reset */
    assert_int_equal(sr_config_control_index(&cfg, 103), 3);
    sr_config_free(&cfg);

    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    set(o, "adapter_token_ids", ints(5, 100, 101, 102, 103, 104));
    set(o, "adapter_substitute_token_ids", ints(5, 10, 11, 12, 13, 14));
    expect_fail(o, "field 'adapter_token_ids'", "length 5", NULL);

    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    set(o, "adapter_token_ids", ints(4, 100, 101, 102, 103));
    expect_fail(o, "field 'adapter_substitute_token_ids'", "length 3 != length of adapter_token_ids 4",
                NULL);

    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    json_object_del(o, "adapter_substitute_token_ids");
    expect_fail(o, "field 'adapter_substitute_token_ids'", "missing", NULL);

    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(8));
    set(o, "ms_code_type", json_string("dg1"));
    expect_fail(o, "field 'ms_code_m'", "dg1", NULL);

    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    set(o, "ms_code_type", json_string("hadamard"));
    expect_fail(o, "field 'ms_code_type'", "hadamard", NULL);

    /* Gen C: 2 switch slots, so 2 layers leave no decoder layer */
    o = token_exchange_base();
    set(o, "ms_code_m", json_integer(6));
    set(o, "num_hidden_layers", json_integer(2));
    json_object_del(o, "layer_types");
    expect_fail(o, "field 'num_hidden_layers'", "no decoder layer", NULL);
}

static void test_plain_switch(void **state)
{
    (void)state;
    sr_config cfg;
    json_t *o = switch3a();
    set(o, "num_adapters", json_integer(0));
    json_object_del(o, "lora_target_modules");
    set(o, "num_hidden_layers", json_integer(3));
    set(o, "layer_types", strs(3, "attention", "attention", "attention"));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.gen, SR_GEN_NONE);
    assert_int_equal(cfg.n_switch_slots, 0);
    assert_int_equal(cfg.n_layers, 3);
    assert_int_equal(cfg.lora_targets, 0);
    assert_int_equal(sr_config_control_index(&cfg, 256), -1);
    sr_config_free(&cfg);
}

/* ---- aliases, order, defaults ------------------------------------------- */

static void test_aliases(void **state)
{
    (void)state;
    sr_config cfg;
    /* transformers 4.x: torch_dtype, top-level rope_theta, rope_scaling.type */
    json_t *o = switch3a();
    json_object_del(o, "dtype");
    json_object_del(o, "rope_parameters");
    set(o, "torch_dtype", json_string("bfloat16"));
    set(o, "rope_theta", json_real(1e7));
    set(o, "rope_scaling", json_pack("{s:s,s:f}", "type", "linear", "factor", 4.0));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.dtype, SR_BF16);
    assert_true(cfg.rope_theta == 1e7);
    assert_string_equal(cfg.rope_type, "linear");
    assert_true(cfg.rope_factor == 4.0);
    sr_config_free(&cfg);

    /* rope_scaling.rope_type; linear without factor is refused */
    o = switch3a();
    json_object_del(o, "rope_parameters");
    set(o, "rope_scaling", json_pack("{s:s}", "rope_type", "linear"));
    expect_fail(o, "field 'rope_scaling.factor'", NULL);

    /* rope_parameters.rope_theta wins over rope_theta */
    warned[0] = 0;
    sr_log_set_sink(capture, NULL);
    o = switch3a();
    set(o, "rope_theta", json_real(5e7));
    expect_ok(o, &cfg);
    sr_log_set_sink(NULL, NULL);
    assert_true(cfg.rope_theta == 10000.0);
    assert_non_null(strstr(warned, "rope_theta"));
    sr_config_free(&cfg);

    /* "attention" and "full_attention" are the same */
    o = switch3a();
    set(o, "layer_types", strs(4, "full_attention", "attention", "full_attention", "attention"));
    expect_ok(o, &cfg);
    sr_config_free(&cfg);

    /* an eos list (generation configs copied in) takes the first id */
    o = switch3a();
    set(o, "eos_token_id", ints(2, 7, 9));
    set(o, "pad_token_id", json_null());
    expect_ok(o, &cfg);
    assert_int_equal(cfg.eos_token_id, 7);
    assert_int_equal(cfg.pad_token_id, -1);
    sr_config_free(&cfg);
}

static void test_group_order_is_json_order(void **state)
{
    (void)state;
    sr_config cfg;
    json_t *o = switch3a();
    set(o, "control_dims", json_integer(8));
    /* insertion order zeta, alpha_grp, mid: NOT alphabetical */
    json_t *g = json_object();
    json_object_set_new(g, "zeta", strs(1, "gamma"));
    json_object_set_new(g, "alpha_grp", strs(2, "alpha", "nobody"));
    json_object_set_new(g, "mid", json_array());
    set(o, "hiding_groups", g);
    expect_ok(o, &cfg);
    assert_int_equal(cfg.n_hiding_groups, 3);
    assert_string_equal(cfg.hiding_groups[0].name, "zeta");
    assert_string_equal(cfg.hiding_groups[1].name, "alpha_grp");
    assert_string_equal(cfg.hiding_groups[2].name, "mid");
    assert_int_equal(cfg.hiding_groups[1].n_members, 2);
    assert_string_equal(cfg.hiding_groups[1].members[1], "nobody");   /* kept as written */
    assert_int_equal(cfg.hiding_groups[2].n_members, 0);
    sr_config_free(&cfg);

    /* the same from raw text, to be independent of how jansson dumps */
    const char *txt =
        "{\"model_type\":\"granite_switch\",\"vocab_size\":300,\"hidden_size\":64,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"num_adapters\":2,"
        "\"adapter_token_ids\":[298,299],\"adapter_names\":[\"a\",\"b\"],\"adapter_ranks\":[4,4],"
        "\"max_lora_rank\":4,\"control_dims\":4,"
        "\"hiding_groups\":{\"z2\":[\"b\"],\"a1\":[\"a\"],\"m3\":[\"a\",\"b\"]},"
        "\"hiding_policy\":{\"base\":[\"m3\"]}}";
    sr_error err = {{0}};
    assert_int_equal(sr_config_parse(txt, strlen(txt), "raw", &cfg, &err), 0);
    assert_string_equal(cfg.hiding_groups[0].name, "z2");
    assert_string_equal(cfg.hiding_groups[1].name, "a1");
    assert_string_equal(cfg.hiding_groups[2].name, "m3");
    sr_config_free(&cfg);
}

static void test_lora_targets(void **state)
{
    (void)state;
    sr_config cfg;
    json_t *o = switch3a();
    json_object_del(o, "lora_target_modules");
    expect_ok(o, &cfg);
    assert_int_equal(cfg.lora_targets, SR_LORA_QKV | SR_LORA_O | SR_LORA_IN | SR_LORA_OUT);
    assert_true(has_default(&cfg, "lora_target_modules"));
    sr_config_free(&cfg);

    o = switch3a();
    set(o, "lora_target_modules", strs(2, "o_proj", "shared_output_linear"));
    expect_ok(o, &cfg);
    assert_int_equal(cfg.lora_targets, SR_LORA_O | SR_LORA_OUT);
    sr_config_free(&cfg);

    o = switch3a();
    set(o, "lora_target_modules", json_array());
    expect_ok(o, &cfg);
    assert_int_equal(cfg.lora_targets, 0);
    sr_config_free(&cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    const char *txt = "{\"model_type\": \"granite\"}";
    sr_config cfg;
    sr_error err = {{0}};
    assert_int_equal(sr_config_parse(txt, strlen(txt), "min", &cfg, &err), 0);
    assert_int_equal(cfg.vocab_size, 32000);
    assert_int_equal(cfg.hidden_size, 4096);
    assert_int_equal(cfg.intermediate_size, 11008);
    assert_int_equal(cfg.num_hidden_layers, 32);
    assert_int_equal(cfg.num_attention_heads, 32);
    assert_int_equal(cfg.num_key_value_heads, 32);
    assert_int_equal(cfg.head_dim, 128);
    assert_int_equal(cfg.max_position_embeddings, 2048);
    assert_true(cfg.rms_norm_eps == 1e-6);
    assert_true(cfg.rope_theta == 10000.0);
    assert_string_equal(cfg.rope_type, "default");
    assert_true(cfg.embedding_multiplier == 1.0 && cfg.residual_multiplier == 1.0);
    assert_true(cfg.attention_multiplier == 1.0 && cfg.logits_scaling == 1.0);
    assert_false(cfg.tie_word_embeddings);
    assert_int_equal(cfg.dtype, SR_F32);
    assert_int_equal(cfg.bos_token_id, -1);
    assert_true(has_default(&cfg, "vocab_size=32000"));
    assert_true(has_default(&cfg, "rms_norm_eps="));
    assert_true(has_default(&cfg, "rope_theta="));
    assert_true(has_default(&cfg, "dtype=float32"));
    assert_false(has_default(&cfg, "shared_intermediate_size"));
    sr_config_free(&cfg);

    /* the golden switch config sets everything that matters */
    assert_int_equal(sr_config_load(test_data("model/switch-3a/config.json"), &cfg, &err), 0);
    assert_false(has_default(&cfg, "vocab_size"));
    assert_false(has_default(&cfg, "rope_theta"));
    assert_false(has_default(&cfg, "shared_intermediate_size"));
    sr_config_free(&cfg);
}

/* ---- JSON robustness ---------------------------------------------------- */

static void test_json_robustness(void **state)
{
    (void)state;
    sr_config cfg;
    sr_error err = {{0}};
    /* transformers 4.x writes float("inf") bare; unknown keys are ignored,
     * strings that merely contain the words are left alone */
    const char *txt =
        "{\"model_type\": \"granite\", \"time_step_limit\": [0.0, Infinity], \"x\": -Infinity,"
        " \"y\": NaN, \"note\": \"Infinity \\\" NaN\", \"vocab_size\": 100}";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "inf", &cfg, &err), 0);
    assert_int_equal(cfg.vocab_size, 100);
    sr_config_free(&cfg);

    /* a known numeric field holding one is refused by name */
    txt = "{\"model_type\": \"granite\", \"rope_theta\": Infinity}";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "inf", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "field 'rope_theta'"));
    sr_config_free(&cfg);

    txt = "{\"model_type\": \"granite\", ";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "trunc.json", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "trunc.json"));
    assert_non_null(strstr(err.msg, "invalid JSON"));
    txt = "[1, 2]";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "arr.json", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "object"));
    assert_int_equal(sr_config_parse("", 0, "empty.json", &cfg, &err), -1);
    assert_int_equal(sr_config_parse("{\"model_type\":\"granite\"}\0junk", 30, "nul", &cfg, &err), -1);
    txt = "{\"model_type\": \"granite\", \"vocab_size\": 123456789012345678901234567890}";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "big", &cfg, &err), -1);
    txt = "{\"model_type\": \"granite\", \"hidden_size\": 64.5}";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "frac", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "field 'hidden_size'"));
    txt = "{\"model_type\": \"granite\", \"hidden_size\": 64.0, \"num_attention_heads\": 4}";
    assert_int_equal(sr_config_parse(txt, strlen(txt), "intreal", &cfg, &err), 0);
    assert_int_equal(cfg.hidden_size, 64);
    sr_config_free(&cfg);

    assert_int_equal(sr_config_load("/nonexistent/dir/config.json", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/config.json"));
    sr_config_free(&cfg);
}

/* ---- quantization_config ------------------------------------------------- */

static json_t *bnb4(void)
{
    return json_pack("{s:b,s:b,s:s,s:s,s:s,s:b,s:b,s:b,s:n,s:f,s:b,s:b,s:s}",
                     "_load_in_4bit", 1, "_load_in_8bit", 0, "bnb_4bit_compute_dtype", "bfloat16",
                     "bnb_4bit_quant_storage", "uint8", "bnb_4bit_quant_type", "nf4",
                     "bnb_4bit_use_double_quant", 1, "llm_int8_enable_fp32_cpu_offload", 0,
                     "llm_int8_has_fp16_weight", 0, "llm_int8_skip_modules",
                     "llm_int8_threshold", 6.0, "load_in_4bit", 1, "load_in_8bit", 0,
                     "quant_method", "bitsandbytes");
}

static json_t *with_quant(json_t *q)
{
    json_t *o = switch3a();
    set(o, "quantization_config", q);
    return o;
}

static void test_quant_config(void **state)
{
    (void)state;
    sr_config cfg;
    expect_ok(with_quant(bnb4()), &cfg);
    assert_int_equal(cfg.quant.mode, SR_BNB_4BIT);
    assert_true(cfg.quant.nf4);
    assert_true(cfg.quant.double_quant);
    assert_int_equal(cfg.quant.blocksize, 64);
    assert_int_equal(cfg.quant.compute_dtype, SR_BF16);
    assert_int_equal(cfg.quant.quant_storage, SR_U8);
    assert_true(cfg.quant.skip_modules_null);
    assert_int_equal(cfg.quant.n_skip_modules, 0);
    sr_config_free(&cfg);

    json_t *q = bnb4();
    json_object_set_new(q, "llm_int8_skip_modules", strs(2, "lm_head", "model.layers.0.mlp"));
    json_object_set_new(q, "bnb_4bit_quant_type", json_string("fp4"));
    json_object_set_new(q, "bnb_4bit_quant_storage", json_string("bfloat16"));
    json_object_del(q, "bnb_4bit_compute_dtype");      /* default float32 */
    expect_ok(with_quant(q), &cfg);
    assert_false(cfg.quant.nf4);
    assert_false(cfg.quant.skip_modules_null);
    assert_int_equal(cfg.quant.n_skip_modules, 2);
    assert_string_equal(cfg.quant.skip_modules[1], "model.layers.0.mlp");
    assert_int_equal(cfg.quant.quant_storage, SR_BF16);
    assert_int_equal(cfg.quant.compute_dtype, SR_F32);
    sr_config_free(&cfg);

    /* 8-bit with a threshold */
    q = bnb4();
    json_object_set_new(q, "load_in_4bit", json_false());
    json_object_set_new(q, "_load_in_4bit", json_false());
    json_object_set_new(q, "load_in_8bit", json_true());
    json_object_set_new(q, "_load_in_8bit", json_true());
    json_object_set_new(q, "llm_int8_threshold", json_real(0.0));
    expect_ok(with_quant(q), &cfg);
    assert_int_equal(cfg.quant.mode, SR_BNB_8BIT);
    assert_true(cfg.quant.int8_threshold == 0.0);
    sr_config_free(&cfg);

    q = bnb4();
    json_object_set_new(q, "quant_method", json_string("gptq"));
    expect_fail(with_quant(q), "field 'quantization_config.quant_method'", "gptq", NULL);
    q = bnb4();
    json_object_del(q, "quant_method");
    expect_fail(with_quant(q), "field 'quantization_config.quant_method'", "missing", NULL);
    q = bnb4();
    json_object_set_new(q, "load_in_8bit", json_true());
    json_object_set_new(q, "_load_in_8bit", json_true());
    expect_fail(with_quant(q), "quantization_config", "both", NULL);
    q = bnb4();
    json_object_set_new(q, "load_in_4bit", json_false());
    json_object_set_new(q, "_load_in_4bit", json_false());
    expect_fail(with_quant(q), "quantization_config", "neither", NULL);
    q = bnb4();
    json_object_set_new(q, "_load_in_4bit", json_false());
    expect_fail(with_quant(q), "field 'quantization_config.load_in_4bit'", NULL);
    q = bnb4();
    json_object_set_new(q, "bnb_4bit_quant_type", json_string("int4"));
    expect_fail(with_quant(q), "field 'quantization_config.bnb_4bit_quant_type'", "int4", NULL);
    q = bnb4();
    json_object_set_new(q, "bnb_4bit_compute_dtype", json_string("complex64"));
    expect_fail(with_quant(q), "field 'quantization_config.bnb_4bit_compute_dtype'", NULL);
    q = bnb4();
    json_object_set_new(q, "bnb_4bit_compute_dtype", json_string("uint8"));
    expect_fail(with_quant(q), "field 'quantization_config.bnb_4bit_compute_dtype'", NULL);
    q = bnb4();
    json_object_set_new(q, "llm_int8_threshold", json_real(-1.0));
    expect_fail(with_quant(q), "field 'quantization_config.llm_int8_threshold'", NULL);
    q = bnb4();
    json_object_set_new(q, "llm_int8_skip_modules", json_string("lm_head"));
    expect_fail(with_quant(q), "field 'quantization_config.llm_int8_skip_modules'", NULL);
    expect_fail(with_quant(json_string("bnb")), "quantization_config", "object", NULL);

    /* 8-bit weights kept in fp16 are not an int8 checkpoint */
    q = bnb4();
    json_object_set_new(q, "load_in_4bit", json_false());
    json_object_set_new(q, "_load_in_4bit", json_false());
    json_object_set_new(q, "load_in_8bit", json_true());
    json_object_set_new(q, "_load_in_8bit", json_true());
    json_object_set_new(q, "llm_int8_has_fp16_weight", json_true());
    expect_fail(with_quant(q), "field 'quantization_config.llm_int8_has_fp16_weight'",
                "not stored as int8", NULL);

    /* a config without quantization_config: sr_quant_config_parse says none */
    sr_bnb_config b;
    sr_dtype dt;
    sr_error err = {{0}};
    const char *txt = "{\"dtype\": \"float16\"}";
    assert_int_equal(sr_quant_config_parse(txt, strlen(txt), "x", &b, &dt, &err), 0);
    assert_int_equal(b.mode, SR_BNB_NONE);
    assert_int_equal(dt, SR_F16);
    sr_bnb_config_free(&b);
}

/* ---- failure paths: nothing leaks, cfg stays zeroed ---------------------- */

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *files[] = {"model/switch-3a/config.json", "model/granite-dense/config.json"};
    for (size_t f = 0; f < 2; f++) {
        size_t len = 0;
        char *text = test_read_file(test_data(files[f]), &len);
        assert_non_null(text);
        /* with a 4-bit quantization block too, to reach every allocation */
        json_error_t je;
        json_t *o = json_loadb(text, len, 0, &je);
        assert_non_null(o);
        json_t *q = bnb4();
        json_object_set_new(q, "llm_int8_skip_modules", strs(1, "lm_head"));
        json_object_set_new(o, "quantization_config", q);
        char *s = json_dumps(o, 0);
        json_decref(o);
        free(text);

        sr_config cfg;
        sr_error err = {{0}};
        sr_alloc_fail_after(-1);
        sr_alloc_fail_after(1000000);
        assert_int_equal(sr_config_parse(s, strlen(s), "cfg", &cfg, &err), 0);
        long sites = sr_alloc_count();
        sr_config_free(&cfg);
        assert_true(sites > 3);
        for (long k = 0; k < sites; k++) {
            sr_alloc_fail_after(k);
            int rc = sr_config_parse(s, strlen(s), "cfg", &cfg, &err);
            sr_alloc_fail_after(-1);
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err.msg, "cfg"));
            assert_null(cfg.source);
            sr_config_free(&cfg);
        }
        free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_switch3a),
        cmocka_unit_test(test_golden_switch3a_bf16),
        cmocka_unit_test(test_golden_dense),
        cmocka_unit_test(test_golden_bnb),
        cmocka_unit_test(test_model_type),
        cmocka_unit_test(test_granitemoehybrid),
        cmocka_unit_test(test_cfg1_reference_errors),
        cmocka_unit_test(test_recommended_checks),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_detect_gen_a),
        cmocka_unit_test(test_detect_gen_b),
        cmocka_unit_test(test_detect_gen_c),
        cmocka_unit_test(test_plain_switch),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_group_order_is_json_order),
        cmocka_unit_test(test_lora_targets),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_json_robustness),
        cmocka_unit_test(test_quant_config),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
