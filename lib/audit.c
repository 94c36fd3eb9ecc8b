/* audit.c — the signed exchange log: AuditLeaf records, RFC 9162 tree, signed heads.
 *
 * Append keeps the tree's right edge (one perfect-subtree hash per set bit of the
 * size) in memory, so a leaf costs its own hash plus one node hash amortised. Leaf i's
 * record (key BE64(i), one MDB_APPEND) carries the hashes of every perfect subtree leaf
 * i completes, levels from 0 upward, in front of the leaf bytes: the perfect subtree
 * (level l, index j) is the (l)th hash of record (j+1)*2^l - 1, so keys only ever grow
 * and a proof needs one read per node. One record per leaf rather than a leaf database
 * plus a node database: with durable commits the cost of a batch is the pages it
 * dirties, and a second append-only tree doubled the branch pages copied per commit. */
#include "cpx/audit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define LEVELS 64
#define MAX_CASE_REF 128
static const char HEAD_TAG[] = "cpx.v1.sig.tree-head"; /* + its NUL = 21 bytes */

typedef struct edge {
    uint64_t size;
    cpx_hash_t h[LEVELS]; /* h[l] valid when bit l of size is set */
    int64_t last_time;    /* time of the last leaf: a later leaf is never stamped earlier */
} edge_t;

struct cpx_audit {
    MDB_env *env;
    cpx_audit_dbs_t db;
    int readonly;
    int loaded;        /* committed edge is valid */
    int dirty;         /* appends since the last committed()/aborted() */
    uint64_t missing;  /* tree size minus stored leaves (non-zero only if tampered) */
    edge_t committed;
    edge_t pending;
    /* The greatest case key indexed so far, a hint (see index_case); 0: none known. */
    char last_case[MAX_CASE_REF];
    size_t last_case_len;
};

int64_t cpx_audit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- open ----------------------------------------------------------------------------- */

static int open_dbs(cpx_audit_t *self, MDB_txn *txn)
{
    unsigned c = self->readonly ? 0 : MDB_CREATE;
    int rc = mdb_dbi_open(txn, "audit.leaves", c, &self->db.leaves);
    if (!rc)
        rc = mdb_dbi_open(txn, "audit.heads", c, &self->db.heads);
    if (!rc)
        rc = mdb_dbi_open(txn, "audit.meta", c, &self->db.meta);
    if (!rc)
        rc = mdb_dbi_open(txn, "audit.cases", c | MDB_DUPSORT | MDB_DUPFIXED, &self->db.cases);
    if (!rc)
        rc = mdb_dbi_open(txn, "audit.keys", c, &self->db.keys);
    if (!rc && !self->readonly) {
        MDB_val k = {7, "version"}, v = {1, "1"};
        rc = mdb_put(txn, self->db.meta, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST)
            rc = 0;
    }
    return rc;
}

cpx_audit_t *cpx_audit_open(MDB_env *env)
{
    if (!env)
        return NULL;
    cpx_audit_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->env = env;
    unsigned flags = 0;
    mdb_env_get_flags(env, &flags);
    self->readonly = (flags & MDB_RDONLY) != 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, self->readonly ? MDB_RDONLY : 0, &txn);
    if (!rc) {
        rc = open_dbs(self, txn);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (rc) {
        cpx_store_err(rc, "audit: open databases");
        free(self);
        return NULL;
    }
    return self;
}

