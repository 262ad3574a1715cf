/* CUDA benchmarks (run by tools/gpu_check.sh on a machine with a GPU; meson
 * `benchmark` bench_cuda).  Prints one line per measurement and, with
 * --json FILE, writes them all as JSON.
 *
 *   hbm        device-to-device copy bandwidth (read + write bytes / s): the
 *              practical HBM roofline the decode figures are compared with.
 *   decode     fused dequantize + GEMV (n = 1 and 8) per format on
 *              Granite-8B-sized matrices; GB/s of weight bytes
 *              (sr_qmatrix_bytes) + activations, and the ratio to hbm.
 *   prefill    n = 512 tokens: dequantized tiles + cuBLAS (f32 and bf16
 *              compute) in TFLOP/s, next to cuBLAS alone on bf16 weights of
 *              the same shape (the rate the tile path should approach).
 *   stream     streamed layers through 2 staging slots from pinned host
 *              memory, a decode GEMV over each slot overlapped with the copy
 *              of the next: bytes/s vs. the plain pinned host->device copy
 *              rate; and the HF-style anchor (accelerate's layer-by-layer
 *              offload: a synchronous copy from pageable memory, then the
 *              compute, no overlap) on the same layers.
 *
 * Times are host wall clock around enough calls (>= 0.3 s or 20 calls) after
 * a warm-up, with the stream synchronized at both ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_test.h"
#include "offload/device_cuda.h"
#include "quant/cuda/qmatmul_cuda.h"
#include "runtime/devices.h"

static FILE *json;
static int n_json;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void record(const char *group, const char *name, const char *unit, double value,
                   double ratio)
{
    printf("%-8s %-44s %10.2f %-8s", group, name, value, unit);
    if (ratio >= 0) printf("  ratio %.3f", ratio);
    printf("\n");
    fflush(stdout);
    if (json) {
        fprintf(json, "%s\n  {\"group\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"value\": %.6g",
                n_json++ ? "," : "", group, name, unit, value);
        if (ratio >= 0) fprintf(json, ", \"ratio\": %.6g", ratio);
        fprintf(json, "}");
    }
}

static void die(const char *what, const sr_error *e)
{
    fprintf(stderr, "bench_cuda: %s: %s\n", what, e->msg);
    exit(1);
}

/* Seconds per call of fn(arg), synchronizing ctx's stream. */
typedef int (*bench_fn)(void *arg, sr_error *e);
static double time_calls(bench_fn fn, void *arg, sr_cuda_ctx *c)
{
    sr_error e;
    for (int i = 0; i < 3; i++)
        if (fn(arg, &e)) die("warm-up", &e);
    if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
    int calls = 0;
    const double t0 = now();
    double t = t0;
    while (calls < 20 || t - t0 < 0.3) {
        if (fn(arg, &e)) die("call", &e);
        if (++calls % 10 == 0 || calls >= 20) {
            if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
            t = now();
        }
    }
    if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
    return (now() - t0) / calls;
}

/* ---- hbm -------------------------------------------------------------------- */

typedef struct copy_arg { sr_dbuf *a, *b; sr_stream *s; } copy_arg;
static int copy_once(void *p, sr_error *e)
{
    copy_arg *c = p;
    return sr_cuda_dev_copy(c->b, 0, c->a, 0, c->a->size, c->s, e);
}

static double bench_hbm(sr_device_set *set, sr_cuda_ctx *c)
{
    sr_error e;
    sr_dbuf a, b;
    const size_t n = (size_t)1 << 30;
    if (sr_dev_alloc(&set->gpu[0], n, &a, &e) || sr_dev_alloc(&set->gpu[0], n, &b, &e)) die("hbm", &e);
    sr_stream s = {&set->gpu[0], sr_cuda_ctx_stream(c)};    /* the context's stream */
    copy_arg arg = {&a, &b, &s};
    const double t = time_calls(copy_once, &arg, c);
    const double gbps = 2.0 * (double)n / t * 1e-9;
    record("hbm", "device-to-device copy, 1 GiB (read+write)", "GB/s", gbps, -1);
    sr_dev_free(&a);
    sr_dev_free(&b);
    return gbps;
}

/* ---- decode / prefill ----------------------------------------------------------- */

typedef struct mm_arg {
    sr_cuda_ctx *c;
    sr_qmatrix *w;
    float *x, *y;
    int64_t n;
    int decode;
    sr_cuda_dtype compute;
} mm_arg;

