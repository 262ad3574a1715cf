/* config.json -> sr_config (spec granite-switch.md §1, bnb-format.md §5.1).
 *
 * The reading is done in one pass over a jansson tree: base fields (§1.2),
 * switch fields (§1.3), generation detection (§1.5), validation (§1.6) and
 * the bnb quantization_config block.  JSON null is treated as "absent" (HF
 * passes None to the constructor, which then uses its default).  Unknown keys
 * are ignored.
 *
 * Limits (beyond them a config is refused naming the field; they keep every
 * derived size far from integer overflow and reject garbage early):
 *   vocab_size <= 2^31, hidden_size <= 65536, intermediate sizes <= 2^20,
 *   num_hidden_layers <= 1024, num_attention_heads <= 1024, head_dim <= 65536,
 *   max_position_embeddings <= 2^31 - 1, num_adapters <= 1024,
 *   adapter ranks and max_lora_rank in 1..65536, control_dims <= 65536,
 *   hiding groups <= SR_MAX_GROUPS, list lengths <= 2^20. */
#include "runtime/config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/log.h"

#define MAX_VOCAB (INT64_C(1) << 31)
#define MAX_HIDDEN 65536
#define MAX_INTERMEDIATE (1 << 20)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 65536
#define MAX_ADAPTERS 1024
#define MAX_RANK 65536
#define MAX_CONTROL_DIMS 65536
#define MAX_LIST (1 << 20)
#define MAX_CONFIG_BYTES (64u << 20)

/* ------------------------------------------------------------------------- */
/* Parse context and small helpers                                           */

typedef struct ctx {
    const char *src;        /* file name for messages */
    const char *scope;      /* "quantization_config" etc. for nested fields, or NULL */
    sr_config *cfg;         /* NULL when only the quantization block is parsed */
    sr_error *err;
} ctx;

static int failf(ctx *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "<file>: field '<scope>.<key>': <message>" */
static int failf(ctx *c, const char *key, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sr_fail(c->err, "%s: field '%s%s%s': %s", c->src, c->scope ? c->scope : "",
                   c->scope ? "." : "", key, msg);
}

static int oom(ctx *c) { return sr_fail(c->err, "%s: out of memory while reading the config", c->src); }

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Value of `key`, or NULL when absent or JSON null. */
static json_t *get(const json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

/* Records a default fallen back to ("key=value") for `inspect`. */
static int note_default(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int note_default(ctx *c, const char *fmt, ...)
{
    if (!c->cfg) return 0;
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sr_config *cfg = c->cfg;
    char **nd = sr_realloc(cfg->defaulted, (size_t)(cfg->n_defaulted + 1) * sizeof *nd);
    if (!nd) return oom(c);
    cfg->defaulted = nd;
    if (!(nd[cfg->n_defaulted] = sr_strdup(buf))) return oom(c);
    cfg->n_defaulted++;
    return 0;
}

static int as_int(ctx *c, const char *key, const json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        /* some writers emit 32.0; accept integral values only */
        double d = json_real_value(v);
        if (!(d == floor(d)) || !(fabs(d) < 9.0e18))
            return failf(c, key, "expected an integer, got %g", d);
        x = (int64_t)d;
    } else {
        return failf(c, key, "expected an integer, got %s", jtype(v));
    }
    if (x < lo || x > hi)
        return failf(c, key, "%" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", x, lo, hi);
    *out = x;
    return 0;
}

/* Optional integer; `note` records the default when absent. */
static int opt_int(ctx *c, const json_t *obj, const char *key, int64_t def, int64_t lo, int64_t hi,
                   int64_t *out, int note)
{
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return note ? note_default(c, "%s=%" PRId64, key, def) : 0;
    }
    return as_int(c, key, v, lo, hi, out);
}

static int as_real(ctx *c, const char *key, const json_t *v, double lo, double hi, double *out)
{
    if (!json_is_number(v)) {
        if (json_is_object(v) && json_is_string(json_object_get(v, "__float__")))
            return failf(c, key, "non-finite value %s is not allowed",
                         json_string_value(json_object_get(v, "__float__")));
        return failf(c, key, "expected a number, got %s", jtype(v));
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) return failf(c, key, "%g is out of range [%g, %g]", d, lo, hi);
    *out = d;
    return 0;
}

static int opt_real(ctx *c, const json_t *obj, const char *key, double def, double lo, double hi,
                    double *out, int note)
{
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return note ? note_default(c, "%s=%g", key, def) : 0;
    }
    return as_real(c, key, v, lo, hi, out);
}

static int opt_bool(ctx *c, const json_t *obj, const char *key, bool def, bool *out, int note)
{
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return note ? note_default(c, "%s=%s", key, def ? "true" : "false") : 0;
    }
    if (!json_is_boolean(v)) return failf(c, key, "expected true or false, got %s", jtype(v));
    *out = json_is_true(v);
    return 0;
}

/* Optional string (borrowed from the tree) or `def`. */
static int opt_str(ctx *c, const json_t *obj, const char *key, const char *def, const char **out)
{
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_string(v)) return failf(c, key, "expected a string, got %s", jtype(v));
    *out = json_string_value(v);
    return 0;
}

static int as_list(ctx *c, const char *key, const json_t *v, const char *what)
{
    if (!json_is_array(v)) return failf(c, key, "expected a list of %s, got %s", what, jtype(v));
    if (json_array_size(v) > MAX_LIST)
        return failf(c, key, "%zu entries is more than the %d supported", json_array_size(v), MAX_LIST);
    return 0;
}

static int int_list(ctx *c, const char *key, const json_t *v, int64_t lo, int64_t hi, int64_t **out,
                    int *n)
{
    if (as_list(c, key, v, "integers")) return -1;
    size_t len = json_array_size(v);
    int64_t *a = sr_calloc(len ? len : 1, sizeof *a);
    if (!a) return oom(c);
    for (size_t i = 0; i < len; i++) {
        char k[96];
        snprintf(k, sizeof k, "%s[%zu]", key, i);
        if (as_int(c, k, json_array_get(v, i), lo, hi, &a[i])) {
            sr_free(a);
            return -1;
        }
    }
    *out = a;
    *n = (int)len;
    return 0;
}

