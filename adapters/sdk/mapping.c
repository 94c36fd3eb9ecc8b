/* mapping.c — YAML mappings from a local record to an envelope (docs/adapters.md).
 *
 *   encoding: GB18030          # UTF-8 (default), GB18030, GBK
 *   format: csv                # csv (default) or jsonl
 *   delimiter: ","
 *   record_key: 学籍号          # local field that names a record in errors
 *   fields:
 *     - {from: 姓名, to: discovery_report.minor.name, required: true}
 *     - {from: 性别, to: discovery_report.minor.sex, map: {男: MALE, 女: FEMALE}}
 *     - {from: 出生日期, to: discovery_report.minor.birth_date, date: "%Y/%m/%d"}
 *     - {from: 情况, to: discovery_report.circumstances, split: ";", map: {辍学: SCHOOL_DROPOUT}}
 *     - {to: discovery_report.channel, const: SCHOOL}
 *     - {from: 备注, to: discovery_report.observation.what, default: "无"}
 *     - {from: 身份证号, to: discovery_report.minor.id_unknown_reason,
 *        default: REPORTER_DOES_NOT_KNOW, map: {"*": ""}}
 *
 * A value is trimmed; an empty one takes `default` (a schema value, not mapped) or, when
 * `required`, is an error. A non-empty one goes through `map` when given ("*" matches
 * any other value; a target "" leaves the field unset), then `date` or the field's type.
 *
 * Target paths are field paths of the Envelope (the JSON form's paths) and are
 * checked against the schema when the mapping loads, so a typo fails at start-up,
 * not on the first record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/adapter.h"
#include "pbset.h"

#define MAP_MAX_FIELDS 128
#define MAP_MAX_VALUES 512
#define CST_OFFSET_MS (8LL * 3600 * 1000)  /* Jiangyin local time, UTC+8, no DST */

typedef struct map_entry {
    const char *from, *to;
} map_entry_t;

typedef struct map_field {
    const char *from;       /* NULL for a constant */
    const char *konst;
    const char *dflt;
    const char *date;       /* strptime format */
    const char *split;
    bool required;
    map_entry_t *values;
    size_t n_values;
    pb_path_t path;
    int line;
} map_field_t;

struct cpx_mapping {
    cpx_conf_t *conf;       /* owns every string below */
    const char *encoding, *format, *record_key;
    char delimiter;
    map_field_t fields[MAP_MAX_FIELDS];
    size_t n_fields;
};

void cpx_mapping_destroy(cpx_mapping_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_mapping_t *m = *self_p;
    for (size_t i = 0; i < m->n_fields; i++)
        free(m->fields[i].values);
    cpx_conf_destroy(&m->conf);
    free(m);
    *self_p = NULL;
}

static bool is_forbidden(const char *path)
{
    static const char *const own[] = {"message_id", "sender", "commitments", "salts",
                                      "signature", "body_kind", "created_ms"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        size_t n = strlen(own[i]);
        if (!strncmp(path, own[i], n) && (path[n] == '\0' || path[n] == '.' || path[n] == '['))
            return true;
    }
    return false;
}

