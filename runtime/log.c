#include "runtime/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static sr_log_sink g_sink;
static void *g_user;

void sr_log_set_sink(sr_log_sink sink, void *user)
{
    g_sink = sink;
    g_user = user;
}

void sr_log(sr_log_level level, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_sink) {
        g_sink(level, buf, g_user);
        return;
    }
    if (level == SR_LOG_DEBUG && !getenv("STRATA_DEBUG")) return;
    fprintf(stderr, "strata: %s%s\n", level == SR_LOG_WARN ? "warning: " : "", buf);
}