static void free_strs(char **s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) sr_free(s[i]);
    sr_free(s);
}

static int str_list(ctx *c, const char *key, const json_t *v, char ***out, int *n)
{
    if (as_list(c, key, v, "strings")) return -1;
    size_t len = json_array_size(v);
    char **a = sr_calloc(len ? len : 1, sizeof *a);
    if (!a) return oom(c);
    for (size_t i = 0; i < len; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            free_strs(a, (int)len);
            return failf(c, key, "entry %zu: expected a string, got %s", i, jtype(e));
        }
        if (!(a[i] = sr_strdup(json_string_value(e)))) {
            free_strs(a, (int)len);
            return oom(c);
        }
    }
    *out = a;
    *n = (int)len;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s);
}

/* ------------------------------------------------------------------------- */
/* Non-finite numbers                                                        */

/* Python's json writes float("inf") as a bare Infinity (transformers 4.x
 * configs: time_step_limit), which is not JSON.  Outside strings, NaN,
 * Infinity and -Infinity are rewritten to {"__float__": "..."}, the form
 * transformers 5.x writes, so that jansson accepts the file and a known
 * numeric field holding one is refused by name.  Returns the output length;
 * `out` NULL only measures. */
static size_t rewrite_nonfinite(const char *in, size_t len, char *out)
{
    static const char *const words[] = {"-Infinity", "Infinity", "NaN"};
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < len;) {
        char ch = in[i];
        if (in_str) {
            if (ch == '\\' && i + 1 < len) {
                if (out) { out[o] = ch; out[o + 1] = in[i + 1]; }
                o += 2;
                i += 2;
                continue;
            }
            if (ch == '"') in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '-' || ch == 'I' || ch == 'N') {
            int hit = 0;
            for (size_t w = 0; w < 3 && !hit; w++) {
                size_t wl = strlen(words[w]);
                if (len - i >= wl && !memcmp(in + i, words[w], wl)) {
                    char rep[40];
                    int rl = snprintf(rep, sizeof rep, "{\"__float__\": \"%s\"}", words[w]);
                    if (out) memcpy(out + o, rep, (size_t)rl);
                    o += (size_t)rl;
                    i += wl;
                    hit = 1;
                }
            }
            if (hit) continue;
        }
        if (out) out[o] = ch;
        o++;
        i++;
    }
    return o;
}

/* ------------------------------------------------------------------------- */
/* bitsandbytes quantization_config (bnb-format.md §5.1)                     */

void sr_bnb_config_free(sr_bnb_config *q)
{
    if (!q) return;
    free_strs(q->skip_modules, q->n_skip_modules);
    memset(q, 0, sizeof *q);
}

/* load_in_4bit / load_in_8bit with their private copies _load_in_*: the
 * public key wins; both present and different is ambiguous. */
static int load_flag(ctx *c, const json_t *q, const char *key, bool *out)
{
    char priv[32];
    snprintf(priv, sizeof priv, "_%s", key);
    bool a = false, b = false;
    if (opt_bool(c, q, key, false, &a, 0) || opt_bool(c, q, priv, false, &b, 0)) return -1;
    if (get(q, key) && get(q, priv) && a != b)
        return failf(c, key, "%s but %s is %s", a ? "true" : "false", priv, b ? "true" : "false");
    *out = get(q, key) ? a : b;
    return 0;
}

static int parse_torch_dtype(ctx *c, const char *key, const char *name, int float_only, sr_dtype *out)
{
    sr_dtype t;
    if (sr_dtype_from_torch(name, &t))
        return failf(c, key, "unknown torch dtype '%s'", name);
    if (float_only && t != SR_F32 && t != SR_F16 && t != SR_BF16)
        return failf(c, key, "'%s' is not a floating type (expected float32, float16 or bfloat16)",
                     name);
    *out = t;
    return 0;
}

