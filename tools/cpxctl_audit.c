/* cpxctl audit — the auditor's tools: verify, prove, consistency, check-proof, export,
 * timeline, head, tail (and the hidden demo-log used by tests and benchmarks).
 * Stores are opened read-only (MDB_RDONLY), so every reader works while the gateway
 * runs. Formats: docs/audit-format.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cpx/audit.h"
#include "cpx/auditverify.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/export.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/vault.h"
#include "cpxctl.h"

#define DEMO_MAP_SIZE ((size_t)32 << 30)
#define MAX_FILE_BYTES ((size_t)4 << 30)

/* ---- options ---------------------------------------------------------------------------- */

typedef struct opts {
    const char *data, *gateway_key, *key, *out, *export_file, *proof, *head, *old_head,
        *leaf, *out_signing_bytes, *out_sig, *first_key, *old_head_key, *auditor;
    const char *extra_heads[16];
    int n_extra_heads;
    const char *pos[4];
    int n_pos;
    uint64_t from, to, tree_size, n, size, batch, depts;
    int json, no_sigs, threads, per_message;
} opts_t;

static int usage_err(const char *fmt, const char *arg)
    __attribute__((format(printf, 1, 0)));

static int usage_err(const char *fmt, const char *arg)
{
    char msg[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(msg, sizeof msg, fmt, arg);
#pragma GCC diagnostic pop
    fprintf(stderr, "cpxctl audit: %s\n", msg);
    return CPXCTL_USAGE;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        uint64_t *num = NULL;
        if (!strcmp(a, "--data")) str = &o->data;
        else if (!strcmp(a, "--gateway-key")) str = &o->gateway_key;
        else if (!strcmp(a, "--key")) str = &o->key;
        else if (!strcmp(a, "--out")) str = &o->out;
        else if (!strcmp(a, "--export")) str = &o->export_file;
        else if (!strcmp(a, "--proof")) str = &o->proof;
        else if (!strcmp(a, "--old-head")) str = &o->old_head;
        else if (!strcmp(a, "--leaf")) str = &o->leaf;
        else if (!strcmp(a, "--out-signing-bytes")) str = &o->out_signing_bytes;
        else if (!strcmp(a, "--out-sig")) str = &o->out_sig;
        else if (!strcmp(a, "--first-key")) str = &o->first_key;
        else if (!strcmp(a, "--old-head-key")) str = &o->old_head_key;
        else if (!strcmp(a, "--auditor")) str = &o->auditor;
        else if (!strcmp(a, "--from")) num = &o->from;
        else if (!strcmp(a, "--to")) num = &o->to;
        else if (!strcmp(a, "--tree-size")) num = &o->tree_size;
        else if (!strcmp(a, "-n")) num = &o->n;
        else if (!strcmp(a, "--size")) num = &o->size;
        else if (!strcmp(a, "--batch")) num = &o->batch;
        else if (!strcmp(a, "--depts")) num = &o->depts;
        else if (!strcmp(a, "--json")) { o->json = 1; continue; }
        else if (!strcmp(a, "--no-sender-sigs")) { o->no_sigs = 1; continue; }
        else if (!strcmp(a, "--per-message")) { o->per_message = 1; continue; }
        else if (!strcmp(a, "--threads")) {
            uint64_t t;
            if (i + 1 >= argc || parse_u64(argv[++i], &t) || t < 1 || t > 2)
                return usage_err("--threads takes 1 or 2%s", "");
            o->threads = (int)t;
            continue;
        } else if (!strcmp(a, "--head")) {
            if (i + 1 >= argc)
                return usage_err("%s needs a value", a);
            /* verify takes several extra heads; check-proof takes one */
            if (!o->head)
                o->head = argv[i + 1];
            if (o->n_extra_heads < 16)
                o->extra_heads[o->n_extra_heads++] = argv[i + 1];
            i++;
            continue;
        } else if (a[0] == '-' && a[1]) {
            return usage_err("unknown option %s", a);
        } else {
            if (o->n_pos == 4)
                return usage_err("too many arguments (%s)", a);
            o->pos[o->n_pos++] = a;
            continue;
        }
        if (i + 1 >= argc)
            return usage_err("%s needs a value", a);
        if (str)
            *str = argv[++i];
        else if (parse_u64(argv[++i], num))
            return usage_err("%s takes a non-negative integer", a);
    }
    return CPXCTL_OK;
}

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct ro {
    MDB_env *env;
    cpx_audit_t *audit;
    MDB_txn *txn;
} ro_t;

static int open_ro(const char *dir, ro_t *r)
{
    memset(r, 0, sizeof *r);
    if (!dir) {
        fprintf(stderr, "cpxctl audit: --data DIR is required\n");
        return CPXCTL_USAGE;
    }
    if (cpx_store_open(dir, 0, MDB_RDONLY, &r->env) != CPX_OK) {
        fprintf(stderr, "cpxctl audit: cannot open store %s read-only\n", dir);
        return CPXCTL_ENV;
    }
    r->audit = cpx_audit_open(r->env);
    if (!r->audit || mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn) != 0) {
        fprintf(stderr, "cpxctl audit: %s holds no audit log\n", dir);
        cpx_audit_destroy(&r->audit);
        mdb_env_close(r->env);
        r->env = NULL;
        return CPXCTL_ENV;
    }
    return CPXCTL_OK;
}

static void close_ro(ro_t *r)
{
    if (r->txn)
        mdb_txn_abort(r->txn);
    cpx_audit_destroy(&r->audit);
    if (r->env)
        mdb_env_close(r->env);
    memset(r, 0, sizeof *r);
}

