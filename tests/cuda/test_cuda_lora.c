/* Per-token LoRA on CUDA (runtime/cuda/lora_cuda.h) against sr_lora_apply:
 * one to three slices, adapters with a smaller true rank (zero-padded B),
 * adapters whose stacks are all zero (not live: no work, no change), tokens
 * of adapter 0 and of an index beyond N (both untouched), token-major
 * inputs and outputs with strides wider than the data, and a call where no
 * token has an adapter.
 *
 * Both sides run f32 GEMMs in their own order: the delta of an output
 * element may differ by (in + R) * 2^-24 * its absolute bound
 * sum_r |B_jr| sum_c |A_rc u_c|, plus half an ulp of the result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "runtime/cuda/lora_cuda.h"
#include "runtime/lora.h"

typedef struct lora_case {
    int n_adapters, rank, n_slices;
    int64_t in, rows[3];
    int T;
    int64_t pad_u, pad_y;
} lora_case;

static void fill_lora(sr_lora *l)
{
    for (int k = 0; k < l->n_adapters; k++) {
        const bool dead = k == 1;               /* adapter 2: all zero -> not live */
        const int r = k % 3 == 2 ? 1 + rng_int(l->rank) : l->rank;   /* some true ranks < R */
        for (int s = 0; s < l->n_slices; s++) {
            float *A = sr_lora_a(l, k, s), *B = sr_lora_b(l, k, s);
            for (int64_t i = 0; i < (int64_t)l->rank * l->in; i++) A[i] = dead ? 0.0f : rng_unit();
            for (int64_t i = 0; i < l->slice_rows[s]; i++)
                for (int j = 0; j < l->rank; j++)
                    B[i * l->rank + j] = dead || j >= r ? 0.0f : rng_unit() * 0.5f;
        }
        l->ranks[k] = r;
    }
    sr_lora_update_live(l);
}

static void run_case(const lora_case *c)
{
    sr_lora l;
    sr_error e;
    assert_int_equal(sr_lora_alloc(&l, c->n_adapters, c->rank, NULL, c->in, c->n_slices, c->rows, &e), 0);
    fill_lora(&l);
    int64_t width = 0;
    for (int s = 0; s < c->n_slices; s++) width += c->rows[s];
    const int T = c->T;
    const int64_t ldu = c->in + c->pad_u, ldy = width + c->pad_y;
    float *u = rand_floats(T * ldu, 1.0f), *y0 = rand_floats(T * ldy, 1.0f);
    float *want = malloc(sizeof(float) * (size_t)(T * ldy)), *got = malloc(sizeof(float) * (size_t)(T * ldy));
    int32_t *a = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++) a[t] = rng_int(c->n_adapters + 2);   /* 0..N+1 */
    memcpy(want, y0, sizeof(float) * (size_t)(T * ldy));
    float *scratch = malloc(sizeof(float) * (size_t)sr_lora_scratch_floats(&l, T));
    sr_lora_apply(&l, u, T, ldu, a, want, ldy, scratch);

    sr_lora dl;
    if (sr_cuda_lora_upload(&l, &dl, &e)) fail_msg("upload: %s", e.msg);
    float *ud = dev_dup(u, sizeof(float) * (size_t)(T * ldu)), *yd = dev_dup(y0, sizeof(float) * (size_t)(T * ldy));
    if (sr_cuda_lora_apply(ctx, &dl, ud, T, ldu, a, yd, ldy, &e)) fail_msg("apply: %s", e.msg);
    ctx_sync(ctx);
    dev_get(got, yd, sizeof(float) * (size_t)(T * ldy));

    for (int t = 0; t < T; t++) {
        const int k = a[t];
        for (int64_t j = 0; j < ldy; j++) {
            const int64_t i = t * ldy + j;
            double bound = 0;
            if (k >= 1 && k <= c->n_adapters && j < width) {
                int s = 0;
                while (j >= l.slice_off[s] + l.slice_rows[s]) s++;
                const float *A = sr_lora_a(&l, k - 1, s), *B = sr_lora_b(&l, k - 1, s);
                const int64_t row = j - l.slice_off[s];
                for (int r = 0; r < l.rank; r++) {
                    double z = 0;
                    for (int64_t cc = 0; cc < l.in; cc++) z += fabs((double)A[r * l.in + cc] * u[t * ldu + cc]);
                    bound += fabs((double)B[row * l.rank + r]) * z;
                }
            }
            const double tol = (double)(l.in + l.rank) * 0x1p-24 * bound + half_ulp(want[i]);
            if (!(fabs((double)got[i] - want[i]) <= tol))
                fail_msg("lora (%d adapters, rank %d, %d slices, in %lld): token %d adapter %d "
                         "column %lld: gpu %.9g cpu %.9g (tol %.3g)", c->n_adapters, c->rank,
                         c->n_slices, (long long)c->in, t, k, (long long)j, got[i], want[i], tol);
        }
    }
    free(u);
    free(y0);
    free(want);
    free(got);
    free(a);
    free(scratch);
    sr_cuda_free(ud);
    sr_cuda_free(yd);
    sr_cuda_lora_free(&dl);
    sr_lora_free(&l);
}

static void test_lora(void **state)
{
    (void)state;
    static const lora_case cases[] = {
        {3, 8, 3, 64, {64, 16, 16}, 11, 0, 0},
        {4, 16, 2, 96, {200, 200, 0}, 33, 5, 3},
        {1, 4, 1, 37, {53, 0, 0}, 1, 0, 7},
        {6, 32, 1, 256, {128, 0, 0}, 64, 1, 0},
        {5, 2, 3, 16, {24, 8, 8}, 300, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* No token with an adapter: y unchanged, no GEMM. */
static void test_no_adapter_tokens(void **state)
{
    (void)state;
    sr_lora l;
    sr_error e;
    const int64_t rows[1] = {32};
    assert_int_equal(sr_lora_alloc(&l, 2, 4, NULL, 16, 1, rows, &e), 0);
    fill_lora(&l);
    sr_lora dl;
    assert_int_equal(sr_cuda_lora_upload(&l, &dl, &e), 0);
    const int T = 5;
    float *u = rand_floats(T * 16, 1.0f), *y = rand_floats(T * 32, 1.0f), got[5 * 32];
    int32_t a[5] = {0, 0, 0, 0, 0};
    float *ud = dev_dup(u, sizeof(float) * T * 16), *yd = dev_dup(y, sizeof(float) * T * 32);
    assert_int_equal(sr_cuda_lora_apply(ctx, &dl, ud, T, 16, a, yd, 32, &e), 0);
    ctx_sync(ctx);
    dev_get(got, yd, sizeof got);
    assert_memory_equal(got, y, sizeof got);
    free(u);
    free(y);
    sr_cuda_free(ud);
    sr_cuda_free(yd);
    sr_cuda_lora_free(&dl);
    sr_lora_free(&l);
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_no_adapter_tokens),
    };
    return cmocka_run_group_tests(tests, ctx_setup, ctx_teardown);
}