void cpx_audit_destroy(cpx_audit_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void cpx_audit_dbs(const cpx_audit_t *self, cpx_audit_dbs_t *out)
{
    *out = self->db;
}

/* ---- nodes ------------------------------------------------------------------------------ */

int cpx_audit_record_split(const void *rec, size_t rec_len, const uint8_t **nodes,
                           size_t *n_nodes, const uint8_t **leaf, size_t *leaf_len)
{
    const uint8_t *r = rec;
    if (!r || rec_len < 1 || r[0] < 1 || r[0] > LEVELS ||
        rec_len < 1 + (size_t)r[0] * CPX_SHA256_LEN)
        return CPX_ERR_TAMPERED;
    size_t hl = 1 + (size_t)r[0] * CPX_SHA256_LEN;
    if (nodes)
        *nodes = r + 1;
    if (n_nodes)
        *n_nodes = r[0];
    if (leaf)
        *leaf = r + hl;
    if (leaf_len)
        *leaf_len = rec_len - hl;
    return CPX_OK;
}

int cpx_audit_get_node(cpx_audit_t *self, MDB_txn *txn, unsigned level, uint64_t index,
                       cpx_hash_t out)
{
    if (level >= LEVELS || index >= (UINT64_MAX >> level))
        return CPX_ERR_ARG;
    uint8_t key[8];
    cpx_be64_put(key, ((index + 1) << level) - 1);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(txn, self->db.leaves, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? CPX_ERR_NOT_FOUND : cpx_store_err(rc, "audit: get node");
    const uint8_t *nodes;
    size_t n;
    if (cpx_audit_record_split(v.mv_data, v.mv_size, &nodes, &n, NULL, NULL) != CPX_OK ||
        level >= n)
        return CPX_ERR_TAMPERED;
    memcpy(out, nodes + (size_t)level * CPX_SHA256_LEN, CPX_SHA256_LEN);
    return CPX_OK;
}

typedef struct getter {
    cpx_audit_t *self;
    MDB_txn *txn;
} getter_t;

static int node_get(void *ctx, unsigned level, uint64_t index, cpx_hash_t out)
{
    getter_t *g = ctx;
    return cpx_audit_get_node(g->self, g->txn, level, index, out);
}

static int leaf_count(cpx_audit_t *self, MDB_txn *txn, uint64_t *size)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->db.leaves, &cur);
    if (rc)
        return cpx_store_err(rc, "audit: cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        *size = 0;
        return CPX_OK;
    }
    if (rc)
        return cpx_store_err(rc, "audit: last leaf");
    if (k.mv_size != 8)
        return CPX_ERR_TAMPERED;
    *size = cpx_be64_get(k.mv_data) + 1;
    return CPX_OK;
}

/* Rebuilds the right edge from the stored nodes: O(log n) reads. */
static int load_edge(cpx_audit_t *self, MDB_txn *txn, edge_t *e)
{
    int rc = leaf_count(self, txn, &e->size);
    if (rc)
        return rc;
    uint64_t start = 0;
    getter_t g = {self, txn};
    for (int l = LEVELS - 1; l >= 0; l--) {
        if (!(e->size >> l & 1))
            continue;
        rc = node_get(&g, (unsigned)l, start >> l, e->h[l]);
        if (rc) {
            cpx_log_error("audit", "msg=\"right edge node missing\" level=%d start=%llu", l,
                          (unsigned long long)start);
            return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
        }
        start += UINT64_C(1) << l;
    }
    /* the wall clock may be stepped back while the log is closed: carry the last time */
    e->last_time = 0;
    cpx_audit_leaf_t *last = NULL;
    if (e->size && cpx_audit_get_leaf(self, txn, e->size - 1, &last) == CPX_OK) {
        e->last_time = last->time_ms;
        cpx_msg_free(last);
    }
    return CPX_OK;
}

static void edge_root(const edge_t *e, cpx_hash_t out)
{
    if (e->size == 0) {
        cpx_sha256("", 0, out);
        return;
    }
    int first = 1;
    for (int l = 0; l < LEVELS; l++) {
        if (!(e->size >> l & 1))
            continue;
        if (first) {
            memcpy(out, e->h[l], CPX_SHA256_LEN);
            first = 0;
        } else {
            cpx_merkle_node_hash(e->h[l], out, out);
        }
    }
}

/* Leaves the writer's transaction holds, O(1) (no I/O). */
static int txn_entries(cpx_audit_t *self, MDB_txn *txn, uint64_t *n)
{
    MDB_stat st;
    int rc = mdb_stat(txn, self->db.leaves, &st);
    if (rc)
        return cpx_store_err(rc, "audit: stat");
    *n = st.ms_entries;
    return CPX_OK;
}

/* The writer's view: the pending edge for this write transaction. Every append checks
 * that the transaction holds as many leaves as the edge says, which catches a missing
 * committed()/aborted() call (or a second writer) and reloads the edge instead of
 * writing a gap or a fork. */
