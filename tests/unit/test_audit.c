/* Audit log: append across transactions (commit and abort), roots against an
 * independent in-memory tree of the stored bytes, proofs at many sizes, signed
 * heads (and a wrong key), read-only access, the case index, pseudonyms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/audit.h"
#include "cpx/err.h"
#include "cpx/store.h"

#define N 300

typedef struct fx {
    char dir[64];
    MDB_env *env;
    cpx_audit_t *audit;
    cpx_key_t *key;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/cpx_audit_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (cpx_store_open(f->dir, 64 << 20, 0, &f->env))
        return -1;
    f->audit = cpx_audit_open(f->env);
    f->key = cpx_key_generate();
    *state = f;
    return f->audit && f->key ? 0 : -1;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    cpx_audit_destroy(&f->audit);
    cpx_audit_destroy(&f->audit); /* harmless twice */
    if (f->env)
        mdb_env_close(f->env);
    cpx_key_destroy(&f->key);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static int append_some(fx_t *f, uint64_t first, uint64_t count, int commit)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    for (uint64_t i = first; i < first + count; i++) {
        cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
        char case_ref[32], *rcpt[1] = {"POLICE"};
        snprintf(case_ref, sizeof case_ref, "JY-2026-%06llu", (unsigned long long)(i % 7));
        uint8_t digest[32] = {0};
        memcpy(digest, &i, sizeof i);
        leaf.event = CPX__V1__AUDIT_EVENT__ROUTED;
        leaf.time_ms = 1764370000000 + (int64_t)i;
        leaf.sender = "CIVIL_AFFAIRS";
        leaf.recipients = rcpt;
        leaf.n_recipients = 1;
        leaf.case_ref = case_ref;
        leaf.envelope_digest = (ProtobufCBinaryData){32, digest};
        leaf.body_kind = "referral";
        uint64_t seq = 99;
        assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, &seq), CPX_OK);
        assert_true(seq == i);
        assert_true(leaf.seq == i);
    }
    if (commit) {
        assert_int_equal(mdb_txn_commit(txn), 0);
        cpx_audit_committed(f->audit);
    } else {
        mdb_txn_abort(txn);
        cpx_audit_aborted(f->audit);
    }
    return 0;
}

/* Leaf hashes of the stored leaf bytes, computed without the stored nodes. */
static void stored_leaf_hashes(fx_t *f, MDB_txn *txn, cpx_hash_t *out, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *d;
        size_t len;
        assert_int_equal(cpx_audit_get_leaf_raw(f->audit, txn, i, &d, &len), CPX_OK);
        cpx_merkle_leaf_hash(d, len, out[i]);
    }
}

