/* gateway/idindex.h — message id -> seq of its ACCEPTED leaf: the dedupe index.
 *
 * Message ids are random (adapters derive them by HMAC from the local record), so a
 * B-tree keyed by id takes each new id on a page of its own once the tree is larger
 * than a cycle: at 240,000 messages that was one 4 KiB page written per message, more
 * than the message itself, and about a fifth of the batch flow's time
 * (tests/bench/README.md). New ids therefore go to a log in seq order, and move into
 * the tree in sorted runs, which write each tree page about once per run:
 *
 *   "gw.mid"     id -> BE64(seq): ids older than the log (the tree; every id before this
 *                module existed is here);
 *   "gw.midlog"  BE64(seq) -> id: ids not yet in the tree, appended (MDB_APPEND).
 *
 * The writer's handle (cpx_gw_ids_live) keeps the log in memory as a hash table,
 * rebuilt from the log at start. Once the log holds fold_at ids (at least 65,536, or an
 * eighth of the tree), they are copied and sorted (on a thread), then moved into the
 * tree a slice per cycle (cpx_gw_ids_step: twice what the cycle put), and then deleted
 * from the log's head, also a slice per cycle. The tree only gains ids, and the log only
 * loses ids already in the tree, so an id is always in the log or the tree (or both),
 * whatever moment a crash picks; a fold cut short is done again from the start (its
 * puts are idempotent).
 *
 * Other handles (the dashboard's threads) look in the tree, then scan the log: for rare
 * lookups only (the log holds up to fold_at + a run's ids).
 *
 * Caveats: all calls run in the caller's transaction. Only the writer thread's handle
 * may be live, and it must be told how each write transaction ended. */
#ifndef CPX_GW_IDINDEX_H
#define CPX_GW_IDINDEX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cpx_gw_ids cpx_gw_ids_t;

/* Opens both databases (creating them when the environment is writable). NULL on
 * failure (logged). */
cpx_gw_ids_t *cpx_gw_ids_open(MDB_env *env);
void cpx_gw_ids_destroy(cpx_gw_ids_t **self_p);

/* Makes this the writer's handle: loads the log into memory. CPX_OK, CPX_ERR_NOMEM,
 * store errors; CPX_ERR_ARG when already live. */
int cpx_gw_ids_live(cpx_gw_ids_t *self, MDB_env *env);

/* The seq stored for id: CPX_OK, CPX_ERR_NOT_FOUND, store errors. */
int cpx_gw_ids_get(cpx_gw_ids_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                   uint64_t *seq);

/* Indexes id under seq, which must be greater than every seq indexed before. The caller
 * has looked id up first (cpx_gw_ids_get): the live handle refuses an id of the log
 * (CPX_ERR_STATE), not one of the tree. CPX_ERR_ARG for an empty or too long id. */
int cpx_gw_ids_put(cpx_gw_ids_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                   uint64_t seq);

/* One step of folding, once per write transaction before its commit (the live handle
 * only; a no-op otherwise): starts a fold when the log is due, moves the next ids. */
int cpx_gw_ids_step(cpx_gw_ids_t *self, MDB_txn *txn);

/* How the write transaction ended: the memory follows the store. */
void cpx_gw_ids_committed(cpx_gw_ids_t *self);
void cpx_gw_ids_aborted(cpx_gw_ids_t *self);

/* For tests: the log size that starts a fold (0: the default rule) and the ids moved
 * per step. */
void cpx_gw_ids_tune(cpx_gw_ids_t *self, size_t fold_at, size_t step);
/* Ids in the log and in the tree, as txn sees them. */
int cpx_gw_ids_counts(cpx_gw_ids_t *self, MDB_txn *txn, size_t *log, size_t *tree);

#endif