static int writer_edge(cpx_audit_t *self, MDB_txn *txn)
{
    uint64_t entries = 0;
    int rc = txn_entries(self, txn, &entries);
    if (rc)
        return rc;
    if (!self->dirty)
        self->pending = self->committed;
    if (self->loaded && entries + self->missing == self->pending.size)
        return CPX_OK;
    if (self->loaded)
        cpx_log_warn("audit", "msg=\"log changed under the writer (committed/aborted "
                     "not called?); reloading edge\"");
    rc = load_edge(self, txn, &self->committed);
    if (rc)
        return rc;
    /* a log with a deleted leaf (tampering, caught by verify) keeps its numbering */
    self->missing = self->committed.size - entries;
    if (self->missing)
        cpx_log_error("audit", "msg=\"leaves missing from the log\" count=%llu",
                      (unsigned long long)self->missing);
    self->loaded = 1;
    self->dirty = 0;
    self->pending = self->committed;
    return CPX_OK;
}

void cpx_audit_committed(cpx_audit_t *self)
{
    if (!self)
        return;
    if (self->dirty)
        self->committed = self->pending;
    self->dirty = 0;
}

void cpx_audit_aborted(cpx_audit_t *self)
{
    if (!self)
        return;
    self->pending = self->committed;
    self->dirty = 0;
}

/* ---- append ------------------------------------------------------------------------------ */

/* LMDB's default key order: bytes, then the shorter key first. */
static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

/* Case ids are mostly handed out in ascending order, so a new case usually sorts last:
 * MDB_APPEND then fills pages instead of splitting them in half. It refuses
 * (MDB_KEYEXIST) any key not past the last, such as a later event of an older case;
 * those take a plain put, and go straight to it when the greatest key indexed so far
 * (self->last_case) already shows they are not past the last. That key is a hint: one
 * left by an aborted transaction costs at most a plain put where APPEND would have done. */
static int index_case(cpx_audit_t *self, MDB_txn *txn, const char *case_ref, size_t case_len,
                      uint8_t seq_key[8])
{
    MDB_val ck = {case_len, (void *)case_ref}, cv = {8, seq_key};
    int after = !self->last_case_len ||
                key_cmp(case_ref, case_len, self->last_case, self->last_case_len) > 0;
    int rc = after ? mdb_put(txn, self->db.cases, &ck, &cv, MDB_APPEND) : MDB_KEYEXIST;
    if (rc == 0) {
        memcpy(self->last_case, case_ref, case_len);
        self->last_case_len = case_len;
    } else if (rc == MDB_KEYEXIST) {
        rc = mdb_put(txn, self->db.cases, &ck, &cv, 0);
    }
    return rc && rc != MDB_KEYEXIST ? cpx_store_err(rc, "audit: put case index") : CPX_OK;
}

