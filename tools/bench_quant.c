/* `strata bench quant`: the matmul kernels of every weight format.
 *
 * Decode (n = 1): weight GB/s = bytes the kernel must read (packed weights +
 * scales, sr_qmatrix_bytes) / time per call, compared with the read
 * bandwidth probe of the same run.  Enough copies of the matrix rotate to
 * make the working set exceed 4x the last-level cache, so the weights come
 * from DRAM as they do in a real model.
 * Prefill (n = 512): GFLOP/s (2 n rows cols / time) against OpenBLAS sgemm
 * on the same shape with f32 weights, same run; the opt-in bf16 path
 * (STRATA_PREFILL=bf16) is measured for nf4 as an extra row where the
 * linked OpenBLAS has cblas_sbgemm.
 * Quantize: the converter's own calls (sr_bnb4_quantize_tensor,
 * sr_int8_quantize_tensor) on a bf16 matrix of each shape, in GB/s of bf16
 * input: the rate `strata convert` can reach when its I/O keeps up.
 * bf16 decode is also measured over the exact kernels' 16-row tiles (row
 * "bf16 tiles", quant/bf16_tiles.h; AVX-512 CPUs), the layout a model that
 * runs on the CPU gets for its bf16 weights in either mode.
 * int8 (opt-in, STRATA_KERNELS=int8; only on CPUs with AVX-512 VNNI): the
 * same decode and prefill measurements through sr_matmul_int8 for nf4, fp4
 * and int8 weights (and untiled bf16 through the bf16-dot decode,
 * quant/decode_bf16dot.h, where the CPU has it), reported apart ("int8" in
 * the JSON), and again over their 16-row tiles (quant/qtile.h; rows "nf4 tiles", ...), the
 * layout a model that runs on the CPU gets under STRATA_KERNELS=int8.
 * Every timing is the best of several rounds after a warm-up, and every
 * kernel call is paired with a call of its reference right before it (a
 * bandwidth probe read of the same size, an sgemm on the same shape): other
 * load on the machine only makes numbers worse, never better, and it
 * drifts, so a kernel is compared with what its reference achieved under
 * the same load.  Each decode row also gives the kernel's rate on each copy
 * against a plain read of that copy's own bytes (`own`): on a VM the
 * probe's buffer can read faster than the matrices' memory does
 * (BENCHMARKS.md, quant section, "Decode, tenth pass"). */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/bf16_tiles.h"
#include "quant/decode_bf16dot.h"
#include "quant/matmul.h"
#include "quant/qmatrix.h"
#include "quant/qtile.h"
#include "quant/qwrite.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "tools/bandwidth.h"
#include "tools/weight_regions.h"
#include "tools/commands.h"

typedef struct bench_format {
    const char *label;
    sr_wformat fmt;
} bench_format;

/* nf4+dq runs the nf4 kernel: double-quantized scales are reconstructed to
 * f32 once at load, so the kernel reads the same bytes. */
static const bench_format formats[] = {
    {"nf4", SR_W_NF4},   {"nf4+dq", SR_W_NF4}, {"fp4", SR_W_FP4}, {"int8", SR_W_INT8},
    {"bf16", SR_W_BF16}, {"f16", SR_W_F16},    {"f32", SR_W_F32},
};
#define NFORMATS (sizeof formats / sizeof *formats)

typedef struct options {
    int threads, json, quick;
} options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rng_unit(void) { return (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0); }

/* One random matrix: data, scales (4-bit) or SCB (int8) in one buffer. */
typedef struct bench_matrix {
    sr_qmatrix w;
    void *mem;
    size_t size;
} bench_matrix;

