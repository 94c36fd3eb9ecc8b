/* cpx/codec.h — bytes <-> cpx.v1 messages, with every size checked first.
 *
 * Decoding checks the length against limits.h *before* protobuf-c sees the bytes and
 * unpacks with a bounded allocator (CPX_MAX_DECODE_MEMORY), so no input, however
 * crafted, can make a decode allocate without bound or crash. Decoding checks only
 * the wire format: run cpx_validate_* (validate.h) on every decoded message.
 *
 * Ownership: a decoded message is owned by the caller and freed with cpx_msg_free
 * (protobuf_c_message_free_unpacked with the default allocator). Encoded buffers
 * are malloc'd, owned by the caller, freed with free(). */
#ifndef CPX_CODEC_H
#define CPX_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cpx/v1/audit.pb-c.h"
#include "cpx/v1/bodies.pb-c.h"
#include "cpx/v1/common.pb-c.h"
#include "cpx/v1/envelope.pb-c.h"
#include "cpx/v1/frames.pb-c.h"

/* Short names for the generated types. */
typedef Cpx__V1__Envelope cpx_envelope_t;
typedef Cpx__V1__ClientFrame cpx_client_frame_t;
typedef Cpx__V1__ServerFrame cpx_server_frame_t;
typedef Cpx__V1__AuditLeaf cpx_audit_leaf_t;
typedef Cpx__V1__SignedTreeHead cpx_sth_t;

/* Unpacks len bytes as desc; refuses len > max_len (CPX_ERR_TOO_LARGE) and input the
 * wire format rejects or that needs more than CPX_MAX_DECODE_MEMORY (CPX_ERR_DECODE).
 * On success *out is the caller's. */
int cpx_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
               size_t max_len, ProtobufCMessage **out);

/* The same decode into an arena: every allocation of the message is carved from a few
 * large blocks that *arena_out owns, so the message is freed in one call
 * (cpx_arena_free) instead of one free per field, and decoding does not call malloc per
 * field either. For the gateway's hot path, where a 100-envelope batch is thousands of
 * small allocations. Same limits and results as cpx_decode; on failure nothing is left
 * to free (*arena_out and *out are NULL). Never pass such a message to cpx_msg_free. */
typedef struct cpx_arena cpx_arena_t;
int cpx_decode_in_arena(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        size_t max_len, cpx_arena_t **arena_out, ProtobufCMessage **out);
/* Frees the arena and every message decoded into it; accepts NULL and *arena == NULL. */
void cpx_arena_free(cpx_arena_t **arena);

/* Typed shorthands: limits CPX_MAX_FRAME_BYTES for frames, CPX_MAX_ENVELOPE_BYTES for
 * envelopes, CPX_MAX_LEAF_BYTES for audit leaves. */
int cpx_decode_client_frame(const uint8_t *buf, size_t len, cpx_client_frame_t **out);

/* Protobuf varints, for frames assembled around bytes already encoded: how many bytes
 * v takes, and v written at p (at most 10 bytes; returns how many). */
size_t cpx_varint_len(uint64_t v);
size_t cpx_varint_put(uint8_t *p, uint64_t v);
/* Reads the varint at b[*pos] (b holds len bytes) into *v and moves *pos past it. -1
 * when it runs past len or over 10 bytes (then *pos is undefined). */
int cpx_varint_get(const uint8_t *b, size_t len, size_t *pos, uint64_t *v);

/* Reads the field at b[*pos] (b holds len bytes), for code that walks encoded bytes
 * without decoding them: its number (*field) and wire type (*wire), and moves *pos
 * past it. A varint (0) leaves its value in *v; a length-delimited field (2) its
 * payload's length in *v and the payload's offset in *payload; fixed64 (1) and fixed32
 * (5) are skipped. -1 (then *pos is undefined) for field 0 or above 2^29 - 1, groups,
 * an unknown wire type, or a field that runs past len. */
int cpx_wire_field(const uint8_t *b, size_t len, size_t *pos, uint32_t *field, unsigned *wire,
                   uint64_t *v, size_t *payload);

/* Where the envelopes of an encoded Submit ClientFrame lie in its bytes: off[i], len[i]
 * for envelope i, in order, so they can be kept as received instead of encoded again
 * (they decode to the very message the frame decodes to). Only for the plain shape —
 * every field once, no field the schema does not know at the Submit and Batch levels —
 * and exactly n envelopes; anything else (including a frame that would not decode) is
 * CPX_ERR_DECODE, and the caller encodes the decoded envelopes instead. */
int cpx_submit_envelope_spans(const uint8_t *buf, size_t len, size_t n, size_t *off, size_t *lens);
int cpx_decode_server_frame(const uint8_t *buf, size_t len, cpx_server_frame_t **out);
int cpx_decode_envelope(const uint8_t *buf, size_t len, cpx_envelope_t **out);
int cpx_decode_audit_leaf(const uint8_t *buf, size_t len, cpx_audit_leaf_t **out);
int cpx_decode_sth(const uint8_t *buf, size_t len, cpx_sth_t **out);

/* Frees a decoded message; accepts NULL. Use only for messages from cpx_decode*. */
void cpx_msg_free(void *msg);

/* Packs msg into a new malloc'd buffer; *len receives its size. CPX_ERR_NOMEM on failure. */
int cpx_encode(const void *msg, uint8_t **out, size_t *len);

/* Packs msg into buf when it fits in size bytes (CPX_ERR_TOO_LARGE otherwise);
 * *len receives the packed size. No allocation. */
int cpx_encode_into(const void *msg, uint8_t *buf, size_t size, size_t *len);

/* The body of an envelope as a generic message (NULL when none is set), and the
 * oneof field name of its kind ("discovery_report", ...; "" when none). */
const ProtobufCMessage *cpx_envelope_body(const cpx_envelope_t *env);
const char *cpx_body_kind_name(int body_case);

#endif