static int parse_bnb(ctx *c, const json_t *q, sr_bnb_config *out)
{
    memset(out, 0, sizeof *out);
    out->blocksize = 64;
    out->compute_dtype = SR_F32;
    out->quant_storage = SR_U8;
    out->int8_threshold = 6.0;
    out->skip_modules_null = true;
    const char *saved = c->scope;
    c->scope = "quantization_config";
    int rc = -1;
    if (!json_is_object(q)) {
        c->scope = saved;
        return failf(c, "quantization_config", "expected an object, got %s", jtype(q));
    }
    const char *method = NULL;
    if (opt_str(c, q, "quant_method", NULL, &method)) goto done;
    if (!method) {
        failf(c, "quant_method", "missing (only \"bitsandbytes\" is supported)");
        goto done;
    }
    if (strcmp(method, "bitsandbytes")) {
        failf(c, "quant_method", "'%s' is not supported (only \"bitsandbytes\")", method);
        goto done;
    }
    bool in4 = false, in8 = false;
    if (load_flag(c, q, "load_in_4bit", &in4) || load_flag(c, q, "load_in_8bit", &in8)) goto done;
    if (in4 && in8) {
        failf(c, "load_in_4bit", "both load_in_4bit and load_in_8bit are true");
        goto done;
    }
    if (!in4 && !in8) {
        failf(c, "load_in_4bit", "neither load_in_4bit nor load_in_8bit is true");
        goto done;
    }
    out->mode = in4 ? SR_BNB_4BIT : SR_BNB_8BIT;

    const char *qt = NULL, *cd = NULL, *st = NULL;
    if (opt_str(c, q, "bnb_4bit_quant_type", "fp4", &qt)) goto done;
    if (in4) {
        if (!strcmp(qt, "nf4")) out->nf4 = true;
        else if (strcmp(qt, "fp4")) {
            failf(c, "bnb_4bit_quant_type", "'%s' is not a 4-bit type (expected nf4 or fp4)", qt);
            goto done;
        }
    }
    if (opt_bool(c, q, "bnb_4bit_use_double_quant", false, &out->double_quant, 0)) goto done;
    if (opt_str(c, q, "bnb_4bit_compute_dtype", "float32", &cd) ||
        parse_torch_dtype(c, "bnb_4bit_compute_dtype", cd, 1, &out->compute_dtype))
        goto done;
    if (opt_str(c, q, "bnb_4bit_quant_storage", "uint8", &st) ||
        parse_torch_dtype(c, "bnb_4bit_quant_storage", st, 0, &out->quant_storage))
        goto done;
    if (out->quant_storage == SR_BOOL || out->quant_storage == SR_I16 ||
        out->quant_storage == SR_I32 || out->quant_storage == SR_I64) {
        failf(c, "bnb_4bit_quant_storage", "'%s' cannot hold packed 4-bit weights", st);
        goto done;
    }
    if (opt_bool(c, q, "llm_int8_has_fp16_weight", false, &out->has_fp16_weight, 0) ||
        opt_bool(c, q, "llm_int8_enable_fp32_cpu_offload", false, &out->fp32_cpu_offload, 0) ||
        opt_real(c, q, "llm_int8_threshold", 6.0, 0.0, 1e30, &out->int8_threshold, 0))
        goto done;
    if (in8 && out->has_fp16_weight) {
        failf(c, "llm_int8_has_fp16_weight", "true: the weights are not stored as int8 "
              "(a training-time layout, not a saved quantized checkpoint)");
        goto done;
    }
    const json_t *skip = get(q, "llm_int8_skip_modules");
    if (skip) {
        out->skip_modules_null = false;
        if (str_list(c, "llm_int8_skip_modules", skip, &out->skip_modules, &out->n_skip_modules))
            goto done;
    }
    rc = 0;
done:
    c->scope = saved;
    if (rc) sr_bnb_config_free(out);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Base model fields (§1.2)                                                  */

static int parse_model_type(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    const json_t *v = get(root, "model_type");
    if (!v)
        return failf(c, "model_type", "missing (supported: granite, granitemoehybrid, granite_switch)");
    if (!json_is_string(v)) return failf(c, "model_type", "expected a string, got %s", jtype(v));
    const char *mt = json_string_value(v);
    if (!strcmp(mt, "granite")) cfg->arch = SR_ARCH_GRANITE;
    else if (!strcmp(mt, "granitemoehybrid")) cfg->arch = SR_ARCH_GRANITEMOEHYBRID;
    else if (!strcmp(mt, "granite_switch")) cfg->arch = SR_ARCH_GRANITE_SWITCH;
    else
        return failf(c, "model_type", "'%s' is not supported (supported: granite, granitemoehybrid, "
                     "granite_switch)", mt);
    if (!(cfg->model_type = sr_strdup(mt))) return oom(c);
    return 0;
}

/* rope_theta / rope_parameters / rope_scaling aliases (§1.1), partial
 * rotary factor, position_embedding_type. */
static int parse_rope(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    const json_t *rp = get(root, "rope_parameters"), *rs = get(root, "rope_scaling");
    if (rp && !json_is_object(rp))
        return failf(c, "rope_parameters", "expected an object, got %s", jtype(rp));
    if (rs && !json_is_object(rs))
        return failf(c, "rope_scaling", "expected an object, got %s", jtype(rs));

    double top = 0;
    if (opt_real(c, root, "rope_theta", 10000.0, 1e-30, 1e30, &top, 0)) return -1;
    if (get(rp, "rope_theta")) {
        c->scope = "rope_parameters";
        int rc = as_real(c, "rope_theta", get(rp, "rope_theta"), 1e-30, 1e30, &cfg->rope_theta);
        c->scope = NULL;
        if (rc) return -1;
        if (get(root, "rope_theta") && top != cfg->rope_theta)
            sr_warn("%s: rope_parameters.rope_theta %g differs from rope_theta %g; using %g",
                    c->src, cfg->rope_theta, top, cfg->rope_theta);
    } else {
        cfg->rope_theta = top;
        if (!get(root, "rope_theta") && note_default(c, "rope_theta=%g", top)) return -1;
    }

    /* rope type: rope_parameters.rope_type, else rope_scaling.rope_type / .type */
    const json_t *src_obj = NULL;
    const char *src_name = NULL, *src_key = NULL;
    if (get(rp, "rope_type")) { src_obj = rp; src_name = "rope_parameters"; src_key = "rope_type"; }
    else if (get(rs, "rope_type")) { src_obj = rs; src_name = "rope_scaling"; src_key = "rope_type"; }
    else if (get(rs, "type")) { src_obj = rs; src_name = "rope_scaling"; src_key = "type"; }
    const char *type = "default";
    cfg->rope_factor = 1.0;
    if (src_obj) {
        c->scope = src_name;
        int rc = opt_str(c, src_obj, src_key, "default", &type);
        if (!rc && strcmp(type, "default") && strcmp(type, "linear"))
            rc = failf(c, src_key, "RoPE type '%s' is not supported (supported: default, linear)", type);
        if (!rc && !strcmp(type, "linear")) {
            if (!get(src_obj, "factor"))
                rc = failf(c, "factor", "missing (required by linear RoPE scaling)");
            else
                rc = as_real(c, "factor", get(src_obj, "factor"), 1e-6, 1e6, &cfg->rope_factor);
        }
        c->scope = NULL;
        if (rc) return -1;
    }
    copy_str(cfg->rope_type, sizeof cfg->rope_type, type);

    /* partial_rotary_factor: top level (4.x) or inside rope_parameters (5.x) */
    double prf = 1.0;
    if (opt_real(c, root, "partial_rotary_factor", 1.0, 0.0, 1e6, &prf, 0)) return -1;
    if (prf != 1.0)
        return failf(c, "partial_rotary_factor", "%g is not supported (only 1.0)", prf);
    if (get(rp, "partial_rotary_factor")) {
        c->scope = "rope_parameters";
        int rc = as_real(c, "partial_rotary_factor", get(rp, "partial_rotary_factor"), 0, 1e6, &prf);
        if (!rc && prf != 1.0)
            rc = failf(c, "partial_rotary_factor", "%g is not supported (only 1.0)", prf);
        c->scope = NULL;
        if (rc) return -1;
    }

    /* position_embedding_type: granite always uses RoPE (the key is not a
     * GraniteConfig field); GraniteMoeHybridConfig defaults to None (no RoPE),
     * the switch config to "rope". */
    if (cfg->arch == SR_ARCH_GRANITE) {
        cfg->use_rope = true;
    } else {
        const char *def = cfg->arch == SR_ARCH_GRANITE_SWITCH ? "rope" : NULL;
        const char *pet = NULL;
        if (opt_str(c, root, "position_embedding_type", def, &pet)) return -1;
        if (!get(root, "position_embedding_type") &&
            note_default(c, "position_embedding_type=%s", def ? def : "none"))
            return -1;
        cfg->use_rope = pet && !strcmp(pet, "rope");
        if (pet && !cfg->use_rope && strcmp(pet, "nope"))
            sr_warn("%s: position_embedding_type '%s' is not \"rope\": no rotary embedding is "
                    "applied (as in the reference)", c->src, pet);
    }
    return 0;
}

/* layer_types: every entry attention; mamba / linear attention refused by
 * name.  granitemoehybrid without layer_types means all-mamba. */
static int parse_layer_types(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    if (cfg->arch == SR_ARCH_GRANITE) return 0;
    const json_t *lt = get(root, "layer_types");
    if (!lt) {
        if (cfg->arch == SR_ARCH_GRANITEMOEHYBRID)
            return failf(c, "layer_types", "missing: granitemoehybrid then means all-mamba layers, "
                         "which are not supported (only all-attention configs)");
        return note_default(c, "layer_types=%" PRId64 " x attention", cfg->num_hidden_layers);
    }
    if (as_list(c, "layer_types", lt, "layer kinds")) return -1;
    size_t n = json_array_size(lt);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(lt, i);
        if (!json_is_string(e))
            return failf(c, "layer_types", "entry %zu: expected a string, got %s", i, jtype(e));
        const char *s = json_string_value(e);
        if (!strcmp(s, "attention") || !strcmp(s, "full_attention")) continue;
        if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention"))
            return failf(c, "layer_types", "entry %zu is '%s': only attention layers are supported",
                         i, s);
        return failf(c, "layer_types", "entry %zu: unknown layer kind '%s'", i, s);
    }
    if ((int64_t)n != cfg->num_hidden_layers)
        return failf(c, "layer_types", "length %zu != num_hidden_layers %" PRId64, n,
                     cfg->num_hidden_layers);
    return 0;
}

