/* `strata tokenize` and `strata detokenize`: the tokenizer.json tokenizer
 * from the command line.
 *
 *   strata tokenize (-m DIR | --tokenizer FILE) [--special | --no-special]
 *                   [--add-special] [--json] TEXT|-|-- -TEXT
 *   strata detokenize (-m DIR | --tokenizer FILE) --ids 1,2,3 [--skip-special] [--json]
 *
 * As the reference does by default, added and special tokens written in the
 * text are matched (--no-special reads special ones as plain text), and no
 * BOS/EOS is added unless --add-special asks for the post-processor's. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static void usage_tokenize(FILE *f)
{
    fprintf(f, "usage: strata tokenize (-m|--model DIR | --tokenizer FILE) [--special | --no-special]\n"
               "                       [--add-special] [--json] TEXT|-|-- TEXT\n"
               "  TEXT is encoded as given (`-` reads stdin, every byte of it; `-- TEXT` for a\n"
               "  TEXT that starts with '-').\n"
               "  --no-special   special tokens written in the text are plain text\n"
               "  --add-special  add the post-processor's BOS/EOS (if the file has any)\n"
               "  --json         {\"ids\": [...], \"tokens\": [...], \"pieces\": [...]}\n");
}

static void usage_detokenize(FILE *f)
{
    fprintf(f, "usage: strata detokenize (-m|--model DIR | --tokenizer FILE) --ids 1,2,3\n"
               "                         [--skip-special] [--json]\n");
}

/* -m DIR / --tokenizer FILE -> loaded tokenizer; 0, 1 (error) or 2 (usage). */
static int open_tokenizer(const char *dir, const char *file, sr_tokenizer **tok)
{
    char path[4096];
    if (!dir == !file) return 2;
    if (dir) snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    else snprintf(path, sizeof path, "%s", file);
    sr_error err;
    if (sr_tokenizer_load(path, tok, &err)) {
        fprintf(stderr, "strata: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static char *read_stdin(size_t *len)
{
    size_t n = 0, cap = 1 << 16;
    char *b = sr_malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *nb = sr_realloc(b, cap *= 2);
            if (!nb) sr_free(b);
            b = nb;
        }
    }
    if (b && ferror(stdin)) {
        sr_free(b);
        b = NULL;
    }
    *len = n;
    return b;
}

static int print_json(const sr_tokenizer *tok, const int32_t *ids, size_t n)
{
    json_t *jids = json_array(), *jtok = json_array(), *jpiece = json_array();
    for (size_t i = 0; i < n; i++) {
        char *piece;
        size_t plen;
        if (sr_detokenize(tok, ids + i, 1, 0, &piece, &plen, NULL)) piece = NULL;
        json_array_append_new(jids, json_integer(ids[i]));
        json_array_append_new(jtok, json_string(sr_tokenizer_id_to_token(tok, ids[i])));
        json_array_append_new(jpiece, piece ? json_stringn(piece, plen) : json_null());
        sr_free(piece);
    }
    json_t *o = json_pack("{s:o,s:o,s:o}", "ids", jids, "tokens", jtok, "pieces", jpiece);
    int rc = o ? json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) : -1;
    printf("\n");
    json_decref(o);
    return rc ? 1 : 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *dir = NULL, *file = NULL, *text = NULL;
    unsigned flags = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_tokenize(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--special")) flags &= ~(unsigned)SR_TOKENIZE_SPECIAL_AS_TEXT;
        else if (!strcmp(a, "--no-special")) flags |= SR_TOKENIZE_SPECIAL_AS_TEXT;
        else if (!strcmp(a, "--add-special")) flags |= SR_TOKENIZE_ADD_SPECIAL;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--") && i + 1 < argc && !text) text = argv[++i];
        else if ((a[0] != '-' || !strcmp(a, "-")) && !text) text = a;
        else {
            fprintf(stderr, "strata tokenize: unexpected argument '%s'\n", a);
            usage_tokenize(stderr);
            return 2;
        }
    }
    if (!text || !dir == !file) {
        usage_tokenize(stderr);
        return 2;
    }
    sr_tokenizer *tok;
    int rc = open_tokenizer(dir, file, &tok);
    if (rc) return rc;
    size_t len;
    char *input = NULL;
    if (!strcmp(text, "-")) {
        if (!(input = read_stdin(&len))) {
            fprintf(stderr, "strata tokenize: cannot read stdin\n");
            sr_tokenizer_free(tok);
            return 1;
        }
        text = input;
    } else {
        len = strlen(text);
    }
    int32_t *ids;
    size_t n;
    sr_error err;
    if (sr_tokenize(tok, text, len, flags, &ids, &n, &err)) {
        fprintf(stderr, "strata: %s\n", err.msg);
        rc = 1;
    } else if (json) {
        rc = print_json(tok, ids, n);
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("\n");
    }
    sr_free(ids);
    sr_free(input);
    sr_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *dir = NULL, *file = NULL, *list = NULL;
    int skip = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_detokenize(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--ids") && i + 1 < argc) list = argv[++i];
        else if (!strcmp(a, "--skip-special")) skip = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else {
            fprintf(stderr, "strata detokenize: unexpected argument '%s'\n", a);
            usage_detokenize(stderr);
            return 2;
        }
    }
    if (!list || !dir == !file) {
        usage_detokenize(stderr);
        return 2;
    }
    int64_t *raw;
    int64_t n = cli_parse_int_list(list, &raw);
    if (n < 0) {
        fprintf(stderr, "strata detokenize: --ids: expected comma-separated integers\n");
        return 2;
    }
    int32_t *ids = sr_malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) {
        sr_free(raw);
        fprintf(stderr, "strata detokenize: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < n; i++) /* ids outside int32 are unknown ids: skipped */
        ids[i] = raw[i] >= 0 && raw[i] <= INT32_MAX ? (int32_t)raw[i] : -1;
    sr_free(raw);
    sr_tokenizer *tok;
    int rc = open_tokenizer(dir, file, &tok);
    if (rc) {
        sr_free(ids);
        return rc;
    }
    char *text;
    size_t len;
    sr_error err;
    if (sr_detokenize(tok, ids, (size_t)n, skip, &text, &len, &err)) {
        fprintf(stderr, "strata: %s\n", err.msg);
        rc = 1;
    } else {
        if (json) {
            json_t *o = json_pack("{s:s%}", "text", text, len);
            json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
            json_decref(o);
        } else {
            fwrite(text, 1, len, stdout);
        }
        printf("\n");
        sr_free(text);
    }
    sr_free(ids);
    sr_tokenizer_free(tok);
    return rc;
}
