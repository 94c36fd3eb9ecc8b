/* log.c — key=value lines to stderr. */
#include "cpx/log.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int g_level = -1; /* -1: not yet read from the environment */

static const char *level_names[] = {"error", "warn", "info", "debug"};

int cpx_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void cpx_log_set_level(cpx_log_level level) { g_level = (int)level; }

int cpx_log_enabled(cpx_log_level level)
{
    if (g_level < 0) {
        int l = cpx_log_level_parse(getenv("CPX_LOG_LEVEL"));
        g_level = l < 0 ? CPX_LOG_INFO : l;
    }
    return (int)level <= g_level;
}

void cpx_log(cpx_log_level level, const char *mod, const char *fmt, ...)
{
    if (!cpx_log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s mod=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], mod ? mod : "-");
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void cpx_log_openssl(const char *mod, const char *what)
{
    unsigned long e;
    int any = 0;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        cpx_log_error(mod, "msg=\"%s\" openssl=\"%s\"", what, buf);
        any = 1;
    }
    if (!any)
        cpx_log_error(mod, "msg=\"%s\" openssl=\"(no error queued)\"", what);
}
