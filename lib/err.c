/* err.c — error codes and field-error lists. */
#include "cpx/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cpx_strerror(int err)
{
    switch (err) {
    case CPX_OK: return "ok";
    case CPX_ERR_NOMEM: return "out of memory or over the memory budget";
    case CPX_ERR_INVALID: return "invalid input";
    case CPX_ERR_DECODE: return "cannot decode";
    case CPX_ERR_TOO_LARGE: return "over a size limit";
    case CPX_ERR_CRYPTO: return "cryptographic operation failed";
    case CPX_ERR_BAD_SIGNATURE: return "signature does not verify";
    case CPX_ERR_STORE: return "store failure";
    case CPX_ERR_NOT_FOUND: return "not found";
    case CPX_ERR_IO: return "input/output failure";
    case CPX_ERR_CONFIG: return "invalid configuration";
    case CPX_ERR_PROOF: return "proof does not verify";
    case CPX_ERR_FULL: return "full; retry later";
    case CPX_ERR_EXISTS: return "already exists";
    case CPX_ERR_TAMPERED: return "stored data was altered";
    case CPX_ERR_STATE: return "not allowed in this state";
    case CPX_ERR_NET: return "network failure";
    case CPX_ERR_REFUSED: return "refused";
    case CPX_ERR_TIMEOUT: return "timed out";
    case CPX_ERR_ARG: return "bad argument";
    default: return "unknown error";
    }
}

static void copy_trunc(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void cpx_errors_add(cpx_errors_t *errs, const char *path, const char *rule,
                    const char *fmt, ...)
{
    if (!errs)
        return;
    if (errs->count >= CPX_MAX_FIELD_ERRORS) {
        errs->truncated = true;
        return;
    }
    cpx_field_error_t *e = &errs->items[errs->count++];
    copy_trunc(e->path, sizeof e->path, path);
    copy_trunc(e->rule, sizeof e->rule, rule);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void cpx_errors_format(const cpx_errors_t *errs, char *buf, size_t size)
{
    if (!size)
        return;
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; errs && i < errs->count && used + 1 < size; i++) {
        const cpx_field_error_t *e = &errs->items[i];
        int n = snprintf(buf + used, size - used, "%s%s: %s: %s", i ? "; " : "",
                         e->path, e->rule, e->message);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (errs && errs->truncated && used + 1 < size)
        snprintf(buf + used, size - used, "; (more errors not shown)");
}
