#include "runtime/dtype.h"

#include <string.h>

static const struct { const char *name, *torch; size_t size; } info[SR_DTYPE_COUNT] = {
    [SR_F64] = {"F64", "float64", 8},  [SR_F32] = {"F32", "float32", 4},
    [SR_F16] = {"F16", "float16", 2},  [SR_BF16] = {"BF16", "bfloat16", 2},
    [SR_I64] = {"I64", "int64", 8},    [SR_I32] = {"I32", "int32", 4},
    [SR_I16] = {"I16", "int16", 2},    [SR_I8] = {"I8", "int8", 1},
    [SR_U8] = {"U8", "uint8", 1},      [SR_BOOL] = {"BOOL", "bool", 1},
};

size_t sr_dtype_size(sr_dtype t) { return (unsigned)t < SR_DTYPE_COUNT ? info[t].size : 0; }
const char *sr_dtype_name(sr_dtype t) { return (unsigned)t < SR_DTYPE_COUNT ? info[t].name : "?"; }
const char *sr_dtype_torch_name(sr_dtype t) { return (unsigned)t < SR_DTYPE_COUNT ? info[t].torch : "?"; }

int sr_dtype_parse(const char *s, sr_dtype *out)
{
    for (int i = 0; i < SR_DTYPE_COUNT; i++)
        if (strcmp(s, info[i].name) == 0) { *out = (sr_dtype)i; return 0; }
    return -1;
}

int sr_dtype_is_f8(const char *s) { return strncmp(s, "F8_", 3) == 0; }

int sr_dtype_from_torch(const char *s, sr_dtype *out)
{
    if (strncmp(s, "torch.", 6) == 0) s += 6;
    for (int i = 0; i < SR_DTYPE_COUNT; i++)
        if (strcmp(s, info[i].torch) == 0) { *out = (sr_dtype)i; return 0; }
    if (strcmp(s, "half") == 0) { *out = SR_F16; return 0; }
    if (strcmp(s, "float") == 0) { *out = SR_F32; return 0; }
    return -1;
}

float sr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) { /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t sr_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (a < 0x38800000u) { /* result subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;        /* < half of min subnormal */
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                          /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((a >> 13) - (112u << 10)), rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}
