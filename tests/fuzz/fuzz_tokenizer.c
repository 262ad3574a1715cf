/* libFuzzer target: the tokenizer.  The first input byte picks the mode:
 *   0: encode the rest with a built-in tokenizer (every byte in the
 *      vocabulary, merges, added tokens, the cl100k Split regex) and check
 *      that the ids' bytes give back the input exactly, then decode;
 *   1: load the rest as a tokenizer.json and, if it loads, encode and decode
 *      a fixed text with it;
 *   2: decode the rest read as int32 ids.
 * Bits 2..3 of the first byte are the sr_tokenize() flags.  Seeds:
 * tests/fuzz/corpus/tokenizer/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* GPT-2's byte -> character map, JSON-escaped, appended at p. */
static char *put_byte(char *p, int b)
{
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    unsigned cp = (unsigned)b;
    if (!printable) {
        cp = 256;
        for (int i = 0; i < b; i++)
            cp += !((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE);
    }
    if (cp == '"' || cp == '\\') *p++ = '\\', *p++ = (char)cp;
    else if (cp < 0x80) *p++ = (char)cp;
    else *p++ = (char)(0xC0 | (cp >> 6)), *p++ = (char)(0x80 | (cp & 0x3F));
    return p;
}

static sr_tokenizer *builtin(void)
{
    static sr_tokenizer *tok;
    if (tok) return tok;
    static char json[16384];
    char *p = json;
    p += sprintf(p, "{\"added_tokens\": [{\"id\": 300, \"content\": \"<|end_of_text|>\", "
                    "\"special\": true}, {\"id\": 301, \"content\": \"<think>\", \"special\": false},"
                    "{\"id\": 302, \"content\": \"[L]\", \"special\": true, \"lstrip\": true, "
                    "\"rstrip\": true, \"single_word\": true}],"
                    "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", "
                    "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
                    "\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
                    "\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Removed\", \"invert\": true}, "
                    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}, "
                    "\"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"}, "
                    "\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        *p++ = '"';
        p = put_byte(p, b);
        p += sprintf(p, "\": %d, ", b);
    }
    p += sprintf(p, "\"th\": 256, \"the\": 257, \"ĠĠ\": 258, \"12\": 259, \"123\": 260, "
                    "\"ðŁ\": 261}, \"merges\": [\"t h\", \"th e\", \"Ġ Ġ\", [\"1\", \"2\"], "
                    "[\"12\", \"3\"], [\"ð\", \"Ł\"]]}}");
    sr_error err;
    if (sr_tokenizer_load_json(json, (size_t)(p - json), "builtin", &tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    return tok;
}

static void roundtrip(const sr_tokenizer *tok, const char *text, size_t len, unsigned flags,
                      int exact)
{
    int32_t *ids;
    size_t n;
    sr_error err;
    if (sr_tokenize(tok, text, len, flags, &ids, &n, &err)) return;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *b = sr_tokenizer_token_bytes(tok, ids[i], &l);
        if (!b) __builtin_trap(); /* every produced id is a known token */
        if (exact && (total + l > len || memcmp(text + total, b, l))) __builtin_trap();
        total += l;
        (void)sr_tokenizer_id_to_token(tok, ids[i]);
    }
    if (exact && total != len) __builtin_trap();
    char *out;
    size_t olen;
    if (sr_detokenize(tok, ids, n, (int)(flags & 1), &out, &olen, &err) == 0) sr_free(out);
    sr_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    unsigned mode = data[0] & 3, flags = (data[0] >> 2) & 3;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        /* lstrip/rstrip of [L] drop spaces from the ids' bytes; special as
         * text keeps everything */
        int exact = !memmem(rest, n, "[L]", 3) || (flags & SR_TOKENIZE_SPECIAL_AS_TEXT);
        roundtrip(builtin(), rest, n, flags, exact);
    } else if (mode == 1) {
        sr_tokenizer *tok;
        sr_error err;
        if (sr_tokenizer_load_json(rest, n, "fuzz.json", &tok, &err) == 0) {
            static const char text[] = "Hello <|end_of_text|> world 12345 \xF0\x9F\x98\x80 \x80!";
            roundtrip(tok, text, sizeof text - 1, flags, 0);
            (void)sr_tokenizer_token_to_id(tok, "<|end_of_text|>");
            sr_tokenizer_free(tok);
        }
    } else {
        size_t k = n / sizeof(int32_t);
        int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
        if (!ids) return 0;
        memcpy(ids, rest, k * sizeof *ids);
        char *out;
        size_t olen;
        sr_error err;
        if (sr_detokenize(builtin(), ids, k, data[0] & 4, &out, &olen, &err) == 0) sr_free(out);
        free(ids);
    }
    return 0;
}
