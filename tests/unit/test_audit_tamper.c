/* Tamper evidence (issue 3): a log of 3000 events with real sender signatures (per
 * message and per batch) verifies clean; then, each on its own copy of the store, a
 * flipped byte, a deleted leaf, two swapped leaves, a truncated tail, a head signed by
 * another key, two heads of one size, a forged sender signature, and a tampered or
 * truncated export bundle must each be caught, naming the right sequence number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "cpx/audit.h"
#include "cpx/auditverify.h"
#include "cpx/err.h"
#include "cpx/export.h"
#include "cpx/store.h"

#define N_EVENTS 3000
#define PER_TXN 500
#define BATCH 16

static char root_dir[64], pristine[128];
static cpx_key_t *gw, *dept_key, *stranger;
static uint8_t dept_id[8];
static uint64_t forged_seq;

static void sign_msg(const cpx_key_t *k, const uint8_t d[32], uint8_t sig[64])
{
    uint8_t m[20 + 32];
    memcpy(m, "cpx.v1.sig.envelope", 20);
    memcpy(m + 20, d, 32);
    assert_int_equal(cpx_key_sign(k, m, sizeof m, sig), CPX_OK);
}

static void sign_batch(const cpx_key_t *k, uint64_t size, const cpx_hash_t root, uint8_t sig[64])
{
    uint8_t m[17 + 8 + 32];
    memcpy(m, "cpx.v1.sig.batch", 17);
    cpx_be64_put(m + 17, size);
    memcpy(m + 25, root, 32);
    assert_int_equal(cpx_key_sign(k, m, sizeof m, sig), CPX_OK);
}

/* Builds the pristine log: KEY_ENROLLED, then ACCEPTED/ROUTED events, a head per txn.
 * When forge is set, one ACCEPTED leaf is signed by a key that was never enrolled. */
