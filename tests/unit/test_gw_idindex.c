/* The message-id index (gateway/idindex.c) on real LMDB files: every id put is found
 * again with its seq, by the writer's live handle, by another handle and after a
 * reopen, at every moment of a fold: before, during, after, across aborted
 * transactions and a restart half-way. A fold must empty the log into the tree; ids of
 * an aborted transaction must be gone; a repeated id and a seq that does not grow are
 * refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idindex.h"
#include "cpx/err.h"
#include "cpx/store.h"

static char dir[64];
static MDB_env *env;

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/cpx_gwids_XXXXXX");
    return mkdtemp(dir) && cpx_store_open(dir, 64u << 20, 0, &env) == CPX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mdb_env_close(env);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Id i: 16 bytes that look random (so the tree's order is not the log's), except ids
 * of the form 4k+3, which are shorter (LMDB orders a prefix before its extensions). */
static size_t make_id(uint64_t i, uint8_t id[16])
{
    uint64_t a = (i + 1) * 0x9e3779b97f4a7c15ull, b = a ^ (a >> 29) ^ i;
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
    return i % 4 == 3 ? 9 : 16;
}

static uint64_t seq_of(uint64_t i) { return 1000 + 3 * i; }

static MDB_txn *begin(void)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    return txn;
}

/* One writer cycle: ids [from, to) put, one fold step, then commit (or abort). */
static void cycle(cpx_gw_ids_t *w, uint64_t from, uint64_t to, int commit)
{
    MDB_txn *txn = begin();
    uint8_t id[16];
    for (uint64_t i = from; i < to; i++) {
        size_t len = make_id(i, id);
        assert_int_equal(cpx_gw_ids_put(w, txn, id, len, seq_of(i)), CPX_OK);
    }
    assert_int_equal(cpx_gw_ids_step(w, txn), CPX_OK);
    if (commit) {
        assert_int_equal(mdb_txn_commit(txn), 0);
        cpx_gw_ids_committed(w);
    } else {
        mdb_txn_abort(txn);
        cpx_gw_ids_aborted(w);
    }
}

/* Every id in [0, n) is found with its seq, and [n, n + 50) are not. */
static void all_found(cpx_gw_ids_t *h, uint64_t n)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    uint8_t id[16];
    for (uint64_t i = 0; i < n + 50; i++) {
        size_t len = make_id(i, id);
        uint64_t seq = 0;
        int rc = cpx_gw_ids_get(h, txn, id, len, &seq);
        if (i < n) {
            assert_int_equal(rc, CPX_OK);
            assert_int_equal(seq, seq_of(i));
        } else {
            assert_int_equal(rc, CPX_ERR_NOT_FOUND);
        }
    }
    mdb_txn_abort(txn);
}

static void counts(cpx_gw_ids_t *h, size_t *log, size_t *tree)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_gw_ids_counts(h, txn, log, tree), CPX_OK);
    mdb_txn_abort(txn);
}

static cpx_gw_ids_t *writer(void)
{
    cpx_gw_ids_t *w = cpx_gw_ids_open(env);
    assert_non_null(w);
    assert_int_equal(cpx_gw_ids_live(w, env), CPX_OK);
    assert_int_equal(cpx_gw_ids_live(w, env), CPX_ERR_ARG);
    cpx_gw_ids_tune(w, 100, 30);
    return w;
}

/* Cycles of 17 ids: folds start at 100 logged ids, move 30 per cycle and clear 120, so
 * the log never holds much more than 100 + what arrives during a fold (6 cycles), and
 * ids end in the tree. */
