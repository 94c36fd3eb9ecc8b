/* gwkeycheck.h — the gateway refuses to sign with a gateway key the log has rotated away
 * from (include/cpx/gwkey.h, docs/operations.md "Rotate the gateway's signing key"). */
#ifndef CPX_GW_GWKEYCHECK_H
#define CPX_GW_GWKEYCHECK_H

#include "server.h"

/* CPX_OK when self->sign_key is the log's current gateway key (or the log has no signed
 * head yet). CPX_ERR_REFUSED otherwise, after logging and printing to stderr what to do
 * (at_start: refuse to start; else: stop signing, exit, restart with the new key). */
int cpx_gw_gwkey_check(cpx_gw_t *self, int at_start);

#endif