static void build(const char *dir, int forge)
{
    MDB_env *env;
    assert_int_equal(cpx_store_open(dir, 256 << 20, 0, &env), CPX_OK);
    cpx_audit_t *a = cpx_audit_open(env);
    assert_non_null(a);
    uint64_t n = 0, msg = 0;
    int64_t t = 1764370000000;
    while (n < N_EVENTS) {
        MDB_txn *txn;
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        if (n == 0) {
            uint8_t raw[32];
            cpx_key_public_raw(dept_key, raw);
            cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
            lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
            lf.time_ms = t;
            lf.sender = "POLICE";
            lf.key = (ProtobufCBinaryData){32, raw};
            lf.key_id = (ProtobufCBinaryData){8, dept_id};
            lf.detail = "ed25519";
            assert_int_equal(cpx_audit_append(a, txn, &lf, NULL), CPX_OK);
            n++;
        }
        uint64_t stop = (n / PER_TXN + 1) * PER_TXN;
        while (n < stop && n < N_EVENTS) {
            uint8_t d[BATCH][32], bsig[64];
            cpx_hash_t lh[BATCH], root;
            for (int i = 0; i < BATCH; i++) {
                uint64_t id = msg + (uint64_t)i;
                cpx_sha256(&id, sizeof id, d[i]);
                cpx_merkle_leaf_hash(d[i], 32, lh[i]);
            }
            cpx_merkle_root(lh, BATCH, root);
            sign_batch(dept_key, BATCH, root, bsig);
            for (int i = 0; i < BATCH && n < stop && n < N_EVENTS; i++, msg++) {
                char *rcpt[1] = {"CIVIL_AFFAIRS"}, case_ref[32];
                snprintf(case_ref, sizeof case_ref, "JY-2026-%06llu", (unsigned long long)(msg % 50));
                uint8_t sig[64];
                cpx_hash_t path[CPX_MAX_PROOF_PATH];
                ProtobufCBinaryData pd[CPX_MAX_PROOF_PATH];
                size_t plen;
                cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
                lf.event = CPX__V1__AUDIT_EVENT__ACCEPTED;
                lf.time_ms = ++t;
                lf.sender = "POLICE";
                lf.recipients = rcpt;
                lf.n_recipients = 1;
                lf.case_ref = case_ref;
                lf.envelope_digest = (ProtobufCBinaryData){32, d[i]};
                lf.key_id = (ProtobufCBinaryData){8, dept_id};
                lf.body_kind = "discovery_report";
                int forge_this = forge && msg == 700;
                if (msg % 3 == 0 || forge_this) {
                    sign_msg(forge_this ? stranger : dept_key, d[i], sig);
                    lf.signature = (ProtobufCBinaryData){64, sig};
                } else {
                    assert_int_equal(cpx_merkle_path(lh, BATCH, (size_t)i, path,
                                                     CPX_MAX_PROOF_PATH, &plen), CPX_OK);
                    for (size_t j = 0; j < plen; j++)
                        pd[j] = (ProtobufCBinaryData){32, path[j]};
                    lf.batch_root = (ProtobufCBinaryData){32, root};
                    lf.batch_signature = (ProtobufCBinaryData){64, bsig};
                    lf.batch_index = (uint64_t)i;
                    lf.batch_size = BATCH;
                    lf.batch_path = pd;
                    lf.n_batch_path = plen;
                }
                uint64_t seq;
                assert_int_equal(cpx_audit_append(a, txn, &lf, &seq), CPX_OK);
                if (forge_this)
                    forged_seq = seq;
                n++;
                if (n >= stop || n >= N_EVENTS)
                    break;
                cpx_audit_leaf_t rt = CPX__V1__AUDIT_LEAF__INIT;
                rt.event = CPX__V1__AUDIT_EVENT__ROUTED;
                rt.time_ms = t;
                rt.sender = "POLICE";
                rt.recipients = rcpt;
                rt.n_recipients = 1;
                rt.case_ref = case_ref;
                rt.ref_seq = seq;
                assert_int_equal(cpx_audit_append(a, txn, &rt, NULL), CPX_OK);
                n++;
            }
        }
        assert_int_equal(cpx_audit_sign_head(a, txn, gw, t, NULL), CPX_OK);
        assert_int_equal(mdb_txn_commit(txn), 0);
        cpx_audit_committed(a);
    }
    cpx_audit_destroy(&a);
    mdb_env_close(env);
}

static int setup(void **state)
{
    (void)state;
    strcpy(root_dir, "/tmp/cpx_tamper_XXXXXX");
    if (!mkdtemp(root_dir))
        return -1;
    gw = cpx_key_generate();
    dept_key = cpx_key_generate();
    stranger = cpx_key_generate();
    cpx_key_id(dept_key, dept_id);
    snprintf(pristine, sizeof pristine, "%s/pristine", root_dir);
    build(pristine, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cpx_key_destroy(&gw);
    cpx_key_destroy(&dept_key);
    cpx_key_destroy(&stranger);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh writable copy of the pristine store. */
typedef struct copy {
    char dir[128];
    MDB_env *env;
    cpx_audit_t *audit;
    cpx_audit_dbs_t db;
} copy_t;

static void make_copy(copy_t *c, const char *name)
{
    snprintf(c->dir, sizeof c->dir, "%s/%s", root_dir, name);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", c->dir, pristine, c->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cpx_store_open(c->dir, 256 << 20, 0, &c->env), CPX_OK);
    c->audit = cpx_audit_open(c->env);
    assert_non_null(c->audit);
    cpx_audit_dbs(c->audit, &c->db);
}

static int verify_copy(copy_t *c, cpx_averify_report_t *rep, cpx_sth_t **extra, size_t n_extra)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn), 0);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1,
                            .extra_heads = extra, .n_extra_heads = n_extra};
    int rc = cpx_averify_store(c->audit, txn, &o, rep);
    mdb_txn_abort(txn);
    return rc;
}

static void drop_copy(copy_t *c)
{
    cpx_audit_destroy(&c->audit);
    mdb_env_close(c->env);
}

