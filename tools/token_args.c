#include "tools/token_args.h"

#include <stdio.h>

#include "runtime/alloc.h"
#include "tools/cli_util.h"

int64_t parse_token_list(const char *cmd, const char *s, int32_t **out)
{
    int64_t *v = NULL;
    int64_t n = cli_parse_int_list(s, &v);
    if (n < 0) {
        fprintf(stderr, "strata %s: --tokens: expected a list of ids like 1,2,3\n", cmd);
        return -1;
    }
    int32_t *t = sr_malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!t) {
        fprintf(stderr, "strata %s: out of memory\n", cmd);
        sr_free(v);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > INT32_MAX) {
            fprintf(stderr, "strata %s: token id %lld at position %lld is out of range\n", cmd,
                    (long long)v[i], (long long)i);
            sr_free(t);
            sr_free(v);
            return -1;
        }
        t[i] = (int32_t)v[i];
    }
    sr_free(v);
    *out = t;
    return n;
}