static int make_matrix(bench_matrix *m, sr_wformat fmt, int64_t rows, int64_t cols)
{
    memset(m, 0, sizeof *m);
    sr_qmatrix *w = &m->w;
    w->fmt = fmt;
    w->rows = rows;
    w->cols = cols;
    w->blocksize = 64; /* transformers' only 4-bit blocksize */
    uint64_t n = (uint64_t)(rows * cols);
    uint64_t bytes = sr_qmatrix_bytes(w);
    /* Scales after the data, 64-byte aligned. */
    uint64_t data_bytes = bytes;
    if (fmt == SR_W_NF4 || fmt == SR_W_FP4) data_bytes = (n + 1) / 2;
    if (fmt == SR_W_INT8) data_bytes = n;
    uint64_t off = (data_bytes + 63) & ~(uint64_t)63;
    m->size = (size_t)(off + (bytes - data_bytes));
    m->mem = sr_malloc_aligned(m->size);
    if (!m->mem) return -1;
    uint8_t *p = m->mem;
    switch (fmt) {
    case SR_W_F32:
        for (uint64_t i = 0; i < n; i++) ((float *)p)[i] = rng_unit();
        break;
    case SR_W_BF16:
        for (uint64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = sr_f32_to_bf16(rng_unit());
        break;
    case SR_W_F16:
        for (uint64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = sr_f32_to_f16(rng_unit());
        break;
    default: /* 4-bit nibbles or int8 codes: random bytes */
        for (uint64_t i = 0; i < data_bytes; i += 8) {
            uint64_t r = rng_next();
            memcpy(p + i, &r, data_bytes - i < 8 ? data_bytes - i : 8);
        }
        break;
    }
    float *s = (float *)(p + off);
    for (uint64_t i = 0; i < (bytes - data_bytes) / 4; i++) s[i] = 0.01f + fabsf(rng_unit());
    w->data = p;
    if (fmt == SR_W_NF4 || fmt == SR_W_FP4) w->scales = s;
    if (fmt == SR_W_INT8) w->scb = s;
    return 0;
}

static int clone_matrix(bench_matrix *dst, const bench_matrix *src)
{
    *dst = *src;
    dst->mem = sr_malloc_aligned(src->size);
    if (!dst->mem) return -1;
    memcpy(dst->mem, src->mem, src->size);
    ptrdiff_t moved = (uint8_t *)dst->mem - (uint8_t *)src->mem;
    dst->w.data = (const uint8_t *)src->w.data + moved;
    if (src->w.scales) dst->w.scales = (const float *)((const uint8_t *)src->w.scales + moved);
    if (src->w.scb) dst->w.scb = (const float *)((const uint8_t *)src->w.scb + moved);
    return 0;
}

static float *random_floats(int64_t count)
{
    float *v = sr_malloc_aligned((size_t)count * sizeof(float));
    if (v)
        for (int64_t i = 0; i < count; i++) v[i] = rng_unit();
    return v;
}

typedef void (*bench_fn)(void *ctx);

/* Alternates ref and fn: one warm-up each, then rounds until both
 * min_runs and min_seconds are reached; best seconds of each. */
static void best_pair(bench_fn ref, void *ref_ctx, bench_fn fn, void *ctx, int min_runs,
                      double min_seconds, double *best_ref, double *best)
{
    ref(ref_ctx);
    fn(ctx);
    *best_ref = *best = 1e30;
    double start = now_s();
    for (int r = 0; r < min_runs || (now_s() - start < min_seconds && r < 1000); r++) {
        double t0 = now_s();
        ref(ref_ctx);
        double t1 = now_s();
        fn(ctx);
        double t2 = now_s();
        if (t1 - t0 < *best_ref) *best_ref = t1 - t0;
        if (t2 - t1 < *best) *best = t2 - t1;
    }
}

/* Probe passes, remembering the best GB/s of the whole run. */
typedef struct probe_ctx {
    bw_probe probe;
    double best_gbps;
} probe_ctx;

static void run_probe(void *p)
{
    probe_ctx *c = p;
    double g = bw_probe_pass(&c->probe);
    if (g > c->best_gbps) c->best_gbps = g;
}

/* Decode: every call (on the next copy) is timed on its own and paired
 * with a probe read of the same number of bytes just before it.  Single
 * calls are short, so some of them find both cores free even on a busy
 * machine; the probe reads are as short, so they have the same chance. */
typedef struct decode_ctx {
    bench_matrix *copies;
    int ncopies;
    const float *x;
    float *y;
    sr_isa isa;
    int int8; /* the opt-in int8 kernels instead of the exact ones */
    bw_probe *probe;
    double best_call, best_probe_gbps;
    double *paired; /* each call's GB/s over its probe read's (read bytes) */
    int npaired, cap;
    uint64_t read_bytes;
    /* Per copy: the kernel's GB/s (read bytes) over its calls and a plain
     * read's GB/s of the same copy's bytes (tools/weight_regions.h), taken
     * half a round after its call so the copy comes from DRAM:
     * OWN_CAP values each, copy-major. */
    double *own_kernel, *own_plain;
    int *n_own_kernel, *n_own_plain;
} decode_ctx;

enum { OWN_CAP = 1024 };

/* A plain read of copy c's kernel bytes: GB/s. */
static double plain_read(const decode_ctx *c, int copy)
{
    bw_region r[SR_WEIGHT_REGIONS_MAX];
    const int n = sr_weight_regions(&c->copies[copy].w, c->copies[copy].w.tiles != NULL, r);
    uint64_t sum;
    const double g = bw_read_regions(r, (size_t)n, c->probe->threads, &sum);
    c->probe->checksum += sum;
    return g;
}

static void own_add(double *v, int *n, int copy, double g)
{
    if (n[copy] < OWN_CAP) v[(size_t)copy * OWN_CAP + (size_t)n[copy]++] = g;
}

static void run_decode_round(decode_ctx *c)
{
    for (int i = 0; i < c->ncopies; i++) {
        const sr_qmatrix *w = &c->copies[i].w;
        double g = bw_probe_read(c->probe, sr_qmatrix_bytes(w));
        if (g > c->best_probe_gbps) c->best_probe_gbps = g;
        double t0 = now_s();
        if (!c->int8 && w->tiles) sr_bf16tiles_decode(w, c->x, 1, w->cols, c->y, w->rows);
        else if (c->int8 && w->fmt == SR_W_BF16)
            sr_bf16dot_decode(w->data, w->rows, w->cols, c->x, c->y);
        else if (c->int8) sr_matmul_int8(w, c->x, 1, w->cols, c->y, w->rows);
        else sr_matmul_decode(w, c->x, 1, w->cols, c->y, w->rows, c->isa);
        double dt = now_s() - t0;
        if (dt < c->best_call) c->best_call = dt;
        if (c->npaired < c->cap) c->paired[c->npaired++] = (double)c->read_bytes / dt * 1e-9 / g;
        if (c->ncopies >= 2) { /* the copy half a round away: out of cache since its call */
            const int j = (i + c->ncopies / 2) % c->ncopies;
            own_add(c->own_kernel, c->n_own_kernel, i, (double)c->read_bytes / dt * 1e-9);
            own_add(c->own_plain, c->n_own_plain, j, plain_read(c, j));
        }
    }
}

/* The median over the copies of (median kernel GB/s / median plain-read
 * GB/s) of each copy; 0 if there are none. */
static double own_ratio(decode_ctx *c)
{
    double r[64];
    int n = 0;
    for (int k = 0; k < c->ncopies && n < 64; k++) {
        double *kv = c->own_kernel + (size_t)k * OWN_CAP, *pv = c->own_plain + (size_t)k * OWN_CAP;
        const double pm = bw_paired_quantile(pv, (size_t)c->n_own_plain[k], 0.5);
        if (c->n_own_kernel[k] && pm > 0)
            r[n++] = bw_paired_quantile(kv, (size_t)c->n_own_kernel[k], 0.5) / pm;
    }
    return bw_paired_quantile(r, (size_t)n, 0.5);
}

typedef struct prefill_ctx {
    const sr_qmatrix *w;
    const float *x;
    float *y;
    int64_t n;
    sr_isa isa;
    int int8;
} prefill_ctx;

static void run_prefill(void *p)
{
    prefill_ctx *c = p;
    if (c->int8) sr_matmul_int8(c->w, c->x, c->n, c->w->cols, c->y, c->w->rows);
    else sr_matmul_prefill(c->w, c->x, c->n, c->w->cols, c->y, c->w->rows, c->isa);
}

/* Formats the int8 kernels take (nf4+dq runs the nf4 kernel). */
static int int8_format(const bench_format *f)
{
    return strcmp(f->label, "nf4+dq") && (f->fmt == SR_W_NF4 || f->fmt == SR_W_FP4 ||
                                          f->fmt == SR_W_INT8);
}

static void run_sgemm(void *p)
{
    prefill_ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)c->n, (blasint)c->w->rows,
                (blasint)c->w->cols, 1.0f, c->x, (blasint)c->w->cols, c->w->data,
                (blasint)c->w->cols, 0.0f, c->y, (blasint)c->w->rows);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: strata bench quant [--threads N] [--json] [--quick]\n"
            "  --threads N  OpenMP threads for kernels and the bandwidth probe (default: all)\n"
            "  --json       one JSON object on stdout instead of tables\n"
            "  --quick      small shapes and few runs (a smoke test, not a measurement)\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) o->json = 1;
        else if (!strcmp(argv[i], "--quick")) o->quick = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 1024) {
                fprintf(stderr, "strata bench quant: --threads: '%s' is not a thread count\n",
                        argv[i]);
                return 2;
            }
            o->threads = (int)t;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "strata bench quant: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