int cpx_audit_append(cpx_audit_t *self, MDB_txn *txn, cpx_audit_leaf_t *leaf,
                     uint64_t *seq_out)
{
    if (!self || !txn || !leaf || self->readonly)
        return CPX_ERR_ARG;
    size_t case_len = leaf->case_ref ? strlen(leaf->case_ref) : 0;
    if (case_len > MAX_CASE_REF)
        return CPX_ERR_TOO_LARGE;
    int rc = writer_edge(self, txn);
    if (rc)
        return rc;
    edge_t *e = &self->pending;
    uint64_t seq = e->size;
    leaf->seq = seq;
    if (leaf->time_ms == 0)
        leaf->time_ms = cpx_audit_now_ms();
    /* a clock stepped back (NTP, operator) must not make the log look reordered:
     * verify refuses leaf times that go back */
    if (leaf->time_ms < e->last_time)
        leaf->time_ms = e->last_time;
    size_t len = protobuf_c_message_get_packed_size(&leaf->base);
    if (len > CPX_MAX_LEAF_BYTES)
        return CPX_ERR_TOO_LARGE;

    /* One record: the node count, the nodes leaf seq completes, the leaf bytes. Pack
     * straight into the map (MDB_RESERVE), hash those very bytes, then fill in the
     * nodes in front of them. */
    unsigned l = 0;
    while (seq >> l & 1)
        l++;
    size_t hl = 1 + (size_t)(l + 1) * CPX_SHA256_LEN;
    uint8_t key[8];
    cpx_be64_put(key, seq);
    MDB_val k = {8, key}, v = {hl + len, NULL};
    rc = mdb_put(txn, self->db.leaves, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc == MDB_KEYEXIST)
        return CPX_ERR_STATE;
    if (rc)
        return cpx_store_err(rc, "audit: put leaf");
    uint8_t *rec = v.mv_data;
    protobuf_c_message_pack(&leaf->base, rec + hl);

    e->last_time = leaf->time_ms;
    cpx_hash_t nodes[LEVELS + 1];
    cpx_merkle_leaf_hash(rec + hl, len, nodes[0]);
    for (unsigned i = 0; i < l; i++)
        cpx_merkle_node_hash(e->h[i], nodes[i], nodes[i + 1]);
    rec[0] = (uint8_t)(l + 1);
    memcpy(rec + 1, nodes, (size_t)(l + 1) * CPX_SHA256_LEN);
    if (case_len && (rc = index_case(self, txn, leaf->case_ref, case_len, key)))
        return rc;
    if (leaf->event == CPX__V1__AUDIT_EVENT__KEY_ENROLLED ||
        leaf->event == CPX__V1__AUDIT_EVENT__KEY_REVOKED) {
        uint8_t ev = (uint8_t)leaf->event;
        MDB_val kv = {1, &ev};
        rc = mdb_put(txn, self->db.keys, &k, &kv, MDB_APPEND);
        if (rc)
            return cpx_store_err(rc, "audit: put key index");
    }

    /* Only now, with every put done, does the in-memory edge move. */
    memcpy(e->h[l], nodes[l], CPX_SHA256_LEN);
    e->size = seq + 1;
    self->dirty = 1;
    if (seq_out)
        *seq_out = seq;
    return CPX_OK;
}

/* ---- heads ------------------------------------------------------------------------------ */

void cpx_sth_signing_bytes(const cpx_sth_t *sth, uint8_t out[CPX_STH_SIGNING_LEN])
{
    memset(out, 0, CPX_STH_SIGNING_LEN);
    memcpy(out, HEAD_TAG, sizeof HEAD_TAG); /* includes the NUL separator */
    uint8_t *p = out + sizeof HEAD_TAG;
    if (sth->log_id.len == CPX_SHA256_LEN)
        memcpy(p, sth->log_id.data, CPX_SHA256_LEN);
    p += CPX_SHA256_LEN;
    cpx_be64_put(p, sth->tree_size);
    p += 8;
    cpx_be64_put(p, (uint64_t)sth->timestamp_ms);
    p += 8;
    if (sth->root_hash.len == CPX_SHA256_LEN)
        memcpy(p, sth->root_hash.data, CPX_SHA256_LEN);
}

int cpx_sth_verify(const cpx_sth_t *sth, const cpx_key_t *gateway_pub)
{
    if (!sth || !gateway_pub)
        return CPX_ERR_ARG;
    if (sth->log_id.len != CPX_SHA256_LEN || sth->root_hash.len != CPX_SHA256_LEN)
        return CPX_ERR_BAD_SIGNATURE;
    uint8_t raw[CPX_ED25519_PUB_LEN], id[CPX_SHA256_LEN];
    cpx_key_public_raw(gateway_pub, raw);
    cpx_sha256(raw, sizeof raw, id);
    if (memcmp(id, sth->log_id.data, CPX_SHA256_LEN) != 0)
        return CPX_ERR_BAD_SIGNATURE;
    uint8_t msg[CPX_STH_SIGNING_LEN];
    cpx_sth_signing_bytes(sth, msg);
    return cpx_key_verify(gateway_pub, msg, sizeof msg, sth->signature.data,
                          sth->signature.len) == CPX_OK
               ? CPX_OK
               : CPX_ERR_BAD_SIGNATURE;
}

