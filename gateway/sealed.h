/* gateway/sealed.h — sealed juvenile records inside the gateway's write path
 * (policy: deploy/jiangyin/sealed.yaml; design and guarantees: docs/sealed.md).
 *
 * Called from the writer after a Submit is validated and its signature verified:
 *  - SealOrder (from a sealing authority): moves the named messages (by id, and every
 *    message of the named cases) into the vault, blanks the ordinary copy, drops them
 *    from the outboxes of departments the policy does not allow, and seals the named
 *    cases for the future;
 *  - a message marked SEALED, a juvenile-offence report from a policy sender, a message
 *    in a sealed case or replying to a sealed message: stored only in the vault and
 *    routed only to the policy's sealed recipients;
 *  - SealedAccessRequest / Read / Approval: answered by the gateway with a
 *    SealedAccessDecision (signed by the gateway key, kept in the vault, delivered to
 *    the requester only). A request that is not allowed gets NO_RECORD exactly as a
 *    subject without records does, is audited (SEALED_ACCESS_REFUSED) and raises a
 *    SEALED_ACCESS_ALERT Notice to the sealing authorities.
 * Messages the vault holds keep a blank record in the ordinary store (gw.msgs entry
 * with no envelope bytes) so dedupe, replies and delivery scheduling work unchanged;
 * the outbox asks cpx_gw_sealed_bytes for the envelope when it delivers one.
 *
 * Caveats: everything runs in the cycle's write transaction (gw->txn). */
#ifndef CPX_GW_SEALED_H
#define CPX_GW_SEALED_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/envsign.h"
#include "cpx/vault.h"

struct cpx_gw;
struct cpx_gw_in;
typedef struct cpx_gw_sealed cpx_gw_sealed_t;

/* Loads the policy file (relative key paths resolved against its directory), opens
 * the vault and the grant databases in env. CPX_ERR_CONFIG with "file: problem" in
 * err; vault errors as cpx_vault_open (CPX_ERR_TAMPERED: lost or wrong vault key).
 * Caller owns *out; free with cpx_gw_sealed_destroy. */
int cpx_gw_sealed_open(const char *policy_path, MDB_env *env, cpx_gw_sealed_t **out, char *err,
                       size_t err_size);
void cpx_gw_sealed_destroy(cpx_gw_sealed_t **self_p);

/* The vault (borrowed), for views that must skip sealed messages (cpx_vault_is_sealed). */
cpx_vault_t *cpx_gw_sealed_vault(cpx_gw_sealed_t *self);

/* Handles env when it is sealed-record traffic (*handled = 1: Ack or Nack queued,
 * leaves written); *handled = 0 leaves it to the ordinary path. Returns CPX_OK or a
 * store error that aborts the cycle. */
int cpx_gw_sealed_submit(struct cpx_gw *gw, const struct cpx_gw_in *in, const cpx_envelope_t *env,
                         const cpx_envsign_result_t *res, int *handled);

/* The envelope bytes of a vault-held message, for a Deliver: malloc'd into *out; the
 * caller wipes (cpx_cleanse) and frees it. CPX_ERR_NOT_FOUND / CPX_ERR_TAMPERED. */
int cpx_gw_sealed_bytes(struct cpx_gw *gw, const uint8_t *id, size_t id_len, uint8_t **out,
                        size_t *len);

#endif
