/* Case index: state machines (every allowed and refused transition named in
 * docs/cases.md), minor keys (HMAC known answer, name normalisation, wrong key),
 * a minor's open case (the table against one rebuilt from the committed records and
 * a reader's scan, across aborted and committed cycles, closing, reopening, sealing
 * and a forced prefix collision), personal fields at rest (nothing in clear, wrong key / wrong record / flipped bit
 * refused), deadlines in due order with clear and move, benefits and parents, and
 * the view profiles (withheld fields verify; bad profile files refused with a
 * position), and the personal-fields record format against known bytes. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/caseindex.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/err.h"
#include "cpx/minortab.h"
#include "cpx/store.h"
#include "cpx/synth.h"
#include "cpx/views.h"

/* Test hook exported by lib/crypto.c (not part of the public API). */
int cpx_aead_seal_with_nonce_for_test(const uint8_t key[CPX_AEAD_KEY_LEN],
                                      const uint8_t nonce[CPX_AEAD_NONCE_LEN], const void *aad,
                                      size_t aad_len, const void *pt, size_t pt_len,
                                      uint8_t *out);

static char tmpdir[64];
static MDB_env *env;
static const uint8_t K1[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                               17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t K2[32] = {32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                               16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/cpx_ci_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return cpx_store_open(tmpdir, 64u << 20, 0, &env) == CPX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mdb_env_close(env);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_case_state_machine(void **state)
{
    (void)state;
    int next;
    const char *rule;
    assert_int_equal(cpx_case_next(CPX_CASE_OPEN, CPX_CEV_ASSESSMENT, 0, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_ASSESSED);
    assert_int_equal(cpx_case_next(CPX_CASE_ASSESSED, CPX_CEV_REFERRAL, 0, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_IN_SERVICE);
    assert_int_equal(cpx_case_next(CPX_CASE_IN_SERVICE, CPX_CEV_ASSESSMENT, 1, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_IN_SERVICE);  /* reassessment keeps the state */
    assert_int_equal(cpx_case_next(CPX_CASE_IN_SERVICE, CPX_CEV_FOLLOW_UP, 1, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_FOLLOW_UP);
    /* no close while a referral is open; none before a follow-up; none from IN_SERVICE */
    assert_int_equal(cpx_case_next(CPX_CASE_FOLLOW_UP, CPX_CEV_CLOSE, 1, 1, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "close_with_open_referral");
    assert_int_equal(cpx_case_next(CPX_CASE_FOLLOW_UP, CPX_CEV_CLOSE, 0, 0, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "close_without_follow_up");
    assert_int_equal(cpx_case_next(CPX_CASE_IN_SERVICE, CPX_CEV_CLOSE, 0, 1, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "close_without_follow_up");
    assert_int_equal(cpx_case_next(CPX_CASE_FOLLOW_UP, CPX_CEV_CLOSE, 0, 1, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_CLOSED);
    /* closed: only a report reopens */
    assert_int_equal(cpx_case_next(CPX_CASE_CLOSED, CPX_CEV_ASSESSMENT, 0, 1, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "case_closed");
    assert_int_equal(cpx_case_next(CPX_CASE_CLOSED, CPX_CEV_REFERRAL, 0, 1, &next, &rule), CPX_ERR_STATE);
    assert_int_equal(cpx_case_next(CPX_CASE_CLOSED, CPX_CEV_REPORT, 0, 1, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_REOPENED);
    assert_int_equal(cpx_case_next(CPX_CASE_REOPENED, CPX_CEV_ASSESSMENT, 0, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_ASSESSED);
    assert_int_equal(cpx_case_next(CPX_CASE_OPEN, 99, 0, 0, &next, &rule), CPX_ERR_ARG);
    assert_string_equal(cpx_case_state_name(CPX_CASE_IN_SERVICE), "IN_SERVICE");
    assert_int_equal(cpx_case_state_parse("follow_up"), CPX_CASE_FOLLOW_UP);
    assert_int_equal(cpx_case_state_parse("DONE"), -1);
}

static void test_referral_state_machine(void **state)
{
    (void)state;
    int next;
    const char *rule;
    assert_int_equal(cpx_ref_next(CPX_REF_SENT, CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_REF_ACCEPTED);
    assert_int_equal(cpx_ref_next(CPX_REF_ACCEPTED, CPX__V1__DISPOSITION_STATUS__DISPOSITION_IN_PROGRESS, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_REF_IN_PROGRESS);
    assert_int_equal(cpx_ref_next(CPX_REF_IN_PROGRESS, CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "decline_after_start");
    assert_int_equal(cpx_ref_next(CPX_REF_IN_PROGRESS, CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "accept_after_start");
    assert_int_equal(cpx_ref_next(CPX_REF_OVERDUE, CPX__V1__DISPOSITION_STATUS__DISPOSITION_DONE, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_REF_DONE);
    for (int s = CPX_REF_DONE; s <= CPX_REF_REVOKED; s++) {
        assert_int_equal(cpx_ref_next(s, CPX__V1__DISPOSITION_STATUS__DISPOSITION_IN_PROGRESS, &next, &rule), CPX_ERR_STATE);
        assert_string_equal(rule, s == CPX_REF_REVOKED ? "referral_revoked" : "referral_closed");
        assert_false(cpx_ref_open(s));
    }
    assert_true(cpx_ref_open(CPX_REF_OVERDUE));
    assert_int_equal(cpx_ref_next(CPX_REF_SENT, 0, &next, &rule), CPX_ERR_STATE);
}

static void test_referral_revocation(void **state)
{
    (void)state;
    int next;
    const char *rule;
    /* every open state can be revoked ... */
    const int open[] = {CPX_REF_SENT, CPX_REF_ACCEPTED, CPX_REF_IN_PROGRESS, CPX_REF_OVERDUE};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        rule = "x";
        assert_int_equal(cpx_ref_revoke(open[i], &next, &rule), CPX_OK);
        assert_int_equal(next, CPX_REF_REVOKED);
        assert_null(rule);
    }
    /* ... an ended one cannot, and keeps its state */
    const int ended[] = {CPX_REF_DONE, CPX_REF_DECLINED, CPX_REF_REVOKED};
    for (size_t i = 0; i < sizeof ended / sizeof ended[0]; i++) {
        assert_int_equal(cpx_ref_revoke(ended[i], &next, &rule), CPX_ERR_STATE);
        assert_int_equal(next, ended[i]);
        assert_string_equal(rule, "referral_closed");
    }
    /* every answer to a revoked referral is refused, naming the rule */
    for (int st = CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED;
         st <= CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED; st++) {
        assert_int_equal(cpx_ref_next(CPX_REF_REVOKED, st, &next, &rule), CPX_ERR_STATE);
        assert_string_equal(rule, "referral_revoked");
        assert_int_equal(next, CPX_REF_REVOKED);
    }
    /* the case: a revocation keeps its state, is refused on a closed case, and a case
     * whose only referrals were revoked (none open) can close after a follow-up */
    assert_int_equal(cpx_case_next(CPX_CASE_IN_SERVICE, CPX_CEV_REFERRAL_REVOKED, 1, 0, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_IN_SERVICE);
    assert_int_equal(cpx_case_next(CPX_CASE_CLOSED, CPX_CEV_REFERRAL_REVOKED, 0, 1, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "case_closed");
    assert_int_equal(cpx_case_next(CPX_CASE_FOLLOW_UP, CPX_CEV_CLOSE, 1, 1, &next, &rule), CPX_ERR_STATE);
    assert_string_equal(rule, "close_with_open_referral");
    assert_int_equal(cpx_case_next(CPX_CASE_FOLLOW_UP, CPX_CEV_CLOSE, 0, 1, &next, &rule), CPX_OK);
    assert_int_equal(next, CPX_CASE_CLOSED);
    assert_string_equal(cpx_ref_state_name(CPX_REF_REVOKED), "REVOKED");
}

static cpx_caseindex_t *open_idx(const uint8_t *ik, const uint8_t *rk)
{
    cpx_caseindex_t *idx = cpx_caseindex_open(env, ik, rk);
    assert_non_null(idx);
    return idx;
}

static void test_minor_keys(void **state)
{
    (void)state;
    cpx_caseindex_t *a = open_idx(K1, K1), *b = open_idx(K2, K2);
    Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
    Cpx__V1__Date bd = CPX__V1__DATE__INIT;
    bd.year = 2012, bd.month = 3, bd.day = 4;
    m.id_number = "32028120120304021x";
    m.name = "Zhang Xiao-ming";
    m.birth_date = &bd;
    m.town = "TOWN_HUASHI";
    uint8_t k1[33], k2[33], k3[33];
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 0, k1), CPX_OK);
    assert_int_equal(k1[0], 'I');
    /* known answer: HMAC-SHA-256(K1, "cpx.ci.id" 0 "32028120120304021X" 0) (check digit upper-cased) */
    uint8_t want[32];
    const char msg[] = "cpx.ci.id\0" "32028120120304021X";
    cpx_hmac_sha256(K1, 32, msg, sizeof msg, want);
    assert_memory_equal(k1 + 1, want, 32);
    assert_int_equal(cpx_caseindex_minor_key(b, &m, 0, k2), CPX_OK);
    assert_memory_not_equal(k1 + 1, k2 + 1, 32);  /* another key: another hash */
    /* the name rule ignores case, spaces and punctuation; birth date and town count */
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 1, k2), CPX_OK);
    assert_int_equal(k2[0], 'N');
    m.name = "ZHANG XIAOMING";
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 1, k3), CPX_OK);
    assert_memory_equal(k2, k3, 33);
    m.town = "TOWN_GUSHAN";
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 1, k3), CPX_OK);
    assert_memory_not_equal(k2, k3, 33);
    /* a worker (the prepare stage's threads) computes the same keys as the index */
    cpx_caseindex_worker_t *w = cpx_caseindex_worker_new();
    assert_non_null(w);
    uint8_t kw[33];
    assert_int_equal(cpx_caseindex_minor_key_w(a, w, &m, 1, kw), CPX_OK);
    assert_memory_equal(kw, k3, 33);
    assert_int_equal(cpx_caseindex_minor_key_w(a, w, &m, 0, kw), CPX_OK);
    assert_memory_equal(kw, k1, 33);
    assert_int_equal(cpx_caseindex_minor_key_w(b, w, &m, 0, kw), CPX_OK);
    assert_memory_not_equal(kw, k1, 33);  /* the index's key, not the worker's */
    cpx_caseindex_worker_destroy(&w);
    assert_null(w);
    m.birth_date = NULL;
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 1, k3), CPX_ERR_NOT_FOUND);
    m.id_number = "";
    assert_int_equal(cpx_caseindex_minor_key(a, &m, 0, k3), CPX_ERR_NOT_FOUND);

    MDB_txn *txn;
    char id[CPX_MAX_CASE_ID + 1];
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_caseindex_find_minor(a, txn, k1, id), CPX_ERR_NOT_FOUND);
    /* the case record holding the key is what a lookup finds (here without a table) */
    cpx_case_rec_t cr = {.version = CPX_CASEINDEX_VERSION, .state = CPX_CASE_OPEN,
                        .flags = CPX_CASE_F_HAS_ID};
    strcpy(cr.id, "JY-2026-000001");
    memcpy(cr.subject, k1 + 1, 32);
    assert_int_equal(cpx_caseindex_set_minor(a, txn, k1, cr.id), CPX_OK);
    assert_int_equal(cpx_caseindex_put(a, txn, &cr), CPX_OK);
    assert_int_equal(cpx_caseindex_find_minor(a, txn, k1, id), CPX_OK);
    assert_string_equal(id, "JY-2026-000001");
    cr.state = CPX_CASE_CLOSED;
    assert_int_equal(cpx_caseindex_del_minor(a, txn, k1, cr.id), CPX_OK);
    assert_int_equal(cpx_caseindex_put(a, txn, &cr), CPX_OK);
    assert_int_equal(cpx_caseindex_find_minor(a, txn, k1, id), CPX_ERR_NOT_FOUND);
    mdb_txn_abort(txn);
    /* a reader without the index key cannot look minors up */
    cpx_caseindex_t *r = open_idx(NULL, NULL);
    assert_int_equal(cpx_caseindex_minor_key(r, &m, 0, k3), CPX_ERR_STATE);
    cpx_caseindex_destroy(&r);
    cpx_caseindex_destroy(&a);
    cpx_caseindex_destroy(&b);
    cpx_caseindex_destroy(&b);  /* harmless */
    assert_null(b);
}

static void test_pii_at_rest(void **state)
{
    (void)state;
    cpx_caseindex_t *a = open_idx(K1, K1), *wrong = open_idx(K1, K2), *none = open_idx(K1, NULL);
    Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
    m.id_number = "320281201203040210";
    m.name = "SecretName";
    m.current_address = "SecretStreet 1";
    m.town = "TOWN_HUASHI";
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_caseindex_put_pii(a, txn, "JY-2026-000007", &m), CPX_OK);
    assert_int_equal(cpx_caseindex_put_pii(none, txn, "JY-2026-000008", &m), CPX_ERR_STATE);
    /* encoded ahead (the prepare stage), sealed and stored later: the same record */
    uint8_t pt[4096];
    size_t ptn;
    assert_int_equal(cpx_caseindex_pii_encode(&m, pt, sizeof pt, &ptn), CPX_OK);
    assert_null(memmem(pt, ptn, "320281201203040210", 18));  /* no ID number in it */
    assert_int_equal(cpx_caseindex_put_pii_encoded(a, txn, "JY-2026-000009", pt, ptn), CPX_OK);
    assert_int_equal(cpx_caseindex_put_pii_encoded(none, txn, "JY-2026-000009", pt, ptn), CPX_ERR_STATE);
    assert_int_equal(cpx_caseindex_pii_encode(&m, pt, 4, &ptn), CPX_ERR_TOO_LARGE);
    assert_int_equal(mdb_txn_commit(txn), 0);

    /* nothing in clear in the file: not the name, not the address, not the ID number */
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", tmpdir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_null(memmem(buf, n, "SecretName", 10));
    assert_null(memmem(buf, n, "SecretStreet", 12));
    assert_null(memmem(buf, n, "320281201203040210", 18));

    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    Cpx__V1__MinorIdentity *out = NULL;
    assert_int_equal(cpx_caseindex_get_pii(a, txn, "JY-2026-000007", &out), CPX_OK);
    assert_string_equal(out->name, "SecretName");
    assert_string_equal(out->id_number, "");  /* the ID number is kept only as a hash */
    cpx_msg_free(out);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, "JY-2026-000009", &out), CPX_OK);
    assert_string_equal(out->name, "SecretName");
    assert_string_equal(out->current_address, "SecretStreet 1");
    assert_string_equal(out->id_number, "");
    cpx_msg_free(out);
    assert_int_equal(cpx_caseindex_get_pii(wrong, txn, "JY-2026-000007", &out), CPX_ERR_TAMPERED);
    assert_int_equal(cpx_caseindex_get_pii(none, txn, "JY-2026-000007", &out), CPX_ERR_STATE);
    /* the record id is bound: moved under another case id it does not open */
    MDB_dbi pii;
    assert_int_equal(mdb_dbi_open(txn, "ci.pii", 0, &pii), 0);
    MDB_val k = {14, "JY-2026-000007"}, v;
    assert_int_equal(mdb_get(txn, pii, &k, &v), 0);
    uint8_t copy[1024];
    size_t len = v.mv_size;
    memcpy(copy, v.mv_data, len);
    MDB_val k2 = {14, "JY-2026-000009"}, v2 = {len, copy};
    assert_int_equal(mdb_put(txn, pii, &k2, &v2, 0), 0);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, "JY-2026-000009", &out), CPX_ERR_TAMPERED);
    copy[len / 2] ^= 1;  /* a flipped bit */
    v2 = (MDB_val){len, copy};
    assert_int_equal(mdb_put(txn, pii, &k, &v2, 0), 0);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, "JY-2026-000007", &out), CPX_ERR_TAMPERED);
    mdb_txn_abort(txn);
    cpx_caseindex_destroy(&a);
    cpx_caseindex_destroy(&wrong);
    cpx_caseindex_destroy(&none);
}

/* The personal-fields record format, pinned: nonce = 8 random bytes per open | BE32
 * counter from 1, then AES-256-GCM under the records key with AAD "cpx.ci.pii" 00 |
 * case id. A record of known bytes (computed with an independent AES-GCM, Python's
 * cryptography: key 00..1f, prefix f0e1d2c3b4a59687, counter 1) must open, so stores
 * written earlier stay readable; records written now must have that layout. */
static const uint8_t PII_KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const char PII_KAT_CASE[] = "JY-2026-000042";
static const char PII_KAT_AAD[] = "cpx.ci.pii\0JY-2026-000042";
/* MinorIdentity{name: "KatName", town: "TOWN_HUASHI"} */
static const char PII_KAT_PT[] = "\x1a\x07KatName\x42\x0bTOWN_HUASHI";
#define PII_KAT_PT_LEN (sizeof PII_KAT_PT - 1)
static const char PII_KAT_RECORD[] = "f0e1d2c3b4a596870000000108a7f68d3b4537758b35dfb502803b8e"
                                     "887f19fe9b3e14ada44940ec1a7779f473a90d2c6de9";

static void put_raw_pii(MDB_txn *txn, const char *case_id, const uint8_t *rec, size_t len)
{
    MDB_dbi pii;
    assert_int_equal(mdb_dbi_open(txn, "ci.pii", 0, &pii), 0);
    MDB_val k = {strlen(case_id), (void *)case_id}, v = {len, (void *)rec};
    assert_int_equal(mdb_put(txn, pii, &k, &v, 0), 0);
}

static void get_raw_pii(MDB_txn *txn, const char *case_id, uint8_t *rec, size_t *len)
{
    MDB_dbi pii;
    assert_int_equal(mdb_dbi_open(txn, "ci.pii", 0, &pii), 0);
    MDB_val k = {strlen(case_id), (void *)case_id}, v;
    assert_int_equal(mdb_get(txn, pii, &k, &v), 0);
    assert_true(v.mv_size <= *len);
    memcpy(rec, v.mv_data, v.mv_size);
    *len = v.mv_size;
}

static void test_pii_record_format(void **state)
{
    (void)state;
    const size_t ptn = PII_KAT_PT_LEN, aadn = sizeof PII_KAT_AAD - 1;
    uint8_t rec[PII_KAT_PT_LEN + CPX_AEAD_OVERHEAD];
    assert_int_equal(cpx_unhex(PII_KAT_RECORD, rec, sizeof rec), CPX_OK);
    /* handles first: opening one begins a transaction of its own */
    cpx_caseindex_t *a = open_idx(K1, PII_KEY), *b = open_idx(K1, PII_KEY),
                    *c = open_idx(K1, PII_KEY);
    MDB_txn *txn;
    Cpx__V1__MinorIdentity *out = NULL;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);

    /* the known record opens */
    put_raw_pii(txn, PII_KAT_CASE, rec, sizeof rec);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, PII_KAT_CASE, &out), CPX_OK);
    assert_string_equal(out->name, "KatName");
    assert_string_equal(out->town, "TOWN_HUASHI");
    cpx_msg_free(out);
    out = NULL;
    /* refused: a flipped tag byte; the record under another case id (wrong AAD) */
    rec[sizeof rec - 1] ^= 0x01;
    put_raw_pii(txn, PII_KAT_CASE, rec, sizeof rec);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, PII_KAT_CASE, &out), CPX_ERR_TAMPERED);
    assert_null(out);
    rec[sizeof rec - 1] ^= 0x01;
    put_raw_pii(txn, "JY-2026-000043", rec, sizeof rec);
    assert_int_equal(cpx_caseindex_get_pii(a, txn, "JY-2026-000043", &out), CPX_ERR_TAMPERED);
    assert_null(out);

    /* written now: prefix | BE32(1), then BE32(2) on the same handle, and exactly the
     * AES-256-GCM of that nonce, the documented AAD and the plaintext */
    uint8_t got[2][PII_KAT_PT_LEN + CPX_AEAD_OVERHEAD], want[PII_KAT_PT_LEN + CPX_AEAD_OVERHEAD];
    const char *ids[2] = {"JY-2026-000044", "JY-2026-000045"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cpx_caseindex_put_pii_encoded(b, txn, ids[i], (const uint8_t *)PII_KAT_PT,
                                                       ptn), CPX_OK);
        size_t n = sizeof got[i];
        get_raw_pii(txn, ids[i], got[i], &n);
        assert_int_equal(n, sizeof got[i]);
        const uint8_t counter[4] = {0, 0, 0, (uint8_t)(i + 1)};
        assert_memory_equal(got[i] + 8, counter, 4);
        char aad[32];
        int al = snprintf(aad, sizeof aad, "cpx.ci.pii%c%s", 0, ids[i]);
        assert_int_equal(al, (int)aadn);
        assert_int_equal(cpx_aead_seal_with_nonce_for_test(PII_KEY, got[i], aad, (size_t)al,
                                                           PII_KAT_PT, ptn, want), CPX_OK);
        assert_memory_equal(got[i], want, sizeof want);
    }
    assert_memory_equal(got[0], got[1], 8);  /* one prefix per open */
    assert_int_equal(cpx_caseindex_put_pii_encoded(c, txn, ids[0], (const uint8_t *)PII_KAT_PT,
                                                   ptn), CPX_OK);
    size_t n = sizeof want;
    get_raw_pii(txn, ids[0], want, &n);
    assert_memory_equal(want + 8, ((const uint8_t[4]){0, 0, 0, 1}), 4);  /* another open counts afresh */
    assert_memory_not_equal(want, got[0], 8);                   /* under a new prefix */
    mdb_txn_abort(txn);
    cpx_caseindex_destroy(&a);
    cpx_caseindex_destroy(&b);
    cpx_caseindex_destroy(&c);
}

