/* outbox.c — durable per-department outboxes and dead letters (LMDB). */
#include "cpx/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/str.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define DEPT_W 32
#define CASE_W 32
#define QKEY (DEPT_W + 1 + 8)
#define CKEY (DEPT_W + CASE_W + 8)
/* entry value: id_len(1) id(<=16) accepted(8) attempts(4) case_len(1) case */
#define EVAL_MAX (1 + CPX_MAX_MESSAGE_ID + 8 + 4 + 1 + CPX_MAX_CASE_ID)
/* dead value: dept(32) cls(1) entry dead_ms(8) reason_len(2) reason */
#define DVAL_MAX (DEPT_W + 1 + EVAL_MAX + 8 + 2 + CPX_OUTBOX_MAX_REASON)

struct cpx_outbox {
    MDB_dbi queue, cases, dead, meta;
    cpx_counter_t seq;  /* "next_seq" in ob.meta */
};

uint8_t cpx_outbox_class(int priority)
{
    switch (priority) {
    case 3: return 0;  /* IMMEDIATE */
    case 2: return 1;  /* URGENT */
    case 1: return 2;  /* ROUTINE */
    default: return 3;
    }
}

int cpx_outbox_class_priority(uint8_t cls)
{
    return cls < 3 ? 3 - cls : 0;
}

cpx_outbox_t *cpx_outbox_open(MDB_env *env)
{
    cpx_outbox_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    const cpx_store_db_t dbs[] = {{"ob.queue", 0, &self->queue}, {"ob.case", 0, &self->cases},
                                  {"ob.dead", 0, &self->dead}, {"ob.meta", 0, &self->meta}};
    if (cpx_store_open_dbs(env, "outbox", dbs, sizeof dbs / sizeof dbs[0]) != CPX_OK) {
        free(self);
        return NULL;
    }
    self->seq = (cpx_counter_t){.dbi = self->meta, .key = "next_seq"};
    return self;
}

int cpx_outbox_seq_begin(cpx_outbox_t *self, MDB_txn *txn)
{
    return cpx_counter_begin(&self->seq, txn);
}

int cpx_outbox_seq_end(cpx_outbox_t *self, MDB_txn *txn)
{
    return cpx_counter_end(&self->seq, txn);
}

void cpx_outbox_seq_drop(cpx_outbox_t *self)
{
    cpx_counter_drop(&self->seq);
}

void cpx_outbox_destroy(cpx_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

static int pad(char *out, size_t w, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > w)
        return CPX_ERR_ARG;
    memset(out, 0, w);
    memcpy(out, s, n);
    return CPX_OK;
}

static void unpad(char *out, const uint8_t *in, size_t w)
{
    memcpy(out, in, w);
    out[w] = '\0';
}

static int qkey(uint8_t k[QKEY], const char *dept, uint8_t cls, uint64_t seq)
{
    if (pad((char *)k, DEPT_W, dept))
        return CPX_ERR_ARG;
    k[DEPT_W] = cls;
    cpx_be64_put(k + DEPT_W + 1, seq);
    return CPX_OK;
}

static int ckey(uint8_t k[CKEY], const char *dept, const char *case_id, uint64_t seq)
{
    if (pad((char *)k, DEPT_W, dept))
        return CPX_ERR_ARG;
    memset(k + DEPT_W, 0, CASE_W);
    memcpy(k + DEPT_W, case_id, strnlen(case_id, CASE_W));
    cpx_be64_put(k + DEPT_W + CASE_W, seq);
    return CPX_OK;
}

static size_t eval_encode(const cpx_outbox_entry_t *e, uint8_t *out)
{
    uint8_t *p = out;
    *p++ = (uint8_t)e->message_id_len;
    memcpy(p, e->message_id, e->message_id_len);
    p += e->message_id_len;
    cpx_be64_put(p, e->accepted_seq);
    cpx_be32_put(p + 8, e->attempts);
    p += 12;
    size_t cl = strnlen(e->case_id, CPX_MAX_CASE_ID);
    *p++ = (uint8_t)cl;
    memcpy(p, e->case_id, cl);
    return (size_t)(p + cl - out);
}

