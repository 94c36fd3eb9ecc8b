/* envsign.c — envelope commitments, signing bytes, per-message and batch signatures,
 * verification and redaction (the normative text is docs/signing.md).
 *
 * The body is never signed as a whole: it is packed with protobuf-c, the wire is split
 * by top-level field number with a small bounds-checked walker, and each field's bytes
 * get a salted commitment. Withholding a field then only removes bytes the signature
 * never covered directly. */
#include "cpx/envsign.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/log.h"

#define MOD "envsign"

/* Domain-separation prefixes; sizeof includes the terminating 0x00 separator. */
static const char DS_FIELD[] = "cpx.v1.field";
static const char DS_ENVELOPE[] = "cpx.v1.envelope";
static const char DS_SIG_ENVELOPE[] = "cpx.v1.sig.envelope";
static const char DS_SIG_BATCH[] = "cpx.v1.sig.batch";

/* ---- test hooks (not in the public header) ------------------------------------------- */

typedef int (*salt_fn)(uint8_t *salt, size_t len, uint32_t field);
static salt_fn g_salt_fn;
static unsigned long g_ed25519_verifies;

/* Replaces the salt source (NULL restores cpx_random) so known-answer tests can fix the
 * salts. Not thread-safe; tests only. */
void cpx_envsign_set_salt_source_for_test(salt_fn fn);
void cpx_envsign_set_salt_source_for_test(salt_fn fn) { g_salt_fn = fn; }
/* Ed25519 verifications performed so far by this module (tests only, not atomic). */
unsigned long cpx_envsign_ed25519_verifies_for_test(void);
unsigned long cpx_envsign_ed25519_verifies_for_test(void) { return g_ed25519_verifies; }

/* ---- small helpers ------------------------------------------------------------------- */

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
    be32(p, (uint32_t)(v >> 32));
    be32(p + 4, (uint32_t)v);
}