static int oom(const char *what)
{
    fprintf(stderr, "strata bench quant: out of memory (%s)\n", what);
    return 1;
}

/* The 4-bit formats' 16-row tiles (quant/qtile.h) on every copy, as a model
 * that runs on the CPU has them under STRATA_KERNELS=int8. */
static int make_tiles(bench_matrix *copies, int n)
{
    for (int i = 0; i < n; i++)
        if (sr_qtile_make(&copies[i].w)) return -1;
    return 0;
}

static void free_copies(bench_matrix *copies, int n)
{
    for (int i = 0; i < n; i++) {
        sr_free_aligned(copies[i].w.tile_buf);
        sr_free_aligned(copies[i].mem);
    }
}

/* Decode rows for one shape: appends to `out`.  tiles: over tiled
 * matrices (rows labelled "nf4 tiles", ...): the int8 kernels over 4-bit
 * and LLM.int8 ones, or (int8 = 0) the exact kernel over bf16 ones. */
static int bench_decode(const options *o, int64_t rows, int64_t cols, probe_ctx *probe,
                        sr_isa isa, int int8, int tiles, json_t *out)
{
    float *x = random_floats(cols), *y = random_floats(rows);
    if (!x || !y) {
        sr_free_aligned(x);
        sr_free_aligned(y);
        return oom("activations");
    }
    int rc = 0;
    for (size_t f = 0; f < NFORMATS && !rc; f++) {
        /* bf16 under the int8 kernels: the LM head's bf16-dot decode */
        const int bf16dot = int8 && !tiles && formats[f].fmt == SR_W_BF16 &&
                            cols <= SR_BF16DOT_MAX_COLS && sr_bf16dot_available();
        if (int8 && !int8_format(&formats[f]) && !bf16dot) continue;
        if (!int8 && tiles && formats[f].fmt != SR_W_BF16) continue;
        bench_matrix first;
        if (make_matrix(&first, formats[f].fmt, rows, cols)) {
            rc = oom(formats[f].label);
            break;
        }
        uint64_t bytes = sr_qmatrix_bytes(&first.w);
        int ncopies = (int)((4 * probe->probe.llc_bytes + bytes - 1) / bytes);
        if (ncopies < 1) ncopies = 1;
        if (ncopies > (o->quick ? 2 : 64)) ncopies = o->quick ? 2 : 64;
        bench_matrix *copies = sr_calloc((size_t)ncopies, sizeof *copies);
        if (!copies) {
            sr_free_aligned(first.mem);
            rc = oom("copies");
            break;
        }
        copies[0] = first;
        int made = 1;
        for (; made < ncopies; made++)
            if (clone_matrix(&copies[made], &first)) break;
        ncopies = made; /* fewer copies if memory is short: still correct, maybe cached */
        if (tiles && make_tiles(copies, ncopies)) {
            free_copies(copies, ncopies);
            sr_free(copies);
            rc = oom("tiles");
            break;
        }
        /* Tiles hold f16 block scales: the kernel reads fewer bytes than
         * the stored matrix has; both rates are reported. */
        const uint64_t read = tiles ? sr_qtile_bytes(&copies[0].w) : bytes;
        enum { PAIRED_CAP = 1 << 14 };
        double *paired = sr_malloc_aligned(PAIRED_CAP * sizeof(double));
        double *own = sr_calloc(2 * (size_t)ncopies * OWN_CAP, sizeof(double));
        int *n_own = sr_calloc(2 * (size_t)ncopies, sizeof(int));
        if (!paired || !own || !n_own) {
            sr_free_aligned(paired);
            sr_free(own);
            sr_free(n_own);
            free_copies(copies, ncopies);
            sr_free(copies);
            rc = oom("paired");
            break;
        }
        decode_ctx ctx = {.copies = copies, .ncopies = ncopies, .x = x, .y = y, .isa = isa,
                          .int8 = int8, .probe = &probe->probe, .best_call = 1e30,
                          .paired = paired, .cap = PAIRED_CAP, .read_bytes = read,
                          .own_kernel = own, .own_plain = own + (size_t)ncopies * OWN_CAP,
                          .n_own_kernel = n_own, .n_own_plain = n_own + ncopies};
        run_decode_round(&ctx); /* warm-up */
        ctx.best_call = 1e30;
        ctx.best_probe_gbps = 0;
        ctx.npaired = 0;
        memset(n_own, 0, 2 * (size_t)ncopies * sizeof *n_own);
        double start = now_s();
        for (int r = 0; r < (o->quick ? 2 : 8) || (!o->quick && now_s() - start < 1.0); r++)
            run_decode_round(&ctx);
        double t = ctx.best_call, bw = ctx.best_probe_gbps;
        if (bw > probe->best_gbps) probe->best_gbps = bw;
        double gbps = (double)bytes / t * 1e-9;
        /* best against best mixes minutes where the host's bandwidth moves
         * (BENCHMARKS.md); the median of the calls each against the probe
         * read just before it does not */
        const double paired_med = bw_paired_quantile(paired, (size_t)ctx.npaired, 0.5);
        const double own_med = own_ratio(&ctx);
        sr_free_aligned(paired);
        sr_free(own);
        sr_free(n_own);
        char label[32];
        snprintf(label, sizeof label, "%s%s", formats[f].label,
                 tiles ? " tiles" : bf16dot ? " dot" : "");
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:I, s:I, s:i, s:I, s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f,"
                           " s:f}",
                           "format", label, "mode", int8 ? "int8" : "exact", "rows",
                           (json_int_t)rows, "cols", (json_int_t)cols, "n", 1, "bytes",
                           (json_int_t)bytes, "read_bytes", (json_int_t)read, "copies",
                           ncopies, "us_per_call", t * 1e6, "weight_gbps", gbps,
                           "bandwidth_gbps", bw, "ratio_to_bandwidth", gbps / bw,
                           "read_ratio_to_bandwidth", (double)read / t * 1e-9 / bw,
                           "paired_read_ratio_median", paired_med, "own_read_ratio_median",
                           own_med));
        free_copies(copies, ncopies);
        sr_free(copies);
    }
    sr_free_aligned(x);
    sr_free_aligned(y);
    return rc;
}

