#include "tools/placement_args.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "offload/planner.h"
#include "tools/cli_util.h"

void placement_args_init(placement_args *p)
{
    memset(p, 0, sizeof *p);
    p->prefetch = -1;
}

bool placement_args_is_flag(const char *flag)
{
    static const char *const flags[] = {"--devices", "--max-memory", "--device-map", "--strategy",
                                        "--host-exec", "--logical-gpus", "--prefetch", NULL};
    return cli_flag_in(flag, flags);
}

int placement_args_take(placement_args *p, const char *cmd, const char *flag, const char *value)
{
    if (!strcmp(flag, "--devices")) p->devices = value;
    else if (!strcmp(flag, "--max-memory")) p->max_memory = value;
    else if (!strcmp(flag, "--device-map")) p->device_map = value;
    else if (!strcmp(flag, "--strategy")) {
        sr_strategy s;
        if (sr_strategy_parse(value, &s)) {
            fprintf(stderr, "%s: --strategy \"%s\": expected auto, balanced, balanced_low_0 or "
                    "sequential\n", cmd, value);
            return -1;
        }
        p->strategy = value;
    } else if (!strcmp(flag, "--host-exec")) {
        sr_exec e;
        if (sr_exec_parse(value, &e)) {
            fprintf(stderr, "%s: --host-exec \"%s\": expected auto, stream or cpu\n", cmd, value);
            return -1;
        }
        p->host_exec = value;
    } else if (!strcmp(flag, "--logical-gpus")) {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (end == value || *end || n < 1 || n > SR_MAX_DEVICES) {
            fprintf(stderr, "%s: --logical-gpus '%s': expected 1..%d\n", cmd, value,
                    SR_MAX_DEVICES);
            return -1;
        }
        p->logical_gpus = (int)n;
    } else if (!strcmp(flag, "--prefetch")) {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (end == value || *end || n < 0 || n > SR_MAX_PREFETCH) {
            fprintf(stderr, "%s: --prefetch '%s': expected 0..%d\n", cmd, value, SR_MAX_PREFETCH);
            return -1;
        }
        p->prefetch = (int)n;
    } else {
        return 0;
    }
    return 1;
}

bool placement_args_placed(const placement_args *p)
{
    return p->devices && strcmp(p->devices, "cpu");
}

int placement_args_check(const placement_args *p, const char *cmd)
{
    if (p->logical_gpus && (!p->devices || strcasecmp(p->devices, "cuda"))) {
        fprintf(stderr, "%s: --logical-gpus applies to --devices cuda (splits each GPU into N "
                "devices)\n", cmd);
        return 2;
    }
    if (!placement_args_placed(p) && (p->max_memory || p->strategy || p->device_map ||
                                      p->host_exec || p->prefetch >= 0)) {
        fprintf(stderr, "%s: --max-memory, --strategy, --device-map, --host-exec and --prefetch "
                "place units on devices: give --devices (e.g. sim:2x512MiB or cuda)\n", cmd);
        return 2;
    }
    if (p->strategy && p->device_map) {
        fprintf(stderr, "%s: --device-map and --strategy exclude each other\n", cmd);
        return 2;
    }
    return 0;
}

void placement_args_usage(FILE *f)
{
    fprintf(f,
        "placement (as `strata plan`; default: every unit on the CPU):\n"
        "  --devices SPEC      sim:2x512MiB,sim:1GiB (simulated accelerators) or cuda\n"
        "  --logical-gpus N    with --devices cuda: split each GPU into N devices cuda:P.0..\n"
        "                      with 1/N of its memory each (multi-device paths on one GPU)\n"
        "  --max-memory SPEC   budgets: cuda:0=3GiB,1=6GiB,cpu=20GiB (or 0=3GiB); indices\n"
        "                      count logical devices with --logical-gpus (0=cuda:0.0,1=cuda:0.1)\n"
        "  --strategy S        auto | balanced | balanced_low_0 | sequential\n"
        "  --device-map FILE   explicit placement (accelerate JSON); replaces --strategy\n"
        "  --host-exec P       host-tier layers: auto | stream | cpu\n"
        "  --prefetch N        streaming prefetch distance 0..64 (default 2, 1 when tight)\n");
}

void placement_args_to_params(const placement_args *p, strata_model_params *mp)
{
    mp->devices = p->devices;
    mp->logical_gpus = p->logical_gpus;
    mp->max_memory = p->max_memory;
    mp->strategy = p->strategy;
    mp->device_map = p->device_map;
    mp->host_exec = p->host_exec;
    /* the API says 0 for its default and -1 for none */
    mp->prefetch = p->prefetch < 0 ? 0 : p->prefetch == 0 ? -1 : p->prefetch;
}

void placement_args_to_opts(const placement_args *p, sr_placement_opts *po)
{
    po->devices = p->devices;
    po->logical_gpus = p->logical_gpus;
    po->max_memory = p->max_memory;
    po->strategy = p->strategy;
    po->device_map = p->device_map;
    po->host_exec = p->host_exec;
    po->prefetch = p->prefetch;     /* the same convention: < 0 the default, 0 none */
}
