/* `strata bench tokenize [--tokenizer FILE] [--size MB] [--json]`: encode and
 * decode throughput of the tokenizer, single-threaded.
 *
 * The input is ~20 MB of mixed text generated deterministically: the texts
 * of the golden cases.jsonl next to the tokenizer (code, numbers, CJK,
 * emoji, scripts, chat markup), built-in English prose and made-up words,
 * cut into documents of 16 KiB that are encoded one call each.  The first pass
 * runs on a fresh tokenizer (cold BPE cache), the best of the next two is
 * the warm figure.  FILE may be zstd-compressed (*.zst), as the copies in
 * tests/data are; the default is the granite-4-reconstructed one there. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "runtime/alloc.h"
#include "runtime/tokenizer.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static const char *const prose[] = {
    "The committee met on a grey Tuesday morning to review the quarterly figures. Revenue had "
    "grown by 4.2 percent, while operating costs rose faster than anyone had expected, mostly "
    "because of the new data centre in the north.",
    "She opened the window, listened to the rain for a while, and then went back to the letter "
    "she had been trying to finish since March. It wasn't that she didn't know what to say; she "
    "simply couldn't decide where to begin.",
    "Large language models are trained on trillions of tokens. A tokenizer turns raw text into "
    "the integer ids that the model reads, and the same tokenizer turns the model's output back "
    "into text, byte for byte.",
    "In 1969, the first message sent over the ARPANET was \"lo\" -- the system crashed before the "
    "rest of \"login\" could be typed. Fifty years later, billions of devices exchange packets "
    "every second.",
    "Quantization stores each weight in four bits instead of sixteen. Blocks of 64 values share "
    "one scale, and a second level of quantization compresses the scales themselves.",
    "\"Are you coming?\" he asked. \"I'll be there in ten minutes,\" she replied, \"unless the "
    "train is late again, which, let's be honest, it usually is.\"",
    "def moving_average(xs, k):\n    out = []\n    for i in range(len(xs) - k + 1):\n        "
    "out.append(sum(xs[i:i + k]) / k)\n    return out\n",
    "Invoice #20481 — due 2026-12-01: 3 × widgets @ $19.99, 12 × bolts @ $0.35; subtotal "
    "$64.17, VAT (21%) $13.48, total $77.65.",
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: on a shared machine it shows what one core does
 * when it is not taken away. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? sr_malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        sr_free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

/* Loads FILE, decompressing *.zst in memory. */
static sr_tokenizer *load(const char *path)
{
    size_t n;
    char *data = read_all(path, &n);
    if (!data) {
        fprintf(stderr, "strata bench tokenize: cannot read %s\n", path);
        return NULL;
    }
    size_t pl = strlen(path);
    if (pl > 4 && !strcmp(path + pl - 4, ".zst")) {
        unsigned long long size = ZSTD_getFrameContentSize(data, n);
        char *plain = size < (1ull << 32) ? sr_malloc(size + 1) : NULL;
        size_t got = plain ? ZSTD_decompress(plain, size, data, n) : 0;
        sr_free(data);
        if (!plain || ZSTD_isError(got) || got != size) {
            sr_free(plain);
            fprintf(stderr, "strata bench tokenize: %s: not a zstd frame with a known size\n", path);
            return NULL;
        }
        data = plain;
        n = got;
    }
    sr_tokenizer *tok;
    sr_error err;
    int rc = sr_tokenizer_load_json(data, n, path, &tok, &err);
    sr_free(data);
    if (rc) {
        fprintf(stderr, "strata: %s\n", err.msg);
        return NULL;
    }
    return tok;
}

typedef struct texts {
    char **s;
    size_t *n;
    size_t count;
} texts;

