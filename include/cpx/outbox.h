/* cpx/outbox.h — the gateway's durable per-department outboxes and dead letters (LMDB).
 *
 * Shared by cpx-gateway (which fills and drains them) and cpxctl (status, dead-letter
 * list and retry), so both read one format.
 *
 * Databases:
 *   "ob.queue"  dept(32, NUL-padded) | class(1) | seq(8) -> entry
 *               class 0 = IMMEDIATE, 1 = URGENT, 2 = ROUTINE, 3 = unspecified, so a
 *               cursor walks one department's queue in delivery order.
 *   "ob.case"   dept(32) | case(32) | seq(8) -> class(1): the head of each
 *               (department, case) chain is the only entry of that case that may be
 *               in flight, which keeps per-case order.
 *   "ob.dead"   seq(8) -> dead letter (kept forever).
 *   "ob.meta"   "next_seq" -> BE64; "status" -> the gateway's status text.
 * The sequence is global and never reused; it is the Deliver.delivery_id.
 *
 * Caveats: functions taking a txn use it and never commit or abort it. An entry or
 * dead letter is a plain struct copied out of the store. */
#ifndef CPX_OUTBOX_H
#define CPX_OUTBOX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/limits.h"

#define CPX_OUTBOX_CLASSES 4
#define CPX_OUTBOX_MAX_REASON 512

typedef struct cpx_outbox cpx_outbox_t;

typedef struct cpx_outbox_entry {
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint8_t cls;                     /* 0 IMMEDIATE .. 3 unspecified */
    uint64_t seq;                    /* delivery id */
    uint8_t message_id[CPX_MAX_MESSAGE_ID];
    size_t message_id_len;
    uint64_t accepted_seq;           /* the ACCEPTED audit leaf */
    uint32_t attempts;               /* deliveries sent so far */
    char case_id[CPX_MAX_CASE_ID + 1];
} cpx_outbox_entry_t;

typedef struct cpx_dead_letter {
    cpx_outbox_entry_t entry;
    int64_t dead_ms;
    char reason[CPX_OUTBOX_MAX_REASON];
} cpx_dead_letter_t;

/* Priority (Cpx__V1__Priority value) to class and back. */
uint8_t cpx_outbox_class(int priority);
int cpx_outbox_class_priority(uint8_t cls);

/* Opens (creating when writable) the databases. Caller owns the result; free with
 * cpx_outbox_destroy. NULL on failure (logged). */
cpx_outbox_t *cpx_outbox_open(MDB_env *env);
void cpx_outbox_destroy(cpx_outbox_t **self_p);

/* The sequence held in memory for one write transaction that puts many entries
 * (cpx_counter_t in cpx/store.h): begin after the transaction begins, end before it
 * commits, drop after an abort. Without them every put reads and writes "next_seq". */
int cpx_outbox_seq_begin(cpx_outbox_t *self, MDB_txn *txn);
int cpx_outbox_seq_end(cpx_outbox_t *self, MDB_txn *txn);
void cpx_outbox_seq_drop(cpx_outbox_t *self);

/* Appends an entry for e->dept (e->seq is assigned; e->attempts as given). */
int cpx_outbox_put(cpx_outbox_t *self, MDB_txn *txn, cpx_outbox_entry_t *e);

/* Reads dept's entry seq into *out; cls may be 0xff when unknown (all classes are
 * tried). CPX_ERR_NOT_FOUND when not queued (already confirmed or dead). */
int cpx_outbox_get(cpx_outbox_t *self, MDB_txn *txn, const char *dept, uint8_t cls,
                   uint64_t seq, cpx_outbox_entry_t *out);

/* Rewrites an entry in place (attempts changed). */
int cpx_outbox_update(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e);

/* Removes a confirmed entry. CPX_ERR_NOT_FOUND when it is not queued. */
int cpx_outbox_remove(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e);

/* Moves an entry to the dead letters with reason and time. */
int cpx_outbox_kill(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e,
                    const char *reason, int64_t now_ms);

/* The head of the (dept, case) chain: its seq and class. CPX_ERR_NOT_FOUND when the
 * case has nothing queued for dept. */
int cpx_outbox_case_head(cpx_outbox_t *self, MDB_txn *txn, const char *dept,
                         const char *case_id, uint64_t *seq, uint8_t *cls);

/* True (1) when e is the head of its (department, case) chain, 0 when an earlier
 * entry of the same case is still queued, negative on error. */
int cpx_outbox_is_case_head(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e);

/* Walks dept's queue in delivery order starting after (cls, seq) (start at the
 * beginning with cls = 0, seq = 0 and first = 1), at most max entries. fn returns 0 to
 * continue, 1 to stop, negative for an error (returned). */
typedef int (*cpx_outbox_each_fn)(void *ctx, const cpx_outbox_entry_t *e);
int cpx_outbox_each(cpx_outbox_t *self, MDB_txn *txn, const char *dept, size_t max,
                    cpx_outbox_each_fn fn, void *ctx);

/* Counts every department's queue: fn(ctx, dept, depth) once per department. */
typedef int (*cpx_outbox_depth_fn)(void *ctx, const char *dept, uint64_t depth);
int cpx_outbox_depths(cpx_outbox_t *self, MDB_txn *txn, cpx_outbox_depth_fn fn, void *ctx);

/* Dead letters in seq order (from seq 'from'); fn as for cpx_outbox_each. */
typedef int (*cpx_outbox_dead_fn)(void *ctx, const cpx_dead_letter_t *d);
int cpx_outbox_dead_each(cpx_outbox_t *self, MDB_txn *txn, uint64_t from,
                         cpx_outbox_dead_fn fn, void *ctx);
/* Re-queues dead letter seq (same seq, attempts reset to 0); *out (may be NULL)
 * receives it. CPX_ERR_NOT_FOUND when there is none. */
int cpx_outbox_dead_retry(cpx_outbox_t *self, MDB_txn *txn, uint64_t seq,
                          cpx_dead_letter_t *out);
/* Removes dead letter seq for good (a sealed message it may never be delivered to).
 * CPX_ERR_NOT_FOUND when there is none. */
int cpx_outbox_dead_remove(cpx_outbox_t *self, MDB_txn *txn, uint64_t seq);
/* Number of dead letters. */
int cpx_outbox_dead_count(cpx_outbox_t *self, MDB_txn *txn, uint64_t *n);

/* The gateway's status text (for cpxctl status): set in a write txn, get copies up to
 * size - 1 bytes (terminated). CPX_ERR_NOT_FOUND when never written. */
int cpx_outbox_status_set(cpx_outbox_t *self, MDB_txn *txn, const char *text);
int cpx_outbox_status_get(cpx_outbox_t *self, MDB_txn *txn, char *buf, size_t size);

#endif
