/* merkle.c — RFC 9162 §2.1 tree hashing, inclusion and consistency proofs.
 *
 * The proof generators follow the RFC's recursive definitions literally, over
 * ranges [start, end) whose start is always aligned to a power of two at least as
 * large as the range: every perfect piece of such a range is one node-source call,
 * so a proof costs O(log n) calls (only one sibling on the path can be imperfect). */
#include "cpx/merkle.h"

#include <string.h>

#include "cpx/err.h"

/* ---- hashing ------------------------------------------------------------------------ */

void cpx_merkle_leaf_hash(const void *leaf, size_t len, cpx_hash_t out)
{
    static const uint8_t zero = 0x00;
    cpx_iov_t iov[2] = {{&zero, 1}, {leaf, len}};
    cpx_sha256_v(iov, 2, out);
}

void cpx_merkle_node_hash(const cpx_hash_t left, const cpx_hash_t right, cpx_hash_t out)
{
    /* one contiguous buffer: a single 65-byte update is cheaper than three */
    uint8_t buf[1 + 2 * CPX_SHA256_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, left, CPX_SHA256_LEN);
    memcpy(buf + 1 + CPX_SHA256_LEN, right, CPX_SHA256_LEN);
    cpx_sha256(buf, sizeof buf, out);
}

static void empty_root(cpx_hash_t out)
{
    cpx_sha256("", 0, out);
}

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while ((k << 1) < n)
        k <<= 1;
    return k;
}

static int is_pow2(uint64_t n)
{
    return n && !(n & (n - 1));
}

static unsigned log2_exact(uint64_t n)
{
    unsigned l = 0;
    while ((UINT64_C(1) << l) < n)
        l++;
    return l;
}

/* ---- over an array of leaf hashes --------------------------------------------------- */

static void array_root(const cpx_hash_t *leaves, size_t n, cpx_hash_t out)
{
    if (n == 1) {
        memcpy(out, leaves[0], CPX_SHA256_LEN);
        return;
    }
    size_t k = (size_t)split_point(n);
    cpx_hash_t l, r;
    array_root(leaves, k, l);
    array_root(leaves + k, n - k, r);
    cpx_merkle_node_hash(l, r, out);
}

void cpx_merkle_root(const cpx_hash_t *leaves, size_t n, cpx_hash_t out)
{
    if (n == 0)
        empty_root(out);
    else
        array_root(leaves, n, out);
}

int cpx_merkle_path(const cpx_hash_t *leaves, size_t n, size_t index, cpx_hash_t *path,
                    size_t max, size_t *path_len)
{
    if (!path_len || index >= n || (!leaves && n))
        return CPX_ERR_ARG;
    *path_len = 0;
    /* Walk down from the root; siblings come out root-first, the RFC wants them
     * leaf-first, so fill from the back of a scratch array and copy. */
    cpx_hash_t tmp[CPX_MAX_PROOF_PATH];
    size_t depth = 0;
    size_t lo = 0, len = n, m = index;
    while (len > 1) {
        if (depth == CPX_MAX_PROOF_PATH)
            return CPX_ERR_ARG;
        size_t k = (size_t)split_point(len);
        if (m < k) {
            array_root(leaves + lo + k, len - k, tmp[depth++]);
            len = k;
        } else {
            array_root(leaves + lo, k, tmp[depth++]);
            lo += k;
            m -= k;
            len -= k;
        }
    }
    if (depth > max || (!path && depth))
        return CPX_ERR_ARG;
    for (size_t i = 0; i < depth; i++)
        memcpy(path[i], tmp[depth - 1 - i], CPX_SHA256_LEN);
    *path_len = depth;
    return CPX_OK;
}

/* ---- over a node source ----------------------------------------------------------------- */

static int range_root(cpx_merkle_get_fn get, void *ctx, uint64_t start, uint64_t end,
                      cpx_hash_t out)
{
    uint64_t len = end - start;
    if (len == 0) {
        empty_root(out);
        return CPX_OK;
    }
    if (is_pow2(len) && start % len == 0) {
        unsigned level = log2_exact(len);
        return get(ctx, level, start >> level, out);
    }
    uint64_t k = split_point(len);
    cpx_hash_t l, r;
    int rc = range_root(get, ctx, start, start + k, l);
    if (rc == CPX_OK)
        rc = range_root(get, ctx, start + k, end, r);
    if (rc == CPX_OK)
        cpx_merkle_node_hash(l, r, out);
    return rc;
}

int cpx_merkle_range_root(cpx_merkle_get_fn get, void *ctx, uint64_t start, uint64_t end,
                          cpx_hash_t out)
{
    if (!get || end < start)
        return CPX_ERR_ARG;
    return range_root(get, ctx, start, end, out);
}

/* Reverses the root-first siblings in tmp[0..depth) into path (leaf-first). */
static int emit(cpx_hash_t tmp[], size_t depth, cpx_hash_t *path, size_t max,
                size_t *path_len)
{
    if (depth > max || (!path && depth))
        return CPX_ERR_ARG;
    for (size_t i = 0; i < depth; i++)
        memcpy(path[i], tmp[depth - 1 - i], CPX_SHA256_LEN);
    *path_len = depth;
    return CPX_OK;
}

