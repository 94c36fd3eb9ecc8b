/* Merkle tree: RFC 9162 §2.1 known answers (computed independently with Python's
 * hashlib from the RFC's recursive definitions), every inclusion and consistency
 * proof up to n = 13, and proofs that must fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/merkle.h"

#define MAXN 13

/* MTH of leaves "leaf0".."leaf{n-1}" (python3 hashlib, RFC 9162 §2.1.1). */
static const struct {
    size_t n;
    const char *root;
} roots[] = {
    {0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {1, "e6c410a9745b0151d82d1a9f007b81f378a1588c3fb63dc634a2ab001379c3d2"},
    {2, "82bbd1c5de08394573f035ab3871ffaa6d8aba80baf47c7b28fb2b167f18464e"},
    {3, "f1aed069e1b79c5f12193e715059c468eff1559a5c989c6d7c46bc29f4f84f6c"},
    {4, "86f9ec25a8a2b32a4bd733e04c213de63c8b0655bcb887b75cfd8b02691be0e5"},
    {5, "2f4e0d79b7e066069be4d391a858023d0acd245505ab6913a8fd69726b65741d"},
    {7, "4b6939132387c5bf27ebaf5ac122810ce866eb0c7bf44082364b35c06f713aa6"},
    {8, "d12334b61aa2f244f11754c40896641551d64cd5c79fa0f9760d2ec3079d1834"},
    {13, "0237328018cb3ca9d183f65202651614753628ff5251c9db4745932736015c23"},
};

/* PATH(5, D[13]) and PROOF(3, D[7]), PROOF(4, D[13]) from the same script. */
static const char *path_5_13[] = {
    "929a82444d49121b8f9f31e6a720898d3bc0e591699ac8133f3bc28b27ead191",
    "515351d56b565b5ec878c6b8959f42cf7f587e3bbb414e8aecf158ea7822e9ad",
    "86f9ec25a8a2b32a4bd733e04c213de63c8b0655bcb887b75cfd8b02691be0e5",
    "e280dbc2d1474797202453ccdf950d8bc598e000a5feb04529dddc4eff0bd681",
};
static const char *cons_3_7[] = {
    "30415163f9aea87a7f53b3679c4d75318ee1367567efb6b2183c0e875ab02b4e",
    "f1fbbbe36a7c26642bf89e87d44e785402b9e723cd9b190566ff6a5f8a1de294",
    "82bbd1c5de08394573f035ab3871ffaa6d8aba80baf47c7b28fb2b167f18464e",
    "00937c8c69f4605e57c72c0dc0581d768770f59c4d08919c485ca53274551272",
};
static const char *cons_4_13[] = {
    "1237e2e6fc1b599b8808d61755765c4672a74f54a31a946c36fc329811392be5",
    "e280dbc2d1474797202453ccdf950d8bc598e000a5feb04529dddc4eff0bd681",
};

static cpx_hash_t leaves[MAXN + 1];
static unsigned get_calls;

static void unhex32(const char *hex, cpx_hash_t out)
{
    assert_int_equal(strlen(hex), 64);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i <= MAXN; i++) {
        char buf[16];
        int len = snprintf(buf, sizeof buf, "leaf%d", i);
        cpx_merkle_leaf_hash(buf, (size_t)len, leaves[i]);
    }
    return 0;
}

/* Node source over the in-memory leaves: perfect subtree (level, index). */
static int mem_get(void *ctx, unsigned level, uint64_t index, cpx_hash_t out)
{
    size_t n = *(size_t *)ctx;
    uint64_t start = index << level, len = UINT64_C(1) << level;
    get_calls++;
    if (start + len > n)
        return CPX_ERR_NOT_FOUND;
    cpx_merkle_root(leaves + start, (size_t)len, out);
    return CPX_OK;
}

