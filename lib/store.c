/* store.c — opening the LMDB environment, LMDB error mapping, big-endian keys, counters. */
#include "cpx/store.h"

#include <stdio.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cpx/err.h"
#include "cpx/log.h"

int cpx_store_err(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS:
        return CPX_OK;
    case MDB_NOTFOUND:
        return CPX_ERR_NOT_FOUND;
    case MDB_MAP_FULL:
        cpx_log_error("store", "msg=\"map full\" what=\"%s\"", what ? what : "?");
        return CPX_ERR_FULL;
    default:
        cpx_log_error("store", "msg=\"lmdb failed\" what=\"%s\" rc=%d err=\"%s\"",
                      what ? what : "?", rc, mdb_strerror(rc));
        return CPX_ERR_STORE;
    }
}

int cpx_store_open(const char *dir, size_t map_size, unsigned flags, MDB_env **env)
{
    if (!dir || !env)
        return CPX_ERR_ARG;
    *env = NULL;
    if (!(flags & MDB_RDONLY) && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        cpx_log_error("store", "msg=\"mkdir failed\" dir=\"%s\" err=\"%s\"", dir,
                      strerror(errno));
        return CPX_ERR_IO;
    }
    MDB_env *e = NULL;
    int rc = mdb_env_create(&e);
    if (rc != MDB_SUCCESS)
        return cpx_store_err(rc, "mdb_env_create");
    rc = mdb_env_set_maxdbs(e, CPX_STORE_MAX_DBS);
    if (rc == MDB_SUCCESS && map_size)
        rc = mdb_env_set_mapsize(e, map_size);
    /* Durable by default: no MDB_NOSYNC / MDB_NOMETASYNC — an acknowledged message must
     * survive power loss. MDB_NOTLS lets read transactions move between threads. */
    if (rc == MDB_SUCCESS)
        rc = mdb_env_open(e, dir, flags | MDB_NOTLS, 0600);
    if (rc != MDB_SUCCESS) {
        int err = cpx_store_err(rc, dir);
        if (rc == ENOENT)
            err = CPX_ERR_NOT_FOUND;
        mdb_env_close(e);
        return err;
    }
    *env = e;
    return CPX_OK;
}

void cpx_be64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t cpx_be64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

void cpx_be32_put(uint8_t out[4], uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint32_t cpx_be32_get(const uint8_t in[4])
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | in[i];
    return v;
}

int cpx_store_open_dbs(MDB_env *env, const char *owner, const cpx_store_db_t *dbs, size_t n)
{
    unsigned flags = 0;
    mdb_env_get_flags(env, &flags);
    int ro = (flags & MDB_RDONLY) != 0;
    char what[96];
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, ro ? MDB_RDONLY : 0, &txn);
    if (rc) {
        snprintf(what, sizeof what, "%s: begin", owner);
        return cpx_store_err(rc, what);
    }
    for (size_t i = 0; i < n && !rc; i++)
        rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | (ro ? 0 : MDB_CREATE), dbs[i].dbi);
    if (!rc)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND && ro)
        return CPX_ERR_NOT_FOUND;
    snprintf(what, sizeof what, "%s: open databases", owner);
    return rc ? cpx_store_err(rc, what) : CPX_OK;
}

/* ---- counters ------------------------------------------------------------------------ */

static int counter_read(const cpx_counter_t *c, MDB_txn *txn, uint64_t *next)
{
    MDB_val k = {strlen(c->key), (void *)c->key}, v;
    int rc = mdb_get(txn, c->dbi, &k, &v);
    *next = 1;
    if (rc == 0 && v.mv_size == 8)
        *next = cpx_be64_get(v.mv_data);
    else if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, c->key);
    return CPX_OK;
}

static int counter_write(const cpx_counter_t *c, MDB_txn *txn, uint64_t next)
{
    uint8_t buf[8];
    cpx_be64_put(buf, next);
    MDB_val k = {strlen(c->key), (void *)c->key}, v = {8, buf};
    int rc = mdb_put(txn, c->dbi, &k, &v, 0);
    return rc ? cpx_store_err(rc, c->key) : CPX_OK;
}

int cpx_counter_begin(cpx_counter_t *c, MDB_txn *txn)
{
    c->held = 0;
    int rc = counter_read(c, txn, &c->next);
    if (rc)
        return rc;
    c->txn = txn;
    c->txn_id = mdb_txn_id(txn);
    c->dirty = 0;
    c->held = 1;
    return CPX_OK;
}

/* Begun in txn and not ended or dropped since. */
static int held_in(const cpx_counter_t *c, MDB_txn *txn)
{
    return c->held && c->txn == txn && c->txn_id == mdb_txn_id(txn);
}

int cpx_counter_take(cpx_counter_t *c, MDB_txn *txn, uint64_t *out)
{
    if (held_in(c, txn)) {
        *out = c->next++;
        c->dirty = 1;
        return CPX_OK;
    }
    uint64_t n;
    int rc = counter_read(c, txn, &n);
    if (!rc && !(rc = counter_write(c, txn, n + 1)))
        *out = n;
    return rc;
}

int cpx_counter_end(cpx_counter_t *c, MDB_txn *txn)
{
    int rc = held_in(c, txn) && c->dirty ? counter_write(c, txn, c->next) : CPX_OK;
    c->held = 0;
    c->dirty = 0;
    return rc;
}

void cpx_counter_drop(cpx_counter_t *c)
{
    c->held = 0;
    c->dirty = 0;
}
