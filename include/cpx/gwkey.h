/* cpx/gwkey.h — rotating the gateway's signing key without starting a new log.
 *
 * The outgoing key vouches for the incoming one: a hand-over leaf (KEY_ENROLLED, sender
 * "GATEWAY", key = the new raw Ed25519 public key, key_id, detail "gateway-key-rotation")
 * is appended and the first head covering it is signed with the OLD key; every later
 * head is signed with the NEW key. The log id stays SHA-256(first gateway key) for the
 * life of the log. Format and verification rule: docs/audit-format.md, "Gateway key
 * rotation"; runbook: docs/operations.md.
 *
 * Caveats: a compromised key cannot be revoked this way (it could equally vouch for an
 * attacker's key); the runbook names the procedure. Rotation is a write: one LMDB writer
 * at a time (a running gateway notices on its next cycle and stops signing). */
#ifndef CPX_GWKEY_H
#define CPX_GWKEY_H

#include <stdint.h>

#include "cpx/audit.h"

/* 1 when lf is a gateway key hand-over leaf (event, sender and detail all match). */
int cpx_gwkey_is_handover(const cpx_audit_leaf_t *lf);

/* Rotates in txn (a write transaction on audit's environment): old_key (private) must be
 * the log's current gateway key, new_key (public suffices) a different one. Appends the
 * hand-over leaf, signs the head covering it with old_key and records new_key as current.
 * *seq_out (may be NULL) receives the leaf's seq; *head_out (may be NULL) the head, which
 * the caller frees with cpx_msg_free. The caller commits (and calls cpx_audit_committed)
 * or aborts (cpx_audit_aborted). CPX_ERR_REFUSED when old_key is not current,
 * CPX_ERR_EXISTS when new_key is the current key, CPX_ERR_ARG on bad arguments, else the
 * store's error. */
int cpx_gwkey_rotate(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *old_key,
                     const cpx_key_t *new_key, int64_t now_ms, uint64_t *seq_out,
                     cpx_sth_t **head_out);

/* CPX_OK when key is the log's current gateway key or the log has no signed head yet (any
 * key may then start it); CPX_ERR_REFUSED when another key is current (*current_id, when
 * not NULL, receives its 8-byte key id); store errors otherwise. */
int cpx_gwkey_check_current(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *key,
                            uint8_t current_id[CPX_KEY_ID_LEN]);

#endif
