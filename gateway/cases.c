/* cases.c — message store (encrypted at rest), original Acks and case id assignment. */
#include "cases.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idindex.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/str.h"

#define CASE_PREFIX "JY"
#define CST_OFFSET_MS (8LL * 3600 * 1000)
#define STORE_AAD "cpx.v1.store"
#define KEY_ID_CTX "cpx.v1.store-key"
#define META_KEY_ID "store_key_id"
#define HEAD_MAX (2 + CPX_MAX_DEPT_CODE + CPX_MAX_CASE_ID)
#define AAD_MAX (sizeof STORE_AAD + 8 + HEAD_MAX)

/* One message kept in the clear (see recent_t). */
typedef struct recent_ent {
    uint64_t seq;
    uint64_t pos;                /* of its bytes in the ring, counted from the start */
    uint32_t env_len;
    uint8_t sl, cl;              /* sender and case id lengths, before the envelope */
    uint8_t gone;                /* blanked since: the store says what it is now */
} recent_ent_t;

/* The messages this handle stored last, in the clear: their deliveries (usually a cycle
 * or two later) then need neither a store read nor a decrypt. A ring of bytes and a ring
 * of entries in seq order. It mirrors the store exactly: put adds, blank marks gone, and
 * a transaction that aborts takes back what it added (cpx_gw_cases_aborted); bytes are
 * valid while the ring has not come round over them (pos >= high - cap). */
typedef struct recent {
    uint8_t *buf;
    size_t cap;
    uint64_t written, high;      /* bytes appended; the most ever (rollbacks go back) */
    recent_ent_t *ent;
    size_t n_cap;                /* power of two */
    uint64_t head, tail;         /* live entries [head, tail), counted from the start */
    uint64_t mark_tail, mark_written; /* at the last commit */
    uint64_t hits;
} recent_t;

struct cpx_gw_cases {
    MDB_dbi msg, cases, meta;
    cpx_gw_ids_t *ids;           /* message id -> seq (idindex.h) */
    uint8_t key[CPX_AEAD_KEY_LEN];
    /* Keyed once per handle: a fresh cipher context per message would cost more than
     * the AES-GCM of a ~1 KiB envelope itself. Counter nonces: one sealer per handle. */
    cpx_aead_sealer_t *sealer;
    uint8_t *plain;              /* the last decrypted envelope (CPX_MAX_ENVELOPE_BYTES) */
    recent_t *recent;            /* the writer's handle only (cpx_gw_cases_keep_recent) */
    cpx_counter_t next_case;     /* "next_case" in gw.meta */
};

/* ---- recent messages in the clear ------------------------------------------------ */

static recent_ent_t *recent_at(recent_t *r, uint64_t i)
{
    return &r->ent[i & (r->n_cap - 1)];
}

static int recent_valid(const recent_t *r, const recent_ent_t *e)
{
    return !e->gone && e->pos + r->cap >= r->high;
}

