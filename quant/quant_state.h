/* The quant_state JSON of a bnb 4-bit weight (bnb-format.md §3.2): the
 * bytes of the `<W>.quant_state.bitsandbytes__nf4|fp4` tensor.
 *
 * Written exactly as bnb's QuantState.as_dict + json.dumps produce it (key
 * order quant_type, blocksize, dtype, shape[, nested_blocksize,
 * nested_dtype, nested_offset], separators ", " and ": ", nested_offset as
 * Python's repr of the widened f32), e.g.
 *   {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [32, 96],
 *    "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1276143342256546}
 * (one line).  Parsing accepts any key order but, like bnb's
 * QuantState.from_dict, rejects unknown keys and missing mandatory ones,
 * naming them. */
#ifndef SR_QUANT_STATE_H
#define SR_QUANT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "quant/bnb4.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

typedef struct sr_quant_state {
    sr_q4type quant_type;
    int64_t blocksize;
    sr_dtype dtype;             /* original weight dtype: F32, F16 or BF16 */
    int ndim;
    int64_t shape[SR_MAX_DIMS];
    int nested;                 /* double quantization: the three fields below are set */
    int64_t nested_blocksize;
    sr_dtype nested_dtype;      /* F32 */
    float nested_offset;
} sr_quant_state;

/* Parses len bytes of JSON.  Checks types and values: quant_type nf4|fp4,
 * blocksize in 1..2^30, dtype a float torch name, shape a list of ints >= 0 (at
 * most SR_MAX_DIMS), nested fields all or none, nested_offset finite.
 * Errors name the offending key; the caller adds the tensor name. */
int sr_quant_state_parse(const void *json, size_t len, sr_quant_state *out, sr_error *err);

/* Formats qs as bnb writes it into buf (NUL-terminated).  Returns the length
 * without the NUL, or -1 (error set) if it does not fit or a field is
 * invalid. */
int sr_quant_state_format(const sr_quant_state *qs, char *buf, size_t cap, sr_error *err);

/* Python repr() of a finite double: shortest round-trip digits, fixed
 * notation for 1e-4 <= |v| < 1e16 (with ".0" for integral values),
 * exponent notation otherwise ("1e-05", "1.5e+16").  buf >= 32 bytes.
 * Non-finite values give "NaN" / "Infinity" / "-Infinity" as json.dumps. */
void sr_format_pyfloat(double v, char *buf, size_t cap);

#endif
