/* cpx/store.h — the LMDB environment every cpx process keeps its state in.
 *
 * One environment per gateway (or adapter spool): a directory holding data.mdb and
 * lock.mdb. Named databases are opened by the modules that own them (audit, registry,
 * outbox, ...) inside the caller's transactions.
 *
 * Caveats (LMDB's): one write transaction at a time per environment; a write
 * transaction must stay on the thread that began it; read transactions are cheap
 * (MDB_NOTLS is set, so a reader may be handed between threads); a map that fills
 * gives CPX_ERR_FULL: the caller refuses new work and keeps what was committed. */
#ifndef CPX_STORE_H
#define CPX_STORE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define CPX_STORE_MAX_DBS 64

/* Opens (creating the directory, mode 0700, if missing) an environment of up to
 * map_size bytes. flags are extra mdb_env_open flags (e.g. MDB_RDONLY). Caller owns
 * *env and closes it with mdb_env_close. */
int cpx_store_open(const char *dir, size_t map_size, unsigned flags, MDB_env **env);

/* Maps an LMDB return code to cpx_err (MDB_MAP_FULL -> CPX_ERR_FULL,
 * MDB_NOTFOUND -> CPX_ERR_NOT_FOUND, others CPX_ERR_STORE), logging rc with
 * mdb_strerror and what for the failures. */
int cpx_store_err(int rc, const char *what);

/* One named database a module keeps in the environment. */
typedef struct cpx_store_db {
    const char *name;
    unsigned flags;       /* extra mdb_dbi_open flags (e.g. MDB_DUPSORT) */
    MDB_dbi *dbi;         /* receives the handle */
} cpx_store_db_t;

/* Opens a module's named databases in one transaction: created when the environment
 * is writable, only opened when it is read-only. CPX_OK; CPX_ERR_NOT_FOUND when a
 * read-only environment lacks one (a store written before that module existed — not
 * logged, the caller decides); CPX_ERR_STORE otherwise (logged with owner). */
int cpx_store_open_dbs(MDB_env *env, const char *owner, const cpx_store_db_t *dbs, size_t n);

/* A counter kept as a big-endian u64 record (key -> next number to hand out; 1 when
 * absent). Taken on its own, each number is a get and a put. Within one write
 * transaction the writer may instead hold it in memory: cpx_counter_begin reads it,
 * takes cost nothing, and cpx_counter_end writes it once; call end before the commit.
 * After an abort, cpx_counter_drop it (or begin again) before the next take or end:
 * LMDB gives the next write transaction the aborted one's handle and id, so neither
 * could tell the two apart. A take outside a begun transaction falls back to the get
 * and put. key must outlive the counter. */
typedef struct cpx_counter {
    MDB_dbi dbi;
    const char *key;
    MDB_txn *txn;         /* the transaction begun, while held */
    size_t txn_id;
    uint64_t next;
    int held, dirty;
} cpx_counter_t;

int cpx_counter_begin(cpx_counter_t *c, MDB_txn *txn);
int cpx_counter_take(cpx_counter_t *c, MDB_txn *txn, uint64_t *out);
int cpx_counter_end(cpx_counter_t *c, MDB_txn *txn);
void cpx_counter_drop(cpx_counter_t *c);

/* Big-endian u64 keys sort numerically under LMDB's default comparison. */
void cpx_be64_put(uint8_t out[8], uint64_t v);
uint64_t cpx_be64_get(const uint8_t in[8]);
void cpx_be32_put(uint8_t out[4], uint32_t v);
uint32_t cpx_be32_get(const uint8_t in[4]);

#endif