static void test_fold_moves_everything(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer(), *other = cpx_gw_ids_open(env);
    assert_non_null(other);
    uint64_t n = 0;
    size_t log, tree, max_log = 0;
    for (int c = 0; c < 60; c++, n += 17) {
        cycle(w, n, n + 17, 1);
        counts(w, &log, &tree);
        assert_int_equal(log + tree >= n + 17, 1);
        if (log > max_log)
            max_log = log;
        if (c % 7 == 0) {
            all_found(w, n + 17);
            all_found(other, n + 17);
        }
    }
    all_found(w, n);
    all_found(other, n);
    counts(w, &log, &tree);
    assert_true(tree >= 700);       /* 1020 put: most were folded */
    assert_true(max_log < 250);     /* 100 + a fold's arrivals, about 100 */
    assert_int_equal(log + tree >= n, 1);
    /* Drain: cycles without new ids finish the fold in progress. */
    for (int c = 0; c < 10; c++)
        cycle(w, n, n, 1);
    counts(w, &log, &tree);
    assert_int_equal(tree, n - log);  /* nothing twice once a fold is done */
    assert_true(log < 100);
    cpx_gw_ids_destroy(&w);
    cpx_gw_ids_destroy(&other);
    /* A restart (a new live handle reads the log back) finds all of them. */
    w = writer();
    all_found(w, n);
    cpx_gw_ids_destroy(&w);
}

/* An aborted cycle's ids are gone, and an aborted fold step (including the one that
 * clears the log) is done again by the next cycle. */
static void test_abort_takes_back(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer();
    cycle(w, 0, 120, 1);           /* 120 >= 100: the next step starts a fold */
    for (int c = 0; c < 6; c++)    /* every step aborted, with new ids each time */
        cycle(w, 120, 130, 0);
    all_found(w, 120);
    size_t log, tree;
    counts(w, &log, &tree);
    assert_int_equal(log, 120);
    assert_int_equal(tree, 0);
    /* Steps of 30: 4 move the run of 120 into the tree, the 5th clears it from the log.
     * Ids put in a cycle that aborts after are gone. */
    for (int c = 0; c < 4; c++)
        cycle(w, 120 + 10 * (uint64_t)c, 130 + 10 * (uint64_t)c, 1);
    counts(w, &log, &tree);
    assert_int_equal(tree, 120);
    assert_int_equal(log, 160);
    cycle(w, 160, 170, 1);
    counts(w, &log, &tree);
    assert_int_equal(tree, 120);
    assert_int_equal(log, 50);
    all_found(w, 170);
    cycle(w, 170, 180, 0);
    all_found(w, 170);
    cpx_gw_ids_t *fresh = cpx_gw_ids_open(env);
    all_found(fresh, 170);
    cpx_gw_ids_destroy(&fresh);
    cpx_gw_ids_destroy(&w);
}

/* The process stops half-way through a fold: the new writer finds every id and folds
 * again from the start (the tree's puts are repeated, not doubled). */
static void test_restart_mid_fold(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer();
    cycle(w, 0, 150, 1);
    cycle(w, 150, 150, 1);  /* the fold starts */
    cycle(w, 150, 160, 1);  /* 30 moved */
    cycle(w, 160, 160, 1);  /* 60 moved */
    size_t log, tree;
    counts(w, &log, &tree);
    assert_int_equal(log, 160);
    assert_int_equal(tree, 60);
    cpx_gw_ids_destroy(&w);
    w = writer();
    all_found(w, 160);
    for (int c = 0; c < 10; c++)  /* start, 6 moves of 30, 2 clears of 120 */
        cycle(w, 160, 160, 1);
    counts(w, &log, &tree);
    assert_int_equal(log, 0);
    assert_int_equal(tree, 160);
    all_found(w, 160);
    cpx_gw_ids_destroy(&w);
}

/* Untuned steps: the run is sorted on a thread and steps are sized by the cycle's puts
 * (at least 64): the fold still completes and every id stays found on the way. */