static void test_append_roots_proofs(void **state)
{
    fx_t *f = *state;
    append_some(f, 0, 100, 1);
    append_some(f, 100, 50, 0); /* aborted: must leave no trace in the edge */
    append_some(f, 100, 37, 1);
    append_some(f, 137, 163, 1);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    uint64_t size;
    assert_int_equal(cpx_audit_size(f->audit, txn, &size), CPX_OK);
    assert_true(size == N);
    static cpx_hash_t lh[N];
    stored_leaf_hashes(f, txn, lh, N);
    for (uint64_t n = 0; n <= N; n += (n < 20 ? 1 : 37)) {
        cpx_hash_t want, got;
        cpx_merkle_root(lh, n, want);
        assert_int_equal(cpx_audit_root(f->audit, txn, n, got), CPX_OK);
        assert_memory_equal(want, got, 32);
        for (uint64_t i = 0; i < n; i += 1 + n / 9) {
            cpx_hash_t path[CPX_MAX_PROOF_PATH];
            size_t len;
            assert_int_equal(cpx_audit_prove_inclusion(f->audit, txn, i, n, path, &len), CPX_OK);
            assert_int_equal(cpx_merkle_verify_inclusion(lh[i], i, n, path, len, want), CPX_OK);
            /* wrong index */
            assert_int_equal(cpx_merkle_verify_inclusion(lh[i], (i + 1) % n, n, path, len, want),
                             n == 1 ? CPX_OK : CPX_ERR_PROOF);
        }
        if (n > 0) {
            cpx_hash_t path[CPX_MAX_PROOF_PATH], r1;
            size_t len;
            uint64_t m = 1 + n / 3;
            cpx_merkle_root(lh, m, r1);
            assert_int_equal(cpx_audit_prove_consistency(f->audit, txn, m, n, path, &len),
                             CPX_OK);
            assert_int_equal(cpx_merkle_verify_consistency(m, n, r1, want, path, len), CPX_OK);
        }
    }
    cpx_hash_t out, path[CPX_MAX_PROOF_PATH];
    size_t len;
    assert_int_equal(cpx_audit_root(f->audit, txn, N + 1, out), CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_audit_prove_inclusion(f->audit, txn, N, N, path, &len),
                     CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_audit_prove_inclusion(f->audit, txn, 5, N + 1, path, &len),
                     CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_audit_prove_consistency(f->audit, txn, 10, 5, path, &len),
                     CPX_ERR_ARG);
    cpx_audit_leaf_t *leaf;
    assert_int_equal(cpx_audit_get_leaf(f->audit, txn, 123, &leaf), CPX_OK);
    assert_true(leaf->seq == 123);
    assert_string_equal(leaf->sender, "CIVIL_AFFAIRS");
    cpx_msg_free(leaf);
    assert_int_equal(cpx_audit_get_leaf(f->audit, txn, N, &leaf), CPX_ERR_NOT_FOUND);
    mdb_txn_abort(txn);
}

static void test_forgotten_commit_is_recovered(void **state)
{
    fx_t *f = *state;
    append_some(f, 0, 10, 1);
    /* commit without telling the log; the next transaction must still be right */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__CONFIG_CHANGED;
    assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, NULL), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    /* ... and abort without telling it */
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    leaf.time_ms = 0;
    assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, NULL), CPX_OK);
    mdb_txn_abort(txn);
    append_some(f, 11, 5, 1);
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    static cpx_hash_t lh[16];
    stored_leaf_hashes(f, txn, lh, 16);
    cpx_hash_t want, got;
    cpx_merkle_root(lh, 16, want);
    assert_int_equal(cpx_audit_root(f->audit, txn, 16, got), CPX_OK);
    assert_memory_equal(want, got, 32);
    mdb_txn_abort(txn);
}