int cpx_merkle_prove_inclusion(cpx_merkle_get_fn get, void *ctx, uint64_t index, uint64_t n,
                               cpx_hash_t *path, size_t max, size_t *path_len)
{
    if (!get || !path_len || index >= n)
        return CPX_ERR_ARG;
    *path_len = 0;
    cpx_hash_t tmp[CPX_MAX_PROOF_PATH];
    size_t depth = 0;
    uint64_t lo = 0, len = n, m = index;
    while (len > 1) {
        if (depth == CPX_MAX_PROOF_PATH)
            return CPX_ERR_ARG;
        uint64_t k = split_point(len);
        int rc;
        if (m < k) {
            rc = range_root(get, ctx, lo + k, lo + len, tmp[depth++]);
            len = k;
        } else {
            rc = range_root(get, ctx, lo, lo + k, tmp[depth++]);
            lo += k;
            m -= k;
            len -= k;
        }
        if (rc != CPX_OK)
            return rc;
    }
    return emit(tmp, depth, path, max, path_len);
}

int cpx_merkle_prove_consistency(cpx_merkle_get_fn get, void *ctx, uint64_t m, uint64_t n,
                                 cpx_hash_t *path, size_t max, size_t *path_len)
{
    if (!get || !path_len || m == 0 || m > n)
        return CPX_ERR_ARG;
    *path_len = 0;
    /* SUBPROOF(m, D[lo:lo+len], b), unrolled: the recursion is a single descent. */
    cpx_hash_t tmp[CPX_MAX_PROOF_PATH];
    size_t depth = 0;
    uint64_t lo = 0, len = n;
    int complete = 1; /* the RFC's b: m is the size of a tree the verifier has the root of */
    while (m != len) {
        if (depth == CPX_MAX_PROOF_PATH)
            return CPX_ERR_ARG;
        uint64_t k = split_point(len);
        int rc;
        if (m <= k) {
            rc = range_root(get, ctx, lo + k, lo + len, tmp[depth++]);
            len = k;
        } else {
            rc = range_root(get, ctx, lo, lo + k, tmp[depth++]);
            lo += k;
            m -= k;
            len -= k;
            complete = 0;
        }
        if (rc != CPX_OK)
            return rc;
    }
    if (!complete) {
        if (depth == CPX_MAX_PROOF_PATH)
            return CPX_ERR_ARG;
        int rc = range_root(get, ctx, lo, lo + len, tmp[depth++]);
        if (rc != CPX_OK)
            return rc;
    }
    return emit(tmp, depth, path, max, path_len);
}

/* ---- verification ------------------------------------------------------------------------- */

static int same(const cpx_hash_t a, const cpx_hash_t b)
{
    return memcmp(a, b, CPX_SHA256_LEN) == 0;
}

int cpx_merkle_verify_inclusion(const cpx_hash_t leaf_hash, uint64_t index, uint64_t n,
                                const cpx_hash_t *path, size_t path_len,
                                const cpx_hash_t root)
{
    if (!leaf_hash || !root || (!path && path_len) || index >= n)
        return CPX_ERR_PROOF;
    uint64_t fn = index, sn = n - 1;
    cpx_hash_t r;
    memcpy(r, leaf_hash, CPX_SHA256_LEN);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0)
            return CPX_ERR_PROOF;
        if ((fn & 1) || fn == sn) {
            cpx_merkle_node_hash(path[i], r, r);
            if (!(fn & 1))
                do {
                    fn >>= 1;
                    sn >>= 1;
                } while (!(fn & 1) && fn != 0);
        } else {
            cpx_merkle_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return (sn == 0 && same(r, root)) ? CPX_OK : CPX_ERR_PROOF;
}

int cpx_merkle_verify_consistency(uint64_t m, uint64_t n, const cpx_hash_t root1,
                                  const cpx_hash_t root2, const cpx_hash_t *path,
                                  size_t path_len)
{
    if (!root1 || !root2 || (!path && path_len) || m == 0 || m > n)
        return CPX_ERR_PROOF;
    if (m == n)
        return (path_len == 0 && same(root1, root2)) ? CPX_OK : CPX_ERR_PROOF;
    if (path_len == 0)
        return CPX_ERR_PROOF;
    /* When m is a power of two the old root is itself the first node of the proof. */
    size_t i = 0;
    const uint8_t *first;
    if (is_pow2(m)) {
        first = root1;
    } else {
        first = path[0];
        i = 1;
    }
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    cpx_hash_t fr, sr;
    memcpy(fr, first, CPX_SHA256_LEN);
    memcpy(sr, first, CPX_SHA256_LEN);
    for (; i < path_len; i++) {
        if (sn == 0)
            return CPX_ERR_PROOF;
        if ((fn & 1) || fn == sn) {
            cpx_merkle_node_hash(path[i], fr, fr);
            cpx_merkle_node_hash(path[i], sr, sr);
            if (!(fn & 1))
                do {
                    fn >>= 1;
                    sn >>= 1;
                } while (!(fn & 1) && fn != 0);
        } else {
            cpx_merkle_node_hash(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return (sn == 0 && same(fr, root1) && same(sr, root2)) ? CPX_OK : CPX_ERR_PROOF;
}
