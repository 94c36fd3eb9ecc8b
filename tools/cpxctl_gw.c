/* cpxctl enroll / revoke / status / deadletter — the gateway's registry and outboxes,
 * read and changed directly in its LMDB store (the gateway may be running: LMDB's
 * write lock serialises the writers and the gateway notices the log grew). */
#include "cpxctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cpx/audit.h"
#include "cpx/client.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/outbox.h"
#include "cpx/registry.h"
#include "cpx/store.h"
#include "cpx/vault.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct opened {
    MDB_env *env;
    cpx_registry_t *reg;
    cpx_audit_t *audit;
    cpx_outbox_t *ob;
} opened_t;

static void close_all(opened_t *o)
{
    cpx_outbox_destroy(&o->ob);
    cpx_audit_destroy(&o->audit);
    cpx_registry_destroy(&o->reg);
    if (o->env)
        mdb_env_close(o->env);
    o->env = NULL;
}

static int open_all(const char *dir, int rdonly, opened_t *o)
{
    memset(o, 0, sizeof *o);
    int rc = cpx_store_open(dir, 0, rdonly ? MDB_RDONLY : 0, &o->env);
    if (rc) {
        fprintf(stderr, "cpxctl: cannot open store %s: %s\n", dir, cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    if (!(o->reg = cpx_registry_open(o->env)) || !(o->audit = cpx_audit_open(o->env)) ||
        !(o->ob = cpx_outbox_open(o->env))) {
        fprintf(stderr, "cpxctl: %s is not a gateway store (or is damaged)\n", dir);
        close_all(o);
        return CPXCTL_ENV;
    }
    return CPXCTL_OK;
}

/* Commits txn after signing a head over what it appended. */
static int commit_signed(opened_t *o, MDB_txn *txn, const cpx_key_t *gw_key, uint64_t *size)
{
    cpx_sth_t *sth = NULL;
    int rc = cpx_audit_sign_head(o->audit, txn, gw_key, now_ms(), &sth);
    if (!rc && sth)
        *size = sth->tree_size;
    cpx_msg_free(sth);
    if (rc) {
        mdb_txn_abort(txn);
        cpx_audit_aborted(o->audit);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn))) {
        cpx_audit_aborted(o->audit);
        return cpx_store_err(rc, "commit");
    }
    cpx_audit_committed(o->audit);
    return CPX_OK;
}

static int read_curve_pub(const char *path, uint8_t out[CPX_CURVE_KEY_LEN])
{
    char z85[CPX_Z85_KEY_LEN + 1];
    if (cpx_client_read_z85(path, z85) || !zmq_z85_decode(out, z85)) {
        fprintf(stderr, "cpxctl: %s: not a Z85 CURVE public key\n", path);
        return CPX_ERR_DECODE;
    }
    return CPX_OK;
}

/* Refuses a department code that cannot be enrolled, naming the argument and the rule.
 * Checked before any key or store is opened, so nothing is written. */
static int refuse_code(const char *cmd, const char *field, const char *code)
{
    const char *why = cpx_registry_code_problem(code);
    if (!why)
        return 0;
    fprintf(stderr, "cpxctl %s: %s \"%s\": %s\n", cmd, field, code, why);
    if (!strcmp(cmd, "enroll") && cpx_registry_code_reserved(code))
        fprintf(stderr, "cpxctl enroll: choose another code for the department\n");
    if (!strcmp(cmd, "revoke") && cpx_registry_code_reserved(code))
        fprintf(stderr, "cpxctl revoke: the gateway's own signing key is replaced with "
                        "`cpxctl gateway-key rotate`\n");
    return 1;
}

