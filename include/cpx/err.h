/* cpx/err.h — one error space for libcpx, the gateway, adapters and tools.
 *
 * Every function that can fail returns int: CPX_OK (0) or a negative cpx_err.
 * The list is append-only: values are stable across versions and may be logged
 * and compared. Foreign error spaces are wrapped once where they occur: a system
 * call failure keeps errno, an OpenSSL failure drains the error queue into the log,
 * an LMDB failure logs mdb_strerror.
 *
 * Field errors (cpx_errors_t) carry what a person in another agency needs to fix a
 * record: the field path, the rule broken, and a sentence. */
#ifndef CPX_ERR_H
#define CPX_ERR_H

#include <stdbool.h>
#include <stddef.h>
#include "cpx/limits.h"

typedef enum cpx_err {
    CPX_OK = 0,
    CPX_ERR_NOMEM = -1,         /* allocation failed or a memory budget was exceeded */
    CPX_ERR_INVALID = -2,       /* input broke a rule; details in cpx_errors_t */
    CPX_ERR_DECODE = -3,        /* not a valid encoding */
    CPX_ERR_TOO_LARGE = -4,     /* over a limit in limits.h or configuration */
    CPX_ERR_CRYPTO = -5,        /* OpenSSL failed (queue drained into the log) */
    CPX_ERR_BAD_SIGNATURE = -6, /* a signature or MAC did not verify */
    CPX_ERR_STORE = -7,         /* LMDB failed (logged with mdb_strerror) */
    CPX_ERR_NOT_FOUND = -8,
    CPX_ERR_IO = -9,            /* a system call failed; errno is kept */
    CPX_ERR_CONFIG = -10,       /* configuration invalid; message names file:line:col */
    CPX_ERR_PROOF = -11,        /* a Merkle proof did not verify */
    CPX_ERR_FULL = -12,         /* store or queue full: back-pressure, retry later */
    CPX_ERR_EXISTS = -13,
    CPX_ERR_TAMPERED = -14,     /* stored data does not match its hash or signature */
    CPX_ERR_STATE = -15,        /* not allowed in the current state */
    CPX_ERR_NET = -16,          /* ZeroMQ or socket failure */
    CPX_ERR_REFUSED = -17,      /* authenticated but not allowed */
    CPX_ERR_TIMEOUT = -18,
    CPX_ERR_ARG = -19,          /* programmer error: bad argument */
} cpx_err;

/* Short, stable text for an error code; never NULL. */
const char *cpx_strerror(int err);

typedef struct cpx_field_error {
    char path[CPX_MAX_PATH_LEN];  /* e.g. "discovery_report.minor.id_number" */
    char rule[48];                /* e.g. "check_digit" */
    char message[256];            /* e.g. "check digit mismatch: expected 7, got 3" */
} cpx_field_error_t;

/* A bounded list of field errors; plain struct, zero-initialise before use (or
 * cpx_errors_clear it). */
typedef struct cpx_errors {
    size_t count;
    bool truncated;               /* more errors than CPX_MAX_FIELD_ERRORS */
    cpx_field_error_t items[CPX_MAX_FIELD_ERRORS];
} cpx_errors_t;

/* Empties the list without writing its ~14 KiB of items, which only entries below
 * count are read from: for a list on a hot path that is rarely filled. */
static inline void cpx_errors_clear(cpx_errors_t *errs)
{
    errs->count = 0;
    errs->truncated = false;
}

/* Adds one error; path and rule are copied (truncated to fit), message is printf-
 * formatted. Past CPX_MAX_FIELD_ERRORS sets truncated and drops the error. */
void cpx_errors_add(cpx_errors_t *errs, const char *path, const char *rule,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Writes "path: rule: message; path: rule: message" into buf (always terminated). */
void cpx_errors_format(const cpx_errors_t *errs, char *buf, size_t size);

#endif