static int bench_prefill(const options *o, int64_t rows, int64_t cols, int64_t n, sr_isa isa,
                         int int8, int tiles, json_t *out)
{
    int runs = o->quick ? 1 : 3;
    double min_s = 0, flops = 2.0 * (double)n * (double)rows * (double)cols;
    float *x = random_floats(n * cols), *y = random_floats(n * rows);
    bench_matrix ref;
    if (!x || !y || make_matrix(&ref, SR_W_F32, rows, cols)) {
        sr_free_aligned(x);
        sr_free_aligned(y);
        return oom("prefill buffers");
    }
    /* sgemm writes its own output: the kernel's y stays for the kernel. */
    float *ysg = random_floats(n * rows);
    if (!ysg) {
        sr_free_aligned(x);
        sr_free_aligned(y);
        sr_free_aligned(ref.mem);
        return oom("prefill buffers");
    }
    prefill_ctx sg = {&ref.w, x, ysg, n, isa, 0};

    int rc = 0;
    /* The extra last row: nf4 through the opt-in bf16 path, if OpenBLAS has it. */
    size_t nrows = sr_matmul_bf16_available() && !int8 ? NFORMATS + 1 : NFORMATS;
    for (size_t f = 0; f < nrows && !rc; f++) {
        int bf16 = f == NFORMATS;
        const bench_format *bf = bf16 ? &formats[0] : &formats[f];
        if (int8 && !int8_format(bf)) continue;
        bench_matrix m;
        if (make_matrix(&m, bf->fmt, rows, cols)) {
            rc = oom(bf->label);
            break;
        }
        if (tiles && make_tiles(&m, 1)) {
            free_copies(&m, 1);
            rc = oom("tiles");
            break;
        }
        if (bf16) setenv("STRATA_PREFILL", "bf16", 1);
        else unsetenv("STRATA_PREFILL");
        prefill_ctx ctx = {&m.w, x, y, n, isa, int8};
        double t_sgemm, t;
        best_pair(run_sgemm, &sg, run_prefill, &ctx, runs, min_s, &t_sgemm, &t);
        unsetenv("STRATA_PREFILL");
        double gflops = flops / t * 1e-9, sgemm_gflops = flops / t_sgemm * 1e-9;
        char label[32];
        snprintf(label, sizeof label, "%s%s", bf->label, tiles ? " tiles" : "");
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "format", label,
                           "mode", int8 ? "int8" : bf16 ? "bf16" : "f32", "rows", (json_int_t)rows, "cols",
                           (json_int_t)cols, "n", (json_int_t)n, "ms_per_call", t * 1e3,
                           "gflops", gflops, "sgemm_gflops", sgemm_gflops, "ratio_to_sgemm",
                           gflops / sgemm_gflops));
        free_copies(&m, 1);
    }
    sr_free_aligned(ref.mem);
    sr_free_aligned(ysg);
    sr_free_aligned(x);
    sr_free_aligned(y);
    return rc;
}