static int eval_decode(const uint8_t *p, size_t len, cpx_outbox_entry_t *e, size_t *used)
{
    const uint8_t *start = p, *end = p + len;
    if (len < 1 || p[0] > CPX_MAX_MESSAGE_ID || len < 1u + p[0] + 13u)
        return CPX_ERR_TAMPERED;
    e->message_id_len = *p++;
    memcpy(e->message_id, p, e->message_id_len);
    p += e->message_id_len;
    e->accepted_seq = cpx_be64_get(p);
    e->attempts = cpx_be32_get(p + 8);
    p += 12;
    size_t cl = *p++;
    if (cl > CPX_MAX_CASE_ID || (size_t)(end - p) < cl)
        return CPX_ERR_TAMPERED;
    memcpy(e->case_id, p, cl);
    e->case_id[cl] = '\0';
    p += cl;
    if (used)
        *used = (size_t)(p - start);
    return CPX_OK;
}

static int put_entry(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e)
{
    uint8_t kq[QKEY], kc[CKEY], val[EVAL_MAX];
    if (qkey(kq, e->dept, e->cls, e->seq) || ckey(kc, e->dept, e->case_id, e->seq))
        return CPX_ERR_ARG;
    MDB_val k = {QKEY, kq}, v = {eval_encode(e, val), val};
    int rc = mdb_put(txn, self->queue, &k, &v, 0);
    if (rc)
        return cpx_store_err(rc, "outbox: put");
    k = (MDB_val){CKEY, kc};
    v = (MDB_val){1, (void *)&e->cls};
    rc = mdb_put(txn, self->cases, &k, &v, 0);
    return rc ? cpx_store_err(rc, "outbox: put case") : CPX_OK;
}

int cpx_outbox_put(cpx_outbox_t *self, MDB_txn *txn, cpx_outbox_entry_t *e)
{
    if (!self || !txn || !e || e->message_id_len > CPX_MAX_MESSAGE_ID ||
        e->cls >= CPX_OUTBOX_CLASSES)
        return CPX_ERR_ARG;
    int rc = cpx_counter_take(&self->seq, txn, &e->seq);
    return rc ? rc : put_entry(self, txn, e);
}

int cpx_outbox_get(cpx_outbox_t *self, MDB_txn *txn, const char *dept, uint8_t cls,
                   uint64_t seq, cpx_outbox_entry_t *out)
{
    for (uint8_t c = 0; c < CPX_OUTBOX_CLASSES; c++) {
        if (cls != 0xff && c != cls)
            continue;
        uint8_t kq[QKEY];
        if (qkey(kq, dept, c, seq))
            return CPX_ERR_ARG;
        MDB_val k = {QKEY, kq}, v;
        int rc = mdb_get(txn, self->queue, &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return cpx_store_err(rc, "outbox: get");
        char d[CPX_MAX_DEPT_CODE + 1];
        cpx_strcopy(d, sizeof d, dept);  /* dept may point into *out (the gateway does) */
        memset(out, 0, sizeof *out);
        cpx_strcopy(out->dept, sizeof out->dept, d);
        out->cls = c;
        out->seq = seq;
        return eval_decode(v.mv_data, v.mv_size, out, NULL);
    }
    return CPX_ERR_NOT_FOUND;
}

int cpx_outbox_update(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e)
{
    uint8_t kq[QKEY], val[EVAL_MAX];
    if (qkey(kq, e->dept, e->cls, e->seq))
        return CPX_ERR_ARG;
    MDB_val k = {QKEY, kq}, v = {eval_encode(e, val), val};
    int rc = mdb_put(txn, self->queue, &k, &v, 0);
    return rc ? cpx_store_err(rc, "outbox: update") : CPX_OK;
}

int cpx_outbox_remove(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e)
{
    uint8_t kq[QKEY], kc[CKEY];
    if (qkey(kq, e->dept, e->cls, e->seq) || ckey(kc, e->dept, e->case_id, e->seq))
        return CPX_ERR_ARG;
    MDB_val k = {QKEY, kq};
    int rc = mdb_del(txn, self->queue, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "outbox: remove");
    k = (MDB_val){CKEY, kc};
    rc = mdb_del(txn, self->cases, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "outbox: remove case");
    return CPX_OK;
}

int cpx_outbox_kill(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e,
                    const char *reason, int64_t now_ms)
{
    int rc = cpx_outbox_remove(self, txn, e);
    if (rc)
        return rc;
    uint8_t val[DVAL_MAX], key[8];
    uint8_t *p = val;
    pad((char *)p, DEPT_W, e->dept);
    p += DEPT_W;
    *p++ = e->cls;
    p += eval_encode(e, p);
    cpx_be64_put(p, (uint64_t)now_ms);
    p += 8;
    size_t rl = reason ? strnlen(reason, CPX_OUTBOX_MAX_REASON - 1) : 0;
    *p++ = (uint8_t)(rl >> 8);
    *p++ = (uint8_t)rl;
    memcpy(p, reason ? reason : "", rl);
    p += rl;
    cpx_be64_put(key, e->seq);
    MDB_val k = {8, key}, v = {(size_t)(p - val), val};
    rc = mdb_put(txn, self->dead, &k, &v, 0);
    return rc ? cpx_store_err(rc, "outbox: dead letter") : CPX_OK;
}

int cpx_outbox_case_head(cpx_outbox_t *self, MDB_txn *txn, const char *dept,
                         const char *case_id, uint64_t *seq, uint8_t *cls)
{
    uint8_t kc[CKEY];
    if (ckey(kc, dept, case_id, 0))
        return CPX_ERR_ARG;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->cases, &cur);
    if (rc)
        return cpx_store_err(rc, "outbox: case cursor");
    MDB_val k = {CKEY, kc}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int ret;
    if (rc == 0 && k.mv_size == CKEY && !memcmp(k.mv_data, kc, DEPT_W + CASE_W) &&
        v.mv_size == 1) {
        *seq = cpx_be64_get((const uint8_t *)k.mv_data + DEPT_W + CASE_W);
        *cls = *(const uint8_t *)v.mv_data;
        ret = CPX_OK;
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        ret = CPX_ERR_NOT_FOUND;
    } else {
        ret = cpx_store_err(rc, "outbox: case head");
    }
    mdb_cursor_close(cur);
    return ret;
}

