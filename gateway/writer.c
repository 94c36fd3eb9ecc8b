/* writer.c — Submit and DeliveryAck processing inside the cycle's write transaction. */
#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caseindex.h"
#include "outbox.h"
#include "sealed.h"
#include "verify.h"
#include "cpx/envsign.h"
#include "cpx/str.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/validate.h"

#define FALLBACK_DEPT "CIVIL_AFFAIRS"
#define RETRY_OVERLOADED_MS 1000u
#define RETRY_STORE_MS 5000u

typedef Cpx__V1__Nack nack_t;

/* ---- replies --------------------------------------------------------------------- */

static int push_nack(cpx_gw_t *self, const cpx_gw_in_t *in, const ProtobufCBinaryData *mid,
                     int code, const cpx_errors_t *errs, int retryable, uint32_t retry_after,
                     uint64_t leaf_seq)
{
    nack_t n = CPX__V1__NACK__INIT;
    Cpx__V1__FieldError fe[CPX_MAX_FIELD_ERRORS];
    Cpx__V1__FieldError *fp[CPX_MAX_FIELD_ERRORS];
    if (mid)
        n.message_id = *mid;
    n.code = code;
    n.retryable = retryable;
    n.retry_after_ms = retry_after;
    n.leaf_seq = leaf_seq;
    size_t ne = errs ? errs->count : 0;
    for (size_t i = 0; i < ne; i++) {
        cpx__v1__field_error__init(&fe[i]);
        fe[i].path = (char *)errs->items[i].path;
        fe[i].rule = (char *)errs->items[i].rule;
        fe[i].message = (char *)errs->items[i].message;
        fp[i] = &fe[i];
    }
    n.n_errors = ne;
    n.errors = fp;
    cpx_server_frame_t f = CPX__V1__SERVER_FRAME__INIT;
    f.frame_case = CPX__V1__SERVER_FRAME__FRAME_NACK;
    f.nack = &n;
    int rc = cpx_gw_out_frame(self, in->rid, in->rid_len, &f, OUT_NACK);
    if (!rc && mid && mid->len <= CPX_MAX_MESSAGE_ID) {
        cpx_gw_out_t *o = &self->out[self->n_out - 1];
        memcpy(o->message_id, mid->data, mid->len);
        o->message_id_len = mid->len;
    }
    return rc;
}

static const char *code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__error_code__descriptor, code);
    return v ? v->name : "ERROR";
}

/* Refusal: REJECTED leaf (reason = code and every field error) and a Nack. */
static int refuse(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env, int code,
                  const cpx_errors_t *errs)
{
    char reason[1024];
    int w = snprintf(reason, sizeof reason, "%s", code_name(code));
    if (errs && errs->count && w > 0 && (size_t)w < sizeof reason - 2) {
        memcpy(reason + w, ": ", 3);
        cpx_errors_format(errs, reason + w + 2, sizeof reason - (size_t)w - 2);
    }
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__REJECTED;
    leaf.sender = (char *)in->dept;
    leaf.reason = reason;
    if (env) {
        leaf.message_id = env->message_id;
        leaf.body_kind = (char *)cpx_body_kind_name(env->body_case);
        if (env->signature)
            leaf.key_id = env->signature->key_id;
    }
    uint64_t seq = 0;
    int rc = cpx_gw_leaf(self, &leaf, &seq);
    if (rc)
        return rc;
    self->stat_rejected++;
    cpx_log_info("writer", "msg=rejected dept=%s code=%s leaf=%llu", in->dept, code_name(code),
                 (unsigned long long)seq);
    return push_nack(self, in, env ? &env->message_id : NULL, code, errs, 0, 0, seq);
}

static int refuse1(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env, int code,
                   const char *path, const char *rule, const char *msg)
{
    cpx_errors_t errs = {0};
    cpx_errors_add(&errs, path, rule, "%s", msg);
    return refuse(self, in, env, code, &errs);
}

static cpx_gw_out_t *push_ack(cpx_gw_t *self, const cpx_gw_in_t *in, const uint8_t *mid,
                              size_t mid_len, uint64_t leaf_seq, uint64_t tree_size,
                              const char *case_id, int duplicate)
{
    cpx_gw_out_t *o = cpx_gw_out_push(self, OUT_ACK, in->rid, in->rid_len);
    if (!o)
        return NULL;
    memcpy(o->message_id, mid, mid_len);
    o->message_id_len = mid_len;
    o->leaf_seq = leaf_seq;
    o->tree_size = tree_size;
    o->duplicate = duplicate;
    o->group = in->ack_group;
    cpx_strcopy(o->case_id, sizeof o->case_id, case_id);
    return o;
}

static void seen_add(cpx_gw_t *self, size_t out_index);

int cpx_gw_writer_refuse(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                         int code, const char *path, const char *rule, const char *msg)
{
    return refuse1(self, in, env, code, path, rule, msg);
}

int cpx_gw_writer_ack(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                      uint64_t leaf_seq, const char *case_id)
{
    if (!push_ack(self, in, env->message_id.data, env->message_id.len, leaf_seq, 0, case_id, 0))
        return CPX_ERR_NOMEM;
    seen_add(self, self->n_out - 1);
    self->stat_accepted++;
    return CPX_OK;
}

/* ---- message ids accepted in this cycle ----------------------------------------- */

static size_t id_hash(const uint8_t *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    return (size_t)h;
}

static cpx_gw_out_t *seen_find(cpx_gw_t *self, const uint8_t *id, size_t len)
{
    for (size_t i = id_hash(id, len) & (self->seen_cap - 1);; i = (i + 1) & (self->seen_cap - 1)) {
        uint32_t v = self->seen_idx[i];
        if (!v)
            return NULL;
        cpx_gw_out_t *o = &self->out[v - 1];
        if (o->message_id_len == len && !memcmp(o->message_id, id, len))
            return o;
    }
}

