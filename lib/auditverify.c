/* auditverify.c — replay verifier for the exchange log (live store or export bundle).
 *
 * Leaves are taken in chunks. Per chunk: (A) on two threads, hash and decode every
 * leaf; (B) on one thread, in log order, check position, stored nodes, time, extend
 * the tree, check heads and track department keys, deciding which sender signature
 * each ACCEPTED leaf needs; (C) on two threads, verify those signatures. A batch's
 * root signature is verified once and cached: bulk senders sign batches so that
 * checking them costs one Ed25519 verification per batch, not per message. */
#include "cpx/auditverify.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/envsign.h"
#include "cpx/err.h"
#include "cpx/export.h"
#include "cpx/gwkey.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define CHUNK 8192
#define LEVELS 64
#define BATCH_CACHE 1024
#define MAX_DEPT_KEYS 100000
#define MAX_GW_KEYS 4096

const char *cpx_averify_problem_name(int problem)
{
    static const char *names[] = {
        "ok", "hash mismatch", "missing leaf", "misplaced leaf", "bad leaf", "time",
        "node mismatch", "head root", "head signature", "head inconsistent",
        "bad sender signature", "unknown sender key", "bad bundle", "no signed head",
    };
    if (problem < 0 || (size_t)problem >= sizeof names / sizeof names[0])
        return "?";
    return names[problem];
}

/* ---- sources ------------------------------------------------------------------------------- */

/* Gives leaves in order: *seq is the position the source files the leaf under (the
 * LMDB key; for a bundle, the position itself). Returns 1 at the end, <0 on errors. */
typedef struct source {
    /* *nodes / *nodes_len: the node hashes stored with the leaf (live store), NULL when
     * the record has none */
    int (*next)(void *ctx, uint64_t *seq, const uint8_t **data, size_t *len,
                const uint8_t **nodes, size_t *nodes_len);
    int has_nodes; /* the source stores nodes (a live store; a bundle does not) */
    void *ctx;
} source_t;

typedef struct store_src {
    MDB_cursor *leaves;
    int started;
} store_src_t;

/* Leaf records in key order, one cursor: the node hashes come with the leaf bytes. */
static int store_next(void *ctx, uint64_t *seq, const uint8_t **data, size_t *len,
                      const uint8_t **nodes, size_t *nodes_len)
{
    store_src_t *s = ctx;
    MDB_val k, v;
    int rc = mdb_cursor_get(s->leaves, &k, &v, s->started ? MDB_NEXT : MDB_FIRST);
    s->started = 1;
    if (rc == MDB_NOTFOUND)
        return 1;
    if (rc)
        return cpx_store_err(rc, "verify: leaves");
    if (k.mv_size != 8)
        return CPX_ERR_TAMPERED;
    *seq = cpx_be64_get(k.mv_data);
    /* a record whose node prefix does not parse is handed on whole, without nodes: it
     * does not decode as an AuditLeaf, which names the seq as a bad leaf */
    size_t n = 0;
    if (cpx_audit_record_split(v.mv_data, v.mv_size, nodes, &n, data, len) != CPX_OK) {
        *data = v.mv_data;
        *len = v.mv_size;
        *nodes = NULL;
    }
    *nodes_len = n * CPX_SHA256_LEN;
    return 0;
}

typedef struct bundle_src {
    const cpx_bundle_t *b;
    uint64_t i;
} bundle_src_t;

static int bundle_next(void *ctx, uint64_t *seq, const uint8_t **data, size_t *len,
                       const uint8_t **nodes, size_t *nodes_len)
{
    *nodes = NULL;
    *nodes_len = 0;
    bundle_src_t *s = ctx;
    if (s->i >= s->b->end - s->b->first)
        return 1;
    *seq = s->b->first + s->i;
    *data = s->b->leaf[s->i];
    *len = s->b->leaf_len[s->i];
    s->i++;
    return 0;
}

/* ---- state --------------------------------------------------------------------------------- */

typedef struct dkey {
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint8_t key_id[CPX_KEY_ID_LEN];
    cpx_key_t *key;
    int revoked;
} dkey_t;

enum { JOB_NONE, JOB_MESSAGE, JOB_BATCH_FULL, JOB_BATCH_PATH };

typedef struct slot {
    uint64_t pos;
    const uint8_t *data;
    size_t len;
    const uint8_t *nodes; /* stored node hashes (live store), NULL when none */
    size_t nodes_len;
    cpx_hash_t hash;
    cpx_audit_leaf_t *leaf; /* decoded only when its event needs more than the scan */
    int ok;                 /* the bytes are a well-formed AuditLeaf */
    uint64_t seq;
    int64_t time_ms;
    int event;
    int job;
    const cpx_key_t *key;
    int cache;          /* batch cache entry, -1 none */
    int rc;             /* signature result */
    cpx_hash_t root;    /* batch root recomputed */
} slot_t;

typedef struct bentry {
    int used, state;    /* state: 0 pending, 1 good, -1 unknown after a failure */
    const cpx_key_t *key;
    uint64_t size;
    cpx_hash_t root;
    uint8_t sig[CPX_ED25519_SIG_LEN];
} bentry_t;

