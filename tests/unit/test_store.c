/* Store: environment creation (mode 0700), read-only open, error mapping, BE keys,
 * counters held for a transaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpx/err.h"
#include "cpx/store.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/cpx_store_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_be(void **state)
{
    (void)state;
    uint8_t b[8];
    cpx_be64_put(b, UINT64_C(0x0102030405060708));
    const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want, 8);
    assert_true(cpx_be64_get(b) == UINT64_C(0x0102030405060708));
    cpx_be32_put(b, 0xa1b2c3d4u);
    assert_int_equal(b[0], 0xa1);
    assert_int_equal(b[3], 0xd4);
    assert_int_equal(cpx_be32_get(b), 0xa1b2c3d4u);
    /* BE keys sort numerically under memcmp */
    uint8_t x[8], y[8];
    cpx_be64_put(x, 255);
    cpx_be64_put(y, 256);
    assert_true(memcmp(x, y, 8) < 0);
}

static void test_open_create_and_readonly(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/env", tmpdir);
    MDB_env *env = NULL;
    /* read-only on a missing directory fails and creates nothing */
    assert_int_not_equal(cpx_store_open(dir, 1 << 20, MDB_RDONLY, &env), CPX_OK);
    assert_null(env);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);

    assert_int_equal(cpx_store_open(dir, 1 << 20, 0, &env), CPX_OK);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    unsigned flags;
    assert_int_equal(mdb_env_get_flags(env, &flags), 0);
    assert_true(flags & MDB_NOTLS);
    assert_false(flags & (MDB_NOSYNC | MDB_NOMETASYNC));
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "t", MDB_CREATE, &dbi), 0);
    MDB_val k = {3, "abc"}, v = {3, "xyz"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    /* a reader opens with MDB_RDONLY and sees the data, and cannot write */
    assert_int_equal(cpx_store_open(dir, 0, MDB_RDONLY, &env), CPX_OK);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "t", 0, &dbi), 0);
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_memory_equal(v.mv_data, "xyz", 3);
    mdb_txn_abort(txn);
    assert_int_not_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    mdb_env_close(env);
}

static void test_map_full(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/small", tmpdir);
    MDB_env *env = NULL;
    assert_int_equal(cpx_store_open(dir, 64 << 10, 0, &env), CPX_OK);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    int rc = 0;
    static char big[2048];
    for (uint64_t i = 0; i < 1000 && rc == 0; i++) {
        uint8_t key[8];
        cpx_be64_put(key, i);
        MDB_val k = {8, key}, v = {sizeof big, big};
        rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
    }
    assert_int_equal(cpx_store_err(rc, "fill"), CPX_ERR_FULL);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    assert_int_equal(cpx_store_err(MDB_NOTFOUND, "x"), CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_store_err(MDB_CORRUPTED, "x"), CPX_ERR_STORE);
    assert_int_equal(cpx_store_err(0, "x"), CPX_OK);
}

/* A module's databases: created in a writable store, opened in a read-only one, and
 * "not found" (no log, no crash) when a read-only store predates the module. */
static void test_open_dbs(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/dbs", tmpdir);
    MDB_env *env = NULL;
    assert_int_equal(cpx_store_open(dir, 1 << 20, 0, &env), CPX_OK);
    MDB_dbi a = 0, b = 0, c = 0;
    const cpx_store_db_t first[] = {{"m.a", 0, &a}, {"m.b", MDB_DUPSORT, &b}};
    assert_int_equal(cpx_store_open_dbs(env, "test", first, 2), CPX_OK);
    assert_true(a != b);
    /* b really is DUPSORT: two values under one key */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_val k = {1, "k"}, v1 = {1, "1"}, v2 = {1, "2"};
    assert_int_equal(mdb_put(txn, b, &k, &v1, 0), 0);
    assert_int_equal(mdb_put(txn, b, &k, &v2, 0), 0);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, b, &st), 0);
    assert_int_equal(st.ms_entries, 2);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(cpx_store_open(dir, 1 << 20, MDB_RDONLY, &env), CPX_OK);
    MDB_dbi a2 = 0, b2 = 0;
    const cpx_store_db_t again[] = {{"m.a", 0, &a2}, {"m.b", MDB_DUPSORT, &b2}};
    assert_int_equal(cpx_store_open_dbs(env, "test", again, 2), CPX_OK);
    const cpx_store_db_t newer[] = {{"m.a", 0, &a2}, {"m.c", 0, &c}};
    assert_int_equal(cpx_store_open_dbs(env, "test", newer, 2), CPX_ERR_NOT_FOUND);
    mdb_env_close(env);
}

