/* cpx/log.h — one line per event, key=value, to stderr.
 *
 *   ts=2026-11-28T23:40:01.123Z level=info mod=gateway msg="batch committed" n=120
 *
 * The level comes from cpx_log_set_level() or, when never set, from the environment
 * variable CPX_LOG_LEVEL (error, warn, info, debug; default info). Thread-safe: each
 * line is written with one write(2). Never log payload plaintext or minors' personal
 * data: log ids, codes and counts. */
#ifndef CPX_LOG_H
#define CPX_LOG_H

typedef enum cpx_log_level {
    CPX_LOG_ERROR = 0,
    CPX_LOG_WARN = 1,
    CPX_LOG_INFO = 2,
    CPX_LOG_DEBUG = 3,
} cpx_log_level;

void cpx_log_set_level(cpx_log_level level);
/* Parses "error|warn|info|debug"; returns -1 for anything else. */
int cpx_log_level_parse(const char *name);
int cpx_log_enabled(cpx_log_level level);

/* fmt is the rest of the line after mod=..., already in key=value form, e.g.
 * cpx_log(CPX_LOG_INFO, "audit", "msg=\"head signed\" size=%llu", n). */
void cpx_log(cpx_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define cpx_log_error(mod, ...) cpx_log(CPX_LOG_ERROR, mod, __VA_ARGS__)
#define cpx_log_warn(mod, ...)  cpx_log(CPX_LOG_WARN, mod, __VA_ARGS__)
#define cpx_log_info(mod, ...)  cpx_log(CPX_LOG_INFO, mod, __VA_ARGS__)
#define cpx_log_debug(mod, ...) \
    do { if (cpx_log_enabled(CPX_LOG_DEBUG)) cpx_log(CPX_LOG_DEBUG, mod, __VA_ARGS__); } while (0)

/* Drains OpenSSL's error queue into the log at error level. */
void cpx_log_openssl(const char *mod, const char *what);

#endif
