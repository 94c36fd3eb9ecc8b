/* The gateway's message store (gateway/cases.c) at rest: the sealed record format
 * pinned by known bytes. A record written with a known key, nonce, AAD and envelope
 * (computed with an independent AES-GCM, Python's cryptography) must open, so stores
 * written earlier stay readable; a flipped tag byte and a record moved to another seq
 * (another AAD) are refused; records written now carry nonce = one prefix per handle |
 * BE32 counter from 1 and are exactly the AES-256-GCM of that nonce, the documented AAD
 * and the envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cases.h"
#include "cpx/store.h"

/* Test hook exported by lib/crypto.c (not part of the public API). */
int cpx_aead_seal_with_nonce_for_test(const uint8_t key[CPX_AEAD_KEY_LEN],
                                      const uint8_t nonce[CPX_AEAD_NONCE_LEN], const void *aad,
                                      size_t aad_len, const void *pt, size_t pt_len,
                                      uint8_t *out);

static const uint8_t KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const char SENDER[] = "TOWN_HUASHI", CASE_ID[] = "JY-2026-000042";
static const char HEAD[] = "\x0bTOWN_HUASHI\x0eJY-2026-000042";
#define HEAD_LEN (sizeof HEAD - 1)
static const char ENV[] = "cpx known-answer envelope\x00\x01\x02\xff";
#define ENV_LEN (sizeof ENV - 1)
#define REC_LEN (HEAD_LEN + ENV_LEN + CPX_AEAD_OVERHEAD)
/* seq 42, nonce f0e1d2c3b4a59687 | 00000001 */
static const char KAT_SEALED[] = "f0e1d2c3b4a5968700000001"
                                 "71d0c5cc2465396f805ab58f3ea010a3e04f36dbb61b021890d705e385"
                                 "b3f6900fe24187c706db216135ee6472";

static char dir[64];
static MDB_env *env;
static MDB_dbi msgs;

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/cpx_gwcases_XXXXXX");
    if (!mkdtemp(dir) || cpx_store_open(dir, 16u << 20, 0, &env) != CPX_OK)
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/store.key", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, KEY, sizeof KEY) != (ssize_t)sizeof KEY)
        return -1;
    return close(fd);
}

static int teardown(void **state)
{
    (void)state;
    mdb_env_close(env);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static cpx_gw_cases_t *open_cases(void)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/store.key", dir);
    cpx_gw_cases_t *c = NULL;
    assert_int_equal(cpx_gw_cases_open(env, path, &c, err, sizeof err), CPX_OK);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "gw.msgs", 0, &msgs), 0);
    mdb_txn_abort(txn);
    return c;
}

static void put_raw(MDB_txn *txn, uint64_t seq, const uint8_t *rec, size_t len)
{
    uint8_t k[8];
    cpx_be64_put(k, seq);
    MDB_val key = {8, k}, v = {len, (void *)rec};
    assert_int_equal(mdb_put(txn, msgs, &key, &v, 0), 0);
}

static void get_raw(MDB_txn *txn, uint64_t seq, uint8_t rec[REC_LEN])
{
    uint8_t k[8];
    cpx_be64_put(k, seq);
    MDB_val key = {8, k}, v;
    assert_int_equal(mdb_get(txn, msgs, &key, &v), 0);
    assert_int_equal(v.mv_size, REC_LEN);
    memcpy(rec, v.mv_data, REC_LEN);
}

/* "cpx.v1.store" 00 | BE64(seq) | head */
static size_t store_aad(uint64_t seq, uint8_t *aad)
{
    memcpy(aad, "cpx.v1.store", 13);
    cpx_be64_put(aad + 13, seq);
    memcpy(aad + 21, HEAD, HEAD_LEN);
    return 21 + HEAD_LEN;
}

