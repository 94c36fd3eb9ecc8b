/* cpx/merkle.h — RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing,
 * inclusion and consistency proofs.
 *
 *   leaf hash  = SHA-256(0x00 || leaf bytes)
 *   node hash  = SHA-256(0x01 || left || right)
 *   MTH({})    = SHA-256("")
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
 *
 * Two ways in: over an in-memory array of leaf hashes (batches of envelopes), or over
 * a node source — a callback returning the hash of any *perfect* subtree
 * (level l, index j) = MTH(D[j*2^l : (j+1)*2^l]) — which is how the audit log keeps
 * proofs O(log n) without rebuilding the tree. Paths are arrays of 32-byte hashes in
 * RFC 9162 order (from the leaf upward). */
#ifndef CPX_MERKLE_H
#define CPX_MERKLE_H

#include <stddef.h>
#include <stdint.h>
#include "cpx/crypto.h"

typedef uint8_t cpx_hash_t[CPX_SHA256_LEN];

void cpx_merkle_leaf_hash(const void *leaf, size_t len, cpx_hash_t out);
void cpx_merkle_node_hash(const cpx_hash_t left, const cpx_hash_t right, cpx_hash_t out);

/* ---- over an array of n leaf hashes --------------------------------------------- */

/* MTH of n leaf hashes (n may be 0). */
void cpx_merkle_root(const cpx_hash_t *leaves, size_t n, cpx_hash_t out);
/* Inclusion path of leaf index in a tree of n leaves; writes up to max hashes into
 * path and the count into *path_len. CPX_ERR_ARG when index >= n or max too small. */
int cpx_merkle_path(const cpx_hash_t *leaves, size_t n, size_t index, cpx_hash_t *path,
                    size_t max, size_t *path_len);

/* ---- over a node source ------------------------------------------------------------ */

/* Returns CPX_OK and the hash of the perfect subtree (level, index), or a negative
 * cpx_err (propagated by the callers below). */
typedef int (*cpx_merkle_get_fn)(void *ctx, unsigned level, uint64_t index, cpx_hash_t out);

/* MTH(D[start:end]) using perfect-subtree nodes: O(log n) calls. */
int cpx_merkle_range_root(cpx_merkle_get_fn get, void *ctx, uint64_t start, uint64_t end,
                          cpx_hash_t out);
/* RFC 9162 §2.1.3.1 inclusion path of leaf index in the tree of size n. */
int cpx_merkle_prove_inclusion(cpx_merkle_get_fn get, void *ctx, uint64_t index, uint64_t n,
                               cpx_hash_t *path, size_t max, size_t *path_len);
/* RFC 9162 §2.1.4.1 consistency proof between sizes m <= n (0 < m). */
int cpx_merkle_prove_consistency(cpx_merkle_get_fn get, void *ctx, uint64_t m, uint64_t n,
                                 cpx_hash_t *path, size_t max, size_t *path_len);

/* ---- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------- */

/* CPX_OK if path proves leaf_hash at index in a tree of size n with the given root;
 * CPX_ERR_PROOF otherwise (wrong index, size, path length or any hash). */
int cpx_merkle_verify_inclusion(const cpx_hash_t leaf_hash, uint64_t index, uint64_t n,
                                const cpx_hash_t *path, size_t path_len,
                                const cpx_hash_t root);
/* CPX_OK if path proves the tree of size m with root1 is a prefix of the tree of size
 * n with root2; CPX_ERR_PROOF otherwise. m == n needs an empty path and equal roots. */
int cpx_merkle_verify_consistency(uint64_t m, uint64_t n, const cpx_hash_t root1,
                                  const cpx_hash_t root2, const cpx_hash_t *path,
                                  size_t path_len);

#endif
