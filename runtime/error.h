/* Error reporting shared by every strata module.
 *
 * Convention: a function that can fail returns 0 on success and -1 on
 * failure, after filling the caller's sr_error (which may be NULL).  The
 * message always names what was wrong: the file, the tensor, the field. */
#ifndef SR_ERROR_H
#define SR_ERROR_H

#include <stddef.h>

#define SR_ERROR_MSG_MAX 1024

typedef struct sr_error {
    char msg[SR_ERROR_MSG_MAX];
} sr_error;

/* Formats the message into e (if non-NULL) and returns -1. */
int sr_fail(sr_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (for adding context such as a
 * file name on the way up).  Returns -1. */
int sr_fail_prefix(sr_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void sr_error_clear(sr_error *e) { if (e) e->msg[0] = 0; }

#endif