static int load_field(cpx_mapping_t *m, const cpx_conf_t *node, char *err, size_t errlen)
{
    char where[300], why[200];
    cpx_conf_where(node, where, sizeof where);
    if (!cpx_conf_is_map(node)) {
        snprintf(err, errlen, "%s: a field must be a map with 'to'", where);
        return CPX_ERR_CONFIG;
    }
    if (m->n_fields == MAP_MAX_FIELDS) {
        snprintf(err, errlen, "%s: more than %d fields", where, MAP_MAX_FIELDS);
        return CPX_ERR_CONFIG;
    }
    map_field_t *f = &m->fields[m->n_fields++];
    f->from = cpx_conf_str(node, "from", NULL);
    f->konst = cpx_conf_str(node, "const", NULL);
    f->dflt = cpx_conf_str(node, "default", NULL);
    f->date = cpx_conf_str(node, "date", NULL);
    f->split = cpx_conf_str(node, "split", NULL);
    const char *req = cpx_conf_str(node, "required", "false");
    f->required = !strcmp(req, "true") || !strcmp(req, "yes");
    const char *to = cpx_conf_str(node, "to", NULL);
    if (!to) {
        snprintf(err, errlen, "%s: field without 'to'", where);
        return CPX_ERR_CONFIG;
    }
    if (!f->from == !f->konst) {
        snprintf(err, errlen, "%s: '%s' needs exactly one of 'from' and 'const'", where, to);
        return CPX_ERR_CONFIG;
    }
    if (is_forbidden(to)) {
        snprintf(err, errlen, "%s: '%s' is set by the adapter, not by a mapping", where, to);
        return CPX_ERR_CONFIG;
    }
    if (pb_path_parse(&cpx__v1__envelope__descriptor, to, &f->path, why, sizeof why) != CPX_OK) {
        snprintf(err, errlen, "%s: %s", where, why);
        return CPX_ERR_CONFIG;
    }
    const ProtobufCFieldDescriptor *leaf = f->path.steps[f->path.n - 1].field;
    bool is_date = leaf->type == PROTOBUF_C_TYPE_MESSAGE && leaf->descriptor == &cpx__v1__date__descriptor;
    if (leaf->type == PROTOBUF_C_TYPE_MESSAGE && !is_date) {
        snprintf(err, errlen, "%s: '%s' is a message: map its fields", where, to);
        return CPX_ERR_CONFIG;
    }
    if (is_date && !f->date) {
        snprintf(err, errlen, "%s: '%s' is a date: give 'date: FORMAT'", where, to);
        return CPX_ERR_CONFIG;
    }
    if (f->date && !is_date && leaf->type != PROTOBUF_C_TYPE_INT64) {
        snprintf(err, errlen, "%s: 'date' applies to dates and *_ms times only", where);
        return CPX_ERR_CONFIG;
    }
    if (f->split && leaf->label != PROTOBUF_C_LABEL_REPEATED) {
        snprintf(err, errlen, "%s: 'split' needs a repeated target", where);
        return CPX_ERR_CONFIG;
    }
    const cpx_conf_t *vals = cpx_conf_get(node, "map");
    if (vals) {
        size_t n = cpx_conf_len(vals);
        if (!cpx_conf_is_map(vals) || n == 0 || n > MAP_MAX_VALUES) {
            snprintf(err, errlen, "%s: 'map' must be a map of 1..%d local -> schema values",
                     where, MAP_MAX_VALUES);
            return CPX_ERR_CONFIG;
        }
        f->values = calloc(n, sizeof *f->values);
        if (!f->values)
            return CPX_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            f->values[i].from = cpx_conf_key_at(vals, i);
            f->values[i].to = cpx_conf_str(cpx_conf_at(vals, i), NULL, NULL);
            if (!f->values[i].to) {
                snprintf(err, errlen, "%s: map value for '%s' must be a scalar", where,
                         f->values[i].from);
                return CPX_ERR_CONFIG;
            }
            if (leaf->type == PROTOBUF_C_TYPE_ENUM && f->values[i].to[0] &&
                !protobuf_c_enum_descriptor_get_value_by_name(leaf->descriptor, f->values[i].to)) {
                snprintf(err, errlen, "%s: '%s' is not a value of %s", where, f->values[i].to,
                         ((const ProtobufCEnumDescriptor *)leaf->descriptor)->name);
                return CPX_ERR_CONFIG;
            }
        }
        f->n_values = n;
    }
    if (f->konst && leaf->type == PROTOBUF_C_TYPE_ENUM && !f->values &&
        !protobuf_c_enum_descriptor_get_value_by_name(leaf->descriptor, f->konst)) {
        snprintf(err, errlen, "%s: '%s' is not a value of %s", where, f->konst,
                 ((const ProtobufCEnumDescriptor *)leaf->descriptor)->name);
        return CPX_ERR_CONFIG;
    }
    return CPX_OK;
}