/* The converter's quantization of one bf16 matrix per format (4-bit with
 * CUDA rules, blocksize 64 as transformers writes it).  Best of 3 after a
 * warm-up; outputs are freed between calls as the converter frees them. */
static int bench_quantize(const options *o, int64_t rows, int64_t cols, json_t *out)
{
    static const struct {
        const char *label;
        int four, fp4, dq;
    } kinds[] = {{"nf4", 1, 0, 0}, {"nf4+dq", 1, 0, 1}, {"fp4", 1, 1, 0}, {"int8", 0, 0, 0}};
    const int64_t n = rows * cols, shape[2] = {rows, cols};
    uint16_t *in = sr_malloc_aligned((size_t)n * 2);
    if (!in) return oom("quantize input");
    for (int64_t i = 0; i < n; i++) in[i] = sr_f32_to_bf16(rng_unit());
    int rc = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds && !rc; k++) {
        sr_bnb4_options bo = sr_bnb4_defaults();
        bo.quant_type = kinds[k].fp4 ? SR_Q4_FP4 : SR_Q4_NF4;
        bo.blocksize = 64;
        bo.double_quant = kinds[k].dq;
        double best = 1e30;
        for (int r = 0; r < (o->quick ? 2 : 4) && !rc; r++) {
            sr_qtensors q;
            sr_error err;
            double t0 = now_s();
            rc = kinds[k].four ? sr_bnb4_quantize_tensor("w.weight", in, SR_BF16, 2, shape, &bo,
                                                         &q, &err)
                               : sr_int8_quantize_tensor("w.weight", in, SR_BF16, 2, shape, &q,
                                                         &err);
            double t = now_s() - t0;
            if (rc) {
                fprintf(stderr, "strata bench quant: quantize %s: %s\n", kinds[k].label,
                        err.msg);
                break;
            }
            sr_qtensors_free(&q);
            if (r && t < best) best = t; /* round 0 warms up */
        }
        if (rc) break;
        double gbps = (double)n * 2 / best * 1e-9;
        json_array_append_new(out, json_pack("{s:s, s:I, s:I, s:f, s:f}", "format",
                                             kinds[k].label, "rows", (json_int_t)rows, "cols",
                                             (json_int_t)cols, "ms_per_call", best * 1e3,
                                             "input_gbps", gbps));
    }
    sr_free_aligned(in);
    return rc;
}