/* The "text" fields of a cases.jsonl (missing file: none). */
static void read_cases(const char *path, texts *t)
{
    size_t n;
    char *data = read_all(path, &n);
    if (!data) return;
    for (char *line = data, *nl; line < data + n; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(data + n - line));
        if (!nl) nl = data + n;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, NULL);
        json_t *s = json_object_get(o, "text");
        if (json_is_string(s) && json_string_length(s)) {
            char **ns = realloc(t->s, (t->count + 1) * sizeof *ns);
            size_t *nn = realloc(t->n, (t->count + 1) * sizeof *nn);
            if (ns) t->s = ns;
            if (nn) t->n = nn;
            char *copy = ns && nn ? malloc(json_string_length(s)) : NULL;
            if (copy) {
                memcpy(copy, json_string_value(s), json_string_length(s));
                t->s[t->count] = copy;
                t->n[t->count++] = json_string_length(s);
            }
        }
        json_decref(o);
    }
    sr_free(data);
}

/* A sentence of made-up words and numbers, so that the BPE cache also sees
 * words it has never met. */
static size_t random_sentence(uint64_t *rng, char *out)
{
    static const char *const syl[] = {"ka", "lo", "mer", "tin", "sa", "vo", "ri", "qua", "ne",
                                      "dor", "pe", "lun", "xi", "bra", "tho", "gen", "u", "ish"};
    size_t n = 0, nsyl = sizeof syl / sizeof *syl;
    int words = 8 + (int)(*rng >> 60);
    for (int w = 0; w < words; w++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = *rng >> 20;
        if (w) out[n++] = ' ';
        if (r % 7 == 0) {
            n += (size_t)sprintf(out + n, "%u", (unsigned)(r >> 8) % 100000);
            continue;
        }
        for (int k = 0; k < 1 + (int)(r % 4); k++) {
            const char *s = syl[(r >> (4 + 5 * k)) % nsyl];
            size_t l = strlen(s);
            memcpy(out + n, s, l);
            n += l;
        }
        if (w == 0) out[0] = (char)(out[0] - 'a' + 'A');
    }
    out[n++] = '.';
    return n;
}

/* Deterministic mixed corpus of `size` bytes: 2/5 case texts, 2/5 prose,
 * 1/5 made-up sentences. */
static char *make_corpus(const texts *cases, size_t size)
{
    char *buf = malloc(size + 4096);
    if (!buf) return NULL;
    uint64_t rng = 0x5EED5EED12345678ull;
    size_t n = 0, np = sizeof prose / sizeof *prose;
    while (n < size) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(rng >> 33);
        const char *s;
        size_t len;
        if (r % 5 == 4) {
            n += random_sentence(&rng, buf + n);
            buf[n++] = ' ';
            continue;
        }
        if (cases->count && r % 5 < 2) {
            s = cases->s[(r / 5) % cases->count];
            len = cases->n[(r / 5) % cases->count];
        } else {
            s = prose[(r / 5) % np];
            len = strlen(s);
        }
        if (len > 4000) len = 4000;
        memcpy(buf + n, s, len);
        n += len;
        memcpy(buf + n, r & 64 ? "\n\n" : " ", r & 64 ? 2 : 1);
        n += r & 64 ? 2 : 1;
    }
    return buf;
}

#define DOC_BYTES (16 * 1024)

/* Encodes the corpus document by document; wall seconds (CPU seconds in
 * *cpu), or < 0 on error. */
static double encode_pass(const sr_tokenizer *tok, const char *text, size_t len, size_t *ntok,
                          double *cpu)
{
    double t0 = now_s(), c0 = cpu_s();
    *ntok = 0;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < DOC_BYTES ? len - off : DOC_BYTES;
        int32_t *ids;
        size_t m;
        sr_error err;
        if (sr_tokenize(tok, text + off, n, 0, &ids, &m, &err)) {
            fprintf(stderr, "strata: %s\n", err.msg);
            return -1;
        }
        *ntok += m;
        sr_free(ids);
        off += n;
    }
    *cpu = cpu_s() - c0;
    return now_s() - t0;
}

static const char *default_tokenizer(char *buf, size_t cap)
{
    const char *root = getenv("STRATA_TEST_DATA");
    snprintf(buf, cap, "%s/tokenizer/granite-4-reconstructed/tokenizer.json.zst",
             root ? root : "tests/data");
    return buf;
}

