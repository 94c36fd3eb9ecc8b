/* registry.c — enrolled departments, their CURVE and signing keys (LMDB). */
#include "cpx/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/audit.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/validate.h"

struct cpx_registry {
    MDB_dbi dept;
    MDB_dbi curve;
};

/* Record layout, version 1 (all integers big-endian):
 *   'R' 0x01 | curve(32) | enrolled(8) | revoked(8) | sup_len(1) sup | n(1)
 *   | n x { key_id(8) pub(32) enrolled(8) revoked(8) } */
#define REC_KEY_BYTES (CPX_KEY_ID_LEN + CPX_ED25519_PUB_LEN + 16)
#define REC_MAX (2 + CPX_CURVE_KEY_LEN + 16 + 1 + CPX_MAX_DEPT_CODE + 1 + \
                 CPX_REGISTRY_MAX_KEYS * REC_KEY_BYTES)

cpx_registry_t *cpx_registry_open(MDB_env *env)
{
    cpx_registry_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    const cpx_store_db_t dbs[] = {{"reg.dept", 0, &self->dept}, {"reg.curve", 0, &self->curve}};
    int rc = cpx_store_open_dbs(env, "registry", dbs, sizeof dbs / sizeof dbs[0]);
    if (rc != CPX_OK) {
        if (rc == CPX_ERR_NOT_FOUND)
            cpx_log_error("registry", "msg=\"no registry in this store\"");
        free(self);
        return NULL;
    }
    return self;
}