static void print_decode_rows(const json_t *rows)
{
    size_t i;
    json_t *r;
    printf("%-10s %11s %9s %7s %10s %8s %8s %8s %8s %8s %8s\n", "format", "rows x cols", "MiB",
           "copies", "us/call", "GB/s", "bw", "% of bw", "read %", "paired", "own");
    json_array_foreach(rows, i, r) {
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld",
                 (long long)json_integer_value(json_object_get(r, "rows")),
                 (long long)json_integer_value(json_object_get(r, "cols")));
        printf("%-10s %11s %9.2f %7lld %10.1f %8.2f %8.2f %7.1f%% %7.1f%% %7.1f%% %7.1f%%\n",
               json_string_value(json_object_get(r, "format")), shape,
               (double)json_integer_value(json_object_get(r, "bytes")) / (1 << 20),
               (long long)json_integer_value(json_object_get(r, "copies")),
               json_real_value(json_object_get(r, "us_per_call")),
               json_real_value(json_object_get(r, "weight_gbps")),
               json_real_value(json_object_get(r, "bandwidth_gbps")),
               100 * json_real_value(json_object_get(r, "ratio_to_bandwidth")),
               100 * json_real_value(json_object_get(r, "read_ratio_to_bandwidth")),
               100 * json_real_value(json_object_get(r, "paired_read_ratio_median")),
               100 * json_real_value(json_object_get(r, "own_read_ratio_median")));
    }
}