static int cmd_enroll(int argc, char **argv)
{
    const char *data = NULL, *gw = NULL, *dept = NULL, *curve = NULL, *sign = NULL, *sup = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(a, "--gateway-key") && i + 1 < argc) gw = argv[++i];
        else if (!strcmp(a, "--curve-pub") && i + 1 < argc) curve = argv[++i];
        else if (!strcmp(a, "--sign-pub") && i + 1 < argc) sign = argv[++i];
        else if (!strcmp(a, "--supervisor") && i + 1 < argc) sup = argv[++i];
        else if (!dept && a[0] != '-') dept = a;
        else dept = NULL, i = argc;
    }
    if (!data || !gw || !dept || !curve || !sign) {
        fprintf(stderr, "usage: cpxctl enroll --data DIR --gateway-key PEM DEPT --curve-pub FILE "
                        "--sign-pub FILE [--supervisor DEPT]\n");
        return CPXCTL_USAGE;
    }
    if (refuse_code("enroll", "DEPT", dept) || (sup && refuse_code("enroll", "--supervisor", sup)))
        return CPXCTL_USAGE;
    uint8_t cpub[CPX_CURVE_KEY_LEN], spub[CPX_ED25519_PUB_LEN];
    if (read_curve_pub(curve, cpub))
        return CPXCTL_USAGE;
    cpx_key_t *sk = cpx_key_load_public(sign);
    cpx_key_t *gk = cpx_key_load_private(gw);
    if (!sk || !gk) {
        fprintf(stderr, "cpxctl enroll: cannot load %s\n", !sk ? sign : gw);
        cpx_key_destroy(&sk);
        cpx_key_destroy(&gk);
        return CPXCTL_USAGE;
    }
    cpx_key_public_raw(sk, spub);
    uint8_t id[CPX_KEY_ID_LEN];
    char hex[2 * CPX_KEY_ID_LEN + 1];
    cpx_key_id(sk, id);
    cpx_hex(id, sizeof id, hex);
    cpx_key_destroy(&sk);

    opened_t o;
    int ret = open_all(data, 0, &o);
    if (ret) {
        cpx_key_destroy(&gk);
        return ret;
    }
    MDB_txn *txn;
    uint64_t size = 0;
    int rc = mdb_txn_begin(o.env, NULL, 0, &txn);
    if (!rc) {
        rc = cpx_registry_enroll(o.reg, txn, o.audit, dept, cpub, spub, sup, now_ms());
        if (rc) {
            mdb_txn_abort(txn);
            cpx_audit_aborted(o.audit);
        } else {
            rc = commit_signed(&o, txn, gk, &size);
        }
    } else {
        rc = cpx_store_err(rc, "begin");
    }
    cpx_key_destroy(&gk);
    close_all(&o);
    if (rc == CPX_ERR_EXISTS) {
        fprintf(stderr, "cpxctl enroll: this CURVE key is already enrolled for another department\n");
        return CPXCTL_FAIL;
    }
    if (rc) {
        fprintf(stderr, "cpxctl enroll: %s\n", cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    printf("enrolled dept=%s key_id=%s tree_size=%" PRIu64 "\n", dept, hex, size);
    return CPXCTL_OK;
}

static int cmd_revoke(int argc, char **argv)
{
    const char *data = NULL, *gw = NULL, *dept = NULL, *kid = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(a, "--gateway-key") && i + 1 < argc) gw = argv[++i];
        else if (!strcmp(a, "--key-id") && i + 1 < argc) kid = argv[++i];
        else if (!dept && a[0] != '-') dept = a;
        else dept = NULL, i = argc;
    }
    uint8_t id[CPX_KEY_ID_LEN];
    if (!data || !gw || !dept || (kid && cpx_unhex(kid, id, sizeof id))) {
        fprintf(stderr, "usage: cpxctl revoke --data DIR --gateway-key PEM DEPT [--key-id HEX16]\n"
                        "  without --key-id the whole department is revoked (it can no longer connect)\n");
        return CPXCTL_USAGE;
    }
    if (refuse_code("revoke", "DEPT", dept))
        return CPXCTL_USAGE;
    cpx_key_t *gk = cpx_key_load_private(gw);
    if (!gk) {
        fprintf(stderr, "cpxctl revoke: cannot load %s\n", gw);
        return CPXCTL_USAGE;
    }
    opened_t o;
    int ret = open_all(data, 0, &o);
    if (ret) {
        cpx_key_destroy(&gk);
        return ret;
    }
    MDB_txn *txn;
    uint64_t size = 0;
    int rc = mdb_txn_begin(o.env, NULL, 0, &txn);
    if (!rc) {
        rc = cpx_registry_revoke(o.reg, txn, o.audit, dept, kid ? id : NULL, now_ms());
        if (rc) {
            mdb_txn_abort(txn);
            cpx_audit_aborted(o.audit);
        } else {
            rc = commit_signed(&o, txn, gk, &size);
        }
    }
    cpx_key_destroy(&gk);
    close_all(&o);
    if (rc == CPX_ERR_NOT_FOUND) {
        fprintf(stderr, "cpxctl revoke: %s%s is not enrolled\n", dept, kid ? " (or that key)" : "");
        return CPXCTL_FAIL;
    }
    if (rc) {
        fprintf(stderr, "cpxctl revoke: %s\n", cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    printf("revoked dept=%s%s%s tree_size=%" PRIu64 "\n", dept, kid ? " key_id=" : "",
           kid ? kid : "", size);
    return CPXCTL_OK;
}

static int print_dept(void *ctx, const cpx_dept_t *d)
{
    MDB_txn *txn = ctx;
    (void)txn;
    char z85[CPX_Z85_KEY_LEN + 1];
    zmq_z85_encode(z85, d->curve_pub, CPX_CURVE_KEY_LEN);
    printf("enrolled dept=%s curve=%s%s%s%s\n", d->code, z85, d->revoked_ms ? " REVOKED" : "",
           d->supervisor[0] ? " supervisor=" : "", d->supervisor);
    for (size_t i = 0; i < d->n_keys; i++) {
        char hex[2 * CPX_KEY_ID_LEN + 1];
        cpx_hex(d->keys[i].key_id, CPX_KEY_ID_LEN, hex);
        printf("  key_id=%s enrolled_ms=%" PRId64 "%s\n", hex, d->keys[i].enrolled_ms,
               d->keys[i].revoked_ms ? " revoked" : "");
    }
    return 0;
}

static int print_depth(void *ctx, const char *dept, uint64_t depth)
{
    (void)ctx;
    printf("queue dept=%s waiting=%" PRIu64 "\n", dept, depth);
    return 0;
}

static int cmd_status(int argc, char **argv)
{
    const char *data = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
    if (!data) {
        fprintf(stderr, "usage: cpxctl status --data DIR\n");
        return CPXCTL_USAGE;
    }
    opened_t o;
    int ret = open_all(data, 1, &o);
    if (ret)
        return ret;
    MDB_txn *txn;
    int rc = mdb_txn_begin(o.env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        close_all(&o);
        return CPXCTL_ENV;
    }
    char *buf = malloc(65536);
    if (buf && !cpx_outbox_status_get(o.ob, txn, buf, 65536)) {
        long long upd = 0;
        sscanf(buf, "updated_ms=%lld", &upd);
        printf("# gateway status, written %.1f s ago%s\n%s", (double)(now_ms() - upd) / 1000.0,
               now_ms() - upd > 15000 ? " (gateway probably stopped)" : "", buf);
    } else {
        printf("# no gateway status recorded yet\n");
    }
    free(buf);
    cpx_registry_each(o.reg, txn, print_dept, txn);
    cpx_outbox_depths(o.ob, txn, print_depth, NULL);
    uint64_t dead = 0, size = 0;
    cpx_outbox_dead_count(o.ob, txn, &dead);
    cpx_audit_size(o.audit, txn, &size);
    printf("dead_letters=%" PRIu64 "\ntree_size=%" PRIu64 "\n", dead, size);
    cpx_sth_t *sth = NULL;
    if (!cpx_audit_get_head(o.audit, txn, 0, &sth) && sth) {
        char root[65];
        cpx_hex(sth->root_hash.data, sth->root_hash.len < 32 ? sth->root_hash.len : 32, root);
        printf("head tree_size=%" PRIu64 " timestamp_ms=%" PRId64 " root=%s\n", sth->tree_size,
               sth->timestamp_ms, root);
    }
    cpx_msg_free(sth);
    mdb_txn_abort(txn);
    close_all(&o);
    return CPXCTL_OK;
}

static int print_dead(void *ctx, const cpx_dead_letter_t *d)
{
    MDB_txn *txn = ctx;
    /* a sealed message (or one of a case sealed since) is in no ordinary view */
    if (cpx_vault_view_withheld(txn, d->entry.case_id, d->entry.message_id,
                                d->entry.message_id_len) != 0)
        return 0;
    char hex[2 * CPX_MAX_MESSAGE_ID + 1];
    cpx_hex(d->entry.message_id, d->entry.message_id_len, hex);
    printf("dead delivery=%" PRIu64 " dept=%s message_id=%s case=%s attempts=%u dead_ms=%" PRId64
           " reason=\"%s\"\n", d->entry.seq, d->entry.dept, hex, d->entry.case_id,
           d->entry.attempts, d->dead_ms, d->reason);
    return 0;
}

typedef struct collect {
    uint64_t *seqs;
    size_t n, cap;
} collect_t;

static int collect_dead(void *ctx, const cpx_dead_letter_t *d)
{
    collect_t *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        uint64_t *n = realloc(c->seqs, cap * sizeof *n);
        if (!n)
            return CPX_ERR_NOMEM;
        c->seqs = n;
        c->cap = cap;
    }
    c->seqs[c->n++] = d->entry.seq;
    return 0;
}