static void test_known_record_opens(void **state)
{
    (void)state;
    cpx_gw_cases_t *c = open_cases();
    uint8_t rec[REC_LEN];
    memcpy(rec, HEAD, HEAD_LEN);
    assert_int_equal(cpx_unhex(KAT_SEALED, rec + HEAD_LEN, ENV_LEN + CPX_AEAD_OVERHEAD), CPX_OK);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    put_raw(txn, 42, rec, sizeof rec);
    cpx_gw_msg_t m;
    assert_int_equal(cpx_gw_cases_get(c, txn, 42, &m), CPX_OK);
    assert_string_equal(m.sender, SENDER);
    assert_string_equal(m.case_id, CASE_ID);
    assert_int_equal(m.env_len, ENV_LEN);
    assert_memory_equal(m.env, ENV, ENV_LEN);

    /* refused: a flipped tag byte; the same bytes under seq 43 (another AAD) */
    rec[sizeof rec - 1] ^= 0x01;
    put_raw(txn, 42, rec, sizeof rec);
    assert_int_equal(cpx_gw_cases_get(c, txn, 42, &m), CPX_ERR_TAMPERED);
    rec[sizeof rec - 1] ^= 0x01;
    put_raw(txn, 43, rec, sizeof rec);
    assert_int_equal(cpx_gw_cases_get(c, txn, 43, &m), CPX_ERR_TAMPERED);
    put_raw(txn, 42, rec, sizeof rec);
    assert_int_equal(cpx_gw_cases_get(c, txn, 42, &m), CPX_OK);
    mdb_txn_abort(txn);
    cpx_gw_cases_destroy(&c);
}

static void test_written_record_layout(void **state)
{
    (void)state;
    /* handles first: opening one begins a transaction of its own */
    cpx_gw_cases_t *c = open_cases(), *d = cpx_gw_cases_share(c, env);
    assert_non_null(d);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    uint8_t got[3][REC_LEN], want[ENV_LEN + CPX_AEAD_OVERHEAD], aad[64];
    for (uint64_t seq = 42; seq <= 43; seq++) {
        uint8_t id[2] = {'m', (uint8_t)seq};
        assert_int_equal(cpx_gw_cases_put_message(c, txn, seq, id, sizeof id, SENDER, CASE_ID,
                                                  (const uint8_t *)ENV, ENV_LEN), CPX_OK);
        uint8_t *rec = got[seq - 42];
        get_raw(txn, seq, rec);
        assert_memory_equal(rec, HEAD, HEAD_LEN);
        const uint8_t counter[4] = {0, 0, 0, (uint8_t)(seq - 41)};
        assert_memory_equal(rec + HEAD_LEN + 8, counter, 4);
        size_t al = store_aad(seq, aad);
        assert_int_equal(cpx_aead_seal_with_nonce_for_test(KEY, rec + HEAD_LEN, aad, al, ENV,
                                                           ENV_LEN, want), CPX_OK);
        assert_memory_equal(rec + HEAD_LEN, want, sizeof want);
        cpx_gw_msg_t m;
        assert_int_equal(cpx_gw_cases_get(c, txn, seq, &m), CPX_OK);
        assert_memory_equal(m.env, ENV, ENV_LEN);
    }
    assert_memory_equal(got[0] + HEAD_LEN, got[1] + HEAD_LEN, 8);  /* one prefix per handle */

    /* a shared handle (another thread's) draws its own prefix and counts from 1 */
    assert_int_equal(cpx_gw_cases_put_message(d, txn, 44, (const uint8_t *)"m44", 3, SENDER,
                                              CASE_ID, (const uint8_t *)ENV, ENV_LEN), CPX_OK);
    get_raw(txn, 44, got[2]);
    assert_memory_equal(got[2] + HEAD_LEN + 8, ((const uint8_t[4]){0, 0, 0, 1}), 4);
    assert_memory_not_equal(got[2] + HEAD_LEN, got[0] + HEAD_LEN, 8);
    mdb_txn_abort(txn);
    cpx_gw_cases_destroy(&d);
    cpx_gw_cases_destroy(&c);
}

/* Puts seq with an envelope of n bytes all `fill`, under id "r<seq>". */
static void put_filled(cpx_gw_cases_t *c, MDB_txn *txn, uint64_t seq, uint8_t fill, size_t n)
{
    uint8_t envb[3000], id[3] = {'r', (uint8_t)(seq >> 8), (uint8_t)seq};
    memset(envb, fill, n);
    assert_int_equal(cpx_gw_cases_put_message(c, txn, seq, id, sizeof id, SENDER, CASE_ID, envb, n),
                     CPX_OK);
}

