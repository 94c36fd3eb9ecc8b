/* pbset.h — internal to libcpx-adapter: setting fields of protobuf-c messages by
 * schema path through the generated descriptors (mapping.c, json.c). Messages are
 * built with malloc so cpx_msg_free releases them like decoded ones. */
#ifndef CPX_ADAPTER_PBSET_H
#define CPX_ADAPTER_PBSET_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "cpx/err.h"

#define PB_MAX_STEPS 8

typedef struct pb_step {
    const ProtobufCFieldDescriptor *field;
    int index;      /* repeated message: element index; -1: append a new element */
} pb_step_t;

typedef struct pb_path {
    pb_step_t steps[PB_MAX_STEPS];
    int n;
    char text[CPX_MAX_PATH_LEN];
} pb_path_t;

/* Parses "a.b[0].c" against desc. Every step but the last must be a message field; a
 * repeated message step takes [n] (default [0]). CPX_ERR_INVALID with why. */
int pb_path_parse(const ProtobufCMessageDescriptor *desc, const char *text, pb_path_t *out,
                  char *why, size_t whylen);

/* A new, initialised message of desc (malloc'd). NULL on allocation failure. */
ProtobufCMessage *pb_new(const ProtobufCMessageDescriptor *desc);

/* Walks path from msg creating sub-messages as needed; returns the message holding
 * the last step's field (NULL on allocation failure). */
ProtobufCMessage *pb_walk(ProtobufCMessage *msg, const pb_path_t *path);

/* Sets (or, for a repeated field, appends) the leaf field of msg from text:
 * strings as is, enums by name, integers in decimal, bools true/false/1/0, bytes in
 * hex. Returns CPX_OK, CPX_ERR_INVALID with rule/why, or CPX_ERR_NOMEM. */
int pb_set_text(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const char *text,
                const char **rule, char *why, size_t whylen);
/* Sets a Date sub-message (or appends one). */
int pb_set_date(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int y, int m, int d);
/* Sets an int64 leaf. */
int pb_set_i64(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, long long v);

/* Marks a oneof member as the chosen one (no-op for other fields). */
void pb_set_oneof(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

#endif