static recent_ent_t *recent_find(recent_t *r, uint64_t seq)
{
    if (!r || r->head == r->tail)
        return NULL;
    uint64_t lo = r->head, hi = r->tail;  /* seqs grow with the index */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (recent_at(r, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    recent_ent_t *e = lo < r->tail ? recent_at(r, lo) : NULL;
    return e && e->seq == seq && recent_valid(r, e) ? e : NULL;
}

static void recent_add(recent_t *r, uint64_t seq, const char *sender, size_t sl,
                       const char *case_id, size_t cl, const uint8_t *env, size_t env_len)
{
    size_t need = sl + cl + env_len;
    if (!r || !env_len || need > r->cap / 8)
        return;
    if (r->tail > r->head && recent_at(r, r->tail - 1)->seq >= seq)
        return;  /* not after the last (cannot happen: seqs only grow) */
    uint64_t at = r->written % r->cap;
    if (at + need > r->cap)  /* no wrapping inside a record: start again at the front */
        r->written += r->cap - at;
    uint8_t *p = r->buf + r->written % r->cap;
    memcpy(p, sender, sl);
    memcpy(p + sl, case_id, cl);
    memcpy(p + sl + cl, env, env_len);
    if (r->tail - r->head == r->n_cap)
        r->head++;
    *recent_at(r, r->tail++) = (recent_ent_t){seq, r->written, (uint32_t)env_len,
                                              (uint8_t)sl, (uint8_t)cl, 0};
    r->written += need;
    if (r->written > r->high)
        r->high = r->written;
    /* entries whose bytes the ring has come round over */
    while (r->head < r->tail && !recent_valid(r, recent_at(r, r->head)))
        r->head++;
}

static int recent_get(recent_t *r, uint64_t seq, cpx_gw_msg_t *out)
{
    recent_ent_t *e = recent_find(r, seq);
    if (!e)
        return 0;
    const uint8_t *p = r->buf + e->pos % r->cap;
    out->seq = seq;
    memcpy(out->sender, p, e->sl);
    out->sender[e->sl] = '\0';
    memcpy(out->case_id, p + e->sl, e->cl);
    out->case_id[e->cl] = '\0';
    out->env = p + e->sl + e->cl;
    out->env_len = e->env_len;
    r->hits++;
    return 1;
}

int cpx_gw_cases_keep_recent(cpx_gw_cases_t *self, size_t bytes, size_t entries)
{
    if (!self || self->recent || bytes < 4096 || !entries || (entries & (entries - 1)))
        return CPX_ERR_ARG;
    recent_t *r = calloc(1, sizeof *r);
    if (!r || !(r->buf = malloc(bytes)) || !(r->ent = calloc(entries, sizeof *r->ent))) {
        if (r)
            free(r->buf);
        free(r);
        return CPX_ERR_NOMEM;
    }
    /* Messages in the clear stay out of core dumps (the whole pages inside the buffer;
     * the service unit also sets LimitCORE=0). */
    uintptr_t lo = ((uintptr_t)r->buf + 4095) & ~(uintptr_t)4095,
              hi = ((uintptr_t)r->buf + bytes) & ~(uintptr_t)4095;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTDUMP);
    r->cap = bytes;
    r->n_cap = entries;
    self->recent = r;
    return CPX_OK;
}

int cpx_gw_cases_index_live(cpx_gw_cases_t *self, MDB_env *env)
{
    return self ? cpx_gw_ids_live(self->ids, env) : CPX_ERR_ARG;
}

int cpx_gw_cases_fold_ids(cpx_gw_cases_t *self, MDB_txn *txn)
{
    return self ? cpx_gw_ids_step(self->ids, txn) : CPX_OK;
}

void cpx_gw_cases_committed(cpx_gw_cases_t *self)
{
    if (self)
        cpx_gw_ids_committed(self->ids);
    recent_t *r = self ? self->recent : NULL;
    if (r) {
        r->mark_tail = r->tail;
        r->mark_written = r->written;
    }
}

void cpx_gw_cases_aborted(cpx_gw_cases_t *self)
{
    if (self) {
        cpx_counter_drop(&self->next_case);
        cpx_gw_ids_aborted(self->ids);
    }
    recent_t *r = self ? self->recent : NULL;
    if (!r)
        return;
    /* What the transaction added never happened; a later put may reuse its seqs. Marks
     * of blanks it made are left: those messages are then read from the store. */
    r->tail = r->mark_tail > r->head ? r->mark_tail : r->head;
    r->written = r->mark_written;
}

uint64_t cpx_gw_cases_recent_hits(const cpx_gw_cases_t *self)
{
    return self && self->recent ? self->recent->hits : 0;
}

static void recent_destroy(recent_t **rp)
{
    recent_t *r = *rp;
    if (!r)
        return;
    cpx_cleanse(r->buf, r->cap);
    free(r->buf);
    free(r->ent);
    free(r);
    *rp = NULL;
}

static void key_id(const uint8_t key[CPX_AEAD_KEY_LEN], uint8_t out[8])
{
    uint8_t d[CPX_SHA256_LEN];
    cpx_iov_t v[2] = {{KEY_ID_CTX, sizeof KEY_ID_CTX}, {key, CPX_AEAD_KEY_LEN}};
    cpx_sha256_v(v, 2, d);
    memcpy(out, d, 8);
}

static int keyed(cpx_gw_cases_t *self)
{
    int ok = (self->sealer = cpx_aead_sealer_new(self->key)) &&
             (self->plain = malloc(CPX_MAX_ENVELOPE_BYTES));
    return ok ? CPX_OK : CPX_ERR_CRYPTO;
}

/* AAD: "cpx.v1.store" 00 | BE64(seq) | the record's clear head (sender, case id), so a
 * record moved to another seq or given another sender or case fails to open. */
static size_t aad_of(uint8_t *aad, uint64_t seq, const uint8_t *head, size_t head_len)
{
    memcpy(aad, STORE_AAD, sizeof STORE_AAD);
    cpx_be64_put(aad + sizeof STORE_AAD, seq);
    memcpy(aad + sizeof STORE_AAD + 8, head, head_len);
    return sizeof STORE_AAD + 8 + head_len;
}

/* Opens a record's sealed part (nonce | ct | tag) into the handle's buffer;
 * CPX_ERR_TAMPERED unless the tag verifies, so a wrong key or a moved record never
 * yields bytes. */
static int open_sealed(cpx_gw_cases_t *self, const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len)
{
    if (in_len < CPX_AEAD_OVERHEAD || in_len - CPX_AEAD_OVERHEAD > CPX_MAX_ENVELOPE_BYTES)
        return CPX_ERR_TAMPERED;
    return cpx_aead_sealer_open(self->sealer, aad, aad_len, in, in_len, self->plain);
}

static cpx_gw_cases_t *handle(MDB_env *env, const uint8_t key[CPX_AEAD_KEY_LEN])
{
    cpx_gw_cases_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    memcpy(self->key, key, CPX_AEAD_KEY_LEN);
    const cpx_store_db_t dbs[] = {{"gw.msgs", 0, &self->msg}, {"gw.case", 0, &self->cases},
                                  {"gw.meta", 0, &self->meta}};
    if (cpx_store_open_dbs(env, "cases", dbs, sizeof dbs / sizeof dbs[0]) != CPX_OK ||
        !(self->ids = cpx_gw_ids_open(env)) || keyed(self) != CPX_OK)
        cpx_gw_cases_destroy(&self);
    else
        self->next_case = (cpx_counter_t){.dbi = self->meta, .key = "next_case"};
    return self;
}

int cpx_gw_cases_counter_begin(cpx_gw_cases_t *self, MDB_txn *txn)
{
    return cpx_counter_begin(&self->next_case, txn);
}

int cpx_gw_cases_counter_end(cpx_gw_cases_t *self, MDB_txn *txn)
{
    return cpx_counter_end(&self->next_case, txn);
}

/* The store records the id of its key at first use; afterwards only that key opens it. */
static int bind_key(cpx_gw_cases_t *self, MDB_env *env, char *err, size_t err_size)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc)
        return cpx_store_err(rc, "cases: begin");
    uint8_t id[8];
    key_id(self->key, id);
    MDB_val k = {sizeof META_KEY_ID - 1, META_KEY_ID}, v, any;
    MDB_cursor *cur = NULL;
    rc = mdb_get(txn, self->meta, &k, &v);
    if (rc == 0) {
        if (v.mv_size != sizeof id || !cpx_ct_equal(v.mv_data, id, sizeof id)) {
            char want[17] = "?";
            if (v.mv_size == sizeof id)
                cpx_hex(v.mv_data, sizeof id, want);
            snprintf(err, err_size, "wrong store key: the store was written under key id %s", want);
            rc = CPX_ERR_TAMPERED;
        }
    } else if (rc == MDB_NOTFOUND) {
        /* A store with messages but no key id predates encryption at rest (or lost its
         * meta record): refuse rather than mix clear and encrypted records. */
        rc = mdb_cursor_open(txn, self->msg, &cur);
        if (!rc)
            rc = mdb_cursor_get(cur, &any, &v, MDB_FIRST);
        mdb_cursor_close(cur);
        if (rc == 0) {
            snprintf(err, err_size, "the store holds messages written without a store key "
                                    "(before encryption at rest); start from a fresh data_dir");
            rc = CPX_ERR_STATE;
        } else if (rc == MDB_NOTFOUND) {
            v = (MDB_val){sizeof id, id};
            if ((rc = mdb_put(txn, self->meta, &k, &v, 0)))
                rc = cpx_store_err(rc, "cases: key id");
        } else {
            rc = cpx_store_err(rc, "cases: first message");
        }
    } else {
        rc = cpx_store_err(rc, "cases: key id");
    }
    if (!rc && (rc = mdb_txn_commit(txn)))
        return cpx_store_err(rc, "cases: commit key id");
    if (rc)
        mdb_txn_abort(txn);
    return rc;
}

