/* cpxctl sealed — keys, the auditor's access log, and vault key rotation
 * (docs/sealed.md).
 *   cpxctl sealed keygen --dir DIR
 *   cpxctl sealed access-log SUBJECT --data DIR --auditor PSEUDONYM_KEY [--case]
 *   cpxctl sealed rotate-key --data DIR --vault-key FILE --pseudonym-key FILE
 *                            --gateway-key FILE [--batch N]
 * access-log needs the pseudonym key: without it the log cannot be linked to a
 * person, which is what makes it the auditor's credential. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/audit.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/store.h"
#include "cpx/vault.h"
#include "cpxctl.h"

#define REF_LEN 32

typedef struct sopts {
    const char *data, *auditor, *vault_key, *pseudonym_key, *gateway_key, *dir, *subject;
    unsigned long batch;
    int is_case;
} sopts_t;

static int parse(int argc, char **argv, sopts_t *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **s = NULL;
        if (!strcmp(a, "--data")) s = &o->data;
        else if (!strcmp(a, "--auditor")) s = &o->auditor;
        else if (!strcmp(a, "--vault-key")) s = &o->vault_key;
        else if (!strcmp(a, "--pseudonym-key")) s = &o->pseudonym_key;
        else if (!strcmp(a, "--gateway-key")) s = &o->gateway_key;
        else if (!strcmp(a, "--dir")) s = &o->dir;
        else if (!strcmp(a, "--case")) { o->is_case = 1; continue; }
        else if (!strcmp(a, "--batch") && i + 1 < argc) { o->batch = strtoul(argv[++i], NULL, 10); continue; }
        else if (a[0] != '-' && !o->subject) { o->subject = a; continue; }
        else {
            fprintf(stderr, "cpxctl sealed: unknown argument %s\n", a);
            return CPXCTL_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cpxctl sealed: %s needs a value\n", a);
            return CPXCTL_USAGE;
        }
        *s = argv[++i];
    }
    return CPXCTL_OK;
}

static int cmd_keygen(int argc, char **argv)
{
    sopts_t o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.dir) {
        fprintf(stderr, "usage: cpxctl sealed keygen --dir DIR\n");
        return CPXCTL_USAGE;
    }
    char p[1024];
    const char *names[] = {"vault.key", "pseudonym.key"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", o.dir, names[i]);
        if ((rc = cpx_symkey_create(p))) {
            fprintf(stderr, "cpxctl: cannot create %s: %s\n", p, cpx_strerror(rc));
            return CPXCTL_ENV;
        }
        printf("created %s (mode 0600)\n", p);
    }
    return CPXCTL_OK;
}

typedef struct logctx {
    cpx_audit_t *audit;
    MDB_txn *txn;
    unsigned long n;
} logctx_t;

static const char *event_name(int e)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__audit_event__descriptor, e);
    return v ? v->name : "?";
}

static int log_cb(void *ctx, uint64_t seq)
{
    logctx_t *c = ctx;
    cpx_audit_leaf_t *leaf = NULL;
    int rc = cpx_audit_get_leaf(c->audit, c->txn, seq, &leaf);
    if (rc)
        return rc;
    time_t t = (time_t)(leaf->time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char mid[33] = "";
    if (leaf->message_id.len == 16)
        cpx_hex(leaf->message_id.data, 16, mid);
    printf("seq=%llu time=%s event=%s by=%s to=%s message=%s",
           (unsigned long long)seq, ts, event_name(leaf->event), leaf->sender ? leaf->sender : "",
           leaf->n_recipients ? leaf->recipients[0] : "", mid);
    if (leaf->reason && *leaf->reason)
        printf(" result=%s", leaf->reason);
    if (leaf->detail && *leaf->detail)
        printf(" %s", leaf->detail);
    if (leaf->ref_seq)
        printf(" follows=%llu", (unsigned long long)leaf->ref_seq);
    printf("\n");
    c->n++;
    cpx_msg_free(leaf);
    return 0;
}

static int cmd_access_log(int argc, char **argv)
{
    sopts_t o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.subject || !o.data || !o.auditor) {
        fprintf(stderr, "usage: cpxctl sealed access-log SUBJECT --data DIR --auditor PSEUDONYM_KEY [--case]\n");
        return CPXCTL_USAGE;
    }
    uint8_t pkey[32];
    if ((rc = cpx_symkey_load(o.auditor, pkey))) {
        fprintf(stderr, "cpxctl: auditor credential %s: %s\n", o.auditor, cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    char buf[300], ref[35];
    snprintf(buf, sizeof buf, "%s%s", o.is_case ? "case:" : "", o.subject);
    cpx_audit_pseudonym(pkey, buf, ref);
    ref[REF_LEN] = '\0';
    cpx_cleanse(pkey, sizeof pkey);
    MDB_env *env = NULL;
    if ((rc = cpx_store_open(o.data, 0, MDB_RDONLY, &env))) {
        fprintf(stderr, "cpxctl: cannot open store %s: %s\n", o.data, cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    cpx_audit_t *audit = cpx_audit_open(env);
    MDB_txn *txn = NULL;
    if (!audit || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) {
        cpx_audit_destroy(&audit);
        mdb_env_close(env);
        return CPXCTL_ENV;
    }
    uint64_t size = 0;
    cpx_audit_size(audit, txn, &size);
    printf("subject=%s pseudonym=%s tree_size=%llu\n", o.is_case ? "case" : "id_number", ref,
           (unsigned long long)size);
    logctx_t c = {audit, txn, 0};
    rc = cpx_audit_case_foreach(audit, txn, ref, log_cb, &c);
    printf("events=%lu\n", c.n);
    mdb_txn_abort(txn);
    cpx_audit_destroy(&audit);
    mdb_env_close(env);
    return rc ? CPXCTL_ENV : CPXCTL_OK;
}

static int append_signed(cpx_audit_t *audit, const cpx_key_t *gk, const char *detail, MDB_txn *txn)
{
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__CONFIG_CHANGED;
    leaf.sender = "cpxctl";
    leaf.reason = "vault key rotation";
    leaf.detail = (char *)detail;
    int rc = cpx_audit_append(audit, txn, &leaf, NULL);
    cpx_sth_t *sth = NULL;
    if (!rc)
        rc = cpx_audit_sign_head(audit, txn, gk, cpx_audit_now_ms(), &sth);
    cpx_msg_free(sth);
    return rc;
}

static int cmd_rotate(int argc, char **argv)
{
    sopts_t o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.data || !o.vault_key || !o.pseudonym_key || !o.gateway_key || !o.batch) {
        fprintf(stderr, "usage: cpxctl sealed rotate-key --data DIR --vault-key FILE "
                        "--pseudonym-key FILE --gateway-key FILE [--batch N]\n");
        return CPXCTL_USAGE;
    }
    uint8_t pkey[32];
    if ((rc = cpx_symkey_load(o.pseudonym_key, pkey)))
        return CPXCTL_ENV;
    cpx_key_t *gk = cpx_key_load_private(o.gateway_key);
    MDB_env *env = NULL;
    cpx_vault_t *v = NULL;
    cpx_audit_t *audit = NULL;
    if (!gk || (rc = cpx_store_open(o.data, 0, 0, &env)) ||
        (rc = cpx_vault_open(env, o.vault_key, pkey, &v)) ||
        !(audit = cpx_audit_open(env))) {
        cpx_vault_destroy(&v);
        fprintf(stderr, "cpxctl: cannot open the vault: %s\n", cpx_strerror(rc ? rc : CPX_ERR_CRYPTO));
        cpx_key_destroy(&gk);
        if (env)
            mdb_env_close(env);
        cpx_cleanse(pkey, sizeof pkey);
        return CPXCTL_ENV;
    }
    cpx_cleanse(pkey, sizeof pkey);
    MDB_txn *txn;
    uint8_t old_id[8], new_id[8];
    uint64_t records = 0, done = 0, left = 1, total = 0;
    char oh[17], nh[17], detail[160];
    int batches = 0;
    rc = mdb_txn_begin(env, NULL, 0, &txn) ? CPX_ERR_STORE : CPX_OK;
    if (!rc && !(rc = cpx_vault_info(v, txn, old_id, &records)) &&
        !(rc = cpx_vault_rotate_begin(v, txn, new_id))) {
        cpx_hex(old_id, 8, oh);
        cpx_hex(new_id, 8, nh);
        snprintf(detail, sizeof detail, "begin old_key=%s new_key=%s records=%llu", oh, nh,
                 (unsigned long long)records);
        rc = append_signed(audit, gk, detail, txn);
    }
    if (!rc)
        rc = mdb_txn_commit(txn) ? CPX_ERR_STORE : CPX_OK;
    else
        mdb_txn_abort(txn);
    rc ? cpx_audit_aborted(audit) : cpx_audit_committed(audit);
    /* short transactions: the running gateway's cycles interleave with the batches */
    while (!rc && left) {
        if (mdb_txn_begin(env, NULL, 0, &txn)) {
            rc = CPX_ERR_STORE;
            break;
        }
        rc = cpx_vault_rekey(v, txn, o.batch, &done, &left);
        if (!rc && mdb_txn_commit(txn))
            rc = CPX_ERR_STORE;
        else if (rc)
            mdb_txn_abort(txn);
        total += done;
        batches++;
    }
    if (!rc && !mdb_txn_begin(env, NULL, 0, &txn)) {
        rc = cpx_vault_rotate_finish(v, txn);
        snprintf(detail, sizeof detail, "done old_key=%s new_key=%s rekeyed=%llu batches=%d", oh, nh,
                 (unsigned long long)total, batches);
        if (!rc)
            rc = append_signed(audit, gk, detail, txn);
        if (!rc)
            rc = mdb_txn_commit(txn) ? CPX_ERR_STORE : CPX_OK;
        else
            mdb_txn_abort(txn);
        rc ? cpx_audit_aborted(audit) : cpx_audit_committed(audit);
        if (!rc)
            rc = cpx_vault_rotate_install(v);
    }
    if (rc)
        fprintf(stderr, "cpxctl: rotation stopped: %s (the old key is kept; run again)\n",
                cpx_strerror(rc));
    else
        printf("rotated vault key %s -> %s: %llu records re-encrypted in %d batches\n", oh, nh,
               (unsigned long long)total, batches);
    cpx_audit_destroy(&audit);
    cpx_vault_destroy(&v);
    cpx_key_destroy(&gk);
    mdb_env_close(env);
    return rc ? CPXCTL_FAIL : CPXCTL_OK;
}

static int cmd_sealed(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "keygen"))
        return cmd_keygen(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "access-log"))
        return cmd_access_log(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "rotate-key"))
        return cmd_rotate(argc - 1, argv + 1);
    fprintf(stderr, "usage: cpxctl sealed keygen --dir DIR\n"
                    "       cpxctl sealed access-log SUBJECT --data DIR --auditor PSEUDONYM_KEY [--case]\n"
                    "       cpxctl sealed rotate-key --data DIR --vault-key F --pseudonym-key F "
                    "--gateway-key F [--batch N]\n");
    return CPXCTL_USAGE;
}

CPXCTL_COMMAND("sealed", cmd_sealed, "keygen | access-log SUBJECT | rotate-key  (docs/sealed.md)")
