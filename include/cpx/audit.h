/* cpx/audit.h — the signed, append-only exchange log (RFC 9162 Merkle tree over
 * AuditLeaf records, Ed25519 signed tree heads) inside an LMDB environment.
 * Byte-level format: docs/audit-format.md.
 *
 * The log appends inside the caller's write transaction, so a leaf commits
 * atomically with the state change it records; many leaves and one head per
 * transaction is the normal path (group commit).
 *
 * Caveats: the audit object caches the tree's right edge between transactions.
 * After the caller's write transaction commits call cpx_audit_committed(); after it
 * aborts call cpx_audit_aborted() (which drops what that transaction appended).
 * One writer at a time, as LMDB requires; readers (proofs, leaf reads) may run from
 * any thread in their own read transactions. */
#ifndef CPX_AUDIT_H
#define CPX_AUDIT_H

#include <lmdb.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/merkle.h"

typedef struct cpx_audit cpx_audit_t;

/* Opens (creating) the log's databases in env. Caller owns the result; free with
 * cpx_audit_destroy. NULL on failure (logged). */
cpx_audit_t *cpx_audit_open(MDB_env *env);
void cpx_audit_destroy(cpx_audit_t **self_p);

/* Appends one leaf in txn: sets leaf->seq (the leaf index, from 0) and, when 0,
 * leaf->time_ms; encodes it and stores the bytes, with the Merkle nodes it completes,
 * as one record.
 * *seq_out (may be NULL) receives the sequence number. The leaf is borrowed. */
int cpx_audit_append(cpx_audit_t *self, MDB_txn *txn, cpx_audit_leaf_t *leaf,
                     uint64_t *seq_out);

/* Signs a head over the tree as it stands in txn (including this transaction's
 * appends) with the gateway key and stores it (CPX_ERR_REFUSED when key is not the
 * log's current gateway key: see cpx_audit_gateway_keys); out (may be NULL) receives a copy
 * the caller frees with cpx_msg_free. A head of the same size as the latest is not
 * signed again (CPX_OK, *out = latest). */
int cpx_audit_sign_head(cpx_audit_t *self, MDB_txn *txn, const cpx_key_t *key,
                        int64_t now_ms, cpx_sth_t **out);

void cpx_audit_committed(cpx_audit_t *self);
void cpx_audit_aborted(cpx_audit_t *self);

/* Tree size and root as of txn (any transaction). */
int cpx_audit_size(cpx_audit_t *self, MDB_txn *txn, uint64_t *size);
int cpx_audit_root(cpx_audit_t *self, MDB_txn *txn, uint64_t size, cpx_hash_t out);

/* Reads leaf seq; caller frees *out with cpx_msg_free. CPX_ERR_NOT_FOUND past the end. */
int cpx_audit_get_leaf(cpx_audit_t *self, MDB_txn *txn, uint64_t seq, cpx_audit_leaf_t **out);
/* The latest signed head, or the first head with tree_size >= size (latest when size 0). */
int cpx_audit_get_head(cpx_audit_t *self, MDB_txn *txn, uint64_t size, cpx_sth_t **out);

/* Proofs, O(log n) node reads. path must hold CPX_MAX_PROOF_PATH hashes. */
int cpx_audit_prove_inclusion(cpx_audit_t *self, MDB_txn *txn, uint64_t seq,
                              uint64_t tree_size, cpx_hash_t *path, size_t *path_len);
int cpx_audit_prove_consistency(cpx_audit_t *self, MDB_txn *txn, uint64_t old_size,
                                uint64_t new_size, cpx_hash_t *path, size_t *path_len);

/* Head signing bytes: "cpx.v1.sig.tree-head" 0x00 || log_id(32) || BE64(tree_size)
 * || BE64(timestamp_ms) || root(32). out must hold CPX_STH_SIGNING_LEN bytes. */
#define CPX_STH_SIGNING_LEN (21 + 32 + 8 + 8 + 32)
void cpx_sth_signing_bytes(const cpx_sth_t *sth, uint8_t out[CPX_STH_SIGNING_LEN]);
/* Verifies a head's signature and that log_id = SHA-256(raw public key). */
int cpx_sth_verify(const cpx_sth_t *sth, const cpx_key_t *gateway_pub);

