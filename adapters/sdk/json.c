/* json.c — the connectors' JSON: envelopes in, deliveries out, in the JSON form of
 * cpx/json.h (docs/json.md), so an agency's developers learn one form. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/adapter.h"
#include "cpx/json.h"

int cpx_adapter_json_to_envelope(const char *json, size_t len, cpx_envelope_t **out,
                                 cpx_errors_t *errs)
{
    *out = NULL;
    ProtobufCMessage *m = NULL;
    int rc = cpx_json_loads_msg(&cpx__v1__envelope__descriptor, json, len, &m, errs);
    if (rc == CPX_ERR_DECODE)
        rc = CPX_ERR_INVALID;
    if (rc != CPX_OK)
        return rc;
    cpx_envelope_t *env = (cpx_envelope_t *)m;
    /* identity and signature are the adapter's to set */
    size_t before = errs->count;
    if (env->message_id.len)
        cpx_errors_add(errs, "message_id", "set_by_adapter", "leave it out: the adapter sets it");
    if (env->sender && env->sender[0])
        cpx_errors_add(errs, "sender", "set_by_adapter", "leave it out: the adapter sets it");
    if (env->n_commitments || env->n_salts || env->signature)
        cpx_errors_add(errs, "signature", "set_by_adapter", "leave it out: the adapter signs");
    if (env->body_case == CPX__V1__ENVELOPE__BODY__NOT_SET)
        cpx_errors_add(errs, "body", "required", "no body (e.g. discovery_report)");
    if (errs->count > before) {
        cpx_msg_free(env);
        return CPX_ERR_INVALID;
    }
    *out = env;
    return CPX_OK;
}

char *cpx_adapter_delivery_json(uint64_t delivery_id, const cpx_envelope_t *env,
                                const uint32_t *withheld, size_t n_withheld)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char idhex[2 * CPX_MAX_MESSAGE_ID + 1] = "";
    if (env->message_id.len <= CPX_MAX_MESSAGE_ID)
        cpx_hex(env->message_id.data, env->message_id.len, idhex);
    json_object_set_new(o, "delivery_id", json_integer((json_int_t)delivery_id));
    json_object_set_new(o, "message_id", json_string(idhex));
    json_object_set_new(o, "sender", json_string(env->sender ? env->sender : ""));
    if (env->case_id && env->case_id[0])
        json_object_set_new(o, "case_id", json_string(env->case_id));
    json_object_set_new(o, "created_ms", json_integer(env->created_ms));
    const ProtobufCEnumValue *pr =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__priority__descriptor, env->priority);
    json_object_set_new(o, "priority", json_string(pr ? pr->name : "PRIORITY_UNSPECIFIED"));
    if (env->in_reply_to.len && env->in_reply_to.len <= CPX_MAX_MESSAGE_ID) {
        char r[2 * CPX_MAX_MESSAGE_ID + 1];
        cpx_hex(env->in_reply_to.data, env->in_reply_to.len, r);
        json_object_set_new(o, "in_reply_to", json_string(r));
    }
    json_object_set_new(o, "body_kind", json_string(cpx_body_kind_name(env->body_case)));
    json_t *w = json_array();
    for (size_t i = 0; w && i < n_withheld; i++)
        json_array_append_new(w, json_integer(withheld[i]));
    json_object_set_new(o, "withheld", w);
    const ProtobufCMessage *body = cpx_envelope_body(env);
    json_object_set_new(o, "body", body ? cpx_json_from_msg(body) : json_null());
    /* Chinese text stays UTF-8, not \u escapes: the local system reads it as is */
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