static void test_known_roots(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        cpx_hash_t want, got, via;
        unhex32(roots[i].root, want);
        cpx_merkle_root(leaves, roots[i].n, got);
        assert_memory_equal(got, want, 32);
        size_t n = roots[i].n;
        assert_int_equal(cpx_merkle_range_root(mem_get, &n, 0, n, via), CPX_OK);
        assert_memory_equal(via, want, 32);
    }
}

static void test_known_paths(void **state)
{
    (void)state;
    cpx_hash_t path[CPX_MAX_PROOF_PATH], want;
    size_t len = 0, n = 13;
    assert_int_equal(cpx_merkle_prove_inclusion(mem_get, &n, 5, 13, path, CPX_MAX_PROOF_PATH,
                                                &len), CPX_OK);
    assert_int_equal(len, 4);
    for (size_t i = 0; i < len; i++) {
        unhex32(path_5_13[i], want);
        assert_memory_equal(path[i], want, 32);
    }
    n = 7;
    assert_int_equal(cpx_merkle_prove_consistency(mem_get, &n, 3, 7, path, CPX_MAX_PROOF_PATH,
                                                  &len), CPX_OK);
    assert_int_equal(len, 4);
    for (size_t i = 0; i < len; i++) {
        unhex32(cons_3_7[i], want);
        assert_memory_equal(path[i], want, 32);
    }
    n = 13;
    assert_int_equal(cpx_merkle_prove_consistency(mem_get, &n, 4, 13, path, CPX_MAX_PROOF_PATH,
                                                  &len), CPX_OK);
    assert_int_equal(len, 2);
    for (size_t i = 0; i < len; i++) {
        unhex32(cons_4_13[i], want);
        assert_memory_equal(path[i], want, 32);
    }
}

static void test_every_inclusion_path(void **state)
{
    (void)state;
    for (size_t n = 1; n <= MAXN; n++) {
        cpx_hash_t root;
        cpx_merkle_root(leaves, n, root);
        for (size_t i = 0; i < n; i++) {
            cpx_hash_t a[CPX_MAX_PROOF_PATH], b[CPX_MAX_PROOF_PATH];
            size_t la = 99, lb = 99;
            assert_int_equal(cpx_merkle_path(leaves, n, i, a, CPX_MAX_PROOF_PATH, &la), CPX_OK);
            size_t nn = n;
            assert_int_equal(cpx_merkle_prove_inclusion(mem_get, &nn, i, n, b,
                                                        CPX_MAX_PROOF_PATH, &lb), CPX_OK);
            assert_int_equal(la, lb);
            assert_memory_equal(a, b, la * 32);
            assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, a, la, root), CPX_OK);
        }
    }
}

static void test_every_consistency_proof(void **state)
{
    (void)state;
    for (size_t n = 1; n <= MAXN; n++) {
        cpx_hash_t r2;
        cpx_merkle_root(leaves, n, r2);
        for (size_t m = 1; m <= n; m++) {
            cpx_hash_t r1, p[CPX_MAX_PROOF_PATH];
            size_t len = 99, nn = n;
            cpx_merkle_root(leaves, m, r1);
            assert_int_equal(cpx_merkle_prove_consistency(mem_get, &nn, m, n, p,
                                                          CPX_MAX_PROOF_PATH, &len), CPX_OK);
            if (m == n)
                assert_int_equal(len, 0);
            assert_int_equal(cpx_merkle_verify_consistency(m, n, r1, r2, p, len), CPX_OK);
            /* a proof between m and n says nothing about any other pair */
            if (m < n) {
                cpx_hash_t other;
                memcpy(other, r2, 32);
                other[0] ^= 0x80;
                assert_int_equal(cpx_merkle_verify_consistency(m, n, other, r2, p, len),
                                 CPX_ERR_PROOF);
                assert_int_equal(cpx_merkle_verify_consistency(m, n, r1, other, p, len),
                                 CPX_ERR_PROOF);
                if (m + 1 < n)
                    assert_int_equal(cpx_merkle_verify_consistency(m + 1, n, r1, r2, p, len),
                                     CPX_ERR_PROOF);
                assert_int_equal(cpx_merkle_verify_consistency(m, n, r1, r2, p, len - 1),
                                 CPX_ERR_PROOF);
                p[len - 1][7] ^= 0x10;
                assert_int_equal(cpx_merkle_verify_consistency(m, n, r1, r2, p, len),
                                 CPX_ERR_PROOF);
            }
        }
    }
}