static void put_raw(copy_t *c, MDB_dbi dbi, uint64_t key, const void *val, size_t len)
{
    MDB_txn *txn;
    uint8_t k8[8];
    cpx_be64_put(k8, key);
    MDB_val k = {8, k8}, v = {len, (void *)val};
    assert_int_equal(mdb_txn_begin(c->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static size_t get_raw(copy_t *c, MDB_dbi dbi, uint64_t key, uint8_t *out, size_t max)
{
    MDB_txn *txn;
    uint8_t k8[8];
    cpx_be64_put(k8, key);
    MDB_val k = {8, k8}, v;
    assert_int_equal(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_true(v.mv_size <= max);
    memcpy(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return v.mv_size;
}

static void del_raw(copy_t *c, MDB_dbi dbi, uint64_t key)
{
    MDB_txn *txn;
    uint8_t k8[8];
    cpx_be64_put(k8, key);
    MDB_val k = {8, k8};
    assert_int_equal(mdb_txn_begin(c->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void test_clean_log_verifies(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "clean");
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_OK);
    assert_int_equal(rep.problem, CPX_AV_NONE);
    assert_true(rep.leaves == N_EVENTS);
    assert_true(rep.heads == N_EVENTS / PER_TXN);
    assert_true(rep.nodes_checked == N_EVENTS);
    assert_true(rep.keys_enrolled == 1);
    assert_true(rep.sig_checked > 1000);
    assert_true(rep.sig_per_message > 0 && rep.sig_batch > 0 && rep.sig_batch_cached > 0);
    assert_true(rep.sig_failed == 0);
    /* one thread gives the same answer */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(c.env, NULL, MDB_RDONLY, &txn), 0);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1, .threads = 1};
    assert_int_equal(cpx_averify_store(c.audit, txn, &o, &rep), CPX_OK);
    /* the wrong gateway key fails at the first head */
    o.gateway_pub = stranger;
    assert_int_equal(cpx_averify_store(c.audit, txn, &o, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
    assert_true(rep.bad_seq == PER_TXN - 1);
    mdb_txn_abort(txn);
    drop_copy(&c);
}

/* A new log (no leaf, no head yet): what the gateway's verifier thread replays when it
 * starts on a fresh store. Nothing to check and nothing wrong. */
static void test_empty_log(void **state)
{
    (void)state;
    char dir[160];
    snprintf(dir, sizeof dir, "%s/empty", root_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    MDB_env *env;
    assert_int_equal(cpx_store_open(dir, 16 << 20, 0, &env), CPX_OK);
    cpx_audit_t *a = cpx_audit_open(env);
    assert_non_null(a);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1};
    cpx_averify_report_t rep;
    assert_int_equal(cpx_averify_store(a, txn, &o, &rep), CPX_OK);
    assert_int_equal(rep.problem, CPX_AV_NONE);
    assert_true(rep.leaves == 0 && rep.heads == 0 && rep.tree_size == 0);
    mdb_txn_abort(txn);
    cpx_audit_destroy(&a);
    mdb_env_close(env);
}

static void test_flipped_byte(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "flip");
    uint8_t buf[4096];
    size_t len = get_raw(&c, c.db.leaves, 1234, buf, sizeof buf);
    /* flip a byte inside the sender string: still decodes, different hash */
    uint8_t *p = memmem(buf, len, "POLICE", 6);
    assert_non_null(p);
    p[2] ^= 0x01;
    put_raw(&c, c.db.leaves, 1234, buf, len);
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HASH_MISMATCH);
    assert_true(rep.bad_seq == 1234);
    assert_non_null(strstr(rep.what, "seq 1234"));
    drop_copy(&c);

    /* a flip that also breaks the encoding is named as a hash mismatch too; the leaf
     * bytes follow the node count and its hashes (2001 ends one perfect subtree of 2) */
    make_copy(&c, "flip2");
    len = get_raw(&c, c.db.leaves, 2001, buf, sizeof buf);
    assert_int_equal(buf[0], 2);
    buf[1 + 2 * 32] ^= 0xff;
    put_raw(&c, c.db.leaves, 2001, buf, len);
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HASH_MISMATCH);
    assert_true(rep.bad_seq == 2001);
    drop_copy(&c);

    /* a flipped bit in the stored leaf hash, in front of intact leaf bytes */
    make_copy(&c, "flip3");
    len = get_raw(&c, c.db.leaves, 2001, buf, sizeof buf);
    buf[1 + 5] ^= 0x10;
    put_raw(&c, c.db.leaves, 2001, buf, len);
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HASH_MISMATCH);
    assert_true(rep.bad_seq == 2001);
    drop_copy(&c);

    /* a node count that no longer parses: the record is not a leaf */
    make_copy(&c, "flip4");
    len = get_raw(&c, c.db.leaves, 2001, buf, sizeof buf);
    buf[0] ^= 0xff;
    put_raw(&c, c.db.leaves, 2001, buf, len);
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_BAD_LEAF);
    assert_true(rep.bad_seq == 2001);
    drop_copy(&c);
}

static void test_rewritten_leaf_and_nodes(void **state)
{
    (void)state;
    /* an attacker who rewrites a leaf AND its leaf-hash node is caught by the next node
     * level or, failing that, by the signed head */
    copy_t c;
    make_copy(&c, "rewrite");
    uint8_t buf[4096];
    size_t len = get_raw(&c, c.db.leaves, 1000, buf, sizeof buf);
    assert_int_equal(buf[0], 1); /* 1000 completes no subtree above its own leaf */
    uint8_t *p = memmem(buf, len, "POLICE", 6);
    p[0] = 'Q';
    cpx_merkle_leaf_hash(buf + 33, len - 33, buf + 1);
    put_raw(&c, c.db.leaves, 1000, buf, len);
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_true(rep.problem == CPX_AV_NODE_MISMATCH || rep.problem == CPX_AV_HEAD_ROOT);
    assert_true(rep.bad_seq >= 1000 && rep.bad_seq < 1500);
    drop_copy(&c);
}

static void test_deleted_leaf(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "delete");
    del_raw(&c, c.db.leaves, 777);
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_MISSING_LEAF);
    assert_true(rep.bad_seq == 777);
    drop_copy(&c);
}

