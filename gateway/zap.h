/* gateway/zap.h — the ZAP handler (RFC 27): CURVE public key -> enrolled department.
 *
 * Runs in its own thread with a REP socket on inproc://zeromq.zap.01 (bind before the
 * ROUTER binds, so no handshake ever goes unchecked). For each CURVE handshake it looks
 * the client key up in the registry in a fresh read transaction (so enrolments made
 * by cpxctl while the gateway runs take effect at once) and answers 200 with the
 * department code as User-Id, or 400. Each refusal is pushed to the server thread on
 * CPX_GW_ZAP_REFUSED_EP as one message: key(32) || peer address, so the server, which
 * owns the write transaction, can audit it (rate-limited there).
 *
 * Caveats: start before binding the ROUTER; stop before destroying the context. */
#ifndef CPX_GW_ZAP_H
#define CPX_GW_ZAP_H

#include <lmdb.h>

#include "cpx/registry.h"

#define CPX_GW_ZAP_REFUSED_EP "inproc://cpx-gw-auth-refused"

typedef struct cpx_gw_zap cpx_gw_zap_t;

/* Starts the handler on zctx (the server must have bound a PULL socket on
 * CPX_GW_ZAP_REFUSED_EP first). env and reg are borrowed and must outlive the handler.
 * Caller owns the result; stop and free with cpx_gw_zap_destroy. NULL on failure. */
cpx_gw_zap_t *cpx_gw_zap_start(void *zctx, MDB_env *env, cpx_registry_t *reg);

/* Stops the thread and frees; accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_gw_zap_destroy(cpx_gw_zap_t **self_p);

#endif