static void print_prefill_rows(const json_t *rows)
{
    size_t i;
    json_t *r;
    printf("%-9s %-5s %11s %5s %10s %9s %9s %8s\n", "format", "mode", "rows x cols", "n",
           "ms/call", "GFLOP/s", "sgemm", "% sgemm");
    json_array_foreach(rows, i, r) {
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld",
                 (long long)json_integer_value(json_object_get(r, "rows")),
                 (long long)json_integer_value(json_object_get(r, "cols")));
        printf("%-9s %-5s %11s %5lld %10.2f %9.1f %9.1f %7.1f%%\n",
               json_string_value(json_object_get(r, "format")),
               json_string_value(json_object_get(r, "mode")), shape,
               (long long)json_integer_value(json_object_get(r, "n")),
               json_real_value(json_object_get(r, "ms_per_call")),
               json_real_value(json_object_get(r, "gflops")),
               json_real_value(json_object_get(r, "sgemm_gflops")),
               100 * json_real_value(json_object_get(r, "ratio_to_sgemm")));
    }
}

static void print_quantize_rows(const json_t *rows)
{
    size_t i;
    json_t *r;
    printf("%-8s %11s %10s %14s\n", "format", "rows x cols", "ms/call", "bf16 in GB/s");
    json_array_foreach(rows, i, r) {
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld",
                 (long long)json_integer_value(json_object_get(r, "rows")),
                 (long long)json_integer_value(json_object_get(r, "cols")));
        printf("%-8s %11s %10.2f %14.2f\n", json_string_value(json_object_get(r, "format")),
               shape, json_real_value(json_object_get(r, "ms_per_call")),
               json_real_value(json_object_get(r, "input_gbps")));
    }
}

static void print_tables(const json_t *j)
{
    const json_t *bw = json_object_get(j, "bandwidth");
    printf("strata bench quant: %s, %lld threads, isa %s, LLC %.0f MiB\n",
           json_string_value(json_object_get(j, "cpu")),
           (long long)json_integer_value(json_object_get(j, "threads")),
           json_string_value(json_object_get(j, "isa")),
           (double)json_integer_value(json_object_get(bw, "llc_bytes")) / (1 << 20));
    printf("read bandwidth probe: best %.1f GB/s (%.0f MiB buffer)\n\n",
           json_real_value(json_object_get(bw, "gbps")),
           (double)json_integer_value(json_object_get(bw, "buffer_bytes")) / (1 << 20));
    printf("decode (n=1): weight GB/s = (packed weights + scales) / time per call;\n"
           "bw = probe reads of the same size interleaved with the calls of that row;\n"
           "read %% = the bytes the kernel reads instead (fewer for tiles: f16 scales);\n"
           "paired = median over the calls of read bytes / time against the probe read\n"
           "just before each call; own = the kernel's median rate on each copy against a\n"
           "plain read of that copy's bytes (median over the copies)\n");
    print_decode_rows(json_object_get(j, "decode"));
    printf("\nprefill: GFLOP/s against OpenBLAS sgemm on the same shape with f32 weights,\n"
           "sgemm calls interleaved with the rounds of that row%s\n",
           json_is_true(json_object_get(j, "bf16_prefill_available"))
               ? ""
               : "\n(no bf16 rows: this OpenBLAS has no cblas_sbgemm)");
    print_prefill_rows(json_object_get(j, "prefill"));
    printf("\nquantize (the converter's path, bf16 input, CUDA rules, blocksize 64)\n");
    print_quantize_rows(json_object_get(j, "quantize"));
    const json_t *i8 = json_object_get(j, "int8");
    if (json_is_object(i8)) {
        printf("\nint8 kernels (opt-in, STRATA_KERNELS=int8: int8 activations, int8 code "
               "tables)\n");
        print_decode_rows(json_object_get(i8, "decode"));
        print_prefill_rows(json_object_get(i8, "prefill"));
    } else {
        printf("\n(no int8 rows: this CPU has no AVX-512 VNNI)\n");
    }
}

