/* cpx/vault.h — the sealed-record vault: AES-256-GCM records in the gateway's LMDB
 * environment, under a vault key kept apart from the data, the signing key and the
 * pseudonym key. Format and operations: docs/sealed.md.
 *
 * Databases:
 *   "vault.rec"  record id (16) -> 0x01 | kind(1) | key id(8) | created BE64 |
 *                nonce(12) ciphertext tag(16); the AAD is
 *                "cpx.v1.vault" 0x00 || record id || kind || key id, so a record
 *                cannot be moved to another id, kind or key without failing.
 *   "vault.idx"  tag(1) | HMAC-SHA-256(pseudonym key, tag | value) -> record id
 *                (DUPSORT): which records concern a subject ID number (tag 'S') or a
 *                case id (tag 'C'). Only keyed pseudonyms are stored, never the value.
 *   "vault.meta" "key_id" -> id of the key every new record is written with;
 *                "next_key_id" -> set while a rotation runs.
 * Key id = the first 8 bytes of SHA-256("cpx.v1.vault-key" 0x00 || key).
 *
 * Keys: the vault key file (e.g. keys/vault.key, 32 bytes, mode 0600) and, while a
 * rotation runs, the same path + ".next". A record whose key is not loaded, a wrong
 * key or altered bytes give CPX_ERR_TAMPERED — never plaintext.
 *
 * Caveats: functions taking a txn run in it and never commit or abort it; one writer
 * at a time (LMDB). A plaintext returned by cpx_vault_get is the caller's and should
 * be wiped (cpx_cleanse) before free. */
#ifndef CPX_VAULT_H
#define CPX_VAULT_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define CPX_VAULT_ID_LEN 16
#define CPX_VAULT_KEY_ID_LEN 8
#define CPX_VAULT_PSEUDO_LEN 33 /* tag + 32 bytes of HMAC */

typedef enum cpx_vault_kind {
    CPX_VAULT_RECORD = 1,   /* a sealed envelope about a subject: returned on a lawful read */
    CPX_VAULT_INTERNAL = 2, /* gateway traffic about sealed matters (requests, decisions,
                               notices, seal orders): delivered, never returned as a record */
} cpx_vault_kind;

#define CPX_VAULT_TAG_SUBJECT 'S'
#define CPX_VAULT_TAG_CASE 'C'

typedef struct cpx_vault cpx_vault_t;

/* Opens (creating when the environment is writable) the vault's databases and loads
 * key_path (and key_path".next" when it exists). pseudonym_key is copied.
 * Errors: CPX_ERR_NOT_FOUND / CPX_ERR_REFUSED / CPX_ERR_INVALID from the key file;
 * CPX_ERR_TAMPERED when the vault's recorded key id matches no loaded key (lost or
 * wrong key: refuse to start rather than write under a second key).
 * Caller owns *out; free with cpx_vault_destroy. */
int cpx_vault_open(MDB_env *env, const char *key_path, const uint8_t pseudonym_key[32],
                   cpx_vault_t **out);
/* Wipes the keys and frees; accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_vault_destroy(cpx_vault_t **self_p);

/* Key id of a 32-byte key. */
void cpx_vault_key_id(const uint8_t key[32], uint8_t out[CPX_VAULT_KEY_ID_LEN]);

/* Follows a rotation started by another process: re-reads the meta record in txn and
 * loads key_path".next" (or key_path again after the rename) when the vault names a
 * key not yet loaded. CPX_ERR_TAMPERED when it cannot be found. Cheap when nothing
 * changed; call at the start of each transaction that writes records. */
int cpx_vault_sync(cpx_vault_t *self, MDB_txn *txn);

/* The keyed pseudonym of value under tag (index key, CPX_VAULT_PSEUDO_LEN bytes). */
void cpx_vault_pseudo(const cpx_vault_t *self, char tag, const char *value,
                      uint8_t out[CPX_VAULT_PSEUDO_LEN]);

/* Encrypts pt under the write key and stores it as record id (replacing one with the
 * same id). CPX_ERR_TOO_LARGE over CPX_MAX_ENVELOPE_BYTES * 2. */
int cpx_vault_put(cpx_vault_t *self, MDB_txn *txn, const uint8_t id[CPX_VAULT_ID_LEN],
                  cpx_vault_kind kind, const void *pt, size_t len, int64_t now_ms);