/* A PEM public key, or the public half of a PEM private key. */
static cpx_key_t *load_pub(const char *path)
{
    cpx_key_t *k = cpx_key_load_public(path);
    if (!k)
        k = cpx_key_load_private(path);
    return k;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CPX_ERR_IO;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > max) {
        fclose(f);
        return CPX_ERR_TOO_LARGE;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf || fread(*buf, 1, *len, f) != *len) {
        free(*buf);
        *buf = NULL;
        fclose(f);
        return CPX_ERR_IO;
    }
    fclose(f);
    return CPX_OK;
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return CPX_ERR_IO;
    int ok = fwrite(buf, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    return ok ? CPX_OK : CPX_ERR_IO;
}

static cpx_sth_t *load_head(const char *path)
{
    uint8_t *buf;
    size_t len;
    cpx_sth_t *h = NULL;
    if (read_file(path, &buf, &len, 4096) != CPX_OK) {
        fprintf(stderr, "cpxctl audit: cannot read head %s\n", path);
        return NULL;
    }
    if (cpx_decode_sth(buf, len, &h) != CPX_OK)
        fprintf(stderr, "cpxctl audit: %s is not a SignedTreeHead\n", path);
    free(buf);
    return h;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    cpx_hex(b, n, out);
}

static void fmt_time(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03dZ", (int)(ms % 1000 + 1000) % 1000);
}

/* JSON string output; leaf strings come from the log and may hold anything */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static const char *event_name(int ev)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__audit_event__descriptor, ev);
    return v ? v->name : "UNKNOWN";
}

/* ---- verify ---------------------------------------------------------------------------------- */

static void progress_bar(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (total)
        fprintf(stderr, "\rverify: %3d%% %" PRIu64 "/%" PRIu64 " leaves", (int)(done * 100 / (total > done ? total : done)),
                done, total);
    else
        fprintf(stderr, "\rverify: %" PRIu64 " leaves", done);
}

static void print_report(const cpx_averify_report_t *r, int rc, int json)
{
    double rate = r->secs > 0 ? (double)r->leaves / r->secs : 0;
    if (json) {
        printf("{\"ok\":%s,\"problem\":", rc == CPX_OK ? "true" : "false");
        json_str(stdout, cpx_averify_problem_name(r->problem));
        printf(",\"bad_seq\":%s%" PRIu64 "%s,\"what\":", r->problem ? "" : "\"", r->bad_seq,
               r->problem ? "" : "\"");
        json_str(stdout, r->what);
        printf(",\"first_seq\":%" PRIu64 ",\"leaves\":%" PRIu64 ",\"tree_size\":%" PRIu64
               ",\"heads\":%" PRIu64 ",\"nodes_checked\":%" PRIu64 ",\"unsigned_tail\":%" PRIu64
               ",\"keys_enrolled\":%" PRIu64 ",\"keys_revoked\":%" PRIu64
               ",\"gateway_rotations\":%" PRIu64
               ",\"sender_signatures\":{\"checked\":%" PRIu64 ",\"per_message\":%" PRIu64
               ",\"batch\":%" PRIu64 ",\"batch_cached\":%" PRIu64 ",\"failed\":%" PRIu64
               "},\"seconds\":%.3f,\"leaves_per_second\":%.0f}\n",
               r->first_seq, r->leaves, r->tree_size, r->heads, r->nodes_checked,
               r->unsigned_tail, r->keys_enrolled, r->keys_revoked, r->gateway_rotations,
               r->sig_checked,
               r->sig_per_message, r->sig_batch, r->sig_batch_cached, r->sig_failed, r->secs,
               rate);
        return;
    }
    if (rc == CPX_OK)
        printf("ok: ");
    else
        printf("FAIL: %s; ", r->what);
    printf("%" PRIu64 " leaves [%" PRIu64 ", %" PRIu64 "), %" PRIu64 " heads, %" PRIu64
           " node records, %" PRIu64 " keys enrolled / %" PRIu64 " revoked; sender signatures: %"
           PRIu64 " checked (%" PRIu64 " per-message, %" PRIu64 " batch of which %" PRIu64
           " cached), %" PRIu64 " failed",
           r->leaves, r->first_seq, r->tree_size, r->heads, r->nodes_checked, r->keys_enrolled,
           r->keys_revoked, r->sig_checked, r->sig_per_message, r->sig_batch,
           r->sig_batch_cached, r->sig_failed);
    if (r->sig_failed)
        printf(" (first at seq %" PRIu64 ")", r->sig_first_bad_seq);
    if (r->gateway_rotations)
        printf("; %" PRIu64 " gateway key rotation%s followed", r->gateway_rotations,
               r->gateway_rotations == 1 ? "" : "s");
    if (r->unsigned_tail)
        printf("; %" PRIu64 " leaves after the last head are not yet signed", r->unsigned_tail);
    printf("; %.2f s, %.0f leaves/s\n", r->secs, rate);
}