static void set_reason(cpx_envsign_result_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_reason(cpx_envsign_result_t *res, const char *fmt, ...)
{
    if (!res)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

/* ---- the wire walker ------------------------------------------------------------------ */

/* Bytes of one top-level field: every record with that number, contiguous. */
typedef struct span {
    uint32_t field;
    size_t start, end;
} span_t;

/* Splits a packed message into per-field spans, in wire order. Refuses groups, field 0,
 * records running past the end, a field that reappears after another one (not the
 * canonical encoding) and more than CPX_MAX_BODY_FIELDS fields. */
static int walk(const uint8_t *b, size_t len, span_t *spans, size_t *n_out)
{
    size_t n = 0, pos = 0;
    while (pos < len) {
        size_t start = pos, payload;
        uint32_t field;
        unsigned wire;
        uint64_t v;
        if (cpx_wire_field(b, len, &pos, &field, &wire, &v, &payload) != 0)
            return CPX_ERR_DECODE;
        if (n && spans[n - 1].field == field && spans[n - 1].end == start) {
            spans[n - 1].end = pos;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (spans[i].field == field)
                return CPX_ERR_DECODE;
        if (n == CPX_MAX_BODY_FIELDS)
            return CPX_ERR_TOO_LARGE;
        spans[n++] = (span_t){(uint32_t)field, start, pos};
    }
    *n_out = n;
    return CPX_OK;
}

/* Packs the body of env into a malloc'd buffer and splits it. */
static int body_spans(const ProtobufCMessage *body, uint8_t **wire, size_t *wire_len,
                      span_t *spans, size_t *n)
{
    size_t len = protobuf_c_message_get_packed_size(body);
    if (len > CPX_MAX_ENVELOPE_BYTES)
        return CPX_ERR_TOO_LARGE;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return CPX_ERR_NOMEM;
    if (protobuf_c_message_pack(body, buf) != len) {
        free(buf);
        return CPX_ERR_DECODE;
    }
    int rc = walk(buf, len, spans, n);
    if (rc != CPX_OK) {
        free(buf);
        return rc;
    }
    *wire = buf;
    *wire_len = len;
    return CPX_OK;
}

static void commitment(const uint8_t salt[CPX_SALT_LEN], uint32_t field, const uint8_t *wire,
                       size_t len, uint8_t out[CPX_SHA256_LEN])
{
    uint8_t f[4];
    be32(f, field);
    cpx_iov_t iov[4] = {{DS_FIELD, sizeof DS_FIELD}, {salt, CPX_SALT_LEN}, {f, 4}, {wire, len}};
    cpx_sha256_v(iov, 4, out);
}

/* ---- envelope parts --------------------------------------------------------------------- */

static void free_msg(void *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

static void free_commitments(cpx_envelope_t *env)
{
    for (size_t i = 0; i < env->n_commitments; i++)
        free_msg(env->commitments[i]);
    free(env->commitments);
    env->commitments = NULL;
    env->n_commitments = 0;
}

static void free_salts(cpx_envelope_t *env)
{
    for (size_t i = 0; i < env->n_salts; i++)
        free_msg(env->salts[i]);
    free(env->salts);
    env->salts = NULL;
    env->n_salts = 0;
}

static int sort_spans(span_t *s, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        span_t t = s[i];
        size_t j = i;
        while (j && s[j - 1].field > t.field) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = t;
    }
    return 0;
}

int cpx_envsign_commit(cpx_envelope_t *env)
{
    if (!env)
        return CPX_ERR_ARG;
    const ProtobufCMessage *body = cpx_envelope_body(env);
    if (!body)
        return CPX_ERR_INVALID;
    span_t spans[CPX_MAX_BODY_FIELDS];
    size_t n = 0, wlen = 0;
    uint8_t *wire = NULL;
    int rc = body_spans(body, &wire, &wlen, spans, &n);
    if (rc != CPX_OK)
        return rc;
    sort_spans(spans, n);

    Cpx__V1__FieldCommitment **cs = calloc(n ? n : 1, sizeof *cs);
    Cpx__V1__FieldSalt **ss = calloc(n ? n : 1, sizeof *ss);
    rc = (cs && ss) ? CPX_OK : CPX_ERR_NOMEM;
    size_t made = 0;
    uint8_t salts[CPX_MAX_BODY_FIELDS * CPX_SALT_LEN];
    if (rc == CPX_OK && !g_salt_fn)
        rc = cpx_random(salts, n * CPX_SALT_LEN); /* one call: RAND_bytes has a fixed cost */
    for (; rc == CPX_OK && made < n; made++) {
        uint32_t field = spans[made].field;
        uint8_t *salt = salts + made * CPX_SALT_LEN, digest[CPX_SHA256_LEN];
        if (g_salt_fn && (rc = g_salt_fn(salt, CPX_SALT_LEN, field)) != CPX_OK)
            break;
        commitment(salt, field, wire + spans[made].start, spans[made].end - spans[made].start,
                   digest);
        cs[made] = malloc(sizeof **cs);
        ss[made] = malloc(sizeof **ss);
        if (cs[made]) {
            cpx__v1__field_commitment__init(cs[made]);
            cs[made]->field = field;
            cs[made]->digest.data = dup_bytes(digest, sizeof digest);
            cs[made]->digest.len = cs[made]->digest.data ? sizeof digest : 0;
        }
        if (ss[made]) {
            cpx__v1__field_salt__init(ss[made]);
            ss[made]->field = field;
            ss[made]->salt.data = dup_bytes(salt, CPX_SALT_LEN);
            ss[made]->salt.len = ss[made]->salt.data ? CPX_SALT_LEN : 0;
        }
        if (!cs[made] || !ss[made] || !cs[made]->digest.data || !ss[made]->salt.data)
            rc = CPX_ERR_NOMEM;
    }
    free(wire);
    cpx_cleanse(salts, sizeof salts);
    if (rc != CPX_OK) {
        for (size_t i = 0; i <= made && i < n && cs && ss; i++) {
            free_msg(cs[i]);
            free_msg(ss[i]);
        }
        free(cs);
        free(ss);
        return rc;
    }
    free_commitments(env);
    free_salts(env);
    env->commitments = cs;
    env->n_commitments = n;
    env->salts = ss;
    env->n_salts = n;
    env->body_kind = (Cpx__V1__BodyKind)env->body_case;
    return CPX_OK;
}

/* ---- signing bytes ------------------------------------------------------------------------ */

typedef struct wbuf {
    uint8_t *p;
    size_t off;
} wbuf_t;

static void put(wbuf_t *w, const void *d, size_t n)
{
    if (n)
        memcpy(w->p + w->off, d, n);
    w->off += n;
}

static void put32(wbuf_t *w, uint32_t v)
{
    be32(w->p + w->off, v);
    w->off += 4;
}

static void put_lp(wbuf_t *w, const void *d, size_t n)
{
    put32(w, (uint32_t)n);
    put(w, d, n);
}

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

int cpx_envsign_signing_bytes(const cpx_envelope_t *env, uint8_t **out, size_t *len)
{
    if (!env || !out || !len)
        return CPX_ERR_ARG;
    if (env->n_recipients > CPX_MAX_RECIPIENTS || env->n_commitments > CPX_MAX_BODY_FIELDS)
        return CPX_ERR_TOO_LARGE;
    const ProtobufCBinaryData *key_id = env->signature ? &env->signature->key_id : NULL;
    /* Every variable part is bounded by the envelope limit, so the sum cannot overflow. */
    size_t var = env->message_id.len + slen(env->sender) + slen(env->case_id) +
                 env->in_reply_to.len + (key_id ? key_id->len : 0);
    for (size_t i = 0; i < env->n_recipients; i++) {
        size_t r = slen(env->recipients[i]);
        if (r > CPX_MAX_ENVELOPE_BYTES)
            return CPX_ERR_TOO_LARGE;
        var += r;
    }
    if (var > CPX_MAX_ENVELOPE_BYTES)
        return CPX_ERR_TOO_LARGE;
    for (size_t i = 0; i < env->n_commitments; i++)
        if (!env->commitments[i] || env->commitments[i]->digest.len != CPX_SHA256_LEN)
            return CPX_ERR_INVALID;
    size_t total = sizeof DS_ENVELOPE + 4 * 5 /* lp headers */ + 4 + 4 * env->n_recipients +
                   8 + 4 + 4 + 4 + 4 + env->n_commitments * (4 + CPX_SHA256_LEN) + var;
    wbuf_t w = {malloc(total), 0};
    if (!w.p)
        return CPX_ERR_NOMEM;
    put(&w, DS_ENVELOPE, sizeof DS_ENVELOPE);
    put_lp(&w, env->message_id.data, env->message_id.len);
    put_lp(&w, env->sender, slen(env->sender));
    put32(&w, (uint32_t)env->n_recipients);
    for (size_t i = 0; i < env->n_recipients; i++)
        put_lp(&w, env->recipients[i], slen(env->recipients[i]));
    put_lp(&w, env->case_id, slen(env->case_id));
    be64(w.p + w.off, (uint64_t)env->created_ms);
    w.off += 8;
    put32(&w, (uint32_t)env->priority);
    put_lp(&w, env->in_reply_to.data, env->in_reply_to.len);
    put32(&w, (uint32_t)env->sensitivity);
    put32(&w, (uint32_t)env->body_kind);
    put32(&w, (uint32_t)env->n_commitments);
    for (size_t i = 0; i < env->n_commitments; i++) {
        put32(&w, env->commitments[i]->field);
        put(&w, env->commitments[i]->digest.data, CPX_SHA256_LEN);
    }
    put_lp(&w, key_id ? key_id->data : NULL, key_id ? key_id->len : 0);
    if (w.off != total) { /* a miscount here is a bug in this file */
        free(w.p);
        return CPX_ERR_ARG;
    }
    *out = w.p;
    *len = total;
    return CPX_OK;
}

int cpx_envsign_digest(const cpx_envelope_t *env, uint8_t out[CPX_SHA256_LEN])
{
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = cpx_envsign_signing_bytes(env, &b, &n);
    if (rc != CPX_OK)
        return rc;
    cpx_sha256(b, n, out);
    free(b);
    return CPX_OK;
}

/* ---- signing ------------------------------------------------------------------------------ */

static void envelope_sig_msg(const uint8_t digest[CPX_SHA256_LEN],
                             uint8_t m[sizeof DS_SIG_ENVELOPE + CPX_SHA256_LEN])
{
    memcpy(m, DS_SIG_ENVELOPE, sizeof DS_SIG_ENVELOPE);
    memcpy(m + sizeof DS_SIG_ENVELOPE, digest, CPX_SHA256_LEN);
}

static void batch_sig_msg(uint64_t size, const cpx_hash_t root,
                          uint8_t m[sizeof DS_SIG_BATCH + 8 + CPX_SHA256_LEN])
{
    memcpy(m, DS_SIG_BATCH, sizeof DS_SIG_BATCH);
    be64(m + sizeof DS_SIG_BATCH, size);
    memcpy(m + sizeof DS_SIG_BATCH + 8, root, CPX_SHA256_LEN);
}

/* A fresh Signature carrying only the key id. */
static Cpx__V1__Signature *new_signature(const cpx_key_t *key)
{
    Cpx__V1__Signature *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    cpx__v1__signature__init(s);
    uint8_t id[CPX_KEY_ID_LEN];
    cpx_key_id(key, id);
    s->key_id.data = dup_bytes(id, sizeof id);
    if (!s->key_id.data) {
        free(s);
        return NULL;
    }
    s->key_id.len = sizeof id;
    return s;
}

static void set_signature(cpx_envelope_t *env, Cpx__V1__Signature *s)
{
    free_msg(env->signature);
    env->signature = s;
}

int cpx_envsign_sign(cpx_envelope_t *env, const cpx_key_t *key)
{
    if (!env || !cpx_key_has_private(key))
        return CPX_ERR_ARG;
    int rc = cpx_envsign_commit(env);
    if (rc != CPX_OK)
        return rc;
    Cpx__V1__Signature *s = new_signature(key);
    if (!s)
        return CPX_ERR_NOMEM;
    set_signature(env, s);
    uint8_t digest[CPX_SHA256_LEN], m[sizeof DS_SIG_ENVELOPE + CPX_SHA256_LEN];
    uint8_t sig[CPX_ED25519_SIG_LEN];
    rc = cpx_envsign_digest(env, digest);
    if (rc != CPX_OK)
        return rc;
    envelope_sig_msg(digest, m);
    rc = cpx_key_sign(key, m, sizeof m, sig);
    if (rc != CPX_OK)
        return rc;
    s->ed25519.data = dup_bytes(sig, sizeof sig);
    if (!s->ed25519.data)
        return CPX_ERR_NOMEM;
    s->ed25519.len = sizeof sig;
    return CPX_OK;
}

static Cpx__V1__BatchProof *new_proof(uint64_t index, uint64_t size, const cpx_hash_t *path,
                                      size_t plen, const uint8_t sig[CPX_ED25519_SIG_LEN])
{
    Cpx__V1__BatchProof *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    cpx__v1__batch_proof__init(p);
    p->index = index;
    p->size = size;
    p->root_signature.data = dup_bytes(sig, CPX_ED25519_SIG_LEN);
    p->root_signature.len = p->root_signature.data ? CPX_ED25519_SIG_LEN : 0;
    p->path = calloc(plen ? plen : 1, sizeof *p->path);
    int ok = p->root_signature.data && p->path;
    for (size_t i = 0; ok && i < plen; i++) {
        p->path[i].data = dup_bytes(path[i], CPX_SHA256_LEN);
        ok = p->path[i].data != NULL;
        if (ok) {
            p->path[i].len = CPX_SHA256_LEN;
            p->n_path = i + 1;
        }
    }
    if (!ok) {
        free_msg(p);
        return NULL;
    }
    return p;
}

/* All levels of the RFC 9162 tree over n leaf hashes, bottom-up: a level's odd last
 * node is carried up unchanged, which yields exactly MTH (the left subtree of every node
 * is the largest perfect one). Lets a batch of n get all n paths in O(n log n) hashes
 * instead of O(n) per path. levels[0] = leaves; returns the number of levels. */
static size_t build_levels(cpx_hash_t *leaves, size_t n, cpx_hash_t **levels, size_t *sizes)
{
    size_t l = 0;
    levels[0] = leaves;
    sizes[0] = n;
    while (sizes[l] > 1) {
        size_t m = sizes[l], up = (m + 1) / 2;
        cpx_hash_t *next = levels[l] + m; /* levels are laid out one after another */
        for (size_t i = 0; i < m / 2; i++)
            cpx_merkle_node_hash(levels[l][2 * i], levels[l][2 * i + 1], next[i]);
        if (m & 1)
            memcpy(next[up - 1], levels[l][m - 1], CPX_SHA256_LEN);
        levels[l + 1] = next;
        sizes[l + 1] = up;
        l++;
    }
    return l + 1;
}

static size_t level_path(cpx_hash_t *const *levels, const size_t *sizes, size_t nlev,
                         size_t index, cpx_hash_t *path)
{
    size_t k = 0;
    for (size_t l = 0; l + 1 < nlev; l++, index >>= 1) {
        size_t sib = index ^ 1;
        if (sib < sizes[l])
            memcpy(path[k++], levels[l][sib], CPX_SHA256_LEN);
    }
    return k;
}

int cpx_envsign_sign_batch(cpx_envelope_t *const *envs, size_t n, const cpx_key_t *key)
{
    if (!envs || n == 0 || n > CPX_MAX_BATCH_ENVELOPES || !cpx_key_has_private(key))
        return CPX_ERR_ARG;
    /* Room for every level: n + n/2 + ... < 2n + log2(n) nodes. */
    cpx_hash_t *tree = malloc((2 * n + CPX_MAX_BATCH_PATH + 1) * sizeof *tree);
    if (!tree)
        return CPX_ERR_NOMEM;
    int rc = CPX_OK;
    for (size_t i = 0; i < n && rc == CPX_OK; i++) {
        if (!envs[i]) {
            rc = CPX_ERR_ARG;
            break;
        }
        rc = cpx_envsign_commit(envs[i]);
        Cpx__V1__Signature *s = rc == CPX_OK ? new_signature(key) : NULL;
        if (rc == CPX_OK && !s)
            rc = CPX_ERR_NOMEM;
        if (rc != CPX_OK)
            break;
        set_signature(envs[i], s);
        uint8_t digest[CPX_SHA256_LEN];
        rc = cpx_envsign_digest(envs[i], digest);
        if (rc == CPX_OK)
            cpx_merkle_leaf_hash(digest, sizeof digest, tree[i]);
    }
    cpx_hash_t *levels[CPX_MAX_BATCH_PATH + 2];
    size_t sizes[CPX_MAX_BATCH_PATH + 2], nlev = 0;
    uint8_t m[sizeof DS_SIG_BATCH + 8 + CPX_SHA256_LEN], sig[CPX_ED25519_SIG_LEN];
    if (rc == CPX_OK) {
        nlev = build_levels(tree, n, levels, sizes);
        batch_sig_msg(n, levels[nlev - 1][0], m);
        rc = cpx_key_sign(key, m, sizeof m, sig);
    }
    for (size_t i = 0; i < n && rc == CPX_OK; i++) {
        cpx_hash_t path[CPX_MAX_BATCH_PATH];
        size_t plen = level_path(levels, sizes, nlev, i, path);
        Cpx__V1__BatchProof *p = new_proof(i, n, path, plen, sig);
        if (!p)
            rc = CPX_ERR_NOMEM;
        else
            envs[i]->signature->batch = p;
    }
    free(tree);
    return rc;
}

/* ---- verification -------------------------------------------------------------------------- */

int cpx_envsign_verify_digest(const cpx_key_t *pub, const uint8_t digest[CPX_SHA256_LEN],
                              const uint8_t *sig, size_t sig_len)
{
    if (!pub || !digest)
        return CPX_ERR_ARG;
    uint8_t m[sizeof DS_SIG_ENVELOPE + CPX_SHA256_LEN];
    envelope_sig_msg(digest, m);
    g_ed25519_verifies++;
    return cpx_key_verify(pub, m, sizeof m, sig, sig_len);
}

/* RFC 9162 §2.1.3.2: the root a path leads to from leaf_hash at index in a tree of size
 * n. CPX_ERR_PROOF when the path length does not fit index and n. */
static int root_from_path(const cpx_hash_t leaf_hash, uint64_t index, uint64_t n,
                          const cpx_hash_t *path, size_t path_len, cpx_hash_t root)
{
    if (index >= n || (!path && path_len))
        return CPX_ERR_PROOF;
    uint64_t fn = index, sn = n - 1;
    cpx_hash_t r;
    memcpy(r, leaf_hash, CPX_SHA256_LEN);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0)
            return CPX_ERR_PROOF;
        if ((fn & 1) || fn == sn) {
            cpx_merkle_node_hash(path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            cpx_merkle_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return CPX_ERR_PROOF;
    memcpy(root, r, CPX_SHA256_LEN);
    return CPX_OK;
}

static int verify_root_sig(const cpx_key_t *pub, uint64_t size, const cpx_hash_t root,
                           const uint8_t *sig, size_t sig_len)
{
    uint8_t m[sizeof DS_SIG_BATCH + 8 + CPX_SHA256_LEN];
    batch_sig_msg(size, root, m);
    g_ed25519_verifies++;
    return cpx_key_verify(pub, m, sizeof m, sig, sig_len);
}

int cpx_envsign_verify_batch_digest(const cpx_key_t *pub, const uint8_t digest[CPX_SHA256_LEN],
                                    uint64_t index, uint64_t size, const cpx_hash_t *path,
                                    size_t path_len, const uint8_t *root_sig, size_t sig_len,
                                    cpx_hash_t root_out)
{
    if (!pub || !digest)
        return CPX_ERR_ARG;
    if (size == 0 || size > CPX_MAX_BATCH_ENVELOPES || path_len > CPX_MAX_BATCH_PATH)
        return CPX_ERR_PROOF;
    cpx_hash_t leaf, root;
    cpx_merkle_leaf_hash(digest, CPX_SHA256_LEN, leaf);
    int rc = root_from_path(leaf, index, size, path, path_len, root);
    if (rc != CPX_OK)
        return rc;
    if (root_out)
        memcpy(root_out, root, CPX_SHA256_LEN);
    return verify_root_sig(pub, size, root, root_sig, sig_len);
}

static const Cpx__V1__FieldCommitment *find_commitment(const cpx_envelope_t *env,
                                                       uint32_t field)
{
    for (size_t i = 0; i < env->n_commitments; i++)
        if (env->commitments[i]->field == field)
            return env->commitments[i];
    return NULL;
}

static const Cpx__V1__FieldSalt *find_salt(const cpx_envelope_t *env, uint32_t field)
{
    for (size_t i = 0; i < env->n_salts; i++)
        if (env->salts[i]->field == field)
            return env->salts[i];
    return NULL;
}

/* Checks the shape of commitments and salts, and every present body field against its
 * commitment; fills res->withheld. */
static int check_body(const cpx_envelope_t *env, cpx_envsign_result_t *res)
{
    if (env->n_commitments > CPX_MAX_BODY_FIELDS || env->n_salts > env->n_commitments) {
        set_reason(res, "signature.commitments: too many commitments or salts");
        return CPX_ERR_INVALID;
    }
    for (size_t i = 0; i < env->n_commitments; i++) {
        const Cpx__V1__FieldCommitment *c = env->commitments[i];
        if (!c || c->field == 0 || c->digest.len != CPX_SHA256_LEN) {
            set_reason(res, "commitments[%zu]: malformed (field 0 or digest not 32 bytes)", i);
            return CPX_ERR_INVALID;
        }
        if (i && env->commitments[i - 1]->field >= c->field) {
            set_reason(res, "commitments[%zu]: not strictly ascending by field", i);
            return CPX_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < env->n_salts; i++) {
        const Cpx__V1__FieldSalt *s = env->salts[i];
        if (!s || s->salt.len != CPX_SALT_LEN) {
            set_reason(res, "salts[%zu]: malformed (salt not %d bytes)", i, CPX_SALT_LEN);
            return CPX_ERR_INVALID;
        }
        for (size_t j = 0; j < i; j++)
            if (env->salts[j]->field == s->field) {
                set_reason(res, "salts[%zu]: duplicate salt for field %u", i, s->field);
                return CPX_ERR_INVALID;
            }
        if (!find_commitment(env, s->field)) {
            set_reason(res, "salts[%zu]: salt for field %u, which has no commitment", i,
                       s->field);
            return CPX_ERR_INVALID;
        }
    }

    const ProtobufCMessage *body = cpx_envelope_body(env);
    span_t spans[CPX_MAX_BODY_FIELDS];
    size_t n = 0, wlen = 0;
    uint8_t *wire = NULL;
    if (body) {
        if ((int)env->body_case != (int)env->body_kind) {
            /* body_kind is signed: a body of another kind is not the one signed. */
            set_reason(res, "body_kind: %d does not match the body present (%s)",
                       (int)env->body_kind, cpx_body_kind_name((int)env->body_case));
            return CPX_ERR_BAD_SIGNATURE;
        }
        int rc = body_spans(body, &wire, &wlen, spans, &n);
        if (rc != CPX_OK) {
            set_reason(res, "body: cannot split into fields (%s)", cpx_strerror(rc));
            return rc == CPX_ERR_NOMEM ? rc : CPX_ERR_INVALID;
        }
    }
    int rc = CPX_OK;
    for (size_t i = 0; i < n && rc == CPX_OK; i++) {
        uint32_t f = spans[i].field;
        const Cpx__V1__FieldCommitment *c = find_commitment(env, f);
        const Cpx__V1__FieldSalt *s = find_salt(env, f);
        if (!c) {
            set_reason(res, "%s field %u: present but not committed",
                       cpx_body_kind_name((int)env->body_case), f);
            rc = CPX_ERR_INVALID;
        } else if (!s) {
            set_reason(res, "%s field %u: present without its salt",
                       cpx_body_kind_name((int)env->body_case), f);
            rc = CPX_ERR_INVALID;
        } else {
            uint8_t d[CPX_SHA256_LEN];
            commitment(s->salt.data, f, wire + spans[i].start, spans[i].end - spans[i].start, d);
            if (!cpx_ct_equal(d, c->digest.data, CPX_SHA256_LEN)) {
                set_reason(res, "%s field %u: does not match its commitment",
                           cpx_body_kind_name((int)env->body_case), f);
                rc = CPX_ERR_BAD_SIGNATURE;
            }
        }
    }
    /* A salt whose field is gone means the view was cut without following the rules. */
    for (size_t i = 0; i < env->n_salts && rc == CPX_OK; i++) {
        size_t j = 0;
        while (j < n && spans[j].field != env->salts[i]->field)
            j++;
        if (j == n) {
            set_reason(res, "salts[%zu]: salt for field %u, which is absent", i,
                       env->salts[i]->field);
            rc = CPX_ERR_INVALID;
        }
    }
    free(wire);
    if (rc != CPX_OK)
        return rc;
    res->n_withheld = 0;
    for (size_t i = 0; i < env->n_commitments; i++) {
        size_t j = 0;
        while (j < n && spans[j].field != env->commitments[i]->field)
            j++;
        if (j == n)
            res->withheld[res->n_withheld++] = env->commitments[i]->field;
    }
    return CPX_OK;
}

/* Everything but the Ed25519 check: signature shape, key id (id, the id of the
 * verifying key), body, digest. */
static int prepare(const cpx_envelope_t *env, const uint8_t id[CPX_KEY_ID_LEN],
                   cpx_envsign_result_t *res)
{
    const Cpx__V1__Signature *sig = env->signature;
    if (!sig) {
        set_reason(res, "signature: missing");
        return CPX_ERR_INVALID;
    }
    if (sig->batch && sig->ed25519.len) {
        set_reason(res, "signature: both ed25519 and batch set");
        return CPX_ERR_INVALID;
    }
    if (!sig->batch && sig->ed25519.len != CPX_ED25519_SIG_LEN) {
        set_reason(res, "signature.ed25519: %zu bytes, expected 64", sig->ed25519.len);
        return CPX_ERR_BAD_SIGNATURE;
    }
    if (sig->key_id.len != CPX_KEY_ID_LEN || !cpx_ct_equal(sig->key_id.data, id, CPX_KEY_ID_LEN)) {
        set_reason(res, "signature.key_id: not the sender's enrolled signing key");
        return CPX_ERR_BAD_SIGNATURE;
    }
    int rc = check_body(env, res);
    if (rc != CPX_OK)
        return rc;
    rc = cpx_envsign_digest(env, res->digest);
    if (rc != CPX_OK) {
        set_reason(res, "envelope: cannot form signing bytes (%s)", cpx_strerror(rc));
        return rc == CPX_ERR_NOMEM ? rc : CPX_ERR_INVALID;
    }
    if (sig->batch) {
        const Cpx__V1__BatchProof *p = sig->batch;
        if (p->n_path > CPX_MAX_BATCH_PATH) {
            set_reason(res, "signature.batch.path: longer than %u", CPX_MAX_BATCH_PATH);
            return CPX_ERR_INVALID;
        }
        for (size_t i = 0; i < p->n_path; i++)
            if (p->path[i].len != CPX_SHA256_LEN) {
                set_reason(res, "signature.batch.path[%zu]: not 32 bytes", i);
                return CPX_ERR_INVALID;
            }
        res->batch = 1;
    }
    return CPX_OK;
}

/* Recomputes the batch root of a prepared batch-signed envelope. */
static int batch_root(const cpx_envelope_t *env, cpx_envsign_result_t *res)
{
    const Cpx__V1__BatchProof *p = env->signature->batch;
    cpx_hash_t path[CPX_MAX_BATCH_PATH], leaf;
    for (size_t i = 0; i < p->n_path; i++)
        memcpy(path[i], p->path[i].data, CPX_SHA256_LEN);
    cpx_merkle_leaf_hash(res->digest, CPX_SHA256_LEN, leaf);
    if (p->size == 0 || p->size > CPX_MAX_BATCH_ENVELOPES ||
        root_from_path(leaf, p->index, p->size, path, p->n_path, res->batch_root) != CPX_OK) {
        set_reason(res, "signature.batch: path of %zu hashes does not fit index %llu of %llu",
                   p->n_path, (unsigned long long)p->index, (unsigned long long)p->size);
        return CPX_ERR_BAD_SIGNATURE;
    }
    return CPX_OK;
}

int cpx_envsign_verify(const cpx_envelope_t *env, const cpx_key_t *pub,
                       cpx_envsign_result_t *res)
{
    cpx_envsign_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!env || !pub) {
        set_reason(res, "no envelope or key");
        return CPX_ERR_ARG;
    }
    uint8_t id[CPX_KEY_ID_LEN];
    cpx_key_id(pub, id);
    int rc = prepare(env, id, res);
    if (rc != CPX_OK)
        return rc;
    const Cpx__V1__Signature *sig = env->signature;
    if (!sig->batch) {
        rc = cpx_envsign_verify_digest(pub, res->digest, sig->ed25519.data, sig->ed25519.len);
        if (rc != CPX_OK)
            set_reason(res, "signature.ed25519: does not verify");
        return rc;
    }
    rc = batch_root(env, res);
    if (rc != CPX_OK)
        return rc;
    const Cpx__V1__BatchProof *p = sig->batch;
    rc = verify_root_sig(pub, p->size, res->batch_root, p->root_signature.data,
                         p->root_signature.len);
    if (rc != CPX_OK)
        set_reason(res, "signature.batch: root signature does not verify (path, index, size "
                        "or envelope altered)");
    return rc;
}

/* One verified (or refused) batch root signature. */
typedef struct root_seen {
    uint64_t size;
    cpx_hash_t root;
    const uint8_t *sig;
    size_t sig_len;
    int rc;
} root_seen_t;

#define ROOTS_CACHED 16

/* The usual case: the n envelopes are one whole signed batch (every proof of size n,
 * each index once, one root signature). Then the tree is built once from all leaves
 * (n - 1 node hashes) and each envelope's path is compared with its path in that tree,
 * instead of hashing every path up to the root (log2(n) hashes per envelope). A path
 * equal to the tree's leads to the tree's root, so the outcome is the same; an envelope
 * whose path differs is left to batch_root (done[i] = 0). */
static void whole_batch_roots(cpx_envelope_t *const *envs, size_t n,
                              cpx_envsign_result_t *results, const int *prep, uint8_t *done)
{
    const Cpx__V1__BatchProof *p0 = NULL;
    uint8_t taken[(CPX_MAX_BATCH_ENVELOPES + 7) / 8] = {0};
    for (size_t i = 0; i < n; i++) {
        const Cpx__V1__BatchProof *p = prep[i] == CPX_OK ? envs[i]->signature->batch : NULL;
        if (!p || p->size != n || p->index >= n || (taken[p->index / 8] & (1u << (p->index % 8))))
            return;
        if (!p0)
            p0 = p;
        else if (p->root_signature.len != p0->root_signature.len ||
                 memcmp(p->root_signature.data, p0->root_signature.data, p0->root_signature.len))
            return;
        taken[p->index / 8] |= (uint8_t)(1u << (p->index % 8));
    }
    cpx_hash_t *tree = malloc((2 * n + CPX_MAX_BATCH_PATH + 1) * sizeof *tree);
    if (!tree)
        return;
    for (size_t i = 0; i < n; i++)
        cpx_merkle_leaf_hash(results[i].digest, CPX_SHA256_LEN, tree[envs[i]->signature->batch->index]);
    cpx_hash_t *levels[CPX_MAX_BATCH_PATH + 2];
    size_t sizes[CPX_MAX_BATCH_PATH + 2];
    size_t nlev = build_levels(tree, n, levels, sizes);
    for (size_t i = 0; i < n; i++) {
        const Cpx__V1__BatchProof *p = envs[i]->signature->batch;
        cpx_hash_t path[CPX_MAX_BATCH_PATH];
        size_t plen = level_path(levels, sizes, nlev, (size_t)p->index, path);
        int same = plen == p->n_path;
        for (size_t k = 0; same && k < plen; k++)
            same = !memcmp(path[k], p->path[k].data, CPX_SHA256_LEN);
        if (same) {
            memcpy(results[i].batch_root, levels[nlev - 1][0], CPX_SHA256_LEN);
            done[i] = 1;
        }
    }
    free(tree);
}

int cpx_envsign_verify_batch(cpx_envelope_t *const *envs, size_t n, const cpx_key_t *pub,
                             cpx_envsign_result_t *results, int *rcs)
{
    if (!envs || !pub || !results || !rcs || n > CPX_MAX_BATCH_ENVELOPES)
        return CPX_ERR_ARG;
    uint8_t id[CPX_KEY_ID_LEN];
    cpx_key_id(pub, id);
    /* First every envelope's own checks and digest, then the batch roots. */
    uint8_t done[CPX_MAX_BATCH_ENVELOPES] = {0};
    for (size_t i = 0; i < n; i++) {
        const cpx_envelope_t *env = envs[i];
        memset(&results[i], 0, sizeof results[i]);
        if (!env || env->signature == NULL || env->signature->batch == NULL) {
            rcs[i] = env ? cpx_envsign_verify(env, pub, &results[i]) : CPX_ERR_ARG;
            done[i] = 1;  /* not a batch member: settled */
        } else {
            rcs[i] = prepare(env, id, &results[i]);
        }
    }
    int prep_ok = 1;
    for (size_t i = 0; i < n && prep_ok; i++)
        prep_ok = !done[i] && rcs[i] == CPX_OK;
    uint8_t fast[CPX_MAX_BATCH_ENVELOPES] = {0};
    if (prep_ok && n)
        whole_batch_roots(envs, n, results, rcs, fast);
    root_seen_t seen[ROOTS_CACHED];
    size_t n_seen = 0;
    int first = CPX_OK;
    for (size_t i = 0; i < n; i++) {
        cpx_envsign_result_t *res = &results[i];
        const cpx_envelope_t *env = envs[i];
        if (!done[i]) {
            int rc = rcs[i];
            if (rc == CPX_OK && !fast[i])
                rc = batch_root(env, res);
            if (rc == CPX_OK) {
                const Cpx__V1__BatchProof *p = env->signature->batch;
                size_t k = 0;
                /* Keyed by root and signature bytes: a forged member can only poison
                 * the entry for its own (wrong) root. */
                while (k < n_seen &&
                       !(seen[k].size == p->size && seen[k].sig_len == p->root_signature.len &&
                         !memcmp(seen[k].root, res->batch_root, CPX_SHA256_LEN) &&
                         !memcmp(seen[k].sig, p->root_signature.data, seen[k].sig_len)))
                    k++;
                if (k < n_seen) {
                    rc = seen[k].rc;
                } else {
                    rc = verify_root_sig(pub, p->size, res->batch_root, p->root_signature.data,
                                         p->root_signature.len);
                    if (n_seen < ROOTS_CACHED) {
                        root_seen_t *e = &seen[n_seen++];
                        e->size = p->size;
                        memcpy(e->root, res->batch_root, CPX_SHA256_LEN);
                        e->sig = p->root_signature.data;
                        e->sig_len = p->root_signature.len;
                        e->rc = rc;
                    }
                }
                if (rc != CPX_OK)
                    set_reason(res, "signature.batch: root signature does not verify (path, "
                                    "index, size or envelope altered)");
            }
            rcs[i] = rc;
        }
        if (rcs[i] != CPX_OK && first == CPX_OK)
            first = rcs[i];
    }
    return first;
}

/* ---- redaction ------------------------------------------------------------------------------ */

static int listed(uint32_t f, const uint32_t *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fields[i] == f)
            return 1;
    return 0;
}

int cpx_envsign_redact(cpx_envelope_t *env, const uint32_t *fields, size_t n)
{
    if (!env || (!fields && n))
        return CPX_ERR_ARG;
    const ProtobufCMessage *body = cpx_envelope_body(env);
    if (!body)
        return CPX_ERR_INVALID;
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &cpx__v1__envelope__descriptor, (unsigned)env->body_case);
    if (!fd)
        return CPX_ERR_INVALID;
    span_t spans[CPX_MAX_BODY_FIELDS];
    size_t ns = 0, wlen = 0;
    uint8_t *wire = NULL;
    int rc = body_spans(body, &wire, &wlen, spans, &ns);
    if (rc != CPX_OK)
        return rc;
    /* Re-encode the body without the withheld fields' records and decode it again:
     * generic over every body type, and exactly what a recipient will see. */
    size_t keep = 0;
    for (size_t i = 0; i < ns; i++)
        if (!listed(spans[i].field, fields, n)) {
            memmove(wire + keep, wire + spans[i].start, spans[i].end - spans[i].start);
            keep += spans[i].end - spans[i].start;
        }
    ProtobufCMessage *nb = protobuf_c_message_unpack(body->descriptor, NULL, keep, wire);
    free(wire);
    if (!nb)
        return CPX_ERR_NOMEM;
    ProtobufCMessage **slot = (ProtobufCMessage **)((char *)env + fd->offset);
    free_msg(*slot);
    *slot = nb;

    size_t kept = 0;
    for (size_t i = 0; i < env->n_salts; i++) {
        if (listed(env->salts[i]->field, fields, n))
            free_msg(env->salts[i]);
        else
            env->salts[kept++] = env->salts[i];
    }
    env->n_salts = kept;
    return CPX_OK;
}
