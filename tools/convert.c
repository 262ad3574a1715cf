#include "tools/convert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "quant/blockwise8.h"
#include "quant/dynamic_map.h"
#include "quant/llm_int8.h"
#include "quant/qload.h"
#include "quant/quant_state.h"
#include "quant/qwrite.h"
#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/iofault.h"
#include "runtime/log.h"
#include "tools/cli_util.h"
#include "tools/shard_writer.h"

volatile int convert_interrupted;

void convert_defaults(convert_opts *o)
{
    memset(o, 0, sizeof *o);
    o->quant = CQ_NF4;
    o->blocksize = 64;
    o->compute_dtype = -1;
    o->rules = SR_RULES_CUDA;
    o->shard_size = 5000000000ull; /* transformers' default max_shard_size "5GB" */
}

typedef enum action { A_COPY, A_QUANT, A_DEQUANT } action;

typedef struct item {
    const sr_tensor *t;
    action act;
    int cls;                    /* stats class */
    uint64_t bound;             /* upper bound of output bytes */
    int shard;
} item;

enum { CLS_ATTN, CLS_MLP, CLS_OTHER };
static const char *cls_names[] = {"attention", "mlp", "other"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_float(sr_dtype d) { return d == SR_F32 || d == SR_F16 || d == SR_BF16; }

/* Longest tensor name converted: with its companions' suffixes it stays
 * within the key buffers here and quant/qload.c's 1024-byte names. */
#define CONVERT_NAME_MAX 960

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Does skip entry k exclude the Linear module at path p?  When k names whole
 * components of the path: "lm_head", "mlp" (every MLP), "model.layers.1"
 * (layer 1, not 10), "self_attn.q_proj".  transformers matches entries its
 * own ways (4.x and 5.x differ, bnb-format §5.2), so the written config
 * does not carry these patterns but the paths they matched. */
static int skip_matches(const char *p, const char *k)
{
    size_t pl = strlen(p), kl = strlen(k);
    for (const char *at = strstr(p, k); kl && at; at = strstr(at + 1, k)) {
        size_t off = (size_t)(at - p);
        if ((off == 0 || p[off - 1] == '.') && (off + kl == pl || p[off + kl] == '.')) return 1;
    }
    return 0;
}

/* Module path of a weight name ("a.b.weight" -> "a.b"). */
static void module_of(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s", name);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = 0;
}

static int skipped(const convert_opts *o, const char *weight_name)
{
    char mod[512];
    module_of(weight_name, mod, sizeof mod);
    for (int i = 0; i < o->n_skip; i++)
        if (skip_matches(mod, o->skip[i])) return 1;
    return 0;
}

static int role_class(sr_role r)
{
    switch (r) {
    case SR_ROLE_Q: case SR_ROLE_K: case SR_ROLE_V: case SR_ROLE_QKV: case SR_ROLE_O:
        return CLS_ATTN;
    case SR_ROLE_GATE: case SR_ROLE_UP: case SR_ROLE_DOWN: case SR_ROLE_MLP_IN: case SR_ROLE_MLP_OUT:
        return CLS_MLP;
    default:
        return CLS_OTHER;
    }
}

/* Generic (non-Granite) directories: a 2-D float "*.weight" that is not an
 * embedding, a norm or the LM head is taken to be a Linear. */
static int generic_linear(const sr_tensor *t)
{
    return t->ndim == 2 && is_float(t->dtype) && ends_with(t->name, ".weight") &&
           !strstr(t->name, "embed") && !strstr(t->name, "norm") && strncmp(t->name, "lm_head", 7);
}

static uint64_t quant_bound(const convert_opts *o, const sr_tensor *t)
{
    int64_t n = sr_tensor_numel(t);
    if (o->quant == CQ_INT8) return (uint64_t)n + 4 * (uint64_t)t->shape[0] + 1;
    int64_t nb = sr_bnb_nblocks(n, o->blocksize);
    uint64_t b = (uint64_t)sr_bnb4_packed_bytes(n) + 64 + 256; /* + quant_map + JSON */
    b += o->double_quant ? (uint64_t)nb + 4 * (uint64_t)sr_bnb_nblocks(nb, 256) + 1024
                         : 4 * (uint64_t)nb;
    return b;
}

/* Removes a flat directory (the partial output holds no subdirectories);
 * 0, or -1 if something stayed. */
static int remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    return rmdir(dir);
}