static void test_inclusion_negatives(void **state)
{
    (void)state;
    size_t n = 13;
    cpx_hash_t root, other, path[CPX_MAX_PROOF_PATH + 1];
    size_t len;
    cpx_merkle_root(leaves, n, root);
    cpx_merkle_root(leaves, 12, other);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cpx_merkle_path(leaves, n, i, path, CPX_MAX_PROOF_PATH, &len), CPX_OK);
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, len, root), CPX_OK);
        /* wrong index */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], (i + 1) % n, n, path, len, root),
                         CPX_ERR_PROOF);
        /* wrong leaf */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[(i + 1) % n], i, n, path, len, root),
                         CPX_ERR_PROOF);
        /* wrong size. RFC 9162 verification binds the size only through the shape
         * of the path (the signed head binds it to the root), so a size whose tree
         * gives leaf i a path of the same shape is not detectable here: for i < 8
         * sizes 9..16 all share the shape. Sizes 8 and 32 never do. */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, 8, path, len, root),
                         CPX_ERR_PROOF);
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, 32, path, len, root),
                         CPX_ERR_PROOF);
        if (i == 12)
            assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, 14, path, len, root),
                             CPX_ERR_PROOF);
        /* index past the end */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], n, n, path, len, root),
                         CPX_ERR_PROOF);
        /* truncated and extended paths */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, len - 1, root),
                         CPX_ERR_PROOF);
        memcpy(path[len], leaves[0], 32);
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, len + 1, root),
                         CPX_ERR_PROOF);
        /* root of another tree */
        assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, len, other),
                         CPX_ERR_PROOF);
        /* a flipped bit anywhere in the path */
        for (size_t j = 0; j < len; j++) {
            path[j][31] ^= 1;
            assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, len, root),
                             CPX_ERR_PROOF);
            path[j][31] ^= 1;
        }
    }
    /* single-leaf tree: empty path, root = leaf hash */
    assert_int_equal(cpx_merkle_verify_inclusion(leaves[0], 0, 1, NULL, 0, leaves[0]), CPX_OK);
    assert_int_equal(cpx_merkle_verify_inclusion(leaves[0], 0, 0, NULL, 0, leaves[0]),
                     CPX_ERR_PROOF);
}

static void test_consistency_negatives(void **state)
{
    (void)state;
    cpx_hash_t r1, r2, p[CPX_MAX_PROOF_PATH];
    size_t len, n = 13;
    cpx_merkle_root(leaves, 5, r1);
    cpx_merkle_root(leaves, 13, r2);
    assert_int_equal(cpx_merkle_prove_consistency(mem_get, &n, 5, 13, p, CPX_MAX_PROOF_PATH,
                                                  &len), CPX_OK);
    assert_int_equal(cpx_merkle_verify_consistency(5, 13, r1, r2, p, len), CPX_OK);
    /* m > n and m = 0 are refused by both sides */
    assert_int_equal(cpx_merkle_verify_consistency(13, 5, r2, r1, p, len), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_verify_consistency(0, 13, r1, r2, p, len), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_prove_consistency(mem_get, &n, 14, 13, p, CPX_MAX_PROOF_PATH,
                                                  &len), CPX_ERR_ARG);
    assert_int_equal(cpx_merkle_prove_consistency(mem_get, &n, 0, 13, p, CPX_MAX_PROOF_PATH,
                                                  &len), CPX_ERR_ARG);
    /* equal sizes need equal roots and an empty path */
    assert_int_equal(cpx_merkle_verify_consistency(13, 13, r2, r2, NULL, 0), CPX_OK);
    assert_int_equal(cpx_merkle_verify_consistency(13, 13, r1, r2, NULL, 0), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_verify_consistency(13, 13, r2, r2, p, 1), CPX_ERR_PROOF);
    /* an empty proof for m < n */
    assert_int_equal(cpx_merkle_verify_consistency(5, 13, r1, r2, NULL, 0), CPX_ERR_PROOF);
    /* wrong new size */
    assert_int_equal(cpx_merkle_verify_consistency(5, 8, r1, r2, p, len), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_verify_consistency(5, 32, r1, r2, p, len), CPX_ERR_PROOF);
    assert_int_equal(cpx_merkle_verify_consistency(5, 6, r1, r2, p, len), CPX_ERR_PROOF);
}

