/* Subcommands of the `strata` executable: each lives in tools/cmd_<name>.c
 * and is registered in the table of tools/main.c.  A command returns the
 * process exit code (0 ok, 1 error, 2 usage).  Results go to stdout,
 * progress and diagnostics to stderr. */
#ifndef SR_COMMANDS_H
#define SR_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_adapters(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_dequantize(int argc, char **argv);
/* `strata bench` dispatches to bench_<what> (tools/cmd_bench.c). */
int cmd_bench(int argc, char **argv);
int bench_quant(int argc, char **argv);
int bench_tokenize(int argc, char **argv);
int bench_run(int argc, char **argv);

#endif