typedef struct vstate {
    const cpx_averify_opts_t *opts;
    cpx_averify_report_t *rep;
    int64_t tolerance;
    /* tree */
    uint64_t size;
    cpx_hash_t edge[LEVELS];
    int64_t max_time, last_time;
    /* heads, sorted by size */
    cpx_sth_t **heads;
    size_t n_heads, next_head;
    int64_t last_head_time;
    /* keys */
    dkey_t *keys;
    size_t n_keys, cap_keys;
    bentry_t *cache;
    size_t cache_used;
    int failed;         /* a structural failure was recorded */
    slot_t *slots;
    /* gateway key chain: heads are checked with gw_cur; a hand-over leaf announces
     * gw_next, which takes over right after the first head covering that leaf (signed by
     * gw_cur) */
    uint8_t log_id[CPX_SHA256_LEN];
    const cpx_key_t *gw_cur;
    cpx_key_t *gw_next;
    uint64_t gw_next_seq;
    cpx_key_t **gw_keys;   /* every key the chain reached after the first (owned) */
    size_t n_gw_keys;
} vstate_t;

static void fail(vstate_t *s, int problem, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(vstate_t *s, int problem, uint64_t seq, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = 1;
    s->rep->problem = problem;
    s->rep->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->rep->what, sizeof s->rep->what, "seq %llu: %s: ",
                     (unsigned long long)seq, cpx_averify_problem_name(problem));
    if (n > 0 && (size_t)n < sizeof s->rep->what)
        vsnprintf(s->rep->what + n, sizeof s->rep->what - (size_t)n, fmt, ap);
    va_end(ap);
}

static void sig_fail(vstate_t *s, uint64_t seq, int problem, const char *why)
{
    if (s->rep->sig_failed++ == 0) {
        s->rep->sig_first_bad_seq = seq;
        if (!s->failed && s->rep->problem == CPX_AV_NONE) {
            s->rep->problem = problem;
            s->rep->bad_seq = seq;
            snprintf(s->rep->what, sizeof s->rep->what, "seq %llu: %s: %s",
                     (unsigned long long)seq, cpx_averify_problem_name(problem), why);
        }
    }
}

static void edge_root(const vstate_t *s, cpx_hash_t out)
{
    if (s->size == 0) {
        cpx_sha256("", 0, out);
        return;
    }
    int first = 1;
    for (int l = 0; l < LEVELS; l++) {
        if (!(s->size >> l & 1))
            continue;
        if (first) {
            memcpy(out, s->edge[l], CPX_SHA256_LEN);
            first = 0;
        } else {
            cpx_merkle_node_hash(s->edge[l], out, out);
        }
    }
}

/* ---- heads --------------------------------------------------------------------------------- */

static int by_size(const void *a, const void *b)
{
    const cpx_sth_t *x = *(cpx_sth_t *const *)a, *y = *(cpx_sth_t *const *)b;
    if (x->tree_size != y->tree_size)
        return x->tree_size < y->tree_size ? -1 : 1;
    return x->timestamp_ms < y->timestamp_ms ? -1 : x->timestamp_ms > y->timestamp_ms;
}

static int same_root(const cpx_sth_t *a, const cpx_sth_t *b)
{
    return a->root_hash.len == b->root_hash.len &&
           memcmp(a->root_hash.data, b->root_hash.data, a->root_hash.len) == 0;
}

static void key_id_hex(const cpx_key_t *k, char out[2 * CPX_KEY_ID_LEN + 1])
{
    uint8_t id[CPX_KEY_ID_LEN];
    cpx_key_id(k, id);
    cpx_hex(id, sizeof id, out);
}

/* Names why a head does not verify under the key the chain reaches at its size. */
static void head_sig_fail(vstate_t *s, const cpx_sth_t *h, uint64_t seq)
{
    unsigned long long size = (unsigned long long)h->tree_size;
    char cur[2 * CPX_KEY_ID_LEN + 1], other[2 * CPX_KEY_ID_LEN + 1];
    key_id_hex(s->gw_cur, cur);
    if (h->log_id.len != CPX_SHA256_LEN || memcmp(h->log_id.data, s->log_id, CPX_SHA256_LEN)) {
        fail(s, CPX_AV_HEAD_SIGNATURE, seq,
             "head of tree size %llu: signature or log id does not verify under the gateway "
             "key (its log id is not SHA-256 of the log's first gateway key)", size);
        return;
    }
    if (s->gw_next && cpx_sth_verify_key(h, s->gw_next, s->log_id) == CPX_OK) {
        key_id_hex(s->gw_next, other);
        fail(s, CPX_AV_HEAD_SIGNATURE, seq,
             "head of tree size %llu, the first covering the gateway key hand-over at seq "
             "%llu, is signed by the new key %s, not by the outgoing key %s",
             size, (unsigned long long)s->gw_next_seq, other, cur);
        return;
    }
    /* the chain's earlier keys (the first, then each hand-over's) */
    const cpx_key_t *retired = NULL;
    for (size_t i = 0; !retired && i <= s->n_gw_keys; i++) {
        const cpx_key_t *k = i ? s->gw_keys[i - 1] : s->opts->gateway_pub;
        if (k != s->gw_cur && k != s->gw_next && cpx_sth_verify_key(h, k, s->log_id) == CPX_OK)
            retired = k;
    }
    if (retired) {
        key_id_hex(retired, other);
        fail(s, CPX_AV_HEAD_SIGNATURE, seq,
             "head of tree size %llu is signed by the retired gateway key %s; the key chain "
             "reaches %s at this size", size, other, cur);
        return;
    }
    fail(s, CPX_AV_HEAD_SIGNATURE, seq,
         "head of tree size %llu: signature or log id does not verify under the gateway key "
         "the key chain reaches at this size (%s)", size, cur);
}

