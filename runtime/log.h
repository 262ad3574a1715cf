/* Diagnostics (warnings, progress notes) go through one sink so that the CLI
 * prints them on stderr and tests can capture them.  Errors are not logged:
 * they travel back to the caller in an sr_error. */
#ifndef SR_LOG_H
#define SR_LOG_H

typedef enum sr_log_level { SR_LOG_DEBUG, SR_LOG_INFO, SR_LOG_WARN } sr_log_level;

typedef void (*sr_log_sink)(sr_log_level level, const char *msg, void *user);

/* Default sink: WARN and INFO to stderr ("strata: warning: ..."), DEBUG only
 * when STRATA_DEBUG is set.  Pass NULL to restore the default. */
void sr_log_set_sink(sr_log_sink sink, void *user);
void sr_log(sr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sr_warn(...) sr_log(SR_LOG_WARN, __VA_ARGS__)
#define sr_info(...) sr_log(SR_LOG_INFO, __VA_ARGS__)
#define sr_debug(...) sr_log(SR_LOG_DEBUG, __VA_ARGS__)

#endif
