/* Vault: round trip, AAD binding (id, kind), flipped bit, wrong and lost key, nothing
 * in clear on disk, pseudonym indexes, rotation followed by a second (gateway) handle. */
#include <fcntl.h>
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

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/store.h"
#include "cpx/vault.h"

static char tmpdir[64];
static char keypath[128], datadir[128];
static const uint8_t pkey[32] = {9, 9, 9};
static const char secret[] = "SECRET-NAME-Zhang-320281200801011234";

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/cpx_vault_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(keypath, sizeof keypath, "%s/vault.key", tmpdir);
    snprintf(datadir, sizeof datadir, "%s/data", tmpdir);
    return cpx_symkey_create(keypath) == CPX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static MDB_env *open_env(void)
{
    MDB_env *env = NULL;
    assert_int_equal(cpx_store_open(datadir, 64u << 20, 0, &env), CPX_OK);
    return env;
}

static void id_of(uint8_t id[16], int n)
{
    memset(id, 0, 16);
    id[0] = 0xa5;
    id[15] = (uint8_t)n;
}

static void put(cpx_vault_t *v, MDB_env *env, int n, const char *text)
{
    MDB_txn *txn;
    uint8_t id[16];
    id_of(id, n);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_vault_sync(v, txn), CPX_OK);
    assert_int_equal(cpx_vault_put(v, txn, id, CPX_VAULT_RECORD, text, strlen(text), 1000), CPX_OK);
    assert_int_equal(cpx_vault_index(v, txn, CPX_VAULT_TAG_SUBJECT, "320281200801011234", id), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static int get(cpx_vault_t *v, MDB_env *env, int n, char *out, size_t size)
{
    MDB_txn *txn;
    uint8_t id[16], *pt = NULL;
    size_t len = 0;
    id_of(id, n);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    int rc = cpx_vault_get(v, txn, id, &pt, &len, NULL);
    mdb_txn_abort(txn);
    if (!rc) {
        assert_true(len < size);
        memcpy(out, pt, len);
        out[len] = '\0';
        free(pt);
    }
    return rc;
}

static void test_key_id_known_answer(void **state)
{
    (void)state;
    uint8_t k[32] = {0}, id[8];
    char hex[17];
    cpx_vault_key_id(k, id);
    cpx_hex(id, 8, hex);
    assert_string_equal(hex, "f19666fbbb2a393f");
    for (int i = 0; i < 32; i++)
        k[i] = (uint8_t)i;
    cpx_vault_key_id(k, id);
    cpx_hex(id, 8, hex);
    assert_string_equal(hex, "4ccc1dbc1dd81a8c");
}

static int file_contains(const char *path, const void *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    int found = 0;
    for (size_t i = 0; i + n <= got && !found; i++)
        found = !memcmp(buf + i, needle, n);
    free(buf);
    return found;
}

static void test_round_trip_and_binding(void **state)
{
    (void)state;
    MDB_env *env = open_env();
    cpx_vault_t *v = NULL;
    assert_int_equal(cpx_vault_open(env, keypath, pkey, &v), CPX_OK);
    put(v, env, 1, secret);
    char out[256];
    assert_int_equal(get(v, env, 1, out, sizeof out), CPX_OK);
    assert_string_equal(out, secret);
    assert_int_equal(get(v, env, 2, out, sizeof out), CPX_ERR_NOT_FOUND);

    MDB_txn *txn;
    uint8_t id1[16], id2[16], id3[16];
    id_of(id1, 1);
    id_of(id2, 2);
    id_of(id3, 3);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_vault_is_sealed(v, txn, id1, 16), 1);
    assert_int_equal(cpx_vault_is_sealed(v, txn, id2, 16), 0);
    assert_int_equal(cpx_vault_count(v, txn, CPX_VAULT_TAG_SUBJECT, "320281200801011234"), 1);
    assert_int_equal(cpx_vault_count(v, txn, CPX_VAULT_TAG_SUBJECT, "320281200801011235"), 0);
    assert_int_equal(cpx_vault_count(v, txn, CPX_VAULT_TAG_CASE, "320281200801011234"), 0);
    /* the record's bytes copied to another id: the AAD binds the id */
    MDB_dbi rec;
    assert_int_equal(mdb_dbi_open(txn, "vault.rec", 0, &rec), 0);
    MDB_val k = {16, id1}, val;
    assert_int_equal(mdb_get(txn, rec, &k, &val), 0);
    uint8_t copy[512];
    assert_true(val.mv_size < sizeof copy);
    memcpy(copy, val.mv_data, val.mv_size);
    size_t n = val.mv_size;
    MDB_val k2 = {16, id2}, v2 = {n, copy};
    assert_int_equal(mdb_put(txn, rec, &k2, &v2, 0), 0);
    /* kind changed from RECORD to INTERNAL: bound too */
    copy[1] = CPX_VAULT_INTERNAL;
    MDB_val k3 = {16, id3}, v3 = {n, copy};
    assert_int_equal(mdb_put(txn, rec, &k3, &v3, 0), 0);
    copy[1] = CPX_VAULT_RECORD;
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(get(v, env, 2, out, sizeof out), CPX_ERR_TAMPERED);
    assert_int_equal(get(v, env, 3, out, sizeof out), CPX_ERR_TAMPERED);
    /* one flipped ciphertext bit */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    copy[n - 20] ^= 0x01;
    MDB_val v1 = {n, copy};
    assert_int_equal(mdb_put(txn, rec, &k, &v1, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(get(v, env, 1, out, sizeof out), CPX_ERR_TAMPERED);
    put(v, env, 1, secret);

    /* nothing in clear on disk: neither the text nor the indexed ID number */
    char db[160];
    snprintf(db, sizeof db, "%s/data.mdb", datadir);
    assert_int_equal(file_contains(db, "SECRET-NAME", 11), 0);
    assert_int_equal(file_contains(db, "320281200801011234", 18), 0);
    cpx_vault_destroy(&v);
    cpx_vault_destroy(&v); /* harmless */
    assert_null(v);

    /* wrong key: refused at open (never garbage later) */
    char wrong[160];
    snprintf(wrong, sizeof wrong, "%s/wrong.key", tmpdir);
    assert_int_equal(cpx_symkey_create(wrong), CPX_OK);
    assert_int_equal(cpx_vault_open(env, wrong, pkey, &v), CPX_ERR_TAMPERED);
    assert_null(v);
    /* lost key */
    char lost[160];
    snprintf(lost, sizeof lost, "%s/lost.key", tmpdir);
    assert_int_equal(cpx_vault_open(env, lost, pkey, &v), CPX_ERR_NOT_FOUND);
    /* a key file others may read is refused */
    chmod(wrong, 0644);
    assert_int_equal(cpx_vault_open(env, wrong, pkey, &v), CPX_ERR_REFUSED);
    mdb_env_close(env);
}

static void test_rotation(void **state)
{
    (void)state;
    /* a fresh store: the one above holds deliberately tampered records, which a rekey
     * refuses (CPX_ERR_TAMPERED) rather than carry over */
    snprintf(datadir, sizeof datadir, "%s/data2", tmpdir);
    MDB_env *env = open_env();
    cpx_vault_t *ctl = NULL, *gw = NULL;
    assert_int_equal(cpx_vault_open(env, keypath, pkey, &gw), CPX_OK);
    for (int i = 10; i < 15; i++)
        put(gw, env, i, secret);
    MDB_txn *txn;
    uint8_t old_id[8], new_id[8];
    uint64_t records;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_vault_info(gw, txn, old_id, &records), CPX_OK);
    mdb_txn_abort(txn);
    assert_true(records >= 5);

    assert_int_equal(cpx_vault_open(env, keypath, pkey, &ctl), CPX_OK);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_vault_rotate_begin(ctl, txn, new_id), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_memory_not_equal(old_id, new_id, 8);

    /* the running gateway follows: a record written now is under the new key */
    put(gw, env, 20, "written during the rotation");
    uint64_t done = 0, left = 1, total = 0;
    int batches = 0;
    while (left) {
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(cpx_vault_rekey(ctl, txn, 2, &done, &left), CPX_OK);
        assert_int_equal(mdb_txn_commit(txn), 0);
        total += done;
        batches++;
        char out[256];
        assert_int_equal(get(gw, env, 10, out, sizeof out), CPX_OK); /* readable throughout */
    }
    assert_true(batches >= 3);
    assert_int_equal(total, records);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(cpx_vault_rotate_finish(ctl, txn), CPX_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(cpx_vault_rotate_install(ctl), CPX_OK);
    cpx_vault_destroy(&ctl);
    cpx_vault_destroy(&gw);

    /* after a restart only the new key exists, and it opens everything */
    char np[160];
    snprintf(np, sizeof np, "%s.next", keypath);
    assert_int_not_equal(access(np, F_OK), 0);
    assert_int_equal(cpx_vault_open(env, keypath, pkey, &gw), CPX_OK);
    char out[256];
    assert_int_equal(get(gw, env, 14, out, sizeof out), CPX_OK);
    assert_string_equal(out, secret);
    assert_int_equal(get(gw, env, 20, out, sizeof out), CPX_OK);
    uint8_t cur[8];
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(cpx_vault_info(gw, txn, cur, &records), CPX_OK);
    mdb_txn_abort(txn);
    assert_memory_equal(cur, new_id, 8);
    cpx_vault_destroy(&gw);
    mdb_env_close(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_id_known_answer),
        cmocka_unit_test(test_round_trip_and_binding),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