int cpx_gw_cases_open(MDB_env *env, const char *key_path, cpx_gw_cases_t **out, char *err,
                      size_t err_size)
{
    *out = NULL;
    err[0] = '\0';
    uint8_t key[CPX_AEAD_KEY_LEN];
    int rc = cpx_symkey_load(key_path, key);
    if (rc == CPX_ERR_NOT_FOUND) {
        /* Only a store that never held a message may get a new key: bind_key refuses a
         * store already bound to another one, so a lost key is never replaced silently. */
        MDB_txn *txn;
        MDB_dbi meta;
        MDB_val k = {sizeof META_KEY_ID - 1, META_KEY_ID}, v;
        int bound = 1;
        if (!mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) {
            bound = mdb_dbi_open(txn, "gw.meta", 0, &meta) == 0 && mdb_get(txn, meta, &k, &v) == 0;
            mdb_txn_abort(txn);
        }
        if (bound) {
            snprintf(err, err_size, "%s: store key file missing, and the store was written under "
                                    "a key (restore the key file; it cannot be recreated)", key_path);
            return CPX_ERR_NOT_FOUND;
        }
        if ((rc = cpx_symkey_create(key_path)) == CPX_OK) {
            cpx_log_info("cases", "msg=\"created store key\" path=%s", key_path);
            rc = cpx_symkey_load(key_path, key);
        }
    }
    if (rc) {
        snprintf(err, err_size, "%s: store key: %s", key_path, cpx_strerror(rc));
        return rc;
    }
    cpx_gw_cases_t *self = handle(env, key);
    cpx_cleanse(key, sizeof key);
    if (!self) {
        snprintf(err, err_size, "cannot open the message store");
        return CPX_ERR_STORE;
    }
    if ((rc = bind_key(self, env, err, err_size))) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s: %s", key_path, err[0] ? err : cpx_strerror(rc));
        snprintf(err, err_size, "%s", tmp);
        cpx_gw_cases_destroy(&self);
        return rc;
    }
    *out = self;
    return CPX_OK;
}

