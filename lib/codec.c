/* codec.c — size-checked, memory-bounded protobuf-c decode; encode helpers. */
#include "cpx/codec.h"

#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/limits.h"

/* A malloc-backed allocator that refuses to go past a budget. Memory it returns is
 * plain malloc memory, so messages are freed with the default allocator. */
typedef struct budget {
    size_t left;
} budget_t;

static void *budget_alloc(void *data, size_t size)
{
    budget_t *b = data;
    if (size > b->left)
        return NULL;
    b->left -= size;
    return malloc(size ? size : 1);
}

static void budget_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

int cpx_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
               size_t max_len, ProtobufCMessage **out)
{
    if (!desc || !out || (!buf && len))
        return CPX_ERR_ARG;
    *out = NULL;
    if (len > max_len)
        return CPX_ERR_TOO_LARGE;
    budget_t budget = {.left = CPX_MAX_DECODE_MEMORY};
    ProtobufCAllocator alloc = {.alloc = budget_alloc, .free = budget_free,
                                .allocator_data = &budget};
    static const uint8_t empty[1];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &alloc, len, buf ? buf : empty);
    if (!m)
        return CPX_ERR_DECODE;
    *out = m;
    return CPX_OK;
}

int cpx_decode_client_frame(const uint8_t *buf, size_t len, cpx_client_frame_t **out)
{
    return cpx_decode(&cpx__v1__client_frame__descriptor, buf, len, CPX_MAX_FRAME_BYTES,
                      (ProtobufCMessage **)out);
}

int cpx_decode_server_frame(const uint8_t *buf, size_t len, cpx_server_frame_t **out)
{
    return cpx_decode(&cpx__v1__server_frame__descriptor, buf, len, CPX_MAX_FRAME_BYTES,
                      (ProtobufCMessage **)out);
}

int cpx_decode_envelope(const uint8_t *buf, size_t len, cpx_envelope_t **out)
{
    return cpx_decode(&cpx__v1__envelope__descriptor, buf, len, CPX_MAX_ENVELOPE_BYTES,
                      (ProtobufCMessage **)out);
}

int cpx_decode_audit_leaf(const uint8_t *buf, size_t len, cpx_audit_leaf_t **out)
{
    return cpx_decode(&cpx__v1__audit_leaf__descriptor, buf, len, CPX_MAX_LEAF_BYTES,
                      (ProtobufCMessage **)out);
}

int cpx_decode_sth(const uint8_t *buf, size_t len, cpx_sth_t **out)
{
    return cpx_decode(&cpx__v1__signed_tree_head__descriptor, buf, len, 4096,
                      (ProtobufCMessage **)out);
}

void cpx_msg_free(void *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}

int cpx_encode(const void *msg, uint8_t **out, size_t *len)
{
    if (!msg || !out || !len)
        return CPX_ERR_ARG;
    size_t n = protobuf_c_message_get_packed_size((const ProtobufCMessage *)msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return CPX_ERR_NOMEM;
    *len = protobuf_c_message_pack((const ProtobufCMessage *)msg, buf);
    *out = buf;
    return CPX_OK;
}

int cpx_encode_into(const void *msg, uint8_t *buf, size_t size, size_t *len)
{
    if (!msg || !len)
        return CPX_ERR_ARG;
    size_t n = protobuf_c_message_get_packed_size((const ProtobufCMessage *)msg);
    if (n > size)
        return CPX_ERR_TOO_LARGE;
    *len = protobuf_c_message_pack((const ProtobufCMessage *)msg, buf);
    return CPX_OK;
}

const ProtobufCMessage *cpx_envelope_body(const cpx_envelope_t *env)
{
    if (!env)
        return NULL;
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT: return &env->discovery_report->base;
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT: return &env->assessment->base;
    case CPX__V1__ENVELOPE__BODY_REFERRAL: return &env->referral->base;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION: return &env->disposition->base;
    case CPX__V1__ENVELOPE__BODY_FOLLOW_UP: return &env->follow_up->base;
    case CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE: return &env->release_notice->base;
    case CPX__V1__ENVELOPE__BODY_SEAL_ORDER: return &env->seal_order->base;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_REQUEST: return &env->sealed_access_request->base;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_DECISION: return &env->sealed_access_decision->base;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_READ: return &env->sealed_access_read->base;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_APPROVAL: return &env->sealed_access_approval->base;
    case CPX__V1__ENVELOPE__BODY_ESCALATION: return &env->escalation->base;
    case CPX__V1__ENVELOPE__BODY_NOTICE: return &env->notice->base;
    case CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION: return &env->referral_revocation->base;
    default: return NULL;
    }
}

const char *cpx_body_kind_name(int body_case)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&cpx__v1__envelope__descriptor, (unsigned)body_case);
    if (!f || body_case < 20)
        return "";
    return f->name;
}
