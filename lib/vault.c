/* vault.c — sealed records: AES-256-GCM under a rotating vault key, keyed-pseudonym
 * indexes, in the gateway's LMDB environment. */
#include "cpx/vault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define MOD "vault"
#define REC_VERSION 1
#define HDR (1 + 1 + CPX_VAULT_KEY_ID_LEN + 8)
#define MAX_PT (2u * CPX_MAX_ENVELOPE_BYTES)
#define AAD_PREFIX "cpx.v1.vault"
#define AAD_LEN (sizeof AAD_PREFIX + CPX_VAULT_ID_LEN + 1 + CPX_VAULT_KEY_ID_LEN)
#define MAX_KEYS 2

typedef struct vkey {
    uint8_t id[CPX_VAULT_KEY_ID_LEN];
    uint8_t key[CPX_AEAD_KEY_LEN];
    int loaded;
} vkey_t;

struct cpx_vault {
    MDB_dbi rec, idx, meta;
    char key_path[1024];
    uint8_t pkey[32];
    vkey_t keys[MAX_KEYS];          /* [0] key_path, [1] key_path.next */
    uint8_t write_id[CPX_VAULT_KEY_ID_LEN];
    int have_write;
};

void cpx_vault_key_id(const uint8_t key[32], uint8_t out[CPX_VAULT_KEY_ID_LEN])
{
    static const char label[] = "cpx.v1.vault-key";
    cpx_iov_t iov[2] = {{label, sizeof label}, {key, 32}};
    uint8_t h[CPX_SHA256_LEN];
    cpx_sha256_v(iov, 2, h);
    memcpy(out, h, CPX_VAULT_KEY_ID_LEN);
}

static int load_key(const char *path, vkey_t *k)
{
    int rc = cpx_symkey_load(path, k->key);
    if (rc)
        return rc;
    cpx_vault_key_id(k->key, k->id);
    k->loaded = 1;
    return CPX_OK;
}

static void next_path(const cpx_vault_t *self, char *out, size_t size)
{
    snprintf(out, size, "%s.next", self->key_path);
}

/* (Re)loads key_path and, when present, key_path.next. */
static int load_keys(cpx_vault_t *self)
{
    vkey_t k[MAX_KEYS];
    memset(k, 0, sizeof k);
    int rc = load_key(self->key_path, &k[0]);
    if (rc) {
        cpx_log_error(MOD, "msg=\"cannot load vault key\" path=\"%s\" err=%s", self->key_path,
                      cpx_strerror(rc));
        cpx_cleanse(k, sizeof k);
        return rc;
    }
    char np[1100];
    next_path(self, np, sizeof np);
    if (access(np, F_OK) == 0 && (rc = load_key(np, &k[1]))) {
        cpx_cleanse(k, sizeof k);
        return rc;
    }
    memcpy(self->keys, k, sizeof k);
    cpx_cleanse(k, sizeof k);
    return CPX_OK;
}

static const vkey_t *find_key(const cpx_vault_t *self, const uint8_t *id)
{
    for (int i = 0; i < MAX_KEYS; i++)
        if (self->keys[i].loaded && !memcmp(self->keys[i].id, id, CPX_VAULT_KEY_ID_LEN))
            return &self->keys[i];
    return NULL;
}

static int meta_get(cpx_vault_t *self, MDB_txn *txn, const char *name, uint8_t id[8], int *found)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, self->meta, &k, &v);
    *found = 0;
    if (rc == MDB_NOTFOUND)
        return CPX_OK;
    if (rc)
        return cpx_store_err(rc, "vault: meta");
    if (v.mv_size != CPX_VAULT_KEY_ID_LEN)
        return CPX_ERR_TAMPERED;
    memcpy(id, v.mv_data, CPX_VAULT_KEY_ID_LEN);
    *found = 1;
    return CPX_OK;
}

