/* Small helpers shared by the subcommands: option values, sizes, lists. */
#ifndef SR_CLI_UTIL_H
#define SR_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

/* "3GiB", "512MiB", "5GB", "1024" -> bytes; returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);
/* "1,2,3" -> newly allocated array (sr_free); returns count or -1. */
int64_t cli_parse_int_list(const char *s, int64_t **out);
/* Human-readable bytes ("1.50 GiB") into buf. */
const char *cli_fmt_bytes(uint64_t n, char *buf, size_t len);
/* Writes s as a JSON string literal (with quotes) to f. */
void cli_json_str(FILE *f, const char *s);
/* Whether `flag` is one of the NULL-terminated `names`. */
int cli_flag_in(const char *flag, const char *const *names);

/* Checks the value of --kv-type: 0, or -1 after printing why (prefixed with
 * `cmd`).  CLI_KV_TYPE_USAGE is its line in a command's usage text. */
int cli_check_kv_type(const char *cmd, const char *value);
#define CLI_KV_TYPE_USAGE \
    "  --kv-type T         KV cache elements: f32 (default) or bf16 (half the memory)\n"

#endif
