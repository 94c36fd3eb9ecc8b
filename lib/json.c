/* json.c — generic protobuf-c <-> JSON mapping (docs/json.md). */
#include "cpx/json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/idnum.h"
#include "cpx/limits.h"

#define JSON_MAX_BYTES CPX_MAX_ENVELOPE_BYTES  /* one bytes field, decoded */

/* ---- message -> JSON ---------------------------------------------------------------- */

static json_t *hex_of(const ProtobufCBinaryData *b)
{
    static const char digits[] = "0123456789abcdef";
    char stackbuf[129];
    char *s = b->len * 2 + 1 <= sizeof stackbuf ? stackbuf : malloc(b->len * 2 + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < b->len; i++) {
        s[2 * i] = digits[b->data[i] >> 4];
        s[2 * i + 1] = digits[b->data[i] & 15];
    }
    s[b->len * 2] = '\0';
    json_t *j = json_stringn(s, b->len * 2);
    if (s != stackbuf)
        free(s);
    return j;
}

static json_t *date_of(const Cpx__V1__Date *d)
{
    if (cpx_date_valid((int)d->year, (int)d->month, (int)d->day)) {
        char s[16];
        snprintf(s, sizeof s, "%04u-%02u-%02u", d->year % 10000, d->month % 100, d->day % 100);
        return json_string(s);
    }
    return json_pack("{s:I,s:I,s:I}", "year", (json_int_t)d->year, "month",
                     (json_int_t)d->month, "day", (json_int_t)d->day);
}

static json_t *u64_of(uint64_t v)
{
    if (v <= INT64_MAX)
        return json_integer((json_int_t)v);
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return json_string(s);
}

static json_t *msg_to_json(const ProtobufCMessage *m);

/* One value of field fd stored at p. */
static json_t *value_to_json(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return json_integer(v);
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return json_integer(v);
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return json_integer(v);
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return u64_of(v);
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v;
        memcpy(&v, p, sizeof v);
        return json_real(v);
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof v);
        return json_real(v);
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean v;
        memcpy(&v, p, sizeof v);
        return json_boolean(v);
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s;
        memcpy(&s, p, sizeof s);
        /* decoded protobuf strings are not checked for UTF-8; jansson refuses
         * invalid UTF-8, so fall back to a visible marker rather than failing */
        json_t *j = json_string(s ? s : "");
        return j ? j : json_string("\xef\xbf\xbd");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return hex_of((const ProtobufCBinaryData *)p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub;
        memcpy(&sub, p, sizeof sub);
        if (!sub)
            return json_null();
        if (sub->descriptor == &cpx__v1__date__descriptor)
            return date_of((const Cpx__V1__Date *)sub);
        return msg_to_json(sub);
    }
    }
    return json_null();
}

static size_t elem_size(const ProtobufCFieldDescriptor *fd)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return 4;
    }
}

/* True if the singular value at p is the type's zero value (omitted on output). */
static bool is_zero(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s;
        memcpy(&s, p, sizeof s);
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const void *sub;
        memcpy(&sub, p, sizeof sub);
        return !sub;
    }
    default: {
        static const uint8_t zero[8];
        return !memcmp(p, zero, elem_size(fd));
    }
    }
}

static json_t *msg_to_json(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *md = m->descriptor;
    const char *base = (const char *)m;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (unsigned i = 0; i < md->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &md->fields[i];
        const void *p = base + fd->offset;
        json_t *v = NULL;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            memcpy(&n, base + fd->quantifier_offset, sizeof n);
            if (!n)
                continue;
            const char *arr;
            memcpy(&arr, p, sizeof arr);
            v = json_array();
            if (!v)
                goto fail;
            for (size_t k = 0; k < n; k++)
                if (json_array_append_new(v, value_to_json(fd, arr + k * elem_size(fd)))) {
                    json_decref(v);
                    goto fail;
                }
        } else {
            if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t which;
                memcpy(&which, base + fd->quantifier_offset, sizeof which);
                if (which != fd->id)
                    continue;
            } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->quantifier_offset &&
                       fd->type != PROTOBUF_C_TYPE_MESSAGE && fd->type != PROTOBUF_C_TYPE_STRING) {
                protobuf_c_boolean has;
                memcpy(&has, base + fd->quantifier_offset, sizeof has);
                if (!has)
                    continue;
            } else if (is_zero(fd, p)) {
                continue;
            }
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE && is_zero(fd, p))
                continue;
            v = value_to_json(fd, p);
            if (!v)
                goto fail;
        }
        if (json_object_set_new(obj, fd->name, v))
            goto fail;
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