int cpx_sth_verify_key(const cpx_sth_t *sth, const cpx_key_t *key,
                       const uint8_t log_id[CPX_SHA256_LEN])
{
    if (!sth || !key || !log_id)
        return CPX_ERR_ARG;
    if (sth->log_id.len != CPX_SHA256_LEN || sth->root_hash.len != CPX_SHA256_LEN ||
        memcmp(sth->log_id.data, log_id, CPX_SHA256_LEN) != 0)
        return CPX_ERR_BAD_SIGNATURE;
    uint8_t msg[CPX_STH_SIGNING_LEN];
    cpx_sth_signing_bytes(sth, msg);
    return cpx_key_verify(key, msg, sizeof msg, sth->signature.data, sth->signature.len) ==
                   CPX_OK
               ? CPX_OK
               : CPX_ERR_BAD_SIGNATURE;
}

static int meta_get32(cpx_audit_t *self, MDB_txn *txn, const char *name, uint8_t out[32])
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, self->db.meta, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? CPX_ERR_NOT_FOUND : cpx_store_err(rc, "audit: get meta");
    if (v.mv_size != 32)
        return CPX_ERR_TAMPERED;
    memcpy(out, v.mv_data, 32);
    return CPX_OK;
}

int cpx_audit_gateway_keys(cpx_audit_t *self, MDB_txn *txn, uint8_t log_id[CPX_SHA256_LEN],
                           uint8_t first[CPX_ED25519_PUB_LEN],
                           uint8_t current[CPX_ED25519_PUB_LEN])
{
    if (!self || !txn)
        return CPX_ERR_ARG;
    uint8_t id[CPX_SHA256_LEN], pub0[CPX_ED25519_PUB_LEN], cur[CPX_ED25519_PUB_LEN];
    int rc = meta_get32(self, txn, "log_id", id);
    if (!rc)
        rc = meta_get32(self, txn, "gateway_pub", pub0);
    if (rc)
        return rc;
    /* written by a rotation only: a log that never rotated has no such record */
    rc = meta_get32(self, txn, CPX_AUDIT_META_CURRENT, cur);
    if (rc == CPX_ERR_NOT_FOUND)
        memcpy(cur, pub0, sizeof cur);
    else if (rc)
        return rc;
    if (log_id)
        memcpy(log_id, id, sizeof id);
    if (first)
        memcpy(first, pub0, sizeof pub0);
    if (current)
        memcpy(current, cur, sizeof cur);
    return CPX_OK;
}

static int decode_head(const MDB_val *v, cpx_sth_t **out)
{
    int rc = cpx_decode_sth(v->mv_data, v->mv_size, out);
    return rc == CPX_OK ? CPX_OK : CPX_ERR_TAMPERED;
}

int cpx_audit_get_head(cpx_audit_t *self, MDB_txn *txn, uint64_t size, cpx_sth_t **out)
{
    if (!self || !txn || !out)
        return CPX_ERR_ARG;
    *out = NULL;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->db.heads, &cur);
    if (rc)
        return cpx_store_err(rc, "audit: cursor");
    uint8_t key[8];
    cpx_be64_put(key, size);
    MDB_val k = {8, key}, v;
    rc = mdb_cursor_get(cur, &k, &v, size ? MDB_SET_RANGE : MDB_LAST);
    if (rc == MDB_SUCCESS)
        rc = decode_head(&v, out);
    else
        rc = rc == MDB_NOTFOUND ? CPX_ERR_NOT_FOUND : cpx_store_err(rc, "audit: get head");
    mdb_cursor_close(cur);
    return rc;
}

