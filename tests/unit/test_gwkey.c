/* Gateway key rotation: a log rotated A -> B -> C keeps its log id, verifies live and
 * from export bundles cut anywhere (before, at and after each hand-over), and every head
 * verifies under the key of its time. Negatives: a stale key cannot sign or rotate, a
 * head after a rotation signed by the old key and a hand-over leaf signed over by the new
 * key only are refused naming the head's tree size, a second hand-over before the first
 * was signed over, a bundle with the wrong first key or a tampered hand-over head. */
/* memmem: _GNU_SOURCE comes from the build */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/audit.h"
#include "cpx/auditverify.h"
#include "cpx/err.h"
#include "cpx/export.h"
#include "cpx/gwkey.h"
#include "cpx/store.h"

typedef struct fx {
    char dir[64];
    MDB_env *env;
    cpx_audit_t *audit;
    cpx_key_t *a, *b, *c;
    int64_t t;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/cpx_gwkey_XXXXXX");
    if (!mkdtemp(f->dir) || cpx_store_open(f->dir, 64 << 20, 0, &f->env))
        return -1;
    f->audit = cpx_audit_open(f->env);
    f->a = cpx_key_generate();
    f->b = cpx_key_generate();
    f->c = cpx_key_generate();
    f->t = 1764370000000;
    *state = f;
    return f->audit && f->a && f->b && f->c ? 0 : -1;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    cpx_audit_destroy(&f->audit);
    mdb_env_close(f->env);
    cpx_key_destroy(&f->a);
    cpx_key_destroy(&f->b);
    cpx_key_destroy(&f->c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static MDB_txn *begin(fx_t *f)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    return txn;
}

static void commit(fx_t *f, MDB_txn *txn)
{
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_audit_committed(f->audit);
}

static void append_n(fx_t *f, MDB_txn *txn, int n)
{
    for (int i = 0; i < n; i++) {
        cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
        lf.event = CPX__V1__AUDIT_EVENT__ROUTED;
        lf.time_ms = ++f->t;
        lf.sender = "CIVIL_AFFAIRS";
        lf.detail = "rule=test";
        assert_int_equal(cpx_audit_append(f->audit, txn, &lf, NULL), CPX_OK);
    }
}

/* n leaves and a head signed by key (expecting rc) in one transaction */
static int batch(fx_t *f, int n, const cpx_key_t *key)
{
    MDB_txn *txn = begin(f);
    append_n(f, txn, n);
    int rc = cpx_audit_sign_head(f->audit, txn, key, ++f->t, NULL);
    if (rc) {
        mdb_txn_abort(txn);
        cpx_audit_aborted(f->audit);
    } else {
        commit(f, txn);
    }
    return rc;
}

static uint64_t rotate(fx_t *f, const cpx_key_t *old, const cpx_key_t *nk)
{
    MDB_txn *txn = begin(f);
    uint64_t seq = 0;
    cpx_sth_t *h = NULL;
    assert_int_equal(cpx_gwkey_rotate(f->audit, txn, old, nk, ++f->t, &seq, &h), CPX_OK);
    assert_true(h->tree_size == seq + 1);
    cpx_msg_free(h);
    commit(f, txn);
    return seq;
}

static int verify_store(fx_t *f, const cpx_key_t *first, cpx_averify_report_t *rep)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    cpx_averify_opts_t o = {.gateway_pub = first, .sender_signatures = 1, .threads = 2};
    int rc = cpx_averify_store(f->audit, txn, &o, rep);
    mdb_txn_abort(txn);
    return rc;
}

static int export(fx_t *f, const cpx_key_t *first, uint64_t from, uint64_t to, char **buf,
                  size_t *len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    FILE *m = open_memstream(buf, len);
    int rc = cpx_audit_export(f->audit, txn, first, from, to, m, NULL);
    fclose(m);
    mdb_txn_abort(txn);
    return rc;
}

static int verify_bundle(const char *buf, size_t len, const cpx_key_t *first,
                         cpx_averify_report_t *rep)
{
    cpx_averify_opts_t o = {.gateway_pub = first, .sender_signatures = 1, .threads = 1};
    return cpx_averify_bundle((const uint8_t *)buf, len, &o, rep);
}

static void log_id_of(const cpx_key_t *k, uint8_t id[32])
{
    uint8_t raw[32];
    cpx_key_public_raw(k, raw);
    cpx_sha256(raw, 32, id);
}