typedef struct seen {
    int64_t due[16];
    uint8_t kind[16];
    size_t n;
} seen_t;

static int dl_cb(void *ctx, const cpx_deadline_t *d)
{
    seen_t *s = ctx;
    s->due[s->n] = d->due_ms;
    s->kind[s->n++] = d->kind;
    return 0;
}

static int count_case(void *ctx, const cpx_case_rec_t *r)
{
    (void)r;
    (*(size_t *)ctx)++;
    return 0;
}

static void test_deadlines_and_records(void **state)
{
    (void)state;
    cpx_caseindex_t *a = open_idx(K1, K1);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_true(cpx_caseindex_dl_next(a, txn) == INT64_MAX);
    cpx_deadline_t d = {.version = CPX_CASEINDEX_VERSION, .kind = CPX_DL_ACKNOWLEDGE};
    memset(d.item, 7, 16);
    strcpy(d.dept, "POLICE");
    strcpy(d.case_id, "JY-2026-000001");
    d.due_ms = 3000;
    assert_int_equal(cpx_caseindex_dl_set(a, txn, &d), CPX_OK);
    d.kind = CPX_DL_ACCEPT;
    d.due_ms = 1000;
    assert_int_equal(cpx_caseindex_dl_set(a, txn, &d), CPX_OK);
    strcpy(d.dept, "HEALTH");
    d.due_ms = 2000;
    assert_int_equal(cpx_caseindex_dl_set(a, txn, &d), CPX_OK);
    assert_true(cpx_caseindex_dl_next(a, txn) == 1000);
    seen_t s = {0};
    assert_int_equal(cpx_caseindex_dl_each(a, txn, 2500, dl_cb, &s), CPX_OK);
    assert_int_equal(s.n, 2);  /* due order, only the due ones */
    assert_true(s.due[0] == 1000 && s.due[1] == 2000);
    /* moving one keeps one record (escalation re-arms it) */
    d.due_ms = 5000;
    d.level = 1;
    assert_int_equal(cpx_caseindex_dl_set(a, txn, &d), CPX_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(cpx_caseindex_dl_each(a, txn, INT64_MAX, dl_cb, &s), CPX_OK);
    assert_int_equal(s.n, 3);
    assert_true(s.due[2] == 5000);
    /* clearing: exact (kind, item, dept) only; clearing nothing is fine */
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACCEPT, d.case_id, d.item, 16, "POLICE"), CPX_OK);
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACCEPT, d.case_id, d.item, 16, "POLICE"), CPX_OK);
    memset(&s, 0, sizeof s);
    cpx_caseindex_dl_each(a, txn, INT64_MAX, dl_cb, &s);
    assert_int_equal(s.n, 2);
    assert_true(s.kind[0] == CPX_DL_ACKNOWLEDGE && s.due[1] == 5000);

    /* acknowledgement sets: one record per message, one deadline per pending department */
    const char *depts[3] = {"POLICE", "CIVIL_AFFAIRS", "TOWN_HUASHI"};
    const int64_t dues[3] = {300, 3600, 86400};
    uint8_t item[16];
    memset(item, 0x42, sizeof item);
    assert_int_equal(cpx_caseindex_ack_add(a, txn, "JY-2026-000002", item, 16, depts, dues, 3), CPX_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(cpx_caseindex_dl_each(a, txn, 4000, dl_cb, &s), CPX_OK);
    /* the set (at its earliest due) gives POLICE 300 and CIVIL_AFFAIRS 3600, not the town
     * yet; then the older single ACK at 3000 */
    assert_int_equal(s.n, 3);
    assert_true(s.due[0] == 300 && s.kind[0] == CPX_DL_ACKNOWLEDGE && s.due[1] == 3600 && s.due[2] == 3000);
    assert_true(cpx_caseindex_dl_next(a, txn) == 300);
    /* police acknowledges: the set moves to its next due */
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACKNOWLEDGE, "JY-2026-000002", item, 16, "POLICE"), CPX_OK);
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACKNOWLEDGE, "JY-2026-000002", item, 16, "POLICE"), CPX_OK);
    assert_true(cpx_caseindex_dl_next(a, txn) == 3000);
    /* escalating the lead moves its due (level 1) */
    cpx_deadline_t e = {.version = CPX_CASEINDEX_VERSION, .kind = CPX_DL_ACKNOWLEDGE, .level = 1, .due_ms = 90000};
    memcpy(e.item, item, 16);
    strcpy(e.dept, "CIVIL_AFFAIRS");
    strcpy(e.case_id, "JY-2026-000002");
    assert_int_equal(cpx_caseindex_dl_set(a, txn, &e), CPX_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(cpx_caseindex_dl_each(a, txn, 100000, dl_cb, &s), CPX_OK);
    assert_int_equal(s.n, 4);  /* ACK 3000, ACCEPT 5000, then the set at 86400: town, lead 90000 */
    assert_true(s.due[2] == 86400 && s.due[3] == 90000);
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACKNOWLEDGE, "JY-2026-000002", item, 16, "TOWN_HUASHI"), CPX_OK);
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACKNOWLEDGE, "JY-2026-000002", item, 16, "CIVIL_AFFAIRS"), CPX_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(cpx_caseindex_dl_each(a, txn, INT64_MAX, dl_cb, &s), CPX_OK);
    assert_int_equal(s.n, 2);  /* the set is gone */
    /* another case's set with the same item is another set */
    assert_int_equal(cpx_caseindex_dl_clear(a, txn, CPX_DL_ACKNOWLEDGE, "JY-2026-000009", item, 16, "POLICE"), CPX_OK);

    /* case, referral, benefit, parent records round-trip; another format is refused */
    cpx_case_rec_t r = {.version = CPX_CASEINDEX_VERSION, .state = CPX_CASE_OPEN, .n_reports = 2};
    strcpy(r.id, "JY-2026-000001");
    strcpy(r.town, "TOWN_HUASHI");
    assert_int_equal(cpx_caseindex_put(a, txn, &r), CPX_OK);
    cpx_case_rec_t g;
    assert_int_equal(cpx_caseindex_get(a, txn, "JY-2026-000001", &g), CPX_OK);
    assert_int_equal(g.n_reports, 2);
    assert_string_equal(g.town, "TOWN_HUASHI");
    assert_int_equal(cpx_caseindex_get(a, txn, "JY-2026-000002", &g), CPX_ERR_NOT_FOUND);
    MDB_dbi cases;
    assert_int_equal(mdb_dbi_open(txn, "ci.case", 0, &cases), 0);
    MDB_val k = {14, "JY-2026-000003"}, v = {5, "short"};
    assert_int_equal(mdb_put(txn, cases, &k, &v, 0), 0);
    assert_int_equal(cpx_caseindex_get(a, txn, "JY-2026-000003", &g), CPX_ERR_TAMPERED);

    /* seed departments are bits of the record; other codes records of their own */
    assert_int_equal(cpx_caseindex_add_part(a, txn, &r, "POLICE"), CPX_OK);
    assert_int_equal(cpx_caseindex_add_part(a, txn, &r, "POLICE"), CPX_OK);
    assert_int_equal(cpx_caseindex_add_part(a, txn, &r, "TOWN_NEWSTREET"), CPX_OK);
    assert_int_equal(cpx_caseindex_add_part(a, txn, &r, "TOWN_NEWSTREET"), CPX_OK);
    assert_true(r.parts == (1ull << 4));
    assert_int_equal(cpx_caseindex_took_part(a, txn, &r, "POLICE"), 1);
    assert_int_equal(cpx_caseindex_took_part(a, txn, &r, "TOWN_NEWSTREET"), 1);
    assert_int_equal(cpx_caseindex_took_part(a, txn, &r, "POLICE_X"), 0);
    assert_int_equal(cpx_caseindex_took_part(a, txn, &r, "HEALTH"), 0);

    /* sealing: gone from every ordinary view and from the open-case keys */
    uint8_t mk[33] = {'I'};
    memset(mk + 1, 5, 32);
    cpx_case_rec_t sr = {.version = CPX_CASEINDEX_VERSION, .state = CPX_CASE_OPEN, .flags = CPX_CASE_F_HAS_ID};
    strcpy(sr.id, "JY-2026-000005");
    memset(sr.subject, 5, 32);
    assert_int_equal(cpx_caseindex_put(a, txn, &sr), CPX_OK);
    assert_int_equal(cpx_caseindex_set_minor(a, txn, mk, sr.id), CPX_OK);
    assert_int_equal(cpx_caseindex_seal(a, txn, sr.id), CPX_OK);
    assert_int_equal(cpx_caseindex_seal(a, txn, sr.id), CPX_OK);
    assert_int_equal(cpx_caseindex_seal(a, txn, "JY-2026-000404"), CPX_ERR_NOT_FOUND);
    char open_id[CPX_MAX_CASE_ID + 1];
    assert_int_equal(cpx_caseindex_find_minor(a, txn, mk, open_id), CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_caseindex_get(a, txn, sr.id, &g), CPX_OK);
    assert_true(g.flags & CPX_CASE_F_SEALED);
    size_t n_cases = 0;
    assert_int_equal(cpx_caseindex_each_case(a, txn, count_case, &n_cases), CPX_OK);
    assert_int_equal(n_cases, 1);  /* JY-2026-000001 only (000003 is malformed, 000005 sealed) */

    uint8_t subj[32] = {9};
    cpx_benefit_t b = {.version = CPX_CASEINDEX_VERSION, .action = 1, .active = 1}, gb;
    strcpy(b.case_id, "JY-2026-000001");
    assert_int_equal(cpx_caseindex_get_benefit(a, txn, subj, 1, &gb), CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_caseindex_put_benefit(a, txn, subj, &b), CPX_OK);
    assert_int_equal(cpx_caseindex_get_benefit(a, txn, subj, 1, &gb), CPX_OK);
    assert_string_equal(gb.case_id, "JY-2026-000001");
    assert_int_equal(cpx_caseindex_get_benefit(a, txn, subj, 2, &gb), CPX_ERR_NOT_FOUND);
    mdb_txn_abort(txn);
    cpx_caseindex_destroy(&a);
}

