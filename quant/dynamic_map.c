/* Construction of bnb's dynamic map, operation by operation in f32 (the
 * build uses -ffp-contract=off: torch's scalar linspace does not fuse). */
#include "quant/dynamic_map.h"

#include <stdlib.h>

/* torch.linspace(start, end, n, dtype=float32) as torch >= 2.0's CPU
 * kernel computes it: the first half counts up from start, the second half
 * down from end. */
static void linspace_f32(float start, float end, int n, float *out)
{
    float step = (end - start) / (float)(n - 1);
    int half = n / 2;
    for (int k = 0; k < n; k++)
        out[k] = k < half ? start + step * (float)k : end - step * (float)(n - 1 - k);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void sr_dynamic_map(float map[SR_DYNAMIC_MAP_SIZE])
{
    /* 10 ** (i - 6) as Python computes it (a double), then taken as an f32
     * scalar by the tensor multiply. */
    static const double scale[7] = {1e-06, 1e-05, 1e-04, 1e-03, 1e-02, 1e-01, 1.0};
    float bounds[65];
    int k = 0;
    for (int i = 0; i < 7; i++) {
        int n = (1 << i) + 1;
        linspace_f32(0.1f, 1.0f, n, bounds);
        float s = (float)scale[i];
        for (int j = 0; j + 1 < n; j++) {
            float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
            map[k++] = s * mean;
            map[k++] = (-s) * mean;
        }
    }
    map[k++] = 0.0f;
    map[k++] = 1.0f;
    qsort(map, SR_DYNAMIC_MAP_SIZE, sizeof *map, cmp_float);
}
