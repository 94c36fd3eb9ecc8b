/* pbset.c — set protobuf-c message fields by schema path (see pbset.h). */
#include "pbset.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"

#define PB_MAX_INDEX 63  /* CPX_MAX_REPEATED - 1 */

int pb_path_parse(const ProtobufCMessageDescriptor *desc, const char *text, pb_path_t *out,
                  char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (strlen(text) >= sizeof out->text) {
        snprintf(why, whylen, "path too long");
        return CPX_ERR_INVALID;
    }
    strcpy(out->text, text);
    const char *p = text;
    while (*p) {
        if (!desc) {
            snprintf(why, whylen, "'%s': a scalar field has no sub-fields", text);
            return CPX_ERR_INVALID;
        }
        if (out->n == PB_MAX_STEPS) {
            snprintf(why, whylen, "'%s': too deep", text);
            return CPX_ERR_INVALID;
        }
        size_t len = strcspn(p, ".[");
        char name[64];
        if (len == 0 || len >= sizeof name) {
            snprintf(why, whylen, "'%s': empty or long segment", text);
            return CPX_ERR_INVALID;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(desc, name);
        if (!f) {
            snprintf(why, whylen, "'%s': %s has no field '%s'", text, desc->name, name);
            return CPX_ERR_INVALID;
        }
        pb_step_t *st = &out->steps[out->n++];
        st->field = f;
        st->index = f->label == PROTOBUF_C_LABEL_REPEATED ? 0 : -2;
        p += len;
        if (*p == '[') {
            if (f->label != PROTOBUF_C_LABEL_REPEATED) {
                snprintf(why, whylen, "'%s': '%s' is not repeated", text, name);
                return CPX_ERR_INVALID;
            }
            char *end;
            if (p[1] == ']') {
                st->index = -1;
                end = (char *)p + 1;
            } else {
                long idx = strtol(p + 1, &end, 10);
                if (end == p + 1 || *end != ']' || idx < 0 || idx > PB_MAX_INDEX) {
                    snprintf(why, whylen, "'%s': bad index", text);
                    return CPX_ERR_INVALID;
                }
                st->index = (int)idx;
            }
            p = end + 1;
        }
        if (*p == '.')
            p++;
        desc = f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
        if (*p && !desc) {
            snprintf(why, whylen, "'%s': '%s' is not a message", text, name);
            return CPX_ERR_INVALID;
        }
    }
    if (out->n == 0) {
        snprintf(why, whylen, "empty path");
        return CPX_ERR_INVALID;
    }
    return CPX_OK;
}

ProtobufCMessage *pb_new(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = malloc(desc->sizeof_message);
    if (m)
        protobuf_c_message_init(desc, m);
    return m;
}

void pb_set_oneof(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)((char *)msg + f->quantifier_offset) = f->id;
}

/* Grows a repeated field's array by one zeroed slot; returns the slot. */
static void *rep_append(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, size_t elem)
{
    size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
    void **arr = (void **)((char *)msg + f->offset);
    if (*count > PB_MAX_INDEX)
        return NULL;
    char *na = realloc(*arr, (*count + 1) * elem);
    if (!na)
        return NULL;
    *arr = na;
    memset(na + *count * elem, 0, elem);
    return na + (*count)++ * elem;
}

static ProtobufCMessage *sub_message(ProtobufCMessage *msg, const pb_step_t *st)
{
    const ProtobufCFieldDescriptor *f = st->field;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        ProtobufCMessage **slot = (ProtobufCMessage **)((char *)msg + f->offset);
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)((char *)msg + f->quantifier_offset);
            if (*which != f->id && *which != 0)
                return NULL; /* another member of the oneof is set */
            pb_set_oneof(msg, f);
        }
        if (!*slot)
            *slot = pb_new(f->descriptor);
        return *slot;
    }
    size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
    ProtobufCMessage ***arr = (ProtobufCMessage ***)((char *)msg + f->offset);
    if (st->index < 0) {
        ProtobufCMessage **slot = rep_append(msg, f, sizeof *slot);
        if (!slot)
            return NULL;
        return *slot = pb_new(f->descriptor);
    }
    while (*count <= (size_t)st->index) {
        ProtobufCMessage **slot = rep_append(msg, f, sizeof *slot);
        if (!slot || !(*slot = pb_new(f->descriptor)))
            return NULL;
    }
    return (*arr)[st->index];
}

ProtobufCMessage *pb_walk(ProtobufCMessage *msg, const pb_path_t *path)
{
    for (int i = 0; i < path->n - 1 && msg; i++)
        msg = sub_message(msg, &path->steps[i]);
    return msg;
}