json_t *cpx_json_from_msg(const ProtobufCMessage *msg)
{
    return msg ? msg_to_json(msg) : NULL;
}

char *cpx_json_dumps_msg(const ProtobufCMessage *msg)
{
    json_t *j = cpx_json_from_msg(msg);
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* ---- JSON -> message ---------------------------------------------------------------- */

typedef struct jctx {
    cpx_errors_t *errs;
    bool oom;
    char path[CPX_MAX_PATH_LEN];
    size_t plen;
} jctx;

static size_t jpush(jctx *c, const char *name, long idx)
{
    size_t mark = c->plen;
    int n = idx < 0 ? snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s",
                               c->plen ? "." : "", name)
                    : snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s[%ld]",
                               c->plen ? "." : "", name, idx);
    if (n > 0)
        c->plen += (size_t)n;
    if (c->plen >= sizeof c->path)
        c->plen = sizeof c->path - 1;
    return mark;
}

static void jpop(jctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

static void jerr(jctx *c, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void jerr(jctx *c, const char *rule, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cpx_errors_add(c->errs, c->path, rule, "%s", msg);
}

static const char *jtype(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static ProtobufCMessage *json_to_msg(jctx *c, const ProtobufCMessageDescriptor *md, const json_t *j);

static bool parse_date(const char *s, size_t len, int *y, int *m, int *d)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    *y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    *m = (s[5] - '0') * 10 + (s[6] - '0');
    *d = (s[8] - '0') * 10 + (s[9] - '0');
    return cpx_date_valid(*y, *m, *d);
}

/* Reads one value of field fd from j into p (an element-sized slot, zeroed).
 * Returns false (with an error recorded) when j does not fit. */
static bool value_from_json(jctx *c, const ProtobufCFieldDescriptor *fd, const json_t *j, void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        bool is_u64 = fd->type == PROTOBUF_C_TYPE_UINT64 || fd->type == PROTOBUF_C_TYPE_FIXED64;
        if (is_u64 && json_is_string(j)) {
            /* the decimal-string form of a uint64 above 2^63-1 */
            const char *s = json_string_value(j);
            size_t len = json_string_length(j);
            uint64_t v = 0;
            bool ok = len > 0 && len <= 20;
            for (size_t i = 0; ok && i < len; i++) {
                if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
                    ok = false;
                else
                    v = v * 10 + (uint64_t)(s[i] - '0');
            }
            if (!ok) {
                jerr(c, "type", "expected an unsigned integer");
                return false;
            }
            memcpy(p, &v, 8);
            return true;
        }
        if (!json_is_integer(j)) {
            jerr(c, "type", "expected an integer, got %s", jtype(j));
            return false;
        }
        json_int_t v = json_integer_value(j);
        int64_t lo = INT64_MIN, hi = INT64_MAX;
        switch (fd->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32: lo = INT32_MIN; hi = INT32_MAX; break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: lo = 0; hi = UINT32_MAX; break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: lo = 0; break;
        default: break;
        }
        if (v < lo || v > hi) {
            jerr(c, "range", "%lld is out of range for this field", (long long)v);
            return false;
        }
        if (elem_size(fd) == 4) {
            int32_t v32 = (int32_t)(uint32_t)v;
            memcpy(p, &v32, 4);
        } else {
            int64_t v64 = v;
            memcpy(p, &v64, 8);
        }
        return true;
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        if (!json_is_number(j)) {
            jerr(c, "type", "expected a number, got %s", jtype(j));
            return false;
        }
        double v = json_number_value(j);
        if (fd->type == PROTOBUF_C_TYPE_FLOAT) {
            float f = (float)v;
            memcpy(p, &f, 4);
        } else {
            memcpy(p, &v, 8);
        }
        return true;
    }
    case PROTOBUF_C_TYPE_BOOL: {
        if (!json_is_boolean(j)) {
            jerr(c, "type", "expected true or false, got %s", jtype(j));
            return false;
        }
        protobuf_c_boolean b = json_is_true(j);
        memcpy(p, &b, sizeof b);
        return true;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = fd->descriptor;
        if (!json_is_string(j)) {
            jerr(c, "type", "expected a %s name, got %s", ed->short_name, jtype(j));
            return false;
        }
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(j));
        if (!ev) {
            jerr(c, "enum_name", "'%.60s' is not a %s name", json_string_value(j), ed->short_name);
            return false;
        }
        memcpy(p, &ev->value, sizeof(int));
        return true;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(j)) {
            jerr(c, "type", "expected a string, got %s", jtype(j));
            return false;
        }
        size_t len = json_string_length(j);
        const char *s = json_string_value(j);
        if (len > CPX_MAX_LONG_TEXT) {
            jerr(c, "too_long", "at most %u bytes, got %zu", CPX_MAX_LONG_TEXT, len);
            return false;
        }
        if (memchr(s, '\0', len)) {
            jerr(c, "nul", "strings may not contain U+0000");
            return false;
        }
        char *dup = malloc(len + 1);
        if (!dup) {
            c->oom = true;
            return false;
        }
        memcpy(dup, s, len + 1);
        memcpy(p, &dup, sizeof dup);
        return true;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(j)) {
            jerr(c, "type", "expected lower-case hex, got %s", jtype(j));
            return false;
        }
        size_t len = json_string_length(j);
        const char *s = json_string_value(j);
        if (len % 2) {
            jerr(c, "hex", "hex has an even number of digits, got %zu", len);
            return false;
        }
        if (len / 2 > JSON_MAX_BYTES) {
            jerr(c, "too_long", "at most %u bytes", JSON_MAX_BYTES);
            return false;
        }
        for (size_t i = 0; i < len; i++)
            if (hexval(s[i]) < 0) {
                jerr(c, "hex", "character %zu is not a hex digit", i + 1);
                return false;
            }
        ProtobufCBinaryData b = {len / 2, NULL};
        if (b.len) {
            b.data = malloc(b.len);
            if (!b.data) {
                c->oom = true;
                return false;
            }
            for (size_t i = 0; i < b.len; i++)
                b.data[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
        }
        memcpy(p, &b, sizeof b);
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *sd = fd->descriptor;
        ProtobufCMessage *sub;
        if (sd == &cpx__v1__date__descriptor) {
            int y, m, d;
            if (!json_is_string(j)) {
                jerr(c, "type", "expected a date \"YYYY-MM-DD\", got %s", jtype(j));
                return false;
            }
            if (!parse_date(json_string_value(j), json_string_length(j), &y, &m, &d)) {
                jerr(c, "date", "not a calendar date in the form YYYY-MM-DD");
                return false;
            }
            Cpx__V1__Date *date = malloc(sizeof *date);
            if (!date) {
                c->oom = true;
                return false;
            }
            cpx__v1__date__init(date);
            date->year = (uint32_t)y;
            date->month = (uint32_t)m;
            date->day = (uint32_t)d;
            sub = &date->base;
        } else {
            sub = json_to_msg(c, sd, j);
            if (!sub)
                return false;
        }
        memcpy(p, &sub, sizeof sub);
        return true;
    }
    }
    return false;
}

