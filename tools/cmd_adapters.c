/* `strata adapters --model DIR [--json]`: the adapters of a Granite Switch
 * model (name, kind LoRA/aLoRA/unknown, rank, control token) and where
 * `run --adapter NAME` puts each one's control token. */
#include <stdio.h>
#include <string.h>

#include "runtime/strata.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata adapters --model DIR [--json]\n"
               "  Lists the adapters: index, name, kind (LoRA / aLoRA from config.json adapter_kinds\n"
               "  or the chat template, else unknown), rank, control token id and text, and where\n"
               "  `strata run --adapter NAME` inserts the control token.\n");
}

static const char *placement(const strata_adapter_info *a)
{
    if (a->kind == STRATA_ADAPTER_LORA) return "position 0";
    if (a->invocation && strstr(a->invocation, "<|start_of_role|>assistant") != a->invocation)
        return "before its invocation in the last user message (else before the generation prompt)";
    return "before the generation prompt";
}

int cmd_adapters(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if ((!strcmp(argv[i], "--model") || !strcmp(argv[i], "-m")) && i + 1 < argc) dir = argv[++i];
        else { usage(stderr); return 2; }
    }
    if (!dir) { usage(stderr); return 2; }
    strata_model *m;
    strata_error err;
    if (strata_model_open(dir, NULL, &m, &err)) {
        fprintf(stderr, "strata adapters: %s\n", err.message);
        return 1;
    }
    strata_model_info mi;
    strata_model_get_info(m, &mi);
    if (json) {
        printf("{\"model\": ");
        cli_json_str(stdout, dir);
        printf(", \"generation\": ");
        cli_json_str(stdout, mi.generation);
        printf(", \"adapters\": [");
    } else {
        printf("%s: %s, generation %s, %d adapter%s\n", dir, mi.architecture, mi.generation,
               mi.n_adapters, mi.n_adapters == 1 ? "" : "s");
    }
    if (!json && mi.n_adapters) printf("  %-3s %-24s %-8s %5s %8s  %-24s %s\n", "#", "name", "kind", "rank",
                                       "token", "token text", "control token goes");
    for (int k = 1; k <= mi.n_adapters; k++) {
        strata_adapter_info a;
        if (strata_model_adapter(m, k, &a, &err)) {
            fprintf(stderr, "strata adapters: %s\n", err.message);
            strata_model_free(m);
            return 1;
        }
        char *text = NULL;
        if (a.token < 0 || strata_detokenize(m, &a.token, 1, 0, &text, NULL, NULL)) text = NULL;
        if (json) {
            printf("%s{\"index\": %d, \"name\": ", k > 1 ? ", " : "", k);
            cli_json_str(stdout, a.name);
            printf(", \"kind\": \"%s\", \"rank\": %d, \"token_id\": %d, \"token\": ",
                   strata_adapter_kind_name(a.kind), a.rank, a.token);
            if (text) cli_json_str(stdout, text);
            else printf("null");
            printf(", \"invocation\": ");
            if (a.invocation) cli_json_str(stdout, a.invocation);
            else printf("null");
            printf(", \"placement\": \"%s\"}", placement(&a));
        } else {
            printf("  %-3d %-24s %-8s %5d %8d  %-24s %s\n", k, a.name, strata_adapter_kind_name(a.kind),
                   a.rank, a.token, text ? text : "-", placement(&a));
        }
        strata_free(text);
    }
    if (json) printf("]}\n");
    strata_model_free(m);
    return 0;
}