int cpx_outbox_is_case_head(cpx_outbox_t *self, MDB_txn *txn, const cpx_outbox_entry_t *e)
{
    uint64_t seq;
    uint8_t cls;
    int rc = cpx_outbox_case_head(self, txn, e->dept, e->case_id, &seq, &cls);
    if (rc == CPX_ERR_NOT_FOUND)
        return 1;
    return rc ? rc : seq == e->seq;
}

int cpx_outbox_each(cpx_outbox_t *self, MDB_txn *txn, const char *dept, size_t max,
                    cpx_outbox_each_fn fn, void *ctx)
{
    uint8_t kq[QKEY];
    if (qkey(kq, dept, 0, 0))
        return CPX_ERR_ARG;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->queue, &cur);
    if (rc)
        return cpx_store_err(rc, "outbox: cursor");
    MDB_val k = {QKEY, kq}, v;
    int ret = CPX_OK;
    size_t seen = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && seen < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), seen++) {
        if (k.mv_size != QKEY || memcmp(k.mv_data, kq, DEPT_W))
            break;
        cpx_outbox_entry_t e = {0};
        cpx_strcopy(e.dept, sizeof e.dept, dept);
        e.cls = ((const uint8_t *)k.mv_data)[DEPT_W];
        e.seq = cpx_be64_get((const uint8_t *)k.mv_data + DEPT_W + 1);
        if ((ret = eval_decode(v.mv_data, v.mv_size, &e, NULL)))
            break;
        if ((ret = fn(ctx, &e)))
            break;
    }
    if (rc && rc != MDB_NOTFOUND && !ret)
        ret = cpx_store_err(rc, "outbox: walk");
    mdb_cursor_close(cur);
    return ret < 0 ? ret : CPX_OK;
}

int cpx_outbox_depths(cpx_outbox_t *self, MDB_txn *txn, cpx_outbox_depth_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->queue, &cur);
    if (rc)
        return cpx_store_err(rc, "outbox: cursor");
    MDB_val k, v;
    uint8_t cur_key[DEPT_W] = {0};
    char dept[DEPT_W + 1] = "";
    uint64_t n = 0;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != QKEY)
            continue;
        if (n && !memcmp(k.mv_data, cur_key, DEPT_W)) {
            n++;
            continue;
        }
        if (n && (ret = fn(ctx, dept, n)))
            break;
        memcpy(cur_key, k.mv_data, DEPT_W);
        unpad(dept, k.mv_data, DEPT_W);
        n = 1;
    }
    if (!ret && n)
        ret = fn(ctx, dept, n);
    mdb_cursor_close(cur);
    return ret;
}

