/* gateway/syncer.h — the durable flush of the last commit, on its own thread.
 *
 * The gateway's environment is opened with MDB_NOMETASYNC: mdb_txn_commit writes the
 * cycle's pages, flushes them (fdatasync) and then writes the new meta page without
 * flushing it. Until that meta page is on disk the commit may be undone by a power cut,
 * so nothing of the cycle may leave the gateway yet. This thread runs
 * mdb_env_sync(env, 1) — one fdatasync of data.mdb, which makes every commit that
 * returned before it started durable — while the server thread already reads,
 * verifies, writes and commits the next cycle. See server.c (cycle) and docs/protocol.md.
 *
 * Caveats: one sync in flight at a time; begin/wait/fd are called by the server thread
 * only. wait() returns 0 or the errno of the failed flush; after a failure the cycle's
 * durability is unknown and the gateway stops (server.c). */
#ifndef CPX_GW_SYNCER_H
#define CPX_GW_SYNCER_H

#include <lmdb.h>

typedef struct cpx_gw_syncer cpx_gw_syncer_t;

/* Starts the thread. NULL on failure (logged). */
cpx_gw_syncer_t *cpx_gw_syncer_new(MDB_env *env);
/* Waits for a sync in flight, stops the thread and frees; accepts NULL. */
void cpx_gw_syncer_destroy(cpx_gw_syncer_t **self_p);

/* Flushes everything committed so far, in the background. At most one in flight:
 * the caller waits for the previous one first. */
void cpx_gw_syncer_begin(cpx_gw_syncer_t *self);
/* 1 while a flush has been begun and not yet waited for. */
int cpx_gw_syncer_pending(const cpx_gw_syncer_t *self);
/* 1 when the flush begun has finished (wait() will not block). */
int cpx_gw_syncer_done(cpx_gw_syncer_t *self);
/* Blocks until the flush begun has finished; 0 or its error. 0 when none is pending. */
int cpx_gw_syncer_wait(cpx_gw_syncer_t *self);
/* A file descriptor that polls readable once the flush begun has finished (for
 * zmq_poll next to the sockets). */
int cpx_gw_syncer_fd(const cpx_gw_syncer_t *self);

#endif
