/* gateway/outbox.h — delivery scheduling over the durable outboxes (cpx/outbox.h).
 *
 * In the cycle's write transaction: fills the window of every ONLINE department with
 * entries in delivery order (IMMEDIATE, URGENT, ROUTINE; within a class, acceptance
 * order), skipping an entry while an earlier one of the same case is unconfirmed;
 * resends unconfirmed deliveries when due with exponential backoff (retry.base_ms *
 * 2^(attempt-1), capped at retry.max_ms); dead-letters after retry.max_attempts.
 * A resend happens only once the peer has spoken since the previous attempt, so a
 * connection that silently died does not use up attempts before it is marked offline.
 * Every send writes a DELIVERED leaf (detail "attempt=N") and persists the attempt
 * count, so a restart resumes with the right count. */
#ifndef CPX_GW_OUTBOX_H
#define CPX_GW_OUTBOX_H

#include "server.h"

/* Loads every department's queue depth (startup). */
int cpx_gw_outbox_load(cpx_gw_t *self);

/* Fills windows and handles due retries in self->txn; queues Deliver frames. */
int cpx_gw_outbox_tick(cpx_gw_t *self);

/* A DeliveryAck from dept. */
int cpx_gw_outbox_confirm(cpx_gw_t *self, cpx_gw_session_t *s, const Cpx__V1__DeliveryAck *ack);

/* Earliest due time of any unconfirmed delivery of an ONLINE department (INT64_MAX
 * when none), for the poll timeout. */
int64_t cpx_gw_outbox_next_due(cpx_gw_t *self);

#endif