/* A gateway key hand-over leaf: its key takes over after the first head covering it. */
static void handover(vstate_t *s, uint64_t seq, const cpx_audit_leaf_t *lf)
{
    if (s->gw_next) {
        fail(s, CPX_AV_BAD_LEAF, seq, "gateway key hand-over before the previous one (seq %llu) "
             "was covered by a signed head", (unsigned long long)s->gw_next_seq);
        return;
    }
    if (lf->key.len != CPX_ED25519_PUB_LEN || s->n_gw_keys == MAX_GW_KEYS) {
        fail(s, CPX_AV_BAD_LEAF, seq, "gateway key hand-over without a 32-byte key (or more "
             "than %d rotations)", MAX_GW_KEYS);
        return;
    }
    if (s->n_gw_keys % 16 == 0) {
        cpx_key_t **nk = realloc(s->gw_keys, (s->n_gw_keys + 16) * sizeof *nk);
        if (!nk) {
            fail(s, CPX_AV_BAD_LEAF, seq, "out of memory");
            return;
        }
        s->gw_keys = nk;
    }
    cpx_key_t *k = cpx_key_from_raw_public(lf->key.data);
    uint8_t id[CPX_KEY_ID_LEN];
    if (k)
        cpx_key_id(k, id);
    if (!k || (lf->key_id.len && (lf->key_id.len != CPX_KEY_ID_LEN ||
                                  memcmp(lf->key_id.data, id, CPX_KEY_ID_LEN)))) {
        cpx_key_destroy(&k);
        fail(s, CPX_AV_BAD_LEAF, seq, "gateway key hand-over: not an Ed25519 key, or key_id "
             "is not the key's id");
        return;
    }
    s->gw_keys[s->n_gw_keys++] = k;
    s->gw_next = k;
    s->gw_next_seq = seq;
}

/* Checks every head of the current size; heads below first_seq cannot be checked. */
static void check_heads(vstate_t *s)
{
    while (!s->failed && s->next_head < s->n_heads &&
           s->heads[s->next_head]->tree_size <= s->size) {
        size_t i = s->next_head, j = i;
        uint64_t size = s->heads[i]->tree_size;
        while (j < s->n_heads && s->heads[j]->tree_size == size)
            j++;
        s->next_head = j;
        if (size < s->size)
            continue; /* before the replayed range (bundle): nothing to compare with */
        uint64_t seq = size ? size - 1 : 0;
        cpx_hash_t root;
        edge_root(s, root);
        for (size_t h = i; h < j; h++) {
            if (cpx_sth_verify_key(s->heads[h], s->gw_cur, s->log_id) != CPX_OK) {
                head_sig_fail(s, s->heads[h], seq);
                return;
            }
        }
        for (size_t h = i + 1; h < j; h++) {
            if (!same_root(s->heads[i], s->heads[h])) {
                fail(s, CPX_AV_HEAD_INCONSISTENT, seq,
                     "two signed heads of tree size %llu with different roots",
                     (unsigned long long)size);
                return;
            }
        }
        for (size_t h = i; h < j; h++) {
            const cpx_sth_t *hd = s->heads[h];
            if (memcmp(hd->root_hash.data, root, CPX_SHA256_LEN) != 0) {
                fail(s, CPX_AV_HEAD_ROOT, seq,
                     "signed head of tree size %llu has a root the leaves do not produce",
                     (unsigned long long)size);
                return;
            }
            if (hd->timestamp_ms < s->last_head_time) {
                fail(s, CPX_AV_HEAD_INCONSISTENT, seq,
                     "head of tree size %llu is older than a smaller head",
                     (unsigned long long)size);
                return;
            }
            if (size && hd->timestamp_ms + s->tolerance < s->last_time) {
                fail(s, CPX_AV_TIME, seq, "head of tree size %llu predates its last leaf",
                     (unsigned long long)size);
                return;
            }
            s->last_head_time = hd->timestamp_ms;
            s->rep->heads++;
        }
        if (s->gw_next && size > s->gw_next_seq) {
            /* the outgoing key has signed over the hand-over: the new key takes over */
            s->gw_cur = s->gw_next;
            s->gw_next = NULL;
            s->rep->gateway_rotations++;
        }
    }
}

/* ---- department keys ------------------------------------------------------------------------ */

static dkey_t *find_key(vstate_t *s, const char *dept, const uint8_t *key_id, size_t id_len)
{
    if (id_len != CPX_KEY_ID_LEN || !dept)
        return NULL;
    for (size_t i = s->n_keys; i-- > 0;)
        if (!memcmp(s->keys[i].key_id, key_id, CPX_KEY_ID_LEN) && !strcmp(s->keys[i].dept, dept))
            return &s->keys[i];
    return NULL;
}

/* Applies a KEY_ENROLLED / KEY_REVOKED leaf. Returns 0 or fails the replay. */
static void key_event(vstate_t *s, uint64_t seq, const cpx_audit_leaf_t *lf)
{
    if (lf->event == CPX__V1__AUDIT_EVENT__KEY_REVOKED) {
        dkey_t *k = find_key(s, lf->sender, lf->key_id.data, lf->key_id.len);
        if (k)
            k->revoked = 1;
        s->rep->keys_revoked++;
        return;
    }
    if (lf->key.len != CPX_ED25519_PUB_LEN || !lf->sender || !*lf->sender ||
        strlen(lf->sender) > CPX_MAX_DEPT_CODE) {
        fail(s, CPX_AV_BAD_LEAF, seq, "KEY_ENROLLED leaf without a department or a 32-byte key");
        return;
    }
    if (s->n_keys == MAX_DEPT_KEYS) {
        fail(s, CPX_AV_BAD_LEAF, seq, "more than %d department keys", MAX_DEPT_KEYS);
        return;
    }
    if (s->n_keys == s->cap_keys) {
        size_t cap = s->cap_keys ? 2 * s->cap_keys : 32;
        dkey_t *nk = realloc(s->keys, cap * sizeof *nk);
        if (!nk) {
            fail(s, CPX_AV_BAD_LEAF, seq, "out of memory");
            return;
        }
        s->keys = nk;
        s->cap_keys = cap;
    }
    dkey_t *k = &s->keys[s->n_keys];
    memset(k, 0, sizeof *k);
    k->key = cpx_key_from_raw_public(lf->key.data);
    if (!k->key) {
        fail(s, CPX_AV_BAD_LEAF, seq, "KEY_ENROLLED key is not an Ed25519 public key");
        return;
    }
    /* the key id is derived, never taken on trust from the leaf */
    cpx_key_id(k->key, k->key_id);
    if (lf->key_id.len && (lf->key_id.len != CPX_KEY_ID_LEN ||
                           memcmp(lf->key_id.data, k->key_id, CPX_KEY_ID_LEN))) {
        cpx_key_destroy(&k->key);
        fail(s, CPX_AV_BAD_LEAF, seq, "KEY_ENROLLED key_id is not the key's id");
        return;
    }
    snprintf(k->dept, sizeof k->dept, "%s", lf->sender);
    s->n_keys++;
    s->rep->keys_enrolled++;
}

