#include "runtime/lora.h"

#include <cblas.h>
#include <string.h>

#include "runtime/alloc.h"

void sr_lora_free(sr_lora *l)
{
    sr_free(l->ranks);
    sr_free_aligned(l->A);
    for (int s = 0; s < SR_LORA_MAX_SLICES; s++) sr_free_aligned(l->B[s]);
    sr_free(l->live);
    memset(l, 0, sizeof *l);
}

int sr_lora_alloc(sr_lora *l, int n_adapters, int rank, const int *ranks, int64_t in,
                  int n_slices, const int64_t *slice_rows, sr_error *err)
{
    memset(l, 0, sizeof *l);
    if (n_adapters <= 0 || rank <= 0 || in <= 0 || n_slices < 1 || n_slices > SR_LORA_MAX_SLICES)
        return sr_fail(err, "lora: invalid geometry (adapters %d, rank %d, in %lld, slices %d)",
                       n_adapters, rank, (long long)in, n_slices);
    l->n_adapters = n_adapters;
    l->rank = rank;
    l->in = in;
    l->n_slices = n_slices;
    l->ranks = sr_malloc(sizeof(int) * (size_t)n_adapters);
    l->live = sr_calloc((size_t)n_adapters * (size_t)n_slices, sizeof(bool));
    size_t a_n = (size_t)n_adapters * (size_t)n_slices * (size_t)rank * (size_t)in;
    l->A = sr_malloc_aligned(a_n * sizeof(float));
    if (!l->ranks || !l->live || !l->A) goto oom;
    memset(l->A, 0, a_n * sizeof(float));
    int64_t off = 0;
    for (int s = 0; s < n_slices; s++) {
        l->slice_off[s] = off;
        l->slice_rows[s] = slice_rows[s];
        off += slice_rows[s];
        size_t b_n = (size_t)n_adapters * (size_t)slice_rows[s] * (size_t)rank;
        l->B[s] = sr_malloc_aligned(b_n * sizeof(float));
        if (!l->B[s]) goto oom;
        memset(l->B[s], 0, b_n * sizeof(float));
    }
    for (int k = 0; k < n_adapters; k++) {
        int r = ranks ? ranks[k] : rank;
        l->ranks[k] = (r >= 1 && r <= rank) ? r : rank;
    }
    return 0;
oom:
    sr_lora_free(l);
    return sr_fail(err, "lora: out of memory");
}

static bool all_zero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return false;
    return true;
}

/* Are columns r..R-1 of B zero (the composer's padding)?  Then ranks beyond r
 * contribute exact zeros whatever A holds there. */
static bool padding_is_zero(const sr_lora *l, int k, int s, int r)
{
    const float *B = sr_lora_b(l, k, s);
    for (int64_t i = 0; i < l->slice_rows[s]; i++)
        if (!all_zero(B + i * l->rank + r, l->rank - r)) return false;
    return true;
}

void sr_lora_update_live(sr_lora *l)
{
    for (int k = 0; k < l->n_adapters; k++) {
        for (int s = 0; s < l->n_slices; s++) {
            l->live[k * l->n_slices + s] =
                !all_zero(sr_lora_a(l, k, s), (int64_t)l->rank * l->in) &&
                !all_zero(sr_lora_b(l, k, s), l->slice_rows[s] * l->rank);
            /* a stack that is not zero-padded beyond the declared rank runs at full rank */
            if (!padding_is_zero(l, k, s, l->ranks[k])) l->ranks[k] = l->rank;
        }
    }
}

static int64_t max_slice_rows(const sr_lora *l)
{
    int64_t m = 0;
    for (int s = 0; s < l->n_slices; s++)
        if (l->slice_rows[s] > m) m = l->slice_rows[s];
    return m;
}

int64_t sr_lora_scratch_floats(const sr_lora *l, int64_t T)
{
    /* gathered inputs, shrunk z, expanded delta, token list (as floats) */
    return T * (l->in + (int64_t)l->n_slices * l->rank + max_slice_rows(l) + 1);
}

void sr_lora_apply(const sr_lora *l, const float *u, int64_t T, int64_t ldu, const int32_t *a,
                   float *y, int64_t ldy, float *scratch)
{
    const int64_t in = l->in, zr = (int64_t)l->n_slices * l->rank;
    float *U = scratch, *Z = U + T * in, *D = Z + T * zr;
    int32_t *rows = (int32_t *)(D + T * max_slice_rows(l));
    for (int k = 1; k <= l->n_adapters; k++) {
        int any_live = 0;
        for (int s = 0; s < l->n_slices; s++) any_live |= l->live[(k - 1) * l->n_slices + s];
        if (!any_live) continue;
        int n = 0;
        for (int64_t t = 0; t < T; t++)
            if (a[t] == k) rows[n++] = (int32_t)t;
        if (!n) continue;
        for (int i = 0; i < n; i++) memcpy(U + i * in, u + rows[i] * ldu, sizeof(float) * in);
        /* Z[n, S*R] = U · A_allᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)zr, (int)in, 1.0f, U,
                    (int)in, sr_lora_a(l, k - 1, 0), (int)in, 0.0f, Z, (int)zr);
        const int r = l->ranks[k - 1];
        for (int s = 0; s < l->n_slices; s++) {
            if (!l->live[(k - 1) * l->n_slices + s]) continue;
            const int64_t rows_s = l->slice_rows[s];
            /* D[n, rows_s] = Z[:, s*R : s*R + r] · B_s[:, :r]ᵀ (true rank; padded columns are 0) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows_s, r, 1.0f,
                        Z + (int64_t)s * l->rank, (int)zr, sr_lora_b(l, k - 1, s), l->rank, 0.0f,
                        D, (int)rows_s);
            for (int i = 0; i < n; i++) {
                float *dst = y + rows[i] * ldy + l->slice_off[s];
                const float *src = D + i * rows_s;
                for (int64_t j = 0; j < rows_s; j++) dst[j] += src[j];
            }
        }
    }
}
