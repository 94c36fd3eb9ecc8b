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

/* One frame as received: routing id, authenticated department, payload. */
typedef struct cpx_gw_in {
    uint8_t rid[CPX_GW_MAX_RID];
    size_t rid_len;
    char dept[CPX_MAX_DEPT_CODE + 1];
    const uint8_t *data;
    size_t len;
} cpx_gw_in_t;

/* Processes one frame in self->txn. Returns CPX_OK, or a store error (CPX_ERR_FULL,
 * CPX_ERR_STORE) after which the caller must abort the cycle. */
int cpx_gw_writer_frame(cpx_gw_t *self, const cpx_gw_in_t *in);

/* Writes an AUTH_REFUSED leaf for key (rate-limited). */
int cpx_gw_writer_auth_refused(cpx_gw_t *self, const uint8_t key[CPX_CURVE_KEY_LEN],
                               const char *peer);

#endif