/* bos/eos/pad: integer, null, or (eos in some configs) a list whose first
 * entry is taken.  Tokenizer/generation only; -1 when absent. */
static int parse_special_id(ctx *c, const json_t *root, const char *key, int64_t *out)
{
    const json_t *v = get(root, key);
    *out = -1;
    if (!v) return 0;
    if (json_is_array(v)) {
        if (!json_array_size(v)) return 0;
        v = json_array_get(v, 0);
    }
    if (as_int(c, key, v, INT64_MIN, INT64_MAX, out)) return -1;
    if (*out < 0) *out = -1;
    return 0;
}

static int parse_base(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    bool hybrid = cfg->arch == SR_ARCH_GRANITEMOEHYBRID;

    if (opt_int(c, root, "vocab_size", 32000, 1, MAX_VOCAB, &cfg->vocab_size, 1) ||
        opt_int(c, root, "hidden_size", 4096, 1, MAX_HIDDEN, &cfg->hidden_size, 1) ||
        opt_int(c, root, "intermediate_size", 11008, 1, MAX_INTERMEDIATE, &cfg->intermediate_size, 1) ||
        opt_int(c, root, "num_hidden_layers", 32, 1, MAX_LAYERS, &cfg->num_hidden_layers, 1) ||
        opt_int(c, root, "num_attention_heads", 32, 1, MAX_HEADS, &cfg->num_attention_heads, 1))
        return -1;
    int64_t nh = cfg->num_attention_heads;
    if (opt_int(c, root, "num_key_value_heads", nh, 1, MAX_HEADS, &cfg->num_key_value_heads, 0))
        return -1;
    if (nh % cfg->num_key_value_heads)
        return failf(c, "num_key_value_heads", "%" PRId64 " does not divide num_attention_heads %"
                     PRId64, cfg->num_key_value_heads, nh);
    const json_t *hd = get(root, "head_dim");
    if (hd) {
        if (as_int(c, "head_dim", hd, 1, MAX_HEAD_DIM, &cfg->head_dim)) return -1;
        cfg->head_dim_given = true;
    } else {
        if (cfg->hidden_size % nh)
            return failf(c, "num_attention_heads", "%" PRId64 " does not divide hidden_size %" PRId64
                         " (and head_dim is not given)", nh, cfg->hidden_size);
        cfg->head_dim = cfg->hidden_size / nh;
    }
    /* the reference's O projection reshapes [.., nh*hd] back to H */
    if (nh * cfg->head_dim != cfg->hidden_size)
        return failf(c, "head_dim", "num_attention_heads %" PRId64 " x head_dim %" PRId64
                     " != hidden_size %" PRId64, nh, cfg->head_dim, cfg->hidden_size);

    /* shared MLP width: granite's dense MLP is intermediate_size; otherwise
     * the key, or -1 = derive from the weight shape (§1.2, §8 item 13). */
    if (cfg->arch == SR_ARCH_GRANITE) {
        cfg->shared_intermediate_size = cfg->intermediate_size;
    } else if (get(root, "shared_intermediate_size")) {
        if (as_int(c, "shared_intermediate_size", get(root, "shared_intermediate_size"), 1,
                   MAX_INTERMEDIATE, &cfg->shared_intermediate_size))
            return -1;
    } else {
        cfg->shared_intermediate_size = -1;
        if (note_default(c, "shared_intermediate_size=(from the weights)")) return -1;
    }

    const char *act = NULL;
    if (opt_str(c, root, "hidden_act", "silu", &act)) return -1;
    if (strcmp(act, "silu"))
        return failf(c, "hidden_act", "'%s' is not supported (only silu)", act);
    if (opt_int(c, root, "max_position_embeddings", 2048, 1, INT32_MAX,
                &cfg->max_position_embeddings, 1) ||
        opt_real(c, root, "rms_norm_eps", 1e-6, 1e-30, 1.0, &cfg->rms_norm_eps, 1))
        return -1;
    if (parse_rope(c, root)) return -1;

    bool mlp_bias = false;
    if (opt_bool(c, root, "attention_bias", false, &cfg->attention_bias, 1) ||
        opt_bool(c, root, "mlp_bias", false, &mlp_bias, 0) ||
        opt_bool(c, root, "qk_norm", false, &cfg->qk_norm, 0))
        return -1;
    if (mlp_bias) return failf(c, "mlp_bias", "true is not supported (Granite MLPs have no bias)");
    if (get(root, "sliding_window"))
        return failf(c, "sliding_window", "sliding-window attention is not supported (must be null)");

    if (opt_real(c, root, "embedding_multiplier", 1.0, -1e30, 1e30, &cfg->embedding_multiplier, 1) ||
        opt_real(c, root, "residual_multiplier", 1.0, -1e30, 1e30, &cfg->residual_multiplier, 1) ||
        opt_real(c, root, "attention_multiplier", 1.0, -1e30, 1e30, &cfg->attention_multiplier, 1) ||
        opt_real(c, root, "logits_scaling", 1.0, -1e30, 1e30, &cfg->logits_scaling, 1) ||
        opt_bool(c, root, "tie_word_embeddings", false, &cfg->tie_word_embeddings, 1))
        return -1;
    if (cfg->logits_scaling == 0.0)
        return failf(c, "logits_scaling", "0 (the logits are divided by it)");

    if (cfg->arch == SR_ARCH_GRANITE) {
        cfg->num_local_experts = 0;
    } else {
        if (opt_int(c, root, "num_local_experts", hybrid ? 8 : 0, 0, 1 << 20,
                    &cfg->num_local_experts, 1))
            return -1;
        if (cfg->num_local_experts > 0)
            return failf(c, "num_local_experts", "%" PRId64 " experts%s: mixture-of-experts models "
                         "are not supported yet", cfg->num_local_experts,
                         get(root, "num_local_experts") ? "" : " (granitemoehybrid default)");
    }
    if (opt_int(c, root, "num_experts_per_tok", 2, 0, 1 << 20, &cfg->num_experts_per_tok, 0))
        return -1;
    if (parse_special_id(c, root, "bos_token_id", &cfg->bos_token_id) ||
        parse_special_id(c, root, "eos_token_id", &cfg->eos_token_id) ||
        parse_special_id(c, root, "pad_token_id", &cfg->pad_token_id))
        return -1;

    /* dtype (5.x) or torch_dtype (4.x) */
    const char *key = get(root, "dtype") ? "dtype" : "torch_dtype";
    const char *dt = NULL;
    if (opt_str(c, root, key, NULL, &dt)) return -1;
    if (!dt) {
        cfg->dtype = SR_F32;
        if (note_default(c, "dtype=float32")) return -1;
    } else if (parse_torch_dtype(c, key, dt, 1, &cfg->dtype)) {
        return -1;
    }
    return parse_layer_types(c, root);
}

