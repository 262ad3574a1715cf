#include "offload/placement.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "offload/device_map.h"
#include "runtime/alloc.h"
#include "runtime/forward.h"

static int failed(sr_placement_failure kind, sr_placement_failure *why)
{
    if (why) *why = kind;
    return -1;
}

/* Budgets and tiers for the device set, with the run shape's reserves. */
static int build_tiers(sr_placement *p, const sr_model *m, const sr_placement_opts *o,
                       sr_placement_failure *why, sr_error *err)
{
    if (!o->devices || !*o->devices) {
        sr_fail(err, "placement: no devices given (e.g. sim:2x512MiB or cuda)");
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    }
    if (sr_device_set_parse(o->devices, &p->devs, err))
        /* "cuda" without a usable GPU is a limit of this machine, not a typo */
        return failed(strstr(err->msg, "--devices: cuda:") ? SR_PLACEMENT_UNSUPPORTED
                                                            : SR_PLACEMENT_BAD_OPTION, why);
    /* --logical-gpus before anything reads the devices: budgets and
     * --max-memory indices then address the logical devices */
    if (o->logical_gpus != 0 && o->logical_gpus != 1 &&
        sr_device_set_split_gpus(&p->devs, o->logical_gpus, err))
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    for (int g = 0; g < p->devs.n_gpu; g++)
        if (!p->devs.gpu[g].ops) {
            sr_fail(err, "placement: %s: this build can plan for it but not run units on it",
                    p->devs.gpu[g].name);
            return failed(SR_PLACEMENT_UNSUPPORTED, why);
        }
    sr_max_memory mm;
    if (o->max_memory && sr_max_memory_parse(o->max_memory, &mm, err))
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    sr_model_dims dims;
    sr_model_dims_from_config(&m->cfg, &dims);
    dims.intermediate = m->I;       /* from the weights when the config leaves it out */
    if (sr_tiers_build(&p->devs, o->max_memory ? &mm : NULL, &dims, &p->shape, p->tiers,
                       &p->n_tiers, err))
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    return 0;
}

/* The plan request's strategy or device map (map_tier: [units], caller's). */
static int choose_strategy(sr_placement *p, const sr_placement_opts *o, sr_plan_request *rq,
                           int *map_tier, sr_placement_failure *why, sr_error *err)
{
    if (o->strategy && o->device_map) {
        sr_fail(err, "placement: a device map and a strategy exclude each other");
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    }
    if (o->strategy && sr_strategy_parse(o->strategy, &rq->strategy)) {
        sr_fail(err, "placement: strategy \"%s\": expected auto, balanced, balanced_low_0 or "
                "sequential", o->strategy);
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    }
    if (o->host_exec && sr_exec_parse(o->host_exec, &rq->host_exec)) {
        sr_fail(err, "placement: host execution \"%s\": expected auto, stream or cpu",
                o->host_exec);
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    }
    if (!o->device_map) return 0;
    if (access(o->device_map, R_OK)) {
        sr_fail(err, "device map %s: %s", o->device_map, strerror(errno));
        return failed(SR_PLACEMENT_IO, why);
    }
    sr_device_map map;
    if (sr_device_map_load(o->device_map, &map, err)) return failed(SR_PLACEMENT_BAD_OPTION, why);
    int rc = sr_device_map_resolve(&map, p->units.units, p->units.n, p->devs.n_gpu, map_tier, err);
    sr_device_map_free(&map);
    if (rc) return failed(SR_PLACEMENT_BAD_OPTION, why);
    rq->strategy = SR_STRATEGY_MAP;
    rq->map_tier = map_tier;
    return 0;
}

int sr_placement_create(const sr_model *m, const sr_placement_opts *o, sr_placement **out,
                        sr_placement_failure *why, sr_error *err)
{
    *out = NULL;
    if (why) *why = SR_PLACEMENT_OK;
    if (o->ctx <= 0 || o->ctx > INT32_MAX) {
        sr_fail(err, "placement: context of %lld positions is not supported", (long long)o->ctx);
        return failed(SR_PLACEMENT_BAD_OPTION, why);
    }
    sr_placement *p = sr_calloc(1, sizeof *p);
    if (!p) {
        sr_fail(err, "placement: out of memory");
        return failed(SR_PLACEMENT_RUN, why);
    }
    int *map_tier = NULL;
    p->shape = (sr_run_shape){.ctx = o->ctx, .batch = 1, .chunk = sr_seq_chunk(o->ctx),
                              .threads = o->threads > 0 ? o->threads : 1,
                              .kv_type = m->kv_type};
    if (sr_units_from_catalog(&m->cat, &m->cfg, &p->shape, &p->units, err)) {
        failed(SR_PLACEMENT_RUN, why);
        goto fail;
    }
    if (build_tiers(p, m, o, why, err)) goto fail;
    map_tier = sr_calloc((size_t)p->units.n, sizeof *map_tier);
    if (!map_tier) {
        sr_fail(err, "placement: out of memory");
        failed(SR_PLACEMENT_RUN, why);
        goto fail;
    }
    sr_plan_request rq = {.units = p->units.units, .n_units = p->units.n, .tiers = p->tiers,
                          .n_tiers = p->n_tiers, .strategy = SR_STRATEGY_AUTO,
                          .host_exec = SR_EXEC_AUTO, .batch = 1, .prefetch = o->prefetch,
                          .hop_bytes = (uint64_t)m->H * sizeof(float)};
    if (choose_strategy(p, o, &rq, map_tier, why, err)) goto fail;
    if (sr_plan_make(&rq, &p->plan, err)) {
        failed(strstr(err->msg, "out of memory") ? SR_PLACEMENT_RUN : SR_PLACEMENT_NO_FIT, why);
        goto fail;
    }
    if (sr_offload_create(m, &p->plan, &p->units, &p->devs, o->ctx, &p->exec, err)) {
        failed(SR_PLACEMENT_RUN, why);
        goto fail;
    }
    sr_free(map_tier);
    *out = p;
    return 0;
fail:
    sr_free(map_tier);
    sr_placement_free(p);
    return -1;
}

void sr_placement_free(sr_placement *p)
{
    if (!p) return;
    sr_offload_free(p->exec);
    sr_plan_free(&p->plan);
    sr_unit_list_free(&p->units);
    sr_free(p);
}