static int cmd_verify(opts_t *o)
{
    if (!o->data == !o->export_file)
        return usage_err("verify needs --data DIR or --export FILE%s", "");
    cpx_key_t *gw = NULL;
    uint8_t *bundle = NULL;
    size_t blen = 0;
    if (o->export_file) {
        if (read_file(o->export_file, &bundle, &blen, MAX_FILE_BYTES) != CPX_OK) {
            fprintf(stderr, "cpxctl audit: cannot read %s\n", o->export_file);
            return CPXCTL_USAGE;
        }
    }
    if (o->gateway_key) {
        gw = load_pub(o->gateway_key);
        if (!gw) {
            free(bundle);
            fprintf(stderr, "cpxctl audit: cannot load gateway key %s\n", o->gateway_key);
            return CPXCTL_USAGE;
        }
    } else if (bundle) {
        /* without a key of their own, auditors get the bundle's key and its fingerprint,
         * which they must compare with one published by the gateway operator */
        cpx_bundle_t *b = NULL;
        if (cpx_bundle_parse(bundle, blen, &b, NULL, 0) == CPX_OK)
            gw = cpx_key_from_raw_public(b->gateway_pub);
        cpx_bundle_destroy(&b);
        if (gw) {
            uint8_t raw[32], id[32];
            char h[65];
            cpx_key_public_raw(gw, raw);
            cpx_sha256(raw, 32, id);
            hex(id, 32, h);
            fprintf(stderr, "cpxctl audit: WARNING: no --gateway-key; using the key in the "
                            "bundle, log id %s — compare it with the published one\n", h);
        }
    } else {
        /* the store's meta names the log's first key: the chain starts there; auditors
         * must compare the log id with the one published by the operator */
        ro_t r;
        int orc = open_ro(o->data, &r);
        if (orc)
            return orc;
        uint8_t id[32], first[32];
        char h[65];
        if (cpx_audit_gateway_keys(r.audit, r.txn, id, first, NULL) == CPX_OK)
            gw = cpx_key_from_raw_public(first);
        close_ro(&r);
        if (!gw)
            return usage_err("verify --data: the store names no gateway key; give "
                             "--gateway-key PEM%s", "");
        hex(id, 32, h);
        fprintf(stderr, "cpxctl audit: WARNING: no --gateway-key; using the store's first "
                        "gateway key, log id %s — compare it with the published one\n", h);
    }
    cpx_sth_t *extra[16];
    int n_extra = 0, rc = CPXCTL_OK;
    for (int i = 0; i < o->n_extra_heads; i++) {
        extra[n_extra] = load_head(o->extra_heads[i]);
        if (!extra[n_extra]) {
            rc = CPXCTL_USAGE;
            break;
        }
        n_extra++;
    }
    cpx_averify_opts_t vo = {
        .gateway_pub = gw,
        .sender_signatures = !o->no_sigs,
        .threads = o->threads,
        .extra_heads = extra,
        .n_extra_heads = (size_t)n_extra,
        .progress = isatty(2) ? progress_bar : NULL,
    };
    cpx_averify_report_t rep;
    int vrc = CPX_ERR_ARG;
    if (rc == CPXCTL_OK && bundle) {
        if (!gw) {
            /* the bundle did not even parse: let the verifier say why */
            cpx_key_t *dummy = cpx_key_generate();
            vo.gateway_pub = dummy;
            vrc = cpx_averify_bundle(bundle, blen, &vo, &rep);
            cpx_key_destroy(&dummy);
        } else {
            vrc = cpx_averify_bundle(bundle, blen, &vo, &rep);
        }
    } else if (rc == CPXCTL_OK) {
        ro_t r;
        rc = open_ro(o->data, &r);
        if (rc == CPXCTL_OK) {
            vrc = cpx_averify_store(r.audit, r.txn, &vo, &rep);
            close_ro(&r);
        }
    }
    if (vo.progress)
        fprintf(stderr, "\n");
    if (rc == CPXCTL_OK) {
        if (vrc == CPX_OK || vrc == CPX_ERR_TAMPERED) {
            print_report(&rep, vrc, o->json);
            rc = vrc == CPX_OK ? CPXCTL_OK : CPXCTL_FAIL;
        } else {
            fprintf(stderr, "cpxctl audit: verify failed: %s\n", cpx_strerror(vrc));
            rc = CPXCTL_ENV;
        }
    }
    for (int i = 0; i < n_extra; i++)
        cpx_msg_free(extra[i]);
    cpx_key_destroy(&gw);
    free(bundle);
    return rc;
}

/* ---- proofs ---------------------------------------------------------------------------------- */

static void json_path(const cpx_hash_t *path, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        char h[65];
        hex(path[i], 32, h);
        printf("%s\"%s\"", i ? "," : "", h);
    }
    printf("]");
}

static int write_msg(const char *path, const void *msg)
{
    uint8_t *buf;
    size_t len;
    if (cpx_encode(msg, &buf, &len) != CPX_OK)
        return CPX_ERR_NOMEM;
    int rc = write_file(path, buf, len);
    free(buf);
    return rc;
}

static int cmd_prove(opts_t *o)
{
    uint64_t seq;
    if (o->n_pos != 1 || parse_u64(o->pos[0], &seq))
        return usage_err("prove SEQ [--tree-size N] --data DIR [--out FILE]%s", "");
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    uint64_t size = o->tree_size;
    cpx_sth_t *head = NULL;
    /* without a size, prove against the first signed head that covers the leaf */
    if (!size && cpx_audit_get_head(r.audit, r.txn, seq + 1, &head) == CPX_OK)
        size = head->tree_size;
    cpx_hash_t path[CPX_MAX_PROOF_PATH], root, lh;
    size_t n = 0;
    const uint8_t *leaf;
    size_t leaf_len;
    int err = cpx_audit_get_leaf_raw(r.audit, r.txn, seq, &leaf, &leaf_len);
    if (!err)
        err = cpx_audit_prove_inclusion(r.audit, r.txn, seq, size, path, &n);
    if (!err && !size)
        err = cpx_audit_size(r.audit, r.txn, &size);
    if (!err)
        err = cpx_audit_root(r.audit, r.txn, size, root);
    if (err) {
        fprintf(stderr, "cpxctl audit: no proof for seq %" PRIu64 " in tree size %" PRIu64
                        ": %s\n", seq, size, cpx_strerror(err));
        cpx_msg_free(head);
        close_ro(&r);
        return err == CPX_ERR_NOT_FOUND ? CPXCTL_USAGE : CPXCTL_ENV;
    }
    cpx_merkle_leaf_hash(leaf, leaf_len, lh);
    char h[65], rh[65];
    hex(lh, 32, h);
    hex(root, 32, rh);
    printf("{\"leaf_index\":%" PRIu64 ",\"tree_size\":%" PRIu64 ",\"leaf_hash\":\"%s\","
           "\"root\":\"%s\",\"path\":", seq, size, h, rh);
    json_path(path, n);
    if (head && head->tree_size == size)
        printf(",\"head_timestamp_ms\":%" PRId64, head->timestamp_ms);
    printf("}\n");
    if (o->out) {
        Cpx__V1__InclusionProof p = CPX__V1__INCLUSION_PROOF__INIT;
        ProtobufCBinaryData pd[CPX_MAX_PROOF_PATH];
        for (size_t i = 0; i < n; i++)
            pd[i] = (ProtobufCBinaryData){32, path[i]};
        p.leaf_index = seq;
        p.tree_size = size;
        p.path = pd;
        p.n_path = n;
        p.leaf_hash = (ProtobufCBinaryData){32, lh};
        if (write_msg(o->out, &p) != CPX_OK) {
            fprintf(stderr, "cpxctl audit: cannot write %s\n", o->out);
            rc = CPXCTL_ENV;
        }
    }
    cpx_msg_free(head);
    close_ro(&r);
    return rc;
}