/* ------------------------------------------------------------------------- */
/* Switch fields (§1.3), generation detection (§1.5), validation (§1.6)      */

/* §1.5 step 3: out-of-scope features of the newest official code. */
static int refuse_unsupported(ctx *c, const json_t *root)
{
    const json_t *v;
    if ((v = get(root, "dual_stream")) && !json_is_false(v))
        return failf(c, "dual_stream", "Shadow Residual dual-stream decoding is not supported");
    if (get(root, "cross_stream_rank"))
        return failf(c, "cross_stream_rank", "cross-stream LoRA (dual-stream decoding) is not supported");
    if ((v = get(root, "unfused_qkv")) && !json_is_false(v))
        return failf(c, "unfused_qkv", "the unfused Shadow Residual layout is not supported");
    if ((v = get(root, "adapter_kinds"))) {
        if (as_list(c, "adapter_kinds", v, "strings")) return -1;
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (json_is_string(e) && !strcmp(json_string_value(e), "classifier"))
                return failf(c, "adapter_kinds", "entry %zu is \"classifier\": classifier adapter "
                             "slots are not supported", i);
        }
    }
    return 0;
}

static int parse_lora_targets(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    static const struct { const char *name; unsigned bit; } groups[] = {
        {"qkv_proj", SR_LORA_QKV}, {"o_proj", SR_LORA_O},
        {"shared_input_linear", SR_LORA_IN}, {"shared_output_linear", SR_LORA_OUT},
    };
    const json_t *v = get(root, "lora_target_modules");
    cfg->lora_targets = 0;
    if (!v) {
        if (cfg->num_adapters == 0) return 0;
        cfg->lora_targets = SR_LORA_QKV | SR_LORA_O | SR_LORA_IN | SR_LORA_OUT;
        return note_default(c, "lora_target_modules=all four");
    }
    if (as_list(c, "lora_target_modules", v, "module groups")) return -1;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return failf(c, "lora_target_modules", "entry %zu: expected a string, got %s", i, jtype(e));
        const char *s = json_string_value(e);
        size_t g = 0;
        while (g < 4 && strcmp(s, groups[g].name)) g++;
        if (g == 4)
            return failf(c, "lora_target_modules", "unknown module group '%s' (expected qkv_proj, "
                         "o_proj, shared_input_linear or shared_output_linear)", s);
        cfg->lora_targets |= groups[g].bit;
    }
    return 0;
}

