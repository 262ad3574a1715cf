/* libFuzzer target: the bnb quant_state JSON parser, and for every input
 * that parses, the writer: formatting and parsing again must give the same
 * state (nested_offset through Python-repr formatting included).  Seeds:
 * tests/fuzz/corpus/quant_state/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_quant_state a, b;
    sr_error err;
    if (sr_quant_state_parse(data, size, &a, &err)) return 0;
    char buf[1024];
    int len = sr_quant_state_format(&a, buf, sizeof buf, &err);
    if (len < 0) return 0;      /* e.g. a torch alias of a dtype the writer does not emit */
    if (sr_quant_state_parse(buf, (size_t)len, &b, &err)) abort();
    if (a.quant_type != b.quant_type || a.blocksize != b.blocksize || a.dtype != b.dtype ||
        a.ndim != b.ndim || a.nested != b.nested ||
        memcmp(a.shape, b.shape, (size_t)a.ndim * sizeof a.shape[0]))
        abort();
    if (a.nested && (a.nested_blocksize != b.nested_blocksize ||
                     memcmp(&a.nested_offset, &b.nested_offset, sizeof a.nested_offset)))
        abort();
    return 0;
}