static int has_meta(fx_t *f, const char *name)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(f->audit, &db);
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, db.meta, &k, &v);
    mdb_txn_abort(txn);
    return rc == 0;
}

/* A -> B -> C with heads in between: sizes 40 | 41 (hand-over) | 70 | 71 | 100 */
static void build_chain(fx_t *f, uint64_t *s1, uint64_t *s2)
{
    assert_int_equal(batch(f, 20, f->a), CPX_OK);
    assert_int_equal(batch(f, 20, f->a), CPX_OK);
    *s1 = rotate(f, f->a, f->b);
    assert_int_equal(batch(f, 29, f->b), CPX_OK);
    *s2 = rotate(f, f->b, f->c);
    assert_int_equal(batch(f, 29, f->c), CPX_OK);
}

static void test_single_key_unchanged(void **state)
{
    fx_t *f = *state;
    assert_int_equal(batch(f, 10, f->a), CPX_OK);
    assert_int_equal(batch(f, 10, f->a), CPX_OK);
    assert_true(has_meta(f, "log_id") && has_meta(f, "gateway_pub"));
    assert_false(has_meta(f, CPX_AUDIT_META_CURRENT));
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    cpx_sth_t *h = NULL;
    assert_int_equal(cpx_audit_get_head(f->audit, txn, 0, &h), CPX_OK);
    mdb_txn_abort(txn);
    uint8_t id[32];
    log_id_of(f->a, id);
    assert_int_equal(cpx_sth_verify(h, f->a), CPX_OK);
    assert_int_equal(cpx_sth_verify_key(h, f->a, id), CPX_OK);
    assert_int_equal(cpx_sth_verify_key(h, f->b, id), CPX_ERR_BAD_SIGNATURE);
    id[0] ^= 1;
    assert_int_equal(cpx_sth_verify_key(h, f->a, id), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(h);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_OK);
    assert_true(rep.gateway_rotations == 0);
}

static void test_two_rotations(void **state)
{
    fx_t *f = *state;
    uint64_t s1, s2;
    build_chain(f, &s1, &s2);
    assert_true(s1 == 40 && s2 == 70);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_OK);
    assert_true(rep.gateway_rotations == 2);
    assert_true(rep.heads == 6);
    /* the chain starts at the first key only */
    assert_int_equal(verify_store(f, f->b, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);

    /* every head under the key of its time, all with the first key's log id */
    uint8_t id[32], first[32], cur[32], raw[32];
    log_id_of(f->a, id);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    uint8_t got[32];
    assert_int_equal(cpx_audit_gateway_keys(f->audit, txn, got, first, cur), CPX_OK);
    assert_memory_equal(got, id, 32);
    cpx_key_public_raw(f->a, raw);
    assert_memory_equal(first, raw, 32);
    cpx_key_public_raw(f->c, raw);
    assert_memory_equal(cur, raw, 32);
    struct { uint64_t size; const cpx_key_t *k; } want[] = {
        {20, f->a}, {40, f->a}, {41, f->a}, {70, f->b}, {71, f->b}, {100, f->c}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cpx_sth_t *h = NULL;
        assert_int_equal(cpx_audit_get_head(f->audit, txn, want[i].size, &h), CPX_OK);
        assert_true(h->tree_size == want[i].size);
        assert_int_equal(cpx_sth_verify_key(h, want[i].k, id), CPX_OK);
        if (want[i].k != f->a)
            assert_int_equal(cpx_sth_verify(h, want[i].k), CPX_ERR_BAD_SIGNATURE);
        cpx_msg_free(h);
    }
    /* proofs across the rotation: leaf 5 in the C-signed tree, 20 -> 100 */
    cpx_hash_t path[CPX_MAX_PROOF_PATH], r20, r100;
    size_t n;
    const uint8_t *leaf;
    size_t ll;
    cpx_hash_t lh;
    assert_int_equal(cpx_audit_root(f->audit, txn, 20, r20), CPX_OK);
    assert_int_equal(cpx_audit_root(f->audit, txn, 100, r100), CPX_OK);
    assert_int_equal(cpx_audit_get_leaf_raw(f->audit, txn, 5, &leaf, &ll), CPX_OK);
    cpx_merkle_leaf_hash(leaf, ll, lh);
    assert_int_equal(cpx_audit_prove_inclusion(f->audit, txn, 5, 100, path, &n), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 5, 100, path, n, r100), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 6, 100, path, n, r100), CPX_ERR_PROOF);
    assert_int_equal(cpx_audit_prove_consistency(f->audit, txn, 20, 100, path, &n), CPX_OK);
    assert_int_equal(cpx_merkle_verify_consistency(20, 100, r20, r100, path, n), CPX_OK);
    mdb_txn_abort(txn);

    /* bundles cut anywhere: before, at and after each hand-over and its head */
    uint64_t froms[] = {0, 1, 20, 39, 40, 41, 42, 69, 70, 71, 72, 99};
    for (size_t i = 0; i < sizeof froms / sizeof froms[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(export(f, f->a, froms[i], 0, &buf, &len), CPX_OK);
        int rc = verify_bundle(buf, len, f->a, &rep);
        if (rc)
            fprintf(stderr, "from %llu: %s\n", (unsigned long long)froms[i], rep.what);
        assert_int_equal(rc, CPX_OK);
        assert_true(rep.gateway_rotations == 2);
        assert_int_equal(verify_bundle(buf, len, f->c, &rep), CPX_ERR_TAMPERED);
        free(buf);
    }
    /* a bundle must name the first key */
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(export(f, f->c, 50, 0, &buf, &len), CPX_ERR_STATE);
    free(buf);
}

