/* export.c — writing and (bounded) parsing of export bundles. */
#include "cpx/export.h"

#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/gwkey.h"
#include "cpx/limits.h"
#include "cpx/log.h"
#include "cpx/store.h"

enum {
    REC_GATEWAY_KEY = 1,
    REC_RANGE = 2,
    REC_PREFIX = 3,
    REC_KEY_LEAF = 4,
    REC_LEAF = 5,
    REC_HEAD = 6,
    REC_END = 7,
    REC_HANDOVER = 8,
};
#define REC_HDR 5
#define MAX_REC (CPX_MAX_LEAF_BYTES + 8 + 1 + CPX_MAX_PROOF_PATH * CPX_SHA256_LEN)
#define MAX_HEAD_BYTES 4096

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct writer {
    FILE *f;
    uint64_t records;
    int err;
} writer_t;

static void rec(writer_t *w, uint8_t type, const void *a, size_t alen, const void *b,
                size_t blen)
{
    uint8_t hdr[REC_HDR];
    hdr[0] = type;
    cpx_be32_put(hdr + 1, (uint32_t)(alen + blen));
    if (fwrite(hdr, 1, REC_HDR, w->f) != REC_HDR || (alen && fwrite(a, 1, alen, w->f) != alen) ||
        (blen && fwrite(b, 1, blen, w->f) != blen))
        w->err = CPX_ERR_IO;
    w->records++;
}

static int cursor_rc(int rc, const char *what)
{
    return rc == MDB_NOTFOUND ? CPX_OK : cpx_store_err(rc, what);
}

/* One hand-over record (type 8): BE64(seq) || n (1) || inclusion path of the leaf in the
 * covering head's tree || m (1) || consistency path from that tree to size from || head. */
static int handover_rec(cpx_audit_t *audit, MDB_txn *txn, writer_t *w, uint64_t seq,
                        uint64_t from)
{
    cpx_sth_t *head = NULL;
    int rc = cpx_audit_get_head(audit, txn, seq + 1, &head);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
    uint64_t hs = head->tree_size;
    if (hs >= from) { /* the range holds that head: the replay checks the hand-over */
        cpx_msg_free(head);
        return CPX_OK;
    }
    uint8_t buf[8 + 2 + 2 * CPX_MAX_PROOF_PATH * CPX_SHA256_LEN], hb[512];
    cpx_hash_t path[CPX_MAX_PROOF_PATH];
    size_t n = 0, m = 0, hl = 0, off = 0;
    rc = cpx_audit_prove_inclusion(audit, txn, seq, hs, path, &n);
    if (!rc) {
        cpx_be64_put(buf, seq);
        buf[8] = (uint8_t)n;
        memcpy(buf + 9, path, n * CPX_SHA256_LEN);
        off = 9 + n * CPX_SHA256_LEN;
        rc = cpx_audit_prove_consistency(audit, txn, hs, from, path, &m);
    }
    if (!rc) {
        buf[off++] = (uint8_t)m;
        memcpy(buf + off, path, m * CPX_SHA256_LEN);
        off += m * CPX_SHA256_LEN;
        rc = cpx_encode_into(head, hb, sizeof hb, &hl);
    }
    cpx_msg_free(head);
    if (!rc)
        rec(w, REC_HANDOVER, buf, off, hb, hl);
    return rc;
}

static int write_handovers(cpx_audit_t *audit, MDB_txn *txn, writer_t *w, uint64_t from)
{
    cpx_audit_dbs_t db;
    cpx_audit_dbs(audit, &db);
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, db.keys, &cur);
    if (rc)
        return cpx_store_err(rc, "export: cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8)
            continue;
        uint64_t seq = cpx_be64_get(k.mv_data);
        if (seq >= from)
            break;
        cpx_audit_leaf_t *lf = NULL;
        int r = cpx_audit_get_leaf(audit, txn, seq, &lf);
        if (!r && cpx_gwkey_is_handover(lf))
            r = handover_rec(audit, txn, w, seq, from);
        cpx_msg_free(lf);
        if (r) {
            mdb_cursor_close(cur);
            return r;
        }
    }
    mdb_cursor_close(cur);
    return cursor_rc(rc, "export: keys");
}