/* The message at seq reads back as n bytes of fill (from the copy or the store). */
static void expect_filled(cpx_gw_cases_t *c, MDB_txn *txn, uint64_t seq, uint8_t fill, size_t n)
{
    cpx_gw_msg_t m;
    assert_int_equal(cpx_gw_cases_get(c, txn, seq, &m), CPX_OK);
    assert_string_equal(m.sender, SENDER);
    assert_string_equal(m.case_id, CASE_ID);
    assert_int_equal(m.env_len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m.env[i], fill);
}

/* The writer's recent copies: served for what was just stored, never for what was
 * blanked (sealed away) or taken back by an aborted transaction, and the store answers
 * whatever the ring no longer holds. */
static void test_recent_copies(void **state)
{
    (void)state;
    cpx_gw_cases_t *c = open_cases(), *plain = cpx_gw_cases_share(c, env);
    assert_int_equal(cpx_gw_cases_keep_recent(c, 16384, 8), CPX_OK);
    assert_int_equal(cpx_gw_cases_keep_recent(c, 16384, 8), CPX_ERR_ARG);
    assert_int_equal(cpx_gw_cases_keep_recent(plain, 16384, 6), CPX_ERR_ARG);  /* not 2^n */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (uint64_t s = 1; s <= 3; s++)
        put_filled(c, txn, s, (uint8_t)s, 1000);
    uint64_t h = cpx_gw_cases_recent_hits(c);
    for (uint64_t s = 1; s <= 3; s++)
        expect_filled(c, txn, s, (uint8_t)s, 1000);
    assert_int_equal(cpx_gw_cases_recent_hits(c) - h, 3);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_gw_cases_committed(c);

    /* blanked: the copy is gone, the store's blank record answers */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_gw_cases_blank(c, txn, 2), CPX_OK);
    h = cpx_gw_cases_recent_hits(c);
    cpx_gw_msg_t m;
    assert_int_equal(cpx_gw_cases_get(c, txn, 2, &m), CPX_OK);
    assert_int_equal(m.env_len, 0);
    assert_int_equal(cpx_gw_cases_recent_hits(c), h);

    /* aborted: seq 4 as first written is taken back (and the blank with it); the second
     * writing is what reads */
    put_filled(c, txn, 4, 0xAA, 500);
    mdb_txn_abort(txn);
    cpx_gw_cases_aborted(c);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    expect_filled(c, txn, 2, 2, 1000);  /* the store's again */
    put_filled(c, txn, 4, 0xBB, 700);
    expect_filled(c, txn, 4, 0xBB, 700);
    assert_int_equal(cpx_gw_cases_get(plain, txn, 4, &m), CPX_OK);  /* the store agrees */
    assert_int_equal(m.env_len, 700);
    h = cpx_gw_cases_recent_hits(c);
    expect_filled(c, txn, 1, 1, 1000);  /* kept through the abort */
    assert_int_equal(cpx_gw_cases_recent_hits(c) - h, 1);

    /* more than the ring holds (16 KiB, 8 entries): the oldest come from the store */
    for (uint64_t s = 5; s <= 40; s++)
        put_filled(c, txn, s, (uint8_t)s, 1500 + (size_t)(s % 7) * 100);
    assert_int_equal(mdb_txn_commit(txn), 0);
    cpx_gw_cases_committed(c);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    h = cpx_gw_cases_recent_hits(c);
    for (uint64_t s = 5; s <= 40; s++)
        expect_filled(c, txn, s, (uint8_t)s, 1500 + (size_t)(s % 7) * 100);
    uint64_t hits = cpx_gw_cases_recent_hits(c) - h;
    assert_true(hits >= 5 && hits <= 8);  /* the last few only */
    expect_filled(c, txn, 1, 1, 1000);
    mdb_txn_abort(txn);
    cpx_gw_cases_destroy(&plain);
    cpx_gw_cases_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_known_record_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_record_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent_copies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