static void test_stale_key_refused(void **state)
{
    fx_t *f = *state;
    assert_int_equal(batch(f, 5, f->a), CPX_OK);
    rotate(f, f->a, f->b);
    assert_int_equal(batch(f, 5, f->a), CPX_ERR_REFUSED);
    assert_int_equal(batch(f, 5, f->b), CPX_OK);
    MDB_txn *txn = begin(f);
    uint8_t id[CPX_KEY_ID_LEN], want[CPX_KEY_ID_LEN];
    assert_int_equal(cpx_gwkey_check_current(f->audit, txn, f->a, id), CPX_ERR_REFUSED);
    cpx_key_id(f->b, want);
    assert_memory_equal(id, want, CPX_KEY_ID_LEN);
    assert_int_equal(cpx_gwkey_check_current(f->audit, txn, f->b, NULL), CPX_OK);
    assert_int_equal(cpx_gwkey_rotate(f->audit, txn, f->a, f->c, 0, NULL, NULL), CPX_ERR_REFUSED);
    assert_int_equal(cpx_gwkey_rotate(f->audit, txn, f->b, f->b, 0, NULL, NULL), CPX_ERR_EXISTS);
    mdb_txn_abort(txn);
    cpx_audit_aborted(f->audit);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_OK);
}

/* Stores a head over the tree as it stands, signed by any key (the library refuses). */
static void forge_head(fx_t *f, MDB_txn *txn, const cpx_key_t *key, const uint8_t id[32])
{
    uint64_t size;
    cpx_hash_t root;
    assert_int_equal(cpx_audit_size(f->audit, txn, &size), CPX_OK);
    assert_int_equal(cpx_audit_root(f->audit, txn, size, root), CPX_OK);
    cpx_sth_t sth = CPX__V1__SIGNED_TREE_HEAD__INIT;
    uint8_t msg[CPX_STH_SIGNING_LEN], sig[64], buf[256], k[8];
    sth.log_id = (ProtobufCBinaryData){32, (uint8_t *)id};
    sth.tree_size = size;
    sth.root_hash = (ProtobufCBinaryData){32, root};
    sth.timestamp_ms = ++f->t;
    cpx_sth_signing_bytes(&sth, msg);
    assert_int_equal(cpx_key_sign(key, msg, sizeof msg, sig), CPX_OK);
    sth.signature = (ProtobufCBinaryData){64, sig};
    size_t len;
    assert_int_equal(cpx_encode_into(&sth, buf, sizeof buf, &len), CPX_OK);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(f->audit, &db);
    cpx_be64_put(k, size);
    MDB_val kv = {8, k}, vv = {len, buf};
    assert_int_equal(mdb_put(txn, db.heads, &kv, &vv, 0), 0);
}