static int dead_decode(const MDB_val *k, const MDB_val *v, cpx_dead_letter_t *d)
{
    const uint8_t *p = v->mv_data;
    size_t len = v->mv_size, used;
    memset(d, 0, sizeof *d);
    if (k->mv_size != 8 || len < DEPT_W + 1)
        return CPX_ERR_TAMPERED;
    unpad(d->entry.dept, p, DEPT_W);
    d->entry.cls = p[DEPT_W];
    d->entry.seq = cpx_be64_get(k->mv_data);
    p += DEPT_W + 1;
    len -= DEPT_W + 1;
    int rc = eval_decode(p, len, &d->entry, &used);
    if (rc)
        return rc;
    p += used;
    len -= used;
    if (len < 10)
        return CPX_ERR_TAMPERED;
    d->dead_ms = (int64_t)cpx_be64_get(p);
    size_t rl = ((size_t)p[8] << 8) | p[9];
    if (rl >= CPX_OUTBOX_MAX_REASON || len - 10 < rl)
        return CPX_ERR_TAMPERED;
    memcpy(d->reason, p + 10, rl);
    d->reason[rl] = '\0';
    return CPX_OK;
}

int cpx_outbox_dead_each(cpx_outbox_t *self, MDB_txn *txn, uint64_t from,
                         cpx_outbox_dead_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->dead, &cur);
    if (rc)
        return cpx_store_err(rc, "outbox: dead cursor");
    uint8_t kb[8];
    cpx_be64_put(kb, from);
    MDB_val k = {8, kb}, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cpx_dead_letter_t d;
        if ((ret = dead_decode(&k, &v, &d)) || (ret = fn(ctx, &d)))
            break;
    }
    mdb_cursor_close(cur);
    return ret < 0 ? ret : CPX_OK;
}

int cpx_outbox_dead_retry(cpx_outbox_t *self, MDB_txn *txn, uint64_t seq,
                          cpx_dead_letter_t *out)
{
    uint8_t kb[8];
    cpx_be64_put(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, self->dead, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "outbox: dead get");
    cpx_dead_letter_t d;
    if ((rc = dead_decode(&k, &v, &d)))
        return rc;
    d.entry.attempts = 0;
    if ((rc = put_entry(self, txn, &d.entry)))
        return rc;
    if ((rc = mdb_del(txn, self->dead, &k, NULL)))
        return cpx_store_err(rc, "outbox: dead del");
    if (out)
        *out = d;
    return CPX_OK;
}

int cpx_outbox_dead_remove(cpx_outbox_t *self, MDB_txn *txn, uint64_t seq)
{
    uint8_t kb[8];
    cpx_be64_put(kb, seq);
    MDB_val k = {8, kb};
    int rc = mdb_del(txn, self->dead, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    return rc ? cpx_store_err(rc, "outbox: dead del") : CPX_OK;
}

int cpx_outbox_dead_count(cpx_outbox_t *self, MDB_txn *txn, uint64_t *n)
{
    MDB_stat st;
    int rc = mdb_stat(txn, self->dead, &st);
    if (rc)
        return cpx_store_err(rc, "outbox: dead stat");
    *n = st.ms_entries;
    return CPX_OK;
}

int cpx_outbox_status_set(cpx_outbox_t *self, MDB_txn *txn, const char *text)
{
    MDB_val k = {6, "status"}, v = {strlen(text), (void *)text};
    int rc = mdb_put(txn, self->meta, &k, &v, 0);
    return rc ? cpx_store_err(rc, "outbox: status") : CPX_OK;
}

int cpx_outbox_status_get(cpx_outbox_t *self, MDB_txn *txn, char *buf, size_t size)
{
    MDB_val k = {6, "status"}, v;
    int rc = mdb_get(txn, self->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "outbox: status get");
    size_t n = v.mv_size < size - 1 ? v.mv_size : size - 1;
    memcpy(buf, v.mv_data, n);
    buf[n] = '\0';
    return CPX_OK;
}