cpx_gw_cases_t *cpx_gw_cases_share(const cpx_gw_cases_t *self, MDB_env *env)
{
    return handle(env, self->key);
}

void cpx_gw_cases_destroy(cpx_gw_cases_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_cases_t *self = *self_p;
    recent_destroy(&self->recent);
    cpx_gw_ids_destroy(&self->ids);
    cpx_aead_sealer_destroy(&self->sealer);
    if (self->plain) {
        cpx_cleanse(self->plain, CPX_MAX_ENVELOPE_BYTES);
        free(self->plain);
    }
    cpx_cleanse(self, sizeof *self);
    free(self);
    *self_p = NULL;
}

static int get(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, MDB_val *v)
{
    if (!kl)
        return CPX_ERR_NOT_FOUND;
    MDB_val key = {kl, (void *)k};
    int rc = mdb_get(txn, dbi, &key, v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    return rc ? cpx_store_err(rc, "cases: get") : CPX_OK;
}

static int lp_str(const uint8_t **p, const uint8_t *end, char *out, size_t cap)
{
    if (*p >= end || **p >= cap || (size_t)(end - *p - 1) < **p)
        return CPX_ERR_TAMPERED;
    size_t n = *(*p)++;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return CPX_OK;
}

/* The record at seq, its clear head parsed; out->env / env_len still point at the
 * sealed part (empty for a blank record). */
static int get_head(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq, cpx_gw_msg_t *out,
                    size_t *head_len)
{
    uint8_t k[8];
    cpx_be64_put(k, seq);
    MDB_val v;
    int rc = get(txn, self->msg, k, sizeof k, &v);
    if (rc)
        return rc;
    const uint8_t *p = v.mv_data, *end = p + v.mv_size;
    out->seq = seq;
    if (lp_str(&p, end, out->sender, sizeof out->sender) ||
        lp_str(&p, end, out->case_id, sizeof out->case_id))
        return CPX_ERR_TAMPERED;
    *head_len = (size_t)(p - (const uint8_t *)v.mv_data);
    out->env = p;
    out->env_len = (size_t)(end - p);
    return CPX_OK;
}

int cpx_gw_cases_get(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq, cpx_gw_msg_t *out)
{
    if (recent_get(self->recent, seq, out))
        return CPX_OK;
    size_t hl;
    int rc = get_head(self, txn, seq, out, &hl);
    if (rc || !out->env_len)
        return rc;
    uint8_t aad[AAD_MAX];
    size_t al = aad_of(aad, seq, out->env - hl, hl);
    if ((rc = open_sealed(self, aad, al, out->env, out->env_len))) {
        cpx_log_error("cases", "msg=\"stored message does not authenticate under the store key\" seq=%llu",
                      (unsigned long long)seq);
        return rc;
    }
    out->env_len -= CPX_AEAD_OVERHEAD;
    out->env = self->plain;
    return CPX_OK;
}

int cpx_gw_cases_lookup(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                        cpx_gw_msg_t *out)
{
    uint64_t seq;
    int rc = cpx_gw_ids_get(self->ids, txn, id, len, &seq);
    return rc ? rc : cpx_gw_cases_get(self, txn, seq, out);
}

int cpx_gw_cases_head(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                      cpx_gw_msg_t *out)
{
    uint64_t seq;
    size_t hl;
    int rc = cpx_gw_ids_get(self->ids, txn, id, len, &seq);
    if (!rc)
        rc = get_head(self, txn, seq, out, &hl);
    if (!rc && out->env_len)
        out->env_len -= CPX_AEAD_OVERHEAD;  /* the envelope's size; its bytes stay sealed */
    if (!rc)
        out->env = NULL;
    return rc;
}

int cpx_gw_cases_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_envelope_t **out)
{
    uint64_t seq;
    int rc = cpx_gw_ids_get(self->ids, txn, id, len, &seq);
    return rc ? rc : cpx_gw_cases_envelope_at(self, txn, seq, out);
}

