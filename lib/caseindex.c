/* caseindex.c — the case index databases and the case/referral state machines. */
#include "cpx/caseindex.h"

#include <openssl/evp.h>

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/minortab.h"
#include "cpx/store.h"

#define MOD "caseindex"
#define PII_AAD "cpx.ci.pii"
#define MAX_PII_BYTES 4096u
#define DEPT_KEY CPX_MAX_DEPT_CODE

struct cpx_caseindex {
    MDB_dbi cases, pii, ref, part, dl, dlx, ben, parent;
    cpx_minortab_t *minors;  /* open cases by minor key, when built (cpx_caseindex_minor_load) */
    uint8_t index_key[32], records_key[32];
    int has_index_key, has_records_key;
    /* Keyed once, reused per record: OpenSSL's one-shot HMAC() and a fresh cipher
     * context per record cost more than the hashing and the encryption themselves. */
    EVP_MD *sha256;
    EVP_MD_CTX *hm_in, *hm_out, *hm_tmp;  /* HMAC inner/outer states after the padded key */
    cpx_aead_sealer_t *sealer;            /* the records key: counter nonces per open */
};

static int hmac_keyed(cpx_caseindex_t *self)
{
    uint8_t ipad[64], opad[64];
    for (size_t i = 0; i < 64; i++) {
        uint8_t k = i < 32 ? self->index_key[i] : 0;
        ipad[i] = k ^ 0x36;
        opad[i] = k ^ 0x5c;
    }
    int ok = (self->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) &&
             (self->hm_in = EVP_MD_CTX_new()) && (self->hm_out = EVP_MD_CTX_new()) &&
             (self->hm_tmp = EVP_MD_CTX_new()) &&
             EVP_DigestInit_ex(self->hm_in, self->sha256, NULL) == 1 &&
             EVP_DigestUpdate(self->hm_in, ipad, 64) == 1 &&
             EVP_DigestInit_ex(self->hm_out, self->sha256, NULL) == 1 &&
             EVP_DigestUpdate(self->hm_out, opad, 64) == 1;
    cpx_cleanse(ipad, sizeof ipad);
    cpx_cleanse(opad, sizeof opad);
    return ok ? CPX_OK : CPX_ERR_CRYPTO;
}

/* HMAC-SHA-256 under the index key (RFC 2104 from the precomputed pad states), with
 * tmp as scratch: the pad states are only read, so threads each with their own tmp
 * (cpx_caseindex_worker_t) may hash at once. */
static void hmac_in(cpx_caseindex_t *self, EVP_MD_CTX *tmp, const void *data, size_t len,
                    uint8_t out[CPX_SHA256_LEN])
{
    uint8_t inner[CPX_SHA256_LEN];
    unsigned n = 0;
    if (EVP_MD_CTX_copy_ex(tmp, self->hm_in) != 1 ||
        EVP_DigestUpdate(tmp, data, len) != 1 ||
        EVP_DigestFinal_ex(tmp, inner, &n) != 1 ||
        EVP_MD_CTX_copy_ex(tmp, self->hm_out) != 1 ||
        EVP_DigestUpdate(tmp, inner, sizeof inner) != 1 ||
        EVP_DigestFinal_ex(tmp, out, &n) != 1) {
        /* cannot happen with a working libcrypto; fall back to the one-shot */
        cpx_hmac_sha256(self->index_key, sizeof self->index_key, data, len, out);
    }
}

struct cpx_caseindex_worker {
    EVP_MD_CTX *hm_tmp;
};

cpx_caseindex_worker_t *cpx_caseindex_worker_new(void)
{
    cpx_caseindex_worker_t *w = calloc(1, sizeof *w);
    if (w && !(w->hm_tmp = EVP_MD_CTX_new())) {
        free(w);
        w = NULL;
    }
    return w;
}

void cpx_caseindex_worker_destroy(cpx_caseindex_worker_t **w_p)
{
    if (!w_p || !*w_p)
        return;
    EVP_MD_CTX_free((*w_p)->hm_tmp);
    free(*w_p);
    *w_p = NULL;
}

cpx_caseindex_t *cpx_caseindex_open(MDB_env *env, const uint8_t index_key[32],
                                    const uint8_t records_key[32])
{
    cpx_caseindex_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    const cpx_store_db_t dbs[] = {
        {"ci.case", 0, &self->cases}, {"ci.pii", 0, &self->pii},   {"ci.ref", 0, &self->ref},
        {"ci.part", 0, &self->part},  {"ci.dl", 0, &self->dl},     {"ci.dlx", 0, &self->dlx},
        {"ci.ben", 0, &self->ben},    {"ci.parent", 0, &self->parent},
    };
    /* a read-only store written before case tracking has no such databases: not an error
     * worth a log line (CPX_ERR_NOT_FOUND), the caller answers "no case tracking" */
    if (cpx_store_open_dbs(env, "caseindex", dbs, sizeof dbs / sizeof dbs[0]) != CPX_OK) {
        free(self);
        return NULL;
    }
    if (index_key) {
        memcpy(self->index_key, index_key, 32);
        self->has_index_key = 1;
    }
    if (records_key) {
        memcpy(self->records_key, records_key, 32);
        self->has_records_key = 1;
    }
    if ((index_key && hmac_keyed(self)) ||
        (records_key && !(self->sealer = cpx_aead_sealer_new(records_key)))) {
        cpx_log_openssl(MOD, "keying HMAC-SHA-256 / AES-256-GCM");
        cpx_caseindex_destroy(&self);
    }
    return self;
}

void cpx_caseindex_destroy(cpx_caseindex_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_caseindex_t *self = *self_p;
    EVP_MD_CTX_free(self->hm_in);   /* frees cleanse the key-dependent states */
    EVP_MD_CTX_free(self->hm_out);
    EVP_MD_CTX_free(self->hm_tmp);
    EVP_MD_free(self->sha256);
    cpx_aead_sealer_destroy(&self->sealer);
    cpx_minortab_destroy(&self->minors);
    cpx_cleanse(self, sizeof *self);
    free(self);
    *self_p = NULL;
}

/* ---- raw record helpers --------------------------------------------------------- */

