/* Element-wise and row-wise kernels of the forward pass on CUDA (spec
 * granite-switch.md §4), each the device twin of the CPU code in
 * runtime/forward.c, rope.c and sampling.c.  Products and sums that the CPU
 * rounds separately are rounded separately here too (no FMA contraction), so
 * only the library functions (expf, sinf, cosf) and summation order can make
 * results differ from the CPU, by an ulp or so.
 *
 * All pointers are device pointers; the work is enqueued on the context's
 * stream.  Matrices are token-major with explicit row strides ("ld"). */
#ifndef SR_OPS_CUDA_H
#define SR_OPS_CUDA_H

#include <stdint.h>

/* C linkage for C++ (CUDA) includers, also for the C headers included here. */
#ifdef __cplusplus
extern "C" {
#endif

#include "quant/qmatrix.h"
#include "runtime/cuda/cuda_ctx.h"
#include "runtime/error.h"

/* RMSNorm of T x `heads` vectors of n floats: vector (t, h) starts at
 * x + t*ldx + h*hstride and goes to out + t*ldo + h*hstride (out may be x).
 * out = w ⊙ (x · 1/sqrt(mean(x²) + eps)), the sum of squares in double as
 * on the CPU.  heads = 1 for the hidden-state norms, nh / nkv for qk-norm. */
int sr_cuda_rmsnorm(sr_cuda_ctx *c, const float *x, int64_t ldx, int T, int heads,
                    int64_t hstride, int64_t n, const float *w, float eps, float *out, int64_t ldo,
                    sr_error *err);

/* RoPE in place on T x `heads` head vectors (t, h) at x + t*ldx + h*hstride,
 * "rotate half" pairs (k, k + hd/2), angle fl(pos[t] * inv_freq[k]).  pos:
 * per-token positions (Gen A corrected), inv_freq: [hd/2] (sr_rope's). */
int sr_cuda_rope(sr_cuda_ctx *c, float *x, int64_t ldx, int T, int heads, int64_t hstride,
                 int hd, const float *inv_freq, const int32_t *pos, sr_error *err);

/* K and V of T new tokens into one layer's cache at positions p0..p0+T-1:
 * KV head g of token t comes from k + t*ld + g*hd (v likewise) and goes to
 * kc + g*ctx*hd + (p0+t)*hd (layout of runtime/kv_cache.h). */
int sr_cuda_kv_append(sr_cuda_ctx *c, const float *k, const float *v, int64_t ld, int T, int nkv,
                      int hd, float *kc, float *vc, int64_t ctx, int64_t p0, sr_error *err);

/* act[t][j] = silu(gate) * up with gate = gu[t*ldgu + j], up = gu[t*ldgu + I + j]. */
int sr_cuda_swiglu(sr_cuda_ctx *c, const float *gu, int64_t ldgu, int T, int64_t I, float *act,
                   int64_t ldact, sr_error *err);

/* x[t][j] = x + y * mult (residual scaling), both [T][n] packed. */
int sr_cuda_residual_add(sr_cuda_ctx *c, float *x, const float *y, int T, int64_t n, float mult,
                         sr_error *err);

/* y[t][j] += bias[j] for j < n. */
int sr_cuda_bias_add(sr_cuda_ctx *c, float *y, int64_t ldy, int T, int64_t n, const float *bias,
                     sr_error *err);

/* x[t] = row ids[t] of the embedding (a device sr_qmatrix, any format)
 * times mult; x is [T][H] packed (H = emb->cols).  An id outside the
 * matrix gives a row of NaN (the host validates ids first). */
int sr_cuda_embed(sr_cuda_ctx *c, const sr_qmatrix *emb, const int32_t *ids, int T, float mult,
                  float *x, sr_error *err);

/* y[t][j] /= s (logits scaling). */
int sr_cuda_scale_div(sr_cuda_ctx *c, float *y, int64_t ldy, int T, int64_t n, float s,
                      sr_error *err);

/* out[t] = index of the largest finite logit of row t (lowest index on
 * ties), -1 if the row has none (as sr_argmax). */
int sr_cuda_argmax(sr_cuda_ctx *c, const float *logits, int64_t ld, int T, int64_t n,
                   int64_t *out, sr_error *err);

#ifdef __cplusplus
}
#endif

#endif
