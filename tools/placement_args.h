/* The placement flags shared by `strata run` and `strata bench run`
 * (--devices, --logical-gpus, --max-memory, --strategy, --device-map,
 * --host-exec, --prefetch; the same vocabulary as `strata plan`): parsing, the usage
 * text, the checks that need no model, and their translation into the
 * public API's model parameters or the offload placement options.
 *
 * Values the library parses itself (the --devices and --max-memory specs,
 * the device map file) are checked when the model is placed; its messages
 * name the flag. */
#ifndef SR_PLACEMENT_ARGS_H
#define SR_PLACEMENT_ARGS_H

#include <stdbool.h>
#include <stdio.h>

#include "offload/placement.h"
#include "runtime/strata.h"

typedef struct placement_args {
    const char *devices, *max_memory, *strategy, *device_map, *host_exec;
    int prefetch;               /* 0..64; -1: not given (the planner's default) */
    int logical_gpus;           /* 1..SR_MAX_DEVICES; 0: not given (no split) */
} placement_args;

void placement_args_init(placement_args *p);

/* If `flag` is a placement flag, stores its value and returns 1; returns 0
 * for any other flag; -1 after printing why the value is bad (prefixed with
 * `cmd`, naming the flag). */
int placement_args_take(placement_args *p, const char *cmd, const char *flag, const char *value);

/* Whether `flag` is one of the placement flags (all take a value). */
bool placement_args_is_flag(const char *flag);

/* Units go on devices: --devices given and other than "cpu". */
bool placement_args_placed(const placement_args *p);

/* The flags together: 0, or 2 (usage error) after printing why. */
int placement_args_check(const placement_args *p, const char *cmd);

/* The flags' lines for a command's usage text. */
void placement_args_usage(FILE *f);

/* Into the API's model parameters (n_ctx is the caller's). */
void placement_args_to_params(const placement_args *p, strata_model_params *mp);
/* Into the offload placement options (ctx and threads are the caller's). */
void placement_args_to_opts(const placement_args *p, sr_placement_opts *po);

#endif