int cpx_gw_cases_envelope_at(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq,
                             cpx_envelope_t **out)
{
    /* Its own buffer and a one-shot open: the dashboard's threads may call this
     * concurrently on one handle. */
    size_t hl;
    cpx_gw_msg_t m;
    int rc = get_head(self, txn, seq, &m, &hl);
    if (rc)
        return rc;
    if (!m.env_len)
        return cpx_decode_envelope(m.env, 0, out);
    if (m.env_len < CPX_AEAD_OVERHEAD)
        return CPX_ERR_TAMPERED;
    uint8_t aad[AAD_MAX], *pt = malloc(m.env_len);
    if (!pt)
        return CPX_ERR_NOMEM;
    size_t al = aad_of(aad, seq, m.env - hl, hl);
    rc = cpx_aead_open(self->key, aad, al, m.env, m.env_len, pt);
    if (!rc)
        rc = cpx_decode_envelope(pt, m.env_len - CPX_AEAD_OVERHEAD, out);
    cpx_cleanse(pt, m.env_len);
    free(pt);
    return rc;
}

int cpx_gw_cases_put_message(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq,
                             const uint8_t *id, size_t len, const char *sender,
                             const char *case_id, const uint8_t *env, size_t env_len)
{
    size_t sl = strlen(sender), cl = strlen(case_id);
    if (!len || len > CPX_MAX_MESSAGE_ID || sl > CPX_MAX_DEPT_CODE || cl > CPX_MAX_CASE_ID ||
        env_len > CPX_MAX_ENVELOPE_BYTES)
        return CPX_ERR_ARG;
    uint8_t k[8];
    cpx_be64_put(k, seq);
    size_t head = 2 + sl + cl, body = env_len ? env_len + CPX_AEAD_OVERHEAD : 0;
    MDB_val key = {8, k}, v = {head + body, NULL};
    /* MDB_RESERVE: the record is assembled, and the envelope encrypted, in the page LMDB
     * gives us: no copy and no allocation per message. */
    int rc = mdb_put(txn, self->msg, &key, &v, MDB_APPEND | MDB_RESERVE);
    if (rc == MDB_KEYEXIST)
        return CPX_ERR_STATE;
    if (rc)
        return cpx_store_err(rc, "cases: put message");
    uint8_t *p = v.mv_data;
    *p++ = (uint8_t)sl;
    memcpy(p, sender, sl);
    p += sl;
    *p++ = (uint8_t)cl;
    memcpy(p, case_id, cl);
    p += cl;
    if (env_len) {
        uint8_t aad[AAD_MAX];
        size_t al = aad_of(aad, seq, v.mv_data, head);
        if ((rc = cpx_aead_sealer_seal(self->sealer, aad, al, env, env_len, p)))
            return rc;  /* the caller aborts the cycle: the reserved bytes never commit */
    }
    if ((rc = cpx_gw_ids_put(self->ids, txn, id, len, seq)))
        return rc;
    recent_add(self->recent, seq, sender, sl, case_id, cl, env, env_len);
    return CPX_OK;
}

