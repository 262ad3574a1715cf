/* Small helpers shared by the subcommands: option values, sizes, lists. */
#ifndef SR_CLI_UTIL_H
#define SR_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

/* "3GiB", "512MiB", "5GB", "1024" -> bytes; returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);
/* "1,2,3" -> newly allocated array (sr_free); returns count or -1 (also for
 * an empty item: "1,,2", "1,2,"). */
int64_t cli_parse_int_list(const char *s, int64_t **out);
/* Human-readable bytes ("1.50 GiB") into buf. */
const char *cli_fmt_bytes(uint64_t n, char *buf, size_t len);
/* Writes s as a JSON string literal (with quotes) to f; bytes that are not
 * UTF-8 (a path can hold any) become U+FFFD (sr_utf8_lossy), so the output
 * stays JSON.  Values for jansson, which refuses such strings, go through
 * sr_utf8_lossy (runtime/tokenizer.h) first. */
void cli_json_str(FILE *f, const char *s);

/* An output file that appears whole or not at all: written to PATH.tmp and
 * renamed over PATH by cli_out_commit; on failure cli_out_discard removes
 * the temporary file, never PATH (an older result stays).  A PATH that is
 * not a regular file (/dev/stdout, a pipe) is written in place. */
typedef struct cli_out {
    const char *path;
    char tmp[4200];
    int direct;
} cli_out;
/* NULL after a message prefixed with cmd. */
FILE *cli_out_open(cli_out *o, const char *cmd, const char *path);
int cli_out_commit(cli_out *o, const char *cmd);    /* 0, or -1 after a message */
void cli_out_discard(cli_out *o);
/* Whether `flag` is one of the NULL-terminated `names`. */
int cli_flag_in(const char *flag, const char *const *names);

/* Checks the value of --kv-type: 0, or -1 after printing why (prefixed with
 * `cmd`).  CLI_KV_TYPE_USAGE is its line in a command's usage text. */
int cli_check_kv_type(const char *cmd, const char *value);
#define CLI_KV_TYPE_USAGE \
    "  --kv-type T         KV cache elements: f32 (default) or bf16 (half the memory)\n"

/* The kernel choices a command that runs a model reads from the environment
 * (quant/matmul.h), for its usage text. */
#define CLI_KERNEL_ENV_USAGE \
    "environment (kernels, read once per process):\n" \
    "  STRATA_KERNELS=int8 4-bit and LLM.int8 matmuls on int8 activations (AVX-512 VNNI),\n" \
    "                      bf16 ones on bf16 activations: the fast path, ~2x prefill and\n" \
    "                      1.3-1.45x decode; logits move by ~1/10 of NF4's own error\n" \
    "                      (default: exact, f32 activations)\n" \
    "  STRATA_PREFILL=bf16 prefill GEMMs on bf16-rounded operands (AVX512-BF16)\n"

#endif