static int parse_hiding(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    const json_t *hg = get(root, "hiding_groups"), *hp = get(root, "hiding_policy");
    if (hg && !json_is_object(hg))
        return failf(c, "hiding_groups", "expected an object (group -> adapter names), got %s", jtype(hg));
    if (hp && !json_is_object(hp))
        return failf(c, "hiding_policy", "expected an object (adapter -> group names), got %s", jtype(hp));
    size_t ng = hg ? json_object_size(hg) : 0;
    if ((int64_t)ng > cfg->control_dims)
        return failf(c, "hiding_groups", "%zu groups > control_dims %d (each group uses one control "
                     "dim)", ng, cfg->control_dims);
    if (ng > SR_MAX_GROUPS)
        return failf(c, "hiding_groups", "%zu groups: at most %d are supported", ng, SR_MAX_GROUPS);
    if (ng && !hp)
        return failf(c, "hiding_policy", "null with %zu hiding groups (the reference builds an empty "
                     "policy table and fails on the first forward)", ng);
    if (ng && !cfg->adapter_names)
        return failf(c, "adapter_names", "null with %zu hiding groups (groups name adapters)", ng);

    /* jansson keeps object keys in insertion (= file) order: group index =
     * JSON order, which decides the control dim of each group */
    cfg->hiding_policy_null = !hp;
    if (ng) {
        if (!(cfg->hiding_groups = sr_calloc(ng, sizeof *cfg->hiding_groups))) return oom(c);
        const char *name;
        json_t *members;
        json_object_foreach((json_t *)hg, name, members) {
            sr_hiding_group *g = &cfg->hiding_groups[cfg->n_hiding_groups];
            if (!(g->name = sr_strdup(name))) return oom(c);
            cfg->n_hiding_groups++;
            char key[96];
            snprintf(key, sizeof key, "hiding_groups.%s", name);
            if (str_list(c, key, members, &g->members, &g->n_members)) return -1;
        }
    }
    if (hp && json_object_size(hp)) {
        size_t nr = json_object_size(hp);
        if (!(cfg->hiding_rules = sr_calloc(nr, sizeof *cfg->hiding_rules))) return oom(c);
        const char *name;
        json_t *groups;
        json_object_foreach((json_t *)hp, name, groups) {
            sr_hiding_rule *r = &cfg->hiding_rules[cfg->n_hiding_rules];
            if (!(r->adapter = sr_strdup(name))) return oom(c);
            cfg->n_hiding_rules++;
            char key[96];
            snprintf(key, sizeof key, "hiding_policy.%s", name);
            if (str_list(c, key, groups, &r->groups, &r->n_groups)) return -1;
        }
    }
    return 0;
}

/* Gen C code parameters (§6.2.6). */
static int parse_multiswitch(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    int64_t m = 0, chd = 0;
    const char *type = NULL;
    if (opt_int(c, root, "ms_code_m", 6, 1, 64, &m, 1) ||
        opt_str(c, root, "ms_code_type", "kerdock", &type) ||
        opt_real(c, root, "ms_memory_gain", 28.0, -1e30, 1e30, &cfg->ms_memory_gain, 1) ||
        opt_int(c, root, "ms_counting_head_dim", 32, 1, MAX_HEAD_DIM, &chd, 1))
        return -1;
    if (!get(root, "ms_code_type") && note_default(c, "ms_code_type=kerdock")) return -1;
    if (!strcmp(type, "kerdock")) {
        if (m != 6 && m != 8)
            return failf(c, "ms_code_m", "%" PRId64 " is not supported for kerdock codes (6 or 8)", m);
    } else if (!strcmp(type, "dg1")) {
        if (m != 6)
            return failf(c, "ms_code_m", "%" PRId64 " is not supported for dg1 codes (only 6; 8 is too "
                         "large)", m);
    } else {
        return failf(c, "ms_code_type", "'%s' is not supported (kerdock or dg1)", type);
    }
    cfg->ms_code_m = (int)m;
    copy_str(cfg->ms_code_type, sizeof cfg->ms_code_type, type);
    cfg->ms_counting_head_dim = chd < 32 ? 32 : (int)chd;   /* floored at 32 (§1.3) */
    return 0;
}

static int check_token_ids(ctx *c, const char *key, const int64_t *ids, int n, int unique)
{
    sr_config *cfg = c->cfg;
    for (int i = 0; i < n; i++) {
        if (ids[i] >= cfg->vocab_size)
            return failf(c, key, "entry %d: id %" PRId64 " >= vocab_size %" PRId64, i, ids[i],
                         cfg->vocab_size);
        for (int j = 0; unique && j < i; j++)
            if (ids[j] == ids[i])
                return failf(c, key, "id %" PRId64 " appears twice (entries %d and %d)", ids[i], j, i);
    }
    return 0;
}

