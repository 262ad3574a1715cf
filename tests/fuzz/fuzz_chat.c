/* libFuzzer target: the chat format of a model directory.  The input is
 * split at NUL bytes into tokenizer_config.json, config.json (its
 * `adapter_kinds`) and then role / content pairs of a conversation; the
 * target parses the two files for a switch model with three adapters (one
 * named like a regex, one with a quote) and renders the conversation for
 * every adapter and kind, checking where the control token lands.  Seeds:
 * tests/fuzz/corpus/chat/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/chat.h"
#include "runtime/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_PARTS = 18 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a NUL-terminated copy, cut into parts at each NUL */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *part[MAX_PARTS];
    int n_parts = 0;
    for (char *p = buf; n_parts < MAX_PARTS;) {
        part[n_parts++] = p;
        char *end = p + strlen(p);
        if (end >= buf + size) break;
        p = end + 1;
    }

    char *names[] = {"adapter_1", "a.*b", "it's"};
    sr_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.num_adapters = 3;
    cfg.adapter_names = names;

    sr_chat chat;
    sr_error err;
    const char *tc = part[0][0] ? part[0] : NULL;
    const char *cj = n_parts > 1 && part[1][0] ? part[1] : NULL;
    if (sr_chat_parse(tc, cj, "fuzz", &cfg, &chat, &err) == 0) {
        sr_chat_msg msgs[MAX_PARTS / 2];
        size_t n = 0;
        for (int i = 2; i + 1 < n_parts; i += 2) msgs[n++] = (sr_chat_msg){part[i], part[i + 1]};
        static const sr_adapter_kind kinds[] = {SR_ADAPTER_UNKNOWN, SR_ADAPTER_LORA,
                                                SR_ADAPTER_ALORA};
        for (int a = 0; a <= chat.n_adapters; a++)
            for (int k = 0; k < 3; k++)
                for (int gen = 0; gen < 2; gen++) {
                    char *text;
                    size_t len;
                    int64_t at;
                    if (sr_chat_render(&chat, msgs, n, gen, a, kinds[k], &text, &len, &at, &err))
                        __builtin_trap(); /* every message has a role and a content */
                    if (strlen(text) != len) __builtin_trap();
                    if ((a == 0) != (at < 0) || at > (int64_t)len) __builtin_trap();
                    sr_free(text);
                }
        sr_chat_free(&chat);
        sr_chat_free(&chat); /* documented as safe */
    }
    free(buf);
    return 0;
}
