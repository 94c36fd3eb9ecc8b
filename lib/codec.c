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

/* ---- varints ----------------------------------------------------------------------- */

size_t cpx_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v > 0x7f) {
        v >>= 7;
        n++;
    }
    return n;
}

int cpx_varint_get(const uint8_t *b, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t c = b[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

size_t cpx_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v > 0x7f) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int cpx_wire_field(const uint8_t *b, size_t len, size_t *pos, uint32_t *field, unsigned *wire,
                   uint64_t *v, size_t *payload)
{
    uint64_t tag;
    if (cpx_varint_get(b, len, pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (unsigned)(tag & 7);
    switch (*wire) {
    case 0:
        return cpx_varint_get(b, len, pos, v);
    case 1:
    case 5: {
        size_t w = *wire == 1 ? 8 : 4;
        if (len - *pos < w)
            return -1;
        *pos += w;
        return 0;
    }
    case 2:
        if (cpx_varint_get(b, len, pos, v) || *v > len - *pos)
            return -1;
        *payload = *pos;
        *pos += (size_t)*v;
        return 0;
    default:
        return -1;
    }
}

/* ---- envelope spans of a Submit frame ---------------------------------------------- */

/* The field at *pos, varint or length-delimited only (-1 otherwise); for the latter its
 * payload (*start, *plen). */
static int next_field(const uint8_t *b, size_t len, size_t *pos, uint32_t *field,
                      unsigned *wire, size_t *start, size_t *plen)
{
    uint64_t v;
    if (cpx_wire_field(b, len, pos, field, wire, &v, start) || (*wire != 0 && *wire != 2))
        return -1;
    if (*wire == 2)
        *plen = (size_t)v;
    return 0;
}

int cpx_submit_envelope_spans(const uint8_t *buf, size_t len, size_t n, size_t *off, size_t *lens)
{
    size_t pos = 0, s = 0, l = 0;
    uint32_t f;
    unsigned w;
    /* ClientFrame: exactly one field, submit (1). */
    if (!buf || next_field(buf, len, &pos, &f, &w, &s, &l) || f != 1 || w != 2 || pos != len)
        return CPX_ERR_DECODE;
    /* Submit: envelope (1) or batch (2), once; grouped_acks (3, a varint) at most once. */
    const size_t end = s + l;
    size_t cs = 0, cl = 0;
    uint32_t content = 0, seen = 0;
    for (pos = s; pos < end;) {
        if (next_field(buf, end, &pos, &f, &w, &s, &l) || f < 1 || f > 3 || (seen & (1u << f)) ||
            w != (f == 3 ? 0u : 2u))
            return CPX_ERR_DECODE;
        seen |= 1u << f;
        if (f == 3)
            continue;
        if (content)  /* both envelope and batch: a oneof set twice */
            return CPX_ERR_DECODE;
        content = f;
        cs = s;
        cl = l;
    }
    if (content == 1) {
        if (n != 1)
            return CPX_ERR_DECODE;
        off[0] = cs;
        lens[0] = cl;
        return CPX_OK;
    }
    if (content != 2)
        return CPX_ERR_DECODE;
    /* Batch: envelopes (1), exactly n of them. */
    size_t k = 0;
    for (pos = cs; pos < cs + cl;) {
        if (next_field(buf, cs + cl, &pos, &f, &w, &s, &l) || f != 1 || w != 2 || k == n)
            return CPX_ERR_DECODE;
        off[k] = s;
        lens[k++] = l;
    }
    return k == n ? CPX_OK : CPX_ERR_DECODE;
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