static int cmd_consistency(opts_t *o)
{
    uint64_t m, n;
    if (o->n_pos != 2 || parse_u64(o->pos[0], &m) || parse_u64(o->pos[1], &n))
        return usage_err("consistency OLD NEW --data DIR [--out FILE]%s", "");
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    cpx_hash_t path[CPX_MAX_PROOF_PATH], r1, r2;
    size_t len = 0;
    int err = (m == 0 || m > n) ? CPX_ERR_ARG
                                : cpx_audit_prove_consistency(r.audit, r.txn, m, n, path, &len);
    if (!err)
        err = cpx_audit_root(r.audit, r.txn, m, r1);
    if (!err)
        err = cpx_audit_root(r.audit, r.txn, n, r2);
    if (err) {
        fprintf(stderr, "cpxctl audit: no consistency proof %" PRIu64 " -> %" PRIu64 ": %s\n",
                m, n, cpx_strerror(err));
        close_ro(&r);
        return CPXCTL_USAGE;
    }
    char h1[65], h2[65];
    hex(r1, 32, h1);
    hex(r2, 32, h2);
    printf("{\"first_size\":%" PRIu64 ",\"second_size\":%" PRIu64 ",\"first_root\":\"%s\","
           "\"second_root\":\"%s\",\"path\":", m, n, h1, h2);
    json_path(path, len);
    printf("}\n");
    if (o->out) {
        Cpx__V1__ConsistencyProof p = CPX__V1__CONSISTENCY_PROOF__INIT;
        ProtobufCBinaryData pd[CPX_MAX_PROOF_PATH];
        for (size_t i = 0; i < len; i++)
            pd[i] = (ProtobufCBinaryData){32, path[i]};
        p.first_size = m;
        p.second_size = n;
        p.path = pd;
        p.n_path = len;
        if (write_msg(o->out, &p) != CPX_OK) {
            fprintf(stderr, "cpxctl audit: cannot write %s\n", o->out);
            rc = CPXCTL_ENV;
        }
    }
    close_ro(&r);
    return rc;
}

/* Copies a decoded path, refusing hashes that are not 32 bytes. */
static int copy_path(ProtobufCBinaryData *in, size_t n, cpx_hash_t *out)
{
    if (n > CPX_MAX_PROOF_PATH)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (in[i].len != 32)
            return -1;
        memcpy(out[i], in[i].data, 32);
    }
    return 0;
}

static int cmd_check_proof(opts_t *o)
{
    if (!o->proof || !o->head || !o->gateway_key)
        return usage_err("check-proof --proof FILE --head HEAD --gateway-key PEM "
                         "[--leaf LEAF.bin | --old-head HEAD [--old-head-key PEM]] "
                         "[--first-key PEM]%s", "");
    cpx_key_t *gw = load_pub(o->gateway_key);
    /* after a rotation a head is signed by the key of its time but carries the log id of
     * the log's first key (--first-key); an old head may predate the rotation */
    cpx_key_t *first = o->first_key ? load_pub(o->first_key) : NULL;
    cpx_key_t *oldk = o->old_head_key ? load_pub(o->old_head_key) : NULL;
    uint8_t log_id[32], fraw[32];
    cpx_sth_t *head = load_head(o->head), *old = o->old_head ? load_head(o->old_head) : NULL;
    uint8_t *buf = NULL, *leaf = NULL;
    size_t len = 0, leaf_len = 0;
    int rc = CPXCTL_USAGE;
    if (gw) {
        cpx_key_public_raw(first ? first : gw, fraw);
        cpx_sha256(fraw, 32, log_id);
    }
    if (!gw || !head || (o->old_head && !old) || (o->first_key && !first) ||
        (o->old_head_key && !oldk) ||
        read_file(o->proof, &buf, &len, 64 << 10) != CPX_OK ||
        (o->leaf && read_file(o->leaf, &leaf, &leaf_len, CPX_MAX_LEAF_BYTES) != CPX_OK)) {
        fprintf(stderr, "cpxctl audit: cannot load the proof, head, leaf or key\n");
        goto out;
    }
    rc = CPXCTL_FAIL;
    if (cpx_sth_verify_key(head, gw, log_id) != CPX_OK) {
        printf("FAIL: the head's signature does not verify under the gateway key\n");
        goto out;
    }
    cpx_hash_t path[CPX_MAX_PROOF_PATH];
    if (old) {
        Cpx__V1__ConsistencyProof *p = NULL;
        if (cpx_decode(&cpx__v1__consistency_proof__descriptor, buf, len, 64 << 10,
                       (ProtobufCMessage **)&p) != CPX_OK || copy_path(p->path, p->n_path, path)) {
            printf("FAIL: not a consistency proof\n");
        } else if (cpx_sth_verify_key(old, oldk ? oldk : gw, log_id) != CPX_OK) {
            printf("FAIL: the old head's signature does not verify\n");
        } else if (p->first_size != old->tree_size || p->second_size != head->tree_size) {
            printf("FAIL: the proof is for sizes %" PRIu64 " -> %" PRIu64 ", the heads are %"
                   PRIu64 " -> %" PRIu64 "\n", p->first_size, p->second_size, old->tree_size,
                   head->tree_size);
        } else if (cpx_merkle_verify_consistency(p->first_size, p->second_size,
                                                 old->root_hash.data, head->root_hash.data, path,
                                                 p->n_path) != CPX_OK) {
            printf("FAIL: the consistency proof does not verify\n");
        } else {
            printf("ok: tree of size %" PRIu64 " is a prefix of the tree of size %" PRIu64 "\n",
                   p->first_size, p->second_size);
            rc = CPXCTL_OK;
        }
        cpx_msg_free(p);
        goto out;
    }
    Cpx__V1__InclusionProof *p = NULL;
    if (cpx_decode(&cpx__v1__inclusion_proof__descriptor, buf, len, 64 << 10,
                   (ProtobufCMessage **)&p) != CPX_OK || copy_path(p->path, p->n_path, path) ||
        p->leaf_hash.len != 32) {
        printf("FAIL: not an inclusion proof\n");
        cpx_msg_free(p);
        goto out;
    }
    cpx_hash_t lh;
    memcpy(lh, p->leaf_hash.data, 32);
    if (leaf) {
        cpx_hash_t got;
        cpx_merkle_leaf_hash(leaf, leaf_len, got);
        if (memcmp(got, lh, 32) != 0) {
            printf("FAIL: the leaf bytes do not hash to the proof's leaf hash\n");
            cpx_msg_free(p);
            goto out;
        }
    }
    if (p->tree_size != head->tree_size)
        printf("FAIL: the proof is for tree size %" PRIu64 ", the head is %" PRIu64 "\n",
               p->tree_size, head->tree_size);
    else if (cpx_merkle_verify_inclusion(lh, p->leaf_index, p->tree_size, path, p->n_path,
                                         head->root_hash.data) != CPX_OK)
        printf("FAIL: the inclusion proof does not verify\n");
    else {
        printf("ok: leaf %" PRIu64 " is in the signed tree of size %" PRIu64 "%s\n",
               p->leaf_index, p->tree_size, leaf ? " (leaf bytes match)" : "");
        rc = CPXCTL_OK;
    }
    cpx_msg_free(p);
out:
    cpx_key_destroy(&gw);
    cpx_key_destroy(&first);
    cpx_key_destroy(&oldk);
    cpx_msg_free(head);
    cpx_msg_free(old);
    free(buf);
    free(leaf);
    return rc;
}

