/* gwkeycheck.c — is the configured signing key still the log's current gateway key?
 * Checked at start and whenever another process wrote to the log (cpxctl gateway-key
 * rotate is such a writer); cpx_audit_sign_head refuses a stale key in any case. */
#include "gwkeycheck.h"

#include <stdio.h>

#include "cpx/err.h"
#include "cpx/gwkey.h"
#include "cpx/log.h"
#include "cpx/store.h"

int cpx_gw_gwkey_check(cpx_gw_t *self, int at_start)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cpx_store_err(rc, "gwkey: begin");
    uint8_t cur[CPX_KEY_ID_LEN], mine[CPX_KEY_ID_LEN];
    rc = cpx_gwkey_check_current(self->audit, txn, self->sign_key, cur);
    mdb_txn_abort(txn);
    if (rc != CPX_ERR_REFUSED)
        return rc;
    char ch[2 * CPX_KEY_ID_LEN + 1], mh[2 * CPX_KEY_ID_LEN + 1];
    cpx_key_id(self->sign_key, mine);
    cpx_hex(cur, sizeof cur, ch);
    cpx_hex(mine, sizeof mine, mh);
    cpx_log_error("gwkey", "msg=\"signing key is not the log's current gateway key\" "
                  "configured_key_id=%s current_key_id=%s at_start=%d", mh, ch, at_start);
    fprintf(stderr,
            "cpx-gateway: the configured signing key (key id %s) is not the audit log's "
            "current gateway key (key id %s): the key was rotated. %s Set keys.signing_key "
            "to the new key and restart (docs/operations.md, gateway key rotation).\n",
            mh, ch, at_start ? "Refusing to start." : "Stopping: no more heads are signed.");
    return CPX_ERR_REFUSED;
}
