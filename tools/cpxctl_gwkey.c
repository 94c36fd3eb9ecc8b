/* cpxctl gateway-key rotate / show — rotating the gateway's signing key in place: the
 * outgoing key vouches for the incoming one (include/cpx/gwkey.h). Works with the gateway
 * stopped; with it running this is a second LMDB writer, and the gateway notices on its
 * next cycle, stops signing and exits until restarted with the new key. */
#include "cpxctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/audit.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/gwkey.h"
#include "cpx/store.h"

static void id_hex(const uint8_t raw[CPX_ED25519_PUB_LEN], char out[2 * CPX_KEY_ID_LEN + 1])
{
    uint8_t h[CPX_SHA256_LEN];
    cpx_sha256(raw, CPX_ED25519_PUB_LEN, h);
    cpx_hex(h, CPX_KEY_ID_LEN, out);
}

static int rotate(const char *data, const char *old_path, const char *new_path)
{
    cpx_key_t *old = cpx_key_load_private(old_path);
    cpx_key_t *nk = cpx_key_load_public(new_path);
    if (!nk)
        nk = cpx_key_load_private(new_path);
    if (!old || !nk) {
        fprintf(stderr, "cpxctl gateway-key: cannot load %s\n",
                !old ? "the old private key (--old-key)" : "the new key (--new-key)");
        cpx_key_destroy(&old);
        cpx_key_destroy(&nk);
        return CPXCTL_USAGE;
    }
    MDB_env *env = NULL;
    cpx_audit_t *audit = NULL;
    MDB_txn *txn = NULL;
    int ret = CPXCTL_ENV, rc = cpx_store_open(data, 0, 0, &env);
    if (rc || !(audit = cpx_audit_open(env)) || mdb_txn_begin(env, NULL, 0, &txn)) {
        fprintf(stderr, "cpxctl gateway-key: cannot open store %s for writing\n", data);
        goto out;
    }
    uint64_t seq = 0;
    cpx_sth_t *head = NULL;
    rc = cpx_gwkey_rotate(audit, txn, old, nk, 0, &seq, &head);
    if (!rc && (rc = mdb_txn_commit(txn)))
        rc = cpx_store_err(rc, "gateway-key: commit");
    else if (rc)
        mdb_txn_abort(txn);
    txn = NULL;
    if (rc) {
        cpx_audit_aborted(audit);
        cpx_msg_free(head);
        if (rc == CPX_ERR_REFUSED)
            fprintf(stderr, "cpxctl gateway-key: the old key is not the log's current gateway "
                            "key; nothing changed\n");
        else if (rc == CPX_ERR_EXISTS)
            fprintf(stderr, "cpxctl gateway-key: the new key is already the current key\n");
        else
            fprintf(stderr, "cpxctl gateway-key: rotate failed: %s\n", cpx_strerror(rc));
        ret = rc == CPX_ERR_REFUSED || rc == CPX_ERR_EXISTS ? CPXCTL_FAIL : CPXCTL_ENV;
        goto out;
    }
    cpx_audit_committed(audit);
    uint8_t o[CPX_ED25519_PUB_LEN], n[CPX_ED25519_PUB_LEN];
    char oh[17], nh[17], lid[65];
    cpx_key_public_raw(old, o);
    cpx_key_public_raw(nk, n);
    id_hex(o, oh);
    id_hex(n, nh);
    cpx_hex(head->log_id.data, CPX_SHA256_LEN, lid);
    printf("rotated: hand-over leaf seq %" PRIu64 ", head of tree size %" PRIu64
           " signed by the old key %s; later heads are signed by %s\nlog id %s (unchanged)\n"
           "now set keys.signing_key to the new key and (re)start the gateway\n",
           seq, head->tree_size, oh, nh, lid);
    cpx_msg_free(head);
    ret = CPXCTL_OK;
out:
    if (txn)
        mdb_txn_abort(txn);
    cpx_audit_destroy(&audit);
    if (env)
        mdb_env_close(env);
    cpx_key_destroy(&old);
    cpx_key_destroy(&nk);
    return ret;
}

/* The chain: first key, each hand-over's key, the current one. */
static int show(const char *data)
{
    MDB_env *env = NULL;
    cpx_audit_t *audit = NULL;
    MDB_txn *txn = NULL;
    int ret = CPXCTL_ENV;
    if (cpx_store_open(data, 0, MDB_RDONLY, &env) || !(audit = cpx_audit_open(env)) ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) {
        fprintf(stderr, "cpxctl gateway-key: cannot open store %s\n", data);
        goto out;
    }
    uint8_t id[CPX_SHA256_LEN], first[CPX_ED25519_PUB_LEN], cur[CPX_ED25519_PUB_LEN];
    int rc = cpx_audit_gateway_keys(audit, txn, id, first, cur);
    if (rc) {
        fprintf(stderr, "cpxctl gateway-key: %s\n",
                rc == CPX_ERR_NOT_FOUND ? "the log has no signed head yet" : cpx_strerror(rc));
        ret = rc == CPX_ERR_NOT_FOUND ? CPXCTL_FAIL : CPXCTL_ENV;
        goto out;
    }
    char lid[65], h[17];
    cpx_hex(id, sizeof id, lid);
    id_hex(first, h);
    printf("log id       %s\nfirst key    %s\n", lid, h);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(audit, &db);
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(txn, db.keys, &c) == 0) {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            cpx_audit_leaf_t *lf = NULL;
            if (k.mv_size == 8 &&
                cpx_audit_get_leaf(audit, txn, cpx_be64_get(k.mv_data), &lf) == CPX_OK &&
                cpx_gwkey_is_handover(lf) && lf->key.len == CPX_ED25519_PUB_LEN) {
                id_hex(lf->key.data, h);
                printf("hand-over    seq %" PRIu64 " -> %s\n", lf->seq, h);
            }
            cpx_msg_free(lf);
        }
        mdb_cursor_close(c);
    }
    id_hex(cur, h);
    printf("current key  %s\n", h);
    ret = CPXCTL_OK;
out:
    if (txn)
        mdb_txn_abort(txn);
    cpx_audit_destroy(&audit);
    if (env)
        mdb_env_close(env);
    return ret;
}

static int usage(void)
{
    fprintf(stderr, "usage: cpxctl gateway-key rotate --data DIR --old-key OLD.pem --new-key NEW.pem\n"
                    "       cpxctl gateway-key show --data DIR\n");
    return CPXCTL_USAGE;
}

static int cmd_gwkey(int argc, char **argv)
{
    const char *data = NULL, *old = NULL, *nk = NULL;
    if (argc < 2)
        return usage();
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "--data")) data = argv[++i];
        else if (!strcmp(argv[i], "--old-key")) old = argv[++i];
        else if (!strcmp(argv[i], "--new-key")) nk = argv[++i];
        else return usage();
    }
    if (!strcmp(argv[1], "rotate") && data && old && nk)
        return rotate(data, old, nk);
    if (!strcmp(argv[1], "show") && data && !old && !nk)
        return show(data);
    return usage();
}

CPXCTL_COMMAND("gateway-key", cmd_gwkey,
               "rotate|show the gateway's signing key (the log stays verifiable)")