static const char VIEWS[] =
    "version: 1\n"
    "profiles:\n"
    "  full: {withhold: {}}\n"
    "  town:\n"
    "    withhold:\n"
    "      discovery_report: [reporter, observation, health]\n"
    "departments:\n"
    "  CIVIL_AFFAIRS: full\n"
    "  TOWN_*: town\n"
    "  \"*\": town\n";

static void test_views(void **state)
{
    (void)state;
    char err[256];
    cpx_views_t *v = cpx_views_load_string(VIEWS, sizeof VIEWS - 1, "v.yaml", err, sizeof err);
    assert_non_null(v);
    assert_string_equal(cpx_views_profile(v, "CIVIL_AFFAIRS"), "full");
    assert_string_equal(cpx_views_profile(v, "TOWN_HUASHI"), "town");
    assert_string_equal(cpx_views_profile(v, "EDUCATION"), "town");
    assert_string_equal(cpx_views_profile(NULL, "EDUCATION"), "full");
    assert_int_equal(cpx_views_mask(v, "TOWN_HUASHI", CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT),
                     (1u << 1) | (1u << 5) | (1u << 8));
    assert_int_equal(cpx_views_mask(v, "TOWN_HUASHI", CPX__V1__ENVELOPE__BODY_REFERRAL), 0);

    /* a signed report, redacted for the town: verifies, names exactly what was withheld */
    cpx_key_t *key = cpx_key_generate();
    cpx_synth_t *sy = cpx_synth_new(42);
    assert_non_null(sy);
    cpx_envelope_t *e = cpx_synth_discovery(sy, 1700000000000);
    assert_non_null(e);
    if (!e->discovery_report->reporter) {  /* the town must have something to lose */
        e->discovery_report->reporter = malloc(sizeof *e->discovery_report->reporter);
        cpx__v1__reporter__init(e->discovery_report->reporter);
        e->discovery_report->reporter->name = strdup("Teacher");
    }
    assert_int_equal(cpx_envsign_sign(e, key), CPX_OK);
    uint8_t *bytes, *red;
    size_t len, rlen, n;
    uint32_t wh[CPX_MAX_BODY_FIELDS];
    const char *prof;
    assert_int_equal(cpx_encode(e, &bytes, &len), CPX_OK);
    assert_int_equal(cpx_views_apply(v, "TOWN_HUASHI", bytes, len, &red, &rlen, wh, &n, &prof), CPX_OK);
    assert_string_equal(prof, "town");
    assert_true(n >= 1);
    cpx_envelope_t *r = NULL;
    assert_int_equal(cpx_decode_envelope(red, rlen, &r), CPX_OK);
    assert_null(r->discovery_report->reporter);
    cpx_envsign_result_t res;
    assert_int_equal(cpx_envsign_verify(r, key, &res), CPX_OK);
    assert_int_equal(res.n_withheld, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(res.withheld[i], wh[i]);
    /* a tampered view fails: a shown field changed */
    r->discovery_report->channel = r->discovery_report->channel == 1 ? 2 : 1;
    assert_int_not_equal(cpx_envsign_verify(r, key, &res), CPX_OK);
    cpx_msg_free(r);
    free(red);
    /* the lead sees everything: bytes unchanged apart from re-encoding */
    assert_int_equal(cpx_views_apply(v, "CIVIL_AFFAIRS", bytes, len, &red, &rlen, wh, &n, &prof), CPX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rlen, len);
    free(red);
    free(bytes);
    cpx_msg_free(e);
    cpx_synth_destroy(&sy);
    cpx_key_destroy(&key);
    cpx_views_destroy(&v);
    cpx_views_destroy(&v);

    /* bad files are refused with file:line:col */
    static const struct { const char *yaml, *want; } bad[] = {
        {"version: 1\nprofiles:\n  p: {withhold: {discovery_report: [nosuch]}}\n", "v.yaml:3:"},
        {"version: 1\nprofiles:\n  p: {withhold: {nosuch_body: [reporter]}}\n", "unknown body kind"},
        {"version: 1\nprofiles: {p: {}}\ndepartments: {POLICE: q}\n", "unknown profile 'q'"},
        {"version: 1\nprofiles: {p: {}}\ndepartments: {police: p}\n", "not a department code"},
        {"profiles: {}\n", "version: required"},
        {"version: 2\n", "only 1"},
        {"version: 1\nprofiles: {p: {}, p: {}}\n", "defined twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(cpx_views_load_string(bad[i].yaml, strlen(bad[i].yaml), "v.yaml", err, sizeof err));
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].want);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/deploy/jiangyin/views.yaml", CPX_SOURCE_DIR);
    v = cpx_views_load(path, err, sizeof err);
    if (!v)
        fail_msg("shipped views.yaml: %s", err);
    assert_string_equal(cpx_views_profile(v, "POLICE"), "full");
    assert_string_equal(cpx_views_profile(v, "TOWN_ZHUTANG"), "town-office");
    assert_string_equal(cpx_views_profile(v, "HEALTH"), "health");
    assert_true(cpx_views_mask(v, "HEALTH", CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT) == (1u << 1));
    assert_true(cpx_views_mask(v, "YOUTH_LEAGUE", CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT) & (1u << 1));
    cpx_views_destroy(&v);
}


/* ---- a minor's open case: the table, its rollback and its rebuild ---------------- */

static void mkey(uint8_t k[33], char tag, uint8_t fill, uint8_t last)
{
    k[0] = (uint8_t)tag;
    memset(k + 1, fill, 32);
    k[32] = last;  /* differs past the table's 8-byte prefix: a forced prefix collision */
}

static void put_case(cpx_caseindex_t *a, MDB_txn *txn, const char *id, int state, int64_t opened,
                     const uint8_t *ik, const uint8_t *nk, int sealed)
{
    cpx_case_rec_t r = {.version = CPX_CASEINDEX_VERSION, .state = (uint8_t)state,
                        .opened_ms = opened};
    snprintf(r.id, sizeof r.id, "%s", id);
    if (ik) {
        r.flags |= CPX_CASE_F_HAS_ID;
        memcpy(r.subject, ik + 1, 32);
        assert_int_equal(cpx_caseindex_set_minor(a, txn, ik, id), CPX_OK);
    }
    if (nk) {
        r.flags |= CPX_CASE_F_NAME_KEY;
        memcpy(r.name_key, nk + 1, 32);
        assert_int_equal(cpx_caseindex_set_minor(a, txn, nk, id), CPX_OK);
    }
    if (sealed)
        r.flags |= CPX_CASE_F_SEALED;
    assert_int_equal(cpx_caseindex_put(a, txn, &r), CPX_OK);
}

static void close_case(cpx_caseindex_t *a, MDB_txn *txn, const char *id)
{
    cpx_case_rec_t r;
    assert_int_equal(cpx_caseindex_get(a, txn, id, &r), CPX_OK);
    uint8_t k[33];
    if (r.flags & CPX_CASE_F_HAS_ID) {
        k[0] = 'I';
        memcpy(k + 1, r.subject, 32);
        assert_int_equal(cpx_caseindex_del_minor(a, txn, k, id), CPX_OK);
    }
    if (r.flags & CPX_CASE_F_NAME_KEY) {
        k[0] = 'N';
        memcpy(k + 1, r.name_key, 32);
        assert_int_equal(cpx_caseindex_del_minor(a, txn, k, id), CPX_OK);
    }
    r.state = CPX_CASE_CLOSED;
    assert_int_equal(cpx_caseindex_put(a, txn, &r), CPX_OK);
}

/* find_minor's answer for k as a string ("-" for none). */
static const char *answer(cpx_caseindex_t *a, MDB_txn *txn, const uint8_t *k, char *buf)
{
    int rc = cpx_caseindex_find_minor(a, txn, k, buf);
    if (rc == CPX_ERR_NOT_FOUND)
        strcpy(buf, "-");
    else
        assert_int_equal(rc, CPX_OK);
    return buf;
}

#define N_KEYS 9
static uint8_t keys[N_KEYS][33];

/* Every key's answer is the same from a, from a fresh table built from the committed
 * records, and from a reader that scans (no table). */
static void same_as_rebuilt(cpx_caseindex_t *a, const char *const want[N_KEYS])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cpx_caseindex_t *fresh = open_idx(K1, NULL), *scan = open_idx(NULL, NULL);
    assert_int_equal(cpx_caseindex_minor_load(fresh, txn), CPX_OK);
    size_t na, nf, ba, bf;
    cpx_caseindex_minor_stats(a, &na, &ba);
    cpx_caseindex_minor_stats(fresh, &nf, &bf);
    assert_int_equal(na, nf);  /* the same entries, not only the same answers */
    for (size_t i = 0; i < N_KEYS; i++) {
        char x[40], y[40], z[40];
        answer(a, txn, keys[i], x);
        answer(fresh, txn, keys[i], y);
        answer(scan, txn, keys[i], z);
        if (strcmp(x, want[i]) || strcmp(y, want[i]) || strcmp(z, want[i]))
            fail_msg("key %zu: table %s, rebuilt %s, scan %s, want %s", i, x, y, z, want[i]);
    }
    cpx_caseindex_destroy(&fresh);
    cpx_caseindex_destroy(&scan);
    mdb_txn_abort(txn);
}