int cpx_gw_cases_blank(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq)
{
    cpx_gw_msg_t m;
    size_t hl;
    int rc = get_head(self, txn, seq, &m, &hl);
    if (rc)
        return rc;
    uint8_t head[HEAD_MAX];
    memcpy(head, m.env - hl, hl);
    uint8_t k[8];
    cpx_be64_put(k, seq);
    MDB_val key = {8, k}, v = {hl, head};
    rc = mdb_put(txn, self->msg, &key, &v, 0);
    if (rc)
        return cpx_store_err(rc, "cases: blank");
    recent_ent_t *e = recent_find(self->recent, seq);
    if (e) {  /* sealed away: its clear bytes must not be served, nor kept */
        e->gone = 1;
        cpx_cleanse(self->recent->buf + e->pos % self->recent->cap,
                    (size_t)e->sl + e->cl + e->env_len);
    }
    return CPX_OK;
}

int cpx_gw_cases_each(cpx_gw_cases_t *self, MDB_txn *txn, cpx_gw_cases_each_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->msg, &cur);
    if (rc)
        return cpx_store_err(rc, "cases: cursor");
    MDB_val k, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && !ret;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8)
            continue;
        cpx_gw_msg_t m;
        if ((ret = cpx_gw_cases_get(self, txn, cpx_be64_get(k.mv_data), &m)))
            break;
        if (m.env_len)
            ret = fn(ctx, &m);
    }
    mdb_cursor_close(cur);
    if (ret)
        return ret;
    return rc == MDB_NOTFOUND ? CPX_OK : cpx_store_err(rc, "cases: walk");
}