static void seen_add(cpx_gw_t *self, size_t out_index)
{
    cpx_gw_out_t *o = &self->out[out_index];
    size_t i = id_hash(o->message_id, o->message_id_len) & (self->seen_cap - 1);
    while (self->seen_idx[i])
        i = (i + 1) & (self->seen_cap - 1);
    self->seen_idx[i] = (uint32_t)out_index + 1;
}

/* ---- helpers --------------------------------------------------------------------- */

static void unprepare(cpx_gw_in_t *in)
{
    free(in->res);
    free(in->rcs);
    free(in->ep);
    free(in->enc);
    in->res = NULL;
    in->rcs = NULL;
    in->ep = NULL;
    in->enc = NULL;
    in->n_ep = 0;
    in->ep_in_frame = 0;
}


/* cpx_registry_signing_key in the cycle's transaction, remembered for the rest of the
 * cycle: the envelopes of a batch all name one key, and only this transaction could
 * change the registry (it does not). */
static int enrolled_key(cpx_gw_t *self, const char *dept, const uint8_t key_id[CPX_KEY_ID_LEN],
                        uint8_t pub[CPX_ED25519_PUB_LEN])
{
    if (self->key_memo.cycle != self->cycles || strcmp(self->key_memo.dept, dept) ||
        memcmp(self->key_memo.key_id, key_id, CPX_KEY_ID_LEN)) {
        self->key_memo.rc = cpx_registry_signing_key(self->reg, self->txn, dept, key_id,
                                                     self->key_memo.pub);
        cpx_strcopy(self->key_memo.dept, sizeof self->key_memo.dept, dept);
        memcpy(self->key_memo.key_id, key_id, CPX_KEY_ID_LEN);
        self->key_memo.cycle = self->cycles;
    }
    memcpy(pub, self->key_memo.pub, CPX_ED25519_PUB_LEN);
    return self->key_memo.rc;
}

static cpx_key_t *signing_key(cpx_gw_t *self, const uint8_t pub[CPX_ED25519_PUB_LEN])
{
    for (size_t i = 0; i < self->n_keycache; i++)
        if (!memcmp(self->keycache[i].pub, pub, CPX_ED25519_PUB_LEN))
            return self->keycache[i].key;
    cpx_key_t *k = cpx_key_from_raw_public(pub);
    if (!k)
        return NULL;
    size_t slot = self->n_keycache < CPX_GW_KEYCACHE ? self->n_keycache++
                                                     : (size_t)(pub[0] % CPX_GW_KEYCACHE);
    cpx_key_destroy(&self->keycache[slot].key);
    memcpy(self->keycache[slot].pub, pub, CPX_ED25519_PUB_LEN);
    self->keycache[slot].key = k;
    return k;
}

static int lookup_referral(void *arg, const uint8_t *id, size_t len, cpx_route_referral_t *out)
{
    cpx_gw_t *self = arg;
    cpx_envelope_t *env = NULL;
    int rc = cpx_gw_cases_envelope(self->cases, self->txn, id, len, &env);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    snprintf(out->sender, sizeof out->sender, "%s", env->sender ? env->sender : "");
    if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL && env->referral && env->referral->to)
        snprintf(out->recipient, sizeof out->recipient, "%s", env->referral->to);
    else if (cpx_gw_ci_referral_to(self, id, len, out->recipient) != CPX_OK)
        out->recipient[0] = '\0';  /* not a referral the case index tracks either */
    cpx_msg_free(env);
    return CPX_OK;
}

static void add_recipient(cpx_route_t *r, const char *dept, int prio)
{
    if (!dept || !cpx_dept_code_valid(dept) || r->n_recipients == CPX_MAX_RECIPIENTS)
        return;
    for (size_t i = 0; i < r->n_recipients; i++)
        if (!strcmp(r->recipients[i].dept, dept))
            return;
    cpx_route_recipient_t *x = &r->recipients[r->n_recipients++];
    memset(x, 0, sizeof *x);
    snprintf(x->dept, sizeof x->dept, "%s", dept);
    x->priority = prio;
    snprintf(x->rule, sizeof x->rule, "fallback");
}

/* Without routing rules: the explicit recipients, a referral's receiver, and the lead. */
static void route_fallback(const cpx_envelope_t *env, cpx_route_t *r)
{
    memset(r, 0, sizeof *r);
    r->priority = env->priority;
    for (size_t i = 0; i < env->n_recipients; i++)
        if (strcmp(env->recipients[i], env->sender))
            add_recipient(r, env->recipients[i], env->priority);
    if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL && env->referral &&
        env->referral->to && strcmp(env->referral->to, env->sender))
        add_recipient(r, env->referral->to, env->priority);
    if (strcmp(env->sender, FALLBACK_DEPT))
        add_recipient(r, FALLBACK_DEPT, env->priority);
    r->unrouted = r->n_recipients == 0;
    if (r->unrouted)
        add_recipient(r, FALLBACK_DEPT, env->priority);
}

/* ---- Submit ---------------------------------------------------------------------- */

