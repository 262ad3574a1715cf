#include <stdio.h>
#include "tools/commands.h"
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "strata inspect: not yet implemented\n"); return 1; }
