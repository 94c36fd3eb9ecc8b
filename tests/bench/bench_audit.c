/* bench_audit — the exchange log's figures (issue 3), each with its baseline measured in
 * the same run:
 *   append:  ~300-byte leaves, durable sync, 1000 per transaction, vs bare mdb_put of
 *            the same bytes with the same batching (target ratio >= 0.5);
 *   verify:  an N-leaf log (default 1,000,000), hashes + nodes + heads on two threads, vs
 *            single-thread SHA-256 alone over the same leaf bytes (target >= 0.5);
 *            sender signatures separately (per-message and batch-signed logs);
 *   proofs:  inclusion and consistency proof generation at N leaves, median and worst us.
 * Usage: bench_audit [N_VERIFY [N_APPEND]]  (defaults 1000000 200000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/audit.h"
#include "cpx/auditverify.h"
#include "cpx/err.h"
#include "cpx/store.h"

#define PER_TXN 1000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char root_dir[64];

static void die(const char *what)
{
    fprintf(stderr, "bench_audit: %s\n", what);
    exit(1);
}

/* A realistic ROUTED leaf of about 300 bytes. */
static void fill_leaf(cpx_audit_leaf_t *lf, uint64_t i, char *case_ref, uint8_t *digest,
                      uint8_t *mid, char **rcpt)
{
    cpx_audit_leaf_t init = CPX__V1__AUDIT_LEAF__INIT;
    *lf = init;
    snprintf(case_ref, 32, "JY-2026-%06llu", (unsigned long long)(i % 100000));
    memcpy(digest, &i, sizeof i);
    memcpy(mid, &i, sizeof i);
    lf->event = CPX__V1__AUDIT_EVENT__ROUTED;
    lf->time_ms = 1764370000000 + (int64_t)i;
    lf->sender = "CIVIL_AFFAIRS";
    lf->recipients = rcpt;
    lf->n_recipients = 3;
    lf->case_ref = case_ref;
    lf->message_id = (ProtobufCBinaryData){16, mid};
    lf->envelope_digest = (ProtobufCBinaryData){32, digest};
    lf->key_id = (ProtobufCBinaryData){8, digest};
    lf->body_kind = "discovery_report";
    lf->detail = "rule=harm-to-police;priority=IMMEDIATE;sensitivity=NORMAL;"
                 "route=seed-2015-77;deadline=PT24H;view=full;town=TOWN_HUASHI;"
                 "categories=HARMED,GUARDIANSHIP_MISSING;tasks=JUDICIAL_PROTECTION";
    lf->reason = "";
    lf->ref_seq = i ? i - 1 : 0;
}

static MDB_env *open_env(const char *name, unsigned extra)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", root_dir, name);
    MDB_env *env;
    if (cpx_store_open(dir, (size_t)16 << 30, extra, &env) != CPX_OK)
        die("store open");
    return env;
}

/* Appends n leaves through the audit log, one head per transaction. */
static double build_log(MDB_env *env, cpx_audit_t *a, uint64_t n, const cpx_key_t *gw,
                        size_t *leaf_bytes)
{
    char *rcpt[3] = {"POLICE", "EDUCATION", "TOWN_HUASHI"};
    double t0 = now();
    size_t total = 0;
    for (uint64_t i = 0; i < n;) {
        MDB_txn *txn;
        if (mdb_txn_begin(env, NULL, 0, &txn))
            die("txn");
        for (uint64_t j = 0; j < PER_TXN && i < n; j++, i++) {
            cpx_audit_leaf_t lf;
            char case_ref[32];
            uint8_t digest[32] = {0}, mid[16] = {0};
            fill_leaf(&lf, i, case_ref, digest, mid, rcpt);
            if (cpx_audit_append(a, txn, &lf, NULL))
                die("append");
            if (leaf_bytes && i == 0)
                total = protobuf_c_message_get_packed_size(&lf.base);
        }
        if (gw && cpx_audit_sign_head(a, txn, gw, 0, NULL))
            die("head");
        if (mdb_txn_commit(txn))
            die("commit");
        cpx_audit_committed(a);
    }
    if (leaf_bytes)
        *leaf_bytes = total;
    return now() - t0;
}