/* OUT_DIR must not exist: one that appeared while converting (another
 * converter, the user) is never replaced without --force.  RENAME_NOREPLACE
 * makes the check and the rename one step where the filesystem has it. */
int convert_publish(const char *partial, const char *out_dir, sr_error *err)
{
    struct stat st;
    int rc = renameat2(AT_FDCWD, partial, AT_FDCWD, out_dir, RENAME_NOREPLACE);
    if (rc && (errno == EINVAL || errno == ENOSYS))     /* no RENAME_NOREPLACE here */
        rc = !stat(out_dir, &st) ? (errno = EEXIST, -1) : rename(partial, out_dir);
    if (rc && errno == EEXIST)
        return sr_fail(err, "%s appeared while converting; it is left as it is (use --force to "
                       "replace it)", out_dir);
    if (rc) return sr_fail(err, "rename %s -> %s: %s", partial, out_dir, strerror(errno));
    return 0;
}

/* Removes OUT.partial-<pid> directories left by converters that were killed
 * (their pid no longer exists). */
static void remove_stale_partials(const char *out_dir)
{
    char parent[4096], base[1024];
    snprintf(parent, sizeof parent, "%s", out_dir);
    char *slash = strrchr(parent, '/');
    if (slash) {
        snprintf(base, sizeof base, "%s", slash + 1);
        if (slash == parent) slash[1] = 0; else *slash = 0;
    } else {
        snprintf(base, sizeof base, "%s", parent);
        snprintf(parent, sizeof parent, ".");
    }
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    size_t bl = strlen(base);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".partial-", 9)) continue;
        long pid = strtol(e->d_name + bl + 9, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) && errno == ESRCH) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", parent, e->d_name);
            sr_info("removing %s left by an interrupted conversion (process %ld is gone)", p, pid);
            remove_dir(p);
        }
    }
    closedir(d);
}

/* Drops the input pages of a file-backed tensor once it has been consumed,
 * so peak RSS stays near the tensor in hand (never on a decompressed .zst
 * buffer: there MADV_DONTNEED would zero it). */
