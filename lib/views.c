/* views.c — view profiles from YAML and redaction per recipient. */
#include "cpx/views.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cpx/err.h"
#include "cpx/limits.h"

#define N_BODIES 14   /* body cases 20 .. 33 */
#define BODY_FIRST 20

typedef struct profile {
    char name[CPX_VIEWS_MAX_NAME];
    uint32_t mask[N_BODIES];
} profile_t;

typedef struct dept_map {
    char pattern[CPX_MAX_DEPT_CODE + 2];
    size_t profile;
} dept_map_t;

struct cpx_views {
    size_t n_profiles, n_depts;
    profile_t profiles[CPX_VIEWS_MAX_PROFILES];
    dept_map_t depts[CPX_VIEWS_MAX_DEPTS];
};

typedef struct loader {
    const char *name;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
} loader_t;

static cpx_views_t *fail(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static cpx_views_t *fail(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
{
    if (ld->errlen) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s", ld->name,
                 n ? n->start_mark.line + 1 : 1, n ? n->start_mark.column + 1 : 1, msg);
    }
    return NULL;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *node(loader_t *ld, int i)
{
    return yaml_document_get_node(ld->doc, i);
}

/* The body case of a body name ("discovery_report" -> 20), 0 when unknown. */
static int body_case(const char *name)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(&cpx__v1__envelope__descriptor, name);
    return fd && fd->id >= BODY_FIRST && fd->id < BODY_FIRST + N_BODIES ? (int)fd->id : 0;
}

static int code_pattern_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > CPX_MAX_DEPT_CODE + 1)
        return 0;
    if (!strcmp(s, "*"))
        return 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '*' && i == n - 1 && i > 0)
            continue;
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9' && i) || (c == '_' && i)))
            return 0;
    }
    return 1;
}

static cpx_views_t *load_profile(loader_t *ld, cpx_views_t *v, yaml_node_t *kn, yaml_node_t *pn)
{
    const char *name = scalar(kn);
    if (!name || !*name || strlen(name) >= CPX_VIEWS_MAX_NAME)
        return fail(ld, kn, "profile name: 1 to %d characters", CPX_VIEWS_MAX_NAME - 1);
    for (size_t i = 0; i < v->n_profiles; i++)
        if (!strcmp(v->profiles[i].name, name))
            return fail(ld, kn, "profile '%s' defined twice", name);
    if (v->n_profiles == CPX_VIEWS_MAX_PROFILES)
        return fail(ld, kn, "more than %d profiles", CPX_VIEWS_MAX_PROFILES);
    profile_t *p = &v->profiles[v->n_profiles++];
    snprintf(p->name, sizeof p->name, "%s", name);
    if (pn->type != YAML_MAPPING_NODE)
        return fail(ld, pn, "profile '%s': expected a mapping (description, withhold)", name);
    for (yaml_node_pair_t *q = pn->data.mapping.pairs.start; q < pn->data.mapping.pairs.top; q++) {
        yaml_node_t *k = node(ld, q->key), *val = node(ld, q->value);
        const char *key = scalar(k);
        if (key && !strcmp(key, "description"))
            continue;
        if (!key || strcmp(key, "withhold"))
            return fail(ld, k, "profile '%s': unknown key '%s' (description, withhold)", name,
                        key ? key : "?");
        if (val->type != YAML_MAPPING_NODE)
            return fail(ld, val, "withhold: expected a mapping of body kind -> [fields]");
        for (yaml_node_pair_t *b = val->data.mapping.pairs.start; b < val->data.mapping.pairs.top; b++) {
            yaml_node_t *bk = node(ld, b->key), *bv = node(ld, b->value);
            const char *bname = scalar(bk);
            int bc = bname ? body_case(bname) : 0;
            if (!bc)
                return fail(ld, bk, "withhold: unknown body kind '%s' (e.g. discovery_report)",
                            bname ? bname : "?");
            const ProtobufCFieldDescriptor *bfd =
                protobuf_c_message_descriptor_get_field(&cpx__v1__envelope__descriptor, (unsigned)bc);
            const ProtobufCMessageDescriptor *bd = bfd->descriptor;
            yaml_node_item_t *it, *end;
            yaml_node_item_t one[1];
            if (bv->type == YAML_SEQUENCE_NODE) {
                it = bv->data.sequence.items.start;
                end = bv->data.sequence.items.top;
            } else {
                one[0] = b->value;
                it = one;
                end = one + 1;
            }
            for (; it < end; it++) {
                yaml_node_t *fn = node(ld, *it);
                const char *fname = scalar(fn);
                const ProtobufCFieldDescriptor *f =
                    fname ? protobuf_c_message_descriptor_get_field_by_name(bd, fname) : NULL;
                if (!f || f->id >= 32)
                    return fail(ld, fn, "withhold.%s: '%s' is not a field of %s", bname,
                                fname ? fname : "?", bd->short_name);
                p->mask[bc - BODY_FIRST] |= 1u << f->id;
            }
        }
    }
    return v;
}

