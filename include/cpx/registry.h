/* cpx/registry.h — enrolled departments and their keys, in the gateway's LMDB store.
 *
 * A department is identified by its code (e.g. POLICE) and has exactly one CURVE
 * public key (its transport identity: the ZAP handler maps key -> code) and one or
 * more Ed25519 signing keys, each named by its key id (first 8 bytes of
 * SHA-256(raw public key)) and carrying its enrolment and revocation times, so a key
 * can be rotated without breaking the verification of what it signed before.
 *
 * Enrolment and revocation append KEY_ENROLLED / KEY_REVOKED audit leaves (sender =
 * department, key = raw Ed25519 public key, key_id, detail = "ed25519") in the same
 * write transaction as the change, so the log records every identity change.
 *
 * Databases: "reg.dept" code -> record; "reg.curve" raw CURVE key (32) -> code.
 *
 * Caveats: functions taking a txn use it and never commit or abort it. Several
 * processes may write (cpxctl enroll while the gateway runs): LMDB's write lock
 * serialises them, and readers see a change at their next transaction. */
#ifndef CPX_REGISTRY_H
#define CPX_REGISTRY_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpx/audit.h"
#include "cpx/crypto.h"
#include "cpx/limits.h"

#define CPX_CURVE_KEY_LEN 32
#define CPX_REGISTRY_MAX_KEYS 16

typedef struct cpx_registry cpx_registry_t;

typedef struct cpx_dept_key {
    uint8_t key_id[CPX_KEY_ID_LEN];
    uint8_t pub[CPX_ED25519_PUB_LEN];
    int64_t enrolled_ms;
    int64_t revoked_ms;             /* 0 = valid */
} cpx_dept_key_t;

typedef struct cpx_dept {
    char code[CPX_MAX_DEPT_CODE + 1];
    char supervisor[CPX_MAX_DEPT_CODE + 1];  /* "" = none */
    uint8_t curve_pub[CPX_CURVE_KEY_LEN];
    int64_t enrolled_ms;
    int64_t revoked_ms;             /* 0 = may connect */
    size_t n_keys;
    cpx_dept_key_t keys[CPX_REGISTRY_MAX_KEYS];
} cpx_dept_t;

/* Opens (creating when the environment is writable) the registry databases.
 * Caller owns the result; free with cpx_registry_destroy. NULL on failure (logged). */
cpx_registry_t *cpx_registry_open(MDB_env *env);
void cpx_registry_destroy(cpx_registry_t **self_p);

/* True when code is a syntactically valid department code: the validator's rule
 * (cpx_dept_code_valid, docs/validation.md `dept_code`): [A-Z][A-Z0-9_]{1,31}. A code
 * outside it could be enrolled but every envelope it sent would be refused. */
bool cpx_registry_code_valid(const char *code);

/* True for codes the gateway uses for itself and no department may hold: "GATEWAY"
 * (CPX_AUDIT_GATEWAY_SENDER) is the sender of every leaf the gateway writes on its own
 * account (case notices, sealed-record decisions, key hand-overs, which the verifier
 * trusts because of that sender) and the name of its key files (GATEWAY.curve.pub). */
bool cpx_registry_code_reserved(const char *code);

/* Why code cannot be enrolled, as "rule: explanation" (rules `dept_code`, `reserved`);
 * NULL when it can. */
const char *cpx_registry_code_problem(const char *code);

/* Reads a department. CPX_ERR_NOT_FOUND when not enrolled. */
int cpx_registry_get(cpx_registry_t *self, MDB_txn *txn, const char *code, cpx_dept_t *out);

/* The department whose CURVE key is curve_pub, into code (CPX_MAX_DEPT_CODE + 1
 * bytes). CPX_ERR_NOT_FOUND for an unknown key, CPX_ERR_REFUSED for a revoked one. */
int cpx_registry_by_curve(cpx_registry_t *self, MDB_txn *txn,
                          const uint8_t curve_pub[CPX_CURVE_KEY_LEN], char *code);

/* The raw Ed25519 public key of code's signing key key_id. CPX_ERR_NOT_FOUND when
 * the department or key is not enrolled, CPX_ERR_REFUSED when it is revoked. */
int cpx_registry_signing_key(cpx_registry_t *self, MDB_txn *txn, const char *code,
                             const uint8_t key_id[CPX_KEY_ID_LEN],
                             uint8_t pub[CPX_ED25519_PUB_LEN]);

/* Enrols code (new) or updates it: sets its CURVE key (replacing the old one) and
 * adds the signing key sign_pub unless already enrolled; supervisor may be NULL.
 * Appends a KEY_ENROLLED leaf for a new signing key (audit may be NULL only in
 * tests). CPX_ERR_EXISTS when curve_pub belongs to another department,
 * CPX_ERR_INVALID for a bad code, CPX_ERR_FULL past CPX_REGISTRY_MAX_KEYS keys. */
int cpx_registry_enroll(cpx_registry_t *self, MDB_txn *txn, cpx_audit_t *audit,
                        const char *code, const uint8_t curve_pub[CPX_CURVE_KEY_LEN],
                        const uint8_t sign_pub[CPX_ED25519_PUB_LEN], const char *supervisor,
                        int64_t now_ms);

/* Revokes one signing key (key_id) of code, or, with key_id NULL, the whole
 * department: every signing key and its CURVE key (it can no longer connect).
 * Appends one KEY_REVOKED leaf per key revoked. CPX_ERR_NOT_FOUND when code or the
 * key is not enrolled; revoking something already revoked is CPX_OK with no leaf. */
int cpx_registry_revoke(cpx_registry_t *self, MDB_txn *txn, cpx_audit_t *audit,
                        const char *code, const uint8_t *key_id, int64_t now_ms);

/* Calls fn for every department in code order; stops early when fn returns non-zero
 * and returns that value. The dept is borrowed for the call only. */
typedef int (*cpx_registry_each_fn)(void *ctx, const cpx_dept_t *dept);
int cpx_registry_each(cpx_registry_t *self, MDB_txn *txn, cpx_registry_each_fn fn, void *ctx);

#endif