/* Where a scalar leaf goes: the field itself, or a new slot of a repeated field. */
static void *leaf_slot(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, size_t size)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return rep_append(msg, f, size);
    pb_set_oneof(msg, f);
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
        !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)((char *)msg + f->quantifier_offset) = 1;
    return (char *)msg + f->offset;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pb_set_text(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const char *text,
                const char **rule, char *why, size_t whylen)
{
    long long v = 0;
    *rule = NULL;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        if (strlen(text) > CPX_MAX_LONG_TEXT) {
            *rule = "too_long";
            snprintf(why, whylen, "longer than %u bytes", CPX_MAX_LONG_TEXT);
            return CPX_ERR_INVALID;
        }
        char *copy = strdup(text);
        if (!copy)
            return CPX_ERR_NOMEM;
        char **slot = leaf_slot(msg, f, sizeof(char *));
        if (!slot) {
            free(copy);
            *rule = "too_many";
            snprintf(why, whylen, "too many values");
            return CPX_ERR_INVALID;
        }
        if (*slot && *slot != (char *)f->default_value && *slot != protobuf_c_empty_string)
            free(*slot);
        *slot = copy;
        return CPX_OK;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, text);
        if (!ev || ev->value == 0) {
            *rule = "enum";
            snprintf(why, whylen, "not a value of %s",
                     ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
            return CPX_ERR_INVALID;
        }
        v = ev->value;
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "是"))
            v = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "否"))
            v = 0;
        else {
            *rule = "bool";
            snprintf(why, whylen, "not true/false");
            return CPX_ERR_INVALID;
        }
        break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (parse_ll(text, INT32_MIN, INT32_MAX, &v))
            goto bad_int;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (parse_ll(text, 0, UINT32_MAX, &v))
            goto bad_int;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (parse_ll(text, f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_FIXED64
                               ? 0 : INT64_MIN, INT64_MAX, &v))
            goto bad_int;
        return pb_set_i64(msg, f, v);
    case PROTOBUF_C_TYPE_BYTES: {
        size_t n = strlen(text);
        if (n % 2 || n / 2 > CPX_MAX_SHORT_TEXT) {
            *rule = "hex";
            snprintf(why, whylen, "not an even number of hex digits (at most %u bytes)",
                     CPX_MAX_SHORT_TEXT);
            return CPX_ERR_INVALID;
        }
        uint8_t *data = malloc(n / 2 + 1);
        if (!data)
            return CPX_ERR_NOMEM;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                free(data);
                *rule = "hex";
                snprintf(why, whylen, "not hex");
                return CPX_ERR_INVALID;
            }
            data[i] = (uint8_t)(hi << 4 | lo);
        }
        ProtobufCBinaryData *slot = leaf_slot(msg, f, sizeof *slot);
        if (!slot) {
            free(data);
            return CPX_ERR_NOMEM;
        }
        free(slot->data);
        slot->data = data;
        slot->len = n / 2;
        return CPX_OK;
    }
    default:
        *rule = "type";
        snprintf(why, whylen, "a %s cannot be set from text", f->type == PROTOBUF_C_TYPE_MESSAGE
                                                                   ? "message" : "field");
        return CPX_ERR_INVALID;
    }
    /* 32-bit scalars, enums, bools */
    if (f->type == PROTOBUF_C_TYPE_BOOL) {
        protobuf_c_boolean *slot = leaf_slot(msg, f, sizeof *slot);
        if (!slot)
            return CPX_ERR_NOMEM;
        *slot = (protobuf_c_boolean)v;
    } else {
        int32_t *slot = leaf_slot(msg, f, sizeof *slot);
        if (!slot) {
            *rule = "too_many";
            snprintf(why, whylen, "too many values");
            return CPX_ERR_INVALID;
        }
        *slot = (int32_t)v;
    }
    return CPX_OK;
bad_int:
    *rule = "integer";
    snprintf(why, whylen, "not an integer in range");
    return CPX_ERR_INVALID;
}

int pb_set_i64(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, long long v)
{
    int64_t *slot = leaf_slot(msg, f, sizeof *slot);
    if (!slot)
        return CPX_ERR_NOMEM;
    *slot = v;
    return CPX_OK;
}

int pb_set_date(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int y, int m, int d)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->descriptor != &cpx__v1__date__descriptor)
        return CPX_ERR_ARG;
    pb_step_t st = {.field = f, .index = f->label == PROTOBUF_C_LABEL_REPEATED ? -1 : -2};
    Cpx__V1__Date *date = (Cpx__V1__Date *)sub_message(msg, &st);
    if (!date)
        return CPX_ERR_NOMEM;
    date->year = (uint32_t)y;
    date->month = (uint32_t)m;
    date->day = (uint32_t)d;
    return CPX_OK;
}