static void test_array_path_arguments(void **state)
{
    (void)state;
    cpx_hash_t path[2];
    size_t len;
    assert_int_equal(cpx_merkle_path(leaves, 13, 13, path, 2, &len), CPX_ERR_ARG);
    /* max too small for a 4-hash path */
    assert_int_equal(cpx_merkle_path(leaves, 13, 5, path, 2, &len), CPX_ERR_ARG);
    size_t n = 13;
    assert_int_equal(cpx_merkle_prove_inclusion(mem_get, &n, 5, 13, path, 2, &len),
                     CPX_ERR_ARG);
    assert_int_equal(cpx_merkle_prove_inclusion(mem_get, &n, 13, 13, path, 2, &len),
                     CPX_ERR_ARG);
}

/* A node source error (a missing node) propagates rather than yielding a bad proof. */
static int failing_get(void *ctx, unsigned level, uint64_t index, cpx_hash_t out)
{
    (void)ctx; (void)level; (void)index; (void)out;
    return CPX_ERR_STORE;
}

static void test_node_source_errors(void **state)
{
    (void)state;
    cpx_hash_t path[CPX_MAX_PROOF_PATH], out;
    size_t len;
    assert_int_equal(cpx_merkle_prove_inclusion(failing_get, NULL, 3, 13, path,
                                                CPX_MAX_PROOF_PATH, &len), CPX_ERR_STORE);
    assert_int_equal(cpx_merkle_prove_consistency(failing_get, NULL, 3, 13, path,
                                                  CPX_MAX_PROOF_PATH, &len), CPX_ERR_STORE);
    assert_int_equal(cpx_merkle_range_root(failing_get, NULL, 0, 13, out), CPX_ERR_STORE);
}

/* Proofs in a huge tree stay O(log n) node reads. */
static int counting_get(void *ctx, unsigned level, uint64_t index, cpx_hash_t out)
{
    (void)ctx;
    get_calls++;
    memset(out, 0, 32);
    memcpy(out, &level, sizeof level);
    memcpy(out + 8, &index, sizeof index);
    return CPX_OK;
}

static void test_log_reads(void **state)
{
    (void)state;
    cpx_hash_t path[CPX_MAX_PROOF_PATH];
    size_t len;
    uint64_t n = (UINT64_C(1) << 40) - 12345;
    get_calls = 0;
    assert_int_equal(cpx_merkle_prove_inclusion(counting_get, NULL, 7, n, path,
                                                CPX_MAX_PROOF_PATH, &len), CPX_OK);
    assert_int_equal(len, 40);
    assert_true(get_calls <= 2 * 40 + 2);
    get_calls = 0;
    assert_int_equal(cpx_merkle_prove_consistency(counting_get, NULL, n / 3, n, path,
                                                  CPX_MAX_PROOF_PATH, &len), CPX_OK);
    assert_true(get_calls <= 3 * 40 + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_roots),
        cmocka_unit_test(test_known_paths),
        cmocka_unit_test(test_every_inclusion_path),
        cmocka_unit_test(test_every_consistency_proof),
        cmocka_unit_test(test_inclusion_negatives),
        cmocka_unit_test(test_consistency_negatives),
        cmocka_unit_test(test_array_path_arguments),
        cmocka_unit_test(test_node_source_errors),
        cmocka_unit_test(test_log_reads),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