/* ---- export ---------------------------------------------------------------------------------- */

static int cmd_export(opts_t *o)
{
    if (!o->out)
        return usage_err("export --data DIR --from A --to B --out FILE [--gateway-key PEM]%s",
                         "");
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    cpx_key_t *gw = NULL;
    if (o->gateway_key) {
        gw = load_pub(o->gateway_key);
    } else {
        cpx_audit_dbs_t db;
        cpx_audit_dbs(r.audit, &db);
        MDB_val k = {11, "gateway_pub"}, v;
        if (mdb_get(r.txn, db.meta, &k, &v) == 0 && v.mv_size == 32)
            gw = cpx_key_from_raw_public(v.mv_data);
    }
    if (!gw) {
        fprintf(stderr, "cpxctl audit: no gateway key (give --gateway-key PEM)\n");
        close_ro(&r);
        return CPXCTL_USAGE;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out);
    FILE *f = fopen(tmp, "wb");
    uint64_t end = 0;
    int err = f ? cpx_audit_export(r.audit, r.txn, gw, o->from, o->to, f, &end) : CPX_ERR_IO;
    if (f && fclose(f) != 0 && !err)
        err = CPX_ERR_IO;
    if (!err && rename(tmp, o->out) != 0)
        err = CPX_ERR_IO;
    if (err) {
        unlink(tmp);
        fprintf(stderr, "cpxctl audit: export failed: %s\n", cpx_strerror(err));
        rc = err == CPX_ERR_IO ? CPXCTL_ENV : CPXCTL_USAGE;
    } else {
        printf("exported leaves [%" PRIu64 ", %" PRIu64 ") to %s\n", o->from, end, o->out);
    }
    cpx_key_destroy(&gw);
    close_ro(&r);
    return rc;
}

/* ---- human-readable lines -------------------------------------------------------------------- */

static void print_leaf(const cpx_audit_leaf_t *lf, int json)
{
    char t[40];
    fmt_time(lf->time_ms, t, sizeof t);
    if (json) {
        printf("{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"event\":\"%s\",\"sender\":", lf->seq, t,
               event_name(lf->event));
        json_str(stdout, lf->sender);
        printf(",\"recipients\":[");
        for (size_t i = 0; i < lf->n_recipients; i++) {
            if (i)
                printf(",");
            json_str(stdout, lf->recipients[i]);
        }
        printf("],\"case_ref\":");
        json_str(stdout, lf->case_ref);
        printf(",\"body_kind\":");
        json_str(stdout, lf->body_kind);
        printf(",\"reason\":");
        json_str(stdout, lf->reason);
        printf(",\"detail\":");
        json_str(stdout, lf->detail);
        if (lf->ref_seq)
            printf(",\"ref_seq\":%" PRIu64, lf->ref_seq);
        printf("}\n");
        return;
    }
    printf("%s  #%-8" PRIu64 " %-22s %s", t, lf->seq, event_name(lf->event),
           lf->sender && *lf->sender ? lf->sender : "-");
    if (lf->n_recipients) {
        printf(" ->");
        for (size_t i = 0; i < lf->n_recipients; i++)
            printf("%s%s", i ? "," : " ", lf->recipients[i]);
    }
    if (lf->case_ref && *lf->case_ref)
        printf("  case=%s", lf->case_ref);
    if (lf->body_kind && *lf->body_kind)
        printf("  %s", lf->body_kind);
    if (lf->reason && *lf->reason)
        printf("  reason=\"%s\"", lf->reason);
    if (lf->detail && *lf->detail)
        printf("  [%s]", lf->detail);
    if (lf->ref_seq)
        printf("  (follows #%" PRIu64 ")", lf->ref_seq);
    printf("\n");
}

