/* The smallest strata program: open a model, put a prompt in the Granite chat
 * format, stream the reply.  It uses only the public API (runtime/strata.h).
 *
 *   minimal MODEL_DIR [PROMPT [TOKENIZER_JSON]] */
#include <stdio.h>

#include "runtime/strata.h"

/* Called with each generated token: print the bytes it stands for. */
static int print_piece(int32_t token, int adapter, void *user)
{
    (void)adapter;
    const strata_model *m = user;
    size_t len;
    const char *piece = strata_token_piece(m, token, &len);
    if (piece && !strata_token_is_special(m, token)) fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;   /* go on */
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: minimal MODEL_DIR [PROMPT [TOKENIZER_JSON]]\n");
        return 2;
    }
    strata_model_params mp = strata_model_default_params();
    mp.tokenizer = argc > 3 ? argv[3] : NULL;   /* NULL: MODEL_DIR/tokenizer.json */
    strata_chat_message msg = {"user", argc > 2 ? argv[2] : "Hello!"};

    strata_error err;
    strata_model *m = NULL;
    strata_session *s = NULL;
    int32_t *ids = NULL;
    size_t n;
    int rc = 1;
    if (strata_model_open(argv[1], &mp, &m, &err)) goto fail;
    if (strata_chat_tokens(m, &msg, 1, 1, 0, STRATA_ADAPTER_UNKNOWN, &ids, &n, &err)) goto fail;
    if (strata_session_create(m, NULL, &s, &err)) goto fail;

    strata_generate_params gp = strata_generate_default_params();
    gp.max_tokens = 16;
    gp.on_token = print_piece;
    gp.user = m;
    strata_generate_result r;
    if (strata_generate(s, ids, n, &gp, &r, &err)) goto fail;
    printf("\n");
    fprintf(stderr, "minimal: %lld prompt tokens, %lld generated\n", (long long)r.n_prompt,
            (long long)r.n_generated);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "minimal: %s: %s\n", strata_status_string(err.code), strata_error_message(&err));
done:
    strata_free(ids);
    strata_session_free(s);
    strata_model_free(m);
    return rc;
}
