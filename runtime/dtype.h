/* Element types as safetensors names them, and scalar conversions. */
#ifndef SR_DTYPE_H
#define SR_DTYPE_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>

typedef enum sr_dtype {
    SR_F64, SR_F32, SR_F16, SR_BF16,
    SR_I64, SR_I32, SR_I16, SR_I8, SR_U8, SR_BOOL,
    SR_DTYPE_COUNT
} sr_dtype;

size_t sr_dtype_size(sr_dtype t);
const char *sr_dtype_name(sr_dtype t);         /* "F32", "BF16", ... */
/* Parses a safetensors dtype string; returns 0, or -1 if unknown.  F8 types
 * are recognised by sr_dtype_is_f8() so callers can refuse them by name. */
int sr_dtype_parse(const char *s, sr_dtype *out);
int sr_dtype_is_f8(const char *s);
/* torch attribute names used by bnb/transformers JSON ("float32",
 * "bfloat16", "uint8", ...); returns 0 or -1. */
int sr_dtype_from_torch(const char *s, sr_dtype *out);
const char *sr_dtype_torch_name(sr_dtype t);

static inline float sr_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, NaN kept quiet (what torch .to(bfloat16) does). */
static inline uint16_t sr_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* IEEE binary16 <-> binary32, exact / round to nearest even (portable C;
 * the SIMD kernels use F16C where they need speed). */
float sr_f16_to_f32(uint16_t h);
uint16_t sr_f32_to_f16(float f);

#endif