int cpx_audit_sign_head(cpx_audit_t *self, MDB_txn *txn, const cpx_key_t *key,
                        int64_t now_ms, cpx_sth_t **out)
{
    if (out)
        *out = NULL;
    if (!self || !txn || !key || !cpx_key_has_private(key) || self->readonly)
        return CPX_ERR_ARG;
    int rc = writer_edge(self, txn);
    if (rc)
        return rc;
    const edge_t *e = &self->pending;
    cpx_sth_t *latest = NULL;
    rc = cpx_audit_get_head(self, txn, 0, &latest);
    if (rc && rc != CPX_ERR_NOT_FOUND)
        return rc;
    if (latest && latest->tree_size == e->size) {
        if (out)
            *out = latest;
        else
            cpx_msg_free(latest);
        return CPX_OK;
    }
    if (latest && latest->tree_size > e->size) {
        cpx_log_error("audit", "msg=\"latest head is past the tree\" head=%llu size=%llu",
                      (unsigned long long)latest->tree_size, (unsigned long long)e->size);
        cpx_msg_free(latest);
        return CPX_ERR_TAMPERED;
    }
    if (now_ms == 0)
        now_ms = cpx_audit_now_ms();
    /* Heads never go back in time, even if the wall clock does. */
    if (latest && now_ms < latest->timestamp_ms)
        now_ms = latest->timestamp_ms;
    if (now_ms < e->last_time)
        now_ms = e->last_time;
    cpx_msg_free(latest);

    uint8_t raw[CPX_ED25519_PUB_LEN], log_id[CPX_SHA256_LEN], msg[CPX_STH_SIGNING_LEN];
    uint8_t sig[CPX_ED25519_SIG_LEN];
    cpx_hash_t root;
    cpx_key_public_raw(key, raw);
    /* The log id is the log's identity for life: SHA-256 of the FIRST gateway key. After
     * a rotation (lib/gwkey.c) only the key the meta names as current may sign. */
    uint8_t current[CPX_ED25519_PUB_LEN];
    int fresh = 0;
    rc = cpx_audit_gateway_keys(self, txn, log_id, NULL, current);
    if (rc == CPX_ERR_NOT_FOUND) {
        cpx_sha256(raw, sizeof raw, log_id);
        fresh = 1;
    } else if (rc) {
        return rc;
    } else if (memcmp(current, raw, sizeof raw) != 0) {
        cpx_log_error("audit", "msg=\"this signing key is not the log's current gateway key "
                      "(rotated?): refusing to sign a head\"");
        return CPX_ERR_REFUSED;
    }
    edge_root(e, root);
    cpx_sth_t sth = CPX__V1__SIGNED_TREE_HEAD__INIT;
    sth.log_id = (ProtobufCBinaryData){CPX_SHA256_LEN, log_id};
    sth.tree_size = e->size;
    sth.root_hash = (ProtobufCBinaryData){CPX_SHA256_LEN, root};
    sth.timestamp_ms = now_ms;
    cpx_sth_signing_bytes(&sth, msg);
    rc = cpx_key_sign(key, msg, sizeof msg, sig);
    if (rc)
        return rc;
    sth.signature = (ProtobufCBinaryData){CPX_ED25519_SIG_LEN, sig};

    uint8_t buf[256], hk[8];
    size_t len;
    rc = cpx_encode_into(&sth, buf, sizeof buf, &len);
    if (rc)
        return rc;
    cpx_be64_put(hk, e->size);
    MDB_val k = {8, hk}, v = {len, buf};
    rc = mdb_put(txn, self->db.heads, &k, &v, MDB_APPEND);
    if (rc)
        return cpx_store_err(rc, "audit: put head");
    /* the first key is kept so tools can export without being handed it; auditors
     * must still check it against a key they obtained independently */
    if (fresh) {
        MDB_val mk = {6, "log_id"}, mv = {CPX_SHA256_LEN, log_id};
        MDB_val pk = {11, "gateway_pub"}, pv = {CPX_ED25519_PUB_LEN, raw};
        rc = mdb_put(txn, self->db.meta, &mk, &mv, 0);
        if (!rc)
            rc = mdb_put(txn, self->db.meta, &pk, &pv, 0);
        if (rc)
            return cpx_store_err(rc, "audit: put log id");
    }
    if (out)
        return cpx_decode_sth(buf, len, out);
    return CPX_OK;
}

/* ---- readers ------------------------------------------------------------------------------ */

int cpx_audit_size(cpx_audit_t *self, MDB_txn *txn, uint64_t *size)
{
    if (!self || !txn || !size)
        return CPX_ERR_ARG;
    return leaf_count(self, txn, size);
}

int cpx_audit_root(cpx_audit_t *self, MDB_txn *txn, uint64_t size, cpx_hash_t out)
{
    if (!self || !txn)
        return CPX_ERR_ARG;
    uint64_t n;
    int rc = leaf_count(self, txn, &n);
    if (rc)
        return rc;
    if (size > n)
        return CPX_ERR_NOT_FOUND;
    getter_t g = {self, txn};
    return cpx_merkle_range_root(node_get, &g, 0, size, out);
}