static int duplicate(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                     int *handled)
{
    const ProtobufCBinaryData *mid = &env->message_id;
    *handled = 0;
    if (mid->len == 0 || mid->len > CPX_MAX_MESSAGE_ID)
        return CPX_OK;  /* validation names it */
    cpx_gw_out_t *o = seen_find(self, mid->data, mid->len);
    if (o) {
        /* o points into self->out, which push_ack may grow (realloc): copy what the
         * new Ack needs first (a resend storm after a network cut crashed here) */
        char case_id[sizeof o->case_id];
        memcpy(case_id, o->case_id, sizeof case_id);
        uint64_t leaf_seq = o->leaf_seq;
        *handled = 1;
        return push_ack(self, in, mid->data, mid->len, leaf_seq, 0, case_id, 1) ? CPX_OK : CPX_ERR_NOMEM;
    }
    cpx_gw_msg_t m;
    int rc = cpx_gw_cases_lookup(self->cases, self->txn, mid->data, mid->len, &m);
    if (rc == CPX_ERR_NOT_FOUND)
        return CPX_OK;
    if (rc)
        return rc;
    *handled = 1;
    if (strcmp(m.sender, in->dept))
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__INVALID, "message_id", "unique",
                       "this message id is already used by another department");
    /* The original Ack's tree size is that of the first signed head covering the leaf
     * (every committed cycle signs one), so it is read from the log, not stored. */
    cpx_sth_t *sth = NULL;
    rc = cpx_audit_get_head(self->audit, self->txn, m.seq + 1, &sth);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
    uint64_t tree_size = sth->tree_size;
    cpx_msg_free(sth);
    return push_ack(self, in, mid->data, mid->len, m.seq, tree_size, m.case_id, 1)
               ? CPX_OK : CPX_ERR_NOMEM;
}

/* A batch verified up front (one Ed25519 check per distinct root): per-envelope outcome. */
typedef struct preverified {
    const cpx_envsign_result_t *res;
    int rc;
    const uint8_t *pub;             /* verified ahead under this key (else NULL) */
} preverified_t;

static int verify(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                  const preverified_t *pre, cpx_envsign_result_t *res, int *refused)
{
    *refused = 1;
    const Cpx__V1__Signature *sig = env->signature;
    if (!sig || sig->key_id.len != CPX_KEY_ID_LEN)
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__INVALID, "signature.key_id", "required",
                       "an 8-byte key id is required");
    uint8_t pub[CPX_ED25519_PUB_LEN];
    int rc = enrolled_key(self, in->dept, sig->key_id.data, pub);
    if (rc == CPX_ERR_NOT_FOUND || rc == CPX_ERR_REFUSED)
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__UNKNOWN_KEY, "signature.key_id",
                       rc == CPX_ERR_REFUSED ? "revoked" : "enrolled",
                       rc == CPX_ERR_REFUSED ? "this signing key has been revoked"
                                             : "no signing key with this id is enrolled for the sender");
    if (rc)
        return rc;
    cpx_key_t *key = signing_key(self, pub);
    if (!key)
        return CPX_ERR_CRYPTO;
    if (pre && pre->pub && memcmp(pre->pub, pub, CPX_ED25519_PUB_LEN))
        pre = NULL;  /* enrolled anew since it was verified ahead: verify again */
    if (pre) {
        *res = *pre->res;
        rc = pre->rc;
    } else {
        memset(res, 0, sizeof *res);
        rc = cpx_envsign_verify(env, key, res);
    }
    if (rc == CPX_ERR_BAD_SIGNATURE || rc == CPX_ERR_INVALID)
        return refuse1(self, in, env,
                       rc == CPX_ERR_BAD_SIGNATURE ? CPX__V1__ERROR_CODE__BAD_SIGNATURE
                                                   : CPX__V1__ERROR_CODE__INVALID,
                       "signature", rc == CPX_ERR_BAD_SIGNATURE ? "ed25519" : "commitments",
                       res->reason[0] ? res->reason : "signature does not verify");
    if (rc)
        return rc;
    *refused = 0;
    return CPX_OK;
}

static int accept_env(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                      const cpx_gw_envprep_t *ep, const cpx_envsign_result_t *res,
                      const char *case_id, const cpx_route_t *route)
{
    const char *rcpt[CPX_MAX_RECIPIENTS];
    for (size_t i = 0; i < route->n_recipients; i++)
        rcpt[i] = route->recipients[i].dept;
    const Cpx__V1__Signature *sig = env->signature;

    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__ACCEPTED;
    leaf.sender = (char *)in->dept;
    leaf.n_recipients = route->n_recipients;
    leaf.recipients = (char **)rcpt;
    leaf.case_ref = (char *)case_id;
    leaf.message_id = env->message_id;
    leaf.envelope_digest = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->digest};
    leaf.key_id = sig->key_id;
    leaf.body_kind = (char *)cpx_body_kind_name(env->body_case);
    ProtobufCBinaryData path[CPX_MAX_BATCH_PATH];
    if (res->batch && sig->batch) {
        leaf.batch_root = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->batch_root};
        leaf.batch_signature = sig->batch->root_signature;
        leaf.batch_index = sig->batch->index;
        leaf.batch_size = sig->batch->size;
        size_t np = sig->batch->n_path < CPX_MAX_BATCH_PATH ? sig->batch->n_path : CPX_MAX_BATCH_PATH;
        for (size_t i = 0; i < np; i++)
            path[i] = sig->batch->path[i];
        leaf.n_batch_path = np;
        leaf.batch_path = path;
    } else {
        leaf.signature = sig->ed25519;
    }
    /* The ACCEPTED leaf carries the routing outcome (recipients, matched rules, the
     * unrouted flag): one leaf per accepted message. A ROUTED leaf is written only when
     * routing changes later. */
    char detail[512] = "";
    size_t dl = 0;
    for (size_t i = 0; i < route->n_matched && dl < sizeof detail - 80; i++) {
        dl = cpx_strappend(detail, sizeof detail, dl, i ? "," : "rules=");
        dl = cpx_strappend(detail, sizeof detail, dl, route->matched[i]);
    }
    cpx_gw_ci_detail(self, env, route, detail + dl, sizeof detail - dl);
    if (detail[0])
        leaf.detail = detail;
    if (route->unrouted)
        leaf.reason = "unrouted: no rule matched; sent to the lead department";
    uint64_t accepted;
    int rc = cpx_gw_leaf(self, &leaf, &accepted);
    if (rc)
        return rc;

    for (size_t i = 0; i < route->n_recipients; i++) {
        cpx_outbox_entry_t e = {0};
        cpx_strcopy(e.dept, sizeof e.dept, route->recipients[i].dept);
        int prio = route->recipients[i].priority > (int)env->priority
                       ? route->recipients[i].priority : (int)env->priority;
        e.cls = cpx_outbox_class(prio);
        memcpy(e.message_id, env->message_id.data, env->message_id.len);
        e.message_id_len = env->message_id.len;
        e.accepted_seq = accepted;
        cpx_strcopy(e.case_id, sizeof e.case_id, case_id);
        if ((rc = cpx_outbox_put(self->ob, self->txn, &e)))
            return rc;
        cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, e.dept, 1);
        if (s) {
            s->depth++;
            s->scan_more = 1;
        }
    }

    const uint8_t *bytes;
    size_t len;
    if (ep && ep->len) {  /* as received, or encoded on the pool (cpx_gw_writer_prepare) */
        bytes = (in->ep_in_frame ? in->data : in->enc) + ep->off;
        len = ep->len;
    } else {
        static uint8_t *scratch;
        if (!scratch && !(scratch = malloc(CPX_MAX_ENVELOPE_BYTES)))
            return CPX_ERR_NOMEM;
        if ((rc = cpx_encode_into(env, scratch, CPX_MAX_ENVELOPE_BYTES, &len)))
            return rc;
        bytes = scratch;
    }
    if ((rc = cpx_gw_cases_put_message(self->cases, self->txn, accepted, env->message_id.data,
                                       env->message_id.len, in->dept, case_id, bytes, len)))
        return rc;
    if (!push_ack(self, in, env->message_id.data, env->message_id.len, accepted, 0, case_id, 0))
        return CPX_ERR_NOMEM;
    seen_add(self, self->n_out - 1);
    self->stat_accepted++;
    return CPX_OK;
}