static void test_open_case_table(void **state)
{
    (void)state;
    enum { KA, KN, KB, KC, KE, KX, KY, KNX, KNONE };
    mkey(keys[KA], 'I', 0xA1, 0);
    mkey(keys[KN], 'N', 0xA1, 0);   /* same bytes as KA, another tag: another key */
    mkey(keys[KB], 'I', 0xB2, 0);
    mkey(keys[KC], 'I', 0xC3, 0);
    mkey(keys[KE], 'I', 0xE5, 0);
    mkey(keys[KX], 'I', 0x77, 1);
    mkey(keys[KY], 'I', 0x77, 2);   /* KX's prefix: only the record tells them apart */
    mkey(keys[KNX], 'N', 0x77, 1);
    mkey(keys[KNONE], 'I', 0x99, 0);
    assert_int_equal(cpx_minortab_prefix(keys[KX]), cpx_minortab_prefix(keys[KY]));

    cpx_caseindex_t *a = open_idx(K1, NULL);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    put_case(a, txn, "JY-2026-000001", CPX_CASE_OPEN, 1000, keys[KA], keys[KN], 0);
    put_case(a, txn, "JY-2026-000002", CPX_CASE_CLOSED, 1000, keys[KB], NULL, 0);
    put_case(a, txn, "JY-2026-000003", CPX_CASE_ASSESSED, 1000, keys[KC], NULL, 1);
    /* another child of the same name, birth date and town, opened later */
    put_case(a, txn, "JY-2026-000004", CPX_CASE_IN_SERVICE, 2000, NULL, keys[KN], 0);
    put_case(a, txn, "JY-2026-000007", CPX_CASE_OPEN, 500, keys[KX], NULL, 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    /* the gateway's start: the table is built from the committed records */
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_caseindex_minor_load(a, txn), CPX_OK);
    mdb_txn_abort(txn);
    size_t n, bytes;
    cpx_caseindex_minor_stats(a, &n, &bytes);
    assert_int_equal(n, 4);  /* 000001 (I, N), 000004 (N), 000007 (I) */
    assert_true(bytes > 0 && bytes < 256 * 1024);  /* the smallest table and arena */
    const char *const want0[N_KEYS] = {"JY-2026-000001", "JY-2026-000004", "-", "-", "-",
                                       "JY-2026-000007", "-", "-", "-"};
    same_as_rebuilt(a, want0);

    /* a cycle that aborts leaves nothing behind */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    put_case(a, txn, "JY-2026-000010", CPX_CASE_OPEN, 3000, keys[KE], keys[KNX], 0);
    put_case(a, txn, "JY-2026-000011", CPX_CASE_OPEN, 3000, keys[KY], NULL, 0);
    close_case(a, txn, "JY-2026-000001");
    close_case(a, txn, "JY-2026-000007");
    char buf[40];
    assert_string_equal(answer(a, txn, keys[KE], buf), "JY-2026-000010");
    assert_string_equal(answer(a, txn, keys[KY], buf), "JY-2026-000011");
    assert_string_equal(answer(a, txn, keys[KX], buf), "-");
    assert_string_equal(answer(a, txn, keys[KA], buf), "-");
    assert_string_equal(answer(a, txn, keys[KN], buf), "JY-2026-000004");
    mdb_txn_abort(txn);
    cpx_caseindex_minor_rollback(a);
    same_as_rebuilt(a, want0);

    /* the same cycle committed: the table equals one rebuilt from the records */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    put_case(a, txn, "JY-2026-000010", CPX_CASE_OPEN, 3000, keys[KE], keys[KNX], 0);
    put_case(a, txn, "JY-2026-000011", CPX_CASE_OPEN, 3000, keys[KY], NULL, 0);
    close_case(a, txn, "JY-2026-000001");
    close_case(a, txn, "JY-2026-000007");
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_caseindex_minor_commit(a);
    const char *const want1[N_KEYS] = {"-", "JY-2026-000004", "-", "-", "JY-2026-000010",
                                       "-", "JY-2026-000011", "JY-2026-000010", "-"};
    same_as_rebuilt(a, want1);

    /* reopening (keys set again), sealing (only that case's entry goes) */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    put_case(a, txn, "JY-2026-000007", CPX_CASE_REOPENED, 500, keys[KX], NULL, 0);
    assert_int_equal(cpx_caseindex_seal(a, txn, "JY-2026-000011"), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_caseindex_minor_commit(a);
    const char *const want2[N_KEYS] = {"-", "JY-2026-000004", "-", "-", "JY-2026-000010",
                                       "JY-2026-000007", "-", "JY-2026-000010", "-"};
    same_as_rebuilt(a, want2);
    cpx_caseindex_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_state_machine),
        cmocka_unit_test(test_referral_state_machine),
        cmocka_unit_test(test_referral_revocation),
        cmocka_unit_test_setup_teardown(test_minor_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_case_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pii_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pii_record_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlines_and_records, setup, teardown),
        cmocka_unit_test(test_views),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