static uint32_t array_limit(const ProtobufCFieldDescriptor *fd)
{
    if (!strcmp(fd->name, "envelopes"))
        return CPX_MAX_BATCH_ENVELOPES;
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE && (!strcmp(fd->name, "acks") || !strcmp(fd->name, "deliveries")))
        return CPX_MAX_GROUPED;  /* the grouped frames */
    return CPX_MAX_REPEATED;
}

/* Frees one element-sized value built by value_from_json. */
static void free_value(const ProtobufCFieldDescriptor *fd, void *p)
{
    if (fd->type == PROTOBUF_C_TYPE_STRING) {
        char *s;
        memcpy(&s, p, sizeof s);
        if (s != fd->default_value)
            free(s);
    } else if (fd->type == PROTOBUF_C_TYPE_BYTES) {
        free(((ProtobufCBinaryData *)p)->data);
    } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
        ProtobufCMessage *m;
        memcpy(&m, p, sizeof m);
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void set_field(jctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                      const json_t *v)
{
    char *base = (char *)m;
    size_t es = elem_size(fd);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(v)) {
            jerr(c, "type", "expected an array, got %s", jtype(v));
            return;
        }
        size_t n = json_array_size(v);
        if (n > array_limit(fd)) {
            jerr(c, "too_many", "at most %u entries, got %zu", array_limit(fd), n);
            return;
        }
        if (!n)
            return;
        char *arr = calloc(n, es);
        if (!arr) {
            c->oom = true;
            return;
        }
        bool ok = true;
        for (size_t k = 0; k < n; k++) {
            size_t mark = c->plen;
            int w = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", k);
            if (w > 0)
                c->plen = c->plen + (size_t)w < sizeof c->path ? c->plen + (size_t)w
                                                               : sizeof c->path - 1;
            if (!value_from_json(c, fd, json_array_get(v, k), arr + k * es))
                ok = false;
            jpop(c, mark);
            if (!ok && c->oom)
                break;
        }
        if (!ok) {
            for (size_t k = 0; k < n; k++)
                free_value(fd, arr + k * es);
            free(arr);
            return;
        }
        memcpy(base + fd->quantifier_offset, &n, sizeof n);
        memcpy(base + fd->offset, &arr, sizeof arr);
        return;
    }
    uint8_t slot[sizeof(ProtobufCBinaryData)] = {0};
    if (!value_from_json(c, fd, v, slot))
        return;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which = fd->id;
        memcpy(base + fd->quantifier_offset, &which, sizeof which);
    } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->quantifier_offset &&
               fd->type != PROTOBUF_C_TYPE_MESSAGE && fd->type != PROTOBUF_C_TYPE_STRING) {
        protobuf_c_boolean has = 1;
        memcpy(base + fd->quantifier_offset, &has, sizeof has);
    }
    memcpy(base + fd->offset, slot, es);
}