static int get_raw(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, MDB_val *v)
{
    if (!kl)
        return CPX_ERR_NOT_FOUND;
    MDB_val key = {kl, (void *)k};
    int rc = mdb_get(txn, dbi, &key, v);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    return rc ? cpx_store_err(rc, "caseindex: get") : CPX_OK;
}

static int get_rec(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, void *out, size_t size)
{
    MDB_val v;
    int rc = get_raw(txn, dbi, k, kl, &v);
    if (rc)
        return rc;
    if (v.mv_size != size || cpx_be32_get(v.mv_data) != CPX_CASEINDEX_VERSION) {
        /* version is stored big-endian in the first 4 bytes, see put_rec */
        cpx_log_error(MOD, "msg=\"record of another format\" size=%zu", v.mv_size);
        return CPX_ERR_TAMPERED;
    }
    memcpy(out, v.mv_data, size);
    *(uint32_t *)out = CPX_CASEINDEX_VERSION;
    return CPX_OK;
}

static int put_rec(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *rec,
                   size_t size)
{
    uint8_t buf[1024];
    if (size > sizeof buf)
        return CPX_ERR_ARG;
    memcpy(buf, rec, size);
    cpx_be32_put(buf, CPX_CASEINDEX_VERSION);
    MDB_val key = {kl, (void *)k}, v = {size, buf};
    int rc = mdb_put(txn, dbi, &key, &v, 0);
    return rc ? cpx_store_err(rc, "caseindex: put") : CPX_OK;
}

static void pad(uint8_t *out, size_t size, const char *s)
{
    memset(out, 0, size);
    size_t n = strlen(s);
    memcpy(out, s, n < size ? n : size);
}

/* ---- cases ---------------------------------------------------------------------- */

int cpx_caseindex_get(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                      cpx_case_rec_t *out)
{
    return get_rec(txn, self->cases, case_id, strlen(case_id), out, sizeof *out);
}

int cpx_caseindex_put(cpx_caseindex_t *self, MDB_txn *txn, const cpx_case_rec_t *rec)
{
    return put_rec(txn, self->cases, rec->id, strlen(rec->id), rec, sizeof *rec);
}

static void hmac_parts(cpx_caseindex_t *self, EVP_MD_CTX *tmp, const char *domain,
                       const char *const *parts, size_t n, uint8_t out[CPX_SHA256_LEN])
{
    /* domain 0x00 part 0x00 part ...: unambiguous, and separate from other uses */
    char buf[1024];
    size_t off = 0;
    off += (size_t)snprintf(buf, sizeof buf, "%s", domain) + 1;
    for (size_t i = 0; i < n && off < sizeof buf; i++) {
        int w = snprintf(buf + off, sizeof buf - off, "%s", parts[i] ? parts[i] : "");
        if (w < 0)
            break;
        off += (size_t)w + 1;
        if (off > sizeof buf)
            off = sizeof buf;
    }
    hmac_in(self, tmp, buf, off, out);
    cpx_cleanse(buf, off);
}

/* Name normalisation for the fallback match: ASCII letters upper-cased, every space,
 * middle dot and punctuation dropped (Chinese names are written with and without
 * spaces and "·" in transliterations), other characters (CJK) kept as they are. */
static void norm_name(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < size; p++) {
        if (p[0] == 0xC2 && p[1] == 0xB7) {  /* U+00B7 middle dot */
            p++;
            continue;
        }
        if (*p < 0x80 && (isspace(*p) || ispunct(*p)))
            continue;
        out[o++] = (char)(*p < 0x80 ? toupper(*p) : *p);
    }
    out[o] = '\0';
}

int cpx_caseindex_minor_key(cpx_caseindex_t *self, const Cpx__V1__MinorIdentity *m,
                            int by_name, uint8_t out[1 + CPX_SHA256_LEN])
{
    return cpx_caseindex_minor_key_w(self, NULL, m, by_name, out);
}

int cpx_caseindex_minor_key_w(cpx_caseindex_t *self, cpx_caseindex_worker_t *w,
                              const Cpx__V1__MinorIdentity *m, int by_name,
                              uint8_t out[1 + CPX_SHA256_LEN])
{
    EVP_MD_CTX *tmp = w ? w->hm_tmp : self->hm_tmp;
    if (!self->has_index_key)
        return CPX_ERR_STATE;
    if (!m)
        return CPX_ERR_NOT_FOUND;
    if (!by_name) {
        if (!m->id_number || !*m->id_number)
            return CPX_ERR_NOT_FOUND;
        char id[32];
        snprintf(id, sizeof id, "%s", m->id_number);
        for (char *p = id; *p; p++)
            *p = (char)toupper((unsigned char)*p);  /* the check digit may be 'x' */
        const char *parts[] = {id};
        out[0] = 'I';
        hmac_parts(self, tmp, "cpx.ci.id", parts, 1, out + 1);
        return CPX_OK;
    }
    if (!m->name || !*m->name || !m->birth_date || !m->birth_date->year || !m->town ||
        !*m->town)
        return CPX_ERR_NOT_FOUND;
    char name[CPX_MAX_NAME * 2 + 1], date[16];
    norm_name(m->name, name, sizeof name);
    if (!*name)
        return CPX_ERR_NOT_FOUND;
    snprintf(date, sizeof date, "%04u%02u%02u", m->birth_date->year % 10000,
             m->birth_date->month % 100, m->birth_date->day % 100);
    const char *parts[] = {name, date, m->town};
    out[0] = 'N';
    hmac_parts(self, tmp, "cpx.ci.name", parts, 3, out + 1);
    return CPX_OK;
}

void cpx_caseindex_subject(cpx_caseindex_t *self, const char *id_number, const char *case_id,
                           uint8_t out[CPX_SHA256_LEN])
{
    if (id_number && *id_number) {
        Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
        m.id_number = (char *)id_number;
        uint8_t k[1 + CPX_SHA256_LEN];
        if (cpx_caseindex_minor_key(self, &m, 0, k) == CPX_OK) {
            memcpy(out, k + 1, CPX_SHA256_LEN);
            return;
        }
    }
    const char *parts[] = {case_id};
    hmac_parts(self, self->hm_tmp, "cpx.ci.case", parts, 1, out);
}