static int cmp_double(const void *a, const void *b);

/* The two sides of one append round, each in its own durable environment. */
typedef struct side {
    MDB_env *env;
    MDB_dbi dbi;      /* bare side */
    cpx_audit_t *a;   /* audit side */
    cpx_key_t *gw;
    double secs;
} side_t;

/* One transaction of the baseline: the same encoded bytes, bare mdb_put MDB_APPEND,
 * same batching, durable commit. */
static void bare_txn(side_t *s, uint64_t from, uint64_t to)
{
    char *rcpt[3] = {"POLICE", "EDUCATION", "TOWN_HUASHI"};
    uint8_t buf[2048];
    double t0 = now();
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn))
        die("txn");
    for (uint64_t i = from; i < to; i++) {
        cpx_audit_leaf_t lf;
        char case_ref[32];
        uint8_t digest[32] = {0}, mid[16] = {0}, key[8];
        fill_leaf(&lf, i, case_ref, digest, mid, rcpt);
        lf.seq = i;
        size_t len = protobuf_c_message_pack(&lf.base, buf);
        cpx_be64_put(key, i);
        MDB_val k = {8, key}, v = {len, buf};
        if (mdb_put(txn, s->dbi, &k, &v, MDB_APPEND))
            die("put");
    }
    if (mdb_txn_commit(txn))
        die("commit");
    s->secs += now() - t0;
}

/* One transaction through the audit log: leaf records with their nodes, case index,
 * one signed head, durable commit. */
static void audit_txn(side_t *s, uint64_t from, uint64_t to, size_t *leaf_bytes)
{
    char *rcpt[3] = {"POLICE", "EDUCATION", "TOWN_HUASHI"};
    double t0 = now();
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn))
        die("txn");
    for (uint64_t i = from; i < to; i++) {
        cpx_audit_leaf_t lf;
        char case_ref[32];
        uint8_t digest[32] = {0}, mid[16] = {0};
        fill_leaf(&lf, i, case_ref, digest, mid, rcpt);
        if (cpx_audit_append(s->a, txn, &lf, NULL))
            die("append");
        if (i == 0)
            *leaf_bytes = protobuf_c_message_get_packed_size(&lf.base);
    }
    if (cpx_audit_sign_head(s->a, txn, s->gw, 0, NULL))
        die("head");
    if (mdb_txn_commit(txn))
        die("commit");
    cpx_audit_committed(s->a);
    s->secs += now() - t0;
}

/* One round: both sides in step, transaction by transaction, the side that goes first
 * alternating, so both meet the same disk (durable commits on a shared machine swing
 * by 2x within seconds; side-by-side rounds of whole runs measured that swing, not
 * the log). Each side's rate counts its own transactions only. */
static void append_round(uint64_t n, int round, double *bare, double *audit,
                         size_t *leaf_bytes)
{
    char name[32];
    side_t b = {0}, a = {0};
    snprintf(name, sizeof name, "bare%d", round);
    b.env = open_env(name, 0);
    MDB_txn *txn;
    if (mdb_txn_begin(b.env, NULL, 0, &txn) || mdb_dbi_open(txn, "bare", MDB_CREATE, &b.dbi) ||
        mdb_txn_commit(txn))
        die("bare dbi");
    snprintf(name, sizeof name, "append%d", round);
    a.env = open_env(name, 0);
    a.a = cpx_audit_open(a.env);
    a.gw = cpx_key_generate();
    if (!a.a || !a.gw)
        die("audit open");
    for (uint64_t i = 0, t = 0; i < n; i += PER_TXN, t++) {
        uint64_t to = i + PER_TXN < n ? i + PER_TXN : n;
        if ((t + (uint64_t)round) & 1) {
            audit_txn(&a, i, to, leaf_bytes);
            bare_txn(&b, i, to);
        } else {
            bare_txn(&b, i, to);
            audit_txn(&a, i, to, leaf_bytes);
        }
    }
    *bare = (double)n / b.secs;
    *audit = (double)n / a.secs;
    cpx_audit_destroy(&a.a);
    cpx_key_destroy(&a.gw);
    mdb_env_close(a.env);
    mdb_env_close(b.env);
}