static int meta_put(cpx_vault_t *self, MDB_txn *txn, const char *name, const uint8_t *id)
{
    MDB_val k = {strlen(name), (void *)name}, v = {CPX_VAULT_KEY_ID_LEN, (void *)id};
    int rc = id ? mdb_put(txn, self->meta, &k, &v, 0) : mdb_del(txn, self->meta, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return CPX_OK;
    return rc ? cpx_store_err(rc, "vault: meta put") : CPX_OK;
}

/* Decides the write key from the meta record; reloads key files once when it names a
 * key we do not hold (another process started or finished a rotation). */
static int adopt(cpx_vault_t *self, MDB_txn *txn, int writable)
{
    uint8_t cur[8], next[8];
    int have_cur, have_next, rc;
    if ((rc = meta_get(self, txn, "key_id", cur, &have_cur)) ||
        (rc = meta_get(self, txn, "next_key_id", next, &have_next)))
        return rc;
    if (!have_cur) {
        memcpy(cur, self->keys[0].id, 8);
        if (writable && (rc = meta_put(self, txn, "key_id", cur)))
            return rc;
    }
    const uint8_t *want = have_next ? next : cur;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (find_key(self, cur) && find_key(self, want)) {
            memcpy(self->write_id, want, 8);
            self->have_write = 1;
            return CPX_OK;
        }
        if (attempt == 0 && (rc = load_keys(self)))
            return rc;
    }
    char hex[17];
    cpx_hex(want, 8, hex);
    cpx_log_error(MOD, "msg=\"the vault's key is not loaded: lost or wrong vault key\" "
                       "path=\"%s\" vault_key_id=%s", self->key_path, hex);
    self->have_write = 0;
    return CPX_ERR_TAMPERED;
}

int cpx_vault_open(MDB_env *env, const char *key_path, const uint8_t pseudonym_key[32],
                   cpx_vault_t **out)
{
    *out = NULL;
    if (!env || !key_path || !pseudonym_key || strlen(key_path) >= 1024)
        return CPX_ERR_ARG;
    cpx_vault_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPX_ERR_NOMEM;
    snprintf(self->key_path, sizeof self->key_path, "%s", key_path);
    memcpy(self->pkey, pseudonym_key, 32);
    int rc = load_keys(self);
    if (rc) {
        cpx_vault_destroy(&self);
        return rc;
    }
    unsigned flags = 0;
    mdb_env_get_flags(env, &flags);
    int ro = (flags & MDB_RDONLY) != 0;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(env, NULL, ro ? MDB_RDONLY : 0, &txn))) {
        cpx_vault_destroy(&self);
        return cpx_store_err(rc, "vault: begin");
    }
    unsigned create = ro ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, "vault.rec", create, &self->rec)) ||
        (rc = mdb_dbi_open(txn, "vault.idx", create | MDB_DUPSORT | MDB_DUPFIXED, &self->idx)) ||
        (rc = mdb_dbi_open(txn, "vault.meta", create, &self->meta))) {
        mdb_txn_abort(txn);
        cpx_vault_destroy(&self);
        return cpx_store_err(rc, "vault: open databases");
    }
    rc = adopt(self, txn, !ro);
    if (rc) {
        mdb_txn_abort(txn);
        cpx_vault_destroy(&self);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn))) {
        cpx_vault_destroy(&self);
        return cpx_store_err(rc, "vault: commit");
    }
    *out = self;
    return CPX_OK;
}

void cpx_vault_destroy(cpx_vault_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_cleanse(*self_p, sizeof **self_p);
    free(*self_p);
    *self_p = NULL;
}

int cpx_vault_sync(cpx_vault_t *self, MDB_txn *txn)
{
    return adopt(self, txn, 0);
}

void cpx_vault_pseudo(const cpx_vault_t *self, char tag, const char *value,
                      uint8_t out[CPX_VAULT_PSEUDO_LEN])
{
    size_t n = strlen(value);
    uint8_t buf[1 + 256];
    if (n > 256)
        n = 256;
    buf[0] = (uint8_t)tag;
    memcpy(buf + 1, value, n);
    out[0] = (uint8_t)tag;
    cpx_hmac_sha256(self->pkey, 32, buf, n + 1, out + 1);
    cpx_cleanse(buf, sizeof buf);
}

static void make_aad(uint8_t aad[AAD_LEN], const uint8_t *id, uint8_t kind, const uint8_t *key_id)
{
    memcpy(aad, AAD_PREFIX, sizeof AAD_PREFIX); /* with its NUL: the 0x00 separator */
    memcpy(aad + sizeof AAD_PREFIX, id, CPX_VAULT_ID_LEN);
    aad[sizeof AAD_PREFIX + CPX_VAULT_ID_LEN] = kind;
    memcpy(aad + sizeof AAD_PREFIX + CPX_VAULT_ID_LEN + 1, key_id, CPX_VAULT_KEY_ID_LEN);
}

