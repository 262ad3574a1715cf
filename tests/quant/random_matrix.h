/* Random weight matrices of every format for the kernel tests
 * (test_matmul.c, test_matmul_int8.c): a deterministic generator, matrices
 * with random codes and positive scales, random activations.
 *
 * Each test program defines RANDOM_MATRIX_SEED before including this header,
 * so its random data stay what its tolerances were checked against. */
#ifndef STRATA_TESTS_RANDOM_MATRIX_H
#define STRATA_TESTS_RANDOM_MATRIX_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qmatrix.h"
#include "runtime/dtype.h"

#ifndef RANDOM_MATRIX_SEED
#error "define RANDOM_MATRIX_SEED before including random_matrix.h"
#endif

static uint64_t rng_state = RANDOM_MATRIX_SEED;

/* splitmix64 */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_unit(void) { return (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0); }

typedef struct test_matrix {
    sr_qmatrix w;
    void *data;
    float *scales;
} test_matrix;

/* rows x cols of format fmt: values in [-1, 1) (float formats), random
 * codes (4-bit, LLM.int8 in -127..127), scales in [0.01, 1.01) (4-bit: one
 * per block of bs; LLM.int8: SCB per row). */
static void make_matrix(test_matrix *m, sr_wformat fmt, int64_t rows, int64_t cols, int bs)
{
    memset(m, 0, sizeof *m);
    int64_t n = rows * cols;
    m->w.fmt = fmt;
    m->w.rows = rows;
    m->w.cols = cols;
    switch (fmt) {
    case SR_W_F32: {
        float *d = malloc((size_t)n * 4 + 4);
        for (int64_t i = 0; i < n; i++) d[i] = rng_unit();
        m->data = d;
        break;
    }
    case SR_W_BF16:
    case SR_W_F16: {
        uint16_t *d = malloc((size_t)n * 2 + 2);
        for (int64_t i = 0; i < n; i++)
            d[i] = fmt == SR_W_BF16 ? sr_f32_to_bf16(rng_unit()) : sr_f32_to_f16(rng_unit());
        m->data = d;
        break;
    }
    case SR_W_NF4:
    case SR_W_FP4: {
        int64_t nbytes = (n + 1) / 2, nb = (n + bs - 1) / bs;
        uint8_t *d = malloc((size_t)nbytes + 1);
        for (int64_t i = 0; i < nbytes; i++) d[i] = (uint8_t)rng_next();
        m->scales = malloc((size_t)nb * 4 + 4);
        for (int64_t b = 0; b < nb; b++) m->scales[b] = 0.01f + fabsf(rng_unit());
        m->data = d;
        m->w.blocksize = bs;
        m->w.scales = m->scales;
        break;
    }
    case SR_W_INT8: {
        int8_t *d = malloc((size_t)n + 1);
        for (int64_t i = 0; i < n; i++) d[i] = (int8_t)((int)(rng_next() % 255) - 127);
        m->scales = malloc((size_t)rows * 4 + 4);
        for (int64_t r = 0; r < rows; r++) m->scales[r] = 0.01f + fabsf(rng_unit());
        m->data = d;
        m->w.scb = m->scales;
        break;
    }
    default: break;
    }
    m->w.data = m->data;
}

static void free_matrix(test_matrix *m)
{
    free(m->data);
    free(m->scales);
}

__attribute__((unused)) static float *random_floats(int64_t count)
{
    float *v = malloc((size_t)count * sizeof(float) + 4);
    for (int64_t i = 0; i < count; i++) v[i] = rng_unit();
    return v;
}

#endif
