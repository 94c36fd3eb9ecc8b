/* cpx/export.h — self-contained export bundles of the exchange log.
 *
 * A bundle carries leaves [first, end), every head of a size in [first, end], the
 * hashes of the perfect subtrees covering [0, first) (so every root can be recomputed
 * without the earlier leaves), the gateway's public key, and the KEY_ENROLLED /
 * KEY_REVOKED leaves from before `first` with their inclusion paths, so sender
 * signatures can be checked. Byte layout: docs/audit-format.md, "Export bundle".
 *
 * Caveats: a bundle is untrusted input; cpx_bundle_parse bounds every length and count
 * by the bundle size and limits.h before allocating. Nothing in a bundle is trusted
 * until cpx_averify_bundle has checked it against a gateway key the auditor holds. */
#ifndef CPX_EXPORT_H
#define CPX_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cpx/audit.h"

#define CPX_BUNDLE_MAGIC "CPXAUDX1"
#define CPX_BUNDLE_MAX_KEY_LEAVES 100000u

/* Writes a bundle of leaves [from, to) to out. gateway_pub is the log's FIRST gateway key
 * (CPX_ERR_STATE when the log's meta names another); a rotated log's key chain travels as
 * its hand-over leaves (and, before the range, their covering heads). `to` is first moved up to the size of
 * the first signed head >= to (so every exported leaf is covered by a head); to == 0
 * means up to the latest head. *end_out (may be NULL) receives the end used.
 * CPX_ERR_NOT_FOUND when no head covers the range, CPX_ERR_ARG when from >= end,
 * CPX_ERR_IO on write errors. */
int cpx_audit_export(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *gateway_pub,
                     uint64_t from, uint64_t to, FILE *out, uint64_t *end_out);

typedef struct cpx_bundle_key_leaf {
    uint64_t seq;
    const uint8_t *leaf;           /* borrowed from the bundle buffer */
    size_t len;
    size_t path_len;
    const uint8_t *path;           /* path_len * 32 bytes, borrowed */
} cpx_bundle_key_leaf_t;

/* A gateway key hand-over before the range whose first covering head H is also before it
 * (tree size < first): H (signed by the outgoing key), the hand-over leaf's inclusion path
 * in H's tree, and the consistency path from H's tree to the tree of size first. */
typedef struct cpx_bundle_handover {
    uint64_t seq;                  /* the hand-over leaf, also among key_leaves */
    size_t ipath_len, cpath_len;
    const uint8_t *ipath, *cpath;  /* 32-byte hashes, borrowed */
    cpx_sth_t *head;               /* decoded; owned by the bundle */
} cpx_bundle_handover_t;

typedef struct cpx_bundle {
    uint8_t gateway_pub[CPX_ED25519_PUB_LEN];
    uint64_t first, end;
    cpx_hash_t prefix[64];         /* prefix[l]: perfect subtree for bit l of first */
    cpx_bundle_key_leaf_t *key_leaves;
    size_t n_key_leaves;
    const uint8_t **leaf;          /* end - first leaves, borrowed */
    size_t *leaf_len;
    cpx_sth_t **heads;             /* decoded; owned by the bundle */
    size_t n_heads;
    cpx_bundle_handover_t *handovers; /* rotated logs only (record type 8) */
    size_t n_handovers;
} cpx_bundle_t;

/* Parses a bundle in buf (borrowed: must outlive the result). Caller owns *out and
 * frees it with cpx_bundle_destroy. CPX_ERR_DECODE with why (may be NULL) filled when
 * the bytes are not a well-formed bundle; CPX_ERR_TOO_LARGE over a bound. */
int cpx_bundle_parse(const uint8_t *buf, size_t len, cpx_bundle_t **out, char *why,
                     size_t why_size);
void cpx_bundle_destroy(cpx_bundle_t **self_p);

#endif