void cpx_caseindex_hmac(cpx_caseindex_t *self, const char *text, uint8_t out[CPX_SHA256_LEN])
{
    char id[64];
    snprintf(id, sizeof id, "%s", text ? text : "");
    for (char *p = id; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    const char *parts[] = {id};
    hmac_parts(self, self->hm_tmp, "cpx.ci.id", parts, 1, out);
}

/* ---- a minor's open case ----------------------------------------------------------
 * No store of its own: a case record holds its minor's keys (subject with F_HAS_ID,
 * name_key with F_NAME_KEY), so "the open case of key K" is the open, unsealed case
 * whose record holds K — the newest opened when several do (docs/cases.md). The
 * gateway keeps a table of candidates (cpx/minortab.h) built from the records at start
 * and changed with them, so a new case costs no random B-tree insert; a hit is
 * confirmed against the record's full hash. Without the table (cpxctl), a scan. */

static int rec_holds(const cpx_case_rec_t *r, const uint8_t key[1 + CPX_SHA256_LEN])
{
    if (r->state == CPX_CASE_CLOSED || (r->flags & CPX_CASE_F_SEALED))
        return 0;
    if (key[0] == 'I')
        return (r->flags & CPX_CASE_F_HAS_ID) && !memcmp(r->subject, key + 1, CPX_SHA256_LEN);
    if (key[0] == 'N')
        return (r->flags & CPX_CASE_F_NAME_KEY) && !memcmp(r->name_key, key + 1, CPX_SHA256_LEN);
    return 0;
}

typedef struct minor_q {
    cpx_caseindex_t *self;
    MDB_txn *txn;
    const uint8_t *key;
    int found, err;
    int64_t opened_ms;
    char id[CPX_MAX_CASE_ID + 1];
} minor_q_t;

/* Keeps r when it holds the key and ranks above the best so far. */
static void minor_consider(minor_q_t *q, const cpx_case_rec_t *r)
{
    if (!rec_holds(r, q->key))
        return;
    if (q->found && (r->opened_ms < q->opened_ms ||
                     (r->opened_ms == q->opened_ms && strcmp(r->id, q->id) <= 0)))
        return;
    q->found = 1;
    q->opened_ms = r->opened_ms;
    snprintf(q->id, sizeof q->id, "%s", r->id);
}

static int minor_candidate(void *ctx, const char *case_id)
{
    minor_q_t *q = ctx;
    cpx_case_rec_t r;
    int rc = cpx_caseindex_get(q->self, q->txn, case_id, &r);
    if (rc == CPX_ERR_NOT_FOUND)  /* added in a cycle whose message was then refused */
        return 0;
    if (rc)
        return q->err = rc;
    minor_consider(q, &r);
    return 0;
}

static int minor_scanned(void *ctx, const cpx_case_rec_t *r)
{
    minor_consider(ctx, r);
    return 0;
}

int cpx_caseindex_find_minor(cpx_caseindex_t *self, MDB_txn *txn,
                             const uint8_t key[1 + CPX_SHA256_LEN], char *case_id)
{
    minor_q_t q = {.self = self, .txn = txn, .key = key};
    int rc = self->minors
                 ? cpx_minortab_each(self->minors, cpx_minortab_prefix(key), minor_candidate, &q)
                 : cpx_caseindex_each_case(self, txn, minor_scanned, &q);
    if (rc || q.err)
        return rc ? rc : q.err;
    if (!q.found)
        return CPX_ERR_NOT_FOUND;
    memcpy(case_id, q.id, sizeof q.id);
    return CPX_OK;
}

int cpx_caseindex_set_minor(cpx_caseindex_t *self, MDB_txn *txn,
                            const uint8_t key[1 + CPX_SHA256_LEN], const char *case_id)
{
    (void)txn;  /* the record the caller writes is what lasts; the table follows it */
    return self->minors ? cpx_minortab_add(self->minors, cpx_minortab_prefix(key), case_id)
                        : CPX_OK;
}

int cpx_caseindex_del_minor(cpx_caseindex_t *self, MDB_txn *txn,
                            const uint8_t key[1 + CPX_SHA256_LEN], const char *case_id)
{
    (void)txn;
    return self->minors ? cpx_minortab_del(self->minors, cpx_minortab_prefix(key), case_id)
                        : CPX_OK;
}

typedef struct minor_load {
    cpx_minortab_t *t;
    size_t n;
    int err;
} minor_load_t;

static int minor_load_case(void *ctx, const cpx_case_rec_t *r)
{
    minor_load_t *l = ctx;
    uint8_t key[1 + CPX_SHA256_LEN];
    for (int i = 0; i < 2; i++) {
        key[0] = i ? 'N' : 'I';
        memcpy(key + 1, i ? r->name_key : r->subject, CPX_SHA256_LEN);
        if (rec_holds(r, key) && (l->err = cpx_minortab_add(l->t, cpx_minortab_prefix(key), r->id)))
            return l->err;
    }
    if (++l->n % 4096 == 0)
        cpx_minortab_commit(l->t);  /* nothing to undo in a build: keep the undo list small */
    return 0;
}

int cpx_caseindex_minor_load(cpx_caseindex_t *self, MDB_txn *txn)
{
    minor_load_t l = {.t = cpx_minortab_new()};
    if (!l.t)
        return CPX_ERR_NOMEM;
    int rc = cpx_caseindex_each_case(self, txn, minor_load_case, &l);
    if (rc || l.err) {
        cpx_minortab_destroy(&l.t);
        return rc ? rc : l.err;
    }
    cpx_minortab_commit(l.t);
    cpx_minortab_destroy(&self->minors);
    self->minors = l.t;
    return CPX_OK;
}

void cpx_caseindex_minor_commit(cpx_caseindex_t *self)
{
    if (self->minors)
        cpx_minortab_commit(self->minors);
}

void cpx_caseindex_minor_rollback(cpx_caseindex_t *self)
{
    if (self->minors)
        cpx_minortab_rollback(self->minors);
}

void cpx_caseindex_minor_stats(const cpx_caseindex_t *self, size_t *entries, size_t *bytes)
{
    *entries = self->minors ? cpx_minortab_count(self->minors) : 0;
    *bytes = self->minors ? cpx_minortab_bytes(self->minors) : 0;
}

static void pii_aad(const char *case_id, char *aad, size_t *len)
{
    int w = snprintf(aad, 64, "%s%c%s", PII_AAD, 0, case_id);
    *len = w > 0 ? (size_t)w : 0;
}

int cpx_caseindex_pii_encode(const Cpx__V1__MinorIdentity *m, uint8_t *buf, size_t size,
                             size_t *len)
{
    Cpx__V1__MinorIdentity c = *m;
    c.id_number = "";  /* kept only as its keyed hash */
    if (size > MAX_PII_BYTES)
        size = MAX_PII_BYTES;
    return cpx_encode_into(&c, buf, size, len);
}

int cpx_caseindex_put_pii(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          const Cpx__V1__MinorIdentity *m)
{
    if (!self->has_records_key)
        return CPX_ERR_STATE;
    uint8_t pt[MAX_PII_BYTES];
    size_t n;
    int rc = cpx_caseindex_pii_encode(m, pt, sizeof pt, &n);
    if (!rc)
        rc = cpx_caseindex_put_pii_encoded(self, txn, case_id, pt, n);
    cpx_cleanse(pt, sizeof pt);
    return rc;
}

int cpx_caseindex_put_pii_encoded(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                                  const uint8_t *pt, size_t n)
{
    if (!self->has_records_key)
        return CPX_ERR_STATE;
    if (n > MAX_PII_BYTES)
        return CPX_ERR_TOO_LARGE;
    uint8_t ct[MAX_PII_BYTES + CPX_AEAD_OVERHEAD];
    char aad[64];
    size_t al;
    pii_aad(case_id, aad, &al);
    int rc = cpx_aead_sealer_seal(self->sealer, aad, al, pt, n, ct);
    if (rc)
        return rc;
    MDB_val k = {strlen(case_id), (void *)case_id}, v = {n + CPX_AEAD_OVERHEAD, ct};
    rc = mdb_put(txn, self->pii, &k, &v, 0);
    return rc ? cpx_store_err(rc, "caseindex: put pii") : CPX_OK;
}

int cpx_caseindex_get_pii(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          Cpx__V1__MinorIdentity **out)
{
    if (!self->has_records_key)
        return CPX_ERR_STATE;
    MDB_val v;
    int rc = get_raw(txn, self->pii, case_id, strlen(case_id), &v);
    if (rc)
        return rc;
    if (v.mv_size < CPX_AEAD_OVERHEAD || v.mv_size > MAX_PII_BYTES + CPX_AEAD_OVERHEAD)
        return CPX_ERR_TAMPERED;
    uint8_t pt[MAX_PII_BYTES];
    char aad[64];
    size_t al;
    pii_aad(case_id, aad, &al);
    if ((rc = cpx_aead_open(self->records_key, aad, al, v.mv_data, v.mv_size, pt)))
        return rc;
    rc = cpx_decode(&cpx__v1__minor_identity__descriptor, pt, v.mv_size - CPX_AEAD_OVERHEAD,
                    MAX_PII_BYTES, (ProtobufCMessage **)out);
    cpx_cleanse(pt, sizeof pt);
    return rc;
}

static size_t part_key(uint8_t *k, const char *dept, const char *case_id)
{
    pad(k, DEPT_KEY, dept);
    size_t n = strlen(case_id);
    if (n > CPX_MAX_CASE_ID)
        n = CPX_MAX_CASE_ID;
    memcpy(k + DEPT_KEY, case_id, n);
    return DEPT_KEY + n;
}

/* Departments with a fixed bit in cpx_case_rec_t.parts (append only: a bit is never
 * reused, so stored records keep their meaning). */
static const char *const PART_BITS[] = {
    "CIVIL_AFFAIRS", "COURT", "PROCURATORATE", "EDUCATION", "POLICE", "JUSTICE", "HEALTH",
    "HRSS", "YOUTH_LEAGUE", "WOMENS_FED", "DISABLED_FED", "CIVILIZATION_OFFICE", "FINANCE",
    "GATEWAY", "TOWN_CHENGJIANG", "TOWN_NANZHA", "TOWN_YUNTING", "TOWN_XIAGANG", "TOWN_SHENGANG",
    "TOWN_LIGANG", "TOWN_HUANGTU", "TOWN_YUECHENG", "TOWN_QINGYANG", "TOWN_XUXIAKE", "TOWN_HUASHI",
    "TOWN_ZHOUZHUANG", "TOWN_XINQIAO", "TOWN_CHANGJING", "TOWN_GUSHAN", "TOWN_ZHUTANG",
};

static int part_bit(const char *dept)
{
    for (size_t i = 0; i < sizeof PART_BITS / sizeof PART_BITS[0]; i++)
        if (dept[0] == PART_BITS[i][0] && !strcmp(dept, PART_BITS[i]))
            return (int)i;
    return -1;
}

int cpx_caseindex_add_part(cpx_caseindex_t *self, MDB_txn *txn, cpx_case_rec_t *rec,
                           const char *dept)
{
    int bit = part_bit(dept);
    if (bit >= 0) {
        rec->parts |= 1ull << bit;
        return CPX_OK;
    }
    uint8_t k[DEPT_KEY + CPX_MAX_CASE_ID];
    MDB_val key = {part_key(k, dept, rec->id), k}, v = {0, ""};
    int rc = mdb_put(txn, self->part, &key, &v, MDB_NOOVERWRITE);
    return rc && rc != MDB_KEYEXIST ? cpx_store_err(rc, "caseindex: put part") : CPX_OK;
}

int cpx_caseindex_took_part(cpx_caseindex_t *self, MDB_txn *txn, const cpx_case_rec_t *rec,
                            const char *dept)
{
    int bit = part_bit(dept);
    if (bit >= 0)
        return (rec->parts >> bit) & 1;
    uint8_t k[DEPT_KEY + CPX_MAX_CASE_ID];
    MDB_val v;
    int rc = get_raw(txn, self->part, k, part_key(k, dept, rec->id), &v);
    return rc == CPX_OK ? 1 : rc == CPX_ERR_NOT_FOUND ? 0 : rc;
}

int cpx_caseindex_seal(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id)
{
    cpx_case_rec_t r;
    int rc = cpx_caseindex_get(self, txn, case_id, &r);
    if (rc || (r.flags & CPX_CASE_F_SEALED))
        return rc;
    uint8_t key[1 + CPX_SHA256_LEN];
    for (int i = 0; i < 2 && !rc; i++) {
        if (!(r.flags & (i ? CPX_CASE_F_NAME_KEY : CPX_CASE_F_HAS_ID)))
            continue;
        key[0] = i ? 'N' : 'I';
        memcpy(key + 1, i ? r.name_key : r.subject, CPX_SHA256_LEN);
        rc = cpx_caseindex_del_minor(self, txn, key, case_id);  /* only this case's entry */
    }
    r.flags |= CPX_CASE_F_SEALED;
    return rc ? rc : cpx_caseindex_put(self, txn, &r);
}

int cpx_caseindex_each_case(cpx_caseindex_t *self, MDB_txn *txn, cpx_caseindex_case_fn fn,
                            void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->cases, &cur);
    if (rc)
        return cpx_store_err(rc, "caseindex: cursor");
    MDB_val k, v;
    int ret = CPX_OK;
    cpx_case_rec_t rec;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != sizeof rec || cpx_be32_get(v.mv_data) != CPX_CASEINDEX_VERSION)
            continue;
        memcpy(&rec, v.mv_data, sizeof rec);
        rec.version = CPX_CASEINDEX_VERSION;
        if (rec.flags & CPX_CASE_F_SEALED)
            continue;  /* sealed cases are in no ordinary view */
        if ((ret = fn(ctx, &rec)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "caseindex: scan");
    return ret;
}