/* Encrypts into a new malloc'd record value. */
static int seal_value(const vkey_t *k, const uint8_t *id, uint8_t kind, int64_t created,
                      const void *pt, size_t len, uint8_t **val, size_t *vlen)
{
    size_t n = HDR + len + CPX_AEAD_OVERHEAD;
    uint8_t *v = malloc(n);
    if (!v)
        return CPX_ERR_NOMEM;
    v[0] = REC_VERSION;
    v[1] = kind;
    memcpy(v + 2, k->id, CPX_VAULT_KEY_ID_LEN);
    cpx_be64_put(v + 2 + CPX_VAULT_KEY_ID_LEN, (uint64_t)created);
    uint8_t aad[AAD_LEN];
    make_aad(aad, id, kind, k->id);
    int rc = cpx_aead_seal(k->key, aad, sizeof aad, pt, len, v + HDR);
    if (rc) {
        free(v);
        return rc;
    }
    *val = v;
    *vlen = n;
    return CPX_OK;
}

int cpx_vault_put(cpx_vault_t *self, MDB_txn *txn, const uint8_t id[CPX_VAULT_ID_LEN],
                  cpx_vault_kind kind, const void *pt, size_t len, int64_t now_ms)
{
    if (len > MAX_PT)
        return CPX_ERR_TOO_LARGE;
    if (!self->have_write)
        return CPX_ERR_TAMPERED;
    const vkey_t *k = find_key(self, self->write_id);
    if (!k)
        return CPX_ERR_TAMPERED;
    uint8_t *val;
    size_t vlen;
    int rc = seal_value(k, id, (uint8_t)kind, now_ms, pt, len, &val, &vlen);
    if (rc)
        return rc;
    MDB_val key = {CPX_VAULT_ID_LEN, (void *)id}, v = {vlen, val};
    rc = mdb_put(txn, self->rec, &key, &v, 0);
    free(val);
    return rc ? cpx_store_err(rc, "vault: put") : CPX_OK;
}

/* Decrypts a stored value of record id. */
static int open_value(cpx_vault_t *self, const uint8_t *id, const MDB_val *v, uint8_t **pt,
                      size_t *len, cpx_vault_kind *kind, int64_t *created)
{
    const uint8_t *b = v->mv_data;
    if (v->mv_size < HDR + CPX_AEAD_OVERHEAD || b[0] != REC_VERSION)
        return CPX_ERR_TAMPERED;
    const vkey_t *k = find_key(self, b + 2);
    /* Another process (cpxctl sealed rotate-key) may have re-encrypted this record under
     * a key this process has not loaded yet: read the key files once more first. */
    if (!k && load_keys(self) == CPX_OK)
        k = find_key(self, b + 2);
    if (!k) {
        char hex[17];
        cpx_hex(b + 2, 8, hex);
        cpx_log_error(MOD, "msg=\"record under a key that is not loaded\" key_id=%s", hex);
        return CPX_ERR_TAMPERED;
    }
    size_t n = v->mv_size - HDR - CPX_AEAD_OVERHEAD;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return CPX_ERR_NOMEM;
    uint8_t aad[AAD_LEN];
    make_aad(aad, id, b[1], b + 2);
    int rc = cpx_aead_open(k->key, aad, sizeof aad, b + HDR, v->mv_size - HDR, p);
    if (rc) {
        free(p);
        cpx_log_error(MOD, "msg=\"vault record does not authenticate\"");
        return CPX_ERR_TAMPERED;
    }
    *pt = p;
    *len = n;
    if (kind)
        *kind = (cpx_vault_kind)b[1];
    if (created)
        *created = (int64_t)cpx_be64_get(b + 2 + CPX_VAULT_KEY_ID_LEN);
    return CPX_OK;
}

int cpx_vault_get(cpx_vault_t *self, MDB_txn *txn, const uint8_t id[CPX_VAULT_ID_LEN],
                  uint8_t **pt, size_t *len, cpx_vault_kind *kind)
{
    MDB_val key = {CPX_VAULT_ID_LEN, (void *)id}, v;
    int rc = mdb_get(txn, self->rec, &key, &v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "vault: get");
    return open_value(self, id, &v, pt, len, kind, NULL);
}