static int parse_switch(ctx *c, const json_t *root)
{
    sr_config *cfg = c->cfg;
    int64_t n = 0;
    if (opt_int(c, root, "num_adapters", 0, 0, MAX_ADAPTERS, &n, 0)) return -1;
    cfg->num_adapters = (int)n;
    if (parse_lora_targets(c, root)) return -1;
    if (n == 0) {               /* §1.5 step 2: plain model with switch naming */
        cfg->gen = SR_GEN_NONE;
        return 0;
    }

    /* §1.5 steps 4-8 */
    const json_t *ms = get(root, "ms_code_m"), *stype = get(root, "switch_type");
    const json_t *subs = get(root, "adapter_substitute_token_ids"), *cd = get(root, "control_dims");
    if (stype && !json_is_string(stype))
        return failf(c, "switch_type", "expected a string, got %s", jtype(stype));
    int64_t cdims = 0;
    if (cd && as_int(c, "control_dims", cd, INT64_MIN, INT64_MAX, &cdims)) return -1;
    if (cdims < 0)
        return failf(c, "control_dims", "must be >= 0, got %" PRId64, cdims);
    if (cdims > MAX_CONTROL_DIMS)
        return failf(c, "control_dims", "%" PRId64 " is more than the %d supported", cdims,
                     MAX_CONTROL_DIMS);
    if (ms || (stype && !strcmp(json_string_value(stype), "multi"))) {
        cfg->gen = SR_GEN_C;
    } else if (subs && cdims == 0) {
        cfg->gen = SR_GEN_B;
    } else if (cdims > 0) {
        cfg->gen = SR_GEN_A;
    } else if (!cd) {
        cfg->gen = SR_GEN_A;
        cdims = 32;
        sr_warn("%s: switch config without control_dims or adapter_substitute_token_ids: treating it "
                "as Gen A (KV hiding) with control_dims 32, as the fork does", c->src);
        if (note_default(c, "control_dims=32")) return -1;
    } else {
        return failf(c, "control_dims", "0 and no adapter_substitute_token_ids: a switch needs either "
                     "KV hiding (control_dims > 0) or token exchange");
    }
    cfg->control_dims = cfg->gen == SR_GEN_A ? (int)cdims : 0;
    cfg->n_switch_slots = cfg->gen == SR_GEN_C ? 2 : 1;

    /* control ids (§3.1) */
    const json_t *ids = get(root, "adapter_token_ids");
    if (!ids)
        return failf(c, "adapter_token_ids", "missing with num_adapters %d (the reference would make "
                     "token 0 a control token)", cfg->num_adapters);
    if (int_list(c, "adapter_token_ids", ids, 0, INT64_MAX, &cfg->adapter_token_ids,
                 &cfg->n_adapter_token_ids))
        return -1;
    int nt = cfg->n_adapter_token_ids;
    if (cfg->gen == SR_GEN_C) {
        if (nt != n && nt != n + 1)
            return failf(c, "adapter_token_ids", "length %d is neither num_adapters %d nor "
                         "num_adapters + 1 (base-reset layout)", nt, cfg->num_adapters);
    } else if (nt != n) {
        return failf(c, "adapter_token_ids", "length %d != num_adapters %d", nt, cfg->num_adapters);
    }
    if (check_token_ids(c, "adapter_token_ids", cfg->adapter_token_ids, nt, 1)) return -1;

    /* token exchange (§3.5); Gen A ignores the key, as @19b633a2 does */
    if (cfg->gen != SR_GEN_A) {
        if (!subs)
            return failf(c, "adapter_substitute_token_ids", "missing: Gen %s (token exchange) needs "
                         "one substitute per control id", cfg->gen == SR_GEN_B ? "B" : "C");
        if (int_list(c, "adapter_substitute_token_ids", subs, INT64_MIN, INT64_MAX,
                     &cfg->adapter_substitute_token_ids, &cfg->n_substitute_ids))
            return -1;
        if (cfg->n_substitute_ids != nt)
            return failf(c, "adapter_substitute_token_ids", "length %d != length of "
                         "adapter_token_ids %d", cfg->n_substitute_ids, nt);
        for (int i = 0; i < nt; i++)
            if (cfg->adapter_substitute_token_ids[i] < 0)
                return failf(c, "adapter_substitute_token_ids", "entry %d: negative id %" PRId64, i,
                             cfg->adapter_substitute_token_ids[i]);
        if (check_token_ids(c, "adapter_substitute_token_ids", cfg->adapter_substitute_token_ids,
                            nt, 0))
            return -1;
    }

    /* names, ranks */
    const json_t *names = get(root, "adapter_names");
    if (names) {
        int nn = 0;
        if (str_list(c, "adapter_names", names, &cfg->adapter_names, &nn)) return -1;
        if (nn != n) {
            free_strs(cfg->adapter_names, nn);
            cfg->adapter_names = NULL;
            return failf(c, "adapter_names", "length %d != num_adapters %d", nn, cfg->num_adapters);
        }
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < i; j++)
                if (!strcmp(cfg->adapter_names[i], cfg->adapter_names[j]))
                    return failf(c, "adapter_names", "'%s' appears twice (entries %d and %d)",
                                 cfg->adapter_names[i], j, i);
    }
    const json_t *ranks = get(root, "adapter_ranks");
    if (!ranks)
        return failf(c, "adapter_ranks", "missing with num_adapters %d", cfg->num_adapters);
    int64_t *r64 = NULL;
    int nr = 0;
    if (int_list(c, "adapter_ranks", ranks, 1, MAX_RANK, &r64, &nr)) return -1;
    if (nr != n) {
        sr_free(r64);
        return failf(c, "adapter_ranks", "length %d != num_adapters %d", nr, cfg->num_adapters);
    }
    if (!(cfg->adapter_ranks = sr_calloc((size_t)n, sizeof *cfg->adapter_ranks))) {
        sr_free(r64);
        return oom(c);
    }
    int64_t maxr = 0;
    for (int i = 0; i < nr; i++) {
        cfg->adapter_ranks[i] = (int)r64[i];
        if (r64[i] > maxr) maxr = r64[i];
    }
    sr_free(r64);
    int64_t R = 0;
    if (opt_int(c, root, "max_lora_rank", 8, 1, MAX_RANK, &R, 1)) return -1;
    if (R != maxr)
        return failf(c, "max_lora_rank", "%" PRId64 " != max(adapter_ranks) %" PRId64, R, maxr);
    cfg->max_lora_rank = (int)R;
    if (opt_real(c, root, "control_token_gain", 15.0, -1e30, 1e30, &cfg->control_token_gain, 1))
        return -1;

    const json_t *tp = get(root, "adapter_third_party");
    if (tp && str_list(c, "adapter_third_party", tp, &cfg->adapter_third_party, &cfg->n_third_party))
        return -1;

    if (cfg->gen == SR_GEN_A || cfg->gen == SR_GEN_B) {
        /* Gen B has control_dims 0, so any hiding group is refused here */
        if (parse_hiding(c, root)) return -1;
    } else if (parse_multiswitch(c, root)) {
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Entry points                                                              */

static json_t *load_json(ctx *c, const char *json, size_t len)
{
    size_t n = rewrite_nonfinite(json, len, NULL);
    char *buf = sr_malloc(n + 1);
    if (!buf) {
        oom(c);
        return NULL;
    }
    rewrite_nonfinite(json, len, buf);
    buf[n] = 0;
    json_error_t je;
    json_t *root = json_loadb(buf, n, 0, &je);
    sr_free(buf);
    if (!root) {
        sr_fail(c->err, "%s: invalid JSON at line %d, column %d: %s", c->src, je.line, je.column,
                je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        sr_fail(c->err, "%s: expected a JSON object at the top level, got %s", c->src, jtype(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

int sr_config_parse(const char *json, size_t len, const char *source, sr_config *cfg, sr_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    ctx c = {source ? source : "config.json", NULL, cfg, err};
    json_t *root = load_json(&c, json, len);
    if (!root) return -1;
    if (!(cfg->source = sr_strdup(c.src))) { oom(&c); goto fail; }
    cfg->bos_token_id = cfg->eos_token_id = cfg->pad_token_id = -1;
    if (parse_model_type(&c, root) || parse_base(&c, root) || refuse_unsupported(&c, root))
        goto fail;
    if (cfg->arch == SR_ARCH_GRANITE_SWITCH && parse_switch(&c, root)) goto fail;
    /* derived (§1.4): S switch cache slots, L decoder layers */
    cfg->n_layers = cfg->num_hidden_layers - cfg->n_switch_slots;
    if (cfg->n_layers < 1) {
        failf(&c, "num_hidden_layers", "%" PRId64 " leaves no decoder layer after the %d switch cache "
              "slot(s)", cfg->num_hidden_layers, cfg->n_switch_slots);
        goto fail;
    }
    const json_t *q = get(root, "quantization_config");
    if (q && parse_bnb(&c, q, &cfg->quant)) goto fail;
    if (cfg->n_defaulted) {
        char line[1024];
        size_t o = 0;
        for (int i = 0; i < cfg->n_defaulted && o < sizeof line; i++)
            o += (size_t)snprintf(line + o, sizeof line - o, "%s%s", i ? ", " : "", cfg->defaulted[i]);
        sr_debug("%s: defaults used: %s", c.src, line);
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    sr_config_free(cfg);
    return -1;
}

/* Reads a whole (small) text file; errors name the path. */
static char *read_text(const char *path, size_t *len, sr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sr_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_CONFIG_BYTES) {
                sr_fail(err, "%s: larger than %u MiB, not a config.json", path, MAX_CONFIG_BYTES >> 20);
                goto fail;
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = sr_realloc(buf, cap + 1);
            if (!nb) {
                sr_fail(err, "%s: out of memory reading the file", path);
                goto fail;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        sr_fail(err, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
fail:
    fclose(f);
    sr_free(buf);
    return NULL;
}

int sr_config_load(const char *path, sr_config *cfg, sr_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    size_t len = 0;
    char *text = read_text(path, &len, err);
    if (!text) return -1;
    int rc = sr_config_parse(text, len, path, cfg, err);
    sr_free(text);
    return rc;
}

int sr_quant_config_parse(const char *json, size_t len, const char *source, sr_bnb_config *q,
                          sr_dtype *dtype, sr_error *err)
{
    memset(q, 0, sizeof *q);
    q->blocksize = 64;
    ctx c = {source ? source : "config.json", NULL, NULL, err};
    json_t *root = load_json(&c, json, len);
    if (!root) return -1;
    int rc = 0;
    const json_t *qc = get(root, "quantization_config");
    if (qc) rc = parse_bnb(&c, qc, q);
    if (!rc && dtype) {
        const char *key = get(root, "dtype") ? "dtype" : "torch_dtype";
        const char *dt = NULL;
        *dtype = SR_F32;
        rc = opt_str(&c, root, key, NULL, &dt);
        if (!rc && dt) rc = parse_torch_dtype(&c, key, dt, 1, dtype);
        if (rc) sr_bnb_config_free(q);
    }
    json_decref(root);
    return rc;
}

int sr_quant_config_load(const char *path, sr_bnb_config *q, sr_dtype *dtype, sr_error *err)
{
    memset(q, 0, sizeof *q);
    size_t len = 0;
    char *text = read_text(path, &len, err);
    if (!text) return -1;
    int rc = sr_quant_config_parse(text, len, path, q, dtype, err);
    sr_free(text);
    return rc;
}

void sr_config_free(sr_config *cfg)
{
    if (!cfg) return;
    sr_free(cfg->source);
    sr_free(cfg->model_type);
    sr_free(cfg->adapter_token_ids);
    free_strs(cfg->adapter_names, cfg->num_adapters);
    sr_free(cfg->adapter_ranks);
    for (int g = 0; cfg->hiding_groups && g < cfg->n_hiding_groups; g++) {
        sr_free(cfg->hiding_groups[g].name);
        free_strs(cfg->hiding_groups[g].members, cfg->hiding_groups[g].n_members);
    }
    sr_free(cfg->hiding_groups);
    for (int r = 0; cfg->hiding_rules && r < cfg->n_hiding_rules; r++) {
        sr_free(cfg->hiding_rules[r].adapter);
        free_strs(cfg->hiding_rules[r].groups, cfg->hiding_rules[r].n_groups);
    }
    sr_free(cfg->hiding_rules);
    free_strs(cfg->adapter_third_party, cfg->n_third_party);
    sr_free(cfg->adapter_substitute_token_ids);
    sr_bnb_config_free(&cfg->quant);
    free_strs(cfg->defaulted, cfg->n_defaulted);
    memset(cfg, 0, sizeof *cfg);
}

const char *sr_gen_name(sr_switch_gen g)
{
    switch (g) {
    case SR_GEN_NONE: return "none";
    case SR_GEN_A: return "A (KV hiding)";
    case SR_GEN_B: return "B (token exchange)";
    case SR_GEN_C: return "C (MultiSwitch + token exchange)";
    }
    return "?";
}

const char *sr_arch_name(sr_arch a)
{
    switch (a) {
    case SR_ARCH_GRANITE: return "GraniteForCausalLM";
    case SR_ARCH_GRANITEMOEHYBRID: return "GraniteMoeHybridForCausalLM (attention only)";
    case SR_ARCH_GRANITE_SWITCH: return "GraniteSwitchForCausalLM";
    }
    return "?";
}

int sr_config_control_index(const sr_config *cfg, int64_t t)
{
    /* Gen C base-reset layout: N+1 ids, element 0 resets to base (§6.2.5) */
    int off = cfg->n_adapter_token_ids > cfg->num_adapters ? 0 : 1;
    for (int k = 0; k < cfg->n_adapter_token_ids; k++)
        if (cfg->adapter_token_ids[k] == t) return k + off;
    return -1;
}