/* ---- gateway key rotation (docs/audit-format.md, "Gateway key rotation") ---------------
 * A log has one identity for life: log_id = SHA-256(first gateway key). A rotation appends
 * a hand-over leaf (KEY_ENROLLED, sender CPX_AUDIT_GATEWAY_SENDER, detail
 * CPX_AUDIT_HANDOVER_DETAIL, key = the new raw public key) whose first covering head the
 * outgoing key signs; later heads are signed by the new key, which the meta record
 * CPX_AUDIT_META_CURRENT names (absent in a log that never rotated). */
#define CPX_AUDIT_GATEWAY_SENDER "GATEWAY"
#define CPX_AUDIT_HANDOVER_DETAIL "gateway-key-rotation"
#define CPX_AUDIT_META_CURRENT "gateway_current"

/* Verifies a head's signature under key and that its log_id equals log_id (a rotated
 * log's heads carry the first key's id, whatever key signed them). CPX_OK, or
 * CPX_ERR_BAD_SIGNATURE. */
int cpx_sth_verify_key(const cpx_sth_t *sth, const cpx_key_t *key,
                       const uint8_t log_id[CPX_SHA256_LEN]);

/* The log id, the first gateway key and the current one (each may be NULL) as of txn.
 * CPX_ERR_NOT_FOUND before the first signed head; CPX_ERR_TAMPERED when a record is
 * malformed. cpx_audit_sign_head refuses (CPX_ERR_REFUSED) any key but the current. */
int cpx_audit_gateway_keys(cpx_audit_t *self, MDB_txn *txn, uint8_t log_id[CPX_SHA256_LEN],
                           uint8_t first[CPX_ED25519_PUB_LEN],
                           uint8_t current[CPX_ED25519_PUB_LEN]);

/* Keyed pseudonym for sealed subjects: "P:" + hex(HMAC-SHA-256(key, subject))[0:32]. */
void cpx_audit_pseudonym(const uint8_t key[32], const char *subject, char out[35]);

/* ---- additions for readers that scan the log (verifier, export, timeline) -------------
 * Database layout: docs/audit-format.md. */

typedef struct cpx_audit_dbs {
    MDB_dbi leaves; /* BE64 seq -> n (1 byte) || n hashes of the perfect subtrees ending at
                     * leaf seq, level 0 up || AuditLeaf bytes (cpx_audit_record_split) */
    MDB_dbi heads;  /* BE64 tree_size -> SignedTreeHead bytes */
    MDB_dbi meta;   /* "version", "log_id", "gateway_pub" (first key, raw 32 bytes),
                     * "gateway_current" (after a rotation) */
    MDB_dbi cases;  /* case_ref -> BE64 seq (DUPSORT, DUPFIXED) */
    MDB_dbi keys;   /* BE64 seq -> u8 event, for every KEY_ENROLLED / KEY_REVOKED leaf */
} cpx_audit_dbs_t;

/* The database handles, for cursors over the raw records. */
void cpx_audit_dbs(const cpx_audit_t *self, cpx_audit_dbs_t *out);

/* Splits an audit.leaves record into its node hashes (*n_nodes of 32 bytes, level 0
 * first) and its leaf bytes, all borrowed from rec (any out pointer may be NULL).
 * CPX_ERR_TAMPERED when the record is malformed (a node count of 0 or past 64, or more
 * hashes than bytes). The count is checked against the seq by the verifier, not here. */
int cpx_audit_record_split(const void *rec, size_t rec_len, const uint8_t **nodes,
                           size_t *n_nodes, const uint8_t **leaf, size_t *leaf_len);

/* Leaf seq's stored bytes, borrowed: valid until txn ends. CPX_ERR_NOT_FOUND past the end. */
int cpx_audit_get_leaf_raw(cpx_audit_t *self, MDB_txn *txn, uint64_t seq,
                           const uint8_t **data, size_t *len);

/* Hash of the perfect subtree (level, index) as stored: a node source for cpx_merkle_*.
 * CPX_ERR_NOT_FOUND when not stored, CPX_ERR_TAMPERED when the record is malformed. */
int cpx_audit_get_node(cpx_audit_t *self, MDB_txn *txn, unsigned level, uint64_t index,
                       cpx_hash_t out);

/* Calls fn(ctx, seq) for each leaf with this case_ref, in sequence order, stopping at
 * the first non-zero return (which is returned). CPX_OK when none. */
int cpx_audit_case_foreach(cpx_audit_t *self, MDB_txn *txn, const char *case_ref,
                           int (*fn)(void *ctx, uint64_t seq), void *ctx);

/* Monotonic-enough wall clock in milliseconds since the epoch (leaf and head times). */
int64_t cpx_audit_now_ms(void);

#endif
