/* Decode attention per layer, one query over n cached keys, every decode
 * kernel of runtime/attention_stream.h side by side (a meson benchmark: not
 * run by `meson test` or tools/test).
 *
 *   OMP_NUM_THREADS=1 build/tests/runtime/bench_attention [NH NKV HD] [KEYS...]
 *   BENCH_KERNEL=avx512 (or sgemm, "plain C", avx2): that kernel only
 *   BENCH_HOT=1: one layer over and over (K/V from the caches where they fit)
 *   BENCH_KV=f32 or bf16: that cache type only (default: both, f32 first)
 *
 * Defaults: Granite 4.1 3b's 40 query / 8 KV heads of dim 64, 640 2048 8192
 * keys.  The KV cache is a real sr_kv_cache of as many layers as it takes to
 * pass 256 MiB, and the calls walk the layers in turn, as a decode step does,
 * so each layer's K/V comes from DRAM, not from the L3.  Prints ms per layer
 * (median, min) and the K+V read rate for each kernel and cache type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/attention.h"
#include "runtime/attention_stream.h"
#include "runtime/dtype.h"
#include "runtime/kv_cache.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_type(int nh, int nkv, int hd, int64_t keys, sr_kv_type type)
{
    /* as many layers as pass 256 MiB of f32 K/V, for both types */
    const uint64_t f32_bytes = 2ull * (uint64_t)nkv * (uint64_t)keys * (uint64_t)hd * sizeof(float);
    const uint64_t layer_bytes = f32_bytes / sizeof(float) * sr_kv_elem_bytes(type);
    int layers = (int)((256ull << 20) / f32_bytes) + 1;
    if (layers < 2) layers = 2;
    if (getenv("BENCH_HOT")) layers = 1;
    sr_kv_cache kv;
    sr_error err;
    if (sr_kv_cache_init(&kv, layers, nkv, hd, keys, type, &err)) {
        fprintf(stderr, "kv cache: %s\n", err.msg);
        exit(1);
    }
    uint64_t rng = 88172645463325252ull;
    for (int l = 0; l < layers; l++)
        for (int64_t i = 0; i < (int64_t)nkv * keys * hd; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const float k = (float)(rng >> 40) * 0x1p-24f - 0.5f;
            const float v = (float)(rng & 0xffffff) * 0x1p-24f - 0.5f;
            if (type == SR_KV_BF16) {
                ((uint16_t *)kv.k[l])[i] = sr_f32_to_bf16(k);
                ((uint16_t *)kv.v[l])[i] = sr_f32_to_bf16(v);
            } else {
                ((float *)kv.k[l])[i] = k;
                ((float *)kv.v[l])[i] = v;
            }
        }
    float *q = malloc(sizeof(float) * (size_t)nh * hd), *out = malloc(sizeof(float) * (size_t)nh * hd);
    float *scratch = malloc(sizeof(float) * (size_t)sr_attention_scratch_floats(keys, hd, type));
    for (int i = 0; i < nh * hd; i++) q[i] = (float)(i % 7) * 0.3f - 1.0f;

    static const struct { sr_attn_kernel k; const char *name; } kernels[] = {
        {SR_ATTN_SGEMM, "sgemm"}, {SR_ATTN_STREAM_C, "plain C"},
        {SR_ATTN_STREAM_AVX2, "avx2"}, {SR_ATTN_STREAM_AVX512, "avx512"}};
    const char *only = getenv("BENCH_KERNEL");     /* one kernel by name */
    const int reps = keys >= 8192 ? 40 : 160;
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++) {
        if (!sr_attn_kernel_usable(kernels[ki].k, hd)) continue;
        if (only && strcmp(only, kernels[ki].name)) continue;
        for (int r = -layers; r < reps; r++) {       /* one warm-up sweep */
            const int l = (r + layers) % layers;
            sr_attn_args a = {.nh = nh, .nkv = nkv, .hd = hd, .scale = 0.125f, .p0 = keys - 1, .T = 1,
                              .q = q, .ldq = (int64_t)nh * hd, .k = kv.k[l], .v = kv.v[l],
                              .head_stride = keys * hd, .kv_type = type, .out = out,
                              .ldo = (int64_t)nh * hd, .scratch = scratch};
            const double t0 = now_ms();
            sr_attention_with(&a, kernels[ki].k);
            if (r >= 0) t[r] = now_ms() - t0;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        printf("%3d q / %d kv heads, hd %3d, %6lld keys, %-4s %-8s %7.3f ms per layer (min %.3f), "
               "%5.1f GB/s\n", nh, nkv, hd, (long long)keys, sr_kv_type_name(type),
               kernels[ki].name, t[reps / 2], t[0], (double)layer_bytes / t[reps / 2] * 1e-6);
    }
    free(t);
    free(q);
    free(out);
    free(scratch);
    sr_kv_cache_free(&kv);
}

static void bench(int nh, int nkv, int hd, int64_t keys)
{
    const char *only = getenv("BENCH_KV");
    for (int b = 0; b < 2; b++) {
        const sr_kv_type type = b ? SR_KV_BF16 : SR_KV_F32;
        if (!only || !strcmp(only, sr_kv_type_name(type))) bench_type(nh, nkv, hd, keys, type);
    }
}

int main(int argc, char **argv)
{
    int nh = 40, nkv = 8, hd = 64, first = 1;
    if (argc >= 4) {
        nh = atoi(argv[1]), nkv = atoi(argv[2]), hd = atoi(argv[3]);
        first = 4;
    }
    if (nh <= 0 || nkv <= 0 || hd <= 0 || nh % nkv) {
        fprintf(stderr, "usage: bench_attention [NH NKV HD] [KEYS...]\n");
        return 2;
    }
    if (first >= argc) {
        const int64_t defaults[] = {640, 2048, 8192};
        for (int i = 0; i < 3; i++) bench(nh, nkv, hd, defaults[i]);
    }
    for (int i = first; i < argc; i++) bench(nh, nkv, hd, atoll(argv[i]));
    return 0;
}