static void test_swapped_leaves(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "swap");
    uint8_t a[4096], b[4096];
    size_t la = get_raw(&c, c.db.leaves, 100, a, sizeof a);
    size_t lb = get_raw(&c, c.db.leaves, 200, b, sizeof b);
    put_raw(&c, c.db.leaves, 100, b, lb);
    put_raw(&c, c.db.leaves, 200, a, la);
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_MISPLACED_LEAF);
    assert_true(rep.bad_seq == 100);
    drop_copy(&c);
}

static void test_truncated_tail(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "truncate");
    for (uint64_t s = 2900; s < N_EVENTS; s++) {
        del_raw(&c, c.db.leaves, s);
    }
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_MISSING_LEAF);
    assert_true(rep.bad_seq == 2900);
    drop_copy(&c);
}

static int64_t head_time(copy_t *c, uint64_t size)
{
    MDB_txn *txn;
    cpx_sth_t *h;
    assert_int_equal(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_audit_get_head(c->audit, txn, size, &h), CPX_OK);
    assert_true(h->tree_size == size);
    int64_t t = h->timestamp_ms;
    cpx_msg_free(h);
    mdb_txn_abort(txn);
    return t;
}

static cpx_sth_t *forge_head(copy_t *c, const cpx_key_t *key, uint64_t size, int bad_root,
                             int64_t ts)
{
    MDB_txn *txn;
    cpx_hash_t root;
    uint8_t raw[32], id[32], sig[64], msg[CPX_STH_SIGNING_LEN];
    assert_int_equal(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_audit_root(c->audit, txn, size, root), CPX_OK);
    mdb_txn_abort(txn);
    if (bad_root)
        root[5] ^= 0x40;
    cpx_key_public_raw(key, raw);
    cpx_sha256(raw, 32, id);
    cpx_sth_t h = CPX__V1__SIGNED_TREE_HEAD__INIT;
    h.log_id = (ProtobufCBinaryData){32, id};
    h.tree_size = size;
    h.root_hash = (ProtobufCBinaryData){32, root};
    h.timestamp_ms = ts;
    cpx_sth_signing_bytes(&h, msg);
    assert_int_equal(cpx_key_sign(key, msg, sizeof msg, sig), CPX_OK);
    h.signature = (ProtobufCBinaryData){64, sig};
    uint8_t *buf;
    size_t len;
    assert_int_equal(cpx_encode(&h, &buf, &len), CPX_OK);
    cpx_sth_t *out;
    assert_int_equal(cpx_decode_sth(buf, len, &out), CPX_OK);
    free(buf);
    return out;
}