/* Five rounds; medians of each rate and of the per-round ratio, with its range. */
static void bench_append(uint64_t n)
{
    enum { ROUNDS = 5 };
    double bare[ROUNDS], audit[ROUNDS], ratio[ROUNDS];
    size_t leaf_bytes = 0;
    for (int r = 0; r < ROUNDS; r++) {
        append_round(n, r, &bare[r], &audit[r], &leaf_bytes);
        ratio[r] = audit[r] / bare[r];
    }
    qsort(bare, ROUNDS, sizeof bare[0], cmp_double);
    qsort(audit, ROUNDS, sizeof audit[0], cmp_double);
    qsort(ratio, ROUNDS, sizeof ratio[0], cmp_double);
    printf("append: %llu leaves of %zu bytes, durable sync, %d per txn + 1 signed head per txn,"
           " %d rounds, the two sides alternating transaction by transaction (medians)\n",
           (unsigned long long)n, leaf_bytes, PER_TXN, ROUNDS);
    printf("  bare mdb_put (same bytes, MDB_APPEND): %10.0f leaves/s\n", bare[ROUNDS / 2]);
    printf("  cpx_audit_append (+ nodes, case index, head): %10.0f leaves/s\n", audit[ROUNDS / 2]);
    printf("  ratio audit/bare = %.2f (rounds %.2f..%.2f; target >= 0.5)\n", ratio[ROUNDS / 2],
           ratio[0], ratio[ROUNDS - 1]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_verify_and_proofs(uint64_t n)
{
    /* built without fsync: only the reading side is measured here */
    MDB_env *env = open_env("verify", MDB_NOSYNC);
    cpx_audit_t *a = cpx_audit_open(env);
    cpx_key_t *gw = cpx_key_generate();
    double tb = build_log(env, a, n, gw, NULL);
    fprintf(stderr, "built %llu-leaf log in %.1f s\n", (unsigned long long)n, tb);

    /* baseline: single-thread SHA-256 (leaf hash) over the same bytes, from memory */
    MDB_txn *txn;
    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(a, &db);
    MDB_cursor *cur;
    mdb_cursor_open(txn, db.leaves, &cur);
    const uint8_t **ptr = malloc(n * sizeof *ptr);
    size_t *len = malloc(n * sizeof *len), total = 0;
    MDB_val k, v;
    uint64_t i = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && i < n;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), i++) {
        /* the leaf bytes only, without the node hashes stored in front of them */
        if (cpx_audit_record_split(v.mv_data, v.mv_size, NULL, NULL, &ptr[i], &len[i]))
            die("record");
        total += len[i];
    }
    mdb_cursor_close(cur);
    /* Three rounds, each timing the baseline and then verify back to back, so a burst
     * of load from other work on the machine hits one round's pair, not the whole
     * figure; medians of the rates and of the per-round ratio. */
    enum { VROUNDS = 3 };
    double r_sha[VROUNDS], r_ver[VROUNDS], r_ver1[VROUNDS], ratio[VROUNDS];
    cpx_hash_t h, acc = {0};
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1};
    cpx_averify_report_t rep;
    double t0;
    for (int r = 0; r < VROUNDS; r++) {
        t0 = now();
        for (i = 0; i < n; i++) {
            cpx_merkle_leaf_hash(ptr[i], len[i], h);
            acc[0] ^= h[0];
        }
        r_sha[r] = (double)n / (now() - t0);
        o.threads = 0;
        t0 = now();
        if (cpx_averify_store(a, txn, &o, &rep) != CPX_OK)
            die(rep.what);
        r_ver[r] = (double)n / (now() - t0);
        ratio[r] = r_ver[r] / r_sha[r];
        o.threads = 1;
        t0 = now();
        if (cpx_averify_store(a, txn, &o, &rep) != CPX_OK)
            die(rep.what);
        r_ver1[r] = (double)n / (now() - t0);
    }
    free(ptr);
    free(len);
    qsort(r_sha, VROUNDS, sizeof r_sha[0], cmp_double);
    qsort(r_ver, VROUNDS, sizeof r_ver[0], cmp_double);
    qsort(r_ver1, VROUNDS, sizeof r_ver1[0], cmp_double);
    qsort(ratio, VROUNDS, sizeof ratio[0], cmp_double);
    printf("verify: %llu leaves (avg %zu bytes), %llu heads, all node records compared,"
           " %d rounds (medians)\n",
           (unsigned long long)n, total / n, (unsigned long long)rep.heads, VROUNDS);
    printf("  SHA-256 alone, 1 thread, same bytes: %10.0f leaves/s (%x)\n", r_sha[VROUNDS / 2],
           acc[0]);
    printf("  verify, 2 threads:                   %10.0f leaves/s\n", r_ver[VROUNDS / 2]);
    printf("  verify, 1 thread:                    %10.0f leaves/s\n", r_ver1[VROUNDS / 2]);
    printf("  ratio verify(2 threads)/SHA-256 alone = %.2f (rounds %.2f..%.2f; target >= 0.5)\n",
           ratio[VROUNDS / 2], ratio[0], ratio[VROUNDS - 1]);

    /* proofs: random leaves / sizes, each timed on its own */
    enum { P = 2000 };
    static double tin[P], tco[P];
    cpx_hash_t path[CPX_MAX_PROOF_PATH];
    size_t plen;
    srand(7);
    for (int j = 0; j < P; j++) {
        uint64_t size = 1 + ((uint64_t)rand() * 7919u) % n;
        uint64_t seq = ((uint64_t)rand() * 104729u) % size;
        t0 = now();
        if (cpx_audit_prove_inclusion(a, txn, seq, size, path, &plen))
            die("inclusion");
        tin[j] = (now() - t0) * 1e6;
        uint64_t m = 1 + ((uint64_t)rand() * 15485863u) % size;
        t0 = now();
        if (cpx_audit_prove_consistency(a, txn, m, size, path, &plen))
            die("consistency");
        tco[j] = (now() - t0) * 1e6;
    }
    qsort(tin, P, sizeof tin[0], cmp_double);
    qsort(tco, P, sizeof tco[0], cmp_double);
    printf("proofs at %llu leaves (%d random each, warm cache):\n", (unsigned long long)n, P);
    printf("  inclusion:   median %.1f us, worst %.1f us (target median < 100)\n", tin[P / 2],
           tin[P - 1]);
    printf("  consistency: median %.1f us, worst %.1f us (target median < 100)\n", tco[P / 2],
           tco[P - 1]);
    mdb_txn_abort(txn);
    cpx_audit_destroy(&a);
    mdb_env_close(env);
    cpx_key_destroy(&gw);
}

