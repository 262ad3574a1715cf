/* Subcommands of the `strata` executable: each lives in tools/cmd_<name>.c
 * and is registered in the table of tools/main.c.  A command returns the
 * process exit code (0 ok, 1 error, 2 usage).  Results go to stdout,
 * progress and diagnostics to stderr. */
#ifndef SR_COMMANDS_H
#define SR_COMMANDS_H

int cmd_inspect(int argc, char **argv);

#endif