static int rec_kind(cpx_vault_t *self, MDB_txn *txn, const uint8_t *id, size_t id_len)
{
    if (id_len != CPX_VAULT_ID_LEN)
        return 0;
    MDB_val key = {CPX_VAULT_ID_LEN, (void *)id}, v;
    int rc = mdb_get(txn, self->rec, &key, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return cpx_store_err(rc, "vault: get");
    return v.mv_size >= HDR ? ((const uint8_t *)v.mv_data)[1] : CPX_ERR_TAMPERED;
}

int cpx_vault_exists(cpx_vault_t *self, MDB_txn *txn, const uint8_t *id, size_t id_len)
{
    int k = rec_kind(self, txn, id, id_len);
    return k < 0 ? k : k != 0;
}

int cpx_vault_is_sealed(cpx_vault_t *self, MDB_txn *txn, const uint8_t *id, size_t id_len)
{
    int k = rec_kind(self, txn, id, id_len);
    return k < 0 ? k : k == CPX_VAULT_RECORD;
}

int cpx_vault_index(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value,
                    const uint8_t id[CPX_VAULT_ID_LEN])
{
    uint8_t p[CPX_VAULT_PSEUDO_LEN];
    cpx_vault_pseudo(self, tag, value, p);
    MDB_val k = {sizeof p, p}, v = {CPX_VAULT_ID_LEN, (void *)id};
    int rc = mdb_put(txn, self->idx, &k, &v, MDB_NODUPDATA);
    if (rc == MDB_KEYEXIST)
        return CPX_OK;
    return rc ? cpx_store_err(rc, "vault: index") : CPX_OK;
}

int cpx_vault_lookup(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value,
                     int (*fn)(void *ctx, const uint8_t id[CPX_VAULT_ID_LEN]), void *ctx)
{
    uint8_t p[CPX_VAULT_PSEUDO_LEN];
    cpx_vault_pseudo(self, tag, value, p);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->idx, &cur);
    if (rc)
        return cpx_store_err(rc, "vault: cursor");
    MDB_val k = {sizeof p, p}, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        if (v.mv_size != CPX_VAULT_ID_LEN) {
            ret = CPX_ERR_TAMPERED;
            break;
        }
        uint8_t id[CPX_VAULT_ID_LEN];
        memcpy(id, v.mv_data, sizeof id);
        if ((ret = fn(ctx, id)))
            break;
    }
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = cpx_store_err(rc, "vault: lookup");
    mdb_cursor_close(cur);
    return ret;
}

static int count_cb(void *ctx, const uint8_t id[CPX_VAULT_ID_LEN])
{
    (void)id;
    (*(long *)ctx)++;
    return 0;
}

long cpx_vault_count(cpx_vault_t *self, MDB_txn *txn, char tag, const char *value)
{
    long n = 0;
    int rc = cpx_vault_lookup(self, txn, tag, value, count_cb, &n);
    return rc ? rc : n;
}

/* ---- rotation ---------------------------------------------------------------------- */

int cpx_vault_rotate_begin(cpx_vault_t *self, MDB_txn *txn, uint8_t new_id[CPX_VAULT_KEY_ID_LEN])
{
    char np[1100];
    next_path(self, np, sizeof np);
    int rc;
    if (access(np, F_OK) != 0 && (rc = cpx_symkey_create(np)))
        return rc;
    if ((rc = load_keys(self)))
        return rc;
    if (!self->keys[1].loaded)
        return CPX_ERR_NOT_FOUND;
    if (!memcmp(self->keys[1].id, self->keys[0].id, CPX_VAULT_KEY_ID_LEN))
        return CPX_ERR_EXISTS; /* the "new" key is the old one */
    if ((rc = meta_put(self, txn, "next_key_id", self->keys[1].id)))
        return rc;
    memcpy(self->write_id, self->keys[1].id, CPX_VAULT_KEY_ID_LEN);
    self->have_write = 1;
    memcpy(new_id, self->keys[1].id, CPX_VAULT_KEY_ID_LEN);
    return CPX_OK;
}

int cpx_vault_rekey(cpx_vault_t *self, MDB_txn *txn, size_t max, uint64_t *rekeyed,
                    uint64_t *left)
{
    int rc = adopt(self, txn, 0);
    if (rc)
        return rc;
    const vkey_t *wk = find_key(self, self->write_id);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, self->rec, &cur)))
        return cpx_store_err(rc, "vault: cursor");
    uint64_t done = 0, rest = 0;
    MDB_val k, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *b = v.mv_data;
        if (k.mv_size != CPX_VAULT_ID_LEN || v.mv_size < HDR) {
            ret = CPX_ERR_TAMPERED;
            break;
        }
        if (!memcmp(b + 2, wk->id, CPX_VAULT_KEY_ID_LEN))
            continue;
        if (done >= max) {
            rest++;
            continue;
        }
        uint8_t id[CPX_VAULT_ID_LEN], *pt = NULL, *nv = NULL;
        memcpy(id, k.mv_data, sizeof id);
        size_t len, nlen;
        cpx_vault_kind kind;
        int64_t created;
        if ((ret = open_value(self, id, &v, &pt, &len, &kind, &created)))
            break;
        ret = seal_value(wk, id, (uint8_t)kind, created, pt, len, &nv, &nlen);
        cpx_cleanse(pt, len);
        free(pt);
        if (ret)
            break;
        MDB_val nval = {nlen, nv};
        rc = mdb_cursor_put(cur, &k, &nval, MDB_CURRENT);
        free(nv);
        if (rc) {
            ret = cpx_store_err(rc, "vault: rekey put");
            break;
        }
        done++;
    }
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = cpx_store_err(rc, "vault: rekey walk");
    mdb_cursor_close(cur);
    if (rekeyed)
        *rekeyed = done;
    if (left)
        *left = rest;
    return ret;
}