int cpx_audit_export(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *gateway_pub,
                     uint64_t from, uint64_t to, FILE *out, uint64_t *end_out)
{
    if (!audit || !txn || !gateway_pub || !out)
        return CPX_ERR_ARG;
    cpx_audit_dbs_t db;
    cpx_audit_dbs(audit, &db);
    uint64_t size;
    int rc = cpx_audit_size(audit, txn, &size);
    if (rc)
        return rc;
    /* the end: the first head at or past `to` (or the latest) */
    cpx_sth_t *head = NULL;
    rc = cpx_audit_get_head(audit, txn, to, &head);
    if (rc == CPX_ERR_NOT_FOUND && to)
        rc = cpx_audit_get_head(audit, txn, 0, &head);
    if (rc)
        return rc;
    uint64_t end = head->tree_size;
    cpx_msg_free(head);
    if (end > size)
        return CPX_ERR_TAMPERED;
    if (from >= end)
        return CPX_ERR_ARG;

    uint8_t raw[CPX_ED25519_PUB_LEN], range[16], first_key[CPX_ED25519_PUB_LEN];
    cpx_key_public_raw(gateway_pub, raw);
    /* the bundle names the log's first key: the chain's start and the log id's source */
    rc = cpx_audit_gateway_keys(audit, txn, NULL, first_key, NULL);
    if (rc && rc != CPX_ERR_NOT_FOUND)
        return rc;
    if (!rc && memcmp(first_key, raw, sizeof raw) != 0) {
        cpx_log_error("export", "msg=\"the key given is not the log's first gateway key "
                      "(after a rotation, export names the first key)\"");
        return CPX_ERR_STATE;
    }
    writer_t w = {out, 0, 0};
    if (fwrite(CPX_BUNDLE_MAGIC, 1, 8, out) != 8)
        return CPX_ERR_IO;
    rec(&w, REC_GATEWAY_KEY, raw, sizeof raw, NULL, 0);
    cpx_be64_put(range, from);
    cpx_be64_put(range + 8, end);
    rec(&w, REC_RANGE, range, sizeof range, NULL, 0);

    uint64_t start = 0;
    for (int l = 63; l >= 0; l--) {
        if (!(from >> l & 1))
            continue;
        uint8_t p[1 + CPX_SHA256_LEN];
        p[0] = (uint8_t)l;
        rc = cpx_audit_get_node(audit, txn, (unsigned)l, start >> l, p + 1);
        if (rc)
            return rc;
        rec(&w, REC_PREFIX, p, sizeof p, NULL, 0);
        start += UINT64_C(1) << l;
    }

    MDB_cursor *cur = NULL;
    MDB_val k, v;
    /* key leaves before `from`, each with its inclusion path in the tree of size from */
    if (from) {
        rc = mdb_cursor_open(txn, db.keys, &cur);
        if (rc)
            return cpx_store_err(rc, "export: cursor");
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 8)
                continue;
            uint64_t seq = cpx_be64_get(k.mv_data);
            if (seq >= from)
                break;
            const uint8_t *leaf;
            size_t len, plen;
            cpx_hash_t path[CPX_MAX_PROOF_PATH];
            int r = cpx_audit_get_leaf_raw(audit, txn, seq, &leaf, &len);
            if (!r)
                r = cpx_audit_prove_inclusion(audit, txn, seq, from, path, &plen);
            if (r) {
                mdb_cursor_close(cur);
                return r;
            }
            uint8_t hdr[9 + CPX_MAX_PROOF_PATH * CPX_SHA256_LEN];
            cpx_be64_put(hdr, seq);
            hdr[8] = (uint8_t)plen;
            memcpy(hdr + 9, path, plen * CPX_SHA256_LEN);
            rec(&w, REC_KEY_LEAF, hdr, 9 + plen * CPX_SHA256_LEN, leaf, len);
        }
        mdb_cursor_close(cur);
        if ((rc = cursor_rc(rc, "export: keys")))
            return rc;
        if ((rc = write_handovers(audit, txn, &w, from)))
            return rc;
    }

    uint8_t key[8];
    rc = mdb_cursor_open(txn, db.leaves, &cur);
    if (rc)
        return cpx_store_err(rc, "export: cursor");
    cpx_be64_put(key, from);
    k = (MDB_val){8, key};
    uint64_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS && n < end - from;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        /* the bundle carries the leaf bytes only (its verifier recomputes every node);
         * a record whose node prefix does not parse goes in whole, and the bundle's
         * verify names it as a bad leaf, as verify of the store does */
        const uint8_t *leaf = v.mv_data;
        size_t len = v.mv_size;
        cpx_audit_record_split(v.mv_data, v.mv_size, NULL, NULL, &leaf, &len);
        rec(&w, REC_LEAF, leaf, len, NULL, 0);
    }
    mdb_cursor_close(cur);
    if ((rc = cursor_rc(rc, "export: leaves")))
        return rc;

    rc = mdb_cursor_open(txn, db.heads, &cur);
    if (rc)
        return cpx_store_err(rc, "export: cursor");
    cpx_be64_put(key, from ? from : 1);
    k = (MDB_val){8, key};
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8 || cpx_be64_get(k.mv_data) > end)
            break;
        rec(&w, REC_HEAD, v.mv_data, v.mv_size, NULL, 0);
    }
    mdb_cursor_close(cur);
    if ((rc = cursor_rc(rc, "export: heads")))
        return rc;

    uint8_t cnt[8];
    cpx_be64_put(cnt, w.records);
    rec(&w, REC_END, cnt, sizeof cnt, NULL, 0);
    if (fflush(out) != 0 || w.err)
        return CPX_ERR_IO;
    if (end_out)
        *end_out = end;
    return CPX_OK;
}