static void drop_pages(const sr_tensor *t)
{
    if (!t->file || ends_with(sr_st_path(t->file), ".zst")) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)t->data + t->nbytes) & ~((uintptr_t)pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int copy_file(const char *src, const char *dst, sr_error *err)
{
    FILE *in = fopen(src, "rb"), *out = NULL;
    if (!in) return sr_fail(err, "%s: %s", src, strerror(errno));
    out = fopen(dst, "wb");
    if (!out) { fclose(in); return sr_fail(err, "%s: cannot create: %s", dst, strerror(errno)); }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    for (;;) {
        n = sr_io_fault(0) ? 0 : fread(buf, 1, sizeof buf, in);
        if (n < sizeof buf && !feof(in)) { rc = sr_fail(err, "%s: read error: %s", src, strerror(errno)); break; }
        if (n && (sr_io_fault(1) || fwrite(buf, 1, n, out) != n)) {
            rc = sr_fail(err, "%s: write: %s", dst, strerror(errno));
            break;
        }
        if (n < sizeof buf) break;
    }
    if (!rc && (fflush(out) || sr_fsync(fileno(out)))) rc = sr_fail(err, "%s: %s", dst, strerror(errno));
    fclose(in);
    if (fclose(out) && !rc) rc = sr_fail(err, "%s: %s", dst, strerror(errno));
    return rc;
}

static int is_weight_file(const char *n)
{
    return ends_with(n, ".safetensors") || ends_with(n, ".safetensors.zst") ||
           !strcmp(n, "model.safetensors.index.json") || !strcmp(n, "config.json");
}

/* Copies every other regular file of the input directory (tokenizer, chat
 * template, generation_config, README, ...). */
static int copy_other_files(const char *in, const char *out, sr_error *err)
{
    DIR *d = opendir(in);
    if (!d) return sr_fail(err, "%s: %s", in, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.' || is_weight_file(e->d_name)) continue;
        char s[4096], t[4096];
        snprintf(s, sizeof s, "%s/%s", in, e->d_name);
        snprintf(t, sizeof t, "%s/%s", out, e->d_name);
        struct stat st;
        if (stat(s, &st) || !S_ISREG(st.st_mode)) continue;
        rc = copy_file(s, t, err);
    }
    closedir(d);
    return rc;
}

static const char *torch_name(sr_dtype d) { return sr_dtype_torch_name(d); }

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* config.json = input + quantization_config exactly as transformers writes
 * it (bnb-format §5.1: all 13 keys, sorted), or without it when dequantizing. */
static int write_config(const convert_opts *o, json_t *cfg, sr_dtype model_dtype,
                        json_t *skipped_modules, const char *path, sr_error *err)
{
    if (o->quant == CQ_NONE) {
        json_object_del(cfg, "quantization_config");
    } else {
        int four = o->quant != CQ_INT8;
        sr_dtype cd = o->compute_dtype >= 0 ? (sr_dtype)o->compute_dtype : model_dtype;
        /* No --skip: null, as transformers writes by default; it then leaves out
         * exactly lm_head (the output embedding), which is what strata did.  With
         * --skip: the module paths left out, lm_head first, not the patterns:
         * transformers 4.x and 5.x match a pattern differently, a full path
         * alike (bnb-format §5.2). */
        json_t *skip = json_null();
        if (o->n_skip) {
            skip = json_array();
            json_array_append_new(skip, json_string("lm_head"));
            size_t n = json_array_size(skipped_modules);
            const char **names = sr_malloc((n ? n : 1) * sizeof *names);
            if (!names) {
                json_decref(skip);
                return sr_fail(err, "%s: out of memory", path);
            }
            for (size_t i = 0; i < n; i++)
                names[i] = json_string_value(json_array_get(skipped_modules, i));
            qsort(names, n, sizeof *names, cmp_cstr);
            for (size_t i = 0; i < n; i++)
                if (strcmp(names[i], "lm_head") && (i == 0 || strcmp(names[i], names[i - 1])))
                    json_array_append_new(skip, json_string(names[i]));
            sr_free(names);
        }
        json_t *q = json_pack("{s:b,s:b,s:s,s:s,s:s,s:b,s:b,s:b,s:o,s:f,s:b,s:b,s:s}",
            "_load_in_4bit", four, "_load_in_8bit", !four,
            "bnb_4bit_compute_dtype", torch_name(four ? cd : SR_F32),
            "bnb_4bit_quant_storage", "uint8",
            "bnb_4bit_quant_type", o->quant == CQ_NF4 ? "nf4" : "fp4", /* fp4: the default */
            "bnb_4bit_use_double_quant", four && o->double_quant,
            "llm_int8_enable_fp32_cpu_offload", 0, "llm_int8_has_fp16_weight", 0,
            "llm_int8_skip_modules", skip, "llm_int8_threshold", 6.0,
            "load_in_4bit", four, "load_in_8bit", !four, "quant_method", "bitsandbytes");
        if (!q) return sr_fail(err, "%s: cannot build quantization_config", path);
        json_object_set_new(cfg, "quantization_config", q);
    }
    FILE *f = fopen(path, "w");
    if (!f) return sr_fail(err, "%s: cannot create: %s", path, strerror(errno));
    int rc = sr_io_fault(1) || json_dumpf(cfg, f, JSON_INDENT(2) | JSON_SORT_KEYS) ||
             fputc('\n', f) == EOF;
    if (!rc) rc = fflush(f) || sr_fsync(fileno(f));
    if (fclose(f) || rc) return sr_fail(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

static void shard_name(int i, int n, char *buf, size_t len)
{
    if (n == 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05d-of-%05d.safetensors", i + 1, n);
}

/* Accumulates the quantization error of one weight (against its source). */
static void add_stats(convert_report *r, int cls, const sr_tensor *src, const sr_qtensors *q,
                      const convert_opts *o)
{
    int64_t n = sr_tensor_numel(src);
    float *x = sr_malloc((size_t)n * 4), *y = sr_malloc((size_t)n * 4);
    if (!x || !y) goto out;
    sr_load_f32(src->data, src->dtype, n, x);
    if (o->quant == CQ_INT8) {
        sr_int8_dequantize(q->t[0].data, q->t[1].data, 0, src->shape[0], src->shape[1], y);
    } else {
        int64_t nb = sr_bnb_nblocks(n, o->blocksize);
        float *scales = sr_malloc((size_t)nb * 4);
        if (!scales) goto out;
        if (o->double_quant) {
            sr_quant_state qs;
            sr_error e;
            float map[256];
            sr_dynamic_map(map);
            if (sr_quant_state_parse(q->json, strlen(q->json), &qs, &e)) { sr_free(scales); goto out; }
            sr_dq_scales(q->t[1].data, nb, q->t[3].data, 256, q->t[4].data, qs.nested_offset, scales);
        } else {
            memcpy(scales, q->t[1].data, (size_t)nb * 4);
        }
        sr_bnb4_dequantize(q->t[0].data, scales, n, o->blocksize,
                           o->quant == CQ_FP4 ? SR_Q4_FP4 : SR_Q4_NF4, y);
        sr_free(scales);
    }
    convert_class_stats *s = &r->stats[cls];
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (d > s->max_abs) s->max_abs = d;
        s->sum_sq += d * d;
    }
    s->count += (uint64_t)n;
    s->n++;
out:
    sr_free(x);
    sr_free(y);
}

static int lookup_offset(const sr_checkpoint *ref, const char *weight, float *off, sr_error *err)
{
    char key[1024];
    for (int k = 0; k < 2; k++) {
        snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__%s", weight, k ? "fp4" : "nf4");
        const sr_tensor *t = sr_ckpt_find(ref, key);
        if (!t) continue;
        sr_quant_state qs;
        if (sr_quant_state_parse(t->data, t->nbytes, &qs, err)) return sr_fail_prefix(err, "%s", key);
        if (!qs.nested) return sr_fail(err, "--match-offsets: %s has no nested_offset", key);
        *off = qs.nested_offset;
        return 0;
    }
    return sr_fail(err, "--match-offsets: no quant_state for %s in the reference checkpoint", weight);
}

/* Produces the output tensors of one item into q (for A_COPY, none). */
static int produce(const convert_opts *o, const sr_checkpoint *ref, const item *it,
                   sr_dtype model_dtype, const sr_checkpoint *ck, sr_qtensors *q, sr_error *err)
{
    const sr_tensor *t = it->t;
    memset(q, 0, sizeof *q);
    if (it->act == A_QUANT) {
        if (o->quant == CQ_INT8)
            return sr_int8_quantize_tensor(t->name, t->data, t->dtype, t->ndim, t->shape, q, err);
        sr_bnb4_options bo = sr_bnb4_defaults();
        bo.quant_type = o->quant == CQ_FP4 ? SR_Q4_FP4 : SR_Q4_NF4;
        bo.blocksize = o->blocksize;
        bo.double_quant = o->double_quant;
        bo.rules = o->rules;
        if (ref && o->double_quant) {
            if (lookup_offset(ref, t->name, &bo.offset, err)) return -1;
            bo.use_offset = 1;
        }
        return sr_bnb4_quantize_tensor(t->name, t->data, t->dtype, t->ndim, t->shape, &bo, q, err);
    }
    /* A_DEQUANT: back to the weight's original dtype */
    sr_qmatrix w;
    if (sr_qmatrix_from_ckpt(ck, t->name, &w, err)) return -1;
    sr_dtype out = model_dtype;
    char key[1024];
    for (int k = 0; k < 2; k++) {
        snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__%s", t->name, k ? "fp4" : "nf4");
        const sr_tensor *qt = sr_ckpt_find(ck, key);
        sr_quant_state qs;
        if (qt && !sr_quant_state_parse(qt->data, qt->nbytes, &qs, err)) out = qs.dtype;
    }
    int64_t n = w.rows * w.cols;
    float *f = sr_malloc((size_t)n * 4);
    void *data = sr_malloc((size_t)n * sr_dtype_size(out));
    q->t[0].name = sr_strdup(t->name);
    if (!f || !data || !q->t[0].name) {
        sr_free(f);
        sr_free(data);
        sr_free(q->t[0].name);
        sr_qmatrix_free(&w);
        return sr_fail(err, "%s: out of memory", t->name);
    }
    sr_qmatrix_dequant_rows(&w, 0, w.rows, f);
    for (int64_t i = 0; i < n; i++) {
        if (out == SR_F32) ((float *)data)[i] = f[i];
        else if (out == SR_BF16) ((uint16_t *)data)[i] = sr_f32_to_bf16(f[i]);
        else ((uint16_t *)data)[i] = sr_f32_to_f16(f[i]);
    }
    sr_free(f);
    q->count = 1;
    q->t[0].dtype = out;
    q->t[0].ndim = 2;
    q->t[0].shape[0] = w.rows;
    q->t[0].shape[1] = w.cols;
    q->t[0].data = data;
    q->t[0].nbytes = (uint64_t)n * sr_dtype_size(out);
    sr_qmatrix_free(&w);
    return 0;
}

static void progress(const convert_opts *o, uint64_t done, uint64_t total, double t0, int last)
{
    if (o->quiet || !isatty(2)) return;
    double dt = now() - t0, rate = dt > 0 ? (double)done / dt : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int w = 30, k = total ? (int)((double)w * (double)done / (double)total) : w;
    char a[32], b[32];
    fprintf(stderr, "\r[%.*s%*s] %s / %s  %.0f MB/s  ETA %.0fs   ", k,
            "##############################", w - k, "", cli_fmt_bytes(done, a, sizeof a),
            cli_fmt_bytes(total, b, sizeof b), rate / 1e6, eta);
    if (last) fputc('\n', stderr);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->t->name, ((const item *)b)->t->name);
}

int convert_run(const convert_opts *opts, convert_report *r, sr_error *err)
{
    /* OUT_DIR without trailing slashes: OUT.partial-<pid> and OUT.old-<pid>
     * are siblings of it, not entries inside it */
    char out_dir[4096];
    snprintf(out_dir, sizeof out_dir, "%s", opts->out_dir);
    for (size_t l = strlen(out_dir); l > 1 && out_dir[l - 1] == '/'; l--) out_dir[l - 1] = 0;
    convert_opts local = *opts;
    local.out_dir = out_dir;
    const convert_opts *o = &local;
    memset(r, 0, sizeof *r);
    double t0 = now();
    sr_checkpoint *ck = NULL, *ref = NULL;
    sr_config cfg;
    sr_adapter_meta meta;
    sr_catalog cat;
    memset(&cfg, 0, sizeof cfg);
    memset(&meta, 0, sizeof meta);
    memset(&cat, 0, sizeof cat);
    json_t *cfg_json = NULL, *index_map = NULL, *skipped_mods = NULL;
    item *items = NULL;
    char partial[4096] = "", cfgpath[4096];
    int rc = -1, generic = 0, n_shards = 0;
    struct stat st;

    if (o->threads > 0) omp_set_num_threads(o->threads);
    remove_stale_partials(o->out_dir);
    if (!stat(o->out_dir, &st) && !o->force) {
        sr_fail(err, "%s already exists (use --force to replace it)", o->out_dir);
        goto out;
    }
    if (sr_ckpt_open(o->in_dir, &ck, err)) goto out;
    if (!sr_ckpt_has_config(ck)) {
        sr_fail(err, "%s: not a model directory (no config.json)", o->in_dir);
        goto out;
    }
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", sr_ckpt_dir(ck));
    json_error_t je;
    cfg_json = json_load_file(cfgpath, JSON_REJECT_DUPLICATES, &je);
    if (!cfg_json || !json_is_object(cfg_json)) {
        sr_fail(err, "%s: line %d: %s", cfgpath, je.line, cfg_json ? "not a JSON object" : je.text);
        goto out;
    }
    sr_bnb_config qc;
    sr_dtype model_dtype = SR_F32;
    memset(&qc, 0, sizeof qc);
    if (sr_quant_config_load(cfgpath, &qc, &model_dtype, err)) goto out;
    int in_quantized = qc.mode != SR_BNB_NONE;
    sr_bnb_config_free(&qc);
    if (!json_object_get(cfg_json, "model_type")) {
        generic = 1;
        sr_warn("%s has no model_type: converting as a generic model (every 2-D float *.weight "
                "that is not an embedding, a norm or lm_head is taken to be a Linear)", cfgpath);
    } else {
        if (sr_config_load(cfgpath, &cfg, err)) goto out;
        if (sr_adapter_meta_build(&cfg, &meta, err)) goto out;
        if (sr_catalog_build(ck, &cfg, &meta, &cat, err)) { sr_fail_prefix(err, "%s", o->in_dir); goto out; }
        in_quantized |= cat.quantized_4bit || cat.quantized_8bit;
    }
    if (in_quantized && o->quant != CQ_NONE) {
        sr_fail(err, "%s is already quantized (bitsandbytes); re-quantizing is refused. Use "
                "--quant none to dequantize it first", o->in_dir);
        goto out;
    }
    if (!in_quantized && o->quant == CQ_NONE) {
        sr_fail(err, "%s is not quantized: nothing to dequantize", o->in_dir);
        goto out;
    }
    if (o->quant != CQ_INT8 && o->quant != CQ_NONE && !sr_bnb4_blocksize_ok(o->blocksize)) {
        sr_fail(err, "--blocksize %d: bitsandbytes 4-bit takes 32, 64, ..., 4096", o->blocksize);
        goto out;
    }
    if (o->match_offsets && sr_ckpt_open(o->match_offsets, &ref, err)) goto out;

    /* Classify every tensor: copy, quantize, dequantize, or drop. */
    size_t n = sr_ckpt_count(ck), ni = 0;
    items = sr_calloc(n ? n : 1, sizeof *items);
    if (!items) { sr_fail(err, "out of memory"); goto out; }
    for (size_t i = 0; i < n; i++) {
        const sr_tensor *t = sr_ckpt_get(ck, i);
        const sr_catalog_entry *e = generic ? NULL : &cat.entries[i];
        r->bytes_in += t->nbytes;
        if (e && (e->role == SR_ROLE_DERIVED || e->unit == SR_UNIT_NONE)) {
            r->tensors_dropped++; /* derived metadata / a tied lm_head copy: never persisted */
            continue;
        }
        if (strlen(t->name) > CONVERT_NAME_MAX) {
            /* the companions' names (NAME.quant_state.bitsandbytes__nf4) and
             * the loader's lookups must not be cut short */
            sr_fail(err, "%s: tensor '%.60s...': a name of %zu bytes is longer than the %d "
                    "this converter handles", o->in_dir, t->name, strlen(t->name),
                    CONVERT_NAME_MAX);
            goto out;
        }
        item it = {.t = t, .act = A_COPY, .cls = e ? role_class(e->role) : CLS_OTHER};
        if (o->quant == CQ_NONE) {
            char key[1024], mod[1024];
            snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__nf4", t->name);
            int is4 = sr_ckpt_find(ck, key) != NULL;
            snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__fp4", t->name);
            is4 |= sr_ckpt_find(ck, key) != NULL;
            module_of(t->name, mod, sizeof mod);
            snprintf(key, sizeof key, "%s.SCB", mod);
            int is8 = t->dtype == SR_I8 && ends_with(t->name, ".weight") && sr_ckpt_find(ck, key);
            int companion = e ? (e->part != SR_PART_WEIGHT && e->part != SR_PART_BIAS &&
                                 e->part != SR_PART_LORA_A && e->part != SR_PART_LORA_B)
                              : (strstr(t->name, ".weight.") != NULL || ends_with(t->name, ".SCB") ||
                                 ends_with(t->name, ".weight_format"));
            if (companion) { r->tensors_dropped++; continue; }
            if (is4 || is8) {
                it.act = A_DEQUANT; /* at most 4 bytes per element, 2 elements per 4-bit byte */
                it.bound = is8 ? 4 * t->nbytes : 8 * t->nbytes;
            } else {
                it.bound = t->nbytes;
            }
        } else {
            int linear = generic ? generic_linear(t)
                                 : (e->part == SR_PART_WEIGHT && role_class(e->role) != CLS_OTHER);
            int skip = linear && skipped(o, t->name);
            if (skip) {         /* its module path goes into llm_int8_skip_modules */
                char mod[1024];
                module_of(t->name, mod, sizeof mod);
                if (!skipped_mods) skipped_mods = json_array();
                if (!skipped_mods || json_array_append_new(skipped_mods, json_string(mod))) {
                    sr_fail(err, "out of memory");
                    goto out;
                }
            }
            if (linear && !skip && t->ndim == 2 && is_float(t->dtype)) {
                it.act = A_QUANT;
                it.bound = quant_bound(o, t);
            } else {
                it.bound = t->nbytes;
            }
        }
        items[ni++] = it;
    }
    qsort(items, ni, sizeof *items, cmp_item);
    for (int k = 0; k < o->n_skip; k++) {      /* a typo would quantize what was meant */
        bool hit = false;
        for (size_t i = 0; i < json_array_size(skipped_mods) && !hit; i++)
            hit = skip_matches(json_string_value(json_array_get(skipped_mods, i)), o->skip[k]);
        if (!hit && strcmp(o->skip[k], "lm_head"))
            sr_warn("--skip %s: no Linear module has it as whole components of its path; "
                    "nothing left out for it", o->skip[k]);
    }

    /* Shards: fill up to --shard-size, keeping a weight's companions with it. */
    uint64_t acc = 0, total_bound = 0;
    n_shards = 1;
    for (size_t i = 0; i < ni; i++) {
        if (acc && acc + items[i].bound > o->shard_size) { n_shards++; acc = 0; }
        items[i].shard = n_shards - 1;
        acc += items[i].bound;
        total_bound += items[i].t->nbytes;
    }

    snprintf(partial, sizeof partial, "%s.partial-%ld", o->out_dir, (long)getpid());
    if (mkdir(partial, 0755)) {
        sr_fail(err, "%s: cannot create: %s", partial, strerror(errno));
        partial[0] = 0;
        goto out;
    }
    index_map = json_object();
    uint64_t done = 0, total_size = 0;
    size_t pos = 0;
    for (int s = 0; s < n_shards; s++) {
        char name[128], path[4096];
        shard_name(s, n_shards, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", partial, name);
        uint64_t reserve = 64;
        for (size_t i = pos; i < ni && items[i].shard == s; i++)
            reserve += (items[i].act == A_QUANT ? 6 : 1) * sw_entry_bound(items[i].t->name, 2) + 64;
        sw_shard *w;
        if (sw_open(path, reserve, &w, err)) goto out;
        for (; pos < ni && items[pos].shard == s; pos++) {
            const item *it = &items[pos];
            if (convert_interrupted) { sw_abort(w); sr_fail(err, "interrupted"); goto out; }
            if (it->act == A_COPY) {
                if (sw_add(w, it->t->name, it->t->dtype, it->t->ndim, it->t->shape, it->t->data,
                           it->t->nbytes, err)) { sw_abort(w); goto out; }
                json_object_set_new(index_map, it->t->name, json_string(name));
                total_size += it->t->nbytes;
                r->bytes_out += it->t->nbytes;
                r->tensors_kept++;
            } else {
                sr_qtensors q;
                if (produce(o, ref, it, model_dtype, ck, &q, err)) { sw_abort(w); goto out; }
                if (o->stats && it->act == A_QUANT) add_stats(r, it->cls, it->t, &q, o);
                for (size_t k = 0; k < q.count; k++) {
                    const sr_qtensor *qt = &q.t[k];
                    if (json_object_get(index_map, qt->name) ||
                        (strcmp(qt->name, it->t->name) && sr_ckpt_find(ck, qt->name))) {
                        sr_fail(err, "%s: quantizing '%s' would overwrite the input tensor '%s'",
                                o->in_dir, it->t->name, qt->name);
                        sr_qtensors_free(&q);
                        sw_abort(w);
                        goto out;
                    }
                    if (sw_add(w, qt->name, qt->dtype, qt->ndim, qt->shape, qt->data, qt->nbytes, err)) {
                        sr_qtensors_free(&q);
                        sw_abort(w);
                        goto out;
                    }
                    json_object_set_new(index_map, qt->name, json_string(name));
                    total_size += qt->nbytes;
                    r->bytes_out += qt->nbytes;
                }
                sr_qtensors_free(&q);
                if (it->act == A_QUANT) r->tensors_quantized++; else r->tensors_kept++;
            }
            done += it->t->nbytes;
            drop_pages(it->t);
            progress(o, done, total_bound, t0, 0);
        }
        if (sw_finish(w, NULL, err)) goto out;
        if (!o->quiet && !isatty(2))
            fprintf(stderr, "strata convert: wrote %s (%d/%d)\n", name, s + 1, n_shards);
    }
    progress(o, done, total_bound, t0, 1);

    /* Re-read every shard: headers parse, every tensor is where the index says. */
    for (int s = 0; s < n_shards; s++) {
        char name[128], path[4096];
        shard_name(s, n_shards, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", partial, name);
        sr_st_file *f;
        if (sr_st_open(path, &f, err)) { sr_fail_prefix(err, "re-reading the output"); goto out; }
        const char *key;
        json_t *v;
        size_t found = 0;
        json_object_foreach(index_map, key, v) {
            if (strcmp(json_string_value(v), name)) continue;
            if (!sr_st_find(f, key)) {
                sr_st_close(f);
                sr_fail(err, "re-reading %s: tensor '%s' is missing", path, key);
                goto out;
            }
            found++;
        }
        if (found != sr_st_count(f)) {
            sr_st_close(f);
            sr_fail(err, "re-reading %s: %zu tensors, expected %zu", path, sr_st_count(f), found);
            goto out;
        }
        sr_st_close(f);
        if (o->zstd_level > 0) {
            char zpath[4200];
            uint64_t zb = 0;
            snprintf(zpath, sizeof zpath, "%s.zst", path);
            if (sw_zstd_file(path, zpath, o->zstd_level, o->threads > 0 ? o->threads : omp_get_max_threads(),
                             &zb, err))
                goto out;
            r->bytes_zstd += zb;
            if (o->zstd_only) unlink(path);
        }
    }
    if (n_shards > 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", partial);
        json_t *ix = json_pack("{s:{s:I},s:O}", "metadata", "total_size", (json_int_t)total_size,
                               "weight_map", index_map);
        int bad = !ix || sr_io_fault(1) || json_dump_file(ix, path, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(ix);
        if (bad) { sr_fail(err, "%s: cannot write", path); goto out; }
    }
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", partial);
        if (write_config(o, cfg_json, model_dtype, skipped_mods, path, err)) goto out;
    }
    if (copy_other_files(sr_ckpt_dir(ck), partial, err)) goto out;
    {
        int dfd = open(partial, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) { sr_fsync(dfd); close(dfd); }
    }
    if (convert_interrupted) { sr_fail(err, "interrupted"); goto out; }
    if (o->force && !stat(o->out_dir, &st)) { /* move the old one aside, then replace */
        char old[4200];
        snprintf(old, sizeof old, "%s.old-%ld", o->out_dir, (long)getpid());
        if (rename(o->out_dir, old)) {
            sr_fail(err, "%s: cannot replace: %s", o->out_dir, strerror(errno));
            goto out;
        }
        if (rename(partial, o->out_dir)) {
            rename(old, o->out_dir);
            sr_fail(err, "%s: rename failed: %s", o->out_dir, strerror(errno));
            goto out;
        }
        if (remove_dir(old))
            sr_warn("%s: the replaced output is left at %s (it holds more than files)",
                    o->out_dir, old);
    } else if (convert_publish(partial, o->out_dir, err)) {
        goto out;
    }
    partial[0] = 0;
    r->shards = n_shards;
    rc = 0;
out:
    if (partial[0]) remove_dir(partial);
    r->seconds = now() - t0;
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru)) r->peak_rss_kib = ru.ru_maxrss;
    for (int c = 0; c < 3; c++) r->stats[c].name = cls_names[c];
    r->n_stats = 3;
    json_decref(index_map);
    json_decref(cfg_json);
    json_decref(skipped_mods);
    sr_free(items);
    sr_catalog_free(&cat);
    sr_adapter_meta_free(&meta);
    sr_config_free(&cfg);
    sr_ckpt_close(ref);
    sr_ckpt_close(ck);
    return rc;
}
