/* idindex.c — message ids: a tree of old ids, a log of new ones, folded in sorted runs. */
#include "idindex.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define FOLD_MIN ((size_t)65536)
#define FOLD_MAX ((size_t)1 << 20)
/* Ids moved per cycle: twice the ids the cycle put, within these bounds; log records
 * cleared per cycle: four times that (a delete at the log's head is cheap). A fold so
 * outruns the arrivals (a run of R ids takes 5R/8 cycles' arrivals), and a step costs
 * about what the cycle's own puts cost: no cycle stalls behind a whole fold (a fold of
 * 65,536 in one step held a quiet cycle for tens of milliseconds). */
#define STEP_MIN ((size_t)64)
#define STEP_MAX ((size_t)8192)

typedef struct ent {
    uint64_t seq;
    uint8_t len;
    uint8_t id[CPX_MAX_MESSAGE_ID];
} ent_t;

struct cpx_gw_ids {
    MDB_dbi tree, log;
    int live;
    /* The log in memory (live handle), in seq order; [0, n_done) committed. */
    ent_t *ent;
    size_t n, n_done, cap;
    uint32_t *slot;              /* 1 + index into ent, 0 empty; linear probing */
    size_t slot_mask;
    uint64_t k0, k1;             /* hash seed: ids are chosen by the senders */
    size_t put_now;              /* ids put in this transaction: sizes its step */
    /* The fold in progress: a copy of ent[0, run_n), sorted by id on a thread of its
     * own. moved: ids put in the tree; cleared: records deleted from the log head, both
     * as committed, and *_next as this transaction leaves them. */
    ent_t *run;
    size_t run_n, moved, moved_next, cleared, cleared_next;
    pthread_t sorter;
    int sorting;                 /* sorter to join */
    atomic_int sorted;
    size_t fold_at, step;        /* 0: the defaults */
};

/* ---- the in-memory table ---------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Seeded per process, so a sender cannot pick ids that pile into one probe chain. */
static size_t id_hash(const cpx_gw_ids_t *self, const uint8_t *id, size_t len)
{
    uint64_t a = 0, b = 0;
    memcpy(&a, id, len < 8 ? len : 8);
    if (len > 8)
        memcpy(&b, id + 8, len - 8);
    return (size_t)mix(mix(a ^ self->k0) ^ b ^ self->k1 ^ ((uint64_t)len << 56));
}

static const ent_t *table_find(const cpx_gw_ids_t *self, const uint8_t *id, size_t len)
{
    if (!self->slot)
        return NULL;
    for (size_t i = id_hash(self, id, len) & self->slot_mask;; i = (i + 1) & self->slot_mask) {
        uint32_t v = self->slot[i];
        if (!v)
            return NULL;
        const ent_t *e = &self->ent[v - 1];
        if (e->len == len && !memcmp(e->id, id, len))
            return e;
    }
}

static void table_add(cpx_gw_ids_t *self, size_t index)
{
    const ent_t *e = &self->ent[index];
    size_t i = id_hash(self, e->id, e->len) & self->slot_mask;
    while (self->slot[i])
        i = (i + 1) & self->slot_mask;
    self->slot[i] = (uint32_t)index + 1;
}

/* The table again for ent[0, n), sized for cap entries: after a grow, an abort or the
 * end of a fold. Slots are at least twice cap, so probes stay short and the table never
 * fills. Allocates only when the size changes. */
static int table_rebuild(cpx_gw_ids_t *self, size_t cap)
{
    size_t want = 1024;
    while (want < 2 * cap)
        want *= 2;
    if (want != self->slot_mask + 1 || !self->slot) {
        uint32_t *s = malloc(want * sizeof *s);
        if (!s)
            return CPX_ERR_NOMEM;
        free(self->slot);
        self->slot = s;
        self->slot_mask = want - 1;
    }
    memset(self->slot, 0, want * sizeof *self->slot);
    for (size_t i = 0; i < self->n; i++)
        table_add(self, i);
    return CPX_OK;
}