static cpx_views_t *load_root(loader_t *ld, cpx_views_t *v, yaml_node_t *root)
{
    if (!root || root->type != YAML_MAPPING_NODE)
        return fail(ld, root, "expected a mapping (version, profiles, departments)");
    yaml_node_t *depts = NULL;
    int version = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(ld, p->key), *val = node(ld, p->value);
        const char *key = scalar(k);
        if (key && !strcmp(key, "version")) {
            const char *s = scalar(val);
            if (!s || strcmp(s, "1"))
                return fail(ld, val, "version: only 1 is known");
            version = 1;
        } else if (key && !strcmp(key, "profiles")) {
            if (val->type != YAML_MAPPING_NODE)
                return fail(ld, val, "profiles: expected a mapping of name -> profile");
            for (yaml_node_pair_t *q = val->data.mapping.pairs.start; q < val->data.mapping.pairs.top; q++)
                if (!load_profile(ld, v, node(ld, q->key), node(ld, q->value)))
                    return NULL;
        } else if (key && !strcmp(key, "departments")) {
            depts = val;
        } else {
            return fail(ld, k, "unknown key '%s' (version, profiles, departments)", key ? key : "?");
        }
    }
    if (!version)
        return fail(ld, root, "version: required");
    if (!depts)
        return v;
    if (depts->type != YAML_MAPPING_NODE)
        return fail(ld, depts, "departments: expected a mapping of code or 'PREFIX*' -> profile");
    for (yaml_node_pair_t *q = depts->data.mapping.pairs.start; q < depts->data.mapping.pairs.top; q++) {
        yaml_node_t *k = node(ld, q->key), *val = node(ld, q->value);
        const char *pat = scalar(k), *prof = scalar(val);
        if (!pat || !code_pattern_ok(pat))
            return fail(ld, k, "departments: '%s' is not a department code, 'PREFIX*' or '*'",
                        pat ? pat : "?");
        size_t i;
        for (i = 0; prof && i < v->n_profiles; i++)
            if (!strcmp(v->profiles[i].name, prof))
                break;
        if (!prof || i == v->n_profiles)
            return fail(ld, val, "departments.%s: unknown profile '%s'", pat, prof ? prof : "?");
        if (v->n_depts == CPX_VIEWS_MAX_DEPTS)
            return fail(ld, k, "more than %d department entries", CPX_VIEWS_MAX_DEPTS);
        dept_map_t *d = &v->depts[v->n_depts++];
        snprintf(d->pattern, sizeof d->pattern, "%s", pat);
        d->profile = i;
    }
    return v;
}

cpx_views_t *cpx_views_load_string(const char *yaml, size_t len, const char *name, char *err,
                                   size_t errlen)
{
    loader_t ld = {.name = name ? name : "<string>", .err = err, .errlen = errlen};
    if (errlen)
        err[0] = '\0';
    if (len > CPX_VIEWS_MAX_CONFIG_BYTES) {
        fail(&ld, NULL, "file larger than %u bytes", CPX_VIEWS_MAX_CONFIG_BYTES);
        return NULL;
    }
    cpx_views_t *v = calloc(1, sizeof *v);
    if (!v) {
        fail(&ld, NULL, "out of memory");
        return NULL;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        free(v);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    cpx_views_t *ok = NULL;
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_node_t at = {0};
        at.start_mark = parser.problem_mark;
        fail(&ld, &at, "YAML syntax: %s", parser.problem ? parser.problem : "parse error");
    } else {
        ld.doc = &doc;
        ok = load_root(&ld, v, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (!ok)
        free(v);
    return ok;
}

cpx_views_t *cpx_views_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CPX_VIEWS_MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CPX_VIEWS_MAX_CONFIG_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf) {
        if (errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    cpx_views_t *v = cpx_views_load_string(buf, n, path, err, errlen);
    free(buf);
    return v;
}

void cpx_views_destroy(cpx_views_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

static const profile_t *find(const cpx_views_t *v, const char *dept)
{
    if (!v || !dept)
        return NULL;
    for (size_t i = 0; i < v->n_depts; i++) {
        const char *p = v->depts[i].pattern;
        size_t n = strlen(p);
        if (p[n - 1] == '*' ? !strncmp(p, dept, n - 1) : !strcmp(p, dept))
            return &v->profiles[v->depts[i].profile];
    }
    return NULL;
}

const char *cpx_views_profile(const cpx_views_t *v, const char *dept)
{
    const profile_t *p = find(v, dept);
    return p ? p->name : "full";
}

uint32_t cpx_views_mask(const cpx_views_t *v, const char *dept, int bc)
{
    const profile_t *p = find(v, dept);
    if (!p || bc < BODY_FIRST || bc >= BODY_FIRST + N_BODIES)
        return 0;
    return p->mask[bc - BODY_FIRST];
}

int cpx_views_redact(const cpx_views_t *v, const char *dept, cpx_envelope_t *env,
                     uint32_t *withheld, size_t *n, const char **profile)
{
    *n = 0;
    if (profile)
        *profile = cpx_views_profile(v, dept);
    uint32_t mask = cpx_views_mask(v, dept, (int)env->body_case);
    if (!mask)
        return CPX_OK;
    /* Only fields the sender committed to can be withheld; absent ones are not news. */
    for (size_t i = 0; i < env->n_commitments && *n < CPX_MAX_BODY_FIELDS; i++) {
        uint32_t f = env->commitments[i]->field;
        if (f < 32 && (mask & (1u << f)))
            withheld[(*n)++] = f;
    }
    return *n ? cpx_envsign_redact(env, withheld, *n) : CPX_OK;
}

int cpx_views_apply(const cpx_views_t *v, const char *dept, const uint8_t *in, size_t len,
                    uint8_t **out, size_t *out_len, uint32_t *withheld, size_t *n,
                    const char **profile)
{
    cpx_envelope_t *env = NULL;
    *out = NULL;
    int rc = cpx_decode_envelope(in, len, &env);
    if (rc)
        return rc;
    rc = cpx_views_redact(v, dept, env, withheld, n, profile);
    if (!rc)
        rc = cpx_encode(env, out, out_len);
    cpx_msg_free(env);
    return rc;
}
