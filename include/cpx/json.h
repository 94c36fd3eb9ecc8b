/* cpx/json.h — the JSON form of every cpx.v1 message (jansson), both ways.
 *
 * The mapping (docs/json.md is the normative text) is generic over the protobuf-c
 * descriptors, so it covers every message, present and future:
 *   - an object whose keys are the proto field names ("message_id", "discovery_report");
 *   - fields holding their zero value (0, false, "", empty bytes, empty repeated,
 *     absent sub-message) are omitted; a present sub-message is written even when
 *     empty ({}), because protobuf keeps its presence;
 *   - enums as their value names ("IMMEDIATE"); a number the schema does not know is
 *     written as a JSON integer (so invalid input can still be shown) but never read;
 *   - bytes as lower-case hex; int32/uint32/int64 as JSON integers; uint64 as a JSON
 *     integer, or a decimal string above 2^63-1; bools as true/false;
 *   - repeated fields as arrays; the members of a oneof as plain keys (at most one);
 *   - cpx.v1.Date as "YYYY-MM-DD" (a Date that is not a calendar date is written as
 *     {"year":..,"month":..,"day":..} so nothing is hidden, and is refused on input).
 * Input is strict: unknown keys, wrong JSON types, unknown enum names, bad hex, bad
 * dates, two members of one oneof, arrays or strings over the limits and integers out
 * of range are refused, each with the field path and a rule name. JSON null is read
 * as "absent".
 *
 * Messages built by cpx_json_to_msg are malloc'd throughout (unset strings left at
 * the descriptor default), so they are freed with cpx_msg_free, like decoded ones. */
#ifndef CPX_JSON_H
#define CPX_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "cpx/codec.h"
#include "cpx/err.h"

/* The JSON form of msg. Caller owns the result (json_decref). NULL on allocation
 * failure or a NULL msg. */
json_t *cpx_json_from_msg(const ProtobufCMessage *msg);

/* Builds a message of type desc from its JSON form. On success *out is the caller's
 * (cpx_msg_free). Returns CPX_ERR_INVALID with every problem found in errs (which the
 * caller zero-initialises; errors are appended), CPX_ERR_NOMEM, or CPX_ERR_ARG.
 * *out is NULL on failure. */
int cpx_json_to_msg(const ProtobufCMessageDescriptor *desc, const json_t *json,
                    ProtobufCMessage **out, cpx_errors_t *errs);

/* msg as JSON text (compact, one line, no trailing newline, keys in field order).
 * Caller frees the result with free(). NULL on allocation failure. */
char *cpx_json_dumps_msg(const ProtobufCMessage *msg);

/* Parses JSON text of len bytes (at most CPX_MAX_FRAME_BYTES) and builds a message
 * as cpx_json_to_msg. A JSON syntax error is CPX_ERR_DECODE with one error at path
 * "" and rule "json_syntax" naming the line and column. */
int cpx_json_loads_msg(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                       ProtobufCMessage **out, cpx_errors_t *errs);

#endif