static int ent_add(cpx_gw_ids_t *self, const uint8_t *id, size_t len, uint64_t seq)
{
    if (self->n == self->cap) {
        if (self->cap >= UINT32_MAX / 4)
            return CPX_ERR_FULL;
        size_t cap = self->cap ? self->cap * 2 : 4096;
        ent_t *e = realloc(self->ent, cap * sizeof *e);
        if (!e)
            return CPX_ERR_NOMEM;
        self->ent = e;
        int rc = table_rebuild(self, cap);  /* the capacity grows only with its table */
        if (rc)
            return rc;
        self->cap = cap;
    }
    ent_t *e = &self->ent[self->n];
    e->seq = seq;
    e->len = (uint8_t)len;
    memcpy(e->id, id, len);
    table_add(self, self->n++);
    self->put_now++;
    return CPX_OK;
}

/* ---- open ---------------------------------------------------------------------------- */

cpx_gw_ids_t *cpx_gw_ids_open(MDB_env *env)
{
    cpx_gw_ids_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    const cpx_store_db_t dbs[] = {{"gw.mid", 0, &self->tree}, {"gw.midlog", 0, &self->log}};
    if (cpx_store_open_dbs(env, "ids", dbs, 2) != CPX_OK)
        cpx_gw_ids_destroy(&self);
    return self;
}

void cpx_gw_ids_destroy(cpx_gw_ids_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_ids_t *self = *self_p;
    if (self->sorting)
        pthread_join(self->sorter, NULL);
    free(self->ent);
    free(self->slot);
    free(self->run);
    free(self);
    *self_p = NULL;
}

int cpx_gw_ids_live(cpx_gw_ids_t *self, MDB_env *env)
{
    if (!self || self->live)
        return CPX_ERR_ARG;
    uint64_t seed[2];
    int rc = cpx_random(seed, sizeof seed);
    if (rc)
        return rc;
    self->k0 = seed[0];
    self->k1 = seed[1];
    self->live = 1;
    if ((rc = table_rebuild(self, self->cap)))
        return rc;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)))
        return cpx_store_err(rc, "ids: begin");
    int mrc = mdb_cursor_open(txn, self->log, &cur);  /* LMDB's codes, apart from ours */
    MDB_val k, v;
    for (int op = MDB_FIRST; !rc && !mrc && !(mrc = mdb_cursor_get(cur, &k, &v, op)); op = MDB_NEXT)
        rc = k.mv_size != 8 || !v.mv_size || v.mv_size > CPX_MAX_MESSAGE_ID
                 ? CPX_ERR_TAMPERED
                 : ent_add(self, v.mv_data, v.mv_size, cpx_be64_get(k.mv_data));
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = cpx_store_err(mrc, "ids: load log");
    if (rc == CPX_ERR_TAMPERED)
        cpx_log_error("ids", "msg=\"a record of the id log (gw.midlog) is not a message id: "
                             "the store is damaged; restore it from a backup\" count=%zu", self->n);
    self->n_done = self->n;
    if (!rc && self->n)
        cpx_log_info("ids", "msg=\"message ids not yet folded\" count=%zu", self->n);
    /* The chaos suite folds every few ids, so that its kills land inside folds. */
    const char *t = getenv("CPX_TEST_ID_FOLD_AT");
    if (t && atoi(t) > 0)
        self->fold_at = (size_t)atoi(t);
    return rc;
}

void cpx_gw_ids_tune(cpx_gw_ids_t *self, size_t fold_at, size_t step)
{
    self->fold_at = fold_at;
    self->step = step;
}

/* ---- lookups and puts ------------------------------------------------------------------ */

/* A handle that is not live reads the log itself: up to a fold's worth of records. */
static int scan_log(cpx_gw_ids_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                    uint64_t *seq)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, self->log, &cur);
    MDB_val k, v;
    for (int op = MDB_FIRST; !rc && !(rc = mdb_cursor_get(cur, &k, &v, op)); op = MDB_NEXT)
        if (v.mv_size == len && k.mv_size == 8 && !memcmp(v.mv_data, id, len)) {
            *seq = cpx_be64_get(k.mv_data);
            break;
        }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    return rc ? cpx_store_err(rc, "ids: scan log") : CPX_OK;
}

