/* Merkle proofs and the check-proof input (cpxctl audit check-proof): inclusion and
 * consistency proofs, signed tree heads and leaves from untrusted files, verified with
 * the decoded numbers against roots taken from the input. Verification must refuse
 * (never crash) on any path length, index or size; a proof built here for a small tree
 * must verify and its flipped-bit copy must not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/audit.h"
#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/merkle.h"

#define MAXP 64

static size_t copy_path(ProtobufCBinaryData *p, size_t n, cpx_hash_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < MAXP; i++)
        if (p[i].len == 32)
            memcpy(out[k++], p[i].data, 32);
    return k;
}

static void self_check(const uint8_t *data, size_t size)
{
    /* leaves from the input: a real proof must verify, a flipped one must not */
    size_t n = size % 17 + 1;
    cpx_hash_t leaves[17], root, path[MAXP];
    for (size_t i = 0; i < n; i++)
        cpx_merkle_leaf_hash(data, size > i ? size - i : 0, leaves[i]);
    cpx_merkle_root(leaves, n, root);
    size_t idx = size ? data[0] % n : 0, plen = 0;
    if (cpx_merkle_path(leaves, n, idx, path, MAXP, &plen) != CPX_OK)
        abort();
    if (cpx_merkle_verify_inclusion(leaves[idx], idx, n, path, plen, root) != CPX_OK)
        abort();
    if (plen) {
        path[0][size % 32] ^= 1;
        if (cpx_merkle_verify_inclusion(leaves[idx], idx, n, path, plen, root) == CPX_OK)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cpx_hash_t path[MAXP], root1, root2;
    memset(root1, 0, sizeof root1);
    memset(root2, 0xa5, sizeof root2);
    if (size >= 64) {
        memcpy(root1, data, 32);
        memcpy(root2, data + 32, 32);
    }
    Cpx__V1__InclusionProof *ip = NULL;
    if (cpx_decode(&cpx__v1__inclusion_proof__descriptor, data, size, 64 << 10,
                   (ProtobufCMessage **)&ip) == CPX_OK) {
        size_t k = copy_path(ip->path, ip->n_path, path);
        if (ip->leaf_hash.len == 32)
            cpx_merkle_verify_inclusion(ip->leaf_hash.data, ip->leaf_index, ip->tree_size, path, k, root1);
        cpx_msg_free(ip);
    }
    Cpx__V1__ConsistencyProof *cp = NULL;
    if (cpx_decode(&cpx__v1__consistency_proof__descriptor, data, size, 64 << 10,
                   (ProtobufCMessage **)&cp) == CPX_OK) {
        size_t k = copy_path(cp->path, cp->n_path, path);
        cpx_merkle_verify_consistency(cp->first_size, cp->second_size, root1, root2, path, k);
        cpx_msg_free(cp);
    }
    cpx_sth_t *sth = NULL;
    if (cpx_decode_sth(data, size, &sth) == CPX_OK)
        cpx_msg_free(sth);
    cpx_audit_leaf_t *leaf = NULL;
    if (cpx_decode_audit_leaf(data, size, &leaf) == CPX_OK)
        cpx_msg_free(leaf);
    /* the raw path form: 8-byte index, 8-byte size, then 32-byte hashes */
    if (size >= 16 + 32) {
        uint64_t idx = 0, n = 0;
        for (int i = 0; i < 8; i++) {
            idx = idx << 8 | data[i];
            n = n << 8 | data[8 + i];
        }
        size_t k = (size - 16) / 32;
        if (k > MAXP)
            k = MAXP;
        memcpy(path, data + 16, k * 32);
        cpx_merkle_verify_inclusion(data + 16, idx, n, path, k, root2);
        cpx_merkle_verify_consistency(idx, n, root1, root2, path, k);
    }
    self_check(data, size);
    return 0;
}