/* ---- referrals ------------------------------------------------------------------ */

int cpx_caseindex_get_ref(cpx_caseindex_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_referral_rec_t *out)
{
    return get_rec(txn, self->ref, id, len, out, sizeof *out);
}

int cpx_caseindex_put_ref(cpx_caseindex_t *self, MDB_txn *txn, const cpx_referral_rec_t *r)
{
    return put_rec(txn, self->ref, r->id, CPX_MAX_MESSAGE_ID, r, sizeof *r);
}

int cpx_caseindex_each_ref(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                           cpx_caseindex_ref_fn fn, void *ctx)
{
    /* Referrals are keyed by message id; a case's referrals are found through the
     * message store by the caller when speed matters. This scan serves the views. */
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->ref, &cur);
    if (rc)
        return cpx_store_err(rc, "caseindex: cursor");
    MDB_val k, v;
    int ret = CPX_OK;
    cpx_referral_rec_t r;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != sizeof r || cpx_be32_get(v.mv_data) != CPX_CASEINDEX_VERSION)
            continue;
        memcpy(&r, v.mv_data, sizeof r);
        r.version = CPX_CASEINDEX_VERSION;
        if (case_id && strcmp(r.case_id, case_id))
            continue;
        if ((ret = fn(ctx, &r)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "caseindex: scan");
    return ret;
}