/* ---- parsing -------------------------------------------------------------------------------- */

void cpx_bundle_destroy(cpx_bundle_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_bundle_t *b = *self_p;
    for (size_t i = 0; i < b->n_heads; i++)
        cpx_msg_free(b->heads[i]);
    free(b->heads);
    for (size_t i = 0; i < b->n_handovers; i++)
        cpx_msg_free(b->handovers[i].head);
    free(b->handovers);
    free(b->key_leaves);
    free(b->leaf);
    free(b->leaf_len);
    free(b);
    *self_p = NULL;
}

#define FAIL(code, ...)                                   \
    do {                                                  \
        if (why)                                          \
            snprintf(why, why_size, __VA_ARGS__);         \
        rc = (code);                                      \
        goto fail;                                        \
    } while (0)

int cpx_bundle_parse(const uint8_t *buf, size_t len, cpx_bundle_t **out, char *why,
                     size_t why_size)
{
    if (!out || (!buf && len))
        return CPX_ERR_ARG;
    *out = NULL;
    if (why && why_size)
        why[0] = '\0';
    int rc = CPX_OK;
    cpx_bundle_t *b = calloc(1, sizeof *b);
    if (!b)
        return CPX_ERR_NOMEM;
    size_t heads_cap = 0, keys_cap = 0, ho_cap = 0, n_leaves = 0, off = 8;
    uint64_t records = 0;
    int state = 0; /* records seen so far: 0 none, 1 key, 2 range, then body */
    unsigned prefix_next = 64; /* prefix records come in descending level order */
    uint64_t prefix_seen = 0;
    int ended = 0;
    if (len < 8 || memcmp(buf, CPX_BUNDLE_MAGIC, 8) != 0)
        FAIL(CPX_ERR_DECODE, "not a cpx audit bundle (bad magic)");
    while (off < len && !ended) {
        if (len - off < REC_HDR)
            FAIL(CPX_ERR_DECODE, "record header truncated at byte %zu", off);
        uint8_t type = buf[off];
        uint32_t rlen = cpx_be32_get(buf + off + 1);
        if (rlen > MAX_REC)
            FAIL(CPX_ERR_TOO_LARGE, "record at byte %zu: length %u over the limit", off, rlen);
        if (rlen > len - off - REC_HDR)
            FAIL(CPX_ERR_DECODE, "record at byte %zu truncated", off);
        const uint8_t *p = buf + off + REC_HDR;
        off += REC_HDR + rlen;
        if ((state == 0) != (type == REC_GATEWAY_KEY) || (state == 1) != (type == REC_RANGE))
            FAIL(CPX_ERR_DECODE, "record %llu: type %u out of order",
                 (unsigned long long)records, type);
        switch (type) {
        case REC_GATEWAY_KEY:
            if (rlen != CPX_ED25519_PUB_LEN)
                FAIL(CPX_ERR_DECODE, "gateway key: length %u", rlen);
            memcpy(b->gateway_pub, p, CPX_ED25519_PUB_LEN);
            state = 1;
            break;
        case REC_RANGE:
            if (rlen != 16)
                FAIL(CPX_ERR_DECODE, "range: length %u", rlen);
            b->first = cpx_be64_get(p);
            b->end = cpx_be64_get(p + 8);
            if (b->end <= b->first)
                FAIL(CPX_ERR_DECODE, "range: empty [%llu, %llu)",
                     (unsigned long long)b->first, (unsigned long long)b->end);
            /* every leaf takes at least a record header: bound before allocating */
            if (b->end - b->first > (len - off) / REC_HDR)
                FAIL(CPX_ERR_DECODE, "range: %llu leaves cannot fit in the bundle",
                     (unsigned long long)(b->end - b->first));
            b->leaf = calloc((size_t)(b->end - b->first), sizeof *b->leaf);
            b->leaf_len = calloc((size_t)(b->end - b->first), sizeof *b->leaf_len);
            if (!b->leaf || !b->leaf_len)
                FAIL(CPX_ERR_NOMEM, "out of memory");
            state = 2;
            break;
        case REC_PREFIX: {
            if (rlen != 1 + CPX_SHA256_LEN || p[0] >= prefix_next || state != 2 ||
                !(b->first >> p[0] & 1))
                FAIL(CPX_ERR_DECODE, "prefix hash record %llu malformed or out of order",
                     (unsigned long long)records);
            prefix_next = p[0];
            prefix_seen |= UINT64_C(1) << p[0];
            memcpy(b->prefix[p[0]], p + 1, CPX_SHA256_LEN);
            break;
        }
        case REC_KEY_LEAF: {
            if (state != 2 || rlen < 9)
                FAIL(CPX_ERR_DECODE, "key leaf record %llu out of order or short",
                     (unsigned long long)records);
            size_t plen = p[8];
            if (plen > CPX_MAX_PROOF_PATH || rlen < 9 + plen * CPX_SHA256_LEN)
                FAIL(CPX_ERR_DECODE, "key leaf record %llu: bad path length",
                     (unsigned long long)records);
            if (b->n_key_leaves == CPX_BUNDLE_MAX_KEY_LEAVES)
                FAIL(CPX_ERR_TOO_LARGE, "too many key leaves");
            if (b->n_key_leaves == keys_cap) {
                size_t cap = keys_cap ? 2 * keys_cap : 16;
                void *nk = realloc(b->key_leaves, cap * sizeof *b->key_leaves);
                if (!nk)
                    FAIL(CPX_ERR_NOMEM, "out of memory");
                b->key_leaves = nk;
                keys_cap = cap;
            }
            cpx_bundle_key_leaf_t *kl = &b->key_leaves[b->n_key_leaves++];
            kl->seq = cpx_be64_get(p);
            kl->path_len = plen;
            kl->path = p + 9;
            kl->leaf = p + 9 + plen * CPX_SHA256_LEN;
            kl->len = rlen - 9 - plen * CPX_SHA256_LEN;
            if (kl->seq >= b->first || kl->len > CPX_MAX_LEAF_BYTES)
                FAIL(CPX_ERR_DECODE, "key leaf %llu outside [0, first)",
                     (unsigned long long)kl->seq);
            break;
        }
        case REC_LEAF:
            if (state != 2 || n_leaves >= b->end - b->first || rlen > CPX_MAX_LEAF_BYTES)
                FAIL(CPX_ERR_DECODE, "leaf record %llu: more leaves than the range or too long",
                     (unsigned long long)records);
            b->leaf[n_leaves] = p;
            b->leaf_len[n_leaves++] = rlen;
            break;
        case REC_HEAD: {
            if (state != 2 || rlen > MAX_HEAD_BYTES)
                FAIL(CPX_ERR_DECODE, "head record %llu malformed", (unsigned long long)records);
            if (b->n_heads == heads_cap) {
                size_t cap = heads_cap ? 2 * heads_cap : 16;
                void *nh = realloc(b->heads, cap * sizeof *b->heads);
                if (!nh)
                    FAIL(CPX_ERR_NOMEM, "out of memory");
                b->heads = nh;
                heads_cap = cap;
            }
            cpx_sth_t *h = NULL;
            if (cpx_decode_sth(p, rlen, &h) != CPX_OK)
                FAIL(CPX_ERR_DECODE, "head record %llu does not decode",
                     (unsigned long long)records);
            b->heads[b->n_heads++] = h;
            break;
        }
        case REC_HANDOVER: {
            size_t n = rlen > 8 ? p[8] : 0, m = 0, at = 9 + n * CPX_SHA256_LEN;
            if (state != 2 || rlen < 10 || n > CPX_MAX_PROOF_PATH || rlen < at + 1)
                FAIL(CPX_ERR_DECODE, "hand-over record %llu out of order or short",
                     (unsigned long long)records);
            m = p[at];
            if (m > CPX_MAX_PROOF_PATH || rlen < at + 1 + m * CPX_SHA256_LEN ||
                rlen - (at + 1 + m * CPX_SHA256_LEN) > MAX_HEAD_BYTES)
                FAIL(CPX_ERR_DECODE, "hand-over record %llu: bad path length or head",
                     (unsigned long long)records);
            if (b->n_handovers == CPX_BUNDLE_MAX_KEY_LEAVES)
                FAIL(CPX_ERR_TOO_LARGE, "too many hand-over records");
            if (b->n_handovers == ho_cap) {
                size_t cap = ho_cap ? 2 * ho_cap : 4;
                void *nh = realloc(b->handovers, cap * sizeof *b->handovers);
                if (!nh)
                    FAIL(CPX_ERR_NOMEM, "out of memory");
                b->handovers = nh;
                ho_cap = cap;
            }
            cpx_bundle_handover_t *ho = &b->handovers[b->n_handovers];
            memset(ho, 0, sizeof *ho);
            ho->seq = cpx_be64_get(p);
            ho->ipath_len = n;
            ho->ipath = p + 9;
            ho->cpath_len = m;
            ho->cpath = p + at + 1;
            size_t hoff = at + 1 + m * CPX_SHA256_LEN;
            if (cpx_decode_sth(p + hoff, rlen - hoff, &ho->head) != CPX_OK)
                FAIL(CPX_ERR_DECODE, "hand-over record %llu: head does not decode",
                     (unsigned long long)records);
            b->n_handovers++;
            if (ho->seq >= b->first || ho->head->tree_size <= ho->seq ||
                ho->head->tree_size >= b->first)
                FAIL(CPX_ERR_DECODE, "hand-over record %llu: leaf or head not before the range",
                     (unsigned long long)records);
            break;
        }
        case REC_END:
            if (rlen != 8 || cpx_be64_get(p) != records)
                FAIL(CPX_ERR_DECODE, "end record: count %llu, records seen %llu",
                     rlen == 8 ? (unsigned long long)cpx_be64_get(p) : 0ULL,
                     (unsigned long long)records);
            ended = 1;
            break;
        default:
            FAIL(CPX_ERR_DECODE, "record %llu: unknown type %u", (unsigned long long)records,
                 type);
        }
        records++;
    }
    if (!ended)
        FAIL(CPX_ERR_DECODE, "bundle truncated (no end record)");
    if (off != len)
        FAIL(CPX_ERR_DECODE, "%zu bytes after the end record", len - off);
    if (n_leaves != b->end - b->first)
        FAIL(CPX_ERR_DECODE, "bundle holds %zu leaves, range says %llu", n_leaves,
             (unsigned long long)(b->end - b->first));
    if (prefix_seen != b->first)
        FAIL(CPX_ERR_DECODE, "prefix hashes do not cover [0, %llu)",
             (unsigned long long)b->first);
    *out = b;
    return CPX_OK;
fail:
    cpx_bundle_destroy(&b);
    return rc;
}