static void test_head_signed_by_another_key(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "otherkey");
    cpx_sth_t *h = forge_head(&c, stranger, 1500, 0, head_time(&c, 1500));
    uint8_t *buf;
    size_t len;
    assert_int_equal(cpx_encode(h, &buf, &len), CPX_OK);
    put_raw(&c, c.db.heads, 1500, buf, len);
    free(buf);
    cpx_msg_free(h);
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, NULL, 0), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_SIGNATURE);
    assert_true(rep.bad_seq == 1499);
    drop_copy(&c);
}

static void test_two_heads_same_size(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "fork");
    /* a validly signed head of size 2000 with another root: a split view */
    cpx_sth_t *fork = forge_head(&c, gw, 2000, 1, head_time(&c, 2000));
    cpx_averify_report_t rep;
    assert_int_equal(verify_copy(&c, &rep, &fork, 1), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_INCONSISTENT);
    assert_true(rep.bad_seq == 1999);
    /* a good extra head at a size with no stored head is checked, and passes */
    cpx_sth_t *good = forge_head(&c, gw, 1234, 0, head_time(&c, 1500));
    assert_int_equal(verify_copy(&c, &rep, &good, 1), CPX_OK);
    assert_true(rep.heads == N_EVENTS / PER_TXN + 1);
    cpx_msg_free(good);
    /* one older than the stored head of size 1000 contradicts it */
    cpx_sth_t *old = forge_head(&c, gw, 1234, 0, head_time(&c, 1000) - 1);
    assert_int_equal(verify_copy(&c, &rep, &old, 1), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_INCONSISTENT);
    assert_true(rep.bad_seq == 1233);
    cpx_msg_free(old);
    cpx_sth_t *bad = forge_head(&c, gw, 1234, 1, head_time(&c, 1500));
    assert_int_equal(verify_copy(&c, &rep, &bad, 1), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_HEAD_ROOT);
    assert_true(rep.bad_seq == 1233);
    cpx_msg_free(bad);
    cpx_msg_free(fork);
    drop_copy(&c);
}

static void test_wrong_proofs(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "proofs");
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(c.env, NULL, MDB_RDONLY, &txn), 0);
    cpx_hash_t path[CPX_MAX_PROOF_PATH], root, lh;
    size_t len;
    const uint8_t *leaf;
    size_t leaf_len;
    assert_int_equal(cpx_audit_get_leaf_raw(c.audit, txn, 1234, &leaf, &leaf_len), CPX_OK);
    cpx_merkle_leaf_hash(leaf, leaf_len, lh);
    assert_int_equal(cpx_audit_root(c.audit, txn, 2500, root), CPX_OK);
    assert_int_equal(cpx_audit_prove_inclusion(c.audit, txn, 1234, 2500, path, &len), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 1234, 2500, path, len, root), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 1235, 2500, path, len, root), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 1234, 1300, path, len, root), CPX_ERR_PROOF);
    cpx_hash_t r3000;
    assert_int_equal(cpx_audit_root(c.audit, txn, 3000, r3000), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(lh, 1234, 3000, path, len, r3000),
                     CPX_ERR_PROOF);
    mdb_txn_abort(txn);
    drop_copy(&c);
}