static void test_sorted_on_a_thread(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = cpx_gw_ids_open(env);
    assert_non_null(w);
    assert_int_equal(cpx_gw_ids_live(w, env), CPX_OK);
    cpx_gw_ids_tune(w, 500, 0);
    uint64_t n = 0;
    size_t log = 0, tree = 0;
    for (int c = 0; c < 2000 && tree == 0; c++, n += 40) {
        cycle(w, n, n + 40, 1);
        counts(w, &log, &tree);
        if (c % 10 == 0)
            all_found(w, n + 40);
        usleep(200);  /* lets the sorter run */
    }
    assert_true(tree > 0);
    for (int c = 0; c < 2000 && tree + log > n; c++) {  /* quiet cycles finish the fold */
        cycle(w, n, n, 1);
        counts(w, &log, &tree);
    }
    assert_true(log < 500);
    assert_int_equal(tree + log, n);
    all_found(w, n);
    cpx_gw_ids_destroy(&w);
}

static void test_refusals(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer();
    uint8_t id[16];
    size_t len = make_id(1, id);
    MDB_txn *txn = begin();
    assert_int_equal(cpx_gw_ids_put(w, txn, id, len, 10), CPX_OK);
    assert_int_equal(cpx_gw_ids_put(w, txn, id, len, 11), CPX_ERR_STATE);   /* again */
    len = make_id(2, id);
    assert_int_equal(cpx_gw_ids_put(w, txn, id, len, 10), CPX_ERR_STATE);   /* seq 10 again */
    assert_int_equal(cpx_gw_ids_put(w, txn, id, len, 9), CPX_ERR_STATE);    /* seq back */
    assert_int_equal(cpx_gw_ids_put(w, txn, id, 0, 12), CPX_ERR_ARG);
    assert_int_equal(cpx_gw_ids_put(w, txn, id, 17, 12), CPX_ERR_ARG);
    uint64_t seq;
    assert_int_equal(cpx_gw_ids_get(w, txn, id, 0, &seq), CPX_ERR_NOT_FOUND);
    assert_int_equal(cpx_gw_ids_put(w, txn, id, len, 12), CPX_OK);
    assert_int_equal(cpx_gw_ids_get(w, txn, id, len, &seq), CPX_OK);
    assert_int_equal(seq, 12);
    /* An id and its prefix are different ids. */
    assert_int_equal(cpx_gw_ids_get(w, txn, id, len - 1, &seq), CPX_ERR_NOT_FOUND);
    mdb_txn_abort(txn);
    cpx_gw_ids_aborted(w);
    cpx_gw_ids_destroy(&w);
}

/* 10,000 ids and no fold: the table grows past its first capacity (4,096) twice and
 * finds every id, before and after a restart. */
static void test_table_grows(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer();
    cpx_gw_ids_tune(w, 1u << 20, 30);
    for (uint64_t n = 0; n < 10000; n += 1000)
        cycle(w, n, n + 1000, 1);
    all_found(w, 10000);
    cpx_gw_ids_destroy(&w);
    w = writer();
    all_found(w, 10000);
    cpx_gw_ids_destroy(&w);
}

/* A log record that cannot be an id (17 bytes) stops the writer's start: the index
 * would otherwise miss it, and a resend of that message would be accepted again. */
static void test_damaged_log(void **state)
{
    (void)state;
    cpx_gw_ids_t *w = writer();
    cycle(w, 0, 5, 1);
    cpx_gw_ids_destroy(&w);
    MDB_txn *txn = begin();
    MDB_dbi log;
    assert_int_equal(mdb_dbi_open(txn, "gw.midlog", 0, &log), 0);
    uint8_t kb[8], bad[17] = {0};
    cpx_be64_put(kb, 999999);
    MDB_val k = {8, kb}, v = {sizeof bad, bad};
    assert_int_equal(mdb_put(txn, log, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    w = cpx_gw_ids_open(env);
    assert_non_null(w);
    assert_int_equal(cpx_gw_ids_live(w, env), CPX_ERR_TAMPERED);
    cpx_gw_ids_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fold_moves_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_takes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_mid_fold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sorted_on_a_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_log, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