static ProtobufCMessage *json_to_msg(jctx *c, const ProtobufCMessageDescriptor *md, const json_t *j)
{
    if (!json_is_object(j)) {
        jerr(c, "type", "expected an object (%s), got %s", md->short_name, jtype(j));
        return NULL;
    }
    ProtobufCMessage *m = calloc(1, md->sizeof_message);
    if (!m) {
        c->oom = true;
        return NULL;
    }
    md->message_init(m);
    size_t before = c->errs->count;
    bool trunc = c->errs->truncated;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        size_t mark = jpush(c, key, -1);
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(md, key);
        if (!fd) {
            jerr(c, "unknown_key", "%s has no field '%.60s'", md->short_name, key);
        } else if (json_is_null(v)) {
            /* absent */
        } else if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
                   *(const uint32_t *)((const char *)m + fd->quantifier_offset) != 0) {
            jerr(c, "oneof", "only one member of a oneof may be given");
        } else {
            set_field(c, m, fd, v);
        }
        jpop(c, mark);
        if (c->oom)
            break;
    }
    if (c->oom || c->errs->count > before || (c->errs->truncated && !trunc)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

int cpx_json_to_msg(const ProtobufCMessageDescriptor *desc, const json_t *json,
                    ProtobufCMessage **out, cpx_errors_t *errs)
{
    if (!desc || !json || !out || !errs)
        return CPX_ERR_ARG;
    *out = NULL;
    jctx c = {.errs = errs};
    ProtobufCMessage *m = json_to_msg(&c, desc, json);
    if (c.oom) {
        cpx_msg_free(m);
        return CPX_ERR_NOMEM;
    }
    if (!m)
        return CPX_ERR_INVALID;
    *out = m;
    return CPX_OK;
}

int cpx_json_loads_msg(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                       ProtobufCMessage **out, cpx_errors_t *errs)
{
    if (!desc || !text || !out || !errs)
        return CPX_ERR_ARG;
    *out = NULL;
    if (len > CPX_MAX_FRAME_BYTES)
        return CPX_ERR_TOO_LARGE;
    json_error_t jerr_;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr_);
    if (!j) {
        cpx_errors_add(errs, "", "json_syntax", "line %d column %d: %s", jerr_.line,
                       jerr_.column, jerr_.text);
        return CPX_ERR_DECODE;
    }
    int rc = cpx_json_to_msg(desc, j, out, errs);
    json_decref(j);
    return rc;
}