static void test_heads(void **state)
{
    fx_t *f = *state;
    MDB_txn *txn;
    cpx_sth_t *h1 = NULL, *h2 = NULL, *again = NULL, *got = NULL;
    append_some(f, 0, 5, 1);
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, f->key, 1764370001000, &h1), CPX_OK);
    assert_true(h1->tree_size == 5);
    /* same size: not signed again */
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, f->key, 1764370002000, &again), CPX_OK);
    assert_true(again->timestamp_ms == 1764370001000);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_audit_committed(f->audit);
    append_some(f, 5, 6, 1);
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    /* a clock that went back does not make heads go back */
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, f->key, 1764370000500, &h2), CPX_OK);
    assert_true(h2->tree_size == 11);
    assert_true(h2->timestamp_ms == 1764370001000);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_audit_committed(f->audit);

    assert_int_equal(cpx_sth_verify(h1, f->key), CPX_OK);
    assert_int_equal(cpx_sth_verify(h2, f->key), CPX_OK);
    cpx_key_t *other = cpx_key_generate();
    assert_int_equal(cpx_sth_verify(h2, other), CPX_ERR_BAD_SIGNATURE);
    cpx_key_destroy(&other);
    h2->root_hash.data[0] ^= 1;
    assert_int_equal(cpx_sth_verify(h2, f->key), CPX_ERR_BAD_SIGNATURE);
    h2->root_hash.data[0] ^= 1;
    h2->tree_size++;
    assert_int_equal(cpx_sth_verify(h2, f->key), CPX_ERR_BAD_SIGNATURE);
    h2->tree_size--;
    h2->signature.len = 63;
    assert_int_equal(cpx_sth_verify(h2, f->key), CPX_ERR_BAD_SIGNATURE);
    h2->signature.len = 64;

    /* signing bytes, byte for byte */
    uint8_t sb[CPX_STH_SIGNING_LEN];
    cpx_sth_signing_bytes(h2, sb);
    assert_int_equal(CPX_STH_SIGNING_LEN, 101);
    assert_memory_equal(sb, "cpx.v1.sig.tree-head\0", 21);
    uint8_t raw[32], id[32];
    cpx_key_public_raw(f->key, raw);
    cpx_sha256(raw, 32, id);
    assert_memory_equal(sb + 21, id, 32);
    assert_true(cpx_be64_get(sb + 53) == 11);
    assert_true(cpx_be64_get(sb + 61) == 1764370001000u);
    assert_memory_equal(sb + 69, h2->root_hash.data, 32);

    /* lookups */
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_audit_get_head(f->audit, txn, 0, &got), CPX_OK);
    assert_true(got->tree_size == 11);
    cpx_msg_free(got);
    assert_int_equal(cpx_audit_get_head(f->audit, txn, 3, &got), CPX_OK);
    assert_true(got->tree_size == 5);
    cpx_msg_free(got);
    assert_int_equal(cpx_audit_get_head(f->audit, txn, 6, &got), CPX_OK);
    assert_true(got->tree_size == 11);
    cpx_msg_free(got);
    assert_int_equal(cpx_audit_get_head(f->audit, txn, 12, &got), CPX_ERR_NOT_FOUND);
    cpx_hash_t root;
    assert_int_equal(cpx_audit_root(f->audit, txn, 11, root), CPX_OK);
    assert_memory_equal(root, h2->root_hash.data, 32);
    mdb_txn_abort(txn);
    cpx_msg_free(h1);
    cpx_msg_free(h2);
    cpx_msg_free(again);
}

static int collect(void *ctx, uint64_t seq)
{
    uint64_t *c = ctx;
    c[++c[0]] = seq;
    return c[0] >= 60 ? 1 : 0;
}

static void test_readonly_and_case_index(void **state)
{
    fx_t *f = *state;
    append_some(f, 0, 100, 1);
    mdb_env_close(f->env);
    cpx_audit_destroy(&f->audit);
    assert_int_equal(cpx_store_open(f->dir, 0, MDB_RDONLY, &f->env), CPX_OK);
    f->audit = cpx_audit_open(f->env);
    assert_non_null(f->audit);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    uint64_t seqs[64] = {0};
    assert_int_equal(cpx_audit_case_foreach(f->audit, txn, "JY-2026-000003", collect, seqs),
                     CPX_OK);
    assert_true(seqs[0] == 14); /* 3, 10, ..., 94 */
    for (uint64_t i = 1; i <= seqs[0]; i++)
        assert_true(seqs[i] == 3 + 7 * (i - 1));
    memset(seqs, 0, sizeof seqs);
    assert_int_equal(cpx_audit_case_foreach(f->audit, txn, "JY-NOPE", collect, seqs), CPX_OK);
    assert_true(seqs[0] == 0);
    /* appends are refused on a read-only log */
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, NULL), CPX_ERR_ARG);
    mdb_txn_abort(txn);
}

/* Each leaf record: n = 1 + trailing ones of seq, n node hashes (level 0 = the leaf
 * hash, level l = the stored perfect subtree), then the leaf bytes; malformed counts
 * are refused. */
