/* gateway/prefill.h — keeps data.mdb written with zeros a little past LMDB's last page.
 *
 * Why: LMDB grows its file by writing past the end. A commit's fdatasync then also has
 * to allocate the new blocks and write the inode with the new size, on top of the page
 * writes. On this project's machines (ext4) a flush of 32 new pages took a p50 of
 * 0.39 ms, and 0.24 ms over blocks already written (`build/tests/bench_flush`), and every
 * cycle of a growing store paid it: a store keeps every message, so it always grows.
 * Databases fill log segments with zeros ahead of use for the same reason. This
 * module's thread writes zeros (O_DIRECT, so no page cache is spent on them) up to
 * `ahead` bytes past the last page and flushes them, so commits overwrite blocks that
 * already exist. In the gateway benchmark's latency flow the commit went from a mean of
 * 0.89-1.20 ms to 0.68-0.78 ms.
 *
 * Safety: a zero is written only past the end of the file and past LMDB's last
 * committed page, and only while the server thread holds the write transaction (which
 * excludes every other writer, in this process or another such as cpxctl) and has not
 * begun to commit or abort it. Without MDB_WRITEMAP LMDB writes pages into the file only
 * in mdb_txn_commit, or when one transaction holds more than 131,071 dirty pages
 * (512 MiB; a cycle's budget is 4 MiB of submissions), so no zero can land on a page
 * LMDB has written or will write before the commit. Pages past the last committed
 * one belong to no snapshot: a crash leaves only unused zeros. The file never grows
 * past map_size this way (LMDB would take a longer file as a larger map).
 *
 * Caveats: open/close are called by one thread (the server thread), in pairs around a
 * write transaction. Where O_DIRECT is refused (tmpfs) the module is off. */
#ifndef CPX_GW_PREFILL_H
#define CPX_GW_PREFILL_H

#include <lmdb.h>
#include <stdint.h>

typedef struct cpx_gw_prefill cpx_gw_prefill_t;

/* Starts the thread for env's data.mdb. NULL when ahead is 0, when the file system
 * refuses O_DIRECT (logged once, not an error: commits are only slower), or on failure
 * to start (logged). */
cpx_gw_prefill_t *cpx_gw_prefill_new(MDB_env *env, uint64_t ahead);
/* Stops the thread (after the chunk in progress) and frees; accepts NULL. */
void cpx_gw_prefill_destroy(cpx_gw_prefill_t **self_p);

/* The caller has begun a write transaction: zeros may be written past the end until
 * cpx_gw_prefill_close. Accepts NULL. */
void cpx_gw_prefill_open(cpx_gw_prefill_t *self);
/* Before that transaction commits or aborts: returns once no zero is being written,
 * and none will be until the next open. Accepts NULL. */
void cpx_gw_prefill_close(cpx_gw_prefill_t *self);

/* Bytes of zeros written so far (for the metrics and the tests). */
uint64_t cpx_gw_prefill_written(cpx_gw_prefill_t *self);

#endif