int cpx_vault_rotate_finish(cpx_vault_t *self, MDB_txn *txn)
{
    uint64_t left = 0;
    int rc = cpx_vault_rekey(self, txn, 0, NULL, &left);
    if (rc)
        return rc;
    if (left)
        return CPX_ERR_STATE;
    if ((rc = meta_put(self, txn, "key_id", self->write_id)) ||
        (rc = meta_put(self, txn, "next_key_id", NULL)))
        return rc;
    return CPX_OK;
}

int cpx_vault_rotate_install(cpx_vault_t *self)
{
    char np[1100];
    next_path(self, np, sizeof np);
    if (rename(np, self->key_path) != 0) {
        cpx_log_error(MOD, "msg=\"cannot install the new vault key\" path=\"%s\" errno=\"%s\"",
                      np, strerror(errno));
        return CPX_ERR_IO;
    }
    return load_keys(self);
}

int cpx_vault_info(cpx_vault_t *self, MDB_txn *txn, uint8_t key_id[CPX_VAULT_KEY_ID_LEN],
                   uint64_t *records)
{
    memcpy(key_id, self->write_id, CPX_VAULT_KEY_ID_LEN);
    MDB_stat st;
    int rc = mdb_stat(txn, self->rec, &st);
    if (rc)
        return cpx_store_err(rc, "vault: stat");
    *records = st.ms_entries;
    return CPX_OK;
}

/* ---- key-free view checks -------------------------------------------------------------- */

/* 'H' | SHA-256("cpx.v1.sealed-case" 00 | case id): unkeyed so that cpxctl can hide the
 * case without any key; it keeps the case id string itself out of the file. */
static void hidden_key(const char *case_id, uint8_t out[1 + CPX_SHA256_LEN])
{
    static const char label[] = "cpx.v1.sealed-case";
    cpx_iov_t iov[2] = {{label, sizeof label}, {case_id, strlen(case_id)}};
    out[0] = 'H';
    cpx_sha256_v(iov, 2, out + 1);
}

int cpx_vault_hide_case(cpx_vault_t *self, MDB_txn *txn, const char *case_id)
{
    uint8_t k[1 + CPX_SHA256_LEN];
    hidden_key(case_id, k);
    MDB_val key = {sizeof k, k}, v = {0, ""};
    int rc = mdb_put(txn, self->meta, &key, &v, 0);
    return rc ? cpx_store_err(rc, "vault: hide case") : CPX_OK;
}

static int probe(MDB_txn *txn, const char *db, const void *k, size_t kl)
{
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn, db, 0, &dbi);
    if (rc == MDB_NOTFOUND)
        return 0;  /* a store without a vault */
    if (rc)
        return cpx_store_err(rc, "vault: open");
    MDB_val key = {kl, (void *)k}, v;
    rc = mdb_get(txn, dbi, &key, &v);
    return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : cpx_store_err(rc, "vault: probe");
}

int cpx_vault_case_hidden(MDB_txn *txn, const char *case_id)
{
    if (!case_id || !*case_id)
        return 0;
    uint8_t k[1 + CPX_SHA256_LEN];
    hidden_key(case_id, k);
    return probe(txn, "vault.meta", k, sizeof k);
}

int cpx_vault_holds(MDB_txn *txn, const uint8_t *id, size_t id_len)
{
    return id_len == CPX_VAULT_ID_LEN ? probe(txn, "vault.rec", id, id_len) : 0;
}

int cpx_vault_view_withheld(MDB_txn *txn, const char *case_ref, const uint8_t *message_id,
                            size_t message_id_len)
{
    if (case_ref && !strncmp(case_ref, "P:", 2))
        return 1;  /* a sealed subject's pseudonym: the auditor's access log only */
    int rc = cpx_vault_holds(txn, message_id, message_id_len);
    return rc ? rc : cpx_vault_case_hidden(txn, case_ref);
}
