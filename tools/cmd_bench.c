/* `strata bench <what>`: benchmarks.  Each subcommand lives in its own
 * tools/bench_<what>.c, is declared in tools/commands.h and gets one line in
 * the table below. */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

static const struct bench_subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} subcommands[] = {
    {"quant", bench_quant, "matmul kernels per weight format vs read bandwidth and sgemm"},
    {"run", bench_run, "whole forward pass on a model: prefill/decode tok/s vs bandwidth"},
    {"tokenize", bench_tokenize, "tokenizer encode/decode MB/s on ~20 MB of mixed text"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: strata bench <what> [options]\n\nwhat:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(f, "\n`strata bench <what> --help` describes its options.\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "strata bench: unknown benchmark '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