/* Would the sealing policy have to look at this? (SEALED marking, juvenile-offence
 * reports, seal orders and sealed-access traffic.) */
static int needs_vault(const cpx_envelope_t *env)
{
    if (env->sensitivity == CPX__V1__SENSITIVITY__SEALED)
        return 1;
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_SEAL_ORDER:
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_REQUEST:
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_DECISION:
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_READ:
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_APPROVAL:
        return 1;
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT:
        for (size_t i = 0; i < env->discovery_report->n_circumstances; i++)
            if (env->discovery_report->circumstances[i] == CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE)
                return 1;
        return 0;
    default:
        return 0;
    }
}

static int submit_one(cpx_gw_t *self, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                      const cpx_gw_envprep_t *ep, const preverified_t *pre)
{
    /* Failpoint for tests (tests/integration/test_gateway_poison.py): a report whose
     * local_ref equals $CPX_FAILPOINT_CYCLE_REF fails inside the cycle as an internal
     * error would. Unset in every deployment. */
    static const char *failpoint;
    static int failpoint_read;
    if (!failpoint_read) {
        failpoint = getenv("CPX_FAILPOINT_CYCLE_REF");
        failpoint_read = 1;
    }
    if (failpoint && env->body_case == CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT &&
        !strcmp(env->discovery_report->local_ref, failpoint))
        return CPX_ERR_TOO_LARGE;

    if (!env->sender || strcmp(env->sender, in->dept))
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__SENDER_MISMATCH, "sender",
                       "authenticated", "sender must be the department that holds this connection's key");
    int handled, rc = duplicate(self, in, env, &handled);
    if (rc || handled)
        return rc;

    cpx_errors_t errs;  /* filled only when the envelope is refused */
    cpx_errors_clear(&errs);
    cpx_validate_opts_t vo = {.now_ms = self->now_ms};
    /* Validated on the pool: only a failure is run again here, for its field errors. */
    rc = ep && ep->valid_rc == CPX_OK ? CPX_OK : cpx_validate_envelope(env, &vo, &errs);
    if (rc == CPX_ERR_INVALID)
        return refuse(self, in, env, CPX__V1__ERROR_CODE__INVALID, &errs);
    if (rc)
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__INVALID, "", "validate", cpx_strerror(rc));

    cpx_envsign_result_t res;
    int refused;
    if ((rc = verify(self, in, env, pre, &res, &refused)) || refused)
        return rc;

    if (self->sealed) {  /* sealed-record traffic: gateway/sealed.c */
        int sealed_handled = 0;
        if ((rc = cpx_gw_sealed_submit(self, in, env, &res, &sealed_handled)) || sealed_handled)
            return rc;
    } else if (needs_vault(env)) {
        /* Without a sealing policy nothing that may be a sealed matter is routed at all:
         * refusing is safe, routing it as ordinary traffic would not be. */
        return refuse1(self, in, env, CPX__V1__ERROR_CODE__RULE_VIOLATION, "sensitivity",
                       "sealed_not_exchanged",
                       "sealed matters are not routed by this gateway (sealed vault not enabled)");
    }

    char case_id[CPX_MAX_CASE_ID + 1], town[CPX_MAX_DEPT_CODE + 1];
    rc = cpx_gw_ci_link(self, env, case_id, town);  /* 1: joins a minor's open case */
    if (rc == 0)
        rc = cpx_gw_cases_resolve(self->cases, self->txn, env, self->now_ms, case_id, town, &errs);
    else if (rc > 0)
        rc = CPX_OK;
    if (rc == CPX_ERR_NOT_FOUND)
        return refuse(self, in, env, CPX__V1__ERROR_CODE__UNKNOWN_REFERENCE, &errs);
    if (rc)
        return rc;

    cpx_route_t route;
    if (self->rules) {
        cpx_route_ctx_t rctx = {.now_ms = self->now_ms, .lookup = lookup_referral,
                                .lookup_arg = self, .case_town = town[0] ? town : NULL};
        rc = cpx_router_route(self->rules, env, &rctx, &route);
        if (rc == CPX_ERR_TOO_LARGE)
            return refuse1(self, in, env, CPX__V1__ERROR_CODE__TOO_LARGE, "recipients",
                           "max_recipients", "the routing rules give more recipients than allowed");
        if (rc)
            return rc;
    } else {
        route_fallback(env, &route);
    }

    for (size_t i = 0; i < route.n_recipients; i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, route.recipients[i].dept, 1);
        if (!s || s->depth + 1 > self->cfg.queue_limit) {
            cpx_log_warn("writer", "msg=overloaded recipient=%s depth=%llu", route.recipients[i].dept,
                         s ? (unsigned long long)s->depth : 0ull);
            cpx_errors_t oe = {0};
            cpx_errors_add(&oe, "recipients", "queue_limit",
                           "the outbox of %s is full; retry later", route.recipients[i].dept);
            return push_nack(self, in, &env->message_id, CPX__V1__ERROR_CODE__OVERLOADED, &oe, 1,
                             RETRY_OVERLOADED_MS, 0);
        }
    }
    int ci_code;  /* case rules (caseindex.c): a refusal names the rule */
    if ((rc = cpx_gw_ci_apply(self, env, case_id, &route, &ci_code, &errs)))
        return rc == CPX_ERR_INVALID ? refuse(self, in, env, ci_code, &errs) : rc;
    return accept_env(self, in, env, ep, &res, case_id, &route);
}

