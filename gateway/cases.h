/* gateway/cases.h — accepted messages (encrypted at rest), their original Acks, and
 * minimal case ids.
 *
 * Databases: "gw.msgs" BE64(seq of the ACCEPTED leaf) -> message record:
 *                      sender_len(1) sender case_len(1) case_id, then either nothing
 *                      (a blank record: the envelope is in the sealed vault) or
 *                      nonce(12) | AES-256-GCM(envelope bytes as signed) | tag(16)
 *                      under the store key, AAD = "cpx.v1.store" 00 | BE64(seq) | the
 *                      clear head (sender_len .. case_id), sealed by a
 *                      cpx_aead_sealer per handle (counter nonces). Keys only grow
 *                      (MDB_APPEND), so accepting touches the right edge of the tree only;
 *            "gw.mid", "gw.midlog": message id -> seq, the dedupe index (idindex.h);
 *            "gw.case" case id -> case record: town of the minor (may be empty);
 *            "gw.meta" "next_case" -> BE64 counter; "store_key_id" -> the first 8 bytes
 *                      of SHA-256("cpx.v1.store-key" 00 | store key), written at first
 *                      start: afterwards only that key opens the store.
 * The store key is a 32-byte file (keys.store_key in gateway.yaml) apart from the data,
 * the signing key and the vault key; a store that never held a message gets a new one
 * (mode 0600) when the file is missing; otherwise a missing or wrong key stops the start.
 * The original Ack is not stored: it is (message id, seq, case id, size of the first
 * signed head covering seq), all recoverable from the record and the log.
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
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/limits.h"

typedef struct cpx_gw_cases cpx_gw_cases_t;

/* Opens (creating when writable) with the store key file key_path (created for a store
 * that never held a message). CPX_OK, or an error with a message naming key_path in err:
 * CPX_ERR_TAMPERED for another key than the store was written under, CPX_ERR_NOT_FOUND
 * for a missing key file of a store bound to a key, CPX_ERR_STATE for a store with
 * messages written before encryption at rest. Caller owns *out (cpx_gw_cases_destroy).
 * A handle decrypts into its own buffer: one handle per thread. */
int cpx_gw_cases_open(MDB_env *env, const char *key_path, cpx_gw_cases_t **out, char *err,
                      size_t err_size);
/* Another handle on the same store and key, for another thread. NULL on failure. */
cpx_gw_cases_t *cpx_gw_cases_share(const cpx_gw_cases_t *self, MDB_env *env);
void cpx_gw_cases_destroy(cpx_gw_cases_t **self_p);

/* The writer's handle keeps the last `bytes` of messages it stored (at most `entries`,
 * a power of two) in the clear, so that cpx_gw_cases_get of a recent message reads
 * neither the store nor decrypts. Blanking a message drops (and wipes) its copy; after
 * each transaction the caller says whether it committed or aborted, so the copies match
 * the store (the aborted transaction's are dropped). Only for the handle of the one
 * writer thread. CPX_ERR_ARG when already on, CPX_ERR_NOMEM. */
int cpx_gw_cases_keep_recent(cpx_gw_cases_t *self, size_t bytes, size_t entries);
void cpx_gw_cases_committed(cpx_gw_cases_t *self);
void cpx_gw_cases_aborted(cpx_gw_cases_t *self);
/* The writer's handle keeps the newest message ids in memory and folds them into the
 * id index (idindex.h): index_live once at start, fold_ids in every write transaction
 * before its commit; committed/aborted above tell it how the transaction ended. */
int cpx_gw_cases_index_live(cpx_gw_cases_t *self, MDB_env *env);
int cpx_gw_cases_fold_ids(cpx_gw_cases_t *self, MDB_txn *txn);
/* Gets answered from those copies (for tests and metrics). */
uint64_t cpx_gw_cases_recent_hits(const cpx_gw_cases_t *self);

/* A stored message, borrowed from the store (valid until txn ends). */
typedef struct cpx_gw_msg {
    uint64_t seq;                          /* the ACCEPTED leaf */
    char sender[CPX_MAX_DEPT_CODE + 1];
    char case_id[CPX_MAX_CASE_ID + 1];
    const uint8_t *env;                    /* envelope bytes as signed (decrypted) */
    size_t env_len;
} cpx_gw_msg_t;

/* By message id / by ACCEPTED leaf seq, decrypted into the handle's buffer (or the
 * handle's recent copy): m.env is valid until the next call on this handle or the end
 * of txn. CPX_ERR_NOT_FOUND
 * when absent, CPX_ERR_TAMPERED when the record is malformed or does not authenticate. */
int cpx_gw_cases_lookup(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                        cpx_gw_msg_t *out);
int cpx_gw_cases_get(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq, cpx_gw_msg_t *out);
/* As lookup without decrypting: seq, sender, case id and env_len (0 for a blank record);
 * env is NULL. */
int cpx_gw_cases_head(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                      cpx_gw_msg_t *out);

/* The stored envelope, decrypted and decoded; caller frees *out with cpx_msg_free.
 * CPX_ERR_NOT_FOUND when absent. Safe to call from several threads on one handle. */
int cpx_gw_cases_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_envelope_t **out);
/* The same by the message's ACCEPTED leaf seq: the way for handles other than the
 * writer's, which find the newest ids only by scanning the id log (idindex.h). */
int cpx_gw_cases_envelope_at(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq,
                             cpx_envelope_t **out);

/* Stores an accepted message under its ACCEPTED leaf seq (greater than every stored
 * one) and indexes its id. CPX_ERR_STATE when seq does not grow, store errors. */
int cpx_gw_cases_put_message(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq,
                             const uint8_t *id, size_t len, const char *sender,
                             const char *case_id, const uint8_t *env, size_t env_len);

/* Removes the envelope bytes of the message at seq, keeping sender, case id and the id
 * index (dedupe, replies): the message now lives in the sealed vault (sealed.c). */
int cpx_gw_cases_blank(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq);

/* Every stored (not blank) message in seq order, decrypted: fn(ctx, m) returns 0 to go
 * on, anything else stops the walk and is returned. m is valid during the call only.
 * For rare whole-store work (a SealOrder naming only a subject), not the hot path. */
typedef int (*cpx_gw_cases_each_fn)(void *ctx, const cpx_gw_msg_t *m);
int cpx_gw_cases_each(cpx_gw_cases_t *self, MDB_txn *txn, cpx_gw_cases_each_fn fn, void *ctx);

/* The case number counter held in memory for one write transaction (cpx_counter_t):
 * the writer begins it after its transaction begins and ends it before the commit
 * (cpx_gw_cases_aborted drops it); without them every new case reads and writes
 * "next_case". */
int cpx_gw_cases_counter_begin(cpx_gw_cases_t *self, MDB_txn *txn);
int cpx_gw_cases_counter_end(cpx_gw_cases_t *self, MDB_txn *txn);

/* Decides the case of env into case_id (CPX_MAX_CASE_ID + 1 bytes) and town (the
 * minor's town as recorded for the case, CPX_MAX_DEPT_CODE + 1 bytes, may be ""):
 *  - env->case_id set: it must exist;
 *  - otherwise env->in_reply_to set: the case of that message (which must exist);
 *  - otherwise a new case (recorded with the minor's town, when the body names one).
 * CPX_ERR_NOT_FOUND (with a field error in errs) for an unknown case or message. */
int cpx_gw_cases_resolve(cpx_gw_cases_t *self, MDB_txn *txn, const cpx_envelope_t *env,
                         int64_t now_ms, char *case_id, char *town, cpx_errors_t *errs);

#endif