/* A leaf no ordinary view shows: it concerns a sealed message (the vault holds its
 * id), a case sealed since, or a sealed subject (case_ref is a "P:" pseudonym). The
 * leaves stay in the log unchanged (every proof stays valid); only views skip them. */
static int withheld(MDB_txn *txn, const cpx_audit_leaf_t *lf)
{
    /* an error reading the vault withholds too: never show what may be sealed */
    return cpx_vault_view_withheld(txn, lf->case_ref, lf->message_id.data, lf->message_id.len) != 0;
}

typedef struct tl {
    ro_t *r;
    int json;
    uint64_t count, withheld;
} tl_t;

static int timeline_one(void *ctx, uint64_t seq)
{
    tl_t *t = ctx;
    cpx_audit_leaf_t *lf;
    int rc = cpx_audit_get_leaf(t->r->audit, t->r->txn, seq, &lf);
    if (rc)
        return rc;
    if (withheld(t->r->txn, lf)) {
        t->withheld++;
    } else {
        print_leaf(lf, t->json);
        t->count++;
    }
    cpx_msg_free(lf);
    return 0;
}

static int count_one(void *ctx, uint64_t seq)
{
    (void)seq;
    (*(uint64_t *)ctx)++;
    return 0;
}

/* The auditor's credential is the sealing policy's pseudonym key: it is right when the
 * gateway's record of sealed cases holds this case under the key's pseudonym. */
static int auditor_knows(MDB_txn *txn, const char *key_path, const char *case_id)
{
    uint8_t pkey[32], buf[1 + 256], p[1 + CPX_SHA256_LEN];
    if (cpx_symkey_load(key_path, pkey) != CPX_OK)
        return 0;
    size_t n = strnlen(case_id, 256);
    buf[0] = p[0] = CPX_VAULT_TAG_CASE;
    memcpy(buf + 1, case_id, n);
    cpx_hmac_sha256(pkey, sizeof pkey, buf, n + 1, p + 1);
    cpx_cleanse(pkey, sizeof pkey);
    MDB_dbi dbi;
    MDB_val k = {sizeof p, p}, v;
    return mdb_dbi_open(txn, "sealed.case", 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &v) == 0;
}

static int cmd_timeline(opts_t *o)
{
    if (o->n_pos != 1)
        return usage_err("timeline CASE-ID --data DIR [--json] [--auditor PSEUDONYM_KEY]%s", "");
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    const char *case_id = o->pos[0];
    tl_t t = {&r, o->json, 0, 0};
    int hidden = cpx_vault_case_hidden(r.txn, case_id);
    int err = hidden < 0 ? hidden : CPX_OK;
    if (hidden > 0) {
        /* A sealed case: without the auditor's key, the answer of an unknown case; with
         * it, that the case is sealed, without any of its content. */
        if (o->auditor && auditor_knows(r.txn, o->auditor, case_id)) {
            uint64_t n = 0;
            err = cpx_audit_case_foreach(r.audit, r.txn, case_id, count_one, &n);
            if (!err && o->json)
                printf("{\"case\":\"%s\",\"sealed\":true,\"entries_withheld\":%" PRIu64 "}\n", case_id, n);
            else if (!err)
                printf("case %s is sealed: %" PRIu64 " log entries withheld (the access log: "
                       "cpxctl sealed access-log %s --case --auditor KEY)\n", case_id, n, case_id);
        } else if (!o->json) {
            printf("no events for case %s\n", case_id);
        }
    } else if (!err) {
        err = cpx_audit_case_foreach(r.audit, r.txn, case_id, timeline_one, &t);
        if (!err && !t.count && !o->json)
            printf("no events for case %s\n", case_id);
    }
    if (err) {
        fprintf(stderr, "cpxctl audit: timeline: %s\n", cpx_strerror(err));
        rc = CPXCTL_ENV;
    }
    close_ro(&r);
    return rc;
}

static int cmd_tail(opts_t *o)
{
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    uint64_t size, n = o->n ? o->n : 20;
    if (cpx_audit_size(r.audit, r.txn, &size) != CPX_OK) {
        close_ro(&r);
        return CPXCTL_ENV;
    }
    for (uint64_t s = size > n ? size - n : 0; s < size; s++) {
        cpx_audit_leaf_t *lf;
        if (cpx_audit_get_leaf(r.audit, r.txn, s, &lf) != CPX_OK) {
            fprintf(stderr, "cpxctl audit: leaf %" PRIu64 " unreadable\n", s);
            rc = CPXCTL_FAIL;
            continue;
        }
        if (!withheld(r.txn, lf))
            print_leaf(lf, o->json);
        cpx_msg_free(lf);
    }
    close_ro(&r);
    return rc;
}

static int cmd_head(opts_t *o)
{
    ro_t r;
    int rc = open_ro(o->data, &r);
    if (rc)
        return rc;
    cpx_sth_t *h = NULL;
    if (cpx_audit_get_head(r.audit, r.txn, o->size, &h) != CPX_OK) {
        fprintf(stderr, "cpxctl audit: no signed head%s\n", o->size ? " of that size" : "");
        close_ro(&r);
        return CPXCTL_FAIL;
    }
    if (h->log_id.len != 32 || h->root_hash.len != 32) {
        fprintf(stderr, "cpxctl audit: stored head malformed\n");
        cpx_msg_free(h);
        close_ro(&r);
        return CPXCTL_FAIL;
    }
    char id[65], root[65], sig[129], t[40];
    hex(h->log_id.data, 32, id);
    hex(h->root_hash.data, 32, root);
    hex(h->signature.data, h->signature.len > 64 ? 64 : h->signature.len, sig);
    fmt_time(h->timestamp_ms, t, sizeof t);
    if (o->json)
        printf("{\"log_id\":\"%s\",\"tree_size\":%" PRIu64 ",\"root_hash\":\"%s\","
               "\"timestamp_ms\":%" PRId64 ",\"time\":\"%s\",\"signature\":\"%s\"}\n",
               id, h->tree_size, root, h->timestamp_ms, t, sig);
    else
        printf("log id    %s\ntree size %" PRIu64 "\nroot      %s\ntime      %s (%" PRId64
               ")\nsignature %s\n", id, h->tree_size, root, t, h->timestamp_ms, sig);
    uint8_t sb[CPX_STH_SIGNING_LEN];
    cpx_sth_signing_bytes(h, sb);
    if ((o->out && write_msg(o->out, h) != CPX_OK) ||
        (o->out_signing_bytes && write_file(o->out_signing_bytes, sb, sizeof sb) != CPX_OK) ||
        (o->out_sig && write_file(o->out_sig, h->signature.data, h->signature.len) != CPX_OK)) {
        fprintf(stderr, "cpxctl audit: cannot write output files\n");
        rc = CPXCTL_ENV;
    }
    cpx_msg_free(h);
    close_ro(&r);
    return rc;
}