int cpx_audit_get_leaf_raw(cpx_audit_t *self, MDB_txn *txn, uint64_t seq,
                           const uint8_t **data, size_t *len)
{
    if (!self || !txn || !data || !len)
        return CPX_ERR_ARG;
    uint8_t key[8];
    cpx_be64_put(key, seq);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(txn, self->db.leaves, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? CPX_ERR_NOT_FOUND : cpx_store_err(rc, "audit: get leaf");
    return cpx_audit_record_split(v.mv_data, v.mv_size, NULL, NULL, data, len);
}

int cpx_audit_get_leaf(cpx_audit_t *self, MDB_txn *txn, uint64_t seq, cpx_audit_leaf_t **out)
{
    if (!out)
        return CPX_ERR_ARG;
    *out = NULL;
    const uint8_t *data;
    size_t len;
    int rc = cpx_audit_get_leaf_raw(self, txn, seq, &data, &len);
    if (rc)
        return rc;
    rc = cpx_decode_audit_leaf(data, len, out);
    return rc == CPX_OK ? CPX_OK : CPX_ERR_TAMPERED;
}

int cpx_audit_prove_inclusion(cpx_audit_t *self, MDB_txn *txn, uint64_t seq,
                              uint64_t tree_size, cpx_hash_t *path, size_t *path_len)
{
    if (!self || !txn || !path || !path_len)
        return CPX_ERR_ARG;
    uint64_t n;
    int rc = leaf_count(self, txn, &n);
    if (rc)
        return rc;
    if (tree_size == 0)
        tree_size = n;
    if (tree_size > n || seq >= tree_size)
        return CPX_ERR_NOT_FOUND;
    getter_t g = {self, txn};
    return cpx_merkle_prove_inclusion(node_get, &g, seq, tree_size, path, CPX_MAX_PROOF_PATH,
                                      path_len);
}

int cpx_audit_prove_consistency(cpx_audit_t *self, MDB_txn *txn, uint64_t old_size,
                                uint64_t new_size, cpx_hash_t *path, size_t *path_len)
{
    if (!self || !txn || !path || !path_len)
        return CPX_ERR_ARG;
    uint64_t n;
    int rc = leaf_count(self, txn, &n);
    if (rc)
        return rc;
    if (new_size == 0)
        new_size = n;
    if (new_size > n)
        return CPX_ERR_NOT_FOUND;
    if (old_size == 0 || old_size > new_size)
        return CPX_ERR_ARG;
    getter_t g = {self, txn};
    return cpx_merkle_prove_consistency(node_get, &g, old_size, new_size, path,
                                        CPX_MAX_PROOF_PATH, path_len);
}

int cpx_audit_case_foreach(cpx_audit_t *self, MDB_txn *txn, const char *case_ref,
                           int (*fn)(void *ctx, uint64_t seq), void *ctx)
{
    if (!self || !txn || !case_ref || !fn)
        return CPX_ERR_ARG;
    size_t len = strlen(case_ref);
    if (len == 0 || len > MAX_CASE_REF)
        return CPX_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->db.cases, &cur);
    if (rc)
        return cpx_store_err(rc, "audit: cursor");
    MDB_val k = {len, (void *)case_ref}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    int ret = CPX_OK;
    while (rc == MDB_SUCCESS) {
        if (v.mv_size != 8) {
            ret = CPX_ERR_TAMPERED;
            break;
        }
        ret = fn(ctx, cpx_be64_get(v.mv_data));
        if (ret)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    if (rc && rc != MDB_NOTFOUND && !ret)
        ret = cpx_store_err(rc, "audit: case index");
    mdb_cursor_close(cur);
    return ret;
}

/* ---- pseudonyms ---------------------------------------------------------------------------- */

void cpx_audit_pseudonym(const uint8_t key[32], const char *subject, char out[35])
{
    uint8_t mac[CPX_SHA256_LEN];
    char hex[2 * CPX_SHA256_LEN + 1];
    cpx_hmac_sha256(key, 32, subject, strlen(subject), mac);
    cpx_hex(mac, sizeof mac, hex);
    out[0] = 'P';
    out[1] = ':';
    memcpy(out + 2, hex, 32);
    out[34] = '\0';
    cpx_cleanse(mac, sizeof mac);
}
