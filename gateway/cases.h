/* gateway/cases.h — accepted messages, their original Acks, and minimal case ids.
 *
 * Databases: "gw.msg"  message id -> envelope bytes as received (signed form);
 *            "gw.ack"  message id -> the encoded original Ack (answered again to a
 *                      duplicate);
 *            "gw.case" case id -> case record: town of the minor (may be empty);
 *            "gw.meta" "next_case" -> BE64 counter.
 * Case ids look like "JY-2026-000123" (cpx_case_id_valid): prefix, year of the
 * first report (Jiangyin time), and a counter that never repeats.
 *
 * Caveats: all functions run in the caller's transaction; the write ones in the
 * gateway's cycle transaction, so a case, its message and its Ack commit together. */
#ifndef CPX_GW_CASES_H
#define CPX_GW_CASES_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/limits.h"

typedef struct cpx_gw_cases cpx_gw_cases_t;

/* Opens (creating when writable). Caller owns the result (cpx_gw_cases_destroy). */
cpx_gw_cases_t *cpx_gw_cases_open(MDB_env *env);
void cpx_gw_cases_destroy(cpx_gw_cases_t **self_p);

/* 1 when a message with this id was accepted, 0 when not, negative on error. */
int cpx_gw_cases_seen(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len);

/* The stored envelope / original Ack; caller frees *out with cpx_msg_free.
 * CPX_ERR_NOT_FOUND when absent. */
int cpx_gw_cases_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_envelope_t **out);
int cpx_gw_cases_ack(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                     Cpx__V1__Ack **out);
/* Borrowed view of the stored envelope bytes (valid until txn ends). */
int cpx_gw_cases_envelope_bytes(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id,
                                size_t len, MDB_val *out);

int cpx_gw_cases_put_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                              const uint8_t *env, size_t env_len);
int cpx_gw_cases_put_ack(cpx_gw_cases_t *self, MDB_txn *txn, const Cpx__V1__Ack *ack);

/* Decides the case of env into case_id (CPX_MAX_CASE_ID + 1 bytes) and town (the
 * minor's town as recorded for the case, CPX_MAX_DEPT_CODE + 1 bytes, may be ""):
 *  - env->case_id set: it must exist;
 *  - otherwise env->in_reply_to set: the case of that message (which must exist);
 *  - otherwise a new case (recorded with the minor's town, when the body names one).
 * CPX_ERR_NOT_FOUND (with a field error in errs) for an unknown case or message. */
int cpx_gw_cases_resolve(cpx_gw_cases_t *self, MDB_txn *txn, const cpx_envelope_t *env,
                         int64_t now_ms, char *case_id, char *town, cpx_errors_t *errs);

#endif