/* ---- demo-log (hidden) ---------------------------------------------------------------------- */

static const char *demo_depts[] = {"POLICE", "CIVIL_AFFAIRS", "EDUCATION", "HEALTH",
                                   "TOWN_HUASHI", "WOMENS_FED", "COURT", "PROCURATORATE"};
#define DEMO_BATCH_ENVS 64

typedef struct demo {
    cpx_audit_t *audit;
    MDB_txn *txn;
    int64_t t;
    uint64_t leaves;
} demo_t;

static int demo_append(demo_t *d, cpx_audit_leaf_t *lf, uint64_t *seq)
{
    lf->time_ms = d->t;
    d->leaves++;
    return cpx_audit_append(d->audit, d->txn, lf, seq);
}

/* The batch and per-message signing bytes of include/cpx/envsign.h, built here from
 * digests alone (the demo has no envelopes). The verifier checks them with
 * cpx_envsign_*, so a layout slip on either side shows up as failed signatures. */
static void sign_digest(const cpx_key_t *k, const uint8_t digest[32], uint8_t sig[64])
{
    static const char tag[] = "cpx.v1.sig.envelope";
    uint8_t m[sizeof tag + 32];
    memcpy(m, tag, sizeof tag);
    memcpy(m + sizeof tag, digest, 32);
    cpx_key_sign(k, m, sizeof m, sig);
}

static void sign_batch(const cpx_key_t *k, uint64_t size, const cpx_hash_t root, uint8_t sig[64])
{
    static const char tag[] = "cpx.v1.sig.batch";
    uint8_t m[sizeof tag + 8 + 32];
    memcpy(m, tag, sizeof tag);
    cpx_be64_put(m + sizeof tag, size);
    memcpy(m + sizeof tag + 8, root, 32);
    cpx_key_sign(k, m, sizeof m, sig);
}

