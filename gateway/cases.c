/* cases.c — message store, original Acks and case id assignment. */
#include "cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/log.h"
#include "cpx/store.h"

#define CASE_PREFIX "JY"
#define CST_OFFSET_MS (8LL * 3600 * 1000)

struct cpx_gw_cases {
    MDB_dbi msg, mid, cases, meta;
};

cpx_gw_cases_t *cpx_gw_cases_open(MDB_env *env)
{
    cpx_gw_cases_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    const cpx_store_db_t dbs[] = {{"gw.msgs", 0, &self->msg}, {"gw.mid", 0, &self->mid},
                                  {"gw.case", 0, &self->cases}, {"gw.meta", 0, &self->meta}};
    if (cpx_store_open_dbs(env, "cases", dbs, sizeof dbs / sizeof dbs[0]) != CPX_OK) {
        free(self);
        return NULL;
    }
    return self;
}

void cpx_gw_cases_destroy(cpx_gw_cases_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
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

static int seq_of(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                  uint64_t *seq)
{
    MDB_val v;
    int rc = get(txn, self->mid, id, len, &v);
    if (rc)
        return rc;
    if (v.mv_size != 8)
        return CPX_ERR_TAMPERED;
    *seq = cpx_be64_get(v.mv_data);
    return CPX_OK;
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

int cpx_gw_cases_get(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq, cpx_gw_msg_t *out)
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
    out->env = p;
    out->env_len = (size_t)(end - p);
    return CPX_OK;
}

int cpx_gw_cases_lookup(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                        cpx_gw_msg_t *out)
{
    uint64_t seq;
    int rc = seq_of(self, txn, id, len, &seq);
    return rc ? rc : cpx_gw_cases_get(self, txn, seq, out);
}

int cpx_gw_cases_seen(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len)
{
    MDB_val v;
    int rc = get(txn, self->mid, id, len, &v);
    return rc == CPX_OK ? 1 : rc == CPX_ERR_NOT_FOUND ? 0 : rc;
}

int cpx_gw_cases_envelope_bytes(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id,
                                size_t len, MDB_val *out)
{
    cpx_gw_msg_t m;
    int rc = cpx_gw_cases_lookup(self, txn, id, len, &m);
    if (!rc)
        *out = (MDB_val){m.env_len, (void *)m.env};
    return rc;
}

int cpx_gw_cases_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_envelope_t **out)
{
    cpx_gw_msg_t m;
    int rc = cpx_gw_cases_lookup(self, txn, id, len, &m);
    return rc ? rc : cpx_decode_envelope(m.env, m.env_len, out);
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
    MDB_val key = {8, k}, v = {2 + sl + cl + env_len, NULL};
    /* MDB_RESERVE: the record is assembled in the page LMDB gives us, not copied twice. */
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
    memcpy(p, env, env_len);
    MDB_val ik = {len, (void *)id}, iv = {8, k};
    rc = mdb_put(txn, self->mid, &ik, &iv, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return CPX_ERR_STATE;
    return rc ? cpx_store_err(rc, "cases: put id") : CPX_OK;
}

int cpx_gw_cases_blank(cpx_gw_cases_t *self, MDB_txn *txn, uint64_t seq)
{
    cpx_gw_msg_t m;
    int rc = cpx_gw_cases_get(self, txn, seq, &m);
    if (rc)
        return rc;
    uint8_t head[2 + CPX_MAX_DEPT_CODE + CPX_MAX_CASE_ID];
    size_t sl = strlen(m.sender), cl = strlen(m.case_id);
    head[0] = (uint8_t)sl;
    memcpy(head + 1, m.sender, sl);
    head[1 + sl] = (uint8_t)cl;
    memcpy(head + 2 + sl, m.case_id, cl);
    uint8_t k[8];
    cpx_be64_put(k, seq);
    MDB_val key = {8, k}, v = {2 + sl + cl, head};
    rc = mdb_put(txn, self->msg, &key, &v, 0);
    return rc ? cpx_store_err(rc, "cases: blank") : CPX_OK;
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
    MDB_val k = {9, "next_case"}, v;
    uint64_t n = 1;
    int rc = mdb_get(txn, self->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        n = cpx_be64_get(v.mv_data);
    else if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "cases: counter");
    uint8_t buf[8];
    cpx_be64_put(buf, n + 1);
    v = (MDB_val){8, buf};
    if ((rc = mdb_put(txn, self->meta, &k, &v, 0)))
        return cpx_store_err(rc, "cases: counter put");
    time_t t = (time_t)((now_ms + CST_OFFSET_MS) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(case_id, CPX_MAX_CASE_ID + 1, CASE_PREFIX "-%04d-%06llu", tm.tm_year + 1900,
             (unsigned long long)n);
    snprintf(town, CPX_MAX_DEPT_CODE + 1, "%s", minor_town(env));
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
        snprintf(case_id, CPX_MAX_CASE_ID + 1, "%s", env->case_id);
        rc = case_town(self, txn, case_id, town);
        if (rc == CPX_ERR_NOT_FOUND)
            cpx_errors_add(errs, "case_id", "unknown_case",
                           "no case with this id exists at the gateway");
        return rc;
    }
    if (env->in_reply_to.len) {
        cpx_gw_msg_t m;
        rc = cpx_gw_cases_lookup(self, txn, env->in_reply_to.data, env->in_reply_to.len, &m);
        if (!rc) {
            snprintf(case_id, CPX_MAX_CASE_ID + 1, "%s", m.case_id);
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