/* ---- deadlines ------------------------------------------------------------------ */

/* ci.dl:  BE64(due) | kind | item(16) | dept(32)  -> deadline   (walks in due order)
 * ci.dlx: kind | case(32) | item(16) | dept(32) -> BE64(due)  (finds one to clear)
 * The case id leads the reverse key so that the deadlines of a new message land at
 * the right edge of the tree (case ids grow) instead of at random pages. */
#define DLK_LEN (1 + CPX_MAX_MESSAGE_ID + DEPT_KEY)
#define DL_LEN (8 + DLK_LEN)
#define DLX_LEN (1 + CPX_MAX_CASE_ID + CPX_MAX_MESSAGE_ID + DEPT_KEY)

static void dlk(uint8_t *k, uint8_t kind, const uint8_t *item, size_t item_len, const char *dept)
{
    k[0] = kind;
    memset(k + 1, 0, CPX_MAX_MESSAGE_ID);
    memcpy(k + 1, item, item_len < CPX_MAX_MESSAGE_ID ? item_len : CPX_MAX_MESSAGE_ID);
    pad(k + 1 + CPX_MAX_MESSAGE_ID, DEPT_KEY, dept);
}

static void dlx_key(uint8_t *x, uint8_t kind, const char *case_id, const uint8_t *item,
                    size_t item_len, const char *dept)
{
    uint8_t k[DLK_LEN];
    dlk(k, kind, item, item_len, dept);
    x[0] = kind;
    pad(x + 1, CPX_MAX_CASE_ID, case_id ? case_id : "");
    memcpy(x + 1 + CPX_MAX_CASE_ID, k + 1, DLK_LEN - 1);
}

/* ---- acknowledgement sets ----
 * A message routed to n departments has n acknowledgement deadlines. They are kept as
 * ONE record (under the earliest due, department field empty) listing every pending
 * department with its due, original due and escalation level, so accepting a message
 * writes two records instead of two per recipient. cpx_caseindex_dl_each shows each
 * pending department as its own cpx_deadline_t; dl_set / dl_clear with kind
 * CPX_DL_ACKNOWLEDGE update the set. */
typedef struct ack_ent {
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint8_t pad[3];
    uint32_t level;
    int64_t due_ms, first_due_ms;
} ack_ent_t;

typedef struct ack_set {
    uint32_t version;
    uint8_t kind, n, pad[2];
    char case_id[CPX_MAX_CASE_ID + 1];
    uint8_t item[CPX_MAX_MESSAGE_ID];
    ack_ent_t e[CPX_MAX_RECIPIENTS];
} ack_set_t;

#define ACK_HDR offsetof(ack_set_t, e)

static int64_t ack_min(const ack_set_t *a)
{
    int64_t m = INT64_MAX;
    for (size_t i = 0; i < a->n; i++)
        if (a->e[i].due_ms < m)
            m = a->e[i].due_ms;
    return m;
}

