#include "runtime/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sr_fail(sr_error *e, const char *fmt, ...)
{
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int sr_fail_prefix(sr_error *e, const char *fmt, ...)
{
    if (!e) return -1;
    char prefix[SR_ERROR_MSG_MAX], old[SR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
    return -1;
}