/* Sender signatures, separately: ACCEPTED leaves signed per message, or per batch of 64. */
static void bench_sigs(uint64_t n, int batch)
{
    MDB_env *env = open_env(batch ? "sig_batch" : "sig_msg", MDB_NOSYNC);
    cpx_audit_t *a = cpx_audit_open(env);
    cpx_key_t *gw = cpx_key_generate(), *dk = cpx_key_generate();
    uint8_t raw[32], kid[8];
    cpx_key_public_raw(dk, raw);
    cpx_key_id(dk, kid);
    MDB_txn *txn;
    uint64_t i = 0;
    while (i < n) {
        mdb_txn_begin(env, NULL, 0, &txn);
        if (i == 0) {
            cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
            lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
            lf.sender = "POLICE";
            lf.key = (ProtobufCBinaryData){32, raw};
            lf.key_id = (ProtobufCBinaryData){8, kid};
            cpx_audit_append(a, txn, &lf, NULL);
        }
        for (int b = 0; b < PER_TXN / 64 && i < n; b++) {
            uint8_t d[64][32], bsig[64];
            cpx_hash_t lh[64], root;
            for (int j = 0; j < 64; j++) {
                uint64_t id = i + (uint64_t)j;
                cpx_sha256(&id, sizeof id, d[j]);
                cpx_merkle_leaf_hash(d[j], 32, lh[j]);
            }
            cpx_merkle_root(lh, 64, root);
            uint8_t m[17 + 8 + 32];
            memcpy(m, "cpx.v1.sig.batch", 17);
            cpx_be64_put(m + 17, 64);
            memcpy(m + 25, root, 32);
            cpx_key_sign(dk, m, sizeof m, bsig);
            for (int j = 0; j < 64 && i < n; j++, i++) {
                cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
                uint8_t sig[64];
                cpx_hash_t path[CPX_MAX_PROOF_PATH];
                ProtobufCBinaryData pd[CPX_MAX_PROOF_PATH];
                size_t plen;
                lf.event = CPX__V1__AUDIT_EVENT__ACCEPTED;
                lf.sender = "POLICE";
                lf.envelope_digest = (ProtobufCBinaryData){32, d[j]};
                lf.key_id = (ProtobufCBinaryData){8, kid};
                if (!batch) {
                    uint8_t mm[20 + 32];
                    memcpy(mm, "cpx.v1.sig.envelope", 20);
                    memcpy(mm + 20, d[j], 32);
                    cpx_key_sign(dk, mm, sizeof mm, sig);
                    lf.signature = (ProtobufCBinaryData){64, sig};
                } else {
                    cpx_merkle_path(lh, 64, (size_t)j, path, CPX_MAX_PROOF_PATH, &plen);
                    for (size_t q = 0; q < plen; q++)
                        pd[q] = (ProtobufCBinaryData){32, path[q]};
                    lf.batch_root = (ProtobufCBinaryData){32, root};
                    lf.batch_signature = (ProtobufCBinaryData){64, bsig};
                    lf.batch_index = (uint64_t)j;
                    lf.batch_size = 64;
                    lf.batch_path = pd;
                    lf.n_batch_path = plen;
                }
                cpx_audit_append(a, txn, &lf, NULL);
            }
        }
        cpx_audit_sign_head(a, txn, gw, 0, NULL);
        mdb_txn_commit(txn);
        cpx_audit_committed(a);
    }
    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    cpx_averify_opts_t o = {.gateway_pub = gw, .sender_signatures = 1};
    cpx_averify_report_t rep;
    double t0 = now();
    if (cpx_averify_store(a, txn, &o, &rep) != CPX_OK)
        die(rep.what);
    double t = now() - t0;
    printf("  %-28s %8llu ACCEPTED leaves: %9.0f leaves/s with sender signatures (2 threads)\n",
           batch ? "batch-signed (64 per batch):" : "per-message signatures:",
           (unsigned long long)rep.sig_checked, (double)rep.leaves / t);
    mdb_txn_abort(txn);
    cpx_audit_destroy(&a);
    mdb_env_close(env);
    cpx_key_destroy(&gw);
    cpx_key_destroy(&dk);
}

int main(int argc, char **argv)
{
    uint64_t n_verify = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    uint64_t n_append = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
    if (n_verify < 10 || n_append < 10)
        die("N must be >= 10");
    strcpy(root_dir, "/tmp/cpx_bench_audit_XXXXXX");
    if (!mkdtemp(root_dir))
        die("mkdtemp");
    bench_append(n_append);
    bench_verify_and_proofs(n_verify);
    printf("sender signatures (reported separately):\n");
    bench_sigs(n_verify / 50 < 20000 ? n_verify / 50 : 20000, 0);
    bench_sigs(n_verify / 5 < 200000 ? n_verify / 5 : 200000, 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root_dir);
    return system(cmd) == 0 ? 0 : 1;
}