/* Loads the set of (case, item) and its current dl key; CPX_ERR_NOT_FOUND when none. */
static int ack_load(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id, const uint8_t *item,
                    size_t item_len, ack_set_t *a, uint8_t k[DL_LEN])
{
    uint8_t x[DLX_LEN];
    dlx_key(x, CPX_DL_ACKNOWLEDGE, case_id, item, item_len, "");
    MDB_val xk = {DLX_LEN, x}, xv, dk, dv;
    int rc = mdb_get(txn, self->dlx, &xk, &xv);
    if (rc == MDB_NOTFOUND)
        return CPX_ERR_NOT_FOUND;
    if (rc)
        return cpx_store_err(rc, "caseindex: get ack dlx");
    if (xv.mv_size != 8)
        return CPX_ERR_TAMPERED;
    memcpy(k, xv.mv_data, 8);
    dlk(k + 8, CPX_DL_ACKNOWLEDGE, item, item_len, "");
    dk = (MDB_val){DL_LEN, k};
    if ((rc = mdb_get(txn, self->dl, &dk, &dv)))
        return rc == MDB_NOTFOUND ? CPX_ERR_TAMPERED : cpx_store_err(rc, "caseindex: get ack");
    if (dv.mv_size < ACK_HDR || dv.mv_size > sizeof *a ||
        (dv.mv_size - ACK_HDR) % sizeof(ack_ent_t) || cpx_be32_get(dv.mv_data) != CPX_CASEINDEX_VERSION)
        return CPX_ERR_TAMPERED;
    memset(a, 0, sizeof *a);
    memcpy(a, dv.mv_data, dv.mv_size);
    a->version = CPX_CASEINDEX_VERSION;
    if (a->n != (dv.mv_size - ACK_HDR) / sizeof(ack_ent_t))
        return CPX_ERR_TAMPERED;
    return CPX_OK;
}

/* Writes a (the old record at old_k, when given, is replaced); an empty set is removed. */
static int ack_store(cpx_caseindex_t *self, MDB_txn *txn, ack_set_t *a, const uint8_t *old_k)
{
    uint8_t k[DL_LEN], x[DLX_LEN];
    int rc;
    dlx_key(x, CPX_DL_ACKNOWLEDGE, a->case_id, a->item, CPX_MAX_MESSAGE_ID, "");
    MDB_val xk = {DLX_LEN, x};
    int64_t due = ack_min(a);
    if (old_k && (!a->n || (int64_t)cpx_be64_get(old_k) != due)) {
        MDB_val ok = {DL_LEN, (void *)old_k};
        if ((rc = mdb_del(txn, self->dl, &ok, NULL)) && rc != MDB_NOTFOUND)
            return cpx_store_err(rc, "caseindex: del ack");
    }
    if (!a->n) {
        rc = mdb_del(txn, self->dlx, &xk, NULL);
        return rc && rc != MDB_NOTFOUND ? cpx_store_err(rc, "caseindex: del ack dlx") : CPX_OK;
    }
    cpx_be64_put(k, (uint64_t)(due < 0 ? 0 : due));
    dlk(k + 8, CPX_DL_ACKNOWLEDGE, a->item, CPX_MAX_MESSAGE_ID, "");
    if ((rc = put_rec(txn, self->dl, k, DL_LEN, a, ACK_HDR + a->n * sizeof(ack_ent_t))))
        return rc;
    if (old_k && !memcmp(old_k, k, 8))
        return CPX_OK;
    MDB_val xv = {8, k};
    rc = mdb_put(txn, self->dlx, &xk, &xv, 0);
    return rc ? cpx_store_err(rc, "caseindex: put ack dlx") : CPX_OK;
}

int cpx_caseindex_ack_add(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          const uint8_t *item, size_t item_len, const char *const *depts,
                          const int64_t *due_ms, size_t n)
{
    if (!n)
        return CPX_OK;
    if (n > CPX_MAX_RECIPIENTS)
        return CPX_ERR_ARG;
    ack_set_t a;
    memset(&a, 0, ACK_HDR + n * sizeof(ack_ent_t));
    a.version = CPX_CASEINDEX_VERSION;
    a.kind = CPX_DL_ACKNOWLEDGE;
    a.n = (uint8_t)n;
    snprintf(a.case_id, sizeof a.case_id, "%s", case_id);
    memcpy(a.item, item, item_len < CPX_MAX_MESSAGE_ID ? item_len : CPX_MAX_MESSAGE_ID);
    for (size_t i = 0; i < n; i++) {
        snprintf(a.e[i].dept, sizeof a.e[i].dept, "%s", depts[i]);
        a.e[i].due_ms = a.e[i].first_due_ms = due_ms[i];
    }
    return ack_store(self, txn, &a, NULL);
}

/* Removes dept from the set (clear), or, with d, sets its due and level (escalation). */
static int ack_update(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                      const uint8_t *item, size_t item_len, const char *dept,
                      const cpx_deadline_t *d)
{
    ack_set_t a;
    uint8_t k[DL_LEN];
    int rc = ack_load(self, txn, case_id, item, item_len, &a, k);
    if (rc == CPX_ERR_NOT_FOUND)
        return d ? CPX_ERR_NOT_FOUND : CPX_OK;
    if (rc)
        return rc;
    size_t i;
    for (i = 0; i < a.n && strcmp(a.e[i].dept, dept); i++)
        ;
    if (i == a.n)
        return d ? CPX_ERR_NOT_FOUND : CPX_OK;
    if (d) {
        a.e[i].due_ms = d->due_ms;
        a.e[i].level = d->level;
    } else {
        a.e[i] = a.e[--a.n];
    }
    return ack_store(self, txn, &a, k);
}

int cpx_caseindex_dl_clear(cpx_caseindex_t *self, MDB_txn *txn, uint8_t kind, const char *case_id,
                           const uint8_t *item, size_t item_len, const char *dept)
{
    if (kind == CPX_DL_ACKNOWLEDGE)
        return ack_update(self, txn, case_id, item, item_len, dept, NULL);
    uint8_t x[DLX_LEN], k[DL_LEN];
    dlx_key(x, kind, case_id, item, item_len, dept);
    MDB_val xk = {DLX_LEN, x}, xv;
    int rc = mdb_get(txn, self->dlx, &xk, &xv);
    if (rc == MDB_NOTFOUND)
        return CPX_OK;
    if (rc)
        return cpx_store_err(rc, "caseindex: get dlx");
    if (xv.mv_size != 8)
        return CPX_ERR_TAMPERED;
    memcpy(k, xv.mv_data, 8);
    dlk(k + 8, kind, item, item_len, dept);
    MDB_val dk = {DL_LEN, k};
    if ((rc = mdb_del(txn, self->dl, &dk, NULL)) && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "caseindex: del dl");
    if ((rc = mdb_del(txn, self->dlx, &xk, NULL)))
        return cpx_store_err(rc, "caseindex: del dlx");
    return CPX_OK;
}

