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

/* ---- arena decode ------------------------------------------------------------------ */

/* Blocks are chained; the first is sized from the input (an unpacked message takes
 * roughly its wire size plus its structs), later ones double. The budget is the same
 * CPX_MAX_DECODE_MEMORY as cpx_decode's, counted in block bytes. */
typedef struct block {
    struct block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} block_t;

struct cpx_arena {
    block_t *head;
    size_t total;
};

#define ARENA_ALIGN 16u

static block_t *arena_block(cpx_arena_t *a, size_t min)
{
    size_t size = a->head ? a->head->size * 2 : 0, room = CPX_MAX_DECODE_MEMORY - a->total;
    if (size < min)
        size = min;
    if (size > room)
        size = room;  /* the last block takes what the budget has left */
    if (size < min)
        return NULL;
    block_t *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = a->head;
    b->size = size;
    b->used = 0;
    a->head = b;
    a->total += size;
    return b;
}

static void *arena_alloc(void *data, size_t size)
{
    cpx_arena_t *a = data;
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (!size)
        size = ARENA_ALIGN;
    block_t *b = a->head;
    if (!b || b->size - b->used < size) {
        if (size > CPX_MAX_DECODE_MEMORY || !(b = arena_block(a, size)))
            return NULL;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static void arena_nofree(void *data, void *ptr)
{
    (void)data;
    (void)ptr;  /* the whole arena goes at once */
}

void cpx_arena_free(cpx_arena_t **arena)
{
    if (!arena || !*arena)
        return;
    block_t *b = (*arena)->head;
    free(*arena);
    while (b) {
        block_t *n = b->next;
        free(b);
        b = n;
    }
    *arena = NULL;
}

int cpx_decode_in_arena(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        size_t max_len, cpx_arena_t **arena_out, ProtobufCMessage **out)
{
    if (!desc || !out || !arena_out || (!buf && len))
        return CPX_ERR_ARG;
    *out = NULL;
    *arena_out = NULL;
    if (len > max_len)
        return CPX_ERR_TOO_LARGE;
    cpx_arena_t *a = calloc(1, sizeof *a);
    if (!a || !arena_block(a, len * 2 + 4096)) {
        cpx_arena_free(&a);
        return CPX_ERR_NOMEM;
    }
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_nofree, .allocator_data = a};
    static const uint8_t empty[1];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &alloc, len, buf ? buf : empty);
    if (!m) {
        cpx_arena_free(&a);
        return CPX_ERR_DECODE;
    }
    *arena_out = a;
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
