/* signerlink.h — the gateway's signing key: from the cpx-signer process (default) or,
 * with keys.signer: in-process, loaded into the gateway as before. */
#ifndef CPX_GW_SIGNERLINK_H
#define CPX_GW_SIGNERLINK_H

#include <stddef.h>

#include "config.h"
#include "cpx/crypto.h"

/* The key the gateway signs with. Call before any network socket is opened (the
 * signer inherits nothing but its channel either way). NULL on failure (logged). */
cpx_key_t *cpx_gw_signing_key(const cpx_gw_config_t *cfg);

/* For --check: CPX_OK when the signer program can be run (or keys.signer is
 * in-process); otherwise CPX_ERR_CONFIG with the path and the reason in err. */
int cpx_gw_signer_check(const cpx_gw_config_t *cfg, char *err, size_t err_size);

/* Non-zero once the signer died or its channel broke: the gateway has been asked to
 * stop (cpx_gw_server_stop) and must exit non-zero so its supervisor restarts it. */
int cpx_gw_signer_lost(void);

#endif
