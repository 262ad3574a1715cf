/* libFuzzer target: the .zst shard path (frame checks, streaming
 * decompression, then the safetensors parser over the result). */
#include <stddef.h>
#include <stdint.h>

#include "runtime/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps a tiny input from asking for gigabytes (libFuzzer's malloc limit). */
#define FUZZ_MAX_DECOMPRESSED (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_st_file *f = NULL;
    sr_error err;
    if (sr_ckpt_zst_open_memory(data, size, "fuzz.safetensors.zst", FUZZ_MAX_DECOMPRESSED, &f,
                                &err))
        return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < sr_st_count(f); i++) {
        const sr_tensor *t = sr_st_get(f, i);
        const uint8_t *p = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++) sink ^= p[j];
    }
    (void)sink;
    sr_st_close(f);
    return 0;
}