static int cmd_demo_log(opts_t *o)
{
    if (!o->data || !o->key || !o->n)
        return usage_err("demo-log --data DIR --key GATEWAY.pem -n N [--batch 1000] "
                         "[--depts 4] [--per-message]%s", "");
    uint64_t per_txn = o->batch ? o->batch : 1000;
    size_t nd = o->depts ? (size_t)o->depts : 4;
    if (nd > sizeof demo_depts / sizeof demo_depts[0])
        nd = sizeof demo_depts / sizeof demo_depts[0];
    cpx_key_t *gw = cpx_key_load_private(o->key);
    if (!gw) {
        fprintf(stderr, "cpxctl audit: cannot load private key %s\n", o->key);
        return CPXCTL_USAGE;
    }
    MDB_env *env;
    if (cpx_store_open(o->data, DEMO_MAP_SIZE, 0, &env) != CPX_OK) {
        cpx_key_destroy(&gw);
        return CPXCTL_ENV;
    }
    demo_t d = {cpx_audit_open(env), NULL, 1764370000000, 0};
    cpx_key_t *dk[8] = {0};
    uint8_t kid[8][8], raw[8][32];
    int rc = d.audit ? CPXCTL_OK : CPXCTL_ENV;
    uint64_t msg = 0;
    /* pending batch-signed envelopes of one department */
    uint8_t digests[DEMO_BATCH_ENVS][32];
    while (rc == CPXCTL_OK && d.leaves < o->n) {
        if (mdb_txn_begin(env, NULL, 0, &d.txn) != 0) {
            rc = CPXCTL_ENV;
            break;
        }
        uint64_t stop = d.leaves + per_txn;
        int err = 0;
        if (d.leaves == 0) {
            for (size_t i = 0; i < nd && !err; i++) {
                dk[i] = cpx_key_generate();
                cpx_key_public_raw(dk[i], raw[i]);
                cpx_key_id(dk[i], kid[i]);
                cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
                lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
                lf.sender = (char *)demo_depts[i];
                lf.key = (ProtobufCBinaryData){32, raw[i]};
                lf.key_id = (ProtobufCBinaryData){8, kid[i]};
                lf.detail = "ed25519";
                err = demo_append(&d, &lf, NULL);
            }
        }
        while (!err && d.leaves < stop && d.leaves < o->n) {
            /* one department sends a batch of envelopes, each accepted, routed, delivered */
            size_t s = (size_t)(msg / DEMO_BATCH_ENVS % nd), r = (s + 1) % nd;
            size_t nb = DEMO_BATCH_ENVS;
            cpx_hash_t lh[DEMO_BATCH_ENVS], root;
            uint8_t bsig[64];
            for (size_t i = 0; i < nb; i++) {
                uint64_t id = msg + i;
                cpx_sha256(&id, sizeof id, digests[i]);
                cpx_merkle_leaf_hash(digests[i], 32, lh[i]);
            }
            cpx_merkle_root(lh, nb, root);
            if (!o->per_message)
                sign_batch(dk[s], nb, root, bsig);
            for (size_t i = 0; i < nb && !err && d.leaves < o->n && d.leaves < stop; i++, msg++) {
                char case_ref[32], *rcpt[1] = {(char *)demo_depts[r]};
                uint8_t mid[16] = {0}, sig[64];
                cpx_hash_t path[CPX_MAX_PROOF_PATH];
                ProtobufCBinaryData pd[CPX_MAX_PROOF_PATH];
                size_t plen = 0;
                memcpy(mid, &msg, sizeof msg);
                snprintf(case_ref, sizeof case_ref, "JY-2026-%06" PRIu64, msg / 3 % 5000);
                d.t += 1 + (int64_t)(msg % 3);
                cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
                lf.event = CPX__V1__AUDIT_EVENT__ACCEPTED;
                lf.sender = (char *)demo_depts[s];
                lf.recipients = rcpt;
                lf.n_recipients = 1;
                lf.case_ref = case_ref;
                lf.message_id = (ProtobufCBinaryData){16, mid};
                lf.envelope_digest = (ProtobufCBinaryData){32, digests[i]};
                lf.key_id = (ProtobufCBinaryData){8, kid[s]};
                lf.body_kind = msg % 2 ? "referral" : "discovery_report";
                if (o->per_message) {
                    sign_digest(dk[s], digests[i], sig);
                    lf.signature = (ProtobufCBinaryData){64, sig};
                } else {
                    cpx_merkle_path(lh, nb, i, path, CPX_MAX_PROOF_PATH, &plen);
                    for (size_t j = 0; j < plen; j++)
                        pd[j] = (ProtobufCBinaryData){32, path[j]};
                    lf.batch_root = (ProtobufCBinaryData){32, root};
                    lf.batch_signature = (ProtobufCBinaryData){64, bsig};
                    lf.batch_index = i;
                    lf.batch_size = nb;
                    lf.batch_path = pd;
                    lf.n_batch_path = plen;
                }
                uint64_t acc;
                err = demo_append(&d, &lf, &acc);
                if (err || d.leaves >= o->n)
                    break;
                cpx_audit_leaf_t rt = CPX__V1__AUDIT_LEAF__INIT;
                rt.event = CPX__V1__AUDIT_EVENT__ROUTED;
                rt.sender = lf.sender;
                rt.recipients = rcpt;
                rt.n_recipients = 1;
                rt.case_ref = case_ref;
                rt.message_id = lf.message_id;
                rt.envelope_digest = lf.envelope_digest;
                rt.body_kind = lf.body_kind;
                rt.detail = "rule=seed";
                rt.ref_seq = acc;
                err = demo_append(&d, &rt, NULL);
                if (err || d.leaves >= o->n)
                    break;
                rt.event = CPX__V1__AUDIT_EVENT__DELIVERED;
                rt.detail = "";
                err = demo_append(&d, &rt, NULL);
            }
        }
        if (!err)
            err = cpx_audit_sign_head(d.audit, d.txn, gw, d.t, NULL);
        if (err) {
            mdb_txn_abort(d.txn);
            cpx_audit_aborted(d.audit);
            fprintf(stderr, "cpxctl audit: demo-log: %s\n", cpx_strerror(err));
            rc = CPXCTL_ENV;
        } else if (mdb_txn_commit(d.txn) != 0) {
            cpx_audit_aborted(d.audit);
            rc = CPXCTL_ENV;
        } else {
            cpx_audit_committed(d.audit);
        }
    }
    if (rc == CPXCTL_OK)
        printf("demo log: %" PRIu64 " leaves, %zu departments, %s signatures\n", d.leaves, nd,
               o->per_message ? "per-message" : "batch");
    for (size_t i = 0; i < 8; i++)
        cpx_key_destroy(&dk[i]);
    cpx_audit_destroy(&d.audit);
    mdb_env_close(env);
    cpx_key_destroy(&gw);
    return rc;
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

static const struct sub {
    const char *name;
    int (*fn)(opts_t *);
} subs[] = {
    {"verify", cmd_verify},           {"prove", cmd_prove},   {"consistency", cmd_consistency},
    {"check-proof", cmd_check_proof}, {"export", cmd_export}, {"timeline", cmd_timeline},
    {"head", cmd_head},               {"tail", cmd_tail},     {"demo-log", cmd_demo_log},
};

static void audit_usage(FILE *f)
{
    fprintf(f,
            "usage: cpxctl audit COMMAND [OPTIONS]\n"
            "  verify  (--data DIR | --export FILE) [--gateway-key FIRST.pem]\n"
            "          [--head STH.bin]... [--no-sender-sigs] [--threads 1|2] [--json]\n"
            "  prove SEQ [--tree-size N] --data DIR [--out PROOF.bin]\n"
            "  consistency OLD NEW --data DIR [--out PROOF.bin]\n"
            "  check-proof --proof PROOF.bin --head STH.bin --gateway-key PEM\n"
            "          [--leaf LEAF.bin | --old-head OLD_STH.bin [--old-head-key PEM]]\n"
            "          [--first-key PEM]  (rotated log: the log's first key, its log id)\n"
            "  export --data DIR --from A --to B --out FILE [--gateway-key PEM]\n"
            "  timeline CASE-ID --data DIR [--json] [--auditor PSEUDONYM_KEY]\n"
            "  head --data DIR [--size N] [--json] [--out STH.bin]\n"
            "          [--out-signing-bytes head.bin --out-sig head.sig]\n"
            "  tail -n N --data DIR [--json]\n"
            "exit: 0 ok, 1 check failed, 2 usage/input, 3 environment\n");
}

static int cmd_audit(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        audit_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CPXCTL_USAGE : CPXCTL_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (strcmp(subs[i].name, argv[1]))
            continue;
        opts_t o;
        int rc = parse_opts(argc - 1, argv + 1, &o);
        if (rc)
            return rc;
        return subs[i].fn(&o);
    }
    fprintf(stderr, "cpxctl audit: unknown command '%s'\n", argv[1]);
    audit_usage(stderr);
    return CPXCTL_USAGE;
}

CPXCTL_COMMAND("audit", cmd_audit,
               "verify|prove|consistency|check-proof|export|timeline|head|tail the exchange log")