int cpx_gw_ids_get(cpx_gw_ids_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                   uint64_t *seq)
{
    if (!len || len > CPX_MAX_MESSAGE_ID)
        return CPX_ERR_NOT_FOUND;
    if (self->live) {
        const ent_t *e = table_find(self, id, len);
        if (e) {
            *seq = e->seq;
            return CPX_OK;
        }
    }
    MDB_val k = {len, (void *)id}, v;
    int rc = mdb_get(txn, self->tree, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8)
            return CPX_ERR_TAMPERED;
        *seq = cpx_be64_get(v.mv_data);
        return CPX_OK;
    }
    if (rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "ids: get");
    return self->live ? CPX_ERR_NOT_FOUND : scan_log(self, txn, id, len, seq);
}

int cpx_gw_ids_put(cpx_gw_ids_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                   uint64_t seq)
{
    if (!len || len > CPX_MAX_MESSAGE_ID)
        return CPX_ERR_ARG;
    if (self->live && table_find(self, id, len))
        return CPX_ERR_STATE;
    uint8_t kb[8];
    cpx_be64_put(kb, seq);
    MDB_val k = {8, kb}, v = {len, (void *)id};
    int rc = mdb_put(txn, self->log, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        return CPX_ERR_STATE;  /* seq did not grow */
    if (rc)
        return cpx_store_err(rc, "ids: put");
    return self->live ? ent_add(self, id, len, seq) : CPX_OK;
}

/* ---- folding ----------------------------------------------------------------------------- */

/* LMDB's default key order: bytes, then the shorter first. */
static int ent_cmp(const void *a, const void *b)
{
    const ent_t *x = a, *y = b;
    int c = memcmp(x->id, y->id, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static size_t fold_at(cpx_gw_ids_t *self, MDB_txn *txn)
{
    if (self->fold_at)
        return self->fold_at;
    MDB_stat st;
    size_t at = FOLD_MIN;
    if (!mdb_stat(txn, self->tree, &st) && st.ms_entries / 8 > at)
        at = st.ms_entries / 8 < FOLD_MAX ? st.ms_entries / 8 : FOLD_MAX;
    return at;
}

static void sort_run(cpx_gw_ids_t *self)
{
    qsort(self->run, self->run_n, sizeof *self->run, ent_cmp);
    atomic_store(&self->sorted, 1);
}

static void *sorter_main(void *arg)
{
    /* Only on a core nothing else wants: the fold can wait, an Ack should not. */
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    sort_run(arg);
    return NULL;
}

/* The committed log is what this fold moves: copied here, sorted on a thread of idle
 * priority (65,536 ids took 77-114 ms of wall time on the busy benchmark host, which no
 * cycle should wait for). A tuned handle (tests) sorts at once, so that its steps are
 * the same on every run. */
static int fold_begin(cpx_gw_ids_t *self)
{
    self->run = malloc(self->n_done * sizeof *self->run);
    if (!self->run) {  /* the log just stays longer: this cycle's work is not at stake */
        cpx_log_warn("ids", "msg=\"no memory to fold message ids, later\" count=%zu", self->n_done);
        return CPX_OK;
    }
    memcpy(self->run, self->ent, self->n_done * sizeof *self->run);
    self->run_n = self->n_done;
    self->moved = self->moved_next = self->cleared = self->cleared_next = 0;
    atomic_store(&self->sorted, 0);
    cpx_log_debug("ids", "msg=\"folding message ids into the index\" count=%zu", self->run_n);
    if (!self->step && pthread_create(&self->sorter, NULL, sorter_main, self) == 0)
        self->sorting = 1;
    else
        sort_run(self);
    return CPX_OK;
}

static void fold_end(cpx_gw_ids_t *self)
{
    if (self->sorting)
        pthread_join(self->sorter, NULL);
    self->sorting = 0;
    free(self->run);
    self->run = NULL;
    self->run_n = self->moved = self->moved_next = self->cleared = self->cleared_next = 0;
}

static size_t step_size(const cpx_gw_ids_t *self)
{
    if (self->step)
        return self->step;
    size_t n = 2 * self->put_now;
    return n < STEP_MIN ? STEP_MIN : n > STEP_MAX ? STEP_MAX : n;
}

/* The next ids of the run into the tree, in key order: each step writes the tree pages
 * of one slice of the key space. */
static int fold_move(cpx_gw_ids_t *self, MDB_txn *txn, size_t n)
{
    size_t end = self->moved_next + n < self->run_n ? self->moved_next + n : self->run_n;
    for (size_t i = self->moved_next; i < end; i++) {
        const ent_t *e = &self->run[i];
        uint8_t vb[8];
        cpx_be64_put(vb, e->seq);
        MDB_val k = {e->len, (void *)e->id}, v = {8, vb};
        int rc = mdb_put(txn, self->tree, &k, &v, 0);
        if (rc)
            return cpx_store_err(rc, "ids: fold");
    }
    self->moved_next = end;
    return CPX_OK;
}

/* Every id of the run is in the tree: the log's oldest records, which are the run's
 * (the run is the log's committed prefix, and only this module deletes from it), go. */
static int fold_clear(cpx_gw_ids_t *self, MDB_txn *txn, size_t n)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, self->log, &cur);
    MDB_val k, v;
    size_t end = self->cleared_next + n < self->run_n ? self->cleared_next + n : self->run_n;
    for (; self->cleared_next < end && !rc; self->cleared_next++)
        if (!(rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)))
            rc = mdb_cursor_del(cur, 0);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        /* Shorter than the run: nothing else deletes from the log, so only a damaged
         * store gets here. The run is in the tree either way; refusing every cycle from
         * now on would help no one. */
        cpx_log_warn("ids", "msg=\"id log shorter than the fold\" missing=%zu",
                     self->run_n - self->cleared_next + 1);
        self->cleared_next = self->run_n;
        rc = 0;
    }
    return rc ? cpx_store_err(rc, "ids: clear log") : CPX_OK;
}

