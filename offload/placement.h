/* Placement of a loaded model from the options `strata plan` takes
 * (--devices, --logical-gpus, --max-memory, --strategy / --device-map, --host-exec,
 * --prefetch, --ctx): the tiers and their budgets, the plan over the model's
 * own units, and the executor (offload/exec.h) that runs it.  This is what
 * the public API does for strata_model_params.devices other than "cpu". */
#ifndef SR_OFFLOAD_PLACEMENT_H
#define SR_OFFLOAD_PLACEMENT_H

#include <stdint.h>

#include "offload/budget.h"
#include "offload/device.h"
#include "offload/exec.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/model.h"

typedef struct sr_placement_opts {
    const char *devices;        /* "sim:2x512MiB", "cuda", ... (required) */
    int logical_gpus;           /* > 1: each GPU split into that many devices
                                   (sr_device_set_split_gpus); 0 or 1: none */
    const char *max_memory;     /* accelerate's vocabulary; NULL: default budgets */
    const char *strategy;       /* NULL: auto; excludes device_map */
    const char *device_map;     /* accelerate JSON file, or NULL */
    const char *host_exec;      /* auto (NULL) | stream | cpu */
    int prefetch;               /* streaming distance; < 0: the planner's default */
    int64_t ctx;                /* positions of the one sequence it runs (> 0) */
    int threads;                /* CPU threads (sizes the host's attention scratch) */
} sr_placement_opts;

/* Why sr_placement_create failed, for the API's status codes. */
typedef enum sr_placement_failure {
    SR_PLACEMENT_OK,
    SR_PLACEMENT_BAD_OPTION,    /* an option string is malformed or contradictory */
    SR_PLACEMENT_IO,            /* the device map file cannot be read */
    SR_PLACEMENT_NO_FIT,        /* the model does not fit the budgets */
    SR_PLACEMENT_UNSUPPORTED,   /* devices this build cannot run units on */
    SR_PLACEMENT_RUN,           /* creating the executor failed (memory) */
} sr_placement_failure;

typedef struct sr_placement {
    sr_device_set devs;
    sr_tier tiers[SR_MAX_DEVICES + 1];
    int n_tiers;
    sr_run_shape shape;
    sr_unit_list units;
    sr_plan plan;
    sr_offload *exec;
} sr_placement;

/* On failure *out is NULL, nothing is left allocated, err names the option
 * or unit and *why (may be NULL) says what kind of failure it was. */
int sr_placement_create(const sr_model *m, const sr_placement_opts *o, sr_placement **out,
                        sr_placement_failure *why, sr_error *err);
void sr_placement_free(sr_placement *p);

#endif
