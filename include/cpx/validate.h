/* cpx/validate.h — the one place every cpx.v1 message is checked after decoding.
 *
 * protobuf-c's unpack checks only the wire format. These functions check the rest:
 * enums in range, required fields, citizen ID numbers, calendar dates, times,
 * UTF-8 and string bounds, repeated-field bounds, the signature's shape, and the
 * per-body and per-category rules of the seed policy. docs/validation.md lists every
 * rule with its path and name.
 *
 * Every error found is reported (up to CPX_MAX_FIELD_ERRORS; errs->truncated says
 * more were dropped), each with the field path ("discovery_report.categories[1].father"),
 * a snake_case rule name ("parent_situation") and a sentence a person in another
 * agency can act on. Messages never quote a minor's personal data.
 *
 * The validation path does not allocate (the responsibility-table loader does).
 *
 * Caveats: validation does not verify signatures or that commitments match the body
 * (envsign does) and does not look anything up (duplicates, unknown referrals: the
 * gateway). A redacted view (fields withheld, see envsign.h) fails the required-field
 * rules of the withheld fields unless CPX_VALIDATE_REDACTED is passed. */
#ifndef CPX_VALIDATE_H
#define CPX_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/err.h"

/* ---- responsibility table: which departments own each of the six tasks -------- */

typedef struct cpx_resp_table cpx_resp_table_t;

/* The seed's table (policy annex): RESCUE_PROTECTION -> CIVIL_AFFAIRS;
 * EDUCATION_SUPPORT -> EDUCATION; JUDICIAL_PROTECTION -> POLICE, PROCURATORATE,
 * COURT, JUSTICE; EMPLOYMENT_SUPPORT -> HRSS; MEDICAL_PROTECTION -> HEALTH;
 * PSYCHOLOGICAL_CARE -> WOMENS_FED, YOUTH_LEAGUE, DISABLED_FED, CIVILIZATION_OFFICE.
 * Static; never free it. */
const cpx_resp_table_t *cpx_resp_table_default(void);

/* Loads a table from YAML: a mapping from task name to a list of department codes,
 * optionally under a top-level key "responsibilities":
 *     RESCUE_PROTECTION: [CIVIL_AFFAIRS]
 *     JUDICIAL_PROTECTION: [POLICE, PROCURATORATE, COURT, JUSTICE]
 * Tasks not named own nobody. On success *table_out is the caller's (free with
 * cpx_resp_table_destroy). On failure returns CPX_ERR_CONFIG (or CPX_ERR_IO when the
 * file cannot be read) and err receives "file:line:column: what is wrong". */
int cpx_resp_table_load(const char *path, cpx_resp_table_t **table_out, char *err,
                        size_t errlen);
void cpx_resp_table_destroy(cpx_resp_table_t **table_p);

/* True if dept owns task (a Cpx__V1__Task value) in table (NULL = default). */
bool cpx_resp_table_owns(const cpx_resp_table_t *table, int task, const char *dept);

/* The departments owning task: count, and the i-th code (borrowed, valid as long as
 * the table). */
size_t cpx_resp_table_count(const cpx_resp_table_t *table, int task);
const char *cpx_resp_table_dept(const cpx_resp_table_t *table, int task, size_t i);

/* ---- options ---------------------------------------------------------------------- */

enum {
    /* No signature required (adapters checking a record before they sign it). A
     * signature that is present is still checked for shape. */
    CPX_VALIDATE_UNSIGNED = 1u << 0,
    /* A redacted view: a required top-level body field that is absent but has a
     * commitment (was withheld) is not an error. */
    CPX_VALIDATE_REDACTED = 1u << 1,
};

typedef struct cpx_validate_opts {
    int64_t now_ms;                  /* "now" for time rules; 0 = the clock */
    const cpx_resp_table_t *resp;    /* NULL = cpx_resp_table_default() */
    unsigned flags;                  /* CPX_VALIDATE_* */
} cpx_validate_opts_t;

/* ---- validation ------------------------------------------------------------------- */

/* Checks one envelope and its body. opts may be NULL (defaults). errs must be
 * zero-initialised by the caller (errors are appended). Returns CPX_OK, or
 * CPX_ERR_INVALID with the errors in errs, or CPX_ERR_ARG for a NULL env/errs. */
int cpx_validate_envelope(const cpx_envelope_t *env, const cpx_validate_opts_t *opts,
                          cpx_errors_t *errs);

/* Checks a whole ClientFrame: a Submit (one envelope, or a batch of
 * 1..CPX_MAX_BATCH_ENVELOPES envelopes that all carry batch proofs with one
 * root_signature, size equal to the batch length and distinct indexes), a
 * DeliveryAck or a Heartbeat. Paths start at the frame ("submit.batch.envelopes[3].sender").
 * Returns as cpx_validate_envelope. */
int cpx_validate_client_frame(const cpx_client_frame_t *frame, const cpx_validate_opts_t *opts,
                              cpx_errors_t *errs);
/* Same as cpx_validate_client_frame for the Submit inside it; paths start "submit.". */
int cpx_validate_submit(const Cpx__V1__Submit *submit, const cpx_validate_opts_t *opts,
                        cpx_errors_t *errs);

/* Small predicates shared with the JSON form, the router and the tools. */
/* [A-Z][A-Z0-9_]{1,31} */
bool cpx_dept_code_valid(const char *s);
/* [A-Z]{2}-YYYY-NNNNNN with 2015 <= YYYY <= 2199, e.g. "JY-2026-000123" */
bool cpx_case_id_valid(const char *s);
/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF, no NUL. */
bool cpx_utf8_valid(const char *s, size_t len);
/* The portable validator cpx_utf8_valid uses where SSSE3 is missing (it uses a
 * vector one where present); exported so tests check both against a reference. */
bool cpx_utf8_valid_portable(const char *s, size_t len);

#endif