static size_t cache_slot(const cpx_hash_t root)
{
    size_t h;
    memcpy(&h, root, sizeof h);
    return h % BATCH_CACHE;
}

/* Decides what signature check an ACCEPTED leaf needs (in log order). */
static void plan_signature(vstate_t *s, slot_t *sl)
{
    const cpx_audit_leaf_t *lf = sl->leaf;
    uint64_t seq = sl->pos;
    s->rep->sig_checked++;
    if (lf->envelope_digest.len != CPX_SHA256_LEN) {
        sig_fail(s, seq, CPX_AV_SENDER_SIGNATURE, "ACCEPTED leaf without a 32-byte envelope digest");
        return;
    }
    dkey_t *k = find_key(s, lf->sender, lf->key_id.data, lf->key_id.len);
    if (!k || k->revoked) {
        sig_fail(s, seq, CPX_AV_UNKNOWN_KEY,
                 k ? "sender key was revoked before this message"
                   : "no key of the sender with this key id was enrolled before this message");
        return;
    }
    sl->key = k->key;
    if (lf->signature.len) {
        sl->job = JOB_MESSAGE;
        s->rep->sig_per_message++;
        return;
    }
    s->rep->sig_batch++;
    if (lf->batch_root.len != CPX_SHA256_LEN || lf->batch_signature.len != CPX_ED25519_SIG_LEN ||
        lf->n_batch_path > CPX_MAX_PROOF_PATH) {
        sig_fail(s, seq, CPX_AV_SENDER_SIGNATURE, "ACCEPTED leaf has neither a signature nor a "
                                                  "well-formed batch proof");
        return;
    }
    for (size_t i = 0; i < lf->n_batch_path; i++)
        if (lf->batch_path[i].len != CPX_SHA256_LEN) {
            sig_fail(s, seq, CPX_AV_SENDER_SIGNATURE, "batch path hash not 32 bytes");
            return;
        }
    size_t h = cache_slot(lf->batch_root.data);
    for (size_t probe = 0; probe < BATCH_CACHE; probe++) {
        bentry_t *e = &s->cache[(h + probe) % BATCH_CACHE];
        if (!e->used) {
            if (s->cache_used >= BATCH_CACHE / 2) {
                /* full enough: forget everything verified (only costs re-verification) */
                memset(s->cache, 0, BATCH_CACHE * sizeof *s->cache);
                s->cache_used = 0;
                e = &s->cache[h];
            }
            e->used = 1;
            e->state = 0;
            e->key = k->key;
            e->size = lf->batch_size;
            memcpy(e->root, lf->batch_root.data, CPX_SHA256_LEN);
            memcpy(e->sig, lf->batch_signature.data, CPX_ED25519_SIG_LEN);
            s->cache_used++;
            sl->job = JOB_BATCH_FULL;
            sl->cache = (int)(e - s->cache);
            return;
        }
        if (e->key == k->key && e->size == lf->batch_size &&
            !memcmp(e->root, lf->batch_root.data, CPX_SHA256_LEN) &&
            !memcmp(e->sig, lf->batch_signature.data, CPX_ED25519_SIG_LEN)) {
            sl->cache = (int)(e - s->cache);
            /* a batch whose first check failed gets the full check every time */
            sl->job = e->state < 0 ? JOB_BATCH_FULL : JOB_BATCH_PATH;
            if (sl->job == JOB_BATCH_PATH)
                s->rep->sig_batch_cached++;
            return;
        }
    }
    sl->job = JOB_BATCH_FULL;
}

static int is_key_event(int ev)
{
    return ev == CPX__V1__AUDIT_EVENT__KEY_ENROLLED || ev == CPX__V1__AUDIT_EVENT__KEY_REVOKED;
}

