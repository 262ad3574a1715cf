/* Access to the bitsandbytes golden vectors of tests/data/bnb (README.md
 * there): manifest.json (jansson) indexes arrays stored in data.bin. */
#ifndef SR_TEST_BNB_GOLDEN_H
#define SR_TEST_BNB_GOLDEN_H

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

typedef struct golden {
    json_t *manifest;
    json_t *arrays;     /* borrowed from manifest */
    json_t *cases;
    unsigned char *data;
    size_t len;
} golden;

static inline int golden_open(golden *g)
{
    memset(g, 0, sizeof *g);
    json_error_t e;
    g->manifest = json_load_file(test_data("bnb/manifest.json"), 0, &e);
    if (!g->manifest) {
        fprintf(stderr, "manifest.json: %s\n", e.text);
        return -1;
    }
    g->arrays = json_object_get(g->manifest, "arrays");
    g->cases = json_object_get(g->manifest, "cases");
    g->data = (unsigned char *)test_read_file(test_data("bnb/data.bin"), &g->len);
    return g->arrays && g->cases && g->data ? 0 : -1;
}

static inline void golden_close(golden *g)
{
    json_decref(g->manifest);
    free(g->data);
    memset(g, 0, sizeof *g);
}

/* Array bytes (NULL if absent or out of range); *nbytes and *dtype (the
 * manifest's name, e.g. "float32") are optional. */
static inline const void *golden_array(const golden *g, const char *name, size_t *nbytes,
                                       const char **dtype)
{
    json_t *a = json_object_get(g->arrays, name);
    if (!a) return NULL;
    json_int_t off = json_integer_value(json_object_get(a, "offset"));
    json_int_t nb = json_integer_value(json_object_get(a, "nbytes"));
    if (off < 0 || nb < 0 || (size_t)(off + nb) > g->len) return NULL;
    if (nbytes) *nbytes = (size_t)nb;
    if (dtype) *dtype = json_string_value(json_object_get(a, "dtype"));
    return g->data + off;
}

/* Output array name of a case ("weight", "dequant", ...) or NULL. */
static inline const char *golden_output(json_t *c, const char *key)
{
    return json_string_value(json_object_get(json_object_get(c, "outputs"), key));
}

static inline uint32_t golden_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Number of f32 elements whose bits differ; zeros of either sign are equal
 * (bnb's paths disagree on the sign of FP4 code 8).  Prints the first. */
static inline size_t golden_cmp_f32(const char *what, const float *got, const void *want_bytes,
                                    size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float w;
        memcpy(&w, (const unsigned char *)want_bytes + 4 * i, 4);
        uint32_t a = golden_f32_bits(got[i]), b = golden_f32_bits(w);
        if (a == b || (got[i] == 0.0f && w == 0.0f)) continue;
        if (!bad++)
            fprintf(stderr, "%s: element %zu: got %08x (%.9g), want %08x (%.9g)\n", what, i,
                    (unsigned)a, (double)got[i], (unsigned)b, (double)w);
    }
    return bad;
}

/* Same for 16-bit patterns (f16/bf16), with signed zeros equal. */
static inline size_t golden_cmp_u16(const char *what, const uint16_t *got, const void *want_bytes,
                                    size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t w;
        memcpy(&w, (const unsigned char *)want_bytes + 2 * i, 2);
        if (got[i] == w || ((got[i] & 0x7fff) == 0 && (w & 0x7fff) == 0)) continue;
        if (!bad++) fprintf(stderr, "%s: element %zu: got %04x, want %04x\n", what, i, got[i], w);
    }
    return bad;
}

static inline size_t golden_cmp_bytes(const char *what, const void *got, const void *want, size_t n)
{
    size_t bad = 0;
    const unsigned char *a = got, *b = want;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i] && !bad++)
            fprintf(stderr, "%s: byte %zu: got %02x, want %02x\n", what, i, a[i], b[i]);
    return bad;
}

#endif