/* The key id every one of envs is signed under, when each names dept (the
 * authenticated sender) and the same key id: then all can be verified together with
 * one key. NULL otherwise: each envelope is then checked in its turn and refused, if it
 * must be, with its own reason. */
static const uint8_t *one_signer(cpx_envelope_t *const *envs, size_t n, const char *dept)
{
    if (!n || !envs[0] || !envs[0]->signature ||
        envs[0]->signature->key_id.len != CPX_KEY_ID_LEN)
        return NULL;
    const uint8_t *kid = envs[0]->signature->key_id.data;
    for (size_t i = 0; i < n; i++) {
        const cpx_envelope_t *e = envs[i];
        if (!e || !e->sender || strcmp(e->sender, dept) || !e->signature ||
            e->signature->key_id.len != CPX_KEY_ID_LEN ||
            memcmp(e->signature->key_id.data, kid, CPX_KEY_ID_LEN))
            return NULL;
    }
    return kid;
}

/* The key to verify envelopes signed under key id kid of dept with: enrolled and not
 * revoked. NULL otherwise (the writer then refuses the envelopes with the reason, or
 * verifies them on its own). Without may_evict a key that would evict another from the
 * full cache is not taken either (NULL): pool jobs hold their keys until the run ends,
 * and an eviction would free a key an earlier job holds. */
static int verifying_key(cpx_gw_t *self, const char *dept, const uint8_t *kid, int may_evict,
                         cpx_key_t **key)
{
    *key = NULL;
    uint8_t pub[CPX_ED25519_PUB_LEN];
    int rc = enrolled_key(self, dept, kid, pub);
    if (rc == CPX_ERR_NOT_FOUND || rc == CPX_ERR_REFUSED)
        return CPX_OK;
    if (rc)
        return rc;
    if (!may_evict && self->n_keycache == CPX_GW_KEYCACHE) {
        size_t i = 0;
        while (i < self->n_keycache && memcmp(self->keycache[i].pub, pub, CPX_ED25519_PUB_LEN))
            i++;
        if (i == self->n_keycache)
            return CPX_OK;
    }
    *key = signing_key(self, pub);
    return *key ? CPX_OK : CPX_ERR_CRYPTO;
}

/* When every envelope of a batch names the authenticated sender and one enrolled key,
 * verifies them together: one Ed25519 check per distinct batch root instead of one
 * per envelope. Otherwise leaves *res NULL and each envelope is checked on its own. */
static int preverify(cpx_gw_t *self, const cpx_gw_in_t *in, const Cpx__V1__Batch *b,
                     cpx_envsign_result_t **res, int **rcs)
{
    *res = NULL;
    *rcs = NULL;
    const uint8_t *kid = one_signer(b->envelopes, b->n_envelopes, in->dept);
    cpx_key_t *key = NULL;
    int rc = kid ? verifying_key(self, in->dept, kid, 1, &key) : CPX_OK;
    if (rc || !key)
        return rc;  /* without a key each envelope is refused with the reason */
    *res = calloc(b->n_envelopes, sizeof **res);
    *rcs = calloc(b->n_envelopes, sizeof **rcs);
    if (!*res || !*rcs) {
        free(*res);
        free(*rcs);
        *res = NULL;
        *rcs = NULL;
        return CPX_ERR_NOMEM;
    }
    rc = cpx_envsign_verify_batch(b->envelopes, b->n_envelopes, key, *res, *rcs);
    if (rc == CPX_ERR_ARG || rc == CPX_ERR_NOMEM) {
        free(*res);
        free(*rcs);
        *res = NULL;
        *rcs = NULL;
        return rc == CPX_ERR_NOMEM ? rc : CPX_OK;
    }
    return CPX_OK;
}