static int mm_once(void *p, sr_error *e)
{
    mm_arg *a = p;
    return a->decode ? sr_cuda_matmul_decode(a->c, a->w, a->x, a->n, a->w->cols, a->y, a->w->rows, e)
                     : sr_cuda_matmul_prefill(a->c, a->w, a->x, a->n, a->w->cols, a->y, a->w->rows,
                                              a->compute, e);
}

static void bench_matmuls(sr_cuda_ctx *c, double hbm)
{
    static const sr_wformat fmts[] = {SR_W_NF4, SR_W_FP4, SR_W_INT8, SR_W_BF16, SR_W_F32};
    static const int64_t shapes[][2] = {{4096, 4096}, {12800, 4096}, {4096, 12800}, {49152, 4096}};
    sr_error e;
    const int64_t max_n = 512;
    float *x = dev_alloc(sizeof(float) * (size_t)(max_n * 12800));
    float *y = dev_alloc(sizeof(float) * (size_t)(max_n * 49152));
    if (sr_cuda_memset(x, 0, sizeof(float) * (size_t)(max_n * 12800), &e)) die("memset", &e);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
            host_matrix h = host_matrix_rand(fmts[f], shapes[s][0], shapes[s][1], 64);
            sr_qmatrix d;
            if (sr_cuda_qmatrix_upload(&h.w, &d, &e)) die("upload", &e);
            host_matrix_free(&h);
            char name[96];
            for (int64_t n = 1; n <= 8; n += 7) {
                mm_arg a = {c, &d, x, y, n, 1, SR_CUDA_F32};
                const double t = time_calls(mm_once, &a, c);
                const double bytes = (double)sr_qmatrix_bytes(&d) + 4.0 * (double)n * (double)(d.rows + d.cols);
                snprintf(name, sizeof name, "%s %lldx%lld n=%lld", sr_wformat_name(d.fmt),
                         (long long)d.rows, (long long)d.cols, (long long)n);
                record("decode", name, "GB/s", bytes / t * 1e-9, bytes / t * 1e-9 / hbm);
            }
            if (fmts[f] == SR_W_NF4 || fmts[f] == SR_W_BF16) {
                for (int ct = 0; ct < 2; ct++) {
                    const sr_cuda_dtype compute = ct ? SR_CUDA_BF16 : SR_CUDA_F32;
                    mm_arg a = {c, &d, x, y, max_n, 0, compute};
                    const double t = time_calls(mm_once, &a, c);
                    snprintf(name, sizeof name, "%s %lldx%lld n=%lld %s%s", sr_wformat_name(d.fmt),
                             (long long)d.rows, (long long)d.cols, (long long)max_n,
                             sr_cuda_dtype_name(compute),
                             fmts[f] == SR_W_BF16 && ct ? " (cuBLAS alone)" : "");
                    record("prefill", name, "TFLOP/s",
                           2.0 * (double)max_n * (double)d.rows * (double)d.cols / t * 1e-12, -1);
                }
            }
            sr_cuda_qmatrix_free(&d);
        }
    }
    sr_cuda_free(x);
    sr_cuda_free(y);
}

/* ---- streaming ---------------------------------------------------------------------- */

