/* gwkey.c — gateway signing-key rotation: the hand-over leaf and the current-key record. */
#include "cpx/gwkey.h"

#include <string.h>

#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"

int cpx_gwkey_is_handover(const cpx_audit_leaf_t *lf)
{
    return lf && lf->event == CPX__V1__AUDIT_EVENT__KEY_ENROLLED && lf->sender &&
           lf->detail && !strcmp(lf->sender, CPX_AUDIT_GATEWAY_SENDER) &&
           !strcmp(lf->detail, CPX_AUDIT_HANDOVER_DETAIL);
}

int cpx_gwkey_check_current(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *key,
                            uint8_t current_id[CPX_KEY_ID_LEN])
{
    if (!audit || !txn || !key)
        return CPX_ERR_ARG;
    uint8_t cur[CPX_ED25519_PUB_LEN], raw[CPX_ED25519_PUB_LEN];
    int rc = cpx_audit_gateway_keys(audit, txn, NULL, NULL, cur);
    if (rc == CPX_ERR_NOT_FOUND)
        return CPX_OK;
    if (rc)
        return rc;
    cpx_key_public_raw(key, raw);
    if (!memcmp(raw, cur, sizeof raw))
        return CPX_OK;
    if (current_id) {
        uint8_t h[CPX_SHA256_LEN];
        cpx_sha256(cur, sizeof cur, h);
        memcpy(current_id, h, CPX_KEY_ID_LEN);
    }
    return CPX_ERR_REFUSED;
}

int cpx_gwkey_rotate(cpx_audit_t *audit, MDB_txn *txn, const cpx_key_t *old_key,
                     const cpx_key_t *new_key, int64_t now_ms, uint64_t *seq_out,
                     cpx_sth_t **head_out)
{
    if (head_out)
        *head_out = NULL;
    if (!audit || !txn || !old_key || !new_key || !cpx_key_has_private(old_key))
        return CPX_ERR_ARG;
    int rc = cpx_gwkey_check_current(audit, txn, old_key, NULL);
    if (rc)
        return rc;
    uint8_t old_raw[CPX_ED25519_PUB_LEN], raw[CPX_ED25519_PUB_LEN], kid[CPX_KEY_ID_LEN];
    cpx_key_public_raw(old_key, old_raw);
    cpx_key_public_raw(new_key, raw);
    if (!memcmp(old_raw, raw, sizeof raw))
        return CPX_ERR_EXISTS;
    cpx_key_id(new_key, kid);

    /* A log not yet signed gets its first head (and so its identity) from the old key
     * before the hand-over, so the log id is the first key's whatever happens next. */
    if ((rc = cpx_audit_sign_head(audit, txn, old_key, now_ms, NULL)))
        return rc;
    cpx_audit_leaf_t lf = CPX__V1__AUDIT_LEAF__INIT;
    lf.event = CPX__V1__AUDIT_EVENT__KEY_ENROLLED;
    lf.sender = (char *)CPX_AUDIT_GATEWAY_SENDER;
    lf.key = (ProtobufCBinaryData){sizeof raw, raw};
    lf.key_id = (ProtobufCBinaryData){sizeof kid, kid};
    lf.detail = (char *)CPX_AUDIT_HANDOVER_DETAIL;
    lf.time_ms = now_ms;
    uint64_t seq = 0;
    if ((rc = cpx_audit_append(audit, txn, &lf, &seq)))
        return rc;
    /* the outgoing key vouches for the incoming one: it signs the head covering the leaf */
    if ((rc = cpx_audit_sign_head(audit, txn, old_key, now_ms, head_out)))
        return rc;
    cpx_audit_dbs_t db;
    cpx_audit_dbs(audit, &db);
    MDB_val k = {strlen(CPX_AUDIT_META_CURRENT), CPX_AUDIT_META_CURRENT};
    MDB_val v = {sizeof raw, raw};
    if ((rc = mdb_put(txn, db.meta, &k, &v, 0))) {
        if (head_out)
            cpx_msg_free(*head_out), *head_out = NULL;
        return cpx_store_err(rc, "gwkey: put current key");
    }
    char hex[2 * CPX_KEY_ID_LEN + 1];
    cpx_hex(kid, sizeof kid, hex);
    cpx_log_info("gwkey", "msg=\"gateway key rotated\" seq=%llu new_key_id=%s",
                 (unsigned long long)seq, hex);
    if (seq_out)
        *seq_out = seq;
    return CPX_OK;
}