static int submit(cpx_gw_t *self, const cpx_gw_in_t *in, const Cpx__V1__Submit *sub)
{
    if (sub->content_case == CPX__V1__SUBMIT__CONTENT_ENVELOPE && sub->envelope) {
        preverified_t pv = {in->res, in->rcs ? in->rcs[0] : 0, in->ahead ? in->ahead_pub : NULL};
        return submit_one(self, in, sub->envelope, in->n_ep == 1 ? &in->ep[0] : NULL,
                          in->res ? &pv : NULL);
    }
    if (sub->content_case == CPX__V1__SUBMIT__CONTENT_BATCH && sub->batch) {
        const Cpx__V1__Batch *b = sub->batch;
        if (b->n_envelopes == 0 || b->n_envelopes > CPX_MAX_BATCH_ENVELOPES)
            return refuse1(self, in, NULL, CPX__V1__ERROR_CODE__TOO_LARGE, "submit.batch.envelopes",
                           "count", "a batch holds 1 to 1000 envelopes");
        cpx_envsign_result_t *res = in->res;
        int *rcs = in->rcs;
        int rc = res ? CPX_OK : preverify(self, in, b, &res, &rcs);
        for (size_t i = 0; i < b->n_envelopes && !rc; i++) {
            preverified_t pv = {res ? &res[i] : NULL, rcs ? rcs[i] : 0,
                                res == in->res && in->ahead ? in->ahead_pub : NULL};
            rc = submit_one(self, in, b->envelopes[i], i < in->n_ep ? &in->ep[i] : NULL,
                            res ? &pv : NULL);
        }
        if (res != in->res) {
            free(res);
            free(rcs);
        }
        return rc;
    }
    return refuse1(self, in, NULL, CPX__V1__ERROR_CODE__DECODE_FAILED, "submit", "content",
                   "a Submit carries one envelope or one batch");
}

/* Confirmations grouped in one frame: each as if it came alone. More than
 * CPX_MAX_GROUPED is refused whole (nothing is confirmed; the client sends them again
 * in smaller groups, and unconfirmed deliveries are resent meanwhile anyway). */
static int delivery_acks(cpx_gw_t *self, const cpx_gw_in_t *in, const Cpx__V1__DeliveryAcks *da)
{
    if (da->n_acks > CPX_MAX_GROUPED)
        return refuse1(self, in, NULL, CPX__V1__ERROR_CODE__TOO_LARGE, "delivery_acks.acks",
                       "count", "a DeliveryAcks frame holds at most 1000 confirmations");
    cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, in->dept, 1);
    int rc = CPX_OK;
    for (size_t i = 0; s && i < da->n_acks && !rc; i++)
        rc = cpx_gw_outbox_confirm(self, s, da->acks[i]);
    return rc;
}

/* A frame decoded ahead lives in its arena; one decoded in turn is a plain message. */
static void free_frame(cpx_gw_in_t *in, cpx_client_frame_t *f)
{
    if (in->arena)
        cpx_arena_free(&in->arena);
    else
        cpx_msg_free(f);
    in->frame = NULL;
}

int cpx_gw_writer_frame(cpx_gw_t *self, cpx_gw_in_t *in)
{
    cpx_client_frame_t *f = in->frame;
    int rc = in->prepared ? in->decode_rc : cpx_decode_client_frame(in->data, in->len, &f);
    if (rc) {
        return refuse1(self, in, NULL,
                       rc == CPX_ERR_TOO_LARGE ? CPX__V1__ERROR_CODE__TOO_LARGE
                                               : CPX__V1__ERROR_CODE__DECODE_FAILED,
                       "", "client_frame", "not a valid cpx.v1.ClientFrame");
    }
    cpx_gw_session_t *s;
    switch (f->frame_case) {
    case CPX__V1__CLIENT_FRAME__FRAME_SUBMIT:
        in->ack_group = 0;
        if (f->submit->grouped_acks && !(in->ack_group = ++self->ack_groups))
            in->ack_group = ++self->ack_groups;  /* 0 means "not grouped" */
        rc = submit(self, in, f->submit);
        break;
    case CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK:
        s = cpx_gw_sessions_get(self->sessions, in->dept, 1);
        rc = s ? cpx_gw_outbox_confirm(self, s, f->delivery_ack) : CPX_OK;
        break;
    case CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS:
        rc = delivery_acks(self, in, f->delivery_acks);
        break;
    case CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT:
        /* The server already noted that the peer spoke; the heartbeat also says how
         * many deliveries this connection reads in one frame. */
        s = cpx_gw_sessions_get(self->sessions, in->dept, 0);
        if (s && s->rid_len == in->rid_len && !memcmp(s->rid, in->rid, in->rid_len))
            s->deliveries_per_frame = f->heartbeat->deliveries_per_frame < CPX_MAX_GROUPED
                                          ? f->heartbeat->deliveries_per_frame
                                          : CPX_MAX_GROUPED;
        rc = CPX_OK;
        break;
    default:
        rc = refuse1(self, in, NULL, CPX__V1__ERROR_CODE__DECODE_FAILED, "", "frame",
                     "empty ClientFrame");
    }
    free_frame(in, f);
    in->prepared = 0;
    in->ahead = 0;
    unprepare(in);
    return rc;
}

/* After a cycle that applied nothing: a Nack for each envelope of this frame that has
 * no answer yet, so no sender waits on a message the gateway did not take. */
int cpx_gw_writer_nack_unanswered(cpx_gw_t *self, const cpx_gw_in_t *in, int code,
                                  int deterministic)
{
    cpx_client_frame_t *f = NULL;
    if (cpx_decode_client_frame(in->data, in->len, &f) != CPX_OK)
        return CPX_OK;
    if (f->frame_case != CPX__V1__CLIENT_FRAME__FRAME_SUBMIT) {
        cpx_msg_free(f);
        return CPX_OK;
    }
    const Cpx__V1__Submit *sub = f->submit;
    cpx_envelope_t *const *envs = NULL;
    size_t ne = 0;
    if (sub->content_case == CPX__V1__SUBMIT__CONTENT_ENVELOPE && sub->envelope) {
        envs = &sub->envelope;
        ne = 1;
    } else if (sub->content_case == CPX__V1__SUBMIT__CONTENT_BATCH && sub->batch) {
        envs = sub->batch->envelopes;
        ne = sub->batch->n_envelopes;
    }
    /* Refused for good only when this lone envelope is surely the cause; the members
     * of a batch are retried (adapters resend one envelope a frame, which isolates it). */
    int retryable = !(deterministic && ne == 1);
    int rc = CPX_OK;
    for (size_t i = 0; i < ne && !rc; i++) {
        const ProtobufCBinaryData *mid = &envs[i]->message_id;
        int answered = 0;
        for (size_t j = 0; j < self->n_out && !answered; j++)
            answered = self->out[j].message_id_len == mid->len && mid->len &&
                       !memcmp(self->out[j].message_id, mid->data, mid->len);
        if (!answered)
            rc = push_nack(self, in, mid, code, NULL, retryable, retryable ? 5000 : 0, 0);
    }
    cpx_msg_free(f);
    return rc;
}

