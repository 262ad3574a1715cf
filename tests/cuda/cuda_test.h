/* Helpers shared by the CUDA tests: the skip rule, random data, host
 * matrices in every format, device buffers that fail the test on error.
 *
 * Without a usable CUDA device a test prints "skipped: no CUDA device" and
 * exits with 77 (meson's skip code) before running anything. */
#ifndef SR_TEST_CUDA_TEST_H
#define SR_TEST_CUDA_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bnb4.h"
#include "quant/qmatrix.h"
#include "runtime/cuda/cuda_ctx.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

static inline void cuda_test_require_device(void)
{
    char why[256] = "";
    if (sr_cuda_device_count(why, sizeof why) <= 0) {
        printf("skipped: no CUDA device (%s)\n", why);
        fflush(stdout);
        exit(77);
    }
}

/* ---- random numbers (splitmix64) ---------------------------------------- */

static uint64_t cuda_test_rng = 0x9e3779b97f4a7c15ull;

static inline uint64_t rng_next(void)
{
    uint64_t z = (cuda_test_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float rng_unit(void) { return (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0); }

static inline int rng_int(int n) { return (int)(rng_next() % (uint64_t)n); }

static inline float *rand_floats(int64_t n, float scale)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = rng_unit() * scale;
    return x;
}

/* ---- device buffers ------------------------------------------------------ */

static inline void cuda_test_die(const char *what, const sr_error *e)
{
    fprintf(stderr, "%s: %s\n", what, e->msg);
    exit(1);
}

static inline void *dev_dup(const void *host, size_t n)
{
    sr_error e;
    void *p = sr_cuda_dup(host, n, &e);
    if (!p) cuda_test_die("sr_cuda_dup", &e);
    return p;
}

static inline void *dev_alloc(size_t n)
{
    sr_error e;
    void *p;
    if (sr_cuda_malloc(&p, n, &e)) cuda_test_die("sr_cuda_malloc", &e);
    return p;
}

static inline void dev_get(void *host, const void *dev, size_t n)
{
    sr_error e;
    if (sr_cuda_download(host, dev, n, &e)) cuda_test_die("sr_cuda_download", &e);
}

static inline void dev_put(void *dev, const void *host, size_t n)
{
    sr_error e;
    if (sr_cuda_upload(dev, host, n, &e)) cuda_test_die("sr_cuda_upload", &e);
}

static inline sr_cuda_ctx *ctx_new(void)
{
    sr_error e;
    sr_cuda_ctx *c;
    if (sr_cuda_ctx_create(0, NULL, &c, &e)) cuda_test_die("sr_cuda_ctx_create", &e);
    return c;
}

/* The CUDA context of a test group:
 * cmocka_run_group_tests(tests, ctx_setup, ctx_teardown). */
static sr_cuda_ctx *ctx __attribute__((unused));

static inline int ctx_setup(void **state)
{
    (void)state;
    ctx = ctx_new();
    return 0;
}

static inline int ctx_teardown(void **state)
{
    (void)state;
    sr_cuda_ctx_free(ctx);
    return 0;
}

static inline void ctx_sync(sr_cuda_ctx *c)
{
    sr_error e;
    if (sr_cuda_ctx_sync(c, &e)) cuda_test_die("sr_cuda_ctx_sync", &e);
}

/* ---- host matrices in every format --------------------------------------- */

typedef struct host_matrix {
    sr_qmatrix w;
    void *data;
    float *scales, *scb;
} host_matrix;

/* Random weights of `fmt` (values of order 1; 4-bit: random codes and
 * scales in [-0.25, 2), negative ones as double quantization can give;
 * int8: random codes and SCB in (0, 2]). */
static inline host_matrix host_matrix_rand(sr_wformat fmt, int64_t rows, int64_t cols, int bs)
{
    host_matrix m;
    memset(&m, 0, sizeof m);
    const int64_t n = rows * cols;
    m.w.fmt = fmt;
    m.w.rows = rows;
    m.w.cols = cols;
    switch (fmt) {
    case SR_W_F32: {
        float *d = rand_floats(n, 1.0f);
        m.data = d;
        break;
    }
    case SR_W_BF16:
    case SR_W_F16: {
        uint16_t *d = malloc(sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
            d[i] = fmt == SR_W_BF16 ? sr_f32_to_bf16(rng_unit()) : sr_f32_to_f16(rng_unit());
        m.data = d;
        break;
    }
    case SR_W_NF4:
    case SR_W_FP4: {
        const int64_t nbytes = (n + 1) / 2, nb = (n + bs - 1) / bs;
        uint8_t *d = malloc((size_t)nbytes);
        for (int64_t i = 0; i < nbytes; i++) d[i] = (uint8_t)rng_next();
        m.scales = malloc(sizeof(float) * (size_t)nb);
        for (int64_t b = 0; b < nb; b++) m.scales[b] = (rng_unit() + 1.0f) * 1.125f - 0.25f;
        m.data = d;
        m.w.blocksize = bs;
        m.w.scales = m.scales;
        break;
    }
    case SR_W_INT8: {
        int8_t *d = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) d[i] = (int8_t)(rng_next() & 0xff);
        m.scb = malloc(sizeof(float) * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) m.scb[r] = (rng_unit() + 1.0f) + 1e-3f;
        m.data = d;
        m.w.scb = m.scb;
        break;
    }
    default:
        break;
    }
    m.w.data = m.data;
    return m;
}

static inline void host_matrix_free(host_matrix *m)
{
    free(m->data);
    free(m->scales);
    free(m->scb);
    memset(m, 0, sizeof *m);
}

/* Half an ulp of v (for the final rounding of a result to f32). */
static inline double half_ulp(double v)
{
    float f = (float)fabs(v);
    return (double)(nextafterf(f, INFINITY) - f) * 0.5;
}

#endif