/* ---- a non-allocating wire scan ----------------------------------------------------------
 * Most leaves need only seq, time and event: reading them without protobuf-c's unpack
 * (which allocates every string) is what lets two threads outrun SHA-256 alone. The scan
 * walks every field and refuses what protobuf-c would refuse (bad varints, lengths past
 * the end, groups, a known field with the wrong wire type); the last occurrence of a
 * field wins, as in protobuf. */

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1)
            return -1;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static int scan_leaf(const uint8_t *p, size_t len, uint64_t *seq, int64_t *time_ms, int *event)
{
    const uint8_t *end = p + len;
    *seq = 0;
    *time_ms = 0;
    *event = 0;
    while (p < end) {
        uint64_t tag, v;
        if (varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 536870911u)
            return -1;
        uint32_t field = (uint32_t)(tag >> 3), wt = (uint32_t)(tag & 7);
        int want = -1; /* expected wire type of known fields */
        if (field == 1 || field == 2 || field == 3 || field == 12 || field == 13 || field == 19)
            want = 0;
        else if (field <= 20)
            want = 2;
        if (want >= 0 && (uint32_t)want != wt)
            return -1;
        switch (wt) {
        case 0:
            if (varint(&p, end, &v))
                return -1;
            if (field == 1)
                *seq = v;
            else if (field == 2)
                *time_ms = (int64_t)v;
            else if (field == 3)
                *event = (int)(int32_t)v;
            break;
        case 1:
            if (end - p < 8)
                return -1;
            p += 8;
            break;
        case 2:
            if (varint(&p, end, &v) || v > (uint64_t)(end - p))
                return -1;
            p += v;
            break;
        case 5:
            if (end - p < 4)
                return -1;
            p += 4;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

/* ---- parallel phases ------------------------------------------------------------------------ */

typedef struct work {
    slot_t *slots;
    size_t lo, hi;
    int phase; /* 0 hash + decode, 1 signatures */
    int sigs;  /* sender signatures wanted: ACCEPTED leaves are decoded */
} work_t;

static void run_sig(slot_t *sl)
{
    const cpx_audit_leaf_t *lf = sl->leaf;
    if (sl->job == JOB_MESSAGE) {
        sl->rc = cpx_envsign_verify_digest(sl->key, lf->envelope_digest.data, lf->signature.data,
                                           lf->signature.len);
        return;
    }
    const cpx_hash_t *path = NULL;
    cpx_hash_t pbuf[CPX_MAX_PROOF_PATH];
    for (size_t i = 0; i < lf->n_batch_path; i++)
        memcpy(pbuf[i], lf->batch_path[i].data, CPX_SHA256_LEN);
    path = (const cpx_hash_t *)pbuf;
    if (sl->job == JOB_BATCH_FULL) {
        sl->rc = cpx_envsign_verify_batch_digest(
            sl->key, lf->envelope_digest.data, lf->batch_index, lf->batch_size, path,
            lf->n_batch_path, lf->batch_signature.data, lf->batch_signature.len, sl->root);
        if (sl->rc == CPX_OK && memcmp(sl->root, lf->batch_root.data, CPX_SHA256_LEN) != 0)
            sl->rc = CPX_ERR_PROOF;
        return;
    }
    /* the root's signature was verified already: the path alone must reach that root */
    cpx_hash_t leaf_hash;
    cpx_merkle_leaf_hash(lf->envelope_digest.data, CPX_SHA256_LEN, leaf_hash);
    sl->rc = lf->batch_size > CPX_MAX_BATCH_ENVELOPES
                 ? CPX_ERR_PROOF
                 : cpx_merkle_verify_inclusion(leaf_hash, lf->batch_index, lf->batch_size, path,
                                               lf->n_batch_path, lf->batch_root.data);
}

static void *work_run(void *arg)
{
    work_t *w = arg;
    for (size_t i = w->lo; i < w->hi; i++) {
        slot_t *sl = &w->slots[i];
        if (w->phase == 0) {
            cpx_merkle_leaf_hash(sl->data, sl->len, sl->hash);
            sl->ok = sl->len <= CPX_MAX_LEAF_BYTES &&
                     scan_leaf(sl->data, sl->len, &sl->seq, &sl->time_ms, &sl->event) == 0;
            if (sl->ok && (is_key_event(sl->event) ||
                           (w->sigs && sl->event == CPX__V1__AUDIT_EVENT__ACCEPTED)) &&
                cpx_decode_audit_leaf(sl->data, sl->len, &sl->leaf) != CPX_OK)
                sl->ok = 0;
        } else if (sl->job != JOB_NONE) {
            run_sig(sl);
        }
    }
    return NULL;
}

/* Runs phase over slots [0, n) split across the configured threads. For signatures the
 * split balances the jobs, not the slots. */
static void parallel(vstate_t *s, size_t n, int phase)
{
    int threads = s->opts->threads == 1 ? 1 : 2;
    size_t mid = n / 2;
    if (phase == 1) {
        size_t jobs = 0, seen = 0;
        for (size_t i = 0; i < n; i++)
            jobs += s->slots[i].job != JOB_NONE;
        if (jobs < 2)
            threads = 1;
        for (mid = 0; mid < n && seen < jobs / 2; mid++)
            seen += s->slots[mid].job != JOB_NONE;
    }
    int sigs = s->opts->sender_signatures;
    if (threads == 1 || n < 64) {
        work_t w = {s->slots, 0, n, phase, sigs};
        work_run(&w);
        return;
    }
    work_t a = {s->slots, 0, mid, phase, sigs}, b = {s->slots, mid, n, phase, sigs};
    pthread_t t;
    if (pthread_create(&t, NULL, work_run, &b) != 0) {
        work_t all = {s->slots, 0, n, phase, sigs};
        work_run(&all);
        return;
    }
    work_run(&a);
    pthread_join(t, NULL);
}

/* ---- the sequential pass ---------------------------------------------------------------------- */

/* One leaf in log order; sl->nodes holds the node hashes stored with it (live store). */
static int sequential(vstate_t *s, const source_t *src, slot_t *sl)
{
    uint64_t seq = sl->pos;
    cpx_hash_t nodes[LEVELS + 1];
    const uint8_t *stored = NULL;
    size_t stored_len = 0;
    int have_nodes = 0;
    if (src->has_nodes && sl->nodes) {
        stored = sl->nodes;
        stored_len = sl->nodes_len;
        have_nodes = 1;
    }
    int hash_bad = have_nodes && (stored_len < CPX_SHA256_LEN ||
                                  memcmp(stored, sl->hash, CPX_SHA256_LEN) != 0);
    if (!sl->ok) {
        if (hash_bad)
            fail(s, CPX_AV_HASH_MISMATCH, seq, "leaf bytes do not match the stored leaf hash");
        else
            fail(s, CPX_AV_BAD_LEAF, seq, "leaf bytes are not an AuditLeaf");
        return 0;
    }
    if (sl->seq != seq) {
        fail(s, CPX_AV_MISPLACED_LEAF, seq, "the leaf stored here is seq %llu (swapped or copied)",
             (unsigned long long)sl->seq);
        return 0;
    }
    if (hash_bad) {
        fail(s, CPX_AV_HASH_MISMATCH, seq, "leaf bytes do not match the stored leaf hash");
        return 0;
    }
    int64_t t = sl->time_ms;
    if (t + s->tolerance < s->max_time) {
        fail(s, CPX_AV_TIME, seq, "leaf time %lld is %lld ms before an earlier leaf's",
             (long long)t, (long long)(s->max_time - t));
        return 0;
    }
    if (t > s->max_time)
        s->max_time = t;
    s->last_time = t;

    /* extend the tree */
    memcpy(nodes[0], sl->hash, CPX_SHA256_LEN);
    unsigned l = 0;
    while (s->size >> l & 1) {
        cpx_merkle_node_hash(s->edge[l], nodes[l], nodes[l + 1]);
        l++;
    }
    memcpy(s->edge[l], nodes[l], CPX_SHA256_LEN);
    s->size++;
    if (src->has_nodes) {
        if (!have_nodes || stored_len != (size_t)(l + 1) * CPX_SHA256_LEN ||
            memcmp(stored, nodes, stored_len) != 0) {
            fail(s, CPX_AV_NODE_MISMATCH, seq,
                 have_nodes ? "stored Merkle nodes differ from the recomputed ones"
                            : "stored Merkle nodes missing");
            return 0;
        }
        s->rep->nodes_checked++;
    }
    int gw = sl->event == CPX__V1__AUDIT_EVENT__KEY_ENROLLED && cpx_gwkey_is_handover(sl->leaf);
    if (gw)
        handover(s, seq, sl->leaf);
    if (!s->failed)
        check_heads(s);
    if (s->failed)
        return 0;
    if (gw)
        s->rep->keys_enrolled++;
    else if (is_key_event(sl->event))
        key_event(s, seq, sl->leaf);
    else if (sl->event == CPX__V1__AUDIT_EVENT__ACCEPTED && s->opts->sender_signatures)
        plan_signature(s, sl);
    return 0;
}

static void resolve_signatures(vstate_t *s, size_t n)
{
    /* first, what each batch's first full check proved about the batch signature */
    for (size_t i = 0; i < n; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->job == JOB_BATCH_FULL && sl->cache >= 0) {
            bentry_t *e = &s->cache[sl->cache];
            if (sl->rc == CPX_OK)
                e->state = 1;
            else if (e->state == 0)
                e->state = -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->job == JOB_NONE)
            continue;
        int rc = sl->rc;
        if (sl->job == JOB_BATCH_PATH && rc == CPX_OK && s->cache[sl->cache].state != 1) {
            /* planned against a batch whose first check then failed: check it fully */
            sl->job = JOB_BATCH_FULL;
            run_sig(sl);
            rc = sl->rc;
        }
        if (rc != CPX_OK)
            sig_fail(s, sl->pos, CPX_AV_SENDER_SIGNATURE,
                     sl->job == JOB_MESSAGE ? "sender signature does not verify"
                                            : "batch proof or batch signature does not verify");
    }
}

/* ---- driver -------------------------------------------------------------------------------- */

static int replay(vstate_t *s, const source_t *src, uint64_t first)
{
    cpx_averify_report_t *rep = s->rep;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* no head at all is a new log (heads NULL), which qsort's contract does not allow */
    if (s->n_heads > 1)
        qsort(s->heads, s->n_heads, sizeof *s->heads, by_size);
    rep->first_seq = first;
    s->size = first;
    check_heads(s);
    uint64_t expect = first;
    int rc = 0, end = 0, gap = 0;
    uint64_t total = 0, gap_key = 0;
    if (s->n_heads)
        total = s->heads[s->n_heads - 1]->tree_size;
    while (!end && !s->failed) {
        size_t n = 0;
        while (n < CHUNK) {
            slot_t *sl = &s->slots[n];
            uint64_t key;
            rc = src->next(src->ctx, &key, &sl->data, &sl->len, &sl->nodes, &sl->nodes_len);
            if (rc < 0)
                goto out;
            if (rc == 1) {
                end = 1;
                break;
            }
            if (key != expect) {
                gap = 1;
                gap_key = key;
                end = 1;
                break;
            }
            sl->pos = expect++;
            sl->leaf = NULL;
            sl->ok = 0;
            sl->job = JOB_NONE;
            sl->cache = -1;
            sl->rc = 0;
            n++;
        }
        parallel(s, n, 0);
        size_t done = 0;
        for (; done < n && !s->failed; done++) {
            rc = sequential(s, src, &s->slots[done]);
            if (rc < 0)
                break;
        }
        if (rc >= 0 && s->opts->sender_signatures) {
            parallel(s, done, 1);
            resolve_signatures(s, done);
        }
        for (size_t i = 0; i < n; i++) {
            cpx_msg_free(s->slots[i].leaf);
            s->slots[i].leaf = NULL;
        }
        if (rc < 0)
            goto out;
        rep->leaves += done;
        /* reported only after the leaves before it, which may hold an earlier failure */
        if (gap)
            fail(s, gap_key > expect ? CPX_AV_MISSING_LEAF : CPX_AV_MISPLACED_LEAF, expect,
                 gap_key > expect ? "no leaf (the next stored leaf is seq %llu)"
                                  : "leaf filed out of order (seq %llu)",
                 (unsigned long long)gap_key);
        if (s->opts->progress)
            s->opts->progress(s->opts->progress_ctx, first + rep->leaves, total);
    }
    rc = 0;
    if (!s->failed && s->next_head < s->n_heads) {
        uint64_t want = s->heads[s->n_heads - 1]->tree_size;
        fail(s, CPX_AV_MISSING_LEAF, s->size,
             "the log ends at tree size %llu but a signed head covers %llu leaves "
             "(truncated tail)", (unsigned long long)s->size, (unsigned long long)want);
    }
    if (!s->failed && rep->heads == 0 && s->size > first)
        fail(s, CPX_AV_NO_HEAD, first, "no signed head covers the replayed leaves");
    if (s->n_heads) {
        uint64_t last = s->heads[s->n_heads - 1]->tree_size;
        rep->unsigned_tail = s->size > last ? s->size - last : 0;
    } else {
        rep->unsigned_tail = s->size - first;
    }
out:
    rep->tree_size = s->size;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rep->secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (rc < 0)
        return rc;
    return (s->failed || rep->sig_failed || rep->problem) ? CPX_ERR_TAMPERED : CPX_OK;
}

static int state_init(vstate_t *s, const cpx_averify_opts_t *opts, cpx_averify_report_t *rep)
{
    memset(s, 0, sizeof *s);
    memset(rep, 0, sizeof *rep);
    s->opts = opts;
    s->rep = rep;
    s->tolerance = opts->time_tolerance_ms > 0 ? opts->time_tolerance_ms : 60000;
    s->max_time = INT64_MIN / 2;
    s->last_head_time = INT64_MIN;
    s->slots = calloc(CHUNK, sizeof *s->slots);
    s->cache = calloc(BATCH_CACHE, sizeof *s->cache);
    /* the log id is the first key's for the log's whole life, across rotations */
    uint8_t raw[CPX_ED25519_PUB_LEN];
    cpx_key_public_raw(opts->gateway_pub, raw);
    cpx_sha256(raw, sizeof raw, s->log_id);
    s->gw_cur = opts->gateway_pub;
    return s->slots && s->cache ? CPX_OK : CPX_ERR_NOMEM;
}

static int add_head(vstate_t *s, size_t *cap, cpx_sth_t *h)
{
    if (s->n_heads == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        cpx_sth_t **nh = realloc(s->heads, nc * sizeof *nh);
        if (!nh)
            return CPX_ERR_NOMEM;
        s->heads = nh;
        *cap = nc;
    }
    s->heads[s->n_heads++] = h;
    return CPX_OK;
}

static void state_free(vstate_t *s, size_t owned_heads)
{
    for (size_t i = 0; i < s->n_keys; i++)
        cpx_key_destroy(&s->keys[i].key);
    free(s->keys);
    for (size_t i = 0; i < s->n_gw_keys; i++)
        cpx_key_destroy(&s->gw_keys[i]);
    free(s->gw_keys);
    /* the first owned_heads entries were decoded here (the rest are borrowed) */
    (void)owned_heads;
    free(s->heads);
    free(s->slots);
    free(s->cache);
}

int cpx_averify_store(cpx_audit_t *audit, MDB_txn *txn, const cpx_averify_opts_t *opts,
                      cpx_averify_report_t *rep)
{
    if (!audit || !txn || !opts || !opts->gateway_pub || !rep)
        return CPX_ERR_ARG;
    vstate_t s;
    int rc = state_init(&s, opts, rep);
    cpx_audit_dbs_t db;
    cpx_audit_dbs(audit, &db);
    store_src_t ss = {0};
    size_t cap = 0;
    cpx_sth_t **owned = NULL;
    size_t n_owned = 0;
    MDB_cursor *hc = NULL;
    if (!rc)
        rc = cpx_store_err(mdb_cursor_open(txn, db.heads, &hc), "verify: heads");
    /* heads as stored; each must sit under the key its own size names */
    MDB_val k, v;
    int mrc;
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(hc, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(hc, &k, &v, MDB_NEXT)) {
        cpx_sth_t *h = NULL;
        uint64_t key = k.mv_size == 8 ? cpx_be64_get(k.mv_data) : UINT64_MAX;
        if (cpx_decode_sth(v.mv_data, v.mv_size, &h) != CPX_OK || h->tree_size != key) {
            cpx_msg_free(h);
            fail(&s, CPX_AV_HEAD_INCONSISTENT, key ? key - 1 : 0,
                 "head stored under tree size %llu is malformed or names another size",
                 (unsigned long long)key);
            break;
        }
        cpx_sth_t **no = realloc(owned, (n_owned + 1) * sizeof *no);
        if (!no) {
            cpx_msg_free(h);
            rc = CPX_ERR_NOMEM;
            break;
        }
        owned = no;
        owned[n_owned++] = h;
        if ((rc = add_head(&s, &cap, h)))
            break;
    }
    if (hc)
        mdb_cursor_close(hc);
    for (size_t i = 0; !rc && i < opts->n_extra_heads; i++)
        rc = add_head(&s, &cap, opts->extra_heads[i]);
    if (!rc && !s.failed) {
        rc = cpx_store_err(mdb_cursor_open(txn, db.leaves, &ss.leaves), "verify: cursor");
        if (!rc) {
            source_t src = {store_next, 1, &ss};
            rc = replay(&s, &src, 0);
        }
    } else if (!rc && s.failed) {
        rc = CPX_ERR_TAMPERED;
    }
    if (ss.leaves)
        mdb_cursor_close(ss.leaves);
    for (size_t i = 0; i < n_owned; i++)
        cpx_msg_free(owned[i]);
    free(owned);
    state_free(&s, 0);
    return rc;
}

/* A hand-over before the range. With its covering head before the range too, the bundle
 * carries that head (it must verify under the outgoing key, include the leaf and be a
 * prefix of the tree of size first) and the new key takes over at once; otherwise the
 * range's first heads are the covering ones and the replay checks them. */
static void bundle_handover(vstate_t *s, const cpx_bundle_t *b, uint64_t seq,
                            const cpx_hash_t leaf_hash, const cpx_hash_t root_first,
                            const cpx_audit_leaf_t *lf)
{
    const cpx_bundle_handover_t *ho = NULL;
    for (size_t i = 0; i < b->n_handovers && !ho; i++)
        if (b->handovers[i].seq == seq)
            ho = &b->handovers[i];
    handover(s, seq, lf);
    if (s->failed || !ho)
        return;
    const cpx_sth_t *h = ho->head;
    uint64_t hs = h->tree_size;
    if (cpx_sth_verify_key(h, s->gw_cur, s->log_id) != CPX_OK) {
        head_sig_fail(s, h, hs - 1);
        return;
    }
    if (cpx_merkle_verify_inclusion(leaf_hash, seq, hs, (const cpx_hash_t *)ho->ipath,
                                    ho->ipath_len, h->root_hash.data) != CPX_OK ||
        cpx_merkle_verify_consistency(hs, b->first, h->root_hash.data, root_first,
                                      (const cpx_hash_t *)ho->cpath, ho->cpath_len) != CPX_OK) {
        fail(s, CPX_AV_HEAD_INCONSISTENT, hs - 1,
             "head of tree size %llu covering the gateway key hand-over at seq %llu does not "
             "lead to the exported range", (unsigned long long)hs, (unsigned long long)seq);
        return;
    }
    s->gw_cur = s->gw_next;
    s->gw_next = NULL;
    s->rep->gateway_rotations++;
    s->rep->keys_enrolled++;
}

int cpx_averify_bundle(const uint8_t *bundle, size_t len, const cpx_averify_opts_t *opts,
                       cpx_averify_report_t *rep)
{
    if (!bundle || !opts || !opts->gateway_pub || !rep)
        return CPX_ERR_ARG;
    vstate_t s;
    int rc = state_init(&s, opts, rep);
    cpx_bundle_t *b = NULL;
    char why[200];
    size_t cap = 0;
    if (!rc && cpx_bundle_parse(bundle, len, &b, why, sizeof why) != CPX_OK) {
        fail(&s, CPX_AV_BAD_BUNDLE, 0, "%s", why);
        rc = CPX_ERR_TAMPERED;
    }
    if (!rc) {
        uint8_t raw[CPX_ED25519_PUB_LEN];
        cpx_key_public_raw(opts->gateway_pub, raw);
        if (memcmp(raw, b->gateway_pub, sizeof raw) != 0) {
            fail(&s, CPX_AV_HEAD_SIGNATURE, b->first,
                 "the bundle names a different gateway key than the one given");
            rc = CPX_ERR_TAMPERED;
        }
    }
    /* the tree before the range, from its perfect subtrees */
    if (!rc) {
        s.size = b->first;
        for (int l = 0; l < LEVELS; l++)
            if (b->first >> l & 1)
                memcpy(s.edge[l], b->prefix[l], CPX_SHA256_LEN);
        /* key leaves before the range must be in the tree of size first (whose root the
         * first head then vouches for through the replay) */
        cpx_hash_t root_first;
        edge_root(&s, root_first);
        for (size_t i = 0; i < b->n_key_leaves && !s.failed; i++) {
            const cpx_bundle_key_leaf_t *kl = &b->key_leaves[i];
            cpx_hash_t lh;
            cpx_audit_leaf_t *lf = NULL;
            cpx_merkle_leaf_hash(kl->leaf, kl->len, lh);
            if (cpx_merkle_verify_inclusion(lh, kl->seq, b->first,
                                            (const cpx_hash_t *)kl->path, kl->path_len,
                                            root_first) != CPX_OK) {
                fail(&s, CPX_AV_HASH_MISMATCH, kl->seq,
                     "key leaf is not in the tree before the exported range");
            } else if (cpx_decode_audit_leaf(kl->leaf, kl->len, &lf) != CPX_OK ||
                       lf->seq != kl->seq || !is_key_event(lf->event)) {
                fail(&s, CPX_AV_BAD_LEAF, kl->seq, "key leaf malformed");
            } else if (cpx_gwkey_is_handover(lf)) {
                bundle_handover(&s, b, kl->seq, lh, root_first, lf);
            } else {
                key_event(&s, kl->seq, lf);
            }
            cpx_msg_free(lf);
        }
        for (size_t i = 0; !rc && i < b->n_heads; i++)
            rc = add_head(&s, &cap, b->heads[i]);
        for (size_t i = 0; !rc && i < opts->n_extra_heads; i++)
            rc = add_head(&s, &cap, opts->extra_heads[i]);
        if (!rc && !s.failed) {
            bundle_src_t bs = {b, 0};
            source_t src = {bundle_next, 0, &bs};
            rc = replay(&s, &src, b->first);
        } else if (!rc) {
            rc = CPX_ERR_TAMPERED;
        }
    }
    rep->first_seq = b ? b->first : 0;
    state_free(&s, 0);
    cpx_bundle_destroy(&b);
    return rc;
}