int cpx_caseindex_dl_add(cpx_caseindex_t *self, MDB_txn *txn, const cpx_deadline_t *d)
{
    if (d->kind == CPX_DL_ACKNOWLEDGE)
        return cpx_caseindex_dl_set(self, txn, d);
    uint8_t k[DL_LEN], x[DLX_LEN];
    cpx_be64_put(k, (uint64_t)(d->due_ms < 0 ? 0 : d->due_ms));
    dlk(k + 8, d->kind, d->item, CPX_MAX_MESSAGE_ID, d->dept);
    int rc = put_rec(txn, self->dl, k, DL_LEN, d, sizeof *d);
    if (rc)
        return rc;
    dlx_key(x, d->kind, d->case_id, d->item, CPX_MAX_MESSAGE_ID, d->dept);
    MDB_val xk = {DLX_LEN, x}, xv = {8, k};
    rc = mdb_put(txn, self->dlx, &xk, &xv, 0);
    return rc ? cpx_store_err(rc, "caseindex: put dlx") : CPX_OK;
}

int cpx_caseindex_dl_set(cpx_caseindex_t *self, MDB_txn *txn, const cpx_deadline_t *d)
{
    if (d->kind == CPX_DL_ACKNOWLEDGE) {
        int rc = ack_update(self, txn, d->case_id, d->item, CPX_MAX_MESSAGE_ID, d->dept, d);
        if (rc != CPX_ERR_NOT_FOUND)
            return rc;
        const char *dp[1] = {d->dept};
        return cpx_caseindex_ack_add(self, txn, d->case_id, d->item, CPX_MAX_MESSAGE_ID, dp,
                                     &d->due_ms, 1);
    }
    int rc = cpx_caseindex_dl_clear(self, txn, d->kind, d->case_id, d->item, CPX_MAX_MESSAGE_ID,
                                    d->dept);
    return rc ? rc : cpx_caseindex_dl_add(self, txn, d);
}

int cpx_caseindex_dl_each(cpx_caseindex_t *self, MDB_txn *txn, int64_t until,
                          cpx_caseindex_dl_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->dl, &cur);
    if (rc)
        return cpx_store_err(rc, "caseindex: cursor");
    MDB_val k, v;
    int ret = CPX_OK;
    cpx_deadline_t d;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != DL_LEN || (int64_t)cpx_be64_get(k.mv_data) > until)
            break;
        if (((uint8_t *)k.mv_data)[8] == CPX_DL_ACKNOWLEDGE) {
            /* one record per message: each pending department as its own deadline */
            ack_set_t a;
            if (v.mv_size < ACK_HDR || v.mv_size > sizeof a ||
                cpx_be32_get(v.mv_data) != CPX_CASEINDEX_VERSION)
                continue;
            memcpy(&a, v.mv_data, v.mv_size);
            size_t n = (v.mv_size - ACK_HDR) / sizeof(ack_ent_t);
            for (size_t i = 0; i < n && i < a.n && !ret; i++) {
                if (a.e[i].due_ms > until)
                    continue;
                memset(&d, 0, sizeof d);
                d.version = CPX_CASEINDEX_VERSION;
                d.kind = CPX_DL_ACKNOWLEDGE;
                memcpy(d.item, a.item, sizeof d.item);
                memcpy(d.dept, a.e[i].dept, sizeof d.dept);
                memcpy(d.case_id, a.case_id, sizeof d.case_id);
                d.due_ms = a.e[i].due_ms;
                d.first_due_ms = a.e[i].first_due_ms;
                d.level = a.e[i].level;
                ret = fn(ctx, &d);
            }
            if (ret)
                break;
            continue;
        }
        if (v.mv_size != sizeof d || cpx_be32_get(v.mv_data) != CPX_CASEINDEX_VERSION)
            continue;
        memcpy(&d, v.mv_data, sizeof d);
        d.version = CPX_CASEINDEX_VERSION;
        if ((ret = fn(ctx, &d)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "caseindex: scan");
    return ret;
}

int64_t cpx_caseindex_dl_next(cpx_caseindex_t *self, MDB_txn *txn)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, self->dl, &cur))
        return INT64_MAX;
    MDB_val k, v;
    int64_t next = INT64_MAX;
    if (!mdb_cursor_get(cur, &k, &v, MDB_FIRST) && k.mv_size == DL_LEN)
        next = (int64_t)cpx_be64_get(k.mv_data);
    mdb_cursor_close(cur);
    return next;
}

/* ---- benefits and parents ------------------------------------------------------- */

int cpx_caseindex_get_benefit(cpx_caseindex_t *self, MDB_txn *txn,
                              const uint8_t subject[CPX_SHA256_LEN], uint8_t action,
                              cpx_benefit_t *out)
{
    uint8_t k[CPX_SHA256_LEN + 1];
    memcpy(k, subject, CPX_SHA256_LEN);
    k[CPX_SHA256_LEN] = action;
    return get_rec(txn, self->ben, k, sizeof k, out, sizeof *out);
}

int cpx_caseindex_put_benefit(cpx_caseindex_t *self, MDB_txn *txn,
                              const uint8_t subject[CPX_SHA256_LEN], const cpx_benefit_t *b)
{
    uint8_t k[CPX_SHA256_LEN + 1];
    memcpy(k, subject, CPX_SHA256_LEN);
    k[CPX_SHA256_LEN] = b->action;
    return put_rec(txn, self->ben, k, sizeof k, b, sizeof *b);
}

