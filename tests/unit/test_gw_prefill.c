/* gateway/prefill.c: zeros ahead of LMDB's last page, written only inside the write
 * window, never over a committed page, never past the map. Real LMDB files in the build
 * directory (O_DIRECT needs a disk file system; /tmp may be tmpfs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "prefill.h"
#include "cpx/err.h"
#include "cpx/store.h"

static char dir[1024];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/test_gw_prefill.XXXXXX", CPX_BINARY_DIR);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t file_size(void)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static uint64_t used(MDB_env *env)
{
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_info(env, &info), 0);
    assert_int_equal(mdb_env_stat(env, &st), 0);
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A record's value: 1 KiB derived from its number, so a zeroed page shows. */
static void value_of(uint32_t n, uint8_t v[1024])
{
    for (size_t i = 0; i < 1024; i++)
        v[i] = (uint8_t)(n * 131u + i * 7u + 1u);
}

/* One write transaction with the window open while it puts n records from first. The
 * window stays open hold_ms, or with WAIT_FILL until the thread has written some zeros
 * in it (at most 5 s: a loaded test host may be slow to schedule the thread). */
#define WAIT_FILL (-1)
static void cycle(MDB_env *env, MDB_dbi dbi, cpx_gw_prefill_t *p, uint32_t first, uint32_t n,
                  long hold_ms)
{
    uint64_t before = cpx_gw_prefill_written(p);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cpx_gw_prefill_open(p);
    for (uint32_t i = first; i < first + n; i++) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        uint8_t v[1024];
        value_of(i, v);
        MDB_val key = {4, k}, val = {sizeof v, v};
        assert_int_equal(mdb_put(txn, dbi, &key, &val, MDB_APPEND), 0);
    }
    if (hold_ms == WAIT_FILL)
        for (int i = 0; i < 5000 && cpx_gw_prefill_written(p) == before; i++)
            nap_ms(1);
    else if (hold_ms)
        nap_ms(hold_ms);  /* as a cycle that verifies and routes for a while */
    cpx_gw_prefill_close(p);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* A store of map bytes with one table, and its prefill thread. NULL when the build
 * directory's file system refuses O_DIRECT (the caller skips; env is closed then). */
static cpx_gw_prefill_t *start(uint64_t map, uint64_t ahead, MDB_env **env, MDB_dbi *dbi)
{
    MDB_txn *txn;
    assert_int_equal(cpx_store_open(dir, map, 0, env), CPX_OK);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "t", MDB_CREATE, dbi), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_gw_prefill_t *p = cpx_gw_prefill_new(*env, ahead);
    if (!p)
        mdb_env_close(*env);
    return p;
}

static void test_off(void **state)
{
    (void)state;
    MDB_env *env;
    assert_int_equal(cpx_store_open(dir, 16u << 20, 0, &env), CPX_OK);  /* no table needed */
    assert_null(cpx_gw_prefill_new(env, 0));
    assert_null(cpx_gw_prefill_new(NULL, 1u << 20));
    /* NULL is accepted everywhere: the server calls these unconditionally */
    cpx_gw_prefill_open(NULL);
    cpx_gw_prefill_close(NULL);
    assert_int_equal(cpx_gw_prefill_written(NULL), 0);
    cpx_gw_prefill_destroy(NULL);
    mdb_env_close(env);
}

static void test_fills_only_inside_the_window(void **state)
{
    (void)state;
    MDB_env *env;
    MDB_dbi dbi;
    cpx_gw_prefill_t *p = start(256u << 20, 4u << 20, &env, &dbi);
    if (!p)
        skip();  /* the build directory's file system refuses O_DIRECT */
    /* Outside a window nothing is written, however long the thread waits. */
    uint64_t before = file_size();
    nap_ms(100);
    assert_true(file_size() == before);
    assert_true(cpx_gw_prefill_written(p) == 0);

    /* Inside one: the file gets a lead of zeros past the last page. */
    cycle(env, dbi, p, 0, 8, WAIT_FILL);
    uint64_t w = cpx_gw_prefill_written(p);
    assert_true(w >= (256u << 10));
    assert_true(file_size() >= used(env) + (128u << 10));  /* the cycle wrote some of it */

    /* The window closed with the commit: no more zeros until the next one. */
    uint64_t size = file_size();
    nap_ms(100);
    assert_true(file_size() == size);
    assert_true(cpx_gw_prefill_written(p) == w);

    /* Windows keep the lead up to ahead, and no further. */
    for (uint32_t c = 1; c < 80 || file_size() < used(env) + (2u << 20); c++) {
        assert_true(c < 2000);
        cycle(env, dbi, p, c * 8, 8, 1);
    }
    assert_true(file_size() <= used(env) + (4u << 20) + (1u << 20));
    cpx_gw_prefill_destroy(&p);
    assert_null(p);
    mdb_env_close(env);
}

static void test_committed_data_intact(void **state)
{
    (void)state;
    MDB_env *env;
    MDB_dbi dbi;
    cpx_gw_prefill_t *p = start(256u << 20, 2u << 20, &env, &dbi);
    if (!p)
        skip();
    /* Cycles that grow the file faster than one step fills: LMDB runs past the zeros
     * and extends the file itself, and zeros are then written only past its pages. */
    const uint32_t per = 300, cycles = 40;
    for (uint32_t c = 0; c < cycles; c++)
        cycle(env, dbi, p, c * per, per, c % 4 == 0 ? WAIT_FILL : (long)(c % 3));
    assert_true(cpx_gw_prefill_written(p) > 0);
    cpx_gw_prefill_destroy(&p);
    mdb_env_close(env);

    /* Every record reads back as written, from a fresh open of the file. */
    assert_int_equal(cpx_store_open(dir, 256u << 20, 0, &env), CPX_OK);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "t", 0, &dbi), 0);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    assert_int_equal(st.ms_entries, per * cycles);
    for (uint32_t i = 0; i < per * cycles; i++) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        uint8_t want[1024];
        value_of(i, want);
        MDB_val key = {4, k}, val;
        assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
        assert_int_equal(val.mv_size, sizeof want);
        assert_memory_equal(val.mv_data, want, sizeof want);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void test_never_past_the_map(void **state)
{
    (void)state;
    MDB_env *env;
    MDB_dbi dbi;
    const uint64_t map = 2u << 20;
    cpx_gw_prefill_t *p = start(map, 64u << 20, &env, &dbi);
    if (!p)
        skip();
    cycle(env, dbi, p, 0, 4, WAIT_FILL);
    for (uint32_t c = 1; c < 20; c++)
        cycle(env, dbi, p, c * 4, 4, 2);
    /* A longer file would be taken by LMDB as a larger map on the next open. */
    assert_true(file_size() <= map);
    assert_true(file_size() > used(env));
    cpx_gw_prefill_destroy(&p);
    mdb_env_close(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fills_only_inside_the_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_committed_data_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_past_the_map, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