int cpx_gw_ids_step(cpx_gw_ids_t *self, MDB_txn *txn)
{
    if (!self || !self->live)
        return CPX_OK;
    if (!self->run)
        return self->n_done < fold_at(self, txn) ? CPX_OK : fold_begin(self);
    if (!atomic_load(&self->sorted))
        return CPX_OK;
    size_t n = step_size(self);
    return self->moved_next < self->run_n ? fold_move(self, txn, n) : fold_clear(self, txn, 4 * n);
}

void cpx_gw_ids_committed(cpx_gw_ids_t *self)
{
    if (!self || !self->live)
        return;
    self->n_done = self->n;
    self->put_now = 0;
    self->moved = self->moved_next;
    self->cleared = self->cleared_next;
    if (!self->run || self->cleared < self->run_n)
        return;
    /* The run left the log: its entries leave the table (the rest keep their order). */
    memmove(self->ent, self->ent + self->run_n, (self->n - self->run_n) * sizeof *self->ent);
    self->n -= self->run_n;
    self->n_done = self->n;
    fold_end(self);
    if (table_rebuild(self, self->cap) != CPX_OK)  /* same size: allocates nothing */
        cpx_log_error("ids", "msg=\"rebuilding the id table failed\"");
}

void cpx_gw_ids_aborted(cpx_gw_ids_t *self)
{
    if (!self || !self->live)
        return;
    self->put_now = 0;
    self->moved_next = self->moved;
    self->cleared_next = self->cleared;
    if (self->n != self->n_done) {
        self->n = self->n_done;
        if (table_rebuild(self, self->cap) != CPX_OK)  /* same size: allocates nothing */
            cpx_log_error("ids", "msg=\"rebuilding the id table failed\"");
    }
}

int cpx_gw_ids_counts(cpx_gw_ids_t *self, MDB_txn *txn, size_t *log, size_t *tree)
{
    MDB_stat a, b;
    int rc = mdb_stat(txn, self->log, &a);
    if (!rc)
        rc = mdb_stat(txn, self->tree, &b);
    if (rc)
        return cpx_store_err(rc, "ids: stat");
    *log = a.ms_entries;
    *tree = b.ms_entries;
    return CPX_OK;
}