int bench_tokenize(int argc, char **argv)
{
    char defpath[4096];
    const char *path = NULL;
    int json = 0;
    double mb = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            char *end;
            mb = strtod(argv[++i], &end);
            if (*end || end == argv[i]) mb = -1;     /* refused below */
        }
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            const int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: strata bench tokenize [--tokenizer FILE[.zst]] [--size MB] [--json]\n");
            return help ? 0 : 2;
        }
    }
    if (!(mb * 1e6 >= 1) || mb > 4096) {    /* at least a byte of text */
        fprintf(stderr, "strata bench tokenize: --size: expected a number of MB, 1e-6 to "
                "4096\n");
        return 2;
    }
    if (!path) path = default_tokenizer(defpath, sizeof defpath);

    /* cases.jsonl next to the tokenizer, if any */
    texts cases = {0};
    char cpath[4200];
    const char *slash = strrchr(path, '/');
    snprintf(cpath, sizeof cpath, "%.*scases.jsonl", slash ? (int)(slash - path + 1) : 0, path);
    read_cases(cpath, &cases);
    size_t size = (size_t)(mb * 1e6);
    char *text = make_corpus(&cases, size);
    for (size_t i = 0; i < cases.count; i++) free(cases.s[i]);
    free(cases.s);
    free(cases.n);
    if (!text) {
        fprintf(stderr, "strata bench tokenize: out of memory\n");
        return 1;
    }

    double t_load = now_s();
    sr_tokenizer *tok = load(path);
    t_load = now_s() - t_load;
    if (!tok) {
        free(text);
        return 1;
    }
    size_t ntok = 0;
    double cold_cpu, warm_cpu = -1, cpu;
    double cold = encode_pass(tok, text, size, &ntok, &cold_cpu), warm = -1;
    for (int rep = 0; rep < 2 && cold >= 0; rep++) {
        double t = encode_pass(tok, text, size, &ntok, &cpu);
        if (t < 0) { cold = -1; break; }
        if (warm < 0 || t < warm) warm = t;
        if (warm_cpu < 0 || cpu < warm_cpu) warm_cpu = cpu;
    }
    double dec = -1;
    size_t dec_bytes = 0;
    if (cold >= 0) {
        int32_t *ids;
        size_t m;
        char *out;
        sr_error err;
        if (!sr_tokenize(tok, text, size, 0, &ids, &m, &err)) {
            double t0 = now_s();
            if (!sr_detokenize(tok, ids, m, 0, &out, &dec_bytes, &err)) {
                dec = now_s() - t0;
                sr_free(out);
            }
            sr_free(ids);
        }
    }
    sr_tokenizer_free(tok);
    free(text);
    if (cold < 0) return 1;

    double mbs_cold = size / 1e6 / cold, mbs_warm = size / 1e6 / warm;
    double cpu_cold = size / 1e6 / cold_cpu, cpu_warm = size / 1e6 / warm_cpu;
    double mbs_dec = dec > 0 ? dec_bytes / 1e6 / dec : 0;
    if (json) {
        printf("{\"bench\": \"tokenize\", \"tokenizer\": ");
        cli_json_str(stdout, path);
        printf(", \"bytes\": %zu, \"tokens\": %zu, \"threads\": 1, \"load_s\": %.3f, "
               "\"encode_cold_mb_s\": %.2f, \"encode_warm_mb_s\": %.2f, "
               "\"encode_cold_cpu_mb_s\": %.2f, \"encode_warm_cpu_mb_s\": %.2f, "
               "\"decode_mb_s\": %.2f}\n",
               size, ntok, t_load, mbs_cold, mbs_warm, cpu_cold, cpu_warm, mbs_dec);
    } else {
        printf("tokenizer  %s (loaded in %.2f s)\n", path, t_load);
        printf("input      %.1f MB mixed text, %zu tokens (%.2f bytes/token), %d KiB documents\n",
               size / 1e6, ntok, (double)size / (double)(ntok ? ntok : 1), DOC_BYTES / 1024);
        printf("encode     %.1f MB/s cold cache, %.1f MB/s warm (1 thread; per CPU second: "
               "%.1f cold, %.1f warm)\n", mbs_cold, mbs_warm, cpu_cold, cpu_warm);
        printf("decode     %.1f MB/s of text\n", mbs_dec);
    }
    return 0;
}