void cpx_registry_destroy(cpx_registry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

/* One rule for codes everywhere: a code the validator refuses as a sender is useless
 * in the registry (a second copy of the rule here once let one-letter codes in). */
bool cpx_registry_code_valid(const char *code) { return cpx_dept_code_valid(code); }

bool cpx_registry_code_reserved(const char *code)
{
    return code && !strcmp(code, CPX_AUDIT_GATEWAY_SENDER);
}

const char *cpx_registry_code_problem(const char *code)
{
    if (!cpx_registry_code_valid(code))
        return "dept_code: must be 2 to 32 characters of A-Z, 0-9 and _, starting with a "
               "letter ([A-Z][A-Z0-9_]{1,31})";
    if (cpx_registry_code_reserved(code))
        return "reserved: GATEWAY is the gateway's own code (the sender of the leaves it "
               "writes, the name of its key files)";
    return NULL;
}

static size_t encode(const cpx_dept_t *d, uint8_t *out)
{
    uint8_t *p = out;
    *p++ = 'R';
    *p++ = 1;
    memcpy(p, d->curve_pub, CPX_CURVE_KEY_LEN);
    p += CPX_CURVE_KEY_LEN;
    cpx_be64_put(p, (uint64_t)d->enrolled_ms);
    cpx_be64_put(p + 8, (uint64_t)d->revoked_ms);
    p += 16;
    size_t sl = strlen(d->supervisor);
    *p++ = (uint8_t)sl;
    memcpy(p, d->supervisor, sl);
    p += sl;
    *p++ = (uint8_t)d->n_keys;
    for (size_t i = 0; i < d->n_keys; i++) {
        const cpx_dept_key_t *k = &d->keys[i];
        memcpy(p, k->key_id, CPX_KEY_ID_LEN);
        memcpy(p + CPX_KEY_ID_LEN, k->pub, CPX_ED25519_PUB_LEN);
        p += CPX_KEY_ID_LEN + CPX_ED25519_PUB_LEN;
        cpx_be64_put(p, (uint64_t)k->enrolled_ms);
        cpx_be64_put(p + 8, (uint64_t)k->revoked_ms);
        p += 16;
    }
    return (size_t)(p - out);
}

static int decode(const char *code, const MDB_val *v, cpx_dept_t *d)
{
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    memset(d, 0, sizeof *d);
    snprintf(d->code, sizeof d->code, "%s", code);
    if (v->mv_size < 2 + CPX_CURVE_KEY_LEN + 16 + 2 || p[0] != 'R' || p[1] != 1)
        goto bad;
    p += 2;
    memcpy(d->curve_pub, p, CPX_CURVE_KEY_LEN);
    p += CPX_CURVE_KEY_LEN;
    d->enrolled_ms = (int64_t)cpx_be64_get(p);
    d->revoked_ms = (int64_t)cpx_be64_get(p + 8);
    p += 16;
    size_t sl = *p++;
    if (sl > CPX_MAX_DEPT_CODE || (size_t)(end - p) < sl + 1)
        goto bad;
    memcpy(d->supervisor, p, sl);
    p += sl;
    d->n_keys = *p++;
    if (d->n_keys > CPX_REGISTRY_MAX_KEYS || (size_t)(end - p) != d->n_keys * REC_KEY_BYTES)
        goto bad;
    for (size_t i = 0; i < d->n_keys; i++) {
        cpx_dept_key_t *k = &d->keys[i];
        memcpy(k->key_id, p, CPX_KEY_ID_LEN);
        memcpy(k->pub, p + CPX_KEY_ID_LEN, CPX_ED25519_PUB_LEN);
        p += CPX_KEY_ID_LEN + CPX_ED25519_PUB_LEN;
        k->enrolled_ms = (int64_t)cpx_be64_get(p);
        k->revoked_ms = (int64_t)cpx_be64_get(p + 8);
        p += 16;
    }
    return CPX_OK;
bad:
    cpx_log_error("registry", "msg=\"corrupt department record\" dept=%s", code);
    return CPX_ERR_TAMPERED;
}

int cpx_registry_get(cpx_registry_t *self, MDB_txn *txn, const char *code, cpx_dept_t *out)
{
    if (!self || !txn || !code || !out)
        return CPX_ERR_ARG;
    if (!cpx_registry_code_valid(code))
        return CPX_ERR_NOT_FOUND;
    MDB_val k = {strlen(code), (void *)code}, v;
    int rc = mdb_get(txn, self->dept, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "registry: get");
    return decode(code, &v, out);
}

int cpx_registry_by_curve(cpx_registry_t *self, MDB_txn *txn,
                          const uint8_t curve_pub[CPX_CURVE_KEY_LEN], char *code)
{
    if (!self || !txn || !curve_pub || !code)
        return CPX_ERR_ARG;
    MDB_val k = {CPX_CURVE_KEY_LEN, (void *)curve_pub}, v;
    int rc = mdb_get(txn, self->curve, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "registry: by curve");
    if (v.mv_size == 0 || v.mv_size > CPX_MAX_DEPT_CODE)
        return CPX_ERR_TAMPERED;
    memcpy(code, v.mv_data, v.mv_size);
    code[v.mv_size] = '\0';
    cpx_dept_t d;
    rc = cpx_registry_get(self, txn, code, &d);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
    if (d.revoked_ms || memcmp(d.curve_pub, curve_pub, CPX_CURVE_KEY_LEN))
        return CPX_ERR_REFUSED;
    return CPX_OK;
}

int cpx_registry_signing_key(cpx_registry_t *self, MDB_txn *txn, const char *code,
                             const uint8_t key_id[CPX_KEY_ID_LEN],
                             uint8_t pub[CPX_ED25519_PUB_LEN])
{
    cpx_dept_t d;
    int rc = cpx_registry_get(self, txn, code, &d);
    if (rc)
        return rc;
    for (size_t i = 0; i < d.n_keys; i++) {
        if (memcmp(d.keys[i].key_id, key_id, CPX_KEY_ID_LEN))
            continue;
        if (d.keys[i].revoked_ms || d.revoked_ms)
            return CPX_ERR_REFUSED;
        memcpy(pub, d.keys[i].pub, CPX_ED25519_PUB_LEN);
        return CPX_OK;
    }
    return CPX_ERR_NOT_FOUND;
}

static int put(cpx_registry_t *self, MDB_txn *txn, const cpx_dept_t *d)
{
    uint8_t buf[REC_MAX];
    MDB_val k = {strlen(d->code), (void *)d->code}, v = {encode(d, buf), buf};
    int rc = mdb_put(txn, self->dept, &k, &v, 0);
    return rc ? cpx_store_err(rc, "registry: put") : CPX_OK;
}

static int key_leaf(cpx_audit_t *audit, MDB_txn *txn, int event, const char *code,
                    const cpx_dept_key_t *k, int64_t now_ms, const char *reason)
{
    if (!audit)
        return CPX_OK;
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.time_ms = now_ms;
    leaf.event = event;
    leaf.sender = (char *)code;
    leaf.key.data = (uint8_t *)k->pub;
    leaf.key.len = CPX_ED25519_PUB_LEN;
    leaf.key_id.data = (uint8_t *)k->key_id;
    leaf.key_id.len = CPX_KEY_ID_LEN;
    leaf.detail = "ed25519";
    if (reason)
        leaf.reason = (char *)reason;
    return cpx_audit_append(audit, txn, &leaf, NULL);
}

int cpx_registry_enroll(cpx_registry_t *self, MDB_txn *txn, cpx_audit_t *audit,
                        const char *code, const uint8_t curve_pub[CPX_CURVE_KEY_LEN],
                        const uint8_t sign_pub[CPX_ED25519_PUB_LEN], const char *supervisor,
                        int64_t now_ms)
{
    if (!self || !txn || !curve_pub || !sign_pub)
        return CPX_ERR_ARG;
    if (cpx_registry_code_problem(code) ||
        (supervisor && *supervisor && cpx_registry_code_problem(supervisor)))
        return CPX_ERR_INVALID;

    char owner[CPX_MAX_DEPT_CODE + 1];
    int rc = cpx_registry_by_curve(self, txn, curve_pub, owner);
    if ((rc == CPX_OK || rc == CPX_ERR_REFUSED) && strcmp(owner, code))
        return CPX_ERR_EXISTS;
    if (rc && rc != CPX_ERR_NOT_FOUND && rc != CPX_ERR_REFUSED)
        return rc;

    cpx_dept_t d;
    rc = cpx_registry_get(self, txn, code, &d);
    if (rc == CPX_ERR_NOT_FOUND) {
        memset(&d, 0, sizeof d);
        snprintf(d.code, sizeof d.code, "%s", code);
        d.enrolled_ms = now_ms;
    } else if (rc) {
        return rc;
    } else if (memcmp(d.curve_pub, curve_pub, CPX_CURVE_KEY_LEN)) {
        MDB_val old = {CPX_CURVE_KEY_LEN, d.curve_pub};
        rc = mdb_del(txn, self->curve, &old, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return cpx_store_err(rc, "registry: drop old curve key");
    }
    memcpy(d.curve_pub, curve_pub, CPX_CURVE_KEY_LEN);
    d.revoked_ms = 0;  /* re-enrolment restores the transport identity */
    if (supervisor)
        snprintf(d.supervisor, sizeof d.supervisor, "%s", supervisor);

    cpx_key_t *key = cpx_key_from_raw_public(sign_pub);
    if (!key)
        return CPX_ERR_INVALID;
    cpx_dept_key_t nk = {.enrolled_ms = now_ms};
    memcpy(nk.pub, sign_pub, CPX_ED25519_PUB_LEN);
    cpx_key_id(key, nk.key_id);
    cpx_key_destroy(&key);

    int have = 0;
    for (size_t i = 0; i < d.n_keys; i++)
        if (!memcmp(d.keys[i].key_id, nk.key_id, CPX_KEY_ID_LEN))
            have = 1;
    if (!have) {
        if (d.n_keys == CPX_REGISTRY_MAX_KEYS)
            return CPX_ERR_FULL;
        d.keys[d.n_keys++] = nk;
        rc = key_leaf(audit, txn, CPX__V1__AUDIT_EVENT__KEY_ENROLLED, code, &nk, now_ms, NULL);
        if (rc)
            return rc;
    }
    if ((rc = put(self, txn, &d)))
        return rc;
    MDB_val k = {CPX_CURVE_KEY_LEN, (void *)curve_pub}, v = {strlen(code), (void *)code};
    rc = mdb_put(txn, self->curve, &k, &v, 0);
    return rc ? cpx_store_err(rc, "registry: put curve") : CPX_OK;
}

int cpx_registry_revoke(cpx_registry_t *self, MDB_txn *txn, cpx_audit_t *audit,
                        const char *code, const uint8_t *key_id, int64_t now_ms)
{
    if (!self || !txn || !code)
        return CPX_ERR_ARG;
    cpx_dept_t d;
    int rc = cpx_registry_get(self, txn, code, &d);
    if (rc)
        return rc;
    int found = 0;
    for (size_t i = 0; i < d.n_keys; i++) {
        cpx_dept_key_t *k = &d.keys[i];
        if (key_id && memcmp(k->key_id, key_id, CPX_KEY_ID_LEN))
            continue;
        found = 1;
        if (k->revoked_ms)
            continue;
        k->revoked_ms = now_ms;
        rc = key_leaf(audit, txn, CPX__V1__AUDIT_EVENT__KEY_REVOKED, code, k, now_ms,
                      key_id ? "key revoked" : "department revoked");
        if (rc)
            return rc;
    }
    if (key_id && !found)
        return CPX_ERR_NOT_FOUND;
    if (!key_id && !d.revoked_ms) {
        d.revoked_ms = now_ms;
        MDB_val old = {CPX_CURVE_KEY_LEN, d.curve_pub};
        rc = mdb_del(txn, self->curve, &old, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return cpx_store_err(rc, "registry: drop curve key");
    }
    return put(self, txn, &d);
}

int cpx_registry_each(cpx_registry_t *self, MDB_txn *txn, cpx_registry_each_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->dept, &cur);
    if (rc)
        return cpx_store_err(rc, "registry: cursor");
    MDB_val k, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char code[CPX_MAX_DEPT_CODE + 1];
        if (k.mv_size > CPX_MAX_DEPT_CODE)
            continue;
        memcpy(code, k.mv_data, k.mv_size);
        code[k.mv_size] = '\0';
        cpx_dept_t d;
        if (decode(code, &v, &d))
            continue;
        if ((ret = fn(ctx, &d)))
            break;
    }
    mdb_cursor_close(cur);
    return ret;
}
