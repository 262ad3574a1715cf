/* Token-id arguments shared by the model commands (logits, run). */
#ifndef SR_TOKEN_ARGS_H
#define SR_TOKEN_ARGS_H

#include <stdint.h>

/* "1,2,3" -> newly allocated int32 ids (sr_free).  Returns the count (0 for
 * an empty list), or -1 after printing why to stderr (prefixed with `cmd`).
 * The range against the vocabulary is checked by the model. */
int64_t parse_token_list(const char *cmd, const char *s, int32_t **out);

#endif
