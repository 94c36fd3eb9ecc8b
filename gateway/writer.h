/* gateway/writer.h — processing of client frames inside the cycle's write transaction.
 *
 * For a Submit: decode -> sender == authenticated department -> validate -> duplicate
 * check (the original Ack, duplicate = true, nothing written) -> signing key by key id
 * -> signature -> case -> route -> per-recipient queue limit -> message record,
 * ACCEPTED and ROUTED leaves, outbox entries. Refusals write a REJECTED leaf (except
 * the retryable OVERLOADED, which a client resends) and queue a Nack with every field
 * error. For a DeliveryAck: TAKEN removes the delivery (DELIVERY_ACKNOWLEDGED),
 * REFUSED_BY_LOCAL dead-letters it (DEAD_LETTERED with the reason). Replies are
 * queued in the server's out list and sent only after the commit. */
#ifndef CPX_GW_WRITER_H
#define CPX_GW_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"
#include "cpx/envsign.h"

/* One frame as received: routing id, authenticated department, payload; and what
 * cpx_gw_writer_prepare worked out ahead of the frame's turn. */
typedef struct cpx_gw_in {
    uint8_t rid[CPX_GW_MAX_RID];
    size_t rid_len;
    char dept[CPX_MAX_DEPT_CODE + 1];
    const uint8_t *data;
    size_t len;
    int prepared;                   /* frame/decode_rc are set */
    int decode_rc;
    cpx_client_frame_t *frame;      /* owned; freed by cpx_gw_writer_frame */
    cpx_arena_t *arena;             /* frame's memory when decoded ahead (else NULL) */
    cpx_envsign_result_t *res;      /* per envelope when verified ahead, else NULL */
    int *rcs;
    /* Per envelope, worked out on the pool ahead of the frame's turn (NULL when not):
     * the outcome of cpx_validate_envelope and the envelope re-encoded (into enc) as the
     * message store keeps it. */
    struct cpx_gw_envprep *ep;
    size_t n_ep;
    uint8_t *enc;
    int ep_in_frame;                /* ep offsets are into data (kept as received), not enc */
    uint32_t ack_group;             /* grouped_acks Submit: its Acks' group, else 0 */
    /* Prepared while the previous cycle ran (cpx_gw_writer_ahead): decoded, validated,
     * encoded, and verified (res set) under ahead_pub as the last commit enrolled it;
     * the writer uses that outcome only if the key it resolves in its own transaction is
     * the same. */
    int ahead;
    uint8_t ahead_pub[CPX_ED25519_PUB_LEN];
} cpx_gw_in_t;

typedef struct cpx_gw_envprep {
    int valid_rc;
    size_t off, len;                /* in enc or data; len 0: not encoded ahead */
} cpx_gw_envprep_t;

/* Decodes the cycle's frames, validates and re-encodes their envelopes, then verifies
 * their sender signatures, all on the verification pool (the keys are resolved in
 * self->txn between the two pool runs); with case tracking on, the second pool run also
 * computes the minors' keyed hashes and personal-field encodings (cpx_gw_ci_prepare_*).
 * None of that needs the store, so it leaves the server thread, which alone can write.
 * Leaves in[i] for cpx_gw_writer_frame, which frees what this allocated. CPX_OK, or a
 * store error. */
int cpx_gw_writer_prepare(cpx_gw_t *self, cpx_gw_in_t *const *in, size_t n);

/* The same work for one frame, on the calling thread, before the frame's cycle: decode,
 * validate, encode, and verify when its envelopes name one key of the authenticated
 * sender that is enrolled in rtxn (a read transaction of this thread). Touches only x and
 * the store through rtxn, so it may run on another thread while a cycle writes; the
 * frame's own cycle then skips what is done. A frame prepared ahead already (it waited
 * more than one cycle) is left as it is. */
void cpx_gw_writer_ahead(cpx_gw_in_t *x, int64_t now_ms, cpx_registry_t *reg, MDB_txn *rtxn);

/* Processes one frame in self->txn and frees what cpx_gw_writer_prepare left in it.
 * Returns CPX_OK, or a store error (CPX_ERR_FULL,
 * CPX_ERR_STORE) after which the caller must abort the cycle. */
int cpx_gw_writer_frame(cpx_gw_t *self, cpx_gw_in_t *in);

/* Frees what cpx_gw_writer_prepare left in a frame that was not processed (a cycle
 * that stopped early). Safe to call again. */
void cpx_gw_writer_release(cpx_gw_in_t *in);

/* For gateway/sealed.c: a refusal (REJECTED leaf + Nack with one field error), and the
 * Ack of an envelope accepted at leaf_seq (also remembered for in-cycle duplicates). */
int cpx_gw_writer_refuse(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                         int code, const char *path, const char *rule, const char *msg);
int cpx_gw_writer_ack(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                      uint64_t leaf_seq, const char *case_id);

/* After a cycle that applied nothing: Nacks with code for every envelope of in that has
 * no answer queued yet — not retryable only when the failure is deterministic and in
 * holds a single envelope. */
int cpx_gw_writer_nack_unanswered(cpx_gw_t *self, const cpx_gw_in_t *in, int code,
                                  int deterministic);

/* Writes an AUTH_REFUSED leaf for key (rate-limited). */
int cpx_gw_writer_auth_refused(cpx_gw_t *self, const uint8_t key[CPX_CURVE_KEY_LEN],
                               const char *peer);

#endif