static const char *minor_town(const cpx_envelope_t *env)
{
    const Cpx__V1__MinorIdentity *m = NULL;
    if (env->body_case == CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT && env->discovery_report)
        m = env->discovery_report->minor;
    else if (env->body_case == CPX__V1__ENVELOPE__BODY_ASSESSMENT && env->assessment)
        m = env->assessment->minor;
    return m && m->town ? m->town : "";
}

static int case_town(cpx_gw_cases_t *self, MDB_txn *txn, const char *case_id, char *town)
{
    MDB_val v;
    int rc = get(txn, self->cases, case_id, strlen(case_id), &v);
    if (rc)
        return rc;
    size_t n = v.mv_size <= CPX_MAX_DEPT_CODE ? v.mv_size : CPX_MAX_DEPT_CODE;
    memcpy(town, v.mv_data, n);
    town[n] = '\0';
    return CPX_OK;
}

static int new_case(cpx_gw_cases_t *self, MDB_txn *txn, const cpx_envelope_t *env,
                    int64_t now_ms, char *case_id, char *town)
{
    uint64_t n;
    int rc = cpx_counter_take(&self->next_case, txn, &n);
    if (rc)
        return rc;
    time_t t = (time_t)((now_ms + CST_OFFSET_MS) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t cl = cpx_strcopy(case_id, CPX_MAX_CASE_ID + 1, CASE_PREFIX "-");
    cl = cpx_strappend_u64(case_id, CPX_MAX_CASE_ID + 1, cl, (uint64_t)(tm.tm_year + 1900), 4);
    cl = cpx_strappend(case_id, CPX_MAX_CASE_ID + 1, cl, "-");
    cpx_strappend_u64(case_id, CPX_MAX_CASE_ID + 1, cl, n, 6);
    cpx_strcopy(town, CPX_MAX_DEPT_CODE + 1, minor_town(env));
    MDB_val ck = {strlen(case_id), case_id}, cv = {strlen(town), town};
    rc = mdb_put(txn, self->cases, &ck, &cv, 0);
    return rc ? cpx_store_err(rc, "cases: put case") : CPX_OK;
}

int cpx_gw_cases_resolve(cpx_gw_cases_t *self, MDB_txn *txn, const cpx_envelope_t *env,
                         int64_t now_ms, char *case_id, char *town, cpx_errors_t *errs)
{
    int rc;
    town[0] = '\0';
    if (env->case_id && *env->case_id) {
        cpx_strcopy(case_id, CPX_MAX_CASE_ID + 1, env->case_id);
        rc = case_town(self, txn, case_id, town);
        if (rc == CPX_ERR_NOT_FOUND)
            cpx_errors_add(errs, "case_id", "unknown_case",
                           "no case with this id exists at the gateway");
        return rc;
    }
    if (env->in_reply_to.len) {
        cpx_gw_msg_t m;
        rc = cpx_gw_cases_head(self, txn, env->in_reply_to.data, env->in_reply_to.len, &m);
        if (!rc) {
            cpx_strcopy(case_id, CPX_MAX_CASE_ID + 1, m.case_id);
            if (case_town(self, txn, case_id, town))
                town[0] = '\0';
        }
        if (rc == CPX_ERR_NOT_FOUND)
            cpx_errors_add(errs, "in_reply_to", "unknown_message",
                           "no accepted message with this id (it may still be in flight)");
        return rc;
    }
    return new_case(self, txn, env, now_ms, case_id, town);
}