static void test_old_key_after_rotation(void **state)
{
    fx_t *f = *state;
    assert_int_equal(batch(f, 10, f->a), CPX_OK);
    rotate(f, f->a, f->b);
    assert_int_equal(batch(f, 10, f->b), CPX_OK);
    uint8_t id[32];
    log_id_of(f->a, id);
    MDB_txn *txn = begin(f);
    append_n(f, txn, 7);
    forge_head(f, txn, f->a, id); /* size 28, signed by the retired key */
    commit(f, txn);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
    assert_true(rep.bad_seq == 27);
    assert_non_null(strstr(rep.what, "tree size 28"));
    assert_non_null(strstr(rep.what, "retired"));
}

static void test_forged_handover(void **state)
{
    fx_t *f = *state;
    assert_int_equal(batch(f, 10, f->a), CPX_OK);
    /* someone holding only B appends a hand-over to B and signs over it with B */
    MDB_txn *txn = begin(f);
    uint8_t raw[32], kid[8];
    cpx_key_public_raw(f->b, raw);
    cpx_key_id(f->b, kid);
    cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
    lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
    lf.sender = CPX_AUDIT_GATEWAY_SENDER;
    lf.key = (ProtobufCBinaryData){32, raw};
    lf.key_id = (ProtobufCBinaryData){8, kid};
    lf.detail = CPX_AUDIT_HANDOVER_DETAIL;
    lf.time_ms = ++f->t;
    assert_int_equal(cpx_audit_append(f->audit, txn, &lf, NULL), CPX_OK);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(f->audit, &db);
    MDB_val k = {strlen(CPX_AUDIT_META_CURRENT), CPX_AUDIT_META_CURRENT}, v = {32, raw};
    assert_int_equal(mdb_put(txn, db.meta, &k, &v, 0), 0);
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, f->b, ++f->t, NULL), CPX_OK);
    commit(f, txn);
    assert_int_equal(batch(f, 5, f->b), CPX_OK);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
    assert_non_null(strstr(rep.what, "tree size 11"));
    assert_non_null(strstr(rep.what, "signed by the new key"));
    /* the same from a bundle cut after the hand-over */
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(export(f, f->a, 12, 0, &buf, &len), CPX_OK);
    assert_int_equal(verify_bundle(buf, len, f->a, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
    assert_non_null(strstr(rep.what, "tree size 11"));
    free(buf);
}

static void test_double_handover(void **state)
{
    fx_t *f = *state;
    assert_int_equal(batch(f, 3, f->a), CPX_OK);
    MDB_txn *txn = begin(f);
    const cpx_key_t *ks[2] = {f->b, f->c};
    for (int i = 0; i < 2; i++) {
        uint8_t raw[32];
        cpx_key_public_raw(ks[i], raw);
        cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
        lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
        lf.sender = CPX_AUDIT_GATEWAY_SENDER;
        lf.key = (ProtobufCBinaryData){32, raw};
        lf.detail = CPX_AUDIT_HANDOVER_DETAIL;
        lf.time_ms = ++f->t;
        assert_int_equal(cpx_audit_append(f->audit, txn, &lf, NULL), CPX_OK);
    }
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, f->a, ++f->t, NULL), CPX_OK);
    commit(f, txn);
    cpx_averify_report_t rep;
    assert_int_equal(verify_store(f, f->a, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_BAD_LEAF);
    assert_true(rep.bad_seq == 4);
}

static void test_bundle_tampered_handover_head(void **state)
{
    fx_t *f = *state;
    uint64_t s1, s2;
    build_chain(f, &s1, &s2);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(export(f, f->a, 90, 0, &buf, &len), CPX_OK);
    cpx_averify_report_t rep;
    assert_int_equal(verify_bundle(buf, len, f->a, &rep), CPX_OK);
    /* the hand-over records' heads end with their 64-byte signature; flip a bit in each */
    cpx_bundle_t *b = NULL;
    assert_int_equal(cpx_bundle_parse((uint8_t *)buf, len, &b, NULL, 0), CPX_OK);
    assert_true(b->n_handovers == 2);
    for (size_t i = 0; i < 2; i++) {
        char *copy = malloc(len);
        memcpy(copy, buf, len);
        /* the decoded head is a copy: find its signature bytes in the bundle */
        const uint8_t *sig = b->handovers[i].head->signature.data;
        char *p = memmem(copy, len, sig, 64);
        assert_non_null(p);
        p[10] ^= 1;
        assert_int_equal(verify_bundle(copy, len, f->a, &rep), CPX_ERR_TAMPERED);
        assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
        free(copy);
    }
    cpx_bundle_destroy(&b);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_key_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_rotations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_key_after_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_tampered_handover_head, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
