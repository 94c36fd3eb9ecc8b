/* cpx/auditverify.h — replaying the exchange log to prove it complete and untouched.
 *
 * The verifier recomputes every leaf hash (on two threads), rebuilds the RFC 9162 tree
 * incrementally and, at every signed head, checks root, log id and Ed25519 signature;
 * it checks that heads agree with each other (same size -> same root, time never goes
 * back as size grows), that each leaf sits at the position its seq names (no leaf
 * missing, none swapped), that leaf time never goes back by more than a tolerance,
 * that the stored Merkle nodes equal the recomputed ones (live store), and checks the
 * sender signature of every ACCEPTED leaf against the department keys the log itself
 * enrolled (KEY_ENROLLED / KEY_REVOKED leaves) and that were valid at the leaf's time.
 *
 * Structural failures stop the replay at once; sender-signature failures are counted,
 * the first is reported, and the replay goes on (an auditor wants the full count).
 * Either makes the result CPX_ERR_TAMPERED.
 *
 * Inputs are untrusted: a live store (opened read-only) or an export bundle
 * (docs/audit-format.md, "Export bundle"), whose every length is bounded. */
#ifndef CPX_AUDITVERIFY_H
#define CPX_AUDITVERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/audit.h"
#include "cpx/crypto.h"

typedef enum cpx_averify_problem {
    CPX_AV_NONE = 0,
    CPX_AV_HASH_MISMATCH,     /* leaf bytes do not hash to the stored node / signed root */
    CPX_AV_MISSING_LEAF,      /* a sequence number has no leaf */
    CPX_AV_MISPLACED_LEAF,    /* a leaf's seq differs from its position (swapped, duplicated) */
    CPX_AV_BAD_LEAF,          /* leaf bytes are not an AuditLeaf */
    CPX_AV_TIME,              /* leaf or head time went back past the tolerance */
    CPX_AV_NODE_MISMATCH,     /* a stored Merkle node differs from the recomputed one */
    CPX_AV_HEAD_ROOT,         /* a head's root differs from the replayed tree's */
    CPX_AV_HEAD_SIGNATURE,    /* a head's signature or log id does not verify */
    CPX_AV_HEAD_INCONSISTENT, /* heads disagree (same size, different roots; time order) */
    CPX_AV_SENDER_SIGNATURE,  /* an ACCEPTED leaf's sender signature does not verify */
    CPX_AV_UNKNOWN_KEY,       /* no enrolled key of that sender/key id valid at that time */
    CPX_AV_BAD_BUNDLE,        /* export bundle malformed */
    CPX_AV_NO_HEAD,           /* nothing to check leaves against */
} cpx_averify_problem;

/* Short stable name ("hash mismatch", "missing leaf", ...). */
const char *cpx_averify_problem_name(int problem);

typedef struct cpx_averify_opts {
    const cpx_key_t *gateway_pub;  /* required: the log's FIRST gateway key (its log id is
                                    * SHA-256 of it); heads verify under it or under the
                                    * keys the log's hand-over leaves chain to */
    int64_t time_tolerance_ms;     /* how far leaf time may go back; 0 = 60 000 */
    int sender_signatures;         /* 1: check ACCEPTED leaves' sender signatures */
    int threads;                   /* hashing threads, 1 or 2; 0 = 2 */
    /* extra heads from elsewhere (gossip, an earlier export): checked like stored ones */
    cpx_sth_t *const *extra_heads;
    size_t n_extra_heads;
    /* called every few thousand leaves (may be NULL) */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} cpx_averify_opts_t;

typedef struct cpx_averify_report {
    int problem;                   /* first failure (cpx_averify_problem), CPX_AV_NONE if clean */
    uint64_t bad_seq;              /* the sequence number it concerns */
    char what[256];                /* a sentence naming seq and what is wrong */
    uint64_t first_seq;            /* first leaf replayed (export: its A) */
    uint64_t leaves;               /* leaves replayed */
    uint64_t tree_size;            /* first_seq + leaves */
    uint64_t heads;                /* heads checked (signature + root) */
    uint64_t unsigned_tail;        /* leaves after the last head (not yet signed) */
    uint64_t nodes_checked;        /* stored node records compared */
    uint64_t keys_enrolled, keys_revoked;
    uint64_t sig_checked;          /* ACCEPTED leaves whose sender signature was checked */
    uint64_t sig_per_message, sig_batch, sig_batch_cached; /* of which ... */
    uint64_t sig_failed;           /* failed signature or unknown key */
    uint64_t sig_first_bad_seq;    /* valid when sig_failed */
    double secs;                   /* wall time of the replay */
    uint64_t gateway_rotations;    /* gateway key hand-overs followed (docs/audit-format.md) */
} cpx_averify_report_t;

/* Replays the log in audit (txn: a read transaction kept open throughout).
 * CPX_OK when everything checks, CPX_ERR_TAMPERED with rep filled when anything does
 * not, other negative cpx_err for store errors. */
int cpx_averify_store(cpx_audit_t *audit, MDB_txn *txn, const cpx_averify_opts_t *opts,
                      cpx_averify_report_t *rep);

/* Replays an export bundle held in memory (borrowed). Same results. */
int cpx_averify_bundle(const uint8_t *bundle, size_t len, const cpx_averify_opts_t *opts,
                       cpx_averify_report_t *rep);

#endif