void cpx_gw_writer_release(cpx_gw_in_t *in)
{
    free_frame(in, in->frame);
    in->prepared = 0;
    in->ahead = 0;
    unprepare(in);
}

/* Jobs beyond one per frame: the case index's own (cpx_gw_ci_prepare_jobs). */
#define CI_JOBS 17

/* The envelopes a Submit frame carries (none for other frames or a malformed one). */
static cpx_envelope_t *const *frame_envelopes(const cpx_gw_in_t *x, size_t *ne, int *batch)
{
    *ne = 0;
    *batch = 0;
    if (x->decode_rc || x->frame->frame_case != CPX__V1__CLIENT_FRAME__FRAME_SUBMIT)
        return NULL;
    const Cpx__V1__Submit *sub = x->frame->submit;
    if (sub->content_case == CPX__V1__SUBMIT__CONTENT_ENVELOPE && sub->envelope) {
        *ne = 1;
        return &sub->envelope;
    }
    if (sub->content_case == CPX__V1__SUBMIT__CONTENT_BATCH && sub->batch &&
        sub->batch->n_envelopes >= 1 && sub->batch->n_envelopes <= CPX_MAX_BATCH_ENVELOPES) {
        *ne = sub->batch->n_envelopes;
        *batch = 1;
        return sub->batch->envelopes;
    }
    return NULL;
}

/* Pool job, one per frame: decode, then validate and re-encode each envelope. Touches
 * only its own frame; an allocation failure leaves ep NULL (the writer then validates
 * and encodes in turn). */
typedef struct decode_ctx {
    cpx_gw_in_t *const *in;
    int64_t now_ms;
} decode_ctx_t;

static void prepare_frame(cpx_gw_in_t *x, int64_t now_ms)
{
    x->decode_rc = cpx_decode_in_arena(&cpx__v1__client_frame__descriptor, x->data, x->len,
                                       CPX_MAX_FRAME_BYTES, &x->arena,
                                       (ProtobufCMessage **)&x->frame);
    size_t ne;
    int batch;
    cpx_envelope_t *const *envs = frame_envelopes(x, &ne, &batch);
    if (!ne)
        return;
    x->ep = calloc(ne, sizeof *x->ep);
    if (!x->ep)
        return;
    /* The message store keeps each envelope as received when the frame has the plain
     * shape (the bytes decode to exactly the envelope checked here); otherwise the
     * decoded envelope encoded again. */
    size_t offs[CPX_MAX_BATCH_ENVELOPES], lens[CPX_MAX_BATCH_ENVELOPES];
    x->ep_in_frame = cpx_submit_envelope_spans(x->data, x->len, ne, offs, lens) == CPX_OK;
    size_t total = 0;
    for (size_t k = 0; k < ne && !x->ep_in_frame; k++)
        total += envs[k] ? protobuf_c_message_get_packed_size(&envs[k]->base) : 0;
    if (!x->ep_in_frame && !(x->enc = malloc(total ? total : 1))) {
        free(x->ep);
        x->ep = NULL;
        return;
    }
    x->n_ep = ne;
    cpx_validate_opts_t vo = {.now_ms = now_ms};
    size_t off = 0;
    for (size_t k = 0; k < ne; k++) {
        cpx_gw_envprep_t *p = &x->ep[k];
        p->valid_rc = CPX_ERR_INVALID;
        if (!envs[k])
            continue;
        cpx_errors_t errs;  /* recomputed by the writer when it is not empty */
        errs.count = 0;
        errs.truncated = false;
        p->valid_rc = cpx_validate_envelope(envs[k], &vo, &errs);
        if (p->valid_rc != CPX_OK)
            continue;
        if (x->ep_in_frame) {
            p->off = offs[k];
            p->len = lens[k];
        } else {
            p->off = off;
            p->len = protobuf_c_message_pack(&envs[k]->base, x->enc + off);
            off += p->len;
        }
        if (p->len > CPX_MAX_ENVELOPE_BYTES)
            p->len = 0;  /* the writer's own encoding refuses it, as for any envelope */
    }
}

static void decode_job(void *arg, size_t part)
{
    const decode_ctx_t *c = arg;
    prepare_frame(c->in[part], c->now_ms);
}

static void prepare_reset(cpx_gw_in_t *x)
{
    x->prepared = 1;
    x->ep_in_frame = 0;
    x->ahead = 0;
    x->frame = NULL;
    x->arena = NULL;
    x->res = NULL;
    x->rcs = NULL;
    x->ep = NULL;
    x->enc = NULL;
    x->n_ep = 0;
}

/* The first pool run: every frame not prepared ahead decoded, validated and encoded. */
static void decode_all(cpx_gw_t *self, cpx_gw_in_t *const *in, size_t n, cpx_gw_vjob_t *jobs)
{
    decode_ctx_t c = {.in = in, .now_ms = self->now_ms};
    size_t nj = 0;
    for (size_t i = 0; i < n; i++) {
        cpx_gw_in_t *x = in[i];
        if (x->ahead)
            continue;
        prepare_reset(x);
        jobs[nj++] = (cpx_gw_vjob_t){.fn = decode_job, .arg = &c, .part = i};
    }
    if (!nj)
        return;  /* a cycle with no frames (deadlines, deliveries), or all done ahead */
    cpx_gw_verify_run(self->verify, jobs, nj);
    memset(jobs, 0, nj * sizeof *jobs);
}

