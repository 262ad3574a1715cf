/* The `strata` command: dispatches to the subcommands of tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"logits", cmd_logits, "write the raw logits of a token sequence (full or prefill + decode)"},
    {"run", cmd_run, "generate text (chat format, adapters, --chat) or token ids after a prompt"},
    {"adapters", cmd_adapters, "list a Granite Switch model's adapters: kind, rank, control token"},
    {"inspect", cmd_inspect, "describe a checkpoint (architecture, adapters, tensors, bytes)"},
    {"plan", cmd_plan, "where each unit would go over GPUs / sim devices / host, before loading"},
    {"tokenize", cmd_tokenize, "text -> token ids with the model's tokenizer.json"},
    {"detokenize", cmd_detokenize, "token ids -> text with the model's tokenizer.json"},
    {"synth", cmd_synth, "write a random-weight checkpoint of a real model's shape (for benchmarks)"},
    {"convert", cmd_convert, "HF safetensors model -> bnb-format checkpoint (nf4, fp4, int8), or back"},
    {"quantize", cmd_quantize, "quantize the 2-D float tensors of a safetensors file (nf4, fp4, int8)"},
    {"dequantize", cmd_dequantize, "write the exact f32 dequantization of one stored weight"},
    {"bench", cmd_bench, "benchmarks: quant (matmul kernels), run (a model), tokenize"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: strata <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`strata <command> --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("strata 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "strata: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