static uint64_t stored(MDB_env *env, MDB_dbi dbi)
{
    MDB_txn *txn;
    MDB_val k = {4, "next"}, v;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mdb_get(txn, dbi, &k, &v);
    uint64_t n = rc == 0 && v.mv_size == 8 ? cpx_be64_get(v.mv_data) : 0;
    mdb_txn_abort(txn);
    return n;
}

/* The next take from c in txn is want. */
static void takes(cpx_counter_t *c, MDB_txn *txn, uint64_t want)
{
    uint64_t n = 0;
    assert_int_equal(cpx_counter_take(c, txn, &n), CPX_OK);
    assert_true(n == want);
}

static void test_counter(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/counter", tmpdir);
    MDB_env *env = NULL;
    assert_int_equal(cpx_store_open(dir, 1 << 20, 0, &env), CPX_OK);
    MDB_dbi meta = 0;
    const cpx_store_db_t dbs[] = {{"m.meta", 0, &meta}};
    assert_int_equal(cpx_store_open_dbs(env, "test", dbs, 1), CPX_OK);
    cpx_counter_t c = {.dbi = meta, .key = "next"};
    MDB_txn *txn;

    /* taken alone: 1, 2 (absent counts from 1), each written at once */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    takes(&c, txn, 1);
    takes(&c, txn, 2);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_true(stored(env, meta) == 3);

    /* held: 3..102 from memory, the record written once at end */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_counter_begin(&c, txn), CPX_OK);
    for (uint64_t want = 3; want < 103; want++)
        takes(&c, txn, want);
    MDB_val k = {4, "next"}, v;
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    assert_true(cpx_be64_get(v.mv_data) == 3);  /* not yet written */
    assert_int_equal(cpx_counter_end(&c, txn), CPX_OK);
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    assert_true(cpx_be64_get(v.mv_data) == 103);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_true(stored(env, meta) == 103);

    /* held, then aborted: the numbers come back; the next begin reads the store again */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_counter_begin(&c, txn), CPX_OK);
    takes(&c, txn, 103);
    mdb_txn_abort(txn);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_counter_begin(&c, txn), CPX_OK);
    takes(&c, txn, 103);
    assert_int_equal(cpx_counter_end(&c, txn), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_true(stored(env, meta) == 104);

    /* ended (or never begun) in this transaction: a take reads and writes the store */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    takes(&c, txn, 104);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_true(stored(env, meta) == 105);

    /* begun in an aborted transaction and dropped: the next transaction (which has the
     * aborted one's handle and id) takes from the store, not from the stale memory */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_counter_begin(&c, txn), CPX_OK);
    takes(&c, txn, 105);
    takes(&c, txn, 106);
    mdb_txn_abort(txn);
    cpx_counter_drop(&c);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_counter_end(&c, txn), CPX_OK);  /* writes nothing */
    takes(&c, txn, 105);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_true(stored(env, meta) == 106);
    mdb_env_close(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_be),
        cmocka_unit_test(test_open_create_and_readonly),
        cmocka_unit_test(test_map_full),
        cmocka_unit_test(test_open_dbs),
        cmocka_unit_test(test_counter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