int cpx_caseindex_add_parent(cpx_caseindex_t *self, MDB_txn *txn,
                             const uint8_t parent[CPX_SHA256_LEN], const char *case_id,
                             uint8_t role)
{
    uint8_t k[CPX_SHA256_LEN + CPX_MAX_CASE_ID];
    size_t n = strlen(case_id) < CPX_MAX_CASE_ID ? strlen(case_id) : CPX_MAX_CASE_ID;
    memcpy(k, parent, CPX_SHA256_LEN);
    memcpy(k + CPX_SHA256_LEN, case_id, n);
    MDB_val key = {CPX_SHA256_LEN + n, k}, v = {1, &role};
    int rc = mdb_put(txn, self->parent, &key, &v, 0);
    return rc ? cpx_store_err(rc, "caseindex: put parent") : CPX_OK;
}

int cpx_caseindex_each_parent_case(cpx_caseindex_t *self, MDB_txn *txn,
                                   const uint8_t parent[CPX_SHA256_LEN],
                                   int (*fn)(void *ctx, const char *case_id, uint8_t role),
                                   void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->parent, &cur);
    if (rc)
        return cpx_store_err(rc, "caseindex: cursor");
    MDB_val k = {CPX_SHA256_LEN, (void *)parent}, v;
    int ret = CPX_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= CPX_SHA256_LEN || memcmp(k.mv_data, parent, CPX_SHA256_LEN))
            break;
        char id[CPX_MAX_CASE_ID + 1];
        size_t n = k.mv_size - CPX_SHA256_LEN;
        memcpy(id, (uint8_t *)k.mv_data + CPX_SHA256_LEN, n);
        id[n] = '\0';
        if ((ret = fn(ctx, id, v.mv_size ? *(uint8_t *)v.mv_data : 0)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "caseindex: scan");
    return ret;
}

/* ---- state machines -------------------------------------------------------------- */

static int deny(const char **rule, const char *name)
{
    if (rule)
        *rule = name;
    return CPX_ERR_STATE;
}

int cpx_case_next(int s, int ev, uint32_t open_referrals, int followup_done, int *next,
                  const char **rule)
{
    *next = s;
    if (rule)
        *rule = NULL;
    if (s == CPX_CASE_CLOSED) {
        /* Only a new report about the minor reopens a closed case; any other step on it
         * means the sender works from a stale view. */
        if (ev == CPX_CEV_REPORT) {
            *next = CPX_CASE_REOPENED;
            return CPX_OK;
        }
        return deny(rule, "case_closed");
    }
    switch (ev) {
    case CPX_CEV_REPORT:
        return CPX_OK;
    case CPX_CEV_ASSESSMENT:
        if (s == CPX_CASE_OPEN || s == CPX_CASE_REOPENED)
            *next = CPX_CASE_ASSESSED;
        return CPX_OK;  /* a reassessment later keeps the state */
    case CPX_CEV_REFERRAL:
    case CPX_CEV_REFERRAL_ACCEPTED:
        *next = CPX_CASE_IN_SERVICE;
        return CPX_OK;
    case CPX_CEV_FOLLOW_UP:
        *next = CPX_CASE_FOLLOW_UP;
        return CPX_OK;
    case CPX_CEV_CLOSE:
        if (open_referrals)
            return deny(rule, "close_with_open_referral");
        if (!followup_done || s != CPX_CASE_FOLLOW_UP)
            return deny(rule, "close_without_follow_up");
        *next = CPX_CASE_CLOSED;
        return CPX_OK;
    case CPX_CEV_ALL_REFERRALS_ENDED:
    case CPX_CEV_REFERRAL_REVOKED:
        return CPX_OK;  /* the state stays; closing later needs no open referral */
    default:
        return CPX_ERR_ARG;
    }
}

int cpx_ref_open(int s)
{
    return s == CPX_REF_SENT || s == CPX_REF_ACCEPTED || s == CPX_REF_IN_PROGRESS ||
           s == CPX_REF_OVERDUE;
}

int cpx_ref_next(int s, int st, int *next, const char **rule)
{
    *next = s;
    if (rule)
        *rule = NULL;
    if (s == CPX_REF_REVOKED)  /* the referrer withdrew it: nothing left to answer */
        return deny(rule, "referral_revoked");
    if (!cpx_ref_open(s))
        return deny(rule, "referral_closed");
    switch (st) {
    case CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED:
        if (s == CPX_REF_IN_PROGRESS)
            return deny(rule, "accept_after_start");
        *next = CPX_REF_ACCEPTED;
        return CPX_OK;
    case CPX__V1__DISPOSITION_STATUS__DISPOSITION_IN_PROGRESS:
        *next = CPX_REF_IN_PROGRESS;
        return CPX_OK;
    case CPX__V1__DISPOSITION_STATUS__DISPOSITION_DONE:
        *next = CPX_REF_DONE;
        return CPX_OK;
    case CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED:
        if (s == CPX_REF_IN_PROGRESS)
            return deny(rule, "decline_after_start");
        *next = CPX_REF_DECLINED;
        return CPX_OK;
    default:
        return deny(rule, "disposition_status");
    }
}

int cpx_ref_revoke(int s, int *next, const char **rule)
{
    *next = s;
    if (rule)
        *rule = NULL;
    if (!cpx_ref_open(s))
        return deny(rule, "referral_closed");
    *next = CPX_REF_REVOKED;
    return CPX_OK;
}

static const char *const case_names[] = {"NONE", "OPEN", "ASSESSED", "IN_SERVICE",
                                         "FOLLOW_UP", "CLOSED", "REOPENED"};
static const char *const ref_names[] = {"NONE", "SENT", "ACCEPTED", "IN_PROGRESS",
                                        "DONE", "DECLINED", "REVOKED", "OVERDUE"};

const char *cpx_case_state_name(int s)
{
    return s >= 0 && s <= CPX_CASE_REOPENED ? case_names[s] : "?";
}

const char *cpx_ref_state_name(int s)
{
    return s >= 0 && s <= CPX_REF_OVERDUE ? ref_names[s] : "?";
}

int cpx_case_state_parse(const char *name)
{
    for (int i = 1; i <= CPX_CASE_REOPENED; i++)
        if (!strcasecmp(name, case_names[i]))
            return i;
    return -1;
}