void cpx_gw_writer_ahead(cpx_gw_in_t *x, int64_t now_ms, cpx_registry_t *reg, MDB_txn *rtxn)
{
    if (x->ahead)
        return;  /* waited more than one cycle: prepared already (a reset would leak it) */
    prepare_reset(x);
    prepare_frame(x, now_ms);
    x->ahead = 1;
    size_t ne;
    int batch;
    cpx_envelope_t *const *envs = frame_envelopes(x, &ne, &batch);
    const uint8_t *kid = one_signer(envs, ne, x->dept);
    if (!kid || !reg || cpx_registry_signing_key(reg, rtxn, x->dept, kid, x->ahead_pub) != CPX_OK)
        return;
    cpx_key_t *key = cpx_key_from_raw_public(x->ahead_pub);
    x->res = calloc(ne, sizeof *x->res);
    x->rcs = calloc(ne, sizeof *x->rcs);
    int rc = key && x->res && x->rcs ? CPX_OK : CPX_ERR_NOMEM;
    if (!rc && batch) {
        rc = cpx_envsign_verify_batch(envs, ne, key, x->res, x->rcs);
        rc = rc == CPX_ERR_ARG || rc == CPX_ERR_NOMEM ? rc : CPX_OK;
    } else if (!rc) {
        x->rcs[0] = cpx_envsign_verify(envs[0], key, &x->res[0]);
    }
    cpx_key_destroy(&key);
    if (rc) {  /* verified in the frame's turn instead */
        free(x->res);
        free(x->rcs);
        x->res = NULL;
        x->rcs = NULL;
    }
}

int cpx_gw_writer_prepare(cpx_gw_t *self, cpx_gw_in_t *const *in, size_t n)
{
    cpx_gw_vjob_t *jobs = n ? calloc(n + CI_JOBS, sizeof *jobs) : NULL;
    if (n && !jobs)
        return CPX_ERR_NOMEM;
    size_t nj = 0;
    int rc = CPX_OK;
    decode_all(self, in, n, jobs);
    cpx_gw_ci_prepare_begin(self);
    for (size_t i = 0; i < n && !rc; i++) {
        cpx_gw_in_t *x = in[i];
        size_t ne;
        int batch;
        cpx_envelope_t *const *envs = frame_envelopes(x, &ne, &batch);
        if (!envs)
            continue;
        cpx_gw_ci_prepare_add(self, envs, ne);
        const uint8_t *kid = x->res ? NULL : one_signer(envs, ne, x->dept);
        if (!kid)
            continue;  /* verified ahead, or checked envelope by envelope in turn */
        cpx_key_t *key = NULL;
        if ((rc = verifying_key(self, x->dept, kid, 0, &key)) || !key)
            continue;
        x->res = calloc(ne, sizeof *x->res);
        x->rcs = calloc(ne, sizeof *x->rcs);
        if (!x->res || !x->rcs) {
            unprepare(x);
            rc = CPX_ERR_NOMEM;
            break;
        }
        jobs[nj++] = (cpx_gw_vjob_t){.envs = envs, .n = ne, .batch = batch, .key = key,
                                     .res = x->res, .rcs = x->rcs};
    }
    if (!rc && jobs)  /* the case index's hashing and encoding ride on the same pool run */
        cpx_gw_verify_run(self->verify, jobs,
                          nj + cpx_gw_ci_prepare_jobs(self, jobs + nj, CI_JOBS));
    /* A job that could not run (allocation) leaves its frame to verify on its own. */
    for (size_t j = 0, i = 0; j < nj; j++) {
        while (in[i]->res != jobs[j].res)
            i++;
        if (rc || jobs[j].rc)
            unprepare(in[i]);
    }
    free(jobs);
    return rc;
}

int cpx_gw_writer_auth_refused(cpx_gw_t *self, const uint8_t key[CPX_CURVE_KEY_LEN],
                               const char *peer)
{
    /* A flood of unknown keys must not grow the log without bound: one leaf per key per
     * auth_refused_per_key_ms, at most auth_refused_per_min leaves a minute; the next
     * leaf written says how many were suppressed. */
    if (self->now_ms - self->refused_window_ms >= 60000) {
        self->refused_window_ms = self->now_ms;
        self->refused_in_window = 0;
    }
    size_t i;
    for (i = 0; i < self->n_refused_keys; i++)
        if (!memcmp(self->refused_keys[i].key, key, CPX_CURVE_KEY_LEN))
            break;
    int recent = i < self->n_refused_keys &&
                 self->now_ms - self->refused_keys[i].last_ms < (int64_t)self->cfg.auth_refused_per_key_ms;
    if (recent || self->refused_in_window >= self->cfg.auth_refused_per_min) {
        self->refused_suppressed++;
        return CPX_OK;
    }
    if (i == self->n_refused_keys) {
        if (self->n_refused_keys < CPX_GW_REFUSED_KEYS)
            self->n_refused_keys++;
        else
            i = (size_t)(self->now_ms % CPX_GW_REFUSED_KEYS);
        memcpy(self->refused_keys[i].key, key, CPX_CURVE_KEY_LEN);
    }
    self->refused_keys[i].last_ms = self->now_ms;
    self->refused_in_window++;

    char detail[160];
    snprintf(detail, sizeof detail, "curve peer=%s suppressed_before=%llu", peer,
             (unsigned long long)self->refused_suppressed);
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__AUTH_REFUSED;
    leaf.key = (ProtobufCBinaryData){CPX_CURVE_KEY_LEN, (uint8_t *)key};
    leaf.reason = "unknown or revoked CURVE key";
    leaf.detail = detail;
    int rc = cpx_gw_leaf(self, &leaf, NULL);
    if (!rc)
        self->refused_suppressed = 0;
    return rc;
}
