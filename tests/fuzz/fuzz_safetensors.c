/* libFuzzer target: parse the input as a safetensors image, then touch every
 * byte of every tensor it reports (an out-of-range tensor trips ASan) and
 * exercise the lookups. */
#include <stddef.h>
#include <stdint.h>

#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_st_file *f = NULL;
    sr_error err;
    if (sr_st_open_memory(data, size, "fuzz", 0, &f, &err)) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < sr_st_count(f); i++) {
        const sr_tensor *t = sr_st_get(f, i);
        const uint8_t *p = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++) sink ^= p[j];
        if (sr_st_find(f, t->name) != t) __builtin_trap();
        if ((uint64_t)sr_tensor_numel(t) * sr_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
    }
    for (size_t i = 0; i < sr_st_metadata_count(f); i++)
        if (!sr_st_metadata_get(f, sr_st_metadata_key(f, i))) __builtin_trap();
    (void)sink;
    sr_st_close(f);
    return 0;
}