static void bench_stream(sr_device_set *set, sr_cuda_ctx *c)
{
    enum { LAYERS = 24, SLOTS = 2 };
    const int64_t rows = 8192, cols = 8192, bs = 64;
    const size_t bytes = (size_t)(rows * cols / 2);      /* NF4 weights of one layer */
    sr_error e;
    sr_device *g = &set->gpu[0];
    /* pinned host layers, and the same bytes in pageable memory for the anchor */
    sr_cuda_pinned_pool pool;
    if (sr_cuda_pinned_pool_init(&pool, bytes * LAYERS + 256 * LAYERS, &e)) die("pinned pool", &e);
    void *layer[LAYERS];
    uint8_t *pageable = malloc(bytes * LAYERS);
    for (int j = 0; j < LAYERS; j++) {
        layer[j] = sr_cuda_pinned_pool_take(&pool, bytes);
        for (size_t i = 0; i < bytes; i += 4096) ((uint8_t *)layer[j])[i] = (uint8_t)(i + (size_t)j);
        memcpy(pageable + (size_t)j * bytes, layer[j], bytes);
    }
    const int64_t nb = rows * cols / bs;
    float *sc = rand_floats(nb, 1.0f);
    float *scales = dev_dup(sc, sizeof(float) * (size_t)nb);
    free(sc);
    float *x = dev_alloc(sizeof(float) * (size_t)cols), *y = dev_alloc(sizeof(float) * (size_t)rows);
    if (sr_cuda_memset(x, 0, sizeof(float) * (size_t)cols, &e)) die("memset", &e);
    sr_stream compute = {g, sr_cuda_ctx_stream(c)};

    /* plain pinned host -> device copy rate */
    sr_dbuf big;
    if (sr_dev_alloc(g, bytes * 4, &big, &e)) die("alloc", &e);
    double t0 = now();
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 4; j++)
            if (sr_cuda_dev_upload(&big, (size_t)j * bytes, layer[j], bytes, &compute, &e)) die("h2d", &e);
    if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
    const double h2d = 12.0 * (double)bytes / (now() - t0);
    record("stream", "pinned host->device copy", "GB/s", h2d * 1e-9, -1);

    /* staging: fill j+1 while layer j computes */
    sr_cuda_staging st;
    if (sr_cuda_staging_init(&st, g, SLOTS, bytes, &e)) die("staging", &e);
    sr_qmatrix w = {.fmt = SR_W_NF4, .rows = rows, .cols = cols, .blocksize = (int)bs, .scales = scales};
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now();
        if (sr_cuda_staging_fill(&st, 0, layer[0], bytes, &e)) die("fill", &e);
        for (int j = 0; j < LAYERS; j++) {
            if (j + 1 < LAYERS && sr_cuda_staging_fill(&st, (j + 1) % SLOTS, layer[j + 1], bytes, &e))
                die("fill", &e);
            if (sr_cuda_staging_acquire(&st, j % SLOTS, &compute, &e)) die("acquire", &e);
            w.data = st.slot[j % SLOTS].ptr;
            if (sr_cuda_matmul_decode(c, &w, x, 1, cols, y, rows, &e)) die("decode", &e);
            if (sr_cuda_staging_release(&st, j % SLOTS, &compute, &e)) die("release", &e);
        }
        if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
        const double rate = (double)LAYERS * (double)bytes / (now() - t0);
        if (rate > best) best = rate;
    }
    record("stream", "staged layers (2 slots, copy || decode)", "GB/s", best * 1e-9, best / h2d);

    /* HF-style anchor: synchronous copy from pageable memory, then compute */
    double anchor = 0;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now();
        for (int j = 0; j < LAYERS; j++) {
            if (sr_cuda_dev_upload(&st.slot[0], 0, pageable + (size_t)j * bytes, bytes, NULL, &e)) die("h2d", &e);
            w.data = st.slot[0].ptr;
            if (sr_cuda_matmul_decode(c, &w, x, 1, cols, y, rows, &e)) die("decode", &e);
            if (sr_cuda_ctx_sync(c, &e)) die("sync", &e);
        }
        const double rate = (double)LAYERS * (double)bytes / (now() - t0);
        if (rate > anchor) anchor = rate;
    }
    record("stream", "HF-style anchor (sync pageable copy, then compute)", "GB/s", anchor * 1e-9,
           anchor / h2d);
    record("stream", "staged / HF-style anchor", "x", best / anchor, -1);

    sr_cuda_staging_free(&st);
    sr_dev_free(&big);
    sr_cuda_free(scales);
    sr_cuda_free(x);
    sr_cuda_free(y);
    free(pageable);
    sr_cuda_pinned_pool_free(&pool);
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_cuda [--json FILE]\n");
            return 2;
        }
    }
    cuda_test_require_device();
    sr_device_info info[SR_MAX_DEVICES];
    char why[256];
    if (sr_list_devices(info, SR_MAX_DEVICES, why, (int)sizeof why) > 0)
        printf("device: %s (cc %d.%d, %.1f GiB)\n", info[0].name, info[0].cc_major, info[0].cc_minor,
               (double)info[0].total_bytes / (1 << 30));
    if (json_path && !(json = fopen(json_path, "w"))) {
        perror(json_path);
        return 1;
    }
    if (json) fprintf(json, "{\"device\": \"%s\", \"results\": [", info[0].name);
    sr_error e;
    sr_device_set set;
    if (sr_device_set_cuda(&set, 1, true, &e)) die("device set", &e);
    sr_cuda_ctx *c = ctx_new();
    const double hbm = bench_hbm(&set, c);
    bench_matmuls(c, hbm);
    bench_stream(&set, c);
    sr_cuda_ctx_free(c);
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    return 0;
}
