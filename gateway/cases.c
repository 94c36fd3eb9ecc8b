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
    MDB_dbi msg, ack, cases, meta;
};

cpx_gw_cases_t *cpx_gw_cases_open(MDB_env *env)
{
    unsigned flags = 0;
    mdb_env_get_flags(env, &flags);
    int ro = (flags & MDB_RDONLY) != 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, ro ? MDB_RDONLY : 0, &txn);
    if (rc) {
        cpx_store_err(rc, "cases: begin");
        return NULL;
    }
    cpx_gw_cases_t *self = calloc(1, sizeof *self);
    if (!self) {
        mdb_txn_abort(txn);
        return NULL;
    }
    unsigned create = ro ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, "gw.msg", create, &self->msg)) ||
        (rc = mdb_dbi_open(txn, "gw.ack", create, &self->ack)) ||
        (rc = mdb_dbi_open(txn, "gw.case", create, &self->cases)) ||
        (rc = mdb_dbi_open(txn, "gw.meta", create, &self->meta)) ||
        (rc = mdb_txn_commit(txn))) {
        cpx_store_err(rc, "cases: open databases");
        mdb_txn_abort(txn);
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

int cpx_gw_cases_seen(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len)
{
    MDB_val v;
    int rc = get(txn, self->msg, id, len, &v);
    return rc == CPX_OK ? 1 : rc == CPX_ERR_NOT_FOUND ? 0 : rc;
}

int cpx_gw_cases_envelope_bytes(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id,
                                size_t len, MDB_val *out)
{
    return get(txn, self->msg, id, len, out);
}

int cpx_gw_cases_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_envelope_t **out)
{
    MDB_val v;
    int rc = get(txn, self->msg, id, len, &v);
    return rc ? rc : cpx_decode_envelope(v.mv_data, v.mv_size, out);
}

int cpx_gw_cases_ack(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                     Cpx__V1__Ack **out)
{
    MDB_val v;
    int rc = get(txn, self->ack, id, len, &v);
    if (rc)
        return rc;
    return cpx_decode(&cpx__v1__ack__descriptor, v.mv_data, v.mv_size, 4096,
                      (ProtobufCMessage **)out);
}

int cpx_gw_cases_put_envelope(cpx_gw_cases_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                              const uint8_t *env, size_t env_len)
{
    MDB_val k = {len, (void *)id}, v = {env_len, (void *)env};
    int rc = mdb_put(txn, self->msg, &k, &v, 0);
    return rc ? cpx_store_err(rc, "cases: put message") : CPX_OK;
}

int cpx_gw_cases_put_ack(cpx_gw_cases_t *self, MDB_txn *txn, const Cpx__V1__Ack *ack)
{
    uint8_t buf[256];
    size_t n;
    int rc = cpx_encode_into(ack, buf, sizeof buf, &n);
    if (rc)
        return rc;
    MDB_val k = {ack->message_id.len, ack->message_id.data}, v = {n, buf};
    rc = mdb_put(txn, self->ack, &k, &v, 0);
    return rc ? cpx_store_err(rc, "cases: put ack") : CPX_OK;
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
        cpx_envelope_t *orig = NULL;
        rc = cpx_gw_cases_envelope(self, txn, env->in_reply_to.data, env->in_reply_to.len, &orig);
        Cpx__V1__Ack *ack = NULL;
        if (!rc)
            rc = cpx_gw_cases_ack(self, txn, env->in_reply_to.data, env->in_reply_to.len, &ack);
        if (!rc) {
            snprintf(case_id, CPX_MAX_CASE_ID + 1, "%s", ack->case_id ? ack->case_id : "");
            if (case_town(self, txn, case_id, town))
                town[0] = '\0';
        }
        cpx_msg_free(orig);
        cpx_msg_free(ack);
        if (rc == CPX_ERR_NOT_FOUND)
            cpx_errors_add(errs, "in_reply_to", "unknown_message",
                           "no accepted message with this id (it may still be in flight)");
        return rc;
    }
    return new_case(self, txn, env, now_ms, case_id, town);
}