static int cmd_deadletter(int argc, char **argv)
{
    const char *data = NULL, *gw = NULL, *what = NULL;
    int all = 0;
    uint64_t seq = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(a, "--gateway-key") && i + 1 < argc) gw = argv[++i];
        else if (!strcmp(a, "--all")) all = 1;
        else if (!what && a[0] != '-') what = a;
        else if (what && a[0] != '-' && !seq) seq = strtoull(a, NULL, 10);
        else what = NULL, i = argc;
    }
    int list = what && !strcmp(what, "list");
    int retry = what && !strcmp(what, "retry") && gw && (all || seq);
    if (!data || (!list && !retry)) {
        fprintf(stderr, "usage: cpxctl deadletter list --data DIR\n"
                        "       cpxctl deadletter retry --data DIR --gateway-key PEM (DELIVERY_ID | --all)\n");
        return CPXCTL_USAGE;
    }
    opened_t o;
    int ret = open_all(data, list, &o);
    if (ret)
        return ret;
    MDB_txn *txn;
    int rc = mdb_txn_begin(o.env, NULL, list ? MDB_RDONLY : 0, &txn);
    if (rc) {
        close_all(&o);
        return CPXCTL_ENV;
    }
    if (list) {
        rc = cpx_outbox_dead_each(o.ob, txn, 0, print_dead, txn);
        mdb_txn_abort(txn);
        close_all(&o);
        return rc ? CPXCTL_ENV : CPXCTL_OK;
    }
    cpx_key_t *gk = cpx_key_load_private(gw);
    collect_t c = {0};
    if (!gk) {
        fprintf(stderr, "cpxctl deadletter: cannot load %s\n", gw);
        rc = CPX_ERR_ARG;
    } else if (all) {
        rc = cpx_outbox_dead_each(o.ob, txn, 0, collect_dead, &c);
    } else {
        rc = collect_dead(&c, &(cpx_dead_letter_t){.entry = {.seq = seq}});
    }
    size_t done = 0;
    for (size_t i = 0; i < c.n && !rc; i++) {
        cpx_dead_letter_t d;
        rc = cpx_outbox_dead_retry(o.ob, txn, c.seqs[i], &d);
        if (rc)
            break;
        char *rcpt[1] = {d.entry.dept};
        char detail[64];
        snprintf(detail, sizeof detail, "delivery=%" PRIu64, d.entry.seq);
        cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
        leaf.event = CPX__V1__AUDIT_EVENT__DEAD_LETTER_RETRIED;
        leaf.time_ms = now_ms();
        leaf.n_recipients = 1;
        leaf.recipients = rcpt;
        leaf.case_ref = d.entry.case_id;
        leaf.message_id = (ProtobufCBinaryData){d.entry.message_id_len, d.entry.message_id};
        leaf.ref_seq = d.entry.accepted_seq;
        leaf.reason = "operator retry";
        leaf.detail = detail;
        rc = cpx_audit_append(o.audit, txn, &leaf, NULL);
        done++;
    }
    free(c.seqs);
    uint64_t size = 0;
    if (!rc && done) {
        rc = commit_signed(&o, txn, gk, &size);
    } else {
        mdb_txn_abort(txn);
        cpx_audit_aborted(o.audit);
    }
    cpx_key_destroy(&gk);
    close_all(&o);
    if (rc == CPX_ERR_NOT_FOUND) {
        fprintf(stderr, "cpxctl deadletter: no dead letter %" PRIu64 "\n", seq);
        return CPXCTL_FAIL;
    }
    if (rc) {
        fprintf(stderr, "cpxctl deadletter: %s\n", cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    printf("requeued=%zu tree_size=%" PRIu64 "\n", done, size);
    return CPXCTL_OK;
}

CPXCTL_COMMAND("enroll", cmd_enroll,
               "--data DIR --gateway-key PEM DEPT --curve-pub F --sign-pub F   enrol a department")
CPXCTL_COMMAND("revoke", cmd_revoke, "--data DIR --gateway-key PEM DEPT [--key-id HEX]   revoke")
CPXCTL_COMMAND("status", cmd_status, "--data DIR   gateway sessions, queues, dead letters, head")
CPXCTL_COMMAND("deadletter", cmd_deadletter,
               "list|retry --data DIR [--gateway-key PEM] [ID|--all]   dead letters")