static void test_record_layout(void **state)
{
    fx_t *f = *state;
    append_some(f, 0, 64, 1);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(f->audit, &db);
    cpx_hash_t lh[64];
    stored_leaf_hashes(f, txn, lh, 64);
    for (uint64_t i = 0; i < 64; i++) {
        uint8_t k8[8];
        cpx_be64_put(k8, i);
        MDB_val k = {8, k8}, v;
        assert_int_equal(mdb_get(txn, db.leaves, &k, &v), 0);
        const uint8_t *rec = v.mv_data, *nodes, *leaf, *raw;
        size_t n, len, raw_len;
        unsigned t = 0;
        while (i >> t & 1)
            t++;
        assert_int_equal(rec[0], 1 + t);
        assert_int_equal(cpx_audit_record_split(rec, v.mv_size, &nodes, &n, &leaf, &len), CPX_OK);
        assert_true(n == 1 + t && nodes == rec + 1 && leaf == rec + 1 + 32 * n);
        assert_true(len == v.mv_size - 1 - 32 * n);
        assert_int_equal(cpx_audit_get_leaf_raw(f->audit, txn, i, &raw, &raw_len), CPX_OK);
        assert_true(raw == leaf && raw_len == len);
        assert_memory_equal(nodes, lh[i], 32);
        /* level l of record i is the subtree of 2^l leaves ending at i */
        for (unsigned l = 1; l <= t; l++) {
            cpx_hash_t want;
            uint64_t first = i + 1 - (UINT64_C(1) << l);
            cpx_merkle_root(lh + first, (size_t)1 << l, want);
            assert_memory_equal(nodes + 32 * l, want, 32);
        }
    }
    uint8_t bad[1 + 32 + 4] = {0};
    const uint8_t *leaf;
    size_t len;
    assert_int_equal(cpx_audit_record_split(bad, sizeof bad, NULL, NULL, &leaf, &len),
                     CPX_ERR_TAMPERED); /* n = 0 */
    bad[0] = 65;
    assert_int_equal(cpx_audit_record_split(bad, sizeof bad, NULL, NULL, &leaf, &len),
                     CPX_ERR_TAMPERED); /* past 64 levels */
    bad[0] = 2;
    assert_int_equal(cpx_audit_record_split(bad, sizeof bad, NULL, NULL, &leaf, &len),
                     CPX_ERR_TAMPERED); /* more hashes than bytes */
    bad[0] = 1;
    assert_int_equal(cpx_audit_record_split(bad, sizeof bad, NULL, NULL, &leaf, &len), CPX_OK);
    assert_true(leaf == bad + 33 && len == 4);
    assert_int_equal(cpx_audit_record_split(bad, 0, NULL, NULL, &leaf, &len), CPX_ERR_TAMPERED);
    mdb_txn_abort(txn);
}

static void test_refusals(void **state)
{
    fx_t *f = *state;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    static char big[CPX_MAX_LEAF_BYTES + 10];
    memset(big, 'x', sizeof big - 1);
    leaf.reason = big;
    assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, NULL), CPX_ERR_TOO_LARGE);
    leaf.reason = "";
    leaf.case_ref = big;
    assert_int_equal(cpx_audit_append(f->audit, txn, &leaf, NULL), CPX_ERR_TOO_LARGE);
    cpx_key_t *pub = NULL;
    uint8_t raw[32];
    cpx_key_public_raw(f->key, raw);
    pub = cpx_key_from_raw_public(raw);
    assert_int_equal(cpx_audit_sign_head(f->audit, txn, pub, 0, NULL), CPX_ERR_ARG);
    cpx_key_destroy(&pub);
    mdb_txn_abort(txn);
    cpx_audit_aborted(f->audit);
}

static void test_pseudonym(void **state)
{
    (void)state;
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    char out[35], again[35];
    /* python3: 'P:' + hmac.new(bytes(range(32)), subject, sha256).hexdigest()[:32] */
    cpx_audit_pseudonym(key, "320281200801011234", out);
    assert_string_equal(out, "P:9a2450ce29f23870fda5503b71f7da2e");
    cpx_audit_pseudonym(key, "320281200801011234", again);
    assert_string_equal(out, again);
    key[0] ^= 1;
    cpx_audit_pseudonym(key, "320281200801011234", again);
    assert_string_not_equal(out, again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_roots_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgotten_commit_is_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_and_case_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test(test_pseudonym),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