/* Decrypts record id into *pt (malloc'd, caller wipes and frees); *kind (may be NULL)
 * receives its kind. CPX_ERR_NOT_FOUND when absent, CPX_ERR_TAMPERED when the key is
 * unknown or the record does not authenticate. */
int cpx_vault_get(cpx_vault_t *self, MDB_txn *txn, const uint8_t id[CPX_VAULT_ID_LEN],
                  uint8_t **pt, size_t *len, cpx_vault_kind *kind);

/* 1 when record id is stored (any kind), 0 when not, negative on error. */
int cpx_vault_exists(cpx_vault_t *self, MDB_txn *txn, const uint8_t *id, size_t id_len);
/* 1 when id is a sealed subject record (kind RECORD): for views, stats and timelines
 * that must skip sealed messages. 0 when not, negative on error. */
int cpx_vault_is_sealed(cpx_vault_t *self, MDB_txn *txn, const uint8_t *id, size_t id_len);

/* Adds record id to the index of (tag, value); idempotent. */
int cpx_vault_index(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value,
                    const uint8_t id[CPX_VAULT_ID_LEN]);
/* Calls fn(ctx, id) for each record indexed under (tag, value), in id order, stopping
 * at the first non-zero return (returned). CPX_OK when none. */
int cpx_vault_lookup(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value,
                     int (*fn)(void *ctx, const uint8_t id[CPX_VAULT_ID_LEN]), void *ctx);
/* Number of records indexed under (tag, value) (0 when none), or negative. */
long cpx_vault_count(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value);

/* ---- views without keys (cpxctl audit timeline/tail, deadletter list) ----------------
 * A case named by a SealOrder is marked in "vault.meta" under
 * 'H' | SHA-256("cpx.v1.sealed-case" 0x00 || case id) (unkeyed: any view can check it;
 * the case id string is not stored). cpx_vault_case_hidden / cpx_vault_holds: 1 when the
 * case is sealed / the message id is a vault record, 0 when not (or the store has no
 * vault), negative on error; they run in any (read) txn and need no key. */
int cpx_vault_hide_case(cpx_vault_t *self, MDB_txn *txn, const char *case_id);
int cpx_vault_case_hidden(MDB_txn *txn, const char *case_id);
int cpx_vault_holds(MDB_txn *txn, const uint8_t *id, size_t id_len);
/* Should an ordinary view (timeline, tail, dashboard, dead letters) skip an audit leaf or
 * entry? 1 when it names a sealed subject's pseudonym ("P:..."), a message the vault
 * holds, or a sealed case; 0 when not; negative on error. */
int cpx_vault_view_withheld(MDB_txn *txn, const char *case_ref, const uint8_t *message_id,
                            size_t message_id_len);

/* ---- rotation (cpxctl sealed rotate-key) ------------------------------------------
 * 1. cpx_vault_rotate_begin: creates key_path".next" (mode 0600) unless it exists,
 *    loads it and records next_key_id in txn: from the next transaction on, every
 *    writer (the running gateway too, via cpx_vault_sync) writes under the new key.
 * 2. cpx_vault_rekey: re-encrypts up to max records not yet under the new key, in txn;
 *    *left receives how many remain after this batch (0 = done). Short transactions
 *    keep the gateway's write latency low.
 * 3. cpx_vault_rotate_finish: when none remain, records key_id = new in txn. After the
 *    commit call cpx_vault_rotate_install to rename key_path".next" over key_path (the
 *    old key is overwritten: records under it no longer exist). */
int cpx_vault_rotate_begin(cpx_vault_t *self, MDB_txn *txn, uint8_t new_id[CPX_VAULT_KEY_ID_LEN]);
int cpx_vault_rekey(cpx_vault_t *self, MDB_txn *txn, size_t max, uint64_t *rekeyed,
                    uint64_t *left);
int cpx_vault_rotate_finish(cpx_vault_t *self, MDB_txn *txn);
int cpx_vault_rotate_install(cpx_vault_t *self);

/* Current write key id and record count (for cpxctl and tests). */
int cpx_vault_info(cpx_vault_t *self, MDB_txn *txn, uint8_t key_id[CPX_VAULT_KEY_ID_LEN],
                   uint64_t *records);

#endif
