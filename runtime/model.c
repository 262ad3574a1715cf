#include "runtime/model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bf16_tiles.h"
#include "quant/bnb4.h"
#include "quant/matmul.h"
#include "quant/qload.h"
#include "quant/qtile.h"
#include "runtime/alloc.h"
#include "runtime/host_memory.h"
#include "runtime/kv_cache.h"
#include "runtime/log.h"

#define NAME_MAX_LEN 256

/* ---- tensors -> f32 ---------------------------------------------------- */

static const char *file_of(const sr_tensor *t)
{
    return t && t->file ? sr_st_path(t->file) : "?";
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

static const sr_tensor *find_tensor(const sr_model *m, const char *name, sr_error *err)
{
    const sr_tensor *t = sr_ckpt_find(m->ck, name);
    if (!t) sr_fail(err, "checkpoint %s: tensor %s is missing", sr_ckpt_dir(m->ck), name);
    return t;
}

static int check_shape(const sr_tensor *t, int ndim, const int64_t *shape, sr_error *err)
{
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char got[128], want[128];
    fmt_shape(got, sizeof got, t->ndim, t->shape);
    fmt_shape(want, sizeof want, ndim, shape);
    return sr_fail(err, "file %s: tensor %s: shape %s does not match the config (expected %s)",
                   file_of(t), t->name, got, want);
}

static int is_float_dtype(sr_dtype d) { return d == SR_F32 || d == SR_BF16 || d == SR_F16; }

/* n elements of t starting at element `off`, converted to f32.  Tensor data
 * need not be aligned (a safetensors file only guarantees byte offsets). */
static void convert_f32(const sr_tensor *t, int64_t off, int64_t n, float *dst)
{
    sr_load_f32((const char *)t->data + (size_t)off * sr_dtype_size(t->dtype), t->dtype, n, dst);
}

static int check_finite_f32(const sr_tensor *t, const float *x, int64_t n, sr_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return sr_fail(err, "file %s: tensor %s: element %" PRId64 " is %s (--check)",
                           file_of(t), t->name, i, isnan(x[i]) ? "NaN" : "Inf");
    return 0;
}

/* A float tensor of exactly `shape` as a new f32 array. */
static int load_f32(const sr_model *m, const char *name, int ndim, const int64_t *shape,
                    bool check, float **out, sr_error *err)
{
    *out = NULL;
    const sr_tensor *t = find_tensor(m, name, err);
    if (!t) return -1;
    if (!is_float_dtype(t->dtype))
        return sr_fail(err, "file %s: tensor %s: dtype %s is not a float type (F32, BF16, F16)",
                       file_of(t), name, sr_dtype_name(t->dtype));
    if (check_shape(t, ndim, shape, err)) return -1;
    int64_t n = sr_tensor_numel(t);
    float *x = sr_malloc_aligned(sizeof(float) * (size_t)n);
    if (!x) return sr_fail(err, "file %s: tensor %s: out of memory", file_of(t), name);
    convert_f32(t, 0, n, x);
    if (check && check_finite_f32(t, x, n, err)) {
        sr_free_aligned(x);
        return -1;
    }
    *out = x;
    return 0;
}

/* Scans a matrix for NaN/Inf by dequantizing it in row blocks. */
static int check_finite_qmatrix(const sr_qmatrix *w, const char *name, const sr_tensor *t,
                                sr_error *err)
{
    int64_t block = w->cols > 0 ? (1 << 20) / w->cols : 1;
    if (block < 1) block = 1;
    if (block > w->rows) block = w->rows;
    float *buf = sr_malloc(sizeof(float) * (size_t)(block * w->cols));
    if (!buf) return sr_fail(err, "tensor %s: out of memory for --check", name);
    int rc = 0;
    for (int64_t r0 = 0; r0 < w->rows && !rc; r0 += block) {
        int64_t nr = w->rows - r0 < block ? w->rows - r0 : block;
        sr_qmatrix_dequant_rows(w, r0, nr, buf);
        for (int64_t i = 0; i < nr * w->cols; i++) {
            if (!isfinite(buf[i])) {
                rc = sr_fail(err, "file %s: tensor %s: row %" PRId64 " holds %s (--check)",
                             file_of(t), name, r0 + i / w->cols, isnan(buf[i]) ? "NaN" : "Inf");
                break;
            }
        }
    }
    sr_free(buf);
    return rc;
}

/* A Linear weight as an sr_qmatrix of shape [rows, cols]. */
static int load_matrix(const sr_model *m, const char *name, int64_t rows, int64_t cols,
                       bool check, sr_qmatrix *out, sr_error *err)
{
    memset(out, 0, sizeof *out);
    if (sr_qmatrix_from_ckpt(m->ck, name, out, err)) return -1;
    const sr_tensor *t = sr_ckpt_find(m->ck, name);
    if (out->rows != rows || out->cols != cols) {
        int rc = sr_fail(err, "file %s: tensor %s: shape [%" PRId64 ", %" PRId64 "] does not "
                         "match the config (expected [%" PRId64 ", %" PRId64 "])",
                         file_of(t), name, out->rows, out->cols, rows, cols);
        sr_qmatrix_free(out);
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (check && check_finite_qmatrix(out, name, t, err)) {
        sr_qmatrix_free(out);
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

/* ---- projections -------------------------------------------------------- */

typedef struct proj_spec {
    const char *module;         /* e.g. "self_attn.qkv_proj" (switch) */
    const char *parts[SR_PROJ_MAX_PARTS];   /* separate modules (granite), or NULL */
    int n_parts;
    int64_t part_rows[SR_PROJ_MAX_PARTS];
    int64_t cols;
    bool wrapped;               /* LoRA-wrapped: weight under `.base_layer` */
    bool bias;
    /* LoRA */
    int n_slices;               /* 0 = no LoRA */
    bool sliced_names;          /* lora_A_slices.{s} vs lora_A */
} proj_spec;

static void proj_free(sr_proj *p)
{
    for (int i = 0; i < SR_PROJ_MAX_PARTS; i++) sr_qmatrix_free(&p->w[i]);
    sr_free_aligned(p->bias);
    if (p->has_lora) sr_lora_free(&p->lora);
    memset(p, 0, sizeof *p);
}

static int load_lora(const sr_model *m, const char *pfx, const proj_spec *s, sr_proj *p,
                     bool check, sr_error *err)
{
    const sr_config *c = &m->cfg;
    const int N = c->num_adapters, R = c->max_lora_rank;
    if (sr_lora_alloc(&p->lora, N, R, c->adapter_ranks, s->cols, s->n_slices, s->part_rows, err))
        return sr_fail_prefix(err, "%s%s", pfx, s->module);
    p->has_lora = true;
    for (int sl = 0; sl < s->n_slices; sl++) {
        char an[NAME_MAX_LEN], bn[NAME_MAX_LEN];
        if (s->sliced_names) {
            snprintf(an, sizeof an, "%s%s.lora_A_slices.%d", pfx, s->module, sl);
            snprintf(bn, sizeof bn, "%s%s.lora_B_slices.%d", pfx, s->module, sl);
        } else {
            snprintf(an, sizeof an, "%s%s.lora_A", pfx, s->module);
            snprintf(bn, sizeof bn, "%s%s.lora_B", pfx, s->module);
        }
        const int64_t rows = s->part_rows[sl];
        const int64_t a_shape[4] = {N, 1, R, s->cols}, b_shape[4] = {N, 1, rows, R};
        const sr_tensor *ta = find_tensor(m, an, err), *tb = ta ? find_tensor(m, bn, err) : NULL;
        if (!ta || !tb || check_shape(ta, 4, a_shape, err) || check_shape(tb, 4, b_shape, err))
            return -1;
        if (!is_float_dtype(ta->dtype) || !is_float_dtype(tb->dtype))
            return sr_fail(err, "file %s: tensor %s: LoRA stacks must be F32, BF16 or F16",
                           file_of(ta), is_float_dtype(ta->dtype) ? bn : an);
        for (int k = 0; k < N; k++)
            convert_f32(ta, (int64_t)k * R * s->cols, (int64_t)R * s->cols,
                        sr_lora_a(&p->lora, k, sl));
        convert_f32(tb, 0, (int64_t)N * rows * R, p->lora.B[sl]);
        if (check) {
            for (int k = 0; k < N; k++)
                if (check_finite_f32(ta, sr_lora_a(&p->lora, k, sl), (int64_t)R * s->cols, err))
                    return -1;
            if (check_finite_f32(tb, p->lora.B[sl], (int64_t)N * rows * R, err)) return -1;
        }
    }
    sr_lora_update_live(&p->lora);
    return 0;
}

static int load_proj(const sr_model *m, int l, const proj_spec *s, bool check, sr_proj *p,
                     sr_error *err)
{
    char pfx[64], name[NAME_MAX_LEN];
    snprintf(pfx, sizeof pfx, "model.layers.%d.", l);
    memset(p, 0, sizeof *p);
    p->n_parts = s->n_parts;
    p->cols = s->cols;
    const char *wsub = s->wrapped ? ".base_layer" : "";
    for (int i = 0; i < s->n_parts; i++) {
        const char *mod = s->parts[0] ? s->parts[i] : s->module;
        int64_t rows = s->parts[0] ? s->part_rows[i] : 0;
        if (!s->parts[0])
            for (int j = 0; j < SR_PROJ_MAX_PARTS && s->part_rows[j]; j++) rows += s->part_rows[j];
        snprintf(name, sizeof name, "%s%s%s.weight", pfx, mod, wsub);
        p->part_off[i] = p->rows;
        if (load_matrix(m, name, rows, s->cols, check, &p->w[i], err)) goto fail;
        p->rows += rows;
    }
    if (s->bias) {
        p->bias = sr_malloc_aligned(sizeof(float) * (size_t)p->rows);
        if (!p->bias) {
            sr_fail(err, "layer %d: %s: out of memory", l, s->module);
            goto fail;
        }
        for (int i = 0; i < s->n_parts; i++) {
            const char *mod = s->parts[0] ? s->parts[i] : s->module;
            int64_t rows = (i + 1 < s->n_parts ? p->part_off[i + 1] : p->rows) - p->part_off[i];
            float *b;
            snprintf(name, sizeof name, "%s%s%s.bias", pfx, mod, wsub);
            if (load_f32(m, name, 1, &rows, check, &b, err)) goto fail;
            memcpy(p->bias + p->part_off[i], b, sizeof(float) * (size_t)rows);
            sr_free_aligned(b);
        }
    }
    if (s->n_slices && load_lora(m, pfx, s, p, check, err)) goto fail;
    return 0;
fail:
    proj_free(p);
    return -1;
}

/* ---- layers -------------------------------------------------------------- */

static void layer_free(sr_layer_weights *w)
{
    sr_free_aligned(w->in_norm);
    sr_free_aligned(w->post_norm);
    sr_free_aligned(w->q_norm);
    sr_free_aligned(w->k_norm);
    proj_free(&w->qkv);
    proj_free(&w->o);
    proj_free(&w->mlp_in);
    proj_free(&w->mlp_out);
    memset(w, 0, sizeof *w);
}

/* MLP width I from the weights (rows of the gate, or half of input_linear),
 * checked against the config. */
static int derive_mlp_width(sr_model *m, sr_error *err)
{
    const sr_config *c = &m->cfg;
    char name[NAME_MAX_LEN];
    bool wrapped = (c->lora_targets & SR_LORA_IN) && c->num_adapters > 0;
    int64_t want;
    if (c->arch == SR_ARCH_GRANITE) {
        snprintf(name, sizeof name, "model.layers.0.mlp.gate_proj.weight");
        want = c->intermediate_size;
    } else {
        snprintf(name, sizeof name, "model.layers.0.shared_mlp.input_linear%s.weight",
                 wrapped ? ".base_layer" : "");
        want = c->shared_intermediate_size;
    }
    sr_qmatrix w;
    memset(&w, 0, sizeof w);
    if (sr_qmatrix_from_ckpt(m->ck, name, &w, err)) return -1;
    int64_t rows = w.rows;
    sr_qmatrix_free(&w);
    int64_t I = c->arch == SR_ARCH_GRANITE ? rows : rows / 2;
    if (I <= 0 || (c->arch != SR_ARCH_GRANITE && rows % 2))
        return sr_fail(err, "file %s: tensor %s: %" PRId64 " rows is not a valid MLP width",
                       file_of(sr_ckpt_find(m->ck, name)), name, rows);
    if (want >= 0 && want != I)
        return sr_fail(err, "file %s: tensor %s: MLP width %" PRId64 " does not match config "
                       "field %s = %" PRId64, file_of(sr_ckpt_find(m->ck, name)), name, I,
                       c->arch == SR_ARCH_GRANITE ? "intermediate_size" : "shared_intermediate_size",
                       want);
    m->I = I;
    return 0;
}

static int load_layer(sr_model *m, int l, bool check, sr_layer_weights *w, sr_error *err)
{
    const sr_config *c = &m->cfg;
    const int64_t H = m->H, qd = m->nh * m->hd, kvd = m->nkv * m->hd, I = m->I;
    const bool sw = c->arch == SR_ARCH_GRANITE_SWITCH;
    const bool lora = sw && c->num_adapters > 0;
    char name[NAME_MAX_LEN];
    memset(w, 0, sizeof *w);

    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    if (load_f32(m, name, 1, &H, check, &w->in_norm, err)) goto fail;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (load_f32(m, name, 1, &H, check, &w->post_norm, err)) goto fail;
    if (c->qk_norm) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
        if (load_f32(m, name, 1, &m->hd, check, &w->q_norm, err)) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
        if (load_f32(m, name, 1, &m->hd, check, &w->k_norm, err)) goto fail;
    }

    proj_spec qkv = {.module = "self_attn.qkv_proj", .n_parts = 1, .part_rows = {qd, kvd, kvd},
                     .cols = H, .bias = c->attention_bias};
    proj_spec o = {.module = "self_attn.o_proj", .n_parts = 1, .part_rows = {H}, .cols = qd,
                   .bias = c->attention_bias};
    proj_spec in = {.module = "shared_mlp.input_linear", .n_parts = 1, .part_rows = {I, I},
                    .cols = H};
    proj_spec out = {.module = "shared_mlp.output_linear", .n_parts = 1, .part_rows = {H},
                     .cols = I};
    if (!sw) {      /* granite / granitemoehybrid: separate q, k, v */
        qkv.parts[0] = "self_attn.q_proj";
        qkv.parts[1] = "self_attn.k_proj";
        qkv.parts[2] = "self_attn.v_proj";
        qkv.n_parts = 3;
    }
    if (c->arch == SR_ARCH_GRANITE) {
        in.parts[0] = "mlp.gate_proj";
        in.parts[1] = "mlp.up_proj";
        in.n_parts = 2;
        out.module = "mlp.down_proj";
    }
    if (lora) {
        qkv.wrapped = c->lora_targets & SR_LORA_QKV;
        o.wrapped = c->lora_targets & SR_LORA_O;
        in.wrapped = c->lora_targets & SR_LORA_IN;
        out.wrapped = c->lora_targets & SR_LORA_OUT;
        qkv.n_slices = qkv.wrapped ? 3 : 0;
        o.n_slices = o.wrapped ? 1 : 0;
        in.n_slices = in.wrapped ? 2 : 0;
        out.n_slices = out.wrapped ? 1 : 0;
        qkv.sliced_names = in.sliced_names = true;
    }
    if (load_proj(m, l, &qkv, check, &w->qkv, err) || load_proj(m, l, &o, check, &w->o, err) ||
        load_proj(m, l, &in, check, &w->mlp_in, err) ||
        load_proj(m, l, &out, check, &w->mlp_out, err))
        goto fail;
    return 0;
fail:
    layer_free(w);
    return -1;
}

/* ---- model ----------------------------------------------------------------- */

void sr_model_free(sr_model *m)
{
    if (!m) return;
    for (int l = 0; m->layers && l < m->L; l++) layer_free(&m->layers[l]);
    sr_free(m->layers);
    sr_free_aligned(m->final_norm);
    sr_qmatrix_free(&m->embed);
    sr_qmatrix_free(&m->head);
    sr_free_aligned(m->tile_arena);
    sr_rope_free(&m->rope);
    sr_catalog_free(&m->cat);
    sr_adapter_meta_free(&m->meta);
    sr_config_free(&m->cfg);
    sr_ckpt_close(m->ck);
    sr_free(m);
}

/* Features strata does not implement: refuse by field name. */
static int check_supported(const sr_config *c, sr_error *err)
{
    const char *src = c->source ? c->source : "config.json";
    if (c->num_local_experts > 0)
        return sr_fail(err, "%s: field num_local_experts: mixture-of-experts layers (%" PRId64
                       ") are not supported", src, c->num_local_experts);
    if (c->n_layers < 1) return sr_fail(err, "%s: field num_hidden_layers: no decoder layer", src);
    if (c->num_attention_heads < 1 || c->num_key_value_heads < 1 ||
        c->num_attention_heads % c->num_key_value_heads)
        return sr_fail(err, "%s: field num_key_value_heads: %" PRId64 " does not divide "
                       "num_attention_heads %" PRId64, src, c->num_key_value_heads,
                       c->num_attention_heads);
    if (c->head_dim < 2 || c->head_dim % 2 || c->head_dim > 1024)
        return sr_fail(err, "%s: field head_dim: %" PRId64 " (must be even, 2..1024)", src,
                       c->head_dim);
    if (c->hidden_size < 1 || c->vocab_size < 1)
        return sr_fail(err, "%s: field hidden_size/vocab_size must be positive", src);
    if (c->vocab_size > INT32_MAX)
        return sr_fail(err, "%s: field vocab_size: %" PRId64 " is too large", src, c->vocab_size);
    if (c->use_rope && strcmp(c->rope_type, "default") && strcmp(c->rope_type, "linear"))
        return sr_fail(err, "%s: field rope_type: \"%s\" is not supported (default, linear)", src,
                       c->rope_type);
    if (!(c->logits_scaling != 0))
        return sr_fail(err, "%s: field logits_scaling must be non-zero", src);
    if (c->num_adapters > 0 && c->arch != SR_ARCH_GRANITE_SWITCH)
        return sr_fail(err, "%s: field num_adapters: adapters need model_type granite_switch", src);
    return 0;
}

uint64_t sr_kv_bytes(const sr_model *m, int64_t ctx)
{
    /* + tokens, adapter indices and RoPE positions per position (sr_seq) */
    return sr_kv_cache_bytes(m->L, (int)m->nkv, (int)m->hd, ctx, m->kv_type) +
           (uint64_t)ctx * 3 * sizeof(int32_t);
}

/* Which matrices get tiles: bf16 where the AVX-512 kernels run (the exact
 * kernels read them in either mode, quant/bf16_tiles.h) unless
 * STRATA_BF16_TILES=0, 4-bit and LLM.int8 under the int8 kernels
 * (quant/qtile.h).  The bf16 tiles sum in another order than the row-major
 * kernels a placement runs, so STRATA_BF16_TILES=0 is how a CPU run gives
 * the same logits as a placed one, bit for bit. */
typedef struct tile_kinds {
    bool bf16, int8;
} tile_kinds;

static bool env_is_zero(const char *name)
{
    const char *v = getenv(name);
    return v && !strcmp(v, "0");
}

static bool gets_tiles(const sr_qmatrix *w, tile_kinds k)
{
    return sr_qtile_fits(w) && (w->fmt == SR_W_BF16 ? k.bf16 : k.int8);
}

/* Every matrix that gets tiles, in one order for sizing and filling: the
 * layers' projections, then the head.  Returns how many (out may be NULL). */
static int tiled_matrices(sr_model *m, tile_kinds k, sr_qmatrix **out)
{
    int n = 0;
    for (int l = 0; l < m->L; l++) {
        sr_proj *p[4] = {&m->layers[l].qkv, &m->layers[l].o, &m->layers[l].mlp_in,
                         &m->layers[l].mlp_out};
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < p[j]->n_parts; i++)
                if (gets_tiles(&p[j]->w[i], k)) {
                    if (out) out[n] = &p[j]->w[i];
                    n++;
                }
    }
    if (gets_tiles(&m->head, k)) {
        if (out) out[n] = &m->head;
        n++;
    }
    return n;
}

/* Once tiled, the kernels read a matrix's tiles only: its stored bytes (and
 * 4-bit block scales) leave the process where they are checkpoint pages, or
 * the weights would count twice in its RSS (a 3B bf16 model: 14.0 GB, 7.3
 * without them).  They stay in the page cache, so the next load does not read
 * the checkpoint from disk again; a reader that still wants them (a tied
 * embedding reads the head's tiles instead) faults them back in. */
static void release_stored(const sr_model *m, const sr_qmatrix *w)
{
    const uint64_t data = sr_qmatrix_data_bytes(w);
    sr_ckpt_release(m->ck, w->data, (size_t)data);
    if ((w->fmt == SR_W_NF4 || w->fmt == SR_W_FP4) && w->scales) /* the rest: block scales */
        sr_ckpt_release(m->ck, w->scales, (size_t)(sr_qmatrix_bytes(w) - data));
}

/* Memory the tiles may take.  They are anonymous memory the model adds (the
 * stored bytes they replace are page cache, which the kernel drops and reads
 * again under pressure; with no swap the tiles cannot go anywhere): a model
 * larger than memory runs, slowly, from the page cache, and tiling all of it
 * would end in the OOM killer.  An eighth of the memory, at least 512 MiB,
 * stays for the KV cache, the activations and everything else. */
static uint64_t tile_budget(void)
{
    uint64_t total, avail;
    sr_host_memory(&total, &avail);
    if (!total) return UINT64_MAX; /* no /proc/meminfo: unknown, as before */
    uint64_t reserve = total / 8;
    if (reserve < (512ull << 20)) reserve = 512ull << 20;
    return avail > reserve ? avail - reserve : 0;
}

/* The tiles of every such projection and of the head, all in one buffer:
 * decode reads them at the memory's full rate only from huge pages, and a
 * buffer per matrix left the matrices under SR_HUGEPAGE_MIN (q, k, v, o of
 * a 3B model) and the last partial 2 MiB of every other one on 4 KiB
 * pages, 18 % of the tile bytes, which two cores read 23-30 % slower
 * (BENCHMARKS.md, forward pass, "Sixth pass").  Only as many matrices, in
 * that order, as tile_budget() allows; without memory for that buffer, one
 * per matrix; without that, the untiled kernels run from the first matrix
 * that has none (a warning says so). */
static void make_tiles(sr_model *m, tile_kinds k, const char *path)
{
    int n = tiled_matrices(m, k, NULL);
    if (!n) return;
    sr_qmatrix **w = sr_malloc(sizeof *w * (size_t)n);
    if (!w) {
        sr_warn("model %s: no memory for the kernels' tiles: the untiled kernels run", path);
        return;
    }
    tiled_matrices(m, k, w);
    uint64_t total = 0, want = 0;
    for (int i = 0; i < n; i++) want += sr_qtile_bytes(w[i]);
    const uint64_t budget = tile_budget();
    const int all = n;
    n = sr_qtile_within(w, all, budget, &total); /* each a multiple of 64 */
    if (n < all)
        sr_warn("model %s: the kernels' tiles need %.2f GiB, the memory available leaves them "
                "%.2f GiB: tiles for %d of %d matrices, the untiled kernels run for the rest",
                path, (double)want / (1u << 30), (double)budget / (1u << 30), n, all);
    if (!n) {
        sr_free(w);
        return;
    }
    uint8_t *arena = total <= SIZE_MAX ? sr_malloc_aligned((size_t)total) : NULL;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (arena) {
            sr_qtile_make_in(w[i], arena + off);
        } else if (sr_qtile_make(w[i])) {
            sr_warn("model %s: no memory for the kernels' tiles of %d of %d matrices: the "
                    "untiled kernels run there", path, n - i, n);
            break;
        }
        off += sr_qtile_bytes(w[i]);
        release_stored(m, w[i]);
    }
    sr_free(w);
    m->tile_arena = arena;
    m->tile_bytes = off;
}

int sr_model_load(const char *path, const sr_model_opts *opts, sr_model **out, sr_error *err)
{
    *out = NULL;
    const bool check = opts && opts->check_finite;
    sr_model *m = sr_calloc(1, sizeof *m);
    if (!m) return sr_fail(err, "model %s: out of memory", path);
    char cfg_path[4096];

    if (sr_ckpt_open(path, &m->ck, err)) goto fail;
    if (!sr_ckpt_has_config(m->ck)) {
        sr_fail(err, "model %s: no config.json (a model directory is needed)", path);
        goto fail;
    }
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", sr_ckpt_dir(m->ck));
    if (sr_config_load(cfg_path, &m->cfg, err)) goto fail;
    const sr_config *c = &m->cfg;
    if (check_supported(c, err)) goto fail;
    if (sr_adapter_meta_build(c, &m->meta, err)) goto fail;
    if (sr_catalog_build(m->ck, c, &m->meta, &m->cat, err)) goto fail;
    if (sr_switch_init(&m->sw, c, err)) goto fail;

    m->V = c->vocab_size;
    m->H = c->hidden_size;
    m->nh = c->num_attention_heads;
    m->nkv = c->num_key_value_heads;
    m->hd = c->head_dim;
    m->L = (int)c->n_layers;
    m->emb_mult = (float)c->embedding_multiplier;
    m->res_mult = (float)c->residual_multiplier;
    m->attn_scale = (float)c->attention_multiplier;
    m->logit_scale = (float)c->logits_scaling;
    m->eps = (float)c->rms_norm_eps;
    m->use_rope = c->use_rope;
    m->hiding = c->gen == SR_GEN_A && m->meta.n_groups > 0;
    if (m->use_rope &&
        sr_rope_init(&m->rope, (int)m->hd, c->rope_theta,
                     strcmp(c->rope_type, "linear") ? 1.0 : c->rope_factor, err))
        goto fail;
    if (derive_mlp_width(m, err)) goto fail;

    if (load_matrix(m, "model.embed_tokens.weight", m->V, m->H, check, &m->embed, err)) goto fail;
    /* tied: a second descriptor over the same bytes (a stored lm_head is ignored) */
    if (load_matrix(m, c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                    m->V, m->H, check && !c->tie_word_embeddings, &m->head, err))
        goto fail;
    if (load_f32(m, "model.norm.weight", 1, &m->H, check, &m->final_norm, err)) goto fail;

    m->layers = sr_calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) {
        sr_fail(err, "model %s: out of memory", path);
        goto fail;
    }
    for (int l = 0; l < m->L; l++)
        if (load_layer(m, l, check, &m->layers[l], err)) goto fail;
    if (opts && opts->runs_on_cpu) {
        const tile_kinds k = {
            .bf16 = sr_isa_detect() == SR_ISA_AVX512 && sr_bf16tiles_available() &&
                    !env_is_zero("STRATA_BF16_TILES"),
            .int8 = sr_matmul_get_mode() == SR_MATMUL_INT8 && sr_matmul_int8_available(),
        };
        make_tiles(m, k, path);
        /* A tied embedding reads its rows from the head's tiles: its stored
         * bytes were released, and every token would fault its row back in. */
        if (m->head.tiles && m->embed.data == m->head.data && m->embed.fmt == m->head.fmt) {
            m->embed.tiles = m->head.tiles;
            m->embed.tile_row_scale = m->head.tile_row_scale;
        }
    }
    *out = m;
    return 0;
fail:
    sr_model_free(m);
    return -1;
}