static void test_forged_sender_signature(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/forged", root_dir);
    build(dir, 1);
    MDB_env *env;
    assert_int_equal(cpx_store_open(dir, 0, MDB_RDONLY, &env), CPX_OK);
    cpx_audit_t *a = cpx_audit_open(env);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1};
    cpx_averify_report_t rep;
    assert_int_equal(cpx_averify_store(a, txn, &o, &rep), CPX_ERR_TAMPERED);
    assert_int_equal(rep.problem, CPX_AV_SENDER_SIGNATURE);
    assert_true(rep.bad_seq == forged_seq);
    assert_true(rep.sig_failed == 1);
    /* the structure is intact: every leaf and head was still checked */
    assert_true(rep.leaves == N_EVENTS);
    /* without sender signatures the log is structurally clean */
    o.sender_signatures = 0;
    assert_int_equal(cpx_averify_store(a, txn, &o, &rep), CPX_OK);
    mdb_txn_abort(txn);
    cpx_audit_destroy(&a);
    mdb_env_close(env);
}

static uint8_t *export_bundle(copy_t *c, uint64_t from, uint64_t to, size_t *len)
{
    MDB_txn *txn;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    assert_int_equal(mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn), 0);
    uint64_t end;
    assert_int_equal(cpx_audit_export(c->audit, txn, gw, from, to, f, &end), CPX_OK);
    mdb_txn_abort(txn);
    fclose(f);
    return (uint8_t *)buf;
}

static void test_export_bundle(void **state)
{
    (void)state;
    copy_t c;
    make_copy(&c, "export");
    size_t len;
    uint8_t *b = export_bundle(&c, 1111, 2222, &len);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1};
    cpx_averify_report_t rep;
    assert_int_equal(cpx_averify_bundle(b, len, &o, &rep), CPX_OK);
    assert_true(rep.first_seq == 1111);
    assert_true(rep.tree_size == 2500); /* moved up to the covering head */
    assert_true(rep.heads == 3);        /* 1500, 2000, 2500 */
    assert_true(rep.keys_enrolled == 1);
    assert_true(rep.sig_checked > 300 && rep.sig_failed == 0);

    /* a flipped byte in an exported leaf breaks the next head's root */
    uint8_t *p = memmem(b + len / 2, len / 2, "POLICE", 6);
    assert_non_null(p);
    p[1] ^= 1;
    assert_int_equal(cpx_averify_bundle(b, len, &o, &rep), CPX_ERR_TAMPERED);
    assert_true(rep.problem == CPX_AV_HEAD_ROOT || rep.problem == CPX_AV_BAD_LEAF);
    p[1] ^= 1;
    /* every truncation is refused without reading past the end */
    for (size_t cut = 0; cut < len; cut += 1 + cut / 3) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        assert_int_equal(cpx_averify_bundle(t, cut, &o, &rep), CPX_ERR_TAMPERED);
        assert_int_equal(rep.problem, CPX_AV_BAD_BUNDLE);
        free(t);
    }
    /* another gateway key */
    o.gateway_pub = stranger;
    assert_int_equal(cpx_averify_bundle(b, len, &o, &rep), CPX_ERR_TAMPERED);
    free(b);

    /* from 0, whole log */
    o.gateway_pub = gw;
    b = export_bundle(&c, 0, 0, &len);
    assert_int_equal(cpx_averify_bundle(b, len, &o, &rep), CPX_OK);
    assert_true(rep.leaves == N_EVENTS);
    free(b);
    drop_copy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_log_verifies),
        cmocka_unit_test(test_empty_log),
        cmocka_unit_test(test_flipped_byte),
        cmocka_unit_test(test_rewritten_leaf_and_nodes),
        cmocka_unit_test(test_deleted_leaf),
        cmocka_unit_test(test_swapped_leaves),
        cmocka_unit_test(test_truncated_tail),
        cmocka_unit_test(test_head_signed_by_another_key),
        cmocka_unit_test(test_two_heads_same_size),
        cmocka_unit_test(test_wrong_proofs),
        cmocka_unit_test(test_forged_sender_signature),
        cmocka_unit_test(test_export_bundle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