/* "model name" of /proc/cpuinfo, for the record. */
static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, "model name", 10)) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

int bench_quant(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    if (o.threads) omp_set_num_threads(o.threads);
    int threads = omp_get_max_threads();
    sr_isa isa = sr_isa_detect();
    /* The real model shapes (hidden 2560, MLP 8192); --quick: tiny ones. */
    const int64_t shapes[2][2] = {{2560, 8192}, {8192, 2560}};
    const int64_t quick_shapes[2][2] = {{256, 512}, {512, 256}};
    const int64_t(*sh)[2] = o.quick ? quick_shapes : shapes;
    int64_t prefill_n = o.quick ? 32 : 512;

    probe_ctx probe = {.best_gbps = 0};
    if (bw_probe_open(&probe.probe, threads)) return oom("bandwidth probe");
    for (int r = 0; r < (o.quick ? 2 : 10); r++) run_probe(&probe);
    json_t *decode = json_array(), *prefill = json_array();
    const int int8 = sr_matmul_int8_available();
    json_t *decode8 = json_array(), *prefill8 = json_array();
    if (!o.json) fprintf(stderr, "strata bench quant: decode...\n");
    const int bf16_tiles = isa == SR_ISA_AVX512 && sr_bf16tiles_available();
    for (int s = 0; s < 2 && !rc; s++)
        for (int tiles = 0; tiles <= bf16_tiles && !rc; tiles++)
            rc = bench_decode(&o, sh[s][0], sh[s][1], &probe, isa, 0, tiles, decode);
    for (int s = 0; s < 2 && !rc && int8; s++)
        for (int tiles = 0; tiles < 2 && !rc; tiles++)
            rc = bench_decode(&o, sh[s][0], sh[s][1], &probe, isa, 1, tiles, decode8);
    uint64_t probe_bytes = probe.probe.buffer_bytes, llc = probe.probe.llc_bytes;
    bw_probe_close(&probe.probe); /* its memory is better used by prefill */
    if (!o.json && !rc) fprintf(stderr, "strata bench quant: prefill...\n");
    for (int s = 0; s < 2 && !rc; s++)
        rc = bench_prefill(&o, sh[s][0], sh[s][1], prefill_n, isa, 0, 0, prefill);
    for (int s = 0; s < 2 && !rc && int8; s++)
        for (int tiles = 0; tiles < 2 && !rc; tiles++)
            rc = bench_prefill(&o, sh[s][0], sh[s][1], prefill_n, isa, 1, tiles, prefill8);
    json_t *quantize = json_array();
    if (!o.json && !rc) fprintf(stderr, "strata bench quant: quantize...\n");
    for (int s = 0; s < 2 && !rc; s++) rc = bench_quantize(&o, sh[s][0], sh[s][1], quantize);
    if (rc) {
        json_decref(quantize);
        json_decref(decode);
        json_decref(prefill);
        json_decref(decode8);
        json_decref(prefill8);
        return rc;
    }
    json_t *int8_rows = json_null();
    if (int8) int8_rows = json_pack("{s:o, s:o}", "decode", decode8, "prefill", prefill8);
    else {
        json_decref(decode8);
        json_decref(prefill8);
    }
    char cpu[128];
    cpu_model(cpu, sizeof cpu);
    json_t *j = json_pack("{s:s, s:i, s:s, s:b, s:{s:f, s:I, s:I}, s:o, s:o, s:o, s:o}", "cpu", cpu,
                          "threads", threads, "isa", sr_isa_name(isa), "bf16_prefill_available",
                          sr_matmul_bf16_available(), "bandwidth", "gbps", probe.best_gbps,
                          "buffer_bytes", (json_int_t)probe_bytes, "llc_bytes",
                          (json_int_t)llc, "decode", decode, "prefill",
                          prefill, "quantize", quantize, "int8", int8_rows);
    if (!j) return oom("report");
    if (o.json) {
        json_dumpf(j, stdout, JSON_INDENT(1));
        putchar('\n');
    } else {
        print_tables(j);
    }
    json_decref(j);
    return 0;
}