cpx_mapping_t *cpx_mapping_load(const char *path, char *err, size_t errlen)
{
    cpx_mapping_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(m->conf = cpx_conf_load(path, err, errlen)))
        goto fail;
    m->encoding = cpx_conf_str(m->conf, "encoding", "UTF-8");
    cpx_transcoder_t *t = cpx_transcoder_new(m->encoding);
    if (!t) {
        snprintf(err, errlen, "%s: encoding '%s' is not one of UTF-8, GB18030, GBK", path,
                 m->encoding);
        goto fail;
    }
    cpx_transcoder_destroy(&t);
    m->format = cpx_conf_str(m->conf, "format", "csv");
    if (strcmp(m->format, "csv") && strcmp(m->format, "jsonl")) {
        snprintf(err, errlen, "%s: format '%s' is not csv or jsonl", path, m->format);
        goto fail;
    }
    const char *d = cpx_conf_str(m->conf, "delimiter", ",");
    if (!strcmp(d, "\\t") || !strcmp(d, "tab"))
        d = "\t";
    if (strlen(d) != 1) {
        snprintf(err, errlen, "%s: delimiter must be one byte", path);
        goto fail;
    }
    m->delimiter = d[0];
    m->record_key = cpx_conf_str(m->conf, "record_key", NULL);
    const cpx_conf_t *fields = cpx_conf_get(m->conf, "fields");
    if (!cpx_conf_is_seq(fields) || cpx_conf_len(fields) == 0) {
        snprintf(err, errlen, "%s: 'fields' must be a non-empty list", path);
        goto fail;
    }
    for (size_t i = 0; i < cpx_conf_len(fields); i++)
        if (load_field(m, cpx_conf_at(fields, i), err, errlen) != CPX_OK)
            goto fail;
    /* one body kind per mapping: every body path must name the same oneof member */
    const ProtobufCFieldDescriptor *body = NULL;
    for (size_t i = 0; i < m->n_fields; i++) {
        const ProtobufCFieldDescriptor *f0 = m->fields[i].path.steps[0].field;
        if (!(f0->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        if (body && body != f0) {
            snprintf(err, errlen, "%s: fields map into both '%s' and '%s': one body per mapping",
                     path, body->name, f0->name);
            goto fail;
        }
        body = f0;
    }
    if (!body) {
        snprintf(err, errlen, "%s: no field maps into a body (e.g. discovery_report.*)", path);
        goto fail;
    }
    return m;
fail:
    cpx_mapping_destroy(&m);
    return NULL;
}

const char *cpx_mapping_encoding(const cpx_mapping_t *m) { return m->encoding; }
const char *cpx_mapping_format(const cpx_mapping_t *m) { return m->format; }
char cpx_mapping_delimiter(const cpx_mapping_t *m) { return m->delimiter; }
const char *cpx_mapping_record_key(const cpx_mapping_t *m) { return m->record_key; }

int cpx_mapping_check_columns(const cpx_mapping_t *m, const char *const *cols, size_t n,
                              cpx_errors_t *errs)
{
    int rc = CPX_OK;
    for (size_t i = 0; i < m->n_fields; i++) {
        const map_field_t *f = &m->fields[i];
        if (!f->from || f->dflt)
            continue;
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = cols[j] && !strcmp(cols[j], f->from);
        /* a column that is neither required nor defaulted may be absent */
        if (!found && f->required) {
            cpx_errors_add(errs, f->path.text, "missing_column", "the file has no column '%s'",
                           f->from);
            rc = CPX_ERR_INVALID;
        }
    }
    return rc;
}

static void trim(const char *s, char *out, size_t size, bool *too_long)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    *too_long = n >= size;
    if (*too_long)
        n = size - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

static int set_date(ProtobufCMessage *holder, const ProtobufCFieldDescriptor *leaf,
                    const char *fmt, const char *value)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(value, fmt, &tm);
    if (!end || *end)
        return CPX_ERR_INVALID;
    if (leaf->type == PROTOBUF_C_TYPE_INT64) {
        time_t t = timegm(&tm);
        return pb_set_i64(holder, leaf, (long long)t * 1000 - CST_OFFSET_MS);
    }
    return pb_set_date(holder, leaf, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* One value into the field's leaf: value map, then date or text conversion. */
static int set_one(const map_field_t *f, ProtobufCMessage *holder, const char *value,
                   bool is_default, const char *label, cpx_errors_t *errs)
{
    const ProtobufCFieldDescriptor *leaf = f->path.steps[f->path.n - 1].field;
    if (f->values && !is_default) {
        const char *to = NULL;
        for (size_t i = 0; i < f->n_values && !to; i++)
            if (!strcmp(f->values[i].from, value))
                to = f->values[i].to;
        for (size_t i = 0; i < f->n_values && !to; i++)
            if (!strcmp(f->values[i].from, "*"))
                to = f->values[i].to;
        if (to && !to[0])
            return CPX_OK; /* mapped to nothing: leave the field unset */
        if (!to) {
            /* codes, not personal data: quoting the unknown code helps the agency fix it */
            cpx_errors_add(errs, f->path.text, "value_map", "%s: '%.40s' is not in the value map",
                           label, value);
            return CPX_ERR_INVALID;
        }
        value = to;
    }
    if (f->date) {
        int rc = set_date(holder, leaf, f->date, value);
        if (rc == CPX_ERR_INVALID)
            cpx_errors_add(errs, f->path.text, "date_format", "%s: not a date in the form '%s'",
                           label, f->date);
        return rc;
    }
    const char *rule;
    char why[160];
    int rc = pb_set_text(holder, leaf, value, &rule, why, sizeof why);
    if (rc == CPX_ERR_INVALID)
        cpx_errors_add(errs, f->path.text, rule ? rule : "invalid", "%s: %s", label, why);
    return rc;
}

int cpx_mapping_apply(const cpx_mapping_t *m, cpx_record_get_fn get, void *ctx,
                      cpx_envelope_t **out, cpx_errors_t *errs)
{
    *out = NULL;
    cpx_envelope_t *env = (cpx_envelope_t *)pb_new(&cpx__v1__envelope__descriptor);
    if (!env)
        return CPX_ERR_NOMEM;
    size_t errs_before = errs->count;
    char *buf = malloc(CPX_MAX_LONG_TEXT + 1);
    if (!buf) {
        cpx_msg_free(env);
        return CPX_ERR_NOMEM;
    }
    int rc = CPX_OK;
    for (size_t i = 0; i < m->n_fields && rc != CPX_ERR_NOMEM; i++) {
        const map_field_t *f = &m->fields[i];
        char label[96];
        snprintf(label, sizeof label, "%s", f->from ? f->from : "(constant)");
        const char *raw = f->from ? get(ctx, f->from) : f->konst;
        bool too_long = false;
        trim(raw ? raw : "", buf, CPX_MAX_LONG_TEXT + 1, &too_long);
        if (too_long) {
            cpx_errors_add(errs, f->path.text, "too_long", "%s: longer than %u bytes", label,
                           CPX_MAX_LONG_TEXT);
            continue;
        }
        bool is_default = false;
        if (!buf[0] && f->dflt) {
            trim(f->dflt, buf, CPX_MAX_LONG_TEXT + 1, &too_long);
            is_default = true;
        }
        if (!buf[0]) {
            if (f->required)
                cpx_errors_add(errs, f->path.text, "required", "%s: %s", label,
                               raw ? "empty" : "no such field in the record");
            continue;
        }
        ProtobufCMessage *holder = pb_walk(&env->base, &f->path);
        if (!holder) {
            rc = CPX_ERR_NOMEM;
            break;
        }
        if (!f->split) {
            if (set_one(f, holder, buf, is_default, label, errs) == CPX_ERR_NOMEM)
                rc = CPX_ERR_NOMEM;
            continue;
        }
        char *save = NULL;
        for (char *part = strtok_r(buf, f->split, &save); part;
             part = strtok_r(NULL, f->split, &save)) {
            char one[256];
            trim(part, one, sizeof one, &too_long);
            if (one[0] && set_one(f, holder, one, is_default, label, errs) == CPX_ERR_NOMEM) {
                rc = CPX_ERR_NOMEM;
                break;
            }
        }
    }
    free(buf);
    if (rc == CPX_OK && errs->count > errs_before)
        rc = CPX_ERR_INVALID;
    if (rc == CPX_OK && errs->truncated)
        rc = CPX_ERR_INVALID;
    if (rc != CPX_OK) {
        cpx_msg_free(env);
        return rc;
    }
    *out = env;
    return CPX_OK;
}
